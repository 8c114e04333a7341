/* The source side of a cross-host migration (VM.migrate, VM.migrate_send).
 *
 * Design: one job ("vm-migrate", jobs.c) per migration, its parameters
 * (the token, live, options, vdi_map) kept with the job as GKeyFile text.
 * The steps, each named in the task's error if it fails:
 *   check    the destination checks the token and its SRs (free space,
 *            formats): migration.check;
 *   prepare  it creates one VDI per disk and exports each over TLS-PSK
 *            NBD (migration.prepare); the key is derived from the token's
 *            secret, so only we can connect;
 *   mirror   (live, running VM) every disk's mirror filter starts at once
 *            towards its export (xapi does one disk after the other);
 *            progress is the bytes in sync over all disks, weighted by
 *            size; a keepalive every 30 s tells the destination we live,
 *            and one more once all are ready checks that its daemon
 *            still answers (its disk servers outlive it) before the VM
 *            is handed over;
 *   copy     (a halted VM, or live=false) the copy engine copies each
 *            disk's allocated data to its export instead;
 *   handover (live) all mirrors ready: the memory migrator
 *            (vdimotion-memory-migrator(7)) moves the VM while guest I/O
 *            still flows synchronously to both sides;
 *   commit   the mirrors complete (detach, both sides flushed), the
 *            destination records the VM and its VBDs on its disk
 *            sockets, and here the disk servers stop, the VDIs go
 *            (unless options["keep-source"] = "true") and the VM and VBD
 *            records go.  The task's result is the VM's ref there.
 * Any failure before commit aborts the mirrors and the destination's
 * side (migration.abort destroys every VDI it made): the VM keeps running
 * here, untouched.  A restart of this daemon does the same to a migration
 * it finds half done (xapi_migrate_recover).
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <sys/wait.h>
#include <json-glib/json-glib.h>

#include "control-client.h"
#include "copy.h"
#include "xapi-client.h"
#include "xapi.h"

#define KEEPALIVE_SECONDS 30
/* Shares of the progress: sync (mirror or copy), handover, commit. */
#define SHARE_SYNC 0.85
#define SHARE_HANDOVER 0.1

/* One disk of the VM. */
struct mdisk
{
  struct state_vbd *vbd;
  struct sr_vdi *vdi;
  struct xapi_sr *sr;
  char *dst_sr;  /* vdi_map's SR uuid, or "" (the token's) */
  char *uri;     /* the export (prepare's answer) */
  char *dst_vdi; /* the new VDI's uuid */
  char *dst_socket;
  uint64_t done;
  bool mirroring;
};

struct migration
{
  struct job *job;
  struct xapi_daemon *d;
  GKeyFile *params;
  struct state_vm *vm;
  GArray *disks; /* struct mdisk */
  bool live;
  struct xapi_client *client;
  xmlrpc_value *token;
  char *psk;      /* the PSK file */
  char *dst_host; /* the destination host's uuid */
  char *step;
  char *error; /* what went wrong in STEP */
  GHashTable *mm_result;
  char *mm_last_error; /* the migrator's last stderr line */
  gint64 last_keepalive;
};

/* Parameters: [migration] vm, live; [token], [options], [vdi_map]. */

static GHashTable *
group_table (GKeyFile *kf, const char *group)
{
  GHashTable *t
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_auto (GStrv) keys = g_key_file_get_keys (kf, group, NULL, NULL);

  for (char **k = keys; k && *k; k++)
    g_hash_table_replace (t, g_strdup (*k),
                          g_key_file_get_string (kf, group, *k, NULL));
  return t;
}

/* options[KEY] (g_free it), or NULL. */
static char *
option (struct migration *m, const char *key)
{
  return g_key_file_get_string (m->params, "options", key, NULL);
}

/* The token as an XML-RPC struct, for calls to the destination. */
static xmlrpc_value *
token_value (xmlrpc_env *env, GKeyFile *kf)
{
  g_autoptr (GHashTable) t = group_table (kf, "token");
  xmlrpc_value *st = xmlrpc_struct_new (env);
  GHashTableIter it;
  gpointer k, v;

  g_hash_table_iter_init (&it, t);
  while (g_hash_table_iter_next (&it, &k, &v)) {
    /* On failure xmlrpc-c returns no value at all: stop there. */
    xmlrpc_value *s = xmlrpc_string_new (env, v);

    if (env->fault_occurred)
      break;
    xmlrpc_struct_set_value (env, st, k, s);
    xmlrpc_DECREF (s);
  }
  return st;
}

/* Where a map argument goes: GROUP of KF; REFS: its keys and values are
 * refs (vdi_map: VDI → SR), kept as uuids. */
struct map_dest
{
  GKeyFile *kf;
  const char *group;
  bool refs;
};

static bool
keep_one (struct xapi_call *c, const char *key, const char *value,
          void *opaque)
{
  struct map_dest *md = opaque;

  if (md->refs) {
    const char *ku = xapi_ref_uuid (key), *vu = xapi_ref_uuid (value);

    if (ku == NULL || vu == NULL) {
      xapi_fail (c, "HANDLE_INVALID", ku ? "SR" : "VDI", ku ? value : key,
                 NULL);
      return false;
    }
    g_key_file_set_string (md->kf, md->group, ku, vu);
  }
  /* GKeyFile cannot hold these keys; no option of ours has them. */
  else if (*key && strcspn (key, "=[]\n") == strlen (key))
    g_key_file_set_string (md->kf, md->group, key, value);
  return true;
}

/* Read a struct of strings into GROUP of KF; false after xapi_fail. */
static bool
read_string_map (struct xapi_call *c, xmlrpc_value *v, const char *what,
                 GKeyFile *kf, const char *group, bool refs)
{
  struct map_dest md = { kf, group, refs };

  return xapi_read_string_map (c, v, what, keep_one, &md);
}

/* Read the arguments into a params key file; NULL after xapi_fail.
 * VDI_MAP / OPTIONS: argument indexes (-1: none). */
static GKeyFile *
read_params (struct xapi_call *c, xmlrpc_value *const *args, int vdi_map,
             int options, struct state_vm **vmp)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autofree char *ref = xapi_read_string (c, args[1], "vm");
  g_autoptr (state_vm) vm = ref ? xapi_vm_by_ref (c, ref) : NULL;
  xmlrpc_bool live = 0;
  g_autofree char *url = NULL;

  if (vm == NULL)
    return NULL;
  if (xmlrpc_value_type (args[3]) != XMLRPC_TYPE_BOOL) {
    xapi_fail (c, "FIELD_TYPE_ERROR", "live", NULL);
    return NULL;
  }
  xmlrpc_read_bool (c->env, args[3], &live);
  g_key_file_set_string (kf, "migration", "vm", vm->uuid);
  g_key_file_set_boolean (kf, "migration", "live", live);
  if (!read_string_map (c, args[2], "dest", kf, "token", false)
      || (vdi_map >= 0
          && !read_string_map (c, args[vdi_map], "vdi_map", kf, "vdi_map",
                               true))
      || (options >= 0
          && !read_string_map (c, args[options], "options", kf, "options",
                               false)))
    return NULL;
  url = g_key_file_get_string (kf, "token", "url", NULL);
  if (url == NULL || !g_key_file_has_key (kf, "token", "migration", NULL)
      || !g_key_file_has_key (kf, "token", "secret", NULL)) {
    xapi_fail (c, "MIGRATION_TOKEN_INVALID", "not a migration token", NULL);
    return NULL;
  }
  if (strcmp (vm->power_state, "Running") == 0 && !live) {
    xapi_fail (c, "VM_BAD_POWER_STATE", ref, "Halted", vm->power_state, NULL);
    return NULL;
  }
  *vmp = g_steal_pointer (&vm);
  return g_steal_pointer (&kf);
}

/* Claim every VDI of the VM for the migration; false (all released)
 * after xapi_fail. */
static bool
claim_disks (struct xapi_call *c, const char *vm_uuid)
{
  g_autoptr (GPtrArray) vbds = state_list (c->d->state, "vbds", "vm", vm_uuid);
  g_autoptr (GPtrArray) claimed = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < vbds->len; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (c->d->state, vbds->pdata[i]);

    if (b && !xapi_vdi_claim (c, b->vdi, "migrate")) {
      for (guint j = 0; j < claimed->len; j++)
        xapi_vdi_release (c->d, claimed->pdata[j]);
      return false;
    }
    if (b)
      g_ptr_array_add (claimed, g_strdup (b->vdi));
  }
  return true;
}

static void
release_disks (struct xapi_daemon *d, const char *vm_uuid)
{
  g_autoptr (GPtrArray) vbds = state_list (d->state, "vbds", "vm", vm_uuid);

  for (guint i = 0; i < vbds->len; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (d->state, vbds->pdata[i]);

    if (b)
      xapi_vdi_release (d, b->vdi);
  }
}

static xmlrpc_value *
submit (struct xapi_call *c, xmlrpc_value *const *args, int vdi_map,
        int options)
{
  g_autoptr (state_vm) vm = NULL;
  g_autoptr (GKeyFile) kf = read_params (c, args, vdi_map, options, &vm);
  g_autofree char *text = NULL;
  g_autofree char *sr = NULL;
  g_autofree char *label = NULL;
  g_autofree char *task = NULL;
  struct state_job j = { 0 };

  if (kf == NULL || !claim_disks (c, vm->uuid))
    return NULL;
  text = g_key_file_to_data (kf, NULL, NULL);
  sr = g_key_file_get_string (kf, "token", "sr", NULL);
  j.kind = "vm-migrate";
  j.vdi = vm->uuid; /* the VM, for this kind */
  j.dst_sr = sr ? sr : "";
  j.phase = "queued";
  j.params = text;
  label = g_strdup_printf ("VM.%s %s", strchr (c->method, '.') + 1, vm->uuid);
  task = jobs_submit (c, &j, label);
  g_free (j.task);
  if (task == NULL) {
    release_disks (c->d, vm->uuid);
    return NULL;
  }
  return jobs_reply (c, task);
}

/* VM.migrate(session, vm, dest, live, options): the design's spelling. */
xmlrpc_value *
xapi_vm_migrate (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return submit (c, args, -1, 4);
}

/* VM.migrate_send(session, vm, dest, live, vdi_map, vif_map, options
 * [, vgpu_map]): xapi's.  vif_map and vgpu_map are accepted and unused. */
xmlrpc_value *
xapi_vm_migrate_send (struct xapi_call *c, xmlrpc_value *const *args,
                      int nargs)
{
  return submit (c, args, 4, 6);
}

/* Running a migration (in a job thread). */

static void fail_step (struct migration *m, const char *fmt, ...)
    G_GNUC_PRINTF (2, 3);

static void
fail_step (struct migration *m, const char *fmt, ...)
{
  va_list ap;

  if (m->error)
    return;
  va_start (ap, fmt);
  m->error = g_strdup_vprintf (fmt, ap);
  va_end (ap);
}

static void
set_step (struct migration *m, const char *step)
{
  g_free (m->step);
  m->step = g_strdup (step);
  job_set_phase (m->job, step);
  g_message ("task %s: VM %s: %s", job_row (m->job)->task, m->vm->uuid, step);
}

/* Call the destination; the Value, or NULL after fail_step. */
static xmlrpc_value *
call_dest (struct migration *m, const char *method, xmlrpc_value *arg)
{
  xmlrpc_env env;
  xmlrpc_value *params, *v;
  g_auto (GStrv) desc = NULL;
  g_autoptr (GError) error = NULL;

  xmlrpc_env_init (&env);
  params = xmlrpc_array_new (&env);
  xmlrpc_array_append_item (&env, params, m->token);
  if (arg)
    xmlrpc_array_append_item (&env, params, arg);
  v = xapi_client_call (m->client, method, params, &desc, &error);
  xmlrpc_DECREF (params);
  xmlrpc_env_clean (&env);
  if (v == NULL) {
    g_autofree char *d = desc ? g_strjoinv (" ", desc) : NULL;

    fail_step (m, "%s: %s", method, d ? d : error->message);
  }
  return v;
}

/* Tell the destination we live, every KEEPALIVE_SECONDS or with FORCE
 * now; false (after fail_step) when it does not answer or no longer
 * knows the migration. */
static bool
keepalive (struct migration *m, bool force)
{
  gint64 now = g_get_monotonic_time ();
  xmlrpc_value *v;

  if (m->error)
    return false;
  if (!force && now - m->last_keepalive < KEEPALIVE_SECONDS * G_USEC_PER_SEC)
    return true;
  m->last_keepalive = now;
  v = call_dest (m, "migration.keepalive", NULL);
  if (v == NULL) {
    g_autofree char *why = g_steal_pointer (&m->error);

    fail_step (m, "the destination is gone: %s", why);
    return false;
  }
  xmlrpc_DECREF (v);
  return true;
}

static bool
load_disks (struct migration *m)
{
  g_autoptr (GPtrArray) vbds
      = state_list (m->d->state, "vbds", "vm", m->vm->uuid);

  for (guint i = 0; i < vbds->len; i++) {
    struct mdisk md = { 0 };

    md.vbd = state_vbd_get (m->d->state, vbds->pdata[i]);
    if (md.vbd == NULL)
      continue;
    md.vdi = xapi_find_vdi (m->d, md.vbd->vdi, &md.sr);
    md.dst_sr
        = g_key_file_get_string (m->params, "vdi_map", md.vbd->vdi, NULL);
    g_array_append_val (m->disks, md);
    if (md.vdi == NULL) {
      fail_step (m, "VDI %s of disk %s is missing", md.vbd->vdi,
                 md.vbd->userdevice);
      return false;
    }
  }
  return true;
}

/* [{userdevice, virtual_size, physical_utilisation, format, sr}] */
static xmlrpc_value *
disks_value (struct migration *m, xmlrpc_env *env)
{
  xmlrpc_value *a = xmlrpc_array_new (env);

  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    g_autofree char *fmt = option (m, "dest-img-format");
    g_autofree char *size
        = g_strdup_printf ("%" G_GUINT64_FORMAT, md->vdi->virtual_size);
    g_autofree char *phys = g_strdup_printf ("%" G_GUINT64_FORMAT,
                                             md->vdi->physical_utilisation);
    xmlrpc_value *st = xmlrpc_build_value (
        env, "{s:s,s:s,s:s,s:s,s:s}", "userdevice", md->vbd->userdevice,
        "virtual_size", size, "physical_utilisation", phys, "format",
        fmt ? fmt : vdisk_format_name (md->vdi->format), "sr",
        md->dst_sr ? md->dst_sr : "");

    xmlrpc_array_append_item (env, a, st);
    xmlrpc_DECREF (st);
  }
  return a;
}

static char *
member (xmlrpc_env *env, xmlrpc_value *st, const char *key)
{
  xmlrpc_value *v = NULL;
  const char *s = NULL;
  char *ret = NULL;

  xmlrpc_struct_find_value (env, st, key, &v);
  if (v && xmlrpc_value_type (v) == XMLRPC_TYPE_STRING) {
    xmlrpc_read_string (env, v, &s);
    ret = g_strdup (s);
    free ((void *)s);
  }
  if (v)
    xmlrpc_DECREF (v);
  return ret;
}

static bool
prepare (struct migration *m)
{
  xmlrpc_env env;
  xmlrpc_value *disks, *exports;
  int n;

  xmlrpc_env_init (&env);
  set_step (m, "check");
  disks = disks_value (m, &env);
  exports = call_dest (m, "migration.check", disks);
  if (exports) {
    xmlrpc_DECREF (exports);
    set_step (m, "prepare");
    exports = call_dest (m, "migration.prepare", disks);
  }
  xmlrpc_DECREF (disks);
  if (exports == NULL) {
    xmlrpc_env_clean (&env);
    return false;
  }
  n = xmlrpc_value_type (exports) == XMLRPC_TYPE_ARRAY
          ? xmlrpc_array_size (&env, exports)
          : -1;
  for (int i = 0; i < n; i++) {
    xmlrpc_value *e = NULL;
    g_autofree char *dev = NULL;

    xmlrpc_array_read_item (&env, exports, i, &e);
    if (e == NULL || xmlrpc_value_type (e) != XMLRPC_TYPE_STRUCT) {
      if (e)
        xmlrpc_DECREF (e);
      continue;
    }
    dev = member (&env, e, "userdevice");
    for (guint j = 0; j < m->disks->len; j++) {
      struct mdisk *md = &g_array_index (m->disks, struct mdisk, j);

      if (g_strcmp0 (md->vbd->userdevice, dev) == 0 && md->uri == NULL) {
        md->uri = member (&env, e, "uri");
        md->dst_vdi = member (&env, e, "vdi");
        md->dst_socket = member (&env, e, "socket");
      }
    }
    xmlrpc_DECREF (e);
  }
  xmlrpc_DECREF (exports);
  xmlrpc_env_clean (&env);
  for (guint j = 0; j < m->disks->len; j++)
    if (g_array_index (m->disks, struct mdisk, j).uri == NULL) {
      fail_step (m, "the destination exported no disk %s",
                 g_array_index (m->disks, struct mdisk, j).vbd->userdevice);
      return false;
    }
  return true;
}

static uint64_t
total_size (struct migration *m)
{
  uint64_t t = 0;

  for (guint i = 0; i < m->disks->len; i++)
    t += g_array_index (m->disks, struct mdisk, i).vdi->virtual_size;
  return t ? t : 1;
}

/* One command to a disk's mirror filter; the reply or NULL (fail_step). */
static char *
mirror (struct migration *m, struct mdisk *md, const char *line)
{
  char *e = NULL;
  char *reply = mirror_control_call (md->vbd->control_socket, line, 60, &e);
  g_autofree char *ok = NULL;

  if (reply == NULL) {
    fail_step (m, "disk %s: %s", md->vbd->userdevice, e ? e : "?");
    free (e);
    return NULL;
  }
  ok = mirror_reply_get (reply, "ok");
  if (g_strcmp0 (ok, "true") != 0) {
    char *why = mirror_reply_get (reply, "error");

    fail_step (m, "disk %s: mirror filter: %s", md->vbd->userdevice,
               why ? why : reply);
    free (why);
    free (reply);
    return NULL;
  }
  return reply;
}

/* Poll every mirror once: false after fail_step; *ALL_READY. */
static bool
poll_mirrors (struct migration *m, bool *all_ready, double share)
{
  uint64_t done = 0;

  *all_ready = true;
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    char *reply = mirror (m, md, "status\n");
    g_autofree char *state = NULL;

    if (reply == NULL)
      return false;
    state = mirror_reply_get (reply, "state");
    mirror_reply_get_u64 (reply, "bytes_done", &md->done);
    if (g_strcmp0 (state, "failed") == 0) {
      char *why = mirror_reply_get (reply, "error");

      fail_step (m, "disk %s: the mirror failed: %s", md->vbd->userdevice,
                 why ? why : "?");
      free (why);
      free (reply);
      return false;
    }
    free (reply);
    if (g_strcmp0 (state, "ready") != 0)
      *all_ready = false;
    done += MIN (md->done, md->vdi->virtual_size);
  }
  if (share > 0)
    job_set_progress (m->job, share * (double)done / (double)total_size (m));
  return true;
}

static bool
mirror_all (struct migration *m)
{
  set_step (m, "mirror");
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    g_autofree char *line = NULL;
    char *reply;

    if (!xapi_serving (md->vbd->pid, md->vbd->nbd_socket)) {
      fail_step (m, "disk %s is no longer served", md->vbd->userdevice);
      return false;
    }
    line = g_strdup_printf ("start target=%s tls-psk-file=%s\n", md->uri,
                            m->psk);
    if ((reply = mirror (m, md, line)) == NULL)
      return false;
    free (reply);
    md->mirroring = true;
  }
  for (;;) {
    bool ready;

    if (job_cancelled (m->job)) {
      fail_step (m, "cancelled");
      return false;
    }
    if (!poll_mirrors (m, &ready, SHARE_SYNC))
      return false;
    /* The handover moves the VM, so only to a destination that still
     * answers now: its disk servers outlive its daemon, and a sync can
     * end well with nobody left there to take the VM. */
    if (!keepalive (m, ready))
      return false;
    if (ready)
      return true;
    g_usleep (100 * 1000);
  }
}

static void
copy_progress (const struct copy_progress *p, void *opaque)
{
  struct mdisk *md = opaque;

  md->done = p->done;
}

/* A halted VM: copy each disk's allocated data to its export. */
static bool
copy_all (struct migration *m)
{
  set_step (m, "copy");
  for (guint i = 0; i < m->disks->len && !m->error; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    g_autofree char *uri
        = g_strdup_printf ("%s?tls-psk-file=%s", md->uri, m->psk);
    struct copy_spec from = {
      .kind = COPY_VDI,
      .sr = md->sr->sr,
      .vdi = md->vdi->uuid,
      .open_flags = VDISK_OPEN_BUFFERED,
    };
    struct copy_spec to = { .kind = COPY_NBD, .uri = uri, .connections = 4 };
    struct copy_params p = {
      .dest_is_zero = true,
      .progress = copy_progress,
      .progress_opaque = md,
      .cancel = job_cancel_flag (m->job),
    };
    char *e = NULL;

    if (copy_simple (&from, &to, &p, NULL, &e) == -1)
      fail_step (m, "disk %s: %s", md->vbd->userdevice, e ? e : "?");
    else
      job_set_progress (m->job,
                        SHARE_SYNC * (double)(i + 1) / (double)m->disks->len);
    free (e);
    keepalive (m, false);
  }
  return m->error == NULL;
}

/* The JSON the memory migrator reads (vdimotion-memory-migrator(7)). */
static char *
migrator_input (struct migration *m)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GHashTable) oc = xapi_oc_parse (m->vm->other_config);
  g_autoptr (GHashTable) opts = group_table (m->params, "options");
  g_autofree char *url
      = g_key_file_get_string (m->params, "token", "url", NULL);
  GHashTableIter it;
  gpointer k, v;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "vm");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "uuid");
  json_builder_add_string_value (b, m->vm->uuid);
  json_builder_set_member_name (b, "name_label");
  json_builder_add_string_value (b, m->vm->name_label);
  json_builder_set_member_name (b, "other_config");
  json_builder_begin_object (b);
  g_hash_table_iter_init (&it, oc);
  while (g_hash_table_iter_next (&it, &k, &v)) {
    json_builder_set_member_name (b, k);
    json_builder_add_string_value (b, v);
  }
  json_builder_end_object (b);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "source");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "host");
  json_builder_add_string_value (b, m->d->host_uuid);
  json_builder_set_member_name (b, "url");
  json_builder_add_string_value (b, m->d->migration_url ? m->d->migration_url
                                                        : "");
  json_builder_end_object (b);

  json_builder_set_member_name (b, "destination");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "host");
  json_builder_add_string_value (b, m->dst_host ? m->dst_host : "");
  json_builder_set_member_name (b, "url");
  json_builder_add_string_value (b, url ? url : "");
  json_builder_set_member_name (b, "run_dir");
  {
    /* The destination's sockets live in its run dir. */
    const struct mdisk *md0
        = m->disks->len ? &g_array_index (m->disks, struct mdisk, 0) : NULL;
    g_autofree char *dir = md0 && md0->dst_socket
                               ? g_path_get_dirname (md0->dst_socket)
                               : g_strdup ("");
    json_builder_add_string_value (b, dir);
  }
  json_builder_end_object (b);

  json_builder_set_member_name (b, "disks");
  json_builder_begin_array (b);
  for (guint i = 0; i < m->disks->len; i++) {
    const struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    json_builder_begin_object (b);
    json_builder_set_member_name (b, "userdevice");
    json_builder_add_string_value (b, md->vbd->userdevice);
    json_builder_set_member_name (b, "vdi");
    json_builder_add_string_value (b, md->vdi->uuid);
    json_builder_set_member_name (b, "virtual_size");
    json_builder_add_int_value (b, (gint64)md->vdi->virtual_size);
    json_builder_set_member_name (b, "source_socket");
    json_builder_add_string_value (b, md->vbd->nbd_socket);
    json_builder_set_member_name (b, "destination_socket");
    json_builder_add_string_value (b, md->dst_socket ? md->dst_socket : "");
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "live");
  json_builder_add_boolean_value (b, m->live);
  json_builder_set_member_name (b, "options");
  json_builder_begin_object (b);
  g_hash_table_iter_init (&it, opts);
  while (g_hash_table_iter_next (&it, &k, &v)) {
    json_builder_set_member_name (b, k);
    json_builder_add_string_value (b, v);
  }
  json_builder_end_object (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

/* One line of the migrator's stdout. */
static void
migrator_line (struct migration *m, const char *line)
{
  if (g_str_has_prefix (line, "progress ")) {
    double p = g_ascii_strtod (line + 9, NULL);

    if (p >= 0 && p <= 1)
      job_set_progress (m->job, SHARE_SYNC + SHARE_HANDOVER * p);
  }
  else if (g_str_has_prefix (line, "result ")) {
    g_autoptr (JsonParser) jp = json_parser_new ();
    JsonObject *o;

    if (json_parser_load_from_data (jp, line + 7, -1, NULL)
        && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (jp))) {
      GList *members;

      o = json_node_get_object (json_parser_get_root (jp));
      members = json_object_get_members (o);

      for (GList *it = members; it; it = it->next) {
        JsonNode *n = json_object_get_member (o, it->data);

        if (JSON_NODE_HOLDS_VALUE (n)
            && json_node_get_value_type (n) == G_TYPE_STRING)
          g_hash_table_replace (m->mm_result, g_strdup (it->data),
                                g_strdup (json_node_get_string (n)));
      }
      g_list_free (members);
    }
    else
      g_warning ("memory migrator: a result that is not a JSON object");
  }
  else
    g_message ("memory migrator: %s",
               g_str_has_prefix (line, "message ") ? line + 8 : line);
}

/* Split complete lines off BUF and hand each to FN. */
static void
take_lines (struct migration *m, GString *buf,
            void (*fn) (struct migration *m, const char *line))
{
  char *nl;

  while ((nl = memchr (buf->str, '\n', buf->len))) {
    *nl = '\0';
    fn (m, buf->str);
    g_string_erase (buf, 0, nl - buf->str + 1);
  }
}

static void
stderr_line (struct migration *m, const char *line)
{
  g_message ("memory migrator (stderr): %s", line);
  if (*line) {
    g_free (m->mm_last_error);
    m->mm_last_error = g_strdup (line);
  }
}

static void
write_all (int fd, const char *s, size_t n)
{
  while (n > 0) {
    ssize_t r = write (fd, s, n);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      g_message ("memory migrator: stdin: %s", g_strerror (errno));
      return;
    }
    s += r;
    n -= r;
  }
}

/* Run the memory migrator while the mirrors keep both sides in sync. */
static bool
handover (struct migration *m)
{
  g_autofree char *input = migrator_input (m);
  char *argv[] = { m->d->memory_migrator, NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GString) err = g_string_new (NULL);
  int in_fd = -1, out_fd = -1, err_fd = -1, status = 0;
  bool signalled = false;
  gint64 last_poll = 0;
  GPid pid;

  set_step (m, "handover");
  if (!g_spawn_async_with_pipes (
          NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH,
          NULL, NULL, &pid, &in_fd, &out_fd, &err_fd, &error)) {
    fail_step (m, "%s", error->message);
    return false;
  }
  signal (SIGPIPE, SIG_IGN);
  write_all (in_fd, input, strlen (input));
  close (in_fd);
  while (out_fd >= 0 || err_fd >= 0) {
    struct pollfd pfd[2] = { { .fd = out_fd, .events = POLLIN },
                             { .fd = err_fd, .events = POLLIN } };
    gint64 now = g_get_monotonic_time ();

    /* Cancel, or a mirror falling out of sync, stops the migrator (it
     * undoes its work: the VM stays here). */
    if (!signalled && (job_cancelled (m->job) || m->error)) {
      if (!m->error)
        fail_step (m, "cancelled");
      kill (pid, SIGTERM);
      signalled = true;
    }
    if (!signalled && now - last_poll > G_USEC_PER_SEC) {
      bool ready;

      last_poll = now;
      poll_mirrors (m, &ready, 0);
      keepalive (m, false);
    }
    if (poll (pfd, 2, 100) <= 0)
      continue;
    for (int i = 0; i < 2; i++) {
      char chunk[4096];
      ssize_t r;

      if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      r = read (pfd[i].fd, chunk, sizeof chunk);
      if (r == -1 && errno == EINTR)
        continue;
      if (r <= 0) {
        close (pfd[i].fd);
        *(i == 0 ? &out_fd : &err_fd) = -1;
        continue;
      }
      g_string_append_len (i == 0 ? out : err, chunk, r);
      take_lines (m, i == 0 ? out : err, i == 0 ? migrator_line : stderr_line);
    }
  }
  if (err->len)
    stderr_line (m, err->str);
  while (waitpid (pid, &status, 0) == -1 && errno == EINTR)
    ;
  g_spawn_close_pid (pid);
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    fail_step (m, "the memory migrator %s failed: %s", m->d->memory_migrator,
               m->mm_last_error ? m->mm_last_error : "(no message)");
  return m->error == NULL;
}

/* The destination takes the VM; here, the VM and its disks go. */
/* A source VDI after its VM moved (a thread of commit). */
static gpointer
destroy_source (gpointer data)
{
  struct mdisk *md = data;

  if (sr_vdi_destroy (md->sr->sr, md->vdi->uuid) == -1)
    g_warning ("the VM moved, but its VDI %s stays here: %s", md->vdi->uuid,
               sr_get_error ());
  return NULL;
}

static bool
commit (struct migration *m, char **dst_vm)
{
  xmlrpc_env env;
  xmlrpc_value *vm, *vbds, *oc, *v;
  g_autoptr (GHashTable) vm_oc = xapi_oc_parse (m->vm->other_config);
  GHashTableIter it;
  gpointer k, val;
  g_autofree char *keep = option (m, "keep-source");
  bool keep_source = keep && strcmp (keep, "true") == 0;

  set_step (m, "commit");
  /* The mirrors complete: both sides flushed, the target detached. */
  for (guint i = 0; i < m->disks->len && m->live; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    char *reply = mirror (m, md, "complete\n");

    if (reply == NULL)
      return false;
    free (reply);
    md->mirroring = false;
  }
  xmlrpc_env_init (&env);
  /* The migrator's result (the hypervisor's handles there) replaces
   * what it said of the VM here. */
  g_hash_table_iter_init (&it, m->mm_result);
  while (g_hash_table_iter_next (&it, &k, &val))
    g_hash_table_replace (vm_oc, g_strdup (k), g_strdup (val));
  oc = xmlrpc_struct_new (&env);
  g_hash_table_iter_init (&it, vm_oc);
  while (g_hash_table_iter_next (&it, &k, &val)) {
    xmlrpc_value *s = xmlrpc_string_new (&env, val);

    if (env.fault_occurred)
      break;
    xmlrpc_struct_set_value (&env, oc, k, s);
    xmlrpc_DECREF (s);
  }
  if (env.fault_occurred) {
    fail_step (m, "the VM's other_config cannot be sent: %s",
               env.fault_string);
    xmlrpc_DECREF (oc);
    xmlrpc_env_clean (&env);
    return false;
  }
  vbds = xmlrpc_array_new (&env);
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    xmlrpc_value *b
        = xmlrpc_build_value (&env, "{s:s,s:s}", "userdevice",
                              md->vbd->userdevice, "mode", md->vbd->mode);

    xmlrpc_array_append_item (&env, vbds, b);
    xmlrpc_DECREF (b);
  }
  vm = xmlrpc_build_value (
      &env, "{s:s,s:s,s:s,s:V,s:V}", "name_label", m->vm->name_label,
      "name_description", m->vm->name_description, "power_state",
      m->vm->power_state, "other_config", oc, "vbds", vbds);
  xmlrpc_DECREF (oc);
  xmlrpc_DECREF (vbds);
  v = call_dest (m, "migration.commit", vm);
  xmlrpc_DECREF (vm);
  if (v == NULL) {
    xmlrpc_env_clean (&env);
    return false;
  }
  {
    const char *s = NULL;

    if (xmlrpc_value_type (v) == XMLRPC_TYPE_STRING)
      xmlrpc_read_string (&env, v, &s);
    *dst_vm = g_strdup (s ? s : "");
    free ((void *)s);
  }
  xmlrpc_DECREF (v);
  xmlrpc_env_clean (&env);

  /* From here the VM lives there: nothing below can fail the task. */
  {
    g_autoptr (GPtrArray) destroyers = g_ptr_array_new ();

    for (guint i = 0; i < m->disks->len; i++) {
      struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

      xapi_stop_serving (md->vbd->pid, md->vbd->nbd_socket,
                         md->vbd->control_socket, XAPI_STOP_GRACE);
      xapi_vdi_release (m->d, md->vdi->uuid);
      /* Each image's unlink takes a while: all at once. */
      if (!keep_source)
        g_ptr_array_add (destroyers,
                         g_thread_new ("destroy", destroy_source, md));
    }
    for (guint i = 0; i < destroyers->len; i++)
      g_thread_join (destroyers->pdata[i]);
  }
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    state_vbd_remove (m->d->state, md->vbd->uuid);
  }
  state_vm_remove (m->d->state, m->vm->uuid);
  return true;
}

/* Undo: the mirrors stop, the destination drops what it prepared. */
static void
undo (struct migration *m)
{
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    g_autofree char *e = NULL;

    if (!md->mirroring || md->vbd->control_socket == NULL)
      continue;
    free (mirror_control_call (md->vbd->control_socket, "abort\n", 60, &e));
    md->mirroring = false;
  }
  if (m->client && m->token) {
    g_autofree char *saved = g_steal_pointer (&m->error);
    xmlrpc_value *v = call_dest (m, "migration.abort", NULL);

    if (v)
      xmlrpc_DECREF (v);
    else
      g_message ("migration abort at the destination: %s", m->error);
    g_free (m->error);
    m->error = g_steal_pointer (&saved);
  }
}

static void
migration_free (struct migration *m)
{
  for (guint i = 0; m->disks && i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    state_vbd_free (md->vbd);
    sr_vdi_free (md->vdi);
    g_free (md->dst_sr);
    g_free (md->uri);
    g_free (md->dst_vdi);
    g_free (md->dst_socket);
  }
  if (m->disks)
    g_array_unref (m->disks);
  if (m->psk) {
    unlink (m->psk);
    g_free (m->psk);
  }
  if (m->token) {
    xmlrpc_env env;

    xmlrpc_env_init (&env);
    xmlrpc_DECREF (m->token);
    xmlrpc_env_clean (&env);
  }
  xapi_client_free (m->client);
  if (m->params)
    g_key_file_unref (m->params);
  state_vm_free (m->vm);
  g_hash_table_unref (m->mm_result);
  g_free (m->dst_host);
  g_free (m->mm_last_error);
  g_free (m->step);
  g_free (m->error);
}

/* Set up M from the job's row; false after fail_step. */
static bool
migration_init (struct migration *m, struct job *job)
{
  const struct state_job *row = job_row (job);
  g_autoptr (GError) error = NULL;
  g_autofree char *url = NULL;
  g_autofree char *pin = NULL;
  g_autofree char *secret = NULL;
  xmlrpc_env env;

  m->job = job;
  m->d = job_daemon (job);
  m->disks = g_array_new (FALSE, TRUE, sizeof (struct mdisk));
  m->mm_result
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  m->params = g_key_file_new ();
  m->vm = state_vm_get (m->d->state, row->vdi);
  m->step = g_strdup ("start");
  if (row->params == NULL
      || !g_key_file_load_from_data (m->params, row->params, -1,
                                     G_KEY_FILE_NONE, &error)) {
    fail_step (m, "the job's parameters are unreadable");
    return false;
  }
  if (m->vm == NULL) {
    fail_step (m, "the VM is gone");
    return false;
  }
  m->live = g_key_file_get_boolean (m->params, "migration", "live", NULL)
            && strcmp (m->vm->power_state, "Running") == 0;
  url = g_key_file_get_string (m->params, "token", "url", NULL);
  pin = g_key_file_get_string (m->params, "token", "tls-cert-sha256", NULL);
  m->dst_host = g_key_file_get_string (m->params, "token", "host", NULL);
  m->client = xapi_client_new (url, pin, 120);
  xmlrpc_env_init (&env);
  m->token = token_value (&env, m->params);
  xmlrpc_env_clean (&env);
  secret = g_key_file_get_string (m->params, "token", "secret", NULL);
  m->psk = xapi_migration_write_psk (m->d, row->task, secret ? secret : "",
                                     &error);
  if (secret)
    explicit_bzero (secret, strlen (secret));
  if (m->psk == NULL) {
    fail_step (m, "%s", error->message);
    return false;
  }
  return load_disks (m);
}

static void
end (struct migration *m, const char *dst_vm)
{
  g_autofree char *vm_ref
      = g_strconcat (XAPI_REF_PREFIX, m->vm ? m->vm->uuid : "", NULL);
  g_autofree char *src = g_strconcat (XAPI_REF_PREFIX, m->d->host_uuid, NULL);
  g_autofree char *dst
      = g_strconcat (XAPI_REF_PREFIX, m->dst_host ? m->dst_host : "", NULL);
  g_autofree char *msg = NULL;
  g_autofree char *task_ref = NULL;

  if (dst_vm) {
    g_autofree char *result = g_strdup_printf ("<value>%s</value>", dst_vm);

    job_finish (m->job, "success", result, NULL);
    return;
  }
  if (m->vm)
    release_disks (m->d, m->vm->uuid);
  msg = g_strdup_printf ("%s: %s", m->step, m->error ? m->error : "failed");
  if (job_cancelled (m->job) && !job_stopping (m->job)) {
    /* xapi's error, and the step the cancel stopped ("mirror: cancelled"). */
    const char *ei[] = { "TASK_CANCELLED",
                         task_ref = g_strconcat (XAPI_REF_PREFIX,
                                                 job_row (m->job)->task, NULL),
                         msg, NULL };

    job_finish (m->job, "cancelled", NULL, ei);
    return;
  }
  {
    const char *ei[] = { "VM_MIGRATE_FAILED", vm_ref, src, dst, msg, NULL };

    job_finish (m->job, "failure", NULL, ei);
  }
}

void
xapi_migrate_run (struct job *job)
{
  struct migration m = { 0 };
  g_autofree char *dst_vm = NULL;
  bool ok;

  ok = migration_init (&m, job) && prepare (&m)
       && (m.live ? mirror_all (&m) && handover (&m) : copy_all (&m))
       && commit (&m, &dst_vm);
  if (!ok)
    undo (&m);
  else
    g_message ("task %s: VM %s now runs at %s as %s", job_row (job)->task,
               m.vm->uuid, m.dst_host, dst_vm);
  end (&m, ok ? dst_vm : NULL);
  migration_free (&m);
}

void
xapi_migrate_recover (struct job *job)
{
  struct migration m = { 0 };

  /* Whatever the step, the VM is still here: undo and fail. */
  if (migration_init (&m, job)) {
    for (guint i = 0; i < m.disks->len; i++)
      g_array_index (m.disks, struct mdisk, i).mirroring = true;
  }
  g_free (m.error);
  m.error = g_strdup ("vdimotiond restarted during the migration; the VM "
                      "stays here");
  undo (&m);
  end (&m, NULL);
  migration_free (&m);
}

/* VM.assert_can_migrate(session, vm, dest, live, vdi_map, vif_map,
 * options): the checks of the migration's first step, done now. */
xmlrpc_value *
xapi_vm_assert_can_migrate (struct xapi_call *c, xmlrpc_value *const *args,
                            int nargs)
{
  g_autoptr (state_vm) vm = NULL;
  g_autoptr (GKeyFile) kf = read_params (c, args, 4, 6, &vm);
  g_autoptr (xapi_client) cl = NULL;
  g_autofree char *url = NULL;
  g_autofree char *pin = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) desc = NULL;
  struct migration m = { 0 };
  xmlrpc_value *params, *disks, *v;

  if (kf == NULL)
    return NULL;
  /* Not already migrating (or otherwise busy). */
  if (!claim_disks (c, vm->uuid))
    return NULL;
  release_disks (c->d, vm->uuid);
  m.d = c->d;
  m.vm = vm;
  m.params = kf;
  m.disks = g_array_new (FALSE, TRUE, sizeof (struct mdisk));
  if (!load_disks (&m)) {
    xapi_fail (c, "VDI_MISSING", m.error, NULL);
    goto out;
  }
  url = g_key_file_get_string (kf, "token", "url", NULL);
  pin = g_key_file_get_string (kf, "token", "tls-cert-sha256", NULL);
  cl = xapi_client_new (url, pin, 30);
  params = xmlrpc_array_new (c->env);
  xapi_append (c, params, token_value (c->env, kf));
  disks = disks_value (&m, c->env);
  xapi_append (c, params, disks);
  v = xapi_client_call (cl, "migration.check", params, &desc, &error);
  xmlrpc_DECREF (params);
  if (v)
    xmlrpc_DECREF (v);
  else if (desc) {
    c->error = g_ptr_array_new_with_free_func (g_free);
    for (char **d = desc; *d; d++)
      g_ptr_array_add (c->error, g_strdup (*d));
  }
  else {
    g_autofree char *vm_ref = g_strconcat (XAPI_REF_PREFIX, vm->uuid, NULL);
    g_autofree char *src
        = g_strconcat (XAPI_REF_PREFIX, c->d->host_uuid, NULL);
    g_autofree char *msg = g_strdup_printf (
        "check: cannot reach the destination: %s", error->message);

    xapi_fail (c, "VM_MIGRATE_FAILED", vm_ref, src, "", msg, NULL);
  }
out:
  for (guint i = 0; i < m.disks->len; i++) {
    struct mdisk *md = &g_array_index (m.disks, struct mdisk, i);

    state_vbd_free (md->vbd);
    sr_vdi_free (md->vdi);
    g_free (md->dst_sr);
  }
  g_array_unref (m.disks);
  return xapi_failed (c) ? NULL : xapi_void (c);
}
