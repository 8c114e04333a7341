/* What every endpoint shares: errors, size, name, close. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "strprintf.h"

static void
set_error (char **err, const char *fmt, va_list ap)
{
  char *m = str_vprintf (fmt, ap);
  if (err) {
    free (*err);
    *err = m;
  }
  else
    free (m);
}

int
copy_error (char **err, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  set_error (err, fmt, ap);
  va_end (ap);
  return -1;
}

int
copy_error_errno (char **err, int errnum, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  set_error (err, fmt, ap);
  va_end (ap);
  errno = errnum;
  return -1;
}

int
copy_vdisk_error (char **err)
{
  int e = vdisk_get_errno ();
  copy_error (err, "%s", vdisk_get_error ());
  errno = e ? e : EIO;
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
