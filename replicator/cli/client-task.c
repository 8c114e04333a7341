/* Waiting on an asynchronous XenAPI task (Async.* methods): poll
 * task.get_record every 200 ms, draw its progress, and turn its end into
 * a result or an error.  The task is left on the server, so `task list`
 * and `task show` still see how it ended. */
#include <string.h>

#include "client.h"

#define POLL_INTERVAL_US 200000

/* xapi puts the XML-RPC of the result in the task's result field,
 * "<value>OpaqueRef:...</value>"; vdimotiond may put the bare ref.  Both
 * read as the text without its tags. */
static char *
task_result_text (const char *result)
{
  GString *s = g_string_new (NULL);
  bool in_tag = false;

  for (const char *p = result; *p; p++) {
    if (*p == '<')
      in_tag = true;
    else if (*p == '>')
      in_tag = false;
    else if (!in_tag)
      g_string_append_c (s, *p);
  }
  return g_strstrip (g_string_free (s, false));
}

/* The task's error_info as a XenAPI failure. */
static void
set_task_error (GError **err, const struct xv *rec, const char *task,
                const char *status)
{
  const struct xv *info = xv_get (rec, "error_info");
  g_autoptr (GString) msg = g_string_new (NULL);

  for (size_t i = 0; info && info->type == XV_ARRAY && i < info->n; i++)
    if (info->items[i]->type == XV_STRING) {
      if (msg->len)
        g_string_append_c (msg, ' ');
      g_string_append (msg, info->items[i]->s);
    }
  if (msg->len == 0)
    g_string_printf (msg, "%s %s",
                     strcmp (status, "cancelled") == 0 ? "TASK_CANCELLED"
                                                       : "INTERNAL_ERROR",
                     task);
  g_set_error_literal (err, CLIENT_ERROR, CLIENT_ERROR_XENAPI, msg->str);
}

char *
client_task_wait (struct client *c, const char *task, int mode, uint64_t total,
                  GError **err)
{
  struct progress p;

  progress_init (&p, mode, total);
  for (;;) {
    g_autoptr (xv) rec = client_call (c, err, "task.get_record", "(s)", task);
    const char *status;
    double done;

    if (rec == NULL)
      break;
    status = xv_str (rec, "status");
    done = xv_double (rec, "progress");
    if (done < 0)
      done = 0;
    if (done > 1)
      done = 1;
    if (strcmp (status, "pending") == 0
        || strcmp (status, "cancelling") == 0) {
      progress_update (&p, (uint64_t)(done * total));
      g_usleep (POLL_INTERVAL_US);
      continue;
    }
    if (strcmp (status, "success") == 0) {
      progress_finish (&p);
      return task_result_text (xv_str (rec, "result"));
    }
    set_task_error (err, rec, task, status);
    break;
  }
  if (p.enabled)
    fputc ('\n', stderr);
  return NULL;
}
