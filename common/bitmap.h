/* An in-memory bitmap of N bits in 64-bit words, bit i in word i / 64 at
 * position i % 64 (the least significant first).  The caller owns the
 * words (bitmap_words says how many) and any locking; every function is
 * O(1) but the searches, which are O(words).  On-disk bitmaps whose
 * layout a format defines (VHD's sector bitmaps, most significant bit
 * first) are that format's business, not this. */
#ifndef VDM_BITMAP_H
#define VDM_BITMAP_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Words needed for N bits. */
static inline uint64_t
bitmap_words (uint64_t n)
{
  return n / 64 + (n % 64 != 0);
}

static inline bool
bitmap_get (const uint64_t *m, uint64_t i)
{
  return m[i / 64] >> (i % 64) & 1;
}

static inline void
bitmap_set (uint64_t *m, uint64_t i)
{
  m[i / 64] |= UINT64_C (1) << (i % 64);
}

static inline void
bitmap_clear (uint64_t *m, uint64_t i)
{
  m[i / 64] &= ~(UINT64_C (1) << (i % 64));
}

/* Set bits 0..N-1 and clear the rest of the last word, so that searches
 * never find a bit past N. */
static inline void
bitmap_set_all (uint64_t *m, uint64_t n)
{
  memset (m, 0xff, bitmap_words (n) * 8);
  if (n % 64)
    m[n / 64] = (UINT64_C (1) << (n % 64)) - 1;
}

/* The first i >= FROM (FROM < N) with bit i set in A and clear in B (B may
 * be NULL: only A counts), searching on from FROM to N-1 and then from 0
 * (wrapping around once); N if there is none. */
static inline uint64_t
bitmap_next_wrapping (const uint64_t *a, const uint64_t *b, uint64_t n,
                      uint64_t from)
{
  uint64_t words = bitmap_words (n);
  assert (from < n);
  for (uint64_t k = 0; k <= words; k++) {
    uint64_t w = (from / 64 + k) % words;
    uint64_t v = a[w] & (b ? ~b[w] : ~UINT64_C (0));
    if (k == 0)
      v &= ~UINT64_C (0) << (from % 64);
    if (v)
      return w * 64 + __builtin_ctzll (v);
  }
  return n;
}

#endif /* VDM_BITMAP_H */
