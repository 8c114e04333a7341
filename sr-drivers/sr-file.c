/* The `file` SR: a directory of images named <uuid>.vhd, <uuid>.qcow2 or
 * <uuid>.raw plus sr.db, an SQLite database of the VDI records, all
 * inside the directory so the SR can be moved and scanned elsewhere.
 * Layout and schema: vdimotion-sr(5).
 *
 * Paths: every file this driver touches is a single name inside the SR
 * directory, reached through a directory descriptor (the *at() calls) or
 * "<sr path>/<name>" for libvdisk.  Names we create are "<uuid>.<ext>"
 * from a validated uuid; names adopted by scan come from readdir.  A
 * name label is only ever stored in the database.
 *
 * Crash safety: creating writes the image before the record (an orphan
 * image is adopted by the next scan); destroying deletes the record in the
 * transaction that unlinks the file.  Snapshot renames the leaf, so it is
 * journalled: the snapshot's record is committed first with
 * pending_leaf = the VDI, and open/scan finish or undo such a record.
 *
 * Changed-block logs (cbt-log.h): a VDI with CBT has "<uuid>.cbtlog"
 * beside its image; the file's presence is the record's cbt_enabled.  A
 * snapshot rotates the VDI's log into the snapshot's once the new leaf is
 * in place (a crash between leaves the VDI's log counting from its older
 * snapshot: a walk to the new snapshot then finds no chain, a full
 * backup, never a wrong incremental).  data_destroy marks the record
 * cbt_metadata in sr.db first, then removes the image if no VDI reads
 * through it (open finishes that after a crash); an image that is a
 * parent stays, hidden, until its last child goes.
 * create_cbt_metadata inserts such a record with no image and no log
 * (inserted and marked in one transaction, so the scan keeps it): the
 * predecessor of a log that came from another host.  Destroying a VDI
 * first merges its log into the logs that count from it, then removes
 * the log after the record.
 *
 * Locking: one mutex per SR around every operation (SQLite is opened in
 * serialised mode too), and an flock on sr.db so that a second process
 * cannot open the same SR.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <assert.h>

#include "cbt-log.h"
#include "sqlite-bind.h"
#include "sr.h"
#include "vdisk-internal.h"

#define DB_NAME "sr.db"
#define TRASH_PREFIX ".deleting-" /* see destroy_locked */
#define SCHEMA_VERSION 1

struct file_sr
{
  pthread_mutex_t lock;
  sqlite3 *db;
  int dirfd;
  int lockfd; /* sr.db, flock()ed; closed after the database */
};

static struct file_sr *
F (struct sr *sr)
{
  return sr->priv;
}

/* ---- errors ---- */

/* "file SR PATH: " + message. */
static void __attribute__ ((format (printf, 3, 4)))
sr_err (struct sr *sr, int errnum, const char *fmt, ...)
{
  char msg[768];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  vdisk_set_error (errnum, "file SR %s: %s", sr->path, msg);
}

/* Put SR and VDI context in front of the error libvdisk left. */
static void
sr_err_wrap (struct sr *sr, const char *uuid, const char *doing)
{
  char prev[1024];
  int e = vdisk_get_errno ();
  snprintf (prev, sizeof prev, "%s", vdisk_get_error ());
  sr_err (sr, e, "VDI %s: %s: %s", uuid, doing, prev);
}

static void
sr_db_err (struct sr *sr, const char *doing)
{
  int code = sqlite3_errcode (F (sr)->db);
  sr_err (sr, code == SQLITE_FULL ? ENOSPC : EIO, "%s: %s: %s", DB_NAME, doing,
          sqlite3_errmsg (F (sr)->db));
}

/* ---- names ---- */

static const char *
ext_of (enum vdisk_format format)
{
  return vdisk_format_name (format);
}

/* Whether NAME ends in one of the image extensions. */
static bool
has_image_ext (const char *name)
{
  const char *dot = strrchr (name, '.');
  if (name[0] == '.' || strchr (name, '/') || !dot || dot == name)
    return false;
  return strcmp (dot, ".vhd") == 0 || strcmp (dot, ".qcow2") == 0
         || strcmp (dot, ".raw") == 0;
}

/* Whether NAME can be told to clients as it is: valid UTF-8 (XML and
 * JSON carry nothing else) without control characters. */
static bool
is_printable_name (const char *name)
{
  if (!g_utf8_validate (name, -1, NULL))
    return false;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return false;
  return true;
}

/* Only these names are images of the SR (see vdimotion-sr(5)).  A scan
 * adopts only printable ones (list_images); a record made before that
 * rule keeps working, its labels shown with replacement characters. */
static bool
is_image_name (const char *name)
{
  return has_image_ext (name);
}

char *
sr_printable (const char *s)
{
  char *v = g_utf8_make_valid (s, -1);
  GString *out = g_string_new (NULL);
  for (const char *p = v; *p; p = g_utf8_next_char (p)) {
    gunichar ch = g_utf8_get_char (p);
    bool xml_ok = ch >= 0x20 || ch == '\t' || ch == '\n' || ch == '\r';
    if (ch == 0xfffe || ch == 0xffff)
      xml_ok = false;
    g_string_append_unichar (out, xml_ok ? ch : 0xfffd);
  }
  g_free (v);
  char *r = strdup (out->str);
  g_string_free (out, TRUE);
  return r;
}

/* Takes S; NULL stays NULL. */
static char *
printable (char *s)
{
  if (!s || is_printable_name (s))
    return s;
  char *r = sr_printable (s);
  free (s);
  return r;
}

/* An image's format in this SR is its name's word: we name every image
 * "<uuid>.<format>" and adopt only such names, so the record and the name
 * always agree, and what a guest writes inside never changes either. */
static enum vdisk_format
format_of_name (const char *name)
{
  int f = vdisk_format_from_name (strrchr (name, '.') + 1);
  assert (f != -1); /* is_image_name said it is one of ours */
  return f;
}

/* "<sr path>/<name>" for libvdisk.  NAME is always one component. */
static char *
image_path (struct sr *sr, const char *name)
{
  char *p;
  if (asprintf (&p, "%s/%s", sr->path, name) == -1) {
    sr_err (sr, ENOMEM, "out of memory");
    return NULL;
  }
  return p;
}

static void
sync_dir (struct sr *sr)
{
  (void)fsync (F (sr)->dirfd);
}

/* ---- database helpers ---- */

static int
db_exec (struct sr *sr, const char *sql)
{
  char *msg = NULL;
  if (sqlite3_exec (F (sr)->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    sr_err (sr, sqlite3_errcode (F (sr)->db) == SQLITE_FULL ? ENOSPC : EIO,
            "%s: %s", DB_NAME, msg ? msg : "error");
    sqlite3_free (msg);
    return -1;
  }
  return 0;
}

static int
db_begin (struct sr *sr)
{
  return db_exec (sr, "BEGIN IMMEDIATE");
}

static int
db_commit (struct sr *sr)
{
  if (db_exec (sr, "COMMIT") == -1) {
    (void)sqlite3_exec (F (sr)->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  return 0;
}

static void
db_rollback (struct sr *sr)
{
  char prev[1024];
  int e = vdisk_get_errno ();
  /* Keep the error that made us roll back. */
  snprintf (prev, sizeof prev, "%s", vdisk_get_error ());
  (void)sqlite3_exec (F (sr)->db, "ROLLBACK", NULL, NULL, NULL);
  vdisk_set_error (e, "%s", prev);
}

static sqlite3_stmt *
db_prepare (struct sr *sr, const char *sql)
{
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (F (sr)->db, sql, -1, &st, NULL) != SQLITE_OK) {
    sr_db_err (sr, "preparing a statement");
    return NULL;
  }
  return st;
}

/* Run one statement that returns no rows.  Returns the number of rows
 * changed, or -1. */
static int
db_run (struct sr *sr, const char *sql, const char *spec, ...)
{
  sqlite3_stmt *st = db_prepare (sr, sql);
  if (!st)
    return -1;
  va_list ap;
  va_start (ap, spec);
  int r = sqlite_bindv (st, spec, ap) == SQLITE_OK ? 0 : -1;
  va_end (ap);
  if (r == 0 && sqlite3_step (st) != SQLITE_DONE)
    r = -1;
  if (r == -1)
    sr_db_err (sr, "updating the records");
  else
    r = sqlite3_changes (F (sr)->db);
  sqlite3_finalize (st);
  return r;
}

/* The first column of the first row as a new string; NULL with errno
 * 0 if there is no row. */
static char *
db_get_text (struct sr *sr, const char *sql, const char *spec, ...)
{
  sqlite3_stmt *st = db_prepare (sr, sql);
  char *out = NULL;
  if (!st)
    return NULL;
  va_list ap;
  va_start (ap, spec);
  int r = sqlite_bindv (st, spec, ap) == SQLITE_OK ? 0 : -1;
  va_end (ap);
  errno = 0;
  if (r == 0) {
    int s = sqlite3_step (st);
    if (s == SQLITE_ROW) {
      const char *t = (const char *)sqlite3_column_text (st, 0);
      out = strdup (t ? t : "");
      if (!out)
        sr_err (sr, ENOMEM, "out of memory");
    }
    else if (s != SQLITE_DONE) {
      sr_db_err (sr, "reading the records");
      errno = EIO;
    }
  }
  sqlite3_finalize (st);
  return out;
}

/* ---- records ---- */

/* Whether UUID has CBT on: its log is there and not disabled (a log
 * disabled under a running writer stays until the writer goes; see
 * cbt_log_disable).  A log that does not read counts as there: it says
 * so when used.  GENERATION (SR_UUID_LEN + 1 bytes, or NULL) gets the
 * log's generation, "" when it is off or does not read. */
static bool
has_log (struct sr *sr, const char *uuid, char *generation)
{
  char name[SR_UUID_LEN + 16];
  if (generation)
    generation[0] = '\0';
  snprintf (name, sizeof name, "%s%s", uuid, CBT_LOG_SUFFIX);
  if (faccessat (F (sr)->dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == -1)
    return false;
  g_autofree char *path = g_build_filename (sr->path, name, NULL);
  struct cbt_log_info info;
  if (cbt_log_read_header (path, &info, NULL) == -1)
    return true;
  if (generation && !info.disabled)
    g_strlcpy (generation, info.generation, SR_UUID_LEN + 1);
  return !info.disabled;
}

#define VDI_COLUMNS                                                           \
  "uuid, location, name_label, name_description, format, virtual_size, "      \
  "parent_uuid, read_only, managed, is_snapshot, snapshot_of, "               \
  "snapshot_time, created, cbt_metadata"

static void
copy_uuid (char *dst, const unsigned char *src)
{
  snprintf (dst, SR_UUID_LEN + 1, "%s", src ? (const char *)src : "");
}

static int
load_other_config (struct sr *sr, struct sr_vdi *v)
{
  sqlite3_stmt *st = db_prepare (
      sr, "SELECT key, value FROM other_config WHERE vdi = ?1 ORDER BY key");
  if (!st)
    return -1;
  sqlite3_bind_text (st, 1, v->uuid, -1, SQLITE_STATIC);
  int s;
  while ((s = sqlite3_step (st)) == SQLITE_ROW) {
    struct sr_kv *n
        = realloc (v->other_config, (v->n_other_config + 1) * sizeof *n);
    if (!n) {
      sqlite3_finalize (st);
      sr_err (sr, ENOMEM, "out of memory");
      return -1;
    }
    v->other_config = n;
    n[v->n_other_config].key
        = strdup ((const char *)sqlite3_column_text (st, 0));
    n[v->n_other_config].value
        = strdup ((const char *)sqlite3_column_text (st, 1));
    v->n_other_config++;
  }
  sqlite3_finalize (st);
  if (s != SQLITE_DONE) {
    sr_db_err (sr, "reading other_config");
    return -1;
  }
  return 0;
}

static struct sr_vdi *
row_to_vdi (struct sr *sr, sqlite3_stmt *st)
{
  struct sr_vdi *v = calloc (1, sizeof *v);
  if (!v) {
    sr_err (sr, ENOMEM, "out of memory");
    return NULL;
  }
  copy_uuid (v->uuid, sqlite3_column_text (st, 0));
  v->location = strdup ((const char *)sqlite3_column_text (st, 1));
  v->name_label
      = printable (strdup ((const char *)sqlite3_column_text (st, 2)));
  v->name_description
      = printable (strdup ((const char *)sqlite3_column_text (st, 3)));
  v->virtual_size = sqlite3_column_int64 (st, 5);
  copy_uuid (v->parent_uuid, sqlite3_column_text (st, 6));
  v->read_only = sqlite3_column_int (st, 7);
  v->managed = sqlite3_column_int (st, 8);
  v->is_snapshot = sqlite3_column_int (st, 9);
  copy_uuid (v->snapshot_of, sqlite3_column_text (st, 10));
  v->snapshot_time = sqlite3_column_int64 (st, 11);
  v->created = sqlite3_column_int64 (st, 12);
  v->cbt_metadata = sqlite3_column_int (st, 13);
  if (!v->location || !v->name_label || !v->name_description) {
    sr_vdi_free (v);
    sr_err (sr, ENOMEM, "out of memory");
    return NULL;
  }
  /* sr.db travels with the SR and may come from anywhere: a location
   * is used as a path only if it is a plain image name of this
   * directory. */
  if (!is_image_name (v->location)) {
    sr_err (sr, EIO, "VDI %s: record has a bad location \"%.64s\"", v->uuid,
            v->location);
    sr_vdi_free (v);
    return NULL;
  }
  /* The format is the name's word, whatever the format column says: a
   * damaged or hostile sr.db cannot make a raw image metadata. */
  v->format = format_of_name (v->location);
  struct stat sb;
  if (fstatat (F (sr)->dirfd, v->location, &sb, AT_SYMLINK_NOFOLLOW) == 0)
    v->physical_utilisation = (uint64_t)sb.st_blocks * 512;
  v->cbt_enabled = has_log (sr, v->uuid, v->cbt_generation);
  if (load_other_config (sr, v) == -1) {
    sr_vdi_free (v);
    return NULL;
  }
  return v;
}

/* The record of UUID, or NULL with ENOENT. */
static struct sr_vdi *
load_vdi (struct sr *sr, const char *uuid)
{
  sqlite3_stmt *st
      = db_prepare (sr, "SELECT " VDI_COLUMNS " FROM vdi WHERE uuid = ?1");
  struct sr_vdi *v = NULL;
  if (!st)
    return NULL;
  sqlite3_bind_text (st, 1, uuid, -1, SQLITE_STATIC);
  int s = sqlite3_step (st);
  if (s == SQLITE_ROW)
    v = row_to_vdi (sr, st);
  else if (s == SQLITE_DONE)
    sr_err (sr, ENOENT, "VDI %s: no such VDI in this SR", uuid);
  else
    sr_db_err (sr, "reading a VDI record");
  sqlite3_finalize (st);
  return v;
}

/* The uuid of one child of UUID (for messages), or NULL if none. */
static char *
first_child (struct sr *sr, const char *uuid)
{
  return db_get_text (sr,
                      "SELECT uuid FROM vdi WHERE parent_uuid = ?1 "
                      "ORDER BY created LIMIT 1",
                      "s", uuid);
}

/* ---- images ---- */

struct image_info
{
  enum vdisk_format format;
  uint64_t virtual_size;
  char *parent_name; /* as recorded in the image, or NULL */
};

/* Read one layer's header (never its parents), as the format its name
 * says. */
static int
read_image (struct sr *sr, const char *location, struct image_info *ii)
{
  char *path = image_path (sr, location);
  if (!path)
    return -1;
  struct vdisk *d
      = vdisk_open_as (path, VDISK_OPEN_NO_PARENT | VDISK_OPEN_BUFFERED,
                       format_of_name (location), sr->path);
  free (path);
  if (!d)
    return -1;
  struct vdisk_info info;
  vdisk_get_info (d, &info);
  ii->format = info.format;
  ii->virtual_size = info.virtual_size;
  ii->parent_name = info.parent_name ? strdup (info.parent_name) : NULL;
  vdisk_close (d);
  if (info.parent_name && !ii->parent_name) {
    sr_err (sr, ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

/* Create LOCATION as a new image, over PARENT_LOCATION if not NULL. */
static int
create_image (struct sr *sr, const char *uuid, const char *location,
              enum vdisk_format format, uint64_t size,
              const char *parent_location, uint32_t block_size, bool fixed)
{
  char *path = image_path (sr, location);
  if (!path)
    return -1;
  struct vdisk_create_params cp = {
    .parent = parent_location,
    .parent_format
    = parent_location ? ext_of (format_of_name (parent_location)) : NULL,
    .confine = sr->path,
    .block_size = block_size,
    .fixed = fixed,
  };
  int r = vdisk_create (path, format, size, &cp);
  free (path);
  if (r == -1) {
    /* vdisk_create may leave a partial file behind. */
    (void)unlinkat (F (sr)->dirfd, location, 0);
    sr_err_wrap (sr, uuid, "creating the image");
    return -1;
  }
  return 0;
}

/* ---- the journal: finishing a snapshot interrupted by a crash ---- */

static const char *
leaf_ext (enum vdisk_format frozen)
{
  return ext_of (frozen == VDISK_FORMAT_RAW ? VDISK_FORMAT_QCOW2 : frozen);
}

static enum vdisk_format
leaf_format (enum vdisk_format frozen)
{
  return frozen == VDISK_FORMAT_RAW ? VDISK_FORMAT_QCOW2 : frozen;
}

/* The last step of freeze(): the VDI points at its new leaf over the
 * frozen image, and the frozen record is no longer pending. */
static int
finish_freeze (struct sr *sr, const char *frozen_uuid, const char *leaf_uuid,
               enum vdisk_format frozen_format)
{
  char loc[SR_UUID_LEN + 16];
  snprintf (loc, sizeof loc, "%s.%s", leaf_uuid, leaf_ext (frozen_format));
  if (db_begin (sr) == -1)
    return -1;
  if (db_run (sr,
              "UPDATE vdi SET parent_uuid = ?1, location = ?2, format = ?3 "
              "WHERE uuid = ?4",
              "ssss", frozen_uuid, loc, ext_of (leaf_format (frozen_format)),
              leaf_uuid)
          == -1
      || db_run (sr, "UPDATE vdi SET pending_leaf = NULL WHERE uuid = ?1", "s",
                 frozen_uuid)
             == -1) {
    db_rollback (sr);
    return -1;
  }
  return db_commit (sr);
}

/* Finish or undo every journalled snapshot.  The rename of the leaf to
 * the frozen name is the commit point: before it the VDI's image is
 * untouched and the frozen record is dropped; after it whatever sits at
 * the new leaf's name was created by us and never written, so it is
 * made again. */
struct pending
{
  char frozen[SR_UUID_LEN + 1], leaf[SR_UUID_LEN + 1];
  char location[SR_UUID_LEN + 16];
  enum vdisk_format format;
};

static int
recover_one (struct sr *sr, const struct pending *p)
{
  if (faccessat (F (sr)->dirfd, p->location, F_OK, AT_SYMLINK_NOFOLLOW) == -1)
    /* Never renamed: undo. */
    return db_run (sr, "DELETE FROM vdi WHERE uuid = ?1", "s", p->frozen) == -1
               ? -1
               : 0;
  char leaf_loc[SR_UUID_LEN + 16];
  snprintf (leaf_loc, sizeof leaf_loc, "%s.%s", p->leaf, leaf_ext (p->format));
  (void)unlinkat (F (sr)->dirfd, leaf_loc, 0);
  if (create_image (sr, p->leaf, leaf_loc, leaf_format (p->format), 0,
                    p->location, 0, false)
      == -1)
    return -1;
  return finish_freeze (sr, p->frozen, p->leaf, p->format);
}

/* Finish or undo every journalled snapshot.  The rename of the leaf to
 * the frozen name is the commit point: before it the VDI's image is
 * untouched and the frozen record is dropped; after it whatever sits at
 * the new leaf's name was created by us and never written, so it is
 * made again. */
static int
recover (struct sr *sr)
{
  struct pending p[16];
  size_t n = 0;
  int s = SQLITE_DONE, r = 0;
  do {
    sqlite3_stmt *st = db_prepare (
        sr, "SELECT uuid, location, format, pending_leaf FROM vdi "
            "WHERE pending_leaf IS NOT NULL LIMIT 16");
    if (!st)
      return -1;
    for (n = 0; n < 16 && (s = sqlite3_step (st)) == SQLITE_ROW; n++) {
      const char *loc = (const char *)sqlite3_column_text (st, 1);
      int fmt
          = vdisk_format_from_name ((const char *)sqlite3_column_text (st, 2));
      copy_uuid (p[n].frozen, sqlite3_column_text (st, 0));
      copy_uuid (p[n].leaf, sqlite3_column_text (st, 3));
      /* Our own names only: "<uuid>.<ext>". */
      if (fmt == -1 || !loc || strlen (loc) >= sizeof p[n].location
          || !is_image_name (loc) || !sr_uuid_is_valid (p[n].leaf)) {
        sqlite3_finalize (st);
        sr_err (sr, EIO, "VDI %s: bad journal record", p[n].frozen);
        return -1;
      }
      snprintf (p[n].location, sizeof p[n].location, "%s", loc);
      p[n].format = fmt;
    }
    if (n < 16 && s != SQLITE_DONE) {
      sr_db_err (sr, "reading the journal");
      r = -1;
    }
    sqlite3_finalize (st);
    for (size_t i = 0; r == 0 && i < n; i++)
      r = recover_one (sr, &p[i]);
  } while (r == 0 && n == 16);
  sync_dir (sr);
  return r;
}

/* ---- open / close ---- */

static const char schema[] = "CREATE TABLE IF NOT EXISTS sr (\n"
                             "  key TEXT PRIMARY KEY,\n"
                             "  value TEXT NOT NULL);\n"
                             "CREATE TABLE IF NOT EXISTS vdi (\n"
                             "  uuid TEXT PRIMARY KEY,\n"
                             "  location TEXT NOT NULL UNIQUE,\n"
                             "  name_label TEXT NOT NULL DEFAULT '',\n"
                             "  name_description TEXT NOT NULL DEFAULT '',\n"
                             "  format TEXT NOT NULL,\n"
                             "  virtual_size INTEGER NOT NULL,\n"
                             "  parent_uuid TEXT,\n"
                             "  read_only INTEGER NOT NULL DEFAULT 0,\n"
                             "  managed INTEGER NOT NULL DEFAULT 1,\n"
                             "  is_snapshot INTEGER NOT NULL DEFAULT 0,\n"
                             "  snapshot_of TEXT,\n"
                             "  snapshot_time INTEGER NOT NULL DEFAULT 0,\n"
                             "  created INTEGER NOT NULL,\n"
                             "  pending_leaf TEXT,\n"
                             "  cbt_metadata INTEGER NOT NULL DEFAULT 0);\n"
                             "CREATE TABLE IF NOT EXISTS other_config (\n"
                             "  vdi TEXT NOT NULL,\n"
                             "  key TEXT NOT NULL,\n"
                             "  value TEXT NOT NULL,\n"
                             "  PRIMARY KEY (vdi, key));\n";

/* sr.db of an SR made before VDI.data_destroy lacks the cbt_metadata
 * column: add it (0 for every record).  Older programs name their
 * columns, so they still read the SR. */
static int
add_cbt_metadata_column (struct sr *sr)
{
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (F (sr)->db, "SELECT cbt_metadata FROM vdi LIMIT 0",
                          -1, &st, NULL)
      == SQLITE_OK) {
    sqlite3_finalize (st);
    return 0;
  }
  return db_exec (sr, "ALTER TABLE vdi ADD COLUMN cbt_metadata INTEGER NOT "
                      "NULL DEFAULT 0");
}

static int
init_db (struct sr *sr)
{
  if (db_exec (sr, "PRAGMA synchronous = FULL") == -1 || db_begin (sr) == -1)
    return -1;
  if (db_exec (sr, schema) == -1 || add_cbt_metadata_column (sr) == -1)
    goto fail;
  char *ver
      = db_get_text (sr, "SELECT value FROM sr WHERE key = 'version'", "");
  if (ver && atoi (ver) > SCHEMA_VERSION) {
    sr_err (sr, ENOTSUP,
            "%s: metadata version %s is newer than this "
            "program knows (%d)",
            DB_NAME, ver, SCHEMA_VERSION);
    free (ver);
    goto fail;
  }
  free (ver);
  char *uuid = db_get_text (sr, "SELECT value FROM sr WHERE key = 'uuid'", "");
  if (!uuid) {
    char fresh[SR_UUID_LEN + 1];
    char now[32];
    snprintf (now, sizeof now, "%lld", (long long)time (NULL));
    if (sr_uuid_generate (fresh) == -1
        || db_run (sr,
                   "INSERT INTO sr (key, value) VALUES ('uuid', ?1), "
                   "('version', ?2), ('created', ?3)",
                   "sss", fresh, "1", now)
               == -1)
      goto fail;
    memcpy (sr->uuid, fresh, sizeof fresh);
  }
  else {
    snprintf (sr->uuid, sizeof sr->uuid, "%s", uuid);
    free (uuid);
  }
  return db_commit (sr);
fail:
  db_rollback (sr);
  return -1;
}

static void fsr_free (struct sr *sr);

/* Images of destroyed VDIs that a crash left renamed but not unlinked
 * (see destroy_locked). */
static void
purge_trash (struct sr *sr)
{
  int fd = dup (F (sr)->dirfd);
  DIR *dir = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *e;

  if (!dir) {
    if (fd >= 0)
      close (fd);
    return;
  }
  while ((e = readdir (dir)) != NULL)
    if (strncmp (e->d_name, TRASH_PREFIX, strlen (TRASH_PREFIX)) == 0)
      (void)unlinkat (F (sr)->dirfd, e->d_name, 0);
  closedir (dir);
}

static int finish_data_destroys (struct sr *sr);

static int
fsr_open (struct sr *sr, unsigned flags)
{
  struct file_sr *f = calloc (1, sizeof *f);
  if (!f) {
    sr_err (sr, ENOMEM, "out of memory");
    return -1;
  }
  f->dirfd = f->lockfd = -1;
  pthread_mutex_init (&f->lock, NULL);
  sr->priv = f;

  if ((flags & SR_OPEN_CREATE) && mkdir (sr->path, 0755) == -1
      && errno != EEXIST) {
    sr_err (sr, errno, "cannot create the SR directory: %s", strerror (errno));
    goto fail;
  }
  f->dirfd = open (sr->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (f->dirfd == -1) {
    sr_err (sr, errno, "cannot open the SR directory: %s", strerror (errno));
    goto fail;
  }
  f->lockfd = openat (f->dirfd, DB_NAME,
                      O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (f->lockfd == -1) {
    sr_err (sr, errno, "%s: %s", DB_NAME, strerror (errno));
    goto fail;
  }
  if (flock (f->lockfd, LOCK_EX | LOCK_NB) == -1) {
    sr_err (sr, errno == EWOULDBLOCK ? EBUSY : errno,
            "the SR is already open (%s is locked by another process or "
            "handle)",
            DB_NAME);
    goto fail;
  }
  char *dbpath = image_path (sr, DB_NAME);
  if (!dbpath)
    goto fail;
  int r = sqlite3_open_v2 (dbpath, &f->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                               | SQLITE_OPEN_FULLMUTEX,
                           NULL);
  free (dbpath);
  if (r != SQLITE_OK) {
    sr_err (sr, EIO, "%s: %s", DB_NAME,
            f->db ? sqlite3_errmsg (f->db) : "cannot open");
    goto fail;
  }
  sqlite3_busy_timeout (f->db, 5000);
  if (init_db (sr) == -1 || recover (sr) == -1)
    goto fail;
  purge_trash (sr);
  if (finish_data_destroys (sr) == -1)
    goto fail;
  return 0;
fail:
  fsr_free (sr);
  return -1;
}

static void
fsr_free (struct sr *sr)
{
  struct file_sr *f = F (sr);
  if (!f)
    return;
  if (f->db)
    sqlite3_close (f->db);
  /* After SQLite: closing any descriptor of sr.db drops its POSIX locks. */
  if (f->lockfd >= 0)
    close (f->lockfd);
  if (f->dirfd >= 0)
    close (f->dirfd);
  pthread_mutex_destroy (&f->lock);
  free (f);
  sr->priv = NULL;
}

static void
fsr_close (struct sr *sr)
{
  fsr_free (sr);
}

/* ---- records: list, get, set ---- */

static int
list_locked (struct sr *sr, struct sr_vdi_list *out)
{
  sqlite3_stmt *st = db_prepare (sr, "SELECT " VDI_COLUMNS " FROM vdi "
                                     "WHERE pending_leaf IS NULL "
                                     "ORDER BY created, uuid");
  if (!st)
    return -1;
  int s;
  while ((s = sqlite3_step (st)) == SQLITE_ROW) {
    const char *loc = (const char *)sqlite3_column_text (st, 1);
    if (!loc || !is_image_name (loc))
      continue; /* a damaged record: scan drops it */
    struct sr_vdi **n = realloc (out->v, (out->len + 1) * sizeof *n);
    struct sr_vdi *v = n ? row_to_vdi (sr, st) : NULL;
    if (n)
      out->v = n;
    if (!v) {
      if (!n)
        sr_err (sr, ENOMEM, "out of memory");
      sqlite3_finalize (st);
      sr_vdi_list_free (out);
      return -1;
    }
    out->v[out->len++] = v;
  }
  sqlite3_finalize (st);
  if (s != SQLITE_DONE) {
    sr_db_err (sr, "listing VDIs");
    sr_vdi_list_free (out);
    return -1;
  }
  return 0;
}

static int
fsr_list_vdis (struct sr *sr, struct sr_vdi_list *out)
{
  pthread_mutex_lock (&F (sr)->lock);
  int r = list_locked (sr, out);
  pthread_mutex_unlock (&F (sr)->lock);
  return r;
}

static struct sr_vdi *
fsr_get_vdi (struct sr *sr, const char *uuid)
{
  pthread_mutex_lock (&F (sr)->lock);
  struct sr_vdi *v = load_vdi (sr, uuid);
  pthread_mutex_unlock (&F (sr)->lock);
  return v;
}

static int
set_field_locked (struct sr *sr, const char *uuid, const char *field,
                  const char *value)
{
  struct sr_vdi *v = load_vdi (sr, uuid);
  int r;
  if (!v)
    return -1;
  sr_vdi_free (v);
  if (strcmp (field, "name_label") == 0)
    r = db_run (sr, "UPDATE vdi SET name_label = ?1 WHERE uuid = ?2", "ss",
                value, uuid);
  else if (strcmp (field, "name_description") == 0)
    r = db_run (sr, "UPDATE vdi SET name_description = ?1 WHERE uuid = ?2",
                "ss", value, uuid);
  else if (strncmp (field, "other_config:", 13) == 0) {
    const char *key = field + 13;
    if (value)
      r = db_run (sr,
                  "INSERT OR REPLACE INTO other_config (vdi, key, value) "
                  "VALUES (?1, ?2, ?3)",
                  "sss", uuid, key, value);
    else
      r = db_run (sr, "DELETE FROM other_config WHERE vdi = ?1 AND key = ?2",
                  "ss", uuid, key);
  }
  else {
    sr_err (sr, EINVAL, "VDI %s: unknown field \"%.64s\"", uuid, field);
    return -1;
  }
  return r == -1 ? -1 : 0;
}

static int
fsr_set_vdi_field (struct sr *sr, const char *uuid, const char *field,
                   const char *value)
{
  pthread_mutex_lock (&F (sr)->lock);
  int r = set_field_locked (sr, uuid, field, value);
  pthread_mutex_unlock (&F (sr)->lock);
  return r;
}

/* ---- create ---- */

static int
insert_record (struct sr *sr, const struct sr_vdi *v, const char *pending)
{
  char size[32], ro[2], man[2], snap[2], stime[32], created[32];
  snprintf (size, sizeof size, "%llu", (unsigned long long)v->virtual_size);
  snprintf (stime, sizeof stime, "%lld", (long long)v->snapshot_time);
  snprintf (created, sizeof created, "%lld", (long long)v->created);
  snprintf (ro, sizeof ro, "%d", v->read_only);
  snprintf (man, sizeof man, "%d", v->managed);
  snprintf (snap, sizeof snap, "%d", v->is_snapshot);
  return db_run (
             sr,
             "INSERT INTO vdi (uuid, location, name_label, name_description, "
             "format, virtual_size, parent_uuid, read_only, managed, "
             "is_snapshot, snapshot_of, snapshot_time, created, pending_leaf) "
             "VALUES (?1, ?2, ?3, ?4, ?5, CAST(?6 AS INTEGER), ?7, "
             "CAST(?8 AS INTEGER), CAST(?9 AS INTEGER), CAST(?10 AS INTEGER), "
             "?11, CAST(?12 AS INTEGER), CAST(?13 AS INTEGER), ?14)",
             "ssssssssssssss", v->uuid, v->location, v->name_label,
             v->name_description ? v->name_description : "",
             ext_of (v->format), size,
             v->parent_uuid[0] ? v->parent_uuid : NULL, ro, man, snap,
             v->snapshot_of[0] ? v->snapshot_of : NULL, stime, created,
             pending)
                 == -1
             ? -1
             : 0;
}

static int
insert_other_config (struct sr *sr, const char *uuid,
                     const struct sr_vdi_create_params *params)
{
  for (size_t i = 0; params && i < params->n_other_config; i++)
    if (db_run (sr,
                "INSERT OR REPLACE INTO other_config (vdi, key, value) "
                "VALUES (?1, ?2, ?3)",
                "sss", uuid, params->other_config[i].key,
                params->other_config[i].value)
        == -1)
      return -1;
  return 0;
}

static struct sr_vdi *
create_locked (struct sr *sr, const char *name_label, enum vdisk_format format,
               uint64_t virtual_size,
               const struct sr_vdi_create_params *params, bool managed)
{
  struct sr_vdi v = { 0 };
  struct sr_vdi *parent = NULL;
  char loc[SR_UUID_LEN + 16];

  if (params && params->uuid) {
    struct sr_vdi *taken = load_vdi (sr, params->uuid);
    if (taken) {
      sr_vdi_free (taken);
      sr_err (sr, EEXIST, "VDI %s exists already", params->uuid);
      return NULL;
    }
    snprintf (v.uuid, sizeof v.uuid, "%s", params->uuid);
  }
  else if (sr_uuid_generate (v.uuid) == -1)
    return NULL;
  if (params && params->parent_uuid) {
    parent = load_vdi (sr, params->parent_uuid);
    if (!parent)
      return NULL;
    if (format == VDISK_FORMAT_RAW) {
      sr_err (sr, EINVAL,
              "creating VDI \"%.64s\" over VDI %s: raw images cannot have a "
              "parent (use vhd or qcow2)",
              name_label, parent->uuid);
      sr_vdi_free (parent);
      return NULL;
    }
    if (virtual_size == 0)
      virtual_size = parent->virtual_size;
    memcpy (v.parent_uuid, parent->uuid, sizeof v.parent_uuid);
  }
  snprintf (loc, sizeof loc, "%s.%s", v.uuid, ext_of (format));
  /* An image of the caller's uuid without a record: the leftover of
   * this very creation, interrupted by a crash. */
  if (params && params->uuid)
    (void)unlinkat (F (sr)->dirfd, loc, 0);
  if (create_image (sr, v.uuid, loc, format, virtual_size,
                    parent ? parent->location : NULL,
                    params ? params->block_size : 0, params && params->fixed)
      == -1) {
    sr_vdi_free (parent);
    return NULL;
  }

  /* The image records its real size (VHD rounds to its geometry). */
  struct image_info ii = { 0 };
  if (read_image (sr, loc, &ii) == 0)
    virtual_size = ii.virtual_size;
  free (ii.parent_name);

  v.location = loc;
  v.name_label = (char *)name_label;
  v.name_description
      = (char *)(params && params->name_description ? params->name_description
                                                    : "");
  v.format = format;
  v.virtual_size = virtual_size;
  v.managed = managed;
  v.created = time (NULL);
  if (params && params->is_snapshot) {
    v.is_snapshot = true;
    v.read_only = true;
    snprintf (v.snapshot_of, sizeof v.snapshot_of, "%s", params->snapshot_of);
    v.snapshot_time = params->snapshot_time;
  }
  if (db_begin (sr) == -1)
    goto fail;
  if (insert_record (sr, &v, NULL) == -1
      || insert_other_config (sr, v.uuid, params) == -1
      || (parent
          && db_run (sr, "UPDATE vdi SET read_only = 1 WHERE uuid = ?1", "s",
                     parent->uuid)
                 == -1)) {
    db_rollback (sr);
    goto fail;
  }
  if (db_commit (sr) == -1)
    goto fail;
  sync_dir (sr);
  sr_vdi_free (parent);
  return load_vdi (sr, v.uuid);
fail:
  (void)unlinkat (F (sr)->dirfd, loc, 0);
  sr_vdi_free (parent);
  return NULL;
}

static struct sr_vdi *
fsr_create_vdi (struct sr *sr, const char *name_label,
                enum vdisk_format format, uint64_t virtual_size,
                const struct sr_vdi_create_params *params)
{
  pthread_mutex_lock (&F (sr)->lock);
  struct sr_vdi *v = create_locked (sr, name_label, format, virtual_size,
                                    params, !(params && params->unmanaged));
  pthread_mutex_unlock (&F (sr)->lock);
  return v;
}

/* A record without an image, as data_destroy leaves: cbt_metadata from
 * its first moment (insert and mark in one transaction), so that the
 * scan, which drops records whose image is gone, keeps it. */
static struct sr_vdi *
fsr_create_cbt_metadata (struct sr *sr, const char *uuid,
                         const char *name_label, const char *snapshot_of,
                         int64_t snapshot_time, uint64_t virtual_size)
{
  struct sr_vdi v = { 0 };
  struct sr_vdi *r = NULL;
  char loc[SR_UUID_LEN + 16];

  pthread_mutex_lock (&F (sr)->lock);
  if ((r = load_vdi (sr, uuid)) != NULL) {
    if (!r->cbt_metadata) {
      sr_err (sr, EEXIST, "VDI %s exists already (with its data)", uuid);
      sr_vdi_free (r);
      r = NULL;
    }
    goto out;
  }
  snprintf (v.uuid, sizeof v.uuid, "%s", uuid);
  snprintf (loc, sizeof loc, "%s.%s", uuid, ext_of (VDISK_FORMAT_QCOW2));
  v.location = loc;
  v.name_label = (char *)name_label;
  v.format = VDISK_FORMAT_QCOW2;
  v.virtual_size = virtual_size;
  v.managed = true;
  v.read_only = true;
  v.is_snapshot = true;
  snprintf (v.snapshot_of, sizeof v.snapshot_of, "%s", snapshot_of);
  v.snapshot_time = snapshot_time;
  v.created = time (NULL);
  if (db_begin (sr) == -1)
    goto out;
  if (insert_record (sr, &v, NULL) == -1
      || db_run (sr, "UPDATE vdi SET cbt_metadata = 1 WHERE uuid = ?1", "s",
                 uuid)
             == -1) {
    db_rollback (sr);
    goto out;
  }
  if (db_commit (sr) == -1)
    goto out;
  sync_dir (sr);
  r = load_vdi (sr, uuid);
out:
  pthread_mutex_unlock (&F (sr)->lock);
  return r;
}

/* ---- open ---- */

static struct vdisk *
fsr_open_vdi (struct sr *sr, const char *uuid, unsigned flags)
{
  pthread_mutex_lock (&F (sr)->lock);
  struct sr_vdi *v = load_vdi (sr, uuid);
  char *path = NULL;
  if (v && v->cbt_metadata)
    sr_err (sr, EMEDIUMTYPE,
            "VDI %s: its data was destroyed (a cbt_metadata VDI keeps only "
            "its changed-block log)",
            uuid);
  else if (v && v->read_only && (flags & VDISK_OPEN_RDWR))
    sr_err (sr, EROFS,
            "VDI %s: is read-only (%s); open it read-only or clone it", uuid,
            v->is_snapshot ? "a snapshot" : "the parent of other VDIs");
  else if (v) {
    /* Never follow a symlink planted in place of an image. */
    struct stat sb;
    if (fstatat (F (sr)->dirfd, v->location, &sb, AT_SYMLINK_NOFOLLOW) == -1)
      sr_err (sr, errno, "VDI %s: %s: %s", uuid, v->location,
              strerror (errno));
    else if (!S_ISREG (sb.st_mode))
      sr_err (sr, EINVAL, "VDI %s: %s is not a regular file", uuid,
              v->location);
    else
      path = image_path (sr, v->location);
  }
  enum vdisk_format format = v ? v->format : VDISK_FORMAT_RAW;
  pthread_mutex_unlock (&F (sr)->lock);
  sr_vdi_free (v);
  if (!path)
    return NULL;
  /* The record's format, and a chain that stays in the SR. */
  struct vdisk *d = vdisk_open_as (path, flags, format, sr->path);
  free (path);
  if (!d)
    sr_err_wrap (sr, uuid, "opening the image");
  return d;
}

/* ---- changed-block logs ---- */

static void
log_name (char out[SR_UUID_LEN + 16], const char *uuid)
{
  snprintf (out, SR_UUID_LEN + 16, "%s%s", uuid, CBT_LOG_SUFFIX);
}

/* Put SR and VDI context in front of a cbt-log error and free it; its
 * code is an errno value. */
static void
sr_err_cbt (struct sr *sr, const char *uuid, GError *err)
{
  sr_err (sr, err->code, "VDI %s: %s", uuid, err->message);
  g_error_free (err);
}

/* Before UUID's log goes: merge it into every log that counts from it
 * (the VDI it is a snapshot of, or a later snapshot), so their chains
 * stay whole without it.  A log that cannot be merged breaks a chain,
 * which a walk reports (a full backup), so it is only logged. */
static void
coalesce_log (struct sr *sr, const char *uuid)
{
  char name[SR_UUID_LEN + 16];
  log_name (name, uuid);
  g_autofree char *from = g_build_filename (sr->path, name, NULL);
  g_autoptr (GDir) dir = g_dir_open (sr->path, 0, NULL);
  const char *e;

  while (dir && (e = g_dir_read_name (dir)) != NULL) {
    if (!g_str_has_suffix (e, CBT_LOG_SUFFIX) || strcmp (e, name) == 0)
      continue;
    g_autofree char *into = g_build_filename (sr->path, e, NULL);
    GError *err = NULL;
    if (cbt_log_coalesce (from, into, &err) == -1) {
      g_warning ("file SR %s: VDI %s: merging its changed-block log: %s",
                 sr->path, uuid, err->message);
      g_error_free (err);
    }
  }
}

/* ---- destroy ---- */

struct names
{
  char **v;
  size_t len;
};

static void
names_free (struct names *n)
{
  for (size_t i = 0; i < n->len; i++)
    free (n->v[i]);
  free (n->v);
}

/* V's image renamed TRASH_PREFIX<name>, the name kept in TRASH for the
 * caller to unlink after the SR's lock; nothing if there is no image. */
static int
to_trash (struct sr *sr, const struct sr_vdi *v, struct names *trash)
{
  char *gone = NULL;
  char **more = realloc (trash->v, (trash->len + 1) * sizeof *more);
  if (more)
    trash->v = more;
  if (!more || asprintf (&gone, TRASH_PREFIX "%s", v->location) == -1) {
    sr_err (sr, ENOMEM, "out of memory");
    return -1;
  }
  if (renameat (F (sr)->dirfd, v->location, F (sr)->dirfd, gone) == -1) {
    int e = errno;
    free (gone);
    if (e == ENOENT)
      return 0;
    sr_err (sr, e, "VDI %s: cannot remove %s: %s", v->uuid, v->location,
            strerror (e));
    return -1;
  }
  trash->v[trash->len++] = gone;
  return 0;
}

/* Delete UUID's record and image, then its parent too if that is an
 * unmanaged base nobody uses any more. */
/* A destroyed VDI's image is renamed to TRASH_PREFIX<name> in the
 * transaction, and unlinked after the SR's lock is dropped: unlinking a
 * large image takes the better part of a second here, and other VDIs'
 * operations (a migration destroys all its source VDIs at once) need not
 * wait for it.  open removes what a crash left behind. */
static int
destroy_locked (struct sr *sr, const char *uuid, struct names *trash)
{
  struct sr_vdi *v = load_vdi (sr, uuid);
  if (!v)
    return -1;
  char *child = first_child (sr, uuid);
  char log[SR_UUID_LEN + 16];
  log_name (log, uuid);
  if (child && v->cbt_metadata && v->managed) {
    /* Its data was destroyed already but its image is still read
     * through: only the record goes, for clients; the image stays an
     * unmanaged parent until its last child goes. */
    free (child);
    coalesce_log (sr, uuid);
    int r = db_run (sr, "UPDATE vdi SET managed = 0 WHERE uuid = ?1", "s",
                    uuid);
    if (r != -1)
      (void)unlinkat (F (sr)->dirfd, log, 0);
    sr_vdi_free (v);
    return r == -1 ? -1 : 0;
  }
  if (child) {
    sr_err (sr, EBUSY,
            "VDI %s: cannot destroy it: in use as the parent of VDI %s "
            "(destroy the children first)",
            uuid, child);
    free (child);
    sr_vdi_free (v);
    return -1;
  }
  if (v->cbt_enabled)
    coalesce_log (sr, uuid);
  if (db_begin (sr) == -1)
    goto fail;
  if (db_run (sr, "DELETE FROM other_config WHERE vdi = ?1", "s", uuid) == -1
      || db_run (sr, "DELETE FROM vdi WHERE uuid = ?1", "s", uuid) == -1) {
    db_rollback (sr);
    goto fail;
  }
  if (to_trash (sr, v, trash) == -1) {
    db_rollback (sr);
    goto fail;
  }
  if (db_commit (sr) == -1)
    goto fail; /* the image is gone; the next scan drops the record */
  (void)unlinkat (F (sr)->dirfd, log, 0);
  sync_dir (sr);

  if (v->parent_uuid[0]) {
    struct sr_vdi *p = load_vdi (sr, v->parent_uuid);
    char *other = p && !p->managed ? first_child (sr, p->uuid) : NULL;
    int r = 0;
    if (p && !p->managed && !other)
      r = destroy_locked (sr, p->uuid, trash);
    free (other);
    sr_vdi_free (p);
    if (r == -1)
      goto fail;
  }
  sr_vdi_free (v);
  return 0;
fail:
  sr_vdi_free (v);
  return -1;
}

/* No record of UUID: remove an image named for it that a crash between
 * creating it and recording it left (sr_vdi_create_params.uuid). */
static int
destroy_unrecorded (struct sr *sr, const char *uuid)
{
  static const enum vdisk_format formats[]
      = { VDISK_FORMAT_VHD, VDISK_FORMAT_QCOW2, VDISK_FORMAT_RAW };
  bool found = false;
  char loc[SR_UUID_LEN + 16];

  for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
    snprintf (loc, sizeof loc, "%s.%s", uuid, ext_of (formats[i]));
    if (unlinkat (F (sr)->dirfd, loc, 0) == 0)
      found = true;
  }
  if (!found) {
    sr_err (sr, ENOENT, "VDI %s: no such VDI", uuid);
    return -1;
  }
  sync_dir (sr);
  return 0;
}

static int
fsr_destroy_vdi (struct sr *sr, const char *uuid)
{
  struct names trash = { 0 };
  pthread_mutex_lock (&F (sr)->lock);
  struct sr_vdi *v = load_vdi (sr, uuid);
  int r;
  if (v)
    r = destroy_locked (sr, uuid, &trash);
  else
    r = vdisk_get_errno () == ENOENT ? destroy_unrecorded (sr, uuid) : -1;
  sr_vdi_free (v);
  pthread_mutex_unlock (&F (sr)->lock);
  for (size_t i = 0; i < trash.len; i++)
    (void)unlinkat (F (sr)->dirfd, trash.v[i], 0);
  names_free (&trash);
  return r;
}

/* ---- snapshot and clone ---- */

/* VDI UUID was just snapshot into S: S takes the log as it was, UUID's
 * counts from S (cbt-log.h).  The snapshot stands whatever happens here:
 * if the rotation fails, UUID's log is reset so that no walk crosses
 * the gap. */
static void
rotate_log (struct sr *sr, const char *uuid, struct sr_vdi *s)
{
  char vname[SR_UUID_LEN + 16], sname[SR_UUID_LEN + 16];
  log_name (vname, uuid);
  log_name (sname, s->uuid);
  g_autofree char *vpath = g_build_filename (sr->path, vname, NULL);
  g_autofree char *spath = g_build_filename (sr->path, sname, NULL);
  g_autoptr (GError) err = NULL;

  if (cbt_log_rotate (vpath, spath, s->uuid, &err) == 0) {
    s->cbt_enabled = true;
    return;
  }
  g_warning ("file SR %s: VDI %s: snapshot %s: rotating the changed-block "
             "log: %s",
             sr->path, uuid, s->uuid, err->message);
  g_clear_error (&err);
  (void)unlinkat (F (sr)->dirfd, sname, 0);
  if (cbt_log_reset (vpath, "snapshot rotation failed", &err) == -1)
    g_warning ("file SR %s: VDI %s: %s", sr->path, uuid, err->message);
}

/* Freeze writable VDI V: its image becomes the read-only VDI returned
 * (a new uuid), and V gets an empty leaf over it.  Journalled (see
 * recover). */
static struct sr_vdi *
freeze (struct sr *sr, struct sr_vdi *v, const char *name_label,
        bool is_snapshot, bool managed)
{
  if (v->read_only) {
    sr_err (sr, EROFS,
            "VDI %s: cannot snapshot a read-only VDI (clone it instead)",
            v->uuid);
    return NULL;
  }
  char *child = first_child (sr, v->uuid);
  if (child) {
    sr_err (sr, EBUSY, "VDI %s: is the parent of VDI %s", v->uuid, child);
    free (child);
    return NULL;
  }

  struct sr_vdi f = { 0 };
  char floc[SR_UUID_LEN + 16], lloc[SR_UUID_LEN + 16];
  if (sr_uuid_generate (f.uuid) == -1)
    return NULL;
  snprintf (floc, sizeof floc, "%s.%s", f.uuid, ext_of (v->format));
  snprintf (lloc, sizeof lloc, "%s.%s", v->uuid, leaf_ext (v->format));
  f.location = floc;
  f.name_label = (char *)name_label;
  f.name_description = v->name_description;
  f.format = v->format;
  f.virtual_size = v->virtual_size;
  memcpy (f.parent_uuid, v->parent_uuid, sizeof f.parent_uuid);
  f.read_only = true;
  f.managed = managed;
  f.is_snapshot = is_snapshot;
  if (is_snapshot) {
    memcpy (f.snapshot_of, v->uuid, sizeof f.snapshot_of);
    f.snapshot_time = time (NULL);
  }
  f.created = time (NULL);

  /* 1. Journal. */
  if (db_begin (sr) == -1)
    return NULL;
  if (insert_record (sr, &f, v->uuid) == -1) {
    db_rollback (sr);
    return NULL;
  }
  if (db_commit (sr) == -1)
    return NULL;

  /* 2. The commit point: the leaf's image becomes the frozen one. */
  if (renameat (F (sr)->dirfd, v->location, F (sr)->dirfd, floc) == -1) {
    sr_err (sr, errno, "VDI %s: snapshot: cannot rename %s to %s: %s", v->uuid,
            v->location, floc, strerror (errno));
    (void)db_run (sr, "DELETE FROM vdi WHERE uuid = ?1", "s", f.uuid);
    return NULL;
  }
  sync_dir (sr);

  /* 3. The new leaf; on failure put everything back. */
  if (create_image (sr, v->uuid, lloc, leaf_format (v->format), 0, floc, 0,
                    false)
      == -1) {
    if (renameat (F (sr)->dirfd, floc, F (sr)->dirfd, v->location) == 0)
      (void)db_run (sr, "DELETE FROM vdi WHERE uuid = ?1", "s", f.uuid);
    return NULL;
  }

  /* 4. The VDI points at its leaf. */
  if (finish_freeze (sr, f.uuid, v->uuid, v->format) == -1)
    return NULL; /* recover() finishes it at the next open or scan */
  sync_dir (sr);
  return load_vdi (sr, f.uuid);
}

static struct sr_vdi *
fsr_snapshot (struct sr *sr, const char *uuid, const char *name_label)
{
  pthread_mutex_lock (&F (sr)->lock);
  struct sr_vdi *v = load_vdi (sr, uuid);
  struct sr_vdi *s = NULL;
  if (v) {
    s = freeze (sr, v, name_label ? name_label : v->name_label, true, true);
  }
  if (s && v->cbt_enabled)
    rotate_log (sr, v->uuid, s);
  sr_vdi_free (v);
  pthread_mutex_unlock (&F (sr)->lock);
  return s;
}

static struct sr_vdi *
fsr_clone (struct sr *sr, const char *uuid, const char *name_label)
{
  pthread_mutex_lock (&F (sr)->lock);
  struct sr_vdi *v = load_vdi (sr, uuid);
  struct sr_vdi *base = NULL, *c = NULL;
  if (!v)
    goto out;
  if (v->cbt_metadata) {
    sr_err (sr, EMEDIUMTYPE,
            "VDI %s: cannot clone it: its data was destroyed (cbt_metadata)",
            uuid);
    goto out;
  }
  if (v->read_only)
    base = v, v = NULL;
  else {
    char label[300];
    snprintf (label, sizeof label, "base of %.256s", v->name_label);
    base = freeze (sr, v, label, false, false);
    if (!base)
      goto out;
  }
  struct sr_vdi_create_params cp = {
    .name_description = base->name_description,
    .parent_uuid = base->uuid,
  };
  c = create_locked (sr, name_label ? name_label : base->name_label,
                     leaf_format (base->format), 0, &cp, true);
out:
  sr_vdi_free (v);
  sr_vdi_free (base);
  pthread_mutex_unlock (&F (sr)->lock);
  return c;
}

/* ---- set_parent ---- */

static int
set_parent_locked (struct sr *sr, const char *uuid, const char *parent_uuid)
{
  struct sr_vdi *v = load_vdi (sr, uuid), *p = NULL;
  struct image_info ii = { 0 };
  struct vdisk *d = NULL;
  char *path = NULL;
  int r = -1;
  if (!v)
    return -1;
  if (parent_uuid) {
    if (!(p = load_vdi (sr, parent_uuid)))
      goto out;
    /* No loops: UUID must not be an ancestor of the new parent. */
    char cur[SR_UUID_LEN + 1];
    memcpy (cur, p->parent_uuid, sizeof cur);
    for (int depth = 0; cur[0]; depth++) {
      if (strcmp (cur, uuid) == 0 || depth > VDISK_MAX_DEPTH) {
        sr_err (sr, ELOOP,
                "VDI %s: VDI %s cannot be its parent: it is "
                "its descendant",
                uuid, parent_uuid);
        goto out;
      }
      char *up = db_get_text (
          sr, "SELECT parent_uuid FROM vdi WHERE uuid = ?1", "s", cur);
      snprintf (cur, sizeof cur, "%s", up ? up : "");
      free (up);
    }
  }
  if (read_image (sr, v->location, &ii) == -1) {
    sr_err_wrap (sr, uuid, "reading the image");
    goto out;
  }
  if (!p && ii.parent_name) {
    sr_err (sr, ENOTSUP,
            "VDI %s: the image names parent \"%.200s\"; rewriting an "
            "image's parent is not supported",
            uuid, ii.parent_name);
    goto out;
  }
  if (p && (!ii.parent_name || strcmp (ii.parent_name, p->location) != 0)) {
    sr_err (sr, ENOTSUP,
            "VDI %s: the image names parent \"%.200s\", not \"%s\" (VDI %s); "
            "rewriting an image's parent is not supported: create the "
            "image over %s",
            uuid, ii.parent_name ? ii.parent_name : "(none)", p->location,
            p->uuid, p->location);
    goto out;
  }
  /* The whole chain must open (VHD checks the parent's unique id). */
  if (p) {
    if (!(path = image_path (sr, v->location)))
      goto out;
    if (!(d
          = vdisk_open_as (path, VDISK_OPEN_BUFFERED, v->format, sr->path))) {
      sr_err_wrap (sr, uuid, "opening the chain");
      goto out;
    }
  }
  if (db_begin (sr) == -1)
    goto out;
  if (db_run (sr, "UPDATE vdi SET parent_uuid = ?1 WHERE uuid = ?2", "ss",
              parent_uuid, uuid)
          == -1
      || (p
          && db_run (sr, "UPDATE vdi SET read_only = 1 WHERE uuid = ?1", "s",
                     parent_uuid)
                 == -1)) {
    db_rollback (sr);
    goto out;
  }
  r = db_commit (sr);
out:
  if (d)
    vdisk_close (d);
  free (path);
  free (ii.parent_name);
  sr_vdi_free (v);
  sr_vdi_free (p);
  return r;
}

static int
fsr_set_parent (struct sr *sr, const char *uuid, const char *parent_uuid)
{
  pthread_mutex_lock (&F (sr)->lock);
  int r = set_parent_locked (sr, uuid, parent_uuid);
  pthread_mutex_unlock (&F (sr)->lock);
  return r;
}

/* ---- scan ---- */

static int
list_images (struct sr *sr, struct names *out)
{
  int fd = dup (F (sr)->dirfd);
  DIR *dir = fd >= 0 ? fdopendir (fd) : NULL;
  if (!dir) {
    if (fd >= 0)
      close (fd);
    sr_err (sr, errno, "cannot read the SR directory: %s", strerror (errno));
    return -1;
  }
  rewinddir (dir);
  struct dirent *e;
  while ((e = readdir (dir)) != NULL) {
    struct stat sb;
    if (!is_image_name (e->d_name)
        || fstatat (F (sr)->dirfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == -1
        || !S_ISREG (sb.st_mode))
      continue;
    char **n = realloc (out->v, (out->len + 1) * sizeof *n);
    if (!n || !(n[out->len] = strdup (e->d_name))) {
      if (n)
        out->v = n;
      closedir (dir);
      sr_err (sr, ENOMEM, "out of memory");
      return -1;
    }
    out->v = n;
    out->len++;
  }
  closedir (dir);
  return 0;
}

/* Adopt image NAME, found without a record. */
static int
adopt (struct sr *sr, const char *name)
{
  struct image_info ii = { 0 };
  struct sr_vdi v = { 0 };
  size_t stem = strrchr (name, '.') - name;

  /* An image that does not open is not adopted: it may be a partial
   * copy still being written, or not an image at all. */
  if (read_image (sr, name, &ii) == -1)
    return 0;
  free (ii.parent_name);

  char *taken = NULL;
  if (stem == SR_UUID_LEN) {
    memcpy (v.uuid, name, SR_UUID_LEN);
    v.uuid[SR_UUID_LEN] = '\0';
    if (sr_uuid_is_valid (v.uuid))
      taken = db_get_text (sr, "SELECT uuid FROM vdi WHERE uuid = ?1", "s",
                           v.uuid);
    else
      v.uuid[0] = '\0';
  }
  if (!v.uuid[0] || taken) {
    free (taken);
    if (sr_uuid_generate (v.uuid) == -1)
      return -1;
  }
  v.location = (char *)name;
  v.name_label = (char *)name;
  v.format = ii.format;
  v.virtual_size = ii.virtual_size;
  v.managed = true;
  v.created = time (NULL);
  return insert_record (sr, &v, NULL);
}

/* Chains, formats and sizes from the images themselves. */
static int
refresh (struct sr *sr, const char *uuid, const char *location)
{
  struct image_info ii = { 0 };
  if (read_image (sr, location, &ii) == -1)
    return 0; /* keep what we knew; opening it will say what is wrong */
  char *parent = NULL;
  /* Only a parent named by a plain file name is in the SR. */
  const char *pn = ii.parent_name;
  if (pn && strncmp (pn, "./", 2) == 0)
    pn += 2;
  if (pn && !strchr (pn, '/'))
    parent = db_get_text (sr, "SELECT uuid FROM vdi WHERE location = ?1", "s",
                          pn);
  char size[32];
  snprintf (size, sizeof size, "%llu", (unsigned long long)ii.virtual_size);
  int r = db_run (sr,
                  "UPDATE vdi SET format = ?1, virtual_size = CAST(?2 AS "
                  "INTEGER), parent_uuid = ?3 WHERE uuid = ?4",
                  "ssss", ext_of (ii.format), size, parent, uuid);
  if (r != -1 && parent)
    r = db_run (sr, "UPDATE vdi SET read_only = 1 WHERE uuid = ?1", "s",
                parent);
  free (parent);
  free (ii.parent_name);
  return r == -1 ? -1 : 0;
}

/* Records a hostile or damaged sr.db may hold: a location that is not
 * a plain image name, or a uuid that is not canonical. */
static int
drop_bad_records (struct sr *sr)
{
  sqlite3_stmt *st = db_prepare (sr, "SELECT uuid, location FROM vdi");
  char **bad = NULL;
  size_t n = 0;
  int s, r = 0;
  if (!st)
    return -1;
  while ((s = sqlite3_step (st)) == SQLITE_ROW) {
    const char *u = (const char *)sqlite3_column_text (st, 0);
    const char *l = (const char *)sqlite3_column_text (st, 1);
    if (u && l && is_image_name (l) && sr_uuid_is_valid (u))
      continue;
    char **nb = realloc (bad, (n + 1) * sizeof *nb);
    if (!nb || !(nb[n] = strdup (u ? u : ""))) {
      if (nb)
        bad = nb;
      r = -1;
      sr_err (sr, ENOMEM, "out of memory");
      break;
    }
    bad = nb;
    n++;
  }
  sqlite3_finalize (st);
  for (size_t i = 0; i < n; i++) {
    if (r == 0
        && (db_run (sr, "DELETE FROM other_config WHERE vdi = ?1", "s", bad[i])
                == -1
            || db_run (sr, "DELETE FROM vdi WHERE uuid = ?1", "s", bad[i])
                   == -1))
      r = -1;
    free (bad[i]);
  }
  free (bad);
  return r;
}

static int
scan_locked (struct sr *sr)
{
  struct names files = { 0 };
  struct sr_vdi_list recs = { 0 };
  int r = -1;

  if (recover (sr) == -1 || list_images (sr, &files) == -1)
    goto out;
  if (db_begin (sr) == -1)
    goto out;
  if (drop_bad_records (sr) == -1 || list_locked (sr, &recs) == -1)
    goto fail;

  /* Records whose images are gone. */
  for (size_t i = 0; i < recs.len; i++) {
    bool found = false;
    for (size_t j = 0; j < files.len && !found; j++)
      found = strcmp (files.v[j], recs.v[i]->location) == 0;
    /* A data-destroyed snapshot is its record and log alone. */
    if (!found && !recs.v[i]->cbt_metadata
        && (db_run (sr, "DELETE FROM other_config WHERE vdi = ?1", "s",
                    recs.v[i]->uuid)
                == -1
            || db_run (sr, "DELETE FROM vdi WHERE uuid = ?1", "s",
                       recs.v[i]->uuid)
                   == -1))
      goto fail;
  }
  /* Images without records. */
  for (size_t j = 0; j < files.len; j++) {
    char *known = db_get_text (sr, "SELECT uuid FROM vdi WHERE location = ?1",
                               "s", files.v[j]);
    if (!known && errno)
      goto fail;
    if (!known && !is_printable_name (files.v[j])) {
      g_autofree char *shown = g_strescape (files.v[j], NULL);
      fprintf (stderr,
               "sr: %s: not adopting \"%s\": a name that is not valid "
               "UTF-8 or holds control characters cannot be a VDI's "
               "location (rename the file)\n",
               sr->path, shown);
    }
    else if (!known && adopt (sr, files.v[j]) == -1)
      goto fail;
    free (known);
  }
  /* Every record from its image. */
  sr_vdi_list_free (&recs);
  if (list_locked (sr, &recs) == -1)
    goto fail;
  for (size_t i = 0; i < recs.len; i++)
    if (refresh (sr, recs.v[i]->uuid, recs.v[i]->location) == -1)
      goto fail;
  r = db_commit (sr);
  goto out;
fail:
  db_rollback (sr);
out:
  names_free (&files);
  sr_vdi_list_free (&recs);
  return r;
}

static int
fsr_scan (struct sr *sr)
{
  pthread_mutex_lock (&F (sr)->lock);
  int r = scan_locked (sr);
  pthread_mutex_unlock (&F (sr)->lock);
  return r;
}

/* ---- changed-block tracking: the SR's part ---- */

static char *
log_path_of (struct sr *sr, const char *uuid)
{
  char name[SR_UUID_LEN + 16];
  log_name (name, uuid);
  return image_path (sr, name);
}

static int
set_cbt_locked (struct sr *sr, struct sr_vdi *v, bool enabled)
{
  g_autofree char *path = log_path_of (sr, v->uuid);
  GError *err = NULL;
  if (!path)
    return -1;
  if (enabled && v->cbt_metadata) {
    sr_err (sr, EMEDIUMTYPE,
            "VDI %s: cannot enable CBT: its data was destroyed", v->uuid);
    return -1;
  }
  if (enabled ? cbt_log_enable (path, v->virtual_size, &err)
              : cbt_log_disable (path, &err)) {
    sr_err_cbt (sr, v->uuid, err);
    return -1;
  }
  return 0;
}

static int
fsr_set_cbt (struct sr *sr, const char *uuid, bool enabled)
{
  pthread_mutex_lock (&F (sr)->lock);
  struct sr_vdi *v = load_vdi (sr, uuid);
  int r = v ? set_cbt_locked (sr, v, enabled) : -1;
  sr_vdi_free (v);
  pthread_mutex_unlock (&F (sr)->lock);
  return r;
}

static char *
fsr_cbt_log_path (struct sr *sr, const char *uuid, bool enabled_only)
{
  pthread_mutex_lock (&F (sr)->lock);
  struct sr_vdi *v = load_vdi (sr, uuid);
  char *path = NULL;
  if (v && enabled_only && !v->cbt_enabled)
    sr_err (sr, ENODATA, "VDI %s: changed-block tracking is off", uuid);
  else if (v)
    path = log_path_of (sr, uuid);
  sr_vdi_free (v);
  pthread_mutex_unlock (&F (sr)->lock);
  return path;
}

static uint8_t *
fsr_changed_blocks (struct sr *sr, const char *from_uuid, const char *to_uuid,
                    size_t *len)
{
  pthread_mutex_lock (&F (sr)->lock);
  /* FROM need not be here (a snapshot a move left in the old SR): the
   * walk reads the logs from TO back to FROM's, not FROM's own. */
  struct sr_vdi *from = load_vdi (sr, from_uuid);
  struct sr_vdi *to = load_vdi (sr, to_uuid);
  uint8_t *out = NULL;
  GError *err = NULL;
  if (!to)
    goto out;
  if (from && from->virtual_size != to->virtual_size) {
    sr_err (sr, EINVAL,
            "VDI %s and VDI %s: different virtual sizes (%llu and %llu "
            "bytes): no changed blocks between them",
            from_uuid, to_uuid, (unsigned long long)from->virtual_size,
            (unsigned long long)to->virtual_size);
    goto out;
  }
  uint8_t *b = cbt_log_changed_blocks (sr->path, from_uuid, to_uuid, len,
                                       &err);
  if (!b) {
    sr_err_cbt (sr, to_uuid, err);
    goto out;
  }
  /* malloc'd for the caller, as sr.h says. */
  out = malloc (*len ? *len : 1);
  if (out)
    memcpy (out, b, *len);
  else
    sr_err (sr, ENOMEM, "out of memory");
  g_free (b);
out:
  sr_vdi_free (from);
  sr_vdi_free (to);
  pthread_mutex_unlock (&F (sr)->lock);
  return out;
}

static int
fsr_cbt_import (struct sr *sr, const char *uuid, const uint8_t *bytes,
                size_t len)
{
  pthread_mutex_lock (&F (sr)->lock);
  struct sr_vdi *v = load_vdi (sr, uuid);
  g_autofree char *path = v ? log_path_of (sr, uuid) : NULL;
  GError *err = NULL;
  int r = -1;
  if (path && cbt_log_import (path, bytes, len, v->virtual_size, &err) == -1)
    sr_err_cbt (sr, uuid, err);
  else if (path)
    r = 0;
  sr_vdi_free (v);
  pthread_mutex_unlock (&F (sr)->lock);
  return r;
}

/* The image of a cbt_metadata VDI that nothing reads through, if it is
 * still there (data_destroy, or a crash in it).  Its name goes to the
 * trash, unlinked by the caller after the lock. */
static int
drop_destroyed_data (struct sr *sr, const struct sr_vdi *v,
                     struct names *trash)
{
  char *child = first_child (sr, v->uuid);
  if (child || faccessat (F (sr)->dirfd, v->location, F_OK,
                          AT_SYMLINK_NOFOLLOW) == -1) {
    free (child);
    return 0;
  }
  if (to_trash (sr, v, trash) == -1)
    return -1;
  sync_dir (sr);
  return 0;
}

static int
data_destroy_locked (struct sr *sr, const char *uuid, struct names *trash)
{
  struct sr_vdi *v = load_vdi (sr, uuid);
  int r = -1;
  if (!v)
    return -1;
  if (!v->is_snapshot)
    sr_err (sr, EMEDIUMTYPE,
            "VDI %s: data_destroy needs a snapshot; this VDI is not one",
            uuid);
  else if (!v->cbt_enabled)
    sr_err (sr, ENODATA,
            "VDI %s: data_destroy needs changed-block tracking on the "
            "snapshot (its log is what stays)",
            uuid);
  else if (v->cbt_metadata
           || db_run (sr, "UPDATE vdi SET cbt_metadata = 1 WHERE uuid = ?1",
                      "s", uuid)
                  != -1) {
    v->cbt_metadata = true;
    r = drop_destroyed_data (sr, v, trash);
  }
  sr_vdi_free (v);
  return r;
}

/* A data_destroy that a crash stopped between its record and its
 * image: the image goes now (if nothing reads through it). */
static int
finish_data_destroys (struct sr *sr)
{
  struct sr_vdi_list l = { 0 };
  struct names trash = { 0 };
  int r = list_locked (sr, &l);
  for (size_t i = 0; r == 0 && i < l.len; i++)
    if (l.v[i]->cbt_metadata)
      r = drop_destroyed_data (sr, l.v[i], &trash);
  for (size_t i = 0; i < trash.len; i++)
    (void)unlinkat (F (sr)->dirfd, trash.v[i], 0);
  names_free (&trash);
  sr_vdi_list_free (&l);
  return r;
}

static int
fsr_data_destroy (struct sr *sr, const char *uuid)
{
  struct names trash = { 0 };
  pthread_mutex_lock (&F (sr)->lock);
  int r = data_destroy_locked (sr, uuid, &trash);
  pthread_mutex_unlock (&F (sr)->lock);
  for (size_t i = 0; i < trash.len; i++)
    (void)unlinkat (F (sr)->dirfd, trash.v[i], 0);
  names_free (&trash);
  return r;
}

/* ---- stat ---- */

static int
fsr_stat (struct sr *sr, struct sr_stat *st)
{
  struct statvfs vfs;
  if (fstatvfs (F (sr)->dirfd, &vfs) == -1) {
    sr_err (sr, errno, "statvfs: %s", strerror (errno));
    return -1;
  }
  st->total_bytes = (uint64_t)vfs.f_blocks * vfs.f_frsize;
  st->used_bytes = (uint64_t)(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
  st->free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;

  struct sr_vdi_list l = { 0 };
  if (fsr_list_vdis (sr, &l) == -1)
    return -1;
  for (size_t i = 0; i < l.len; i++) {
    st->virtual_allocation += l.v[i]->virtual_size;
    st->physical_utilisation += l.v[i]->physical_utilisation;
  }
  st->n_vdis = l.len;
  sr_vdi_list_free (&l);
  return 0;
}

const struct sr_ops sr_file_ops = {
  .name = "file",
  .open = fsr_open,
  .close = fsr_close,
  .scan = fsr_scan,
  .list_vdis = fsr_list_vdis,
  .get_vdi = fsr_get_vdi,
  .set_vdi_field = fsr_set_vdi_field,
  .create_vdi = fsr_create_vdi,
  .open_vdi = fsr_open_vdi,
  .destroy_vdi = fsr_destroy_vdi,
  .snapshot = fsr_snapshot,
  .clone = fsr_clone,
  .set_parent = fsr_set_parent,
  .stat = fsr_stat,
  .set_cbt = fsr_set_cbt,
  .cbt_log_path = fsr_cbt_log_path,
  .changed_blocks = fsr_changed_blocks,
  .cbt_import = fsr_cbt_import,
  .data_destroy = fsr_data_destroy,
  .create_cbt_metadata = fsr_create_cbt_metadata,
};
