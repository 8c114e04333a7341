/* Binding a statement's parameters from a type string, so that no value
 * is ever spliced into SQL text: the file SR's records (sr-file.c) and
 * the daemon's durable state (state.c) both bind this way.  Include it
 * only where SQLite is linked. */
#ifndef VDM_SQLITE_BIND_H
#define VDM_SQLITE_BIND_H

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>

#include <sqlite3.h>

/* Bind parameters 1, 2, ... of ST from AP, one argument per letter of
 * TYPES: 's' a const char * (NULL binds SQL NULL; the text is copied),
 * 'i' an int64_t, 'd' a double; any other letter is a bug (asserted;
 * SQLITE_MISUSE without assertions, AP then not read further).  Returns
 * SQLITE_OK or the first failing sqlite3_bind_* result.  The caller
 * still owns and finalizes ST. */
static inline int
sqlite_bindv (sqlite3_stmt *st, const char *types, va_list ap)
{
  for (int i = 0; types[i]; i++) {
    int r;

    switch (types[i]) {
    case 's': {
      const char *v = va_arg (ap, const char *);
      r = v ? sqlite3_bind_text (st, i + 1, v, -1, SQLITE_TRANSIENT)
            : sqlite3_bind_null (st, i + 1);
      break;
    }
    case 'i': r = sqlite3_bind_int64 (st, i + 1, va_arg (ap, int64_t)); break;
    case 'd': r = sqlite3_bind_double (st, i + 1, va_arg (ap, double)); break;
    default:
      assert (!"sqlite_bindv: a type letter other than s, i, d");
      return SQLITE_MISUSE;
    }
    if (r != SQLITE_OK)
      return r;
  }
  return SQLITE_OK;
}

#endif /* VDM_SQLITE_BIND_H */
