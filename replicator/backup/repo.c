/* The repository's points: read from the manifests through the ops
 * table, ordered, and found by what the user calls them (an id,
 * "latest", a time).
 *
 * A full's manifest holds a SHA-256 per block (1.7 MB for an 8 GiB disk
 * with 20 % data), and one command looks at a disk's points several
 * times (the latest point, the pending one's parent, every id for a new
 * one): each manifest of a local repository is parsed once per handle
 * and kept while its file is the same one (device, inode, size, change
 * time: a manifest is only ever replaced by a rename), the callers get
 * copies. */
#include <string.h>
#include <sys/stat.h>

#include "backup.h"

/* A manifest as parsed, and the file it was parsed from. */
struct cached_manifest
{
  struct stat st;
  struct backup_manifest *m;
};

static void
cached_manifest_free (struct cached_manifest *c)
{
  backup_manifest_free (c->m);
  g_free (c);
}

static bool
same_file (const struct stat *a, const struct stat *b)
{
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino
         && a->st_size == b->st_size
         && a->st_mtim.tv_sec == b->st_mtim.tv_sec
         && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
         && a->st_ctim.tv_sec == b->st_ctim.tv_sec
         && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* DISK/NAME's file in a local repository (false: not local, or not
 * there). */
static bool
stat_manifest (struct backup_repo *r, const char *disk, const char *name,
               struct stat *st)
{
  if (!r->dir)
    return false;
  g_autofree char *path = r->ops->path (r, disk, name);
  return stat (path, st) == 0;
}

static int
by_time (gconstpointer a, gconstpointer b)
{
  const struct backup_manifest *x = *(struct backup_manifest *const *)a;
  const struct backup_manifest *y = *(struct backup_manifest *const *)b;
  if (x->time_us != y->time_us)
    return x->time_us < y->time_us ? -1 : 1;
  return strcmp (x->id, y->id);
}

/* Read and check DISK/NAME; the manifest must be the one its name says. */
static struct backup_manifest *
parse_manifest (struct backup_repo *r, const char *disk, const char *name,
                GError **err)
{
  size_t len;
  g_autofree char *text = r->ops->read (r, disk, name, &len, err);
  if (!text)
    return NULL;
  g_autofree char *where = g_strdup_printf ("%s/%s", disk, name);
  struct backup_manifest *m = backup_manifest_parse (text, len, where, err);
  if (!m)
    return NULL;
  g_autofree char *want = g_strdup_printf ("%s.json", m->id);
  if (strcmp (want, name) != 0 || strcmp (m->disk, disk) != 0) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "manifest %s: its id \"%s\" and disk \"%s\" are not its "
                 "name's",
                 where, m->id, m->disk);
    backup_manifest_free (m);
    return NULL;
  }
  return m;
}

/* DISK/NAME's manifest (backup_manifest_free), from the cache when its
 * file has not changed since it was parsed. */
static struct backup_manifest *
read_manifest (struct backup_repo *r, const char *disk, const char *name,
               GError **err)
{
  g_autofree char *key = g_strdup_printf ("%s/%s", disk, name);
  struct stat before, after;
  bool local = stat_manifest (r, disk, name, &before);
  struct cached_manifest *c
      = local && r->manifests ? g_hash_table_lookup (r->manifests, key)
                              : NULL;

  if (c && same_file (&c->st, &before))
    return backup_manifest_copy (c->m);
  struct backup_manifest *m = parse_manifest (r, disk, name, err);
  /* Kept only if the file stayed the same while it was read. */
  if (m && local && stat_manifest (r, disk, name, &after)
      && same_file (&before, &after)) {
    if (!r->manifests)
      r->manifests = g_hash_table_new_full (
          g_str_hash, g_str_equal, g_free,
          (GDestroyNotify)cached_manifest_free);
    c = g_new (struct cached_manifest, 1);
    c->st = after;
    c->m = backup_manifest_copy (m);
    g_hash_table_replace (r->manifests, g_steal_pointer (&key), c);
  }
  return m;
}

static int
add_points (struct backup_repo *r, const char *disk, GPtrArray *out,
            GPtrArray *bad, GError **err)
{
  g_auto (GStrv) names = r->ops->list_names (r, disk, ".json", err);
  if (!names)
    return -1;
  for (char **n = names; *n; n++) {
    GError *e = NULL;
    struct backup_manifest *m = read_manifest (r, disk, *n, &e);
    if (m)
      g_ptr_array_add (out, m);
    else if (bad) {
      g_ptr_array_add (bad, g_strdup (e->message));
      g_error_free (e);
    }
    else {
      g_propagate_error (err, e);
      return -1;
    }
  }
  return 0;
}

GPtrArray *
backup_repo_points (struct backup_repo *r, const char *disk, GPtrArray *bad,
                    GError **err)
{
  GPtrArray *out
      = g_ptr_array_new_with_free_func ((GDestroyNotify)backup_manifest_free);
  if (add_points (r, disk, out, bad, err) == -1) {
    g_ptr_array_unref (out);
    return NULL;
  }
  g_ptr_array_sort (out, by_time);
  return out;
}

GPtrArray *
backup_repo_all_points (struct backup_repo *r, GPtrArray *bad, GError **err)
{
  g_auto (GStrv) disks = r->ops->list_disks (r, err);
  if (!disks)
    return NULL;
  GPtrArray *out
      = g_ptr_array_new_with_free_func ((GDestroyNotify)backup_manifest_free);
  for (char **d = disks; *d; d++) {
    g_autoptr (GPtrArray) pts = backup_repo_points (r, *d, bad, err);
    if (!pts) {
      g_ptr_array_unref (out);
      return NULL;
    }
    for (guint i = 0; i < pts->len; i++)
      g_ptr_array_add (out, g_ptr_array_steal_index (pts, i--));
  }
  return out;
}

struct backup_manifest *
backup_latest (struct backup_repo *r, const char *disk, GError **err)
{
  g_autoptr (GPtrArray) pts = backup_repo_points (r, disk, NULL, err);
  if (!pts || pts->len == 0)
    return NULL;
  return g_ptr_array_steal_index (pts, pts->len - 1);
}

struct backup_manifest *
backup_repo_find_point (struct backup_repo *r, const char *point,
                        const char *disk, GError **err)
{
  g_autoptr (GPtrArray) all = NULL;
  if (disk) {
    all = backup_repo_points (r, disk, NULL, err);
  }
  else
    all = backup_repo_all_points (r, NULL, err);
  if (!all)
    return NULL;

  /* An id names one point whatever the disk. */
  for (guint i = 0; i < all->len; i++) {
    struct backup_manifest *m = all->pdata[i];
    if (strcmp (m->id, point) == 0)
      return g_ptr_array_steal_index (all, i);
  }
  g_autoptr (GDateTime) t = g_date_time_new_from_iso8601 (point, NULL);
  if (strcmp (point, "latest") != 0 && !t) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "repository %s: no point \"%s\" (an id, \"latest\" or an "
                 "ISO 8601 time)",
                 r->location, point);
    return NULL;
  }
  int64_t before = t ? g_date_time_to_unix (t) * G_USEC_PER_SEC
                           + g_date_time_get_microsecond (t)
                     : INT64_MAX;
  struct backup_manifest *best = NULL;
  guint at = 0;
  for (guint i = 0; i < all->len; i++) {
    struct backup_manifest *m = all->pdata[i];
    if (best && strcmp (best->disk, m->disk) != 0) {
      g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "repository %s holds several disks (%s, %s): name the "
                   "point by its id or give --disk",
                   r->location, best->disk, m->disk);
      return NULL;
    }
    if (m->time_us <= before && (!best || m->time_us >= best->time_us)) {
      best = m;
      at = i;
    }
  }
  if (!best) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "repository %s: no point %s", r->location,
                 t ? "at or before that time" : "yet");
    return NULL;
  }
  return g_ptr_array_steal_index (all, at);
}
