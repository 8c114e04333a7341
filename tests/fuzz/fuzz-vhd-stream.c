/* libFuzzer target: the streaming VHD reader (sr-drivers/vhd-stream.c),
 * what PUT /import_raw_vdi?format=vhd feeds an HTTP body into.
 *
 * Input: two bytes of settings, then the stream.
 *   byte 0: seeds the chunk sizes the stream is cut into (1 byte up to
 *           64 KiB, as HTTP chunks arrive);
 *   byte 1: bits 0-1 the target disk's size (1 MiB, 20 MiB, 64 MiB,
 *           2 TiB), bit 2 whether the stream's length is known in
 *           advance (Content-Length), bit 3 whether there is a zero
 *           callback.
 *
 * Besides the sanitizers, the target checks the reader's promises
 * (vhd-stream.h): nothing is written or zeroed past the disk's size, and
 * written and zeroed ranges never overlap.  A broken promise aborts. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhd-stream.h"

struct range
{
  uint64_t offset, len;
  bool zero;
};

struct sink
{
  uint64_t max_size;
  struct range *v;
  size_t len, cap;
};

static int
record (struct sink *s, uint64_t offset, uint64_t len, bool zero)
{
  if (len == 0 || offset > s->max_size || len > s->max_size - offset) {
    fprintf (stderr,
             "fuzz: %s of %" PRIu64 " bytes at %" PRIu64
             " on a disk of %" PRIu64 " bytes\n",
             zero ? "zero" : "write", len, offset, s->max_size);
    abort ();
  }
  if (s->len == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 256;
    s->v = realloc (s->v, s->cap * sizeof *s->v);
    if (!s->v)
      abort ();
  }
  s->v[s->len++] = (struct range){ offset, len, zero };
  return 0;
}

static int
on_write (void *opaque, const void *buf, size_t len, uint64_t offset)
{
  /* Touch every byte, so ASan sees a buffer that is too short. */
  volatile uint8_t sum = 0;
  for (size_t i = 0; i < len; i++)
    sum += ((const uint8_t *)buf)[i];
  (void)sum;
  return record (opaque, offset, len, false);
}

static int
on_zero (void *opaque, uint64_t len, uint64_t offset)
{
  return record (opaque, offset, len, true);
}

static int
by_offset (const void *a, const void *b)
{
  const struct range *x = a, *y = b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void
check_overlaps (struct sink *s)
{
  if (s->len < 2)
    return;
  qsort (s->v, s->len, sizeof *s->v, by_offset);
  for (size_t i = 1; i < s->len; i++) {
    const struct range *a = &s->v[i - 1], *b = &s->v[i];
    if (a->offset + a->len > b->offset) {
      fprintf (stderr,
               "fuzz: %s [%" PRIu64 ", +%" PRIu64 ") overlaps %s [%" PRIu64
               ", +%" PRIu64 ")\n",
               a->zero ? "zero" : "write", a->offset, a->len,
               b->zero ? "zero" : "write", b->offset, b->len);
      abort ();
    }
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const uint64_t sizes[]
      = { 1 << 20, 20 << 20, 64 << 20, UINT64_C (2) << 40 };
  struct sink s = { 0 };
  struct vhd_stream_reader *r;
  uint32_t seed;
  unsigned opts;

  if (size < 2)
    return 0;
  seed = data[0] * 2654435761u + 1;
  opts = data[1];
  data += 2, size -= 2;
  s.max_size = sizes[opts & 3];

  r = vhd_stream_reader_new (s.max_size, opts & 4 ? size : 0, on_write,
                             opts & 8 ? on_zero : NULL, &s);
  if (!r)
    abort ();
  while (size > 0) {
    size_t n;
    seed = seed * 1103515245u + 12345u;
    n = 1 + (seed >> 8) % ((size_t)1 << ((seed >> 4) % 17));
    if (n > size)
      n = size;
    /* Each chunk in its own allocation: a read past it is caught. */
    uint8_t *chunk = malloc (n);
    if (!chunk)
      abort ();
    memcpy (chunk, data, n);
    int rc = vhd_stream_reader_feed (r, chunk, n);
    free (chunk);
    if (rc == -1)
      break;
    data += n, size -= n;
  }
  if (size == 0)
    vhd_stream_reader_finish (r);
  vhd_stream_reader_free (r);
  check_overlaps (&s);
  free (s.v);
  return 0;
}
