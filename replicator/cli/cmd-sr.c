/* vdimotion sr: the storage repositories of a server (XenAPI SR class).
 *   sr list   one line per SR: uuid, name, size, use, VDI count */
#include <inttypes.h>

#include "client.h"

static int
sr_list (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) srs = xapi_client_call (c, err, "SR.get_all_records", NULL);
  g_autofree size_t *order = NULL;
  bool first = true;

  if (srs == NULL)
    return EXIT_ERROR;
  order = xv_sort_records (srs, "name_label");
  if (client_opts.json)
    printf ("[");
  else
    printf ("%-36s  %-16s %10s %10s %10s %5s\n", "UUID", "NAME", "SIZE",
            "USED", "ALLOCATED", "VDIS");
  for (size_t k = 0; k < srs->n; k++) {
    const struct xv *r = srs->items[order[k]];
    const struct xv *vdis = xv_get (r, "VDIs");
    size_t n_vdis = vdis && vdis->type == XV_ARRAY ? vdis->n : 0;
    if (client_opts.json) {
      if (k)
        printf (",\n ");
      json_str (&first, "uuid", xv_str (r, "uuid"));
      json_str (&first, "name_label", xv_str (r, "name_label"));
      json_str (&first, "type", xv_str (r, "type"));
      json_u64 (&first, "physical_size", xv_u64 (r, "physical_size"));
      json_u64 (&first, "physical_utilisation",
                xv_u64 (r, "physical_utilisation"));
      json_u64 (&first, "virtual_allocation",
                xv_u64 (r, "virtual_allocation"));
      json_u64 (&first, "vdis", n_vdis);
      json_end (&first);
    }
    else {
      char size[32], used[32], alloc[32];
      printf ("%-36s  %-16s %10s %10s %10s %5zu\n", xv_str (r, "uuid"),
              xv_str (r, "name_label"),
              cli_human_size (xv_u64 (r, "physical_size"), size, sizeof size),
              cli_human_size (xv_u64 (r, "physical_utilisation"), used,
                              sizeof used),
              cli_human_size (xv_u64 (r, "virtual_allocation"), alloc,
                              sizeof alloc),
              n_vdis);
    }
  }
  if (client_opts.json)
    printf ("]\n");
  return EXIT_OK;
}

static const struct client_subcommand subs[] = {
  { "list", "[--json]", 0, 0, 0, sr_list },
  { NULL },
};

static int
run (int argc, char **argv)
{
  return client_run_group (&cmd_sr, subs, argc, argv);
}

const struct command cmd_sr = { "sr", "list [--json]", run };
