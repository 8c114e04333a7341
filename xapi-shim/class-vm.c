/* The VM class: VMs as a storage host sees them — a name and disks.
 *
 * vdimotiond does not run guests.  VM.start serves each of the VM's
 * disks (VBDs) with its own nbdkit (vm-disks.c): nbdkit-vdi-plugin over
 * the VDI's image and nbdkit-mirror-filter on top, on a Unix socket named
 * in the VBD's other_config["nbd-socket"].  That socket is where a
 * hypervisor (or fio) attaches; the mirror filter is what lets a running
 * VM's disk move (VDI.pool_migrate) without the VM noticing.
 * VM.shutdown stops them.  A VM is "Running" while its disks are served.
 *
 * The records are durable (state.h).  At start, xapi_vms_reconcile
 * checks that each running VM's nbdkits are still alive (they outlive
 * a restart of the daemon); a VM that lost a disk server is halted. */

#include <string.h>

#include "xapi.h"

static bool
vm_list (struct xapi_call *c, GPtrArray *refs)
{
  g_autoptr (GPtrArray) uuids = state_list (c->d->state, "vms", NULL, NULL);

  for (guint i = 0; i < uuids->len; i++)
    g_ptr_array_add (
        refs, g_strconcat (XAPI_REF_PREFIX, (char *)uuids->pdata[i], NULL));
  return true;
}

struct state_vm *
xapi_vm_by_ref (struct xapi_call *c, const char *ref)
{
  const char *uuid = xapi_ref_uuid (ref);
  struct state_vm *vm = uuid ? state_vm_get (c->d->state, uuid) : NULL;

  if (vm == NULL)
    xapi_fail (c, "HANDLE_INVALID", "VM", ref ? ref : "", NULL);
  return vm;
}

GHashTable *
xapi_oc_parse (const char *text)
{
  GHashTable *oc
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GVariant) v = NULL;
  GVariantIter it;
  const char *k, *val;

  if (text && *text)
    v = g_variant_parse (G_VARIANT_TYPE ("a{ss}"), text, NULL, NULL, NULL);
  if (v == NULL)
    return oc;
  g_variant_iter_init (&it, v);
  while (g_variant_iter_next (&it, "{&s&s}", &k, &val))
    g_hash_table_replace (oc, g_strdup (k), g_strdup (val));
  return oc;
}

char *
xapi_oc_print (GHashTable *oc)
{
  GVariantBuilder b;
  GHashTableIter it;
  gpointer k, v;
  g_autoptr (GVariant) var = NULL;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{ss}"));
  g_hash_table_iter_init (&it, oc);
  while (g_hash_table_iter_next (&it, &k, &v))
    g_variant_builder_add (&b, "{ss}", (const char *)k, (const char *)v);
  var = g_variant_ref_sink (g_variant_builder_end (&b));
  return g_variant_print (var, FALSE);
}

static bool
oc_put (struct xapi_call *c, const char *key, const char *value, void *oc)
{
  g_hash_table_replace (oc, g_strdup (key), g_strdup (value));
  return true;
}

bool
xapi_oc_from_xmlrpc (struct xapi_call *c, xmlrpc_value *m, GHashTable *oc)
{
  return xapi_read_string_map (c, m, "other_config", oc_put, oc);
}

static xmlrpc_value *
oc_to_xmlrpc (struct xapi_call *c, const char *text)
{
  g_autoptr (GHashTable) oc = xapi_oc_parse (text);
  xmlrpc_value *st = xmlrpc_struct_new (c->env);
  GHashTableIter it;
  gpointer k, v;

  g_hash_table_iter_init (&it, oc);
  while (g_hash_table_iter_next (&it, &k, &v))
    xapi_set (c, st, k, xapi_string (c, v));
  return st;
}

static bool
is_running (const struct state_vm *vm)
{
  return strcmp (vm->power_state, "Running") == 0;
}

static xmlrpc_value *
vm_record (struct xapi_call *c, const char *ref)
{
  g_autoptr (state_vm) vm = xapi_vm_by_ref (c, ref);
  g_autoptr (GPtrArray) vbds = NULL;
  xmlrpc_value *r, *a, *ops;

  if (vm == NULL)
    return NULL;
  vbds = state_list (c->d->state, "vbds", "vm", vm->uuid);
  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, vm->uuid));
  xapi_set (c, r, "name_label", xapi_string (c, vm->name_label));
  xapi_set (c, r, "name_description", xapi_string (c, vm->name_description));
  xapi_set (c, r, "power_state", xapi_string (c, vm->power_state));
  ops = xmlrpc_array_new (c->env);
  xapi_append (c, ops,
               xapi_string (c, is_running (vm) ? "clean_shutdown" : "start"));
  xapi_set (c, r, "allowed_operations", ops);
  xapi_set (c, r, "current_operations", xapi_empty_struct (c));
  a = xmlrpc_array_new (c->env);
  for (guint i = 0; i < vbds->len; i++)
    xapi_append (c, a, xapi_ref (c, vbds->pdata[i]));
  xapi_set (c, r, "VBDs", a);
  xapi_set (c, r, "VIFs", xapi_empty_array (c));
  xapi_set (c, r, "resident_on",
            is_running (vm) ? xapi_ref (c, c->d->host_uuid)
                            : xapi_string (c, XAPI_NULL_REF));
  xapi_set (c, r, "is_a_template", xapi_bool (c, false));
  xapi_set (c, r, "is_a_snapshot", xapi_bool (c, false));
  xapi_set (c, r, "is_control_domain", xapi_bool (c, false));
  xapi_set (c, r, "other_config", oc_to_xmlrpc (c, vm->other_config));
  xapi_set (c, r, "tags", xapi_empty_array (c));
  return r;
}

/* VM.create(session, record) → ref: name_label and name_description are
 * used; the rest of a full xapi VM record is accepted and ignored. */
static xmlrpc_value *
vm_create (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *label = NULL;
  g_autofree char *desc = NULL;
  g_autofree char *uuid = g_uuid_string_random ();
  g_autofree char *oc_text = NULL;
  g_autoptr (GHashTable) oc = xapi_oc_parse (NULL);
  g_autoptr (xmlrpc_value) ocv = NULL;
  struct state_vm vm = { 0 };

  if (!xapi_is_record (c, args[1], "args"))
    return NULL;
  label = xapi_member_string (c, args[1], "name_label");
  desc = xapi_member_string (c, args[1], "name_description");
  if (!xapi_failed (c))
    xmlrpc_struct_find_value (c->env, args[1], "other_config", &ocv);
  if (ocv && !xapi_oc_from_xmlrpc (c, ocv, oc))
    return NULL;
  if (xapi_failed (c))
    return NULL;
  vm.other_config = oc_text = xapi_oc_print (oc);
  vm.uuid = uuid;
  vm.name_label = label ? label : "";
  vm.name_description = desc ? desc : "";
  vm.power_state = "Halted";
  vm.created = g_get_real_time () / G_USEC_PER_SEC;
  if (state_vm_add (c->d->state, &vm) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the VM", NULL);
    return NULL;
  }
  g_message ("VM.create: %s (%s)", uuid, vm.name_label);
  return xapi_ref (c, uuid);
}

static void
fail_power_state (struct xapi_call *c, const struct state_vm *vm,
                  const char *expected)
{
  g_autofree char *ref = g_strconcat (XAPI_REF_PREFIX, vm->uuid, NULL);

  xapi_fail (c, "VM_BAD_POWER_STATE", ref, expected, vm->power_state, NULL);
}

static xmlrpc_value *
vm_destroy (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vm");
  g_autoptr (state_vm) vm = ref ? xapi_vm_by_ref (c, ref) : NULL;
  g_autoptr (GPtrArray) vbds = NULL;

  if (vm == NULL)
    return NULL;
  if (is_running (vm)) {
    fail_power_state (c, vm, "Halted");
    return NULL;
  }
  /* As xapi: the VBDs go with the VM, the VDIs stay. */
  vbds = state_list (c->d->state, "vbds", "vm", vm->uuid);
  for (guint i = 0; i < vbds->len; i++)
    state_vbd_remove (c->d->state, vbds->pdata[i]);
  state_vm_remove (c->d->state, vm->uuid);
  g_message ("VM.destroy: %s", vm->uuid);
  return xapi_void (c);
}

/* Stop serving one VBD (and the target of a live move, if any). */
static void
stop_vbd (struct xapi_daemon *d, struct state_vbd *b)
{
  xapi_stop_serving (b->pid, b->nbd_socket, b->control_socket,
                     XAPI_STOP_GRACE);
  if (b->target_pid)
    xapi_stop_serving (b->target_pid, b->target_socket, NULL, XAPI_STOP_GRACE);
  g_clear_pointer (&b->nbd_socket, g_free);
  g_clear_pointer (&b->control_socket, g_free);
  g_clear_pointer (&b->target_socket, g_free);
  b->pid = b->target_pid = 0;
  state_vbd_update (d->state, b);
}

/* Serve one VBD's VDI; false after xapi_fail. */
static bool
start_vbd (struct xapi_call *c, struct state_vbd *b)
{
  struct xapi_sr *s = NULL;
  struct sr_vdi *v = xapi_find_vdi (c->d, b->vdi, &s);
  int r;
  g_autoptr (GError) error = NULL;
  struct xapi_served sv = { 0 };
  bool ro = g_strcmp0 (b->mode, "RO") == 0;

  if (v == NULL) {
    g_autofree char *ref = g_strconcat (XAPI_REF_PREFIX, b->vdi, NULL);

    xapi_fail (c, "VDI_MISSING", XAPI_NULL_REF, ref, NULL);
    return false;
  }
  if (v->read_only && !ro) {
    g_autofree char *ref = g_strconcat (XAPI_REF_PREFIX, b->vdi, NULL);

    sr_vdi_free (v);
    xapi_fail (c, "VDI_READ_ONLY", ref, NULL);
    return false;
  }
  r = xapi_serve_image (c->d, b->uuid, s, v, true, ro, &sv, &error);
  sr_vdi_free (v);
  if (r == -1) {
    xapi_fail (c, "INTERNAL_ERROR", error->message, NULL);
    return false;
  }
  g_free (b->nbd_socket);
  g_free (b->control_socket);
  b->nbd_socket = sv.socket;
  b->control_socket = sv.control;
  b->pid = sv.pid;
  state_vbd_update (c->d->state, b);
  return true;
}

/* VM.start(session, vm[, start_paused, force]). */
static xmlrpc_value *
vm_start (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vm");
  g_autoptr (state_vm) vm = ref ? xapi_vm_by_ref (c, ref) : NULL;
  g_autoptr (GPtrArray) uuids = NULL;
  g_autoptr (GPtrArray) started = NULL;
  g_autoptr (GPtrArray) claimed = NULL;

  if (vm == NULL)
    return NULL;
  if (is_running (vm)) {
    fail_power_state (c, vm, "Halted");
    return NULL;
  }
  uuids = state_list (c->d->state, "vbds", "vm", vm->uuid);
  started = g_ptr_array_new_with_free_func ((GDestroyNotify)state_vbd_free);
  claimed = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < uuids->len; i++) {
    struct state_vbd *b = state_vbd_get (c->d->state, uuids->pdata[i]);

    if (b == NULL)
      continue;
    /* A VDI being imported, copied or moved cannot be served; the claim
     * is held only while starting. */
    if (!xapi_vdi_claim (c, b->vdi, "attach") || !start_vbd (c, b)) {
      if (!xapi_failed (c))
        xapi_fail (c, "INTERNAL_ERROR", "cannot start", NULL);
      state_vbd_free (b);
      break;
    }
    g_ptr_array_add (claimed, g_strdup (b->vdi));
    g_ptr_array_add (started, b);
  }
  for (guint i = 0; i < claimed->len; i++)
    xapi_vdi_release (c->d, claimed->pdata[i]);
  if (xapi_failed (c)) {
    /* All or nothing: stop what started. */
    for (guint i = 0; i < started->len; i++)
      stop_vbd (c->d, started->pdata[i]);
    return NULL;
  }
  state_vm_set_power_state (c->d->state, vm->uuid, "Running");
  g_message ("VM.start: %s (%u disks)", vm->uuid, started->len);
  return xapi_void (c);
}

/* VM.shutdown / clean_shutdown / hard_shutdown(session, vm). */
static xmlrpc_value *
vm_shutdown (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vm");
  g_autoptr (state_vm) vm = ref ? xapi_vm_by_ref (c, ref) : NULL;
  g_autoptr (GPtrArray) uuids = NULL;
  g_autoptr (GPtrArray) claimed = NULL;

  if (vm == NULL)
    return NULL;
  if (!is_running (vm)) {
    fail_power_state (c, vm, "Running");
    return NULL;
  }
  uuids = state_list (c->d->state, "vbds", "vm", vm->uuid);
  claimed = g_ptr_array_new_with_free_func (g_free);
  /* Not while one of its disks is moving: the move needs its nbdkit. */
  for (guint i = 0; i < uuids->len; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (c->d->state, uuids->pdata[i]);

    if (b && !xapi_vdi_claim (c, b->vdi, "detach"))
      break;
    if (b)
      g_ptr_array_add (claimed, g_strdup (b->vdi));
  }
  if (!xapi_failed (c)) {
    for (guint i = 0; i < uuids->len; i++) {
      g_autoptr (state_vbd) b = state_vbd_get (c->d->state, uuids->pdata[i]);

      if (b)
        stop_vbd (c->d, b);
    }
    state_vm_set_power_state (c->d->state, vm->uuid, "Halted");
    g_message ("VM.shutdown: %s", vm->uuid);
  }
  for (guint i = 0; i < claimed->len; i++)
    xapi_vdi_release (c->d, claimed->pdata[i]);
  return xapi_failed (c) ? NULL : xapi_void (c);
}

void
xapi_vms_reconcile (struct xapi_daemon *d)
{
  g_autoptr (GPtrArray) vms = state_list (d->state, "vms", NULL, NULL);

  for (guint i = 0; i < vms->len; i++) {
    g_autoptr (state_vm) vm = state_vm_get (d->state, vms->pdata[i]);
    g_autoptr (GPtrArray) vbds = NULL;
    bool all_alive = true;

    if (vm == NULL || !is_running (vm))
      continue;
    vbds = state_list (d->state, "vbds", "vm", vm->uuid);
    for (guint j = 0; j < vbds->len; j++) {
      g_autoptr (state_vbd) b = state_vbd_get (d->state, vbds->pdata[j]);

      if (b && !xapi_serving (b->pid, b->nbd_socket))
        all_alive = false;
    }
    if (all_alive) {
      g_message ("VM %s: still running (%u disks served)", vm->uuid,
                 vbds->len);
      continue;
    }
    g_warning ("VM %s: a disk server is gone: the VM is halted", vm->uuid);
    for (guint j = 0; j < vbds->len; j++) {
      g_autoptr (state_vbd) b = state_vbd_get (d->state, vbds->pdata[j]);

      if (b)
        stop_vbd (d, b);
    }
    state_vm_set_power_state (d->state, vm->uuid, "Halted");
  }
}

/* VM.add_to_other_config, remove_from_other_config, set_other_config
 * (xapi_change_other_config). */
static xmlrpc_value *
vm_change_other_config (struct xapi_call *c, xmlrpc_value *const *args,
                        int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vm");
  g_autoptr (state_vm) vm = ref ? xapi_vm_by_ref (c, ref) : NULL;
  g_autoptr (GHashTable) oc = NULL;
  g_autofree char *text = NULL;

  if (vm == NULL)
    return NULL;
  oc = xapi_oc_parse (vm->other_config);
  if (!xapi_change_other_config (c, args, "VM", ref, oc))
    return NULL;
  text = xapi_oc_print (oc);
  state_vm_set_other_config (c->d->state, vm->uuid, text);
  return xapi_void (c);
}

static const struct xapi_method methods[] = {
  { "create", 2, 2, false, vm_create },
  { "migrate_receive", 4, 4, false, xapi_vm_migrate_receive },
  { "migrate", 5, 5, false, xapi_vm_migrate },
  { "migrate_send", 7, 8, false, xapi_vm_migrate_send },
  { "assert_can_migrate", 7, 7, false, xapi_vm_assert_can_migrate },
  { "add_to_other_config", 4, 4, false, vm_change_other_config },
  { "remove_from_other_config", 3, 3, false, vm_change_other_config },
  { "set_other_config", 3, 3, false, vm_change_other_config },
  { "destroy", 2, 2, false, vm_destroy },
  { "start", 2, 4, false, vm_start },
  { "shutdown", 2, 2, false, vm_shutdown },
  { "clean_shutdown", 2, 2, false, vm_shutdown },
  { "hard_shutdown", 2, 2, false, vm_shutdown },
  { NULL },
};

const struct xapi_class xapi_class_vm = {
  .name = "VM",
  .methods = methods,
  .list = vm_list,
  .get_record = vm_record,
};
