/* Unit tests of the streaming VHD reader and writer (vhd-stream.h): a
 * disk made into a VHD stream reads back the same through the reader
 * and through libvdisk, whatever the chunking; fixed VHDs stream too;
 * broken streams are refused with the fault named. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "vdisk.h"
#include "vhd-format.h"
#include "vhd-stream.h"

#define MiB (UINT64_C (1) << 20)

/* What the reader produced: the disk as written, and which bytes it
 * called zero. */
struct sink
{
  uint8_t *data;
  uint8_t *zeroed;
  uint64_t size;
  uint64_t written, zeroes;
};

static int
sink_write (void *opaque, const void *buf, size_t len, uint64_t offset)
{
  struct sink *s = opaque;

  CU_ASSERT_FATAL (offset + len <= s->size);
  memcpy (s->data + offset, buf, len);
  s->written += len;
  return 0;
}

static int
sink_zero (void *opaque, uint64_t len, uint64_t offset)
{
  struct sink *s = opaque;

  CU_ASSERT_FATAL (offset + len <= s->size);
  bool twice = false;

  for (uint64_t i = 0; i < len; i++) {
    twice |= s->zeroed[offset + i];
    s->zeroed[offset + i] = 1;
  }
  CU_ASSERT (!twice);
  s->zeroes += len;
  return 0;
}

static void
sink_init (struct sink *s, uint64_t size)
{
  memset (s, 0, sizeof *s);
  s->size = size;
  /* 0xEE: bytes the reader never touched stand out. */
  s->data = malloc (size);
  s->zeroed = calloc (size, 1);
  CU_ASSERT_FATAL (s->data && s->zeroed);
  memset (s->data, 0xEE, size);
}

static void
sink_free (struct sink *s)
{
  free (s->data);
  free (s->zeroed);
}

/* Feed BUF to a new reader in pieces of pseudo-random sizes up to MAX;
 * returns the reader's final result (feed or finish), the sink filled. */
static int
feed_all (const uint8_t *buf, size_t len, uint64_t max_size,
          uint64_t stream_len, size_t max, struct sink *s)
{
  struct vhd_stream_reader *r
      = vhd_stream_reader_new (max_size, stream_len, sink_write, sink_zero, s);
  unsigned seed = 1;
  size_t off = 0;
  int ret = 0;

  CU_ASSERT_FATAL (r != NULL);
  while (off < len && ret == 0) {
    size_t n = 1 + rand_r (&seed) % max;

    if (n > len - off)
      n = len - off;
    ret = vhd_stream_reader_feed (r, buf + off, n);
    off += n;
  }
  if (ret == 0)
    ret = vhd_stream_reader_finish (r);
  vhd_stream_reader_free (r);
  return ret;
}

/* A raw disk of SIZE with data in a few places: the first block, across
 * a block boundary, in the cut last block. */
static struct vdisk *
make_disk (const char *name, uint64_t size, uint8_t **content)
{
  const char *p = unit_path (name);
  struct vdisk *d;
  uint8_t *want = calloc (size, 1);
  static const struct
  {
    uint64_t off, len;
  } w[] = { { 0, 4096 }, { 2 * MiB - 1000, 3000 }, { 10 * MiB, 1 * MiB } };

  CU_ASSERT_FATAL (want != NULL);
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_RAW, size, NULL) == 0);
  d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
    for (uint64_t j = 0; j < w[i].len; j++)
      want[w[i].off + j] = (uint8_t)(i * 37 + j * 7 + 1);
    CU_ASSERT_FATAL (vdisk_pwrite (d, want + w[i].off, w[i].len, w[i].off, 0)
                     == 0);
  }
  /* The very end, in the last block that the size cuts short. */
  memset (want + size - 512, 0x5A, 512);
  CU_ASSERT_FATAL (vdisk_pwrite (d, want + size - 512, 512, size - 512, 0)
                   == 0);
  *content = want;
  return d;
}

/* The whole VHD a writer makes, read in pieces of STEP bytes. */
static uint8_t *
write_all (struct vhd_stream_writer *w, size_t step, size_t *len)
{
  uint64_t n = vhd_stream_writer_get_length (w);
  uint8_t *buf = malloc (n);

  CU_ASSERT_FATAL (buf != NULL);
  for (uint64_t off = 0; off < n; off += step) {
    size_t k = off + step > n ? n - off : step;
    CU_ASSERT_FATAL (vhd_stream_writer_read (w, buf + off, k, off) == 0);
  }
  *len = n;
  return buf;
}

static void
test_roundtrip (void)
{
  uint64_t size = 12 * MiB + 1536; /* the last block is cut */
  uint8_t *want, *vhd;
  size_t len;
  struct vdisk *d = make_disk ("rt.raw", size, &want);
  struct vhd_stream_writer *w = vhd_stream_writer_new (d);
  size_t steps[] = { 1, 511, 4096, 65537, 3 * MiB };

  CU_ASSERT_FATAL (w != NULL);
  vhd = write_all (w, 333333, &len);
  /* Only the blocks with data: 0, 1, 5 and the last one (6). */
  CU_ASSERT_EQUAL (len, 512 + 1024 + 512 + 4 * (512 + 2 * MiB) + 512);
  CU_ASSERT (vhd_stream_writer_read (w, vhd, 2, len - 1) == -1);
  CU_ASSERT_EQUAL (vdisk_get_errno (), EINVAL);

  /* libvdisk reads the file the same. */
  {
    FILE *f = fopen (unit_path ("rt.vhd"), "wb");
    struct vdisk *v;
    uint8_t *got = malloc (size);

    CU_ASSERT_FATAL (f && got);
    CU_ASSERT_FATAL (fwrite (vhd, 1, len, f) == len);
    fclose (f);
    v = vdisk_open (unit_path ("rt.vhd"), 0);
    CU_ASSERT_FATAL (v != NULL);
    CU_ASSERT_EQUAL (vdisk_get_size (v), size);
    CU_ASSERT (vdisk_pread (v, got, size, 0) == 0);
    CU_ASSERT (memcmp (got, want, size) == 0);
    vdisk_close (v);
    free (got);
  }

  /* The reader, however the stream is cut, with and without a length;
   * into a disk bigger than the VHD. */
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    struct sink s;

    sink_init (&s, size + 4096);
    CU_ASSERT (feed_all (vhd, len, size + 4096, i % 2 ? len : 0, steps[i], &s)
               == 0);
    for (uint64_t j = 0; j < size + 4096; j++) {
      uint8_t b = s.zeroed[j] ? 0 : s.data[j];
      if (b != (j < size ? want[j] : 0)) {
        CU_FAIL ("reader output differs");
        break;
      }
    }
    /* Data is written only where blocks are; the rest is zeroed once. */
    CU_ASSERT_EQUAL (s.written + s.zeroes, size + 4096);
    CU_ASSERT (s.written <= 4 * 2 * MiB);
    sink_free (&s);
  }
  vhd_stream_writer_free (w);
  vdisk_close (d);
  free (vhd);
  free (want);
}

static void
test_fixed (void)
{
  uint64_t size = 3 * MiB;
  const char *p = unit_path ("fixed.vhd");
  struct vdisk_create_params params = { .fixed = true };
  uint8_t *buf = malloc (size + 512);
  struct vdisk *d;
  struct sink s;
  FILE *f;

  CU_ASSERT_FATAL (buf != NULL);
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, size, &params) == 0);
  d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  memset (buf, 0x42, MiB);
  CU_ASSERT (vdisk_pwrite (d, buf, MiB, MiB, 0) == 0);
  vdisk_close (d);
  f = fopen (p, "rb");
  CU_ASSERT_FATAL (f != NULL);
  CU_ASSERT_FATAL (fread (buf, 1, size + 512, f) == size + 512);
  fclose (f);

  sink_init (&s, size);
  CU_ASSERT (feed_all (buf, size + 512, size, 0, 100000, &s) == 0);
  CU_ASSERT (memcmp (s.data, buf, size) == 0);
  sink_free (&s);
  /* A cut fixed VHD: its footer is not where it should be. */
  sink_init (&s, size);
  CU_ASSERT (feed_all (buf, size, size, 0, 100000, &s) == -1);
  CU_ASSERT (strstr (vdisk_get_error (), "no VHD footer") != NULL);
  sink_free (&s);
  /* Too big for the disk: known from the length at once. */
  sink_init (&s, size);
  CU_ASSERT (feed_all (buf, size + 512, size - 512, size + 512, 7, &s) == -1);
  CU_ASSERT_EQUAL (vdisk_get_errno (), EFBIG);
  CU_ASSERT_EQUAL (s.written, 0);
  sink_free (&s);
  free (buf);
}

/* A fresh VHD stream of the roundtrip disk, for corrupting. */
static uint8_t *
good_stream (size_t *len, uint64_t *size)
{
  uint8_t *want, *vhd;
  struct vdisk *d = make_disk ("bad.raw", 12 * MiB, &want);
  struct vhd_stream_writer *w = vhd_stream_writer_new (d);

  CU_ASSERT_FATAL (w != NULL);
  vhd = write_all (w, 1 * MiB, len);
  vhd_stream_writer_free (w);
  vdisk_close (d);
  free (want);
  *size = 12 * MiB;
  return vhd;
}

/* Feed VHD (LEN bytes); expect failure with ERRNUM and WORDS. */
static void
expect_refused (const uint8_t *vhd, size_t len, uint64_t max_size,
                uint64_t stream_len, int errnum, const char *words)
{
  struct sink s;

  sink_init (&s, max_size);
  CU_ASSERT (feed_all (vhd, len, max_size, stream_len, 65536, &s) == -1);
  CU_ASSERT_EQUAL (vdisk_get_errno (), errnum);
  if (strstr (vdisk_get_error (), words) == NULL) {
    fprintf (stderr, "error '%s' does not say '%s'\n", vdisk_get_error (),
             words);
    CU_FAIL ("wrong error");
  }
  sink_free (&s);
}

static void
test_refused (void)
{
  size_t len;
  uint64_t size;
  uint8_t *vhd = good_stream (&len, &size);
  uint8_t *bad = malloc (len);
  const size_t bat = 512 + 1024;

  CU_ASSERT_FATAL (bad != NULL);
  expect_refused (vhd, len, size - 512, 0, EFBIG, "larger than the disk");
  expect_refused (vhd, len / 2, size, 0, EINVAL, "truncated");
  expect_refused (vhd, len - 512, size, 0, EINVAL, "no footer");
  expect_refused (vhd, len / 2, size, len / 2, EINVAL,
                  "points past the end of the body");

  memcpy (bad, vhd, len);
  bad[F_CHECKSUM] ^= 1;
  expect_refused (bad, len, size, 0, EINVAL, "footer checksum mismatch");
  memcpy (bad, vhd, len);
  bad[512 + 1000] ^= 1;
  expect_refused (bad, len, size, 0, EINVAL,
                  "dynamic header checksum mismatch");
  memcpy (bad, vhd, len);
  bad[len - 1] ^= 1;
  expect_refused (bad, len, size, 0, EINVAL, "end of body: footer checksum");
  /* A block before the end of the BAT, and two blocks overlapping. */
  memcpy (bad, vhd, len);
  put_be32 (bad + bat + 4 * 3, 1);
  expect_refused (bad, len, size, 0, ENOTSUP, "before the end of the BAT");
  memcpy (bad, vhd, len);
  put_be32 (bad + bat + 4 * 1, get_be32 (bad + bat) + 8);
  expect_refused (bad, len, size, 0, EINVAL, "overlap");
  /* A differencing VHD. */
  memcpy (bad, vhd, len);
  put_be32 (bad + F_DISK_TYPE, 4);
  put_be32 (bad + F_CHECKSUM, vhd_checksum (bad, FOOTER_SIZE, F_CHECKSUM));
  expect_refused (bad, len, size, 0, ENOTSUP, "differencing");
  /* Feeding a failed reader fails again. */
  {
    struct sink s;
    struct vhd_stream_reader *r;

    sink_init (&s, size);
    r = vhd_stream_reader_new (size, 0, sink_write, NULL, &s);
    CU_ASSERT (vhd_stream_reader_feed (r, bad, len) == -1);
    CU_ASSERT (vhd_stream_reader_feed (r, bad, 1) == -1);
    CU_ASSERT (vhd_stream_reader_finish (r) == -1);
    vhd_stream_reader_free (r);
    sink_free (&s);
  }
  free (bad);
  free (vhd);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "writer and reader round trip", test_roundtrip },
    { "fixed VHD stream", test_fixed },
    { "broken streams refused", test_refused },
    { NULL, NULL },
  };
  return unit_main ("vhd-stream", tests);
}
