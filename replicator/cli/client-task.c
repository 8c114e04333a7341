/* Waiting on an asynchronous XenAPI task (Async.* methods) with the
 * command's progress bar: the waiting is the client's
 * (xapi_client_task_wait), the bar is drawn here.  The task is left on
 * the server, so `task list` and `task show` still see how it ended. */
#include "client.h"

/* A poll of a pending task: the bar moves to its progress. */
static void
task_progress (double done, void *opaque)
{
  struct progress *p = opaque;

  progress_update (p, (uint64_t)(done * p->total));
}

char *
client_task_wait (struct xapi_client *c, const char *task, int mode,
                  uint64_t total, GError **err)
{
  struct progress p;
  char *result;

  progress_init (&p, mode, total);
  result = xapi_client_task_wait (c, task, task_progress, &p, err);
  if (result)
    progress_finish (&p);
  else if (p.enabled)
    fputc ('\n', stderr);
  return result;
}
