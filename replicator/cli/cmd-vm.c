/* vdimotion vm: virtual machines of a server (XenAPI VM and VBD classes).
 *   vm create NAME --disk VDI...  VM.create, then one VBD per disk
 *   vm start|shutdown NAME        VM.start / VM.shutdown
 *   vm list                       one line per VM
 *   vm show NAME                  the VM and its disks: device, VDI, mode,
 *                                 attached, and the NBD socket a running
 *                                 VM's disk is served on
 * VMs are named by uuid or name label. */
#include <inttypes.h>
#include <string.h>

#include "client.h"

/* Undo a half-made VM (errors ignored: the first one is reported). */
static void
destroy_vm (struct xapi_client *c, const char *vm, GPtrArray *vbds)
{
  for (guint i = 0; i < vbds->len; i++) {
    g_autoptr (GError) e = NULL;
    xv_free (xapi_client_call (c, &e, "VBD.destroy",
                               xv_new_string (vbds->pdata[i]), NULL));
  }
  g_autoptr (GError) e = NULL;
  xv_free (xapi_client_call (c, &e, "VM.destroy", xv_new_string (vm), NULL));
}

static int
vm_create (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (GPtrArray) vdis = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) vbds = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (xv) vm = NULL;

  /* Every disk is found before anything is made. */
  for (size_t i = 0; i < a->n_disks; i++) {
    char *ref = client_lookup (c, "VDI", a->disks[i], NULL, err);
    if (ref == NULL)
      return EXIT_ERROR;
    g_ptr_array_add (vdis, ref);
  }
  vm = xapi_client_call (c, err, "VM.create",
                         xv_struct ("name_label", xv_new_string (a->argv[0]),
                                    "name_description", xv_new_string (""),
                                    "other_config", xv_new_struct (), NULL),
                         NULL);
  if (vm == NULL)
    return EXIT_ERROR;
  if (vm->type != XV_STRING) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: VM.create: no ref", xapi_client_url (c));
    return EXIT_ERROR;
  }
  for (guint i = 0; i < vdis->len; i++) {
    g_autofree char *dev = g_strdup_printf ("%u", i);
    struct xv *vbd = xapi_client_call (
        c, err, "VBD.create",
        xv_struct ("VM", xv_new_string (vm->s), "VDI",
                   xv_new_string (vdis->pdata[i]), "userdevice",
                   xv_new_string (dev), "mode", xv_new_string ("RW"), "type",
                   xv_new_string ("Disk"), "bootable", xv_new_bool (false),
                   "empty", xv_new_bool (false), "other_config",
                   xv_new_struct (), NULL),
        NULL);
    if (vbd == NULL || vbd->type != XV_STRING) {
      if (vbd)
        g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                     "%s: VBD.create: no ref", xapi_client_url (c));
      xv_free (vbd);
      destroy_vm (c, vm->s, vbds);
      return EXIT_ERROR;
    }
    g_ptr_array_add (vbds, g_steal_pointer (&vbd->s));
    xv_free (vbd);
  }
  return client_print_new_uuid (c, "VM", vm->s, err);
}

static int
vm_start (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autofree char *vm = client_lookup (c, "VM", a->argv[0], NULL, err);
  g_autoptr (xv) r = NULL;

  if (vm == NULL)
    return EXIT_ERROR;
  r = xapi_client_call (c, err, "VM.start", xv_new_string (vm),
                        xv_new_bool (false), xv_new_bool (false), NULL);
  return r ? EXIT_OK : EXIT_ERROR;
}

static int
vm_shutdown (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autofree char *vm = client_lookup (c, "VM", a->argv[0], NULL, err);
  g_autoptr (xv) r = NULL;

  if (vm == NULL)
    return EXIT_ERROR;
  r = xapi_client_call (c, err, "VM.shutdown", xv_new_string (vm), NULL);
  return r ? EXIT_OK : EXIT_ERROR;
}

/* xapi lists dom0 and the templates as VMs too; they are not ours. */
static bool
is_guest (const struct xv *r)
{
  return !xv_bool (r, "is_a_template") && !xv_bool (r, "is_control_domain")
         && !xv_bool (r, "is_a_snapshot");
}

static int
vm_list (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) vms = xapi_client_call (c, err, "VM.get_all_records", NULL);
  g_autofree size_t *order = NULL;
  bool first = true, any = false;

  if (vms == NULL)
    return EXIT_ERROR;
  order = xv_sort_records (vms, "name_label");
  if (client_opts.json)
    printf ("[");
  else
    printf ("%-36s  %-20s %-8s %5s\n", "UUID", "NAME", "POWER", "DISKS");
  for (size_t k = 0; k < vms->n; k++) {
    const struct xv *r = vms->items[order[k]];
    const struct xv *vbds = xv_get (r, "VBDs");
    size_t n = vbds && vbds->type == XV_ARRAY ? vbds->n : 0;
    if (!is_guest (r))
      continue;
    if (client_opts.json) {
      if (any)
        printf (",\n ");
      json_str (&first, "uuid", xv_str (r, "uuid"));
      json_str (&first, "name_label", xv_str (r, "name_label"));
      json_str (&first, "power_state", xv_str (r, "power_state"));
      json_u64 (&first, "disks", n);
      json_end (&first);
    }
    else
      printf ("%-36s  %-20s %-8s %5zu\n", xv_str (r, "uuid"),
              xv_str (r, "name_label"), xv_str (r, "power_state"), n);
    any = true;
  }
  if (client_opts.json)
    printf ("]\n");
  return EXIT_OK;
}

static int
vm_show (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) vm = NULL;
  g_autofree char *ref = client_lookup (c, "VM", a->argv[0], &vm, err);
  const struct xv *vbds;
  bool first = true, dfirst = true;

  if (ref == NULL)
    return EXIT_ERROR;
  vbds = xv_get (vm, "VBDs");
  if (client_opts.json) {
    json_str (&first, "uuid", xv_str (vm, "uuid"));
    json_str (&first, "name_label", xv_str (vm, "name_label"));
    json_str (&first, "power_state", xv_str (vm, "power_state"));
    json_key (&first, "disks");
    printf ("[");
  }
  else {
    printf ("uuid: %s\n", xv_str (vm, "uuid"));
    printf ("name: %s\n", xv_str (vm, "name_label"));
    printf ("power state: %s\n", xv_str (vm, "power_state"));
    printf ("disks:\n");
    printf ("  %-6s %-36s  %-20s %10s %-4s %-8s %s\n", "DEVICE", "VDI", "NAME",
            "SIZE", "MODE", "ATTACHED", "NBD-SOCKET");
  }
  for (size_t i = 0; vbds && vbds->type == XV_ARRAY && i < vbds->n; i++) {
    const char *vbd_ref
        = vbds->items[i]->type == XV_STRING ? vbds->items[i]->s : "";
    g_autoptr (xv) vbd = xapi_client_call (c, err, "VBD.get_record",
                                           xv_new_string (vbd_ref), NULL);
    g_autoptr (xv) vdi = NULL;
    const char *socket;
    char size[32];
    if (vbd == NULL)
      return EXIT_ERROR;
    if (strcmp (xv_str (vbd, "VDI"), CLIENT_NULL_REF) != 0
        && *xv_str (vbd, "VDI")) {
      vdi = xapi_client_call (c, err, "VDI.get_record",
                              xv_new_string (xv_str (vbd, "VDI")), NULL);
      if (vdi == NULL)
        return EXIT_ERROR;
    }
    socket = xv_map_str (vbd, "other_config", "nbd-socket");
    if (client_opts.json) {
      if (i)
        printf (", ");
      json_str (&dfirst, "vbd", xv_str (vbd, "uuid"));
      json_str (&dfirst, "userdevice", xv_str (vbd, "userdevice"));
      json_str (&dfirst, "mode", xv_str (vbd, "mode"));
      json_bool (&dfirst, "currently_attached",
                 xv_bool (vbd, "currently_attached"));
      json_str (&dfirst, "vdi", xv_str (vdi, "uuid"));
      json_str (&dfirst, "vdi_name_label", xv_str (vdi, "name_label"));
      json_u64 (&dfirst, "virtual_size", xv_u64 (vdi, "virtual_size"));
      json_str (&dfirst, "nbd_socket", socket);
      json_end (&dfirst);
    }
    else
      printf ("  %-6s %-36s  %-20s %10s %-4s %-8s %s\n",
              xv_str (vbd, "userdevice"), xv_str (vdi, "uuid"),
              xv_str (vdi, "name_label"),
              cli_human_size (xv_u64 (vdi, "virtual_size"), size, sizeof size),
              xv_str (vbd, "mode"),
              xv_bool (vbd, "currently_attached") ? "yes" : "no",
              *socket ? socket : "-");
  }
  if (client_opts.json) {
    printf ("]");
    json_end (&first);
    printf ("\n");
  }
  return EXIT_OK;
}

static const struct client_subcommand subs[] = {
  { "create", "NAME --disk VDI [--disk VDI]...", 1, 1, CLIENT_OPT_DISK,
    vm_create },
  { "start", "VM", 1, 1, 0, vm_start },
  { "shutdown", "VM", 1, 1, 0, vm_shutdown },
  { "list", "[--json]", 0, 0, 0, vm_list },
  { "show", "[--json] VM", 1, 1, 0, vm_show },
  { NULL },
};

static int
run (int argc, char **argv)
{
  return client_run_group (&cmd_vm, subs, argc, argv);
}

const struct command cmd_vm
    = { "vm", "create NAME --disk VDI... | start|shutdown|show VM | list",
        run };
