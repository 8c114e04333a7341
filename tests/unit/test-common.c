/* common/: bitmaps (bits, the tail of the last word, the wrapping search
 * the mirror's copier uses), the zero test, the monotonic clock, JSON
 * strings. */
#include <stdlib.h>
#include <unistd.h>

#include "bitmap.h"
#include "clock.h"
#include "iszero.h"
#include "json.h"
#include "unit.h"

static void
test_get_set_clear (void)
{
  uint64_t m[3] = { 0 };
  CU_ASSERT_EQUAL (bitmap_words (0), 0);
  CU_ASSERT_EQUAL (bitmap_words (64), 1);
  CU_ASSERT_EQUAL (bitmap_words (65), 2);
  for (uint64_t i = 0; i < 192; i += 7)
    bitmap_set (m, i);
  for (uint64_t i = 0; i < 192; i++)
    CU_ASSERT_EQUAL (bitmap_get (m, i), i % 7 == 0);
  bitmap_clear (m, 63);
  bitmap_clear (m, 70);
  CU_ASSERT (!bitmap_get (m, 70) && bitmap_get (m, 77));
}

static void
test_set_all_keeps_the_tail_clear (void)
{
  uint64_t m[3];
  memset (m, 0, sizeof m);
  bitmap_set_all (m, 130);
  CU_ASSERT (bitmap_get (m, 129));
  CU_ASSERT (!bitmap_get (m, 130));
  CU_ASSERT_EQUAL (m[2], 3);
  bitmap_set_all (m, 128);
  CU_ASSERT_EQUAL (m[1], ~UINT64_C (0));
}

static void
test_next_wrapping (void)
{
  uint64_t a[2] = { 0 }, b[2] = { 0 };
  const uint64_t n = 100;
  CU_ASSERT_EQUAL (bitmap_next_wrapping (a, NULL, n, 0), n);
  bitmap_set (a, 10);
  bitmap_set (a, 90);
  CU_ASSERT_EQUAL (bitmap_next_wrapping (a, NULL, n, 0), 10);
  CU_ASSERT_EQUAL (bitmap_next_wrapping (a, NULL, n, 10), 10);
  CU_ASSERT_EQUAL (bitmap_next_wrapping (a, NULL, n, 11), 90);
  CU_ASSERT_EQUAL (bitmap_next_wrapping (a, NULL, n, 91), 10); /* wraps */
  /* B hides bits of A. */
  bitmap_set (b, 10);
  CU_ASSERT_EQUAL (bitmap_next_wrapping (a, b, n, 91), 90);
  bitmap_set (b, 90);
  CU_ASSERT_EQUAL (bitmap_next_wrapping (a, b, n, 0), n);
  /* Against a plain loop, for every start. */
  uint64_t s = 7;
  memset (a, 0, sizeof a);
  memset (b, 0, sizeof b);
  for (int i = 0; i < 12; i++) {
    bitmap_set (a, unit_rnd (&s) % n);
    bitmap_set (b, unit_rnd (&s) % n);
  }
  for (uint64_t from = 0; from < n; from++) {
    uint64_t want = n;
    for (uint64_t k = 0; k < n && want == n; k++) {
      uint64_t i = (from + k) % n;
      if (bitmap_get (a, i) && !bitmap_get (b, i))
        want = i;
    }
    CU_ASSERT_EQUAL (bitmap_next_wrapping (a, b, n, from), want);
  }
}

static void
test_is_zero (void)
{
  static unsigned char buf[65536 + 1];
  CU_ASSERT (is_zero (buf, 0));
  CU_ASSERT (is_zero (buf, sizeof buf));
  /* A non-zero byte anywhere, the first and the last included. */
  for (size_t i = 0; i < sizeof buf; i += 4093) {
    buf[i] = 1;
    CU_ASSERT (!is_zero (buf, sizeof buf));
    CU_ASSERT (is_zero (buf, i)); /* everything before it */
    buf[i] = 0;
  }
  buf[sizeof buf - 1] = 0x80;
  CU_ASSERT (!is_zero (buf, sizeof buf));
  buf[sizeof buf - 1] = 0;
}

static void
test_monotonic_clock (void)
{
  uint64_t a = monotonic_ns ();
  double s = monotonic_seconds ();
  usleep (20 * 1000);
  CU_ASSERT (monotonic_ns () - a >= 20 * 1000000ULL);
  CU_ASSERT (monotonic_seconds () - s >= 0.02);
  CU_ASSERT (monotonic_seconds () - s < 5);
}

/* json_quote: json-glib's escapes, U+001F too, and any bytes made
 * UTF-8, so json-glib's strict parser reads back what went in. */
static void
test_json_quote (void)
{
  static const struct
  {
    const char *in, *out, *back;
  } cases[] = {
    { "plain", "\"plain\"", "plain" },
    { "q\" b\\ t\t n\n", "\"q\\\" b\\\\ t\\t n\\n\"", NULL },
    { "\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"", NULL },
    { "\xc3\xa9", "\"\xc3\xa9\"", NULL },
    { "bad \xff", "\"bad \xef\xbf\xbd\"", "bad \xef\xbf\xbd" },
  };
  g_autofree char *null = json_quote (NULL);

  CU_ASSERT_STRING_EQUAL (null, "null");
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *q = json_quote (cases[i].in);
    g_autoptr (JsonParser) p = json_parser_new ();

    CU_ASSERT_STRING_EQUAL (q, cases[i].out);
    CU_ASSERT_FATAL (json_parser_load_from_data (p, q, -1, NULL));
    CU_ASSERT_STRING_EQUAL (
        json_node_get_string (json_parser_get_root (p)),
        cases[i].back ? cases[i].back : cases[i].in);
  }
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "get set clear", test_get_set_clear },
    { "set all keeps the tail clear", test_set_all_keeps_the_tail_clear },
    { "next set bit, wrapping", test_next_wrapping },
    { "is_zero", test_is_zero },
    { "monotonic clock", test_monotonic_clock },
    { "json quote", test_json_quote },
    { NULL },
  };
  return unit_main ("common", tests);
}
