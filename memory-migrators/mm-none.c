/* vdimotion-mm-none: the memory migrator for VMs that no hypervisor runs
 * (disks only).  There is no memory to move: once the description is
 * valid, the disks' switch-over is all there is, and that is the
 * daemon's.  vdimotion-mm-none(1), vdimotion-memory-migrator(7). */

#include <stdio.h>

#include "migrator.h"

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (mm_description) d = NULL;
  int rc = mm_parse_args (argc, argv,
                          "Moves a VM that no hypervisor runs: checks the "
                          "description and reports\nnothing to move.");

  if (rc >= 0)
    return rc;
  d = mm_description_read_stdin (&err);
  if (d == NULL) {
    mm_fail ("%s", err->message);
    return MM_EXIT_FAILED;
  }
  mm_message ("no hypervisor attached: nothing to move");
  mm_progress (1);
  return MM_EXIT_MOVED;
}
