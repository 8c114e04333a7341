/* Local image endpoint: any format libvdisk opens, whole chain or one
 * layer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"

struct local
{
  struct copy_endpoint ep; /* first: the engine sees only this */
  struct vdisk *d;
  bool layer_only;
};

static struct vdisk *
disk (struct copy_endpoint *e)
{
  return ((struct local *)e)->d;
}

static int
vdisk_fail (char **err)
{
  return copy_vdisk_error (err);
}

static int
local_map (struct copy_endpoint *e, uint64_t offset, uint64_t count,
           struct vdisk_extents *out, char **err)
{
  struct local *l = (struct local *)e;
  if (vdisk_map (l->d, offset, count, l->layer_only ? VDISK_MAP_LAYER : 0, out)
      == -1)
    return vdisk_fail (err);
  return 0;
}

static int
local_pread (struct copy_endpoint *e, void *buf, size_t count, uint64_t offset,
             char **err)
{
  return vdisk_pread (disk (e), buf, count, offset) == -1 ? vdisk_fail (err)
                                                          : 0;
}

static int
local_pwrite (struct copy_endpoint *e, const void *buf, size_t count,
              uint64_t offset, char **err)
{
  return vdisk_pwrite (disk (e), buf, count, offset, 0) == -1
             ? vdisk_fail (err)
             : 0;
}

static int
local_zero (struct copy_endpoint *e, uint64_t count, uint64_t offset,
            char **err)
{
  return vdisk_zero (disk (e), count, offset, VDISK_MAY_TRIM) == -1
             ? vdisk_fail (err)
             : 0;
}

static int
local_flush (struct copy_endpoint *e, char **err)
{
  return vdisk_flush (disk (e)) == -1 ? vdisk_fail (err) : 0;
}

static void
local_writeback (struct copy_endpoint *e)
{
  vdisk_start_writeback (disk (e));
}

static int
local_close (struct copy_endpoint *e, char **err)
{
  /* The caller owns the vdisk; flushing is copy_run's job. */
  free (e->name);
  free (e);
  return 0;
}

static int
local_plain_fd (struct copy_endpoint *e)
{
  return vdisk_get_plain_fd (disk (e));
}

static int
local_repair (struct copy_endpoint *e, char **err)
{
  return vdisk_repair_leaks (disk (e), NULL) == -1 ? vdisk_fail (err) : 0;
}

static const struct copy_endpoint_ops local_ops = {
  .kind = "local",
  .map = local_map,
  .pread = local_pread,
  .pwrite = local_pwrite,
  .zero = local_zero,
  .flush = local_flush,
  .writeback = local_writeback,
  .close = local_close,
  .plain_fd = local_plain_fd,
  .repair = local_repair,
};

struct copy_endpoint *
copy_endpoint_local (struct vdisk *d, bool layer_only, char **err)
{
  struct local *l = calloc (1, sizeof *l);
  struct vdisk_info info;
  if (!l) {
    copy_error (err, "out of memory");
    return NULL;
  }
  vdisk_get_info (d, &info);
  l->ep.ops = &local_ops;
  l->ep.size = vdisk_get_size (d);
  /* Zero detection at the unit the format allocates in, within reason:
   * a qcow2 cluster, else a 4 KiB filesystem block. */
  l->ep.granularity = 4096;
  if (info.format == VDISK_FORMAT_QCOW2 && info.block_size >= 4096
      && info.block_size <= (1 << 20))
    l->ep.granularity = info.block_size;
  l->d = d;
  l->layer_only = layer_only;
  l->ep.name = strdup ("local image");
  return &l->ep;
}

int
copy_disk_reads_zero (struct vdisk *d, bool *zero, char **err)
{
  struct vdisk_extents ext = { 0 };
  uint64_t size = vdisk_get_size (d);
  const uint64_t window = UINT64_C (1) << 30;

  *zero = vdisk_get_parent (d) == NULL;
  for (uint64_t off = 0; *zero && off < size; off += window) {
    uint64_t n = size - off < window ? size - off : window;
    vdisk_extents_reset (&ext);
    if (vdisk_map (d, off, n, VDISK_MAP_LAYER, &ext) == -1) {
      vdisk_extents_free (&ext);
      return copy_vdisk_error (err);
    }
    for (size_t i = 0; i < ext.len; i++)
      if (ext.v[i].type == VDISK_EXTENT_DATA)
        *zero = false;
  }
  vdisk_extents_free (&ext);
  return 0;
}

int
copy_side_close_disk (struct copy_side *s, char **err)
{
  int r = 0;
  copy_endpoint_close (s->ep, NULL);
  s->ep = NULL;
  if (s->disk && vdisk_close (s->disk) == -1)
    r = copy_vdisk_error (err);
  s->disk = NULL;
  return r;
}
