/* The monotonic clock (CLOCK_MONOTONIC: never jumps with the wall
 * clock), for durations, rates and deadlines. */
#ifndef VDM_CLOCK_H
#define VDM_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds since an arbitrary start. */
static inline uint64_t
monotonic_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Seconds since the same start, as a double. */
static inline double
monotonic_seconds (void)
{
  return monotonic_ns () / 1e9;
}

#endif /* VDM_CLOCK_H */
