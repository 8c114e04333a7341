/* SR drivers: storage repositories of VDIs behind one interface.
 *
 * An SR holds VDIs (virtual disk images).  Each VDI has a uuid, a record
 * (name label, description, format, virtual size, parent in its chain,
 * snapshot links, other_config) and an image that libvdisk opens.  All
 * the metadata of an SR lives inside the SR itself, so an SR moved to
 * another host is opened and scanned there with its records intact.
 *
 * One SR type is one file with one `struct sr_ops` (sr-file.c: the `file`
 * SR, a directory of <uuid>.vhd|.qcow2|.raw images plus sr.db, described
 * in vdimotion-sr(5)).  sr.c checks arguments and dispatches.
 *
 * Names never become paths: a VDI's file name is generated from its uuid,
 * and every uuid argument is checked to be a canonical lowercase uuid
 * (8-4-4-4-12 hex digits) before a driver sees it.
 *
 * Snapshots follow XenServer: sr_vdi_snapshot freezes the VDI's current
 * image into a NEW read-only VDI (the snapshot, is_snapshot = true,
 * snapshot_of = the VDI) and puts an empty writable leaf on top of it that
 * keeps the VDI's uuid.  The VDI uuid therefore always names the writable
 * disk, and the snapshot uuid the point in time.  sr_vdi_clone makes a
 * new writable VDI that starts with the source's content (sharing its
 * data through the chain).  A VDI that is the parent of another VDI is
 * read-only and cannot be destroyed (EBUSY) until its children are gone;
 * there is no coalescing yet.
 *
 * Errors: functions return -1 or NULL and leave a message and an errno
 * in libvdisk's thread-local error (sr_get_error / sr_get_errno, the same
 * as vdisk_get_error / vdisk_get_errno).  Messages name the SR and the
 * VDI: "file SR /srv/sr1: VDI 6f1e...: in use as the parent of VDI 0c3a...".
 * The errno says the XenAPI error a server should return:
 *   EINVAL  malformed uuid or argument    (UUID_INVALID / bad parameter)
 *   ENOENT  no such VDI                   (UUID_INVALID / HANDLE_INVALID)
 *   EBUSY   VDI in use as a parent        (VDI_IN_USE)
 *   EROFS   writing a read-only VDI       (VDI_READ_ONLY)
 *   ENOSPC  the SR's filesystem is full   (SR_FULL)
 *   ENOTSUP the SR type or format cannot do it
 *   EMEDIUMTYPE the VDI's type does not allow it: data of a cbt_metadata
 *           VDI, data_destroy of a VDI that is not a snapshot
 *           (VDI_INCOMPATIBLE_TYPE)
 *   ENODATA no changed-block logs chain the two VDIs
 *           (VDI_NO_CBT_METADATA)
 *
 * Thread safety: one `struct sr` may be used by several threads at once;
 * the driver serialises metadata changes.  One SR should be opened by one
 * process at a time (the file SR enforces it with a lock).
 */
#ifndef SR_H
#define SR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vdisk.h"

#define SR_UUID_LEN 36

struct sr;

/* One key/value pair of a VDI's other_config. */
struct sr_kv
{
  char *key;
  char *value;
};

/* A VDI record.  Owned by the caller; free with sr_vdi_free. */
struct sr_vdi
{
  char uuid[SR_UUID_LEN + 1];
  char *name_label;
  char *name_description;
  enum vdisk_format format;
  uint64_t virtual_size;
  /* Bytes the VDI's own image occupies on disk (its layer, not the
   * chain below it). */
  uint64_t physical_utilisation;
  /* Driver-specific location inside the SR (file SR: the file name,
   * "<uuid>.vhd"). */
  char *location;
  char parent_uuid[SR_UUID_LEN + 1]; /* "" if none in this SR */
  bool read_only;
  /* false for images the SR keeps only as parents of others (the base
   * of a clone); XenAPI clients should not see them. */
  bool managed;
  bool is_snapshot;
  char snapshot_of[SR_UUID_LEN + 1]; /* "" unless is_snapshot */
  int64_t snapshot_time;             /* unix time, 0 unless is_snapshot */
  int64_t created;                   /* unix time */
  /* Changed-block tracking: the VDI has a changed-block log
   * (cbt-log.h; file SR: "<uuid>.cbtlog" beside the image).  XenAPI's
   * cbt_enabled; a snapshot of a VDI with CBT has it too. */
  bool cbt_enabled;
  /* Its log's generation (cbt-log.h: a uuid that a reset changes, so
   * two points of one generation chain), "" without a log or when its
   * header cannot be read.  XenAPI: sm_config["cbt-generation"]. */
  char cbt_generation[SR_UUID_LEN + 1];
  /* The snapshot's data was destroyed (sr_vdi_data_destroy): only the
   * record and its changed-block log are left, XenAPI's type
   * "cbt_metadata".  Its image cannot be opened, snapshot or cloned
   * (EMEDIUMTYPE). */
  bool cbt_metadata;
  struct sr_kv *other_config;
  size_t n_other_config;
};

struct sr_vdi_list
{
  struct sr_vdi **v;
  size_t len;
};

/* SR-wide figures (sr_stat). */
struct sr_stat
{
  uint64_t total_bytes; /* size of the filesystem holding the SR */
  uint64_t used_bytes;  /* used on it (by anything) */
  uint64_t free_bytes;  /* available to us */
  /* Sums over the SR's VDIs. */
  uint64_t virtual_allocation;   /* virtual sizes */
  uint64_t physical_utilisation; /* bytes their images occupy */
  size_t n_vdis;
};

/* Parameters of sr_vdi_create; NULL means all defaults. */
struct sr_vdi_create_params
{
  const char *name_description;
  /* Create the VDI as an empty child of this VDI (a differencing VHD or
   * qcow2 over it), as a chain copy does layer by layer.  The parent
   * becomes read-only.  Raw VDIs cannot have a parent. */
  const char *parent_uuid;
  uint32_t block_size; /* 0: the format's default */
  bool fixed;          /* VHD fixed / preallocated raw */
  /* The VDI's uuid, chosen by the caller (NULL: a random one), so that
   * a caller can record it before the VDI exists and finish or undo the
   * creation after a crash: an image of that uuid without a record (a
   * crash between the image and its record) is replaced, and
   * sr_vdi_destroy removes it.  EEXIST if a VDI has that uuid. */
  const char *uuid;
  /* other_config, recorded with the VDI itself (atomically). */
  const struct sr_kv *other_config;
  size_t n_other_config;
  /* A copy of a snapshot keeps its record (an evacuation moves chains
   * whole): IS_SNAPSHOT with SNAPSHOT_OF, the uuid of the VDI it is a
   * snapshot of in this SR (which need not exist yet: a chain copied
   * bottom first makes the leaf last), and SNAPSHOT_TIME (unix time).
   * EINVAL if only one of the two is given.  The VDI is then read-only
   * as a snapshot is: its creator writes its image through the image's
   * path (host_vdi_path), never through sr_vdi_open. */
  bool is_snapshot;
  const char *snapshot_of;
  int64_t snapshot_time;
  /* Kept only as the parent of others (a clone's base: managed false,
   * not shown to XenAPI clients), as the copy of such a base is. */
  bool unmanaged;
};

/* One SR type.  The driver's private state hangs off the struct sr
 * (sr->priv).  UUID arguments are already validated; record results are
 * newly allocated. */
struct sr_ops
{
  const char *name; /* "file" */

  int (*open) (struct sr *sr, unsigned flags);
  void (*close) (struct sr *sr);

  /* Reconcile the records with what is in the SR. */
  int (*scan) (struct sr *sr);

  int (*list_vdis) (struct sr *sr, struct sr_vdi_list *out);
  struct sr_vdi *(*get_vdi) (struct sr *sr, const char *uuid);
  /* Set a text field of the record: "name_label", "name_description",
   * or "other_config:KEY" (VALUE NULL removes the key). */
  int (*set_vdi_field) (struct sr *sr, const char *uuid, const char *field,
                        const char *value);

  struct sr_vdi *(*create_vdi) (struct sr *sr, const char *name_label,
                                enum vdisk_format format,
                                uint64_t virtual_size,
                                const struct sr_vdi_create_params *params);
  struct vdisk *(*open_vdi) (struct sr *sr, const char *uuid, unsigned flags);
  int (*destroy_vdi) (struct sr *sr, const char *uuid);
  struct sr_vdi *(*snapshot) (struct sr *sr, const char *uuid,
                              const char *name_label);
  struct sr_vdi *(*clone) (struct sr *sr, const char *uuid,
                           const char *name_label);
  /* Record PARENT_UUID (NULL: none) as the parent of UUID after the
   * image was rebased to it, e.g. by a chain copy. */
  int (*set_parent) (struct sr *sr, const char *uuid, const char *parent_uuid);
  int (*stat) (struct sr *sr, struct sr_stat *st);

  /* Changed-block tracking (NULL: ENOTSUP).  See sr_vdi_enable_cbt and
   * the functions after it. */
  int (*set_cbt) (struct sr *sr, const char *uuid, bool enabled);
  char *(*cbt_log_path) (struct sr *sr, const char *uuid, bool enabled_only);
  uint8_t *(*changed_blocks) (struct sr *sr, const char *from_uuid,
                              const char *to_uuid, size_t *len);
  int (*cbt_import) (struct sr *sr, const char *uuid, const uint8_t *bytes,
                     size_t len);
  int (*data_destroy) (struct sr *sr, const char *uuid);
  struct sr_vdi *(*create_cbt_metadata) (struct sr *sr, const char *uuid,
                                         const char *name_label,
                                         const char *snapshot_of,
                                         int64_t snapshot_time,
                                         uint64_t virtual_size);
};

/* What sr_set_watch reports of a VDI. */
enum sr_change
{
  SR_VDI_ADDED,
  SR_VDI_CHANGED,
  SR_VDI_REMOVED,
};
typedef void sr_watch_fn (struct sr *sr, const char *uuid,
                          enum sr_change change, void *opaque);

/* What every driver shares; drivers put their state in priv. */
struct sr
{
  const struct sr_ops *ops;
  char *path;                 /* as given to sr_open */
  char uuid[SR_UUID_LEN + 1]; /* the SR's own uuid, set by ops->open */
  void *priv;
  sr_watch_fn *watch; /* sr_set_watch */
  void *watch_opaque;
};

/* sr_open flags. */
#define SR_OPEN_CREATE 0x1 /* create the SR (directory) if missing */

/* Open the SR of TYPE ("file") at PATH.  A file SR's metadata is created
 * on first open; a half-done snapshot or clone from a crash is finished
 * or undone.  Opening does not scan: call sr_scan for that. */
struct sr *sr_open (const char *type, const char *path, unsigned flags);
/* Frees the SR; -1 if closing the metadata failed (the SR is freed
 * either way).  VDIs opened with sr_vdi_open stay open. */
int sr_close (struct sr *sr);
const char *sr_get_path (struct sr *sr);
/* The SR's uuid, kept inside the SR (it travels with it). */
const char *sr_get_uuid (struct sr *sr);
const char *sr_get_type (struct sr *sr);

/* Reconcile the records with the SR's contents: images without records
 * get records (name label = file name), records whose images are gone
 * are dropped, chains, formats and sizes are read from the images. */
int sr_scan (struct sr *sr);
int sr_stat (struct sr *sr, struct sr_stat *st);

/* A new empty VDI.  VIRTUAL_SIZE may exceed the free space (sparse images,
 * thin provisioning); it may be 0 only with a parent (the parent's size).
 * NAME_LABEL is any text; it never becomes a path. */
struct sr_vdi *sr_vdi_create (struct sr *sr, const char *name_label,
                              enum vdisk_format format, uint64_t virtual_size,
                              const struct sr_vdi_create_params *params);
/* All VDIs, managed or not, sorted by creation time then uuid.  Free
 * with sr_vdi_list_free. */
int sr_vdi_list (struct sr *sr, struct sr_vdi_list *out);
void sr_vdi_list_free (struct sr_vdi_list *list);
struct sr_vdi *sr_vdi_get_by_uuid (struct sr *sr, const char *uuid);
void sr_vdi_free (struct sr_vdi *vdi);
/* The value of KEY in VDI's other_config, or NULL. */
const char *sr_vdi_get_other_config (const struct sr_vdi *vdi,
                                     const char *key);

int sr_vdi_set_name_label (struct sr *sr, const char *uuid,
                           const char *name_label);
int sr_vdi_set_name_description (struct sr *sr, const char *uuid,
                                 const char *description);
/* VALUE NULL removes KEY. */
int sr_vdi_set_other_config (struct sr *sr, const char *uuid, const char *key,
                             const char *value);

/* Open the VDI's image with its chain (vdisk_open FLAGS).  VDISK_OPEN_RDWR
 * on a read-only VDI fails with EROFS. */
struct vdisk *sr_vdi_open (struct sr *sr, const char *uuid, unsigned flags);
/* Delete the VDI and its image.  Refused with EBUSY while another VDI
 * has it as parent.  An unmanaged parent (a clone's base) left without
 * children goes with it.  Without a record of UUID, an image named for
 * it that a crash left unrecorded (see sr_vdi_create_params.uuid) is
 * removed; ENOENT if there is none either.  Its changed-block log is
 * merged into the logs that count from it, then removed.  A cbt_metadata
 * VDI still read through by others is only hidden (unmanaged) until its
 * last child goes. */
int sr_vdi_destroy (struct sr *sr, const char *uuid);
/* Snapshot (see the top of this file).  The VDI must be writable and
 * must not be open for writing while this runs (quiesce first: the open
 * image is the one that becomes the snapshot).  A raw VDI's new leaf is
 * qcow2 (raw has no backing file).  A VDI with CBT has its
 * changed-block log rotated (the snapshot gets it as it was, the VDI an
 * empty one counting from the snapshot; its disk server, quiesced, keeps
 * marking the VDI's).  Returns the snapshot's record. */
struct sr_vdi *sr_vdi_snapshot (struct sr *sr, const char *uuid,
                                const char *name_label);
/* A new writable VDI with the content of UUID.  For a read-only VDI (a
 * snapshot) the clone is a leaf over it; a writable VDI is first frozen
 * into an unmanaged base shared by it and the clone.  Same rule as
 * snapshot: not while the VDI is open for writing. */
struct sr_vdi *sr_vdi_clone (struct sr *sr, const char *uuid,
                             const char *name_label);
/* Make the records say UUID's parent is PARENT_UUID (NULL: no parent).
 * The image must already name the parent's image as its backing file
 * (a chain copy creates it that way); the file SR does not rewrite
 * images, and refuses with ENOTSUP if the image names another parent. */
int sr_vdi_set_parent (struct sr *sr, const char *uuid,
                       const char *parent_uuid);

/* ---- Changed-block tracking (XenAPI's CBT; the log: cbt-log.h) ----
 *
 * A VDI with CBT has a changed-block log that the mirror filter marks
 * while the VDI is served (vdimotiond passes sr_vdi_cbt_log_path as the
 * filter's cbt-log=).  sr_vdi_snapshot rotates it: the snapshot gets the
 * log as it was, the VDI an empty one counting from the snapshot;
 * sr_vdi_destroy removes it (merging a destroyed snapshot's bitmap into
 * the log that counts from it, so the chain of logs stays whole, as
 * xapi's SM coalesces its logs); sr_vdi_data_destroy keeps it. */

/* Turn CBT on for UUID (XenAPI VDI.enable_cbt): a new log (new
 * generation, empty bitmap) unless it has one already (then nothing
 * changes).  Refused for a cbt_metadata VDI (EMEDIUMTYPE).  A served
 * VDI's filter is then told to take the log (vdimotiond: cbt-open). */
int sr_vdi_enable_cbt (struct sr *sr, const char *uuid);
/* Turn CBT off (VDI.disable_cbt): the log is removed.  Nothing to do if
 * it was off. */
int sr_vdi_disable_cbt (struct sr *sr, const char *uuid);
/* The path of UUID's changed-block log (malloc'd), or NULL with ENOENT
 * (no such VDI) or ENODATA (CBT is off). */
char *sr_vdi_cbt_log_path (struct sr *sr, const char *uuid);
/* Where UUID's log is, or will be once CBT is enabled (malloc'd): a
 * served VDI's mirror filter gets it as cbt-log= whether CBT is on or
 * not; its owner tells it when a log is made or removed while it
 * serves (cbt-open, cbt-close).  NULL with ENOENT if there is no such
 * VDI. */
char *sr_vdi_cbt_log_location (struct sr *sr, const char *uuid);
/* The header of UUID's log (cbt-log.h's struct cbt_log_info: its
 * generation, the reason and time of its last reset).  ENODATA if CBT is
 * off. */
struct cbt_log_info;
int sr_vdi_cbt_info (struct sr *sr, const char *uuid,
                     struct cbt_log_info *out);
/* The blocks changed between snapshot FROM_UUID and VDI TO_UUID
 * (VDI.list_changed_blocks(vdi_from, vdi_to)): a bitmap in XenAPI's
 * layout (cbt-log.h), malloc'd (free), *LEN bytes; cbt_bitmap_to_base64
 * gives its wire form.  ENODATA (VDI_NO_CBT_METADATA) when the logs do
 * not chain TO back to FROM; EINVAL if the two differ in size.  TO must
 * be in SR; FROM need not be (a snapshot left in another SR by a move:
 * the walk reads the logs from TO back to FROM's, not FROM's own). */
uint8_t *sr_vdi_list_changed_blocks (struct sr *sr, const char *from_uuid,
                                     const char *to_uuid, size_t *len);
/* Give UUID the log BYTES (LEN bytes of cbt_log_export: the log of the
 * VDI it was copied or moved from, generation intact) and turn its CBT
 * on, replacing any log it had.  For VDI.copy, VDI.pool_migrate and
 * VM.migrate: called after the data is in place, before the source
 * goes.  EINVAL if the log is not one of a disk of UUID's size. */
int sr_vdi_cbt_import (struct sr *sr, const char *uuid, const uint8_t *bytes,
                       size_t len);
/* The log follows the disk: after VDI FROM_UUID of FROM_SR was copied
 * (KEEP_SOURCE) or moved to TO_UUID of TO_SR, TO_UUID gets FROM_UUID's
 * log, generation, predecessor and bits intact, so the next backup
 * after a VDI.copy or VDI.pool_migrate is still incremental.  A move
 * renames the file when both SRs share a filesystem: a mirror filter
 * that still marks it (a live move's front, after its pivot) goes on
 * marking the moved file, which is the log of the VDI the VM now uses.
 * Across filesystems a copy's log is copied; a move's is merged into
 * TO_UUID's (sr_vdi_cbt_merge: made if TO_UUID has none, else its bits
 * ORed in, never written over, since an earlier run of a live move may
 * have handed that log to the disk server already).  If a writer still
 * holds the source then (a live move's filter, after its pivot), it
 * would go on marking the old file only, so nothing is done and the
 * error is EXDEV: the caller that can move the writer carries the log
 * itself, in an order that loses no mark whatever step a crash stops:
 * sr_vdi_cbt_merge of FROM_UUID's log (sr_vdi_cbt_export) into TO_UUID,
 * the writer switched to TO_UUID's log (the filter's cbt-open), the
 * merge again (the marks made between the two), then FROM_UUID's log
 * removed (sr_vdi_disable_cbt); vdimotiond's host_cbt_follow (cbt.h).
 * Nothing to do if FROM_UUID has CBT off (or the log moved already: a
 * commit done twice).  Call it after the data is in place, before the
 * source goes.  0, or -1 with the error. */
int sr_vdi_cbt_follow (struct sr *from_sr, const char *from_uuid,
                       struct sr *to_sr, const char *to_uuid,
                       bool keep_source);

/* UUID's log as bytes (cbt_log_export: header and bitmap), malloc'd,
 * *LEN bytes, for a cross-host migration to carry; NULL with ENODATA if
 * CBT is off. */
uint8_t *sr_vdi_cbt_export (struct sr *sr, const char *uuid, size_t *len);
/* Give UUID the log BYTES (from sr_vdi_cbt_export on another host): a
 * VDI without a log gets it (sr_vdi_cbt_import); one whose log its disk
 * server has been marking (armed with sr_vdi_enable_cbt during a
 * migration) gets the bits ORed in and the lineage taken over
 * (cbt_log_merge), no mark of either lost. */
int sr_vdi_cbt_merge (struct sr *sr, const char *uuid, const uint8_t *bytes,
                      size_t len);

/* VDI.data_destroy: destroy the data of snapshot UUID but keep its
 * record and its changed-block log; the record becomes cbt_metadata.
 * Only a snapshot with CBT may lose its data (EMEDIUMTYPE otherwise).
 * When the image is the parent of another VDI (the VDI it is a snapshot
 * of reads through it: a snapshot is the parent of the leaf), the image
 * stays as an unmanaged parent of that chain, hidden from clients, until
 * its children are gone (then sr_vdi_destroy of the cbt_metadata record
 * takes it); otherwise it is deleted now.  Crash-safe: the record is
 * marked first, the image deleted after; the next open or scan finishes
 * it. */
int sr_vdi_data_destroy (struct sr *sr, const char *uuid);
/* The record of a snapshot whose data is not here, as
 * sr_vdi_data_destroy leaves one: cbt_metadata, a snapshot of
 * SNAPSHOT_OF taken at SNAPSHOT_TIME (unix time), VIRTUAL_SIZE bytes,
 * uuid UUID, no image and no changed-block log.  For a disk that moved
 * from another host (VM.migrate): VDI.list_changed_blocks from the
 * previous backup's snapshot, left on that host, needs a record of it
 * here (the walk stops at its uuid, never reads its log).  A
 * cbt_metadata record of UUID already there is returned as it is;
 * EEXIST for a VDI UUID with data.  sr_vdi_free the result; NULL with
 * the error (ENOTSUP: the driver has no CBT). */
struct sr_vdi *sr_vdi_create_cbt_metadata (struct sr *sr, const char *uuid,
                                           const char *name_label,
                                           const char *snapshot_of,
                                           int64_t snapshot_time,
                                           uint64_t virtual_size);

/* Call FN after each change of a VDI's record made through SR: a VDI
 * created, destroyed, snapshot or cloned (the new VDI added, the source
 * changed), its name, description, other_config or parent set.  In the
 * thread that made the change; not for images' data, nor for sr_scan.
 * One watch per SR (FN NULL: none); set it before the SR is shared
 * between threads.  (The daemon logs these as XenAPI events.) */
void sr_set_watch (struct sr *sr, sr_watch_fn *fn, void *opaque);

/* S as a client can be shown it (malloc'd): invalid UTF-8, and characters
 * XML cannot carry (C0 controls but tab, newline and CR; U+FFFE, U+FFFF)
 * become U+FFFD.  For names that came from a directory, not
 * from a client (a VDI's location). */
char *sr_printable (const char *s);

/* true if S is a canonical lowercase uuid (8-4-4-4-12 hex digits). */
bool sr_uuid_is_valid (const char *s);
/* A fresh random (version 4) uuid into OUT.  -1 if no randomness. */
int sr_uuid_generate (char out[SR_UUID_LEN + 1]);

const char *sr_get_error (void);
int sr_get_errno (void);

/* The drivers (sr.c's table). */
extern const struct sr_ops sr_file_ops;

#endif /* SR_H */
