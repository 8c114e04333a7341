/* The one dispatcher every XML-RPC method name goes through, the generic
 * methods of classes with records, the XenAPI wire helpers, and calls
 * answered later (struct xapi_deferral; the one kind here waits for a
 * task). */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rpc.h"
#include "where.h"
#include "xapi.h"

/* Error parameters longer than this are cut (see wrap). */
#define XAPI_ERROR_PARAM_MAX (64 * 1024)

/* The classes this daemon serves.  A new class is one file and one line
 * here. */
static const struct xapi_class xapi_class_system;
static const struct xapi_class *const classes[] = {
  &xapi_class_session, &xapi_class_pool,    &xapi_class_host,
  &xapi_class_sr,      &xapi_class_vdi,     &xapi_class_vm,
  &xapi_class_vbd,     &xapi_class_task,    &xapi_class_network,
  &xapi_class_migration, &xapi_class_system, &xapi_class_event,
};

void
xapi_fail (struct xapi_call *c, const char *code, ...)
{
  va_list ap;
  const char *s;

  if (c->error)
    return; /* the first failure is the one the client sees */
  c->error = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (c->error, g_strdup (code));
  va_start (ap, code);
  while ((s = va_arg (ap, const char *)) != NULL)
    g_ptr_array_add (c->error, g_strdup (s));
  va_end (ap);
}

void
xapi_fail_err (struct xapi_call *c, char **err)
{
  if (c->error == NULL && err && err[0]) {
    c->error = g_ptr_array_new_with_free_func (g_free);
    for (size_t i = 0; err[i]; i++)
      g_ptr_array_add (c->error, g_steal_pointer (&err[i]));
  }
  else if (c->error == NULL)
    xapi_fail (c, "INTERNAL_ERROR", "failed without saying why", NULL);
  g_strfreev (err);
}

bool
xapi_failed (struct xapi_call *c)
{
  return c->error != NULL || c->env->fault_occurred;
}

void
xapi_fail_sr (struct xapi_call *c, const char *cls, const char *ref)
{
  char **err = NULL;

  host_err_sr (&err, cls, ref, c->method);
  xapi_fail_err (c, err);
}

/* xmlrpc_string_new, but NULL when it fails: xmlrpc-c then returns an
 * uninitialized pointer (a string that is not valid UTF-8, as a label
 * read from disk may be, must not crash the reply). */
static xmlrpc_value *
new_string (xmlrpc_env *env, const char *s)
{
  xmlrpc_value *v;

  if (env->fault_occurred)
    return NULL;
  v = xmlrpc_string_new (env, s);
  return env->fault_occurred ? NULL : v;
}

xmlrpc_value *
xapi_string (struct xapi_call *c, const char *s)
{
  return new_string (c->env, s ? s : "");
}

/* xapi_string of S, which it frees. */
static xmlrpc_value *
xapi_string_take (struct xapi_call *c, char *s)
{
  xmlrpc_value *v = xapi_string (c, s);

  g_free (s);
  return v;
}

/* An i8, which XML-RPC replies write as xapi does, as a string, and
 * JSON-RPC replies as a number (rpc.c, jsonrpc.c). */
xmlrpc_value *
xapi_int64 (struct xapi_call *c, int64_t v)
{
  return xmlrpc_i8_new (c->env, v);
}

xmlrpc_value *
xapi_bool (struct xapi_call *c, bool v)
{
  return xmlrpc_bool_new (c->env, v);
}

xmlrpc_value *
xapi_ref (struct xapi_call *c, const char *uuid)
{
  g_autofree char *ref = g_strconcat (XAPI_REF_PREFIX, uuid, NULL);

  return new_string (c->env, ref);
}

/* xapi answers a method without a result with an empty string. */
xmlrpc_value *
xapi_void (struct xapi_call *c)
{
  return new_string (c->env, "");
}

xmlrpc_value *
xapi_empty_array (struct xapi_call *c)
{
  return xmlrpc_array_new (c->env);
}

xmlrpc_value *
xapi_empty_struct (struct xapi_call *c)
{
  return xmlrpc_struct_new (c->env);
}

xmlrpc_value *
xapi_string_map (struct xapi_call *c, GHashTable *oc)
{
  xmlrpc_value *st = xmlrpc_struct_new (c->env);
  GHashTableIter it;
  gpointer k, v;

  if (oc == NULL)
    return st;
  g_hash_table_iter_init (&it, oc);
  while (g_hash_table_iter_next (&it, &k, &v))
    xapi_set (c, st, k, xapi_string (c, v));
  return st;
}

void
xapi_set (struct xapi_call *c, xmlrpc_value *st, const char *key,
          xmlrpc_value *v)
{
  if (v == NULL || st == NULL || c->env->fault_occurred) {
    if (v)
      xmlrpc_DECREF (v);
    return;
  }
  xmlrpc_struct_set_value (c->env, st, key, v);
  xmlrpc_DECREF (v);
}

void
xapi_append (struct xapi_call *c, xmlrpc_value *array, xmlrpc_value *v)
{
  if (v == NULL || array == NULL || c->env->fault_occurred) {
    if (v)
      xmlrpc_DECREF (v);
    return;
  }
  xmlrpc_array_append_item (c->env, array, v);
  xmlrpc_DECREF (v);
}

char *
xapi_read_string (struct xapi_call *c, xmlrpc_value *v, const char *what)
{
  const char *s = NULL;
  char *ret;

  if (v == NULL || xmlrpc_value_type (v) != XMLRPC_TYPE_STRING) {
    xapi_fail (c, "FIELD_TYPE_ERROR", what, NULL);
    return NULL;
  }
  xmlrpc_read_string (c->env, v, &s);
  if (c->env->fault_occurred)
    return NULL;
  ret = g_strdup (s);
  free ((void *)s);
  return ret;
}

char *
xapi_member_string (struct xapi_call *c, xmlrpc_value *rec, const char *key)
{
  g_autoptr (xmlrpc_value) v = NULL;

  xmlrpc_struct_find_value (c->env, rec, key, &v);
  if (v == NULL)
    return NULL;
  return xapi_read_string (c, v, key);
}

char *
xapi_map_string (struct xapi_call *c, xmlrpc_value *rec, const char *map,
                 const char *key)
{
  g_autoptr (xmlrpc_value) m = NULL;

  xmlrpc_struct_find_value (c->env, rec, map, &m);
  if (m == NULL || xmlrpc_value_type (m) != XMLRPC_TYPE_STRUCT)
    return NULL;
  return xapi_member_string (c, m, key);
}

bool
xapi_read_string_map (struct xapi_call *c, xmlrpc_value *v, const char *what,
                      xapi_string_map_fn *fn, void *opaque)
{
  int n;

  if (!xapi_is_record (c, v, what))
    return false;
  n = xmlrpc_struct_size (c->env, v);
  for (int i = 0; i < n && !xapi_failed (c); i++) {
    g_autoptr (xmlrpc_value) k = NULL;
    g_autoptr (xmlrpc_value) val = NULL;
    g_autofree char *ks = NULL;
    g_autofree char *vs = NULL;

    xmlrpc_struct_read_member (c->env, v, i, &k, &val);
    if (c->env->fault_occurred)
      break;
    ks = xapi_read_string (c, k, what);
    vs = ks ? xapi_read_string (c, val, what) : NULL;
    if (vs && !fn (c, ks, vs, opaque) && !xapi_failed (c))
      xapi_fail (c, "INVALID_VALUE", what, ks, NULL);
  }
  return !xapi_failed (c);
}

bool
xapi_is_record (struct xapi_call *c, xmlrpc_value *v, const char *what)
{
  if (v && xmlrpc_value_type (v) == XMLRPC_TYPE_STRUCT)
    return true;
  xapi_fail (c, "FIELD_TYPE_ERROR", what, NULL);
  return false;
}

const char *
xapi_ref_uuid (const char *ref)
{
  const char *u;

  if (ref == NULL || !g_str_has_prefix (ref, XAPI_REF_PREFIX))
    return NULL;
  u = ref + strlen (XAPI_REF_PREFIX);
  return sr_uuid_is_valid (u) ? u : NULL;
}

bool
xapi_change_other_config (struct xapi_call *c, xmlrpc_value *const *args,
                          const char *cls, const char *ref, GHashTable *oc)
{
  const char *m = strrchr (c->method, '.') + 1;
  g_autofree char *key = NULL;
  char *value;

  if (strcmp (m, "set_other_config") == 0) {
    g_hash_table_remove_all (oc);
    return xapi_oc_from_xmlrpc (c, args[2], oc);
  }
  if ((key = xapi_read_string (c, args[2], "key")) == NULL)
    return false;
  if (strcmp (m, "remove_from_other_config") == 0) {
    g_hash_table_remove (oc, key);
    return true;
  }
  if ((value = xapi_read_string (c, args[3], "value")) == NULL)
    return false;
  if (g_hash_table_contains (oc, key)) {
    g_free (value);
    xapi_fail (c, "MAP_DUPLICATE_KEY", cls, "other_config", ref, key, NULL);
    return false;
  }
  g_hash_table_replace (oc, g_steal_pointer (&key), value);
  return true;
}

/* Generic methods of a class with records. */

/* The datamodel's default of field F (datamodel.c). */
static xmlrpc_value *
field_default (struct xapi_call *c, const struct xapi_field *f)
{
  switch (f->type) {
  case XAPI_FIELD_STRING: return xapi_string (c, f->dflt);
  case XAPI_FIELD_INT: return new_string (c->env, f->dflt ? f->dflt : "0");
  case XAPI_FIELD_FLOAT:
    return xmlrpc_double_new (c->env, f->dflt ? g_ascii_strtod (f->dflt, NULL)
                                              : 0.0);
  case XAPI_FIELD_BOOL: return xapi_bool (c, g_strcmp0 (f->dflt, "true") == 0);
  case XAPI_FIELD_DATETIME: return xmlrpc_datetime_new_sec (c->env, 0);
  case XAPI_FIELD_REF: return xapi_string (c, XAPI_NULL_REF);
  case XAPI_FIELD_SET: return xapi_empty_array (c);
  case XAPI_FIELD_MAP: return xapi_empty_struct (c);
  }
  g_assert_not_reached ();
}

xmlrpc_value *
xapi_class_record (struct xapi_call *c, const struct xapi_class *cls,
                   const char *ref)
{
  g_autoptr (xmlrpc_value) own = cls->get_record (c, ref);
  const struct xapi_field *f = xapi_datamodel_fields (cls->name);
  xmlrpc_value *r;
  int n;

  if (own == NULL || f == NULL)
    return g_steal_pointer (&own);
  r = xmlrpc_struct_new (c->env);
  for (; f->name && !c->env->fault_occurred; f++) {
    xmlrpc_value *v = NULL;

    xmlrpc_struct_find_value (c->env, own, f->name, &v);
    xapi_set (c, r, f->name, v ? v : field_default (c, f));
  }
  /* The class's own fields outside the datamodel come last. */
  n = c->env->fault_occurred ? 0 : xmlrpc_struct_size (c->env, own);
  for (int i = 0; i < n && !c->env->fault_occurred; i++) {
    xmlrpc_value *k = NULL, *v = NULL;
    const char *key = NULL;

    xmlrpc_struct_get_key_and_value (c->env, own, i, &k, &v);
    if (k)
      xmlrpc_read_string (c->env, k, &key);
    if (key && !xmlrpc_struct_has_key (c->env, r, key)) {
      xmlrpc_INCREF (v);
      xapi_set (c, r, key, v);
    }
    free ((void *)key);
  }
  if (c->env->fault_occurred) {
    xmlrpc_DECREF (r);
    return NULL;
  }
  return r;
}

static xmlrpc_value *
generic_get_all (struct xapi_call *c, const struct xapi_class *cls)
{
  g_autoptr (GPtrArray) refs = g_ptr_array_new_with_free_func (g_free);
  xmlrpc_value *a;

  if (!cls->list (c, refs))
    return NULL;
  a = xmlrpc_array_new (c->env);
  for (guint i = 0; i < refs->len; i++)
    xapi_append (c, a, xapi_string (c, refs->pdata[i]));
  return a;
}

static xmlrpc_value *
generic_get_all_records (struct xapi_call *c, const struct xapi_class *cls)
{
  g_autoptr (GPtrArray) refs = g_ptr_array_new_with_free_func (g_free);
  xmlrpc_value *st;

  if (!cls->list (c, refs))
    return NULL;
  st = xmlrpc_struct_new (c->env);
  for (guint i = 0; i < refs->len && !xapi_failed (c); i++)
    xapi_set (c, st, refs->pdata[i],
              xapi_class_record (c, cls, refs->pdata[i]));
  if (xapi_failed (c)) {
    xmlrpc_DECREF (st);
    return NULL;
  }
  return st;
}

/* The value of FIELD in the record of REF (the get_<field> getters). */
static xmlrpc_value *
generic_get_field (struct xapi_call *c, const struct xapi_class *cls,
                   const char *ref, const char *field)
{
  g_autoptr (xmlrpc_value) rec = xapi_class_record (c, cls, ref);
  xmlrpc_value *v = NULL;

  if (rec == NULL)
    return NULL;
  xmlrpc_struct_find_value (c->env, rec, field, &v);
  return v; /* a new reference, or NULL (checked by the caller) */
}

/* get_by_uuid: refs are OpaqueRef:<uuid>, so the uuid names the ref. */
static xmlrpc_value *
generic_by_uuid (struct xapi_call *c, const struct xapi_class *cls,
                 const char *uuid)
{
  g_autofree char *ref = NULL;
  g_autoptr (xmlrpc_value) rec = NULL;

  if (!sr_uuid_is_valid (uuid)) {
    xapi_fail (c, "UUID_INVALID", cls->name, uuid, NULL);
    return NULL;
  }
  ref = g_strconcat (XAPI_REF_PREFIX, uuid, NULL);
  rec = cls->get_record (c, ref);
  if (rec == NULL) {
    /* A missing object asked for by uuid is UUID_INVALID in xapi. */
    g_clear_pointer (&c->error, g_ptr_array_unref);
    if (!c->env->fault_occurred)
      xapi_fail (c, "UUID_INVALID", cls->name, uuid, NULL);
    return NULL;
  }
  return new_string (c->env, ref);
}

static xmlrpc_value *
generic_by_name_label (struct xapi_call *c, const struct xapi_class *cls,
                       const char *label)
{
  g_autoptr (GPtrArray) refs = g_ptr_array_new_with_free_func (g_free);
  xmlrpc_value *a;

  if (!cls->list (c, refs))
    return NULL;
  a = xmlrpc_array_new (c->env);
  for (guint i = 0; i < refs->len && !xapi_failed (c); i++) {
    g_autoptr (xmlrpc_value) nl
        = generic_get_field (c, cls, refs->pdata[i], "name_label");
    const char *s = NULL;

    if (nl == NULL)
      break;
    xmlrpc_read_string (c->env, nl, &s);
    if (s && strcmp (s, label) == 0)
      xapi_append (c, a, xapi_string (c, refs->pdata[i]));
    free ((void *)s);
  }
  if (xapi_failed (c)) {
    xmlrpc_DECREF (a);
    return NULL;
  }
  return a;
}

/* xapi's database text of a field's value, which get_all_records_where
 * compares: strings as they are (int64s and enums are strings here),
 * bools "true"/"false", a float as OCaml prints it roughly, a datetime
 * in its wire form, sets and maps as xapi's S-expressions ("('a' 'b')",
 * "(('k' 'v'))"). */
static void
db_text (xmlrpc_env *env, xmlrpc_value *v, GString *out)
{
  switch (xmlrpc_value_type (v)) {
  case XMLRPC_TYPE_STRING: {
    const char *s = NULL;

    xmlrpc_read_string (env, v, &s);
    if (s)
      g_string_append (out, s);
    free ((void *)s);
    break;
  }
  case XMLRPC_TYPE_BOOL: {
    xmlrpc_bool b = 0;

    xmlrpc_read_bool (env, v, &b);
    g_string_append (out, b ? "true" : "false");
    break;
  }
  case XMLRPC_TYPE_DOUBLE: {
    double d = 0;

    xmlrpc_read_double (env, v, &d);
    g_string_append_printf (out, "%.16g", d);
    break;
  }
  case XMLRPC_TYPE_DATETIME: {
    time_t t = 0;
    g_autoptr (GDateTime) dt = NULL;
    g_autofree char *s = NULL;

    xmlrpc_read_datetime_sec (env, v, &t);
    dt = g_date_time_new_from_unix_utc (t);
    s = dt ? g_date_time_format (dt, "%Y%m%dT%H:%M:%SZ") : NULL;
    g_string_append (out, s ? s : "");
    break;
  }
  case XMLRPC_TYPE_ARRAY: {
    int n = xmlrpc_array_size (env, v);

    g_string_append_c (out, '(');
    for (int i = 0; i < n && !env->fault_occurred; i++) {
      g_autoptr (xmlrpc_value) e = NULL;

      xmlrpc_array_read_item (env, v, i, &e);
      g_string_append (out, i ? " '" : "'");
      if (e)
        db_text (env, e, out);
      g_string_append_c (out, '\'');
    }
    g_string_append_c (out, ')');
    break;
  }
  case XMLRPC_TYPE_STRUCT: {
    int n = xmlrpc_struct_size (env, v);

    g_string_append_c (out, '(');
    for (int i = 0; i < n && !env->fault_occurred; i++) {
      g_autoptr (xmlrpc_value) k = NULL;
      g_autoptr (xmlrpc_value) e = NULL;

      xmlrpc_struct_read_member (env, v, i, &k, &e);
      g_string_append (out, i ? " ('" : "('");
      if (k)
        db_text (env, k, out);
      g_string_append (out, "' '");
      if (e)
        db_text (env, e, out);
      g_string_append (out, "')");
    }
    g_string_append_c (out, ')');
    break;
  }
  default: break;
  }
}

/* The record get_all_records_where tests. */
struct where_row
{
  struct xapi_call *c;
  xmlrpc_value *rec;
};

/* A field of the record being tested (where.h): by its database name,
 * whose namespaces are joined with "__" ("name__label"), or by its
 * record name ("name_label"). */
static char *
where_field (const char *name, void *opaque)
{
  struct where_row *w = opaque;
  g_autoptr (xmlrpc_value) v = NULL;
  g_autoptr (GString) text = NULL;

  xmlrpc_struct_find_value (w->c->env, w->rec, name, &v);
  if (v == NULL && strstr (name, "__")) {
    g_auto (GStrv) parts = g_strsplit (name, "__", -1);
    g_autofree char *key = g_strjoinv ("_", parts);

    xmlrpc_struct_find_value (w->c->env, w->rec, key, &v);
  }
  if (v == NULL)
    return NULL;
  text = g_string_new (NULL);
  db_text (w->c->env, v, text);
  return g_string_free (g_steal_pointer (&text), FALSE);
}

/* get_all_records_where(session, expr): the records get_all_records
 * gives, of the objects matching EXPR (where.h).  A bad expression is
 * INVALID_VALUE [expr, why] and a field the records lack is
 * INTERNAL_ERROR ["missing field", name, ""], as xapi says them. */
static xmlrpc_value *
generic_where (struct xapi_call *c, const struct xapi_class *cls,
               const char *expr)
{
  g_autofree char *why = NULL;
  struct xapi_where *w = xapi_where_parse (expr, &why);
  g_autoptr (xmlrpc_value) all = NULL;
  xmlrpc_value *st;
  int n;

  if (w == NULL) {
    xapi_fail (c, "INVALID_VALUE", expr, why, NULL);
    return NULL;
  }
  all = generic_get_all_records (c, cls);
  st = all ? xmlrpc_struct_new (c->env) : NULL;
  n = all ? xmlrpc_struct_size (c->env, all) : 0;
  for (int i = 0; i < n && !xapi_failed (c); i++) {
    xmlrpc_value *k = NULL, *rec = NULL;
    const char *ref = NULL;
    struct where_row wf = { c, NULL };
    g_autofree char *missing = NULL;
    int m;

    xmlrpc_struct_get_key_and_value (c->env, all, i, &k, &rec);
    if (c->env->fault_occurred)
      break;
    wf.rec = rec;
    m = xapi_where_eval (w, where_field, &wf, &missing);
    if (m < 0)
      xapi_fail (c, "INTERNAL_ERROR", "missing field", missing, "", NULL);
    else if (m) {
      xmlrpc_read_string (c->env, k, &ref);
      if (ref) {
        xmlrpc_INCREF (rec);
        xapi_set (c, st, ref, rec);
      }
      free ((void *)ref);
    }
  }
  xapi_where_free (w);
  if (st && xapi_failed (c))
    g_clear_pointer (&st, xmlrpc_DECREF);
  return st;
}

/* The generic methods: NAME is the part after the class.  Returns false
 * if NAME is none of them (so the method is unknown). */
static bool
run_generic (struct xapi_call *c, const struct xapi_class *cls,
             const char *name, xmlrpc_value *const *args, int nargs,
             xmlrpc_value **result)
{
  bool where = strcmp (name, "get_all_records_where") == 0;
  int want;
  g_autofree char *arg = NULL;

  if (strcmp (name, "get_all") == 0 || strcmp (name, "get_all_records") == 0)
    want = 1;
  else if (where)
    want = 2;
  else if (g_str_has_prefix (name, "get_") && name[4] != '\0')
    want = 2;
  else
    return false;

  if (nargs != want) {
    char w[16], g[16];

    snprintf (w, sizeof w, "%d", want);
    snprintf (g, sizeof g, "%d", nargs);
    xapi_fail (c, "MESSAGE_PARAMETER_COUNT_MISMATCH", c->method, w, g, NULL);
    return true;
  }
  if (want == 2
      && (arg = xapi_read_string (c, args[1], where ? "expr" : "ref"))
             == NULL)
    return true;

  if (strcmp (name, "get_all") == 0)
    *result = generic_get_all (c, cls);
  else if (strcmp (name, "get_all_records") == 0)
    *result = generic_get_all_records (c, cls);
  else if (strcmp (name, "get_by_uuid") == 0)
    *result = generic_by_uuid (c, cls, arg);
  else if (strcmp (name, "get_by_name_label") == 0)
    *result = generic_by_name_label (c, cls, arg);
  else if (strcmp (name, "get_record") == 0)
    *result = xapi_class_record (c, cls, arg);
  else if (where)
    *result = generic_where (c, cls, arg);
  else {
    *result = generic_get_field (c, cls, arg, name + 4);
    if (*result == NULL && !xapi_failed (c))
      xapi_fail (c, "MESSAGE_METHOD_UNKNOWN", c->method, NULL);
  }
  return true;
}

/* system.listMethods(): every "Class.method" name the daemon answers, in
 * the order of the classes, as xapi lists them (no Async. names): a
 * class's own methods, then for a class with records its generic ones
 * and a getter per field of xapi's datamodel. */
static xmlrpc_value *
list_methods (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  static const char *const generic[]
      = { "get_all", "get_all_records", "get_all_records_where",
          "get_by_uuid", "get_record" };
  xmlrpc_value *a = xmlrpc_array_new (c->env);

  for (size_t i = 0; i < G_N_ELEMENTS (classes); i++) {
    const struct xapi_class *cls = classes[i];
    const struct xapi_field *f = xapi_datamodel_fields (cls->name);
    g_autofree char *prefix = g_strconcat (cls->name, ".", NULL);

    for (const struct xapi_method *m = cls->methods; m && m->name; m++)
      xapi_append (c, a, xapi_string_take (c, g_strconcat (prefix, m->name,
                                                           NULL)));
    if (cls->get_record == NULL)
      continue;
    for (size_t j = 0; j < G_N_ELEMENTS (generic); j++)
      xapi_append (c, a, xapi_string_take (c, g_strconcat (prefix, generic[j],
                                                           NULL)));
    for (const struct xapi_field *g = f; g && g->name; g++)
      if (strcmp (g->name, "name_label") == 0)
        xapi_append (c, a, xapi_string_take (
                               c, g_strconcat (prefix, "get_by_name_label",
                                               NULL)));
    for (; f && f->name; f++)
      xapi_append (c, a, xapi_string_take (
                             c, g_strconcat (prefix, "get_", f->name, NULL)));
  }
  return a;
}

/* xapi ignores listMethods' arguments. */
static const struct xapi_method system_methods[] = {
  { "listMethods", 0, G_MAXINT, true, list_methods },
  { NULL },
};

/* "system": XML-RPC's introspection, which xapi answers without a
 * session (and, for listMethods, without the Status/Value wrapper). */
static const struct xapi_class xapi_class_system = {
  .name = "system",
  .methods = system_methods,
};

static const struct xapi_class *
find_class (const char *name, size_t len)
{
  for (size_t i = 0; i < G_N_ELEMENTS (classes); i++)
    if (strlen (classes[i]->name) == len
        && g_ascii_strncasecmp (classes[i]->name, name, len) == 0)
      return classes[i];
  return NULL;
}

const struct xapi_class *
xapi_class_by_name (const char *name)
{
  return find_class (name, strlen (name));
}

const struct xapi_class *const *
xapi_classes (size_t *n)
{
  *n = G_N_ELEMENTS (classes);
  return classes;
}

static const struct xapi_method *
find_method (const struct xapi_class *cls, const char *name)
{
  for (const struct xapi_method *m = cls->methods; m && m->name; m++)
    if (strcmp (m->name, name) == 0)
      return m;
  return NULL;
}

/* Call the method; the result or c->error is set afterwards. */
/* Async.<class>.<method> of a method that is not a job: run it now and
 * hand back a task that is already over, as a client polling it expects. */
static xmlrpc_value *
async_done (struct xapi_call *c, xmlrpc_value *result)
{
  g_autofree char *name = g_strconcat ("Async.", c->method, NULL);
  g_autofree char *text = NULL;
  g_autofree char *task = NULL;

  if (xapi_failed (c)) {
    GPtrArray *e = c->error;

    if (result)
      xmlrpc_DECREF (result);
    if (e == NULL)
      return NULL; /* an xmlrpc-c fault: INTERNAL_ERROR from wrap */
    g_ptr_array_add (e, NULL);
    task = xapi_task_done (c->d, name, NULL, (const char *const *)e->pdata);
    g_ptr_array_set_size (e, e->len - 1);
    g_clear_pointer (&c->error, g_ptr_array_unref);
  }
  else {
    text = xapi_task_result_text (c, result);
    xmlrpc_DECREF (result);
    task = xapi_task_done (c->d, name, text, NULL);
  }
  if (task == NULL) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the task", NULL);
    return NULL;
  }
  return xapi_ref (c, task);
}

static xmlrpc_value *run_method (struct xapi_call *c,
                                 xmlrpc_value *const *args, int nargs);

static xmlrpc_value *
run (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  xmlrpc_value *result;

  if (g_ascii_strncasecmp (c->method, "Async.", 6) != 0)
    return run_method (c, args, nargs);
  c->async = true;
  c->method += 6;
  result = run_method (c, args, nargs);
  /* A job method answered with its task; the session check and argument
   * errors fail the call itself, as in xapi. */
  if (c->async_task || (xapi_failed (c) && !c->async_ran))
    return result;
  return async_done (c, result);
}

static xmlrpc_value *
run_method (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  const char *dot = strchr (c->method, '.');
  const struct xapi_class *cls;
  const struct xapi_method *m;
  xmlrpc_value *result = NULL;

  cls = dot ? find_class (c->method, dot - c->method) : NULL;
  if (cls == NULL)
    goto unknown;
  m = find_method (cls, dot + 1);

  if (m == NULL && cls->get_record == NULL)
    goto unknown;
  if (m == NULL && !(g_str_has_prefix (dot + 1, "get_") && dot[5] != '\0'))
    goto unknown;

  if (m && (nargs < m->min_args || nargs > m->max_args)) {
    char w[16], g[16];

    snprintf (w, sizeof w, "%d", m->max_args);
    snprintf (g, sizeof g, "%d", nargs);
    xapi_fail (c, "MESSAGE_PARAMETER_COUNT_MISMATCH", c->method, w, g, NULL);
    return NULL;
  }

  if (m == NULL || !m->no_session) {
    g_autofree char *s = NULL;

    if (nargs < 1) {
      xapi_fail (c, "MESSAGE_PARAMETER_COUNT_MISMATCH", c->method, "1", "0",
                 NULL);
      return NULL;
    }
    s = xapi_read_string (c, args[0], "session_id");
    if (s == NULL)
      return NULL;
    /* A ref is short: a huge "session" is not even looked up. */
    if (strnlen (s, 256) == 256 || !xapi_session_valid (c->d, s)) {
      xapi_fail (c, "SESSION_INVALID", s, NULL);
      return NULL;
    }
  }

  c->async_ran = true;
  if (m)
    return m->fn (c, args, nargs);
  if (run_generic (c, cls, dot + 1, args, nargs, &result))
    return result;
unknown:
  xapi_fail (c, "MESSAGE_METHOD_UNKNOWN", c->method, NULL);
  return NULL;
}

static xmlrpc_value *
wrap (struct xapi_call *c, xmlrpc_value *value)
{
  xmlrpc_env *env = c->env;
  xmlrpc_value *reply;

  if (env->fault_occurred && c->error == NULL) {
    /* xmlrpc-c itself failed (out of memory, a value of the wrong
     * type): an internal error, not a fault, so clients see XenAPI. */
    xapi_fail (c, "INTERNAL_ERROR", env->fault_string, NULL);
  }
  xmlrpc_env_clean (env);
  xmlrpc_env_init (env);

  reply = xmlrpc_struct_new (env);
  if (c->error == NULL) {
    xapi_set (c, reply, "Status", xapi_string (c, "Success"));
    xapi_set (c, reply, "Value", value ? value : xapi_void (c));
  }
  else {
    xmlrpc_value *desc = xmlrpc_array_new (env);

    if (value)
      xmlrpc_DECREF (value);
    /* Error parameters may quote what is not valid UTF-8 (a file
     * name, an SR's message): cleaned so that the failure can always be
     * sent.  They may also quote a huge argument back (a 16 MiB
     * "session"): cut, so that it costs neither the main loop nor the
     * reply much. */
    for (guint i = 0; i < c->error->len; i++) {
      const char *p = c->error->pdata[i];
      g_autofree char *cut = NULL;
      g_autofree char *text = NULL;

      if (strnlen (p, XAPI_ERROR_PARAM_MAX + 1) > XAPI_ERROR_PARAM_MAX) {
        const char *end = p + XAPI_ERROR_PARAM_MAX;

        while (end > p && ((unsigned char)*end & 0xc0) == 0x80)
          end--; /* not in the middle of a character */
        cut = g_strdup_printf ("%.*s...", (int)(end - p), p);
        p = cut;
      }
      text = xapi_rpc_clean_text (p);
      xapi_append (c, desc, xapi_string (c, text));
    }
    xapi_set (c, reply, "Status", xapi_string (c, "Failure"));
    xapi_set (c, reply, "ErrorDescription", desc);
  }
  return reply;
}

xmlrpc_value *
xapi_dispatch (struct xapi_daemon *d, xmlrpc_env *env, const char *method,
               xmlrpc_value *params, const struct xapi_login_check *login,
               struct xapi_deferral **deferred)
{
  struct xapi_call c
      = { .d = d, .env = env, .method = method, .login = login };
  g_autoptr (GPtrArray) args
      = g_ptr_array_new_with_free_func ((GDestroyNotify)xmlrpc_DECREF);
  xmlrpc_value *result = NULL, *reply;
  int n = xmlrpc_array_size (env, params);

  for (int i = 0; i < n && !env->fault_occurred; i++) {
    xmlrpc_value *v = NULL;

    xmlrpc_array_read_item (env, params, i, &v);
    if (v)
      g_ptr_array_add (args, v);
  }
  if (!env->fault_occurred)
    result = run (&c, (xmlrpc_value *const *)args->pdata, args->len);
  if (c.defer && c.error == NULL && !env->fault_occurred) {
    g_assert (result == NULL);
    *deferred = c.defer;
    return NULL;
  }
  xapi_deferral_free (c.defer);
  /* xapi answers system.listMethods with the bare list. */
  if (result && c.error == NULL && !env->fault_occurred
      && g_ascii_strcasecmp (method, "system.listMethods") == 0)
    return result;
  reply = wrap (&c, result);
  if (c.error)
    g_ptr_array_unref (c.error);
  return reply;
}

xmlrpc_value *
xapi_dispatch_deferred (struct xapi_daemon *d, xmlrpc_env *env,
                        struct xapi_deferral *df)
{
  struct xapi_call c = { .d = d, .env = env, .method = df->method };
  xmlrpc_value *reply = wrap (&c, df->ops->answer (df, &c));

  if (c.error)
    g_ptr_array_unref (c.error);
  return reply;
}

/* Calls answered later. */

void *
xapi_defer (struct xapi_call *c, const struct xapi_deferral_ops *ops,
            size_t size)
{
  struct xapi_deferral *df;

  g_assert (size >= sizeof *df && c->defer == NULL);
  df = g_malloc0 (size);
  df->ops = ops;
  df->d = c->d;
  df->method = g_strdup (c->method);
  c->defer = df;
  return df;
}

void
xapi_deferral_ready (struct xapi_deferral *df)
{
  df->ready (df, df->opaque);
}

void
xapi_deferral_free (struct xapi_deferral *df)
{
  if (df == NULL)
    return;
  if (df->ops->clear)
    df->ops->clear (df);
  g_free (df->method);
  g_free (df);
}

/* A synchronous call of a job's method: answered once its task is over
 * (jobs_watch calls task_over in the main context). */
struct task_wait
{
  struct xapi_deferral df;
  char *task;
};

static void
task_over (const char *task, void *opaque)
{
  xapi_deferral_ready (opaque);
}

static void
task_wait_start (struct xapi_deferral *df)
{
  struct task_wait *tw = (struct task_wait *)df;

  jobs_watch (df->d->host->jobs, tw->task, task_over, df);
}

static bool
task_wait_cancel (struct xapi_deferral *df)
{
  struct task_wait *tw = (struct task_wait *)df;

  return jobs_unwatch (df->d->host->jobs, tw->task, task_over, df);
}

static xmlrpc_value *
task_wait_answer (struct xapi_deferral *df, struct xapi_call *c)
{
  return xapi_task_outcome (c, ((struct task_wait *)df)->task);
}

static void
task_wait_clear (struct xapi_deferral *df)
{
  g_free (((struct task_wait *)df)->task);
}

static const struct xapi_deferral_ops task_wait_ops = {
  .start = task_wait_start,
  .cancel = task_wait_cancel,
  .answer = task_wait_answer,
  .clear = task_wait_clear,
};

void
xapi_task_deferral (struct xapi_call *c, const char *task)
{
  struct task_wait *tw = xapi_defer (c, &task_wait_ops, sizeof *tw);

  tw->task = g_strdup (task);
}
