/* The VDI jobs: kinds "copy" (VDI.copy) and "migrate" (VDI.pool_migrate)
 * of the job manager (jobs.h).
 *
 * Design
 * - Phases (the row's phase): queued → copying → committing → (ended)
 *   offline; queued → mirroring → pivoted → (ended) live.
 * - The source VDI is claimed (host_vdi_move_submit) from submission to
 *   the end,
 *   and the new VDI from its creation, so nothing else starts on them.
 * - The new VDI carries other_config["vdimotion-task"] = the task's uuid
 *   from the moment it exists (recorded with it) until the job succeeds.
 *   A move's new VDI also carries, from its creation,
 *   other_config["vdimotion-moved-from"] (host.h: HOST_MOVED_FROM): the
 *   source's uuid then the source's own list, so that a backup
 *   repository keyed by the old uuid continues its chain.
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
 *   VDI, destroy the old one.  A disk a live snapshot (or an earlier
 *   live move) pivoted onto the VBD's target nbdkit moves the same way:
 *   the filter mirrors from that target, the VBD records the new one,
 *   and the earlier one stops after the pivot (or is recorded again
 *   after an abort).
 * - Every nbdkit a live move involves is named by a record at every
 *   moment, so a daemon killed anywhere leaves none running that the
 *   next start cannot find: the move's record, <run-dir>/<vbd>.move
 *   (the new VDI, and the earlier target's socket and pid), is written
 *   before the move's target starts and removed at the end; the move's
 *   target is <run-dir>/<new vdi>-target (its pid file beside it), so
 *   the new VDI's uuid, recorded by the caller, names it.  What a
 *   restart finds (vdi_live_recover), point by point
 *   (job_crash_point's names):
 *   - before the record (live-move-begun): the VBD names its disk's
 *     servers as before the move; the earlier target, the disk, is left
 *     alone (the filter says "pivoted" onto it, which is not this
 *     move's pivot: only the filter's word on this move's target is).
 *   - after the record, before the switch (live-move-served): the move's
 *     target may run, named by its pid file; it stops.
 *   - after the switch (live-move-switched: the VBD names the move's
 *     target, the move's record the earlier one), during the mirror:
 *     undone, the mirror dropped, the move's target stopped, the
 *     earlier target the VBD's again (the filter's abort left it the
 *     disk).
 *   - after the pivot (pivot-done, or live-move-committed: the VBD
 *     names the new VDI): finished, the earlier target stopped (the
 *     filter dropped it at the pivot), the record removed, the old
 *     leaf destroyed with the source.
 *   A move that is undone is undone before it is failed; the move's
 *   record is removed only once the VBD's record says what it said.
 * - Cancel sets a flag the copy engine checks at every piece, and the
 *   live loop at every poll; the job then aborts and removes the new VDI.
 * - An offline job whose copy is complete records the phase
 *   "committing" before it touches anything else: its point of no
 *   return.  Then the VBDs of halted VMs follow the VDI (a move), the
 *   mark goes, the source is destroyed (a move), the task succeeds.
 * - The changed-block log follows the disk (host_cbt_follow), as the
 *   commit's step before the source goes: copied for a copy, renamed
 *   for a move (merged into the new VDI's across filesystems).  After a
 *   live move's pivot the VBD's filter still marks the log it opened;
 *   on one filesystem the rename hands that very file to the new VDI,
 *   which is the disk the VM now uses, so no mark is lost and no filter
 *   needs telling.  The step may run twice (a commit finished after a
 *   restart): a log already moved is not there to move again.
 *   Across filesystems the file cannot be handed over, so the filter is
 *   moved onto a new one, in four steps (cbt.c, follow_live):
 *     1. the old log merged into the new VDI's (made as its copy,
 *        generation intact, if it has none; ORed in if it has);
 *     2. cbt-open log=NEW to the VM's filter: from its reply every
 *        write is marked in NEW (the filter's design comment says why
 *        none acknowledged after the reply is missed), and the old log
 *        is closed, no request marking it any more;
 *     3. the old log merged into NEW again: the marks made between 1
 *        and 2 (an atomic OR into NEW's mapping, the filter marking it
 *        meanwhile);
 *     4. the old log removed (it goes with the old VDI anyway).
 *   A log is never written over in the move, only merged into, so no
 *   mark the filter made in NEW can be undone by a step run again.  A
 *   kill -9 of the daemon (the VM's nbdkit runs on, marking the log it
 *   holds) between any two steps, and what the restart does: the
 *   pivot is found (vdi_live_recover, or an evacuation's recover) and
 *   this step runs again; before that, at start, host_cbt_reconcile
 *   has each running VM's filter take its VDI's log (cbt-open).
 *     - before 1, or before the VBD names the new VDI: NEW is not
 *       there, or the reconcile asks the filter to take the log it
 *       holds already (the old VDI's); the steps run from 1.
 *     - between 1 and 2: NEW holds the bits up to 1, the old log every
 *       mark since.  The reconcile has the filter take NEW (the VBD
 *       names the new VDI), closing the old one; the step again finds
 *       the old log not held and merges it into NEW (sr_vdi_cbt_follow
 *       across filesystems merges): NEW = every mark.  Had the VBD not
 *       been recorded yet, the filter still holds the old log and the
 *       steps run from 1, which merges into NEW.
 *     - between 2 and 3: the old log is closed with the marks up to
 *       the switch, NEW has every mark since and those up to 1; the
 *       step merges the old log (not held now) into NEW: every mark.
 *     - between 3 and 4: merged once more, the same bits; removed.
 *     - after 4: nothing to do (no old log).
 *   A log left by a writer that died (the VM's nbdkit killed too) is
 *   reset when it is exported or opened (cbt-log.h): NEW then says
 *   every block changed, with the reason, and the next backup is a
 *   full that says why, never a wrong incremental.  If the filter
 *   cannot take NEW (an older filter without cbt-open, a refusal) or
 *   step 3 fails, CBT goes off for the new VDI, logged: the next backup
 *   is full.  NEW's bits are the old log's ORed with the filter's
 *   marks after the switch, each a block written since the last
 *   snapshot: exactly what the old log alone would have said, no more
 *   (a move's copy marks nothing) and no less.
 * - Restart (the kind's recover, before the daemon serves): an offline job is
 *   queued again and resumes from its journal (windows done are not
 *   copied again), or if it was committing is finished (every step of
 *   the commit may be done twice); a live job before its pivot is
 *   aborted and cleaned up (task failure), after its pivot it is
 *   finished (the mirror filter is asked whether the pivot happened
 *   when the job had no time to record it), both as said above.  A
 *   job whose task ended has only its record left to remove.  A clean
 *   stop (SIGTERM) stops running copies where they are, so they resume
 *   the same way; live moves are aborted.
 */

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cbt.h"
#include "control-client.h"
#include "copy.h"
#include "jobs.h"
#include "live-snapshot.h"
#include "nbdkit.h"
#include "vdi-jobs.h"

#define TASK_MARK "vdimotion-task"

static char *
journal_path (struct job *job)
{
  g_autofree char *file = g_strconcat (job_row (job)->task, ".journal", NULL);

  return g_build_filename (jobs_dir (job_host (job)->jobs), file, NULL);
}

static void
remove_journal (struct job *job)
{
  g_autofree char *jp = journal_path (job);

  copy_journal_remove (jp);
}

static void
copy_progress (const struct copy_progress *p, void *opaque)
{
  struct job *job = opaque;

  /* Called under the engine's lock: only memory here, the database
   * write of set_progress is rate-limited to once a second. */
  if (p->total)
    job_set_progress (job, (double)p->done / (double)p->total);
}

/* Destroy the VDIs of SR that carry TASK's mark (leftovers of a job that
 * did not finish). */
static void
destroy_marked (struct host *d, struct host_sr *s, const char *task)
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
make_dest (struct job *job, const struct sr_vdi *src, struct host_sr *dst,
           char **err)
{
  struct host *d = job_host (job);
  struct state_job *row = job_row_mut (job);
  g_autofree char *was = NULL;
  struct sr_kv oc[2] = { { (char *)TASK_MARK, row->task } };
  struct sr_vdi_create_params params = {
    .name_description = src->name_description,
    .other_config = oc,
    .n_other_config = 1,
  };
  struct sr_vdi *v;

  /* A move's VDI knows what it was (a copy is a VDI of its own). */
  if (strcmp (row->kind, "migrate") == 0) {
    was = host_moved_from (
        src->uuid, sr_vdi_get_other_config (src, HOST_MOVED_FROM));
    oc[1] = (struct sr_kv){ (char *)HOST_MOVED_FROM, was };
    params.n_other_config = 2;
  }

  if (row->dst_vdi) {
    v = sr_vdi_get_by_uuid (dst->sr, row->dst_vdi);
    if (v)
      return v;
    /* Chosen but not (completely) created: create it afresh under the
     * same uuid, without the journal. */
    remove_journal (job);
  }
  else {
    char uuid[SR_UUID_LEN + 1];
    g_autoptr (GError) error = NULL;

    if (sr_uuid_generate (uuid) == -1) {
      *err = g_strdup_printf ("cannot make a uuid: %s", sr_get_error ());
      return NULL;
    }
    row->dst_vdi = g_strdup (uuid);
    if (job_update (job, &error) == -1) {
      g_clear_pointer (&row->dst_vdi, g_free);
      *err = g_strdup_printf ("cannot record the new VDI's uuid: %s",
                              error->message);
      return NULL;
    }
    job_crash_point ("dest-chosen");
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
  host_vdi_claim (d, v->uuid, row->kind);
  return v;
}

/* The job's new VDI, if it has no record: remove the image a crash
 * between its creation and its record left (make_dest). */
static void
destroy_unrecorded (struct host_sr *s, const struct state_job *row)
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
copy_offline (struct job *job, struct host_sr *src_sr,
              const struct sr_vdi *src, struct host_sr *dst_sr,
              const struct sr_vdi *dst, char **err)
{
  g_autofree char *journal = journal_path (job);
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
    .cancel = job_cancel_flag (job),
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
             job_row (job)->task, src->uuid, dst->uuid, stats.bytes_read,
             stats.bytes_written, stats.seconds);
  return 0;
}

/* Write the VBD's record; false (logged) if it could not be written. */
static bool
save_vbd (struct host *d, const struct state_vbd *b)
{
  if (state_vbd_update (d->state, b) == -1) {
    g_warning ("VBD %s: cannot record its disk server", b->uuid);
    return false;
  }
  return true;
}

bool
vdi_live_commit (struct host *d, struct state_vbd *b, const char *dst_vdi)
{
  g_free (b->vdi);
  b->vdi = g_strdup (dst_vdi);
  return save_vbd (d, b);
}

/* The record of a live move under way: <run-dir>/<vbd>.move, a GKeyFile
 *
 *   [live-move]
 *   vdi=<the new VDI's uuid>
 *   previous=<the previous target's socket>   (these two only if
 *   previous-pid=<its pid>                      there is one)
 *
 * written before the move's target starts and removed once the move is
 * finished or undone.  The previous target is the nbdkit a live
 * snapshot or an earlier live move pivoted the disk onto: the filter
 * forwards to it until this move's pivot, but once the VBD's record
 * names the move's target, this file is the only record of it.  The
 * move's target is known by its name (target_name), its pid read from
 * the pid file beside its socket (nbdkit.h). */
#define RECORD_GROUP "live-move"

static char *
record_path (struct host *d, const char *vbd)
{
  g_autofree char *file = g_strconcat (vbd, ".move", NULL);

  return g_build_filename (d->run_dir, file, NULL);
}

static gboolean
record_write (struct host *d, const char *vbd, const char *vdi,
              const struct nbdkit_served *previous, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autofree char *path = record_path (d, vbd);
  g_autofree char *text = NULL;
  gsize len = 0;

  g_key_file_set_string (kf, RECORD_GROUP, "vdi", vdi);
  if (previous->socket) {
    g_key_file_set_string (kf, RECORD_GROUP, "previous", previous->socket);
    g_key_file_set_int64 (kf, RECORD_GROUP, "previous-pid", previous->pid);
  }
  text = g_key_file_to_data (kf, &len, NULL);
  return g_file_set_contents_full (path, text, len,
                                   G_FILE_SET_CONTENTS_CONSISTENT
                                       | G_FILE_SET_CONTENTS_DURABLE,
                                   0600, error);
}

/* Whether VBD has a record; *PREVIOUS its previous target (its socket
 * g_free, NULL if none).  A record that cannot be read is logged and
 * taken as none. */
static bool
record_read (struct host *d, const char *vbd, struct nbdkit_served *previous)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autofree char *path = record_path (d, vbd);
  g_autoptr (GError) error = NULL;

  *previous = (struct nbdkit_served){ 0 };
  if (!g_key_file_load_from_file (kf, path, G_KEY_FILE_NONE, &error)) {
    if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_warning ("%s: %s", path, error->message);
    return false;
  }
  previous->socket = g_key_file_get_string (kf, RECORD_GROUP, "previous",
                                            NULL);
  previous->pid = g_key_file_get_int64 (kf, RECORD_GROUP, "previous-pid",
                                        NULL);
  return true;
}

static void
record_remove (struct host *d, const char *vbd)
{
  g_autofree char *path = record_path (d, vbd);

  if (unlink (path) == -1 && errno != ENOENT)
    g_warning ("%s: %s", path, g_strerror (errno));
}

bool
vdi_live_under_way (struct host *d, const char *vbd)
{
  g_autofree char *path = record_path (d, vbd);

  return g_file_test (path, G_FILE_TEST_EXISTS);
}

/* The nbdkit serving a live move's new VDI is <run-dir>/<vdi>-target. */
static char *
target_name (const char *vdi)
{
  return g_strconcat (vdi, "-target", NULL);
}

static char *
target_socket (struct host *d, const char *vdi)
{
  g_autofree char *file = g_strconcat (vdi, "-target.sock", NULL);

  return g_build_filename (d->run_dir, file, NULL);
}

/* The pid of the nbdkit serving SOCKET: PID if it is that, else the one
 * its pid file names (<name>.sock's is <name>.pid), or 0 if none
 * serves it. */
static pid_t
served_by (pid_t pid, const char *socket)
{
  g_autofree char *base = NULL;
  g_autofree char *pidfile = NULL;

  if (nbdkit_serving (pid, socket))
    return pid;
  if (socket == NULL || !g_str_has_suffix (socket, ".sock"))
    return 0;
  base = g_strndup (socket, strlen (socket) - strlen (".sock"));
  pidfile = g_strconcat (base, ".pid", NULL);
  pid = nbdkit_read_pidfile (pidfile);
  return nbdkit_serving (pid, socket) ? pid : 0;
}

/* Is B's filter pivoted onto the move's target on TARGET (a socket)?
 * The disk may have been pivoted before (onto the previous target), so
 * only this target says the move's pivot happened. */
static bool
pivoted_onto (const struct state_vbd *b, const char *target)
{
  struct mirror_status st;
  g_autofree char *uri = NULL;
  bool said;

  if (b == NULL || b->control_socket == NULL
      || !nbdkit_serving (b->pid, b->nbd_socket))
    return false;
  uri = g_strdup_printf ("nbd+unix:///?socket=%s", target);
  said = mirror_get_status (b->control_socket, &st, NULL) && st.pivoted
         && st.state == MIRROR_COMPLETED && g_strcmp0 (st.target, uri) == 0;
  mirror_status_clear (&st);
  return said;
}

/* Undo a live move of B's disk before its pivot: the filter's mirror is
 * dropped, the move's target (on TARGET) stops, and the previous target
 * (PREVIOUS; its socket NULL if none), which the abort left the disk,
 * is the VBD's target again; a VM whose disk is no longer served loses
 * it too.  The move's record goes once the VBD's record says so. */
static void
undo_move (struct host *d, struct state_vbd *b, const char *target,
           const struct nbdkit_served *previous)
{
  bool served = nbdkit_serving (b->pid, b->nbd_socket);
  pid_t pid = served_by (previous->pid, previous->socket);

  if (b->control_socket && served) {
    g_autoptr (GError) error = NULL;

    if (!mirror_abort (b->control_socket, &error))
      g_message ("mirror abort on %s: %s", b->control_socket,
                 error->message);
  }
  nbdkit_stop (served_by (0, target), target, NULL, NBDKIT_STOP_NOW);
  g_clear_pointer (&b->target_socket, g_free);
  b->target_pid = 0;
  if (pid && served) {
    b->target_socket = g_strdup (previous->socket);
    b->target_pid = pid;
  }
  else if (previous->socket)
    nbdkit_stop (pid, previous->socket, NULL, NBDKIT_STOP_GRACE);
  if (save_vbd (d, b))
    record_remove (d, b->uuid);
}

/* Finish a live move of B's disk after its pivot: the VBD names DST_VDI
 * and its server (on TARGET), and the previous target (PREVIOUS; its
 * socket NULL if none), which the filter dropped at the pivot, stops;
 * then the move's record goes.  False (logged) if the VBD's record
 * could not be written. */
static bool
finish_move (struct host *d, struct state_vbd *b, const char *dst_vdi,
             const char *target, const struct nbdkit_served *previous)
{
  bool saved;

  b->target_pid = served_by (b->target_pid, target);
  g_free (b->target_socket);
  b->target_socket = g_strdup (target);
  saved = vdi_live_commit (d, b, dst_vdi);
  job_crash_point ("live-move-committed");
  if (previous->socket && strcmp (previous->socket, target) != 0)
    nbdkit_stop (served_by (previous->pid, previous->socket),
                 previous->socket, NULL, NBDKIT_STOP_GRACE);
  record_remove (d, b->uuid);
  return saved;
}

int
vdi_live_recover (struct host *d, const char *vbd, const char *dst_vdi,
                  bool pivot_recorded)
{
  g_autoptr (state_vbd) b = state_vbd_get (d->state, vbd);
  g_autofree char *target = target_socket (d, dst_vdi);
  struct nbdkit_served previous;
  int r = 0;

  /* Without a record the move's target never started: the VBD's target,
   * if another, is the previous one (the disk). */
  if (!record_read (d, vbd, &previous) && b
      && g_strcmp0 (b->target_socket, target) != 0) {
    previous.socket = g_strdup (b->target_socket);
    previous.pid = b->target_pid;
  }
  if (b == NULL) {
    /* No VBD, no disk: nothing serves for it any more. */
    nbdkit_stop (served_by (0, target), target, NULL, NBDKIT_STOP_NOW);
    if (previous.socket)
      nbdkit_stop (served_by (previous.pid, previous.socket),
                   previous.socket, NULL, NBDKIT_STOP_GRACE);
    record_remove (d, vbd);
    r = pivot_recorded;
  }
  else if (pivot_recorded || pivoted_onto (b, target))
    r = finish_move (d, b, dst_vdi, target, &previous) ? 1 : -1;
  else
    undo_move (d, b, target, &previous);
  g_free (previous.socket);
  return r;
}

/* The wait for the mirror: the caller's cancel and progress. */
struct live_wait
{
  const struct vdi_live_ops *ops;
  void *opaque;
};

static bool
live_cancelled (void *opaque)
{
  struct live_wait *w = opaque;

  return w->ops->cancelled (w->opaque);
}

static gboolean
live_progress (const struct mirror_disk *disk, size_t n, bool all_ready,
               void *opaque, GError **error)
{
  struct live_wait *w = opaque;

  if (disk->bytes_total)
    w->ops->progress ((double)disk->bytes_done / (double)disk->bytes_total,
                      w->opaque);
  return TRUE;
}

static const struct mirror_wait_ops live_wait_ops
    = { .cancelled = live_cancelled, .progress = live_progress };

/* Start the mirror of DISK's filter into URI: only the top layer's
 * blocks with TOP (the target a new leaf over copies of the lower
 * layers), falling back to every block with a filter that cannot map
 * its top layer alone (correct, it copies more). */
static gboolean
live_start (const char *what, const char *control, const char *uri, bool top,
            GError **error)
{
  g_autoptr (GError) e = NULL;

  if (!top)
    return mirror_start (control, uri, NULL, error);
  if (mirror_start_sync (control, uri, NULL, MIRROR_SYNC_TOP, &e))
    return TRUE;
  if (!g_error_matches (e, MIRROR_CONTROL_ERROR, MIRROR_CONTROL_ERROR_REFUSED))
    {
      g_propagate_error (error, g_steal_pointer (&e));
      return FALSE;
    }
  g_message ("%s: the mirror cannot sync the top layer alone (%s); "
             "syncing every block",
             what, e->message);
  return mirror_start (control, uri, NULL, error);
}

int
vdi_live_move (struct host *d, const char *what, const char *vbd,
               struct host_sr *dst_sr, const struct sr_vdi *dst, bool top,
               const struct vdi_live_ops *ops, void *opaque, char **err)
{
  g_autoptr (state_vbd) b = state_vbd_get (d->state, vbd);
  g_autofree char *name = target_name (dst->uuid);
  g_autofree char *target = target_socket (d, dst->uuid);
  g_autofree char *uri = NULL;
  g_autofree char *src = NULL;
  g_autoptr (GError) error = NULL;
  struct nbdkit_served sv = { 0 };
  struct mirror_disk disk = { 0 };
  struct live_wait w = { ops, opaque };
  struct nbdkit_served previous = { 0 };
  int r = -1;

  if (b == NULL || !nbdkit_serving (b->pid, b->nbd_socket)) {
    *err = g_strdup ("the VM's disk is no longer served");
    return -1;
  }
  src = g_strdup (b->vdi);
  /* A disk pivoted before (a live snapshot's leaf, an earlier live move)
   * is the VBD's target nbdkit: the filter mirrors from it, it stays the
   * disk until the pivot, and stops then.  From the switch below only
   * the move's record names it, so the record comes first. */
  previous.socket = g_strdup (b->target_socket);
  previous.pid = b->target_pid;
  job_crash_point ("live-move-begun");
  if (!record_write (d, vbd, dst->uuid, &previous, &error)) {
    *err = g_strdup_printf ("cannot record the live move: %s",
                            error->message);
    goto out;
  }
  /* A target a crash left for this VDI is nobody's (recover). */
  nbdkit_stop (served_by (0, target), target, NULL, NBDKIT_STOP_NOW);
  if (nbdkit_serve_image (d, name, dst_sr, dst, false, false, &sv, &error)
      == -1) {
    *err = g_strdup (error->message);
    record_remove (d, vbd);
    goto out;
  }
  g_assert (strcmp (sv.socket, target) == 0);
  job_crash_point ("live-move-served");
  g_free (b->target_socket);
  b->target_socket = sv.socket;
  b->target_pid = sv.pid;
  if (!save_vbd (d, b)) {
    *err = g_strdup ("cannot record the VBD's target server");
    goto abort;
  }
  job_crash_point ("live-move-switched");
  if (ops->mirroring (opaque, &error) == -1) {
    *err = g_strdup (error->message);
    goto abort;
  }

  uri = g_strdup_printf ("nbd+unix:///?socket=%s", b->target_socket);
  disk.socket = b->control_socket;
  if (!live_start (what, b->control_socket, uri, top, &error)
      || !mirror_wait_ready (&disk, 1, 100, &live_wait_ops, &w, &error)
      || !mirror_complete (b->control_socket, true, &error)) {
    *err = g_strdup (error->message);
    goto abort;
  }
  job_crash_point ("pivot-done");
  /* The guest's writes now go to the new VDI only: from here the move
   * can only be finished, never undone.  A failed record of it is found
   * again at the next start, which asks the filter (vdi_live_recover). */
  ops->pivoted (opaque);
  if (!finish_move (d, b, dst->uuid, target, &previous))
    g_critical ("%s: the VBD %s is pivoted to %s but cannot record "
                "it; the next start finds the pivot",
                what, b->uuid, dst->uuid);
  g_message ("%s: VBD %s pivoted from VDI %s to %s", what, b->uuid, src,
             dst->uuid);
  r = 0;
  goto out;

abort:
  undo_move (d, b, target, &previous);
out:
  g_free (previous.socket);
  return r;
}

/* A pool_migrate's live move: its job's cancel, progress up to 99 % (the
 * pivot is the rest) and phases. */
static bool
job_live_cancelled (void *opaque)
{
  return job_cancelled (opaque);
}

static void
job_live_progress (double fraction, void *opaque)
{
  job_set_progress (opaque, 0.99 * fraction);
}

static int
job_live_mirroring (void *opaque, GError **error)
{
  return job_set_phase (opaque, "mirroring", error);
}

static void
job_live_pivoted (void *opaque)
{
  struct job *job = opaque;
  g_autoptr (GError) error = NULL;

  if (job_set_phase (job, "pivoted", &error) == -1)
    g_critical ("task %s: %s; the next start finds the pivot",
                job_row (job)->task, error->message);
}

static const struct vdi_live_ops job_live_ops = {
  .cancelled = job_live_cancelled,
  .progress = job_live_progress,
  .mirroring = job_live_mirroring,
  .pivoted = job_live_pivoted,
};

static int
move_live (struct job *job, const struct sr_vdi *src, struct host_sr *dst_sr,
           const struct sr_vdi *dst, char **err)
{
  g_autofree char *what = g_strconcat ("task ", job_row (job)->task, NULL);

  return vdi_live_move (job_host (job), what, job_row (job)->vbd, dst_sr, dst,
                        false, &job_live_ops, job, err);
}

/* The job failed or was cancelled: remove the new VDI, end the task. */
static void
fail_job (struct job *job, struct host_sr *dst_sr, const char *code,
          const char *msg)
{
  const struct state_job *row = job_row (job);
  g_autofree char *ref = host_ref (row->vdi);
  g_autofree char *task_ref = host_ref (row->task);
  bool was_cancelled = job_cancel_requested (job);
  const char *ei[] = { was_cancelled ? "TASK_CANCELLED" : code,
                       was_cancelled ? task_ref : msg, ref, NULL };

  destroy_marked (job_host (job), dst_sr, row->task);
  destroy_unrecorded (dst_sr, row);
  remove_journal (job);
  job_fail (job, ei);
}

/* The source of a move, once the new VDI serves: destroyed. */
static void
destroy_source (struct job *job, struct host_sr *src_sr, const char *uuid)
{
  if (sr_vdi_destroy (src_sr->sr, uuid) == -1)
    g_warning ("task %s: the old VDI %s stays: %s", job_row (job)->task,
               uuid, sr_get_error ());
}

/* The source's changed-block log goes to the new VDI (copied, or moved
 * with MOVE); logged if it cannot: the next backup then finds no chain
 * and is a full one. */
static void
carry_log (struct job *job, struct host_sr *src_sr, const char *src,
           struct host_sr *dst_sr, const char *dst, bool move)
{
  g_autoptr (GError) error = NULL;

  if (src_sr && dst_sr
      && !host_cbt_follow (job_host (job), src_sr, src, dst_sr, dst, !move,
                           &error))
    g_warning ("task %s: the changed-block log of VDI %s does not follow "
               "it to %s: %s",
               job_row (job)->task, src, dst, error->message);
}

/* The new VDI is a VDI like any other from here: its mark goes. */
static void
unmark (struct job *job, struct host_sr *dst_sr, const char *uuid)
{
  if (dst_sr
      && sr_vdi_set_other_config (dst_sr->sr, uuid, TASK_MARK, NULL) == -1)
    g_warning ("task %s: VDI %s keeps its mark: %s", job_row (job)->task,
               uuid, sr_get_error ());
}

/* An offline job whose copy is complete: from here it can only succeed.
 * "committing" is recorded first, so that a restart finishes the job
 * (recover) rather than undoing it: every step below may be done
 * again.  A move then points halted VMs' VBDs at the new VDI and
 * destroys the source: the point of no return is the record of the
 * phase, before the source is touched.  If the phase cannot be
 * recorded, the job fails and is undone instead. */
static void
commit_offline (struct job *job, struct host_sr *dst_sr)
{
  struct host *d = job_host (job);
  const struct state_job *row = job_row (job);
  struct host_sr *src_sr = NULL;
  struct sr_vdi *src;

  /* A copy is complete only into a VDI the job recorded. */
  g_assert (row->dst_vdi != NULL);
  if (g_strcmp0 (row->phase, "committing") != 0) {
    g_autoptr (GError) error = NULL;

    if (job_set_phase (job, "committing", &error) == -1) {
      fail_job (job, dst_sr, "VDI_COPY_FAILED", error->message);
      return;
    }
    job_crash_point ("committing");
  }
  if (strcmp (row->kind, "migrate") == 0) {
    /* Any halted VM's VBDs follow the VDI. */
    g_autoptr (GPtrArray) vbds
        = state_list (d->state, "vbds", "vdi", row->vdi);

    for (guint i = 0; i < vbds->len; i++) {
      g_autoptr (state_vbd) b = state_vbd_get (d->state, vbds->pdata[i]);

      /* A failure is logged; the commit is retried at the next start
       * only if the daemon stops before the end, so go on: the VBD
       * keeps naming the old VDI, which a VBD check reports. */
      if (b)
        vdi_live_commit (d, b, row->dst_vdi);
    }
  }
  if ((src = host_find_vdi (d, row->vdi, &src_sr)) != NULL) {
    carry_log (job, src_sr, src->uuid, dst_sr, row->dst_vdi,
               strcmp (row->kind, "migrate") == 0);
    sr_vdi_free (src);
  }
  unmark (job, dst_sr, row->dst_vdi);
  if (strcmp (row->kind, "migrate") == 0
      && (src = host_find_vdi (d, row->vdi, &src_sr)) != NULL) {
    destroy_source (job, src_sr, src->uuid);
    sr_vdi_free (src);
    job_crash_point ("source-destroyed");
  }
  remove_journal (job);
  job_succeed (job, row->dst_vdi);
}

static void
vdi_job_run (struct job *job)
{
  struct host *d = job_host (job);
  const struct state_job *row = job_row (job);
  struct host_sr *src_sr = NULL;
  struct host_sr *dst_sr = host_find_sr (d, row->dst_sr);
  struct sr_vdi *src = host_find_vdi (d, row->vdi, &src_sr);
  struct sr_vdi *dst = NULL;
  g_autofree char *err = NULL;
  bool live = row->vbd != NULL;
  int r = -1;

  if (src == NULL || dst_sr == NULL) {
    err = g_strdup_printf ("the %s is gone", src ? "destination SR" : "VDI");
    goto fail;
  }
  if (job_cancelled (job))
    goto fail;
  job_set_progress (job, 0.0);
  if ((dst = make_dest (job, src, dst_sr, &err)) == NULL)
    goto fail;
  /* The new VDI's uuid was recorded before the VDI was made. */
  g_assert (g_strcmp0 (row->dst_vdi, dst->uuid) == 0);
  if (g_strcmp0 (row->phase, "queued") == 0) {
    g_autoptr (GError) error = NULL;

    if (job_set_phase (job, live ? "mirroring" : "copying", &error) == -1) {
      err = g_strdup (error->message);
      goto fail;
    }
  }
  r = live ? move_live (job, src, dst_sr, dst, &err)
           : copy_offline (job, src_sr, src, dst_sr, dst, &err);
  if (r == -1 && !live && job_stopping (job)) {
    /* The daemon stops: leave the journal and the partial VDI to the
     * next start, which resumes. */
    g_message ("task %s: stopped at the daemon's exit; resumes at start",
               row->task);
    goto out;
  }
  if (r == -1)
    goto fail;
  if (!live) {
    job_crash_point ("copied");
    commit_offline (job, dst_sr);
    goto out;
  }

  /* Pivoted. */
  carry_log (job, src_sr, src->uuid, dst_sr, dst->uuid,
             strcmp (row->kind, "migrate") == 0);
  unmark (job, dst_sr, dst->uuid);
  if (strcmp (row->kind, "migrate") == 0)
    destroy_source (job, src_sr, src->uuid);
  remove_journal (job);
  job_succeed (job, dst->uuid);
  goto out;

fail:
  fail_job (job, dst_sr, live ? "MIRROR_FAILED" : "VDI_COPY_FAILED",
            err ? err : "cancelled");
out:
  if (dst)
    host_vdi_release (d, dst->uuid);
  host_vdi_release (d, row->vdi);
  sr_vdi_free (dst);
  sr_vdi_free (src);
}

/* Recovery at start. */

static enum job_recovery
recover_live (struct job *job)
{
  struct host *d = job_host (job);
  const struct state_job *row = job_row (job);
  struct host_sr *dst_sr = host_find_sr (d, row->dst_sr);
  struct host_sr *src_sr = NULL;
  g_autofree char *ref = host_ref (row->vdi);
  bool recorded = g_strcmp0 (row->phase, "pivoted") == 0;
  int pivoted = 0;

  /* No new VDI, no move begun (make_dest comes first). */
  if (row->dst_vdi)
    pivoted = vdi_live_recover (d, row->vbd, row->dst_vdi, recorded);
  if (pivoted == -1) {
    /* Leave the row: the next start tries again. */
    g_critical ("task %s: cannot record the VBD's new VDI", row->task);
    return JOB_RECOVER_LEAVE;
  }
  if (pivoted) {
    struct sr_vdi *src = host_find_vdi (d, row->vdi, &src_sr);

    /* The pivot may have happened with no time left to record it: the
     * filter knew. */
    if (!recorded)
      g_message ("task %s: the VBD's disk was pivoted to VDI %s", row->task,
                 row->dst_vdi);
    if (src)
      carry_log (job, src_sr, src->uuid, dst_sr, row->dst_vdi,
                 strcmp (row->kind, "migrate") == 0);
    unmark (job, dst_sr, row->dst_vdi);
    if (src)
      destroy_source (job, src_sr, src->uuid);
    sr_vdi_free (src);
    job_succeed (job, row->dst_vdi);
    return JOB_RECOVER_DONE;
  }
  {
    const char *ei[] = { "MIRROR_FAILED",
                         "vdimotiond restarted during the "
                         "live move; the VDI stays where "
                         "it was",
                         ref, NULL };

    destroy_marked (d, dst_sr, row->task);
    destroy_unrecorded (dst_sr, row);
    job_fail (job, ei);
  }
  return JOB_RECOVER_DONE;
}

/* Did the offline job ROW pass its point of no return?  Its commit was
 * recorded, or (a record of an earlier version) its source is gone and
 * its new VDI exists without the mark. */
static bool
committed (struct host *d, const struct state_job *row)
{
  struct host_sr *dst_sr = host_find_sr (d, row->dst_sr);
  struct sr_vdi *dst = NULL, *src;
  bool r = false;

  if (dst_sr == NULL || row->dst_vdi == NULL
      || (dst = sr_vdi_get_by_uuid (dst_sr->sr, row->dst_vdi)) == NULL)
    return false;
  if (g_strcmp0 (row->phase, "committing") == 0)
    r = true;
  else if ((src = host_find_vdi (d, row->vdi, NULL)) == NULL)
    r = sr_vdi_get_other_config (dst, TASK_MARK) == NULL;
  else
    sr_vdi_free (src);
  sr_vdi_free (dst);
  return r;
}

static enum job_recovery
vdi_job_recover (struct job *job)
{
  struct host *d = job_host (job);
  const struct state_job *row = job_row (job);

  if (row->vbd)
    return recover_live (job);
  if (committed (d, row)) {
    g_message ("task %s: finishing (%s of VDI %s to %s)", row->task,
               row->kind, row->vdi, row->dst_vdi);
    commit_offline (job, host_find_sr (d, row->dst_sr));
    return JOB_RECOVER_DONE;
  }
  if (job_cancel_requested (job)) {
    fail_job (job, host_find_sr (d, row->dst_sr), "VDI_COPY_FAILED",
              "cancelled");
    return JOB_RECOVER_DONE;
  }
  host_vdi_claim (d, row->vdi, row->kind);
  if (row->dst_vdi)
    host_vdi_claim (d, row->dst_vdi, row->kind);
  return JOB_RECOVER_RESUME;
}

static void
vdi_job_forget (struct job *job)
{
  remove_journal (job);
}

const struct job_kind job_kind_vdi_copy = {
  .name = "copy",
  .run = vdi_job_run,
  .recover = vdi_job_recover,
  .forget = vdi_job_forget,
};

const struct job_kind job_kind_vdi_migrate = {
  .name = "migrate",
  .run = vdi_job_run,
  .recover = vdi_job_recover,
  .forget = vdi_job_forget,
};

/* Submission, and destroying a VDI. */

char *
host_vdi_move_submit (struct host *h, const char *uuid, struct host_sr *dst,
                      enum vdisk_format format, bool migrate, char ***err)
{
  const char *op = migrate ? "migrate" : "copy";
  g_autoptr (GPtrArray) vbds = state_list (h->state, "vbds", "vdi", uuid);
  g_autofree char *label = NULL;
  g_autoptr (GError) error = NULL;
  struct state_job j = { 0 };
  char *task = NULL;

  j.kind = (char *)op;
  j.vdi = (char *)uuid;
  j.dst_sr = (char *)sr_get_uuid (dst->sr);
  j.format = (char *)vdisk_format_name (format);
  j.phase = "queued";
  /* A VDI a running VM uses moves live; it cannot be copied offline. */
  for (guint i = 0; i < vbds->len && j.vbd == NULL; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (h->state, vbds->pdata[i]);

    if (b && b->pid > 0)
      j.vbd = g_strdup (b->uuid);
  }
  if (j.vbd && !migrate) {
    g_autofree char *ref = host_ref (uuid);

    host_err_set (err, "VDI_IN_USE", ref, "copy", NULL);
    goto out;
  }
  if (host_vdi_claim_or_fail (h, uuid, op, err) == -1)
    goto out;
  label = g_strdup_printf ("%s %s", migrate ? "VDI.pool_migrate" : "VDI.copy",
                           uuid);
  task = jobs_submit (h->jobs, &j, label, &error);
  if (task == NULL) {
    host_err_set (err, "INTERNAL_ERROR", error->message, NULL);
    host_vdi_release (h, uuid);
  }
  g_free (j.task);
out:
  g_free (j.vbd);
  return task;
}

int
host_vdi_destroy (struct host *h, struct host_sr *s, const char *uuid,
                  char ***err)
{
  g_autofree char *ref = host_ref (uuid);
  int r = 0;

  if (host_vdi_attached (h, uuid)) {
    host_err_set (err, "VDI_IN_USE", ref, "destroy", NULL);
    return -1;
  }
  if (host_vdi_claim_or_fail (h, uuid, "destroy", err) == -1)
    return -1;
  if (sr_vdi_destroy (s->sr, uuid) == -1) {
    host_err_sr (err, "VDI", ref, "VDI.destroy");
    r = -1;
  }
  host_vdi_release (h, uuid);
  if (r == 0)
    g_message ("VDI.destroy: %s in SR %s", uuid, s->name);
  return r;
}

char *
host_vdi_snapshot (struct host *h, struct host_sr *s, const char *uuid,
                   char ***err)
{
  g_autofree char *ref = host_ref (uuid);
  struct sr_vdi *v = sr_vdi_get_by_uuid (s->sr, uuid);
  struct sr_vdi *snap = NULL;
  char *r = NULL;

  if (v == NULL) {
    host_err_sr (err, "VDI", ref, "VDI.snapshot");
    return NULL;
  }
  /* The image a running VM writes is the one that would be frozen: its
   * disk server must be quiesced first, which a live snapshot (the
   * mirror filter's pause) does. */
  if (host_vdi_attached (h, uuid)) {
    r = host_vdi_snapshot_live (h, s, v, err);
    goto out;
  }
  if (host_vdi_claim_or_fail (h, uuid, "snapshot", err) == -1)
    goto out;
  snap = sr_vdi_snapshot (s->sr, uuid, v->name_label);
  if (snap == NULL) {
    g_message ("VDI.snapshot of %s: %s", uuid, sr_get_error ());
    host_err_sr (err, "VDI", ref, "VDI.snapshot");
  }
  host_vdi_release (h, uuid);
  if (snap) {
    g_message ("VDI.snapshot: %s of %s in SR %s", snap->uuid, uuid, s->name);
    r = g_strdup (snap->uuid);
  }
out:
  sr_vdi_free (snap);
  sr_vdi_free (v);
  return r;
}
