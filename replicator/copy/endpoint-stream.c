/* The byte-stream end of a job (COPY_STREAM): bytes in order, as HTTP
 * carries a disk (xapi's /import_raw_vdi and /export_raw_vdi), either raw
 * guest bytes or a VHD file (sr-drivers/vhd-stream.h).
 *
 * As a destination the stream is a sequential endpoint: the engine runs
 * one request at a time, in offset order, skipping nothing, and each
 * write goes to the caller's write function, which may block (so a slow
 * reader slows the copy, and memory is what the caller queues).  Each
 * piece is read from the source straight into the buffer the caller is
 * given (out_pull), so nothing is copied on the way; zeroes go as BUF
 * NULL, so the caller can send them without reading or allocating
 * anything.  A VHD is made from the source's allocation map by
 * the VHD stream writer: the source side is replaced by a view of the
 * VHD file's bytes (random access, so the engine reads it as any
 * source), and the stream carries them raw.
 *
 * As a source the caller pushes the bytes (copy_job_feed), as they
 * arrive: raw bytes are guest data at the offset they arrive at; a VHD
 * goes through the streaming VHD reader, which finds the guest data and
 * the ranges that read as zero; xapi's chunked encoding is parsed here
 * (chunk_feed), each chunk's bytes guest data at the offset its header
 * names, and only those are written.  Data is gathered in a staging
 * buffer of STAGE bytes and written when the buffer is full or the next piece is
 * not contiguous, all-zero blocks becoming zero requests (or nothing, on
 * a destination that reads as zero).  Memory is the staging buffer and
 * the VHD reader's BAT, whatever the stream's length. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "iszero.h"
#include "vhd-stream.h"

#define STAGE (2u << 20)

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ------------------------------------------------------------------ */
/* Destination: the caller's write function. */

struct stream_out
{
  struct copy_endpoint ep; /* first: the engine sees only this */
  copy_stream_write_fn *write;
  void *opaque;
  uint64_t pos; /* bytes written so far */
};

static int
out_map (struct copy_endpoint *e, uint64_t offset, uint64_t count,
         struct vdisk_extents *out, char **err)
{
  return copy_error_errno (err, EINVAL, "%s: a stream destination is not read",
                           e->name);
}

static int
out_pread (struct copy_endpoint *e, void *buf, size_t count, uint64_t offset,
           char **err)
{
  return out_map (e, offset, count, NULL, err);
}

/* Hand BUF (malloc'd, or NULL for zeroes) on to the reader. */
static int
out_give (struct stream_out *o, void *buf, size_t count, uint64_t offset,
          char **err)
{
  /* The engine writes a sequential endpoint in order, skipping
   * nothing. */
  assert (offset == o->pos);
  assert (count <= COPY_STREAM_CHUNK);
  if (o->write (o->opaque, buf, count, err) == -1)
    return -1;
  o->pos += count;
  return 0;
}

static int
out_pwrite (struct copy_endpoint *e, const void *buf, size_t count,
            uint64_t offset, char **err)
{
  void *copy = malloc (count);

  if (!copy)
    return copy_error_errno (err, ENOMEM, "out of memory");
  memcpy (copy, buf, count);
  return out_give ((struct stream_out *)e, copy, count, offset, err);
}

/* The engine's pieces, read straight into the buffer the reader gets. */
static int
out_pull (struct copy_endpoint *e, struct copy_endpoint *src, uint64_t offset,
          size_t count, bool *zero, char **err)
{
  void *buf = malloc (count);

  if (!buf)
    return copy_error_errno (err, ENOMEM, "out of memory");
  if (src->ops->pread (src, buf, count, offset, err) == -1) {
    free (buf);
    return -1;
  }
  *zero = is_zero (buf, count);
  if (*zero) {
    free (buf);
    buf = NULL;
  }
  return out_give ((struct stream_out *)e, buf, count, offset, err);
}

static int
out_zero (struct copy_endpoint *e, uint64_t count, uint64_t offset, char **err)
{
  while (count > 0) {
    size_t n = MIN (count, COPY_STREAM_CHUNK);
    if (out_give ((struct stream_out *)e, NULL, n, offset, err) == -1)
      return -1;
    offset += n;
    count -= n;
  }
  return 0;
}

static int
out_flush (struct copy_endpoint *e, char **err)
{
  return 0; /* the stream's reader decides when its bytes are durable */
}

static int
out_close (struct copy_endpoint *e, char **err)
{
  free (e->name);
  free (e);
  return 0;
}

static const struct copy_endpoint_ops stream_out_ops = {
  .kind = "stream",
  .map = out_map,
  .pread = out_pread,
  .pwrite = out_pwrite,
  .zero = out_zero,
  .flush = out_flush,
  .close = out_close,
  .pull = out_pull,
};

static int
stream_open_dest (struct copy_side *s, uint64_t size, char **err)
{
  struct stream_out *o;

  if (s->spec.stream == COPY_STREAM_CHUNKED)
    return copy_error_errno (err, EINVAL,
                             "xapi's chunked encoding is read, not written");
  o = calloc (1, sizeof *o);
  if (!o || !(o->ep.name = strdup ("stream"))) {
    free (o);
    return copy_error_errno (err, ENOMEM, "out of memory");
  }
  o->ep.ops = &stream_out_ops;
  o->ep.size = size;
  /* Whole chunks: a chunk of zeroes goes as one BUF NULL write. */
  o->ep.granularity = COPY_STREAM_CHUNK;
  o->ep.sequential = true;
  o->write = s->spec.write;
  o->opaque = s->spec.opaque;
  s->ep = &o->ep;
  return 0;
}

/* ------------------------------------------------------------------ */
/* A source's VHD file, for a VHD stream destination. */

struct vhd_view
{
  struct copy_endpoint ep;
  struct vhd_stream_writer *w;
};

static int
view_map (struct copy_endpoint *e, uint64_t offset, uint64_t count,
          struct vdisk_extents *out, char **err)
{
  /* The file holds allocated blocks only: it is all data. */
  if (vdisk_extents_append (out, offset, count, VDISK_EXTENT_DATA, -1, 0)
      == -1)
    return copy_vdisk_error (err);
  return 0;
}

static int
view_pread (struct copy_endpoint *e, void *buf, size_t count, uint64_t offset,
            char **err)
{
  struct vhd_view *v = (struct vhd_view *)e;
  if (vhd_stream_writer_read (v->w, buf, count, offset) == -1)
    return copy_vdisk_error (err);
  return 0;
}

static int
view_close (struct copy_endpoint *e, char **err)
{
  struct vhd_view *v = (struct vhd_view *)e;
  vhd_stream_writer_free (v->w);
  free (e->name);
  free (e);
  return 0;
}

static const struct copy_endpoint_ops vhd_view_ops = {
  .kind = "vhd-stream",
  .map = view_map,
  .pread = view_pread,
  .pwrite = out_pwrite, /* never called: a source */
  .zero = out_zero,
  .flush = out_flush,
  .close = view_close,
};

int
copy_stream_vhd_source (struct copy_side *s, struct vdisk *d, char **err)
{
  struct vhd_view *v;

  if (!d)
    return copy_error_errno (err, EINVAL,
                             "%s: a VHD stream is made from an image or a "
                             "VDI",
                             copy_endpoint_name (s->ep));
  v = calloc (1, sizeof *v);
  if (!v || !(v->ep.name = strdup ("VHD stream"))) {
    free (v);
    return copy_error_errno (err, ENOMEM, "out of memory");
  }
  v->w = vhd_stream_writer_new (d);
  if (!v->w) {
    view_close (&v->ep, NULL);
    return copy_vdisk_error (err);
  }
  v->ep.ops = &vhd_view_ops;
  v->ep.size = vhd_stream_writer_get_length (v->w);
  v->ep.granularity = 4096;
  copy_endpoint_close (s->ep, NULL);
  s->ep = &v->ep;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Source: bytes the caller pushes. */

struct stream_in
{
  struct copy_endpoint *dst;
  bool dest_zero;
  struct copy_stats *stats;
  struct vhd_stream_reader *reader; /* a VHD */
  uint64_t size;                    /* guest bytes it may cover */
  uint64_t received;                /* stream bytes */
  /* Staging: guest bytes [buf_off, buf_off + buf_len). */
  uint8_t *buf;
  size_t buf_len;
  uint64_t buf_off;
  /* A write's failure inside the VHD reader, and its errno. */
  char *err;
  int errnum;
  /* The chunked encoding: the header being read (HDR_LEN bytes of it
   * so far), the guest offset and bytes left of the chunk being read,
   * and whether the last chunk (offset 0, length 0) came. */
  bool chunked;
  uint8_t hdr[12];
  size_t hdr_len;
  uint64_t chunk_off, chunk_left;
  bool ended;
};

/* Write the staged bytes. */
static int
stage_flush (struct stream_in *in, char **err)
{
  int r = copy_write_buffer (in->dst, (const char *)in->buf, in->buf_off,
                             in->buf_len, in->dest_zero, in->stats, NULL, err);
  in->buf_off += in->buf_len;
  in->buf_len = 0;
  return r;
}

/* Guest data at OFFSET, gathered before it is written. */
static int
stage (struct stream_in *in, const void *data, size_t len, uint64_t offset,
       char **err)
{
  const uint8_t *p = data;

  while (len > 0) {
    size_t n;

    if (in->buf_len > 0 && offset != in->buf_off + in->buf_len
        && stage_flush (in, err) == -1)
      return -1;
    if (in->buf_len == 0)
      in->buf_off = offset;
    n = MIN (len, STAGE - in->buf_len);
    memcpy (in->buf + in->buf_len, p, n);
    in->buf_len += n;
    p += n, len -= n, offset += n;
    if (in->buf_len == STAGE && stage_flush (in, err) == -1)
      return -1;
  }
  return 0;
}

/* A range that must read as zero. */
static int
zero_range (struct stream_in *in, uint64_t len, uint64_t offset, char **err)
{
  if (len == 0)
    return 0;
  if (in->dest_zero) {
    in->stats->bytes_skipped += len;
    return 0;
  }
  in->stats->bytes_zeroed += len;
  return in->dst->ops->zero (in->dst, len, offset, err);
}

/* The VHD reader's callbacks: a failure is kept for the feed's caller. */
static int
vhd_write (void *opaque, const void *buf, size_t len, uint64_t offset)
{
  struct stream_in *in = opaque;
  in->stats->bytes_read += len;
  if (stage (in, buf, len, offset, &in->err) == -1) {
    in->errnum = errno;
    return -1;
  }
  return 0;
}

static int
vhd_zero (void *opaque, uint64_t len, uint64_t offset)
{
  struct stream_in *in = opaque;
  if (zero_range (in, len, offset, &in->err) == -1) {
    in->errnum = errno;
    return -1;
  }
  return 0;
}

/* -1 with the VHD reader's error, or the callback's it stopped at. */
static int
reader_error (struct stream_in *in, char **err)
{
  if (!in->err)
    return copy_vdisk_error (err);
  free (*err);
  *err = in->err;
  in->err = NULL;
  errno = in->errnum;
  return -1;
}

static int
stream_open_source (struct copy_side *s, char **err)
{
  struct stream_in *in = calloc (1, sizeof *in);

  if (!in || !(in->buf = malloc (STAGE))) {
    free (in);
    return copy_error_errno (err, ENOMEM, "out of memory");
  }
  s->priv = in;
  return 0;
}

int
copy_stream_start (struct copy_side *s, struct copy_endpoint *dst,
                   uint64_t size, bool dest_zero, struct copy_stats *stats,
                   char **err)
{
  struct stream_in *in = s->priv;

  in->dst = dst;
  in->size = size;
  in->dest_zero = dest_zero;
  in->stats = stats;
  in->chunked = s->spec.stream == COPY_STREAM_CHUNKED;
  if (s->spec.stream == COPY_STREAM_VHD) {
    in->reader = vhd_stream_reader_new (size, s->spec.length, vhd_write,
                                        vhd_zero, in);
    if (!in->reader)
      return copy_vdisk_error (err);
  }
  return 0;
}

/* A chunk's header is complete: check it, and begin its data (or end
 * the stream). */
static int
chunk_header (struct stream_in *in, char **err)
{
  uint64_t off = 0, len = 0;

  for (int i = 7; i >= 0; i--)
    off = off << 8 | in->hdr[i];
  for (int i = 11; i >= 8; i--)
    len = len << 8 | in->hdr[i];
  in->hdr_len = 0;
  if (off == 0 && len == 0) {
    in->ended = true;
    return 0;
  }
  if (off > in->size || len > in->size - off)
    return copy_error_errno (err, EFBIG,
                             "chunk at byte %" PRIu64 " of the stream: "
                             "%" PRIu64 " bytes at offset %" PRIu64
                             " are past the destination's end (%" PRIu64
                             " bytes)",
                             in->received, len, off, in->size);
  in->chunk_off = off;
  in->chunk_left = len;
  return 0;
}

/* The next LEN bytes of a chunked stream. */
static int
chunk_feed (struct stream_in *in, const uint8_t *p, size_t len, char **err)
{
  while (len > 0) {
    size_t n;

    if (in->ended)
      return copy_error_errno (err, EINVAL,
                               "%zu bytes after the chunked stream's last "
                               "chunk",
                               len);
    if (in->chunk_left == 0) {
      n = MIN (len, sizeof in->hdr - in->hdr_len);
      memcpy (in->hdr + in->hdr_len, p, n);
      in->hdr_len += n;
      in->received += n;
      p += n, len -= n;
      if (in->hdr_len == sizeof in->hdr && chunk_header (in, err) == -1)
        return -1;
      continue;
    }
    n = MIN (len, in->chunk_left);
    in->stats->bytes_read += n;
    if (stage (in, p, n, in->chunk_off, err) == -1)
      return -1;
    in->chunk_off += n, in->chunk_left -= n, in->received += n;
    p += n, len -= n;
  }
  return 0;
}

int
copy_stream_feed (struct copy_side *s, const void *buf, size_t len, char **err)
{
  struct stream_in *in = s->priv;

  if (in->chunked)
    return chunk_feed (in, buf, len, err);
  if (in->reader) {
    in->received += len;
    if (vhd_stream_reader_feed (in->reader, buf, len) == -1)
      return reader_error (in, err);
    return 0;
  }
  if (len > in->size - in->received)
    return copy_error_errno (err, EFBIG,
                             "the stream is larger than the destination "
                             "(%" PRIu64 " bytes)",
                             in->size);
  in->stats->bytes_read += len;
  if (stage (in, buf, len, in->received, err) == -1)
    return -1;
  in->received += len;
  return 0;
}

int
copy_stream_finish (struct copy_side *s, char **err)
{
  struct stream_in *in = s->priv;

  if (in->reader && vhd_stream_reader_finish (in->reader) == -1)
    return reader_error (in, err);
  if (in->chunked && !in->ended)
    return copy_error_errno (err, EINVAL,
                             "the chunked stream ended at byte %" PRIu64
                             " without its last chunk (offset 0, length 0)",
                             in->received);
  if (stage_flush (in, err) == -1)
    return -1;
  /* Chunks write only themselves. */
  if (in->chunked)
    return in->dst->ops->flush (in->dst, err);
  /* A raw stream shorter than the disk: the rest reads as zero. */
  if (!in->reader
      && zero_range (in, in->size - in->received, in->received, err) == -1)
    return -1;
  return in->dst->ops->flush (in->dst, err);
}

static int
stream_close (struct copy_side *s, bool ok, char **err)
{
  struct stream_in *in = s->priv;
  int r = copy_endpoint_close (s->ep, ok ? err : NULL);

  s->ep = NULL;
  if (in) {
    vhd_stream_reader_free (in->reader);
    free (in->buf);
    free (in->err);
    free (in);
    s->priv = NULL;
  }
  return r;
}

const struct copy_side_ops copy_side_stream = {
  .open_source = stream_open_source,
  .open_dest = stream_open_dest,
  .close = stream_close,
};
