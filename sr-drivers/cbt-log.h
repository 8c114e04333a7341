/* The changed-block log (CBT): one file per VDI, "<uuid>.cbtlog" beside
 * the VDI's image in its SR, saying which 64 KiB blocks of the virtual
 * disk were written since a point in time (the VDI's last snapshot, or
 * enabling).  The mirror filter marks it (cbt-log=, every guest write
 * before the write is acknowledged), the file SR rotates it at a
 * snapshot and keeps it for a data-destroyed snapshot, and XenAPI's
 * VDI.list_changed_blocks reads it.  File format: vdimotion-sr(5),
 * "CHANGED-BLOCK LOGS"; summary:
 *
 *   offset  size  field (integers little-endian)
 *        0     8  magic "VDMCBTLG"
 *        8     4  version (1)
 *       12     4  block size in bytes (65536, CBT_BLOCK_SIZE)
 *       16     8  virtual size of the disk in bytes
 *       24    40  generation: a uuid, NUL-padded; a new one whenever
 *                 continuity is lost (enabling, a reset)
 *       64    40  predecessor: the uuid of the snapshot this bitmap
 *                 counts from, "" if it counts from enabling or a reset
 *      104     4  flags: bit 0 = consistent (set by a clean close,
 *                 cleared while a writer has the log open); bit 1 =
 *                 disabled (CBT was turned off while a writer held the
 *                 log: the file stays for it, but says nothing)
 *      108     4  reserved, 0
 *      112     8  time of the last reset (unix seconds, 0: never)
 *      120   128  reason of the last reset, NUL-padded text
 *      248  3848  reserved, 0
 *     4096     n  the bitmap: n = ceil (blocks / 8) bytes, blocks =
 *                 ceil (virtual size / 65536)
 *
 * The bitmap is kept in XenAPI's own layout, the one
 * VDI.list_changed_blocks sends in base64: block i is bit (7 - i % 8)
 * of byte i / 8, the most significant bit first (xapi's examples read it
 * with Python's bitstring.BitArray, whose bit 0 is the first byte's most
 * significant bit); bits past the last block are 0.  A set bit = the
 * block was written.
 *
 * Rules (the contract every user of this file keeps):
 * - Snapshot of VDI V into S (cbt_log_rotate): S's log = V's log as it
 *   was (same generation, predecessor and bitmap), consistent; V's log =
 *   an empty bitmap with predecessor S, same generation.
 * - Changed blocks between snapshots A and B (cbt_log_changed_blocks):
 *   the union of the bitmaps from B back along predecessor links,
 *   stopping when the predecessor is A (A's own bitmap excluded).  The
 *   walk fails (CBT_LOG_ERROR ENODATA: XenAPI's VDI_NO_CBT_METADATA) if
 *   it reaches "" or a log of another generation before A.
 * - Unclean stops: a writer holds an open-file-description lock on the
 *   log (fcntl F_OFD_SETLK) as long as it has it open, and the consistent
 *   flag is cleared (and fsynced) before its first mark.  A log whose
 *   flag is clear and that no process holds was left by a writer that
 *   died: whoever opens it next for writing, rotating or copying resets
 *   it first (new generation, predecessor "", every bit set, reason "not
 *   closed cleanly" and the time), so an incremental across the crash
 *   is refused, never wrong; the next backup is a full and can say why.
 * - Durability: a mark is in the file (an atomic OR into the writer's
 *   shared mapping of it, i.e. the file's page cache) before
 *   cbt_log_mark returns, so a writer killed after it
 *   acknowledged a write leaves the mark behind; no fsync while in use
 *   (a host crash resets the log through the flag).  A clean close sets
 *   the flag and fsyncs.
 *
 * Errors: GError in domain CBT_LOG_ERROR whose code is an errno value;
 * messages name the file ("cbt log /srv/sr/ab12....cbtlog: bad magic").
 *   EINVAL  not a log, bad header, an argument out of range
 *   ENOENT  no such log
 *   EBUSY   another writer has the log open
 *   ENODATA no chain of logs between the two snapshots
 *           (XenAPI's VDI_NO_CBT_METADATA)
 *   EIO, ENOSPC, ...  the file's read or write failed
 *
 * Thread safety: cbt_log_mark may be called by many threads at once on
 * one struct cbt_log; the other calls on one struct are not concurrent
 * with anything else on it.  Writers of different processes exclude each
 * other through the lock; rotating a log while a writer has it open is
 * allowed only while the writer is quiesced (no mark running), as a
 * snapshot of a running VDI is.
 */
#ifndef CBT_LOG_H
#define CBT_LOG_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CBT_BLOCK_SIZE 65536
/* A VDI's log is "<uuid>" CBT_LOG_SUFFIX in its SR's directory. */
#define CBT_LOG_SUFFIX ".cbtlog"
#define CBT_LOG_UUID_LEN 36
#define CBT_LOG_REASON_MAX 127

#define CBT_LOG_ERROR (cbt_log_error_quark ())
GQuark cbt_log_error_quark (void);

struct cbt_log;

/* A log's header, as read (cbt_log_get_info, cbt_log_read_info). */
struct cbt_log_info
{
  uint32_t version;
  uint32_t block_size;   /* bytes: CBT_BLOCK_SIZE */
  uint64_t virtual_size; /* bytes */
  uint64_t blocks;       /* bits in the bitmap */
  char generation[CBT_LOG_UUID_LEN + 1];
  char predecessor[CBT_LOG_UUID_LEN + 1]; /* "" : from enabling or a reset */
  bool consistent; /* the flag as on disk */
  bool disabled;   /* CBT turned off under a writer (cbt_log_disable) */
  /* Whether a live writer holds the log (its lock); a log with
   * !consistent && !in_use was left by a writer that died. */
  bool in_use;
  int64_t reset_time; /* unix seconds of the last reset, 0: never */
  char reset_reason[CBT_LOG_REASON_MAX + 1]; /* "" : never reset */
  uint64_t blocks_set; /* bits set in the bitmap */
};

/* Blocks (bits) of a disk of VIRTUAL_SIZE bytes. */
static inline uint64_t
cbt_log_blocks (uint64_t virtual_size)
{
  return virtual_size / CBT_BLOCK_SIZE + (virtual_size % CBT_BLOCK_SIZE != 0);
}

/* Whether block I is set in BITMAP (XenAPI's layout, see above). */
static inline bool
cbt_bitmap_test (const uint8_t *bitmap, uint64_t i)
{
  return bitmap[i / 8] >> (7 - i % 8) & 1;
}

/* A new log at PATH for a disk of VIRTUAL_SIZE bytes (> 0): a fresh
 * generation, predecessor "", an empty bitmap, consistent, last reset
 * "enabled" now.  Written beside PATH then renamed over it, so a crash
 * leaves the old file or the new one; an existing log at PATH is
 * replaced.  Returns 0, or -1 with ERR. */
int cbt_log_create (const char *path, uint64_t virtual_size, GError **err);

/* Turn tracking on (VDI.enable_cbt): a new log at PATH (cbt_log_create),
 * or, where a log disabled under its writer is (cbt_log_disable), that
 * same file made new in place: bits cleared, a new generation, "enabled"
 * (its writer, still marking it, goes on marking the new count).  A log
 * that is enabled already is left alone.  Returns 0, or -1 with ERR. */
int cbt_log_enable (const char *path, uint64_t virtual_size, GError **err);

/* Turn tracking off (VDI.disable_cbt): the log at PATH is removed, or,
 * while a writer holds it (a running VM's disk), flagged disabled and
 * left for the writer, so that an enable before the writer goes is seen
 * by it.  No log: nothing to do.  Returns 0, or -1 with ERR. */
int cbt_log_disable (const char *path, GError **err);

/* cbt_log_open flags. */
#define CBT_LOG_WRITER 0x1

/* Open the log at PATH, checking its header (magic, version, block size,
 * the file holding the whole bitmap).  With CBT_LOG_WRITER: take the
 * writer's lock (EBUSY if another holder has it), reset a log left by a
 * writer that died (see the rules; the reset is reported by
 * cbt_log_get_info's reset_reason and reset_time), then clear the
 * consistent flag and fsync it.  Without: read only (cbt_log_get_info,
 * cbt_log_read_bitmap).  Returns a handle to free with cbt_log_close, or
 * NULL with ERR. */
struct cbt_log *cbt_log_open (const char *path, unsigned flags,
                              GError **err);

/* Mark the blocks of bytes [OFFSET, OFFSET + COUNT) as written, in the
 * file, before returning (a writer's handle only; no system call).  COUNT 0 marks
 * nothing; a range past the virtual size is EINVAL.  Thread-safe.
 * Returns 0, or -1 with ERR (the caller must then fail the guest's
 * write: the log can no longer say it happened). */
int cbt_log_mark (struct cbt_log *log, uint64_t offset, uint64_t count,
                  GError **err);

/* Close LOG and free it (LOG NULL: nothing).  A writer's log is fsynced,
 * its flag set, fsynced again, and its lock dropped; if that fails the
 * flag stays clear (the next writer resets it) and -1 is returned with
 * ERR.  The handle is freed either way. */
int cbt_log_close (struct cbt_log *log, GError **err);

/* LOG's header as last read or written by this handle, with blocks_set
 * counted from the file.  Returns 0, or -1 with ERR. */
int cbt_log_get_info (struct cbt_log *log, struct cbt_log_info *out,
                      GError **err);

/* The header of the log at PATH (in_use and blocks_set included),
 * without changing the file.  Returns 0, or -1 with ERR. */
int cbt_log_read_info (const char *path, struct cbt_log_info *out,
                       GError **err);

/* The same without counting the bits (blocks_set 0): cheap. */
int cbt_log_read_header (const char *path, struct cbt_log_info *out,
                         GError **err);

/* The log's bitmap (XenAPI's layout), newly allocated, *LEN bytes
 * (ceil (blocks / 8)).  NULL with ERR on failure. */
uint8_t *cbt_log_read_bitmap (struct cbt_log *log, size_t *len,
                              GError **err);

/* Reset the log at PATH: a new generation, predecessor "", every bit
 * set, REASON (at most CBT_LOG_REASON_MAX bytes kept) and the time.  For
 * a log nobody writes, or a writer's own handle's file while it is
 * quiesced.  Returns 0, or -1 with ERR. */
int cbt_log_reset (const char *path, const char *reason, GError **err);

/* Snapshot rotation (see the rules): the log at PATH (the VDI V) is
 * copied to SNAPSHOT_PATH (the snapshot S, whose uuid is SNAPSHOT_UUID),
 * consistent, then PATH's bitmap is emptied and its predecessor set to
 * SNAPSHOT_UUID, in place (a writer keeps its descriptor; it must be
 * quiesced).  A log left by a dead writer is reset first.  Every crash
 * point leaves logs that say too much or break the chain (a walk then
 * fails with ENODATA), never too little.  Returns 0, or -1 with ERR. */
int cbt_log_rotate (const char *path, const char *snapshot_path,
                    const char *snapshot_uuid, GError **err);

/* The bytes of the log at PATH (header and bitmap: the file), for a
 * move to another SR or host, newly allocated, *LEN bytes.  A log left
 * by a dead writer is reset first; a live writer's log is copied as it
 * is (its flag clear: see cbt_log_import).  NULL with ERR on failure. */
uint8_t *cbt_log_export (const char *path, size_t *len, GError **err);

/* Write BYTES (LEN, from cbt_log_export) as the log at PATH, generation,
 * predecessor and bitmap intact, for a disk of VIRTUAL_SIZE bytes
 * (EINVAL if the header says otherwise, or is not a log's).  The new
 * file is consistent: nobody writes it yet.  Written beside PATH then
 * renamed over it.  Returns 0, or -1 with ERR. */
int cbt_log_import (const char *path, const uint8_t *bytes, size_t len,
                    uint64_t virtual_size, GError **err);

/* Merge BYTES (LEN, from cbt_log_export) into the log at PATH, which a
 * writer may be marking at the same time: their bitmap is ORed into
 * PATH's (atomically with the writer's marks: no bit of either is
 * lost), then PATH takes their generation, predecessor and last reset,
 * keeping its own flags.  For a migration's destination, whose disk
 * server marked the VDI's log from the moment the mirrors were in sync
 * while the source marked its own: the union is every block written
 * since the source's last snapshot.  EINVAL if the sizes differ.
 * Returns 0, or -1 with ERR. */
int cbt_log_merge (const char *path, const uint8_t *bytes, size_t len,
                   GError **err);

/* OR the bitmap of the log at FROM into the log at INTO and give INTO
 * FROM's predecessor, when FROM (a snapshot being destroyed) is INTO's
 * predecessor: a chain of logs stays unbroken without FROM.  Both logs
 * must have the same generation and size (else nothing is done and 0 is
 * returned: the chain was broken already).  Idempotent.  Returns 0, or
 * -1 with ERR. */
int cbt_log_coalesce (const char *from, const char *into, GError **err);

/* The log at PATH counts from snapshot NEW_UUID instead of OLD_UUID:
 * its predecessor is rewritten when it is OLD_UUID (else nothing is
 * done: idempotent), the rest of the file untouched, so a writer may be
 * marking it meanwhile.  For a chain of logs whose snapshots a move
 * gave new uuids (an SR's evacuation).  Returns 0, or -1 with ERR. */
int cbt_log_relink (const char *path, const char *old_uuid,
                    const char *new_uuid, GError **err);

/* The changed blocks between snapshots FROM_UUID and TO_UUID whose logs
 * are "<uuid>.cbtlog" in directory DIR (see the rules), as a bitmap in
 * XenAPI's layout, newly allocated, *LEN bytes.  FROM_UUID ==
 * TO_UUID gives an empty bitmap.  NULL with ERR: ENODATA when the logs
 * do not chain from TO back to FROM (a reset, CBT disabled and enabled
 * again, a log missing), with the reason in the message. */
uint8_t *cbt_log_changed_blocks (const char *dir, const char *from_uuid,
                                 const char *to_uuid, size_t *len,
                                 GError **err);

/* BITMAP (LEN bytes) as VDI.list_changed_blocks sends it: base64
 * (RFC 4648, with padding), newly allocated (g_free). */
char *cbt_bitmap_to_base64 (const uint8_t *bitmap, size_t len);

#endif /* CBT_LOG_H */
