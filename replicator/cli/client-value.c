/* XenAPI values as one owned tree (struct xv), converted once from
 * xmlrpc-c's reference-counted values, so the commands read records with
 * plain accessors that never fail and never need a DECREF; and the same
 * tree written as JSON for --json. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmlrpc-c/base.h>

#include "client.h"
#include "client-internal.h"

void
xv_free (struct xv *v)
{
  if (v == NULL)
    return;
  for (size_t i = 0; i < v->n; i++) {
    if (v->keys)
      free (v->keys[i]);
    xv_free (v->items[i]);
  }
  free (v->keys);
  free (v->items);
  free (v->s);
  free (v);
}

static struct xv *
xv_new (enum xv_type t)
{
  struct xv *v = g_new0 (struct xv, 1);
  v->type = t;
  return v;
}

struct xv *
xv_from_xmlrpc (xmlrpc_env *env, xmlrpc_value *x)
{
  struct xv *v = NULL;
  const char *s;
  size_t len;

  switch (xmlrpc_value_type (x)) {
  case XMLRPC_TYPE_INT: {
    int i;
    xmlrpc_read_int (env, x, &i);
    v = xv_new (XV_INT);
    v->i = i;
    break;
  }
  case XMLRPC_TYPE_I8: {
    xmlrpc_int64 i;
    xmlrpc_read_i8 (env, x, &i);
    v = xv_new (XV_INT);
    v->i = i;
    break;
  }
  case XMLRPC_TYPE_BOOL: {
    xmlrpc_bool b;
    xmlrpc_read_bool (env, x, &b);
    v = xv_new (XV_BOOL);
    v->b = b;
    break;
  }
  case XMLRPC_TYPE_DOUBLE:
    v = xv_new (XV_DOUBLE);
    xmlrpc_read_double (env, x, &v->d);
    break;
  case XMLRPC_TYPE_DATETIME: {
    /* As xapi writes them: 20260101T12:00:00Z. */
    time_t t;
    struct tm tm;
    char buf[32];
    xmlrpc_read_datetime_sec (env, x, &t);
    v = xv_new (XV_STRING);
    if (!env->fault_occurred && gmtime_r (&t, &tm)
        && strftime (buf, sizeof buf, "%Y%m%dT%H:%M:%SZ", &tm))
      v->s = g_strdup (buf);
    else
      v->s = g_strdup ("");
    break;
  }
  case XMLRPC_TYPE_STRING:
    v = xv_new (XV_STRING);
    xmlrpc_read_string_lp (env, x, &len, &s);
    if (!env->fault_occurred)
      v->s = (char *)s;
    break;
  case XMLRPC_TYPE_BASE64: {
    const unsigned char *b;
    xmlrpc_read_base64 (env, x, &len, &b);
    v = xv_new (XV_STRING);
    if (!env->fault_occurred) {
      v->s = g_strndup ((const char *)b, len);
      free ((void *)b);
    }
    break;
  }
  case XMLRPC_TYPE_ARRAY: {
    int n = xmlrpc_array_size (env, x);
    v = xv_new (XV_ARRAY);
    v->items = g_new0 (struct xv *, n > 0 ? n : 1);
    for (int i = 0; i < n && !env->fault_occurred; i++) {
      xmlrpc_value *item;
      xmlrpc_array_read_item (env, x, i, &item);
      if (env->fault_occurred)
        break;
      v->items[v->n] = xv_from_xmlrpc (env, item);
      xmlrpc_DECREF (item);
      if (v->items[v->n])
        v->n++;
    }
    break;
  }
  case XMLRPC_TYPE_STRUCT: {
    int n = xmlrpc_struct_size (env, x);
    v = xv_new (XV_STRUCT);
    v->items = g_new0 (struct xv *, n > 0 ? n : 1);
    v->keys = g_new0 (char *, n > 0 ? n : 1);
    for (int i = 0; i < n && !env->fault_occurred; i++) {
      xmlrpc_value *k, *m;
      xmlrpc_struct_read_member (env, x, i, &k, &m);
      if (env->fault_occurred)
        break;
      xmlrpc_read_string (env, k, &s);
      if (!env->fault_occurred) {
        v->keys[v->n] = (char *)s;
        v->items[v->n] = xv_from_xmlrpc (env, m);
        if (v->items[v->n])
          v->n++;
        else
          free (v->keys[v->n]);
      }
      xmlrpc_DECREF (k);
      xmlrpc_DECREF (m);
    }
    break;
  }
  default: v = xv_new (XV_NIL); break;
  }
  if (env->fault_occurred) {
    xv_free (v);
    return NULL;
  }
  return v;
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

void
xv_print_json (FILE *f, const struct xv *v)
{
  switch (v->type) {
  case XV_NIL: fputs ("null", f); break;
  case XV_STRING: cli_json_string (f, v->s); break;
  case XV_INT: fprintf (f, "%" PRId64, v->i); break;
  case XV_BOOL: fputs (v->b ? "true" : "false", f); break;
  case XV_DOUBLE: fprintf (f, "%.17g", v->d); break;
  case XV_ARRAY:
    fputc ('[', f);
    for (size_t i = 0; i < v->n; i++) {
      if (i)
        fputs (", ", f);
      xv_print_json (f, v->items[i]);
    }
    fputc (']', f);
    break;
  case XV_STRUCT:
    fputc ('{', f);
    for (size_t i = 0; i < v->n; i++) {
      if (i)
        fputs (", ", f);
      cli_json_string (f, v->keys[i]);
      fputs (": ", f);
      xv_print_json (f, v->items[i]);
    }
    fputc ('}', f);
    break;
  }
}

static const char *sort_field;
static const struct xv *sort_records;

static int
compare_records (const void *a, const void *b)
{
  const struct xv *ra = sort_records->items[*(const size_t *)a];
  const struct xv *rb = sort_records->items[*(const size_t *)b];
  int r = strcmp (xv_str (ra, sort_field), xv_str (rb, sort_field));
  return r ? r : strcmp (xv_str (ra, "uuid"), xv_str (rb, "uuid"));
}

size_t *
xv_sort_records (const struct xv *records, const char *field)
{
  size_t n = records && records->type == XV_STRUCT ? records->n : 0;
  size_t *order = g_new (size_t, n + 1);

  for (size_t i = 0; i < n; i++)
    order[i] = i;
  sort_field = field;
  sort_records = records;
  qsort (order, n, sizeof *order, compare_records);
  return order;
}

static void
member (const char *key, bool *first)
{
  fputs (*first ? "{" : ", ", stdout);
  *first = false;
  cli_json_string (stdout, key);
  fputs (": ", stdout);
}

void
json_str (bool *first, const char *key, const char *v)
{
  member (key, first);
  cli_json_string (stdout, v ? v : "");
}

void
json_u64 (bool *first, const char *key, uint64_t v)
{
  member (key, first);
  printf ("%" PRIu64, v);
}

void
json_double (bool *first, const char *key, double v)
{
  member (key, first);
  printf ("%.6g", v);
}

void
json_bool (bool *first, const char *key, bool v)
{
  member (key, first);
  fputs (v ? "true" : "false", stdout);
}

void
json_value (bool *first, const char *key, const struct xv *v)
{
  member (key, first);
  if (v)
    xv_print_json (stdout, v);
  else
    fputs ("null", stdout);
}

void
json_key (bool *first, const char *key)
{
  member (key, first);
}

void
json_end (bool *first)
{
  fputs (*first ? "{}" : "}", stdout);
  *first = true;
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
