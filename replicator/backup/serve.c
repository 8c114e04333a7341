/* The server side of a remote repository (backup.h's backup_serve_*):
 * what vdimotiond does, in the repository's own directory, for a client
 * that has the guest data.  The HTTP face is xapi-shim/http-backup.c;
 * the protocol is vdimotion-backup-http(7).
 *
 * Design: an upload is staged as the new point's qcow2 layer itself, so
 * that its commit costs what was sent, not what the disk holds; the
 * repository's files, manifests and publication rules are the local
 * ones.
 *
 * - begin: the client names the disk, its source and virtual size, and
 *   whether it wants a full.  The server picks the base (the disk's
 *   newest point of that size, none for a full), records the upload in
 *   DISK/.upload.json, and creates DISK/.upload.qcow2 over the base's
 *   file (so what the client does not send reads as the base), with a
 *   journal (DISK/.upload.journal, journal.h) over COPY_WINDOW windows.
 *   The answer: the base, the window size, the windows already done
 *   (a rerun after a kill of either side), and the SHA-256 of every
 *   block the base's chain holds, from its manifests, so the client
 *   sends only the blocks that differ.
 * - write: guest bytes at an offset, into the staging image (many at
 *   once: libvdisk takes concurrent writes); a whole block of zeroes
 *   becomes a zero cluster, as a local create writes it.  done: a
 *   window is complete: the image is flushed, the SHA-256 of every
 *   block its layer holds in the window is read back (from the page
 *   cache: what was just sent) into DISK/.upload.sums (32 bytes per
 *   block at INDEX x 32; all zero: none) and synced, then the window is
 *   marked done.  A done window is final: writes into it are refused,
 *   and a done waits for the writes already under way in its window.
 * - commit: every window done.  When the staged layer is the point a
 *   local create would make (an incremental over the disk's newest
 *   point, or a full without a base), it becomes that point: its
 *   manifest is made from the layer's map and the sums (a block with no
 *   sum, from a daemon that kept none, is read back and hashed), noted
 *   in DISK/.upload.point.json, the image closed and renamed to the
 *   point's file, the manifest published last; then the staging notes
 *   go.  A rerun after a kill anywhere in between finishes that same
 *   point (begin answers every window done).  Otherwise (a full that
 *   why-full asked for over a base, or a point published meanwhile) the
 *   image is the source of backup_create (under the repository's
 *   exclusive lock), which compares the whole staged disk with the
 *   chain and resumes its own work if a kill cut it short; a kill
 *   between its publication and the staging files' removal then makes
 *   the rerun commit once more, an empty incremental point.
 * - map and read: a point's file opened with its chain, for a restore.
 *
 * The open staging images live in a table of this process, keyed by
 * their path; after a restart, begin opens them again.
 *
 * Errors: GErrors of G_FILE_ERROR; INVAL for a bad request (the face
 * answers 400), NOENT for what is not there (404), EXIST for an upload
 * of another source in the way, or a write before begin (409). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "backup.h"
#include "clock.h"
#include "copy.h"
#include "full-io.h"
#include "iszero.h"
#include "journal.h"
#include "vdisk.h"

#define UPLOAD_NOTE ".upload.json"
#define UPLOAD_FILE ".upload.qcow2"
#define UPLOAD_JOURNAL ".upload.journal"
#define UPLOAD_SUMS ".upload.sums"
#define UPLOAD_POINT ".upload.point.json"
/* Blocks per window. */
#define WINDOW_BLOCKS (COPY_WINDOW / BACKUP_BLOCK_SIZE)
/* The largest disk taken: 64 TiB. */
#define MAX_SIZE (UINT64_C (1) << 46)

struct upload
{
  char *path; /* the staging image: the table's key */
  struct vdisk *disk;
  struct journal *j;
  int sums_fd; /* .upload.sums */
  /* LOCK holds the journal and the windows' state: BUSY counts the
   * writes under way per window, CLOSING the windows whose done is
   * under way; IDLE is signalled when either shrinks. */
  GMutex lock;
  GCond idle;
  GHashTable *busy;    /* window -> writes under way */
  GHashTable *closing; /* windows */
  uint64_t size, nwindows;
  unsigned refs; /* under uploads_lock */
};

static GMutex uploads_lock;
static GCond uploads_idle;  /* an upload's refs went down */
static GHashTable *uploads; /* path -> struct upload */

/* Set *ERR (G_FILE_ERROR CODE) and be -1. */
#define FAIL(err, code, ...)                                                  \
  (g_set_error ((err), G_FILE_ERROR, (code), __VA_ARGS__), -1)

static void
upload_unref (struct upload *u)
{
  g_mutex_lock (&uploads_lock);
  bool last = --u->refs == 0;
  g_cond_broadcast (&uploads_idle);
  g_mutex_unlock (&uploads_lock);
  if (!last)
    return;
  if (u->j)
    journal_close (u->j, false);
  if (u->disk)
    vdisk_close (u->disk);
  if (u->sums_fd >= 0)
    close (u->sums_fd);
  g_hash_table_destroy (u->busy);
  g_hash_table_destroy (u->closing);
  g_cond_clear (&u->idle);
  g_mutex_clear (&u->lock);
  g_free (u->path);
  g_free (u);
}

/* The open upload of DISK (a reference), or NULL. */
static struct upload *
upload_get (struct backup_repo *r, const char *disk)
{
  g_autofree char *path = r->ops->path (r, disk, UPLOAD_FILE);
  g_mutex_lock (&uploads_lock);
  struct upload *u = uploads ? g_hash_table_lookup (uploads, path) : NULL;
  if (u)
    u->refs++;
  g_mutex_unlock (&uploads_lock);
  return u;
}

/* Forget DISK's open upload (closed once its last user lets go). */
static void
upload_drop (struct backup_repo *r, const char *disk)
{
  g_autofree char *path = r->ops->path (r, disk, UPLOAD_FILE);
  g_mutex_lock (&uploads_lock);
  struct upload *u = uploads ? g_hash_table_lookup (uploads, path) : NULL;
  if (u)
    g_hash_table_remove (uploads, path);
  g_mutex_unlock (&uploads_lock);
  if (u)
    upload_unref (u);
}

/* Forget DISK's open upload and close it now, once the requests using
 * it have let go (its file is about to become a point's): -1 with *ERR
 * if its last flush fails. */
static int
upload_close (struct backup_repo *r, const char *disk, GError **err)
{
  g_autofree char *path = r->ops->path (r, disk, UPLOAD_FILE);
  g_mutex_lock (&uploads_lock);
  struct upload *u = uploads ? g_hash_table_lookup (uploads, path) : NULL;
  if (u)
    g_hash_table_remove (uploads, path);
  while (u && u->refs > 1)
    g_cond_wait (&uploads_idle, &uploads_lock);
  g_mutex_unlock (&uploads_lock);
  if (!u)
    return 0;
  int ret = vdisk_close (u->disk);
  if (ret == -1)
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
  u->disk = NULL;
  upload_unref (u);
  return ret;
}

static int
check_disk (const char *disk, GError **err)
{
  if (!backup_name_is_safe (disk))
    return FAIL (err, G_FILE_ERROR_INVAL,
                 "\"%s\" is not a disk key ([A-Za-z0-9._-], not starting "
                 "with a dot)",
                 disk);
  return 0;
}

/* Open the staging image and its journal; the table holds them. */
static int
upload_open (struct backup_repo *r, const char *disk, const char *source,
             uint64_t size, const char *base, bool fresh, GError **err)
{
  g_autofree char *path = r->ops->path (r, disk, UPLOAD_FILE);
  g_autofree char *jpath = r->ops->path (r, disk, UPLOAD_JOURNAL);
  g_autofree char *spath = r->ops->path (r, disk, UPLOAD_SUMS);
  g_autofree char *dir = r->ops->path (r, disk, ".");
  g_autofree char *identity
      = g_strdup_printf ("upload %s -> %s (%" PRIu64 " bytes, base %s)",
                         source, disk, size, base ? base : "none");
  struct upload *u = g_new0 (struct upload, 1);
  char *e = NULL;
  bool resumed = false;

  g_mutex_init (&u->lock);
  g_cond_init (&u->idle);
  u->busy = g_hash_table_new (g_direct_hash, g_direct_equal);
  u->closing = g_hash_table_new (g_direct_hash, g_direct_equal);
  u->sums_fd = -1;
  u->refs = 1;
  u->path = g_strdup (path);
  u->size = size;
  u->nwindows = (size + COPY_WINDOW - 1) / COPY_WINDOW;
  if (fresh) {
    g_autofree char *parent = base ? g_strdup_printf ("%s.qcow2", base) : NULL;
    struct vdisk_create_params cp = { .parent = parent,
                                      .parent_format = parent ? "qcow2" : NULL,
                                      .confine = dir };
    copy_journal_remove (jpath);
    unlink (path);
    unlink (spath);
    if (vdisk_create (path, VDISK_FORMAT_QCOW2, size, &cp) == -1) {
      g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s",
                   vdisk_get_error ());
      goto bad;
    }
  }
  /* Absent (a staging begun by a daemon that kept no sums): empty, and
   * the commit hashes what the done windows hold. */
  u->sums_fd = open (spath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (u->sums_fd == -1) {
    g_set_error (err, G_FILE_ERROR, g_file_error_from_errno (errno),
                 "cannot open %s: %s", spath, g_strerror (errno));
    goto bad;
  }
  u->j = journal_open (jpath, identity, u->nwindows, &resumed, &e);
  if (!u->j) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", e);
    g_free (e);
    goto bad;
  }
  /* Not confined: a hidden name is never an image in a confining
   * directory; its parent is the base's file, named by us. */
  u->disk = vdisk_open_as (path, VDISK_OPEN_RDWR | VDISK_OPEN_BUFFERED,
                           VDISK_FORMAT_QCOW2, NULL);
  if (!u->disk || vdisk_repair_leaks (u->disk, NULL) == -1) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
    goto bad;
  }
  g_mutex_lock (&uploads_lock);
  if (!uploads)
    uploads = g_hash_table_new (g_str_hash, g_str_equal);
  struct upload *old = g_hash_table_lookup (uploads, path);
  g_hash_table_insert (uploads, u->path, u);
  g_mutex_unlock (&uploads_lock);
  if (old)
    upload_unref (old);
  return 0;

bad:
  upload_unref (u);
  return -1;
}

/* The note of DISK's upload: its source, size, base (a JsonObject the
 * parser owns), or NULL (none, or *ERR). */
/* DISK/NAME whole, or NULL: absent (no error), or *ERR. */
static char *
read_if_there (struct backup_repo *r, const char *disk, const char *name,
               size_t *len, GError **err)
{
  GError *e = NULL;
  char *text = r->ops->read (r, disk, name, len, &e);
  if (!text && g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT))
    g_error_free (e);
  else if (!text)
    g_propagate_error (err, e);
  return text;
}

static JsonObject *
read_note (struct backup_repo *r, const char *disk, JsonParser *p,
           GError **err)
{
  size_t len;
  g_autofree char *text = read_if_there (r, disk, UPLOAD_NOTE, &len, err);
  JsonNode *root;
  if (!text)
    return NULL;
  if (!json_parser_load_from_data (p, text, len, NULL)
      || !(root = json_parser_get_root (p)) || !JSON_NODE_HOLDS_OBJECT (root)
      || !json_object_has_member (json_node_get_object (root), "source")) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "repository %s: %s/" UPLOAD_NOTE
                 " is damaged: remove it to start "
                 "that upload over",
                 r->location, disk);
    return NULL;
  }
  return json_node_get_object (root);
}

/* The point a commit of DISK's upload was making when it was cut short
 * (.upload.point.json: its manifest, blocks and all), or NULL (none, or
 * *ERR if it is damaged). */
static struct backup_manifest *
read_pending (struct backup_repo *r, const char *disk, GError **err)
{
  GError *e = NULL;
  size_t len;
  g_autofree char *text = read_if_there (r, disk, UPLOAD_POINT, &len, err);
  g_autofree char *name = g_strdup_printf ("%s/" UPLOAD_POINT, disk);
  if (!text)
    return NULL;
  struct backup_manifest *m = backup_manifest_parse (text, len, name, &e);
  if (!m) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "repository %s: %s; remove %s/" UPLOAD_NOTE
                 " and it to start that upload over",
                 r->location, e->message, disk);
    g_error_free (e);
  }
  return m;
}

/* The chain's hashes from BASE back to its full, newest first wins, as
 * a JSON object {"INDEX": "HEX", ...} added to B. */
static int
add_chain (JsonBuilder *b, GPtrArray *points, const char *base,
           struct backup_repo *r, GError **err)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_int64_hash, g_int64_equal);
  const char *want = base;
  unsigned depth = 0;

  json_builder_begin_object (b);
  while (want) {
    const struct backup_manifest *m = NULL;
    for (guint i = 0; i < points->len && !m; i++)
      if (strcmp (((struct backup_manifest *)points->pdata[i])->id, want) == 0)
        m = points->pdata[i];
    if (!m || ++depth > 10000)
      return FAIL (err, G_FILE_ERROR_INVAL,
                   "repository %s: point %s is missing from its chain",
                   r->location, want);
    for (size_t i = 0; i < m->n_blocks; i++) {
      gint64 *k = (gint64 *)&m->blocks[i].index;
      if (g_hash_table_contains (seen, k))
        continue;
      g_hash_table_add (seen, k);
      char name[24], hex[65];
      snprintf (name, sizeof name, "%" PRIu64, m->blocks[i].index);
      for (int j = 0; j < 32; j++)
        snprintf (hex + 2 * j, 3, "%02x", m->blocks[i].sha256[j]);
      json_builder_set_member_name (b, name);
      json_builder_add_string_value (b, hex);
    }
    want = m->parent;
  }
  json_builder_end_object (b);
  return 0;
}

static char *
builder_text (JsonBuilder *b)
{
  g_autoptr (JsonGenerator) g = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  return json_generator_to_data (g, NULL);
}

char *
backup_serve_begin (struct backup_repo *r, const char *disk,
                    const struct backup_upload *up, GError **err)
{
  const char *source = up->source;
  uint64_t size = up->virtual_size;
  bool full = up->full;
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GPtrArray) points = NULL;
  g_autofree char *base = NULL;
  GError *e = NULL;

  if (check_disk (disk, err) == -1)
    return NULL;
  if (size == 0 || size > MAX_SIZE) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "virtual size %" PRIu64 " is out of range (1 byte to %" PRIu64
                 ")",
                 size, (uint64_t)MAX_SIZE);
    return NULL;
  }
  if (r->ops->lock (r, true, err) == -1
      || !(points = backup_repo_points (r, disk, NULL, err)))
    return NULL;
  JsonObject *note = read_note (r, disk, p, &e);
  g_autoptr (backup_manifest) pending = NULL;
  if (!e && note)
    pending = read_pending (r, disk, &e);
  if (e) {
    g_propagate_error (err, e);
    return NULL;
  }
  if (note) {
    const char *was
        = json_object_get_string_member_with_default (note, "source", "");
    uint64_t was_size
        = json_object_get_int_member_with_default (note, "virtual-size", 0);
    bool was_full
        = json_object_get_boolean_member_with_default (note, "full", false);
    if (strcmp (was, source) != 0 || was_size != size || was_full != full) {
      g_set_error (
          err, G_FILE_ERROR, G_FILE_ERROR_EXIST,
          "repository %s: disk %s has an unfinished upload of %s (%" PRIu64
          " bytes%s); run that backup again to finish it",
          r->location, disk, was, was_size, was_full ? ", --full" : "");
      return NULL;
    }
    base = g_strdup (
        json_object_get_string_member_with_default (note, "base", NULL));
    struct upload *u = upload_get (r, disk);
    g_autofree char *path = r->ops->path (r, disk, UPLOAD_FILE);
    if (u)
      upload_unref (u);
    else if (!pending
             && upload_open (r, disk, source, size, base,
                             !g_file_test (path, G_FILE_TEST_EXISTS), err)
                    == -1)
      return NULL;
  }
  else {
    const struct backup_manifest *prev
        = points->len ? points->pdata[points->len - 1] : NULL;
    if (!full && prev && prev->virtual_size == size)
      base = g_strdup (prev->id);
    g_autoptr (JsonBuilder) b = json_builder_new ();
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "source");
    json_builder_add_string_value (b, source);
    json_builder_set_member_name (b, "virtual-size");
    json_builder_add_int_value (b, size);
    json_builder_set_member_name (b, "full");
    json_builder_add_boolean_value (b, full);
    json_builder_set_member_name (b, "base");
    json_builder_add_string_value (b, base);
    const char *keys[] = { "why-full", "cbt-snapshot", "cbt-generation" };
    const char *vals[]
        = { up->why_full, up->cbt_snapshot, up->cbt_generation };
    for (size_t i = 0; i < G_N_ELEMENTS (keys); i++) {
      json_builder_set_member_name (b, keys[i]);
      json_builder_add_string_value (b, vals[i]);
    }
    json_builder_end_object (b);
    g_autofree char *text = builder_text (b);
    /* The note first: a kill then leaves a note to resume with.  (A
     * point note is a finished upload's, left by a kill: it goes
     * before, or this upload would be taken for that one.) */
    g_autofree char *stale = r->ops->path (r, disk, UPLOAD_POINT);
    upload_drop (r, disk);
    if ((g_file_test (stale, G_FILE_TEST_EXISTS)
         && r->ops->remove (r, disk, UPLOAD_POINT, err) == -1)
        || r->ops->publish (r, disk, UPLOAD_NOTE, text, strlen (text), err)
               == -1
        || upload_open (r, disk, source, size, base, true, err) == -1)
      return NULL;
  }

  /* A commit cut short: every window is done, and the staging image
   * may be the point's file already. */
  struct upload *u = pending ? NULL : upload_get (r, disk);
  if (!u && !pending) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "upload of %s vanished",
                 disk);
    return NULL;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "base");
  json_builder_add_string_value (b, base);
  json_builder_set_member_name (b, "window-size");
  json_builder_add_int_value (b, COPY_WINDOW);
  json_builder_set_member_name (b, "done");
  json_builder_begin_array (b);
  if (u)
    g_mutex_lock (&u->lock);
  for (uint64_t w = 0; w < (size + COPY_WINDOW - 1) / COPY_WINDOW; w++)
    if (!u || journal_is_done (u->j, w))
      json_builder_add_int_value (b, w);
  if (u) {
    g_mutex_unlock (&u->lock);
    upload_unref (u);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "blocks");
  if (add_chain (b, points, base, r, err) == -1)
    return NULL;
  json_builder_end_object (b);
  return builder_text (b);
}

/* DISK's open upload, or G_FILE_ERROR_EXIST. */
static struct upload *
need_upload (struct backup_repo *r, const char *disk, GError **err)
{
  if (check_disk (disk, err) == -1)
    return NULL;
  struct upload *u = upload_get (r, disk);
  if (!u)
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                 "disk %s has no upload in progress here: begin it first",
                 disk);
  return u;
}

/* Write BUF (LEN bytes at OFF) into the staging image D: a whole block
 * of zeroes as a zero cluster (it hides the base's block, as a local
 * create writes a block that became zero), the rest as data. */
static int
stage_write (struct vdisk *d, const char *buf, size_t len, uint64_t off)
{
  size_t start = 0, i = 0;
  bool zeroes = false;

  while (start < len) {
    size_t n = i < len ? MIN (len - i, BACKUP_BLOCK_SIZE
                                           - (off + i) % BACKUP_BLOCK_SIZE)
                       : 0;
    bool z = n == BACKUP_BLOCK_SIZE && is_zero (buf + i, n);
    if (i > start && (i == len || z != zeroes)) {
      /* The run [start, i) ends here. */
      int r = zeroes ? vdisk_zero (d, i - start, off + start, 0)
                     : vdisk_pwrite (d, buf + start, i - start, off + start, 0);
      if (r == -1)
        return -1;
      start = i;
    }
    zeroes = z;
    i += n;
  }
  return 0;
}

/* Count a write into windows [W0, W1] under way (ADD 1) or over (-1);
 * with ADD 1, refuse (-1 with *ERR) if one of them is done or being
 * done.  Under U's lock. */
static int
windows_busy (struct upload *u, uint64_t w0, uint64_t w1, int add,
              const char *disk, GError **err)
{
  for (uint64_t w = w0; add > 0 && w <= w1; w++)
    if (journal_is_done (u->j, w)
        || g_hash_table_contains (u->closing, GSIZE_TO_POINTER (w)))
      return FAIL (err, G_FILE_ERROR_INVAL,
                   "window %" PRIu64 " of disk %s is done already: its "
                   "bytes are final",
                   w, disk);
  for (uint64_t w = w0; w <= w1; w++) {
    gpointer k = GSIZE_TO_POINTER (w);
    size_t n = GPOINTER_TO_SIZE (g_hash_table_lookup (u->busy, k)) + add;
    if (n)
      g_hash_table_insert (u->busy, k, GSIZE_TO_POINTER (n));
    else
      g_hash_table_remove (u->busy, k);
  }
  if (add < 0)
    g_cond_broadcast (&u->idle);
  return 0;
}

int
backup_serve_write (struct backup_repo *r, const char *disk, uint64_t offset,
                    const void *buf, size_t len, GError **err)
{
  struct upload *u = need_upload (r, disk, err);
  int ret = 0;
  if (!u)
    return -1;
  if (offset > u->size || len > u->size - offset)
    ret = FAIL (err, G_FILE_ERROR_INVAL,
                "%zu bytes at offset %" PRIu64 " are past the end of the "
                "disk (%" PRIu64 " bytes)",
                len, offset, u->size);
  else if (len) {
    uint64_t w0 = offset / COPY_WINDOW, w1 = (offset + len - 1) / COPY_WINDOW;
    g_mutex_lock (&u->lock);
    ret = windows_busy (u, w0, w1, 1, disk, err);
    g_mutex_unlock (&u->lock);
    if (ret == 0) {
      if (stage_write (u->disk, buf, len, offset) == -1)
        ret = FAIL (err, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
      g_mutex_lock (&u->lock);
      windows_busy (u, w0, w1, -1, disk, NULL);
      g_mutex_unlock (&u->lock);
    }
  }
  upload_unref (u);
  return ret;
}

/* The SHA-256 of every block that U's staged layer holds in window W
 * into SUMS (WINDOW_BLOCKS entries; all zero for a block it does not
 * hold).  With FROM_FILE a block's sum is taken from the sums file
 * where it has one; every other is read back from the layer. */
static int
window_sums (struct upload *u, uint64_t w, bool from_file,
             uint8_t (*sums)[32], GError **err)
{
  uint64_t size = vdisk_get_size (u->disk);
  uint64_t first = w * WINDOW_BLOCKS, off = w * COPY_WINDOW;
  uint64_t end = MIN (off + COPY_WINDOW, size);
  struct vdisk_extents ex = { 0 };
  g_autofree uint8_t *kept = g_malloc0 (WINDOW_BLOCKS * 32);
  g_autofree char *buf = g_malloc (BACKUP_BLOCK_SIZE);
  int ret = 0;

  memset (sums, 0, WINDOW_BLOCKS * 32);
  if (from_file && full_pread (u->sums_fd, kept, WINDOW_BLOCKS * 32, first * 32)
                       == -1)
    return FAIL (err, G_FILE_ERROR_IO, "cannot read the sums of %s: %s",
                 u->path, g_strerror (errno));
  if (vdisk_map (u->disk, off, end - off, VDISK_MAP_LAYER, &ex) == -1)
    ret = FAIL (err, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
  for (size_t i = 0; ret == 0 && i < ex.len; i++) {
    if (ex.v[i].type == VDISK_EXTENT_HOLE)
      continue;
    for (uint64_t b = ex.v[i].offset / BACKUP_BLOCK_SIZE;
         ret == 0 && b * BACKUP_BLOCK_SIZE < ex.v[i].offset + ex.v[i].length;
         b++) {
      uint8_t *sum = sums[b - first], *had = kept + (b - first) * 32;
      uint64_t len = MIN (BACKUP_BLOCK_SIZE, size - b * BACKUP_BLOCK_SIZE);
      if (!is_zero (sum, 32)) /* an extent's neighbour in the same block */
        continue;
      if (!is_zero (had, 32))
        memcpy (sum, had, 32);
      else if (vdisk_pread (u->disk, buf, len, b * BACKUP_BLOCK_SIZE) == -1)
        ret = FAIL (err, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
      else
        backup_sha256 (buf, len, sum);
    }
  }
  vdisk_extents_free (&ex);
  return ret;
}

int
backup_serve_done (struct backup_repo *r, const char *disk, uint64_t window,
                   GError **err)
{
  struct upload *u = need_upload (r, disk, err);
  gpointer k = GSIZE_TO_POINTER (window);
  char *e = NULL;
  int ret = 0;
  if (!u)
    return -1;
  if (window >= u->nwindows) {
    ret = FAIL (err, G_FILE_ERROR_INVAL,
                "window %" PRIu64 " is past the last (%" PRIu64 ")", window,
                u->nwindows - 1);
    upload_unref (u);
    return ret;
  }
  /* The window's writes under way finish first; none starts after. */
  g_mutex_lock (&u->lock);
  while (g_hash_table_contains (u->closing, k))
    g_cond_wait (&u->idle, &u->lock);
  bool done = journal_is_done (u->j, window);
  if (!done) {
    g_hash_table_add (u->closing, k);
    while (g_hash_table_contains (u->busy, k))
      g_cond_wait (&u->idle, &u->lock);
  }
  g_mutex_unlock (&u->lock);
  if (done) {
    upload_unref (u);
    return 0;
  }

  g_autofree uint8_t (*sums)[32] = g_malloc (WINDOW_BLOCKS * 32);
  uint64_t first = window * WINDOW_BLOCKS;
  size_t n = MIN (WINDOW_BLOCKS, (u->size + BACKUP_BLOCK_SIZE - 1)
                                     / BACKUP_BLOCK_SIZE - first);
  if (vdisk_flush (u->disk) == -1)
    ret = FAIL (err, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
  else if (window_sums (u, window, false, sums, err) == -1)
    ret = -1;
  else if (full_pwrite (u->sums_fd, sums, n * 32, first * 32) == -1
           || fdatasync (u->sums_fd) == -1)
    ret = FAIL (err, G_FILE_ERROR_IO, "cannot write the sums of %s: %s",
                u->path, g_strerror (errno));
  g_mutex_lock (&u->lock);
  if (ret == 0
      && (journal_mark_started (u->j, window, &e) == -1
          || journal_mark_done (u->j, &window, 1, &e) == -1))
    ret = FAIL (err, G_FILE_ERROR_IO, "%s", e);
  g_hash_table_remove (u->closing, k);
  g_cond_broadcast (&u->idle);
  g_mutex_unlock (&u->lock);
  g_free (e);
  upload_unref (u);
  return ret;
}

/* Whether the staged layer is, as it is, the point a local create of
 * the staged disk would make (create.c's choice of kind, for the same
 * inputs), and if so M's kind, why and parent.  Not when a full is
 * wanted over a base (why-full), or DISK got another point meanwhile. */
static bool
staged_is_point (JsonObject *note, GPtrArray *points, uint64_t size,
                 struct backup_manifest *m)
{
  const struct backup_manifest *prev
      = points->len ? points->pdata[points->len - 1] : NULL;
  const char *base
      = json_object_get_string_member_with_default (note, "base", NULL);
  const char *why_full
      = json_object_get_string_member_with_default (note, "why-full", NULL);

  if (base) {
    if (!prev || strcmp (prev->id, base) != 0 || why_full)
      return false;
    m->kind = BACKUP_INCREMENTAL;
    m->parent = g_strdup (base);
    m->why = g_strdup_printf ("blocks compared by SHA-256 with point %s",
                              base);
    return true;
  }
  m->kind = BACKUP_FULL;
  m->why = backup_why_full (
      json_object_get_boolean_member_with_default (note, "full", false), prev,
      size, why_full);
  return m->why != NULL;
}

/* A new point's id: the UTC time NOW to the second, made unique among
 * every disk's points. */
static char *
new_id (GDateTime *now, struct backup_repo *r, GError **err)
{
  g_autoptr (GPtrArray) all = backup_repo_all_points (r, NULL, err);
  g_autofree char *stem = g_date_time_format (now, "%Y%m%dT%H%M%SZ");
  if (!all)
    return NULL;
  for (unsigned n = 1;; n++) {
    char *id = n == 1 ? g_strdup (stem) : g_strdup_printf ("%s-%u", stem, n);
    bool taken = false;
    for (guint i = 0; i < all->len && !taken; i++)
      taken = strcmp (((struct backup_manifest *)all->pdata[i])->id, id) == 0;
    if (!taken)
      return id;
    g_free (id);
  }
}

/* The manifest of the point U's staged layer is (M's kind, why and
 * parent decided): its blocks are the layer's, their sums the sums
 * file's. */
static int
staged_manifest (struct backup_repo *r, const char *disk, struct upload *u,
                 JsonObject *note, struct backup_manifest *m, GError **err)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree uint8_t (*sums)[32] = g_malloc (WINDOW_BLOCKS * 32);
  g_autoptr (GArray) blocks
      = g_array_new (false, false, sizeof (struct backup_block));

  if (!(m->id = new_id (now, r, err)))
    return -1;
  m->time = g_date_time_format (now, "%Y-%m-%dT%H:%M:%S.%fZ");
  m->time_us = g_date_time_to_unix (now) * G_USEC_PER_SEC
               + g_date_time_get_microsecond (now);
  m->disk = g_strdup (disk);
  m->source = g_strdup (json_object_get_string_member (note, "source"));
  m->cbt_generation = g_strdup (json_object_get_string_member_with_default (
      note, "cbt-generation", NULL));
  m->cbt_snapshot = g_strdup (json_object_get_string_member_with_default (
      note, "cbt-snapshot", NULL));
  m->file = g_strdup_printf ("%s.qcow2", m->id);
  m->virtual_size = vdisk_get_size (u->disk);
  for (uint64_t w = 0; w < u->nwindows; w++) {
    if (window_sums (u, w, true, sums, err) == -1)
      return -1;
    for (uint64_t i = 0; i < WINDOW_BLOCKS; i++) {
      struct backup_block blk = { .index = w * WINDOW_BLOCKS + i };
      if (is_zero (sums[i], 32))
        continue;
      memcpy (blk.sha256, sums[i], 32);
      g_array_append_val (blocks, blk);
      m->bytes_written += MIN (BACKUP_BLOCK_SIZE,
                               m->virtual_size - blk.index * BACKUP_BLOCK_SIZE);
    }
  }
  m->bytes_read = m->bytes_written;
  m->bytes_skipped = m->virtual_size - m->bytes_written;
  m->n_blocks = blocks->len;
  m->blocks = (struct backup_block *)g_array_free (g_steal_pointer (&blocks),
                                                   false);
  return 0;
}

/* Make PENDING (noted in .upload.point.json) a point, wherever a kill
 * left it: the staging image renamed to its file, its manifest
 * published; then the staging notes go, the point note last. */
static int
finish_point (struct backup_repo *r, const char *disk,
              struct backup_manifest *pending, GError **err)
{
  g_autofree char *mname = g_strdup_printf ("%s.json", pending->id);
  g_autofree char *mpath = r->ops->path (r, disk, mname);
  g_autofree char *staged = r->ops->path (r, disk, UPLOAD_FILE);
  g_autofree char *file = r->ops->path (r, disk, pending->file);
  g_autofree char *jpath = r->ops->path (r, disk, UPLOAD_JOURNAL);

  if (!g_file_test (mpath, G_FILE_TEST_EXISTS)) {
    if (g_file_test (staged, G_FILE_TEST_EXISTS)
        && r->ops->rename (r, disk, UPLOAD_FILE, pending->file, err) == -1)
      return -1;
    if (!g_file_test (file, G_FILE_TEST_EXISTS))
      return FAIL (err, G_FILE_ERROR_IO,
                   "repository %s: disk %s: the upload's point %s has "
                   "lost its file %s",
                   r->location, disk, pending->id, pending->file);
    g_autofree char *text = backup_manifest_to_json (pending);
    if (r->ops->publish (r, disk, mname, text, strlen (text), err) == -1)
      return -1;
  }
  if (copy_journal_remove (jpath) == -1)
    return FAIL (err, G_FILE_ERROR_IO, "cannot remove %s", jpath);
  if (r->ops->remove (r, disk, UPLOAD_SUMS, err) == -1
      || r->ops->remove (r, disk, UPLOAD_NOTE, err) == -1
      || r->ops->remove (r, disk, UPLOAD_POINT, err) == -1)
    return -1;
  return 0;
}

/* The point made by backup_create from the staged disk (THREADS of its
 * workers), when the staged layer is not the point as it is. */
static int
commit_by_create (struct backup_repo *r, const char *disk, JsonObject *note,
                  unsigned threads, struct backup_manifest **point,
                  GError **err)
{
  upload_drop (r, disk); /* closed: backup_create opens it as a source */
  g_autofree char *src = r->ops->path (r, disk, UPLOAD_FILE);
  struct backup_create_params cp = {
    .source = src,
    .format = VDISK_FORMAT_QCOW2,
    .disk = disk,
    .source_name = json_object_get_string_member (note, "source"),
    .full = json_object_get_boolean_member_with_default (note, "full", false),
    .why_full
    = json_object_get_string_member_with_default (note, "why-full", NULL),
    .cbt_snapshot
    = json_object_get_string_member_with_default (note, "cbt-snapshot", NULL),
    .cbt_generation = json_object_get_string_member_with_default (
        note, "cbt-generation", NULL),
    .threads = threads,
  };
  if (backup_create (r, &cp, point, err) == -1)
    return -1;
  g_autofree char *jpath = r->ops->path (r, disk, UPLOAD_JOURNAL);
  if (copy_journal_remove (jpath) == -1
      || r->ops->remove (r, disk, UPLOAD_FILE, err) == -1
      || r->ops->remove (r, disk, UPLOAD_SUMS, err) == -1
      || r->ops->remove (r, disk, UPLOAD_NOTE, err) == -1) {
    backup_manifest_free (*point);
    *point = NULL;
    return -1;
  }
  return 0;
}

int
backup_serve_commit (struct backup_repo *r, const char *disk, unsigned threads,
                     struct backup_manifest **point, GError **err)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (backup_manifest) m = NULL;
  g_autoptr (GPtrArray) points = NULL;
  double t0 = monotonic_seconds ();
  GError *e = NULL;

  if (check_disk (disk, err) == -1 || r->ops->lock (r, true, err) == -1)
    return -1;
  JsonObject *note = read_note (r, disk, p, &e);
  if (note)
    m = read_pending (r, disk, &e);
  if (!note && !e)
    g_set_error (&e, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "disk %s has no upload", disk);
  if (e) {
    g_propagate_error (err, e);
    return -1;
  }
  if (!m) {
    struct upload *u = need_upload (r, disk, err);
    if (!u)
      return -1;
    for (uint64_t w = 0; w < u->nwindows; w++) {
      g_mutex_lock (&u->lock);
      bool done = journal_is_done (u->j, w);
      g_mutex_unlock (&u->lock);
      if (!done) {
        upload_unref (u);
        return FAIL (err, G_FILE_ERROR_INVAL,
                     "window %" PRIu64 " of disk %s was not sent yet", w,
                     disk);
      }
    }
    m = g_new0 (struct backup_manifest, 1);
    if (!(points = backup_repo_points (r, disk, NULL, err))) {
      upload_unref (u);
      return -1;
    }
    if (!staged_is_point (note, points, vdisk_get_size (u->disk), m)) {
      upload_unref (u);
      return commit_by_create (r, disk, note, threads, point, err);
    }
    int ret = staged_manifest (r, disk, u, note, m, err);
    upload_unref (u);
    m->seconds = monotonic_seconds () - t0;
    g_autofree char *text = ret == 0 ? backup_manifest_to_json (m) : NULL;
    if (ret == -1 || upload_close (r, disk, err) == -1
        || r->ops->publish (r, disk, UPLOAD_POINT, text, strlen (text), err)
               == -1)
      return -1;
  }
  if (finish_point (r, disk, m, err) == -1)
    return -1;
  *point = g_steal_pointer (&m);
  return 0;
}

/* Point ID of DISK opened with its chain; NULL with *ERR. */
static struct vdisk *
open_point (struct backup_repo *r, const char *disk, const char *id,
            GError **err)
{
  if (check_disk (disk, err) == -1)
    return NULL;
  if (!backup_name_is_safe (id)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "\"%s\" is not a point id", id);
    return NULL;
  }
  g_autoptr (backup_manifest) m = backup_repo_find_point (r, id, disk, err);
  if (!m)
    return NULL;
  if (strcmp (m->id, id) != 0) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "disk %s has no point %s", disk, id);
    return NULL;
  }
  g_autofree char *path = r->ops->path (r, disk, m->file);
  g_autofree char *dir = r->ops->path (r, disk, ".");
  struct vdisk *d
      = vdisk_open_as (path, VDISK_OPEN_BUFFERED, VDISK_FORMAT_QCOW2, dir);
  if (!d)
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
  return d;
}

char *
backup_serve_map (struct backup_repo *r, const char *disk, const char *id,
                  GError **err)
{
  struct vdisk_extents ex = { 0 };
  struct vdisk_info info;
  struct vdisk *d = open_point (r, disk, id, err);
  if (!d)
    return NULL;
  vdisk_get_info (d, &info);
  if (vdisk_map (d, 0, info.virtual_size, 0, &ex) == -1) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
    vdisk_close (d);
    return NULL;
  }
  vdisk_close (d);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "virtual-size");
  json_builder_add_int_value (b, info.virtual_size);
  json_builder_set_member_name (b, "data");
  json_builder_begin_array (b);
  for (size_t i = 0; i < ex.len; i++) {
    if (ex.v[i].type != VDISK_EXTENT_DATA)
      continue;
    json_builder_begin_array (b);
    json_builder_add_int_value (b, ex.v[i].offset);
    json_builder_add_int_value (b, ex.v[i].length);
    json_builder_end_array (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  vdisk_extents_free (&ex);
  return builder_text (b);
}

int
backup_serve_read (struct backup_repo *r, const char *disk, const char *id,
                   uint64_t offset, size_t len, void *buf, GError **err)
{
  struct vdisk_info info;
  struct vdisk *d = open_point (r, disk, id, err);
  int ret = 0;
  if (!d)
    return -1;
  vdisk_get_info (d, &info);
  if (offset > info.virtual_size || len > info.virtual_size - offset)
    ret = FAIL (err, G_FILE_ERROR_INVAL,
                "%zu bytes at offset %" PRIu64 " are past the end of point "
                "%s (%" PRIu64 " bytes)",
                len, offset, id, info.virtual_size);
  else if (vdisk_pread (d, buf, len, offset) == -1)
    ret = FAIL (err, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
  vdisk_close (d);
  return ret;
}
