/* Formatted messages as new strings, for the plain-C parts (the copy
 * engine, the mirror filter) that hand an error message up as a char *
 * the caller frees.  (GLib code has g_strdup_printf.)  Unlike
 * vasprintf, the result on failure is always NULL, never an undefined
 * pointer. */
#ifndef VDM_STRPRINTF_H
#define VDM_STRPRINTF_H

#include <stdarg.h>
#include <stdio.h>

/* FMT formatted with AP as a new string (free it), or NULL when out of
 * memory. */
static inline char *
str_vprintf (const char *fmt, va_list ap)
{
  char *s = NULL;

  if (vasprintf (&s, fmt, ap) == -1)
    return NULL;
  return s;
}

/* As str_vprintf, with the arguments listed. */
static inline char *str_printf (const char *fmt, ...)
    __attribute__ ((format (printf, 1, 2)));
static inline char *
str_printf (const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  s = str_vprintf (fmt, ap);
  va_end (ap);
  return s;
}

#endif /* VDM_STRPRINTF_H */
