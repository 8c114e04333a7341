/* mirror-filter/chunks.c: the mirror's dirty map and range locks.  The
 * copier takes only dirty, free chunks and cleans them before it reads;
 * a guest request waits for the chunks it needs; the counts stay true. */
#include <pthread.h>
#include <unistd.h>

#include "chunks.h"
#include "unit.h"

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;

static void
test_dirty_counts (void)
{
  struct chunks c;
  CU_ASSERT_FATAL (chunks_init (&c, 130, &m) == 0);
  pthread_mutex_lock (&m);
  CU_ASSERT_EQUAL (c.dirty_count, 0);
  CU_ASSERT_EQUAL (chunks_mark_dirty (&c, 3, 5), 3);
  CU_ASSERT_EQUAL (chunks_mark_dirty (&c, 4, 70), 65); /* 4, 5 were */
  CU_ASSERT_EQUAL (c.dirty_count, 68);
  CU_ASSERT_EQUAL (chunks_mark_clean (&c, 0, 10), 8);
  CU_ASSERT_EQUAL (c.dirty_count, 60);
  chunks_mark_all_dirty (&c);
  CU_ASSERT_EQUAL (c.dirty_count, 130);
  CU_ASSERT (chunks_is_dirty (&c, 129));
  CU_ASSERT_EQUAL (chunks_mark_clean (&c, 0, 129), 130);
  CU_ASSERT_EQUAL (chunks_next_dirty (&c, 0, false), 130);
  pthread_mutex_unlock (&m);
  chunks_free (&c);
}

static void
test_copier_takes_free_dirty_runs (void)
{
  struct chunks c;
  CU_ASSERT_FATAL (chunks_init (&c, 100, &m) == 0);
  pthread_mutex_lock (&m);
  chunks_mark_dirty (&c, 10, 29);
  chunks_lock (&c, 15, 15); /* a guest request holds chunk 15 */
  CU_ASSERT_EQUAL (chunks_next_dirty (&c, 0, true), 10);
  /* The run stops at the busy chunk; its chunks are busy and clean. */
  CU_ASSERT_EQUAL (chunks_take_run (&c, 10, 64), 5);
  CU_ASSERT (chunks_is_busy (&c, 14) && !chunks_is_dirty (&c, 14));
  CU_ASSERT_EQUAL (c.dirty_count, 15);
  /* Next free dirty chunk: past the busy 15, and wrapping from the end. */
  CU_ASSERT_EQUAL (chunks_next_dirty (&c, 11, true), 16);
  CU_ASSERT_EQUAL (chunks_next_dirty (&c, 50, true), 15 + 1);
  CU_ASSERT_EQUAL (chunks_next_dirty (&c, 50, false), 15);
  /* A limit cuts a run short. */
  CU_ASSERT_EQUAL (chunks_take_run (&c, 16, 4), 4);
  CU_ASSERT_EQUAL (chunks_next_dirty (&c, 0, true), 20);
  /* A write during the copy makes a chunk dirty again. */
  CU_ASSERT_EQUAL (chunks_mark_dirty (&c, 12, 12), 1);
  chunks_unlock (&c, 10, 14);
  chunks_unlock (&c, 16, 19);
  chunks_unlock (&c, 15, 15);
  CU_ASSERT_EQUAL (chunks_next_dirty (&c, 0, true), 12);
  pthread_mutex_unlock (&m);
  chunks_free (&c);
}

/* A guest request that needs a chunk the copier holds waits for it. */
static struct chunks shared;
static volatile int guest_got_it;

static void *
guest (void *arg)
{
  (void)arg;
  pthread_mutex_lock (&m);
  chunks_lock (&shared, 3, 6);
  guest_got_it = 1;
  chunks_unlock (&shared, 3, 6);
  pthread_mutex_unlock (&m);
  return NULL;
}

static void
test_range_lock_waits (void)
{
  pthread_t t;
  CU_ASSERT_FATAL (chunks_init (&shared, 8, &m) == 0);
  pthread_mutex_lock (&m);
  chunks_mark_dirty (&shared, 5, 5);
  CU_ASSERT_EQUAL (chunks_take_run (&shared, 5, 1), 1);
  pthread_mutex_unlock (&m);
  CU_ASSERT_FATAL (pthread_create (&t, NULL, guest, NULL) == 0);
  usleep (100 * 1000);
  CU_ASSERT_EQUAL (guest_got_it, 0); /* still waiting for chunk 5 */
  pthread_mutex_lock (&m);
  chunks_unlock (&shared, 5, 5);
  pthread_mutex_unlock (&m);
  pthread_join (t, NULL);
  CU_ASSERT_EQUAL (guest_got_it, 1);
  chunks_free (&shared);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "dirty counts", test_dirty_counts },
    { "copier takes free dirty runs", test_copier_takes_free_dirty_runs },
    { "range lock waits", test_range_lock_waits },
    { NULL },
  };
  return unit_main ("mirror chunks", tests);
}
