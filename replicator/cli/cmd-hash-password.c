/* vdimotion hash-password: read a password on stdin, print its crypt(3)
 * hash for vdimotiond's auth file (the same as vdimotiond
 * --hash-password): libxcrypt's preferred method, a fresh salt. */
#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int
run (int argc, char **argv)
{
  char line[1024];
  void *data = NULL; /* crypt_ra's work area */
  int size = 0;
  char *salt, *hash;
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
  if (fgets (line, sizeof line, stdin) == NULL) {
    cli_error ("hash-password", "no password on stdin");
    return EXIT_ERROR;
  }
  line[strcspn (line, "\r\n")] = '\0';
  /* NULL prefix: libxcrypt's preferred method (yescrypt on Debian). */
  salt = crypt_gensalt_ra (NULL, 0, NULL, 0);
  if (salt == NULL) {
    cli_error ("hash-password", "crypt_gensalt: %s", strerror (errno));
    explicit_bzero (line, sizeof line);
    return EXIT_ERROR;
  }
  hash = crypt_ra (line, salt, &data, &size);
  explicit_bzero (line, sizeof line);
  if (hash == NULL || hash[0] == '*')
    cli_error ("hash-password", "crypt failed");
  else if (printf ("%s\n", hash) < 0 || fflush (stdout) == EOF)
    cli_error ("hash-password", "stdout: %s", strerror (errno));
  else
    rc = EXIT_OK;
  free (salt);
  free (data);
  return rc;
}

const struct command cmd_hash_password
    = { "hash-password", "< PASSWORD", run };
