/* The server side of a remote repository (backup.h's backup_serve_*):
 * what vdimotiond does, in the repository's own directory, for a client
 * that has the guest data.  The HTTP face is xapi-shim/http-backup.c;
 * the protocol is vdimotion-backup-http(7).
 *
 * Design: an upload is staged, then made a point by backup_create
 * itself, so the repository's files, manifests and resume rules are the
 * local ones.
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
 *   once: libvdisk takes concurrent writes).  done: a window is
 *   complete: the image is flushed, then the window marked done.
 * - commit: every window done, the staging image is closed and
 *   backup_create runs with it as the source (under the repository's
 *   exclusive lock): it compares by hash with the chain, writes the
 *   point's layer and publishes its manifest last, resuming its own
 *   work if a kill cut the commit short.  Then the staging files go.
 * - map and read: a point's file opened with its chain, for a restore.
 *
 * The open staging images live in a table of this process, keyed by
 * their path; after a restart, begin opens them again.  A kill between
 * backup_create's publication and the staging files' removal leaves a
 * finished upload: its rerun commits it again, which makes one more
 * incremental point with nothing in it.
 *
 * Errors: GErrors of G_FILE_ERROR; INVAL for a bad request (the face
 * answers 400), NOENT for what is not there (404), EXIST for an upload
 * of another source in the way, or a write before begin (409). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "backup.h"
#include "copy.h"
#include "journal.h"
#include "vdisk.h"

#define UPLOAD_NOTE ".upload.json"
#define UPLOAD_FILE ".upload.qcow2"
#define UPLOAD_JOURNAL ".upload.journal"
/* The largest disk taken: 64 TiB. */
#define MAX_SIZE (UINT64_C (1) << 46)

struct upload
{
  char *path; /* the staging image: the table's key */
  struct vdisk *disk;
  struct journal *j;
  GMutex lock; /* the journal's */
  uint64_t size, nwindows;
  unsigned refs;
};

static GMutex uploads_lock;
static GHashTable *uploads; /* path -> struct upload */

/* Set *ERR (G_FILE_ERROR CODE) and be -1. */
#define FAIL(err, code, ...)                                                  \
  (g_set_error ((err), G_FILE_ERROR, (code), __VA_ARGS__), -1)

static void
upload_unref (struct upload *u)
{
  g_mutex_lock (&uploads_lock);
  bool last = --u->refs == 0;
  g_mutex_unlock (&uploads_lock);
  if (!last)
    return;
  if (u->j)
    journal_close (u->j, false);
  if (u->disk)
    vdisk_close (u->disk);
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
  g_autofree char *dir = r->ops->path (r, disk, ".");
  g_autofree char *identity
      = g_strdup_printf ("upload %s -> %s (%" PRIu64 " bytes, base %s)",
                         source, disk, size, base ? base : "none");
  struct upload *u = g_new0 (struct upload, 1);
  char *e = NULL;
  bool resumed = false;

  g_mutex_init (&u->lock);
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
    if (vdisk_create (path, VDISK_FORMAT_QCOW2, size, &cp) == -1) {
      g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s",
                   vdisk_get_error ());
      goto bad;
    }
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
static JsonObject *
read_note (struct backup_repo *r, const char *disk, JsonParser *p,
           GError **err)
{
  GError *e = NULL;
  size_t len;
  g_autofree char *text = r->ops->read (r, disk, UPLOAD_NOTE, &len, &e);
  JsonNode *root;
  if (!text) {
    if (g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_error_free (e);
    else
      g_propagate_error (err, e);
    return NULL;
  }
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
    else if (upload_open (r, disk, source, size, base,
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
    /* The note first: a kill then leaves a note to resume with. */
    upload_drop (r, disk);
    if (r->ops->publish (r, disk, UPLOAD_NOTE, text, strlen (text), err) == -1
        || upload_open (r, disk, source, size, base, true, err) == -1)
      return NULL;
  }

  struct upload *u = upload_get (r, disk);
  if (!u) {
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
  g_mutex_lock (&u->lock);
  for (uint64_t w = 0; w < u->nwindows; w++)
    if (journal_is_done (u->j, w))
      json_builder_add_int_value (b, w);
  g_mutex_unlock (&u->lock);
  json_builder_end_array (b);
  upload_unref (u);
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
  else if (len && vdisk_pwrite (u->disk, buf, len, offset, 0) == -1)
    ret = FAIL (err, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
  upload_unref (u);
  return ret;
}

int
backup_serve_done (struct backup_repo *r, const char *disk, uint64_t window,
                   GError **err)
{
  struct upload *u = need_upload (r, disk, err);
  char *e = NULL;
  int ret = 0;
  if (!u)
    return -1;
  if (window >= u->nwindows)
    ret = FAIL (err, G_FILE_ERROR_INVAL,
                "window %" PRIu64 " is past the last (%" PRIu64 ")", window,
                u->nwindows - 1);
  else if (vdisk_flush (u->disk) == -1)
    ret = FAIL (err, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
  else {
    g_mutex_lock (&u->lock);
    if (journal_mark_started (u->j, window, &e) == -1
        || journal_mark_done (u->j, &window, 1, &e) == -1)
      ret = FAIL (err, G_FILE_ERROR_IO, "%s", e);
    g_mutex_unlock (&u->lock);
    g_free (e);
  }
  upload_unref (u);
  return ret;
}

int
backup_serve_commit (struct backup_repo *r, const char *disk, unsigned threads,
                     struct backup_manifest **point, GError **err)
{
  g_autoptr (JsonParser) p = json_parser_new ();
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
                   "window %" PRIu64 " of disk %s was not sent yet", w, disk);
    }
  }
  upload_unref (u);
  upload_drop (r, disk); /* closed: backup_create opens it as a source */

  GError *e = NULL;
  if (r->ops->lock (r, true, err) == -1)
    return -1;
  JsonObject *note = read_note (r, disk, p, &e);
  if (!note) {
    if (!e)
      g_set_error (&e, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                   "disk %s has no upload", disk);
    g_propagate_error (err, e);
    return -1;
  }
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
      || r->ops->remove (r, disk, UPLOAD_NOTE, err) == -1) {
    backup_manifest_free (*point);
    *point = NULL;
    return -1;
  }
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
