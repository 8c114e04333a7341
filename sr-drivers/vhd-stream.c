/* VHD images as byte streams (vhd-stream.h).
 *
 * The reader walks a dynamic VHD as a list of pieces at known stream
 * offsets: the footer copy at 0, the dynamic header where the footer
 * says, the BAT where the header says, then every allocated block
 * (bitmap, data) in the order of its offset in the file, then the
 * closing footer.  Bytes between pieces (parent locators, padding) are
 * skipped as they arrive.  Nothing before the current position can be
 * read again, so a block placed before the end of the BAT, or two
 * blocks that overlap, make the stream unreadable here: refused, with
 * the BAT entry named.
 *
 * A stream that does not start with a dynamic footer is taken for a
 * fixed VHD, [data][footer]: its data is written as it arrives, holding
 * back the last 512 bytes, which must turn out to be the footer.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "vdisk-internal.h"
#include "vhd-format.h"
#include "vhd-stream.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ------------------------------------------------------------------ */
/* Reader. */

enum piece
{
  P_FOOTER, /* the footer copy at offset 0 */
  P_HEADER,
  P_BAT,
  P_BITMAP,
  P_DATA,
  P_TAIL,  /* after the last block: the closing footer somewhere */
  P_FIXED, /* a fixed VHD: data, then the footer */
};

static const char *const piece_name[] = {
  [P_FOOTER] = "footer copy",
  [P_HEADER] = "dynamic header",
  [P_BAT] = "BAT",
  [P_BITMAP] = "block bitmap",
  [P_DATA] = "block data",
  [P_TAIL] = "footer",
  [P_FIXED] = "data",
};

/* An allocated block, by its place in the stream: its BAT entry (the
 * sector of its bitmap) << 32 | its number, so that sorting orders by
 * place, in 8 bytes per block. */
static uint64_t
block_start (uint64_t b)
{
  return (b >> 32) * SECTOR;
}

static uint32_t
block_num (uint64_t b)
{
  return (uint32_t)b;
}

struct vhd_stream_reader
{
  uint64_t max_size, stream_len;
  vhd_stream_write_fn *write;
  vhd_stream_zero_fn *zero;
  void *opaque;
  bool failed;

  enum piece piece;
  uint64_t pos;            /* stream bytes consumed */
  uint64_t want, want_len; /* the current piece */

  uint8_t footer[FOOTER_SIZE]; /* the copy at 0 */
  uint8_t header[HEADER_SIZE];
  uint64_t size; /* virtual size, from the footer */
  uint32_t block_size, bitmap_size, n_blocks;
  uint64_t bat_offset;
  uint32_t n_entries;
  uint8_t *bat;          /* n_blocks big-endian entries: those within size */
  uint64_t *blocks;      /* allocated blocks, see block_start */
  uint32_t n_alloc, cur; /* blocks[cur] is being read */
  uint8_t *bitmap;

  /* The last bytes seen (P_TAIL, P_FIXED): the footer-to-be. */
  uint8_t tail[FOOTER_SIZE];
  size_t tail_len;
  uint64_t fixed_written;
};

static int stream_error (struct vhd_stream_reader *r, int errnum,
                         const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
stream_error (struct vhd_stream_reader *r, int errnum, const char *fmt, ...)
{
  char msg[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  vdisk_set_error (errnum, "vhd stream: %s", msg);
  r->failed = true;
  return -1;
}

struct vhd_stream_reader *
vhd_stream_reader_new (uint64_t max_size, uint64_t stream_len,
                       vhd_stream_write_fn *write, vhd_stream_zero_fn *zero,
                       void *opaque)
{
  struct vhd_stream_reader *r = calloc (1, sizeof *r);

  if (r == NULL) {
    vdisk_set_error (errno, "vhd stream: calloc: %s", strerror (errno));
    return NULL;
  }
  r->max_size = max_size;
  r->stream_len = stream_len;
  r->write = write;
  r->zero = zero;
  r->opaque = opaque;
  r->piece = P_FOOTER;
  r->want = 0;
  r->want_len = FOOTER_SIZE;
  return r;
}

void
vhd_stream_reader_free (struct vhd_stream_reader *r)
{
  if (r == NULL)
    return;
  free (r->bat);
  free (r->blocks);
  free (r->bitmap);
  free (r);
}

static void
expect (struct vhd_stream_reader *r, enum piece piece, uint64_t at,
        uint64_t len)
{
  r->piece = piece;
  r->want = at;
  r->want_len = len;
}

/* Keep the last FOOTER_SIZE bytes seen in r->tail.  Returns how many of
 * the bytes that were held before fell out (fixed VHD: they are data). */
static size_t
tail_push (struct vhd_stream_reader *r, const uint8_t *p, size_t len,
           uint8_t *out_old, size_t *out_new_from)
{
  size_t keep_old, drop;

  if (len >= FOOTER_SIZE) {
    drop = r->tail_len;
    if (out_old)
      memcpy (out_old, r->tail, drop);
    *out_new_from = len - FOOTER_SIZE;
    memcpy (r->tail, p + len - FOOTER_SIZE, FOOTER_SIZE);
    r->tail_len = FOOTER_SIZE;
    return drop;
  }
  keep_old = MIN (r->tail_len, FOOTER_SIZE - len);
  drop = r->tail_len - keep_old;
  if (out_old)
    memcpy (out_old, r->tail, drop);
  memmove (r->tail, r->tail + drop, keep_old);
  memcpy (r->tail + keep_old, p, len);
  r->tail_len = keep_old + len;
  *out_new_from = 0;
  return drop;
}

/* A guest write, never past the target's size. */
static int
emit (struct vhd_stream_reader *r, const void *p, size_t len, uint64_t offset)
{
  if (len == 0)
    return 0;
  if (offset > r->max_size || len > r->max_size - offset)
    return stream_error (r, EFBIG,
                         "data up to guest offset %" PRIu64
                         " goes past the end of the disk (%" PRIu64 " bytes)",
                         offset + len, r->max_size);
  if (r->write (r->opaque, p, len, offset) == -1) {
    r->failed = true;
    return -1;
  }
  return 0;
}

/* A guest range that reads as zero, clipped to the target. */
static int
emit_zero (struct vhd_stream_reader *r, uint64_t offset, uint64_t len)
{
  if (r->zero == NULL || offset >= r->max_size)
    return 0;
  len = MIN (len, r->max_size - offset);
  if (len && r->zero (r->opaque, len, offset) == -1) {
    r->failed = true;
    return -1;
  }
  return 0;
}

/* Fixed VHD: everything but the last 512 bytes is data. */
static int
fixed_feed (struct vhd_stream_reader *r, const uint8_t *p, size_t len)
{
  uint8_t old[FOOTER_SIZE];
  size_t from, dropped = tail_push (r, p, len, old, &from);

  if (emit (r, old, dropped, r->fixed_written) == -1)
    return -1;
  r->fixed_written += dropped;
  if (emit (r, p, from, r->fixed_written) == -1)
    return -1;
  r->fixed_written += from;
  return 0;
}

/* The footer's own rules (vhd-check.c; END as there), then the
 * target's size.  WHERE names the footer in messages. */
static int
check_footer (struct vhd_stream_reader *r, const uint8_t *ft, uint64_t end,
              const char *where)
{
  uint64_t size = get_be64 (ft + F_CUR_SIZE);
  char why[256];
  int e = vhd_footer_check (ft, end, why, sizeof why);

  if (e)
    return stream_error (r, e, "%s: %s", where, why);
  if (size > r->max_size)
    return stream_error (r, EFBIG,
                         "%s: footer: VHD virtual size %" PRIu64
                         " is larger than the disk (%" PRIu64 " bytes)",
                         where, size, r->max_size);
  return 0;
}

static int
footer_done (struct vhd_stream_reader *r)
{
  uint32_t type = get_be32 (r->footer + F_DISK_TYPE);
  uint64_t data_offset = get_be64 (r->footer + F_DATA_OFFSET);
  uint64_t end;
  size_t from;

  /* Not a dynamic footer copy: the start of a fixed VHD's data. */
  if (memcmp (r->footer + F_COOKIE, "conectix", 8) != 0
      || (type == TYPE_FIXED
          && get_be32 (r->footer + F_CHECKSUM)
                 == vhd_checksum (r->footer, FOOTER_SIZE, F_CHECKSUM))) {
    r->piece = P_FIXED;
    if (r->stream_len && r->stream_len - FOOTER_SIZE > r->max_size)
      return stream_error (r, EFBIG,
                           "fixed VHD: %" PRIu64 " bytes of data are larger "
                           "than the disk (%" PRIu64 " bytes)",
                           r->stream_len - FOOTER_SIZE, r->max_size);
    tail_push (r, r->footer, FOOTER_SIZE, NULL, &from);
    return 0;
  }
  /* With the length known, the closing footer lies at its end. */
  end = r->stream_len == 0 ? VHD_END_UNKNOWN
                           : r->stream_len - MIN (r->stream_len, FOOTER_SIZE);
  if (check_footer (r, r->footer, end, "byte 0") == -1)
    return -1;
  /* Not fixed (taken for data above), so dynamic or differencing. */
  assert (type == TYPE_DYNAMIC || type == TYPE_DIFF);
  if (type == TYPE_DIFF)
    return stream_error (r, ENOTSUP,
                         "differencing VHD: only a self-contained (fixed or "
                         "dynamic) VHD can be imported");
  r->size = get_be64 (r->footer + F_CUR_SIZE);
  expect (r, P_HEADER, data_offset, HEADER_SIZE);
  return 0;
}

static int
header_done (struct vhd_stream_reader *r)
{
  const uint8_t *h = r->header;
  uint32_t bs = get_be32 (h + H_BLOCK_SIZE);
  uint64_t bat = get_be64 (h + H_TABLE_OFFSET);
  char why[256];
  int e = vhd_header_check (h, r->size, why, sizeof why);

  if (e)
    return stream_error (r, e, "%s (the header at byte %" PRIu64 ")", why,
                         r->want);
  r->block_size = bs;
  r->bitmap_size = round_up (bs / SECTOR / 8, SECTOR);
  r->n_entries = get_be32 (h + H_MAX_ENTRIES);
  r->n_blocks = (r->size + bs - 1) / bs;
  if (bat < r->want + HEADER_SIZE || bat % SECTOR != 0)
    return stream_error (r, ENOTSUP,
                         "BAT at byte %" PRIu64
                         " does not follow the dynamic header (byte %" PRIu64
                         "): not a streamable VHD",
                         bat, r->want);
  if (r->stream_len
      && (bat > r->stream_len
          || (uint64_t)r->n_entries * 4 > r->stream_len - bat))
    return stream_error (r, EINVAL,
                         "BAT (byte %" PRIu64 ", %" PRIu32
                         " entries) lies past the end of the body",
                         bat, r->n_entries);
  r->bat_offset = bat;
  r->bat = malloc ((size_t)r->n_blocks * 4 + 1);
  r->bitmap = malloc (r->bitmap_size);
  if (r->bat == NULL || r->bitmap == NULL)
    return stream_error (r, ENOMEM, "out of memory for the BAT");
  expect (r, P_BAT, bat, (uint64_t)r->n_entries * 4);
  return 0;
}

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

  return x < y ? -1 : x > y;
}

/* Guest bytes of block BLK within the virtual size, whole sectors. */
static uint64_t
block_data_len (struct vhd_stream_reader *r, uint32_t blk)
{
  uint64_t in_size = r->size - (uint64_t)blk * r->block_size;

  return round_up (MIN (in_size, r->block_size), SECTOR);
}

static void
next_block (struct vhd_stream_reader *r)
{
  if (r->cur < r->n_alloc)
    expect (r, P_BITMAP, block_start (r->blocks[r->cur]), r->bitmap_size);
  else {
    r->piece = P_TAIL;
    r->tail_len = 0;
  }
}

/* Order the allocated blocks by file offset and check that each can be
 * read in turn: after the BAT, apart, inside the body. */
static int
bat_done (struct vhd_stream_reader *r)
{
  uint64_t bat_end = r->bat_offset + (uint64_t)r->n_entries * 4;
  uint32_t blk, n = 0;

  for (blk = 0; blk < r->n_blocks; blk++)
    n += get_be32 (r->bat + 4 * (size_t)blk) != BAT_UNUSED;
  r->blocks = malloc (((size_t)n + 1) * sizeof *r->blocks);
  if (r->blocks == NULL)
    return stream_error (r, ENOMEM, "out of memory for the BAT");
  for (blk = 0, n = 0; blk < r->n_blocks; blk++) {
    uint32_t e = get_be32 (r->bat + 4 * (size_t)blk);

    if (e != BAT_UNUSED)
      r->blocks[n++] = (uint64_t)e << 32 | blk;
  }
  r->n_alloc = n;
  qsort (r->blocks, n, sizeof *r->blocks, cmp_u64);
  for (uint32_t i = 0; i < n; i++) {
    uint64_t start = block_start (r->blocks[i]);
    uint32_t b = block_num (r->blocks[i]);
    uint64_t end = start + r->bitmap_size + block_data_len (r, b);

    if (start < bat_end)
      return stream_error (r, ENOTSUP,
                           "BAT entry %" PRIu32 " points to byte %" PRIu64
                           ", before the end of the BAT (byte %" PRIu64
                           "): not a streamable VHD",
                           b, start, bat_end);
    if (i + 1 < n && end > block_start (r->blocks[i + 1]))
      return stream_error (r, EINVAL,
                           "BAT entries %" PRIu32 " and %" PRIu32 " overlap",
                           b, block_num (r->blocks[i + 1]));
    if (r->stream_len
        && (r->stream_len < FOOTER_SIZE || end > r->stream_len - FOOTER_SIZE))
      return stream_error (r, EINVAL,
                           "BAT entry %" PRIu32
                           " points past the end of the body (%" PRIu64
                           " bytes): truncated or corrupt VHD",
                           b, r->stream_len);
  }
  /* What no block holds reads as zero. */
  for (blk = 0; blk < r->n_blocks; blk++)
    if (get_be32 (r->bat + 4 * (size_t)blk) == BAT_UNUSED
        && emit_zero (
               r, (uint64_t)blk * r->block_size,
               MIN (r->block_size, r->size - (uint64_t)blk * r->block_size))
               == -1)
      return -1;
  if (emit_zero (r, r->size, r->max_size - r->size) == -1)
    return -1;
  free (r->bat);
  r->bat = NULL;
  r->cur = 0;
  next_block (r);
  return 0;
}

static bool
bit_is_set (const uint8_t *bits, uint64_t s)
{
  return bits[s / 8] & (0x80 >> (s % 8));
}

/* Block data bytes [boff, boff+len) of the current block: the runs of
 * sectors whose bitmap bits are set. */
static int
block_data (struct vhd_stream_reader *r, const uint8_t *p, size_t len,
            uint64_t boff)
{
  uint64_t base = (uint64_t)block_num (r->blocks[r->cur]) * r->block_size;

  while (len > 0) {
    bool set = bit_is_set (r->bitmap, boff / SECTOR);
    size_t run = 0;

    while (run < len && bit_is_set (r->bitmap, (boff + run) / SECTOR) == set)
      run += MIN (len - run, SECTOR - (boff + run) % SECTOR);
    if (base + boff < r->size) {
      size_t in = MIN (run, r->size - (base + boff));

      if (set ? emit (r, p, in, base + boff) == -1
              : emit_zero (r, base + boff, in) == -1)
        return -1;
    }
    p += run;
    len -= run;
    boff += run;
  }
  return 0;
}

static int
piece_done (struct vhd_stream_reader *r)
{
  switch (r->piece) {
  case P_FOOTER: return footer_done (r);
  case P_HEADER: return header_done (r);
  case P_BAT: return bat_done (r);
  case P_BITMAP:
    expect (r, P_DATA, r->want + r->bitmap_size,
            block_data_len (r, block_num (r->blocks[r->cur])));
    return 0;
  case P_DATA:
    r->cur++;
    next_block (r);
    return 0;
  case P_TAIL:
  case P_FIXED: break;
  }
  return 0;
}

int
vhd_stream_reader_feed (struct vhd_stream_reader *r, const void *buf,
                        size_t len)
{
  const uint8_t *p = buf;

  if (r->failed) {
    vdisk_set_error (EINVAL, "vhd stream: reader already failed");
    return -1;
  }
  while (len > 0) {
    uint64_t in;
    size_t n, from;

    if (r->piece == P_FIXED) {
      r->pos += len;
      return fixed_feed (r, p, len);
    }
    if (r->piece == P_TAIL) {
      tail_push (r, p, len, NULL, &from);
      r->pos += len;
      return 0;
    }
    if (r->pos < r->want) { /* between pieces */
      n = MIN (len, r->want - r->pos);
      p += n, len -= n, r->pos += n;
      continue;
    }
    in = r->pos - r->want;
    n = MIN (len, r->want_len - in);
    switch (r->piece) {
    case P_FOOTER: memcpy (r->footer + in, p, n); break;
    case P_HEADER: memcpy (r->header + in, p, n); break;
    case P_BAT:
      /* Entries past the virtual size are read over, not kept. */
      if (in < (uint64_t)r->n_blocks * 4)
        memcpy (r->bat + in, p, MIN (n, (uint64_t)r->n_blocks * 4 - in));
      break;
    case P_BITMAP: memcpy (r->bitmap + in, p, n); break;
    case P_DATA:
      if (block_data (r, p, n, in) == -1)
        return -1;
      break;
    case P_TAIL:
    case P_FIXED: abort ();
    }
    p += n, len -= n, r->pos += n;
    if (r->pos == r->want + r->want_len && piece_done (r) == -1)
      return -1;
  }
  return 0;
}

int
vhd_stream_reader_finish (struct vhd_stream_reader *r)
{
  if (r->failed) {
    vdisk_set_error (EINVAL, "vhd stream: reader already failed");
    return -1;
  }
  if (r->piece == P_FIXED) {
    uint64_t size;

    if (r->tail_len < FOOTER_SIZE)
      return stream_error (
          r, EINVAL, "body of %" PRIu64 " bytes is too short for a VHD footer",
          r->pos);
    if (memcmp (r->tail, "conectix", 8) != 0)
      return stream_error (r, EINVAL,
                           "no VHD footer at the start or at the end of the "
                           "body (%" PRIu64 " bytes)",
                           r->pos);
    if (check_footer (r, r->tail, r->fixed_written, "end of body") == -1)
      return -1;
    if (get_be32 (r->tail + F_DISK_TYPE) != TYPE_FIXED)
      return stream_error (r, EINVAL,
                           "footer at the end of the body says disk type "
                           "%" PRIu32 ", but the body does not start with a "
                           "footer copy: not a fixed VHD (corrupt footer "
                           "copy?)",
                           get_be32 (r->tail + F_DISK_TYPE));
    /* Fewer bytes than the size: refused by check_footer as truncated;
     * more: data that no footer accounts for. */
    size = get_be64 (r->tail + F_CUR_SIZE);
    assert (r->fixed_written >= size);
    if (r->fixed_written != size)
      return stream_error (r, EINVAL,
                           "fixed VHD: %" PRIu64 " bytes of data before the "
                           "footer, but its virtual size is %" PRIu64,
                           r->fixed_written, size);
    return emit_zero (r, size, r->max_size - size);
  }
  if (r->piece != P_TAIL)
    return stream_error (
        r, EINVAL,
        "truncated: the body ends at byte %" PRIu64
        " within or before the %s at bytes %" PRIu64 "..%" PRIu64,
        r->pos, piece_name[r->piece], r->want, r->want + r->want_len);
  if (r->tail_len < FOOTER_SIZE)
    return stream_error (r, EINVAL,
                         "truncated: no footer after the last block (body "
                         "of %" PRIu64 " bytes)",
                         r->pos);
  if (check_footer (r, r->tail, r->pos - FOOTER_SIZE, "end of body") == -1)
    return -1;
  if (memcmp (r->tail + F_CUR_SIZE, r->footer + F_CUR_SIZE, 8) != 0
      || memcmp (r->tail + F_DISK_TYPE, r->footer + F_DISK_TYPE, 4) != 0)
    return stream_error (r, EINVAL,
                         "the footer at the end of the body does not match "
                         "the copy at its start (type or size)");
  return 0;
}

/* ------------------------------------------------------------------ */
/* Writer: [footer copy][header][BAT][bitmap, data]...[footer]. */

/* qemu-img, Hyper-V and XenServer all use 2 MiB blocks. */
#define W_BLOCK_SIZE DEFAULT_BLOCK_SIZE
#define W_BITMAP_SIZE (W_BLOCK_SIZE / SECTOR / 8)
/* The allocation map is read this much at a time, so that its extent
 * list stays small even for a fragmented disk. */
#define W_MAP_WINDOW (UINT64_C (1) << 30)

struct vhd_stream_writer
{
  struct vdisk *d;
  uint64_t size;
  uint32_t *alloc; /* allocated block numbers, ascending */
  uint32_t n_alloc;
  uint8_t *meta; /* footer copy, header, BAT */
  size_t meta_len;
  uint8_t footer[FOOTER_SIZE];
  uint64_t length;
};

#define W_STRIDE ((uint64_t)W_BITMAP_SIZE + W_BLOCK_SIZE)

/* The blocks of D that hold data anywhere in its chain. */
static int
find_blocks (struct vhd_stream_writer *w, uint32_t n_blocks)
{
  struct vdisk_extents ext = { 0 };
  uint8_t *used = calloc (n_blocks / 8 + 1, 1);
  uint64_t off;
  int r = -1;

  if (used == NULL) {
    vdisk_set_error (ENOMEM, "vhd stream: out of memory");
    return -1;
  }
  for (off = 0; off < w->size; off += W_MAP_WINDOW) {
    vdisk_extents_reset (&ext);
    if (vdisk_map (w->d, off, MIN (W_MAP_WINDOW, w->size - off), 0, &ext)
        == -1)
      goto out;
    for (size_t i = 0; i < ext.len; i++) {
      const struct vdisk_extent *e = &ext.v[i];

      if (e->type != VDISK_EXTENT_DATA || e->length == 0)
        continue;
      for (uint64_t b = e->offset / W_BLOCK_SIZE;
           b <= (e->offset + e->length - 1) / W_BLOCK_SIZE; b++)
        used[b / 8] |= 1 << (b % 8);
    }
  }
  w->alloc = malloc (((size_t)n_blocks + 1) * sizeof *w->alloc);
  if (w->alloc == NULL) {
    vdisk_set_error (ENOMEM, "vhd stream: out of memory");
    goto out;
  }
  for (uint32_t b = 0; b < n_blocks; b++)
    if (used[b / 8] & (1 << (b % 8)))
      w->alloc[w->n_alloc++] = b;
  r = 0;
out:
  vdisk_extents_free (&ext);
  free (used);
  return r;
}

struct vhd_stream_writer *
vhd_stream_writer_new (struct vdisk *d)
{
  struct vhd_stream_writer *w = calloc (1, sizeof *w);
  uint64_t size = vdisk_get_size (d);
  uint32_t n_blocks = (size + W_BLOCK_SIZE - 1) / W_BLOCK_SIZE;
  uint64_t bat_off = FOOTER_SIZE + HEADER_SIZE;
  uint8_t uuid[16], *hdr;

  if (w == NULL) {
    vdisk_set_error (ENOMEM, "vhd stream: out of memory");
    return NULL;
  }
  w->d = d;
  w->size = size;
  if (size == 0 || size % SECTOR != 0 || size > VHD_MAX_SIZE) {
    vdisk_set_error (ENOTSUP,
                     "vhd stream: virtual size %" PRIu64
                     " cannot be a VHD (a multiple of 512 up to %" PRIu64
                     " bytes)",
                     size, VHD_MAX_SIZE);
    goto err;
  }
  if (getrandom (uuid, sizeof uuid, 0) != sizeof uuid) {
    vdisk_set_error (errno, "vhd stream: getrandom: %s", strerror (errno));
    goto err;
  }
  uuid[6] = (uuid[6] & 0x0F) | 0x40; /* version 4 */
  uuid[8] = (uuid[8] & 0x3F) | 0x80; /* RFC 4122 variant */
  if (find_blocks (w, n_blocks) == -1)
    goto err;

  w->meta_len = bat_off + round_up ((uint64_t)n_blocks * 4, SECTOR);
  w->meta = malloc (w->meta_len);
  if (w->meta == NULL) {
    vdisk_set_error (ENOMEM, "vhd stream: out of memory");
    goto err;
  }
  memset (w->meta, 0, bat_off);
  memset (w->meta + bat_off, 0xFF, w->meta_len - bat_off);
  hdr = w->meta + FOOTER_SIZE;
  memcpy (hdr + H_COOKIE, "cxsparse", 8);
  put_be64 (hdr + H_DATA_OFFSET, NO_OFFSET);
  put_be64 (hdr + H_TABLE_OFFSET, bat_off);
  put_be32 (hdr + H_VERSION, 0x00010000);
  put_be32 (hdr + H_MAX_ENTRIES, n_blocks);
  put_be32 (hdr + H_BLOCK_SIZE, W_BLOCK_SIZE);
  put_be32 (hdr + H_CHECKSUM, vhd_checksum (hdr, HEADER_SIZE, H_CHECKSUM));
  for (uint32_t i = 0; i < w->n_alloc; i++)
    put_be32 (w->meta + bat_off + 4 * (size_t)w->alloc[i],
              (w->meta_len + i * W_STRIDE) / SECTOR);
  make_footer (w->footer, TYPE_DYNAMIC, size, FOOTER_SIZE, uuid);
  memcpy (w->meta, w->footer, FOOTER_SIZE);
  w->length = w->meta_len + w->n_alloc * W_STRIDE + FOOTER_SIZE;
  return w;

err:
  vhd_stream_writer_free (w);
  return NULL;
}

uint64_t
vhd_stream_writer_get_length (struct vhd_stream_writer *w)
{
  return w->length;
}

void
vhd_stream_writer_free (struct vhd_stream_writer *w)
{
  if (w == NULL)
    return;
  free (w->alloc);
  free (w->meta);
  free (w);
}

/* Guest bytes [goff, goff+n) into P: zeroes past the virtual size (the
 * tail of a last block the size cuts). */
static int
read_guest (struct vhd_stream_writer *w, uint8_t *p, size_t n, uint64_t goff)
{
  size_t in = goff >= w->size ? 0 : MIN (n, w->size - goff);

  if (in && vdisk_pread (w->d, p, in, goff) == -1)
    return -1;
  memset (p + in, 0, n - in);
  return 0;
}

int
vhd_stream_writer_read (struct vhd_stream_writer *w, void *buf, size_t count,
                        uint64_t offset)
{
  uint8_t *p = buf;
  uint64_t blocks_end = w->meta_len + w->n_alloc * W_STRIDE;

  if (offset > w->length || count > w->length - offset) {
    vdisk_set_error (EINVAL,
                     "vhd stream: read of bytes %" PRIu64 "..%" PRIu64
                     " past the end of the VHD (%" PRIu64 " bytes)",
                     offset, offset + count, w->length);
    return -1;
  }
  while (count > 0) {
    size_t n;

    if (offset < w->meta_len) {
      n = MIN (count, w->meta_len - offset);
      memcpy (p, w->meta + offset, n);
    }
    else if (offset < blocks_end) {
      uint64_t rel = offset - w->meta_len;
      uint64_t i = rel / W_STRIDE, in = rel % W_STRIDE;

      if (in < W_BITMAP_SIZE) {
        /* Every sector present: qemu does the same. */
        n = MIN (count, W_BITMAP_SIZE - in);
        memset (p, 0xFF, n);
      }
      else {
        n = MIN (count, W_STRIDE - in);
        if (read_guest (w, p, n,
                        (uint64_t)w->alloc[i] * W_BLOCK_SIZE
                            + (in - W_BITMAP_SIZE))
            == -1)
          return -1;
      }
    }
    else {
      n = MIN (count, w->length - offset);
      memcpy (p, w->footer + (offset - blocks_end), n);
    }
    p += n, offset += n, count -= n;
  }
  return 0;
}
