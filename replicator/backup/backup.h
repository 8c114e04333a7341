/* libbackup: the backup repository and the four things done to it
 * (create a point, restore one, verify, prune).  `vdimotion backup` is
 * its face; no XenAPI in here (a VDI source comes in as an NBD URI plus
 * the changed blocks its caller asked xapi for).
 *
 * Design:
 *
 * - A repository is a directory.  Per disk (a source VDI's uuid, or for
 *   a local image "image-NAME-HASH", NAME its file name reduced to
 *   [A-Za-z0-9._-] and HASH 8 hex digits of SHA-256 of its absolute
 *   path: never a path a name could escape through) a subdirectory
 *   holding chains of standard qcow2 files: a full point is a qcow2
 *   without backing file; an incremental point is a qcow2 child whose
 *   backing file is its parent point's file, recorded by relative name
 *   with its backing format (qcow2).  `qemu-img convert POINT.qcow2
 *   out.raw` restores any point without vdimotion.
 * - Beside each file, its manifest POINT.json (backup_manifest): id,
 *   time, source, CBT generation and snapshot when there are, kind and
 *   why, parent point, file, virtual size, the SHA-256 of every 64 KiB
 *   block this point's layer holds, and the bytes moved.  A point
 *   exists when its manifest does; the manifest is published last
 *   (written to a dot-name, fsync'd, renamed, directory fsync'd), so a
 *   half-made point is never listed.  Names starting with a dot are
 *   work in progress: never listed, never restored from.
 * - Creating a point writes its qcow2 window by window (about a
 *   sixteenth of the disk, in multiples of COPY_WINDOW) through
 *   libvdisk, hashing every block; each window is flushed, then marked
 *   done in a journal (the copy engine's, journal.h).  A killed create
 *   is continued by the same command: the pending point (.create.json:
 *   its manifest without blocks: id, kind, why, parent) and its
 *   journal say what was done; done windows are not read from the
 *   source again (their hashes are taken back from the file).
 * - Restore and prune's merges go through the copy engine with its
 *   journal, so they resume the same way.  A prune merges a point that
 *   goes into its child: the child's layer is copied into the parent's
 *   file (which then holds the child's view), that file is renamed over
 *   the child's, and the child's manifest becomes the union; every
 *   kept point reads the same bytes at every step (the old point's
 *   manifest goes first, so it is never listed half-merged).  The step
 *   in progress is in .prune.json, and a rerun finishes it first.
 * - A restore into a destination the copy engine cannot open (a VDI on
 *   a server) takes the point window by window in xapi's chunked
 *   encoding (backup_restore_chunked); its caller sends each window
 *   and records it done where the destination is.
 * - One lock (flock on REPO/.lock) per repository: create and prune
 *   take it exclusive, restore and verify shared; listing needs none
 *   (manifests are published atomically).
 * - The repository is reached through an ops table (struct
 *   backup_repo_ops): a local directory now; a remote one (vdimotiond's
 *   https://HOST:PORT/backups/NAME) is another table.
 *
 * Errors are GErrors (G_FILE_ERROR domain) whose messages name the
 * repository file and what is wrong with it.
 */
#ifndef VDM_BACKUP_H
#define VDM_BACKUP_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

/* The unit of the manifests' hashes and of CBT (xapi's 64 KiB). */
#define BACKUP_BLOCK_SIZE 65536u
#define BACKUP_MANIFEST_FORMAT "vdimotion-backup-manifest"
#define BACKUP_MANIFEST_VERSION 1

enum backup_kind
{
  BACKUP_FULL,
  BACKUP_INCREMENTAL,
};

struct backup_block
{
  uint64_t index;     /* block number: guest offset / BACKUP_BLOCK_SIZE */
  uint8_t sha256[32]; /* of the block's bytes (the last block: only those
                         within the virtual size) */
};

/* One point, as its manifest records it.  Strings are owned (g_free);
 * optional ones are NULL when absent. */
struct backup_manifest
{
  char *id;
  char *disk;
  char *time;     /* ISO 8601, UTC, microseconds: 2026-11-30T12:00:00.123456Z */
  int64_t time_us; /* the same, in microseconds since the epoch */
  char *source;   /* the image path or VDI uuid backed up */
  char *cbt_generation; /* optional */
  char *cbt_snapshot;   /* optional: the snapshot VDI this point read */
  enum backup_kind kind;
  char *why;    /* why full or incremental, in words */
  char *parent; /* optional: the parent point's id (incremental) */
  char *file;   /* the qcow2 file's name in the disk's directory */
  uint64_t virtual_size;
  struct backup_block *blocks; /* sorted by index, no duplicates */
  size_t n_blocks;
  uint64_t bytes_read, bytes_written, bytes_skipped;
  double seconds;
};

/* Parse manifest text (JSON).  NAME names it in errors.  Everything is
 * checked: the format and version, every field's presence and type, an
 * id and file that are plain names, blocks sorted, in range and with 64
 * hex digits.  NULL with *ERR (G_FILE_ERROR_INVAL: "manifest NAME:
 * field \"virtual-size\" is missing or not an integer"). */
struct backup_manifest *backup_manifest_parse (const char *text, size_t len,
                                               const char *name,
                                               GError **err);
/* The manifest as JSON text (g_free). */
char *backup_manifest_to_json (const struct backup_manifest *m);
void backup_manifest_free (struct backup_manifest *m);
/* A deep copy of M (backup_manifest_free). */
struct backup_manifest *backup_manifest_copy (const struct backup_manifest *m);
/* OUT = SHA-256 (FIPS 180-4) of the LEN bytes at BUF: a block's hash as
 * the manifests record it.  GnuTLS's (nettle's, SHA-NI where the CPU
 * has it: several times GChecksum's speed); thread-safe, no state.
 * Aborts only if GnuTLS refuses SHA-256 itself (never in practice). */
void backup_sha256 (const void *buf, size_t len, uint8_t out[32]);
typedef struct backup_manifest backup_manifest;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (backup_manifest, backup_manifest_free)

/* Is S usable as a point id or disk key or file name: [A-Za-z0-9._-],
 * not starting with a dot, 1 to 128 characters? */
bool backup_name_is_safe (const char *s);
/* The disk key of a local image PATH (see above).  g_free. */
char *backup_disk_key_for_image (const char *path);

/* ------------------------------------------------------------------ */
/* The repository. */

struct backup_repo;
struct backup_create_params;
struct backup_prune_params;
struct backup_stats;
typedef void (*backup_progress_fn) (uint64_t done, uint64_t total,
                                    void *opaque);

/* How a repository is reached.  Every function returns -1 / NULL with
 * *ERR on failure. */
struct backup_repo_ops
{
  const char *name; /* "local" */
  /* Take the repository's lock (blocks until it is free). */
  int (*lock) (struct backup_repo *r, bool exclusive, GError **err);
  /* The disks' keys (g_strfreev), sorted. */
  char **(*list_disks) (struct backup_repo *r, GError **err);
  /* The names in DISK's directory that end in SUFFIX and do not start
   * with a dot (g_strfreev), sorted. */
  char **(*list_names) (struct backup_repo *r, const char *disk,
                        const char *suffix, GError **err);
  /* Read DISK/NAME whole; NULL and G_FILE_ERROR_NOENT if absent. */
  char *(*read) (struct backup_repo *r, const char *disk, const char *name,
                 size_t *len, GError **err);
  /* Publish DISK/NAME: written to .NAME.tmp, synced, renamed, the
   * directory synced.  Creates DISK's directory if needed. */
  int (*publish) (struct backup_repo *r, const char *disk, const char *name,
                  const char *data, size_t len, GError **err);
  /* Rename DISK/FROM to DISK/TO (atomic) and sync the directory. */
  int (*rename) (struct backup_repo *r, const char *disk, const char *from,
                 const char *to, GError **err);
  /* Remove DISK/NAME (absent is fine) and sync the directory. */
  int (*remove) (struct backup_repo *r, const char *disk, const char *name,
                 GError **err);
  /* The local path of DISK/NAME (or of REPO/NAME when DISK is NULL), for
   * libvdisk and the copy engine; g_free. */
  char *(*path) (struct backup_repo *r, const char *disk, const char *name);
  void (*close) (struct backup_repo *r);
  /* Optional: a repository whose files are not ours to reach (a remote
   * one, repo-remote.c) does the operations whole, with the signatures
   * of backup_create, backup_restore, backup_verify and backup_prune;
   * its caller calls these instead when they are set. */
  int (*create) (struct backup_repo *r,
                 const struct backup_create_params *params,
                 struct backup_manifest **point, GError **err);
  int (*restore) (struct backup_repo *r, const struct backup_manifest *p,
                  const char *dst, backup_progress_fn progress, void *opaque,
                  struct backup_stats *stats, GError **err);
  int (*verify) (struct backup_repo *r, bool deep, GPtrArray *problems,
                 GError **err);
  int (*prune) (struct backup_repo *r,
                const struct backup_prune_params *params, GPtrArray *removed,
                struct backup_stats *stats, GError **err);
};

struct backup_repo
{
  const struct backup_repo_ops *ops;
  char *location; /* as the user gave it */
  char *dir;      /* local: the directory */
  int lock_fd;
  /* The manifests read so far (repo.c), "DISK/NAME" -> a struct
   * cached_manifest: each parsed once per handle while its file stays
   * the same (local repositories only); NULL until the first. */
  GHashTable *manifests;
};

/* Open the repository at LOCATION (a directory; with CREATE made if
 * missing).  G_FILE_ERROR_NOENT if it does not exist. */
struct backup_repo *backup_repo_open (const char *location, bool create,
                                      GError **err);
void backup_repo_close (struct backup_repo *r);

/* A remote repository: https://HOST:PORT/backups/NAME, served by a
 * vdimotiond (--backup-repo NAME=DIR; vdimotion-backup-http(7)).  The
 * client (repo-remote.c) reads manifests through the ops table, so
 * list and the points' lookups are the local code's, and does create,
 * restore, verify and prune as whole operations (the ops' optional
 * members), sending or receiving guest data over CONNECTIONS
 * connections at once. */
struct backup_remote_config
{
  const char *session;     /* a XenAPI session ref of that server */
  const char *ca_file;     /* the CAs to trust (PEM), or NULL: the system's */
  const char *cert_sha256; /* or: the only certificate trusted, or NULL */
  unsigned connections;    /* 0: 4 */
};
/* Is LOCATION a remote repository's URL (it starts with https://)? */
bool backup_location_is_remote (const char *location);
/* The repository at URL (checked: https, a path /backups/NAME).  Nothing
 * is sent yet.  CFG's strings are copied. */
struct backup_repo *backup_repo_open_remote (
    const char *url, const struct backup_remote_config *cfg, GError **err);

/* Point M of the remote repository R, for backup_restore_chunked:
 * its data extents ([offset, length] pairs, sorted; g_free *DATA), as
 * the server's map gives them, and LEN bytes at OFFSET into BUF. */
int backup_remote_point_map (struct backup_repo *r,
                             const struct backup_manifest *m,
                             uint64_t (**data)[2], size_t *n, GError **err);
int backup_remote_point_read (struct backup_repo *r,
                              const struct backup_manifest *m, uint64_t offset,
                              size_t len, void *buf, GError **err);

/* DISK's points, oldest first (by time, then id).  A manifest that does
 * not parse fails the whole call unless BAD is given: then its error is
 * appended there (a GPtrArray of g_free'd strings) and it is skipped. */
GPtrArray *backup_repo_points (struct backup_repo *r, const char *disk,
                               GPtrArray *bad, GError **err);
/* Every disk's points, in disk order then oldest first. */
GPtrArray *backup_repo_all_points (struct backup_repo *r, GPtrArray *bad,
                                   GError **err);
/* The point POINT names: an id, "latest" (of DISK, or of the only disk
 * when DISK is NULL) or an ISO 8601 time (the newest point at or before
 * it).  NULL with *ERR (G_FILE_ERROR_NOENT) if none. */
struct backup_manifest *backup_repo_find_point (struct backup_repo *r,
                                                const char *point,
                                                const char *disk,
                                                GError **err);

/* ------------------------------------------------------------------ */
/* The operations. */

struct backup_stats
{
  uint64_t bytes_read, bytes_written, bytes_skipped;
  double seconds;
};

struct backup_create_params
{
  /* The source: a local image (PATH, opened with its chain in FORMAT,
   * VDISK_FORMAT_PROBE if unknown), or an NBD URI (a VDI's snapshot,
   * read as raw guest bytes). */
  const char *source;
  int format;
  /* The disk key; NULL: backup_disk_key_for_image (SOURCE). */
  const char *disk;
  /* What to record as the source (NULL: SOURCE). */
  const char *source_name;
  bool full; /* --full */
  /* CBT (a VDI source): the generation and the snapshot read, and the
   * changed blocks since PREV_SNAPSHOT's point as a bitmap (one bit per
   * 64 KiB block, xapi's order: byte j holds blocks 8j..8j+7, most
   * significant bit first), or NULL (no CBT: blocks are compared by
   * hash).  WHY_FULL, if not NULL, makes this a full and says why. */
  const char *cbt_generation, *cbt_snapshot;
  const uint8_t *changed;
  size_t changed_len;
  const char *why_full;
  /* If not NULL, added to the point's why (after "; "): e.g. that a
   * moved VDI continues the chain of the disk it was. */
  const char *why_also;
  unsigned threads; /* 0: 4 */
  backup_progress_fn progress;
  void *progress_opaque;
};

/* Why the next point of a disk after PREV (NULL: none) must be a full,
 * for a disk of SIZE bytes: FULL (--full), the first point, a virtual
 * size changed, or WHY_FULL (the caller's reason, may be NULL); NULL
 * when it may be an incremental.  The caller frees the text.  One
 * wording for local and remote creates. */
char *backup_why_full (bool full, const struct backup_manifest *prev,
                       uint64_t size, const char *why_full);

/* Create a point of PARAMS->source in R (which the caller locked
 * exclusive), or continue the one a killed run left.  On success
 * *POINT is its manifest (the caller frees).  The kind and why are
 * decided here: full (--full, no previous point, a different virtual
 * size, PARAMS->why_full) or incremental. */
int backup_create (struct backup_repo *r,
                   const struct backup_create_params *params,
                   struct backup_manifest **point, GError **err);
/* The point a killed create of DISK left unfinished (no block list),
 * or NULL: none, or *ERR if its note is damaged.  A VDI's caller takes
 * its snapshot (cbt_snapshot) from it rather than making another. */
struct backup_manifest *backup_pending (struct backup_repo *r,
                                        const char *disk, GError **err);
/* The newest point of DISK, or NULL (none, or *ERR). */
struct backup_manifest *backup_latest (struct backup_repo *r, const char *disk,
                                       GError **err);

/* Restore point P of R to DST (an image path, created in the format its
 * extension says; or an NBD URI), resuming a killed restore of the same
 * point to the same DST. */
int backup_restore (struct backup_repo *r, const struct backup_manifest *p,
                    const char *dst, backup_progress_fn progress,
                    void *opaque, struct backup_stats *stats, GError **err);

/* Restoring into something that takes ranges of guest bytes: a VDI
 * through xapi's chunked import (import_raw_vdi?chunked; `vdimotion
 * --server URL backup restore`), whose caller records how far it got.
 * Point P is read (from a local repository through libvdisk, its qcow2
 * chain flattened; from a remote one by its map and ranges, as
 * vdimotion-backup-http(7)) a window of BACKUP_RESTORE_WINDOW guest
 * bytes at a time, and each window handed to SEND as a body in xapi's
 * chunked encoding (vhd-tool's: per data extent, pieces of at most
 * 4 MiB each after a 12-byte header of offset, 64 bits, and length, 32
 * bits, little-endian; then the end header, offset 0 and length 0).
 * Only data is sent: what the point does not hold reads as zero in a
 * new VDI and is never written, so a window can be sent again whole
 * after a kill.  Windows begin at FROM (rounded down to a window; 0 the
 * first, a resumed restore what the destination recorded) and go in
 * order; SEND returns -1 with *ERR to stop.  Memory is one window. */
#define BACKUP_RESTORE_WINDOW (UINT64_C (16) << 20)
struct backup_chunks
{
  uint64_t offset, end; /* the window: guest bytes [offset, end) */
  const void *body;     /* the chunked encoding of its data */
  size_t len;           /* its bytes */
  uint64_t data;        /* guest bytes in it (0: only the end header) */
};
typedef int (*backup_chunks_fn) (const struct backup_chunks *c, void *opaque,
                                 GError **err);
int backup_restore_chunked (struct backup_repo *r,
                            const struct backup_manifest *p, uint64_t from,
                            backup_chunks_fn send, void *opaque,
                            backup_progress_fn progress, void *popaque,
                            struct backup_stats *stats, GError **err);

/* Check every point: its manifest parses, its file opens with its chain
 * (the backing file its parent's), the virtual size is the manifest's,
 * every block the manifest lists is in the file's layer; with DEEP,
 * every such block's SHA-256 is computed again.  Each problem is one
 * line in PROBLEMS ("point ID: block N (offset O): SHA-256 mismatch").
 * Returns the number of points checked, -1 with *ERR if the repository
 * cannot be read at all. */
int backup_verify (struct backup_repo *r, bool deep, GPtrArray *problems,
                   GError **err);

struct backup_prune_params
{
  unsigned keep_last, keep_daily, keep_weekly;
  bool dry_run;
};
/* Remove the points PARAMS does not keep (newest first: the last
 * KEEP_LAST, the newest of each of the last KEEP_DAILY days and
 * KEEP_WEEKLY ISO weeks that have points), merging each into its child.
 * Finishes a killed prune's merge first.  REMOVED gets the ids removed
 * (or, with DRY_RUN, that would be). */
int backup_prune (struct backup_repo *r,
                  const struct backup_prune_params *params,
                  GPtrArray *removed, struct backup_stats *stats,
                  GError **err);

/* ------------------------------------------------------------------ */
/* Serving a repository to remote clients (serve.c, the daemon's side of
 * vdimotion-backup-http(7)): R is a local repository; DISK a disk key
 * and ID a point id, checked here (backup_name_is_safe).  Errors are
 * G_FILE_ERROR: INVAL a bad request, NOENT not there, EXIST an upload
 * in the way (or none begun), others the server's own trouble.  Safe
 * to call from several threads at once, each with its own R. */

/* What a client uploads: as backup_create_params' fields of the same
 * names (the source's name, --full, why a full, CBT's snapshot and
 * generation; NULL when absent), and the virtual size. */
struct backup_upload
{
  const char *source;
  uint64_t virtual_size;
  bool full;
  const char *why_full, *cbt_snapshot, *cbt_generation;
};
/* Begin (or find again, for a rerun: the same source, size and --full)
 * the upload UP to DISK.  Returns the answer as JSON text (g_free):
 * {"base": ID or null, "window-size": BYTES, "done": [WINDOW...],
 *  "blocks": {"INDEX": "SHA-256 HEX", ...}} (the base chain's hashes). */
char *backup_serve_begin (struct backup_repo *r, const char *disk,
                          const struct backup_upload *up, GError **err);
/* Write LEN bytes of guest data at OFFSET into DISK's upload (the new
 * point's layer: what is sent is what the point holds).  INVAL past the
 * end or into a window already done. */
int backup_serve_write (struct backup_repo *r, const char *disk,
                        uint64_t offset, const void *buf, size_t len,
                        GError **err);
/* Window WINDOW (guest bytes [WINDOW x window-size, +window-size)) of
 * DISK's upload is complete: once its writes under way are over,
 * flushed, the SHA-256 of each block it holds recorded and synced, then
 * marked done (again: nothing to do). */
int backup_serve_done (struct backup_repo *r, const char *disk,
                       uint64_t window, GError **err);
/* Make DISK's upload (every window done) a point, publish it, remove
 * the staging files; or finish the point a commit cut short was
 * making.  The staged layer becomes the point when it is the one a
 * local create would make (its manifest from the recorded sums: the
 * cost is what was sent); otherwise backup_create (THREADS of its
 * workers) makes it from the staged disk. */
int backup_serve_commit (struct backup_repo *r, const char *disk,
                         unsigned threads, struct backup_manifest **point,
                         GError **err);
/* Point ID of DISK's virtual size and data extents (the flattened
 * chain's), as JSON text (g_free): {"virtual-size": N,
 * "data": [[OFFSET, LENGTH]...]}; the rest reads as zero. */
char *backup_serve_map (struct backup_repo *r, const char *disk,
                        const char *id, GError **err);
/* Read LEN bytes at OFFSET of point ID of DISK into BUF. */
int backup_serve_read (struct backup_repo *r, const char *disk,
                       const char *id, uint64_t offset, size_t len,
                       void *buf, GError **err);

#endif /* VDM_BACKUP_H */
