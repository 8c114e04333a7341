/* Shared scaffolding of the CUnit unit tests: a scratch directory per
 * test binary and a main() that runs the suite and turns failures into
 * the exit code automake expects. */
#ifndef VDM_UNIT_H
#define VDM_UNIT_H

#include <CUnit/Basic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A scratch directory, removed at exit.  Tests build paths in it with
 * unit_path ("name"). */
static char unit_dir[256];

static void
unit_rmdir (void)
{
  char cmd[300];
  if (unit_dir[0]) {
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", unit_dir);
    if (system (cmd) != 0)
      fprintf (stderr, "could not remove %s\n", unit_dir);
  }
}

static inline const char *
unit_path (const char *name)
{
  static __thread char buf[4][512];
  static __thread int i;
  i = (i + 1) % 4;
  snprintf (buf[i], sizeof buf[i], "%s/%s", unit_dir, name);
  return buf[i];
}

/* Deterministic pseudo-random numbers (xorshift), per caller state. */
static inline uint64_t
unit_rnd (uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* LEN pseudo-random bytes, the same for the same SEED. */
static inline void
unit_fill (void *buf, size_t len, uint64_t seed)
{
  uint64_t s = seed * 2654435761U + 1;
  for (size_t i = 0; i < len; i++)
    ((unsigned char *)buf)[i] = unit_rnd (&s) >> 56;
}

/* Run a shell command made like printf; its system() status. */
static inline int __attribute__ ((format (printf, 1, 2)))
unit_sh (const char *fmt, ...)
{
  char cmd[2048];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  return system (cmd);
}

/* Whether qemu-img runs here (tests that compare with it skip that part
 * without it). */
static inline bool
unit_have_qemu_img (void)
{
  return unit_sh ("qemu-img --version >/dev/null 2>&1") == 0;
}

struct unit_test
{
  const char *name;
  void (*fn) (void);
};

/* Run TESTS as one suite called NAME.  Exit 0 only if all passed. */
static int
unit_main (const char *name, const struct unit_test *tests)
{
  const char *tmp = getenv ("TMPDIR");
  snprintf (unit_dir, sizeof unit_dir, "%s/vdm-unit.XXXXXX",
            tmp ? tmp : "/tmp");
  if (mkdtemp (unit_dir) == NULL) {
    perror ("mkdtemp");
    return 99;
  }
  atexit (unit_rmdir);
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 99;
  CU_pSuite s = CU_add_suite (name, NULL, NULL);
  for (; tests->name; tests++)
    CU_add_test (s, tests->name, tests->fn);
  CU_basic_set_mode (CU_BRM_VERBOSE);
  CU_basic_run_tests ();
  unsigned failed = CU_get_number_of_failures ();
  unsigned run = CU_get_number_of_tests_run ();
  CU_cleanup_registry ();
  return failed == 0 && run > 0 ? 0 : 1;
}

#endif /* VDM_UNIT_H */
