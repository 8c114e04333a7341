/* libFuzzer target: the mirror filter's control protocol
 * (mirror-filter/control-proto.c), fed the bytes a client sends on the
 * control socket.  They are cut into lines as control.c's serve_client
 * cuts them (at '\n', at most MAX_LINE bytes), and each line is parsed
 * as the filter parses it.  Every error reply must be one line of strict
 * JSON that the daemon's own reader (control-client.c) reads back as a
 * refusal with a message, whatever bytes the line held; every request
 * parsed must come back the same through the client's control_format.
 * The input is also read as a reply, as the daemon would read one. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "control-client.h"
#include "mirror.h"

#define MAX_LINE 4096 /* as control.c */

static void
check_reply (char *reply)
{
  g_autoptr (GError) e = NULL;
  g_autoptr (JsonObject) o = NULL;

  if (!reply)
    return; /* out of memory: the filter drops the client */
  o = mirror_reply_parse (reply, &e);
  if (strchr (reply, '\n') || o || e->code != MIRROR_CONTROL_ERROR_REFUSED
      || !*e->message) {
    fprintf (stderr, "fuzz: bad error reply (%s): %s\n",
             e ? e->message : "read as ok", reply);
    abort ();
  }
  free (reply);
}

static bool
same_string (const char *a, const char *b)
{
  return (!a && !b) || (a && b && strcmp (a, b) == 0);
}

/* The client writes REQ's line; the filter reads back the same. */
static void
check_round_trip (const char *copy, const struct control_request *req)
{
  struct control_request back;
  char *line = control_format (req), *reply = NULL;

  if (!line && errno == EINVAL)
    return; /* the client refuses what the line cannot carry */
  if (!line)
    abort ();
  line[strlen (line) - 1] = '\0';
  if (control_parse (line, &back, &reply) == -1 || back.cmd != req->cmd
      || !same_string (back.target, req->target)
      || !same_string (back.tls_psk_file, req->tls_psk_file)
      || !same_string (back.cbt_log, req->cbt_log)
      || back.pivot != req->pivot || back.sync != req->sync) {
    fprintf (stderr, "fuzz: \"%s\" does not come back the same\n", copy);
    abort ();
  }
  free (line);
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
    check_reply (reply);
    return;
  }
  if (reply || req.cmd > CONTROL_CBT_CLOSE
      || (req.cmd == CONTROL_START && !req.target)
      || (req.cmd == CONTROL_RESUME && req.pivot != (req.target != NULL))
      || (req.cmd != CONTROL_START && req.cmd != CONTROL_RESUME
          && (req.target || req.tls_psk_file))
      || (req.cmd != CONTROL_START && req.sync != MIRROR_SYNC_FULL)
      || (req.cmd != CONTROL_CBT_OPEN && req.cbt_log)
      || (req.cbt_log && req.cbt_log[0] != '/')) {
    fprintf (stderr, "fuzz: \"%s\" parsed into a bad request\n", copy);
    abort ();
  }
  check_round_trip (copy, &req);
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
  g_autofree char *j = g_strndup ((const char *)data, size);
  JsonObject *o = mirror_reply_parse (j, NULL);
  struct mirror_status st;

  if (o)
    json_object_unref (o);
  if (mirror_status_parse (j, &st, NULL))
    mirror_status_clear (&st);
  return 0;
}
