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
 *   VDI to a running VM (cbt-log=, given whether CBT is on or not): the
 *   filter takes a log that appears while it serves, so enable_cbt and
 *   disable_cbt work on a running VM's disk too, as in xapi.
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
 *   VDI_NO_CBT_METADATA (ref)                 no log, or no chain of
 *                                             logs between two VDIs
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

#endif /* VDM_CBT_H */
