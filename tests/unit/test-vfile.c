/* vfile: O_DIRECT alignment handling, tmpfs fallback, libaio batches,
 * and read-modify-write that never loses a neighbour's bytes. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "unit.h"
#include "vdisk-internal.h"

static void
test_unaligned_roundtrip (void)
{
  struct vfile f;
  unsigned char w[10000], r[10000];
  CU_ASSERT_FATAL (vfile_create (&f, unit_path ("rt"), true) == 0);
  unit_fill (w, sizeof w, 1);
  /* Odd offsets and lengths must work whether or not O_DIRECT is on. */
  CU_ASSERT (vfile_pwrite (&f, w, 7777, 4097) == 0);
  CU_ASSERT (vfile_pwrite (&f, w + 7777, 3, 1) == 0);
  CU_ASSERT (vfile_pread (&f, r, 7777, 4097) == 0);
  CU_ASSERT (memcmp (r, w, 7777) == 0);
  CU_ASSERT (vfile_pread (&f, r, 3, 1) == 0);
  CU_ASSERT (memcmp (r, w + 7777, 3) == 0);
  /* The file grew to exactly what was written, not to the aligned end. */
  uint64_t size;
  CU_ASSERT (vfile_get_size (&f, &size) == 0);
  CU_ASSERT_EQUAL (size, 4097 + 7777);
  vfile_close (&f);
}

static void
test_short_read_is_an_error (void)
{
  struct vfile f;
  char b[100];
  CU_ASSERT_FATAL (vfile_create (&f, unit_path ("short"), true) == 0);
  CU_ASSERT (vfile_pwrite (&f, "abc", 3, 0) == 0);
  CU_ASSERT (vfile_pread (&f, b, 10, 0) == -1);
  CU_ASSERT (strstr (vdisk_get_error (), "unexpected end of file") != NULL);
  CU_ASSERT (strstr (vdisk_get_error (), unit_path ("short")) != NULL);
  memset (b, 'x', sizeof b);
  CU_ASSERT (vfile_pread_upto (&f, b, 10, 0) == 0);
  CU_ASSERT (memcmp (b, "abc\0\0\0\0\0\0\0", 10) == 0);
  vfile_close (&f);
}

static void
test_tmpfs_falls_back_to_buffered (void)
{
  struct stat st;
  if (stat ("/dev/shm", &st) != 0)
    return; /* no tmpfs here: nothing to prove */
  char path[64];
  snprintf (path, sizeof path, "/dev/shm/vdm-vfile-%d", (int)getpid ());
  unlink (path);
  struct vfile f;
  /* Kernels before 6.6 refuse O_DIRECT on tmpfs (EINVAL) and vfile must
   * then fall back to buffered I/O; newer ones accept it.  Either way the
   * file must work. */
  CU_ASSERT_FATAL (vfile_create (&f, path, true) == 0);
  CU_ASSERT (vfile_pwrite (&f, "hello", 5, 3) == 0);
  char b[5];
  CU_ASSERT (vfile_pread (&f, b, 5, 3) == 0);
  CU_ASSERT (memcmp (b, "hello", 5) == 0);
  vfile_close (&f);
  unlink (path);
}

struct writer
{
  struct vfile *f;
  int id;
};

/* Each thread writes single bytes at its own offsets, all inside the same
 * few 4K blocks: any read-modify-write race loses bytes. */
static void *
byte_writer (void *p)
{
  struct writer *w = p;
  for (int i = 0; i < 2000; i++) {
    unsigned char c = (unsigned char)(w->id + 1);
    uint64_t off = (uint64_t)i * 4 + w->id;
    if (vfile_pwrite (w->f, &c, 1, off) != 0)
      return (void *)1;
  }
  return NULL;
}

static void
test_concurrent_small_writes_lose_nothing (void)
{
  struct vfile f;
  CU_ASSERT_FATAL (vfile_create (&f, unit_path ("rmw"), true) == 0);
  CU_ASSERT (vfile_truncate (&f, 8000) == 0);
  pthread_t t[4];
  struct writer w[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (struct writer){ &f, i };
    pthread_create (&t[i], NULL, byte_writer, &w[i]);
  }
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join (t[i], &r);
    CU_ASSERT (r == NULL);
  }
  unsigned char b[8000];
  CU_ASSERT (vfile_pread (&f, b, 8000, 0) == 0);
  int bad = 0;
  for (int i = 0; i < 8000; i++)
    bad += b[i] != (unsigned char)(i % 4 + 1);
  CU_ASSERT_EQUAL (bad, 0);
  vfile_close (&f);
}

static void
test_batch_scattered (void)
{
  struct vfile f;
  CU_ASSERT_FATAL (vfile_create (&f, unit_path ("batch"), true) == 0);
  enum
  {
    N = 100,
    SZ = 8192
  };
  unsigned char *w = NULL, *r = NULL;
  CU_ASSERT_FATAL (posix_memalign ((void **)&w, 4096, N * SZ) == 0);
  CU_ASSERT_FATAL (posix_memalign ((void **)&r, 4096, N * SZ) == 0);
  unit_fill (w, N * SZ, 3);
  struct vfile_req reqs[N];
  /* Scattered, in reverse order, some unaligned: more than one aio round. */
  for (int i = 0; i < N; i++)
    reqs[i] = (struct vfile_req){ w + i * SZ, SZ - (i % 3 ? 0 : 1),
                                  (uint64_t)(N - i) * 65536 + (i % 5 ? 0 : 7),
                                  true };
  CU_ASSERT (vfile_rw_batch (&f, reqs, N) == 0);
  for (int i = 0; i < N; i++) {
    reqs[i].buf = r + i * SZ;
    reqs[i].write = false;
  }
  memset (r, 0, N * SZ);
  CU_ASSERT (vfile_rw_batch (&f, reqs, N) == 0);
  int bad = 0;
  for (int i = 0; i < N; i++)
    bad += memcmp (r + i * SZ, w + i * SZ, reqs[i].count) != 0;
  CU_ASSERT_EQUAL (bad, 0);
  free (w);
  free (r);
  vfile_close (&f);
}

static void
test_zero_keeps_neighbours (void)
{
  struct vfile f;
  unsigned char b[65536], r[65536];
  CU_ASSERT_FATAL (vfile_create (&f, unit_path ("zero"), true) == 0);
  memset (b, 0xee, sizeof b);
  CU_ASSERT (vfile_pwrite (&f, b, sizeof b, 0) == 0);
  CU_ASSERT (vfile_zero (&f, 30000, 1000, true) == 0);
  CU_ASSERT (vfile_pread (&f, r, sizeof r, 0) == 0);
  int bad = 0;
  for (int i = 0; i < 65536; i++)
    bad += r[i] != ((i >= 1000 && i < 31000) ? 0 : 0xee);
  CU_ASSERT_EQUAL (bad, 0);
  /* Zeroing past the end extends the file with a hole. */
  CU_ASSERT (vfile_zero (&f, 1 << 20, 1 << 20, false) == 0);
  uint64_t size;
  CU_ASSERT (vfile_get_size (&f, &size) == 0);
  CU_ASSERT_EQUAL (size, 2 << 20);
  vfile_close (&f);
}

static void
test_open_missing_names_the_file (void)
{
  struct vfile f;
  CU_ASSERT (vfile_open (&f, unit_path ("nope"), false, true) == -1);
  CU_ASSERT (strstr (vdisk_get_error (), unit_path ("nope")) != NULL);
  CU_ASSERT_EQUAL (vdisk_get_errno (), ENOENT);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "unaligned roundtrip", test_unaligned_roundtrip },
    { "short read is an error", test_short_read_is_an_error },
    { "tmpfs falls back to buffered", test_tmpfs_falls_back_to_buffered },
    { "concurrent small writes lose nothing",
      test_concurrent_small_writes_lose_nothing },
    { "batch scattered", test_batch_scattered },
    { "zero keeps neighbours", test_zero_keeps_neighbours },
    { "open missing names the file", test_open_missing_names_the_file },
    { NULL },
  };
  return unit_main ("vfile", tests);
}
