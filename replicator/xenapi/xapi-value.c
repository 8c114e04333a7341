/* XenAPI values as one owned tree (xapi-value.h): builders, a deep copy
 * and readers that never fail.  No XML-RPC here: xapi-client.c converts. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "xapi-value.h"

void
xv_free (struct xv *v)
{
  if (v == NULL)
    return;
  for (size_t i = 0; i < v->n; i++) {
    if (v->keys)
      g_free (v->keys[i]);
    xv_free (v->items[i]);
  }
  g_free (v->keys);
  g_free (v->items);
  g_free (v->s);
  g_free (v);
}

static struct xv *
xv_new (enum xv_type t)
{
  struct xv *v = g_new0 (struct xv, 1);

  v->type = t;
  return v;
}

struct xv *
xv_new_nil (void)
{
  return xv_new (XV_NIL);
}

struct xv *
xv_new_string (const char *s)
{
  struct xv *v = xv_new (XV_STRING);

  v->s = g_strdup (s ? s : "");
  return v;
}

struct xv *
xv_new_int (int64_t i)
{
  struct xv *v = xv_new (XV_INT);

  v->i = i;
  return v;
}

struct xv *
xv_new_bool (bool b)
{
  struct xv *v = xv_new (XV_BOOL);

  v->b = b;
  return v;
}

struct xv *
xv_new_double (double d)
{
  struct xv *v = xv_new (XV_DOUBLE);

  v->d = d;
  return v;
}

struct xv *
xv_new_array (void)
{
  return xv_new (XV_ARRAY);
}

struct xv *
xv_new_struct (void)
{
  return xv_new (XV_STRUCT);
}

/* Add a member at the end (KEY for a struct, NULL for an array).  The
 * arrays grow by one: values built by hand are small, and a reply's big
 * ones are made at their size (xapi-client.c). */
static void
put (struct xv *v, const char *key, struct xv *member)
{
  v->items = g_renew (struct xv *, v->items, v->n + 1);
  if (v->type == XV_STRUCT) {
    v->keys = g_renew (char *, v->keys, v->n + 1);
    v->keys[v->n] = g_strdup (key);
  }
  v->items[v->n++] = member;
}

struct xv *
xv_append (struct xv *array, struct xv *item)
{
  g_assert (array->type == XV_ARRAY && item != NULL);
  put (array, NULL, item);
  return array;
}

struct xv *
xv_set (struct xv *st, const char *key, struct xv *member)
{
  g_assert (st->type == XV_STRUCT && key != NULL && member != NULL);
  for (size_t i = 0; i < st->n; i++)
    if (strcmp (st->keys[i], key) == 0) {
      xv_free (st->items[i]);
      st->items[i] = member;
      return st;
    }
  put (st, key, member);
  return st;
}

struct xv *
xv_array (struct xv *first, ...)
{
  struct xv *a = xv_new_array ();
  va_list ap;

  va_start (ap, first);
  for (struct xv *item = first; item; item = va_arg (ap, struct xv *))
    xv_append (a, item);
  va_end (ap);
  return a;
}

struct xv *
xv_struct (const char *first_key, ...)
{
  struct xv *st = xv_new_struct ();
  va_list ap;

  va_start (ap, first_key);
  for (const char *key = first_key; key; key = va_arg (ap, const char *))
    xv_set (st, key, va_arg (ap, struct xv *));
  va_end (ap);
  return st;
}

struct xv *
xv_new_string_map (GHashTable *strings)
{
  struct xv *st = xv_new_struct ();
  GHashTableIter it;
  gpointer k, v;

  g_hash_table_iter_init (&it, strings);
  while (g_hash_table_iter_next (&it, &k, &v))
    xv_set (st, k, xv_new_string (v));
  return st;
}

struct xv *
xv_copy (const struct xv *v)
{
  struct xv *c;

  if (v == NULL)
    return NULL;
  c = xv_new (v->type);
  c->s = g_strdup (v->s);
  c->i = v->i;
  c->d = v->d;
  c->b = v->b;
  /* A struct's keys are unique already: no lookups. */
  for (size_t i = 0; i < v->n; i++)
    put (c, v->keys ? v->keys[i] : NULL, xv_copy (v->items[i]));
  return c;
}

const struct xv *
xv_get (const struct xv *st, const char *key)
{
  if (st == NULL || st->type != XV_STRUCT)
    return NULL;
  for (size_t i = 0; i < st->n; i++)
    if (strcmp (st->keys[i], key) == 0)
      return st->items[i];
  return NULL;
}

const char *
xv_str (const struct xv *st, const char *key)
{
  const struct xv *v = xv_get (st, key);

  return v && v->type == XV_STRING ? v->s : "";
}

uint64_t
xv_u64 (const struct xv *st, const char *key)
{
  const struct xv *v = xv_get (st, key);

  if (v == NULL)
    return 0;
  if (v->type == XV_INT)
    return v->i < 0 ? 0 : (uint64_t)v->i;
  if (v->type == XV_STRING)
    return strtoull (v->s, NULL, 10);
  return 0;
}

double
xv_double (const struct xv *st, const char *key)
{
  const struct xv *v = xv_get (st, key);

  if (v == NULL)
    return 0;
  if (v->type == XV_DOUBLE)
    return v->d;
  if (v->type == XV_INT)
    return v->i;
  if (v->type == XV_STRING)
    return strtod (v->s, NULL);
  return 0;
}

bool
xv_bool (const struct xv *st, const char *key)
{
  const struct xv *v = xv_get (st, key);

  return v && v->type == XV_BOOL && v->b;
}

const char *
xv_map_str (const struct xv *st, const char *map, const char *key)
{
  return xv_str (xv_get (st, map), key);
}

const struct xv *
xv_record (const struct xv *records, const char *ref)
{
  return xv_get (records, ref);
}

char *
xv_values_joined (const struct xv *v, const char *sep)
{
  GString *s = g_string_new (NULL);

  for (size_t i = 0;
       v && (v->type == XV_STRUCT || v->type == XV_ARRAY) && i < v->n; i++)
    if (v->items[i]->type == XV_STRING) {
      if (s->len)
        g_string_append (s, sep);
      g_string_append (s, v->items[i]->s);
    }
  return g_string_free (s, false);
}
