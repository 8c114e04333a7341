/* libFuzzer target: the mirror filter's control protocol
 * (mirror-filter/control-proto.c), fed the bytes a client sends on the
 * control socket.  They are cut into lines as control.c's serve_client
 * cuts them (at '\n', at most MAX_LINE bytes), and each line is parsed
 * as the filter parses it.  Every error reply must be one line that the
 * daemon's own reader (control-client.c) reads back as "ok":false with
 * an error, and strict JSON when the line was UTF-8.  The input is also
 * read as a reply line, as the daemon would read a reply. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "control-client.h"
#include "mirror.h"

#define MAX_LINE 4096 /* as control.c */

static void
check_reply (const char *line, char *reply)
{
  char *ok, *err;

  if (!reply)
    return; /* out of memory: the filter drops the client */
  ok = mirror_reply_get (reply, "ok");
  err = mirror_reply_get (reply, "error");
  if (strchr (reply, '\n') || !ok || strcmp (ok, "false") != 0 || !err) {
    fprintf (stderr, "fuzz: bad error reply: %s\n", reply);
    abort ();
  }
  if (g_utf8_validate (line, -1, NULL)) {
    g_autoptr (JsonParser) p = json_parser_new ();
    g_autoptr (GError) e = NULL;
    if (!json_parser_load_from_data (p, reply, -1, &e)) {
      fprintf (stderr, "fuzz: reply is not JSON (%s): %s\n", e->message,
               reply);
      abort ();
    }
  }
  free (ok);
  free (err);
  free (reply);
}

static void
one_line (const char *bytes, size_t len)
{
  char line[MAX_LINE + 1], copy[MAX_LINE + 1];
  struct control_request req;
  char *reply;

  memcpy (line, bytes, len);
  line[len] = '\0';
  memcpy (copy, line, len + 1);
  if (control_parse (line, &req, &reply) == -1) {
    check_reply (copy, reply);
    return;
  }
  if (reply || req.cmd > CONTROL_ABORT
      || (req.cmd == CONTROL_START && !req.target)
      || (req.cmd != CONTROL_START && (req.target || req.tls_psk_file))) {
    fprintf (stderr, "fuzz: \"%s\" parsed into a bad request\n", copy);
    abort ();
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *p = (const char *)data;
  size_t have = size;

  /* serve_client: a line longer than MAX_LINE ends the session. */
  while (have) {
    const char *nl = memchr (p, '\n', have < MAX_LINE ? have : MAX_LINE);
    if (!nl)
      break;
    one_line (p, nl - p);
    have -= nl + 1 - p;
    p = nl + 1;
  }

  /* The other way: the input as a reply the daemon reads. */
  char *j = strndup ((const char *)data, size);
  uint64_t u;
  if (!j)
    abort ();
  free (mirror_reply_get (j, "ok"));
  free (mirror_reply_get (j, "error"));
  free (mirror_reply_get (j, "state"));
  mirror_reply_get_u64 (j, "bytes_total", &u);
  free (j);
  return 0;
}
