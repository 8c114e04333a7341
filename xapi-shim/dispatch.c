/* The one dispatcher every XML-RPC method name goes through, the generic
 * methods of classes with records, and the XenAPI wire helpers. */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rpc.h"
#include "xapi.h"

/* Error parameters longer than this are cut (see wrap). */
#define XAPI_ERROR_PARAM_MAX (64 * 1024)

/* The classes this daemon serves.  A new class is one file and one line
 * here. */
static const struct xapi_class *const classes[] = {
  &xapi_class_session, &xapi_class_host,    &xapi_class_sr,
  &xapi_class_vdi,     &xapi_class_vm,      &xapi_class_vbd,
  &xapi_class_task,    &xapi_class_network, &xapi_class_migration,
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

bool
xapi_failed (struct xapi_call *c)
{
  return c->error != NULL || c->env->fault_occurred;
}

void
xapi_fail_sr (struct xapi_call *c, const char *cls, const char *ref)
{
  const char *msg = sr_get_error ();

  switch (sr_get_errno ()) {
  case ENOENT: xapi_fail (c, "HANDLE_INVALID", cls, ref, NULL); break;
  case EINVAL: xapi_fail (c, "UUID_INVALID", cls, ref, NULL); break;
  case EBUSY: xapi_fail (c, "VDI_IN_USE", ref, c->method, NULL); break;
  case EROFS: xapi_fail (c, "VDI_READ_ONLY", ref, NULL); break;
  case ENOSPC: xapi_fail (c, "SR_FULL", ref, msg, NULL); break;
  case ENOTSUP:
    xapi_fail (c, "SR_OPERATION_NOT_SUPPORTED", ref, msg, NULL);
    break;
  default: xapi_fail (c, "INTERNAL_ERROR", msg ? msg : "unknown", NULL);
  }
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

xmlrpc_value *
xapi_int64 (struct xapi_call *c, int64_t v)
{
  char buf[32];

  snprintf (buf, sizeof buf, "%" PRId64, v);
  return new_string (c->env, buf);
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
    xapi_set (c, st, refs->pdata[i], cls->get_record (c, refs->pdata[i]));
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
  g_autoptr (xmlrpc_value) rec = cls->get_record (c, ref);
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

/* The generic methods: NAME is the part after the class.  Returns false
 * if NAME is none of them (so the method is unknown). */
static bool
run_generic (struct xapi_call *c, const struct xapi_class *cls,
             const char *name, xmlrpc_value *const *args, int nargs,
             xmlrpc_value **result)
{
  int want;
  g_autofree char *arg = NULL;

  if (strcmp (name, "get_all") == 0 || strcmp (name, "get_all_records") == 0)
    want = 1;
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
  if (want == 2 && (arg = xapi_read_string (c, args[1], "ref")) == NULL)
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
    *result = cls->get_record (c, arg);
  else {
    *result = generic_get_field (c, cls, arg, name + 4);
    if (*result == NULL && !xapi_failed (c))
      xapi_fail (c, "MESSAGE_METHOD_UNKNOWN", c->method, NULL);
  }
  return true;
}

static const struct xapi_class *
find_class (const char *name, size_t len)
{
  for (size_t i = 0; i < G_N_ELEMENTS (classes); i++)
    if (strlen (classes[i]->name) == len
        && g_ascii_strncasecmp (classes[i]->name, name, len) == 0)
      return classes[i];
  return NULL;
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
               xmlrpc_value *params, const struct xapi_login_check *login)
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
  reply = wrap (&c, result);
  if (c.error)
    g_ptr_array_unref (c.error);
  return reply;
}
