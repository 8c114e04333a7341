/* VM.migrate, VM.migrate_send and VM.assert_can_migrate: a migration's
 * source (the work is the brain's, replicator/jobs/migrate.h; here the
 * arguments are read and the answer written).
 *
 *   VM.migrate(session, vm, dest, live, options)            the design's
 *   VM.migrate_send(session, vm, dest, live, vdi_map, vif_map, options
 *                   [, vgpu_map[, vdi_format_map]])          xapi's
 *   VM.assert_can_migrate(session, vm, dest, live, vdi_map, vif_map,
 *                         options[, vgpu_map])
 *
 * dest is the token VM.migrate_receive / Host.migrate_receive gave on the
 * destination; vdi_map maps VDI refs to SR refs there; vif_map, vgpu_map
 * and vdi_format_map are accepted and unused, as the arities xapi
 * accepts (7 to 9, 7 or 8). */

#include <string.h>

#include "migrate.h"
#include "xapi.h"

static bool
put_one (struct xapi_call *c, const char *key, const char *value,
         void *table)
{
  g_hash_table_replace (table, g_strdup (key), g_strdup (value));
  return true;
}

/* vdi_map: its keys and values are refs, kept as uuids. */
static bool
put_ref_pair (struct xapi_call *c, const char *key, const char *value,
              void *table)
{
  const char *ku = xapi_ref_uuid (key), *vu = xapi_ref_uuid (value);

  if (ku == NULL || vu == NULL) {
    xapi_fail (c, "HANDLE_INVALID", ku ? "SR" : "VDI", ku ? value : key,
               NULL);
    return false;
  }
  g_hash_table_replace (table, g_strdup (ku), g_strdup (vu));
  return true;
}

static GHashTable *
string_table (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

/* The arguments into *P (its tables owned by the caller: free with
 * request_clear); false after xapi_fail.  VDI_MAP / OPTIONS: argument
 * indexes (-1: none). */
struct request
{
  struct host_vm_migrate p;
  char *vm;
};

static void
request_clear (struct request *r)
{
  g_free (r->vm);
  g_clear_pointer (&r->p.token, g_hash_table_unref);
  g_clear_pointer (&r->p.vdi_map, g_hash_table_unref);
  g_clear_pointer (&r->p.options, g_hash_table_unref);
}

static bool
read_request (struct xapi_call *c, xmlrpc_value *const *args, int vdi_map,
              int options, struct request *r)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vm");
  g_autoptr (state_vm) vm = ref ? xapi_vm_by_ref (c, ref) : NULL;
  xmlrpc_bool live = 0;

  if (vm == NULL)
    return false;
  if (xmlrpc_value_type (args[3]) != XMLRPC_TYPE_BOOL) {
    xapi_fail (c, "FIELD_TYPE_ERROR", "live", NULL);
    return false;
  }
  xmlrpc_read_bool (c->env, args[3], &live);
  r->vm = g_strdup (vm->uuid);
  r->p.vm = r->vm;
  r->p.live = live;
  r->p.token = string_table ();
  if (!xapi_read_string_map (c, args[2], "dest", put_one, r->p.token))
    return false;
  if (vdi_map >= 0) {
    r->p.vdi_map = string_table ();
    if (!xapi_read_string_map (c, args[vdi_map], "vdi_map", put_ref_pair,
                               r->p.vdi_map))
      return false;
  }
  if (options >= 0) {
    r->p.options = string_table ();
    if (!xapi_read_string_map (c, args[options], "options", put_one,
                               r->p.options))
      return false;
  }
  return true;
}

static xmlrpc_value *
submit (struct xapi_call *c, xmlrpc_value *const *args, int vdi_map,
        int options)
{
  struct request r = { 0 };
  g_autofree char *label = NULL;
  g_autofree char *task = NULL;
  char **err = NULL;

  if (read_request (c, args, vdi_map, options, &r)) {
    label = g_strdup_printf ("VM.%s %s", strchr (c->method, '.') + 1, r.vm);
    task = host_vm_migrate_submit (c->d->host, &r.p, label, &err);
    if (task == NULL)
      xapi_fail_err (c, err);
  }
  request_clear (&r);
  return task ? xapi_job_reply (c, task) : NULL;
}

xmlrpc_value *
xapi_vm_migrate (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return submit (c, args, -1, 4);
}

xmlrpc_value *
xapi_vm_migrate_send (struct xapi_call *c, xmlrpc_value *const *args,
                      int nargs)
{
  return submit (c, args, 4, 6);
}

xmlrpc_value *
xapi_vm_assert_can_migrate (struct xapi_call *c, xmlrpc_value *const *args,
                            int nargs)
{
  struct request r = { 0 };
  char **err = NULL;
  bool ok = false;

  if (read_request (c, args, 4, 6, &r)) {
    ok = host_vm_migrate_check (c->d->host, &r.p, &err) == 0;
    if (!ok)
      xapi_fail_err (c, err);
  }
  request_clear (&r);
  return ok ? xapi_void (c) : NULL;
}
