/* Verifying a repository (backup.h's backup_verify): every point's
 * manifest against its file.  The cheap checks read metadata only (the
 * file opens with its chain, its backing file is its parent point's,
 * sizes agree, each listed block is held by the layer); --deep reads
 * every listed block from the point's own layer and hashes it again. */
#include <inttypes.h>
#include <string.h>

#include "backup.h"
#include "vdisk.h"

static void
problem (GPtrArray *problems, const struct backup_manifest *m,
         const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static void
problem (GPtrArray *problems, const struct backup_manifest *m,
         const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_ptr_array_add (problems,
                   g_strdup_printf ("point %s (disk %s): %s", m->id, m->disk,
                                    msg));
}

/* Whether the layer's map EX holds all of [off, off+len).  Blocks are
 * asked in ascending order: *AT is where the last search ended. */
static bool
layer_holds (const struct vdisk_extents *ex, size_t *at, uint64_t off,
             uint64_t len)
{
  while (*at < ex->len && ex->v[*at].offset + ex->v[*at].length <= off)
    (*at)++;
  for (size_t i = *at; i < ex->len && ex->v[i].offset < off + len; i++)
    if (ex->v[i].type == VDISK_EXTENT_HOLE)
      return false;
  return true;
}

static void
check_blocks (struct vdisk *d, const struct backup_manifest *m, bool deep,
              GPtrArray *problems)
{
  struct vdisk_extents ex = { 0 };
  g_autofree char *buf = g_malloc (BACKUP_BLOCK_SIZE);
  size_t at = 0;

  if (vdisk_map (d, 0, m->virtual_size, VDISK_MAP_LAYER, &ex) == -1) {
    problem (problems, m, "%s", vdisk_get_error ());
    return;
  }
  for (size_t i = 0; i < m->n_blocks; i++) {
    uint64_t b = m->blocks[i].index, off = b * BACKUP_BLOCK_SIZE;
    uint64_t len = MIN (BACKUP_BLOCK_SIZE, m->virtual_size - off);
    if (!layer_holds (&ex, &at, off, len)) {
      problem (problems, m,
               "block %" PRIu64 " (offset %" PRIu64 "): not in %s",
               b, off, m->file);
      continue;
    }
    if (!deep)
      continue;
    if (vdisk_pread (d, buf, len, off) == -1) {
      problem (problems, m, "block %" PRIu64 " (offset %" PRIu64 "): %s", b,
               off, vdisk_get_error ());
      continue;
    }
    g_autoptr (GChecksum) c = g_checksum_new (G_CHECKSUM_SHA256);
    uint8_t sum[32];
    gsize n = 32;
    g_checksum_update (c, (const guchar *)buf, len);
    g_checksum_get_digest (c, sum, &n);
    if (memcmp (sum, m->blocks[i].sha256, 32) != 0)
      problem (problems, m,
               "block %" PRIu64 " (offset %" PRIu64 "): SHA-256 mismatch "
               "(%s has other bytes than the manifest says)",
               b, off, m->file);
  }
  vdisk_extents_free (&ex);
}

static void
check_point (struct backup_repo *r, const struct backup_manifest *m,
             GPtrArray *points, bool deep, GPtrArray *problems)
{
  g_autofree char *path = r->ops->path (r, m->disk, m->file);
  g_autofree char *dir = r->ops->path (r, m->disk, ".");
  struct vdisk *d = vdisk_open_as (path, 0, VDISK_FORMAT_QCOW2, dir);
  struct vdisk_info info;

  if (!d) {
    problem (problems, m, "%s", vdisk_get_error ());
    return;
  }
  vdisk_get_info (d, &info);
  if (info.virtual_size != m->virtual_size)
    problem (problems, m,
             "%s holds %" PRIu64 " bytes, the manifest says %" PRIu64,
             m->file, info.virtual_size, m->virtual_size);
  const struct backup_manifest *parent = NULL;
  for (guint i = 0; m->parent && i < points->len; i++)
    if (strcmp (((struct backup_manifest *)points->pdata[i])->id, m->parent)
        == 0)
      parent = points->pdata[i];
  if (m->parent && !parent)
    problem (problems, m, "its parent point %s is missing", m->parent);
  const char *want = parent ? parent->file : NULL;
  const char *has = info.parent_name;
  if (g_strcmp0 (want, has) != 0)
    problem (problems, m, "%s's backing file is %s, the manifest's parent "
                          "is %s",
             m->file, has ? has : "none", want ? want : "none");
  check_blocks (d, m, deep, problems);
  vdisk_close (d);
}

int
backup_verify (struct backup_repo *r, bool deep, GPtrArray *problems,
               GError **err)
{
  g_autoptr (GPtrArray) all = backup_repo_all_points (r, problems, err);
  if (!all)
    return -1;
  for (guint i = 0; i < all->len; i++)
    check_point (r, all->pdata[i], all, deep, problems);
  return all->len;
}
