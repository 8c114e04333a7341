/* The mirror filter's control client (mirror-filter/control-client.h)
 * reading replies: good ones, refusals, and what a broken or hostile
 * filter might send (truncated, not JSON, wrong types, huge numbers),
 * each an error that says what is wrong; and the protocol's lines,
 * written by the client and read back by the filter's parser.  Against
 * a real nbdkit: test-mirror-control-nbdkit.c. */
#include <errno.h>

#include "control-client.h"
#include "mirror.h"
#include "unit.h"

#define STATUS_HEAD "{\"ok\":true,\"state\":\"ready\",\"target\":\"nbd+unix:///?socket=/t.sock\",\"pivoted\":false,"
#define STATUS_TAIL \
  "\"error\":null,\"bytes_copied\":52428800,\"bytes_zeroed\":1021313024," \
  "\"bytes_skipped\":0,\"writes_mirrored\":8123,"                         \
  "\"write_latency_mean_us\":212.4,\"write_latency_p99_us\":704.0,"       \
  "\"granularity\":65536,\"timeout\":30}"
#define SIZES                                                          \
  "\"bytes_total\":1073741824,\"bytes_done\":1073741824,\"dirty_bytes\":0,"
/* The example of nbdkit-mirror-filter(1). */
#define GOOD_STATUS STATUS_HEAD SIZES STATUS_TAIL

static void
test_status_is_read (void)
{
  struct mirror_status st;
  g_autoptr (GError) e = NULL;

  CU_ASSERT_FATAL (mirror_status_parse (GOOD_STATUS, &st, &e));
  CU_ASSERT_EQUAL (st.state, MIRROR_READY);
  CU_ASSERT_STRING_EQUAL (st.target, "nbd+unix:///?socket=/t.sock");
  CU_ASSERT (!st.pivoted);
  CU_ASSERT_EQUAL (st.bytes_total, 1073741824);
  CU_ASSERT_EQUAL (st.bytes_done, 1073741824);
  CU_ASSERT_EQUAL (st.dirty_bytes, 0);
  CU_ASSERT_PTR_NULL (st.error);
  CU_ASSERT_EQUAL (st.bytes_copied, 52428800);
  CU_ASSERT_EQUAL (st.bytes_zeroed, 1021313024);
  CU_ASSERT_EQUAL (st.writes_mirrored, 8123);
  CU_ASSERT_DOUBLE_EQUAL (st.write_latency_mean_us, 212.4, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL (st.write_latency_p99_us, 704.0, 1e-9);
  CU_ASSERT_EQUAL (st.granularity, 65536);
  CU_ASSERT_EQUAL (st.timeout, 30);
  mirror_status_clear (&st);
  CU_ASSERT_PTR_NULL (st.target);
}

static void
test_failed_status_says_why (void)
{
  const char *r = "{\"ok\":true,\"state\":\"failed\",\"target\":null,"
                  "\"pivoted\":false," SIZES
                  "\"error\":\"target: write at 0: took longer than 1 s\","
                  "\"bytes_copied\":0,\"bytes_zeroed\":0,\"bytes_skipped\":0,"
                  "\"writes_mirrored\":0,\"write_latency_mean_us\":0.0,"
                  "\"write_latency_p99_us\":0,\"granularity\":65536,"
                  "\"timeout\":1}";
  struct mirror_status st;

  CU_ASSERT_FATAL (mirror_status_parse (r, &st, NULL));
  CU_ASSERT_EQUAL (st.state, MIRROR_FAILED);
  CU_ASSERT_PTR_NULL (st.target);
  CU_ASSERT_STRING_EQUAL (st.error,
                          "target: write at 0: took longer than 1 s");
  mirror_status_clear (&st);
}

/* REPLY is read as an error of CODE whose message holds WANT. */
static void
assert_error (const char *reply, int code, const char *want)
{
  g_autoptr (GError) e = NULL;
  struct mirror_status st = { .target = (char *)"not touched" };

  CU_ASSERT (!mirror_status_parse (reply, &st, &e));
  CU_ASSERT_PTR_NULL (st.target);
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->domain, MIRROR_CONTROL_ERROR);
  CU_ASSERT_EQUAL (e->code, code);
  if (strstr (e->message, want) == NULL) {
    fprintf (stderr, "\"%s\": got \"%s\", want \"%s\"\n", reply, e->message,
             want);
    CU_FAIL ("the wrong message");
  }
}

static void
test_refusal_names_the_filter_message (void)
{
  g_autoptr (GError) e = NULL;

  CU_ASSERT_PTR_NULL (mirror_reply_parse (
      "{\"ok\":false,\"error\":\"complete: the mirror is syncing, not ready\"}",
      &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REFUSED);
  CU_ASSERT_STRING_EQUAL (e->message,
                          "complete: the mirror is syncing, not ready");
  assert_error ("{\"ok\":false}", MIRROR_CONTROL_ERROR_REPLY,
                "no \"error\"");
  assert_error ("{\"ok\":false,\"error\":7}", MIRROR_CONTROL_ERROR_REPLY,
                "\"error\" is not a string or null");
}

static void
test_bad_replies_are_errors (void)
{
  /* Truncated, at every byte. */
  for (size_t n = 0; n < strlen (GOOD_STATUS); n++) {
    g_autofree char *cut = g_strndup (GOOD_STATUS, n);
    struct mirror_status st;

    CU_ASSERT (!mirror_status_parse (cut, &st, NULL));
  }
  assert_error ("", MIRROR_CONTROL_ERROR_REPLY, "not a JSON object");
  assert_error ("hello", MIRROR_CONTROL_ERROR_REPLY, "not JSON");
  assert_error ("[1,2]", MIRROR_CONTROL_ERROR_REPLY, "not a JSON object");
  assert_error ("{\"ok\":true} trailing", MIRROR_CONTROL_ERROR_REPLY,
                "not JSON");
  assert_error ("{\"ok\":\"true\"}", MIRROR_CONTROL_ERROR_REPLY,
                "\"ok\" is not true or false");
  assert_error ("{\"state\":\"ready\"}", MIRROR_CONTROL_ERROR_REPLY,
                "no \"ok\"");
  assert_error ("{\"ok\":true,\"state\":\"\xff\"}", MIRROR_CONTROL_ERROR_REPLY,
                "not JSON");
  assert_error ("{\"ok\":true,\"state\":\"dreaming\"}",
                MIRROR_CONTROL_ERROR_REPLY, "\"dreaming\" is no state");
  assert_error ("{\"ok\":true,\"state\":7}", MIRROR_CONTROL_ERROR_REPLY,
                "\"state\" is not a string");
  /* A member missing, or of the wrong type. */
  assert_error (STATUS_HEAD "\"bytes_total\":1,\"bytes_done\":1," STATUS_TAIL,
                MIRROR_CONTROL_ERROR_REPLY, "no \"dirty_bytes\"");
  assert_error (STATUS_HEAD "\"bytes_total\":1,\"bytes_done\":\"1\","
                            "\"dirty_bytes\":0," STATUS_TAIL,
                MIRROR_CONTROL_ERROR_REPLY,
                "\"bytes_done\" is not an integer");
  assert_error (STATUS_HEAD "\"bytes_total\":1.5,\"bytes_done\":1,"
                            "\"dirty_bytes\":0," STATUS_TAIL,
                MIRROR_CONTROL_ERROR_REPLY,
                "\"bytes_total\" is not an integer");
  assert_error (STATUS_HEAD "\"bytes_total\":{},\"bytes_done\":1,"
                            "\"dirty_bytes\":0," STATUS_TAIL,
                MIRROR_CONTROL_ERROR_REPLY,
                "\"bytes_total\" is not an integer");
}

static void
test_huge_numbers_are_errors (void)
{
  static const char *const huge[] = { "-1", "9223372036854775808",
                                      "18446744073709551615",
                                      "99999999999999999999999" };
  struct mirror_status st;

  for (size_t i = 0; i < G_N_ELEMENTS (huge); i++) {
    g_autofree char *r = g_strdup_printf (
        STATUS_HEAD "\"bytes_total\":%s,\"bytes_done\":0,\"dirty_bytes\":0,"
                    STATUS_TAIL, huge[i]);

    assert_error (r, MIRROR_CONTROL_ERROR_REPLY,
                  "\"bytes_total\" is negative or too large");
  }
  CU_ASSERT_FATAL (mirror_status_parse (
      STATUS_HEAD "\"bytes_total\":9223372036854775807,\"bytes_done\":0,"
                  "\"dirty_bytes\":0," STATUS_TAIL,
      &st, NULL));
  CU_ASSERT_EQUAL (st.bytes_total, INT64_MAX);
  mirror_status_clear (&st);
}

/* The filter's error replies, whatever bytes the message holds, are
 * strict JSON that the client reads back. */
static void
test_filter_errors_read_back (void)
{
  static const char *const msgs[] = {
    "plain", "quote \" backslash \\ tab \t nl \n", "unit \x1f del \x7f",
    "not UTF-8: \xff\xfe", "UTF-8: \xc3\xa9",
  };
  static const char *const back[] = {
    "plain", "quote \" backslash \\ tab \t nl \n", "unit \x1f del \x7f",
    "not UTF-8: \xef\xbf\xbd\xef\xbf\xbd", "UTF-8: \xc3\xa9",
  };

  for (size_t i = 0; i < G_N_ELEMENTS (msgs); i++) {
    char *r = mirror_reply_error ("%s", msgs[i]);
    g_autoptr (GError) e = NULL;

    CU_ASSERT_FATAL (r != NULL);
    CU_ASSERT_PTR_NULL (strchr (r, '\n'));
    CU_ASSERT_PTR_NULL (mirror_reply_parse (r, &e));
    CU_ASSERT_FATAL (e != NULL);
    CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REFUSED);
    CU_ASSERT_STRING_EQUAL (e->message, back[i]);
    free (r);
  }
}

/* REQ's line, and the filter's reading of it. */
static void
assert_round_trip (const struct control_request *req, const char *want)
{
  char *line = control_format (req), *reply = NULL;
  struct control_request back;

  CU_ASSERT_FATAL (line != NULL);
  CU_ASSERT_STRING_EQUAL (line, want);
  line[strlen (line) - 1] = '\0';
  CU_ASSERT_FATAL (control_parse (line, &back, &reply) == 0);
  CU_ASSERT_EQUAL (back.cmd, req->cmd);
  CU_ASSERT_STRING_EQUAL (back.target ? back.target : "",
                          req->target ? req->target : "");
  CU_ASSERT_STRING_EQUAL (back.tls_psk_file ? back.tls_psk_file : "",
                          req->tls_psk_file ? req->tls_psk_file : "");
  CU_ASSERT_EQUAL (back.pivot, req->pivot);
  CU_ASSERT_EQUAL (back.sync, req->sync);
  CU_ASSERT_STRING_EQUAL (back.cbt_log ? back.cbt_log : "",
                          req->cbt_log ? req->cbt_log : "");
  free (line);
}

static void
test_lines_round_trip (void)
{
  struct control_request blank
      = { .cmd = CONTROL_START, .target = "nbd://h/x y" };
  struct control_request none = { .cmd = CONTROL_START };

  assert_round_trip (&(struct control_request){ .cmd = CONTROL_START,
                                                .target = "nbd://h:1/e" },
                     "start target=nbd://h:1/e\n");
  assert_round_trip (
      &(struct control_request){ .cmd = CONTROL_START,
                                 .target = "nbds://h/e",
                                 .tls_psk_file = "/run/k.psk" },
      "start target=nbds://h/e tls-psk-file=/run/k.psk\n");
  assert_round_trip (&(struct control_request){ .cmd = CONTROL_STATUS },
                     "status\n");
  assert_round_trip (
      &(struct control_request){ .cmd = CONTROL_COMPLETE, .pivot = true },
      "complete pivot=true\n");
  assert_round_trip (&(struct control_request){ .cmd = CONTROL_COMPLETE },
                     "complete\n");
  assert_round_trip (&(struct control_request){ .cmd = CONTROL_ABORT },
                     "abort\n");
  errno = 0;
  CU_ASSERT_PTR_NULL (control_format (&blank));
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_PTR_NULL (control_format (&none));
  CU_ASSERT_EQUAL (control_command_from_name ("complete"), CONTROL_COMPLETE);
  CU_ASSERT_EQUAL (control_command_from_name ("frobnicate"), -1);
  CU_ASSERT_EQUAL (mirror_state_from_name ("aborted"), MIRROR_ABORTED);
  CU_ASSERT_STRING_EQUAL (mirror_state_name (MIRROR_SYNCING), "syncing");
}

/* start's sync=, pause and resume: their lines, read back. */
static void
test_sync_pause_resume_lines (void)
{
  struct control_request resume_no_pivot
      = { .cmd = CONTROL_RESUME, .target = "nbd://h/l" };
  struct control_request pivot_no_target
      = { .cmd = CONTROL_RESUME, .pivot = true };

  static const struct
  {
    struct control_request req;
    const char *line;
  } cases[] = {
    { { .cmd = CONTROL_START, .target = "nbd://h/l", .sync = MIRROR_SYNC_TOP },
      "start target=nbd://h/l sync=top\n" },
    { { .cmd = CONTROL_START, .target = "nbds://h/l", .tls_psk_file = "/k",
        .sync = MIRROR_SYNC_NONE },
      "start target=nbds://h/l tls-psk-file=/k sync=none\n" },
    /* full is the old line, unchanged */
    { { .cmd = CONTROL_START, .target = "nbd://h/l", .sync = MIRROR_SYNC_FULL },
      "start target=nbd://h/l\n" },
    { { .cmd = CONTROL_PAUSE }, "pause\n" },
    { { .cmd = CONTROL_RESUME }, "resume\n" },
    { { .cmd = CONTROL_RESUME, .target = "nbd+unix:///?socket=/l.sock",
        .pivot = true },
      "resume target=nbd+unix:///?socket=/l.sock pivot=true\n" },
    { { .cmd = CONTROL_RESUME, .target = "nbds://h/l", .tls_psk_file = "/k",
        .pivot = true },
      "resume target=nbds://h/l tls-psk-file=/k pivot=true\n" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_round_trip (&cases[i].req, cases[i].line);
  errno = 0;
  CU_ASSERT_PTR_NULL (control_format (&resume_no_pivot));
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_PTR_NULL (control_format (&pivot_no_target));
  CU_ASSERT_EQUAL (mirror_sync_from_name ("top"), MIRROR_SYNC_TOP);
  CU_ASSERT_EQUAL (mirror_sync_from_name ("half"), -1);
  CU_ASSERT_STRING_EQUAL (mirror_sync_name (MIRROR_SYNC_NONE), "none");
}

/* Each of the N LINES[i][0] is refused by the filter's parser with the
 * message LINES[i][1], read back as the client reads it. */
static void
assert_refused (const char *const lines[][2], size_t n)
{
  for (size_t i = 0; i < n; i++) {
    g_autofree char *line = g_strdup (lines[i][0]);
    char *reply = NULL;
    struct control_request req;
    g_autoptr (GError) e = NULL;

    CU_ASSERT_EQUAL (control_parse (line, &req, &reply), -1);
    CU_ASSERT_FATAL (reply != NULL);
    CU_ASSERT_PTR_NULL (mirror_reply_parse (reply, &e));
    CU_ASSERT_FATAL (e != NULL);
    CU_ASSERT_STRING_EQUAL (e->message, lines[i][1]);
    free (reply);
  }
}

/* What the filter's parser refuses of the new words, and why. */
static void
test_sync_pause_resume_refused (void)
{
  static const char *const lines[][2] = {
    { "start target=x sync=half", "start: sync must be full, top or none" },
    { "complete sync=top", "complete: unknown parameter \"sync\"" },
    { "pause now=1", "pause: unknown parameter \"now\"" },
    { "resume pivot=true", "resume: pivot=true needs target=URI" },
    { "resume target=nbd://h/", "resume: target=URI needs pivot=true (the "
                                "target becomes the disk)" },
    { "resume tls-psk-file=/k", "resume: target=URI needs pivot=true (the "
                                "target becomes the disk)" },
    { "resume target=x pivot=maybe", "resume: pivot must be true or false" },
    { "complete pivot=maybe", "complete: pivot must be true or false" },
  };

  assert_refused (lines, G_N_ELEMENTS (lines));
}

/* cbt-open and cbt-close: their lines, read back; what the client
 * cannot write; what the filter's parser refuses, and why. */
static void
test_cbt_lines (void)
{
  struct control_request log_on_start
      = { .cmd = CONTROL_START, .target = "nbd://h/l", .cbt_log = "/l" };
  struct control_request blank
      = { .cmd = CONTROL_CBT_OPEN, .cbt_log = "/a b.cbtlog" };
  static const char *const refused[][2] = {
    { "cbt-open log=sr/x.cbtlog",
      "cbt-open: log=PATH must be an absolute path, got \"sr/x.cbtlog\"" },
    { "cbt-open log=", "cbt-open: log=PATH must be an absolute path, got "
                       "\"\"" },
    { "cbt-open log", "cbt-open: expected KEY=VALUE, got \"log\"" },
    { "cbt-close log=/x", "cbt-close: unknown parameter \"log\"" },
    { "cbt-open target=nbd://h/", "cbt-open: unknown parameter \"target\"" },
    { "start target=nbd://h/ log=/x", "start: unknown parameter \"log\"" },
    { "cbt-opn", "unknown command \"cbt-opn\"" },
  };

  assert_round_trip (&(struct control_request){ .cmd = CONTROL_CBT_OPEN },
                     "cbt-open\n");
  assert_round_trip (
      &(struct control_request){ .cmd = CONTROL_CBT_OPEN,
                                 .cbt_log = "/srv/sr/ab12.cbtlog" },
      "cbt-open log=/srv/sr/ab12.cbtlog\n");
  assert_round_trip (&(struct control_request){ .cmd = CONTROL_CBT_CLOSE },
                     "cbt-close\n");
  errno = 0;
  CU_ASSERT_PTR_NULL (control_format (&log_on_start));
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_PTR_NULL (control_format (&blank));
  CU_ASSERT_EQUAL (control_command_from_name ("cbt-close"), CONTROL_CBT_CLOSE);
  assert_refused (refused, G_N_ELEMENTS (refused));
}

/* A status with the members of sync modes and pause; without them (an
 * older filter) they read as full, not paused, 0. */
static void
test_status_sync_and_pause (void)
{
#define STATUS_UNTIL_TIMEOUT                                               \
  STATUS_HEAD SIZES "\"error\":null,\"bytes_copied\":1,"                  \
                    "\"bytes_zeroed\":2,\"bytes_skipped\":3,"              \
                    "\"writes_mirrored\":4,\"write_latency_mean_us\":0,"   \
                    "\"write_latency_p99_us\":0,\"granularity\":65536,"    \
                    "\"timeout\":30,"
  const char *r = STATUS_UNTIL_TIMEOUT
      "\"sync\":\"top\",\"paused\":true,\"bytes_backing\":1048576}";
  const char *bad = STATUS_UNTIL_TIMEOUT "\"sync\":\"half\"}";
  struct mirror_status st;
  g_autoptr (GError) e = NULL;

  CU_ASSERT_FATAL (mirror_status_parse (r, &st, NULL));
  CU_ASSERT_EQUAL (st.sync, MIRROR_SYNC_TOP);
  CU_ASSERT (st.paused);
  CU_ASSERT_EQUAL (st.bytes_backing, 1048576);
  mirror_status_clear (&st);
  CU_ASSERT_FATAL (mirror_status_parse (GOOD_STATUS, &st, NULL));
  CU_ASSERT_EQUAL (st.sync, MIRROR_SYNC_FULL);
  CU_ASSERT (!st.paused);
  CU_ASSERT_EQUAL (st.bytes_backing, 0);
  mirror_status_clear (&st);
  CU_ASSERT (!mirror_status_parse (bad, &st, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_STRING_EQUAL (e->message, "the reply's \"sync\" \"half\" is no mode");
}

/* A typed command to a blank value is refused before any socket. */
static void
test_request_errors (void)
{
  g_autoptr (GError) e = NULL;

  CU_ASSERT (!mirror_start ("/nonexistent.sock", "nbd://h/a b", NULL, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REQUEST);
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, "blanks"));
  g_clear_error (&e);
  CU_ASSERT (!mirror_resume ("/nonexistent.sock", "nbd://h/l", NULL, false,
                             &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REQUEST);
  g_clear_error (&e);
  CU_ASSERT (!mirror_resume ("/nonexistent.sock", NULL, NULL, true, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_REQUEST);
}

/* A socket that is not there: an I/O error naming the disk and socket. */
static void
test_poll_names_the_disk (void)
{
  g_autoptr (GError) e = NULL;
  struct mirror_disk disks[]
      = { { .name = "xvda", .socket = unit_path ("none.sock") } };
  bool ready;

  CU_ASSERT (!mirror_poll (disks, 1, &ready, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_IO);
  CU_ASSERT (g_str_has_prefix (e->message, "disk xvda: mirror control "));
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, "none.sock"));
}

static bool
always (void *opaque)
{
  return true;
}

static void
test_wait_cancelled_first (void)
{
  g_autoptr (GError) e = NULL;
  struct mirror_disk disks[] = { { .socket = unit_path ("none.sock") } };
  struct mirror_wait_ops ops = { .cancelled = always };

  CU_ASSERT (!mirror_wait_ready (disks, 1, 100, &ops, NULL, &e));
  CU_ASSERT_FATAL (e != NULL);
  CU_ASSERT_EQUAL (e->code, MIRROR_CONTROL_ERROR_CANCELLED);
  CU_ASSERT_STRING_EQUAL (e->message, "cancelled");
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "status is read", test_status_is_read },
    { "failed status says why", test_failed_status_says_why },
    { "refusal names the filter's message",
      test_refusal_names_the_filter_message },
    { "bad replies are errors", test_bad_replies_are_errors },
    { "huge numbers are errors", test_huge_numbers_are_errors },
    { "filter errors read back", test_filter_errors_read_back },
    { "lines round-trip", test_lines_round_trip },
    { "request errors", test_request_errors },
    { "sync, pause and resume lines", test_sync_pause_resume_lines },
    { "sync, pause and resume refused", test_sync_pause_resume_refused },
    { "status says sync and pause", test_status_sync_and_pause },
    { "cbt-open and cbt-close lines", test_cbt_lines },
    { "poll names the disk", test_poll_names_the_disk },
    { "wait cancelled first", test_wait_cancelled_first },
    { NULL },
  };
  return unit_main ("mirror control client", tests);
}
