/* VMs as a storage host sees them: a name and disks, served while the
 * VM runs (vms.c).
 *
 * vdimotiond does not run guests.  Starting a VM serves each of its
 * disks (VBDs) with its own nbdkit (nbdkit.h): nbdkit-vdi-plugin over the
 * VDI's image and nbdkit-mirror-filter on top, on a Unix socket that is
 * where a hypervisor (or fio) attaches; the mirror filter is what lets a
 * running VM's disk move without the VM noticing.  Stopping it stops
 * them.  A VM is "Running" while its disks are served.
 *
 * Errors are XenAPI's (host_err_set): VM_BAD_POWER_STATE, VDI_MISSING,
 * VDI_READ_ONLY, OTHER_OPERATION_IN_PROGRESS, INTERNAL_ERROR.
 */
#ifndef VDM_VMS_H
#define VDM_VMS_H

#include "host.h"

/* Serve every disk of VM UUID, all or nothing, and record it Running.
 * -1 with *ERR. */
int host_vm_start (struct host *h, const char *uuid, char ***err);
/* Stop serving its disks and record it Halted; refused while one of
 * its disks has an operation (a move needs its nbdkit).  -1 with *ERR. */
int host_vm_shutdown (struct host *h, const char *uuid, char ***err);
/* Forget a halted VM and its VBDs (its VDIs stay, as in xapi). */
int host_vm_destroy (struct host *h, const char *uuid, char ***err);
/* The VBD whose disk server (nbdkit with the mirror filter, its control
 * socket recorded) serves VDI VDI_UUID now, or NULL.  state_vbd_free it. */
struct state_vbd *host_vdi_serving_vbd (struct host *h, const char *vdi_uuid);
/* At start: make the VM records agree with the nbdkit processes that
 * really run (they outlive a restart; a VM that lost one is halted). */
void host_vms_reconcile (struct host *h);

#endif /* VDM_VMS_H */
