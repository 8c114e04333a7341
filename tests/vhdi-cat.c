/* vhdi-cat: print the whole virtual content of a VHD, read through
 * libvhdi -- the independent second reader the VHD tests compare with.
 *
 * usage: vhdi-cat [-p PARENT]... IMAGE [OUT]
 *
 * Writes the guest-visible bytes of IMAGE to OUT (created or truncated),
 * or to standard output.  Differencing chains: each parent is opened with
 * libvhdi_file_open and linked with libvhdi_file_set_parent_file (libvhdi
 * checks the parent's identifier itself).  The parent of each layer is,
 * in order:
 *   - the next -p PARENT given (first -p = parent of IMAGE, second -p =
 *     grandparent, ...), else
 *   - the file named by the layer's recorded parent file name (libvhdi's
 *     parent filename, from the locators / header), Windows separators
 *     turned into '/', looked up by its last component in the directory
 *     of the child.
 * Exit status: 0 success, 1 on any error (message on stderr).
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvhdi.h>

#define MAX_CHAIN 64
#define CHUNK (1 << 20)

static void
print_error (const char *what, const char *path, libvhdi_error_t *error)
{
  char msg[1024] = "";

  if (error) {
    libvhdi_error_sprint (error, msg, sizeof msg);
    libvhdi_error_free (&error);
  }
  fprintf (stderr, "vhdi-cat: %s: %s: %s\n", path, what, msg);
}

static libvhdi_file_t *
open_one (const char *path)
{
  libvhdi_file_t *f = NULL;
  libvhdi_error_t *error = NULL;

  if (libvhdi_file_initialize (&f, &error) != 1) {
    print_error ("initialize", path, error);
    return NULL;
  }
  if (libvhdi_file_open (f, path, LIBVHDI_OPEN_READ, &error) != 1) {
    print_error ("open", path, error);
    libvhdi_file_free (&f, NULL);
    return NULL;
  }
  return f;
}

/* The parent's path derived from what the child records; malloc'd. */
static char *
recorded_parent (libvhdi_file_t *f, const char *child)
{
  libvhdi_error_t *error = NULL;
  size_t size = 0;
  char *name, *base, *dir, *dcopy, *out = NULL;

  if (libvhdi_file_get_utf8_parent_filename_size (f, &size, &error) != 1
      || size == 0) {
    print_error ("no parent file name recorded (use -p)", child, error);
    return NULL;
  }
  name = malloc (size);
  if (name == NULL)
    return NULL;
  if (libvhdi_file_get_utf8_parent_filename (f, (uint8_t *)name, size, &error)
      != 1) {
    print_error ("parent file name", child, error);
    free (name);
    return NULL;
  }
  for (char *p = name; *p; p++)
    if (*p == '\\')
      *p = '/';
  base = strrchr (name, '/');
  base = base ? base + 1 : name;
  dcopy = strdup (child);
  if (dcopy) {
    dir = dirname (dcopy);
    if (asprintf (&out, "%s/%s", dir, base) == -1)
      out = NULL;
  }
  free (dcopy);
  free (name);
  return out;
}

static int
copy_out (libvhdi_file_t *f, const char *path, FILE *out)
{
  libvhdi_error_t *error = NULL;
  size64_t size = 0, off;
  char *buf = malloc (CHUNK);

  if (buf == NULL)
    return -1;
  if (libvhdi_file_get_media_size (f, &size, &error) != 1) {
    print_error ("media size", path, error);
    free (buf);
    return -1;
  }
  for (off = 0; off < size;) {
    size_t n = size - off < CHUNK ? size - off : CHUNK;
    ssize_t r = libvhdi_file_read_buffer_at_offset (f, buf, n, off, &error);
    if (r <= 0) {
      print_error ("read", path, error);
      free (buf);
      return -1;
    }
    if (fwrite (buf, 1, r, out) != (size_t)r) {
      fprintf (stderr, "vhdi-cat: write: %s\n", strerror (errno));
      free (buf);
      return -1;
    }
    off += r;
  }
  free (buf);
  return 0;
}

int
main (int argc, char **argv)
{
  const char *given[MAX_CHAIN];
  libvhdi_file_t *chain[MAX_CHAIN];
  char *paths[MAX_CHAIN];
  size_t n_given = 0, n = 0, i;
  int c, ret = 1;
  FILE *out = stdout;

  while ((c = getopt (argc, argv, "p:")) != -1) {
    if (c != 'p' || n_given == MAX_CHAIN) {
      fprintf (stderr, "usage: vhdi-cat [-p PARENT]... IMAGE [OUT]\n");
      return 1;
    }
    given[n_given++] = optarg;
  }
  if (argc - optind < 1 || argc - optind > 2) {
    fprintf (stderr, "usage: vhdi-cat [-p PARENT]... IMAGE [OUT]\n");
    return 1;
  }

  paths[0] = strdup (argv[optind]);
  chain[0] = open_one (paths[0]);
  if (chain[0] == NULL)
    return 1;
  for (n = 1;; n++) {
    uint32_t type = 0;
    if (libvhdi_file_get_disk_type (chain[n - 1], &type, NULL) != 1
        || type != LIBVHDI_DISK_TYPE_DIFFERENTIAL)
      break;
    if (n == MAX_CHAIN) {
      fprintf (stderr, "vhdi-cat: chain deeper than %d\n", MAX_CHAIN);
      goto out;
    }
    paths[n] = n - 1 < n_given ? strdup (given[n - 1])
                               : recorded_parent (chain[n - 1], paths[n - 1]);
    if (paths[n] == NULL)
      goto out;
    chain[n] = open_one (paths[n]);
    if (chain[n] == NULL) {
      free (paths[n]);
      goto out;
    }
  }
  /* Link from the bottom up, so every parent is complete when set. */
  for (i = n - 1; i > 0; i--) {
    libvhdi_error_t *error = NULL;
    if (libvhdi_file_set_parent_file (chain[i - 1], chain[i], &error) != 1) {
      print_error ("set parent", paths[i - 1], error);
      goto out;
    }
  }

  if (argc - optind == 2) {
    out = fopen (argv[optind + 1], "w");
    if (out == NULL) {
      fprintf (stderr, "vhdi-cat: %s: %s\n", argv[optind + 1],
               strerror (errno));
      goto out;
    }
  }
  if (copy_out (chain[0], paths[0], out) == 0 && fflush (out) == 0)
    ret = 0;
  if (out != stdout && fclose (out) != 0)
    ret = 1;

out:
  for (i = 0; i < n; i++) {
    libvhdi_file_close (chain[i], NULL);
    libvhdi_file_free (&chain[i], NULL);
    free (paths[i]);
  }
  return ret;
}
