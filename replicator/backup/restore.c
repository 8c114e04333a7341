/* Restoring a point (backup.h's backup_restore): the point's qcow2 file,
 * opened with its chain, copied by the copy engine to an image file or
 * an NBD export.  The engine's journal, kept in the repository under a
 * name made from the point and the destination, lets the same command
 * continue a killed restore.
 *
 * backup_restore_chunked is the other way out, for a destination the
 * copy engine cannot open (a VDI on a server, written through xapi's
 * chunked import): the point's data extents (libvdisk's flattened map
 * of its chain, or a remote repository's map), read a window at a time
 * and encoded as xapi's chunks; the caller sends each window and keeps
 * the count of what is done where the destination is, so any host can
 * continue it. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "clock.h"
#include "copy.h"
#include "vdisk.h"

/* Guest bytes per chunk of xapi's encoding (its length is 32 bits). */
#define CHUNK_PIECE (4u << 20)
#define CHUNK_HEADER 12

struct progress_relay
{
  backup_progress_fn fn;
  void *opaque;
};

static void
relay (const struct copy_progress *p, void *opaque)
{
  struct progress_relay *r = opaque;
  if (r->fn)
    r->fn (p->done, p->total, r->opaque);
}

int
backup_restore (struct backup_repo *r, const struct backup_manifest *p,
                const char *dst, backup_progress_fn progress, void *opaque,
                struct backup_stats *stats, GError **err)
{
  g_autofree char *src = r->ops->path (r, p->disk, p->file);
  bool nbd = copy_is_nbd_uri (dst);
  g_autofree char *dst_abs = nbd ? g_strdup (dst)
                                 : g_canonicalize_filename (dst, NULL);
  g_autofree char *key = g_strdup_printf ("%s %s", p->id, dst_abs);
  g_autofree char *sum
      = g_compute_checksum_for_string (G_CHECKSUM_SHA256, key, -1);
  g_autofree char *jname = g_strdup_printf (".restore-%.16s.journal", sum);
  g_autofree char *journal = r->ops->path (r, NULL, jname);
  struct progress_relay pr = { progress, opaque };
  struct copy_spec s = { .kind = COPY_IMAGE,
                         .path = src,
                         .format = VDISK_FORMAT_QCOW2,
                         .open_flags = VDISK_OPEN_BUFFERED };
  struct copy_spec d = { .kind = nbd ? COPY_NBD : COPY_IMAGE,
                         .path = dst,
                         .uri = dst,
                         .format = -1,
                         .open_flags = VDISK_OPEN_BUFFERED };
  struct copy_params params = { .journal = journal,
                                .progress = relay,
                                .progress_opaque = &pr };
  struct copy_stats cs = { 0 };
  char *e = NULL;

  if (copy_simple (&s, &d, &params, &cs, &e) == -1) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
                 "restore of point %s to %s: %s", p->id, dst,
                 e ? e : "failed");
    free (e);
    return -1;
  }
  if (stats) {
    stats->bytes_read = cs.bytes_read;
    stats->bytes_written = cs.bytes_written + cs.bytes_zeroed;
    stats->bytes_skipped = cs.bytes_skipped;
    stats->seconds = cs.seconds;
  }
  return 0;
}

/* ---- Window by window, as xapi's chunks ----------------------------- */

/* Where a point's bytes come from: its chain here (D), or a remote
 * repository's server; and its data extents, [offset, length] sorted. */
struct point_src
{
  struct backup_repo *r;
  const struct backup_manifest *p;
  struct vdisk *d;
  uint64_t (*data)[2];
  size_t n;
};

static int
vdisk_fail (GError **err, const char *what, const char *path)
{
  g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s %s: %s", what, path,
               vdisk_get_error ());
  return -1;
}

/* Open the point and take its data extents (the flattened map: only
 * DATA is read; ZERO and HOLE read as zero in a new disk). */
static int
point_src_open (struct point_src *s, GError **err)
{
  g_autofree char *path = s->r->ops->path (s->r, s->p->disk, s->p->file);
  struct vdisk_extents ex = { 0 };

  if (!path)
    return backup_remote_point_map (s->r, s->p, &s->data, &s->n, err);
  s->d = vdisk_open_as (path, VDISK_OPEN_BUFFERED, VDISK_FORMAT_QCOW2, NULL);
  if (!s->d)
    return vdisk_fail (err, "opening point", path);
  if (vdisk_map (s->d, 0, MIN (vdisk_get_size (s->d), s->p->virtual_size), 0,
                 &ex)
      == -1) {
    vdisk_extents_free (&ex);
    return vdisk_fail (err, "mapping point", path);
  }
  s->data = g_malloc_n (MAX (ex.len, 1), sizeof *s->data);
  for (size_t i = 0; i < ex.len; i++) {
    const struct vdisk_extent *e = &ex.v[i];
    if (e->type != VDISK_EXTENT_DATA)
      continue;
    if (s->n && s->data[s->n - 1][0] + s->data[s->n - 1][1] == e->offset)
      s->data[s->n - 1][1] += e->length;
    else {
      s->data[s->n][0] = e->offset;
      s->data[s->n][1] = e->length;
      s->n++;
    }
  }
  vdisk_extents_free (&ex);
  return 0;
}

static void
point_src_close (struct point_src *s)
{
  if (s->d)
    vdisk_close (s->d);
  g_free (s->data);
}

static int
point_src_read (struct point_src *s, void *buf, size_t len, uint64_t off,
                GError **err)
{
  if (!s->d)
    return backup_remote_point_read (s->r, s->p, off, len, buf, err);
  if (vdisk_pread (s->d, buf, len, off) == -1) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
                 "point %s: reading %zu bytes at %" PRIu64 ": %s", s->p->id,
                 len, off, vdisk_get_error ());
    return -1;
  }
  return 0;
}

/* Append a chunk header (little-endian, as vhd-tool's Chunked). */
static void
put_header (GByteArray *body, uint64_t off, uint32_t len)
{
  uint8_t h[CHUNK_HEADER];

  for (int i = 0; i < 8; i++)
    h[i] = off >> (8 * i);
  for (int i = 0; i < 4; i++)
    h[8 + i] = len >> (8 * i);
  g_byte_array_append (body, h, sizeof h);
}

/* The chunked body of guest bytes [C->offset, C->end) into BODY, the
 * extents from *X on (moved past those that end before the window). */
static int
window_body (struct point_src *s, struct backup_chunks *c, GByteArray *body,
             size_t *x, GError **err)
{
  g_byte_array_set_size (body, 0);
  c->data = 0;
  while (*x < s->n && s->data[*x][0] + s->data[*x][1] <= c->offset)
    (*x)++;
  for (size_t i = *x; i < s->n && s->data[i][0] < c->end; i++) {
    uint64_t a = MAX (s->data[i][0], c->offset);
    uint64_t z = MIN (s->data[i][0] + s->data[i][1], c->end);
    for (uint64_t at = a; at < z; at += CHUNK_PIECE) {
      size_t n = MIN (CHUNK_PIECE, z - at);
      guint pos;
      put_header (body, at, n);
      pos = body->len;
      g_byte_array_set_size (body, pos + n);
      if (point_src_read (s, body->data + pos, n, at, err) == -1)
        return -1;
      c->data += n;
    }
  }
  put_header (body, 0, 0);
  c->body = body->data;
  c->len = body->len;
  return 0;
}

int
backup_restore_chunked (struct backup_repo *r, const struct backup_manifest *p,
                        uint64_t from, backup_chunks_fn send, void *opaque,
                        backup_progress_fn progress, void *popaque,
                        struct backup_stats *stats, GError **err)
{
  struct point_src s = { .r = r, .p = p };
  g_autoptr (GByteArray) body = g_byte_array_new ();
  double t0 = monotonic_seconds ();
  uint64_t size = p->virtual_size;
  struct backup_stats st = { 0 };
  size_t x = 0;
  int ret = -1;

  from -= from % BACKUP_RESTORE_WINDOW;
  st.bytes_skipped = MIN (from, size);
  if (point_src_open (&s, err) == -1)
    goto out;
  for (uint64_t off = from; off < size; off += BACKUP_RESTORE_WINDOW) {
    struct backup_chunks c
        = { .offset = off, .end = MIN (off + BACKUP_RESTORE_WINDOW, size) };
    if (window_body (&s, &c, body, &x, err) == -1
        || send (&c, opaque, err) == -1)
      goto out;
    st.bytes_read += c.data;
    st.bytes_written += c.data;
    st.bytes_skipped += c.end - c.offset - c.data;
    if (progress)
      progress (c.end, size, popaque);
  }
  ret = 0;
out:
  point_src_close (&s);
  if (stats) {
    *stats = st;
    stats->seconds = monotonic_seconds () - t0;
  }
  return ret;
}
