/* What every endpoint shares: errors, size, name, close. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "strprintf.h"

int
copy_error (char **err, const char *fmt, ...)
{
  va_list ap;
  char *m;
  va_start (ap, fmt);
  m = str_vprintf (fmt, ap);
  va_end (ap);
  if (err) {
    free (*err);
    *err = m;
  }
  else
    free (m);
  return -1;
}

uint64_t
copy_endpoint_size (struct copy_endpoint *e)
{
  return e->size;
}

const char *
copy_endpoint_name (struct copy_endpoint *e)
{
  return e->name;
}

int
copy_endpoint_close (struct copy_endpoint *e, char **err)
{
  return e ? e->ops->close (e, err) : 0;
}

bool
copy_is_nbd_uri (const char *s)
{
  return strncmp (s, "nbd://", 6) == 0 || strncmp (s, "nbds://", 7) == 0
         || strncmp (s, "nbd+unix://", 11) == 0
         || strncmp (s, "nbds+unix://", 12) == 0;
}
