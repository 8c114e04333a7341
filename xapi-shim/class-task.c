/* The task class: the progress and outcome of long operations.
 *
 * Tasks are durable (state.h), so a client polling a task keeps seeing it
 * across a restart of the daemon.  A task whose job runs reports its
 * progress from memory (jobs_get_progress); the database holds the last figure
 * written, every second or so.  As in xapi, result is XML-RPC text:
 * "<value>OpaqueRef:...</value>" for a ref. */

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
  else
    xapi_set (c, r, "result", xapi_string (c, t->result));
  ei = xmlrpc_array_new (c->env);
  for (size_t i = 0; t->error_info && t->error_info[i]; i++)
    xapi_append (c, ei, xapi_string (c, t->error_info[i]));
  xapi_set (c, r, "error_info", ei);
  xapi_set (c, r, "other_config", xapi_empty_struct (c));
  xapi_set (c, r, "subtask_of", xapi_string (c, XAPI_NULL_REF));
  xapi_set (c, r, "subtasks", xapi_empty_array (c));
  xapi_set (c, r, "backtrace", xapi_string (c, "()"));
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

static xmlrpc_value *
task_cancel (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "task");
  g_autoptr (state_task) t = ref ? task_by_ref (c, ref) : NULL;

  if (t == NULL)
    return NULL;
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

static const struct xapi_method methods[] = {
  { "cancel", 2, 2, false, task_cancel },
  { "destroy", 2, 2, false, task_destroy },
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
    return t->result_uuid ? xapi_ref (c, t->result_uuid) : xapi_void (c);
  if (t->error_info && t->error_info[0]) {
    c->error = g_ptr_array_new_with_free_func (g_free);
    for (size_t i = 0; t->error_info[i]; i++)
      g_ptr_array_add (c->error, g_strdup (t->error_info[i]));
  }
  else
    xapi_fail (c, "INTERNAL_ERROR", t->status, NULL);
  return NULL;
}
