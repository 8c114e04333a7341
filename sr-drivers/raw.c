/* raw: the file is the disk.  Allocation comes from the filesystem
 * (SEEK_DATA/SEEK_HOLE); holes read as zero.  Raw is what an image is when
 * no other format's magic matches. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "vdisk-internal.h"

static int
raw_open (struct vdisk *d)
{
  uint64_t size;
  if (vfile_get_size (&d->file, &size) == -1)
    return -1;
  if (size == 0) {
    vdisk_error (d, EINVAL, "empty file: a raw image needs a size");
    return -1;
  }
  d->size = size;
  d->info.block_size = 0;
  return 0;
}

static void
raw_close (struct vdisk *d)
{
}

static int
raw_create (struct vfile *f, uint64_t size,
            const struct vdisk_create_params *params, struct vdisk *parent)
{
  if (vfile_truncate (f, size) == -1)
    return -1;
  if (params->fixed && posix_fallocate (f->fd, 0, size) != 0) {
    vdisk_set_error (ENOSPC, "%s: cannot preallocate %" PRIu64 " bytes",
                     f->path, size);
    return -1;
  }
  return 0;
}

/* Walk data/hole boundaries; each step is one lseek, so the cost follows
 * the number of extents, not the size. */
static int
raw_map (struct vdisk *d, uint64_t offset, uint64_t count,
         struct vdisk_extents *out)
{
  uint64_t end = offset + count, pos = offset;
  while (pos < end) {
    uint64_t data, hole;
    if (vfile_seek_data (&d->file, pos, &data) == -1)
      return -1;
    if (data > end)
      data = end;
    if (data > pos
        && vdisk_extents_append (out, pos, data - pos, VDISK_EXTENT_HOLE, -1,
                                 0)
               == -1)
      return -1;
    if (data >= end)
      break;
    if (vfile_seek_hole (&d->file, data, &hole) == -1)
      return -1;
    if (hole > end)
      hole = end;
    if (hole <= data)
      hole = end; /* file changed under us: call the rest data */
    if (vdisk_extents_append (out, data, hole - data, VDISK_EXTENT_DATA, data,
                              0)
        == -1)
      return -1;
    pos = hole;
  }
  return 0;
}

static int
raw_pread (struct vdisk *d, void *buf, uint64_t count, uint64_t offset)
{
  /* The file may be shorter than a block device would be after a crash
   * mid-extend; what is missing reads as zero. */
  return vfile_pread_upto (&d->file, buf, count, offset);
}

static int
raw_pwrite (struct vdisk *d, const void *buf, uint64_t count, uint64_t offset,
            unsigned flags)
{
  return vfile_pwrite (&d->file, buf, count, offset);
}

static int
raw_zero (struct vdisk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  return vfile_zero (&d->file, count, offset, flags & VDISK_MAY_TRIM);
}

static int
raw_trim (struct vdisk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  /* A punched hole reads as zero, which trim allows. */
  return vfile_zero (&d->file, count, offset, true);
}

static int
raw_flush (struct vdisk *d)
{
  return vfile_flush (&d->file);
}

const struct vdisk_format_ops vdisk_raw_ops = {
  .name = "raw",
  .format = VDISK_FORMAT_RAW,
  .open = raw_open,
  .close = raw_close,
  .create = raw_create,
  .map = raw_map,
  .pread = raw_pread,
  .pwrite = raw_pwrite,
  .zero = raw_zero,
  .trim = raw_trim,
  .flush = raw_flush,
};
