/* The XenAPI client of the vdimotion CLI: talks to vdimotiond (or xapi).
 *
 * Design: one `struct client` is one logged-in session on one server.
 * A call is XML-RPC (serialized and parsed by xmlrpc-c's base library)
 * POSTed to "/" with libsoup's synchronous API; the XenAPI reply
 * {Status, Value | ErrorDescription} is unwrapped here, so callers get the
 * Value as a `struct xv` tree (client-value.c) or a GError whose message
 * is "CODE param1 param2..." (domain CLIENT_ERROR, code
 * CLIENT_ERROR_XENAPI) or names the URL (CLIENT_ERROR_CONNECT).  Errors
 * are returned up, and the command prints them once.
 *
 * Parts, one file each:
 *   client.c          session, XML-RPC transport, login/logout
 *   client-value.c    XenAPI values as an owned tree, and as JSON
 *   client-task.c     waiting on an asynchronous task, with progress
 *   client-transfer.c import_raw_vdi / export_raw_vdi over HTTP
 *   client-command.c  the options and subcommand tables of the server
 *                     commands (sr, vdi, vm, task)
 */
#ifndef VDM_CLI_CLIENT_H
#define VDM_CLI_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "cli.h"

#define CLIENT_REF_PREFIX "OpaqueRef:"
#define CLIENT_NULL_REF "OpaqueRef:NULL"

#define CLIENT_ERROR (client_error_quark ())
GQuark client_error_quark (void);
enum client_error
{
  CLIENT_ERROR_XENAPI,   /* the server said Failure: message = CODE params */
  CLIENT_ERROR_CONNECT,  /* could not talk to the server: names the URL */
  CLIENT_ERROR_PROTOCOL, /* the server's reply is not XenAPI */
  CLIENT_ERROR_LOCAL,    /* a local file, or a check of the CLI */
};

/* ---- Values (client-value.c) ---------------------------------------- */

enum xv_type
{
  XV_NIL,
  XV_STRING, /* also datetimes (ISO 8601) and base64 (as text) */
  XV_INT,
  XV_BOOL,
  XV_DOUBLE,
  XV_ARRAY,
  XV_STRUCT,
};

/* A XenAPI value, owned as one tree. */
struct xv
{
  enum xv_type type;
  char *s;
  int64_t i;
  double d;
  bool b;
  size_t n;          /* members of an ARRAY or STRUCT */
  char **keys;       /* STRUCT: n keys */
  struct xv **items; /* n members */
};
void xv_free (struct xv *v);
typedef struct xv xv;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (xv, xv_free)

/* Readers that never fail, so a record reads in one line per field: an
 * absent member or one of the wrong type reads as NULL / "" / 0 / false.
 * xv_u64 also reads XenAPI's 64-bit ints, which travel as strings. */
const struct xv *xv_get (const struct xv *st, const char *key);
const char *xv_str (const struct xv *st, const char *key);
uint64_t xv_u64 (const struct xv *st, const char *key);
double xv_double (const struct xv *st, const char *key);
bool xv_bool (const struct xv *st, const char *key);
/* The value of KEY in the string map member MAP of ST, or "". */
const char *xv_map_str (const struct xv *st, const char *map, const char *key);
/* ST's value for a ref out of a get_all_records answer (ref → record). */
const struct xv *xv_record (const struct xv *records, const char *ref);

/* Write V to F as JSON (XenAPI's string ints stay strings). */
void xv_print_json (FILE *f, const struct xv *v);

/* The member indexes of RECORDS (a get_all_records answer) in the order
 * of their FIELD, then uuid; RECORDS->n of them (caller frees). */
size_t *xv_sort_records (const struct xv *records, const char *field);
/* The string members of an ARRAY or the string values of a STRUCT,
 * joined with SEP (caller frees). */
char *xv_values_joined (const struct xv *v, const char *sep);

/* --json output on stdout: an object's members, one call each.  FIRST
 * starts true; json_end closes the object (and makes FIRST true again).
 * json_key writes the key only, for a value the caller writes. */
void json_str (bool *first, const char *key, const char *v);
void json_u64 (bool *first, const char *key, uint64_t v);
void json_double (bool *first, const char *key, double v);
void json_bool (bool *first, const char *key, bool v);
void json_value (bool *first, const char *key, const struct xv *v);
void json_key (bool *first, const char *key);
void json_end (bool *first);

/* ---- Sessions and calls (client.c) ---------------------------------- */

struct client_options
{
  const char *server;        /* URL; or $VDIMOTION_SERVER */
  const char *user;          /* or $VDIMOTION_USER, else "root" */
  const char *password_file; /* first line; or $VDIMOTION_PASSWORD */
  const char *ca_file;       /* for https://; or $VDIMOTION_CA_FILE */
  bool json;
  int progress; /* PROGRESS_AUTO, _ON, _OFF */
};
extern struct client_options client_opts;

struct client;

/* Log in to the server of OPTS.  NULL and *ERR on failure. */
struct client *client_connect (const struct client_options *opts,
                               GError **err);
/* Log out (errors ignored: the work is done) and free. */
void client_close (struct client *c);

const char *client_url (const struct client *c);
const char *client_session (const struct client *c);

/* Call METHOD with the session ref and the parameters built from FMT by
 * xmlrpc_build_value ("(ss)", "({s:s,s:b})", ...; "()" for none).
 * Returns the Value, or NULL and *ERR. */
struct xv *client_call (struct client *c, GError **err, const char *method,
                        const char *fmt, ...);

/* True if ERR is the XenAPI failure CODE. */
bool client_error_is (const GError *err, const char *code);

/* Find an object of class CLS ("SR", "VDI", "VM") by uuid or name label:
 * its ref (caller frees) and, if RECORD, its record.  A name label that
 * matches several objects is an error, as is one that matches none
 * (UUID_INVALID CLS NAME). */
char *client_lookup (struct client *c, const char *cls, const char *name,
                     struct xv **record, GError **err);

/* Print the uuid of REF, an object of class CLS just made, as the last
 * line of stdout (a {"uuid": ...} object with --json), for scripts. */
int client_print_new_uuid (struct client *c, const char *cls, const char *ref,
                           GError **err);

/* "OpaqueRef:abc" -> "abc": XenAPI refs of vdimotiond carry the uuid. */
const char *client_ref_uuid (const char *ref);

/* ---- Tasks (client-task.c) ------------------------------------------ */

/* Wait for TASK to end, polling task.get_record every 200 ms, with a
 * progress bar (progress mode MODE) scaled to TOTAL bytes.  Returns the
 * task's result (a ref, "<value>" wrapper removed; caller frees), or NULL
 * and *ERR for a failed or cancelled task (its error_info as a XenAPI
 * failure).  The task stays on the server for task list / show. */
char *client_task_wait (struct client *c, const char *task, int mode,
                        uint64_t total, GError **err);

/* ---- Bulk data (client-transfer.c) ---------------------------------- */

/* PUT the disk image PATH, of FORMAT (enum vdisk_format, or
 * VDISK_FORMAT_PROBE), into VDI (a ref): a VHD without a parent as-is
 * (format=vhd), anything else as raw bytes read through libvdisk
 * (format=raw). */
int client_import_vdi (struct client *c, const char *vdi, const char *path,
                       int format, int progress_mode, GError **err);
/* GET VDI into PATH: format=vhd if PATH ends in ".vhd", else raw. */
int client_export_vdi (struct client *c, const char *vdi, uint64_t size,
                       const char *path, int progress_mode, GError **err);

/* ---- Server commands (client-command.c) ----------------------------- */

/* The options a subcommand takes besides the client ones. */
#define CLIENT_OPT_NAME 1u   /* --name N */
#define CLIENT_OPT_LIVE 2u   /* --live */
#define CLIENT_OPT_DISK 4u   /* --disk VDI, repeatable */
#define CLIENT_OPT_FORMAT 8u /* -f FMT: a local image's format */

struct client_args
{
  int argc; /* positional arguments after the subcommand */
  char **argv;
  const char *name;
  bool live;
  const char **disks; /* n_disks of them */
  size_t n_disks;
  int format; /* -f, or VDISK_FORMAT_PROBE */
};

struct client_subcommand
{
  const char *name;
  const char *synopsis; /* after "vdimotion GROUP NAME " */
  int min_args, max_args;
  unsigned options; /* CLIENT_OPT_* */
  int (*run) (struct client *c, const struct client_args *a, GError **err);
};

/* Run GROUP's subcommand named by argv[1] (table ends with a NULL
 * name): options, login, run, logout; errors printed, exit code
 * returned. */
int client_run_group (const struct command *group,
                      const struct client_subcommand *subs, int argc,
                      char **argv);

/* Parse one client option at ARGV[0] (before the command name, as
 * "vdimotion --server URL sr list").  Returns the number of words used,
 * 0 if ARGV[0] is not a client option, -1 for a missing value. */
int client_global_option (int argc, char **argv);

/* "--server URL ..." lines of the usage. */
void client_usage_options (FILE *f);

#endif /* VDM_CLI_CLIENT_H */
