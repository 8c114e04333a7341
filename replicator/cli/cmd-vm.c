/* vdimotion vm: virtual machines of a server (XenAPI VM and VBD classes).
 *   vm create NAME --disk VDI...  VM.create, then one VBD per disk
 *   vm start|shutdown NAME        VM.start / VM.shutdown
 *   vm list                       one line per VM
 *   vm show NAME                  the VM and its disks: device, VDI, mode,
 *                                 attached, and the NBD socket a running
 *                                 VM's disk is served on
 *   vm migrate NAME --to URL      to another server, as xapi's clients
 *                                 do it: log in to the destination, take
 *                                 a token from it (VM.migrate_receive, or
 *                                 host.migrate_receive for its default
 *                                 SR), hand the token to the source
 *                                 (Async.VM.migrate_send) and wait for
 *                                 the task; Ctrl-C cancels it
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

/* ---- vm migrate ------------------------------------------------------ */

/* The refs of the VDIs of the VM whose record is VM into VDIS, their
 * virtual sizes added up in *TOTAL (the progress bar's scale). */
static int
vm_vdis (struct xapi_client *c, const struct xv *vm, GPtrArray *vdis,
         uint64_t *total, GError **err)
{
  const struct xv *vbds = xv_get (vm, "VBDs");

  *total = 0;
  for (size_t i = 0; vbds && vbds->type == XV_ARRAY && i < vbds->n; i++) {
    const struct xv *vbd = vbds->items[i];
    g_autoptr (xv) vdi = NULL;
    g_autoptr (xv) rec = NULL;
    if (vbd->type != XV_STRING)
      continue;
    vdi = xapi_client_call (c, err, "VBD.get_VDI", xv_new_string (vbd->s),
                            NULL);
    if (vdi == NULL)
      return -1;
    if (vdi->type != XV_STRING || *vdi->s == '\0'
        || strcmp (vdi->s, CLIENT_NULL_REF) == 0)
      continue; /* an empty drive */
    rec = xapi_client_call (c, err, "VDI.get_record", xv_new_string (vdi->s),
                            NULL);
    if (rec == NULL)
      return -1;
    *total += xv_u64 (rec, "virtual_size");
    g_ptr_array_add (vdis, g_steal_pointer (&vdi->s));
  }
  return 0;
}

/* Say that *ERR is the destination's: "destination URL: ...", once. */
static void
prefix_destination (GError **err, const char *url)
{
  if (*err && g_str_has_prefix ((*err)->message, url))
    g_prefix_error (err, "destination ");
  else
    g_prefix_error (err, "destination %s: ", url);
}

/* Live (--live, or by default a running VM) or offline (--offline, or by
 * default a halted VM): false and *ERR if the flag given does not fit the
 * VM's power state. */
static bool
migrate_live (const struct client_args *a, const struct xv *vm, bool *live,
              GError **err)
{
  bool running = strcmp (xv_str (vm, "power_state"), "Running") == 0;

  *live = running;
  if (a->live && !running) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                 "VM %s is %s: no live migration (leave out --live)",
                 a->argv[0], xv_str (vm, "power_state"));
    return false;
  }
  if (a->offline && running) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                 "VM %s is running: an offline migration needs it halted "
                 "(vm shutdown first, or leave out --offline)",
                 a->argv[0]);
    return false;
  }
  return true;
}

/* Log in to the destination: --to, with --to-user and --to-password-file,
 * else the source's user and password; the source's CA file. */
static struct xapi_client *
connect_destination (const struct client_args *a, GError **err)
{
  struct client_options o = client_opts;
  struct xapi_client *dst;

  o.server = a->to;
  if (a->to_user)
    o.user = a->to_user;
  if (a->to_password_file)
    o.password_file = a->to_password_file;
  dst = client_connect (&o, err);
  if (dst == NULL)
    prefix_destination (err, a->to);
  return dst;
}

static void
close_destination (struct xapi_client **dst)
{
  client_close (*dst);
}

/* A ref from a call's answer: ANSWER's string (stolen), else NULL and
 * *ERR naming METHOD. */
static char *
answer_ref (struct xapi_client *c, struct xv *answer, const char *method,
            GError **err)
{
  if (answer == NULL)
    return NULL;
  if (answer->type != XV_STRING) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: %s: no ref", xapi_client_url (c), method);
    return NULL;
  }
  return g_steal_pointer (&answer->s);
}

/* --map VDI=SR...: each VDI (a disk of the VM, by uuid or name on the
 * source) → an SR of the destination; refs both. */
static struct xv *
vdi_map (struct xapi_client *src, struct xapi_client *dst,
         const struct client_args *a, const GPtrArray *vdis, GError **err)
{
  g_autoptr (xv) map = xv_new_struct ();

  for (size_t i = 0; i < a->n_maps; i++) {
    const char *eq = strchr (a->maps[i], '=');
    g_autofree char *name = g_strndup (a->maps[i], eq - a->maps[i]);
    g_autofree char *vdi = client_lookup (src, "VDI", name, NULL, err);
    g_autofree char *sr = NULL;
    bool ours = false;

    if (vdi == NULL) {
      g_prefix_error (err, "--map %s: ", a->maps[i]);
      return NULL;
    }
    for (guint k = 0; k < vdis->len && !ours; k++)
      ours = strcmp (vdis->pdata[k], vdi) == 0;
    if (!ours) {
      g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                   "--map %s: VDI %s is not a disk of VM %s", a->maps[i], name,
                   a->argv[0]);
      return NULL;
    }
    if ((sr = client_lookup (dst, "SR", eq + 1, NULL, err)) == NULL) {
      prefix_destination (err, a->to);
      g_prefix_error (err, "--map %s: ", a->maps[i]);
      return NULL;
    }
    xv_set (map, vdi, xv_new_string (sr));
  }
  return g_steal_pointer (&map);
}

/* --option KEY=VALUE...: the migration's options (string → string). */
static struct xv *
migrate_options (const struct client_args *a)
{
  struct xv *options = xv_new_struct ();

  for (size_t i = 0; i < a->n_options; i++) {
    const char *eq = strchr (a->options[i], '=');
    g_autofree char *key = g_strndup (a->options[i], eq - a->options[i]);
    xv_set (options, key, xv_new_string (eq + 1));
  }
  return options;
}

/* The destination's token for a migration to --sr (VM.migrate_receive),
 * or to the SR it picks itself (host.migrate_receive on its first
 * network: its default SR). */
static struct xv *
receive_token (struct xapi_client *dst, const struct client_args *a,
               GError **err)
{
  const char *method = a->sr ? "VM.migrate_receive" : "host.migrate_receive";
  g_autofree char *host = answer_ref (
      dst,
      xapi_client_call (dst, err, "session.get_this_host",
                        xv_new_string (xapi_client_session (dst)), NULL),
      "session.get_this_host", err);
  g_autofree char *target = NULL;
  g_autoptr (xv) token = NULL;

  if (host && a->sr)
    target = client_lookup (dst, "SR", a->sr, NULL, err);
  else if (host) {
    g_autoptr (xv) nets = xapi_client_call (dst, err, "network.get_all", NULL);
    if (nets
        && (nets->type != XV_ARRAY || nets->n == 0
            || nets->items[0]->type != XV_STRING))
      g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                   "%s: network.get_all: no network", xapi_client_url (dst));
    else if (nets)
      target = g_strdup (nets->items[0]->s);
  }
  if (target)
    token = xapi_client_call (dst, err, method, xv_new_string (host),
                              xv_new_string (target), xv_new_struct (), NULL);
  if (token && token->type != XV_STRUCT) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: %s: the token is not a struct", xapi_client_url (dst),
                 method);
    g_clear_pointer (&token, xv_free);
  }
  if (token == NULL)
    prefix_destination (err, a->to);
  return g_steal_pointer (&token);
}

static int
vm_migrate (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) vm = NULL;
  g_autofree char *ref = client_lookup (c, "VM", a->argv[0], &vm, err);
  g_autoptr (GPtrArray) vdis = g_ptr_array_new_with_free_func (g_free);
  __attribute__ ((cleanup (close_destination))) struct xapi_client *dst = NULL;
  g_autoptr (xv) map = NULL, token = NULL;
  g_autofree char *task = NULL, *result = NULL;
  uint64_t total;
  bool live;

  if (ref == NULL || !migrate_live (a, vm, &live, err)
      || vm_vdis (c, vm, vdis, &total, err) == -1
      || (dst = connect_destination (a, err)) == NULL
      || (map = vdi_map (c, dst, a, vdis, err)) == NULL
      || (token = receive_token (dst, a, err)) == NULL)
    return EXIT_ERROR;
  client_catch_interrupt ();
  task = answer_ref (
      c,
      xapi_client_call (c, err, "Async.VM.migrate_send", xv_new_string (ref),
                        g_steal_pointer (&token), xv_new_bool (live),
                        g_steal_pointer (&map), xv_new_struct (),
                        migrate_options (a), NULL),
      "Async.VM.migrate_send", err);
  if (task == NULL
      || (result = client_task_wait (
              c, task,
              &(struct client_task_wait){ .what = "the migration",
                                          .done = "the VM has moved",
                                          .total = total },
              err))
             == NULL)
    return EXIT_ERROR;
  if (client_print_new_uuid (dst, "VM", result, err) != EXIT_OK) {
    prefix_destination (err, a->to);
    return EXIT_ERROR;
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
  { "migrate",
    "VM --to URL [--to-user U --to-password-file F] [--sr SR] "
    "[--map VDI=SR]... [--live|--offline] [--option KEY=VALUE]... [--json]",
    1, 1, CLIENT_OPT_MIGRATE | CLIENT_OPT_LIVE, vm_migrate },
  { NULL },
};

static int
run (int argc, char **argv)
{
  return client_run_group (&cmd_vm, subs, argc, argv);
}

const struct command cmd_vm
    = { "vm",
        "create NAME --disk VDI... | start|shutdown|show VM | list | "
        "migrate VM --to URL",
        run };
