/* replicator/jobs/job-manager.c: the job manager's state machine, with a
 * kind of its own ("test") whose run does what the row's params say:
 *   "succeed"  record phase "working", end with a result uuid;
 *   "fail"     end with an error_info;
 *   "block"    wait until released (or cancelled, or the daemon stops);
 *   "stop"     wait for the daemon to stop and leave the row;
 *   "text"     show other_config "report" = "so far", wait until
 *              released, end with a text result;
 *   "fail-text" end with an error_info and a text result.
 * Every check reads the durable state (state.h) back, as a restarted
 * daemon would. */
#include <glib.h>

#include "jobs.h"
#include "unit.h"

static GMutex gate_lock;
static GCond gate_cond;
static bool gate_open;
static int runs, recovers, forgets;

static void
gate_set (bool open)
{
  g_mutex_lock (&gate_lock);
  gate_open = open;
  g_cond_broadcast (&gate_cond);
  g_mutex_unlock (&gate_lock);
}

/* Wait for the gate, a cancel or a stop: true if the gate opened. */
static bool
gate_wait (struct job *job)
{
  bool open;

  g_mutex_lock (&gate_lock);
  while (!gate_open && !job_cancelled (job)) {
    gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_MILLISECOND;
    g_cond_wait_until (&gate_cond, &gate_lock, end);
  }
  open = gate_open;
  g_mutex_unlock (&gate_lock);
  return open;
}

static void
test_run (struct job *job)
{
  const char *what = job_row (job)->params;
  g_autoptr (GError) error = NULL;

  __atomic_add_fetch (&runs, 1, __ATOMIC_SEQ_CST);
  if (job_set_phase (job, "working", &error) == -1) {
    const char *ei[] = { "INTERNAL_ERROR", error->message, NULL };
    job_fail (job, ei);
    return;
  }
  job_set_progress (job, 0.5);
  if (strcmp (what, "fail") == 0) {
    const char *ei[] = { "VDI_COPY_FAILED", "it went wrong", NULL };
    job_fail (job, ei);
    return;
  }
  if (strcmp (what, "fail-text") == 0) {
    const char *ei[] = { "VDI_COPY_FAILED", "half done", NULL };
    job_fail_text (job, ei, "{\"moved\": 1}");
    return;
  }
  if (strcmp (what, "text") == 0) {
    job_set_other_config (job, "report", "so far");
    if (gate_wait (job))
      job_succeed_text (job, "{\"moved\": 2}");
    else {
      const char *ei[] = { "TASK_CANCELLED", job_row (job)->task, NULL };
      job_fail (job, ei);
    }
    return;
  }
  if (strcmp (what, "block") == 0 || strcmp (what, "stop") == 0) {
    if (!gate_wait (job)) {
      if (job_stopping (job))
        return; /* the row stays for the next start */
      const char *ei[] = { "TASK_CANCELLED", job_row (job)->task, NULL };
      job_fail (job, ei);
      return;
    }
  }
  job_succeed (job, "11111111-2222-3333-4444-555555555555");
}

static enum job_recovery
test_recover (struct job *job)
{
  __atomic_add_fetch (&recovers, 1, __ATOMIC_SEQ_CST);
  if (job_cancel_requested (job)) {
    const char *ei[] = { "TASK_CANCELLED", job_row (job)->task, NULL };
    job_fail (job, ei);
    return JOB_RECOVER_DONE;
  }
  /* What resumes: the phase the last run recorded is still there
   * ("working"), or it never ran ("queued"). */
  CU_ASSERT (strcmp (job_row (job)->phase, "working") == 0
             || strcmp (job_row (job)->phase, "queued") == 0);
  g_free (job_row_mut (job)->params);
  job_row_mut (job)->params = g_strdup ("succeed");
  return JOB_RECOVER_RESUME;
}

static void
test_forget (struct job *job)
{
  __atomic_add_fetch (&forgets, 1, __ATOMIC_SEQ_CST);
}

static const struct job_kind test_kind = {
  .name = "test",
  .run = test_run,
  .recover = test_recover,
  .forget = test_forget,
};
static const struct job_kind *const test_kinds[] = { &test_kind, NULL };

/* A host with a state database in DIR and no SRs. */
static struct host *
new_host (const char *dir)
{
  struct host *h = host_new ();
  g_autoptr (GError) error = NULL;

  g_mkdir_with_parents (dir, 0700);
  h->state_dir = g_strdup (dir);
  h->state = state_open (dir, &error);
  CU_ASSERT_PTR_NOT_NULL_FATAL (h->state);
  return h;
}

static char *
submit (struct host *h, const char *what)
{
  struct state_job j = {
    .kind = (char *)"test",
    .vdi = (char *)"vdi",
    .dst_sr = (char *)"sr",
    .params = (char *)what,
  };
  g_autoptr (GError) error = NULL;
  char *task = jobs_submit (h->jobs, &j, what, &error);

  CU_ASSERT_PTR_NOT_NULL (task);
  CU_ASSERT_STRING_EQUAL (j.task, task);
  g_free (j.task);
  g_free (j.phase);
  return task;
}

static void
on_done (const char *task, void *opaque)
{
  (*(int *)opaque)++;
}

/* Wait (running the main context, as the daemon does) until TASK's
 * watcher was called; its record. */
static struct state_task *
wait_task (struct host *h, const char *task)
{
  int done = 0;
  gint64 end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;

  jobs_watch (h->jobs, task, on_done, &done);
  while (!done && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
  CU_ASSERT_EQUAL (done, 1);
  return state_task_get (h->state, task);
}

static bool
task_status_is (struct host *h, const char *task, const char *status)
{
  g_autoptr (state_task) t = state_task_get (h->state, task);
  return t && strcmp (t->status, status) == 0;
}

static void
test_success (void)
{
  struct host *h = new_host (unit_path ("success"));
  g_autofree char *task = NULL;
  g_autoptr (state_task) t = NULL;

  h->jobs = jobs_new (h, 1, test_kinds);
  task = submit (h, "succeed");
  t = wait_task (h, task);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t);
  CU_ASSERT_STRING_EQUAL (t->status, "success");
  CU_ASSERT_STRING_EQUAL (t->result_uuid,
                          "11111111-2222-3333-4444-555555555555");
  CU_ASSERT_EQUAL (t->progress, 1.0);
  CU_ASSERT_PTR_NULL (t->error_info);
  CU_ASSERT (t->finished >= t->created);
  /* The row goes with the end of the task. */
  CU_ASSERT_PTR_NULL (state_job_get (h->state, task));
  host_free (h);
}

static void
test_failure (void)
{
  struct host *h = new_host (unit_path ("failure"));
  g_autofree char *task = NULL;
  g_autoptr (state_task) t = NULL;

  h->jobs = jobs_new (h, 1, test_kinds);
  task = submit (h, "fail");
  t = wait_task (h, task);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t);
  CU_ASSERT_STRING_EQUAL (t->status, "failure");
  CU_ASSERT_PTR_NULL (t->result_uuid);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t->error_info);
  CU_ASSERT_STRING_EQUAL (t->error_info[0], "VDI_COPY_FAILED");
  CU_ASSERT_STRING_EQUAL (t->error_info[1], "it went wrong");
  CU_ASSERT_PTR_NULL (t->error_info[2]);
  /* Progress stays where the job had it. */
  CU_ASSERT_DOUBLE_EQUAL (t->progress, 0.5, 1e-9);
  CU_ASSERT_PTR_NULL (state_job_get (h->state, task));
  host_free (h);
}

/* A text result (a report), on success and on failure, and the
 * other_config a running job shows. */
static void
test_text_result (void)
{
  struct host *h = new_host (unit_path ("text"));
  g_autofree char *task = NULL, *failed = NULL;
  g_autoptr (state_task) t = NULL, f = NULL;
  g_autoptr (GHashTable) oc = NULL;
  gint64 end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;

  h->jobs = jobs_new (h, 2, test_kinds);
  CU_ASSERT_EQUAL (jobs_max_running (h->jobs), 2);
  gate_set (false);
  task = submit (h, "text");
  while ((oc = jobs_get_other_config (h->jobs, task)) == NULL
         && g_get_monotonic_time () < end)
    g_usleep (1000);
  CU_ASSERT_PTR_NOT_NULL_FATAL (oc);
  CU_ASSERT_STRING_EQUAL (g_hash_table_lookup (oc, "report"), "so far");
  gate_set (true);
  t = wait_task (h, task);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t);
  CU_ASSERT_STRING_EQUAL (t->status, "success");
  CU_ASSERT_PTR_NULL (t->result_uuid);
  CU_ASSERT_STRING_EQUAL (t->result_text, "{\"moved\": 2}");
  /* Over: no job, nothing shown. */
  CU_ASSERT_PTR_NULL (jobs_get_other_config (h->jobs, task));

  failed = submit (h, "fail-text");
  f = wait_task (h, failed);
  CU_ASSERT_PTR_NOT_NULL_FATAL (f);
  CU_ASSERT_STRING_EQUAL (f->status, "failure");
  CU_ASSERT_STRING_EQUAL (f->error_info[0], "VDI_COPY_FAILED");
  CU_ASSERT_STRING_EQUAL (f->result_text, "{\"moved\": 1}");
  /* The text goes with its task. */
  CU_ASSERT_EQUAL (state_task_remove (h->state, failed), 0);
  CU_ASSERT_PTR_NULL (state_task_get (h->state, failed));
  gate_set (false);
  host_free (h);
}

/* One thread: the second job waits in the queue, pending at 0, until
 * the first is over; a cancel then ends a running job "cancelled". */
static void
test_queue_and_cancel (void)
{
  struct host *h = new_host (unit_path ("queue"));
  g_autofree char *first = NULL, *second = NULL;
  g_autoptr (state_task) t1 = NULL;
  g_autoptr (state_task) t2 = NULL;
  double p = -1;
  gint64 end;

  gate_set (false);
  runs = 0;
  h->jobs = jobs_new (h, 1, test_kinds);
  first = submit (h, "block");
  second = submit (h, "block");
  end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  while (__atomic_load_n (&runs, __ATOMIC_SEQ_CST) < 1
         && g_get_monotonic_time () < end)
    g_usleep (1000);
  g_usleep (50 * 1000);
  CU_ASSERT_EQUAL (__atomic_load_n (&runs, __ATOMIC_SEQ_CST), 1);
  CU_ASSERT (jobs_get_progress (h->jobs, second, &p));
  CU_ASSERT_EQUAL (p, 0.0);
  CU_ASSERT (task_status_is (h, second, "pending"));
  {
    g_autoptr (state_job) row = state_job_get (h->state, second);
    CU_ASSERT_PTR_NOT_NULL_FATAL (row);
    CU_ASSERT_STRING_EQUAL (row->phase, "queued");
  }
  CU_ASSERT (jobs_get_progress (h->jobs, first, &p));
  CU_ASSERT_DOUBLE_EQUAL (p, 0.5, 1e-9);
  {
    g_autoptr (state_job) row = state_job_get (h->state, first);
    CU_ASSERT_PTR_NOT_NULL_FATAL (row);
    CU_ASSERT_STRING_EQUAL (row->phase, "working");
  }

  CU_ASSERT (jobs_cancel (h->jobs, first));
  CU_ASSERT (task_status_is (h, first, "cancelling")
             || task_status_is (h, first, "cancelled"));
  t1 = wait_task (h, first);
  CU_ASSERT_STRING_EQUAL (t1->status, "cancelled");
  CU_ASSERT_STRING_EQUAL (t1->error_info[0], "TASK_CANCELLED");
  CU_ASSERT_FALSE (jobs_cancel (h->jobs, first)); /* over: no job */

  gate_set (true);
  t2 = wait_task (h, second);
  CU_ASSERT_STRING_EQUAL (t2->status, "success");
  CU_ASSERT_EQUAL (__atomic_load_n (&runs, __ATOMIC_SEQ_CST), 2);
  host_free (h);
  gate_set (false);
}

/* A daemon that stops leaves a running job's row, a queued job's row
 * and a cancelled job's row; the next start recovers each: the kind's
 * recover resumes the first two and ends the third; a row whose task
 * had already ended is forgotten. */
static void
test_restart_recovery (void)
{
  const char *dir = unit_path ("restart");
  struct host *h = new_host (dir);
  g_autofree char *running = NULL, *queued = NULL, *cancelling = NULL;
  g_autofree char *ended = NULL;
  gint64 end;

  gate_set (false);
  runs = recovers = forgets = 0;
  h->jobs = jobs_new (h, 1, test_kinds);
  running = submit (h, "stop");
  queued = submit (h, "succeed");
  end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  while (__atomic_load_n (&runs, __ATOMIC_SEQ_CST) < 1
         && g_get_monotonic_time () < end)
    g_usleep (1000);
  host_free (h); /* the daemon stops */

  /* Between two runs: a row whose task is cancelling, and one whose task
   * ended before its row could go. */
  h = new_host (dir);
  {
    struct state_task t = { .uuid = (char *)"c-task", .name_label = "c",
                            .status = (char *)"cancelling" };
    struct state_job j = { .task = (char *)"c-task", .kind = (char *)"test",
                           .vdi = "v", .dst_sr = "s",
                           .phase = (char *)"working",
                           .params = (char *)"block" };
    CU_ASSERT_EQUAL (state_task_add (h->state, &t), 0);
    CU_ASSERT_EQUAL (state_job_add (h->state, &j), 0);
    cancelling = g_strdup ("c-task");
  }
  {
    struct state_task t = { .uuid = (char *)"e-task", .name_label = "e",
                            .status = (char *)"success" };
    struct state_job j = { .task = (char *)"e-task", .kind = (char *)"test",
                           .vdi = "v", .dst_sr = "s",
                           .phase = (char *)"working",
                           .params = (char *)"succeed" };
    CU_ASSERT_EQUAL (state_task_add (h->state, &t), 0);
    CU_ASSERT_EQUAL (state_job_add (h->state, &j), 0);
    ended = g_strdup ("e-task");
  }
  CU_ASSERT (task_status_is (h, running, "pending"));
  CU_ASSERT (task_status_is (h, queued, "pending"));
  {
    g_autoptr (state_job) row = state_job_get (h->state, running);
    CU_ASSERT_PTR_NOT_NULL_FATAL (row);
    CU_ASSERT_STRING_EQUAL (row->phase, "working");
  }
  h->jobs = jobs_new (h, 1, test_kinds);
  {
    g_autoptr (state_job) row = state_job_get (h->state, queued);
    CU_ASSERT_PTR_NOT_NULL_FATAL (row);
    CU_ASSERT_STRING_EQUAL (row->phase, "queued");
  }
  jobs_recover (h->jobs);
  CU_ASSERT_EQUAL (__atomic_load_n (&recovers, __ATOMIC_SEQ_CST), 3);
  CU_ASSERT_EQUAL (__atomic_load_n (&forgets, __ATOMIC_SEQ_CST), 1);
  CU_ASSERT_PTR_NULL (state_job_get (h->state, ended));
  {
    g_autoptr (state_task) t = state_task_get (h->state, cancelling);
    CU_ASSERT_STRING_EQUAL (t->status, "cancelled");
    CU_ASSERT_PTR_NULL (state_job_get (h->state, cancelling));
  }
  {
    g_autoptr (state_task) t1 = wait_task (h, running);
    g_autoptr (state_task) t2 = wait_task (h, queued);
    CU_ASSERT_STRING_EQUAL (t1->status, "success");
    CU_ASSERT_STRING_EQUAL (t2->status, "success");
  }
  host_free (h);
}

/* A kind nobody knows: refused at submission with nothing left behind,
 * and a row of one found at start ends its task as a failure. */
static void
test_unknown_kind (void)
{
  struct host *h = new_host (unit_path ("unknown"));
  struct state_job j = { .kind = (char *)"nonsense", .vdi = "v",
                         .dst_sr = "s" };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) tasks = NULL;

  h->jobs = jobs_new (h, 1, test_kinds);
  CU_ASSERT_PTR_NULL (jobs_submit (h->jobs, &j, "x", &error));
  CU_ASSERT_PTR_NOT_NULL_FATAL (error);
  CU_ASSERT_PTR_NOT_NULL (strstr (error->message, "nonsense"));
  tasks = state_list (h->state, "tasks", NULL, NULL);
  CU_ASSERT_EQUAL (tasks->len, 0);
  {
    struct state_task t = { .uuid = (char *)"u-task", .name_label = "u",
                            .status = (char *)"pending" };
    struct state_job r = { .task = (char *)"u-task", .kind = (char *)"gone",
                           .vdi = "v", .dst_sr = "s" };
    CU_ASSERT_EQUAL (state_task_add (h->state, &t), 0);
    CU_ASSERT_EQUAL (state_job_add (h->state, &r), 0);
  }
  jobs_recover (h->jobs);
  {
    g_autoptr (state_task) t = state_task_get (h->state, "u-task");
    CU_ASSERT_STRING_EQUAL (t->status, "failure");
    CU_ASSERT_STRING_EQUAL (t->error_info[0], "INTERNAL_ERROR");
    CU_ASSERT_PTR_NULL (state_job_get (h->state, "u-task"));
  }
  host_free (h);
}

/* A watch on a task without a job is called at once (from the main
 * context). */
static void
test_watch_without_job (void)
{
  struct host *h = new_host (unit_path ("watch"));
  int done = 0;
  gint64 end = g_get_monotonic_time () + 5 * G_TIME_SPAN_SECOND;

  h->jobs = jobs_new (h, 1, test_kinds);
  jobs_watch (h->jobs, "no-such-task", on_done, &done);
  CU_ASSERT_EQUAL (done, 0); /* not from inside jobs_watch */
  while (!done && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE);
  CU_ASSERT_EQUAL (done, 1);
  host_free (h);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "submit, run, success", test_success },
    { "failure", test_failure },
    { "text result and other_config", test_text_result },
    { "queue and cancel", test_queue_and_cancel },
    { "restart recovery", test_restart_recovery },
    { "unknown kind", test_unknown_kind },
    { "watch without a job", test_watch_without_job },
    { NULL },
  };
  return unit_main ("job manager", tests);
}
