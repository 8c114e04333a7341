/* VHD through the vdisk API: dynamic, fixed and differencing images we
 * create, written at unaligned and block-straddling offsets, read back
 * by us and by libvhdi ($VHDI_CAT), mapped from the BAT and bitmaps, and
 * written from several threads at once. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"
#include "unit.h"
#include "vdisk.h"

#define MiB (UINT64_C (1) << 20)

/* An image and what it must read as. */
struct shadow
{
  struct vdisk *d;
  uint8_t *want;
  uint64_t size;
};

static void
shadow_write (struct shadow *s, uint64_t off, uint64_t len, unsigned seed)
{
  uint8_t *buf = malloc (len);
  CU_ASSERT_FATAL (buf != NULL);
  unit_fill (buf, len, seed);
  if (vdisk_pwrite (s->d, buf, len, off, 0) != 0)
    fprintf (stderr, "pwrite %" PRIu64 "+%" PRIu64 ": %s\n", off, len,
             vdisk_get_error ());
  memcpy (s->want + off, buf, len);
  free (buf);
}

static void
shadow_zero (struct shadow *s, uint64_t off, uint64_t len, unsigned flags)
{
  CU_ASSERT (vdisk_zero (s->d, len, off, flags) == 0);
  memset (s->want + off, 0, len);
}

/* Whole disk, and a few odd windows, read as the shadow says. */
static void
check_reads (struct vdisk *d, const uint8_t *want, uint64_t size)
{
  uint8_t *got = malloc (size);
  CU_ASSERT_FATAL (got != NULL);
  CU_ASSERT_FATAL (vdisk_pread (d, got, size, 0) == 0);
  CU_ASSERT (memcmp (got, want, size) == 0);
  static const uint64_t windows[][2] = {
    { 1, 1 },           { 511, 2 },
    { 1000, 5000 },     { 2 * MiB - 700, 1400 },
    { 2 * MiB - 1, 1 }, { 4 * MiB - 513, 1027 },
  };
  for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
    uint64_t o = windows[i][0], n = windows[i][1];
    if (o + n > size)
      continue;
    memset (got, 0xAA, n);
    CU_ASSERT (vdisk_pread (d, got, n, o) == 0);
    CU_ASSERT (memcmp (got, want + o, n) == 0);
  }
  free (got);
}

/* libvhdi reads PATH (and its chain) exactly as WANT. */
static void
check_libvhdi (const char *path, const uint8_t *want, uint64_t size)
{
  const char *cat = getenv ("VHDI_CAT");
  char cmd[1024];
  const char *out = unit_path ("vhdi.out");
  if (cat == NULL) {
    fprintf (stderr, "VHDI_CAT not set: libvhdi check skipped\n");
    return;
  }
  snprintf (cmd, sizeof cmd, "'%s' '%s' '%s'", cat, path, out);
  CU_ASSERT_FATAL (system (cmd) == 0);
  FILE *f = fopen (out, "r");
  CU_ASSERT_FATAL (f != NULL);
  uint8_t *got = malloc (size + 1);
  size_t n = fread (got, 1, size + 1, f);
  fclose (f);
  CU_ASSERT_EQUAL (n, size);
  CU_ASSERT (n == size && memcmp (got, want, size) == 0);
  free (got);
  unlink (out);
}

/* Every DATA extent of the layer map must be a range we wrote (rounded
 * out to sectors); returns the DATA bytes. */
static uint64_t
check_layer_map (struct vdisk *d, const uint8_t *written, uint64_t size)
{
  struct vdisk_extents e = { 0 };
  uint64_t pos = 0, data = 0;
  CU_ASSERT_FATAL (vdisk_map (d, 0, size, VDISK_MAP_LAYER, &e) == 0);
  for (size_t i = 0; i < e.len; i++) {
    CU_ASSERT_EQUAL (e.v[i].offset, pos);
    pos += e.v[i].length;
    if (e.v[i].type != VDISK_EXTENT_DATA)
      continue;
    CU_ASSERT (e.v[i].host_offset >= 0);
    data += e.v[i].length;
    for (uint64_t s = e.v[i].offset; s < e.v[i].offset + e.v[i].length;
         s += 512)
      CU_ASSERT (written[s / 512]);
  }
  CU_ASSERT_EQUAL (pos, size);
  vdisk_extents_free (&e);
  return data;
}

/* Dynamic layers take sectors over one at a time, differencing layers
 * 4 KiB at a time (see vhd.c: what libvhdi reads right). */
static void
mark_g (uint8_t *written, uint64_t off, uint64_t len, uint64_t granule)
{
  uint64_t a = off / granule * granule;
  uint64_t b = (off + len + granule - 1) / granule * granule;
  for (uint64_t s = a / 512; s < b / 512; s++)
    written[s] = 1;
}

static void
mark (uint8_t *written, uint64_t off, uint64_t len)
{
  mark_g (written, off, len, 512);
}

/* Unaligned writes of every awkward shape into a dynamic image whose
 * size is not a multiple of the block size. */
static const uint64_t shapes[][2] = {
  { 0, 1 },                        /* one byte */
  { 1, 511 },                      /* rest of the same sector */
  { 4096 + 300, 511 },             /* straddles a sector boundary */
  { 8192, 512 },                   /* exactly one sector */
  { 2 * MiB - 100, 200 },          /* straddles a block boundary */
  { 3 * MiB + 7, 2 * MiB + 1000 }, /* covers a whole block and more */
  { 7 * MiB + 1, 1 },
};

static void
test_dynamic_unaligned (void)
{
  const char *p = unit_path ("dyn.vhd");
  uint64_t size = 9 * MiB + 3 * 512; /* last block partial */
  struct shadow s = { NULL, calloc (1, size), size };
  uint8_t *written = calloc (1, size / 512 + 8); /* + granule slack */

  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, size, NULL) == 0);
  s.d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (s.d != NULL);
  CU_ASSERT_EQUAL (vdisk_get_size (s.d), size);
  struct vdisk_info info;
  vdisk_get_info (s.d, &info);
  CU_ASSERT_STRING_EQUAL (info.subformat, "dynamic");
  CU_ASSERT_EQUAL (info.block_size, 2 * MiB);
  CU_ASSERT_EQUAL (strlen (info.uuid), 36);

  /* Freshly created: all zero, all hole. */
  check_reads (s.d, s.want, size);
  CU_ASSERT_EQUAL (check_layer_map (s.d, written, size), 0);

  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    shadow_write (&s, shapes[i][0], shapes[i][1], i + 1);
    mark (written, shapes[i][0], shapes[i][1]);
  }
  /* The very last byte of the disk, in the partial last block. */
  shadow_write (&s, size - 1, 1, 99);
  mark (written, size - 1, 1);
  check_reads (s.d, s.want, size);
  /* A half-filled block maps only its filled sectors. */
  uint64_t data = check_layer_map (s.d, written, size);
  CU_ASSERT (data < 4 * MiB);
  CU_ASSERT (vdisk_close (s.d) == 0);

  /* Everything persisted; read-only reopen reads the same. */
  s.d = vdisk_open (p, 0);
  CU_ASSERT_FATAL (s.d != NULL);
  check_reads (s.d, s.want, size);
  CU_ASSERT_EQUAL (check_layer_map (s.d, written, size), data);
  CU_ASSERT (vdisk_pwrite (s.d, "x", 1, 0, 0) == -1);
  vdisk_close (s.d);
  check_libvhdi (p, s.want, size);
  free (s.want);
  free (written);
}

/* New blocks start their data 4096-aligned. */
static void
test_dynamic_alignment (void)
{
  const char *p = unit_path ("align.vhd");
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, 16 * MiB, NULL) == 0);
  struct vdisk *d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_pwrite (d, "abc", 3, 5 * MiB + 10, 0) == 0);
  CU_ASSERT (vdisk_pwrite (d, "abc", 3, 1 * MiB, 0) == 0);
  CU_ASSERT (vdisk_pwrite (d, "abc", 3, 15 * MiB, 0) == 0);
  struct vdisk_extents e = { 0 };
  CU_ASSERT (vdisk_map (d, 0, 16 * MiB, VDISK_MAP_LAYER, &e) == 0);
  int n = 0;
  for (size_t i = 0; i < e.len; i++)
    if (e.v[i].type == VDISK_EXTENT_DATA) {
      n++;
      /* Block start (host) = extent host minus offset in block. */
      uint64_t in_block = e.v[i].offset % (2 * MiB);
      CU_ASSERT ((e.v[i].host_offset - in_block) % 4096 == 0);
      CU_ASSERT_EQUAL (e.v[i].length, 512);
    }
  CU_ASSERT_EQUAL (n, 3);
  vdisk_extents_free (&e);
  vdisk_close (d);
}

static void
test_fixed (void)
{
  const char *p = unit_path ("fixed.vhd");
  uint64_t size = 5 * MiB + 512;
  struct vdisk_create_params params = { .fixed = true };
  struct shadow s = { NULL, calloc (1, size), size };

  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, size, &params) == 0);
  struct stat st;
  CU_ASSERT (stat (p, &st) == 0 && (uint64_t)st.st_size == size + 512);
  s.d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (s.d != NULL);
  struct vdisk_info info;
  vdisk_get_info (s.d, &info);
  CU_ASSERT_STRING_EQUAL (info.subformat, "fixed");
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    if (shapes[i][0] + shapes[i][1] <= size)
      shadow_write (&s, shapes[i][0], shapes[i][1], i + 1);
  shadow_zero (&s, 3 * MiB + 100, 10000, 0);
  check_reads (s.d, s.want, size);

  struct vdisk_extents e = { 0 };
  CU_ASSERT (vdisk_map (s.d, 0, size, VDISK_MAP_LAYER, &e) == 0);
  CU_ASSERT_EQUAL (e.len, 1);
  CU_ASSERT (e.len == 1 && e.v[0].type == VDISK_EXTENT_DATA
             && e.v[0].host_offset == 0 && e.v[0].length == size);
  vdisk_extents_free (&e);
  vdisk_close (s.d);
  check_libvhdi (p, s.want, size);
  free (s.want);
}

/* Three layers, each with its own pattern; partial-sector writes in the
 * upper layers must keep the parent's bytes around them. */
static void
test_chain (void)
{
  const char *base = unit_path ("base.vhd");
  const char *mid = unit_path ("mid.vhd");
  const char *top = unit_path ("top.vhd");
  uint64_t size = 7 * MiB + 512;
  struct shadow s = { NULL, calloc (1, size), size };
  struct vdisk_create_params params = { 0 };
  char uuid_base[37], uuid_mid[37];
  struct vdisk_info info;

  CU_ASSERT_FATAL (vdisk_create (base, VDISK_FORMAT_VHD, size, NULL) == 0);
  s.d = vdisk_open (base, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (s.d != NULL);
  shadow_write (&s, 0, size, 1);
  vdisk_get_info (s.d, &info);
  strcpy (uuid_base, info.uuid);
  vdisk_close (s.d);

  params.parent = "base.vhd"; /* relative to the new image */
  CU_ASSERT_FATAL (vdisk_create (mid, VDISK_FORMAT_VHD, 0, &params) == 0);
  s.d = vdisk_open (mid, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (s.d != NULL);
  vdisk_get_info (s.d, &info);
  CU_ASSERT_STRING_EQUAL (info.subformat, "differencing");
  CU_ASSERT_EQUAL (vdisk_get_size (s.d), size);
  CU_ASSERT_EQUAL (info.chain_depth, 1);
  strcpy (uuid_mid, info.uuid);
  CU_ASSERT (strcmp (uuid_mid, uuid_base) != 0);
  /* An empty differencing layer reads as its parent, maps as a hole. */
  check_reads (s.d, s.want, size);
  uint8_t *written = calloc (1, size / 512 + 8); /* + granule slack */
  CU_ASSERT_EQUAL (check_layer_map (s.d, written, size), 0);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    shadow_write (&s, shapes[i][0], shapes[i][1], 100 + i);
    mark_g (written, shapes[i][0], shapes[i][1], 4096);
  }
  /* Zero in a differencing layer hides the parent. */
  shadow_zero (&s, 5 * MiB + 3, 700, 0);
  mark_g (written, 5 * MiB + 3, 700, 4096);
  shadow_zero (&s, 6 * MiB, 64 * 1024, VDISK_MAY_TRIM);
  mark_g (written, 6 * MiB, 64 * 1024, 4096);
  check_reads (s.d, s.want, size);
  check_layer_map (s.d, written, size);
  vdisk_close (s.d);

  /* Absolute parent name this time. */
  char abs_mid[600];
  CU_ASSERT_FATAL (realpath (mid, abs_mid) != NULL);
  params.parent = abs_mid;
  CU_ASSERT_FATAL (vdisk_create (top, VDISK_FORMAT_VHD, 0, &params) == 0);
  s.d = vdisk_open (top, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (s.d != NULL);
  vdisk_get_info (s.d, &info);
  CU_ASSERT_EQUAL (info.chain_depth, 2);
  CU_ASSERT (info.parent_name && strstr (info.parent_name, "mid.vhd"));
  shadow_write (&s, 2, 3, 200);
  shadow_write (&s, 2 * MiB - 1, 2, 201);
  shadow_write (&s, 4 * MiB + 512 * 3 + 5, 512 * 9, 202);
  shadow_write (&s, size - 600, 600, 203);
  check_reads (s.d, s.want, size);

  /* The flattened map covers everything and says which layer holds it. */
  struct vdisk_extents e = { 0 };
  CU_ASSERT (vdisk_map (s.d, 0, size, 0, &e) == 0);
  uint64_t pos = 0;
  bool seen[3] = { false, false, false };
  for (size_t i = 0; i < e.len; i++) {
    CU_ASSERT_EQUAL (e.v[i].offset, pos);
    pos += e.v[i].length;
    if (e.v[i].depth < 3)
      seen[e.v[i].depth] = true;
  }
  CU_ASSERT_EQUAL (pos, size);
  CU_ASSERT (seen[0] && seen[1] && seen[2]);
  vdisk_extents_free (&e);
  vdisk_close (s.d);

  /* Reopen the chain read-only; then libvhdi follows it too. */
  s.d = vdisk_open (top, 0);
  CU_ASSERT_FATAL (s.d != NULL);
  check_reads (s.d, s.want, size);
  vdisk_close (s.d);
  check_libvhdi (top, s.want, size);
  free (s.want);
  free (written);
}

/* A parent replaced by another image of the same name is refused. */
static void
test_parent_uuid_mismatch (void)
{
  const char *a = unit_path ("p1.vhd");
  const char *c = unit_path ("child.vhd");
  struct vdisk_create_params params = { .parent = "p1.vhd" };

  CU_ASSERT_FATAL (vdisk_create (a, VDISK_FORMAT_VHD, 4 * MiB, NULL) == 0);
  CU_ASSERT_FATAL (vdisk_create (c, VDISK_FORMAT_VHD, 0, &params) == 0);
  struct vdisk *d = vdisk_open (c, 0);
  CU_ASSERT_FATAL (d != NULL);
  vdisk_close (d);
  unlink (a);
  CU_ASSERT_FATAL (vdisk_create (a, VDISK_FORMAT_VHD, 4 * MiB, NULL) == 0);
  d = vdisk_open (c, 0);
  CU_ASSERT (d == NULL);
  CU_ASSERT (strstr (vdisk_get_error (), "parent UUID") != NULL);
  CU_ASSERT (strstr (vdisk_get_error (), "child.vhd") != NULL);
  /* Without the chain the child itself still opens. */
  d = vdisk_open (c, VDISK_OPEN_NO_PARENT);
  CU_ASSERT (d != NULL);
  vdisk_close (d);
  unlink (a);
  d = vdisk_open (c, 0);
  CU_ASSERT (d == NULL);
}

/* Zero in a dynamic image: unallocated stays unallocated, allocated
 * reads zero afterwards. */
static void
test_dynamic_zero (void)
{
  const char *p = unit_path ("zero.vhd");
  uint64_t size = 6 * MiB;
  struct shadow s = { NULL, calloc (1, size), size };
  uint8_t *written = calloc (1, size / 512 + 8);

  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, size, NULL) == 0);
  s.d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (s.d != NULL);
  shadow_zero (&s, 0, size, 0);
  CU_ASSERT_EQUAL (check_layer_map (s.d, written, size), 0);
  shadow_write (&s, 1 * MiB, 2 * MiB, 5);
  shadow_zero (&s, 1 * MiB + 1, 1000, 0);
  shadow_zero (&s, 2 * MiB, 256 * 1024, VDISK_MAY_TRIM);
  check_reads (s.d, s.want, size);
  vdisk_close (s.d);
  check_libvhdi (p, s.want, size);
  free (s.want);
  free (written);
}

/* Four threads, disjoint unaligned ranges interleaved so that they share
 * sectors and blocks: nothing any of them wrote may be lost. */
#define N_THREADS 4
#define PIECE 700

struct worker
{
  struct vdisk *d;
  const uint8_t *want;
  uint64_t size;
  int id;
  int errors;
};

static void *
worker_run (void *arg)
{
  struct worker *w = arg;
  uint64_t n_pieces = w->size / PIECE;
  unsigned seed = w->id * 7919 + 1;
  /* Visit this thread's pieces in a scrambled order. */
  for (uint64_t k = 0; k < n_pieces / N_THREADS; k++) {
    seed = seed * 1103515245 + 12345;
    uint64_t j = ((seed >> 8) % (n_pieces / N_THREADS)) * N_THREADS + w->id;
    uint64_t off = j * PIECE;
    if (vdisk_pwrite (w->d, w->want + off, PIECE, off, 0) != 0) {
      fprintf (stderr, "thread %d: %s\n", w->id, vdisk_get_error ());
      w->errors++;
    }
  }
  /* Then all of them in order, so every piece is written at least once. */
  for (uint64_t j = w->id; j < n_pieces; j += N_THREADS)
    if (vdisk_pwrite (w->d, w->want + j * PIECE, PIECE, j * PIECE, 0) != 0)
      w->errors++;
  return NULL;
}

static void
run_threads (const char *path, const uint8_t *want, uint64_t size,
             uint64_t covered)
{
  struct vdisk *d = vdisk_open (path, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  pthread_t t[N_THREADS];
  struct worker w[N_THREADS];
  for (int i = 0; i < N_THREADS; i++) {
    w[i] = (struct worker){ d, want, covered, i, 0 };
    CU_ASSERT_FATAL (pthread_create (&t[i], NULL, worker_run, &w[i]) == 0);
  }
  for (int i = 0; i < N_THREADS; i++) {
    pthread_join (t[i], NULL);
    CU_ASSERT_EQUAL (w[i].errors, 0);
  }
  check_reads (d, want, size);
  vdisk_close (d);
  d = vdisk_open (path, 0);
  CU_ASSERT_FATAL (d != NULL);
  check_reads (d, want, size);
  vdisk_close (d);
  check_libvhdi (path, want, size);
}

static void
test_threads_dynamic (void)
{
  const char *p = unit_path ("threads.vhd");
  uint64_t size = 6 * MiB,
           covered = size / PIECE / N_THREADS * N_THREADS * PIECE;
  uint8_t *want = calloc (1, size);
  unit_fill (want, covered, 42);
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, size, NULL) == 0);
  run_threads (p, want, size, covered);
  free (want);
}

/* The same in a differencing layer, where a shared sector not yet in the
 * layer must be merged with the parent exactly once. */
static void
test_threads_differencing (void)
{
  const char *base = unit_path ("tbase.vhd");
  const char *top = unit_path ("ttop.vhd");
  uint64_t size = 6 * MiB,
           covered = size / PIECE / N_THREADS * N_THREADS * PIECE;
  uint8_t *want = malloc (size);
  struct vdisk_create_params params = { .parent = "tbase.vhd" };

  unit_fill (want, size, 7);
  CU_ASSERT_FATAL (vdisk_create (base, VDISK_FORMAT_VHD, size, NULL) == 0);
  struct vdisk *d = vdisk_open (base, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_pwrite (d, want, size, 0, 0) == 0);
  vdisk_close (d);
  CU_ASSERT_FATAL (vdisk_create (top, VDISK_FORMAT_VHD, 0, &params) == 0);
  unit_fill (want, covered, 43);
  run_threads (top, want, size, covered);
  free (want);
}

/* A 2 TiB image: creating, writing at the far end and mapping cost
 * O(BAT), not O(size). */
static void
test_huge_map (void)
{
  const char *p = unit_path ("huge.vhd");
  uint64_t size = UINT64_C (2) << 40;
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, size, NULL) == 0);
  struct vdisk *d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_pwrite (d, "end", 3, size - 3, 0) == 0);
  CU_ASSERT (vdisk_pwrite (d, "mid", 3, size / 2 + 1000, 0) == 0);
  double t0 = monotonic_seconds ();
  struct vdisk_extents e = { 0 };
  CU_ASSERT (vdisk_map (d, 0, size, 0, &e) == 0);
  double ms = (monotonic_seconds () - t0) * 1e3;
  fprintf (stderr, "map of 2 TiB VHD: %zu extents, %.1f ms\n", e.len, ms);
  CU_ASSERT (ms < 500);
  CU_ASSERT_EQUAL (e.len, 4);
  uint64_t data = 0;
  for (size_t i = 0; i < e.len; i++)
    if (e.v[i].type == VDISK_EXTENT_DATA)
      data += e.v[i].length;
  CU_ASSERT_EQUAL (data, 1024);
  vdisk_extents_free (&e);
  char buf[3];
  CU_ASSERT (vdisk_pread (d, buf, 3, size - 3) == 0);
  CU_ASSERT (memcmp (buf, "end", 3) == 0);
  vdisk_close (d);
}

/* Sizes and block sizes we refuse to create (and one we round). */
static void
test_create_rejects (void)
{
  struct vdisk_create_params bad_bs = { .block_size = 3000 };
  struct vdisk *d;
  /* Not refused: rounded up to whole sectors, as qemu-img does. */
  CU_ASSERT_FATAL (
      vdisk_create (unit_path ("r1.vhd"), VDISK_FORMAT_VHD, 1000, NULL) == 0);
  CU_ASSERT_FATAL ((d = vdisk_open (unit_path ("r1.vhd"), 0)) != NULL);
  CU_ASSERT (vdisk_get_size (d) == 1024);
  vdisk_close (d);
  CU_ASSERT (vdisk_create (unit_path ("r2.vhd"), VDISK_FORMAT_VHD,
                           (UINT64_C (2) << 40) + 512, NULL)
             == -1);
  CU_ASSERT (
      vdisk_create (unit_path ("r3.vhd"), VDISK_FORMAT_VHD, MiB, &bad_bs)
      == -1);
  CU_ASSERT (strstr (vdisk_get_error (), "block size") != NULL);
  CU_ASSERT (access (unit_path ("r3.vhd"), F_OK) == -1);
}

/* A small block size works end to end, including for libvhdi. */
static void
test_small_blocks (void)
{
  const char *p = unit_path ("small.vhd");
  struct vdisk_create_params params = { .block_size = 512 * 1024 };
  uint64_t size = 3 * MiB + 4096;
  struct shadow s = { NULL, calloc (1, size), size };
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, size, &params) == 0);
  s.d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (s.d != NULL);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    if (shapes[i][0] + shapes[i][1] <= size)
      shadow_write (&s, shapes[i][0], shapes[i][1], 300 + i);
  shadow_write (&s, 512 * 1024 - 3, 6, 77);
  check_reads (s.d, s.want, size);
  vdisk_close (s.d);
  check_libvhdi (p, s.want, size);
  free (s.want);
}

static const struct unit_test tests[] = {
  { "dynamic VHD: unaligned writes, odd size, sector map",
    test_dynamic_unaligned },
  { "dynamic VHD: new block data is 4096-aligned", test_dynamic_alignment },
  { "fixed VHD: write, zero, read, map", test_fixed },
  { "differencing chain of 3: reads, maps, libvhdi", test_chain },
  { "differencing: parent UUID mismatch refused", test_parent_uuid_mismatch },
  { "dynamic VHD: zero", test_dynamic_zero },
  { "4 threads, disjoint unaligned writes: dynamic", test_threads_dynamic },
  { "4 threads, disjoint unaligned writes: differencing",
    test_threads_differencing },
  { "2 TiB VHD maps in O(BAT)", test_huge_map },
  { "create rejects bad sizes and block sizes", test_create_rejects },
  { "512 KiB blocks", test_small_blocks },
  { NULL, NULL },
};

int
main (void)
{
  return unit_main ("vhd", tests);
}
