/* The job manager: long-running storage work behind XenAPI tasks.
 *
 * Design
 * - A job is a row of the jobs table (state.h) beside its task.  What a
 *   job does is its kind: a `struct job_kind` (an ops table) found by the
 *   row's kind name.  The kinds of vdimotiond are in job-kinds.c: "copy"
 *   (VDI.copy), "migrate" (VDI.pool_migrate, offline or live),
 *   "vm-migrate" (VM.migrate_send's source side) and "sr-evacuate"
 *   (SR.evacuate, evacuate.h); backup is to be added the same way.
 * - Each job is a state machine whose phase is durable (the row's phase
 *   column, written by job_set_phase before the work of the phase
 *   begins): "queued" at submission, then the kind's own phases.  The
 *   task ends exactly once, by job_succeed or job_fail, and then the row
 *   goes.
 * - Jobs run on a GThreadPool of max_running threads (default 3); the
 *   others wait in its queue with their task pending at progress 0.
 * - Cancel sets a flag the kind checks (job_cancelled); the task says
 *   "cancelling" meanwhile.  A daemon that stops sets the flag too, with
 *   job_stopping true: the kind then leaves its durable state for the
 *   next start instead of undoing it.
 * - At start (jobs_recover, before the daemon serves) every row left by a
 *   previous run goes to its kind's recover: resume (queued again), or
 *   ended there.  A row whose task already ended is only removed.
 * - A task's result is typed: the uuid of the object the job made (the
 *   face writes it as XenAPI's ref), or a text (job_succeed_text: a
 *   report, which the face sends as a string).  error_info is XenAPI's:
 *   a code and its parameters.
 * - What a running job shows besides its progress (a report so far) is
 *   its task's other_config while it runs (job_set_other_config, in
 *   memory: the kind keeps what it needs durably itself).
 * - A durable write that fails before a kind's point of no return ends
 *   the job as a failure (with the kind's error code and a message that
 *   names the write), undone as any failure is.  After that point (a
 *   pivot done, a VM handed over) the kind logs it as critical and the
 *   next start finishes the job from what it finds.  A phase that is
 *   only for the record (a VM migration's, which a restart undoes
 *   whatever it says) is logged when it cannot be written.  A failure
 *   to record the end itself is logged as critical, and the row stays.
 * - Threads: everything here may be called from any thread, except
 *   jobs_new, jobs_free and jobs_recover (the main thread, not serving).
 *   jobs_watch's callbacks run in the main context.
 */
#ifndef VDM_JOBS_H
#define VDM_JOBS_H

#include <stdbool.h>

#include <glib.h>

#include "host.h"
#include "state.h"

struct job;
struct jobs;

/* What recover decided for a job left by a previous run. */
enum job_recovery
{
  JOB_RECOVER_RESUME, /* queue it: run is called again */
  JOB_RECOVER_DONE,   /* it ended (job_succeed or job_fail was called) */
  JOB_RECOVER_LEAVE,  /* neither: the row stays for the next start (a
                         step it must finish cannot be recorded now);
                         the task stays pending meanwhile */
};

struct job_kind
{
  const char *name; /* the row's kind */
  /* Do the job, in a pool thread.  It ends with job_succeed or job_fail,
   * or (only when job_stopping) returns leaving the row for the next
   * start. */
  void (*run) (struct job *job);
  /* At start, for a row whose task was still pending or cancelling
   * (job_cancel_requested is true if it was cancelling). */
  enum job_recovery (*recover) (struct job *job);
  /* Optional: at start, for a row whose task had ended before the row
   * could go: remove the files the job kept (its journal).  The manager
   * then removes the row. */
  void (*forget) (struct job *job);
};

/* The kinds of vdimotiond, and all of them NULL-terminated
 * (job-kinds.c). */
extern const struct job_kind job_kind_vdi_copy;    /* vdi-jobs.c */
extern const struct job_kind job_kind_vdi_migrate; /* vdi-jobs.c */
extern const struct job_kind job_kind_vm_migrate;  /* migrate.c */
extern const struct job_kind job_kind_sr_evacuate; /* evacuate.c */
extern const struct job_kind *const job_kinds[];

/* A job manager for host H running at most MAX_RUNNING (0: 3) jobs at
 * once, of the kinds in KINDS (NULL-terminated, borrowed for its life).
 * Creates <state-dir>/jobs for the kinds' journals. */
struct jobs *jobs_new (struct host *h, unsigned max_running,
                       const struct job_kind *const *kinds);
/* Stop: running jobs are told (job_stopping) and waited for; queued ones
 * stay in the database for the next start. */
void jobs_free (struct jobs *jobs);
/* At start: recover or clean up the jobs a previous run left. */
void jobs_recover (struct jobs *jobs);

/* Queue job J (its kind must be one of the manager's), recorded in
 * phase "queued" whatever J->phase says: a new pending task named
 * NAME_LABEL is recorded with it, and J->task set to its uuid (a new
 * string the caller frees).
 * Returns the task uuid (g_free it), or NULL with *ERROR if it cannot be
 * recorded or the kind is unknown (nothing is left behind then). */
char *jobs_submit (struct jobs *jobs, struct state_job *j,
                   const char *name_label, GError **error);
/* The progress (0 to 1) of a task whose job runs or waits (false if
 * none). */
bool jobs_get_progress (struct jobs *jobs, const char *task, double *progress);
/* Ask a job to stop; false if TASK has no job here. */
bool jobs_cancel (struct jobs *jobs, const char *task);
/* Call DONE (TASK, OPAQUE) in the main context once TASK's job has ended
 * (at once, from an idle source, if it has no job).  For a caller that
 * answers when the task is over without blocking the main loop. */
void jobs_watch (struct jobs *jobs, const char *task,
                 void (*done) (const char *task, void *opaque),
                 void *opaque);
/* Take back a watch that has not been called yet: true if it will not
 * be called; false if it is on its way (an idle source will call it). */
bool jobs_unwatch (struct jobs *jobs, const char *task,
                   void (*done) (const char *task, void *opaque),
                   void *opaque);
/* The directory for the jobs' files (journals): <state-dir>/jobs. */
const char *jobs_dir (struct jobs *jobs);
/* How many jobs run at once (jobs_new's MAX_RUNNING: the host's
 * storage-operation limit). */
unsigned jobs_max_running (struct jobs *jobs);
/* The other_config a running or queued job shows on its task (key →
 * value, a new table to g_hash_table_unref), or NULL if TASK has no job
 * here or the job set none. */
GHashTable *jobs_get_other_config (struct jobs *jobs, const char *task);

/* What a running job sees of itself (the kinds' side). */
const struct state_job *job_row (struct job *job);
struct state_job *job_row_mut (struct job *job); /* then job_update */
struct host *job_host (struct job *job);
bool job_cancelled (struct job *job); /* cancelled, or the daemon stops */
bool job_stopping (struct job *job);  /* the daemon stops */
bool job_cancel_requested (struct job *job); /* by a client */
const int *job_cancel_flag (struct job *job); /* for copy_params.cancel */
/* Progress 0..1: in memory at once, in the database at most once a
 * second. */
void job_set_progress (struct job *job, double progress);
/* Show KEY = VALUE (VALUE NULL: remove KEY) in the task's other_config
 * while the job runs (jobs_get_other_config); memory only, any thread.
 * A change is seen by event.from clients with the next progress write
 * (at most once a second). */
void job_set_other_config (struct job *job, const char *key,
                           const char *value);
/* Record phase PHASE (durable before it returns).  -1 with *ERROR if the
 * write failed: the caller must not go on into that phase. */
int job_set_phase (struct job *job, const char *phase, GError **error);
/* Write the row after the kind changed it (job_row_mut); -1 with *ERROR. */
int job_update (struct job *job, GError **error);
/* End the task: success with the uuid of the object made (or NULL), or
 * failure with XenAPI's ERROR_INFO (a code, then its parameters;
 * NULL-terminated): status "cancelled" if the code is TASK_CANCELLED,
 * else "failure".  Once only.  The row goes (if the end cannot be
 * recorded, the row stays and the next start recovers the job again). */
void job_succeed (struct job *job, const char *result_uuid);
void job_fail (struct job *job, const char *const *error_info);
/* The same, with TEXT (any text; a JSON report) as the task's result
 * instead of a uuid (state.h's result_text): a failed or cancelled task
 * keeps it too, so that a client reads what was done before the end. */
void job_succeed_text (struct job *job, const char *text);
void job_fail_text (struct job *job, const char *const *error_info,
                    const char *text);

/* For the tests (test-xapi-kill-sweep.sh): with VDIMOTIOND_CRASH_AT=NAME
 * in the environment the daemon kills itself (SIGKILL, as kill -9) at
 * the point NAME, to put a crash between any two durable steps. */
void job_crash_point (const char *name);

#endif /* VDM_JOBS_H */
