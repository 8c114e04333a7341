/* XenAPI values as one owned tree: what a XenAPI client (xapi-client.h)
 * sends as a call's parameters and gets back as its result.
 *
 * Design: a `struct xv` is a plain tree of XenAPI's types (string, int,
 * bool, double, array, struct, nil), each node owned by its parent and
 * the root by the caller, freed with one xv_free.  It knows nothing of
 * XML-RPC: xapi-client.c turns it into the wire form and back, so the
 * callers (the vdimotion command, a migration's source) build parameters
 * and read records without any xmlrpc-c type.
 *
 * Builders never fail (GLib aborts on out-of-memory) and hand over
 * ownership: xv_append and xv_set take the member, and a call takes its
 * parameters.  Readers never fail either, so a record reads in one line
 * per field: an absent member or one of the wrong type reads as NULL,
 * "", 0 or false.
 *
 * Invariants: an XV_STRING's s is never NULL; an XV_STRUCT has n keys
 * (its members' names, each once); an XV_ARRAY's keys is NULL. */
#ifndef VDM_XAPI_VALUE_H
#define VDM_XAPI_VALUE_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

enum xv_type
{
  XV_NIL,
  XV_STRING, /* also datetimes (as xapi writes them, 20260101T12:00:00Z)
                and base64 (as its decoded bytes) in replies */
  XV_INT,    /* sent as XML-RPC's int when it fits 32 bits, else i8 */
  XV_BOOL,
  XV_DOUBLE,
  XV_ARRAY,
  XV_STRUCT,
};

/* A XenAPI value, owned as one tree. */
struct xv
{
  enum xv_type type;
  char *s;           /* XV_STRING */
  int64_t i;         /* XV_INT */
  double d;          /* XV_DOUBLE */
  bool b;            /* XV_BOOL */
  size_t n;          /* members of an XV_ARRAY or XV_STRUCT */
  char **keys;       /* XV_STRUCT: n keys */
  struct xv **items; /* n members */
};
void xv_free (struct xv *v);
typedef struct xv xv;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (xv, xv_free)

/* A deep copy of V (NULL for NULL). */
struct xv *xv_copy (const struct xv *v);

/* ---- Builders --------------------------------------------------------- */

struct xv *xv_new_nil (void);
/* A string: a copy of S (NULL reads as ""). */
struct xv *xv_new_string (const char *s);
struct xv *xv_new_int (int64_t i);
struct xv *xv_new_bool (bool b);
struct xv *xv_new_double (double d);
/* Empty; filled with xv_append / xv_set. */
struct xv *xv_new_array (void);
struct xv *xv_new_struct (void);

/* Append ITEM (taken) to ARRAY; returns ARRAY. */
struct xv *xv_append (struct xv *array, struct xv *item);
/* Set member KEY of ST to MEMBER (taken), replacing one of that name;
 * returns ST. */
struct xv *xv_set (struct xv *st, const char *key, struct xv *member);
/* An array of the items given (taken), up to a NULL. */
struct xv *xv_array (struct xv *first, ...) G_GNUC_NULL_TERMINATED;
/* A struct of the KEY, MEMBER pairs given (members taken), up to a NULL
 * key: xv_struct ("name_label", xv_new_string (n), "other_config",
 * xv_new_struct (), NULL). */
struct xv *xv_struct (const char *first_key, ...) G_GNUC_NULL_TERMINATED;
/* A struct of strings out of STRINGS (char * keys and values, copied);
 * XenAPI's (string → string) maps. */
struct xv *xv_new_string_map (GHashTable *strings);

/* ---- Readers ---------------------------------------------------------- */

/* Member KEY of the struct ST, or NULL. */
const struct xv *xv_get (const struct xv *st, const char *key);
/* Member KEY of ST as a string, or "". */
const char *xv_str (const struct xv *st, const char *key);
/* Member KEY of ST as a number: an int, or XenAPI's 64-bit ints that
 * travel as decimal strings; negative or absent reads as 0. */
uint64_t xv_u64 (const struct xv *st, const char *key);
/* Member KEY of ST as a double (an int or a decimal string too), or 0. */
double xv_double (const struct xv *st, const char *key);
/* Member KEY of ST, a bool: true only if it is true. */
bool xv_bool (const struct xv *st, const char *key);
/* The value of KEY in the string map member MAP of ST, or "". */
const char *xv_map_str (const struct xv *st, const char *map, const char *key);
/* The record of REF in RECORDS, a get_all_records answer (ref → record),
 * or NULL. */
const struct xv *xv_record (const struct xv *records, const char *ref);
/* The string members of an XV_ARRAY or the string values of an
 * XV_STRUCT, joined with SEP; "" for anything else (g_free it). */
char *xv_values_joined (const struct xv *v, const char *sep);

#endif /* VDM_XAPI_VALUE_H */
