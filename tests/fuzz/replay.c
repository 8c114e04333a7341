/* A main for the fuzz targets without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on every file named (directories: every
 * file in them), as `make check` does over tests/fuzz/corpus/, with
 * whatever sanitizers the build uses. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
run_file (const char *path)
{
  FILE *f = fopen (path, "rb");
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0, n;

  if (!f) {
    perror (path);
    return -1;
  }
  do {
    if (len == cap) {
      cap = cap ? 2 * cap : 65536;
      uint8_t *b = realloc (buf, cap);
      if (!b) {
        perror ("realloc");
        exit (1);
      }
      buf = b;
    }
    n = fread (buf + len, 1, cap - len, f);
    len += n;
  } while (n > 0);
  if (ferror (f)) {
    perror (path);
    fclose (f);
    free (buf);
    return -1;
  }
  fclose (f);
  /* An exact-size copy, so that a read past the input is caught. */
  uint8_t *exact = malloc (len ? len : 1);
  if (!exact) {
    perror ("malloc");
    exit (1);
  }
  memcpy (exact, buf, len);
  free (buf);
  LLVMFuzzerTestOneInput (exact, len);
  free (exact);
  return 0;
}

static int
cmp_names (const void *a, const void *b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

int
main (int argc, char **argv)
{
  int failed = 0, runs = 0;

  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat (argv[i], &st) == -1) {
      perror (argv[i]);
      failed = 1;
      continue;
    }
    if (!S_ISDIR (st.st_mode)) {
      failed |= run_file (argv[i]) == -1;
      runs++;
      continue;
    }
    DIR *dir = opendir (argv[i]);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;
    if (!dir) {
      perror (argv[i]);
      failed = 1;
      continue;
    }
    while ((e = readdir (dir))) {
      if (e->d_name[0] == '.')
        continue;
      names = realloc (names, (n + 1) * sizeof *names);
      if (!names || asprintf (&names[n], "%s/%s", argv[i], e->d_name) == -1) {
        perror ("out of memory");
        exit (1);
      }
      n++;
    }
    closedir (dir);
    qsort (names, n, sizeof *names, cmp_names);
    for (size_t k = 0; k < n; k++) {
      fprintf (stderr, "replay: %s\n", names[k]);
      failed |= run_file (names[k]) == -1;
      runs++;
      free (names[k]);
    }
    free (names);
  }
  fprintf (stderr, "replay: %d inputs%s\n", runs,
           failed ? ", some unreadable" : "");
  return failed;
}
