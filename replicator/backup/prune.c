/* Pruning (backup.h's backup_prune): which points to keep, and the
 * merge that removes the others without changing what a kept point
 * reads.
 *
 * Removing point P whose child is C (C's file backs onto P's):
 *   1. .prune.json records P's manifest and C's id (the step to finish
 *      after a kill);
 *   2. P's manifest goes: P is no longer listed;
 *   3. C's layer is copied into P's file by the copy engine, with its
 *      journal (holes left alone: they are P's data, which C reads
 *      through); C's chain reads the same bytes all along, since only
 *      blocks C itself holds change in P's file;
 *   4. P's file is renamed over C's: it is now C's view, over P's
 *      parent (so children of C, which name C's file, are untouched);
 *   5. C's manifest becomes the union of both block lists (C's word
 *      winning), with P's parent and kind; published atomically.
 * Every step is idempotent, so a rerun does them again from the first
 * one not visibly done.  A point without a child (the newest of an old
 * chain) just goes: manifest first, then its file. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "backup.h"
#include "copy.h"
#include "vdisk.h"

#define PENDING ".prune.json"

static const struct backup_manifest *
find (GPtrArray *pts, const char *id)
{
  for (guint i = 0; id && i < pts->len; i++)
    if (strcmp (((struct backup_manifest *)pts->pdata[i])->id, id) == 0)
      return pts->pdata[i];
  return NULL;
}

static const struct backup_manifest *
child_of (GPtrArray *pts, const char *id)
{
  for (guint i = 0; i < pts->len; i++)
    if (g_strcmp0 (((struct backup_manifest *)pts->pdata[i])->parent, id)
        == 0)
      return pts->pdata[i];
  return NULL;
}

/* Mark in KEEP (by index into PTS, oldest first) the points kept. */
static void
choose (GPtrArray *pts, const struct backup_prune_params *p, bool *keep)
{
  unsigned last = 0, days = 0, weeks = 0;
  g_autofree char *day = NULL, *week = NULL;

  for (guint k = pts->len; k-- > 0;) {
    const struct backup_manifest *m = pts->pdata[k];
    g_autoptr (GDateTime) t
        = g_date_time_new_from_unix_utc (m->time_us / G_USEC_PER_SEC);
    g_autofree char *d = g_date_time_format (t, "%Y-%m-%d");
    g_autofree char *w = g_date_time_format (t, "%G-W%V");
    if (last < p->keep_last) {
      keep[k] = true;
      last++;
    }
    if (g_strcmp0 (day, d) != 0 && days < p->keep_daily) {
      keep[k] = true;
      days++;
      g_free (day);
      day = g_strdup (d);
    }
    if (g_strcmp0 (week, w) != 0 && weeks < p->keep_weekly) {
      keep[k] = true;
      weeks++;
      g_free (week);
      week = g_strdup (w);
    }
  }
}

/* The merged manifest of C after P went into it. */
static struct backup_manifest *
merged (const struct backup_manifest *p, const struct backup_manifest *c)
{
  g_autofree char *text = backup_manifest_to_json (c);
  struct backup_manifest *m
      = backup_manifest_parse (text, strlen (text), c->id, NULL);
  g_free (m->parent);
  m->parent = g_strdup (p->parent);
  m->kind = p->kind;
  g_free (m->why);
  m->why = g_strdup_printf ("%s; point %s merged into it by prune (%s)",
                            c->why, p->id, p->why);
  m->bytes_written += p->bytes_written;
  g_free (m->blocks);
  m->blocks = g_new (struct backup_block, p->n_blocks + c->n_blocks);
  m->n_blocks = 0;
  size_t i = 0, j = 0;
  while (i < p->n_blocks || j < c->n_blocks) {
    bool from_c = j < c->n_blocks
                  && (i == p->n_blocks
                      || c->blocks[j].index <= p->blocks[i].index);
    if (from_c && i < p->n_blocks && c->blocks[j].index == p->blocks[i].index)
      i++;
    m->blocks[m->n_blocks++] = from_c ? c->blocks[j++] : p->blocks[i++];
  }
  return m;
}

static int
copy_layer (struct backup_repo *r, const struct backup_manifest *p,
            const struct backup_manifest *c, struct backup_stats *st,
            GError **err)
{
  g_autofree char *src_path = r->ops->path (r, c->disk, c->file);
  g_autofree char *dst_path = r->ops->path (r, p->disk, p->file);
  g_autofree char *dir = r->ops->path (r, p->disk, ".");
  g_autofree char *jname = g_strdup_printf (".prune-%s.journal", p->id);
  g_autofree char *journal = r->ops->path (r, p->disk, jname);
  struct vdisk *s = vdisk_open_as (src_path,
                                   VDISK_OPEN_NO_PARENT | VDISK_OPEN_BUFFERED,
                                   VDISK_FORMAT_QCOW2, dir);
  struct vdisk *d = s ? vdisk_open_as (dst_path,
                                       VDISK_OPEN_RDWR | VDISK_OPEN_BUFFERED,
                                       VDISK_FORMAT_QCOW2, dir)
                      : NULL;
  struct copy_endpoint *se = NULL, *de = NULL;
  struct copy_params params = { .holes_fall_through = true,
                                .journal = journal,
                                .keep_journal = true };
  struct copy_stats cs = { 0 };
  char *e = NULL;
  int ret = -1;

  if (!d) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s",
                 vdisk_get_error ());
    goto out;
  }
  if (!(se = copy_endpoint_local (s, true, &e))
      || !(de = copy_endpoint_local (d, false, &e))
      || copy_run (se, de, &params, &cs, &e) == -1
      || copy_endpoint_close (de, &e) == -1) {
    de = NULL;
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
                 "prune: merging point %s into %s: %s", p->id, c->id,
                 e ? e : "failed");
    goto out;
  }
  de = NULL;
  if (vdisk_close (d) == -1) {
    d = NULL;
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s",
                 vdisk_get_error ());
    goto out;
  }
  d = NULL;
  st->bytes_read += cs.bytes_read;
  st->bytes_written += cs.bytes_written + cs.bytes_zeroed;
  st->bytes_skipped += cs.bytes_skipped;
  ret = 0;
out:
  if (se)
    copy_endpoint_close (se, NULL);
  if (de)
    copy_endpoint_close (de, NULL);
  if (d)
    vdisk_close (d);
  if (s)
    vdisk_close (s);
  free (e);
  return ret;
}

/* Steps 2 to 5 for P (whose manifest the caller holds) into C's id. */
static int
merge (struct backup_repo *r, const struct backup_manifest *p,
       const char *c_id, struct backup_stats *st, GError **err)
{
  g_autofree char *pname = g_strdup_printf ("%s.json", p->id);
  g_autofree char *cname = g_strdup_printf ("%s.json", c_id);
  g_autofree char *p_path = r->ops->path (r, p->disk, p->file);
  if (r->ops->remove (r, p->disk, pname, err) == -1)
    return -1;
  g_autoptr (GPtrArray) pts = backup_repo_points (r, p->disk, NULL, err);
  if (!pts)
    return -1;
  const struct backup_manifest *c = find (pts, c_id);
  if (!c) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "prune: point %s, which %s was merging into, is gone", c_id,
                 p->id);
    return -1;
  }
  if (g_file_test (p_path, G_FILE_TEST_EXISTS)) {
    if (copy_layer (r, p, c, st, err) == -1
        || r->ops->rename (r, p->disk, p->file, c->file, err) == -1)
      return -1;
  }
  g_autoptr (backup_manifest) m = merged (p, c);
  g_autofree char *text = backup_manifest_to_json (m);
  g_autofree char *jname = g_strdup_printf (".prune-%s.journal", p->id);
  g_autofree char *journal = r->ops->path (r, p->disk, jname);
  if (r->ops->publish (r, p->disk, cname, text, strlen (text), err) == -1)
    return -1;
  if (copy_journal_remove (journal) == -1) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "cannot remove %s",
                 journal);
    return -1;
  }
  return 0;
}

static char *
pending_json (const struct backup_manifest *p, const char *c_id)
{
  g_autofree char *pm = backup_manifest_to_json (p);
  g_autofree char *q = g_strescape (c_id, NULL);
  /* The manifest is JSON already: embed it as it is. */
  return g_strdup_printf ("{\"into\": \"%s\", \"point\": %s}\n", q, pm);
}

/* Finish a killed prune's merge of DISK, if there is one. */
static int
finish_pending (struct backup_repo *r, const char *disk,
                struct backup_stats *st, GError **err)
{
  GError *e = NULL;
  size_t len;
  g_autofree char *text = r->ops->read (r, disk, PENDING, &len, &e);
  if (!text) {
    if (!g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
      g_propagate_error (err, e);
      return -1;
    }
    g_error_free (e);
    return 0;
  }
  g_autoptr (JsonParser) jp = json_parser_new ();
  JsonNode *root, *pt;
  JsonObject *o;
  const char *into;
  if (!json_parser_load_from_data (jp, text, len, NULL)
      || !(root = json_parser_get_root (jp)) || !JSON_NODE_HOLDS_OBJECT (root)
      || !(o = json_node_get_object (root))
      || !(into = json_object_get_string_member_with_default (o, "into",
                                                               NULL))
      || !backup_name_is_safe (into)
      || !(pt = json_object_get_member (o, "point"))) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "repository %s: %s/" PENDING " (a killed prune's note) is "
                 "damaged",
                 r->location, disk);
    return -1;
  }
  g_autofree char *ptext = json_to_string (pt, false);
  g_autofree char *where = g_strdup_printf ("%s/" PENDING, disk);
  g_autoptr (backup_manifest) p
      = backup_manifest_parse (ptext, strlen (ptext), where, err);
  g_autofree char *into_id = g_strdup (into);
  if (!p || merge (r, p, into_id, st, err) == -1)
    return -1;
  return r->ops->remove (r, disk, PENDING, err);
}

static int
prune_disk (struct backup_repo *r, const char *disk,
            const struct backup_prune_params *params, GPtrArray *removed,
            struct backup_stats *st, GError **err)
{
  if (!params->dry_run && finish_pending (r, disk, st, err) == -1)
    return -1;
  g_autoptr (GPtrArray) pts = backup_repo_points (r, disk, NULL, err);
  if (!pts)
    return -1;
  g_autofree bool *keep = g_new0 (bool, pts->len);
  choose (pts, params, keep);

  /* Oldest first: a removed point's child may itself go next, taking
   * the merged layer on. */
  for (guint k = 0; k < pts->len; k++) {
    if (keep[k])
      continue;
    const struct backup_manifest *p = pts->pdata[k];
    g_ptr_array_add (removed, g_strdup (p->id));
    if (params->dry_run)
      continue;
    g_autoptr (GPtrArray) now = backup_repo_points (r, disk, NULL, err);
    if (!now)
      return -1;
    const struct backup_manifest *c = child_of (now, p->id);
    g_autofree char *pname = g_strdup_printf ("%s.json", p->id);
    if (!c) {
      if (r->ops->remove (r, disk, pname, err) == -1
          || r->ops->remove (r, disk, p->file, err) == -1)
        return -1;
      continue;
    }
    g_autofree char *note = pending_json (find (now, p->id), c->id);
    if (r->ops->publish (r, disk, PENDING, note, strlen (note), err) == -1
        || merge (r, find (now, p->id), c->id, st, err) == -1
        || r->ops->remove (r, disk, PENDING, err) == -1)
      return -1;
  }
  return 0;
}

int
backup_prune (struct backup_repo *r, const struct backup_prune_params *params,
              GPtrArray *removed, struct backup_stats *stats, GError **err)
{
  g_auto (GStrv) disks = r->ops->list_disks (r, err);
  struct backup_stats st = { 0 };
  gint64 t0 = g_get_monotonic_time ();
  if (!disks)
    return -1;
  for (char **d = disks; *d; d++)
    if (prune_disk (r, *d, params, removed, &st, err) == -1)
      return -1;
  st.seconds = (g_get_monotonic_time () - t0) / 1e6;
  if (stats)
    *stats = st;
  return 0;
}
