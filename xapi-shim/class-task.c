/* The task class: the progress and outcome of long operations.
 *
 * Tasks are durable (state.h), so a client polling a task keeps seeing it
 * across a restart of the daemon.  A task whose job runs reports its
 * progress from memory (jobs_get_progress); the database holds the last figure
 * written, every second or so.  As in xapi, result is XML-RPC text:
 * "<value>OpaqueRef:...</value>" for a ref, "<value>TEXT</value>" for a
 * job's text result (an evacuation's report).  A running job's task
 * shows the job's other_config (job_set_other_config: a report so far).
 *
 * A client makes tasks of its own with task.create, as xapi's clients do
 * before they move disk data over HTTP: xapi's handlers take the task as
 * task_id= and report into it (http-vdi.c, through xapi_task_drive_*).
 * Such a task has a description and an other_config (state.h,
 * client_tasks), which the client may set, as it may its status,
 * progress, result and error_info (task.set_*, as xapi lets it).  A
 * client's task is ended once, by the first transfer that finishes (or
 * the client itself); the transfers after that leave it as it is, as
 * xapi's do.  task.destroy of a client's task that a transfer is still
 * reporting into removes it when the transfer ends (xapi's
 * current_operations "destroy"); one nothing reports into is removed at
 * once, since nothing would ever end it.  The transfers reporting into a
 * task are counted in memory (d->task_drives): after a restart none
 * does. */

#include <math.h>
#include <string.h>

#include <xmlrpc-c/base.h>

#include "rpc.h"
#include "xapi.h"

static bool
task_list (struct xapi_call *c, GPtrArray *refs)
{
  g_autoptr (GPtrArray) uuids = state_list (c->d->host->state, "tasks", NULL, NULL);

  for (guint i = 0; i < uuids->len; i++)
    g_ptr_array_add (
        refs, g_strconcat (XAPI_REF_PREFIX, (char *)uuids->pdata[i], NULL));
  return true;
}

static struct state_task *
task_by_ref (struct xapi_call *c, const char *ref)
{
  const char *uuid = xapi_ref_uuid (ref);
  struct state_task *t = uuid ? state_task_get (c->d->host->state, uuid) : NULL;

  if (t == NULL)
    xapi_fail (c, "HANDLE_INVALID", "task", ref ? ref : "", NULL);
  return t;
}

/* The HTTP transfers reporting into a client's task (d->task_drives,
 * by task uuid). */
struct task_drives
{
  unsigned n;   /* transfers */
  bool destroy; /* task.destroy came while they ran: remove it after */
  bool cancel;  /* task.cancel came: they stop */
};

static struct task_drives *
task_drives (struct xapi_daemon *d, const char *uuid)
{
  return d->task_drives ? g_hash_table_lookup (d->task_drives, uuid) : NULL;
}

static bool
task_is_pending (const struct state_task *t)
{
  return strcmp (t->status, "pending") == 0
         || strcmp (t->status, "cancelling") == 0;
}

/* What a client's task shows besides what every task does. */
static void
client_task_record (struct xapi_call *c, xmlrpc_value *r,
                    const struct state_task *t)
{
  g_autoptr (state_client_task) ct
      = state_client_task_get (c->d->host->state, t->uuid);
  g_autoptr (GHashTable) oc = NULL;
  struct task_drives *td = task_drives (c->d, t->uuid);
  xmlrpc_value *ops, *st;
  GHashTableIter it;
  gpointer k, v;

  if (ct == NULL)
    return;
  xapi_set (c, r, "name_description",
            xapi_string (c, ct->name_description ? ct->name_description : ""));
  oc = host_oc_parse (ct->other_config);
  st = xmlrpc_struct_new (c->env);
  g_hash_table_iter_init (&it, oc);
  while (g_hash_table_iter_next (&it, &k, &v))
    xapi_set (c, st, k, xapi_string (c, v));
  xapi_set (c, r, "other_config", st);
  /* As xapi's task.create makes it: no operations, type "<none/>". */
  xapi_set (c, r, "allowed_operations", xapi_empty_array (c));
  ops = xmlrpc_struct_new (c->env);
  if (td && td->destroy && task_is_pending (t))
    xapi_set (c, ops, "task", xapi_string (c, "destroy"));
  xapi_set (c, r, "current_operations", ops);
  xapi_set (c, r, "type", xapi_string (c, "<none/>"));
}

/* S as a string XenAPI can send (xapi_rpc_clean_text). */
static xmlrpc_value *
clean_string (struct xapi_call *c, const char *s)
{
  g_autofree char *t = xapi_rpc_clean_text (s);

  return xapi_string (c, t);
}

static xmlrpc_value *
task_record (struct xapi_call *c, const char *ref)
{
  g_autoptr (state_task) t = task_by_ref (c, ref);
  xmlrpc_value *r, *ops, *ei;
  double progress;
  bool pending;

  if (t == NULL)
    return NULL;
  pending = strcmp (t->status, "pending") == 0;
  progress = t->progress;
  /* A job's progress is in memory while it runs; once over, the record's
   * (1.0 after a success) is the one. */
  if (pending || strcmp (t->status, "cancelling") == 0)
    jobs_get_progress (c->d->host->jobs, t->uuid, &progress);
  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, t->uuid));
  xapi_set (c, r, "name_label", xapi_string (c, t->name_label));
  xapi_set (c, r, "name_description", xapi_string (c, ""));
  ops = xmlrpc_array_new (c->env);
  if (pending)
    xapi_append (c, ops, xapi_string (c, "cancel"));
  xapi_set (c, r, "allowed_operations", ops);
  xapi_set (c, r, "current_operations", xapi_empty_struct (c));
  xapi_set (c, r, "created", xmlrpc_datetime_new_sec (c->env, t->created));
  xapi_set (c, r, "finished", xmlrpc_datetime_new_sec (c->env, t->finished));
  xapi_set (c, r, "status", xapi_string (c, t->status));
  xapi_set (c, r, "resident_on", xapi_ref (c, c->d->host->uuid));
  xapi_set (c, r, "progress", xmlrpc_double_new (c->env, progress));
  xapi_set (c, r, "type", xapi_string (c, ""));
  if (t->result_uuid) {
    /* A job's result: the ref of what it made, as xapi writes it. */
    g_autofree char *text = g_strdup_printf (
        "<value>" XAPI_REF_PREFIX "%s</value>", t->result_uuid);

    xapi_set (c, r, "result", xapi_string (c, text));
  }
  else if (t->result_text) {
    /* A job's text result (a report): a string, as xapi writes one. */
    g_autofree char *esc = g_markup_escape_text (t->result_text, -1);
    g_autofree char *text = g_strconcat ("<value>", esc, "</value>", NULL);

    xapi_set (c, r, "result", clean_string (c, text));
  }
  else
    xapi_set (c, r, "result", clean_string (c, t->result));
  ei = xmlrpc_array_new (c->env);
  /* Clean as a Failure's parameters are: a message may quote what a
   * client sent (a query's bytes) or a file's name, and one record that
   * cannot be sent must not break task.get_all_records for everyone. */
  for (size_t i = 0; t->error_info && t->error_info[i]; i++)
    xapi_append (c, ei, clean_string (c, t->error_info[i]));
  xapi_set (c, r, "error_info", ei);
  {
    /* A running job's own (a report so far), else {}. */
    g_autoptr (GHashTable) joc
        = jobs_get_other_config (c->d->host->jobs, t->uuid);

    xapi_set (c, r, "other_config", xapi_string_map (c, joc));
  }
  xapi_set (c, r, "subtask_of", xapi_string (c, XAPI_NULL_REF));
  xapi_set (c, r, "subtasks", xapi_empty_array (c));
  xapi_set (c, r, "backtrace", xapi_string (c, "()"));
  client_task_record (c, r, t);
  return r;
}

char *
xapi_task_done (struct xapi_daemon *d, const char *name_label,
                const char *result, const char *const *error_info)
{
  int64_t now = g_get_real_time () / G_USEC_PER_SEC;
  struct state_task t = {
    .uuid = g_uuid_string_random (),
    .name_label = (char *)name_label,
    .status = (char *)(error_info ? "failure" : "success"),
    .progress = 1.0,
    .result = (char *)(result ? result : ""),
    .error_info = (char **)error_info,
    .created = now,
    .finished = now,
  };

  if (state_task_add (d->host->state, &t) == -1) {
    g_free (t.uuid);
    return NULL;
  }
  return t.uuid;
}

char *
xapi_task_result_text (struct xapi_call *c, xmlrpc_value *value)
{
  g_autofree char *why = NULL;
  char *text;

  if (value == NULL)
    return g_strdup ("");
  if (xmlrpc_value_type (value) == XMLRPC_TYPE_STRING) {
    const char *s = NULL;
    g_autofree char *esc = NULL;

    xmlrpc_read_string (c->env, value, &s);
    if (s == NULL)
      return g_strdup ("");
    esc = g_markup_escape_text (s, -1);
    free ((void *)s);
    /* xapi: a void result is "", a ref is <value>OpaqueRef:...</value> */
    return *esc ? g_strconcat ("<value>", esc, "</value>", NULL)
                : g_strdup ("");
  }
  /* xapi's bytes (rpc.c), which Xen Orchestra parses */
  text = xapi_rpc_value_xml (value, &why);
  return text ? text : g_strdup ("");
}

/* Remove a client's task and what it has besides its row. */
static int
client_task_remove (struct xapi_daemon *d, const char *uuid)
{
  if (state_task_remove (d->host->state, uuid) == -1)
    return -1;
  return state_client_task_remove (d->host->state, uuid);
}

/* task.cancel of a client's task: the transfers reporting into it stop
 * (and end it cancelled); with none, it ends cancelled now.  False if T
 * is not a client's task. */
static bool
client_task_cancel (struct xapi_call *c, const struct state_task *t)
{
  g_autoptr (state_client_task) ct
      = state_client_task_get (c->d->host->state, t->uuid);
  struct task_drives *td = task_drives (c->d, t->uuid);
  g_autofree char *ref = NULL;

  if (ct == NULL)
    return false;
  if (!task_is_pending (t))
    return true;
  g_message ("task.cancel: %s", t->uuid);
  if (td) {
    td->cancel = true;
    /* The transfer sees the flag and ends the task "cancelled". */
    if (state_task_set_status (c->d->host->state, t->uuid, "cancelling")
        == -1)
      g_warning ("task %s: cannot record that it is cancelling", t->uuid);
    return true;
  }
  ref = g_strconcat (XAPI_REF_PREFIX, t->uuid, NULL);
  if (state_task_finish (c->d->host->state, t->uuid, "cancelled", NULL,
                         (const char *const[]){ "TASK_CANCELLED", ref, NULL })
      == -1)
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the task", NULL);
  return true;
}

/* task.destroy of a client's task (see the top of the file).  False if
 * T is not a client's task. */
static bool
client_task_destroy (struct xapi_call *c, const struct state_task *t)
{
  g_autoptr (state_client_task) ct
      = state_client_task_get (c->d->host->state, t->uuid);
  struct task_drives *td = task_drives (c->d, t->uuid);

  if (ct == NULL)
    return false;
  if (td && task_is_pending (t))
    td->destroy = true;
  else if (client_task_remove (c->d, t->uuid) == -1)
    xapi_fail (c, "INTERNAL_ERROR", "cannot remove the task", NULL);
  return true;
}

static xmlrpc_value *
task_cancel (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "task");
  g_autoptr (state_task) t = ref ? task_by_ref (c, ref) : NULL;

  if (t == NULL)
    return NULL;
  if (client_task_cancel (c, t))
    return xapi_failed (c) ? NULL : xapi_void (c);
  if (!jobs_cancel (c->d->host->jobs, t->uuid)) {
    /* Over already, or a task that was never cancellable. */
    if (strcmp (t->status, "pending") != 0)
      return xapi_void (c);
    xapi_fail (c, "OPERATION_NOT_ALLOWED", "task cannot be cancelled", NULL);
    return NULL;
  }
  g_message ("task.cancel: %s", t->uuid);
  return xapi_void (c);
}

static xmlrpc_value *
task_destroy (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "task");
  g_autoptr (state_task) t = ref ? task_by_ref (c, ref) : NULL;

  if (t == NULL)
    return NULL;
  if (client_task_destroy (c, t))
    return xapi_failed (c) ? NULL : xapi_void (c);
  /* A task whose work still runs stays: its job reports into it. */
  if (strcmp (t->status, "pending") == 0
      || strcmp (t->status, "cancelling") == 0) {
    xapi_fail (c, "OTHER_OPERATION_IN_PROGRESS", "task", ref, t->status, NULL);
    return NULL;
  }
  if (state_task_remove (c->d->host->state, t->uuid) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot remove the task", NULL);
    return NULL;
  }
  return xapi_void (c);
}

/* task.create(session, label, description): a pending task of the
 * client's own. */
static xmlrpc_value *
task_create (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *label = xapi_read_string (c, args[1], "label");
  g_autofree char *desc
      = label ? xapi_read_string (c, args[2], "description") : NULL;
  g_autofree char *uuid = NULL;
  struct state_task t = { 0 };
  struct state_client_task ct = { 0 };

  if (desc == NULL)
    return NULL;
  uuid = g_uuid_string_random ();
  /* The description first: a task row without it would be a job's. */
  ct.task = uuid;
  ct.name_description = desc;
  t.uuid = uuid;
  t.name_label = label;
  t.status = (char *)"pending";
  t.result = (char *)"";
  t.created = g_get_real_time () / G_USEC_PER_SEC;
  if (state_client_task_add (c->d->host->state, &ct) == -1
      || state_task_add (c->d->host->state, &t) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the task", NULL);
    return NULL;
  }
  return xapi_ref (c, uuid);
}

/* The client's task named by ARG, or NULL after xapi_fail: a job's task
 * is the job's to change (OPERATION_NOT_ALLOWED). */
static struct state_task *
client_task_arg (struct xapi_call *c, xmlrpc_value *arg)
{
  g_autofree char *ref = xapi_read_string (c, arg, "self");
  g_autoptr (state_task) t = ref ? task_by_ref (c, ref) : NULL;
  g_autoptr (state_client_task) ct = NULL;

  if (t == NULL)
    return NULL;
  ct = state_client_task_get (c->d->host->state, t->uuid);
  if (ct == NULL) {
    xapi_fail (c, "OPERATION_NOT_ALLOWED",
               "the task of a job is changed by the job only", NULL);
    return NULL;
  }
  return g_steal_pointer (&t);
}

/* task.set_other_config(session, self, map),
 * task.add_to_other_config(session, self, key, value),
 * task.remove_from_other_config(session, self, key). */
static xmlrpc_value *
task_change_other_config (struct xapi_call *c, xmlrpc_value *const *args,
                          int nargs)
{
  g_autoptr (state_task) t = client_task_arg (c, args[1]);
  g_autoptr (state_client_task) ct = NULL;
  g_autoptr (GHashTable) oc = NULL;
  g_autofree char *text = NULL;
  g_autofree char *ref = NULL;

  if (t == NULL)
    return NULL;
  ct = state_client_task_get (c->d->host->state, t->uuid);
  oc = host_oc_parse (ct ? ct->other_config : NULL);
  ref = g_strconcat (XAPI_REF_PREFIX, t->uuid, NULL);
  if (!xapi_change_other_config (c, args, "task", ref, oc))
    return NULL;
  text = host_oc_print (oc);
  if (state_client_task_set_other_config (c->d->host->state, t->uuid, text) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the task", NULL);
    return NULL;
  }
  return xapi_void (c);
}

static const char *const task_statuses[]
    = { "pending", "success", "failure", "cancelling", "cancelled", NULL };

/* task.set_status, set_progress, set_result, set_error_info (session,
 * self, value): a client's own task, written as given, as xapi does. */
static xmlrpc_value *
task_set (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autoptr (state_task) t = client_task_arg (c, args[1]);
  const char *m = strrchr (c->method, '.') + 1;
  g_autofree char *text = NULL;
  g_autoptr (GPtrArray) ei = NULL;
  int r;

  if (t == NULL)
    return NULL;
  if (strcmp (m, "set_progress") == 0) {
    double p;

    int i;

    /* A float, or an int from a client that wrote 1 for 1.0. */
    if (xmlrpc_value_type (args[2]) == XMLRPC_TYPE_DOUBLE)
      xmlrpc_read_double (c->env, args[2], &p);
    else if (xmlrpc_value_type (args[2]) == XMLRPC_TYPE_INT) {
      xmlrpc_read_int (c->env, args[2], &i);
      p = i;
    }
    else {
      xapi_fail (c, "FIELD_TYPE_ERROR", "value", NULL);
      return NULL;
    }
    if (!isfinite (p)) {
      xapi_fail (c, "INVALID_VALUE", "value", "not a number", NULL);
      return NULL;
    }
    r = state_task_set_progress (c->d->host->state, t->uuid, p);
  }
  else if (strcmp (m, "set_error_info") == 0) {
    int n = xmlrpc_value_type (args[2]) == XMLRPC_TYPE_ARRAY
                ? xmlrpc_array_size (c->env, args[2])
                : -1;

    if (n < 0) {
      xapi_fail (c, "FIELD_TYPE_ERROR", "value", NULL);
      return NULL;
    }
    ei = g_ptr_array_new_with_free_func (g_free);
    for (int i = 0; i < n; i++) {
      g_autoptr (xmlrpc_value) v = NULL;
      char *s;

      xmlrpc_array_read_item (c->env, args[2], i, &v);
      if (c->env->fault_occurred
          || (s = xapi_read_string (c, v, "value")) == NULL)
        return NULL;
      g_ptr_array_add (ei, s);
    }
    g_ptr_array_add (ei, NULL);
    r = state_client_task_set (c->d->host->state, t->uuid, NULL, NULL, true,
                               n ? (const char *const *)ei->pdata : NULL);
  }
  else {
    if ((text = xapi_read_string (c, args[2], "value")) == NULL)
      return NULL;
    if (strcmp (m, "set_status") == 0
        && !g_strv_contains (task_statuses, text)) {
      xapi_fail (c, "INVALID_VALUE", "value", text, NULL);
      return NULL;
    }
    r = strcmp (m, "set_status") == 0
            ? state_client_task_set (c->d->host->state, t->uuid, text, NULL, false,
                                     NULL)
            : state_client_task_set (c->d->host->state, t->uuid, NULL, text, false,
                                     NULL);
  }
  if (r == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the task", NULL);
    return NULL;
  }
  return xapi_void (c);
}

static const struct xapi_method methods[] = {
  { "create", 3, 3, false, task_create },
  { "cancel", 2, 2, false, task_cancel },
  { "destroy", 2, 2, false, task_destroy },
  { "set_other_config", 3, 3, false, task_change_other_config },
  { "add_to_other_config", 4, 4, false, task_change_other_config },
  { "remove_from_other_config", 3, 3, false, task_change_other_config },
  { "set_status", 3, 3, false, task_set },
  { "set_progress", 3, 3, false, task_set },
  { "set_result", 3, 3, false, task_set },
  { "set_error_info", 3, 3, false, task_set },
  { NULL },
};

const struct xapi_class xapi_class_task = {
  .name = "task",
  .methods = methods,
  .list = task_list,
  .get_record = task_record,
};

char *
xapi_job_submit (struct xapi_call *c, struct state_job *j,
                 const char *name_label)
{
  g_autoptr (GError) error = NULL;
  char *task = jobs_submit (c->d->host->jobs, j, name_label, &error);

  if (task == NULL)
    xapi_fail (c, "INTERNAL_ERROR", error->message, NULL);
  return task;
}

xmlrpc_value *
xapi_job_reply (struct xapi_call *c, const char *task)
{
  if (c->async) {
    c->async_task = true;
    return xapi_ref (c, task);
  }
  xapi_task_deferral (c, task);
  return NULL;
}

xmlrpc_value *
xapi_task_outcome (struct xapi_call *c, const char *task)
{
  g_autoptr (state_task) t = state_task_get (c->d->host->state, task);

  if (t == NULL) {
    xapi_fail (c, "HANDLE_INVALID", "task", task, NULL);
    return NULL;
  }
  if (strcmp (t->status, "success") == 0)
    return t->result_uuid   ? xapi_ref (c, t->result_uuid)
           : t->result_text ? xapi_string (c, t->result_text)
                            : xapi_void (c);
  if (t->error_info && t->error_info[0]) {
    c->error = g_ptr_array_new_with_free_func (g_free);
    for (size_t i = 0; t->error_info[i]; i++)
      g_ptr_array_add (c->error, g_strdup (t->error_info[i]));
  }
  else
    xapi_fail (c, "INTERNAL_ERROR", t->status, NULL);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* HTTP transfers reporting into a client's task. */

struct xapi_task_drive
{
  struct xapi_daemon *d;
  char *uuid;
  char *ref;
  double recorded; /* the progress last written */
};

struct xapi_task_drive *
xapi_task_drive_begin (struct xapi_daemon *d, const char *task, char **why)
{
  const char *uuid = sr_uuid_is_valid (task) ? task : xapi_ref_uuid (task);
  g_autoptr (state_client_task) ct
      = uuid ? state_client_task_get (d->host->state, uuid) : NULL;
  struct xapi_task_drive *td;
  struct task_drives *n;

  if (ct == NULL) {
    *why = g_strdup_printf ("HANDLE_INVALID task %s", task);
    return NULL;
  }
  td = g_new0 (struct xapi_task_drive, 1);
  td->d = d;
  td->uuid = g_strdup (uuid);
  td->ref = g_strconcat (XAPI_REF_PREFIX, uuid, NULL);
  if (d->task_drives == NULL)
    d->task_drives
        = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  n = g_hash_table_lookup (d->task_drives, uuid);
  if (n == NULL) {
    n = g_new0 (struct task_drives, 1);
    g_hash_table_insert (d->task_drives, g_strdup (uuid), n);
  }
  n->n++;
  return td;
}

const char *
xapi_task_drive_ref (const struct xapi_task_drive *td)
{
  return td->ref;
}

bool
xapi_task_drive_cancelled (const struct xapi_task_drive *td)
{
  struct task_drives *n = task_drives (td->d, td->uuid);

  return n && n->cancel;
}

void
xapi_task_drive_progress (struct xapi_task_drive *td, double progress)
{
  g_autoptr (state_task) t = NULL;

  /* Below 1: the task is done only once it says success. */
  progress = CLAMP (progress, 0.0, 0.99);
  if (progress < td->recorded + 0.01)
    return;
  td->recorded = progress;
  t = state_task_get (td->d->host->state, td->uuid);
  /* Progress is advice: a failed write costs a stale figure only. */
  if (t && strcmp (t->status, "pending") == 0
      && state_task_set_progress (td->d->host->state, td->uuid, progress)
             == -1)
    g_debug ("task %s: progress not recorded", td->uuid);
}

void
xapi_task_drive_end (struct xapi_task_drive *td, const char *result_uuid,
                     const char *const *error_info)
{
  g_autoptr (state_task) t = state_task_get (td->d->host->state, td->uuid);
  struct task_drives *n = task_drives (td->d, td->uuid);
  const char *status = "success";
  g_autoptr (GPtrArray) clean = g_ptr_array_new_with_free_func (g_free);

  if (error_info) {
    status = strcmp (error_info[0], "TASK_CANCELLED") == 0 ? "cancelled"
                                                           : "failure";
    /* Stored as XenAPI sends them: valid UTF-8 XML can carry. */
    for (size_t i = 0; error_info[i]; i++)
      g_ptr_array_add (clean, xapi_rpc_clean_text (error_info[i]));
    g_ptr_array_add (clean, NULL);
    error_info = (const char *const *)clean->pdata;
  }
  /* Ended once: a task no longer running keeps its outcome. */
  if (t && task_is_pending (t)
      && state_task_finish (td->d->host->state, td->uuid, status,
                            error_info ? NULL : result_uuid, error_info)
             == -1)
    g_warning ("task %s: cannot record its end (%s)", td->uuid, status);
  g_assert (n && n->n > 0);
  if (--n->n == 0) {
    if (n->destroy && t && client_task_remove (td->d, td->uuid) == -1)
      g_warning ("task %s: cannot remove it", td->uuid);
    g_hash_table_remove (td->d->task_drives, td->uuid);
  }
  g_free (td->uuid);
  g_free (td->ref);
  g_free (td);
}
