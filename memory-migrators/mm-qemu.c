/* vdimotion-mm-qemu: the memory migrator for a VM that QEMU runs, driven
 * over QMP (vdimotion-mm-qemu(1), vdimotion-memory-migrator(7)).
 *
 * The source QEMU is found from its QMP socket (the peer's pid, then its
 * /proc command line); a destination QEMU is started on this machine with
 * the same command line on the destination's disk sockets and
 * "-incoming defer"; QEMU's own migration moves RAM and device state over
 * a Unix socket, without block migration: vdimotion has mirrored the
 * disks already, and both QEMUs see the same bytes.  The destination is
 * resumed only if the source was running, and the source quits only once
 * the destination holds the VM.  Before that point any failure, timeout
 * or SIGTERM kills the destination and leaves the source as it was. */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migrator.h"
#include "qemu-cmdline.h"
#include "qmp.h"

#define DEFAULT_TIMEOUT 600.0
/* Undo steps get their own time, whatever was left of the deadline. */
#define UNDO_SECONDS 30
#define POLL_US (100 * 1000)

static volatile sig_atomic_t cancelled;

static void
on_cancel (int sig)
{
  cancelled = 1;
}

struct move
{
  struct mm_description *d;
  const char *src_qmp_path;
  double timeout;
  gint64 deadline;

  struct qmp *src;
  pid_t src_pid;
  bool src_was_running; /* at the start: the state the VM keeps */
  bool src_stopped;     /* paused by us (live = false) */
  bool migrating;       /* "migrate" was sent to the source */

  char *stem; /* DIR/UUID[.N]: the destination's files are STEM.* */
  char *dst_qmp_path;
  char *dst_pidfile;
  char *dst_log;
  char *migrate_path;
  pid_t dst_pid;
  struct qmp *dst;
};

static void
move_clear (struct move *m)
{
  qmp_close (m->src);
  qmp_close (m->dst);
  g_free (m->stem);
  g_free (m->dst_qmp_path);
  g_free (m->dst_pidfile);
  g_free (m->dst_log);
  g_free (m->migrate_path);
}

/* A JSON string literal, for the few commands that take a path. */
static char *
json_quote (const char *s)
{
  g_autoptr (JsonNode) n = json_node_init_string (json_node_alloc (), s);
  return json_to_string (n, FALSE);
}

/* Steps that fail because the deadline passed say so with the timeout,
 * which is what the user can change. */
static bool
timed_out (struct move *m, const char *doing, GError **err)
{
  if (g_get_monotonic_time () < m->deadline)
    return false;
  g_set_error (err, MM_ERROR, 0,
               "timed out after %g s (options mm-timeout) %s", m->timeout,
               doing);
  return true;
}

static bool
check_cancelled (GError **err)
{
  if (!cancelled)
    return true;
  g_set_error (err, MM_ERROR, 0, "cancelled");
  return false;
}

/* The source's command line, NUL-separated in /proc. */
static char **
read_cmdline (pid_t pid, GError **err)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/cmdline", (int)pid);
  g_autofree char *text = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  gsize len;

  if (!g_file_get_contents (path, &text, &len, err))
    return NULL;
  for (gsize i = 0; i < len; i += strlen (text + i) + 1)
    g_ptr_array_add (argv, g_strdup (text + i));
  if (argv->len == 0) {
    g_set_error (err, MM_ERROR, 0, "%s: empty (a kernel thread?)", path);
    return NULL;
  }
  g_ptr_array_add (argv, NULL);
  return (char **)g_ptr_array_free (g_steal_pointer (&argv), FALSE);
}

/* The program to start: the one the source runs, unless it has been
 * replaced on disk since (an upgrade), then ARGV0 as found now. */
static char *
source_program (pid_t pid, const char *argv0, GError **err)
{
  g_autofree char *link = g_strdup_printf ("/proc/%d/exe", (int)pid);
  g_autofree char *exe = g_file_read_link (link, NULL);
  char *found;

  if (exe && !g_str_has_suffix (exe, " (deleted)"))
    return g_steal_pointer (&exe);
  found = g_path_is_absolute (argv0) ? g_strdup (argv0)
                                     : g_find_program_in_path (argv0);
  if (found == NULL)
    g_set_error (err, MM_ERROR, 0,
                 "source QEMU (pid %d): cannot find its program %s", (int)pid,
                 argv0);
  return found;
}

/* Has the (not necessarily child) process PID ended?  A zombie has. */
static bool
process_gone (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int)pid);
  g_autofree char *stat = NULL;
  const char *p;

  if (!g_file_get_contents (path, &stat, NULL, NULL))
    return true;
  p = strrchr (stat, ')');
  return p == NULL || p[1] == '\0' || p[2] == 'Z' || p[2] == 'X';
}

/* The last non-empty line of the destination QEMU's log: its reason. */
static char *
last_log_line (const char *path)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  lines = g_strsplit (text, "\n", -1);
  for (int i = (int)g_strv_length (lines) - 1; i >= 0; i--)
    if (*g_strstrip (lines[i]))
      return g_strdup (lines[i]);
  return NULL;
}

/* The destination QEMU's exit, as a reason. */
static char *
destination_exit_reason (struct move *m, int status)
{
  g_autofree char *line = last_log_line (m->dst_log);
  g_autofree char *how
      = WIFEXITED (status)
            ? g_strdup_printf ("exited with status %d", WEXITSTATUS (status))
            : g_strdup_printf ("was killed by signal %d", WTERMSIG (status));
  return g_strdup_printf ("destination QEMU %s%s%s", how, line ? ": " : "",
                          line ? line : "");
}

/* Fails if the destination QEMU has exited (and reaps it). */
static bool
destination_alive (struct move *m, GError **err)
{
  int status;
  g_autofree char *reason = NULL;

  if (m->dst_pid <= 0 || waitpid (m->dst_pid, &status, WNOHANG) != m->dst_pid)
    return true;
  m->dst_pid = 0;
  reason = destination_exit_reason (m, status);
  g_set_error (err, MM_ERROR, 0, "%s", reason);
  return false;
}

/* DIR/UUID, or DIR/UUID.N when a QEMU (perhaps the source itself, in
 * the tests where both hosts are one machine) already uses that name. */
static bool
pick_destination_files (struct move *m, GError **err)
{
  const char *dir = m->d->destination_run_dir;

  if (g_mkdir_with_parents (dir, 0755) < 0) {
    g_set_error (err, MM_ERROR, 0, "destination.run_dir %s: %s", dir,
                 g_strerror (errno));
    return false;
  }
  for (int n = 0; n < 1000; n++) {
    g_autofree char *stem
        = n ? g_strdup_printf ("%s/%s.%d", dir, m->d->vm_uuid, n)
            : g_strdup_printf ("%s/%s", dir, m->d->vm_uuid);
    g_autofree char *qmp_path = g_strconcat (stem, ".qmp", NULL);
    g_autofree char *pid = g_strconcat (stem, ".pid", NULL);
    g_autofree char *mig = g_strconcat (stem, ".migrate", NULL);

    if (strcmp (qmp_path, m->src_qmp_path) == 0
        || g_file_test (qmp_path, G_FILE_TEST_EXISTS)
        || g_file_test (pid, G_FILE_TEST_EXISTS)
        || g_file_test (mig, G_FILE_TEST_EXISTS))
      continue;
    if (strlen (mig) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
      g_set_error (err, MM_ERROR, 0,
                   "destination.run_dir %s: too long for Unix socket "
                   "paths (%s)",
                   dir, mig);
      return false;
    }
    m->dst_qmp_path = g_steal_pointer (&qmp_path);
    m->dst_pidfile = g_steal_pointer (&pid);
    m->migrate_path = g_steal_pointer (&mig);
    m->dst_log = g_strconcat (stem, ".log", NULL);
    m->stem = g_steal_pointer (&stem);
    return true;
  }
  g_set_error (err, MM_ERROR, 0, "destination.run_dir %s: no free name for %s",
               dir, m->d->vm_uuid);
  return false;
}

/* In the destination QEMU, before exec: its own session, so that it
 * outlives the migrator and no signal meant for the migrator's group
 * reaches it. */
static void
detach_child (gpointer data)
{
  setsid ();
}

static bool
start_destination (struct move *m, GError **err)
{
  g_auto (GStrv) src_argv = NULL;
  g_auto (GStrv) argv = NULL;
  g_autofree char *cwd_link
      = g_strdup_printf ("/proc/%d/cwd", (int)m->src_pid);
  g_autofree char *cwd = NULL;
  g_autofree char *exe = NULL;
  struct qemu_cmdline_paths paths = {
    .qmp_socket = m->src_qmp_path,
    .dst_qmp = NULL,
    .dst_pidfile = NULL,
  };
  int null_fd, log_fd;
  GPid pid;
  bool ok;

  if (!(src_argv = read_cmdline (m->src_pid, err))
      || !(exe = source_program (m->src_pid, src_argv[0], err))
      || !pick_destination_files (m, err))
    return false;
  paths.dst_qmp = m->dst_qmp_path;
  paths.dst_pidfile = m->dst_pidfile;
  if (!(argv = qemu_cmdline_for_destination (src_argv, m->d, &paths, err)))
    return false;
  g_free (argv[0]);
  argv[0] = g_strdup (exe);
  /* Relative paths on the command line mean what they meant to the
   * source. */
  cwd = g_file_read_link (cwd_link, NULL);

  null_fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  log_fd = open (m->dst_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (null_fd < 0 || log_fd < 0) {
    g_set_error (err, MM_ERROR, 0, "destination QEMU log %s: %s", m->dst_log,
                 g_strerror (errno));
    if (null_fd >= 0)
      close (null_fd);
    return false;
  }
  ok = g_spawn_async_with_fds (cwd, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                               detach_child, NULL, &pid, null_fd, log_fd,
                               log_fd, err);
  close (null_fd);
  close (log_fd);
  if (!ok)
    return false;
  m->dst_pid = pid;
  mm_message ("source QEMU pid %d; destination QEMU pid %d, QMP %s, log %s",
              (int)m->src_pid, (int)m->dst_pid, m->dst_qmp_path, m->dst_log);
  return true;
}

/* Connect once the destination QEMU listens; it may instead exit, e.g.
 * when it cannot open a destination disk. */
static bool
connect_destination (struct move *m, GError **err)
{
  for (;;) {
    g_autoptr (GError) cerr = NULL;

    if (!destination_alive (m, err) || !check_cancelled (err)
        || timed_out (m, "waiting for the destination QEMU's QMP socket", err))
      return false;
    if (g_file_test (m->dst_qmp_path, G_FILE_TEST_EXISTS)) {
      m->dst
          = qmp_connect ("destination", m->dst_qmp_path, m->deadline, &cerr);
      if (m->dst) {
        qmp_set_cancel_flag (m->dst, &cancelled);
        return true;
      }
      /* It may have died between listening and greeting. */
      if (!destination_alive (m, err))
        return false;
      if (!check_cancelled (err) || timed_out (m, "connecting", err))
        return false;
    }
    g_usleep (POLL_US / 2);
  }
}

/* query-status's "status" (running, paused, prelaunch, ...). */
static char *
run_status (struct qmp *q, gint64 deadline, GError **err)
{
  g_autoptr (JsonNode) st
      = qmp_execute (q, "query-status", NULL, deadline, err);
  JsonObject *o;

  if (st == NULL)
    return NULL;
  o = JSON_NODE_HOLDS_OBJECT (st) ? json_node_get_object (st) : NULL;
  if (o == NULL || !json_object_has_member (o, "status")) {
    g_set_error (err, MM_ERROR, 0, "query-status: no status in the reply");
    return NULL;
  }
  return g_strdup (json_object_get_string_member (o, "status"));
}

static bool
simple_command (struct qmp *q, const char *cmd, const char *args,
                gint64 deadline, GError **err)
{
  g_autoptr (JsonNode) r = qmp_execute (q, cmd, args, deadline, err);
  return r != NULL;
}

static bool
connect_source (struct move *m, GError **err)
{
  g_autofree char *status = NULL;

  m->src = qmp_connect ("source", m->src_qmp_path, m->deadline, err);
  if (m->src == NULL)
    return false;
  qmp_set_cancel_flag (m->src, &cancelled);
  m->src_pid = qmp_peer_pid (m->src);
  if (!(status = run_status (m->src, m->deadline, err)))
    return false;
  if (strcmp (status, "running") != 0 && strcmp (status, "paused") != 0
      && strcmp (status, "prelaunch") != 0) {
    g_set_error (err, MM_ERROR, 0,
                 "source QEMU (pid %d) is \"%s\": only a running or paused "
                 "VM can move",
                 (int)m->src_pid, status);
    return false;
  }
  m->src_was_running = strcmp (status, "running") == 0;
  mm_message ("source QEMU is %s", status);
  return true;
}

/* RAM moved so far, 0..1, from query-migrate's "ram". */
static double
ram_fraction (JsonObject *info)
{
  JsonObject *ram;
  double total, remaining;

  if (!json_object_has_member (info, "ram"))
    return 0;
  ram = json_object_get_object_member (info, "ram");
  if (ram == NULL || !json_object_has_member (ram, "total")
      || !json_object_has_member (ram, "remaining"))
    return 0;
  total = json_object_get_double_member (ram, "total");
  remaining = json_object_get_double_member (ram, "remaining");
  return total > 0 ? (total - remaining) / total : 0;
}

/* Progress: 0.05 once both QEMUs are up, the RAM copy maps to 0.05..0.9,
 * the switch-over and the source's quit take the rest. */
static double shown_progress = -1;

static void
progress (double f)
{
  if (f > shown_progress + 0.005 || (f >= 1 && shown_progress < 1)) {
    shown_progress = f;
    mm_progress (f);
  }
}

static bool
migrate (struct move *m, GError **err)
{
  g_autofree char *uri = g_strconcat ("unix:", m->migrate_path, NULL);
  g_autofree char *quri = json_quote (uri);
  g_autofree char *args = g_strdup_printf ("{\"uri\": %s}", quri);
  double bandwidth;
  gint64 started = g_get_monotonic_time ();

  if (!mm_option_number (m->d, "mm-max-bandwidth", 0, &bandwidth, err))
    return false;
  if (bandwidth > 0) {
    g_autofree char *bw
        = g_strdup_printf ("{\"max-bandwidth\": %.0f}", bandwidth);
    if (!simple_command (m->src, "migrate-set-parameters", bw, m->deadline,
                         err))
      return false;
  }
  if (!simple_command (m->dst, "migrate-incoming", args, m->deadline, err))
    return false;
  if (!m->d->live && m->src_was_running) {
    if (!simple_command (m->src, "stop", NULL, m->deadline, err))
      return false;
    m->src_stopped = true;
    mm_message ("not live: source paused for the move");
  }
  /* No "blk"/"inc": the disks are vdimotion's, already mirrored. */
  m->migrating = true;
  if (!simple_command (m->src, "migrate", args, m->deadline, err))
    return false;
  mm_message ("migrating to %s", uri);

  for (;;) {
    g_autoptr (JsonNode) info = NULL;
    JsonObject *o;
    const char *status;

    if (!destination_alive (m, err))
      return false;
    info = qmp_execute (m->src, "query-migrate", NULL, m->deadline, err);
    if (info == NULL)
      return false;
    o = json_node_get_object (info);
    status = json_object_has_member (o, "status")
                 ? json_object_get_string_member (o, "status")
                 : "none";
    if (strcmp (status, "completed") == 0) {
      JsonObject *ram = json_object_has_member (o, "ram")
                            ? json_object_get_object_member (o, "ram")
                            : NULL;
      m->migrating = false;
      mm_message ("migration completed in %.2f s: %" G_GINT64_FORMAT
                  " bytes transferred, downtime %" G_GINT64_FORMAT " ms",
                  (g_get_monotonic_time () - started) / 1e6,
                  ram && json_object_has_member (ram, "transferred")
                      ? json_object_get_int_member (ram, "transferred")
                      : (gint64)-1,
                  json_object_has_member (o, "downtime")
                      ? json_object_get_int_member (o, "downtime")
                      : (gint64)-1);
      progress (0.9);
      return true;
    }
    if (strcmp (status, "failed") == 0 || strcmp (status, "cancelled") == 0) {
      const char *desc = json_object_has_member (o, "error-desc")
                             ? json_object_get_string_member (o, "error-desc")
                             : "no reason given";
      g_set_error (err, MM_ERROR, 0, "migration %s: %s", status, desc);
      return false;
    }
    progress (0.05 + 0.85 * ram_fraction (o));
    if (!check_cancelled (err)
        || timed_out (m, "migrating the VM's memory", err))
      return false;
    g_usleep (POLL_US);
  }
}

/* After the copy: the destination leaves "inmigrate" on its own once it
 * has loaded the state and activated its disks; it stays paused (-S). */
static bool
destination_loaded (struct move *m, GError **err)
{
  for (;;) {
    g_autofree char *status = run_status (m->dst, m->deadline, err);

    if (status == NULL)
      return false;
    if (strcmp (status, "inmigrate") != 0) {
      mm_message ("destination QEMU is %s", status);
      return true;
    }
    if (timed_out (m, "waiting for the destination to load the VM", err))
      return false;
    g_usleep (POLL_US / 2);
  }
}

/* The point of no return is passed: the VM runs (or, paused, will run)
 * on the destination.  The source quits; if it does not, it is killed,
 * for two QEMUs of one VM must never both run. */
static void
quit_source (struct move *m)
{
  g_autoptr (GError) err = NULL;
  gint64 deadline = g_get_monotonic_time () + UNDO_SECONDS * G_USEC_PER_SEC;

  qmp_set_cancel_flag (m->src, NULL);
  if (!qmp_execute_until_hangup (m->src, "quit", deadline, &err))
    mm_message ("source QEMU: quit: %s", err->message);
  while (!process_gone (m->src_pid) && g_get_monotonic_time () < deadline)
    g_usleep (POLL_US / 2);
  if (!process_gone (m->src_pid)) {
    mm_message ("source QEMU (pid %d) did not quit: killed", (int)m->src_pid);
    kill (m->src_pid, SIGKILL);
  }
  else
    mm_message ("source QEMU (pid %d) has quit", (int)m->src_pid);
}

static void
kill_destination (struct move *m)
{
  int status;

  if (m->dst_pid > 0) {
    kill (m->dst_pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
      if (waitpid (m->dst_pid, &status, WNOHANG) == m->dst_pid) {
        m->dst_pid = 0;
        break;
      }
      g_usleep (POLL_US / 2);
    }
    if (m->dst_pid > 0) {
      kill (m->dst_pid, SIGKILL);
      waitpid (m->dst_pid, &status, 0);
      m->dst_pid = 0;
    }
    mm_message ("destination QEMU stopped");
  }
  if (m->dst_qmp_path)
    unlink (m->dst_qmp_path);
  if (m->migrate_path)
    unlink (m->migrate_path);
  if (m->dst_pidfile)
    unlink (m->dst_pidfile);
}

/* Undo: the destination goes first, then the source gets back the run
 * state it had.  A migration QEMU cancels resumes the source by itself
 * if it was running; "cont" covers the rest (and a completed migration,
 * whose source QEMU reactivates its disks on "cont"). */
static void
undo (struct move *m)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *status = NULL;
  gint64 deadline = g_get_monotonic_time () + UNDO_SECONDS * G_USEC_PER_SEC;

  if (m->src)
    qmp_set_cancel_flag (m->src, NULL);
  if (m->migrating && m->src) {
    if (!simple_command (m->src, "migrate_cancel", NULL, deadline, &err))
      mm_message ("undo: %s", err->message);
    g_clear_error (&err);
    for (;;) {
      g_autoptr (JsonNode) info
          = qmp_execute (m->src, "query-migrate", NULL, deadline, &err);
      const char *st;
      if (info == NULL)
        break;
      st = json_object_has_member (json_node_get_object (info), "status")
               ? json_object_get_string_member (json_node_get_object (info),
                                                "status")
               : "none";
      if (strcmp (st, "cancelling") != 0 && strcmp (st, "active") != 0
          && strcmp (st, "setup") != 0 && strcmp (st, "device") != 0
          && strcmp (st, "pre-switchover") != 0)
        break;
      g_usleep (POLL_US / 2);
    }
    if (err)
      mm_message ("undo: %s", err->message);
    g_clear_error (&err);
  }
  kill_destination (m);
  if (m->src == NULL)
    return;
  status = run_status (m->src, deadline, &err);
  if (status == NULL) {
    mm_message ("undo: source QEMU: %s", err->message);
    return;
  }
  if (m->src_was_running && strcmp (status, "running") != 0) {
    if (simple_command (m->src, "cont", NULL, deadline, &err))
      mm_message ("undo: source QEMU resumed (it was %s)", status);
    else
      mm_message ("undo: source QEMU: %s", err->message);
  }
  else
    mm_message ("undo: source QEMU is %s", status);
}

static bool
run (struct move *m, GError **err)
{
  if (!mm_option_number (m->d, "mm-timeout", DEFAULT_TIMEOUT, &m->timeout,
                         err))
    return false;
  m->deadline = g_get_monotonic_time () + (gint64)(m->timeout * 1e6);
  m->src_qmp_path = mm_other_config (m->d, "qmp-socket");
  if (m->src_qmp_path == NULL) {
    g_set_error (err, MM_ERROR, 0,
                 "description: vm.other_config.qmp-socket: missing (the "
                 "source QEMU's QMP socket; a VM without a hypervisor "
                 "moves with vdimotion-mm-none)");
    return false;
  }
  progress (0);
  if (!connect_source (m, err) || !start_destination (m, err)
      || !connect_destination (m, err))
    return false;
  progress (0.05);
  if (!migrate (m, err) || !destination_loaded (m, err)
      || !check_cancelled (err))
    return false;
  if (m->src_was_running) {
    if (!simple_command (m->dst, "cont", NULL, m->deadline, err))
      return false;
    mm_message ("destination QEMU resumed");
  }
  return true;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (mm_description) d = NULL;
  struct move m = { 0 };
  struct sigaction sa = { .sa_handler = on_cancel };
  g_autofree char *pid = NULL;
  int rc = mm_parse_args (argc, argv,
                          "Moves a QEMU VM to a destination QEMU on this "
                          "machine over QMP.");

  if (rc >= 0)
    return rc;
  /* No SA_RESTART: a blocking call returns EINTR and the flag is seen. */
  sigemptyset (&sa.sa_mask);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);

  d = mm_description_read_stdin (&err);
  if (d == NULL) {
    mm_fail ("%s", err->message);
    return MM_EXIT_FAILED;
  }
  m.d = d;
  if (!run (&m, &err)) {
    /* The user's words for why: the signal, or the option to raise,
     * rather than the step that noticed. */
    if (cancelled) {
      g_clear_error (&err);
      g_set_error (&err, MM_ERROR, 0,
                   "cancelled by a signal: the VM stays on the source");
    }
    else if (m.deadline && g_get_monotonic_time () >= m.deadline
             && !g_str_has_prefix (err->message, "timed out after"))
      g_prefix_error (
          &err, "timed out after %g s (options mm-timeout): ", m.timeout);
    undo (&m);
    move_clear (&m);
    mm_fail ("%s", err->message);
    return MM_EXIT_FAILED;
  }
  /* Past here a SIGTERM changes nothing: the VM has moved. */
  signal (SIGTERM, SIG_IGN);
  signal (SIGINT, SIG_IGN);
  progress (0.95);
  quit_source (&m);
  unlink (m.migrate_path);
  pid = g_strdup_printf ("%d", (int)m.dst_pid);
  progress (1);
  mm_result ("qmp-socket", m.dst_qmp_path, "qemu-pid", pid, "qemu-log",
             m.dst_log, NULL);
  move_clear (&m);
  return MM_EXIT_MOVED;
}
