/* The body of fuzz-vhd.c and fuzz-qcow2.c: open an image with libvdisk,
 * map it (flattened and layer by layer) and read a little of it.
 *
 * The input is one image, or a chain of two:
 *
 *   "VDMCHAIN" LE32(top length) TOP PARENT
 *
 * written to the files "top" and "parent" of a private directory, so a
 * top image that names "parent" as its backing file (qcow2) or parent
 * locator (VHD) opens a real chain.  Parent names that lead out of that
 * directory are not found (access() below): an input must not make the
 * fuzzer open whatever file of this machine it happens to name.
 *
 * A disk of up to 64 GiB is also read as GET /export_raw_vdi
 * ?format=vhd streams it (vhd-stream.h, the writer).
 *
 * Besides the sanitizers, the target checks libvdisk's own promises
 * (vdisk.h): a map is sorted, contiguous and covers exactly the range
 * asked, and what a flattened map calls ZERO or HOLE reads as zeroes.
 * A broken promise aborts, so libFuzzer keeps the input. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vdisk.h"
#include "vhd-stream.h"

#define CHAIN_MAGIC "VDMCHAIN"
#define READ_CHUNK 16384 /* bytes per read */
#define MAX_READS 12     /* reads per input */
/* Disks up to this size are also streamed as a VHD export (its map is
 * read 1 GiB at a time). */
#define MAX_EXPORT_SIZE (UINT64_C (64) << 30)

static char dir[PATH_MAX];
static char top_path[PATH_MAX + 8], parent_path[PATH_MAX + 8];
static int guard; /* access() refuses paths outside DIR while set */

/* libvdisk looks for a parent with access(path, F_OK) before opening it
 * (vdisk.c, open_parent).  This definition takes the place of libc's in
 * the fuzz target only. */
int
access (const char *path, int mode)
{
  if (guard) {
    char *real = realpath (path, NULL);
    size_t n = strlen (dir);
    int inside = real && strncmp (real, dir, n) == 0 && real[n] == '/';
    free (real);
    if (!inside) {
      errno = ENOENT;
      return -1;
    }
  }
  return faccessat (AT_FDCWD, path, mode, 0);
}

static void
setup (void)
{
  const char *tmp = getenv ("TMPDIR");
  char tmpl[PATH_MAX];

  snprintf (tmpl, sizeof tmpl, "%s/vdm-fuzz.XXXXXX", tmp ? tmp : "/tmp");
  if (!mkdtemp (tmpl) || !realpath (tmpl, dir)) {
    perror ("fuzz: mkdtemp");
    abort ();
  }
  snprintf (top_path, sizeof top_path, "%s/top", dir);
  snprintf (parent_path, sizeof parent_path, "%s/parent", dir);
}

static void
teardown (void)
{
  unlink (top_path);
  unlink (parent_path);
  rmdir (dir);
}

static void
put_file (const char *path, const uint8_t *data, size_t len)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1 || (len && write (fd, data, len) != (ssize_t)len)) {
    perror (path);
    abort ();
  }
  close (fd);
}

/* vdisk.h: sorted, contiguous, exactly [offset, offset+count). */
static void
check_map (const struct vdisk_extents *e, uint64_t offset, uint64_t count,
           const char *what)
{
  uint64_t at = offset;

  for (size_t i = 0; i < e->len; i++) {
    const struct vdisk_extent *x = &e->v[i];
    if (x->offset != at || x->length == 0 || x->length > offset + count - at
        || x->type > VDISK_EXTENT_HOLE) {
      fprintf (stderr,
               "fuzz: %s map: extent %zu (offset %" PRIu64 " length %" PRIu64
               " type %u) does not follow at %" PRIu64 "\n",
               what, i, x->offset, x->length, x->type, at);
      abort ();
    }
    at += x->length;
  }
  if (at != offset + count) {
    fprintf (stderr, "fuzz: %s map ends at %" PRIu64 ", not %" PRIu64 "\n",
             what, at, offset + count);
    abort ();
  }
}

static void
read_at (struct vdisk *d, uint8_t *buf, uint64_t offset, uint64_t len,
         bool must_be_zero)
{
  uint64_t size = vdisk_get_size (d);

  if (offset >= size)
    return;
  if (len > size - offset)
    len = size - offset;
  if (len > READ_CHUNK)
    len = READ_CHUNK;
  if (vdisk_pread (d, buf, len, offset) == -1)
    return; /* a corrupt image may fail to read; it must not crash */
  if (must_be_zero)
    for (uint64_t i = 0; i < len; i++)
      if (buf[i]) {
        fprintf (stderr,
                 "fuzz: byte %" PRIu64 " reads 0x%02x, but the map says "
                 "it reads as zero\n",
                 offset + i, buf[i]);
        abort ();
      }
}

static void
exercise (struct vdisk *d)
{
  static uint8_t buf[READ_CHUNK];
  struct vdisk_extents e = { 0 };
  struct vdisk_info info;
  uint64_t size = vdisk_get_size (d);
  unsigned reads = 0;

  for (struct vdisk *l = d; l; l = vdisk_get_parent (l)) {
    vdisk_get_info (l, &info);
    vdisk_extents_reset (&e);
    if (vdisk_map (l, 0, vdisk_get_size (l), VDISK_MAP_LAYER, &e) == 0)
      check_map (&e, 0, vdisk_get_size (l), "layer");
  }

  vdisk_extents_reset (&e);
  if (size && vdisk_map (d, 0, size, 0, &e) == 0) {
    check_map (&e, 0, size, "flattened");
    /* Each extent's first bytes, the last bytes before its end (across
     * into the next one), as far as MAX_READS goes. */
    for (size_t i = 0; i < e.len && reads < MAX_READS; i++) {
      const struct vdisk_extent *x = &e.v[i];
      bool zero = x->type != VDISK_EXTENT_DATA;
      read_at (d, buf, x->offset, x->length < 4096 ? x->length : 4096, zero);
      reads++;
      if (x->length > 4096 && reads < MAX_READS) {
        read_at (d, buf, x->offset + x->length - 1000, 1000, zero);
        read_at (d, buf, x->offset + x->length - 1000, 3000, false);
        reads += 2;
      }
    }
    /* A partial map of an unaligned middle range. */
    if (size > 3) {
      uint64_t off = size / 3 + 1, cnt = size / 3;
      vdisk_extents_reset (&e);
      if (vdisk_map (d, off, cnt, 0, &e) == 0)
        check_map (&e, off, cnt, "partial");
    }
  }
  /* The start, an unaligned read, the end. */
  read_at (d, buf, 0, READ_CHUNK, false);
  read_at (d, buf, 513, 7000, false);
  if (size > READ_CHUNK)
    read_at (d, buf, size - READ_CHUNK, READ_CHUNK, false);
  vdisk_extents_free (&e);

  /* The image as GET /export_raw_vdi?format=vhd streams it: the
   * metadata, the first block's bitmap and data, the closing footer. */
  if (size <= MAX_EXPORT_SIZE) {
    struct vhd_stream_writer *w = vhd_stream_writer_new (d);
    if (w) {
      uint64_t len = vhd_stream_writer_get_length (w);
      uint64_t n = len < READ_CHUNK ? len : READ_CHUNK;
      vhd_stream_writer_read (w, buf, n, 0);
      if (len > 3 * READ_CHUNK)
        vhd_stream_writer_read (w, buf, READ_CHUNK, 2 * READ_CHUNK + 7);
      vhd_stream_writer_read (w, buf, n, len - n);
      vhd_stream_writer_free (w);
    }
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static bool ready;
  const uint8_t *top = data, *parent = NULL;
  size_t top_len = size, parent_len = 0;
  struct vdisk *d;

  if (!ready) {
    setup ();
    atexit (teardown);
    ready = true;
  }
  if (size >= 12 && memcmp (data, CHAIN_MAGIC, 8) == 0) {
    uint32_t n
        = data[8] | data[9] << 8 | data[10] << 16 | (uint32_t)data[11] << 24;
    top = data + 12;
    top_len = n < size - 12 ? n : size - 12;
    parent = top + top_len;
    parent_len = size - 12 - top_len;
  }
  put_file (top_path, top, top_len);
  if (parent)
    put_file (parent_path, parent, parent_len);
  else
    unlink (parent_path);

  guard = 1;
  d = vdisk_open (top_path, VDISK_OPEN_BUFFERED);
  if (d) {
    exercise (d);
    vdisk_close (d);
  }
  /* The top layer alone, whatever became of its parent. */
  d = vdisk_open (top_path, VDISK_OPEN_BUFFERED | VDISK_OPEN_NO_PARENT);
  if (d) {
    exercise (d);
    vdisk_close (d);
  }
  guard = 0;
  return 0;
}
