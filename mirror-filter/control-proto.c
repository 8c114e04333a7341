/* The control protocol's words (nbdkit-mirror-filter(1)): a command line
 * parsed into a request, and the JSON of the replies.  No nbdkit and no
 * sockets here, so that tests/fuzz/fuzz-mirror-control.c can link this
 * file alone; control.c frames the lines, mirror.c runs the commands. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirror.h"

/* Split LINE into words: the command, then KEY=VALUE parameters.  Each
 * parameter is checked against its command before the command itself,
 * so "frobnicate x=1" is an unknown parameter of frobnicate. */
int
control_parse (char *line, struct control_request *req, char **reply)
{
  char *save = NULL, *cmd = strtok_r (line, " \t\r\n", &save);

  *req = (struct control_request){ 0 };
  *reply = NULL;
  if (!cmd) {
    *reply = mirror_reply_error ("empty command");
    return -1;
  }
  for (char *w; (w = strtok_r (NULL, " \t\r\n", &save));) {
    char *eq = strchr (w, '=');
    if (!eq) {
      *reply
          = mirror_reply_error ("%s: expected KEY=VALUE, got \"%s\"", cmd, w);
      return -1;
    }
    *eq = '\0';
    const char *v = eq + 1;
    if (strcmp (cmd, "start") == 0 && strcmp (w, "target") == 0)
      req->target = v;
    else if (strcmp (cmd, "start") == 0 && strcmp (w, "tls-psk-file") == 0)
      req->tls_psk_file = v;
    else if (strcmp (cmd, "complete") == 0 && strcmp (w, "pivot") == 0) {
      if (strcmp (v, "true") == 0)
        req->pivot = true;
      else if (strcmp (v, "false") == 0)
        req->pivot = false;
      else {
        *reply = mirror_reply_error ("complete: pivot must be true or false");
        return -1;
      }
    }
    else {
      *reply = mirror_reply_error ("%s: unknown parameter \"%s\"", cmd, w);
      return -1;
    }
  }
  if (strcmp (cmd, "start") == 0) {
    if (!req->target) {
      *reply = mirror_reply_error ("start: target=URI is required");
      return -1;
    }
    req->cmd = CONTROL_START;
  }
  else if (strcmp (cmd, "status") == 0)
    req->cmd = CONTROL_STATUS;
  else if (strcmp (cmd, "complete") == 0)
    req->cmd = CONTROL_COMPLETE;
  else if (strcmp (cmd, "abort") == 0)
    req->cmd = CONTROL_ABORT;
  else {
    *reply = mirror_reply_error ("unknown command \"%s\"", cmd);
    return -1;
  }
  return 0;
}

void
mirror_json_string (FILE *f, const char *s)
{
  fputc ('"', f);
  for (; s && *s; s++) {
    unsigned char ch = *s;
    if (ch == '"' || ch == '\\')
      fprintf (f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf (f, "\\u%04x", ch);
    else
      fputc (ch, f);
  }
  fputc ('"', f);
}

char *
mirror_reply_error (const char *fmt, ...)
{
  char *m = NULL, *out = NULL;
  size_t len;
  va_list ap;
  va_start (ap, fmt);
  if (vasprintf (&m, fmt, ap) == -1)
    m = NULL;
  va_end (ap);
  FILE *f = open_memstream (&out, &len);
  if (!f) {
    free (m);
    return NULL;
  }
  fputs ("{\"ok\":false,\"error\":", f);
  mirror_json_string (f, m ? m : "out of memory");
  fputs ("}", f);
  fclose (f);
  free (m);
  return out;
}
