/* The job manager (jobs.h): tasks, a thread pool, kinds as ops tables.
 *
 * A job's life: jobs_submit records its task (pending) and its row
 * (phase "queued"), then pushes it to the pool; job_thread hands it to
 * its kind's run, which ends the task (job_succeed / job_fail) unless
 * the daemon stops; then the job leaves by_task and its watchers are
 * called in the main context.  Every job in by_task is queued or
 * running, and ends at most once (job->ended).
 */

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "jobs.h"

struct job
{
  struct jobs *jobs;
  const struct job_kind *kind;
  struct state_job *row;
  /* 1: cancelled by a client; 2: the daemon stops (keep the journal). */
  int cancel;
  double progress;  /* under jobs->lock */
  gint64 last_save; /* when progress was last written to the database */
  GHashTable *other_config; /* under jobs->lock; NULL until set */
  bool ended;       /* job_succeed or job_fail was called */
};

struct watch
{
  char *task;
  void (*done) (const char *task, void *opaque);
  void *opaque;
};

struct jobs
{
  struct host *host;
  const struct job_kind *const *kinds;
  char *dir;
  GThreadPool *pool;
  unsigned max_running;
  GMutex lock;
  GHashTable *by_task; /* task uuid → struct job * (queued or running) */
  GPtrArray *watches; /* struct watch *, under lock */
  bool stopping;
};

static void job_thread (gpointer data, gpointer user_data);

void
job_crash_point (const char *name)
{
  const char *at = getenv ("VDIMOTIOND_CRASH_AT");

  if (at && strcmp (at, name) == 0) {
    g_message ("crash point %s: killing myself", name);
    kill (getpid (), SIGKILL);
  }
}

static const struct job_kind *
find_kind (struct jobs *jobs, const char *name)
{
  for (size_t i = 0; name && jobs->kinds[i]; i++)
    if (strcmp (jobs->kinds[i]->name, name) == 0)
      return jobs->kinds[i];
  return NULL;
}

static void
watch_free (gpointer p)
{
  struct watch *w = p;

  g_free (w->task);
  g_free (w);
}

struct jobs *
jobs_new (struct host *h, unsigned max_running,
          const struct job_kind *const *kinds)
{
  struct jobs *jobs = g_new0 (struct jobs, 1);

  jobs->dir = g_build_filename (h->state_dir, "jobs", NULL);
  g_mkdir_with_parents (jobs->dir, 0700);
  jobs->host = h;
  jobs->kinds = kinds;
  g_mutex_init (&jobs->lock);
  jobs->by_task = g_hash_table_new (g_str_hash, g_str_equal);
  jobs->watches = g_ptr_array_new_with_free_func (watch_free);
  jobs->max_running = max_running ? max_running : 3;
  jobs->pool = g_thread_pool_new (job_thread, jobs, (int)jobs->max_running,
                                  FALSE, NULL);
  return jobs;
}

static void
job_free (struct job *job)
{
  if (job->other_config)
    g_hash_table_unref (job->other_config);
  state_job_free (job->row);
  g_free (job);
}

void
jobs_free (struct jobs *jobs)
{
  GHashTableIter it;
  gpointer v;

  if (jobs == NULL)
    return;
  g_mutex_lock (&jobs->lock);
  jobs->stopping = true;
  g_hash_table_iter_init (&it, jobs->by_task);
  while (g_hash_table_iter_next (&it, NULL, &v))
    __atomic_store_n (&((struct job *)v)->cancel, 2, __ATOMIC_RELAXED);
  g_mutex_unlock (&jobs->lock);
  /* Queued jobs not started stay in the database for the next start. */
  g_thread_pool_free (jobs->pool, TRUE, TRUE);
  g_hash_table_iter_init (&it, jobs->by_task);
  while (g_hash_table_iter_next (&it, NULL, &v))
    job_free (v);
  g_hash_table_unref (jobs->by_task);
  g_ptr_array_unref (jobs->watches);
  g_mutex_clear (&jobs->lock);
  g_free (jobs->dir);
  g_free (jobs);
}

const char *
jobs_dir (struct jobs *jobs)
{
  return jobs->dir;
}

unsigned
jobs_max_running (struct jobs *jobs)
{
  return jobs->max_running;
}

GHashTable *
jobs_get_other_config (struct jobs *jobs, const char *task)
{
  GHashTable *copy = NULL;
  struct job *job;

  if (jobs == NULL)
    return NULL;
  g_mutex_lock (&jobs->lock);
  job = g_hash_table_lookup (jobs->by_task, task);
  if (job && job->other_config) {
    GHashTableIter it;
    gpointer k, v;

    copy = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
    g_hash_table_iter_init (&it, job->other_config);
    while (g_hash_table_iter_next (&it, &k, &v))
      g_hash_table_insert (copy, g_strdup (k), g_strdup (v));
  }
  g_mutex_unlock (&jobs->lock);
  return copy;
}

static struct job *
job_new (struct jobs *jobs, const struct job_kind *kind,
         struct state_job *row)
{
  struct job *job = g_new0 (struct job, 1);

  job->jobs = jobs;
  job->kind = kind;
  job->row = row;
  return job;
}

static void
enqueue (struct jobs *jobs, struct job *job)
{
  g_mutex_lock (&jobs->lock);
  g_assert (!g_hash_table_contains (jobs->by_task, job->row->task));
  g_hash_table_insert (jobs->by_task, job->row->task, job);
  g_mutex_unlock (&jobs->lock);
  g_thread_pool_push (jobs->pool, job, NULL);
}

char *
jobs_submit (struct jobs *jobs, struct state_job *j, const char *name_label,
             GError **error)
{
  struct state *st = jobs->host->state;
  const struct job_kind *kind = find_kind (jobs, j->kind);
  struct state_task t = {
    .name_label = (char *)name_label,
    .status = "pending",
    .created = g_get_real_time () / G_USEC_PER_SEC,
  };
  struct state_job *row;

  if (kind == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                 "no kind of job is called %s", j->kind ? j->kind : "(null)");
    return NULL;
  }
  t.uuid = g_uuid_string_random ();
  g_free (j->task);
  j->task = g_strdup (t.uuid);
  if (state_task_add (st, &t) == -1) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                 "cannot record the task");
    g_free (t.uuid);
    return NULL;
  }
  {
    struct state_job queued = *j;

    queued.phase = "queued";
    row = state_job_add (st, &queued) == 0 ? state_job_get (st, t.uuid)
                                            : NULL;
  }
  if (row == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                 "cannot record the job");
    if (state_job_remove (st, t.uuid) == -1
        || state_task_remove (st, t.uuid) == -1)
      g_critical ("task %s: cannot remove the task of a job never "
                  "recorded",
                  t.uuid);
    g_free (t.uuid);
    return NULL;
  }
  g_message ("task %s: %s queued", t.uuid, name_label);
  enqueue (jobs, job_new (jobs, kind, row));
  return t.uuid;
}

bool
jobs_get_progress (struct jobs *jobs, const char *task, double *progress)
{
  struct job *job;

  if (jobs == NULL)
    return false;
  g_mutex_lock (&jobs->lock);
  job = g_hash_table_lookup (jobs->by_task, task);
  if (job)
    *progress = job->progress;
  g_mutex_unlock (&jobs->lock);
  return job != NULL;
}

bool
jobs_cancel (struct jobs *jobs, const char *task)
{
  struct job *job;

  g_mutex_lock (&jobs->lock);
  job = g_hash_table_lookup (jobs->by_task, task);
  if (job)
    __atomic_store_n (&job->cancel, 1, __ATOMIC_RELAXED);
  g_mutex_unlock (&jobs->lock);
  if (job && state_task_set_status (jobs->host->state, task, "cancelling")
                 == -1)
    g_warning ("task %s: cannot record that it is cancelling", task);
  return job != NULL;
}

/* Watchers: called in the main context once a task's job is over. */

static gboolean
call_watch (gpointer p)
{
  struct watch *w = p;

  w->done (w->task, w->opaque);
  return G_SOURCE_REMOVE;
}

static void
schedule_watch (struct watch *w)
{
  GSource *src = g_idle_source_new ();

  g_source_set_callback (src, call_watch, w, watch_free);
  g_source_attach (src, NULL);
  g_source_unref (src);
}

void
jobs_watch (struct jobs *jobs, const char *task,
            void (*done) (const char *task, void *opaque), void *opaque)
{
  struct watch *w = g_new0 (struct watch, 1);
  bool running;

  w->task = g_strdup (task);
  w->done = done;
  w->opaque = opaque;
  g_mutex_lock (&jobs->lock);
  running = g_hash_table_contains (jobs->by_task, task);
  if (running)
    g_ptr_array_add (jobs->watches, w);
  g_mutex_unlock (&jobs->lock);
  if (!running)
    schedule_watch (w);
}

bool
jobs_unwatch (struct jobs *jobs, const char *task,
              void (*done) (const char *task, void *opaque), void *opaque)
{
  bool found = false;

  g_mutex_lock (&jobs->lock);
  for (guint i = 0; i < jobs->watches->len && !found; i++) {
    struct watch *w = jobs->watches->pdata[i];

    if (w->done == done && w->opaque == opaque && strcmp (w->task, task) == 0) {
      g_ptr_array_remove_index_fast (jobs->watches, i);
      found = true;
    }
  }
  g_mutex_unlock (&jobs->lock);
  return found;
}

/* TASK's job has left by_task: its watchers go to the main context.
 * Under jobs->lock. */
static void
release_watches (struct jobs *jobs, const char *task)
{
  for (guint i = jobs->watches->len; i-- > 0;) {
    struct watch *w = jobs->watches->pdata[i];

    if (strcmp (w->task, task) == 0)
      schedule_watch (g_ptr_array_steal_index (jobs->watches, i));
  }
}

/* Running a job (in a pool thread). */

static void
job_thread (gpointer data, gpointer user_data)
{
  struct job *job = data;
  struct jobs *jobs = job->jobs;

  job->kind->run (job);
  /* A kind ends its task unless the daemon stops. */
  if (!job->ended && !job_stopping (job))
    g_critical ("task %s: the %s job returned without ending its task",
                job->row->task, job->kind->name);
  g_mutex_lock (&jobs->lock);
  g_hash_table_remove (jobs->by_task, job->row->task);
  release_watches (jobs, job->row->task);
  g_mutex_unlock (&jobs->lock);
  job_free (job);
}

const struct state_job *
job_row (struct job *job)
{
  return job->row;
}

struct state_job *
job_row_mut (struct job *job)
{
  return job->row;
}

struct host *
job_host (struct job *job)
{
  return job->jobs->host;
}

bool
job_cancelled (struct job *job)
{
  return __atomic_load_n (&job->cancel, __ATOMIC_RELAXED) != 0;
}

bool
job_stopping (struct job *job)
{
  return __atomic_load_n (&job->cancel, __ATOMIC_RELAXED) == 2;
}

bool
job_cancel_requested (struct job *job)
{
  return __atomic_load_n (&job->cancel, __ATOMIC_RELAXED) == 1;
}

const int *
job_cancel_flag (struct job *job)
{
  return &job->cancel;
}

void
job_set_progress (struct job *job, double p)
{
  gint64 now = g_get_monotonic_time ();
  bool save;

  g_mutex_lock (&job->jobs->lock);
  job->progress = p;
  save = now - job->last_save > G_USEC_PER_SEC;
  if (save)
    job->last_save = now;
  g_mutex_unlock (&job->jobs->lock);
  /* Progress is advice: a failed write of it is logged by state.c and
   * costs nothing but a stale figure after a restart. */
  if (save && state_task_set_progress (job->jobs->host->state,
                                       job->row->task, p) == -1)
    g_debug ("task %s: progress not recorded", job->row->task);
}

void
job_set_other_config (struct job *job, const char *key, const char *value)
{
  g_mutex_lock (&job->jobs->lock);
  if (job->other_config == NULL)
    job->other_config
        = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  if (value)
    g_hash_table_insert (job->other_config, g_strdup (key), g_strdup (value));
  else
    g_hash_table_remove (job->other_config, key);
  g_mutex_unlock (&job->jobs->lock);
}

int
job_update (struct job *job, GError **error)
{
  if (state_job_update (job->jobs->host->state, job->row) == -1) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                 "cannot record the job's state (phase %s)",
                 job->row->phase ? job->row->phase : "none");
    return -1;
  }
  return 0;
}

int
job_set_phase (struct job *job, const char *phase, GError **error)
{
  g_autofree char *old = job->row->phase;

  job->row->phase = g_strdup (phase);
  if (job_update (job, error) == -1) {
    g_free (job->row->phase);
    job->row->phase = g_steal_pointer (&old);
    return -1;
  }
  return 0;
}

static void
finish (struct job *job, const char *status, const char *result_uuid,
        const char *result_text, const char *const *error_info)
{
  struct host *h = job->jobs->host;
  const char *task = job->row->task;
  double progress;

  g_assert (!job->ended);
  job->ended = true;
  /* The last figure clients saw came from memory: the record keeps it,
   * so progress never goes back when the task ends. */
  g_mutex_lock (&job->jobs->lock);
  progress = job->progress;
  g_mutex_unlock (&job->jobs->lock);
  if (progress > 0 && state_task_set_progress (h->state, task, progress) == -1)
    g_debug ("task %s: last progress not recorded", task);
  if (result_text
      && state_task_set_result_text (h->state, task, result_text) == -1) {
    g_critical ("task %s: cannot record its result (%s)", task, status);
    return;
  }
  if (state_task_finish (h->state, task, status, result_uuid, error_info)
      == -1) {
    /* The row stays, so the next start ends the task again. */
    g_critical ("task %s: cannot record its end (%s)", task, status);
    return;
  }
  job_crash_point ("finished");
  if (state_job_remove (h->state, task) == -1)
    g_warning ("task %s: ended, but its job's record stays (removed at "
               "the next start)",
               task);
  g_message ("task %s: %s%s%s", task, status, error_info ? ": " : "",
             error_info && error_info[0] && error_info[1] ? error_info[1]
                                                          : "");
}

void
job_succeed (struct job *job, const char *result_uuid)
{
  finish (job, "success", result_uuid, NULL, NULL);
}

void
job_succeed_text (struct job *job, const char *text)
{
  g_assert (text != NULL);
  finish (job, "success", NULL, text, NULL);
}

void
job_fail_text (struct job *job, const char *const *error_info,
               const char *text)
{
  g_assert (error_info && error_info[0]);
  finish (job,
          strcmp (error_info[0], "TASK_CANCELLED") == 0 ? "cancelled"
                                                        : "failure",
          NULL, text, error_info);
}

void
job_fail (struct job *job, const char *const *error_info)
{
  job_fail_text (job, error_info, NULL);
}

/* Recovery at start. */

void
jobs_recover (struct jobs *jobs)
{
  struct state *st = jobs->host->state;
  g_autoptr (GPtrArray) tasks = state_list (st, "jobs", NULL, NULL);

  for (guint i = 0; i < tasks->len; i++) {
    struct state_job *row = state_job_get (st, tasks->pdata[i]);
    g_autoptr (state_task) t = NULL;
    const struct job_kind *kind;
    struct job *job;

    if (row == NULL)
      continue;
    t = state_task_get (st, row->task);
    kind = find_kind (jobs, row->kind);
    if (t && strcmp (t->status, "pending") != 0
        && strcmp (t->status, "cancelling") != 0) {
      /* The task ended; only its job's record was left to remove. */
      job = job_new (jobs, kind, row);
      if (kind && kind->forget)
        kind->forget (job);
      if (state_job_remove (st, row->task) == -1)
        g_warning ("task %s: cannot remove its job's record", row->task);
      job_free (job);
      continue;
    }
    if (kind == NULL) {
      const char *ei[] = { "INTERNAL_ERROR", "a job of an unknown kind",
                           row->kind, NULL };

      job = job_new (jobs, NULL, row);
      finish (job, "failure", NULL, NULL, ei);
      job_free (job);
      continue;
    }
    job = job_new (jobs, kind, row);
    if (t && strcmp (t->status, "cancelling") == 0)
      job->cancel = 1;
    switch (kind->recover (job)) {
    case JOB_RECOVER_RESUME:
      g_assert (!job->ended);
      g_message ("task %s: resuming (%s of %s)", row->task, row->kind,
                 row->vdi);
      enqueue (jobs, job);
      continue;
    case JOB_RECOVER_DONE:
      g_assert (job->ended);
      break;
    case JOB_RECOVER_LEAVE:
      g_assert (!job->ended);
      g_warning ("task %s: left for the next start", row->task);
      break;
    }
    job_free (job);
  }
}
