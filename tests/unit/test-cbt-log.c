/* The changed-block log (cbt-log.h): marks land in the file in XenAPI's
 * bit order, a clean close sets the flag, a writer that died leaves a log
 * the next writer resets with its reason, snapshot rotation and the walk
 * along predecessor links, export/import keep the generation, bad files
 * are refused with the file's name. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <sys/wait.h>

#include "cbt-log.h"
#include "unit.h"

#define MiB (UINT64_C (1) << 20)
#define BLK CBT_BLOCK_SIZE

static const char *
log_path (const char *uuid)
{
  static __thread char buf[4][600];
  static __thread int i;
  i = (i + 1) % 4;
  snprintf (buf[i], sizeof buf[i], "%s/%s%s", unit_dir, uuid,
            CBT_LOG_SUFFIX);
  return buf[i];
}

static const char *const U1 = "11111111-1111-4111-8111-111111111111";
static const char *const U2 = "22222222-2222-4222-8222-222222222222";
static const char *const U3 = "33333333-3333-4333-8333-333333333333";
static const char *const V = "99999999-9999-4999-8999-999999999999";

static struct cbt_log *
open_ok (const char *path, unsigned flags)
{
  g_autoptr (GError) err = NULL;
  struct cbt_log *log = cbt_log_open (path, flags, &err);
  if (!log)
    fprintf (stderr, "%s\n", err->message);
  CU_ASSERT_PTR_NOT_NULL_FATAL (log);
  return log;
}

static void
mark_ok (struct cbt_log *log, uint64_t off, uint64_t count)
{
  g_autoptr (GError) err = NULL;
  int r = cbt_log_mark (log, off, count, &err);
  if (r)
    fprintf (stderr, "%s\n", err->message);
  CU_ASSERT_EQUAL (r, 0);
}

static struct cbt_log_info
info_of (const char *path)
{
  struct cbt_log_info i;
  g_autoptr (GError) err = NULL;
  CU_ASSERT_EQUAL (cbt_log_read_info (path, &i, &err), 0);
  return i;
}

/* The file's bitmap bytes (after the 4 KiB header). */
static void
file_bitmap (const char *path, uint8_t *out, size_t n)
{
  int fd = open (path, O_RDONLY);
  CU_ASSERT_EQUAL_FATAL (pread (fd, out, n, 4096), (ssize_t)n);
  close (fd);
}

static void
test_create_mark_close (void)
{
  const char *p = log_path (V);
  g_autoptr (GError) err = NULL;
  /* 10 MiB + 1 byte: 161 blocks, 21 bitmap bytes. */
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (p, 10 * MiB + 1, &err), 0);
  struct cbt_log_info i = info_of (p);
  CU_ASSERT_EQUAL (i.blocks, 161);
  CU_ASSERT_EQUAL (i.block_size, 65536);
  CU_ASSERT (i.consistent);
  CU_ASSERT (!i.in_use);
  CU_ASSERT_STRING_EQUAL (i.predecessor, "");
  CU_ASSERT_STRING_EQUAL (i.reset_reason, "enabled");
  CU_ASSERT_EQUAL (i.blocks_set, 0);

  struct cbt_log *w = open_ok (p, CBT_LOG_WRITER);
  struct cbt_log_info j = info_of (p);
  CU_ASSERT (!j.consistent);
  CU_ASSERT (j.in_use);
  CU_ASSERT_STRING_EQUAL (j.generation, i.generation);
  /* A second writer is refused. */
  CU_ASSERT_PTR_NULL (cbt_log_open (p, CBT_LOG_WRITER, &err));
  CU_ASSERT_EQUAL (err->code, EBUSY);
  g_clear_error (&err);

  mark_ok (w, 0, 1);                 /* block 0 */
  mark_ok (w, 9 * BLK - 1, 2);       /* blocks 8 and 9 */
  mark_ok (w, 160 * BLK, 1);         /* the last, partial block */
  mark_ok (w, 20 * BLK, 0);          /* nothing */
  mark_ok (w, 0, 1);                 /* again: no change */
  CU_ASSERT_EQUAL (cbt_log_mark (w, 10 * MiB, 2, &err), -1);
  CU_ASSERT_EQUAL (err->code, EINVAL);
  g_clear_error (&err);

  uint8_t b[21];
  file_bitmap (p, b, sizeof b);
  CU_ASSERT_EQUAL (b[0], 0x80); /* block 0: the most significant bit */
  CU_ASSERT_EQUAL (b[1], 0xc0); /* blocks 8, 9 */
  CU_ASSERT_EQUAL (b[20], 0x80); /* block 160 */
  for (int k = 2; k < 20; k++)
    CU_ASSERT_EQUAL (b[k], 0);
  CU_ASSERT_EQUAL (cbt_log_close (w, &err), 0);
  i = info_of (p);
  CU_ASSERT (i.consistent);
  CU_ASSERT (!i.in_use);
  CU_ASSERT_EQUAL (i.blocks_set, 4);
  CU_ASSERT_STRING_EQUAL (i.reset_reason, "enabled");
}

/* Threads marking at once lose no bit. */
struct marker
{
  struct cbt_log *log;
  int first;
};

static void *
mark_thread (void *arg)
{
  struct marker *m = arg;
  for (int k = m->first; k < 1024; k += 4)
    if (cbt_log_mark (m->log, (uint64_t)k * BLK + 100, 10, NULL) == -1)
      return (void *)1;
  return NULL;
}

static void
test_threads (void)
{
  const char *p = log_path (U3);
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (p, 1024 * BLK, NULL), 0);
  struct cbt_log *w = open_ok (p, CBT_LOG_WRITER);
  pthread_t t[4];
  struct marker m[4];
  for (int k = 0; k < 4; k++) {
    m[k] = (struct marker){ w, k };
    pthread_create (&t[k], NULL, mark_thread, &m[k]);
  }
  for (int k = 0; k < 4; k++) {
    void *r;
    pthread_join (t[k], &r);
    CU_ASSERT_PTR_NULL (r);
  }
  CU_ASSERT_EQUAL (cbt_log_close (w, NULL), 0);
  CU_ASSERT_EQUAL (info_of (p).blocks_set, 1024);
  unlink (p);
}

/* A writer killed with SIGKILL: the next writer resets the log. */
static void
test_dead_writer_resets (void)
{
  const char *p = log_path (U1);
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (p, 4 * MiB, NULL), 0);
  struct cbt_log_info before = info_of (p);
  pid_t pid = fork ();
  if (pid == 0) {
    struct cbt_log *w = cbt_log_open (p, CBT_LOG_WRITER, NULL);
    if (w && cbt_log_mark (w, 0, 1, NULL) == 0)
      raise (SIGKILL);
    _exit (1);
  }
  int status;
  waitpid (pid, &status, 0);
  CU_ASSERT (WIFSIGNALED (status));
  struct cbt_log_info dead = info_of (p);
  CU_ASSERT (!dead.consistent);
  CU_ASSERT (!dead.in_use);
  CU_ASSERT_EQUAL (dead.blocks_set, 1); /* the mark outlived the writer */

  struct cbt_log *w = open_ok (p, CBT_LOG_WRITER);
  CU_ASSERT_EQUAL (cbt_log_close (w, NULL), 0);
  struct cbt_log_info after = info_of (p);
  CU_ASSERT (after.consistent);
  CU_ASSERT_STRING_NOT_EQUAL (after.generation, before.generation);
  CU_ASSERT_STRING_EQUAL (after.reset_reason, "not closed cleanly");
  CU_ASSERT (after.reset_time > 0);
  CU_ASSERT_EQUAL (after.blocks_set, 64); /* every block */
  unlink (p);
}

static uint8_t *
changed (const char *from, const char *to, size_t *n, int want_errno)
{
  g_autoptr (GError) err = NULL;
  uint8_t *b = cbt_log_changed_blocks (unit_dir, from, to, n, &err);
  if (want_errno) {
    CU_ASSERT_PTR_NULL (b);
    CU_ASSERT (err && err->code == want_errno);
  }
  else {
    if (!b)
      fprintf (stderr, "%s\n", err->message);
    CU_ASSERT_PTR_NOT_NULL (b);
  }
  return b;
}

/* V written, snapshot U1, written, snapshot U2, written: the walk. */
static void
test_rotate_and_walk (void)
{
  g_autofree char *pv = g_strdup (log_path (V));
  size_t n;
  g_autoptr (GError) err = NULL;
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (pv, 64 * BLK, NULL), 0);
  struct cbt_log *w = open_ok (pv, CBT_LOG_WRITER);
  mark_ok (w, 0, 1);
  /* Rotated under a quiesced writer: it keeps its descriptor. */
  CU_ASSERT_EQUAL_FATAL (cbt_log_rotate (pv, log_path (U1), U1, &err), 0);
  struct cbt_log_info s1 = info_of (log_path (U1)), v = info_of (pv);
  CU_ASSERT (s1.consistent);
  CU_ASSERT_EQUAL (s1.blocks_set, 1);
  CU_ASSERT_STRING_EQUAL (s1.generation, v.generation);
  CU_ASSERT_STRING_EQUAL (v.predecessor, U1);
  CU_ASSERT_EQUAL (v.blocks_set, 0);
  CU_ASSERT (v.in_use && !v.consistent);
  mark_ok (w, 10 * BLK, 2 * BLK); /* blocks 10, 11 */
  CU_ASSERT_EQUAL_FATAL (cbt_log_rotate (pv, log_path (U2), U2, &err), 0);
  mark_ok (w, 63 * BLK, 1);
  CU_ASSERT_EQUAL (cbt_log_close (w, NULL), 0);

  g_autofree uint8_t *b12 = changed (U1, U2, &n, 0);
  CU_ASSERT_EQUAL (n, 8);
  CU_ASSERT_EQUAL (b12[1], 0x30); /* blocks 10, 11 */
  CU_ASSERT_EQUAL (b12[0] | b12[7], 0);
  g_autofree uint8_t *b1v = changed (U1, V, &n, 0);
  CU_ASSERT_EQUAL (b1v[1], 0x30);
  CU_ASSERT_EQUAL (b1v[7], 0x01);
  CU_ASSERT_EQUAL (b1v[0], 0);
  g_autofree uint8_t *b22 = changed (U2, U2, &n, 0);
  CU_ASSERT_EQUAL (b22[1], 0);
  /* Backwards, or from before enabling: no chain. */
  g_free (changed (U2, U1, &n, ENODATA));
  g_free (changed (U3, U2, &n, ENODATA));

  /* The wire form. */
  g_autofree char *b64 = cbt_bitmap_to_base64 (b1v, n);
  CU_ASSERT_STRING_EQUAL (b64, "ADAAAAAAAAE=");

  /* Destroying U1's successor U2 merges it into V: U1..V still works. */
  CU_ASSERT_EQUAL (cbt_log_coalesce (log_path (U2), pv, &err), 0);
  unlink (log_path (U2));
  CU_ASSERT_STRING_EQUAL (info_of (pv).predecessor, U1);
  g_autofree uint8_t *c1v = changed (U1, V, &n, 0);
  CU_ASSERT_EQUAL (memcmp (c1v, b1v, n), 0);

  /* A reset breaks every chain through it, with its reason. */
  CU_ASSERT_EQUAL (cbt_log_reset (pv, "test", &err), 0);
  g_autoptr (GError) e2 = NULL;
  CU_ASSERT_PTR_NULL (cbt_log_changed_blocks (unit_dir, U1, V, &n, &e2));
  CU_ASSERT (e2 && e2->code == ENODATA && strstr (e2->message, "test"));
  unlink (log_path (U1));
  unlink (pv);
}

static void
test_export_import (void)
{
  const char *p = log_path (U1), *q = log_path (U2);
  size_t len;
  g_autoptr (GError) err = NULL;
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (p, 3 * MiB, NULL), 0);
  struct cbt_log *w = open_ok (p, CBT_LOG_WRITER);
  mark_ok (w, MiB, 1);
  /* A live writer's log is exported as it is. */
  g_autofree uint8_t *bytes = cbt_log_export (p, &len, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (bytes);
  CU_ASSERT_EQUAL (cbt_log_close (w, NULL), 0);
  CU_ASSERT_EQUAL (cbt_log_import (q, bytes, len, 4 * MiB, &err), -1);
  CU_ASSERT_EQUAL (err->code, EINVAL);
  g_clear_error (&err);
  CU_ASSERT_EQUAL (cbt_log_import (q, bytes, len, 3 * MiB, &err), 0);
  struct cbt_log_info a = info_of (p), b = info_of (q);
  CU_ASSERT_STRING_EQUAL (a.generation, b.generation);
  CU_ASSERT (b.consistent);
  CU_ASSERT_EQUAL (b.blocks_set, 1);
  unlink (p);
  unlink (q);
}

/* A merge while the writer (another process) marks: no bit of either is
 * lost, and the log takes the merged one's generation. */
static void
test_merge_under_writer (void)
{
  g_autofree char *p = g_strdup (log_path (U2));
  g_autofree char *q = g_strdup (log_path (U3));
  size_t len;
  enum { N = 4096 };
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (p, N * (uint64_t)BLK, NULL), 0);
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (q, N * (uint64_t)BLK, NULL), 0);
  /* The source's log: every odd block. */
  struct cbt_log *src = open_ok (q, CBT_LOG_WRITER);
  for (int k = 1; k < N; k += 2)
    mark_ok (src, (uint64_t)k * BLK, 1);
  CU_ASSERT_EQUAL (cbt_log_close (src, NULL), 0);
  g_autofree uint8_t *bytes = cbt_log_export (q, &len, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (bytes);

  int go[2];
  CU_ASSERT_EQUAL_FATAL (pipe (go), 0);
  pid_t pid = fork ();
  if (pid == 0) {
    char c;
    struct cbt_log *w = cbt_log_open (p, CBT_LOG_WRITER, NULL);
    if (!w || read (go[0], &c, 1) != 1)
      _exit (1);
    for (int round = 0; round < 50; round++)
      for (int k = 0; k < N; k += 2)
        if (cbt_log_mark (w, (uint64_t)k * BLK, 1, NULL) == -1)
          _exit (1);
    _exit (cbt_log_close (w, NULL) == 0 ? 0 : 1);
  }
  while (info_of (p).consistent) /* the child has it */
    usleep (1000);
  CU_ASSERT_EQUAL (write (go[1], "x", 1), 1);
  g_autoptr (GError) err = NULL;
  CU_ASSERT_EQUAL (cbt_log_merge (p, bytes, len, &err), 0);
  int status;
  waitpid (pid, &status, 0);
  CU_ASSERT (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  struct cbt_log_info i = info_of (p);
  CU_ASSERT_EQUAL (i.blocks_set, N);
  CU_ASSERT_STRING_EQUAL (i.generation, info_of (q).generation);
  CU_ASSERT (i.consistent);
  close (go[0]);
  close (go[1]);
  unlink (p);
  unlink (q);
}

/* Destroying a snapshot coalesces its log into the served leaf's while
 * the leaf's writer (another process) marks: every block either marked
 * stays marked, the link skips the destroyed snapshot, and the writer's
 * clean close still says consistent. */
static void
test_coalesce_under_writer (void)
{
  g_autofree char *leaf = g_strdup (log_path (U3));
  g_autofree char *snap = g_strdup (log_path (U2));
  enum { N = 8192 };
  g_autoptr (GError) err = NULL;
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (leaf, N * (uint64_t)BLK, NULL), 0);
  /* Odd blocks changed before the snapshot U2, whose log takes them. */
  struct cbt_log *w = open_ok (leaf, CBT_LOG_WRITER);
  for (int k = 1; k < N; k += 2)
    mark_ok (w, (uint64_t)k * BLK, 1);
  CU_ASSERT_EQUAL (cbt_log_close (w, NULL), 0);
  CU_ASSERT_EQUAL_FATAL (cbt_log_rotate (leaf, snap, U2, &err), 0);
  CU_ASSERT_STRING_EQUAL (info_of (leaf).predecessor, U2);

  int go[2];
  CU_ASSERT_EQUAL_FATAL (pipe (go), 0);
  pid_t pid = fork ();
  if (pid == 0) {
    /* Even blocks, each once, spread out so that the coalesce falls
     * among them. */
    char c;
    struct cbt_log *l = cbt_log_open (leaf, CBT_LOG_WRITER, NULL);
    if (!l || read (go[0], &c, 1) != 1)
      _exit (1);
    for (int k = 0; k < N; k += 2) {
      if (cbt_log_mark (l, (uint64_t)k * BLK, 1, NULL) == -1)
        _exit (1);
      if (k % 256 == 0)
        usleep (200);
    }
    _exit (cbt_log_close (l, NULL) == 0 ? 0 : 1);
  }
  while (info_of (leaf).consistent) /* the child has it */
    usleep (1000);
  CU_ASSERT_EQUAL (write (go[1], "x", 1), 1);
  usleep (5000);
  CU_ASSERT_EQUAL (cbt_log_coalesce (snap, leaf, &err), 0);
  int status;
  waitpid (pid, &status, 0);
  CU_ASSERT (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  struct cbt_log_info i = info_of (leaf);
  CU_ASSERT_EQUAL (i.blocks_set, N);
  CU_ASSERT_STRING_EQUAL (i.predecessor, info_of (snap).predecessor);
  CU_ASSERT (i.consistent);
  close (go[0]);
  close (go[1]);
  unlink (leaf);
  unlink (snap);
}

/* A move gave the snapshot U2 the uuid U1: relinking the leaf's log
 * while its writer holds it changes only the predecessor (the marks and
 * the writer's flag stay), is idempotent, and the walk then goes from
 * the new uuid; a log linked elsewhere is left alone. */
static void
test_relink (void)
{
  g_autofree char *leaf = g_strdup (log_path (U3));
  g_autofree char *snap = g_strdup (log_path (U2));
  g_autoptr (GError) err = NULL;
  size_t len = 0;
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (leaf, 64 * BLK, NULL), 0);
  CU_ASSERT_EQUAL_FATAL (cbt_log_rotate (leaf, snap, U2, &err), 0);
  struct cbt_log *w = open_ok (leaf, CBT_LOG_WRITER);
  mark_ok (w, 5 * BLK, 1);
  CU_ASSERT_EQUAL (cbt_log_relink (leaf, U2, U1, &err), 0);
  mark_ok (w, 9 * BLK, 1);
  struct cbt_log_info i = info_of (leaf);
  CU_ASSERT_STRING_EQUAL (i.predecessor, U1);
  CU_ASSERT_EQUAL (i.blocks_set, 2);
  CU_ASSERT (!i.consistent);
  CU_ASSERT_EQUAL (cbt_log_relink (leaf, U2, U1, &err), 0);
  CU_ASSERT_EQUAL (cbt_log_relink (leaf, U2, V, &err), 0);
  CU_ASSERT_STRING_EQUAL (info_of (leaf).predecessor, U1);
  CU_ASSERT_EQUAL (cbt_log_close (w, NULL), 0);
  CU_ASSERT (info_of (leaf).consistent);
  g_autofree uint8_t *b = cbt_log_changed_blocks (unit_dir, U1, U3, &len,
                                                  &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (b);
  CU_ASSERT (cbt_bitmap_test (b, 5) && cbt_bitmap_test (b, 9));
  CU_ASSERT_EQUAL (cbt_log_relink (leaf, U1, "not-a-uuid-but-far-too-long-"
                                   "for-the-field", &err), -1);
  CU_ASSERT (err && err->code == EINVAL && strstr (err->message, leaf));
  unlink (leaf);
  unlink (snap);
}

/* Bad files: clear errors naming the file, never a crash. */
static void
test_bad_files (void)
{
  const char *p = log_path (U3);
  g_autoptr (GError) err = NULL;
  CU_ASSERT_EQUAL_FATAL (cbt_log_create (p, 2 * MiB, NULL), 0);
  /* Truncated bitmap. */
  CU_ASSERT_EQUAL (truncate (p, 4096 + 2), 0);
  CU_ASSERT_PTR_NULL (cbt_log_open (p, 0, &err));
  CU_ASSERT (err && err->code == EINVAL && strstr (err->message, p)
             && strstr (err->message, "too short"));
  g_clear_error (&err);
  /* Bad magic. */
  CU_ASSERT_EQUAL (unit_sh ("printf XXXX | dd of='%s' conv=notrunc "
                            "status=none",
                            p),
                   0);
  CU_ASSERT_PTR_NULL (cbt_log_open (p, CBT_LOG_WRITER, &err));
  CU_ASSERT (err && strstr (err->message, "bad magic"));
  g_clear_error (&err);
  /* Short file, missing file. */
  CU_ASSERT_EQUAL (truncate (p, 10), 0);
  CU_ASSERT_PTR_NULL (cbt_log_open (p, 0, &err));
  CU_ASSERT (err && err->code == EINVAL);
  g_clear_error (&err);
  unlink (p);
  CU_ASSERT_PTR_NULL (cbt_log_open (p, 0, &err));
  CU_ASSERT (err && err->code == ENOENT);
  g_clear_error (&err);
  CU_ASSERT_EQUAL (cbt_log_create (p, 0, &err), -1);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "create, mark, close", test_create_mark_close },
    { "marks from threads", test_threads },
    { "a dead writer's log is reset", test_dead_writer_resets },
    { "rotation and the walk", test_rotate_and_walk },
    { "export and import", test_export_import },
    { "merge while a writer marks", test_merge_under_writer },
    { "coalesce while a writer marks", test_coalesce_under_writer },
    { "relink to a moved snapshot", test_relink },
    { "bad files", test_bad_files },
    { NULL, NULL },
  };
  return unit_main ("cbt-log", tests);
}
