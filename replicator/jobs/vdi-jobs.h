/* The VDI jobs (jobs of kinds "copy" and "migrate", jobs.h): VDI.copy
 * and VDI.pool_migrate, and destroying and snapshotting a VDI.
 *
 * Errors are XenAPI's (host_err_set): VDI_IN_USE,
 * OTHER_OPERATION_IN_PROGRESS, INTERNAL_ERROR and the SR's (host_err_sr).
 */
#ifndef VDM_VDI_JOBS_H
#define VDM_VDI_JOBS_H

#include <stdbool.h>

#include "host.h"

/* Queue a copy (MIGRATE false) or a move of VDI UUID into SR DST, as an
 * image of FORMAT.  A VDI a running VM uses moves live through its
 * mirror filter, and cannot be copied.  The VDI is claimed until the job
 * ends.  The task's uuid (g_free), or NULL with *ERR. */
char *host_vdi_move_submit (struct host *h, const char *uuid,
                            struct host_sr *dst, enum vdisk_format format,
                            bool migrate, char ***err);

/* Destroy VDI UUID of SR S (not while a running VM uses it or another
 * operation runs on it).  -1 with *ERR. */
int host_vdi_destroy (struct host *h, struct host_sr *s, const char *uuid,
                      char ***err);

/* Snapshot VDI UUID of SR S (XenAPI's VDI.snapshot, sr_vdi_snapshot):
 * its current content is frozen into a new read-only VDI with the same
 * name label (is_snapshot, snapshot_of UUID, snapshot_time now), and UUID
 * goes on as an empty leaf over it.  Not while a running VM uses the VDI
 * (VDI_IN_USE VDI <ref> "snapshot": a live snapshot needs the disk
 * server quiesced) nor while another operation runs on it
 * (OTHER_OPERATION_IN_PROGRESS).  The snapshot's uuid (g_free), or NULL
 * with *ERR (the SR's errors: host_err_sr). */
char *host_vdi_snapshot (struct host *h, struct host_sr *s, const char *uuid,
                         char ***err);

#endif /* VDM_VDI_JOBS_H */
