/* xapi-shim: the XenAPI face of vdimotiond (DESIGN.md §1).
 *
 * One call goes: HTTP POST / (http.c) → our decoder reads it in a worker
 * thread (xmlrpc-decode.c, rpc.c; JSON-RPC: jsonrpc.c) → the main loop hands the method name
 * to xapi_dispatch (dispatch.c) → the class is found by name,
 * in any letter case as xapi accepts ("Host.get_all" == "host.get_all"),
 * the session is checked, and the method runs → its Value or its
 * ErrorDescription is wrapped as XenAPI does:
 *   {Status: "Success", Value: ...}
 *   {Status: "Failure", ErrorDescription: [CODE, params...]}
 * A method whose answer comes later (a synchronous call of a job,
 * event.from) defers it instead (struct xapi_deferral, below): no thread
 * waits, the main loop serves others meanwhile.
 *
 * One class is one file with one `struct xapi_class` (class-host.c,
 * class-sr.c, class-vdi.c, session.c).  A class with records gives two
 * functions, list and get_record; get_all, get_all_records, get_by_uuid,
 * get_by_name_label, get_record and every get_<field> getter are then
 * generic (dispatch.c).  Methods of its own are in its method table.
 *
 * Refs are "OpaqueRef:<uuid of the object>", so they stay the same across
 * restarts and an SR moved to another host keeps the refs of its VDIs.
 * 64-bit integers are i8 values (xapi_int64), which travel in XML-RPC as
 * strings, as in XenAPI, and in JSON-RPC as numbers.
 */
#ifndef XAPI_H
#define XAPI_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <gio/gio.h>
#include <xmlrpc-c/base.h>

#include "cbt.h"
#include "events.h"
#include "host.h"
#include "jobs.h"
#include "migrate-receive.h"
#include "nbd-exports.h"
#include "nbdkit.h"
#include "state.h"
#include "vdi-jobs.h"
#include "vms.h"

#define XAPI_REF_PREFIX "OpaqueRef:"
#define XAPI_NULL_REF "OpaqueRef:NULL"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (xmlrpc_value, xmlrpc_DECREF)

/* At most this many sessions; a login beyond it ends the oldest session,
 * as xapi does, so clients that never log out cannot exhaust memory. */
#define XAPI_MAX_SESSIONS 1000


/* Everything the XenAPI face serves. */
struct xapi_daemon
{
  struct host *host;    /* the brain: SRs, state, jobs (host.h) */
  GHashTable *users;     /* user name → crypt(3) hash */
  GHashTable *sessions;  /* session ref → user name */
  GQueue session_order;  /* the refs (keys of sessions), oldest first */
  size_t max_request_size;
  struct xapi_events *events; /* the event class's (class-event.c) */
  /* Clients' tasks that HTTP transfers report into (class-task.c). */
  GHashTable *task_drives;
  /* Backup repositories served (--backup-repo): name → directory. */
  GHashTable *backup_repos;
  /* VDI.get_nbd_info's exports (NULL: none, without a certificate). */
  struct nbd_exports *nbd;
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
  struct xapi_deferral *defer; /* answered later (see below) */
  const struct xapi_login_check *login; /* or NULL */
};

/* A call answered later, without a thread waiting for it: a synchronous
 * call of a job's method (once its task is over), event.from and
 * event.next (once an event comes, or at the timeout).  The method sets
 * c->defer and returns NULL; xapi_dispatch hands the deferral to its
 * caller (http.c), which sets ready, starts it, and once it is ready
 * makes the reply with xapi_dispatch_deferred.  A kind of deferral is
 * an ops table and a struct beginning with a struct xapi_deferral.  All
 * of it runs in the main context. */
struct xapi_deferral;
struct xapi_deferral_ops
{
  /* Start waiting: once the answer can be made, call
   * xapi_deferral_ready (DF), never from inside start. */
  void (*start) (struct xapi_deferral *df);
  /* The daemon stops: stop waiting.  True if ready will not be called;
   * false if it is already on its way (it will be called, once). */
  bool (*cancel) (struct xapi_deferral *df);
  /* The call's Value, or NULL after xapi_fail (C). */
  xmlrpc_value *(*answer) (struct xapi_deferral *df, struct xapi_call *c);
  /* Free what the kind added (not DF itself). */
  void (*clear) (struct xapi_deferral *df);
};

struct xapi_deferral
{
  const struct xapi_deferral_ops *ops;
  struct xapi_daemon *d;
  char *method; /* the call's, for the answer */
  /* The waiter's (set before start). */
  void (*ready) (struct xapi_deferral *df, void *opaque);
  void *opaque;
};

/* Make C deferred by DF (a struct of SIZE bytes beginning with a struct
 * xapi_deferral, zeroed, of kind OPS), and return it. */
void *xapi_defer (struct xapi_call *c, const struct xapi_deferral_ops *ops,
                  size_t size);
/* The answer can be made now: tell the waiter (DF's kind calls this). */
void xapi_deferral_ready (struct xapi_deferral *df);
void xapi_deferral_free (struct xapi_deferral *df);

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
extern const struct xapi_class xapi_class_pool;
extern const struct xapi_class xapi_class_host;
extern const struct xapi_class xapi_class_sr;
extern const struct xapi_class xapi_class_vdi;
extern const struct xapi_class xapi_class_vm;
extern const struct xapi_class xapi_class_vbd;
extern const struct xapi_class xapi_class_task;
extern const struct xapi_class xapi_class_network;
extern const struct xapi_class xapi_class_migration;
extern const struct xapi_class xapi_class_event;

/* class-event.c: the face's side of events (the brain's change log is
 * replicator/jobs/events.h): subscriptions, waiting calls, the last
 * records of objects.  Made once the host is open, freed after the
 * HTTP side (no call waits any more) and before the host. */
struct xapi_events *xapi_events_new (struct xapi_daemon *d);
void xapi_events_free (struct xapi_events *e);

/* datamodel.c: the fields of xapi's record of class CLS ("VM"), in
 * xapi's order and ended by { NULL }, or NULL for a class outside it. */
enum xapi_field_type
{
  XAPI_FIELD_STRING, /* and enums */
  XAPI_FIELD_INT,    /* int64: a decimal string */
  XAPI_FIELD_FLOAT,
  XAPI_FIELD_BOOL,
  XAPI_FIELD_DATETIME,
  XAPI_FIELD_REF,
  XAPI_FIELD_SET,
  XAPI_FIELD_MAP,
};
struct xapi_field
{
  const char *name;
  enum xapi_field_type type;
  const char *dflt; /* the datamodel's default as text, or NULL */
};
const struct xapi_field *xapi_datamodel_fields (const char *cls);

/* dispatch.c: the whole record of REF of class CLS: what its get_record
 * gives, with every other field of xapi's datamodel at its default, in
 * the datamodel's order.  NULL after xapi_fail (HANDLE_INVALID). */
xmlrpc_value *xapi_class_record (struct xapi_call *c,
                                 const struct xapi_class *cls,
                                 const char *ref);

/* dispatch.c: run one XML-RPC call; returns the wrapped reply.  LOGIN
 * (or NULL) is the password check already made for it.  A call answered
 * later returns NULL with *DEFERRED set instead (the caller's, to start
 * and free; see struct xapi_deferral), and the main loop serves others
 * meanwhile. */
xmlrpc_value *xapi_dispatch (struct xapi_daemon *d, xmlrpc_env *env,
                             const char *method, xmlrpc_value *params,
                             const struct xapi_login_check *login,
                             struct xapi_deferral **deferred);
/* The wrapped reply of a deferred call, once DF is ready. */
xmlrpc_value *xapi_dispatch_deferred (struct xapi_daemon *d, xmlrpc_env *env,
                                      struct xapi_deferral *df);
/* The classes served, for the event class: the one named NAME (in any
 * letter case), or NULL; all of them, *N of them. */
const struct xapi_class *xapi_class_by_name (const char *name);
const struct xapi_class *const *xapi_classes (size_t *n);

/* Fail the call with CODE and string params, NULL-terminated. */
void xapi_fail (struct xapi_call *c, const char *code,
                ...) G_GNUC_NULL_TERMINATED;
/* Fail with the error_info ERR of the brain (host_err_set), taking it
 * (NULL: INTERNAL_ERROR). */
void xapi_fail_err (struct xapi_call *c, char **err);
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
/* A map of strings from OC (NULL: {}). */
xmlrpc_value *xapi_string_map (struct xapi_call *c, GHashTable *oc);
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
                                struct host_sr **srp);
/* Mark VDI UUID busy with operation OP ("import", "copy", ...) so that no
 * other operation starts on it; false if it already has one (the call
 * then fails with OTHER_OPERATION_IN_PROGRESS).  Release when done. */
bool xapi_vdi_claim (struct xapi_call *c, const char *uuid, const char *op);

/* class-sr.c, for class-vdi.c */
struct host_sr *xapi_sr_by_ref (struct xapi_call *c, const char *ref);

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

/* An XML-RPC struct of strings into OC; false after FIELD_TYPE_ERROR. */
bool xapi_oc_from_xmlrpc (struct xapi_call *c, xmlrpc_value *m,
                          GHashTable *oc);



/* class-task.c: the Value of a task that is over (the ref of what its
 * job made), or NULL after failing C with its error_info. */
xmlrpc_value *xapi_task_outcome (struct xapi_call *c, const char *task);
/* class-task.c: submit job J (jobs_submit); NULL after xapi_fail. */
char *xapi_job_submit (struct xapi_call *c, struct state_job *j,
                       const char *name_label);
/* What a method returns for the task of a job it submitted: the task ref
 * when called as Async.*, else NULL with c->defer set: the call is
 * answered once the task is over (xapi_task_deferral). */
xmlrpc_value *xapi_job_reply (struct xapi_call *c, const char *task);
/* dispatch.c: defer C until TASK is over (jobs_watch); its answer is the
 * task's outcome (xapi_task_outcome). */
void xapi_task_deferral (struct xapi_call *c, const char *task);


/* class-migration.c: the destination side of a migration (the brain's
 * is replicator/jobs/migrate-receive.h).  Class "migration" takes a
 * token, not a session. */
xmlrpc_value *xapi_vm_migrate_receive (struct xapi_call *c,
                                       xmlrpc_value *const *args, int nargs);
xmlrpc_value *xapi_host_migrate_receive (struct xapi_call *c,
                                         xmlrpc_value *const *args, int nargs);

/* class-vm-migrate.c: a migration's source (the brain's is
 * replicator/jobs/migrate.h). */
xmlrpc_value *xapi_vm_migrate (struct xapi_call *c, xmlrpc_value *const *args,
                               int nargs);
xmlrpc_value *xapi_vm_migrate_send (struct xapi_call *c,
                                    xmlrpc_value *const *args, int nargs);
xmlrpc_value *xapi_vm_assert_can_migrate (struct xapi_call *c,
                                          xmlrpc_value *const *args,
                                          int nargs);

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
/* The session of an HTTP request (SESSION from its query or cookie, else
 * HTTP Basic auth), as the disk data handlers take it: 0, or the HTTP
 * status with *TEXT (g_free) and *CODE (the XenAPI error) saying why. */
guint xapi_http_check_session (struct xapi_daemon *d, SoupServerMessage *msg,
                               const char *session, char **text,
                               const char **code);

/* http-backup.c: the backup repositories (--backup-repo) at
 * /backups/NAME/..., for http.c (vdimotion-backup-http(7)); BODY is the
 * request's (taken), or NULL. */
void xapi_http_backup (struct xapi_daemon *d, SoupServerMessage *msg,
                       const char *path, GHashTable *query, GByteArray *body);

#endif /* XAPI_H */
