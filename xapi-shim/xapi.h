/* xapi-shim: the XenAPI face of vdimotiond (DESIGN.md §1).
 *
 * One call goes: HTTP POST / (http.c) → our decoder reads it in a worker
 * thread (xmlrpc-decode.c, rpc.c) → the main loop hands the method name
 * to xapi_dispatch (dispatch.c) → the class is found by name,
 * in any letter case as xapi accepts ("Host.get_all" == "host.get_all"),
 * the session is checked, and the method runs → its Value or its
 * ErrorDescription is wrapped as XenAPI does:
 *   {Status: "Success", Value: ...}
 *   {Status: "Failure", ErrorDescription: [CODE, params...]}
 *
 * One class is one file with one `struct xapi_class` (class-host.c,
 * class-sr.c, class-vdi.c, session.c).  A class with records gives two
 * functions, list and get_record; get_all, get_all_records, get_by_uuid,
 * get_by_name_label, get_record and every get_<field> getter are then
 * generic (dispatch.c).  Methods of its own are in its method table.
 *
 * Refs are "OpaqueRef:<uuid of the object>", so they stay the same across
 * restarts and an SR moved to another host keeps the refs of its VDIs.
 * 64-bit integers travel as strings, as in XenAPI.
 */
#ifndef XAPI_H
#define XAPI_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <gio/gio.h>
#include <xmlrpc-c/base.h>

#include "sr.h"
#include "state.h"

#define XAPI_REF_PREFIX "OpaqueRef:"
#define XAPI_NULL_REF "OpaqueRef:NULL"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (xmlrpc_value, xmlrpc_DECREF)

/* One SR given with --sr NAME=PATH or [sr:NAME]. */
struct xapi_sr
{
  char *name; /* the SR's name_label */
  struct sr *sr;
};

/* At most this many sessions; a login beyond it ends the oldest session,
 * as xapi does, so clients that never log out cannot exhaust memory. */
#define XAPI_MAX_SESSIONS 1000

struct jobs;

/* Everything the XenAPI face serves. */
struct xapi_daemon
{
  char *host_uuid;
  char *host_name_label;
  char *network_uuid;
  char *state_dir;
  char *run_dir;       /* <state-dir>/run: nbdkit sockets and pid files */
  struct state *state; /* sessions, VMs, VBDs, tasks, jobs */
  struct jobs *jobs;   /* the storage operations (jobs.c) */
  /* How a VM's disks are served (vm-disks.c). */
  char *nbdkit;        /* the nbdkit program */
  char *vdi_plugin;    /* path of nbdkit-vdi-plugin.so */
  char *mirror_filter; /* path of nbdkit-mirror-filter.so */
  /* Migration (migrate.c, migrate-receive.c). */
  char *migration_url;   /* how sources reach this daemon */
  char *cert_sha256;     /* of the HTTPS certificate, or NULL */
  char *nbd_address;     /* where migration NBD exports listen */
  char *memory_migrator; /* the command handing a VM over */
  GPtrArray *srs;        /* struct xapi_sr * */
  GHashTable *users;     /* user name → crypt(3) hash */
  GHashTable *sessions;  /* session ref → user name */
  GQueue session_order;  /* the refs (keys of sessions), oldest first */
  size_t max_request_size;
  /* VDIs with an operation running (VDI record "current_operations"):
   * uuid → operation name.  Jobs run in threads, so under vdi_ops_lock. */
  GMutex vdi_ops_lock;
  GHashTable *vdi_ops;
  /* Clients' tasks that HTTP transfers report into (class-task.c). */
  GHashTable *task_drives;
};

/* The password check of a session.login_with_password call, made in a
 * worker thread before the call reaches the main loop (crypt(3) takes
 * tens of milliseconds by design, which the main loop must not spend on
 * anyone who asks). */
struct xapi_login_check
{
  char *user;
  char *password;
  bool ok;
};

/* One call in progress. */
struct xapi_call
{
  struct xapi_daemon *d;
  xmlrpc_env *env;
  const char *method; /* "VDI.get_record", as the client spelled it */
  bool async;         /* called as "Async.<class>.<method>" */
  bool async_ran;     /* the method itself ran (past session checks) */
  bool async_task;    /* it answered with the task of its job */
  GPtrArray *error;   /* the ErrorDescription once the call failed */
  const struct xapi_login_check *login; /* or NULL */
};

typedef xmlrpc_value *xapi_method_fn (struct xapi_call *c,
                                      xmlrpc_value *const *args, int nargs);

struct xapi_method
{
  const char *name;
  int min_args, max_args; /* including the session ref */
  bool no_session;        /* only session.login_with_password */
  xapi_method_fn *fn;     /* returns the Value, or NULL after xapi_fail */
};

struct xapi_class
{
  const char *name;                  /* as xapi spells it: "VDI" */
  const struct xapi_method *methods; /* ended by { NULL } */
  /* Append the refs of all objects to REFS; false after xapi_fail. */
  bool (*list) (struct xapi_call *c, GPtrArray *refs);
  /* The record of REF, or NULL after xapi_fail (HANDLE_INVALID). */
  xmlrpc_value *(*get_record) (struct xapi_call *c, const char *ref);
};

extern const struct xapi_class xapi_class_session;
extern const struct xapi_class xapi_class_host;
extern const struct xapi_class xapi_class_sr;
extern const struct xapi_class xapi_class_vdi;
extern const struct xapi_class xapi_class_vm;
extern const struct xapi_class xapi_class_vbd;
extern const struct xapi_class xapi_class_task;
extern const struct xapi_class xapi_class_network;
extern const struct xapi_class xapi_class_migration;

/* dispatch.c: run one XML-RPC call; always returns the wrapped reply.
 * LOGIN (or NULL) is the password check already made for it. */
xmlrpc_value *xapi_dispatch (struct xapi_daemon *d, xmlrpc_env *env,
                             const char *method, xmlrpc_value *params,
                             const struct xapi_login_check *login);

/* Fail the call with CODE and string params, NULL-terminated. */
void xapi_fail (struct xapi_call *c, const char *code,
                ...) G_GNUC_NULL_TERMINATED;
/* Fail with the XenAPI error that the SR layer's errno says (sr.h). */
void xapi_fail_sr (struct xapi_call *c, const char *cls, const char *ref);
bool xapi_failed (struct xapi_call *c);

/* Values.  Each returns a new reference (NULL if xmlrpc-c failed, which
 * leaves c->env faulted; dispatch turns that into INTERNAL_ERROR). */
xmlrpc_value *xapi_string (struct xapi_call *c, const char *s);
xmlrpc_value *xapi_int64 (struct xapi_call *c, int64_t v);
xmlrpc_value *xapi_bool (struct xapi_call *c, bool v);
xmlrpc_value *xapi_ref (struct xapi_call *c, const char *uuid);
xmlrpc_value *xapi_void (struct xapi_call *c);
xmlrpc_value *xapi_empty_array (struct xapi_call *c);
xmlrpc_value *xapi_empty_struct (struct xapi_call *c);
/* Set KEY of struct ST to V and drop the caller's reference to V. */
void xapi_set (struct xapi_call *c, xmlrpc_value *st, const char *key,
               xmlrpc_value *v);
void xapi_append (struct xapi_call *c, xmlrpc_value *array, xmlrpc_value *v);

/* Arguments.  A string argument (NULL after xapi_fail FIELD_TYPE_ERROR),
 * to be freed with g_free. */
char *xapi_read_string (struct xapi_call *c, xmlrpc_value *v,
                        const char *what);
/* Member KEY of struct REC as a string, or NULL if absent (and after
 * FIELD_TYPE_ERROR if present but not a string). */
char *xapi_member_string (struct xapi_call *c, xmlrpc_value *rec,
                          const char *key);
/* The string value of KEY in the map member MAP of REC, or NULL. */
char *xapi_map_string (struct xapi_call *c, xmlrpc_value *rec, const char *map,
                       const char *key);
/* A map of strings (other_config, options, vdi_map): FN gets each KEY and
 * VALUE (borrowed).  False after FIELD_TYPE_ERROR (V not a struct of
 * strings) or after FN returned false (FN may fail the call itself,
 * else INVALID_VALUE WHAT KEY). */
typedef bool xapi_string_map_fn (struct xapi_call *c, const char *key,
                                 const char *value, void *opaque);
bool xapi_read_string_map (struct xapi_call *c, xmlrpc_value *v,
                           const char *what, xapi_string_map_fn *fn,
                           void *opaque);
/* A record argument: false after FIELD_TYPE_ERROR if V is not a struct. */
bool xapi_is_record (struct xapi_call *c, xmlrpc_value *v, const char *what);
/* The uuid inside "OpaqueRef:<uuid>", or NULL if REF is not of that shape
 * (no uuid is ever taken from a ref that is not canonical). */
const char *xapi_ref_uuid (const char *ref);

/* session.c */
int xapi_load_auth_file (struct xapi_daemon *d, const char *path,
                         GError **error);
bool xapi_session_valid (struct xapi_daemon *d, const char *ref);
/* Is PW the password of USER?  Any thread (the users are read at start
 * only). */
bool xapi_password_ok (struct xapi_daemon *d, const char *user,
                       const char *pw);
/* Is METHOD session.login_with_password (or its Async.)? */
bool xapi_login_method (const char *method);
/* If METHOD(PARAMS) is a login, check its password into *CHECK (free it
 * with xapi_login_check_clear) and return true.  Any thread. */
bool xapi_login_precheck (struct xapi_daemon *d, const char *method,
                          xmlrpc_value *params,
                          struct xapi_login_check *check);
void xapi_login_check_clear (struct xapi_login_check *check);
/* Put the sessions of the state database back in memory (at start). */
void xapi_load_sessions (struct xapi_daemon *d);
/* Read a password from stdin, print its crypt(3) hash (--hash-password). */
int xapi_hash_password (void);

/* class-vdi.c.  The VDI named by REF and the SR holding it (*SRP, may be
 * NULL); NULL after HANDLE_INVALID or another error of the SR. */
struct sr_vdi *xapi_vdi_by_ref (struct xapi_call *c, const char *ref,
                                struct xapi_sr **srp);
/* Mark VDI UUID busy with operation OP ("import", "copy", ...) so that no
 * other operation starts on it; false if it already has one (the call
 * then fails with OTHER_OPERATION_IN_PROGRESS).  Release when done. */
bool xapi_vdi_claim (struct xapi_call *c, const char *uuid, const char *op);
/* The same without a call (job threads): false if already busy. */
bool xapi_vdi_try_claim (struct xapi_daemon *d, const char *uuid,
                         const char *op);
void xapi_vdi_release (struct xapi_daemon *d, const char *uuid);
/* The SR holding VDI UUID and its record, without a call (threads);
 * NULL if no SR has it. */
struct sr_vdi *xapi_find_vdi (struct xapi_daemon *d, const char *uuid,
                              struct xapi_sr **srp);
/* The path of the VDI's image file (g_free it). */
char *xapi_vdi_path (struct xapi_sr *s, const struct sr_vdi *v);
/* The SR with uuid UUID, or NULL. */
struct xapi_sr *xapi_find_sr (struct xapi_daemon *d, const char *uuid);

/* class-sr.c, for class-vdi.c */
struct xapi_sr *xapi_sr_by_ref (struct xapi_call *c, const char *ref);

/* class-vbd.c: is VDI UUID served to a running VM? */
bool xapi_vdi_attached (struct xapi_daemon *d, const char *vdi_uuid);

/* class-vm.c: the VM named by REF; NULL after HANDLE_INVALID. */
struct state_vm *xapi_vm_by_ref (struct xapi_call *c, const char *ref);

/* dispatch.c: X.set_other_config(session, ref, map),
 * X.add_to_other_config(session, ref, key, value) and
 * X.remove_from_other_config(session, ref, key), by the method's name,
 * applied to OC (the other_config of REF of class CLS).  False after
 * xapi_fail (FIELD_TYPE_ERROR, MAP_DUPLICATE_KEY). */
bool xapi_change_other_config (struct xapi_call *c, xmlrpc_value *const *args,
                               const char *cls, const char *ref,
                               GHashTable *oc);

/* class-vm.c: a VM's other_config as kept in state.h (GVariant text of
 * an a{ss}) from and to a key → value table (never NULL). */
GHashTable *xapi_oc_parse (const char *text);
char *xapi_oc_print (GHashTable *oc);
/* An XML-RPC struct of strings into OC; false after FIELD_TYPE_ERROR. */
bool xapi_oc_from_xmlrpc (struct xapi_call *c, xmlrpc_value *m,
                          GHashTable *oc);

/* class-vm.c: make the VM records agree with the nbdkit processes that
 * are really running (at start, after a restart or a crash). */
void xapi_vms_reconcile (struct xapi_daemon *d);

/* vm-disks.c: nbdkit serving VDI V of SR S on <run-dir>/<name>.sock, with
 * the mirror filter (control on <name>.ctl) when MIRROR.  The plugin is
 * told the VDI's format from its record and kept inside the SR's
 * directory: a guest's bytes are never taken for an image header. */
struct xapi_served
{
  char *socket;
  char *control; /* NULL without the mirror filter */
  pid_t pid;
};
int xapi_serve_image (struct xapi_daemon *d, const char *name,
                      struct xapi_sr *s, const struct sr_vdi *v, bool mirror,
                      bool readonly, struct xapi_served *out, GError **error);
/* nbdkit forwarding TLS-PSK NBD on ADDR:<a free port> to UNIX_SOCKET
 * (the TCP export a migration's source mirrors into). */
struct xapi_forward
{
  char *pidfile; /* <run-dir>/<name>.pid: names the process */
  int port;
  pid_t pid;
};
int xapi_serve_forward (struct xapi_daemon *d, const char *name,
                        const char *unix_socket, const char *psk_file,
                        const char *addr, struct xapi_forward *out,
                        GError **error);
/* Is PID still the nbdkit serving SOCKET (or using pid file SOCKET)? */
bool xapi_serving (pid_t pid, const char *socket);
/* Stop it (SIGTERM, then SIGKILL after GRACE_SECONDS) and remove its
 * socket (or pid file), pid file, log and control socket.  A server
 * whose data still matters gets XAPI_STOP_GRACE; one whose image is about
 * to be destroyed, XAPI_STOP_NOW. */
#define XAPI_STOP_GRACE 10
#define XAPI_STOP_NOW 1
void xapi_stop_serving (pid_t pid, const char *socket, const char *control,
                        int grace_seconds);

/* jobs.c: storage operations run as tasks (VDI.copy, VDI.pool_migrate),
 * at most max_running at once, the others queued. */
struct jobs *jobs_new (struct xapi_daemon *d, unsigned max_running);
/* Stop: running copies stop where they are (their journals let the next
 * start resume them), live moves are aborted. */
void jobs_free (struct jobs *jobs);
/* At start: resume or clean up the jobs a previous run left. */
void jobs_recover (struct jobs *jobs);
/* Queue job J (J->task is set by this call: a new pending task named
 * NAME_LABEL).  The caller claimed J->vdi.  Returns the task uuid or
 * NULL after xapi_fail. */
char *jobs_submit (struct xapi_call *c, struct state_job *j,
                   const char *name_label);
/* The progress of a task whose job runs or waits (false if none). */
bool jobs_get_progress (struct jobs *jobs, const char *task, double *progress);
/* Ask a job to stop; false if TASK has no job. */
bool jobs_cancel (struct jobs *jobs, const char *task);
/* What a method returns for the task of a job it submitted: the task ref
 * when called as Async.*, else (after waiting for it, the main loop
 * running meanwhile) the task's result or its error. */
xmlrpc_value *jobs_reply (struct xapi_call *c, const char *task);

/* jobs.c, for the kinds of jobs that live elsewhere (a VM migration,
 * migrate.c): what a running job sees of itself. */
struct job;
const struct state_job *job_row (struct job *job);
struct xapi_daemon *job_daemon (struct job *job);
bool job_cancelled (struct job *job); /* cancelled, or the daemon stops */
bool job_stopping (struct job *job);  /* the daemon stops */
const int *job_cancel_flag (struct job *job); /* for copy_params.cancel */
void job_set_progress (struct job *job, double progress);
void job_set_phase (struct job *job, const char *phase); /* recorded */
/* End the task (and drop the job's row). */
void job_finish (struct job *job, const char *status, const char *result,
                 const char *const *error_info);

/* migrate-receive.c: the destination side.  The methods of class
 * "migration" take a token, not a session (see the file's top). */
xmlrpc_value *xapi_vm_migrate_receive (struct xapi_call *c,
                                       xmlrpc_value *const *args, int nargs);
xmlrpc_value *xapi_host_migrate_receive (struct xapi_call *c,
                                         xmlrpc_value *const *args, int nargs);
/* Abort prepared migrations whose source went quiet (AT_START: all of
 * them, since a restart lost track); forget old ones. */
void xapi_migrations_expire (struct xapi_daemon *d, bool at_start);
/* The NBD pre-shared key (hex) both sides derive from a token's secret,
 * and a PSK file for nbdkit / libnbd holding it, in the run dir. */
char *xapi_migration_psk (const char *secret);
char *xapi_migration_write_psk (struct xapi_daemon *d, const char *name,
                                const char *secret, GError **error);

/* migrate.c: the source side: VM.migrate(session, vm, token, live,
 * options), VM.migrate_send(session, vm, token, live, vdi_map, vif_map,
 * options[, vgpu_map]), VM.assert_can_migrate(session, vm, token, live,
 * vdi_map, vif_map, options). */
xmlrpc_value *xapi_vm_migrate (struct xapi_call *c, xmlrpc_value *const *args,
                               int nargs);
xmlrpc_value *xapi_vm_migrate_send (struct xapi_call *c,
                                    xmlrpc_value *const *args, int nargs);
xmlrpc_value *xapi_vm_assert_can_migrate (struct xapi_call *c,
                                          xmlrpc_value *const *args,
                                          int nargs);
void xapi_migrate_run (struct job *job);
/* At start, for a migration a previous run left: abort it, fail the task. */
void xapi_migrate_recover (struct job *job);

/* class-task.c: a task that is already over, for Async.* calls of
 * methods that finish at once; returns its uuid. */
char *xapi_task_done (struct xapi_daemon *d, const char *name_label,
                      const char *result, const char *const *error_info);
/* XenAPI's task result text: "<value>...</value>" for VALUE. */
char *xapi_task_result_text (struct xapi_call *c, xmlrpc_value *value);

/* class-task.c: an HTTP transfer reporting into a task a client made
 * with task.create (xapi's task_id=), on the main loop.  begin: TASK is
 * its ref (or uuid, as xapi also takes); NULL with *WHY (g_free) if no
 * client's task has it (a job's task is the job's).  progress (0 to 1)
 * is recorded as it moves by 1% while the task is pending.  cancelled:
 * task.cancel came, the transfer should stop.  end: the task succeeds
 * (its result the ref of RESULT_UUID, "" if NULL) or, with ERROR_INFO
 * (NULL-terminated, CODE first), fails ("cancelled" for
 * TASK_CANCELLED), unless it ended before; frees TD. */
struct xapi_task_drive;
struct xapi_task_drive *xapi_task_drive_begin (struct xapi_daemon *d,
                                               const char *task, char **why);
const char *xapi_task_drive_ref (const struct xapi_task_drive *td);
void xapi_task_drive_progress (struct xapi_task_drive *td, double progress);
bool xapi_task_drive_cancelled (const struct xapi_task_drive *td);
void xapi_task_drive_end (struct xapi_task_drive *td, const char *result_uuid,
                          const char *const *error_info);

/* http.c: serve XenAPI over HTTP (TLS_CERT NULL) or HTTPS. */
struct xapi_http;
struct xapi_http *xapi_http_new (struct xapi_daemon *d, GError **error);
int xapi_http_listen (struct xapi_http *h, const char *addr_port,
                      GTlsCertificate *tls, GError **error);
/* Log the URIs served; returns the one to give out (HTTPS if any). */
char *xapi_http_log_uris (struct xapi_http *h);
void xapi_http_free (struct xapi_http *h);

/* http-vdi.c: xapi's disk data handlers, for http.c.  import_begin runs
 * from the headers of PUT /import_raw_vdi: 0 if the body may come, else
 * the HTTP status to answer at once and *TEXT (g_free) why; import_end
 * answers once the body is in.  export answers GET /export_raw_vdi. */
typedef struct _SoupServerMessage SoupServerMessage;
guint xapi_http_vdi_import_begin (struct xapi_daemon *d,
                                  SoupServerMessage *msg, GHashTable *query,
                                  char **text);
void xapi_http_vdi_import_end (struct xapi_daemon *d, SoupServerMessage *msg);
void xapi_http_vdi_export (struct xapi_daemon *d, SoupServerMessage *msg,
                           GHashTable *query);

#endif /* XAPI_H */
