/* The control protocol's words (nbdkit-mirror-filter(1), control-proto.h):
 * a command line parsed into a request and a request formatted into its
 * line, the state names, and the filter's error replies.  No nbdkit and
 * no sockets here, so that tests/fuzz/fuzz-mirror-control.c can link
 * this file alone; control.c frames the lines, mirror.c runs the
 * commands, control-client.c is the other end. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control-proto.h"
#include "json.h"
#include "mirror.h"

#define BLANKS " \t\r\n"

static const char *const state_names[] = {
  [MIRROR_IDLE] = "idle",           [MIRROR_SYNCING] = "syncing",
  [MIRROR_READY] = "ready",         [MIRROR_COMPLETED] = "completed",
  [MIRROR_ABORTED] = "aborted",     [MIRROR_FAILED] = "failed",
};

static const char *const command_names[] = {
  [CONTROL_START] = "start",
  [CONTROL_STATUS] = "status",
  [CONTROL_COMPLETE] = "complete",
  [CONTROL_ABORT] = "abort",
  [CONTROL_PAUSE] = "pause",
  [CONTROL_RESUME] = "resume",
  [CONTROL_CBT_OPEN] = "cbt-open",
  [CONTROL_CBT_CLOSE] = "cbt-close",
};

static const char *const sync_names[] = {
  [MIRROR_SYNC_FULL] = "full",
  [MIRROR_SYNC_TOP] = "top",
  [MIRROR_SYNC_NONE] = "none",
};

#define N_OF(a) (sizeof (a) / sizeof (a)[0])

const char *
mirror_state_name (enum mirror_state state)
{
  if ((unsigned)state >= N_OF (state_names))
    return "?";
  return state_names[state];
}

/* The index of NAME in the table NAMES of N names, or -1. */
static int
index_of (const char *const *names, size_t n, const char *name)
{
  for (size_t i = 0; name && i < n; i++)
    if (strcmp (name, names[i]) == 0)
      return i;
  return -1;
}

int
mirror_state_from_name (const char *name)
{
  return index_of (state_names, N_OF (state_names), name);
}

int
control_command_from_name (const char *name)
{
  return index_of (command_names, N_OF (command_names), name);
}

const char *
mirror_sync_name (enum mirror_sync sync)
{
  if ((unsigned)sync >= N_OF (sync_names))
    return "?";
  return sync_names[sync];
}

int
mirror_sync_from_name (const char *name)
{
  return index_of (sync_names, N_OF (sync_names), name);
}

/* Whether command CMD takes parameter KEY. */
static bool
takes (const char *cmd, const char *key)
{
  static const char *const params[] = {
    "start target",   "start tls-psk-file",  "start sync",
    "complete pivot", "resume target",       "resume tls-psk-file",
    "resume pivot",   "cbt-open log",
  };
  size_t n = strlen (cmd);

  for (size_t i = 0; i < N_OF (params); i++)
    if (strncmp (params[i], cmd, n) == 0 && params[i][n] == ' '
        && strcmp (params[i] + n + 1, key) == 0)
      return true;
  return false;
}

/* Check what a parsed request says as a whole. */
static int
check_request (const struct control_request *req, char **reply)
{
  if (req->cmd == CONTROL_START && !req->target)
    *reply = mirror_reply_error ("start: target=URI is required");
  else if (req->cmd == CONTROL_RESUME && req->pivot && !req->target)
    *reply = mirror_reply_error ("resume: pivot=true needs target=URI");
  else if (req->cmd == CONTROL_RESUME && !req->pivot
           && (req->target || req->tls_psk_file))
    *reply = mirror_reply_error (
        "resume: target=URI needs pivot=true (the target becomes the disk)");
  else if (req->cmd == CONTROL_CBT_OPEN && req->cbt_log
           && req->cbt_log[0] != '/')
    *reply = mirror_reply_error ("cbt-open: log=PATH must be an absolute "
                                 "path, got \"%s\"",
                                 req->cbt_log);
  else
    return 0;
  return -1;
}

/* Split LINE into words: the command, then KEY=VALUE parameters.  Each
 * parameter is checked against its command before the command itself,
 * so "frobnicate x=1" is an unknown parameter of frobnicate. */
int
control_parse (char *line, struct control_request *req, char **reply)
{
  char *save = NULL, *cmd = strtok_r (line, BLANKS, &save);
  int c;

  *req = (struct control_request){ 0 };
  *reply = NULL;
  if (!cmd) {
    *reply = mirror_reply_error ("empty command");
    return -1;
  }
  for (char *w; (w = strtok_r (NULL, BLANKS, &save));) {
    char *eq = strchr (w, '=');
    if (!eq) {
      *reply
          = mirror_reply_error ("%s: expected KEY=VALUE, got \"%s\"", cmd, w);
      return -1;
    }
    *eq = '\0';
    const char *v = eq + 1;
    if (!takes (cmd, w)) {
      *reply = mirror_reply_error ("%s: unknown parameter \"%s\"", cmd, w);
      return -1;
    }
    if (strcmp (w, "target") == 0)
      req->target = v;
    else if (strcmp (w, "tls-psk-file") == 0)
      req->tls_psk_file = v;
    else if (strcmp (w, "log") == 0)
      req->cbt_log = v;
    else if (strcmp (w, "sync") == 0) {
      int s = mirror_sync_from_name (v);
      if (s == -1) {
        *reply = mirror_reply_error ("start: sync must be full, top or none");
        return -1;
      }
      req->sync = s;
    }
    else if (strcmp (v, "true") == 0) /* pivot */
      req->pivot = true;
    else if (strcmp (v, "false") == 0)
      req->pivot = false;
    else {
      *reply = mirror_reply_error ("%s: pivot must be true or false", cmd);
      return -1;
    }
  }
  if ((c = control_command_from_name (cmd)) == -1) {
    *reply = mirror_reply_error ("unknown command \"%s\"", cmd);
    return -1;
  }
  req->cmd = c;
  return check_request (req, reply);
}

/* A value the line can carry: no blanks (an empty one reaches the
 * filter, which says what is wrong with it). */
static bool
carriable (const char *v)
{
  return v == NULL || strpbrk (v, BLANKS) == NULL;
}

char *
control_format (const struct control_request *req)
{
  char *line = NULL;
  int r;

  if ((unsigned)req->cmd >= N_OF (command_names)
      || (unsigned)req->sync >= N_OF (sync_names)
      || (req->cmd == CONTROL_START && req->target == NULL)
      || (req->cmd == CONTROL_RESUME && req->pivot != (req->target != NULL))
      || (req->cmd == CONTROL_RESUME && req->tls_psk_file && !req->target)
      || (req->cmd != CONTROL_CBT_OPEN && req->cbt_log)
      || !carriable (req->target) || !carriable (req->tls_psk_file)
      || !carriable (req->cbt_log)) {
    errno = EINVAL;
    return NULL;
  }
  switch (req->cmd) {
  case CONTROL_START:
  case CONTROL_RESUME: {
    bool start = req->cmd == CONTROL_START;
    bool sync = start && req->sync != MIRROR_SYNC_FULL;
    if (!req->target) {
      r = asprintf (&line, "resume\n");
      break;
    }
    r = asprintf (&line, "%s target=%s%s%s%s%s%s\n", command_names[req->cmd],
                  req->target, req->tls_psk_file ? " tls-psk-file=" : "",
                  req->tls_psk_file ? req->tls_psk_file : "",
                  sync ? " sync=" : "", sync ? sync_names[req->sync] : "",
                  start ? "" : " pivot=true");
    break;
  }
  case CONTROL_COMPLETE:
    r = asprintf (&line, "complete%s\n", req->pivot ? " pivot=true" : "");
    break;
  case CONTROL_CBT_OPEN:
    r = asprintf (&line, "cbt-open%s%s\n", req->cbt_log ? " log=" : "",
                  req->cbt_log ? req->cbt_log : "");
    break;
  default:
    r = asprintf (&line, "%s\n", command_names[req->cmd]);
  }
  if (r == -1) {
    errno = ENOMEM;
    return NULL;
  }
  return line;
}

char *
mirror_reply_error (const char *fmt, ...)
{
  g_autofree char *m = NULL, *q = NULL;
  char *out = NULL;
  va_list ap;

  va_start (ap, fmt);
  m = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  q = json_quote (m);
  if (asprintf (&out, "{\"ok\":false,\"error\":%s}", q) == -1)
    return NULL;
  return out;
}
