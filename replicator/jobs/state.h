/* vdimotiond's durable state: one SQLite database in the state dir.
 *
 * What lives here is what belongs to the host, not to an SR: sessions,
 * VM and VBD records (with the nbdkit processes that serve a running
 * VM's disks), tasks, the jobs behind them, and a few host-wide
 * settings (the pool's name and default SR).  VDI records live inside
 * their SR (sr.h), so an SR moved to another host keeps them.
 *
 * The database is <state-dir>/state.db, journal_mode=WAL,
 * synchronous=FULL: a change is on disk when the call returns, so a
 * kill -9 at any point leaves either the old or the new row.  The handle
 * is opened in SQLite's serialized mode: the main loop and job threads
 * call these functions freely.
 *
 * Every record is a plain struct, newly allocated by the getters and
 * freed with its *_free (or g_autoptr).  Getters return NULL when the row
 * does not exist.  Every write returns 0, or -1 after logging SQLite's
 * message; the compiler makes every caller look at it
 * (G_GNUC_WARN_UNUSED_RESULT), and a caller that cannot record a step
 * does not take it: the call or job fails with an error that names the
 * write, or (where the step already happened, as a pivot) says so loudly
 * and leaves what the next start needs to finish it.
 *
 * The writes of records XenAPI shows (sessions, VMs, VBDs, tasks) are
 * logged as changes (state_set_events): a new writer of such a record
 * goes through the same helper in state.c, so nothing changes unseen.
 */
#ifndef XAPI_STATE_H
#define XAPI_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>

struct state;

struct state *state_open (const char *state_dir, GError **error);
void state_close (struct state *st);
/* Log every change of a XenAPI object's record written here (sessions,
 * VMs, VBDs, tasks) into EVENTS (events.h; NULL: none), once the write
 * changed a row.  Set before the state is shared between threads. */
struct events;
void state_set_events (struct state *st, struct events *events);

/* Sessions: ref → user. */
G_GNUC_WARN_UNUSED_RESULT int state_session_add (struct state *st, const char *ref, const char *user);
G_GNUC_WARN_UNUSED_RESULT int state_session_remove (struct state *st, const char *ref);
/* Calls FN for each session, oldest first. */
void state_session_foreach (struct state *st,
                            void (*fn) (const char *ref, const char *user,
                                        void *opaque),
                            void *opaque);

/* VMs.  power_state is "Halted" or "Running". */
struct state_vm
{
  char *uuid;
  char *name_label;
  char *name_description;
  char *power_state;
  int64_t created;
  char *other_config; /* GVariant text of an a{ss}, or NULL for {} */
};
G_GNUC_WARN_UNUSED_RESULT int state_vm_add (struct state *st, const struct state_vm *vm);
struct state_vm *state_vm_get (struct state *st, const char *uuid);
G_GNUC_WARN_UNUSED_RESULT int state_vm_set_power_state (struct state *st, const char *uuid,
                              const char *power_state);
G_GNUC_WARN_UNUSED_RESULT int state_vm_set_other_config (struct state *st, const char *uuid,
                               const char *other_config);
G_GNUC_WARN_UNUSED_RESULT int state_vm_remove (struct state *st, const char *uuid);
void state_vm_free (struct state_vm *vm);
typedef struct state_vm state_vm; /* for g_autoptr */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (state_vm, state_vm_free)

/* VBDs: a VM's disk.  While the VM runs, nbdkit (pid) serves the VDI on
 * nbd_socket with the mirror filter's control on control_socket; during
 * and after a live move a second nbdkit (target_pid) serves the new VDI
 * on target_socket. */
struct state_vbd
{
  char *uuid;
  char *vm;  /* uuid */
  char *vdi; /* uuid */
  char *userdevice;
  char *mode; /* "RW" or "RO" */
  char *nbd_socket;
  char *control_socket;
  pid_t pid;
  char *target_socket;
  pid_t target_pid;
};
G_GNUC_WARN_UNUSED_RESULT int state_vbd_add (struct state *st, const struct state_vbd *vbd);
struct state_vbd *state_vbd_get (struct state *st, const char *uuid);
/* Writes every field of VBD (looked up by uuid). */
G_GNUC_WARN_UNUSED_RESULT int state_vbd_update (struct state *st, const struct state_vbd *vbd);
G_GNUC_WARN_UNUSED_RESULT int state_vbd_remove (struct state *st, const char *uuid);
void state_vbd_free (struct state_vbd *vbd);
typedef struct state_vbd state_vbd; /* for g_autoptr */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (state_vbd, state_vbd_free)

/* Tasks.  status: "pending", "success", "failure", "cancelling",
 * "cancelled".  A job's result is typed: result_uuid, the object it made
 * (jobs.h).  result is the text of a task the XenAPI face ended itself
 * (an Async call of a method that finishes at once): XenAPI's wire form,
 * kept as the face wrote it. */
struct state_task
{
  char *uuid;
  char *name_label;
  char *status;
  double progress;
  char *result;
  char *result_uuid;
  /* A job's text result (jobs.h's job_succeed_text: a report), plain
   * text the face sends as a string, or NULL. */
  char *result_text;
  char **error_info; /* NULL-terminated, may be NULL */
  int64_t created, finished;
};
G_GNUC_WARN_UNUSED_RESULT int state_task_add (struct state *st, const struct state_task *t);
struct state_task *state_task_get (struct state *st, const char *uuid);
G_GNUC_WARN_UNUSED_RESULT int state_task_set_progress (struct state *st, const char *uuid,
                             double progress);
/* The status of a task still running (pending or cancelling): a task
 * that ended meanwhile keeps its outcome. */
G_GNUC_WARN_UNUSED_RESULT int state_task_set_status (struct state *st, const char *uuid,
                           const char *status);
/* Ends the task: status, the uuid of the object made (may be NULL) and
 * error_info (may be NULL). */
G_GNUC_WARN_UNUSED_RESULT int state_task_finish (struct state *st, const char *uuid, const char *status,
                       const char *result_uuid,
                       const char *const *error_info);
/* Record TEXT as the text result of task UUID (result_text), before it
 * ends (state_task_finish): a crash between the two leaves the task
 * running, and the job that ends it again replaces the text. */
G_GNUC_WARN_UNUSED_RESULT int state_task_set_result_text (struct state *st,
                                                          const char *uuid,
                                                          const char *text);
G_GNUC_WARN_UNUSED_RESULT int state_task_remove (struct state *st, const char *uuid);
void state_task_free (struct state_task *t);
typedef struct state_task state_task; /* for g_autoptr */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (state_task, state_task_free)

/* Jobs: the storage work behind a task, kept until the task ends so that
 * a restarted daemon resumes or cleans up (jobs.h). */
struct state_job
{
  char *task;    /* uuid of its task */
  char *kind;    /* "copy" (VDI.copy) or "migrate" (VDI.pool_migrate) */
  char *vdi;     /* source VDI */
  char *dst_sr;  /* destination SR uuid */
  char *dst_vdi; /* the new VDI once created, else NULL */
  char *format;  /* destination image format */
  char *phase;   /* "queued", "copying", "mirroring", "pivoted" */
  char *vbd;     /* a live move: the VBD of the running VM, else NULL */
  char *params;  /* kind-specific parameters (a VM migration's token and
                    maps, as GKeyFile text), or NULL */
};
G_GNUC_WARN_UNUSED_RESULT int state_job_add (struct state *st, const struct state_job *j);
struct state_job *state_job_get (struct state *st, const char *task);
G_GNUC_WARN_UNUSED_RESULT int state_job_update (struct state *st, const struct state_job *j);
G_GNUC_WARN_UNUSED_RESULT int state_job_remove (struct state *st, const char *task);
void state_job_free (struct state_job *j);
typedef struct state_job state_job; /* for g_autoptr */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (state_job, state_job_free)

/* A task a client made with task.create (its row in the tasks table is
 * made apart, with state_task_add): its description and other_config
 * (GVariant text of an a{ss}, or NULL for {}).  state_client_task_get
 * returns NULL for any other task (a job's). */
struct state_client_task
{
  char *task; /* uuid */
  char *name_description;
  char *other_config;
};
G_GNUC_WARN_UNUSED_RESULT int state_client_task_add (struct state *st,
                           const struct state_client_task *ct);
struct state_client_task *state_client_task_get (struct state *st,
                                                 const char *task);
G_GNUC_WARN_UNUSED_RESULT int state_client_task_set_other_config (struct state *st, const char *task,
                                        const char *other_config);
/* What a client sets on its own task (task.set_status, set_result,
 * set_error_info): STATUS and RESULT each unless NULL, ERROR_INFO (NULL
 * for none) if SET_ERROR_INFO. */
G_GNUC_WARN_UNUSED_RESULT int state_client_task_set (struct state *st, const char *task,
                           const char *status, const char *result,
                           bool set_error_info, const char *const *error_info);
G_GNUC_WARN_UNUSED_RESULT int state_client_task_remove (struct state *st, const char *task);
void state_client_task_free (struct state_client_task *ct);
typedef struct state_client_task state_client_task; /* for g_autoptr */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (state_client_task, state_client_task_free)

/* Migrations this host receives (migrate-receive.c): a token issued,
 * then prepared (VDIs and their NBD exports exist), then committed or
 * aborted. */
struct state_migration
{
  char *uuid;
  char *secret_sha256; /* of the token's secret: the secret is not kept */
  int64_t expires;     /* unix time: prepare must come before */
  char *sr;            /* default destination SR uuid */
  char *state;         /* "issued", "prepared", "committed", "aborted" */
  int64_t last_seen;   /* last call from the source (unix time) */
};
G_GNUC_WARN_UNUSED_RESULT int state_migration_add (struct state *st, const struct state_migration *m);
struct state_migration *state_migration_get (struct state *st,
                                             const char *uuid);
G_GNUC_WARN_UNUSED_RESULT int state_migration_update (struct state *st, const struct state_migration *m);
G_GNUC_WARN_UNUSED_RESULT int state_migration_remove (struct state *st, const char *uuid);
void state_migration_free (struct state_migration *m);
typedef struct state_migration state_migration; /* for g_autoptr */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (state_migration, state_migration_free)

/* One disk of a received migration: its new VDI, the nbdkit serving it
 * on a Unix socket (with the mirror filter: the VM's disk once it is
 * here) and the TLS-PSK forwarder the source mirrors into. */
struct state_mdisk
{
  char *uuid; /* the new VDI's uuid (the row's key) */
  char *migration;
  char *userdevice;
  char *socket, *control;
  pid_t pid;
  char *fwd_pidfile;
  pid_t fwd_pid;
  int64_t fwd_port;
};
G_GNUC_WARN_UNUSED_RESULT int state_mdisk_add (struct state *st, const struct state_mdisk *md);
struct state_mdisk *state_mdisk_get (struct state *st, const char *uuid);
G_GNUC_WARN_UNUSED_RESULT int state_mdisk_remove (struct state *st, const char *uuid);
void state_mdisk_free (struct state_mdisk *md);
typedef struct state_mdisk state_mdisk; /* for g_autoptr */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (state_mdisk, state_mdisk_free)

/* A number of VM UUID's own, positive and kept as long as the VM
 * exists (its row's number; XenAPI's domid of a running VM), or -1 if
 * there is no such VM. */
int64_t state_vm_number (struct state *st, const char *uuid);

/* Host-wide settings, text under a key ("pool-default-sr", ...): the
 * value of KEY (g_free it) or NULL when it was never set; setting NULL
 * removes it. */
char *state_setting_get (struct state *st, const char *key);
G_GNUC_WARN_UNUSED_RESULT int state_setting_set (struct state *st, const char *key,
                                                 const char *value);

/* The uuids of all rows of TABLE ("vms", "vbds", "tasks", "jobs",
 * "migrations", "mdisks"), in
 * creation order; with COLUMN and VALUE only the rows where COLUMN =
 * VALUE (e.g. "vbds", "vm", uuid). */
GPtrArray *state_list (struct state *st, const char *table, const char *column,
                       const char *value);

#endif /* XAPI_STATE_H */
