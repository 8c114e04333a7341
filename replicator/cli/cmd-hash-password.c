/* vdimotion hash-password: read a password on stdin, print its crypt(3)
 * hash for vdimotiond's auth file (the same as vdimotiond
 * --hash-password, both through common/password.h): libxcrypt's
 * preferred method, a fresh salt. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "password.h"

static int
run (int argc, char **argv)
{
  char line[1024], why[256];
  char *hash;
  int rc = EXIT_ERROR;

  if (argc == 2
      && (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0)) {
    printf ("usage: vdimotion hash-password < PASSWORD\n");
    return EXIT_OK;
  }
  if (argc != 1) {
    fprintf (stderr, "usage: vdimotion hash-password < PASSWORD\n");
    return EXIT_USAGE;
  }
  if (!password_read_line (stdin, line, sizeof line)) {
    cli_error ("hash-password", "no password on stdin");
    return EXIT_ERROR;
  }
  hash = password_hash (line, why, sizeof why);
  explicit_bzero (line, sizeof line);
  if (hash == NULL)
    cli_error ("hash-password", "%s", why);
  else if (printf ("%s\n", hash) < 0 || fflush (stdout) == EOF)
    cli_error ("hash-password", "stdout: %s", strerror (errno));
  else
    rc = EXIT_OK;
  free (hash);
  return rc;
}

const struct command cmd_hash_password
    = { "hash-password", "< PASSWORD", run };
