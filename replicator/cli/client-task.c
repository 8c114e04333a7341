/* Waiting on an asynchronous XenAPI task (Async.* methods), as every
 * command that starts one does it (vdi move, vm migrate, sr evacuate):
 * the waiting is the client's (xapi_client_task_wait), the bar is drawn
 * here, with the command's status text after it, and a Ctrl-C cancels
 * the task (task.cancel) and goes on waiting until it has ended, so the
 * server is left in one of the two states the task allows.  The task is
 * left on the server, so `task list` and `task show` still see how it
 * ended. */
#include <signal.h>

#include "client.h"

/* Set by the SIGINT handler; read after each poll. */
static volatile sig_atomic_t interrupted;

static void
on_interrupt (int sig)
{
  interrupted = 1;
}

void
client_catch_interrupt (void)
{
  /* SA_RESETHAND: a second Ctrl-C ends the command at once. */
  struct sigaction sa
      = { .sa_handler = on_interrupt, .sa_flags = SA_RESTART | SA_RESETHAND };
  struct sigaction old;

  /* A shell's background job ignores SIGINT: it keeps ignoring it. */
  if (sigaction (SIGINT, NULL, &old) == 0 && old.sa_handler != SIG_IGN)
    sigaction (SIGINT, &sa, NULL);
}

struct wait
{
  struct progress bar;
  struct xapi_client *c;
  const char *task;
  const struct client_task_wait *how;
  bool cancelled;
};

/* The command's text after the bar, when the bar was just drawn; "\033[K"
 * clears what a longer text left before. */
static void
draw_status (struct wait *w, double drawn_before)
{
  g_autofree char *text = NULL;

  if (!w->bar.enabled || w->how->status == NULL
      || w->bar.last_draw == drawn_before)
    return;
  text = w->how->status (w->c, w->task, w->how->opaque);
  fprintf (stderr, "%s\033[K", text ? text : "");
}

/* The first Ctrl-C: ask the server to cancel, once. */
static void
cancel (struct wait *w)
{
  g_autoptr (GError) e = NULL;

  w->cancelled = true;
  fprintf (stderr, "%svdimotion: interrupted: cancelling %s\n",
           w->bar.enabled ? "\n" : "", w->how->what);
  xv_free (xapi_client_call (w->c, &e, "task.cancel", xv_new_string (w->task),
                             NULL));
  if (e)
    fprintf (stderr, "vdimotion: task.cancel: %s\n", e->message);
}

/* After each poll of the pending task: the bar, the status, a Ctrl-C. */
static void
task_progress (double done, void *opaque)
{
  struct wait *w = opaque;
  double drawn_before = w->bar.last_draw;

  progress_update (&w->bar, (uint64_t)(done * w->bar.total));
  draw_status (w, drawn_before);
  if (interrupted && !w->cancelled)
    cancel (w);
}

char *
client_task_result (struct xapi_client *c, const char *task, GError **err)
{
  g_autoptr (xv) r = xapi_client_call (c, err, "task.get_result",
                                       xv_new_string (task), NULL);

  if (r == NULL)
    return NULL;
  return xapi_client_result_text (r->type == XV_STRING ? r->s : "");
}

char *
client_task_wait (struct xapi_client *c, const char *task,
                  const struct client_task_wait *how, GError **err)
{
  struct wait w = { .c = c, .task = task, .how = how };
  char *result;

  progress_init (&w.bar, client_opts.progress, how->total);
  result = xapi_client_task_wait (c, task, task_progress, &w, err);
  if (result && w.bar.enabled && how->status)
    fputs ("\r\033[K", stderr); /* the last bar without the status */
  if (result)
    progress_finish (&w.bar);
  else if (w.bar.enabled)
    fputc ('\n', stderr);
  if (result && w.cancelled)
    fprintf (stderr, "vdimotion: too late to cancel: %s\n", how->done);
  if (result == NULL && w.cancelled)
    g_prefix_error (err, "interrupted: %s is cancelled: ", how->what);
  return result;
}
