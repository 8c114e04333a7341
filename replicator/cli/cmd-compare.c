/* vdimotion compare: do two images read the same?  Exit 0 identical, 1
 * different (naming the first differing offset), 2 on error -- the
 * contract of qemu-img compare.  Ranges both maps call zero are not read. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "iszero.h"
#include "cli.h"
#include "vdisk.h"

#define CMP_EXIT_DIFFER 1
#define CMP_EXIT_ERROR 2
#define BUF_SIZE (1 << 20)
#define MAP_WINDOW (UINT64_C (1) << 34)

/* One side: an image and a cursor over its map, fetched a window at a
 * time so memory does not grow with the disk. */
struct side
{
  const char *path;
  struct vdisk *d;
  struct vdisk_extents e;
  size_t i;        /* current extent */
  uint64_t mapped; /* map fetched up to here */
  char *buf;
};

/* The extent containing POS (fetching more map as needed). */
static const struct vdisk_extent *
extent_at (struct side *s, uint64_t pos)
{
  for (;;) {
    while (s->i < s->e.len && s->e.v[s->i].offset + s->e.v[s->i].length <= pos)
      s->i++;
    if (s->i < s->e.len)
      return &s->e.v[s->i];
    uint64_t size = vdisk_get_size (s->d);
    uint64_t n = size - s->mapped < MAP_WINDOW ? size - s->mapped : MAP_WINDOW;
    vdisk_extents_reset (&s->e);
    s->i = 0;
    if (n == 0 || vdisk_map (s->d, s->mapped, n, 0, &s->e) == -1)
      return NULL;
    s->mapped += n;
  }
}

static bool
reads_zero (const struct vdisk_extent *x)
{
  return x->type != VDISK_EXTENT_DATA;
}

/* Offset of the first differing byte of the two buffers. */
static size_t
first_diff (const char *a, const char *b, size_t n)
{
  size_t i = 0;
  while (i < n && a[i] == b[i])
    i++;
  return i;
}

static void
report_error (struct side *s)
{
  cli_error ("compare", "%s", vdisk_get_error ());
}

/* Compare [pos, end) of both images; sets *diff to the first differing
 * offset or UINT64_MAX.  Returns -1 on read error. */
static int
compare_range (struct side *a, struct side *b, uint64_t pos, uint64_t end,
               uint64_t *diff, struct progress *pr)
{
  *diff = UINT64_MAX;
  while (pos < end) {
    const struct vdisk_extent *xa = extent_at (a, pos);
    const struct vdisk_extent *xb = extent_at (b, pos);
    if (!xa || !xb) {
      report_error (!xa ? a : b);
      return -1;
    }
    uint64_t n = end - pos;
    if (xa->offset + xa->length - pos < n)
      n = xa->offset + xa->length - pos;
    if (xb->offset + xb->length - pos < n)
      n = xb->offset + xb->length - pos;
    if (!(reads_zero (xa) && reads_zero (xb))) {
      if (n > BUF_SIZE)
        n = BUF_SIZE;
      bool za = reads_zero (xa), zb = reads_zero (xb);
      if (!za && vdisk_pread (a->d, a->buf, n, pos) == -1) {
        report_error (a);
        return -1;
      }
      if (!zb && vdisk_pread (b->d, b->buf, n, pos) == -1) {
        report_error (b);
        return -1;
      }
      if (za)
        memset (a->buf, 0, n);
      if (zb)
        memset (b->buf, 0, n);
      if (memcmp (a->buf, b->buf, n) != 0) {
        *diff = pos + first_diff (a->buf, b->buf, n);
        return 0;
      }
    }
    pos += n;
    progress_update (pr, pos);
  }
  return 0;
}

/* The longer image's tail must read as zero (qemu-img compare's rule for
 * images of different sizes). */
static int
check_tail (struct side *s, uint64_t pos, uint64_t *diff, struct progress *pr)
{
  uint64_t end = vdisk_get_size (s->d);
  *diff = UINT64_MAX;
  while (pos < end) {
    const struct vdisk_extent *x = extent_at (s, pos);
    if (!x) {
      report_error (s);
      return -1;
    }
    uint64_t n = x->offset + x->length - pos;
    if (!reads_zero (x)) {
      if (n > BUF_SIZE)
        n = BUF_SIZE;
      if (vdisk_pread (s->d, s->buf, n, pos) == -1) {
        report_error (s);
        return -1;
      }
      if (!is_zero (s->buf, n)) {
        size_t k = 0;
        while (s->buf[k] == 0)
          k++;
        *diff = pos + k;
        return 0;
      }
    }
    pos += n;
    progress_update (pr, pos);
  }
  return 0;
}

static int
open_side (struct side *s, const char *path, int format)
{
  s->path = path;
  s->d = cli_open_image ("compare", path, 0, format);
  if (!s->d)
    return -1;
  if (posix_memalign ((void **)&s->buf, 4096, BUF_SIZE) != 0) {
    cli_error ("compare", "out of memory");
    return -1;
  }
  return 0;
}

static void
close_side (struct side *s)
{
  vdisk_extents_free (&s->e);
  vdisk_close (s->d);
  free (s->buf);
}

static int
run (int argc, char **argv)
{
  static const struct option opts[] = {
    { "progress", no_argument, NULL, 'p' },
    { "no-progress", no_argument, NULL, 'P' },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { NULL },
  };
  int mode = PROGRESS_AUTO, c;
  int fa = VDISK_FORMAT_PROBE, fb = VDISK_FORMAT_PROBE;
  bool quiet = false;
  /* -f and -F: the first and second image's formats, as qemu-img's. */
  while ((c = getopt_long (argc, argv, "f:F:pqh", opts, NULL)) != -1) {
    switch (c) {
    case 'f':
    case 'F':
      if ((*(c == 'f' ? &fa : &fb) = cli_parse_format ("compare", optarg)) < 0)
        return CMP_EXIT_ERROR;
      break;
    case 'p': mode = PROGRESS_ON; break;
    case 'P': mode = PROGRESS_OFF; break;
    case 'q': quiet = true; break;
    case 'h':
      printf ("usage: vdimotion compare %s\n", cmd_compare.synopsis);
      return EXIT_OK;
    default: cli_usage (&cmd_compare); return CMP_EXIT_ERROR;
    }
  }
  if (argc - optind != 2) {
    cli_usage (&cmd_compare);
    return CMP_EXIT_ERROR;
  }

  struct side a = { 0 }, b = { 0 };
  int ret = CMP_EXIT_ERROR;
  uint64_t diff = UINT64_MAX;
  if (open_side (&a, argv[optind], fa) == -1
      || open_side (&b, argv[optind + 1], fb) == -1)
    goto out;

  uint64_t sa = vdisk_get_size (a.d), sb = vdisk_get_size (b.d);
  uint64_t common = sa < sb ? sa : sb;
  struct progress pr;
  progress_init (&pr, mode, sa > sb ? sa : sb);
  if (sa != sb && !quiet)
    fprintf (stderr, "Warning: Image size mismatch!\n");
  if (compare_range (&a, &b, 0, common, &diff, &pr) == -1)
    goto out;
  if (diff == UINT64_MAX && sa != sb
      && check_tail (sa > sb ? &a : &b, common, &diff, &pr) == -1)
    goto out;
  progress_finish (&pr);
  if (diff == UINT64_MAX) {
    if (!quiet)
      printf ("Images are identical.\n");
    ret = EXIT_OK;
  }
  else {
    if (!quiet)
      printf ("Content mismatch at offset %" PRIu64 "!\n", diff);
    ret = CMP_EXIT_DIFFER;
  }
out:
  close_side (&a);
  close_side (&b);
  return ret;
}

const struct command cmd_compare
    = { "compare",
        "[-f FMT] [-F FMT] [--progress|--no-progress] [-q] IMAGE1 IMAGE2",
        run };
