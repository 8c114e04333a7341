/* The VM class: VMs as a storage host sees them — a name and disks.
 *
 * VM.start, VM.shutdown and VM.destroy are the brain's (replicator/jobs/
 * vms.h: each disk served by its own nbdkit with the mirror filter, on
 * a Unix socket named in the VBD's other_config["nbd-socket"]); this
 * file reads the arguments and writes the records.  The records are
 * durable (state.h). */

#include <string.h>

#include "xapi.h"

static bool
vm_list (struct xapi_call *c, GPtrArray *refs)
{
  g_autoptr (GPtrArray) uuids = state_list (c->d->host->state, "vms", NULL, NULL);

  for (guint i = 0; i < uuids->len; i++)
    g_ptr_array_add (
        refs, g_strconcat (XAPI_REF_PREFIX, (char *)uuids->pdata[i], NULL));
  return true;
}

struct state_vm *
xapi_vm_by_ref (struct xapi_call *c, const char *ref)
{
  const char *uuid = xapi_ref_uuid (ref);
  struct state_vm *vm = uuid ? state_vm_get (c->d->host->state, uuid) : NULL;

  if (vm == NULL)
    xapi_fail (c, "HANDLE_INVALID", "VM", ref ? ref : "", NULL);
  return vm;
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

static bool
is_running (const struct state_vm *vm)
{
  return strcmp (vm->power_state, "Running") == 0;
}

/* Has one of the VM's disks an operation running (a move, a copy)?  The
 * VM can then neither stop nor start nor migrate (vms.h). */
static bool
disks_busy (struct xapi_call *c, GPtrArray *vbds)
{
  for (guint i = 0; i < vbds->len; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (c->d->host->state, vbds->pdata[i]);
    g_autofree char *op = b ? host_vdi_operation (c->d->host, b->vdi) : NULL;

    if (op)
      return true;
  }
  return false;
}

/* What the VM can do now, as xapi's vm_operations name it. */
static xmlrpc_value *
allowed_operations (struct xapi_call *c, const struct state_vm *vm,
                    GPtrArray *vbds)
{
  static const char *const running[]
      = { "clean_shutdown", "hard_shutdown", "shutdown", "migrate_send" };
  static const char *const halted[] = { "start", "destroy", "migrate_send" };
  bool run = is_running (vm);
  const char *const *ops = run ? running : halted;
  size_t n = run ? G_N_ELEMENTS (running) : G_N_ELEMENTS (halted);
  xmlrpc_value *a = xmlrpc_array_new (c->env);

  if (disks_busy (c, vbds))
    return a;
  for (size_t i = 0; i < n; i++)
    xapi_append (c, a, xapi_string (c, ops[i]));
  return a;
}

/* The VM's record.  A storage host knows a VM's name, power state and
 * disks; it does not run the guest, so memory and VCPUs are not its to
 * know: they read as xapi's smallest consistent values (no memory, one
 * VCPU), the domain type as "unspecified".  A running VM's domid is a
 * number of its own, kept while the VM exists (state_vm_number); a
 * halted VM's is -1, as in xapi. */
static xmlrpc_value *
vm_record (struct xapi_call *c, const char *ref)
{
  g_autoptr (state_vm) vm = xapi_vm_by_ref (c, ref);
  g_autoptr (GPtrArray) vbds = NULL;
  g_autoptr (GHashTable) oc = NULL;
  xmlrpc_value *r, *a;
  bool run;

  if (vm == NULL)
    return NULL;
  run = is_running (vm);
  vbds = state_list (c->d->host->state, "vbds", "vm", vm->uuid);
  oc = host_oc_parse (vm->other_config);
  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, vm->uuid));
  xapi_set (c, r, "name_label", xapi_string (c, vm->name_label));
  xapi_set (c, r, "name_description", xapi_string (c, vm->name_description));
  xapi_set (c, r, "power_state", xapi_string (c, vm->power_state));
  xapi_set (c, r, "allowed_operations", allowed_operations (c, vm, vbds));
  xapi_set (c, r, "user_version", xapi_int64 (c, 1));
  xapi_set (c, r, "resident_on",
            run ? xapi_ref (c, c->d->host->uuid)
                : xapi_string (c, XAPI_NULL_REF));
  xapi_set (c, r, "VCPUs_max", xapi_int64 (c, 1));
  xapi_set (c, r, "VCPUs_at_startup", xapi_int64 (c, 1));
  xapi_set (c, r, "actions_after_shutdown", xapi_string (c, "destroy"));
  xapi_set (c, r, "actions_after_reboot", xapi_string (c, "restart"));
  xapi_set (c, r, "actions_after_crash", xapi_string (c, "restart"));
  a = xmlrpc_array_new (c->env);
  for (guint i = 0; i < vbds->len; i++)
    xapi_append (c, a, xapi_ref (c, vbds->pdata[i]));
  xapi_set (c, r, "VBDs", a);
  xapi_set (c, r, "other_config", xapi_string_map (c, oc));
  xapi_set (c, r, "domid",
            xapi_int64 (c, run ? state_vm_number (c->d->host->state, vm->uuid)
                               : -1));
  xapi_set (c, r, "has_vendor_device", xapi_bool (c, false));
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
  g_autoptr (GHashTable) oc = host_oc_parse (NULL);
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
  vm.other_config = oc_text = host_oc_print (oc);
  vm.uuid = uuid;
  vm.name_label = label ? label : "";
  vm.name_description = desc ? desc : "";
  vm.power_state = "Halted";
  vm.created = g_get_real_time () / G_USEC_PER_SEC;
  if (state_vm_add (c->d->host->state, &vm) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the VM", NULL);
    return NULL;
  }
  g_message ("VM.create: %s (%s)", uuid, vm.name_label);
  return xapi_ref (c, uuid);
}


static xmlrpc_value *
vm_destroy (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vm");
  g_autoptr (state_vm) vm = ref ? xapi_vm_by_ref (c, ref) : NULL;
  char **err = NULL;

  if (vm == NULL)
    return NULL;
  if (host_vm_destroy (c->d->host, vm->uuid, &err) == -1) {
    xapi_fail_err (c, err);
    return NULL;
  }
  return xapi_void (c);
}

/* VM.start(session, vm[, start_paused, force]). */
static xmlrpc_value *
vm_start (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vm");
  g_autoptr (state_vm) vm = ref ? xapi_vm_by_ref (c, ref) : NULL;
  char **err = NULL;

  if (vm == NULL)
    return NULL;
  if (host_vm_start (c->d->host, vm->uuid, &err) == -1) {
    xapi_fail_err (c, err);
    return NULL;
  }
  return xapi_void (c);
}

/* VM.shutdown / clean_shutdown / hard_shutdown(session, vm). */
static xmlrpc_value *
vm_shutdown (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vm");
  g_autoptr (state_vm) vm = ref ? xapi_vm_by_ref (c, ref) : NULL;
  char **err = NULL;

  if (vm == NULL)
    return NULL;
  if (host_vm_shutdown (c->d->host, vm->uuid, &err) == -1) {
    xapi_fail_err (c, err);
    return NULL;
  }
  return xapi_void (c);
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
  oc = host_oc_parse (vm->other_config);
  if (!xapi_change_other_config (c, args, "VM", ref, oc))
    return NULL;
  text = host_oc_print (oc);
  if (state_vm_set_other_config (c->d->host->state, vm->uuid, text) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the VM's other_config",
               NULL);
    return NULL;
  }
  return xapi_void (c);
}

static const struct xapi_method methods[] = {
  { "create", 2, 2, false, vm_create },
  { "migrate_receive", 4, 4, false, xapi_vm_migrate_receive },
  { "migrate", 5, 5, false, xapi_vm_migrate },
  { "migrate_send", 7, 9, false, xapi_vm_migrate_send },
  { "assert_can_migrate", 7, 8, false, xapi_vm_assert_can_migrate },
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
