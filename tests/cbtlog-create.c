/* Test tool: make a changed-block log (cbt-log.h) for a disk of SIZE
 * bytes, as VDI.enable_cbt does in an SR; the tests read it back with
 * their own reader of the documented format (tests/cbtlog.py).
 * usage: cbtlog-create PATH SIZE */
#include <stdio.h>
#include <stdlib.h>

#include "cbt-log.h"

int
main (int argc, char **argv)
{
  GError *err = NULL;
  if (argc != 3) {
    fprintf (stderr, "usage: cbtlog-create PATH SIZE\n");
    return 2;
  }
  if (cbt_log_create (argv[1], strtoull (argv[2], NULL, 0), &err) == -1) {
    fprintf (stderr, "cbtlog-create: %s\n", err->message);
    g_error_free (err);
    return 1;
  }
  return 0;
}
