/* The monotonic clock (CLOCK_MONOTONIC: never jumps with the wall
 * clock), for durations, rates and deadlines, also as a condition
 * variable's timeout. */
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

/* The monotonic time MS milliseconds from now, as the absolute time
 * pthread_cond_timedwait takes for a condition variable set to
 * CLOCK_MONOTONIC (pthread_condattr_setclock). */
static inline struct timespec
monotonic_deadline (int64_t ms)
{
  int64_t ns = (int64_t)monotonic_ns () + ms * 1000000;
  return (struct timespec){ .tv_sec = ns / 1000000000,
                            .tv_nsec = ns % 1000000000 };
}

#endif /* VDM_CLOCK_H */
