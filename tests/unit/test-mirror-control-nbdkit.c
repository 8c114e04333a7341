/* The typed control client against a real nbdkit running the mirror
 * filter over a file, mirroring to a second nbdkit: status, start, wait
 * until ready (with progress), refusals, complete (the target then holds
 * the source's bytes), cancel, abort, sync=none and sync=top's refusal
 * on a plugin without layers, pause and resume, cbt-open's refusals and
 * cbt-close with no log, and a pivot.  Skipped (77) without
 * nbdkit, or in the sanitizer build, where only tests/functions.sh
 * starts nbdkit with the runtime the filter needs (the filter's own
 * tests, tests/test-mirror-*.sh, run there). */
#include <signal.h>
#include <sys/wait.h>

#include "control-client.h"
#include "unit.h"

#define SIZE (16 << 20)

static GPid src_pid, dst_pid;
static char *filter, *ctl, *dst_uri;

static GPid
spawn (char **argv, const char *sock)
{
  g_autoptr (GError) e = NULL;
  GPid pid;

  if (!g_spawn_async (NULL, argv, NULL,
                      G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL,
                      NULL, &pid, &e)) {
    fprintf (stderr, "cannot start nbdkit: %s\n", e->message);
    exit (99);
  }
  for (int i = 0; i < 400 && !g_file_test (sock, G_FILE_TEST_EXISTS); i++)
    g_usleep (25 * 1000);
  if (!g_file_test (sock, G_FILE_TEST_EXISTS)) {
    fprintf (stderr, "nbdkit did not create %s\n", sock);
    exit (99);
  }
  return pid;
}

static void
stop (GPid pid)
{
  if (pid > 0) {
    kill (pid, SIGTERM);
    waitpid (pid, NULL, 0);
  }
}

static void
stop_all (void)
{
  stop (src_pid);
  stop (dst_pid);
}

/* The source: random bytes in places, zeros elsewhere. */
static void
make_files (void)
{
  g_autofree char *buf = g_malloc0 (SIZE);

  unit_fill (buf, 4 << 20, 1);
  unit_fill (buf + (12 << 20), 1 << 20, 2);
  CU_ASSERT_FATAL (g_file_set_contents (unit_path ("src.raw"), buf, SIZE,
                                        NULL));
  memset (buf, 0, SIZE);
  CU_ASSERT_FATAL (g_file_set_contents (unit_path ("dst.raw"), buf, SIZE,
                                        NULL));
}

/* The first test: both servers up, in the scratch directory. */
static void
test_servers_start (void)
{
  /* unit_path's buffers are few: each path is kept here. */
  g_autofree char *src_sock = g_strdup (unit_path ("src.sock"));
  g_autofree char *dst_sock = g_strdup (unit_path ("dst.sock"));
  g_autofree char *src_file = g_strconcat ("file=", unit_path ("src.raw"), NULL);
  g_autofree char *dst_file = g_strconcat ("file=", unit_path ("dst.raw"), NULL);
  g_autofree char *filter_arg = g_strconcat ("--filter=", filter, NULL);
  g_autofree char *ctl_arg = NULL;
  char *dst_argv[]
      = { "nbdkit", "-f", "-U", dst_sock, "file", dst_file, NULL };
  char *src_argv[] = { "nbdkit", "-f", "-U", src_sock, filter_arg,
                       "file", src_file, NULL, NULL };

  ctl = g_strdup (unit_path ("ctl.sock"));
  ctl_arg = g_strconcat ("mirror-control=", ctl, NULL);
  src_argv[7] = ctl_arg;
  dst_uri = g_strconcat ("nbd+unix:///?socket=", dst_sock, NULL);
  make_files ();
  atexit (stop_all);
  dst_pid = spawn (dst_argv, dst_sock);
  src_pid = spawn (src_argv, ctl);
}

static void
test_idle_status (void)
{
  struct mirror_status st;
  g_autoptr (GError) e = NULL;

  CU_ASSERT_FATAL (mirror_get_status (ctl, &st, &e));
  CU_ASSERT_EQUAL (st.state, MIRROR_IDLE);
  CU_ASSERT_PTR_NULL (st.target);
  CU_ASSERT_EQUAL (st.bytes_total, SIZE);
  CU_ASSERT_EQUAL (st.granularity, 65536);
  CU_ASSERT_EQUAL (st.timeout, 30);
  mirror_status_clear (&st);
}

static unsigned progress_calls;

static gboolean
count_progress (const struct mirror_disk *disks, size_t n, bool all_ready,
                void *opaque, GError **error)
{
  CU_ASSERT (disks[0].bytes_done <= disks[0].bytes_total);
  CU_ASSERT_EQUAL (disks[0].bytes_total, SIZE);
  CU_ASSERT_EQUAL (all_ready, disks[0].state == MIRROR_READY);
  progress_calls++;
  return TRUE;
}

static const struct mirror_wait_ops count_ops = { .progress = count_progress };

static void
wait_ready (void)
{
  struct mirror_disk disk = { .name = "0", .socket = ctl };
  g_autoptr (GError) e = NULL;

  progress_calls = 0;
  CU_ASSERT_FATAL (mirror_wait_ready (&disk, 1, 100, &count_ops, NULL, &e));
  CU_ASSERT_EQUAL (disk.state, MIRROR_READY);
  CU_ASSERT_EQUAL (disk.bytes_done, SIZE);
  CU_ASSERT (progress_calls >= 1);
}

static void
test_start_wait_complete (void)
{
  g_autoptr (GError) e = NULL;
  g_autofree char *src = NULL, *dst = NULL;
  struct mirror_status st;
  gsize n;

  CU_ASSERT_FATAL (mirror_start (ctl, dst_uri, NULL, &e));
  wait_ready ();
  CU_ASSERT_FATAL (mirror_get_status (ctl, &st, NULL));
  CU_ASSERT_STRING_EQUAL (st.target, dst_uri);
  mirror_status_clear (&st);

  /* A second start is refused, in the filter's words. */
  CU_ASSERT (!mirror_start (ctl, dst_uri, NULL, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REFUSED);
  CU_ASSERT_STRING_EQUAL (e->message,
                          "mirror filter: start: a mirror is already running");
  g_clear_error (&e);

  CU_ASSERT_FATAL (mirror_complete (ctl, false, &e));
  CU_ASSERT_FATAL (mirror_get_status (ctl, &st, NULL));
  CU_ASSERT_EQUAL (st.state, MIRROR_COMPLETED);
  CU_ASSERT (!st.pivoted);
  CU_ASSERT_PTR_NULL (st.target);
  mirror_status_clear (&st);
  CU_ASSERT_FATAL (g_file_get_contents (unit_path ("src.raw"), &src, &n, NULL));
  CU_ASSERT_FATAL (g_file_get_contents (unit_path ("dst.raw"), &dst, &n, NULL));
  CU_ASSERT (memcmp (src, dst, SIZE) == 0);
}

static void
test_refusals (void)
{
  g_autoptr (GError) e = NULL;
  g_autofree char *nowhere
      = g_strconcat ("nbd+unix:///?socket=", unit_path ("nowhere.sock"), NULL);

  CU_ASSERT (!mirror_complete (ctl, false, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REFUSED);
  CU_ASSERT (g_str_has_prefix (e->message, "mirror filter: complete: "));
  g_clear_error (&e);
  CU_ASSERT (!mirror_start (ctl, nowhere, NULL, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REFUSED);
  CU_ASSERT (g_str_has_prefix (e->message, "mirror filter: start: "));
}

static bool
cancel_now (void *opaque)
{
  return true;
}

static void
test_cancel_then_abort (void)
{
  g_autoptr (GError) e = NULL;
  struct mirror_disk disk = { .socket = ctl };
  struct mirror_wait_ops ops = { .cancelled = cancel_now };
  struct mirror_status st;

  CU_ASSERT_FATAL (mirror_start (ctl, dst_uri, NULL, &e));
  CU_ASSERT (!mirror_wait_ready (&disk, 1, 100, &ops, NULL, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_CANCELLED);
  g_clear_error (&e);
  CU_ASSERT_FATAL (mirror_abort (ctl, &e));
  CU_ASSERT_FATAL (mirror_get_status (ctl, &st, NULL));
  CU_ASSERT_EQUAL (st.state, MIRROR_ABORTED);
  CU_ASSERT_PTR_NULL (st.target);
  mirror_status_clear (&st);
}

/* sync=none is ready at once; sync=top needs a plugin that maps the
 * top layer (the file plugin does not); pause is refused while a mirror
 * runs, then holds until resume; a resume to a target that is not there
 * leaves it paused. */
static void
test_sync_pause_resume (void)
{
  g_autoptr (GError) e = NULL;
  g_autofree char *nowhere
      = g_strconcat ("nbd+unix:///?socket=", unit_path ("nowhere.sock"), NULL);
  struct mirror_status st;

  CU_ASSERT_FATAL (mirror_start_sync (ctl, dst_uri, NULL, MIRROR_SYNC_NONE,
                                      &e));
  CU_ASSERT_FATAL (mirror_get_status (ctl, &st, NULL));
  CU_ASSERT_EQUAL (st.state, MIRROR_READY);
  CU_ASSERT_EQUAL (st.sync, MIRROR_SYNC_NONE);
  CU_ASSERT_EQUAL (st.dirty_bytes, 0);
  mirror_status_clear (&st);
  CU_ASSERT (!mirror_pause (ctl, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, "a mirror is running"));
  g_clear_error (&e);
  CU_ASSERT_FATAL (mirror_abort (ctl, &e));

  CU_ASSERT (!mirror_start_sync (ctl, dst_uri, NULL, MIRROR_SYNC_TOP, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REFUSED);
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, "top layer alone"));
  g_clear_error (&e);

  CU_ASSERT_FATAL (mirror_pause (ctl, &e));
  CU_ASSERT_FATAL (mirror_get_status (ctl, &st, NULL));
  CU_ASSERT (st.paused);
  mirror_status_clear (&st);
  CU_ASSERT (!mirror_resume (ctl, nowhere, NULL, true, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REFUSED);
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, "still paused"));
  g_clear_error (&e);
  CU_ASSERT_FATAL (mirror_get_status (ctl, &st, NULL));
  CU_ASSERT (st.paused);
  mirror_status_clear (&st);
  CU_ASSERT_FATAL (mirror_resume (ctl, NULL, NULL, false, &e));
  CU_ASSERT_FATAL (mirror_get_status (ctl, &st, NULL));
  CU_ASSERT (!st.paused);
  mirror_status_clear (&st);
}

/* A filter started without cbt-log=: cbt-open needs a log and says
 * which one it could not take; cbt-close has nothing to let go.  (Logs
 * taken and marked: tests/test-mirror-cbt.sh.) */
static void
test_cbt_open_close (void)
{
  g_autoptr (GError) e = NULL;
  g_autofree char *missing = g_strdup (unit_path ("missing.cbtlog"));

  CU_ASSERT (!mirror_cbt_open (ctl, NULL, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REFUSED);
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, "give log=PATH"));
  g_clear_error (&e);
  CU_ASSERT (!mirror_cbt_open (ctl, missing, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REFUSED);
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, missing));
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, "No such file"));
  g_clear_error (&e);
  CU_ASSERT (mirror_cbt_close (ctl, &e));
  CU_ASSERT_PTR_NULL (e);
}

static void
test_pivot (void)
{
  g_autoptr (GError) e = NULL;
  struct mirror_status st;

  CU_ASSERT_FATAL (mirror_start (ctl, dst_uri, NULL, &e));
  wait_ready ();
  CU_ASSERT_FATAL (mirror_complete (ctl, true, &e));
  CU_ASSERT_FATAL (mirror_get_status (ctl, &st, NULL));
  CU_ASSERT_EQUAL (st.state, MIRROR_COMPLETED);
  CU_ASSERT (st.pivoted);
  mirror_status_clear (&st);
  CU_ASSERT (!mirror_abort (ctl, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, "pivoted"));
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "servers start", test_servers_start },
    { "idle status", test_idle_status },
    { "start, wait, complete", test_start_wait_complete },
    { "refusals", test_refusals },
    { "cancel, then abort", test_cancel_then_abort },
    { "sync modes, pause, resume", test_sync_pause_resume },
    { "cbt-open and cbt-close", test_cbt_open_close },
    { "pivot", test_pivot },
    { NULL },
  };
  const char *top = getenv ("top_builddir");
  g_autofree char *nbdkit = g_find_program_in_path ("nbdkit");

  if (nbdkit == NULL) {
    fprintf (stderr, "SKIP: nbdkit is not installed\n");
    return 77;
  }
  if (getenv ("VDM_SANITIZED")) {
    fprintf (stderr, "SKIP: the sanitizer build's filter needs the nbdkit "
                     "of tests/functions.sh\n");
    return 77;
  }
  filter = g_build_filename (top ? top : ".",
                             "mirror-filter/.libs/nbdkit-mirror-filter.so",
                             NULL);
  if (!g_file_test (filter, G_FILE_TEST_EXISTS)) {
    fprintf (stderr, "%s is not built\n", filter);
    return 99;
  }
  return unit_main ("mirror control client against nbdkit", tests);
}
