/* qcow2 writes through the vdisk API: random unaligned writes, zero
 * ranges, clusters straddled, refcount blocks and table grown, backing
 * files, compressed clusters overwritten, several threads at once.
 * Every image is checked against an in-memory reference through our
 * reads, and (when qemu-img is installed) by `qemu-img check` (no errors,
 * no leaks) and `qemu-img compare` against the reference as raw. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>

#include "unit.h"
#include "vdisk.h"

static bool have_qemu;

static void
write_raw (const char *path, const uint8_t *ref, uint64_t size)
{
  FILE *f = fopen (path, "wb");
  CU_ASSERT_FATAL (f != NULL);
  CU_ASSERT (fwrite (ref, 1, size, f) == size);
  fclose (f);
}

/* qemu-img check clean (exit 0: no errors, no leaks) and equal to REF. */
static void
qemu_agrees (const char *img, const uint8_t *ref, uint64_t size)
{
  if (!have_qemu)
    return;
  const char *raw = unit_path ("ref.raw");
  write_raw (raw, ref, size);
  int r = unit_sh ("qemu-img check -q -f qcow2 '%s'", img);
  if (r != 0) {
    fprintf (stderr, "qemu-img check %s: status %d\n", img, r);
    unit_sh ("qemu-img check -f qcow2 '%s' >&2", img);
  }
  CU_ASSERT (r == 0);
  r = unit_sh ("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", img, raw);
  CU_ASSERT (r == 0);
}

/* Our reads of D equal REF, in pieces of varying size. */
static void
reads_equal (struct vdisk *d, const uint8_t *ref, uint64_t size)
{
  uint8_t *buf = malloc (1 << 20);
  uint64_t s = 99, off = 0;
  CU_ASSERT_FATAL (buf != NULL);
  while (off < size) {
    uint64_t len = unit_rnd (&s) % (1 << 20) + 1;
    if (len > size - off)
      len = size - off;
    CU_ASSERT_FATAL (vdisk_pread (d, buf, len, off) == 0);
    if (memcmp (buf, ref + off, len) != 0) {
      CU_FAIL ("read differs from reference");
      fprintf (stderr, "differs in [%lu, +%lu)\n", (unsigned long)off,
               (unsigned long)len);
      break;
    }
    off += len;
  }
  free (buf);
}

static struct vdisk *
create_open (const char *name, uint64_t size, uint32_t cs, const char *parent)
{
  struct vdisk_create_params p = { .parent = parent, .block_size = cs };
  const char *path = unit_path (name);
  if (vdisk_create (path, VDISK_FORMAT_QCOW2, size, &p) == -1) {
    fprintf (stderr, "create %s: %s\n", path, vdisk_get_error ());
    return NULL;
  }
  struct vdisk *d = vdisk_open (path, VDISK_OPEN_RDWR);
  if (!d)
    fprintf (stderr, "open %s: %s\n", path, vdisk_get_error ());
  return d;
}

/* N random writes and zeroes (some with MAY_TRIM) on D and REF. */
static void
random_ops (struct vdisk *d, uint8_t *ref, uint64_t size, uint64_t maxlen,
            unsigned n, uint64_t seed)
{
  uint8_t *buf = malloc (maxlen);
  uint64_t s = seed;
  CU_ASSERT_FATAL (buf != NULL);
  for (unsigned i = 0; i < n; i++) {
    uint64_t len = unit_rnd (&s) % maxlen + 1;
    uint64_t off = unit_rnd (&s) % size;
    unsigned kind = unit_rnd (&s) % 8;
    if (len > size - off)
      len = size - off;
    if (kind < 5) {
      unit_fill (buf, len, seed + i);
      CU_ASSERT_FATAL (vdisk_pwrite (d, buf, len, off, 0) == 0);
      memcpy (ref + off, buf, len);
    }
    else {
      unsigned fl = kind == 7 ? VDISK_MAY_TRIM : 0;
      if (vdisk_zero (d, len, off, fl) == -1)
        fprintf (stderr, "zero: %s\n", vdisk_get_error ());
      CU_ASSERT_FATAL (vdisk_zero (d, len, off, fl) == 0);
      memset (ref + off, 0, len);
    }
  }
  free (buf);
}

/* Random unaligned writes and zeroes, clusters straddled, on images of
 * several cluster sizes and odd virtual sizes. */
static void
test_random_writes (void)
{
  static const struct
  {
    uint32_t cs;
    uint64_t size;
  } cases[] = {
    { 512, 3 * 1048576 + 777 },
    { 4096, 5 * 1048576 + 1 },
    { 65536, 9 * 1048576 + 4097 },
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    uint64_t size = cases[c].size;
    uint8_t *ref = calloc (1, size);
    struct vdisk *d = create_open ("rand.qcow2", size, cases[c].cs, NULL);
    CU_ASSERT_FATAL (d != NULL && ref != NULL);
    /* Created sizes are whole sectors, as qemu-img makes them. */
    CU_ASSERT (vdisk_get_size (d) == ((size + 511) & ~UINT64_C (511)));
    random_ops (d, ref, size, 3 * cases[c].cs + 1000, 300, c + 1);
    reads_equal (d, ref, size);
    /* The very last byte, and a zero of the tail cluster. */
    CU_ASSERT (vdisk_pwrite (d, "x", 1, size - 1, VDISK_FUA) == 0);
    ref[size - 1] = 'x';
    CU_ASSERT (
        vdisk_zero (d, size % cases[c].cs ? size % cases[c].cs : 1,
                    size - (size % cases[c].cs ? size % cases[c].cs : 1), 0)
        == 0);
    memset (ref + size - (size % cases[c].cs ? size % cases[c].cs : 1), 0,
            size % cases[c].cs ? size % cases[c].cs : 1);
    CU_ASSERT (vdisk_close (d) == 0);

    d = vdisk_open (unit_path ("rand.qcow2"), 0);
    CU_ASSERT_FATAL (d != NULL);
    reads_equal (d, ref, size);
    vdisk_close (d);
    qemu_agrees (unit_path ("rand.qcow2"), ref, size);
    unlink (unit_path ("rand.qcow2"));
    free (ref);
  }
}

/* 512-byte clusters: one refcount block counts 128 KiB and the first
 * refcount table 8 MiB, so 20 MiB of writes grow both. */
static void
test_refcount_growth (void)
{
  uint64_t size = 24 << 20;
  uint8_t *ref = calloc (1, size);
  uint8_t *buf = malloc (1 << 20);
  struct vdisk *d = create_open ("grow.qcow2", size, 512, NULL);
  struct stat st;
  CU_ASSERT_FATAL (d != NULL && ref && buf);
  for (uint64_t off = 0; off < 20 << 20; off += 1 << 20) {
    unit_fill (buf, 1 << 20, off);
    CU_ASSERT_FATAL (vdisk_pwrite (d, buf, 1 << 20, off + 100, 0) == 0);
    memcpy (ref + off + 100, buf, 1 << 20);
  }
  reads_equal (d, ref, size);
  CU_ASSERT (vdisk_close (d) == 0);
  /* The refcount table moved away from cluster 1, where create put it. */
  FILE *f = fopen (unit_path ("grow.qcow2"), "rb");
  uint8_t h[64];
  CU_ASSERT_FATAL (f != NULL);
  CU_ASSERT (fread (h, 1, sizeof h, f) == sizeof h);
  fclose (f);
  CU_ASSERT (((uint64_t)h[54] << 8 | h[55]) != 512 || h[53] != 0);
  CU_ASSERT (h[59] > 1); /* and has more than one cluster */
  CU_ASSERT (stat (unit_path ("grow.qcow2"), &st) == 0);
  CU_ASSERT (st.st_size > 20 << 20);
  qemu_agrees (unit_path ("grow.qcow2"), ref, size);
  free (buf);
  free (ref);
}

/* A child over a parent: partial writes copy the rest of the cluster
 * from the parent, zeroes hide it, the map says which layer holds what. */
static void
test_backing (void)
{
  uint64_t size = 4 << 20;
  uint8_t *ref = malloc (size);
  struct vdisk *p = create_open ("parent.qcow2", size, 65536, NULL);
  CU_ASSERT_FATAL (p != NULL && ref != NULL);
  unit_fill (ref, size, 42);
  CU_ASSERT (vdisk_pwrite (p, ref, size, 0, 0) == 0);
  CU_ASSERT (vdisk_close (p) == 0);

  /* The recorded name is relative to the child's directory. */
  struct vdisk *d = create_open ("child.qcow2", 0, 65536, "parent.qcow2");
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_get_size (d) == size);
  CU_ASSERT (vdisk_get_parent (d) != NULL);
  reads_equal (d, ref, size);
  CU_ASSERT (vdisk_pwrite (d, "hello", 5, 70000, 0) == 0);
  memcpy (ref + 70000, "hello", 5);
  CU_ASSERT (vdisk_zero (d, 65536 * 3, 65536 * 10, 0) == 0);
  memset (ref + 65536 * 10, 0, 65536 * 3);
  CU_ASSERT (vdisk_zero (d, 1000, 65536 * 20 + 5, 0) == 0);
  memset (ref + 65536 * 20 + 5, 0, 1000);
  random_ops (d, ref, size, 100000, 50, 7);
  reads_equal (d, ref, size);

  struct vdisk_extents e = { 0 };
  CU_ASSERT (vdisk_map (d, 0, size, VDISK_MAP_LAYER, &e) == 0);
  bool zero = false, hole = false, data = false;
  for (size_t i = 0; i < e.len; i++) {
    zero |= e.v[i].type == VDISK_EXTENT_ZERO;
    hole |= e.v[i].type == VDISK_EXTENT_HOLE;
    data |= e.v[i].type == VDISK_EXTENT_DATA;
  }
  CU_ASSERT (zero && hole && data);
  vdisk_extents_free (&e);
  CU_ASSERT (vdisk_close (d) == 0);
  qemu_agrees (unit_path ("child.qcow2"), ref, size);
  free (ref);
}

/* Writes and zeroes over compressed clusters (made by qemu-img convert
 * -c) release the compressed space: no leaks. */
static void
test_compressed_overwrite (void)
{
  uint64_t size = 2 << 20;
  uint8_t *ref = malloc (size);
  const char *raw = unit_path ("c.raw"), *img = unit_path ("c.qcow2");
  if (!have_qemu) {
    free (ref);
    return;
  }
  for (uint64_t i = 0; i < size; i++)
    ref[i] = (i / 4096) * 7 + (i % 13 == 0);
  write_raw (raw, ref, size);
  CU_ASSERT_FATAL (
      unit_sh ("qemu-img convert -c -f raw -O qcow2 '%s' '%s'", raw, img)
      == 0);
  struct vdisk *d = vdisk_open (img, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  reads_equal (d, ref, size);
  CU_ASSERT (vdisk_pwrite (d, "abc", 3, 100, 0) == 0);
  memcpy (ref + 100, "abc", 3);
  CU_ASSERT (vdisk_zero (d, 65536, 65536 * 3, 0) == 0);
  memset (ref + 65536 * 3, 0, 65536);
  CU_ASSERT (vdisk_zero (d, 65536, 65536 * 5, VDISK_MAY_TRIM) == 0);
  memset (ref + 65536 * 5, 0, 65536);
  reads_equal (d, ref, size);
  CU_ASSERT (vdisk_close (d) == 0);
  qemu_agrees (img, ref, size);
  free (ref);
}

/* Zero of whole clusters is recorded as zero clusters; with
 * VDISK_MAY_TRIM the space is given back. */
static void
test_zero_map (void)
{
  uint64_t size = 1 << 20;
  uint8_t *ref = calloc (1, size);
  uint8_t *buf = malloc (size);
  struct vdisk *d = create_open ("z.qcow2", size, 65536, NULL);
  struct vdisk_extents e = { 0 };
  CU_ASSERT_FATAL (d != NULL && ref && buf);
  unit_fill (buf, size, 3);
  CU_ASSERT (vdisk_pwrite (d, buf, size, 0, 0) == 0);
  memcpy (ref, buf, size);
  CU_ASSERT (vdisk_zero (d, 131072, 0, 0) == 0);
  CU_ASSERT (vdisk_zero (d, 131072, 262144, VDISK_MAY_TRIM) == 0);
  memset (ref, 0, 131072);
  memset (ref + 262144, 0, 131072);
  CU_ASSERT (vdisk_map (d, 0, size, VDISK_MAP_LAYER, &e) == 0);
  CU_ASSERT_FATAL (e.len >= 3);
  CU_ASSERT (e.v[0].type == VDISK_EXTENT_ZERO && e.v[0].length == 131072);
  CU_ASSERT (e.v[0].host_offset >= 0); /* kept its cluster */
  CU_ASSERT (e.v[1].type == VDISK_EXTENT_DATA);
  CU_ASSERT (e.v[2].type == VDISK_EXTENT_ZERO && e.v[2].host_offset == -1);
  vdisk_extents_free (&e);
  /* Writing into zero clusters (allocated and not) brings data back. */
  CU_ASSERT (vdisk_pwrite (d, buf, 5000, 60000, 0) == 0);
  CU_ASSERT (vdisk_pwrite (d, buf, 5000, 300000, 0) == 0);
  memcpy (ref + 60000, buf, 5000);
  memcpy (ref + 300000, buf, 5000);
  reads_equal (d, ref, size);
  CU_ASSERT (vdisk_close (d) == 0);
  qemu_agrees (unit_path ("z.qcow2"), ref, size);
  free (buf);
  free (ref);
}

/* v2 images (made by qemu-img) have no zero flag: zero writes zeroes. */
static void
test_v2_write (void)
{
  uint64_t size = 3 << 20;
  uint8_t *ref = calloc (1, size);
  const char *img = unit_path ("v2.qcow2");
  if (!have_qemu) {
    free (ref);
    return;
  }
  CU_ASSERT_FATAL (
      unit_sh ("qemu-img create -q -f qcow2 -o compat=0.10 '%s' 3M", img)
      == 0);
  struct vdisk *d = vdisk_open (img, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  random_ops (d, ref, size, 200000, 60, 11);
  reads_equal (d, ref, size);
  CU_ASSERT (vdisk_close (d) == 0);
  qemu_agrees (img, ref, size);
  free (ref);
}

/* Several threads at once, disjoint unaligned ranges (nbdkit's parallel
 * model): first writes allocate under the lock, later ones go straight
 * to the data. */
#define NTHREADS 4
struct worker
{
  struct vdisk *d;
  uint8_t *ref;
  uint64_t start, len;
  unsigned id;
  int err;
};

static void *
worker (void *arg)
{
  struct worker *w = arg;
  uint64_t s = w->id + 1, off = w->start;
  uint8_t buf[20000];
  while (off < w->start + w->len) {
    uint64_t len = unit_rnd (&s) % sizeof buf + 1;
    if (len > w->start + w->len - off)
      len = w->start + w->len - off;
    unit_fill (buf, len, off);
    if (vdisk_pwrite (w->d, buf, len, off, 0) == -1)
      w->err = 1;
    memcpy (w->ref + off, buf, len);
    /* Every other piece written twice: the second write is in place. */
    if ((off / len) % 2 && vdisk_pwrite (w->d, buf, len, off, 0) == -1)
      w->err = 1;
    off += len + unit_rnd (&s) % 3000;
  }
  return NULL;
}

static void
test_threads (void)
{
  static const uint32_t sizes[] = { 512, 65536 };
  for (size_t c = 0; c < 2; c++) {
    uint64_t size = 16 << 20, part = size / NTHREADS;
    uint8_t *ref = calloc (1, size);
    struct vdisk *d = create_open ("mt.qcow2", size, sizes[c], NULL);
    pthread_t t[NTHREADS];
    struct worker w[NTHREADS];
    CU_ASSERT_FATAL (d != NULL && ref != NULL);
    /* Ranges interleave inside clusters: each starts at an odd offset. */
    for (unsigned i = 0; i < NTHREADS; i++) {
      w[i] = (struct worker){ d, ref, i * part + 333 * i, part - 1000, i, 0 };
      pthread_create (&t[i], NULL, worker, &w[i]);
    }
    for (unsigned i = 0; i < NTHREADS; i++) {
      pthread_join (t[i], NULL);
      CU_ASSERT (w[i].err == 0);
    }
    reads_equal (d, ref, size);
    CU_ASSERT (vdisk_close (d) == 0);
    qemu_agrees (unit_path ("mt.qcow2"), ref, size);
    unlink (unit_path ("mt.qcow2"));
    free (ref);
  }
}

/* Images we must not write (dirty lazy refcounts, internal snapshots)
 * open read-only, and opening them writable fails with a reason and
 * changes nothing. */
static void
test_refuse_writes (void)
{
  const char *img = unit_path ("refuse.qcow2");
  struct vdisk *d;
  uint8_t h[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
  struct stat st1, st2;
  int fd;

  if (!have_qemu)
    return;
  CU_ASSERT_FATAL (unit_sh ("qemu-img create -q -f qcow2 '%s' 1M", img) == 0);
  fd = open (img, O_WRONLY);
  CU_ASSERT_FATAL (fd >= 0);
  CU_ASSERT (pwrite (fd, h, 8, 72) == 8); /* incompatible: dirty */
  close (fd);
  CU_ASSERT (stat (img, &st1) == 0);
  CU_ASSERT (vdisk_open (img, VDISK_OPEN_RDWR) == NULL);
  CU_ASSERT (strstr (vdisk_get_error (), "dirty") != NULL);
  d = vdisk_open (img, 0);
  CU_ASSERT_FATAL (d != NULL);
  vdisk_close (d);
  CU_ASSERT (stat (img, &st2) == 0);
  CU_ASSERT (st1.st_mtime == st2.st_mtime && st1.st_size == st2.st_size);
  unlink (img);

  CU_ASSERT_FATAL (unit_sh ("qemu-img create -q -f qcow2 '%s' 1M && "
                            "qemu-img snapshot -c snap '%s'",
                            img, img)
                   == 0);
  CU_ASSERT (vdisk_open (img, VDISK_OPEN_RDWR) == NULL);
  CU_ASSERT (strstr (vdisk_get_error (), "snapshot") != NULL);
  d = vdisk_open (img, 0);
  CU_ASSERT (d != NULL);
  vdisk_close (d);
}

/* Bad parameters: cluster sizes qcow2 cannot have. */
static void
test_create_params (void)
{
  struct vdisk_create_params p = { .block_size = 1000 };
  CU_ASSERT (
      vdisk_create (unit_path ("bad.qcow2"), VDISK_FORMAT_QCOW2, 1 << 20, &p)
      == -1);
  p.block_size = 4 << 20;
  CU_ASSERT (
      vdisk_create (unit_path ("bad2.qcow2"), VDISK_FORMAT_QCOW2, 1 << 20, &p)
      == -1);
  /* A size needing an L1 table bigger than qemu allows. */
  p.block_size = 512;
  CU_ASSERT (vdisk_create (unit_path ("bad3.qcow2"), VDISK_FORMAT_QCOW2,
                           1ULL << 50, &p)
             == -1);
}

static uint64_t
be64_at (int fd, uint64_t off)
{
  uint8_t b[8];
  uint64_t v = 0;
  CU_ASSERT_FATAL (pread (fd, b, 8, off) == 8);
  for (int i = 0; i < 8; i++)
    v = v << 8 | b[i];
  return v;
}

static void
put_be16_at (int fd, uint64_t off, uint16_t v)
{
  uint8_t b[2] = { v >> 8, v & 0xff };
  CU_ASSERT_FATAL (pwrite (fd, b, 2, off) == 2);
}

/* What a writer killed half-way leaves -- clusters counted past the last
 * one in use (allocated, their L2 entries never written), the growth
 * slack, a data cluster whose count was not written yet -- is repaired:
 * the counts match the references, the file ends after the last cluster
 * in use, the data is intact and qemu-img check finds nothing. */
static void
test_repair_leaks (void)
{
  const uint64_t size = 8 << 20, cs = 65536;
  const char *path = unit_path ("leaks.qcow2");
  uint8_t *ref = calloc (1, size);
  struct vdisk *d = create_open ("leaks.qcow2", size, cs, NULL);
  uint64_t freed = 99, end, rb, data;
  struct stat st;
  int fd;

  CU_ASSERT_FATAL (ref != NULL && d != NULL);
  unit_fill (ref, cs, 1);
  CU_ASSERT_FATAL (vdisk_pwrite (d, ref, cs, 0, 0) == 0);
  random_ops (d, ref, size, 300000, 40, 5);
  CU_ASSERT_FATAL (vdisk_close (d) == 0);
  /* Nothing to repair: nothing changes. */
  d = vdisk_open (path, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_repair_leaks (d, &freed) == 0);
  CU_ASSERT (freed == 0);
  CU_ASSERT_FATAL (vdisk_close (d) == 0);
  CU_ASSERT_FATAL (stat (path, &st) == 0);
  end = st.st_size;
  CU_ASSERT_FATAL (end % cs == 0);

  /* The leaks (16-bit refcounts, one refcount block for all). */
  fd = open (path, O_RDWR);
  CU_ASSERT_FATAL (fd >= 0);
  rb = be64_at (fd, be64_at (fd, 48));
  CU_ASSERT_FATAL (rb != 0);
  for (uint64_t c = end / cs; c < end / cs + 5; c++)
    put_be16_at (fd, rb + 2 * c, 1);
  CU_ASSERT_FATAL (ftruncate (fd, end + 5 * cs + (32 << 20)) == 0);
  /* The first data cluster's count, not yet written. */
  data = be64_at (fd, be64_at (fd, be64_at (fd, 40)) & 0x00fffffffffffe00ULL)
         & 0x00fffffffffffe00ULL;
  CU_ASSERT_FATAL (data != 0);
  put_be16_at (fd, rb + 2 * (data / cs), 0);
  close (fd);

  d = vdisk_open (path, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_repair_leaks (d, &freed) == 0);
  CU_ASSERT (freed == 5);
  reads_equal (d, ref, size);
  CU_ASSERT_FATAL (vdisk_close (d) == 0);
  CU_ASSERT_FATAL (stat (path, &st) == 0);
  CU_ASSERT ((uint64_t)st.st_size == end);
  qemu_agrees (path, ref, size);
  /* A read-only image is left alone. */
  d = vdisk_open (path, 0);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_repair_leaks (d, &freed) == 0 && freed == 0);
  vdisk_close (d);
  unlink (path);
  free (ref);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "random unaligned writes and zeroes", test_random_writes },
    { "refcount blocks and table grow", test_refcount_growth },
    { "backing file: copy-up, zero hides parent", test_backing },
    { "overwrite compressed clusters without leaks",
      test_compressed_overwrite },
    { "zero clusters and trim in the map", test_zero_map },
    { "write v2 images", test_v2_write },
    { "four threads write disjoint ranges", test_threads },
    { "refuse to write dirty or snapshotted images", test_refuse_writes },
    { "reject bad create parameters", test_create_params },
    { "repair what a killed writer leaked", test_repair_leaks },
    { NULL, NULL },
  };
  have_qemu = system ("qemu-img --version > /dev/null 2>&1") == 0;
  return unit_main ("qcow2", tests);
}
