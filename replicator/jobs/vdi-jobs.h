/* The VDI jobs (jobs of kinds "copy" and "migrate", jobs.h): VDI.copy
 * and VDI.pool_migrate, and destroying and snapshotting a VDI.
 *
 * Errors are XenAPI's (host_err_set): VDI_IN_USE,
 * OTHER_OPERATION_IN_PROGRESS, INTERNAL_ERROR and the SR's (host_err_sr).
 */
#ifndef VDM_VDI_JOBS_H
#define VDM_VDI_JOBS_H

#include <stdbool.h>

#include <glib.h>

#include "host.h"
#include "state.h"

/* Queue a copy (MIGRATE false) or a move of VDI UUID into SR DST, as an
 * image of FORMAT.  A VDI a running VM uses moves live through its
 * mirror filter, and cannot be copied.  The VDI is claimed until the job
 * ends.  The task's uuid (g_free), or NULL with *ERR. */
char *host_vdi_move_submit (struct host *h, const char *uuid,
                            struct host_sr *dst, enum vdisk_format format,
                            bool migrate, char ***err);

/* Moving a running VM's disk onto another VDI through its mirror filter
 * (the live half of VDI.pool_migrate, and of an SR evacuation's live
 * leaf).  The VBD's mirror filter mirrors into a second nbdkit serving
 * the new VDI, and once in sync pivots: from then on the VM's writes go
 * to the new VDI, on the same socket. */
struct vdi_live_ops
{
  bool (*cancelled) (void *opaque); /* checked at every poll */
  void (*progress) (double fraction, void *opaque); /* the sync, 0..1 */
  /* The target is served and the VBD records it: record what the
   * caller needs after a crash (the move is under way) before the
   * mirror starts; -1 with *ERROR undoes the move. */
  int (*mirroring) (void *opaque, GError **error);
  /* The pivot happened: the point of no return.  Record it (a failure
   * is the caller's to log: the next start finds the pivot through
   * vdi_live_recover). */
  void (*pivoted) (void *opaque);
};

/* Move the disk of VBD (uuid; its VM running) onto DST, a VDI of DST_SR
 * made for it (not served yet), and point the VBD at it.  TOP: DST is a
 * new leaf over copies of the disk's lower layers, so only the top
 * layer's blocks are synced (the filter's sync=top; a filter that cannot
 * do it syncs every block, which is correct too); else every block.
 * WHAT names the move in the log ("task <uuid>").  0 once pivoted (the
 * VBD names DST unless that could not be recorded, which is logged); -1
 * with *ERR (g_free) after undoing it: the VM still runs on its old VDI
 * with every write.  The disk's servers are recorded at every step
 * (the VBD's record and <run-dir>/<vbd>.move), so that after a stop
 * vdi_live_recover finishes or undoes the move, leaving no nbdkit that
 * no record names. */
int vdi_live_move (struct host *h, const char *what, const char *vbd,
                   struct host_sr *dst_sr, const struct sr_vdi *dst, bool top,
                   const struct vdi_live_ops *ops, void *opaque, char **err);
/* After a restart: finish or undo the live move of VBD's disk onto
 * DST_VDI that the daemon's stop interrupted (vdi-jobs.c says how each
 * point is found).  PIVOT_RECORDED: the caller's record says the pivot
 * happened; else the mirror filter is asked.  Pivoted: the VBD names
 * DST_VDI and the move's target nbdkit, the disk's previous target (a
 * live snapshot's leaf, an earlier move's target) stopped: 1, or -1 if
 * the VBD's record could not be written (logged; calling again finishes
 * it).  Not pivoted: the mirror is dropped, the move's target stopped,
 * the VBD's disk is what it was before the move (its previous target
 * recorded again): 0.  Nothing of the move runs or is recorded after
 * it, except the new VDI, the caller's to remove when undone. */
int vdi_live_recover (struct host *h, const char *vbd, const char *dst_vdi,
                      bool pivot_recorded);
/* Is a live move of VBD's disk under way (or left by a stop, for
 * vdi_live_recover): from before its target starts to its end. */
bool vdi_live_under_way (struct host *h, const char *vbd);
/* After the pivot (or for a halted VM's disk that moved): B's VDI is
 * DST_VDI.  False (logged) if that could not be recorded. */
bool vdi_live_commit (struct host *h, struct state_vbd *b,
                      const char *dst_vdi);

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
