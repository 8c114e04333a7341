/* vdimotiond's durable state in SQLite (state.h).
 *
 * Every write is one statement, so each is atomic on its own; the callers
 * order their writes so that any prefix of them is a state a restarted
 * daemon understands (the kinds of jobs.h say how).  Statements are built with
 * run(), which binds its arguments from a type string ('s' text or NULL,
 * 'i' int64, 'd' double), so no value is ever spliced into SQL text.
 * Table and column names in state_list are checked against a fixed list.
 */

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include <sqlite3.h>

#include "events.h"
#include "host.h"
#include "sqlite-bind.h"
#include "state.h"

struct state
{
  sqlite3 *db;
  struct events *events; /* where record writes are logged, or NULL */
};

static const char schema[]
    = "CREATE TABLE IF NOT EXISTS sessions ("
      "  ref TEXT PRIMARY KEY, user TEXT NOT NULL, created INTEGER);"
      "CREATE TABLE IF NOT EXISTS vms ("
      "  uuid TEXT PRIMARY KEY, name_label TEXT, name_description TEXT,"
      "  power_state TEXT NOT NULL, created INTEGER, other_config TEXT);"
      "CREATE TABLE IF NOT EXISTS vbds ("
      "  uuid TEXT PRIMARY KEY, vm TEXT NOT NULL, vdi TEXT NOT NULL,"
      "  userdevice TEXT, mode TEXT, nbd_socket TEXT, control_socket TEXT,"
      "  pid INTEGER, target_socket TEXT, target_pid INTEGER);"
      /* What a task a client made (task.create) has besides the tasks
       * row, apart from it so that a state dir stays readable by the
       * daemon of the version before. */
      "CREATE TABLE IF NOT EXISTS client_tasks ("
      "  task TEXT PRIMARY KEY, name_description TEXT, other_config TEXT);"
      "CREATE TABLE IF NOT EXISTS tasks ("
      "  uuid TEXT PRIMARY KEY, name_label TEXT, status TEXT NOT NULL,"
      "  progress REAL, result TEXT, error_info TEXT, created INTEGER,"
      "  finished INTEGER);"
      /* A job's typed result, apart from the tasks table, so that a
       * state dir stays readable by the daemon of the version before. */
      "CREATE TABLE IF NOT EXISTS task_results ("
      "  task TEXT PRIMARY KEY, result_uuid TEXT);"
      /* A job's text result (a report), apart for the same reason. */
      "CREATE TABLE IF NOT EXISTS task_result_texts ("
      "  task TEXT PRIMARY KEY, text TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS jobs ("
      "  task TEXT PRIMARY KEY, kind TEXT NOT NULL, vdi TEXT NOT NULL,"
      "  dst_sr TEXT NOT NULL, dst_vdi TEXT, format TEXT, phase TEXT,"
      "  vbd TEXT, params TEXT);"
      "CREATE TABLE IF NOT EXISTS migrations ("
      "  uuid TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL,"
      "  expires INTEGER, sr TEXT, state TEXT NOT NULL, last_seen INTEGER);"
      "CREATE TABLE IF NOT EXISTS mdisks ("
      "  uuid TEXT PRIMARY KEY, migration TEXT NOT NULL, userdevice TEXT,"
      "  socket TEXT, control TEXT, pid INTEGER, fwd_pidfile TEXT,"
      "  fwd_pid INTEGER, fwd_port INTEGER);"
      /* Host-wide settings (state_setting_get). */
      "CREATE TABLE IF NOT EXISTS settings ("
      "  key TEXT PRIMARY KEY, value TEXT NOT NULL);";

struct state *
state_open (const char *state_dir, GError **error)
{
  g_autofree char *path = g_build_filename (state_dir, "state.db", NULL);
  struct state *st = g_new0 (struct state, 1);
  char *msg = NULL;

  if (sqlite3_open_v2 (path, &st->db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                           | SQLITE_OPEN_FULLMUTEX,
                       NULL)
          != SQLITE_OK
      || sqlite3_busy_timeout (st->db, 10000) != SQLITE_OK
      || sqlite3_exec (st->db,
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                       NULL, NULL, &msg)
             != SQLITE_OK
      || sqlite3_exec (st->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s: %s", path,
                 msg ? msg : sqlite3_errmsg (st->db));
    sqlite3_free (msg);
    state_close (st);
    return NULL;
  }
  /* A state dir from before jobs had params: add the column (fails
   * harmlessly when it is there). */
  sqlite3_exec (st->db, "ALTER TABLE jobs ADD COLUMN params TEXT", NULL, NULL,
                NULL);
  sqlite3_exec (st->db, "ALTER TABLE vms ADD COLUMN other_config TEXT", NULL,
                NULL, NULL);
  return st;
}

void
state_set_events (struct state *st, struct events *events)
{
  st->events = events;
}

void
state_close (struct state *st)
{
  if (st == NULL)
    return;
  sqlite3_close (st->db);
  g_free (st);
}

/* Prepare SQL and bind the arguments that TYPES describes. */
static sqlite3_stmt *
prepare (struct state *st, const char *sql, const char *types, va_list ap)
{
  sqlite3_stmt *s = NULL;

  if (sqlite3_prepare_v2 (st->db, sql, -1, &s, NULL) != SQLITE_OK) {
    g_warning ("state: %s: %s", sql, sqlite3_errmsg (st->db));
    return NULL;
  }
  if (sqlite_bindv (s, types, ap) != SQLITE_OK) {
    g_warning ("state: %s: %s", sql, sqlite3_errmsg (st->db));
    sqlite3_finalize (s);
    return NULL;
  }
  return s;
}

/* Run a statement that returns no rows; *CHANGES (if CHANGES) is the
 * number of rows it changed.  -1 on failure (logged). */
static int
runv (struct state *st, int *changes, const char *sql, const char *types,
      va_list ap)
{
  /* The connection's own (recursive) mutex: the count of changes is the
   * connection's, and another thread's statement must not come between
   * the step and reading it. */
  sqlite3_mutex *m = sqlite3_db_mutex (st->db);
  sqlite3_stmt *s;
  int r;

  s = prepare (st, sql, types, ap);
  if (s == NULL)
    return -1;
  sqlite3_mutex_enter (m);
  r = sqlite3_step (s);
  if (changes)
    *changes = r == SQLITE_DONE ? sqlite3_changes (st->db) : 0;
  sqlite3_mutex_leave (m);
  if (r != SQLITE_DONE)
    g_warning ("state: %s: %s", sql, sqlite3_errmsg (st->db));
  sqlite3_finalize (s);
  return r == SQLITE_DONE ? 0 : -1;
}

static int
run (struct state *st, const char *sql, const char *types, ...)
{
  va_list ap;
  int r;

  va_start (ap, types);
  r = runv (st, NULL, sql, types, ap);
  va_end (ap);
  return r;
}

/* Log a change of the record of object UUID of class CLS (events.h). */
static void
note (struct state *st, const char *cls, enum event_op op, const char *uuid)
{
  if (st->events && uuid)
    events_add (st->events, cls, op, uuid);
}

/* A write of object UUID's record: run, and logged if it changed a
 * row. */
static int
write_record (struct state *st, const char *cls, enum event_op op,
              const char *uuid, const char *sql, const char *types, ...)
{
  va_list ap;
  int r, changes;

  va_start (ap, types);
  r = runv (st, &changes, sql, types, ap);
  va_end (ap);
  if (r == 0 && changes > 0)
    note (st, cls, op, uuid);
  return r;
}

/* Run a query expected to return at most one row; NULL if none (or on
 * failure).  The caller reads the columns and finalizes. */
static sqlite3_stmt *
query_row (struct state *st, const char *sql, const char *types, ...)
{
  va_list ap;
  sqlite3_stmt *s;

  va_start (ap, types);
  s = prepare (st, sql, types, ap);
  va_end (ap);
  if (s == NULL)
    return NULL;
  if (sqlite3_step (s) != SQLITE_ROW) {
    sqlite3_finalize (s);
    return NULL;
  }
  return s;
}

static char *
col_text (sqlite3_stmt *s, int i)
{
  const unsigned char *t = sqlite3_column_text (s, i);

  return t ? g_strdup ((const char *)t) : NULL;
}

/* Sessions. */

/* A session is kept by its ref, "OpaqueRef:<uuid>"; it is logged by
 * its uuid as every object is. */
static const char *
session_uuid (const char *ref)
{
  return g_str_has_prefix (ref, HOST_REF_PREFIX)
             ? ref + strlen (HOST_REF_PREFIX)
             : ref;
}

int
state_session_add (struct state *st, const char *ref, const char *user)
{
  return write_record (st, EVENT_CLASS_SESSION, EVENT_ADD, session_uuid (ref),
                       "INSERT INTO sessions VALUES (?, ?, ?)", "ssi", ref,
                       user, (int64_t)(g_get_real_time () / G_USEC_PER_SEC));
}

int
state_session_remove (struct state *st, const char *ref)
{
  return write_record (st, EVENT_CLASS_SESSION, EVENT_DEL, session_uuid (ref),
                       "DELETE FROM sessions WHERE ref = ?", "s", ref);
}

void
state_session_foreach (struct state *st,
                       void (*fn) (const char *ref, const char *user,
                                   void *opaque),
                       void *opaque)
{
  sqlite3_stmt *s = NULL;

  if (sqlite3_prepare_v2 (st->db,
                          "SELECT ref, user FROM sessions ORDER BY rowid", -1,
                          &s, NULL)
      != SQLITE_OK)
    return;
  while (sqlite3_step (s) == SQLITE_ROW)
    fn ((const char *)sqlite3_column_text (s, 0),
        (const char *)sqlite3_column_text (s, 1), opaque);
  sqlite3_finalize (s);
}

/* VMs. */

int
state_vm_add (struct state *st, const struct state_vm *vm)
{
  return write_record (st, EVENT_CLASS_VM, EVENT_ADD, vm->uuid,
                       "INSERT INTO vms VALUES (?, ?, ?, ?, ?, ?)", "ssssis",
                       vm->uuid, vm->name_label, vm->name_description, vm->power_state,
              vm->created, vm->other_config);
}

struct state_vm *
state_vm_get (struct state *st, const char *uuid)
{
  sqlite3_stmt *s = query_row (st,
                               "SELECT uuid, name_label, name_description, "
                               "power_state, created, other_config "
                               "FROM vms WHERE uuid = ?",
                               "s", uuid);
  struct state_vm *vm;

  if (s == NULL)
    return NULL;
  vm = g_new0 (struct state_vm, 1);
  vm->uuid = col_text (s, 0);
  vm->name_label = col_text (s, 1);
  vm->name_description = col_text (s, 2);
  vm->power_state = col_text (s, 3);
  vm->created = sqlite3_column_int64 (s, 4);
  vm->other_config = col_text (s, 5);
  sqlite3_finalize (s);
  return vm;
}

int
state_vm_set_power_state (struct state *st, const char *uuid,
                          const char *power_state)
{
  return write_record (st, EVENT_CLASS_VM, EVENT_MOD, uuid,
                       "UPDATE vms SET power_state = ? WHERE uuid = ?", "ss",
                       power_state, uuid);
}

int
state_vm_set_other_config (struct state *st, const char *uuid,
                           const char *other_config)
{
  return write_record (st, EVENT_CLASS_VM, EVENT_MOD, uuid,
                       "UPDATE vms SET other_config = ? WHERE uuid = ?", "ss",
                       other_config, uuid);
}

int
state_vm_remove (struct state *st, const char *uuid)
{
  return write_record (st, EVENT_CLASS_VM, EVENT_DEL, uuid,
                       "DELETE FROM vms WHERE uuid = ?", "s", uuid);
}

void
state_vm_free (struct state_vm *vm)
{
  if (vm == NULL)
    return;
  g_free (vm->uuid);
  g_free (vm->name_label);
  g_free (vm->name_description);
  g_free (vm->power_state);
  g_free (vm->other_config);
  g_free (vm);
}

/* VBDs. */

/* A VBD is in the records of its VM and its VDI too (their VBDs). */
static void
note_vbd_ends (struct state *st, const char *vm, const char *vdi)
{
  note (st, EVENT_CLASS_VM, EVENT_MOD, vm);
  note (st, EVENT_CLASS_VDI, EVENT_MOD, vdi);
}

int
state_vbd_add (struct state *st, const struct state_vbd *b)
{
  if (write_record (st, EVENT_CLASS_VBD, EVENT_ADD, b->uuid,
                    "INSERT INTO vbds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    "sssssssisi", b->uuid, b->vm, b->vdi, b->userdevice,
                    b->mode, b->nbd_socket, b->control_socket,
                    (int64_t)b->pid, b->target_socket, (int64_t)b->target_pid)
      == -1)
    return -1;
  note_vbd_ends (st, b->vm, b->vdi);
  return 0;
}

struct state_vbd *
state_vbd_get (struct state *st, const char *uuid)
{
  sqlite3_stmt *s = query_row (
      st,
      "SELECT uuid, vm, vdi, userdevice, mode, nbd_socket, control_socket, "
      "pid, target_socket, target_pid FROM vbds WHERE uuid = ?",
      "s", uuid);
  struct state_vbd *b;

  if (s == NULL)
    return NULL;
  b = g_new0 (struct state_vbd, 1);
  b->uuid = col_text (s, 0);
  b->vm = col_text (s, 1);
  b->vdi = col_text (s, 2);
  b->userdevice = col_text (s, 3);
  b->mode = col_text (s, 4);
  b->nbd_socket = col_text (s, 5);
  b->control_socket = col_text (s, 6);
  b->pid = sqlite3_column_int64 (s, 7);
  b->target_socket = col_text (s, 8);
  b->target_pid = sqlite3_column_int64 (s, 9);
  sqlite3_finalize (s);
  return b;
}

int
state_vbd_update (struct state *st, const struct state_vbd *b)
{
  /* The ends it had, for the log. */
  g_autoptr (state_vbd) old = st->events ? state_vbd_get (st, b->uuid) : NULL;

  if (write_record (st, EVENT_CLASS_VBD, EVENT_MOD, b->uuid,
                    "UPDATE vbds SET vm = ?, vdi = ?, userdevice = ?, "
                    "mode = ?, nbd_socket = ?, control_socket = ?, pid = ?, "
                    "target_socket = ?, target_pid = ? WHERE uuid = ?",
                    "ssssssisis", b->vm, b->vdi, b->userdevice, b->mode,
                    b->nbd_socket, b->control_socket, (int64_t)b->pid,
                    b->target_socket, (int64_t)b->target_pid, b->uuid)
      == -1)
    return -1;
  if (old && (g_strcmp0 (old->vm, b->vm) != 0
              || g_strcmp0 (old->vdi, b->vdi) != 0)) {
    note_vbd_ends (st, old->vm, old->vdi);
    note_vbd_ends (st, b->vm, b->vdi);
  }
  return 0;
}

int
state_vbd_remove (struct state *st, const char *uuid)
{
  g_autoptr (state_vbd) old = st->events ? state_vbd_get (st, uuid) : NULL;

  if (write_record (st, EVENT_CLASS_VBD, EVENT_DEL, uuid,
                    "DELETE FROM vbds WHERE uuid = ?", "s", uuid)
      == -1)
    return -1;
  if (old)
    note_vbd_ends (st, old->vm, old->vdi);
  return 0;
}

void
state_vbd_free (struct state_vbd *b)
{
  if (b == NULL)
    return;
  g_free (b->uuid);
  g_free (b->vm);
  g_free (b->vdi);
  g_free (b->userdevice);
  g_free (b->mode);
  g_free (b->nbd_socket);
  g_free (b->control_socket);
  g_free (b->target_socket);
  g_free (b);
}

/* Tasks.  error_info is stored as its strings joined by newlines (the
 * strings themselves never hold one: they are codes and messages we
 * make, with newlines replaced). */

static char *
join_error_info (const char *const *ei)
{
  g_autoptr (GString) s = g_string_new (NULL);

  for (size_t i = 0; ei && ei[i]; i++) {
    if (i)
      g_string_append_c (s, '\n');
    for (const char *p = ei[i]; *p; p++)
      g_string_append_c (s, *p == '\n' ? ' ' : *p);
  }
  return ei ? g_string_free (g_steal_pointer (&s), FALSE) : NULL;
}

int
state_task_add (struct state *st, const struct state_task *t)
{
  g_autofree char *ei = join_error_info ((const char *const *)t->error_info);

  return write_record (st, EVENT_CLASS_TASK, EVENT_ADD, t->uuid,
              "INSERT INTO tasks (uuid, name_label, status, progress, result,"
              " error_info, created, finished)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              "sssdssii", t->uuid, t->name_label, t->status, t->progress,
              t->result, ei, t->created, t->finished);
}

struct state_task *
state_task_get (struct state *st, const char *uuid)
{
  sqlite3_stmt *s = query_row (
      st,
      "SELECT uuid, name_label, status, progress, result, error_info, "
      "created, finished, (SELECT result_uuid FROM task_results "
      "WHERE task = tasks.uuid), (SELECT text FROM task_result_texts "
      "WHERE task = tasks.uuid) FROM tasks WHERE uuid = ?",
      "s", uuid);
  struct state_task *t;
  const unsigned char *ei;

  if (s == NULL)
    return NULL;
  t = g_new0 (struct state_task, 1);
  t->uuid = col_text (s, 0);
  t->name_label = col_text (s, 1);
  t->status = col_text (s, 2);
  t->progress = sqlite3_column_double (s, 3);
  t->result = col_text (s, 4);
  ei = sqlite3_column_text (s, 5);
  t->error_info = ei && *ei ? g_strsplit ((const char *)ei, "\n", -1) : NULL;
  t->created = sqlite3_column_int64 (s, 6);
  t->finished = sqlite3_column_int64 (s, 7);
  t->result_uuid = col_text (s, 8);
  t->result_text = col_text (s, 9);
  sqlite3_finalize (s);
  return t;
}

int
state_task_set_progress (struct state *st, const char *uuid, double progress)
{
  return write_record (st, EVENT_CLASS_TASK, EVENT_MOD, uuid,
                       "UPDATE tasks SET progress = ? WHERE uuid = ?", "ds",
                       progress, uuid);
}

int
state_task_set_status (struct state *st, const char *uuid, const char *status)
{
  return write_record (st, EVENT_CLASS_TASK, EVENT_MOD, uuid,
              "UPDATE tasks SET status = ? WHERE uuid = ? "
              "AND status IN ('pending', 'cancelling')",
              "ss", status, uuid);
}

int
state_task_finish (struct state *st, const char *uuid, const char *status,
                   const char *result_uuid, const char *const *error_info)
{
  g_autofree char *ei = join_error_info (error_info);

  /* The result first: a crash between the two leaves the task running,
   * and the job that ends it again replaces the result. */
  if (result_uuid
      && run (st, "INSERT OR REPLACE INTO task_results VALUES (?, ?)", "ss",
              uuid, result_uuid)
             == -1)
    return -1;
  return write_record (st, EVENT_CLASS_TASK, EVENT_MOD, uuid,
              "UPDATE tasks SET status = ?, result = '', error_info = ?, "
              "progress = CASE WHEN ? = 'success' THEN 1.0 ELSE progress END, "
              "finished = ? WHERE uuid = ?",
              "sssis", status, ei, status,
              (int64_t)(g_get_real_time () / G_USEC_PER_SEC), uuid);
}

int
state_task_set_result_text (struct state *st, const char *uuid,
                            const char *text)
{
  return run (st, "INSERT OR REPLACE INTO task_result_texts VALUES (?, ?)",
              "ss", uuid, text);
}

int
state_task_remove (struct state *st, const char *uuid)
{
  if (write_record (st, EVENT_CLASS_TASK, EVENT_DEL, uuid,
                    "DELETE FROM tasks WHERE uuid = ?", "s", uuid)
      == -1)
    return -1;
  /* A result row left behind names a task that is gone: harmless. */
  if (run (st, "DELETE FROM task_result_texts WHERE task = ?", "s", uuid)
      == -1)
    return -1;
  return run (st, "DELETE FROM task_results WHERE task = ?", "s", uuid);
}

void
state_task_free (struct state_task *t)
{
  if (t == NULL)
    return;
  g_free (t->uuid);
  g_free (t->name_label);
  g_free (t->status);
  g_free (t->result);
  g_free (t->result_uuid);
  g_free (t->result_text);
  g_strfreev (t->error_info);
  g_free (t);
}

/* Jobs. */

int
state_job_add (struct state *st, const struct state_job *j)
{
  return run (st, "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
              "sssssssss", j->task, j->kind, j->vdi, j->dst_sr, j->dst_vdi,
              j->format, j->phase, j->vbd, j->params);
}

struct state_job *
state_job_get (struct state *st, const char *task)
{
  sqlite3_stmt *s = query_row (st,
                               "SELECT task, kind, vdi, dst_sr, dst_vdi, "
                               "format, phase, vbd, params FROM jobs "
                               "WHERE task = ?",
                               "s", task);
  struct state_job *j;

  if (s == NULL)
    return NULL;
  j = g_new0 (struct state_job, 1);
  j->task = col_text (s, 0);
  j->kind = col_text (s, 1);
  j->vdi = col_text (s, 2);
  j->dst_sr = col_text (s, 3);
  j->dst_vdi = col_text (s, 4);
  j->format = col_text (s, 5);
  j->phase = col_text (s, 6);
  j->vbd = col_text (s, 7);
  j->params = col_text (s, 8);
  sqlite3_finalize (s);
  return j;
}

int
state_job_update (struct state *st, const struct state_job *j)
{
  return run (st,
              "UPDATE jobs SET kind = ?, vdi = ?, dst_sr = ?, dst_vdi = ?, "
              "format = ?, phase = ?, vbd = ?, params = ? WHERE task = ?",
              "sssssssss", j->kind, j->vdi, j->dst_sr, j->dst_vdi, j->format,
              j->phase, j->vbd, j->params, j->task);
}

int
state_job_remove (struct state *st, const char *task)
{
  return run (st, "DELETE FROM jobs WHERE task = ?", "s", task);
}

void
state_job_free (struct state_job *j)
{
  if (j == NULL)
    return;
  g_free (j->task);
  g_free (j->kind);
  g_free (j->vdi);
  g_free (j->dst_sr);
  g_free (j->dst_vdi);
  g_free (j->format);
  g_free (j->phase);
  g_free (j->vbd);
  g_free (j->params);
  g_free (j);
}

/* Tasks a client made. */

int
state_client_task_add (struct state *st, const struct state_client_task *ct)
{
  return run (st, "INSERT INTO client_tasks VALUES (?, ?, ?)", "sss",
              ct->task, ct->name_description, ct->other_config);
}

struct state_client_task *
state_client_task_get (struct state *st, const char *task)
{
  sqlite3_stmt *s = query_row (st,
                               "SELECT task, name_description, other_config "
                               "FROM client_tasks WHERE task = ?",
                               "s", task);
  struct state_client_task *ct;

  if (s == NULL)
    return NULL;
  ct = g_new0 (struct state_client_task, 1);
  ct->task = col_text (s, 0);
  ct->name_description = col_text (s, 1);
  ct->other_config = col_text (s, 2);
  sqlite3_finalize (s);
  return ct;
}

int
state_client_task_set_other_config (struct state *st, const char *task,
                                    const char *other_config)
{
  return run (st, "UPDATE client_tasks SET other_config = ? WHERE task = ?",
              "ss", other_config, task);
}

int
state_client_task_set (struct state *st, const char *task, const char *status,
                       const char *result, bool set_error_info,
                       const char *const *error_info)
{
  g_autofree char *ei = join_error_info (error_info);

  return run (st,
              "UPDATE tasks SET status = COALESCE (?, status), "
              "result = COALESCE (?, result), "
              "error_info = CASE WHEN ? THEN ? ELSE error_info END "
              "WHERE uuid = ?",
              "ssiss", status, result, (int64_t)set_error_info, ei, task);
}

int
state_client_task_remove (struct state *st, const char *task)
{
  return run (st, "DELETE FROM client_tasks WHERE task = ?", "s", task);
}

void
state_client_task_free (struct state_client_task *ct)
{
  if (ct == NULL)
    return;
  g_free (ct->task);
  g_free (ct->name_description);
  g_free (ct->other_config);
  g_free (ct);
}

/* Migrations received. */

int
state_migration_add (struct state *st, const struct state_migration *m)
{
  return run (st, "INSERT INTO migrations VALUES (?, ?, ?, ?, ?, ?)", "ssissi",
              m->uuid, m->secret_sha256, m->expires, m->sr, m->state,
              m->last_seen);
}

struct state_migration *
state_migration_get (struct state *st, const char *uuid)
{
  sqlite3_stmt *s = query_row (st,
                               "SELECT uuid, secret_sha256, expires, sr, "
                               "state, last_seen FROM migrations "
                               "WHERE uuid = ?",
                               "s", uuid);
  struct state_migration *m;

  if (s == NULL)
    return NULL;
  m = g_new0 (struct state_migration, 1);
  m->uuid = col_text (s, 0);
  m->secret_sha256 = col_text (s, 1);
  m->expires = sqlite3_column_int64 (s, 2);
  m->sr = col_text (s, 3);
  m->state = col_text (s, 4);
  m->last_seen = sqlite3_column_int64 (s, 5);
  sqlite3_finalize (s);
  return m;
}

int
state_migration_update (struct state *st, const struct state_migration *m)
{
  return run (st,
              "UPDATE migrations SET secret_sha256 = ?, expires = ?, sr = ?, "
              "state = ?, last_seen = ? WHERE uuid = ?",
              "sissis", m->secret_sha256, m->expires, m->sr, m->state,
              m->last_seen, m->uuid);
}

int
state_migration_remove (struct state *st, const char *uuid)
{
  return run (st, "DELETE FROM migrations WHERE uuid = ?", "s", uuid);
}

void
state_migration_free (struct state_migration *m)
{
  if (m == NULL)
    return;
  g_free (m->uuid);
  g_free (m->secret_sha256);
  g_free (m->sr);
  g_free (m->state);
  g_free (m);
}

int
state_mdisk_add (struct state *st, const struct state_mdisk *md)
{
  return run (st, "INSERT INTO mdisks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
              "sssssisii", md->uuid, md->migration, md->userdevice, md->socket,
              md->control, (int64_t)md->pid, md->fwd_pidfile,
              (int64_t)md->fwd_pid, md->fwd_port);
}

struct state_mdisk *
state_mdisk_get (struct state *st, const char *uuid)
{
  sqlite3_stmt *s
      = query_row (st,
                   "SELECT uuid, migration, userdevice, socket, control, pid, "
                   "fwd_pidfile, fwd_pid, fwd_port FROM mdisks WHERE uuid = ?",
                   "s", uuid);
  struct state_mdisk *md;

  if (s == NULL)
    return NULL;
  md = g_new0 (struct state_mdisk, 1);
  md->uuid = col_text (s, 0);
  md->migration = col_text (s, 1);
  md->userdevice = col_text (s, 2);
  md->socket = col_text (s, 3);
  md->control = col_text (s, 4);
  md->pid = sqlite3_column_int64 (s, 5);
  md->fwd_pidfile = col_text (s, 6);
  md->fwd_pid = sqlite3_column_int64 (s, 7);
  md->fwd_port = sqlite3_column_int64 (s, 8);
  sqlite3_finalize (s);
  return md;
}

int
state_mdisk_remove (struct state *st, const char *uuid)
{
  return run (st, "DELETE FROM mdisks WHERE uuid = ?", "s", uuid);
}

void
state_mdisk_free (struct state_mdisk *md)
{
  if (md == NULL)
    return;
  g_free (md->uuid);
  g_free (md->migration);
  g_free (md->userdevice);
  g_free (md->socket);
  g_free (md->control);
  g_free (md->fwd_pidfile);
  g_free (md);
}

/* Settings. */

char *
state_setting_get (struct state *st, const char *key)
{
  sqlite3_stmt *s
      = query_row (st, "SELECT value FROM settings WHERE key = ?", "s", key);
  char *value;

  if (s == NULL)
    return NULL;
  value = col_text (s, 0);
  sqlite3_finalize (s);
  return value;
}

int
state_setting_set (struct state *st, const char *key, const char *value)
{
  if (value == NULL)
    return run (st, "DELETE FROM settings WHERE key = ?", "s", key);
  return run (st, "INSERT OR REPLACE INTO settings VALUES (?, ?)", "ss", key,
              value);
}

int64_t
state_vm_number (struct state *st, const char *uuid)
{
  sqlite3_stmt *s
      = query_row (st, "SELECT rowid FROM vms WHERE uuid = ?", "s", uuid);
  int64_t n;

  if (s == NULL)
    return -1;
  n = sqlite3_column_int64 (s, 0);
  sqlite3_finalize (s);
  return n;
}

/* Listing. */

static const char *
key_column (const char *table)
{
  static const char *const tables[][2] = {
    { "vms", "uuid" },  { "vbds", "uuid" },       { "tasks", "uuid" },
    { "jobs", "task" }, { "migrations", "uuid" }, { "mdisks", "uuid" },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (tables); i++)
    if (strcmp (table, tables[i][0]) == 0)
      return tables[i][1];
  return NULL;
}

static bool
column_ok (const char *column)
{
  static const char *const cols[]
      = { "vm", "vdi", "vbd", "status", "migration", "state" };

  for (size_t i = 0; i < G_N_ELEMENTS (cols); i++)
    if (strcmp (column, cols[i]) == 0)
      return true;
  return false;
}

GPtrArray *
state_list (struct state *st, const char *table, const char *column,
            const char *value)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  const char *key = key_column (table);
  g_autofree char *sql = NULL;
  sqlite3_stmt *s = NULL;

  g_return_val_if_fail (key != NULL, out);
  g_return_val_if_fail (column == NULL || column_ok (column), out);
  if (column)
    sql = g_strdup_printf ("SELECT %s FROM %s WHERE %s = ? ORDER BY rowid",
                           key, table, column);
  else
    sql = g_strdup_printf ("SELECT %s FROM %s ORDER BY rowid", key, table);
  if (sqlite3_prepare_v2 (st->db, sql, -1, &s, NULL) != SQLITE_OK) {
    g_warning ("state: %s: %s", sql, sqlite3_errmsg (st->db));
    return out;
  }
  if (column)
    sqlite3_bind_text (s, 1, value, -1, SQLITE_TRANSIENT);
  while (sqlite3_step (s) == SQLITE_ROW)
    g_ptr_array_add (out, col_text (s, 0));
  sqlite3_finalize (s);
  return out;
}
