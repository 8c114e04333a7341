/* The mirror's chunk map: the disk cut into chunks of the filter's
 * granularity, each dirty or clean and each busy or free.
 *
 * Dirty: the target may differ from the local disk in this chunk, so the
 * copier must copy it.  Busy: a guest request or a copier run holds the
 * chunk (a range lock): no one else reads or writes it until it is
 * released.  That lock is what keeps the copier from writing a stale copy
 * over a newer guest write (nbdkit-mirror-filter(1), "Consistency").
 *
 * The map has no lock of its own: every call is made under the mutex the
 * caller gives chunks_init, and chunks_lock waits on a condition variable
 * with it.  Functions that need the mutex assert they have it.
 */
#ifndef VDM_MIRROR_CHUNKS_H
#define VDM_MIRROR_CHUNKS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct chunks
{
  uint64_t n;      /* chunks */
  uint64_t *dirty; /* bitmap.h bitmaps of n bits */
  uint64_t *busy;
  uint64_t dirty_count; /* bits set in dirty */
  pthread_mutex_t *mutex;
  pthread_cond_t freed; /* broadcast whenever a busy chunk is released */
};

/* N chunks, all clean and free, guarded by MUTEX.  -1 (errno ENOMEM) if
 * the bitmaps cannot be allocated. */
int chunks_init (struct chunks *c, uint64_t n, pthread_mutex_t *mutex);
void chunks_free (struct chunks *c);

bool chunks_is_dirty (const struct chunks *c, uint64_t i);
bool chunks_is_busy (const struct chunks *c, uint64_t i);
/* Chunks C0..C1 (inclusive) dirty, or clean.  Return how many changed. */
uint64_t chunks_mark_dirty (struct chunks *c, uint64_t c0, uint64_t c1);
uint64_t chunks_mark_clean (struct chunks *c, uint64_t c0, uint64_t c1);
/* Every chunk dirty (a sync starts). */
void chunks_mark_all_dirty (struct chunks *c);

/* Range locks.  chunks_lock waits (on the mutex, which it may drop while
 * waiting) until no chunk of C0..C1 is busy, then makes them busy.
 * chunks_unlock releases them and wakes every waiter. */
void chunks_lock (struct chunks *c, uint64_t c0, uint64_t c1);
void chunks_unlock (struct chunks *c, uint64_t c0, uint64_t c1);
/* Wait until some busy chunk is released (the copier, when everything
 * dirty is busy). */
void chunks_wait_freed (struct chunks *c);

/* The first chunk at or after FROM, wrapping around, that is dirty (and
 * with IDLE_ONLY also free); c->n if there is none. */
uint64_t chunks_next_dirty (const struct chunks *c, uint64_t from,
                            bool idle_only);
/* The copier takes a run: from chunk FIRST (dirty and free), up to LIMIT
 * chunks that are each dirty and free, which become busy and clean (clean
 * before the read: a guest write during the copy makes them dirty again).
 * Returns the run's length, at least 1. */
uint64_t chunks_take_run (struct chunks *c, uint64_t first, uint64_t limit);

#endif /* VDM_MIRROR_CHUNKS_H */
