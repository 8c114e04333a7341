/* The copy engine's job entry point (copy.h) with its SR VDI and byte
 * stream endpoints: a VDI's chain flattened and kept, raw and VHD
 * streams in both directions, each result checked byte for byte against
 * its source (through libvdisk, and qemu-img compare where qemu-img is
 * there), and bad streams refused with a clear error. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "copy.h"
#include "sr.h"
#include "unit.h"

#define MiB (UINT64_C (1) << 20)
#define SIZE (40 * MiB)

/* A fresh SR directory under the scratch directory. */
static struct sr *
scratch_sr (const char *name)
{
  struct sr *sr = sr_open ("file", unit_path (name), SR_OPEN_CREATE);
  CU_ASSERT_FATAL (sr != NULL);
  return sr;
}

/* A VDI of FORMAT whose content is pseudo-random data (SEED) at a few
 * places, zeroes written at one, holes elsewhere; with a snapshot below
 * it and more data on top when CHAIN.  Its uuid into UUID. */
static void
make_vdi (struct sr *sr, enum vdisk_format format, bool chain, uint64_t seed,
          char uuid[SR_UUID_LEN + 1])
{
  struct sr_vdi *v = sr_vdi_create (sr, "disk", format, SIZE, NULL);
  CU_ASSERT_FATAL (v != NULL);
  strcpy (uuid, v->uuid);
  sr_vdi_free (v);
  char *buf = malloc (3 * MiB);
  unit_fill (buf, 3 * MiB, seed);
  struct vdisk *d = sr_vdi_open (sr, uuid, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_pwrite (d, buf, 3 * MiB, 1 * MiB, 0) == 0);
  CU_ASSERT (vdisk_pwrite (d, buf, 4096, SIZE - 4096, 0) == 0);
  CU_ASSERT (vdisk_zero (d, 2 * MiB, 10 * MiB, 0) == 0);
  CU_ASSERT (vdisk_close (d) == 0);
  if (!chain) {
    free (buf);
    return;
  }
  struct sr_vdi *snap = sr_vdi_snapshot (sr, uuid, "snap");
  CU_ASSERT_FATAL (snap != NULL);
  sr_vdi_free (snap);
  d = sr_vdi_open (sr, uuid, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  unit_fill (buf, 3 * MiB, seed + 1);
  /* Over the parent's data, partly; and into a hole. */
  CU_ASSERT (vdisk_pwrite (d, buf, 512 * 1024, 2 * MiB, 0) == 0);
  CU_ASSERT (vdisk_pwrite (d, buf, 3 * MiB, 20 * MiB, 0) == 0);
  CU_ASSERT (vdisk_zero (d, 64 * 1024, 1 * MiB, 0) == 0);
  CU_ASSERT (vdisk_close (d) == 0);
  free (buf);
}

/* Whether A and B read the same over A's size (B at least as large). */
static bool
same_content (struct vdisk *a, struct vdisk *b)
{
  uint64_t size = vdisk_get_size (a);
  char *x = malloc (MiB), *y = malloc (MiB);
  bool same = vdisk_get_size (b) >= size;
  for (uint64_t off = 0; same && off < size; off += MiB) {
    size_t n = size - off < MiB ? size - off : MiB;
    same = vdisk_pread (a, x, n, off) == 0 && vdisk_pread (b, y, n, off) == 0
           && memcmp (x, y, n) == 0;
  }
  free (x);
  free (y);
  return same;
}

static bool
same_vdis (struct sr *sa, const char *a, struct sr *sb, const char *b)
{
  struct vdisk *da = sr_vdi_open (sa, a, 0), *db = sr_vdi_open (sb, b, 0);
  bool same = da && db && same_content (da, db);
  vdisk_close (da);
  vdisk_close (db);
  return same;
}

/* The file of VDI UUID of the SR at DIR. */
static char *
vdi_path (struct sr *sr, const char *dir, const char *uuid)
{
  struct sr_vdi *v = sr_vdi_get_by_uuid (sr, uuid);
  char *p = NULL;
  if (v && asprintf (&p, "%s/%s", unit_path (dir), v->location) == -1)
    p = NULL;
  sr_vdi_free (v);
  return p;
}

static unsigned
depth_of (struct sr *sr, const char *uuid)
{
  struct vdisk *d = sr_vdi_open (sr, uuid, 0);
  struct vdisk_info info = { 0 };
  if (d)
    vdisk_get_info (d, &info);
  vdisk_close (d);
  return d ? info.chain_depth : 99;
}

static struct copy_spec
vdi_spec (struct sr *sr, const char *uuid)
{
  return (struct copy_spec){
    .kind = COPY_VDI, .sr = sr, .vdi = uuid, .format = -1
  };
}

/* A chain flattened: into a VDI of another SR, and into a raw file that
 * qemu-img compares with the source chain. */
static void
test_vdi_flattened (void)
{
  struct sr *a = scratch_sr ("flat-a"), *b = scratch_sr ("flat-b");
  char src[SR_UUID_LEN + 1];
  struct copy_params p = { .dest_is_zero = true };
  struct copy_stats st;
  char *err = NULL;

  CU_ASSERT_FATAL (a && b);
  make_vdi (a, VDISK_FORMAT_QCOW2, true, 1, src);
  CU_ASSERT (depth_of (a, src) == 1);
  struct sr_vdi *dv = sr_vdi_create (b, "copy", VDISK_FORMAT_VHD, SIZE, NULL);
  CU_ASSERT_FATAL (dv != NULL);
  struct copy_spec from = vdi_spec (a, src), to = vdi_spec (b, dv->uuid);
  CU_ASSERT (copy_simple (&from, &to, &p, &st, &err) == 0);
  if (err)
    fprintf (stderr, "%s\n", err);
  CU_ASSERT (same_vdis (a, src, b, dv->uuid));
  CU_ASSERT (depth_of (b, dv->uuid) == 0);
  /* Holes and zeroes were not read or written. */
  CU_ASSERT (st.bytes_read < 8 * MiB);
  CU_ASSERT (st.bytes_skipped > 20 * MiB);

  /* Into a file; qemu reads the source chain as the same disk. */
  struct copy_spec file
      = { .kind = COPY_IMAGE, .path = unit_path ("flat.raw"), .format = -1 };
  CU_ASSERT (copy_simple (&from, &file, &p, &st, &err) == 0);
  char *chain = vdi_path (a, "flat-a", src);
  if (unit_have_qemu_img ())
    CU_ASSERT (unit_sh ("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", chain,
                        unit_path ("flat.raw"))
               == 0);
  /* ... and it exists now: refused without overwrite, nothing touched. */
  CU_ASSERT (copy_simple (&from, &file, &p, &st, &err) == -1);
  CU_ASSERT (err && strstr (err, "already exists"));
  free (chain);
  free (err);
  sr_vdi_free (dv);
  sr_close (a);
  sr_close (b);
}

/* A chain kept: the same layers in the destination SR, each the same
 * as its source layer, qemu-img seeing the same disk. */
static void
test_vdi_chain_kept (void)
{
  struct sr *a = scratch_sr ("kept-a"), *b = scratch_sr ("kept-b");
  char src[SR_UUID_LEN + 1], top[SR_UUID_LEN + 1];
  struct copy_params p = { 0 };
  struct copy_stats st;
  char *err = NULL;

  CU_ASSERT_FATAL (a && b);
  make_vdi (a, VDISK_FORMAT_QCOW2, true, 2, src);
  CU_ASSERT_FATAL (sr_uuid_generate (top) == 0);
  struct copy_spec from = vdi_spec (a, src), to = vdi_spec (b, top);
  from.keep_chain = true;
  CU_ASSERT (copy_simple (&from, &to, &p, &st, &err) == 0);
  if (err)
    fprintf (stderr, "%s\n", err);
  CU_ASSERT (same_vdis (a, src, b, top));
  CU_ASSERT (depth_of (b, top) == 1);

  struct sr_vdi *sv = sr_vdi_get_by_uuid (a, src);
  struct sr_vdi *tv = sr_vdi_get_by_uuid (b, top);
  CU_ASSERT_FATAL (sv && tv && sv->parent_uuid[0] && tv->parent_uuid[0]);
  CU_ASSERT (same_vdis (a, sv->parent_uuid, b, tv->parent_uuid));
  /* Named as its source layer; the top holds only what the source's
   * top held (its copy read no more than that). */
  struct sr_vdi *pv = sr_vdi_get_by_uuid (b, tv->parent_uuid);
  CU_ASSERT (pv && strcmp (pv->name_label, "snap") == 0);
  CU_ASSERT (tv->format == VDISK_FORMAT_QCOW2);
  char *x = vdi_path (a, "kept-a", src), *y = vdi_path (b, "kept-b", top);
  if (unit_have_qemu_img ())
    CU_ASSERT (unit_sh ("qemu-img compare -q '%s' '%s'", x, y) == 0);
  free (x);
  free (y);
  sr_vdi_free (pv);
  sr_vdi_free (sv);
  sr_vdi_free (tv);

  /* A raw destination cannot hold a chain: refused, nothing left. */
  char raw[SR_UUID_LEN + 1];
  struct sr_vdi_list list = { 0 };
  CU_ASSERT_FATAL (sr_uuid_generate (raw) == 0);
  to = vdi_spec (b, raw);
  to.format = VDISK_FORMAT_RAW;
  CU_ASSERT (sr_vdi_list (b, &list) == 0);
  size_t before = list.len;
  sr_vdi_list_free (&list);
  CU_ASSERT (copy_simple (&from, &to, &p, &st, &err) == -1);
  CU_ASSERT (err && strstr (err, "vhd or qcow2"));
  CU_ASSERT (sr_vdi_list (b, &list) == 0);
  CU_ASSERT (list.len == before);
  sr_vdi_list_free (&list);
  /* Nor does NBD have a chain. */
  struct copy_spec nbd = { .kind = COPY_NBD, .uri = "nbd://localhost/x" };
  CU_ASSERT (copy_simple (&from, &nbd, &p, &st, &err) == -1);
  CU_ASSERT (errno == EINVAL);
  free (err);
  sr_close (a);
  sr_close (b);
}

/* Feed BUF (LEN bytes) in uneven pieces; the job's result. */
static int
feed_all (struct copy_job *j, const char *buf, size_t len, char **err)
{
  static const size_t pieces[] = { 1, 4095, 65537, 1 << 20, 3 << 20, 777 };
  size_t off = 0;
  for (unsigned i = 0; off < len; i++) {
    size_t n = pieces[i % 6];
    if (n > len - off)
      n = len - off;
    if (copy_job_feed (j, buf + off, n, err) == -1)
      return -1;
    off += n;
  }
  return 0;
}

static char *
read_file (const char *path, size_t *len)
{
  FILE *f = fopen (path, "rb");
  char *buf = NULL;
  if (f && fseek (f, 0, SEEK_END) == 0) {
    *len = ftell (f);
    buf = malloc (*len ? *len : 1);
    rewind (f);
    if (fread (buf, 1, *len, f) != *len) {
      free (buf);
      buf = NULL;
    }
  }
  if (f)
    fclose (f);
  return buf;
}

/* A raw stream into a fresh VDI (zeroes not written) and over content
 * (the VDI then reads exactly as the stream, shorter or not). */
static void
test_stream_raw_in (void)
{
  struct sr *a = scratch_sr ("raw-in");
  char src[SR_UUID_LEN + 1];
  struct copy_params p = { 0 };
  struct copy_stats st;
  char *err = NULL;
  size_t len = 30 * MiB; /* shorter than the VDI: the rest reads zero */

  CU_ASSERT_FATAL (a != NULL);
  make_vdi (a, VDISK_FORMAT_VHD, false, 3, src);
  /* The stream: the source VDI's first LEN bytes. */
  struct vdisk *sd = sr_vdi_open (a, src, 0);
  char *body = calloc (1, SIZE);
  CU_ASSERT_FATAL (sd && body);
  CU_ASSERT (vdisk_pread (sd, body, len, 0) == 0);
  vdisk_close (sd);

  struct sr_vdi *dv = sr_vdi_create (a, "in", VDISK_FORMAT_VHD, SIZE, NULL);
  CU_ASSERT_FATAL (dv != NULL);
  struct copy_spec from
      = { .kind = COPY_STREAM, .stream = COPY_STREAM_RAW, .length = len };
  struct copy_spec to = vdi_spec (a, dv->uuid);
  for (int pass = 0; pass < 2; pass++) {
    struct copy_job *j = copy_job_open (&from, &to, &p, &err);
    CU_ASSERT_FATAL (j != NULL);
    CU_ASSERT (copy_job_dest_is_zero (j) == (pass == 0));
    CU_ASSERT (copy_job_size (j) == SIZE);
    CU_ASSERT (feed_all (j, body, len, &err) == 0);
    CU_ASSERT (copy_job_close (j, true, &st, &err) == 0);
    if (pass == 0)
      CU_ASSERT (st.bytes_written < 5 * MiB); /* the data, no zeroes */
    struct vdisk *d = sr_vdi_open (a, dv->uuid, 0);
    char *got = malloc (SIZE);
    CU_ASSERT (d && vdisk_pread (d, got, SIZE, 0) == 0);
    CU_ASSERT (memcmp (got, body, SIZE) == 0);
    free (got);
    vdisk_close (d);
    /* Pass 2 goes over content: make it differ from the stream first. */
    d = sr_vdi_open (a, dv->uuid, VDISK_OPEN_RDWR);
    CU_ASSERT (d && vdisk_pwrite (d, "xyz", 3, len + 5, 0) == 0);
    CU_ASSERT (vdisk_pwrite (d, "xyz", 3, 12 * MiB, 0) == 0);
    vdisk_close (d);
  }

  /* More than the VDI holds: EFBIG, and the job's error says so. */
  from.size = MiB;
  struct copy_job *j = copy_job_open (&from, &to, &p, &err);
  CU_ASSERT_FATAL (j != NULL);
  CU_ASSERT (copy_job_feed (j, body, 2 * MiB, &err) == -1);
  CU_ASSERT (errno == EFBIG);
  CU_ASSERT (err && strstr (err, "larger"));
  copy_job_close (j, false, NULL, NULL);
  free (err);
  free (body);
  sr_vdi_free (dv);
  sr_close (a);
}

/* Append xapi's chunk header (offset, length; little-endian). */
static size_t
chunk_header (char *p, uint64_t off, uint32_t len)
{
  for (int i = 0; i < 8; i++)
    p[i] = off >> (8 * i);
  for (int i = 0; i < 4; i++)
    p[8 + i] = len >> (8 * i);
  return 12;
}

/* xapi's chunked encoding into a VDI with content: the chunks land at
 * their offsets (one larger than the staging buffer, one unaligned),
 * headers split across feeds, and the rest keeps what it held; a chunk
 * past the end, a missing last header and bytes after it are refused. */
static void
test_stream_chunked_in (void)
{
  struct sr *a = scratch_sr ("chunked-in");
  char uuid[SR_UUID_LEN + 1];
  struct copy_params p = { 0 };
  struct copy_stats st;
  char *err = NULL;
  char *before = malloc (SIZE), *got = malloc (SIZE);
  char *body = malloc (4 * MiB), *want = malloc (SIZE);
  size_t len = 0;

  CU_ASSERT_FATAL (a && before && got && body && want);
  make_vdi (a, VDISK_FORMAT_QCOW2, false, 5, uuid);
  struct vdisk *d = sr_vdi_open (a, uuid, 0);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_pread (d, before, SIZE, 0) == 0);
  vdisk_close (d);
  memcpy (want, before, SIZE);
  len += chunk_header (body + len, 5 * MiB, 3 * MiB);
  memset (body + len, 0xa5, 3 * MiB);
  memset (want + 5 * MiB, 0xa5, 3 * MiB);
  len += 3 * MiB;
  len += chunk_header (body + len, SIZE - 107, 100);
  memset (body + len, 0x5a, 100);
  memset (want + SIZE - 107, 0x5a, 100);
  len += 100;
  len += chunk_header (body + len, 0, 0);

  struct copy_spec from
      = { .kind = COPY_STREAM, .stream = COPY_STREAM_CHUNKED, .length = len };
  struct copy_spec to = vdi_spec (a, uuid);
  struct copy_job *j = copy_job_open (&from, &to, &p, &err);
  CU_ASSERT_FATAL (j != NULL);
  CU_ASSERT (feed_all (j, body, len, &err) == 0);
  CU_ASSERT (copy_job_close (j, true, &st, &err) == 0);
  CU_ASSERT (st.bytes_read == 3 * MiB + 100);
  d = sr_vdi_open (a, uuid, 0);
  CU_ASSERT (d && vdisk_pread (d, got, SIZE, 0) == 0);
  CU_ASSERT (memcmp (got, want, SIZE) == 0);
  vdisk_close (d);

  /* Past the end: EFBIG, naming the chunk. */
  j = copy_job_open (&from, &to, &p, &err);
  CU_ASSERT_FATAL (j != NULL);
  chunk_header (body, SIZE - 10, 11);
  CU_ASSERT (copy_job_feed (j, body, 12, &err) == -1);
  CU_ASSERT (errno == EFBIG && err && strstr (err, "past the destination"));
  copy_job_close (j, false, NULL, NULL);
  free (err);
  err = NULL;
  /* No last header: the end fails. */
  j = copy_job_open (&from, &to, &p, &err);
  CU_ASSERT_FATAL (j != NULL);
  chunk_header (body, 0, 1);
  CU_ASSERT (copy_job_feed (j, body, 13, &err) == 0);
  CU_ASSERT (copy_job_close (j, true, NULL, &err) == -1);
  CU_ASSERT (err && strstr (err, "without its last chunk"));
  free (err);
  err = NULL;
  /* Bytes after the last header. */
  j = copy_job_open (&from, &to, &p, &err);
  CU_ASSERT_FATAL (j != NULL);
  chunk_header (body, 0, 0);
  CU_ASSERT (copy_job_feed (j, body, 13, &err) == -1);
  CU_ASSERT (err && strstr (err, "after the chunked stream's last chunk"));
  copy_job_close (j, false, NULL, NULL);
  free (err);
  free (before);
  free (got);
  free (body);
  free (want);
  sr_close (a);
}

/* A VHD stream into a VDI: a VHD file made by libvdisk (and by qemu-img
 * if there), fed in uneven pieces, reads back as its image. */
static void
test_stream_vhd_in (void)
{
  struct sr *a = scratch_sr ("vhd-in");
  char src[SR_UUID_LEN + 1];
  struct copy_params p = { 0 };
  struct copy_stats st;
  char *err = NULL;
  size_t len;

  CU_ASSERT_FATAL (a != NULL);
  make_vdi (a, VDISK_FORMAT_VHD, false, 4, src);
  char *path = vdi_path (a, "vhd-in", src);
  char *body = read_file (path, &len);
  CU_ASSERT_FATAL (body != NULL);

  struct sr_vdi *dv = sr_vdi_create (a, "in", VDISK_FORMAT_QCOW2, SIZE, NULL);
  CU_ASSERT_FATAL (dv != NULL);
  struct copy_spec from
      = { .kind = COPY_STREAM, .stream = COPY_STREAM_VHD, .length = len };
  struct copy_spec to = vdi_spec (a, dv->uuid);
  struct copy_job *j = copy_job_open (&from, &to, &p, &err);
  CU_ASSERT_FATAL (j != NULL);
  CU_ASSERT (feed_all (j, body, len, &err) == 0);
  CU_ASSERT (copy_job_close (j, true, &st, &err) == 0);
  CU_ASSERT (same_vdis (a, src, a, dv->uuid));
  CU_ASSERT (st.bytes_written <= 6 * MiB);

  /* Not a VHD: refused with the reader's reason. */
  memset (body + len - 512, 0, 512);
  j = copy_job_open (&from, &to, &p, &err);
  CU_ASSERT_FATAL (j != NULL);
  int r = feed_all (j, body, len, &err);
  if (r == 0)
    r = copy_job_close (j, true, &st, &err);
  else
    copy_job_close (j, false, NULL, NULL);
  CU_ASSERT (r == -1);
  CU_ASSERT (errno == EINVAL);
  CU_ASSERT (err && strstr (err, "vhd stream"));
  free (err);
  free (body);
  free (path);
  sr_vdi_free (dv);
  sr_close (a);
}

/* A stream destination's consumer: a file, checking the writes come in
 * whole, in order. */
struct sink
{
  FILE *f;
  uint64_t zero_bytes, writes;
};

static int
sink_write (void *opaque, void *buf, size_t len, char **err)
{
  static const char zeroes[COPY_STREAM_CHUNK];
  struct sink *s = opaque;
  CU_ASSERT (len > 0 && len <= COPY_STREAM_CHUNK);
  if (!buf)
    s->zero_bytes += len;
  s->writes++;
  int r = fwrite (buf ? buf : zeroes, 1, len, s->f) == len ? 0 : -1;
  free (buf);
  return r;
}

/* VDI -> stream, FORMAT, into PATH; its length. */
static uint64_t
export_to (struct sr *sr, const char *uuid, enum copy_stream_format format,
           const char *path, struct sink *s)
{
  struct copy_params p = { 0 };
  struct copy_stats st;
  char *err = NULL;
  struct copy_spec from = vdi_spec (sr, uuid);
  struct copy_spec to = {
    .kind = COPY_STREAM, .stream = format, .write = sink_write, .opaque = s
  };
  s->f = fopen (path, "wb");
  struct copy_job *j = copy_job_open (&from, &to, &p, &err);
  CU_ASSERT_FATAL (j != NULL && s->f != NULL);
  uint64_t length = copy_job_length (j);
  CU_ASSERT (copy_job_run (j, &err) == 0);
  CU_ASSERT (copy_job_close (j, true, &st, &err) == 0);
  CU_ASSERT (fclose (s->f) == 0);
  free (err);
  return length;
}

/* A chained VDI out as raw bytes, and as a VHD that libvdisk and qemu-img
 * read as the same disk, holding only blocks with data. */
static void
test_stream_out (void)
{
  struct sr *a = scratch_sr ("out");
  char src[SR_UUID_LEN + 1];
  struct sink s = { 0 };
  size_t len;

  CU_ASSERT_FATAL (a != NULL);
  make_vdi (a, VDISK_FORMAT_QCOW2, true, 5, src);
  CU_ASSERT (export_to (a, src, COPY_STREAM_RAW, unit_path ("out.raw"), &s)
             == SIZE);
  char *raw = read_file (unit_path ("out.raw"), &len);
  struct vdisk *d = sr_vdi_open (a, src, 0);
  char *want = malloc (SIZE);
  CU_ASSERT_FATAL (raw && d && want);
  CU_ASSERT (vdisk_pread (d, want, SIZE, 0) == 0);
  CU_ASSERT (len == SIZE && memcmp (raw, want, SIZE) == 0);
  /* The holes went as zeroes, never read. */
  CU_ASSERT (s.zero_bytes >= 25 * MiB);

  s = (struct sink){ 0 };
  uint64_t vlen
      = export_to (a, src, COPY_STREAM_VHD, unit_path ("out.vhd"), &s);
  CU_ASSERT (vlen < 12 * MiB); /* sparse: the blocks with data only */
  struct vdisk *v
      = vdisk_open_as (unit_path ("out.vhd"), 0, VDISK_FORMAT_VHD, NULL);
  CU_ASSERT_FATAL (v != NULL);
  CU_ASSERT (vdisk_get_size (v) == SIZE);
  CU_ASSERT (same_content (d, v));
  if (unit_have_qemu_img ())
    CU_ASSERT (unit_sh ("qemu-img compare -q -f vpc -F raw '%s' '%s'",
                        unit_path ("out.vhd"), unit_path ("out.raw"))
               == 0);
  vdisk_close (v);

  /* A VHD is made of an image: not of an NBD export. */
  struct copy_params p = { 0 };
  char *err = NULL;
  struct copy_spec nbd = { .kind = COPY_NBD, .uri = "nbd://127.0.0.1:1/" };
  struct copy_spec to = { .kind = COPY_STREAM,
                          .stream = COPY_STREAM_VHD,
                          .write = sink_write,
                          .opaque = &s };
  CU_ASSERT (copy_job_open (&nbd, &to, &p, &err) == NULL);
  CU_ASSERT (err != NULL);
  free (err);
  vdisk_close (d);
  free (want);
  free (raw);
  sr_close (a);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "SR VDI, chain flattened", test_vdi_flattened },
    { "SR VDI, chain kept", test_vdi_chain_kept },
    { "raw stream in", test_stream_raw_in },
    { "VHD stream in", test_stream_vhd_in },
    { "chunked stream in", test_stream_chunked_in },
    { "raw and VHD streams out", test_stream_out },
    { NULL },
  };
  return unit_main ("copy endpoints", tests);
}
