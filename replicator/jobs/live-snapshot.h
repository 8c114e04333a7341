/* VDI.snapshot of a VDI a running VM uses: a live snapshot, through the
 * mirror filter's pause and resume (nbdkit-mirror-filter(1)).
 *
 * Design
 * - The VM's disk is an nbdkit with the mirror filter (vms.h); the image
 *   it writes is either the one its plugin opened, or, after an earlier
 *   live snapshot (or a live move), the one a second nbdkit serves that
 *   the filter pivoted to (the VBD's target).
 * - Steps: claim the VDI; `pause` (the guest's requests in flight drain,
 *   the disk is flushed, new requests wait, they do not fail); the SR's
 *   snapshot (sr_vdi_snapshot: the image being written is renamed into
 *   the snapshot, an empty leaf over it takes the VDI's name, and the
 *   VDI's changed-block log is rotated in place, the filter keeping its
 *   descriptor); a new nbdkit serving the new leaf (nbdkit.h, named
 *   "<snapshot uuid>-leaf" in the run dir); `resume target=<it>
 *   pivot=true`: the guest's requests go on, into the new leaf; the VBD
 *   records that nbdkit as its target, and the previous target (if any)
 *   stops.  The guest waits for the length of one SR snapshot and one
 *   nbdkit start, well under the filter's mirror-pause-timeout.
 * - Failure before the SR snapshot: plain `resume`, nothing changed.
 *   After it (the leaf's nbdkit cannot start, or resume cannot connect
 *   it, twice): plain `resume`, the guest goes on on the image it wrote;
 *   its data stays whole (the VDI's empty leaf reads through to that
 *   image), but the snapshot is no longer frozen: it is marked
 *   (other_config "vdimotion-snapshot-invalid" = why) and the call
 *   fails naming it.  A daemon killed while the filter is paused: the
 *   pause times out and the guest goes on the same way.
 *
 * - A VBD pivoted onto its leaf's nbdkit cannot be moved live yet (the
 *   filter refuses `start` after a pivot): VDI.pool_migrate of it fails
 *   cleanly (MIRROR_FAILED) until the VM is restarted.
 *
 * Errors are XenAPI's (host_err_set): OTHER_OPERATION_IN_PROGRESS (a
 * move or another snapshot of the VDI runs), the SR's (host_err_sr),
 * else INTERNAL_ERROR with the filter's or nbdkit's words.
 */
#ifndef VDM_LIVE_SNAPSHOT_H
#define VDM_LIVE_SNAPSHOT_H

#include "host.h"

/* Snapshot VDI V of SR S, attached to a running VM, without stopping
 * the VM.  The snapshot's uuid (g_free), or NULL with *ERR. */
char *host_vdi_snapshot_live (struct host *h, struct host_sr *s,
                              const struct sr_vdi *v, char ***err);

#endif /* VDM_LIVE_SNAPSHOT_H */
