/* common/: bitmaps (bits, the tail of the last word, the wrapping search
 * the mirror's copier uses), the zero test, the monotonic clock, whole
 * reads and writes, binding SQL parameters, messages as new strings,
 * password hashes, JSON strings, JSON objects' members. */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "bitmap.h"
#include "clock.h"
#include "full-io.h"
#include "iszero.h"
#include "json-builder.h"
#include "json.h"
#include "password.h"
#include "sqlite-bind.h"
#include "strprintf.h"
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

/* json_fix_generated: a document json-glib wrote is strict JSON, its
 * doubles with exponents too, and reads back the same. */
static void
test_json_generated (void)
{
  static const double doubles[] = { 1e22, -5e-36, 0.5, 1.0, 60.1, 1e300 };
  g_autoptr (JsonArray) a = json_array_new ();
  g_autoptr (JsonNode) node = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autofree char *text = NULL;
  JsonArray *back;

  for (size_t i = 0; i < G_N_ELEMENTS (doubles); i++)
    json_array_add_double_element (a, doubles[i]);
  json_array_add_string_element (a, "1e5.0 \x1f \" e7");
  json_array_add_int_element (a, 7);
  node = json_node_init_array (json_node_alloc (), a);
  text = json_fix_generated (json_to_string (node, FALSE));
  CU_ASSERT_PTR_NULL (strchr (text, 0x1f));
  CU_ASSERT_FATAL (json_parser_load_from_data (p, text, -1, NULL));
  back = json_node_get_array (json_parser_get_root (p));
  for (size_t i = 0; i < G_N_ELEMENTS (doubles); i++)
    CU_ASSERT_EQUAL (json_array_get_double_element (back, i), doubles[i]);
  CU_ASSERT_STRING_EQUAL (json_array_get_string_element (back, 6),
                          "1e5.0 \x1f \" e7");
  CU_ASSERT_EQUAL (json_array_get_int_element (back, 7), 7);
}

/* json_add_*_member: each member as json-glib writes it, a NULL string
 * as null, an integer past 2^32 whole. */
static void
test_json_members (void)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_add_string_member (b, "s", "a \"b\"");
  json_add_string_member (b, "none", NULL);
  json_add_int_member (b, "size", UINT64_C (1) << 40);
  json_add_int_member (b, "minus", -1);
  json_add_bool_member (b, "yes", true);
  json_add_bool_member (b, "no", false);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  text = json_to_string (root, FALSE);
  CU_ASSERT_STRING_EQUAL (text, "{\"s\":\"a \\\"b\\\"\",\"none\":null,"
                                "\"size\":1099511627776,\"minus\":-1,"
                                "\"yes\":true,\"no\":false}");
}

/* A deadline is an absolute CLOCK_MONOTONIC time a condition variable
 * set to that clock times out at: neither early nor much late. */
static void
test_monotonic_deadline (void)
{
  pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  pthread_condattr_t ca;
  pthread_cond_t cond;
  struct timespec dl;
  uint64_t start;

  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&cond, &ca);
  pthread_mutex_lock (&lock);
  start = monotonic_ns ();
  dl = monotonic_deadline (200);
  CU_ASSERT (dl.tv_nsec >= 0 && dl.tv_nsec < 1000000000);
  while (pthread_cond_timedwait (&cond, &lock, &dl) != ETIMEDOUT)
    ;
  CU_ASSERT (monotonic_ns () - start >= 200 * 1000000ULL);
  CU_ASSERT (monotonic_ns () - start < 5000 * 1000000ULL);
  /* A deadline in the past times out at once. */
  dl = monotonic_deadline (-10);
  CU_ASSERT_EQUAL (pthread_cond_timedwait (&cond, &lock, &dl), ETIMEDOUT);
  pthread_mutex_unlock (&lock);
  pthread_cond_destroy (&cond);
  pthread_condattr_destroy (&ca);
}

static void
test_full_pwrite_pread (void)
{
  static char in[300000], out[sizeof in + 100];
  int fd = open (unit_path ("full-io"), O_RDWR | O_CREAT | O_TRUNC, 0600);

  CU_ASSERT_FATAL (fd >= 0);
  unit_fill (in, sizeof in, 1);
  CU_ASSERT (full_pwrite (fd, in, sizeof in, 4096) == 0);
  CU_ASSERT (full_pread (fd, out, sizeof in, 4096) == (ssize_t)sizeof in);
  CU_ASSERT (memcmp (in, out, sizeof in) == 0);
  /* Short only at end of file; nothing at all past it. */
  CU_ASSERT (full_pread (fd, out, sizeof out, 4096) == (ssize_t)sizeof in);
  CU_ASSERT (full_pread (fd, out, 10, 4096 + sizeof in) == 0);
  close (fd);
  CU_ASSERT (full_pread (fd, out, 10, 0) == -1 && errno == EBADF);
  CU_ASSERT (full_pwrite (fd, in, 10, 0) == -1 && errno == EBADF);
}

static volatile sig_atomic_t interrupted;

static void
on_signal (int sig)
{
  interrupted++;
}

struct drain
{
  int fd;
  pthread_t writer;
  size_t got;
};

/* Interrupts the writer blocked on a full pipe, then empties the pipe. */
static void *
drain_pipe (void *opaque)
{
  struct drain *d = opaque;
  char buf[65536];
  ssize_t r;

  usleep (50 * 1000);
  pthread_kill (d->writer, SIGUSR1);
  usleep (50 * 1000);
  while ((r = read (d->fd, buf, sizeof buf)) > 0)
    d->got += r;
  return NULL;
}

/* A write that blocks, is interrupted by a signal (no SA_RESTART: the
 * write fails with EINTR or returns short) and resumes: every byte
 * arrives, in one call. */
static void
test_full_write_through_signals (void)
{
  struct sigaction sa = { .sa_handler = on_signal }, old;
  int p[2];
  struct drain d = { .writer = pthread_self () };
  pthread_t th;
  size_t len;
  char *buf;

  CU_ASSERT_FATAL (pipe (p) == 0);
  len = 4 * (size_t)fcntl (p[1], F_GETPIPE_SZ);
  buf = calloc (1, len);
  CU_ASSERT_FATAL (buf != NULL);
  sigaction (SIGUSR1, &sa, &old);
  d.fd = p[0];
  interrupted = 0;
  CU_ASSERT_FATAL (pthread_create (&th, NULL, drain_pipe, &d) == 0);
  CU_ASSERT (full_write (p[1], buf, len) == 0);
  close (p[1]);
  pthread_join (th, NULL);
  close (p[0]);
  sigaction (SIGUSR1, &old, NULL);
  CU_ASSERT_EQUAL (interrupted, 1);
  CU_ASSERT_EQUAL (d.got, len);
  free (buf);
}

/* A socket whose peer went away: EPIPE, and no SIGPIPE (the default
 * action would end this test). */
static void
test_full_write_closed_socket (void)
{
  int s[2];

  CU_ASSERT_FATAL (socketpair (AF_UNIX, SOCK_STREAM, 0, s) == 0);
  close (s[1]);
  CU_ASSERT (full_write (s[0], "x", 1) == -1);
  CU_ASSERT_EQUAL (errno, EPIPE);
  close (s[0]);
  CU_ASSERT (full_write (s[0], "x", 1) == -1);
  CU_ASSERT_EQUAL (errno, EBADF);
}

static int
bind_and_step (sqlite3_stmt *st, const char *types, ...)
{
  va_list ap;
  int r;

  va_start (ap, types);
  r = sqlite_bindv (st, types, ap);
  va_end (ap);
  return r == SQLITE_OK ? sqlite3_step (st) : r;
}

/* Each letter binds its C type; a NULL string is SQL NULL, and the text
 * is copied (the buffer may change after binding). */
static void
test_sqlite_bind (void)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  char text[] = "it's; DROP TABLE x";

  CU_ASSERT_FATAL (sqlite3_open (":memory:", &db) == SQLITE_OK);
  CU_ASSERT_FATAL (
      sqlite3_prepare_v2 (db, "SELECT ?1, ?2, ?3, ?4", -1, &st, NULL)
      == SQLITE_OK);
  CU_ASSERT (bind_and_step (st, "sids", text, (int64_t)1 << 40, 2.5, NULL)
             == SQLITE_ROW);
  memset (text, 'x', sizeof text - 1);
  CU_ASSERT_STRING_EQUAL (sqlite3_column_text (st, 0), "it's; DROP TABLE x");
  CU_ASSERT_EQUAL (sqlite3_column_type (st, 1), SQLITE_INTEGER);
  CU_ASSERT_EQUAL (sqlite3_column_int64 (st, 1), (int64_t)1 << 40);
  CU_ASSERT_EQUAL (sqlite3_column_type (st, 2), SQLITE_FLOAT);
  CU_ASSERT_DOUBLE_EQUAL (sqlite3_column_double (st, 2), 2.5, 0);
  CU_ASSERT_EQUAL (sqlite3_column_type (st, 3), SQLITE_NULL);
  /* More letters than parameters: SQLite's range error, passed up. */
  sqlite3_reset (st);
  CU_ASSERT (bind_and_step (st, "sssss", "a", "b", "c", "d", "e")
             == SQLITE_RANGE);
  sqlite3_finalize (st);
  sqlite3_close (db);
}

/* A line without its line end, whichever; nothing at end of file. */
static void
test_password_read_line (void)
{
  static const char input[] = "secret\r\nother\nlast";
  FILE *f = fmemopen ((void *)input, sizeof input - 1, "r");
  char buf[64];

  CU_ASSERT_FATAL (f != NULL);
  CU_ASSERT (password_read_line (f, buf, sizeof buf));
  CU_ASSERT_STRING_EQUAL (buf, "secret");
  CU_ASSERT (password_read_line (f, buf, sizeof buf));
  CU_ASSERT_STRING_EQUAL (buf, "other");
  CU_ASSERT (password_read_line (f, buf, sizeof buf));
  CU_ASSERT_STRING_EQUAL (buf, "last");
  CU_ASSERT (!password_read_line (f, buf, sizeof buf));
  fclose (f);
}

/* A hash is a crypt(3) string with a fresh salt each time; it matches
 * its password only, and garbage or a failure marker matches nothing. */
static void
test_password_hash (void)
{
  char why[256] = "";
  char *a = password_hash ("secret", why, sizeof why);
  char *b = password_hash ("secret", why, sizeof why);

  CU_ASSERT_FATAL (a != NULL && b != NULL);
  CU_ASSERT_EQUAL (a[0], '$');
  CU_ASSERT (strcmp (a, b) != 0);
  CU_ASSERT (password_matches ("secret", a));
  CU_ASSERT (password_matches ("secret", b));
  CU_ASSERT (!password_matches ("Secret", a));
  CU_ASSERT (!password_matches ("secret\n", a));
  CU_ASSERT (!password_matches ("", a));
  CU_ASSERT (!password_matches ("secret", ""));
  CU_ASSERT (!password_matches ("secret", "*0"));
  CU_ASSERT (!password_matches ("secret", "$not-a-method$x"));
  /* The hash with its last character changed. */
  a[strlen (a) - 1] ^= 1;
  CU_ASSERT (!password_matches ("secret", a));
  free (a);
  free (b);
}

/* A message of any length, as a string of its own. */
static void
test_str_printf (void)
{
  char *s = str_printf ("%s: %d of %" PRIu64, "vdi", 3, UINT64_MAX);
  char *big;

  CU_ASSERT_STRING_EQUAL (s, "vdi: 3 of 18446744073709551615");
  free (s);
  s = str_printf ("%s", "");
  CU_ASSERT_STRING_EQUAL (s, "");
  free (s);
  big = malloc (100000);
  CU_ASSERT_FATAL (big != NULL);
  memset (big, 'x', 99999);
  big[99999] = '\0';
  s = str_printf ("<%s>", big);
  CU_ASSERT_FATAL (s != NULL);
  CU_ASSERT_EQUAL (strlen (s), 100001);
  CU_ASSERT (s[0] == '<' && s[100000] == '>');
  free (s);
  free (big);
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
    { "json generated", test_json_generated },
    { "json members", test_json_members },
    { "monotonic deadline", test_monotonic_deadline },
    { "full pwrite and pread", test_full_pwrite_pread },
    { "full write through signals", test_full_write_through_signals },
    { "full write to a closed socket", test_full_write_closed_socket },
    { "sqlite bind", test_sqlite_bind },
    { "str_printf", test_str_printf },
    { "password read line", test_password_read_line },
    { "password hash", test_password_hash },
    { NULL },
  };
  return unit_main ("common", tests);
}
