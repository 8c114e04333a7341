/* The VBD class: a VM's disk, the link between a VM and a VDI.
 *
 * While the VM runs, other_config["nbd-socket"] is the Unix socket of the
 * nbdkit serving the VDI (class-vm.c); that is where a hypervisor
 * attaches.  VBDs are created and destroyed only while their VM is
 * halted (no hot-plug). */

#include <string.h>

#include "xapi.h"

static bool
vbd_list (struct xapi_call *c, GPtrArray *refs)
{
  g_autoptr (GPtrArray) uuids = state_list (c->d->host->state, "vbds", NULL, NULL);

  for (guint i = 0; i < uuids->len; i++)
    g_ptr_array_add (
        refs, g_strconcat (XAPI_REF_PREFIX, (char *)uuids->pdata[i], NULL));
  return true;
}

static struct state_vbd *
vbd_by_ref (struct xapi_call *c, const char *ref)
{
  const char *uuid = xapi_ref_uuid (ref);
  struct state_vbd *b = uuid ? state_vbd_get (c->d->host->state, uuid) : NULL;

  if (b == NULL)
    xapi_fail (c, "HANDLE_INVALID", "VBD", ref ? ref : "", NULL);
  return b;
}

static xmlrpc_value *
vbd_record (struct xapi_call *c, const char *ref)
{
  g_autoptr (state_vbd) b = vbd_by_ref (c, ref);
  xmlrpc_value *r, *oc;
  bool attached;

  if (b == NULL)
    return NULL;
  attached = b->pid > 0 && b->nbd_socket;
  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, b->uuid));
  xapi_set (c, r, "allowed_operations", xapi_empty_array (c));
  xapi_set (c, r, "current_operations", xapi_empty_struct (c));
  xapi_set (c, r, "VM", xapi_ref (c, b->vm));
  xapi_set (c, r, "VDI", xapi_ref (c, b->vdi));
  xapi_set (c, r, "device", xapi_string (c, ""));
  xapi_set (c, r, "userdevice", xapi_string (c, b->userdevice));
  xapi_set (c, r, "bootable", xapi_bool (c, false));
  xapi_set (c, r, "mode", xapi_string (c, b->mode));
  xapi_set (c, r, "type", xapi_string (c, "Disk"));
  xapi_set (c, r, "unpluggable", xapi_bool (c, true));
  xapi_set (c, r, "storage_lock", xapi_bool (c, false));
  xapi_set (c, r, "empty", xapi_bool (c, false));
  xapi_set (c, r, "currently_attached", xapi_bool (c, attached));
  xapi_set (c, r, "status_code", xapi_int64 (c, 0));
  xapi_set (c, r, "status_detail", xapi_string (c, ""));
  xapi_set (c, r, "runtime_properties", xapi_empty_struct (c));
  xapi_set (c, r, "qos_algorithm_type", xapi_string (c, ""));
  xapi_set (c, r, "qos_algorithm_params", xapi_empty_struct (c));
  oc = xmlrpc_struct_new (c->env);
  if (attached)
    xapi_set (c, oc, "nbd-socket", xapi_string (c, b->nbd_socket));
  xapi_set (c, r, "other_config", oc);
  return r;
}

/* The VM of a VBD record, which must be halted; NULL after xapi_fail. */
static struct state_vm *
halted_vm (struct xapi_call *c, const char *vm_ref)
{
  const char *uuid = xapi_ref_uuid (vm_ref);
  struct state_vm *vm = uuid ? state_vm_get (c->d->host->state, uuid) : NULL;

  if (vm == NULL) {
    xapi_fail (c, "HANDLE_INVALID", "VM", vm_ref ? vm_ref : "", NULL);
    return NULL;
  }
  if (strcmp (vm->power_state, "Halted") != 0) {
    xapi_fail (c, "VM_BAD_POWER_STATE", vm_ref, "Halted", vm->power_state,
               NULL);
    state_vm_free (vm);
    return NULL;
  }
  return vm;
}

static bool
device_used (struct xapi_call *c, GPtrArray *vbds, const char *dev)
{
  for (guint i = 0; i < vbds->len; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (c->d->host->state, vbds->pdata[i]);

    if (b && g_strcmp0 (b->userdevice, dev) == 0)
      return true;
  }
  return false;
}

/* userdevice "autodetect" (or absent): the lowest free number. */
static char *
pick_userdevice (struct xapi_call *c, const char *vm_uuid, const char *want)
{
  g_autoptr (GPtrArray) vbds = state_list (c->d->host->state, "vbds", "vm", vm_uuid);

  if (want && strcmp (want, "autodetect") != 0) {
    if (!device_used (c, vbds, want))
      return g_strdup (want);
    xapi_fail (c, "DEVICE_ALREADY_EXISTS", want, NULL);
    return NULL;
  }
  for (guint n = 0;; n++) {
    g_autofree char *cand = g_strdup_printf ("%u", n);

    if (!device_used (c, vbds, cand))
      return g_steal_pointer (&cand);
  }
}

/* VBD.create(session, record) → ref: VM, VDI, userdevice and mode are
 * used (type must be "Disk" if given; CDs are not storage). */
static xmlrpc_value *
vbd_create (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *vm_ref = NULL;
  g_autofree char *vdi_ref = NULL;
  g_autofree char *userdevice = NULL;
  g_autofree char *mode = NULL;
  g_autofree char *type = NULL;
  g_autofree char *uuid = g_uuid_string_random ();
  g_autofree char *dev = NULL;
  g_autoptr (state_vm) vm = NULL;
  struct sr_vdi *v;
  struct state_vbd b = { 0 };

  if (!xapi_is_record (c, args[1], "args"))
    return NULL;
  vm_ref = xapi_member_string (c, args[1], "VM");
  vdi_ref = xapi_member_string (c, args[1], "VDI");
  userdevice = xapi_member_string (c, args[1], "userdevice");
  mode = xapi_member_string (c, args[1], "mode");
  type = xapi_member_string (c, args[1], "type");
  if (xapi_failed (c))
    return NULL;
  if (type && g_ascii_strcasecmp (type, "Disk") != 0) {
    xapi_fail (c, "VBD_NOT_REMOVABLE_MEDIA", "only type Disk", type, NULL);
    return NULL;
  }
  if (mode && strcmp (mode, "RW") != 0 && strcmp (mode, "RO") != 0) {
    xapi_fail (c, "INVALID_VALUE", "mode", mode, NULL);
    return NULL;
  }
  if ((vm = halted_vm (c, vm_ref)) == NULL)
    return NULL;
  if ((v = xapi_vdi_by_ref (c, vdi_ref, NULL)) == NULL)
    return NULL;
  if ((dev = pick_userdevice (c, vm->uuid, userdevice)) == NULL) {
    sr_vdi_free (v);
    return NULL;
  }
  b.uuid = uuid;
  b.vm = vm->uuid;
  b.vdi = v->uuid;
  b.userdevice = dev;
  b.mode = mode ? mode : "RW";
  if (state_vbd_add (c->d->host->state, &b) == -1)
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the VBD", NULL);
  else
    g_message ("VBD.create: %s: VM %s disk %s = VDI %s", uuid, vm->uuid, dev,
               v->uuid);
  sr_vdi_free (v);
  return xapi_failed (c) ? NULL : xapi_ref (c, uuid);
}

static xmlrpc_value *
vbd_destroy (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vbd");
  g_autoptr (state_vbd) b = ref ? vbd_by_ref (c, ref) : NULL;
  g_autofree char *vm_ref = NULL;
  g_autoptr (state_vm) vm = NULL;

  if (b == NULL)
    return NULL;
  vm_ref = g_strconcat (XAPI_REF_PREFIX, b->vm, NULL);
  if ((vm = halted_vm (c, vm_ref)) == NULL)
    return NULL;
  if (state_vbd_remove (c->d->host->state, b->uuid) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot remove the VBD", NULL);
    return NULL;
  }
  return xapi_void (c);
}

static const struct xapi_method methods[] = {
  { "create", 2, 2, false, vbd_create },
  { "destroy", 2, 2, false, vbd_destroy },
  { NULL },
};

const struct xapi_class xapi_class_vbd = {
  .name = "VBD",
  .methods = methods,
  .list = vbd_list,
  .get_record = vbd_record,
};
