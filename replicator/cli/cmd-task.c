/* vdimotion task: the asynchronous operations of a server (XenAPI task
 * class), as `vdi move` starts them.
 *   task list          one line per task: uuid, name, status, progress
 *   task show TASK     every field of one task
 *   task cancel TASK   ask the server to stop it (task.cancel) */
#include <string.h>

#include "client.h"

static void
task_json (const struct xv *r)
{
  bool first = true;

  json_str (&first, "uuid", xv_str (r, "uuid"));
  json_str (&first, "name_label", xv_str (r, "name_label"));
  json_str (&first, "status", xv_str (r, "status"));
  json_double (&first, "progress", xv_double (r, "progress"));
  json_str (&first, "created", xv_str (r, "created"));
  json_str (&first, "finished", xv_str (r, "finished"));
  json_str (&first, "result", xv_str (r, "result"));
  json_value (&first, "error_info", xv_get (r, "error_info"));
  json_end (&first);
}

static int
task_list (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) tasks
      = xapi_client_call (c, err, "task.get_all_records", NULL);
  g_autofree size_t *order = NULL;

  if (tasks == NULL)
    return EXIT_ERROR;
  order = xv_sort_records (tasks, "created");
  if (client_opts.json)
    printf ("[");
  else
    printf ("%-36s  %-10s %8s  %-18s  %s\n", "UUID", "STATUS", "PROGRESS",
            "CREATED", "NAME");
  for (size_t k = 0; k < tasks->n; k++) {
    const struct xv *r = tasks->items[order[k]];
    if (client_opts.json) {
      if (k)
        printf (",\n ");
      task_json (r);
    }
    else
      printf ("%-36s  %-10s %7.1f%%  %-18s  %s\n", xv_str (r, "uuid"),
              xv_str (r, "status"), xv_double (r, "progress") * 100,
              xv_str (r, "created"), xv_str (r, "name_label"));
  }
  if (client_opts.json)
    printf ("]\n");
  return EXIT_OK;
}

static int
task_show (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) r = NULL;
  g_autofree char *ref = client_lookup (c, "task", a->argv[0], &r, err);
  g_autofree char *info = NULL;

  if (ref == NULL)
    return EXIT_ERROR;
  if (client_opts.json) {
    task_json (r);
    printf ("\n");
    return EXIT_OK;
  }
  info = xv_values_joined (xv_get (r, "error_info"), " ");
  printf ("uuid: %s\n", xv_str (r, "uuid"));
  printf ("name: %s\n", xv_str (r, "name_label"));
  printf ("status: %s\n", xv_str (r, "status"));
  printf ("progress: %.1f%%\n", xv_double (r, "progress") * 100);
  printf ("created: %s\n", xv_str (r, "created"));
  printf ("finished: %s\n", xv_str (r, "finished"));
  printf ("result: %s\n", xv_str (r, "result"));
  printf ("error: %s\n", info);
  return EXIT_OK;
}

static int
task_cancel (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autofree char *ref = client_lookup (c, "task", a->argv[0], NULL, err);
  g_autoptr (xv) r = NULL;

  if (ref == NULL)
    return EXIT_ERROR;
  r = xapi_client_call (c, err, "task.cancel", xv_new_string (ref), NULL);
  return r ? EXIT_OK : EXIT_ERROR;
}

static const struct client_subcommand subs[] = {
  { "list", "[--json]", 0, 0, 0, task_list },
  { "show", "[--json] TASK", 1, 1, 0, task_show },
  { "cancel", "TASK", 1, 1, 0, task_cancel },
  { NULL },
};

static int
run (int argc, char **argv)
{
  return client_run_group (&cmd_task, subs, argc, argv);
}

const struct command cmd_task
    = { "task", "list | show TASK | cancel TASK", run };
