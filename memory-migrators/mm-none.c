/* vdimotion-mm-none: the memory migrator for VMs that no hypervisor runs
 * (disks only).  There is no memory to move: once the description is
 * valid, the disks' switch-over is all there is, and that is the
 * daemon's.
 *
 * The disks' users are then outside vdimotion's view (an application on
 * NBD, a script, fio): options["handover-file"] names a file whose
 * creation says they have stopped writing through the source sockets, so
 * the handover waits for it (at most options["mm-timeout"] seconds,
 * default 600), printing progress meanwhile.  SIGTERM while waiting: not
 * moved.  vdimotion-mm-none(1), vdimotion-memory-migrator(7). */

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "migrator.h"

static volatile sig_atomic_t stop;

static void
on_signal (int sig)
{
  stop = sig;
}

/* Wait for PATH to exist; false (after mm_fail) on timeout or a signal. */
static bool
wait_for (const char *path, double timeout)
{
  gint64 start = g_get_monotonic_time ();
  struct sigaction sa = { .sa_handler = on_signal };

  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  mm_message ("waiting for %s: the disks' users stop writing", path);
  while (access (path, F_OK) != 0) {
    double waited = (g_get_monotonic_time () - start) / 1e6;

    if (stop) {
      mm_fail ("stopped by signal %d while waiting for %s", (int)stop, path);
      return false;
    }
    if (waited > timeout) {
      mm_fail ("%s did not appear within %.0f s", path, timeout);
      return false;
    }
    /* Progress creeps towards the timeout: the daemon shows motion. */
    mm_progress (0.9 * waited / timeout);
    g_usleep (100 * 1000);
  }
  return true;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (mm_description) d = NULL;
  const char *file = NULL;
  double timeout = 600;
  int rc = mm_parse_args (argc, argv,
                          "Moves a VM that no hypervisor runs: checks the "
                          "description and reports\nnothing to move.");

  if (rc >= 0)
    return rc;
  d = mm_description_read_stdin (&err);
  if (d == NULL || !mm_option_number (d, "mm-timeout", 600, &timeout, &err)) {
    mm_fail ("%s", err->message);
    return MM_EXIT_FAILED;
  }
  if (json_object_has_member (d->options, "handover-file")) {
    JsonNode *n = json_object_get_member (d->options, "handover-file");

    if (!JSON_NODE_HOLDS_VALUE (n)
        || json_node_get_value_type (n) != G_TYPE_STRING
        || (file = json_node_get_string (n))[0] != '/') {
      mm_fail ("options.handover-file: must be an absolute path");
      return MM_EXIT_FAILED;
    }
    if (!wait_for (file, timeout))
      return MM_EXIT_FAILED;
  }
  mm_message ("no hypervisor attached: nothing to move");
  mm_progress (1);
  return MM_EXIT_MOVED;
}
