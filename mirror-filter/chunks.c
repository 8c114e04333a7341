/* The mirror's chunk map (chunks.h): dirty bits and range locks. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "bitmap.h"
#include "chunks.h"

/* Every function but init and free runs under the caller's mutex. */
#define ASSERT_LOCKED(c) assert (pthread_mutex_trylock ((c)->mutex) != 0)

int
chunks_init (struct chunks *c, uint64_t n, pthread_mutex_t *mutex)
{
  uint64_t words = bitmap_words (n) + 1; /* never a 0-byte calloc */

  c->n = n;
  c->dirty_count = 0;
  c->mutex = mutex;
  c->dirty = calloc (words, 8);
  c->busy = calloc (words, 8);
  if (!c->dirty || !c->busy) {
    chunks_free (c);
    errno = ENOMEM;
    return -1;
  }
  pthread_cond_init (&c->freed, NULL);
  return 0;
}

void
chunks_free (struct chunks *c)
{
  free (c->dirty);
  free (c->busy);
  c->dirty = c->busy = NULL;
}

bool
chunks_is_dirty (const struct chunks *c, uint64_t i)
{
  assert (i < c->n);
  return bitmap_get (c->dirty, i);
}

bool
chunks_is_busy (const struct chunks *c, uint64_t i)
{
  assert (i < c->n);
  return bitmap_get (c->busy, i);
}

/* Set chunks C0..C1 dirty or clean; how many changed. */
static uint64_t
mark (struct chunks *c, uint64_t c0, uint64_t c1, bool dirty)
{
  uint64_t changed = 0;
  ASSERT_LOCKED (c);
  assert (c0 <= c1 && c1 < c->n);
  for (uint64_t i = c0; i <= c1; i++)
    if (bitmap_get (c->dirty, i) != dirty) {
      (dirty ? bitmap_set : bitmap_clear) (c->dirty, i);
      changed++;
    }
  if (dirty)
    c->dirty_count += changed;
  else {
    assert (c->dirty_count >= changed);
    c->dirty_count -= changed;
  }
  return changed;
}

uint64_t
chunks_mark_dirty (struct chunks *c, uint64_t c0, uint64_t c1)
{
  return mark (c, c0, c1, true);
}

uint64_t
chunks_mark_clean (struct chunks *c, uint64_t c0, uint64_t c1)
{
  return mark (c, c0, c1, false);
}

void
chunks_mark_all_dirty (struct chunks *c)
{
  ASSERT_LOCKED (c);
  if (c->n)
    bitmap_set_all (c->dirty, c->n);
  c->dirty_count = c->n;
}

static bool
range_free (const struct chunks *c, uint64_t c0, uint64_t c1)
{
  for (uint64_t i = c0; i <= c1; i++)
    if (bitmap_get (c->busy, i))
      return false;
  return true;
}

void
chunks_lock (struct chunks *c, uint64_t c0, uint64_t c1)
{
  ASSERT_LOCKED (c);
  assert (c0 <= c1 && c1 < c->n);
  while (!range_free (c, c0, c1))
    pthread_cond_wait (&c->freed, c->mutex);
  for (uint64_t i = c0; i <= c1; i++)
    bitmap_set (c->busy, i);
}

void
chunks_unlock (struct chunks *c, uint64_t c0, uint64_t c1)
{
  ASSERT_LOCKED (c);
  assert (c0 <= c1 && c1 < c->n);
  for (uint64_t i = c0; i <= c1; i++) {
    assert (bitmap_get (c->busy, i)); /* only what was locked */
    bitmap_clear (c->busy, i);
  }
  pthread_cond_broadcast (&c->freed);
}

void
chunks_wait_freed (struct chunks *c)
{
  ASSERT_LOCKED (c);
  pthread_cond_wait (&c->freed, c->mutex);
}

uint64_t
chunks_next_dirty (const struct chunks *c, uint64_t from, bool idle_only)
{
  ASSERT_LOCKED (c);
  if (c->n == 0)
    return 0;
  return bitmap_next_wrapping (c->dirty, idle_only ? c->busy : NULL, c->n,
                               from < c->n ? from : 0);
}

uint64_t
chunks_take_run (struct chunks *c, uint64_t first, uint64_t limit)
{
  uint64_t len = 0;
  ASSERT_LOCKED (c);
  assert (first < c->n && limit >= 1);
  assert (bitmap_get (c->dirty, first) && !bitmap_get (c->busy, first));
  while (len < limit && first + len < c->n
         && bitmap_get (c->dirty, first + len)
         && !bitmap_get (c->busy, first + len)) {
    bitmap_set (c->busy, first + len);
    bitmap_clear (c->dirty, first + len);
    len++;
  }
  c->dirty_count -= len;
  return len;
}
