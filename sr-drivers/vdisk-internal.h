/* libvdisk internals shared by the core (vdisk.c) and the formats.
 * Nothing outside sr-drivers/ includes this. */
#ifndef VDISK_INTERNAL_H
#define VDISK_INTERNAL_H

#include <inttypes.h>
#include <pthread.h>

#include "vdisk.h"
#include "vfile.h"

struct vdisk;

/* One format: one file (raw.c, vhd.c, qcow2.c) and one entry in the
 * table in vdisk.c. */
struct vdisk_format_ops
{
  const char *name;
  enum vdisk_format format;

  /* Content probe.  HEAD is the first bytes of the file (up to 4096),
   * TAIL the last 512 bytes (fewer if the file is shorter).  Raw is the
   * fallback and is never probed. */
  bool (*probe) (const uint8_t *head, size_t head_len, const uint8_t *tail,
                 size_t tail_len, uint64_t file_size);

  /* Parse and check the metadata of d->file.  Sets d->size, the info
   * fields it knows (d->info.subformat, block_size, uuid) and, if the
   * image has a parent, d->parent_names[] / n_parent_names: candidate
   * names in preference order (POSIX paths, relative ones relative to
   * the image's directory), and d->parent_format if the image records
   * its parent's format (it is VDISK_FORMAT_PROBE on entry).  The core resolves and opens the parent
   * afterwards and then calls attach_parent.  Allocates d->priv. */
  int (*open) (struct vdisk *d);
  /* Optional: check the opened parent (d->parent) belongs to this child
   * (VHD parent UUID).  Return -1 with an error if not. */
  int (*attach_parent) (struct vdisk *d);
  void (*close) (struct vdisk *d);

  /* Write a new empty image into F (created, empty, writable).  PARENT is
   * the opened parent (for its size, uuid, ...) or NULL; params->parent
   * is the name to record. */
  int (*create) (struct vfile *f, uint64_t size,
                 const struct vdisk_create_params *params,
                 struct vdisk *parent);

  /* This layer only: append extents covering exactly [offset,
   * offset+count) with depth 0.  HOLE = not in this layer. */
  int (*map) (struct vdisk *d, uint64_t offset, uint64_t count,
              struct vdisk_extents *out);

  /* Read the range as the guest sees it, falling through to the parent
   * for what this layer does not hold (vdisk_read_parent). */
  int (*pread) (struct vdisk *d, void *buf, uint64_t count, uint64_t offset);
  int (*pwrite) (struct vdisk *d, const void *buf, uint64_t count,
                 uint64_t offset, unsigned flags);
  int (*zero) (struct vdisk *d, uint64_t count, uint64_t offset,
               unsigned flags);
  /* Optional: NULL means trim is ignored (allowed: trim is a hint). */
  int (*trim) (struct vdisk *d, uint64_t count, uint64_t offset,
               unsigned flags);
  int (*flush) (struct vdisk *d);
  /* Optional: give back what a writer killed half-way left allocated
   * but unreferenced (vdisk_repair_leaks). */
  int (*repair_leaks) (struct vdisk *d, uint64_t *freed);
};

extern const struct vdisk_format_ops vdisk_raw_ops;
extern const struct vdisk_format_ops vdisk_vhd_ops;
extern const struct vdisk_format_ops vdisk_qcow2_ops;

#define VDISK_MAX_PARENT_NAMES 4

struct vdisk
{
  const struct vdisk_format_ops *ops;
  struct vfile file;
  char *path;     /* as opened */
  char *realpath; /* canonical, for loop detection */
  unsigned flags; /* VDISK_OPEN_* */
  uint64_t size;  /* virtual size */
  struct vdisk_info info;
  char *parent_names[VDISK_MAX_PARENT_NAMES];
  unsigned n_parent_names;
  char *parent_path; /* resolved */
  int parent_format; /* as recorded by this layer, or VDISK_FORMAT_PROBE */
  struct vdisk *parent;
  void *priv; /* the format's state */
};

/* Read [offset, offset+count) of the layers below D: the parent's data,
 * zeroes beyond the parent's size, zeroes if there is no parent. */
int vdisk_read_parent (struct vdisk *d, void *buf, uint64_t count,
                       uint64_t offset);

/* Set this thread's error.  vdisk_error prefixes "FORMAT: PATH: ". */
void vdisk_set_error (int errnum, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
void vdisk_error (struct vdisk *d, int errnum, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#endif /* VDISK_INTERNAL_H */
