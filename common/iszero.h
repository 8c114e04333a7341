/* Whether a buffer is all zero bytes: the test behind every "skip the
 * zeroes" decision (sparse copies, imports, exports, compare).  Compares
 * the buffer with itself one byte on, so it runs at memcmp's speed with
 * no zero page to compare against; an empty buffer is all zero. */
#ifndef VDM_ISZERO_H
#define VDM_ISZERO_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static inline bool
is_zero (const void *buf, size_t len)
{
  const unsigned char *p = buf;
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

#endif /* VDM_ISZERO_H */
