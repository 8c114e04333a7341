/* XenAPI's changed-block tracking, the brain's side: VDI.enable_cbt,
 * VDI.disable_cbt, VDI.list_changed_blocks and VDI.data_destroy over
 * the SR's changed-block logs (sr.h, cbt-log.h).
 *
 * Design
 * - Each call checks what xapi's VDI operation checks
 *   (xapi_vdi.ml's check_operation_error), in xapi's order, with xapi's
 *   error codes and parameters, then calls the SR.  The VDI is claimed
 *   for the call's length (host_vdi_claim: a copy, move or destroy of
 *   it waits its turn, OTHER_OPERATION_IN_PROGRESS).
 * - A log is marked by the mirror filter of the nbdkit that serves the
 *   VDI to a running VM: the filter takes it at start if it is there
 *   (cbt-log=, given whether CBT is on or not), and is told while it
 *   serves, so enable_cbt and disable_cbt work on a running VM's disk
 *   too, as in xapi (nbdkit-mirror-filter(1), cbt-open and cbt-close):
 *   enable_cbt creates the log, then has the filter take it (cbt-open
 *   log=PATH, the VDI's log as it is named now: after a live move that
 *   is another name than the filter's cbt-log=), and replies only
 *   then, so every write acknowledged after the reply is marked; if the
 *   filter cannot take it, CBT goes off again and the call fails (a log
 *   nobody marks would give a wrong incremental); a filter older than
 *   cbt-open (a disk server an older vdimotion started, which outlived
 *   an upgrade) refuses it as unknown but takes the log by itself.  disable_cbt flags the
 *   log disabled under its writer (it says nothing from then on), has
 *   the filter let go (cbt-close) and removes it.  Both hold the VDI's
 *   claim, so no VM starts or stops the disk in between.  A daemon
 *   killed between the SR's change and the filter's is mended at start
 *   (host_cbt_reconcile).  The other changes of a served disk's log need
 *   no word to the filter: a snapshot rotates it in place while the
 *   filter is paused (live-snapshot.c), a live move within a filesystem
 *   renames the file the filter holds (sr_vdi_cbt_follow), a
 *   migration's commit merges into it in place (sr_vdi_cbt_merge), and
 *   list_changed_blocks and data_destroy refuse a running VM's disk
 *   (VDI_IN_USE).  Two other logs are made for a served disk and taken
 *   with host_cbt_open_on: a migration's destination armed
 *   (host_migration_cbt_arm), and the new VDI's log of a live move to
 *   another filesystem (host_cbt_follow).
 * - VDI_CBT_ENABLED, which xapi raises for moves of a VDI with CBT, is
 *   never raised: the log follows the disk (sr.h, sr_vdi_cbt_import).
 *
 * Errors are XenAPI's error_info (host_err_set), refs as host_ref
 * writes them:
 *   HANDLE_INVALID (VDI, ref)                 no such VDI
 *   VDI_INCOMPATIBLE_TYPE (ref, cbt_metadata) the VDI has no data left
 *   OPERATION_NOT_ALLOWED (why)               a snapshot's CBT; the
 *                                             data_destroy of a VDI that
 *                                             is not a snapshot
 *   VDI_NO_CBT_METADATA (ref[, why])          no log, or no chain of
 *                                             logs between two VDIs
 *                                             (why: the walk's reason)
 *   VDI_IN_USE (ref, operation)               list_changed_blocks' vdi_to
 *                                             or data_destroy's VDI
 *                                             attached to a running VM
 *   OTHER_OPERATION_IN_PROGRESS (VDI, ref, operation)
 *   and the SR's (host_err_sr), else INTERNAL_ERROR.
 */
#ifndef VDM_CBT_H
#define VDM_CBT_H

#include "host.h"

/* VDI.enable_cbt(self) and VDI.disable_cbt(self): idempotent (CBT
 * already in that state: nothing changes, no error).  A snapshot:
 * OPERATION_NOT_ALLOWED "VDI is a snapshot: <ref>".  0, or -1 with
 * *ERR. */
int host_vdi_enable_cbt (struct host *h, const char *uuid, char ***err);
int host_vdi_disable_cbt (struct host *h, const char *uuid, char ***err);

/* VDI.list_changed_blocks(vdi_from, vdi_to): the 64 KiB blocks written
 * between snapshot FROM and TO (cbt-log.h's walk), as xapi sends them:
 * base64 of a bitmap, block i the bit (7 - i % 8) of byte i / 8.  TO
 * must not be attached to a running VM (VDI_IN_USE, as xapi: its log
 * still grows).  FROM may be a cbt_metadata VDI (that is what its log
 * is kept for).  The string (g_free), or NULL with *ERR. */
char *host_vdi_list_changed_blocks (struct host *h, const char *from,
                                    const char *to, char ***err);

/* VDI.data_destroy(self): the snapshot's data goes, its record and log
 * stay; its type becomes cbt_metadata (sr_vdi_data_destroy).  Already
 * cbt_metadata: nothing to do.  Not a snapshot: OPERATION_NOT_ALLOWED
 * "VDI is not a snapshot: <ref>"; without CBT: VDI_NO_CBT_METADATA;
 * attached to a running VM: VDI_IN_USE.  0, or -1 with *ERR. */
int host_vdi_data_destroy (struct host *h, const char *uuid, char ***err);

/* The mirror filter on control socket CONTROL, which serves VDI UUID of
 * S, takes the VDI's log (cbt-open log=PATH): every write it
 * acknowledges after this returns is marked.  For a log made while its
 * disk is served (enable_cbt, a migration's arm).  FALSE with ERROR:
 * CBT is off for UUID, or the filter's refusal (control-client.h). */
gboolean host_cbt_open_on (struct host_sr *s, const char *uuid,
                           const char *control, GError **error);

/* The changed-block log follows VDI FROM of FROM_S to TO of TO_S, a
 * copy of it (KEEP_SOURCE) or a move (sr_vdi_cbt_follow: renamed on one
 * filesystem, merged into TO's across).  A live move across filesystems,
 * whose running VM's filter still marks FROM's log after the pivot, is
 * carried with that filter (the one serving the VBD that names TO, or
 * still FROM): FROM's log merged into TO's, the filter told to take
 * TO's (cbt-open; from its reply every write is marked there), merged
 * again (the marks made in between), FROM's removed.  Each step may be
 * done again after a crash (cbt.c says why none loses a mark).  If the
 * filter cannot take TO's log, or the second merge fails, CBT goes off
 * for TO (a log nobody marks would give a wrong incremental): FALSE
 * with ERROR saying so.  FALSE with ERROR too when the SR cannot carry
 * it (sr_vdi_cbt_follow's error: TO then has no log, or one that says
 * no less than FROM's or chains to nothing, a full backup). */
gboolean host_cbt_follow (struct host *h, struct host_sr *from_s,
                          const char *from, struct host_sr *to_s,
                          const char *to, bool keep_source, GError **error);

/* At start, before serving: the filter of every running VM's disk made
 * to agree with its VDI's record (the daemon may have been killed
 * between the two): a VDI with CBT has its log taken (if the filter
 * cannot take it, CBT goes off, logged), a log left disabled under its
 * writer is let go and removed. */
void host_cbt_reconcile (struct host *h);

#endif /* VDM_CBT_H */
