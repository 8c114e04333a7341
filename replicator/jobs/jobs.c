/* Jobs: the storage operations behind tasks (VDI.copy, VDI.pool_migrate).
 *
 * Design
 * - A job is a row of the jobs table (state.h) beside its task.  Jobs
 *   run on a GThreadPool of max-storage-operations threads (default 3);
 *   the others wait in its queue with their task pending at progress 0.
 * - The source VDI is claimed (class-vdi.c) from submission to the end,
 *   and the new VDI from its creation, so nothing else starts on them.
 * - The new VDI carries other_config["vdimotion-task"] = the task's uuid
 *   from the moment it exists (recorded with it) until the job succeeds.
 *   Whatever happens, a VDI with that mark and no running job is a
 *   leftover to destroy.  Its uuid is chosen and recorded in the job
 *   before it is created, so that an image a crash left without a
 *   record is found (and replaced or removed) too.
 * - Offline (the VDI is not in use): the copy engine copies the source
 *   chain, flattened, into the new VDI with a journal in
 *   <state-dir>/jobs/<task>.journal.  Progress is the engine's bytes.
 * - Live (a running VM's VBD uses the VDI): a second nbdkit serves the
 *   new VDI; the VBD's mirror filter is told to start mirroring to it;
 *   progress is the filter's bytes_done / bytes_total; when it is ready,
 *   "complete pivot=true" makes the new VDI the disk behind the VM's
 *   socket.  The job's phase is "pivoted" once that returned, and from
 *   then on the move only has bookkeeping left: point the VBD at the new
 *   VDI, destroy the old one.
 * - Cancel sets a flag the copy engine checks at every piece, and the
 *   live loop at every poll; the job then aborts and removes the new VDI.
 * - An offline job whose copy is complete records the phase
 *   "committing" before it touches anything else: its point of no
 *   return.  Then the VBDs of halted VMs follow the VDI (a move), the
 *   mark goes, the source is destroyed (a move), the task succeeds.
 * - Restart (jobs_recover, before the daemon serves): an offline job is
 *   queued again and resumes from its journal (windows done are not
 *   copied again), or if it was committing is finished (every step of
 *   the commit may be done twice); a live job before its pivot is
 *   aborted and cleaned up (task failure), after its pivot it is
 *   finished (the mirror filter is asked whether the pivot happened
 *   when the job had no time to record it).  A job whose task ended has
 *   only its record left to remove.  A clean stop
 *   (SIGTERM) stops running copies where they are, so they resume the
 *   same way; live moves are aborted.
 */

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control-client.h"
#include "copy.h"
#include "xapi.h"

#define TASK_MARK "vdimotion-task"

struct job
{
  struct jobs *jobs;
  struct state_job *row;
  /* 1: cancelled by a client; 2: the daemon stops (keep the journal). */
  int cancel;
  double progress;  /* under jobs->lock */
  gint64 last_save; /* when progress was last written to the database */
};

struct jobs
{
  struct xapi_daemon *d;
  GThreadPool *pool;
  GMutex lock;
  GHashTable *by_task; /* task uuid → struct job * (queued or running) */
  bool stopping;
};

static void job_thread (gpointer data, gpointer user_data);

/* For the tests (test-xapi-kill-sweep.sh): with VDIMOTIOND_CRASH_AT=NAME
 * in its environment the daemon kills itself (SIGKILL, as kill -9) when
 * a job reaches the point NAME, so that the tests can put a crash in
 * each window between two durable steps, however short. */
static void
crash_point (const char *name)
{
  const char *at = getenv ("VDIMOTIOND_CRASH_AT");

  if (at && strcmp (at, name) == 0) {
    g_message ("crash point %s: killing myself", name);
    kill (getpid (), SIGKILL);
  }
}

struct jobs *
jobs_new (struct xapi_daemon *d, unsigned max_running)
{
  struct jobs *jobs = g_new0 (struct jobs, 1);
  g_autofree char *dir = g_build_filename (d->state_dir, "jobs", NULL);

  g_mkdir_with_parents (dir, 0700);
  jobs->d = d;
  g_mutex_init (&jobs->lock);
  jobs->by_task = g_hash_table_new (g_str_hash, g_str_equal);
  jobs->pool = g_thread_pool_new (
      job_thread, jobs, max_running ? (int)max_running : 3, FALSE, NULL);
  return jobs;
}

static void
job_free (struct job *job)
{
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
  g_mutex_clear (&jobs->lock);
  g_free (jobs);
}

static char *
journal_path (struct jobs *jobs, const char *task)
{
  g_autofree char *file = g_strconcat (task, ".journal", NULL);

  return g_build_filename (jobs->d->state_dir, "jobs", file, NULL);
}

static void
remove_journal (struct jobs *jobs, const char *task)
{
  g_autofree char *jp = journal_path (jobs, task);

  copy_journal_remove (jp);
}

static void
enqueue (struct jobs *jobs, struct state_job *row)
{
  struct job *job = g_new0 (struct job, 1);

  job->jobs = jobs;
  job->row = row;
  g_mutex_lock (&jobs->lock);
  g_hash_table_insert (jobs->by_task, row->task, job);
  g_mutex_unlock (&jobs->lock);
  g_thread_pool_push (jobs->pool, job, NULL);
}

char *
jobs_submit (struct xapi_call *c, struct state_job *j, const char *name_label)
{
  struct state *st = c->d->state;
  struct state_task t = {
    .uuid = g_uuid_string_random (),
    .name_label = (char *)name_label,
    .status = "pending",
    .created = g_get_real_time () / G_USEC_PER_SEC,
  };
  struct state_job *row;

  j->task = g_strdup (t.uuid);
  if (state_task_add (st, &t) == -1 || state_job_add (st, j) == -1) {
    state_task_remove (st, t.uuid);
    g_free (t.uuid);
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the task", NULL);
    return NULL;
  }
  row = state_job_get (st, t.uuid);
  if (row == NULL) {
    g_free (t.uuid);
    xapi_fail (c, "INTERNAL_ERROR", "cannot read the job back", NULL);
    return NULL;
  }
  g_message ("task %s: %s queued", t.uuid, name_label);
  enqueue (c->d->jobs, row);
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
  if (job)
    state_task_set_status (jobs->d->state, task, "cancelling");
  return job != NULL;
}

static gboolean
wake (gpointer p)
{
  return G_SOURCE_CONTINUE;
}

xmlrpc_value *
jobs_reply (struct xapi_call *c, const char *task)
{
  g_autoptr (state_task) t = NULL;
  guint tick;

  if (c->async) {
    c->async_task = true;
    return xapi_ref (c, task);
  }
  /* Synchronous: keep serving other clients while this one waits. */
  tick = g_timeout_add (50, wake, NULL);
  for (;;) {
    g_main_context_iteration (NULL, TRUE);
    state_task_free (t);
    t = state_task_get (c->d->state, task);
    if (t == NULL
        || (strcmp (t->status, "pending") != 0
            && strcmp (t->status, "cancelling") != 0))
      break;
  }
  g_source_remove (tick);
  if (t == NULL) {
    xapi_fail (c, "HANDLE_INVALID", "task", task, NULL);
    return NULL;
  }
  if (strcmp (t->status, "success") == 0) {
    /* "<value>OpaqueRef:...</value>" → the ref. */
    g_autofree char *v = g_strdup (t->result ? t->result : "");

    if (g_str_has_prefix (v, "<value>") && g_str_has_suffix (v, "</value>")) {
      v[strlen (v) - strlen ("</value>")] = '\0';
      return xapi_string (c, v + strlen ("<value>"));
    }
    return xapi_string (c, v);
  }
  if (t->error_info && t->error_info[0]) {
    c->error = g_ptr_array_new_with_free_func (g_free);
    for (size_t i = 0; t->error_info[i]; i++)
      g_ptr_array_add (c->error, g_strdup (t->error_info[i]));
  }
  else
    xapi_fail (c, "INTERNAL_ERROR", t->status, NULL);
  return NULL;
}

/* Running a job (in a pool thread). */

static bool
cancelled (struct job *job)
{
  return __atomic_load_n (&job->cancel, __ATOMIC_RELAXED) != 0;
}

static void
set_progress (struct job *job, double p)
{
  gint64 now = g_get_monotonic_time ();
  bool save;

  g_mutex_lock (&job->jobs->lock);
  job->progress = p;
  save = now - job->last_save > G_USEC_PER_SEC;
  if (save)
    job->last_save = now;
  g_mutex_unlock (&job->jobs->lock);
  if (save)
    state_task_set_progress (job->jobs->d->state, job->row->task, p);
}

static void
copy_progress (const struct copy_progress *p, void *opaque)
{
  struct job *job = opaque;

  /* Called under the engine's lock: only memory here, the database
   * write of set_progress is rate-limited to once a second. */
  if (p->total)
    set_progress (job, (double)p->done / (double)p->total);
}

/* Destroy the VDIs of SR that carry TASK's mark (leftovers of a job that
 * did not finish). */
static void
destroy_marked (struct xapi_daemon *d, struct xapi_sr *s, const char *task)
{
  struct sr_vdi_list list = { 0 };

  if (s == NULL || sr_vdi_list (s->sr, &list) == -1)
    return;
  for (size_t i = 0; i < list.len; i++) {
    const char *mark = sr_vdi_get_other_config (list.v[i], TASK_MARK);

    if (mark && strcmp (mark, task) == 0) {
      if (sr_vdi_destroy (s->sr, list.v[i]->uuid) == 0)
        g_message ("task %s: removed the partial VDI %s", task,
                   list.v[i]->uuid);
      else
        g_warning ("task %s: cannot remove the partial VDI %s: %s", task,
                   list.v[i]->uuid, sr_get_error ());
    }
  }
  sr_vdi_list_free (&list);
}

/* The job's new VDI: created (with the mark) unless a previous run made
 * it.  Its uuid goes into the job's record before the VDI exists, and
 * the VDI's record carries the mark from its first moment, so whatever
 * a crash interrupts, the next start finds the VDI (or the image it
 * left without a record) by the job.  NULL with *ERR. */
static struct sr_vdi *
make_dest (struct job *job, const struct sr_vdi *src, struct xapi_sr *dst,
           char **err)
{
  struct xapi_daemon *d = job->jobs->d;
  struct state_job *row = job->row;
  struct sr_kv mark = { (char *)TASK_MARK, row->task };
  struct sr_vdi_create_params params = {
    .name_description = src->name_description,
    .other_config = &mark,
    .n_other_config = 1,
  };
  struct sr_vdi *v;

  if (row->dst_vdi) {
    v = sr_vdi_get_by_uuid (dst->sr, row->dst_vdi);
    if (v)
      return v;
    /* Chosen but not (completely) created: create it afresh under the
     * same uuid, without the journal. */
    remove_journal (job->jobs, row->task);
  }
  else {
    char uuid[SR_UUID_LEN + 1];

    if (sr_uuid_generate (uuid) == -1) {
      *err = g_strdup_printf ("cannot make a uuid: %s", sr_get_error ());
      return NULL;
    }
    row->dst_vdi = g_strdup (uuid);
    if (state_job_update (d->state, row) == -1) {
      g_clear_pointer (&row->dst_vdi, g_free);
      *err = g_strdup ("cannot record the new VDI's uuid");
      return NULL;
    }
    crash_point ("dest-chosen");
  }
  destroy_marked (d, dst, row->task);
  params.uuid = row->dst_vdi;
  v = sr_vdi_create (dst->sr, src->name_label,
                     vdisk_format_from_name (row->format), src->virtual_size,
                     &params);
  if (v == NULL) {
    *err = g_strdup_printf ("cannot create the new VDI: %s", sr_get_error ());
    return NULL;
  }
  xapi_vdi_try_claim (d, v->uuid, row->kind);
  return v;
}

/* The job's new VDI, if it has no record: remove the image a crash
 * between its creation and its record left (make_dest). */
static void
destroy_unrecorded (struct xapi_sr *s, const struct state_job *row)
{
  struct sr_vdi *v;

  if (s == NULL || row->dst_vdi == NULL)
    return;
  v = sr_vdi_get_by_uuid (s->sr, row->dst_vdi);
  if (v == NULL && sr_vdi_destroy (s->sr, row->dst_vdi) == 0)
    g_message ("task %s: removed the partial image of VDI %s", row->task,
               row->dst_vdi);
  sr_vdi_free (v);
}

/* Copy the source chain, flattened, into the new VDI with the copy
 * engine. */
static int
copy_offline (struct job *job, struct xapi_sr *src_sr,
              const struct sr_vdi *src, struct xapi_sr *dst_sr,
              const struct sr_vdi *dst, char **err)
{
  g_autofree char *journal = journal_path (job->jobs, job->row->task);
  struct copy_spec from = {
    .kind = COPY_VDI,
    .sr = src_sr->sr,
    .vdi = src->uuid,
    .open_flags = VDISK_OPEN_BUFFERED,
  };
  struct copy_spec to = {
    .kind = COPY_VDI,
    .sr = dst_sr->sr,
    .vdi = dst->uuid,
    .open_flags = VDISK_OPEN_BUFFERED,
  };
  struct copy_params p = {
    .dest_is_zero = true,
    .journal = journal,
    .progress = copy_progress,
    .progress_opaque = job,
    .cancel = &job->cancel,
  };
  struct copy_stats stats;
  char *e = NULL;

  if (copy_simple (&from, &to, &p, &stats, &e) == -1) {
    *err = g_strdup (e ? e : "copy failed");
    free (e);
    return -1;
  }
  g_message ("task %s: copied %s → %s: %" G_GUINT64_FORMAT
             " bytes read, %" G_GUINT64_FORMAT " written in %.1f s",
             job->row->task, src->uuid, dst->uuid, stats.bytes_read,
             stats.bytes_written, stats.seconds);
  return 0;
}

/* Send one command to the VBD's mirror filter; the reply, or NULL with
 * *ERR.  A reply of {"ok":false} is an error too. */
static char *
mirror_cmd (const struct state_vbd *b, const char *line, char **err)
{
  char *e = NULL;
  char *reply = mirror_control_call (b->control_socket, line, 60, &e);
  g_autofree char *ok = NULL;

  if (reply == NULL) {
    *err = g_strdup (e ? e : "mirror control failed");
    free (e);
    return NULL;
  }
  ok = mirror_reply_get (reply, "ok");
  if (g_strcmp0 (ok, "true") != 0) {
    char *msg = mirror_reply_get (reply, "error");

    *err = g_strdup_printf ("mirror filter: %s", msg ? msg : reply);
    free (msg);
    free (reply);
    return NULL;
  }
  return reply;
}

/* Undo a live move before its pivot: the mirror is dropped, the target
 * nbdkit stopped, the VBD forgets it. */
static void
live_abort (struct xapi_daemon *d, struct state_vbd *b)
{
  if (b->control_socket && xapi_serving (b->pid, b->nbd_socket)) {
    g_autofree char *err = NULL;
    char *reply = mirror_cmd (b, "abort\n", &err);

    free (reply);
    if (err)
      g_message ("mirror abort on %s: %s", b->control_socket, err);
  }
  if (b->target_pid)
    xapi_stop_serving (b->target_pid, b->target_socket, NULL, XAPI_STOP_NOW);
  g_clear_pointer (&b->target_socket, g_free);
  b->target_pid = 0;
  state_vbd_update (d->state, b);
}

/* After the pivot: the VBD's disk is the new VDI. */
static void
live_commit (struct xapi_daemon *d, struct state_vbd *b, const char *dst_vdi)
{
  g_free (b->vdi);
  b->vdi = g_strdup (dst_vdi);
  state_vbd_update (d->state, b);
}

static int
move_live (struct job *job, const struct sr_vdi *src, struct xapi_sr *dst_sr,
           const struct sr_vdi *dst, char **err)
{
  struct xapi_daemon *d = job->jobs->d;
  struct state_job *row = job->row;
  g_autoptr (state_vbd) b = state_vbd_get (d->state, row->vbd);
  g_autofree char *name = g_strconcat (dst->uuid, "-target", NULL);
  g_autofree char *line = NULL;
  g_autoptr (GError) error = NULL;
  struct xapi_served sv = { 0 };
  char *reply;

  if (b == NULL || !xapi_serving (b->pid, b->nbd_socket)) {
    *err = g_strdup ("the VM's disk is no longer served");
    return -1;
  }
  if (xapi_serve_image (d, name, dst_sr, dst, false, false, &sv, &error)
      == -1) {
    *err = g_strdup (error->message);
    return -1;
  }
  b->target_socket = sv.socket;
  b->target_pid = sv.pid;
  state_vbd_update (d->state, b);
  g_free (row->phase);
  row->phase = g_strdup ("mirroring");
  state_job_update (d->state, row);

  line = g_strdup_printf ("start target=nbd+unix:///?socket=%s\n",
                          b->target_socket);
  if ((reply = mirror_cmd (b, line, err)) == NULL)
    goto abort;
  free (reply);
  for (;;) {
    g_autofree char *state = NULL;
    uint64_t done = 0, total = 0;

    if (cancelled (job)) {
      *err = g_strdup ("cancelled");
      goto abort;
    }
    g_usleep (100 * 1000);
    if ((reply = mirror_cmd (b, "status\n", err)) == NULL)
      goto abort;
    state = mirror_reply_get (reply, "state");
    if (mirror_reply_get_u64 (reply, "bytes_done", &done)
        && mirror_reply_get_u64 (reply, "bytes_total", &total) && total)
      set_progress (job, 0.99 * (double)done / (double)total);
    if (g_strcmp0 (state, "failed") == 0) {
      char *why = mirror_reply_get (reply, "error");

      *err = g_strdup_printf ("the mirror failed: %s", why ? why : "?");
      free (why);
      free (reply);
      goto abort;
    }
    free (reply);
    if (g_strcmp0 (state, "ready") == 0)
      break;
  }
  if ((reply = mirror_cmd (b, "complete pivot=true\n", err)) == NULL)
    goto abort;
  free (reply);
  crash_point ("pivot-done");
  g_free (row->phase);
  row->phase = g_strdup ("pivoted");
  state_job_update (d->state, row);
  live_commit (d, b, dst->uuid);
  g_message ("task %s: VBD %s pivoted from VDI %s to %s", row->task, b->uuid,
             src->uuid, dst->uuid);
  return 0;

abort:
  live_abort (d, b);
  return -1;
}

static void
finish (struct job *job, const char *status, const char *result,
        const char *const *error_info)
{
  struct jobs *jobs = job->jobs;
  struct xapi_daemon *d = jobs->d;
  struct state_job *row = job->row;
  double progress;

  /* The last figure clients saw came from memory: the record keeps it,
   * so progress never goes back when the task ends. */
  g_mutex_lock (&jobs->lock);
  progress = job->progress;
  g_mutex_unlock (&jobs->lock);
  if (progress > 0)
    state_task_set_progress (d->state, row->task, progress);
  state_task_finish (d->state, row->task, status, result, error_info);
  crash_point ("finished");
  state_job_remove (d->state, row->task);
  g_message ("task %s: %s%s%s", row->task, status, error_info ? ": " : "",
             error_info ? error_info[1] : "");
}

/* The job failed or was cancelled: remove the new VDI, end the task. */
static void
fail_job (struct job *job, struct xapi_sr *dst_sr, const char *code,
          const char *msg)
{
  struct state_job *row = job->row;
  g_autofree char *ref = g_strconcat (XAPI_REF_PREFIX, row->vdi, NULL);
  g_autofree char *task_ref = g_strconcat (XAPI_REF_PREFIX, row->task, NULL);
  bool was_cancelled = __atomic_load_n (&job->cancel, __ATOMIC_RELAXED) == 1;
  const char *ei[] = { was_cancelled ? "TASK_CANCELLED" : code,
                       was_cancelled ? task_ref : msg, ref, NULL };

  destroy_marked (job->jobs->d, dst_sr, row->task);
  destroy_unrecorded (dst_sr, row);
  remove_journal (job->jobs, row->task);
  finish (job, was_cancelled ? "cancelled" : "failure", NULL, ei);
}

/* An offline job whose copy is complete: from here it can only succeed.
 * "committing" is recorded first, so that a restart finishes the job
 * (jobs_recover) rather than undoing it: every step below may be done
 * again.  A move then points halted VMs' VBDs at the new VDI and
 * destroys the source: the point of no return is the record of the
 * phase, before the source is touched. */
static void
commit_offline (struct job *job, struct xapi_sr *dst_sr)
{
  struct xapi_daemon *d = job->jobs->d;
  struct state_job *row = job->row;
  struct xapi_sr *src_sr = NULL;
  struct sr_vdi *src;
  g_autofree char *result = NULL;

  if (g_strcmp0 (row->phase, "committing") != 0) {
    g_free (row->phase);
    row->phase = g_strdup ("committing");
    if (state_job_update (d->state, row) == -1)
      g_warning ("task %s: cannot record the commit", row->task);
    crash_point ("committing");
  }
  if (strcmp (row->kind, "migrate") == 0) {
    /* Any halted VM's VBDs follow the VDI. */
    g_autoptr (GPtrArray) vbds
        = state_list (d->state, "vbds", "vdi", row->vdi);

    for (guint i = 0; i < vbds->len; i++) {
      g_autoptr (state_vbd) b = state_vbd_get (d->state, vbds->pdata[i]);

      if (b)
        live_commit (d, b, row->dst_vdi);
    }
  }
  /* The new VDI is a VDI like any other from here. */
  if (sr_vdi_set_other_config (dst_sr->sr, row->dst_vdi, TASK_MARK, NULL)
      == -1)
    g_warning ("task %s: VDI %s keeps its mark: %s", row->task, row->dst_vdi,
               sr_get_error ());
  if (strcmp (row->kind, "migrate") == 0
      && (src = xapi_find_vdi (d, row->vdi, &src_sr)) != NULL) {
    if (sr_vdi_destroy (src_sr->sr, src->uuid) == -1)
      g_warning ("task %s: the old VDI %s stays: %s", row->task, src->uuid,
                 sr_get_error ());
    sr_vdi_free (src);
    crash_point ("source-destroyed");
  }
  remove_journal (job->jobs, row->task);
  result
      = g_strdup_printf ("<value>" XAPI_REF_PREFIX "%s</value>", row->dst_vdi);
  finish (job, "success", result, NULL);
}

static void
run_job (struct job *job)
{
  struct xapi_daemon *d = job->jobs->d;
  struct state_job *row = job->row;
  struct xapi_sr *src_sr = NULL;
  struct xapi_sr *dst_sr = xapi_find_sr (d, row->dst_sr);
  struct sr_vdi *src = xapi_find_vdi (d, row->vdi, &src_sr);
  struct sr_vdi *dst = NULL;
  g_autofree char *err = NULL;
  g_autofree char *result = NULL;
  bool live = row->vbd != NULL;
  int r = -1;

  if (src == NULL || dst_sr == NULL) {
    err = g_strdup_printf ("the %s is gone", src ? "destination SR" : "VDI");
    goto fail;
  }
  if (cancelled (job))
    goto fail;
  set_progress (job, 0.0);
  if ((dst = make_dest (job, src, dst_sr, &err)) == NULL)
    goto fail;
  if (g_strcmp0 (row->phase, "queued") == 0) {
    g_free (row->phase);
    row->phase = g_strdup (live ? "mirroring" : "copying");
    state_job_update (d->state, row);
  }
  r = live ? move_live (job, src, dst_sr, dst, &err)
           : copy_offline (job, src_sr, src, dst_sr, dst, &err);
  if (r == -1 && !live
      && __atomic_load_n (&job->cancel, __ATOMIC_RELAXED) == 2) {
    /* The daemon stops: leave the journal and the partial VDI to the
     * next start, which resumes. */
    g_message ("task %s: stopped at the daemon's exit; resumes at start",
               row->task);
    goto out;
  }
  if (r == -1)
    goto fail;
  if (!live) {
    crash_point ("copied");
    commit_offline (job, dst_sr);
    goto out;
  }

  /* Pivoted.  The new VDI is a VDI like any other from here. */
  sr_vdi_set_other_config (dst_sr->sr, dst->uuid, TASK_MARK, NULL);
  if (strcmp (row->kind, "migrate") == 0) {
    if (sr_vdi_destroy (src_sr->sr, src->uuid) == -1)
      g_warning ("task %s: the old VDI %s stays: %s", row->task, src->uuid,
                 sr_get_error ());
  }
  remove_journal (job->jobs, row->task);
  result = g_strdup_printf ("<value>" XAPI_REF_PREFIX "%s</value>", dst->uuid);
  finish (job, "success", result, NULL);
  goto out;

fail:
  fail_job (job, dst_sr, live ? "MIRROR_FAILED" : "VDI_COPY_FAILED",
            err ? err : "cancelled");
out:
  if (dst)
    xapi_vdi_release (d, dst->uuid);
  xapi_vdi_release (d, row->vdi);
  sr_vdi_free (dst);
  sr_vdi_free (src);
}

/* The API the other kinds of jobs (migrate.c) run with. */

const struct state_job *
job_row (struct job *job)
{
  return job->row;
}

struct xapi_daemon *
job_daemon (struct job *job)
{
  return job->jobs->d;
}

bool
job_cancelled (struct job *job)
{
  return cancelled (job);
}

bool
job_stopping (struct job *job)
{
  return __atomic_load_n (&job->cancel, __ATOMIC_RELAXED) == 2;
}

const int *
job_cancel_flag (struct job *job)
{
  return &job->cancel;
}

void
job_set_progress (struct job *job, double progress)
{
  set_progress (job, progress);
}

void
job_set_phase (struct job *job, const char *phase)
{
  g_free (job->row->phase);
  job->row->phase = g_strdup (phase);
  state_job_update (job->jobs->d->state, job->row);
}

void
job_finish (struct job *job, const char *status, const char *result,
            const char *const *error_info)
{
  finish (job, status, result, error_info);
}

static void
job_thread (gpointer data, gpointer user_data)
{
  struct job *job = data;
  struct jobs *jobs = job->jobs;

  if (strcmp (job->row->kind, "vm-migrate") == 0)
    xapi_migrate_run (job);
  else
    run_job (job);
  g_mutex_lock (&jobs->lock);
  g_hash_table_remove (jobs->by_task, job->row->task);
  g_mutex_unlock (&jobs->lock);
  job_free (job);
}

/* Recovery at start. */

static void
recover_live (struct jobs *jobs, struct state_job *row)
{
  struct xapi_daemon *d = jobs->d;
  g_autoptr (state_vbd) b = state_vbd_get (d->state, row->vbd);
  struct xapi_sr *dst_sr = xapi_find_sr (d, row->dst_sr);
  struct xapi_sr *src_sr = NULL;
  g_autofree char *ref = g_strconcat (XAPI_REF_PREFIX, row->vdi, NULL);

  /* The pivot may have happened with no time left to record it: the
   * filter knows. */
  if (g_strcmp0 (row->phase, "pivoted") != 0 && row->dst_vdi && b
      && b->control_socket && xapi_serving (b->pid, b->nbd_socket)) {
    g_autofree char *err = NULL;
    g_autofree char *reply = mirror_cmd (b, "status\n", &err);
    g_autofree char *pivoted
        = reply ? mirror_reply_get (reply, "pivoted") : NULL;

    if (g_strcmp0 (pivoted, "true") == 0) {
      g_message ("task %s: the VBD's disk was pivoted to VDI %s", row->task,
                 row->dst_vdi);
      g_free (row->phase);
      row->phase = g_strdup ("pivoted");
    }
  }
  if (g_strcmp0 (row->phase, "pivoted") == 0 && row->dst_vdi) {
    struct sr_vdi *src = xapi_find_vdi (d, row->vdi, &src_sr);
    g_autofree char *result = g_strdup_printf (
        "<value>" XAPI_REF_PREFIX "%s</value>", row->dst_vdi);
    struct job job = { .jobs = jobs, .row = row };

    if (b)
      live_commit (d, b, row->dst_vdi);
    if (dst_sr)
      sr_vdi_set_other_config (dst_sr->sr, row->dst_vdi, TASK_MARK, NULL);
    if (src && sr_vdi_destroy (src_sr->sr, src->uuid) == -1)
      g_warning ("task %s: the old VDI %s stays: %s", row->task, src->uuid,
                 sr_get_error ());
    sr_vdi_free (src);
    finish (&job, "success", result, NULL);
    return;
  }
  {
    const char *ei[] = { "MIRROR_FAILED",
                         "vdimotiond restarted during the "
                         "live move; the VDI stays where "
                         "it was",
                         ref, NULL };
    struct job job = { .jobs = jobs, .row = row };

    if (b)
      live_abort (d, b);
    destroy_marked (d, dst_sr, row->task);
    destroy_unrecorded (dst_sr, row);
    finish (&job, "failure", NULL, ei);
  }
}

/* Did the offline job ROW pass its point of no return?  Its commit was
 * recorded, or (a record of an earlier version) its source is gone and
 * its new VDI exists without the mark. */
static bool
committed (struct xapi_daemon *d, const struct state_job *row)
{
  struct xapi_sr *dst_sr = xapi_find_sr (d, row->dst_sr);
  struct sr_vdi *dst = NULL, *src;
  bool r = false;

  if (dst_sr == NULL || row->dst_vdi == NULL
      || (dst = sr_vdi_get_by_uuid (dst_sr->sr, row->dst_vdi)) == NULL)
    return false;
  if (g_strcmp0 (row->phase, "committing") == 0)
    r = true;
  else if ((src = xapi_find_vdi (d, row->vdi, NULL)) == NULL)
    r = sr_vdi_get_other_config (dst, TASK_MARK) == NULL;
  else
    sr_vdi_free (src);
  sr_vdi_free (dst);
  return r;
}

void
jobs_recover (struct jobs *jobs)
{
  struct xapi_daemon *d = jobs->d;
  g_autoptr (GPtrArray) tasks = state_list (d->state, "jobs", NULL, NULL);

  for (guint i = 0; i < tasks->len; i++) {
    struct state_job *row = state_job_get (d->state, tasks->pdata[i]);
    g_autoptr (state_task) t = NULL;

    if (row == NULL)
      continue;
    t = state_task_get (d->state, row->task);
    if (strcmp (row->kind, "vm-migrate") != 0 && t
        && strcmp (t->status, "pending") != 0
        && strcmp (t->status, "cancelling") != 0) {
      /* The task ended; only its job's record was left to remove. */
      state_job_remove (d->state, row->task);
      remove_journal (jobs, row->task);
      state_job_free (row);
      continue;
    }
    if (strcmp (row->kind, "vm-migrate") == 0) {
      struct job job = { .jobs = jobs, .row = row };

      xapi_migrate_recover (&job);
      state_job_free (row);
      continue;
    }
    if (row->vbd) {
      recover_live (jobs, row);
      state_job_free (row);
      continue;
    }
    if (committed (d, row)) {
      struct job job = { .jobs = jobs, .row = row };

      g_message ("task %s: finishing (%s of VDI %s to %s)", row->task,
                 row->kind, row->vdi, row->dst_vdi);
      commit_offline (&job, xapi_find_sr (d, row->dst_sr));
      state_job_free (row);
      continue;
    }
    if (t && strcmp (t->status, "cancelling") == 0) {
      struct job job = { .jobs = jobs, .row = row, .cancel = 1 };

      fail_job (&job, xapi_find_sr (d, row->dst_sr), "VDI_COPY_FAILED",
                "cancelled");
      state_job_free (row);
      continue;
    }
    g_message ("task %s: resuming (%s of VDI %s)", row->task, row->kind,
               row->vdi);
    xapi_vdi_try_claim (d, row->vdi, row->kind);
    if (row->dst_vdi)
      xapi_vdi_try_claim (d, row->dst_vdi, row->kind);
    enqueue (jobs, row);
  }
}
