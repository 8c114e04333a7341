/* Restoring a point (backup.h's backup_restore): the point's qcow2 file,
 * opened with its chain, copied by the copy engine to an image file or
 * an NBD export.  The engine's journal, kept in the repository under a
 * name made from the point and the destination, lets the same command
 * continue a killed restore. */
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "copy.h"
#include "vdisk.h"

struct progress_relay
{
  backup_progress_fn fn;
  void *opaque;
};

static void
relay (const struct copy_progress *p, void *opaque)
{
  struct progress_relay *r = opaque;
  if (r->fn)
    r->fn (p->done, p->total, r->opaque);
}

int
backup_restore (struct backup_repo *r, const struct backup_manifest *p,
                const char *dst, backup_progress_fn progress, void *opaque,
                struct backup_stats *stats, GError **err)
{
  g_autofree char *src = r->ops->path (r, p->disk, p->file);
  bool nbd = copy_is_nbd_uri (dst);
  g_autofree char *dst_abs = nbd ? g_strdup (dst)
                                 : g_canonicalize_filename (dst, NULL);
  g_autofree char *key = g_strdup_printf ("%s %s", p->id, dst_abs);
  g_autofree char *sum
      = g_compute_checksum_for_string (G_CHECKSUM_SHA256, key, -1);
  g_autofree char *jname = g_strdup_printf (".restore-%.16s.journal", sum);
  g_autofree char *journal = r->ops->path (r, NULL, jname);
  struct progress_relay pr = { progress, opaque };
  struct copy_spec s = { .kind = COPY_IMAGE,
                         .path = src,
                         .format = VDISK_FORMAT_QCOW2,
                         .open_flags = VDISK_OPEN_BUFFERED };
  struct copy_spec d = { .kind = nbd ? COPY_NBD : COPY_IMAGE,
                         .path = dst,
                         .uri = dst,
                         .format = -1,
                         .open_flags = VDISK_OPEN_BUFFERED };
  struct copy_params params = { .journal = journal,
                                .progress = relay,
                                .progress_opaque = &pr };
  struct copy_stats cs = { 0 };
  char *e = NULL;

  if (copy_simple (&s, &d, &params, &cs, &e) == -1) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
                 "restore of point %s to %s: %s", p->id, dst,
                 e ? e : "failed");
    free (e);
    return -1;
  }
  if (stats) {
    stats->bytes_read = cs.bytes_read;
    stats->bytes_written = cs.bytes_written + cs.bytes_zeroed;
    stats->bytes_skipped = cs.bytes_skipped;
    stats->seconds = cs.seconds;
  }
  return 0;
}
