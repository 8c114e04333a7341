/* libvdisk: virtual disk images (raw, VHD, qcow2) behind one interface.
 *
 * A `struct vdisk` is one open image together with its backing chain
 * (VHD differencing parent, qcow2 backing file), opened read-only below
 * the top layer.  Reads fall through the chain; writes go to the top
 * layer.
 *
 * Formats are their owner's word, never a guess from bytes a guest may
 * have written (qemu's format-probing CVE class): the caller says the top
 * layer's format (an SR's VDI record, a command line's -f), a qcow2 child
 * says its backing file's format (the backing-format header extension),
 * and a VHD's differencing parent is a VHD.  Only where nobody says does
 * libvdisk probe the content, as qemu does, and records that it did
 * (vdisk_info.probed) so the caller can warn.  With a confining directory
 * (an SR) nothing is ever probed and no layer may lie outside it.
 *
 * Allocation maps come from metadata only (BAT and sector bitmaps, L1/L2
 * tables, SEEK_DATA/SEEK_HOLE), so their cost is O(allocated), not
 * O(virtual size).
 *
 * Errors: functions return -1 (or NULL) and leave a message and an errno
 * in thread-local storage, read with vdisk_get_error() / vdisk_get_errno()
 * (the libnbd convention).  Messages name the file and the structure:
 * "vhd: /sr/a.vhd: BAT entry 17 points past end of file".
 *
 * Thread safety: one `struct vdisk` may be used by several threads at
 * once (nbdkit's parallel thread model), for reads and writes of any
 * ranges; the formats serialise their metadata updates internally.
 */
#ifndef VDISK_H
#define VDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vdisk_format
{
  VDISK_FORMAT_RAW,
  VDISK_FORMAT_VHD,
  VDISK_FORMAT_QCOW2,
};

/* vdisk_open flags. */
#define VDISK_OPEN_RDWR 0x1      /* top layer writable (parents never are) */
#define VDISK_OPEN_NO_PARENT 0x2 /* do not open the backing chain */
#define VDISK_OPEN_BUFFERED 0x4  /* never use O_DIRECT */

/* Write flags. */
#define VDISK_FUA 0x1      /* data durable before returning */
#define VDISK_MAY_TRIM 0x2 /* vdisk_zero may deallocate */

struct vdisk;

/* "The caller does not know the format": probe the content (qemu's rule:
 * qcow2 and VHD by their magic, anything else raw). */
#define VDISK_FORMAT_PROBE (-1)

/* Open an image and, unless VDISK_OPEN_NO_PARENT, its whole chain.
 * Loops and chains deeper than VDISK_MAX_DEPTH are rejected.
 *
 * FORMAT is the top layer's format (enum vdisk_format) as its owner
 * recorded it, or VDISK_FORMAT_PROBE.  A parent's format is what its
 * child records; it is probed only when the child records none (a qcow2
 * without the backing-format extension).
 *
 * CONFINE, if not NULL, is a directory (an SR's): every layer must be a
 * file directly in it once symlinks are resolved, named "<anything>.<fmt>"
 * (not starting with a dot) where <fmt> ("raw", "vhd", "qcow2") is the
 * format it is opened as, and nothing is probed (FORMAT must be given; a
 * parent whose format its child does not record is refused).  So a
 * child's word cannot make a raw image of the directory, or any other
 * file in it, into metadata.  Errors: EINVAL for a bad FORMAT, EXDEV for a
 * layer outside CONFINE or not named for its format, ENOTSUP for a backing
 * format that is not raw, vpc/vhd or qcow2, and whatever the format's own
 * checks say (a parent's error says whose word it was opened on). */
#define VDISK_MAX_DEPTH 64
struct vdisk *vdisk_open_as (const char *path, unsigned flags, int format,
                             const char *confine);
/* vdisk_open_as (PATH, FLAGS, VDISK_FORMAT_PROBE, NULL): for files that
 * nobody describes (tests, tools); the daemon never uses it. */
struct vdisk *vdisk_open (const char *path, unsigned flags);
/* Flushes (if writable) and frees the whole chain.  Returns -1 if the
 * final flush failed; the handle is freed either way. */
int vdisk_close (struct vdisk *d);

struct vdisk_create_params
{
  /* Backing file as it will be recorded (relative names are relative to
   * the new image's directory, as qemu does), or NULL. */
  const char *parent;
  /* The backing file's format ("raw", "vhd"/"vpc", "qcow2"), as qemu-img
   * create -F takes it; recorded in a qcow2 child.  NULL: probe the parent
   * (vdisk_create then fails if confine is set). */
  const char *parent_format;
  /* As vdisk_open_as's CONFINE, for opening the parent. */
  const char *confine;
  /* VHD block size / qcow2 cluster size; 0 = the format's default
   * (VHD 2 MiB, qcow2 64 KiB). */
  uint32_t block_size;
  /* VHD: fixed subformat instead of dynamic.  raw: preallocate. */
  bool fixed;
};
/* Create a new image; fails with EEXIST if PATH exists.  SIZE (bytes) 0
 * with a parent means "the parent's size".  SIZE is rounded up to a
 * multiple of 512 for every format, as qemu-img does, so every reader
 * sees every byte. */
int vdisk_create (const char *path, enum vdisk_format format, uint64_t size,
                  const struct vdisk_create_params *params);

uint64_t vdisk_get_size (struct vdisk *d);
bool vdisk_is_writable (struct vdisk *d);
/* The file descriptor of an image whose guest offsets are its file
 * offsets (raw, no parent), for copy_file_range; -1 for any other. */
int vdisk_get_plain_fd (struct vdisk *d);
/* The next layer down, or NULL. */
struct vdisk *vdisk_get_parent (struct vdisk *d);

/* Data.  Ranges must lie within the virtual size.  The whole range is
 * transferred or -1 is returned. */
int vdisk_pread (struct vdisk *d, void *buf, uint64_t count, uint64_t offset);
int vdisk_pwrite (struct vdisk *d, const void *buf, uint64_t count,
                  uint64_t offset, unsigned flags);
/* Afterwards the range reads as zeroes (in this layer; it hides the
 * parent).  With VDISK_MAY_TRIM the format may deallocate instead of
 * writing zeroes, when deallocated space reads as zero. */
int vdisk_zero (struct vdisk *d, uint64_t count, uint64_t offset,
                unsigned flags);
/* A hint that the range is no longer needed.  TRIM is not zero: the
 * range may afterwards read as anything, including the parent's data;
 * a format may ignore it. */
int vdisk_trim (struct vdisk *d, uint64_t count, uint64_t offset,
                unsigned flags);
int vdisk_flush (struct vdisk *d);
/* After a writer of this image was killed half-way (a copy resumed from
 * its journal): free what it had allocated and not yet linked, so that
 * the image checks clean (qemu-img check: no leaked clusters) once the
 * writing is done again.  Only while nothing else writes the image.
 * *FREED (if not NULL) gets the number of clusters or blocks freed; a
 * format without allocation metadata frees nothing. */
int vdisk_repair_leaks (struct vdisk *d, uint64_t *freed);
/* Start writing what this layer holds in the page cache out to the
 * device, without waiting: a later vdisk_flush then has little left to
 * do.  A hint; it never fails. */
void vdisk_start_writeback (struct vdisk *d);

/* Description of one layer (not the chain). */
struct vdisk_info
{
  enum vdisk_format format;
  const char *format_name; /* "raw", "vhd", "qcow2" */
  const char *subformat;   /* vhd: "fixed", "dynamic", "differencing";
                              qcow2: "v3" (or "v2"); raw: NULL */
  uint64_t virtual_size;
  uint32_t block_size;      /* VHD block, qcow2 cluster; raw: 0 */
  uint64_t file_size;       /* st_size */
  uint64_t allocated_bytes; /* st_blocks * 512 */
  const char *parent_name;  /* as recorded in the image, or NULL */
  const char *parent_path;  /* resolved path of the open parent, or NULL */
  char uuid[37];            /* VHD unique id; empty if the format has none */
  unsigned chain_depth;     /* layers below this one that are open */
  bool probed;              /* the format was guessed from the content */
  /* The parent's format as this layer records it ("raw", "vhd", "qcow2"),
   * or NULL if it records none (or has no parent). */
  const char *parent_format_name;
};
void vdisk_get_info (struct vdisk *d, struct vdisk_info *info);
/* For each layer of D's chain whose format was guessed, print to stderr
 * "PREFIX: warning: the format of PATH was not given and probing guessed
 * FORMAT ..." -- as qemu-img does, not for a top layer guessed qcow2 or
 * VHD by its magic.  Returns how many lines it printed. */
unsigned vdisk_warn_probed (struct vdisk *d, const char *prefix);
const char *vdisk_format_name (enum vdisk_format format);
/* "raw" / "vhd" / "vpc" / "qcow2" -> format; -1 if unknown. */
int vdisk_format_from_name (const char *name);

/* Allocation maps. */
enum vdisk_extent_type
{
  VDISK_EXTENT_DATA, /* stored data (may still happen to be zeroes) */
  VDISK_EXTENT_ZERO, /* reads as zero, recorded as such (qcow2 zero
                        cluster) -- hides any parent */
  VDISK_EXTENT_HOLE, /* not allocated: in a layer map, "ask the parent";
                        in a flattened map, allocated nowhere in the
                        chain, so it reads as zero */
};

struct vdisk_extent
{
  uint64_t offset; /* guest offset */
  uint64_t length;
  int64_t host_offset; /* DATA: offset in the file of layer `depth`, or
                          -1 when not directly addressable (compressed) */
  uint32_t type;       /* enum vdisk_extent_type */
  uint32_t depth;      /* layer index, 0 = top; for a flattened HOLE the
                          bottom layer's index (as qemu-img map) */
};

struct vdisk_extents
{
  struct vdisk_extent *v;
  size_t len, cap;
};

/* Map [offset, offset+count).  The result is sorted, contiguous, covers
 * exactly the range, and merges neighbours of equal type and depth (and
 * contiguous host offsets).  Appends to OUT (the caller resets it).
 * Flags: VDISK_MAP_LAYER maps the top layer only (HOLE = ask the parent);
 * the default flattens the chain. */
#define VDISK_MAP_LAYER 0x1
int vdisk_map (struct vdisk *d, uint64_t offset, uint64_t count,
               unsigned flags, struct vdisk_extents *out);

int vdisk_extents_append (struct vdisk_extents *e, uint64_t offset,
                          uint64_t length, enum vdisk_extent_type type,
                          int64_t host_offset, uint32_t depth);
void vdisk_extents_reset (struct vdisk_extents *e);
void vdisk_extents_free (struct vdisk_extents *e);

/* Last error of this thread. */
const char *vdisk_get_error (void);
int vdisk_get_errno (void);

#endif /* VDISK_H */
