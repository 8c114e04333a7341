/* Starting and stopping VMs' disk servers (vms.h). */

#include <string.h>

#include "nbdkit.h"
#include "vms.h"

static bool
is_running (const struct state_vm *vm)
{
  return strcmp (vm->power_state, "Running") == 0;
}

/* The VM UUID, if in power state WANT; NULL with *ERR. */
static struct state_vm *
vm_in_state (struct host *h, const char *uuid, const char *want, char ***err)
{
  struct state_vm *vm = state_vm_get (h->state, uuid);
  g_autofree char *ref = host_ref (uuid);

  if (vm == NULL) {
    host_err_set (err, "HANDLE_INVALID", "VM", ref, NULL);
    return NULL;
  }
  if (strcmp (vm->power_state, want) != 0) {
    host_err_set (err, "VM_BAD_POWER_STATE", ref, want, vm->power_state,
                  NULL);
    state_vm_free (vm);
    return NULL;
  }
  return vm;
}

/* Stop serving one VBD (and the target of a live move, if any).  False
 * if the VBD's record could not be written (the servers are gone). */
static bool
stop_vbd (struct host *h, struct state_vbd *b)
{
  nbdkit_stop (b->pid, b->nbd_socket, b->control_socket, NBDKIT_STOP_GRACE);
  if (b->target_pid)
    nbdkit_stop (b->target_pid, b->target_socket, NULL, NBDKIT_STOP_GRACE);
  g_clear_pointer (&b->nbd_socket, g_free);
  g_clear_pointer (&b->control_socket, g_free);
  g_clear_pointer (&b->target_socket, g_free);
  b->pid = b->target_pid = 0;
  if (state_vbd_update (h->state, b) == -1) {
    g_warning ("VBD %s: cannot record that it is no longer served",
               b->uuid);
    return false;
  }
  return true;
}

/* Serve one VBD's VDI; -1 with *ERR. */
static int
start_vbd (struct host *h, struct state_vbd *b, char ***err)
{
  struct host_sr *s = NULL;
  struct sr_vdi *v = host_find_vdi (h, b->vdi, &s);
  g_autofree char *ref = host_ref (b->vdi);
  g_autoptr (GError) error = NULL;
  struct nbdkit_served sv = { 0 };
  bool ro = g_strcmp0 (b->mode, "RO") == 0;
  int r;

  if (v == NULL) {
    host_err_set (err, "VDI_MISSING", HOST_REF_PREFIX "NULL", ref, NULL);
    return -1;
  }
  if (v->read_only && !ro) {
    sr_vdi_free (v);
    host_err_set (err, "VDI_READ_ONLY", ref, NULL);
    return -1;
  }
  r = nbdkit_serve_image (h, b->uuid, s, v, true, ro, &sv, &error);
  sr_vdi_free (v);
  if (r == -1) {
    host_err_set (err, "INTERNAL_ERROR", error->message, NULL);
    return -1;
  }
  g_free (b->nbd_socket);
  g_free (b->control_socket);
  b->nbd_socket = sv.socket;
  b->control_socket = sv.control;
  b->pid = sv.pid;
  if (state_vbd_update (h->state, b) == -1) {
    stop_vbd (h, b);
    host_err_set (err, "INTERNAL_ERROR", "cannot record the VBD's disk server",
                  NULL);
    return -1;
  }
  return 0;
}

int
host_vm_start (struct host *h, const char *uuid, char ***err)
{
  g_autoptr (state_vm) vm = vm_in_state (h, uuid, "Halted", err);
  g_autoptr (GPtrArray) uuids = NULL;
  g_autoptr (GPtrArray) started = NULL;
  g_autoptr (GPtrArray) claimed = NULL;
  int r = 0;

  if (vm == NULL)
    return -1;
  uuids = state_list (h->state, "vbds", "vm", vm->uuid);
  started = g_ptr_array_new_with_free_func ((GDestroyNotify)state_vbd_free);
  claimed = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < uuids->len && r == 0; i++) {
    struct state_vbd *b = state_vbd_get (h->state, uuids->pdata[i]);

    if (b == NULL)
      continue;
    /* A VDI being imported, copied or moved cannot be served; the claim
     * is held only while starting. */
    if (host_vdi_claim_or_fail (h, b->vdi, "attach", err) == -1) {
      state_vbd_free (b);
      r = -1;
      break;
    }
    g_ptr_array_add (claimed, g_strdup (b->vdi));
    if (start_vbd (h, b, err) == -1) {
      state_vbd_free (b);
      r = -1;
      break;
    }
    g_ptr_array_add (started, b);
  }
  if (r == 0
      && state_vm_set_power_state (h->state, vm->uuid, "Running") == -1) {
    host_err_set (err, "INTERNAL_ERROR", "cannot record the VM's power state",
                  NULL);
    r = -1;
  }
  if (r == -1) {
    /* All or nothing: stop what started. */
    for (guint i = 0; i < started->len; i++)
      stop_vbd (h, started->pdata[i]);
  }
  for (guint i = 0; i < claimed->len; i++)
    host_vdi_release (h, claimed->pdata[i]);
  if (r == 0)
    g_message ("VM.start: %s (%u disks)", vm->uuid, started->len);
  return r;
}

int
host_vm_shutdown (struct host *h, const char *uuid, char ***err)
{
  g_autoptr (state_vm) vm = vm_in_state (h, uuid, "Running", err);
  g_autoptr (GPtrArray) uuids = NULL;
  g_autoptr (GPtrArray) claimed = NULL;
  int r = 0;

  if (vm == NULL)
    return -1;
  uuids = state_list (h->state, "vbds", "vm", vm->uuid);
  claimed = g_ptr_array_new_with_free_func (g_free);
  /* Not while one of its disks is moving: the move needs its nbdkit. */
  for (guint i = 0; i < uuids->len && r == 0; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (h->state, uuids->pdata[i]);

    if (b == NULL)
      continue;
    if (host_vdi_claim_or_fail (h, b->vdi, "detach", err) == -1)
      r = -1;
    else
      g_ptr_array_add (claimed, g_strdup (b->vdi));
  }
  if (r == 0) {
    for (guint i = 0; i < uuids->len; i++) {
      g_autoptr (state_vbd) b = state_vbd_get (h->state, uuids->pdata[i]);

      if (b && !stop_vbd (h, b))
        r = -1;
    }
    /* The servers are stopped whatever the records say: Halted is the
     * truth, and a record left saying otherwise is mended at start
     * (host_vms_reconcile). */
    if (state_vm_set_power_state (h->state, vm->uuid, "Halted") == -1)
      r = -1;
    if (r == -1)
      host_err_set (err, "INTERNAL_ERROR",
                    "the disks are stopped but cannot be recorded so", NULL);
    else
      g_message ("VM.shutdown: %s", vm->uuid);
  }
  for (guint i = 0; i < claimed->len; i++)
    host_vdi_release (h, claimed->pdata[i]);
  return r;
}

int
host_vm_destroy (struct host *h, const char *uuid, char ***err)
{
  g_autoptr (state_vm) vm = vm_in_state (h, uuid, "Halted", err);
  g_autoptr (GPtrArray) vbds = NULL;

  if (vm == NULL)
    return -1;
  /* As xapi: the VBDs go with the VM, the VDIs stay. */
  vbds = state_list (h->state, "vbds", "vm", vm->uuid);
  for (guint i = 0; i < vbds->len; i++) {
    if (state_vbd_remove (h->state, vbds->pdata[i]) == -1) {
      host_err_set (err, "INTERNAL_ERROR", "cannot remove the VM's VBDs",
                    NULL);
      return -1;
    }
  }
  if (state_vm_remove (h->state, vm->uuid) == -1) {
    host_err_set (err, "INTERNAL_ERROR", "cannot remove the VM", NULL);
    return -1;
  }
  g_message ("VM.destroy: %s", vm->uuid);
  return 0;
}

struct state_vbd *
host_vdi_serving_vbd (struct host *h, const char *vdi_uuid)
{
  g_autoptr (GPtrArray) vbds
      = state_list (h->state, "vbds", "vdi", vdi_uuid);

  for (guint i = 0; i < vbds->len; i++) {
    struct state_vbd *b = state_vbd_get (h->state, vbds->pdata[i]);

    if (b && b->pid > 0 && b->control_socket
        && nbdkit_serving (b->pid, b->nbd_socket))
      return b;
    state_vbd_free (b);
  }
  return NULL;
}

void
host_vms_reconcile (struct host *h)
{
  g_autoptr (GPtrArray) vms = state_list (h->state, "vms", NULL, NULL);

  for (guint i = 0; i < vms->len; i++) {
    g_autoptr (state_vm) vm = state_vm_get (h->state, vms->pdata[i]);
    g_autoptr (GPtrArray) vbds = NULL;
    bool all_alive = true;

    if (vm == NULL || !is_running (vm))
      continue;
    vbds = state_list (h->state, "vbds", "vm", vm->uuid);
    for (guint j = 0; j < vbds->len; j++) {
      g_autoptr (state_vbd) b = state_vbd_get (h->state, vbds->pdata[j]);

      if (b && !nbdkit_serving (b->pid, b->nbd_socket))
        all_alive = false;
    }
    if (all_alive) {
      g_message ("VM %s: still running (%u disks served)", vm->uuid,
                 vbds->len);
      continue;
    }
    g_warning ("VM %s: a disk server is gone: the VM is halted", vm->uuid);
    for (guint j = 0; j < vbds->len; j++) {
      g_autoptr (state_vbd) b = state_vbd_get (h->state, vbds->pdata[j]);

      if (b)
        stop_vbd (h, b);
    }
    if (state_vm_set_power_state (h->state, vm->uuid, "Halted") == -1)
      g_warning ("VM %s: cannot record it halted", vm->uuid);
  }
}
