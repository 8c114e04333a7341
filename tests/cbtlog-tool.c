/* Test tool: what the file SR does to a VDI's changed-block log
 * (cbt-log.h), for the shell tests, which read logs back with their own
 * reader of the documented format (tests/cbtlog.py).
 * usage: cbtlog-tool enable PATH SIZE   (VDI.enable_cbt)
 *        cbtlog-tool disable PATH       (VDI.disable_cbt)
 *        cbtlog-tool rotate PATH SNAPSHOT-PATH SNAPSHOT-UUID  (snapshot) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbt-log.h"

int
main (int argc, char **argv)
{
  GError *err = NULL;
  int r;
  if (argc == 4 && strcmp (argv[1], "enable") == 0)
    r = cbt_log_enable (argv[2], strtoull (argv[3], NULL, 0), &err);
  else if (argc == 3 && strcmp (argv[1], "disable") == 0)
    r = cbt_log_disable (argv[2], &err);
  else if (argc == 5 && strcmp (argv[1], "rotate") == 0)
    r = cbt_log_rotate (argv[2], argv[3], argv[4], &err);
  else {
    fprintf (stderr, "usage: cbtlog-tool enable PATH SIZE\n"
                     "       cbtlog-tool disable PATH\n"
                     "       cbtlog-tool rotate PATH SNAP-PATH SNAP-UUID\n");
    return 2;
  }
  if (r == -1) {
    fprintf (stderr, "cbtlog-tool: %s\n", err->message);
    g_error_free (err);
    return 1;
  }
  return 0;
}
