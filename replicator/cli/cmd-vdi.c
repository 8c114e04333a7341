/* vdimotion vdi: virtual disks of a server (XenAPI VDI class).
 *   vdi list [SR]                 one line per VDI
 *   vdi import SR FILE [-f FMT] [--name N]  VDI.create + PUT /import_raw_vdi
 *   vdi export VDI FILE           GET /export_raw_vdi (vhd or raw)
 *   vdi move VDI SR [--live]      Async.VDI.pool_migrate, waited on;
 *                                 Ctrl-C cancels it
 * Commands that make a VDI print its uuid as the last line of stdout, so
 * scripts take it with `tail -n1`. */
#include <inttypes.h>
#include <string.h>

#include "client.h"
#include "vdisk.h"

static int
vdi_list (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) srs = NULL, vdis = NULL;
  g_autofree char *sr = NULL;
  g_autofree size_t *order = NULL;
  bool first = true, any = false;

  if (a->argc == 1) {
    sr = client_lookup (c, "SR", a->argv[0], NULL, err);
    if (sr == NULL)
      return EXIT_ERROR;
  }
  srs = xapi_client_call (c, err, "SR.get_all_records", NULL);
  if (srs == NULL)
    return EXIT_ERROR;
  vdis = xapi_client_call (c, err, "VDI.get_all_records", NULL);
  if (vdis == NULL)
    return EXIT_ERROR;
  order = xv_sort_records (vdis, "name_label");

  if (client_opts.json)
    printf ("[");
  else
    printf ("%-36s  %-20s %-8s %10s %10s %-6s %s\n", "UUID", "NAME", "SR",
            "SIZE", "USED", "FORMAT", "OPERATIONS");
  for (size_t k = 0; k < vdis->n; k++) {
    const struct xv *r = vdis->items[order[k]];
    const char *sr_ref = xv_str (r, "SR");
    const struct xv *sr_rec = xv_record (srs, sr_ref);
    g_autofree char *ops
        = xv_values_joined (xv_get (r, "current_operations"), ",");
    if (sr && strcmp (sr_ref, sr) != 0)
      continue;
    if (client_opts.json) {
      if (any)
        printf (",\n ");
      json_str (&first, "uuid", xv_str (r, "uuid"));
      json_str (&first, "name_label", xv_str (r, "name_label"));
      json_str (&first, "sr", xv_str (sr_rec, "uuid"));
      json_str (&first, "sr_name_label", xv_str (sr_rec, "name_label"));
      json_u64 (&first, "virtual_size", xv_u64 (r, "virtual_size"));
      json_u64 (&first, "physical_utilisation",
                xv_u64 (r, "physical_utilisation"));
      json_str (&first, "format", xv_map_str (r, "sm_config", "image-format"));
      json_bool (&first, "read_only", xv_bool (r, "read_only"));
      json_value (&first, "current_operations",
                  xv_get (r, "current_operations"));
      json_end (&first);
    }
    else {
      char size[32], used[32];
      printf ("%-36s  %-20s %-8s %10s %10s %-6s %s\n", xv_str (r, "uuid"),
              xv_str (r, "name_label"), xv_str (sr_rec, "name_label"),
              cli_human_size (xv_u64 (r, "virtual_size"), size, sizeof size),
              cli_human_size (xv_u64 (r, "physical_utilisation"), used,
                              sizeof used),
              xv_map_str (r, "sm_config", "image-format"), ops);
    }
    any = true;
  }
  if (client_opts.json)
    printf ("]\n");
  return EXIT_OK;
}

static int
vdi_import (struct xapi_client *c, const struct client_args *a, GError **err)
{
  const char *file = a->argv[1];
  g_autofree char *sr = NULL, *base = g_path_get_basename (file);
  g_autofree char *size = NULL;
  g_autoptr (xv) vdi = NULL;
  struct vdisk *d;

  /* The size first: a file we cannot read makes no VDI.  Its format is
   * -f's word; a guess is warned about (a raw disk exported earlier holds
   * whatever its guest wrote, an image header included). */
  d = vdisk_open_as (file, VDISK_OPEN_BUFFERED, a->format, NULL);
  if (d == NULL) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL, "%s",
                 vdisk_get_error ());
    return EXIT_ERROR;
  }
  vdisk_warn_probed (d, "vdimotion vdi import");
  size = g_strdup_printf ("%" PRIu64, vdisk_get_size (d));
  vdisk_close (d);

  sr = client_lookup (c, "SR", a->argv[0], NULL, err);
  if (sr == NULL)
    return EXIT_ERROR;
  vdi = xapi_client_call (
      c, err, "VDI.create",
      xv_struct (
          "SR", xv_new_string (sr), "name_label",
          xv_new_string (a->name ? a->name : base), "virtual_size",
          xv_new_string (size), "type", xv_new_string ("user"), "sharable",
          xv_new_bool (false), "read_only", xv_new_bool (false),
          "other_config", xv_new_struct (), "sm_config",
          xv_struct ("image-format", xv_new_string ("vhd"), NULL), NULL),
      NULL);
  if (vdi == NULL)
    return EXIT_ERROR;
  if (vdi->type != XV_STRING) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: VDI.create: no ref", xapi_client_url (c));
    return EXIT_ERROR;
  }
  if (client_import_vdi (c, vdi->s, file, a->format, client_opts.progress, err)
      == -1) {
    /* No half-imported VDI is left behind. */
    g_autoptr (GError) e = NULL;
    xv_free (
        xapi_client_call (c, &e, "VDI.destroy", xv_new_string (vdi->s), NULL));
    return EXIT_ERROR;
  }
  return client_print_new_uuid (c, "VDI", vdi->s, err);
}

static int
vdi_export (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) rec = NULL;
  g_autofree char *vdi = client_lookup (c, "VDI", a->argv[0], &rec, err);

  if (vdi == NULL)
    return EXIT_ERROR;
  if (client_export_vdi (c, vdi, xv_u64 (rec, "virtual_size"), a->argv[1],
                         client_opts.progress, err)
      == -1)
    return EXIT_ERROR;
  return EXIT_OK;
}

/* Is VDI attached to a running VM?  (For --live.) */
static int
vdi_in_running_vm (struct xapi_client *c, const char *vdi, bool *running,
                   GError **err)
{
  g_autoptr (xv) vbds = xapi_client_call (c, err, "VBD.get_all_records", NULL);

  *running = false;
  if (vbds == NULL)
    return -1;
  for (size_t i = 0; i < vbds->n && !*running; i++) {
    const struct xv *r = vbds->items[i];
    g_autoptr (xv) state = NULL;
    if (strcmp (xv_str (r, "VDI"), vdi) != 0)
      continue;
    state = xapi_client_call (c, err, "VM.get_power_state",
                              xv_new_string (xv_str (r, "VM")), NULL);
    if (state == NULL)
      return -1;
    *running = state->type == XV_STRING && strcmp (state->s, "Running") == 0;
  }
  return 0;
}

static int
vdi_move (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) rec = NULL, task = NULL;
  g_autofree char *vdi = client_lookup (c, "VDI", a->argv[0], &rec, err);
  g_autofree char *sr = NULL, *result = NULL;

  if (vdi == NULL)
    return EXIT_ERROR;
  sr = client_lookup (c, "SR", a->argv[1], NULL, err);
  if (sr == NULL)
    return EXIT_ERROR;
  if (a->live) {
    bool running;
    if (vdi_in_running_vm (c, vdi, &running, err) == -1)
      return EXIT_ERROR;
    if (!running) {
      g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                   "VDI %s is not in use by a running VM: no live move "
                   "(leave out --live for an offline one)",
                   xv_str (rec, "uuid"));
      return EXIT_ERROR;
    }
  }
  client_catch_interrupt ();
  task = xapi_client_call (c, err, "Async.VDI.pool_migrate",
                           xv_new_string (vdi), xv_new_string (sr),
                           xv_new_struct (), NULL);
  if (task == NULL)
    return EXIT_ERROR;
  if (task->type != XV_STRING) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: Async.VDI.pool_migrate: no task ref",
                 xapi_client_url (c));
    return EXIT_ERROR;
  }
  result = client_task_wait (
      c, task->s,
      &(struct client_task_wait){ .what = "the move",
                                  .done = "the VDI has moved",
                                  .total = xv_u64 (rec, "virtual_size") },
      err);
  if (result == NULL)
    return EXIT_ERROR;
  return client_print_new_uuid (c, "VDI", result, err);
}

static const struct client_subcommand subs[] = {
  { "list", "[--json] [SR]", 0, 1, 0, vdi_list },
  { "import", "SR FILE [-f FMT] [--name NAME]", 2, 2,
    CLIENT_OPT_NAME | CLIENT_OPT_FORMAT, vdi_import },
  { "export", "VDI FILE", 2, 2, 0, vdi_export },
  { "move", "VDI SR [--live]", 2, 2, CLIENT_OPT_LIVE, vdi_move },
  { NULL },
};

static int
run (int argc, char **argv)
{
  return client_run_group (&cmd_vdi, subs, argc, argv);
}

const struct command cmd_vdi
    = { "vdi",
        "list [SR] | import SR FILE [--name N] | export VDI FILE | "
        "move VDI SR [--live]",
        run };
