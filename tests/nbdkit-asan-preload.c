/* Preloaded after libasan into an nbdkit that loads this build's ASan
 * modules (tests/functions.sh, uses_nbdkit_module); built by the test,
 * without sanitizers.  Two things nbdkit needs to run them:
 *
 * 1. ASan starts outside glibc's locale lock.  A preloaded libasan
 *    initialises late: ld.so runs the constructors of nbdkit's own
 *    libraries first, and the first of them to allocate starts ASan from
 *    inside its malloc.  Here that is libp11-kit's (through gnutls), in
 *    newlocale(), which holds the locale lock for writing at that moment;
 *    ASan's start-up calls dlerror(), whose message translation takes the
 *    same lock for reading and leaves it broken.  nbdkit then hangs at
 *    exit, in p11-kit's destructor (freelocale), once anything has
 *    translated a message (strerror, "%m"): every nbdkit that exits with
 *    an error, for one.  This newlocale() allocates once before the real
 *    one takes the lock.
 *
 * 2. The modules stay mapped until the process ends: nbdkit dlcloses
 *    them at exit, before LeakSanitizer reports, and a leak allocated in
 *    an unmapped module has no stack to show ("<unknown module>").  nbdkit
 *    keeps them under valgrind for the same reason. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <locale.h>
#include <stdlib.h>

locale_t
newlocale (int mask, const char *name, locale_t base)
{
  static locale_t (*real) (int, const char *, locale_t);

  if (!real) {
    void *volatile p = malloc (1); /* volatile: not optimised away */
    free (p);
    real = (locale_t (*) (int, const char *, locale_t))dlsym (RTLD_NEXT,
                                                              "newlocale");
    if (!real)
      abort ();
  }
  return real (mask, name, base);
}

int
dlclose (void *handle)
{
  return 0;
}
