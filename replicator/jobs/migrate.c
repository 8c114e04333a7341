/* The source side of a cross-host migration (VM.migrate, VM.migrate_send).
 *
 * Design: one job ("vm-migrate", jobs.h) per migration, its parameters
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
 *   (cbt)    (live) all mirrors ready: the destination arms a
 *            changed-block log for each disk with CBT here
 *            (migration.cbt_arm), marked by its disk server from then
 *            on; if it cannot, the logs stay here (the next backup
 *            there is a full one, never a wrong incremental);
 *   handover (live) all mirrors ready: the memory migrator
 *            (vdimotion-memory-migrator(7)) moves the VM while guest I/O
 *            still flows synchronously to both sides;
 *   commit   the mirrors complete (detach, both sides flushed), the
 *            destination records the VM and its VBDs on its disk
 *            sockets and merges each disk's changed-block log from here
 *            (its bytes in base64, the vbds' cbt_log) into its own,
 *            and sets each new VDI's other_config["vdimotion-moved-from"]
 *            (the vbds' moved_from: host.h, HOST_MOVED_FROM), and here
 *            the disk servers stop, the VDIs go
 *            (unless options["keep-source"] = "true") and the VM and VBD
 *            records go.  The task's result is the VM's ref there.
 * Any failure before commit aborts the mirrors and the destination's
 * side (migration.abort destroys every VDI it made): the VM keeps running
 * here, untouched.  A restart of this daemon does the same to a migration
 * it finds half done (migrate_recover).
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <sys/wait.h>
#include <json-glib/json-glib.h>

#include "cbt-log.h"
#include "control-client.h"
#include "copy.h"
#include "full-io.h"
#include "jobs.h"
#include "migrate-receive.h"
#include "migrate.h"
#include "nbdkit.h"
#include "xapi-client.h"

#define KEEPALIVE_SECONDS 30
/* Shares of the progress: sync (mirror or copy), handover, commit. */
#define SHARE_SYNC 0.85
#define SHARE_HANDOVER 0.1

/* One disk of the VM. */
struct mdisk
{
  struct state_vbd *vbd;
  struct sr_vdi *vdi;
  struct host_sr *sr;
  char *dst_sr;  /* vdi_map's SR uuid, or "" (the token's) */
  char *uri;     /* the export (prepare's answer) */
  char *dst_vdi; /* the new VDI's uuid */
  char *dst_socket;
  uint64_t done;
  bool mirroring;
  bool cbt_armed; /* the destination marks this disk's log */
};

struct migration
{
  struct job *job;
  struct host *d;
  GKeyFile *params;
  struct state_vm *vm;
  GArray *disks; /* struct mdisk */
  bool live;
  struct xapi_client *client; /* the destination's daemon */
  struct xv *token;
  char *psk;      /* the PSK file */
  char *dst_host; /* the destination host's uuid */
  char *step;
  char *error; /* what went wrong in STEP */
  GHashTable *mm_result;
  char *mm_last_error; /* the migrator's last stderr line */
  gint64 last_keepalive;
  bool recovering; /* undone at start: a failure, even if it was cancelled */
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

/* The token (the [token] group of KF) as the struct the destination
 * gave, the first parameter of every call to it. */
static struct xv *
token_value (GKeyFile *kf)
{
  g_autoptr (GHashTable) t = group_table (kf, "token");

  return xv_new_string_map (t);
}

/* A client of the destination's daemon the token names: pinned to its
 * certificate (when it serves HTTPS).  NULL and *ERROR on failure. */
static struct xapi_client *
dest_client (GKeyFile *kf, unsigned timeout_seconds, GError **error)
{
  g_autofree char *url = g_key_file_get_string (kf, "token", "url", NULL);
  g_autofree char *pin
      = g_key_file_get_string (kf, "token", "tls-cert-sha256", NULL);

  return xapi_client_new (
      &(struct xapi_client_config){ .url = url ? url : "",
                                    .cert_sha256 = pin,
                                    .timeout_seconds = timeout_seconds,
                                    .user_agent = "vdimotiond" },
      error);
}

/* Put the strings of T into GROUP of KF (GKeyFile cannot hold keys with
 * "=[]" or a newline; no option or token member of ours has them). */
static void
put_group (GKeyFile *kf, const char *group, GHashTable *t)
{
  GHashTableIter it;
  gpointer k, v;

  if (t == NULL)
    return;
  g_hash_table_iter_init (&it, t);
  while (g_hash_table_iter_next (&it, &k, &v))
    if (*(char *)k && strcspn (k, "=[]\n") == strlen (k))
      g_key_file_set_string (kf, group, k, v);
}

/* The job's parameters from P, checked: NULL with *ERR.  *VMP: the VM. */
static GKeyFile *
make_params (struct host *h, const struct host_vm_migrate *p,
             struct state_vm **vmp, char ***err)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (state_vm) vm = state_vm_get (h->state, p->vm);
  g_autofree char *ref = host_ref (p->vm);

  if (vm == NULL) {
    host_err_set (err, "HANDLE_INVALID", "VM", ref, NULL);
    return NULL;
  }
  g_key_file_set_string (kf, "migration", "vm", vm->uuid);
  g_key_file_set_boolean (kf, "migration", "live", p->live);
  put_group (kf, "token", p->token);
  put_group (kf, "vdi_map", p->vdi_map);
  put_group (kf, "options", p->options);
  if (!g_key_file_has_key (kf, "token", "url", NULL)
      || !g_key_file_has_key (kf, "token", "migration", NULL)
      || !g_key_file_has_key (kf, "token", "secret", NULL)) {
    host_err_set (err, "MIGRATION_TOKEN_INVALID", "not a migration token",
                  NULL);
    return NULL;
  }
  if (strcmp (vm->power_state, "Running") == 0 && !p->live) {
    host_err_set (err, "VM_BAD_POWER_STATE", ref, "Halted", vm->power_state,
                  NULL);
    return NULL;
  }
  *vmp = g_steal_pointer (&vm);
  return g_steal_pointer (&kf);
}

/* Claim every VDI of the VM for the migration; -1 (all released) with
 * *ERR. */
static int
claim_disks (struct host *h, const char *vm_uuid, char ***err)
{
  g_autoptr (GPtrArray) vbds = state_list (h->state, "vbds", "vm", vm_uuid);
  g_autoptr (GPtrArray) claimed = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < vbds->len; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (h->state, vbds->pdata[i]);

    if (b && host_vdi_claim_or_fail (h, b->vdi, "migrate", err) == -1) {
      for (guint j = 0; j < claimed->len; j++)
        host_vdi_release (h, claimed->pdata[j]);
      return -1;
    }
    if (b)
      g_ptr_array_add (claimed, g_strdup (b->vdi));
  }
  return 0;
}

static void
release_disks (struct host *d, const char *vm_uuid)
{
  g_autoptr (GPtrArray) vbds = state_list (d->state, "vbds", "vm", vm_uuid);

  for (guint i = 0; i < vbds->len; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (d->state, vbds->pdata[i]);

    if (b)
      host_vdi_release (d, b->vdi);
  }
}

char *
host_vm_migrate_submit (struct host *h, const struct host_vm_migrate *p,
                        const char *name_label, char ***err)
{
  g_autoptr (state_vm) vm = NULL;
  g_autoptr (GKeyFile) kf = make_params (h, p, &vm, err);
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  g_autofree char *sr = NULL;
  char *task;
  struct state_job j = { 0 };

  if (kf == NULL || claim_disks (h, vm->uuid, err) == -1)
    return NULL;
  text = g_key_file_to_data (kf, NULL, NULL);
  sr = g_key_file_get_string (kf, "token", "sr", NULL);
  j.kind = "vm-migrate";
  j.vdi = vm->uuid; /* the VM, for this kind */
  j.dst_sr = sr ? sr : "";
  j.phase = "queued";
  j.params = text;
  task = jobs_submit (h->jobs, &j, name_label, &error);
  g_free (j.task);
  if (task == NULL) {
    host_err_set (err, "INTERNAL_ERROR", error->message, NULL);
    release_disks (h, vm->uuid);
  }
  return task;
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
  g_autoptr (GError) error = NULL;

  g_free (m->step);
  m->step = g_strdup (step);
  /* The phase of a VM migration is for the record only: whatever it
   * says, a restart undoes the migration (recover). */
  if (job_set_phase (m->job, step, &error) == -1)
    g_warning ("task %s: %s", job_row (m->job)->task, error->message);
  g_message ("task %s: VM %s: %s", job_row (m->job)->task, m->vm->uuid, step);
}

/* Call the destination with the token and ARG (taken; NULL for none);
 * the Value, or NULL after fail_step.  A XenAPI failure reads "CODE
 * param1 ...". */
static struct xv *
call_dest (struct migration *m, const char *method, struct xv *arg)
{
  g_autoptr (GError) error = NULL;
  struct xv *v = xapi_client_call (m->client, &error, method,
                                   xv_copy (m->token), arg, NULL);

  if (v == NULL)
    fail_step (m, "%s: %s", method, error->message);
  return v;
}

/* Tell the destination we live, every KEEPALIVE_SECONDS or with FORCE
 * now; false (after fail_step) when it does not answer or no longer
 * knows the migration. */
static bool
keepalive (struct migration *m, bool force)
{
  gint64 now = g_get_monotonic_time ();
  struct xv *v;

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
  xv_free (v);
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
    md.vdi = host_find_vdi (m->d, md.vbd->vdi, &md.sr);
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
static struct xv *
disks_value (struct migration *m)
{
  struct xv *a = xv_new_array ();

  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    g_autofree char *fmt = option (m, "dest-img-format");
    g_autofree char *size
        = g_strdup_printf ("%" G_GUINT64_FORMAT, md->vdi->virtual_size);
    g_autofree char *phys = g_strdup_printf ("%" G_GUINT64_FORMAT,
                                             md->vdi->physical_utilisation);

    xv_append (
        a, xv_struct (
               "userdevice", xv_new_string (md->vbd->userdevice),
               "virtual_size", xv_new_string (size), "physical_utilisation",
               xv_new_string (phys), "format",
               xv_new_string (fmt ? fmt : vdisk_format_name (md->vdi->format)),
               "sr", xv_new_string (md->dst_sr), NULL));
  }
  return a;
}

/* The string member KEY of ST (g_free it), or NULL. */
static char *
member (const struct xv *st, const char *key)
{
  const struct xv *v = xv_get (st, key);

  return v && v->type == XV_STRING ? g_strdup (v->s) : NULL;
}

static bool
prepare (struct migration *m)
{
  g_autoptr (xv) disks = disks_value (m);
  g_autoptr (xv) exports = NULL;

  set_step (m, "check");
  exports = call_dest (m, "migration.check", xv_copy (disks));
  if (exports) {
    g_clear_pointer (&exports, xv_free);
    set_step (m, "prepare");
    exports = call_dest (m, "migration.prepare", xv_copy (disks));
  }
  if (exports == NULL)
    return false;
  for (size_t i = 0; exports->type == XV_ARRAY && i < exports->n; i++) {
    const struct xv *e = exports->items[i];
    g_autofree char *dev = member (e, "userdevice");

    for (guint j = 0; e->type == XV_STRUCT && j < m->disks->len; j++) {
      struct mdisk *md = &g_array_index (m->disks, struct mdisk, j);

      if (g_strcmp0 (md->vbd->userdevice, dev) == 0 && md->uri == NULL) {
        md->uri = member (e, "uri");
        md->dst_vdi = member (e, "vdi");
        md->dst_socket = member (e, "socket");
      }
    }
  }
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

/* A command to a disk's mirror failed: the step fails, naming the disk. */
static bool
disk_failed (struct migration *m, struct mdisk *md, const GError *error)
{
  fail_step (m, "disk %s: %s", md->vbd->userdevice, error->message);
  return false;
}

/* The VM's disks as mirror_poll and mirror_wait_ready watch them, in
 * the order of M->disks (g_free it). */
static struct mirror_disk *
mirror_disks (struct migration *m)
{
  struct mirror_disk *disks = g_new0 (struct mirror_disk, m->disks->len);

  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    disks[i].name = md->vbd->userdevice;
    disks[i].socket = md->vbd->control_socket;
  }
  return disks;
}

/* After a poll: each disk's bytes in sync, and with SHARE the task's
 * progress (those bytes over all disks, weighted by size). */
static void
mirrors_progress (struct migration *m, const struct mirror_disk *disks,
                  double share)
{
  uint64_t done = 0;

  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    md->done = disks[i].bytes_done;
    done += MIN (md->done, md->vdi->virtual_size);
  }
  if (share > 0)
    job_set_progress (m->job, share * (double)done / (double)total_size (m));
}

/* Poll every mirror once (the handover's check that all stay in sync):
 * fail_step if one cannot be read or failed. */
static void
poll_mirrors (struct migration *m)
{
  g_autofree struct mirror_disk *disks = mirror_disks (m);
  g_autoptr (GError) error = NULL;
  bool ready;

  if (mirror_poll (disks, m->disks->len, &ready, &error))
    mirrors_progress (m, disks, 0);
  else
    fail_step (m, "%s", error->message);
}

/* mirror_all's wait: the job's cancel; the progress, and the keepalive
 * that checks, once all are ready, that the destination still answers
 * (its disk servers outlive its daemon, and a sync can end well with
 * nobody left there to take the VM). */
static bool
sync_cancelled (void *opaque)
{
  struct migration *m = opaque;

  return job_cancelled (m->job);
}

static gboolean
sync_progress (const struct mirror_disk *disks, size_t n, bool all_ready,
               void *opaque, GError **error)
{
  struct migration *m = opaque;

  mirrors_progress (m, disks, SHARE_SYNC);
  if (keepalive (m, all_ready))
    return TRUE;
  /* fail_step has the reason: it stays the step's error. */
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, m->error);
  return FALSE;
}

static const struct mirror_wait_ops sync_wait_ops
    = { .cancelled = sync_cancelled, .progress = sync_progress };

static bool
mirror_all (struct migration *m)
{
  g_autofree struct mirror_disk *disks = NULL;
  g_autoptr (GError) error = NULL;

  set_step (m, "mirror");
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    if (!nbdkit_serving (md->vbd->pid, md->vbd->nbd_socket)) {
      fail_step (m, "disk %s is no longer served", md->vbd->userdevice);
      return false;
    }
    if (!mirror_start (md->vbd->control_socket, md->uri, m->psk, &error))
      return disk_failed (m, md, error);
    md->mirroring = true;
  }
  disks = mirror_disks (m);
  if (!mirror_wait_ready (disks, m->disks->len, 100, &sync_wait_ops, m,
                          &error)) {
    fail_step (m, "%s", error->message);
    return false;
  }
  return true;
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
  g_autoptr (GHashTable) oc = host_oc_parse (m->vm->other_config);
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
  json_builder_add_string_value (b, m->d->uuid);
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
  if (full_write (fd, s, n) == -1)
    g_message ("memory migrator: stdin: %s", g_strerror (errno));
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

  /* Only a running VM is handed over, once every mirror is ready. */
  g_assert (m->live);
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
      last_poll = now;
      poll_mirrors (m);
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

/* The mirrors are in sync: the destination starts a changed-block log
 * for each disk with CBT, which its disk server marks from then on (the
 * rest comes with commit).  Never fails the migration (true): a
 * destination that cannot keeps no log, and its next backup is full. */
static bool
arm_logs (struct migration *m)
{
  g_autoptr (xv) devs = xv_new_array ();
  g_autoptr (GError) error = NULL;
  g_autoptr (xv) v = NULL;

  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    if (md->vdi->cbt_enabled)
      xv_append (devs, xv_new_string (md->vbd->userdevice));
  }
  if (devs->n == 0)
    return true;
  v = xapi_client_call (m->client, &error, "migration.cbt_arm",
                        xv_copy (m->token), xv_copy (devs), NULL);
  if (v == NULL) {
    g_warning ("task %s: the destination keeps no changed-block logs: %s",
               job_row (m->job)->task, error->message);
    return true;
  }
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    md->cbt_armed = md->vdi->cbt_enabled;
  }
  return true;
}

/* MD's changed-block log for the destination (base64, g_free), or NULL:
 * CBT is off, or a running VM's disk was not armed there. */
static char *
cbt_log_b64 (struct migration *m, struct mdisk *md)
{
  size_t len;
  uint8_t *bytes;
  char *b64;

  if (!md->vdi->cbt_enabled || (m->live && !md->cbt_armed))
    return NULL;
  bytes = sr_vdi_cbt_export (md->sr->sr, md->vdi->uuid, &len);
  if (bytes == NULL) {
    g_warning ("task %s: VDI %s: its changed-block log stays here: %s",
               job_row (m->job)->task, md->vdi->uuid, sr_get_error ());
    return NULL;
  }
  b64 = g_base64_encode (bytes, len);
  free (bytes);
  return b64;
}

/* The snapshot MD's log counts from (the last backup's, its log's
 * predecessor), into the vbds' entry E when the log goes there: the
 * destination records it (sr_vdi_create_cbt_metadata) so that
 * VDI.list_changed_blocks from it resolves there. */
static void
add_cbt_predecessor (struct mdisk *md, struct xv *e)
{
  g_autoptr (GError) error = NULL;
  struct cbt_log_info info;
  char *path = sr_vdi_cbt_log_path (md->sr->sr, md->vdi->uuid);
  struct sr_vdi *s = NULL;
  char t[32];
  int r = path ? cbt_log_read_header (path, &info, &error) : -1;

  free (path);
  if (r == -1 || info.predecessor[0] == '\0'
      || (s = sr_vdi_get_by_uuid (md->sr->sr, info.predecessor)) == NULL)
    return;
  xv_set (e, "cbt_predecessor", xv_new_string (s->uuid));
  xv_set (e, "cbt_predecessor_name", xv_new_string (s->name_label));
  g_snprintf (t, sizeof t, "%" G_GINT64_FORMAT, s->snapshot_time);
  xv_set (e, "cbt_predecessor_time", xv_new_string (t));
  sr_vdi_free (s);
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
  struct xv *vbds;
  g_autoptr (xv) v = NULL;
  g_autoptr (GHashTable) vm_oc = host_oc_parse (m->vm->other_config);
  GHashTableIter it;
  gpointer k, val;
  g_autofree char *keep = option (m, "keep-source");
  bool keep_source = keep && strcmp (keep, "true") == 0;

  set_step (m, "commit");
  /* The mirrors complete: both sides flushed, the target detached. */
  for (guint i = 0; i < m->disks->len && m->live; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    g_autoptr (GError) error = NULL;

    if (!mirror_complete (md->vbd->control_socket, false, &error))
      return disk_failed (m, md, error);
    md->mirroring = false;
  }
  /* The migrator's result (the hypervisor's handles there) replaces
   * what it said of the VM here. */
  g_hash_table_iter_init (&it, m->mm_result);
  while (g_hash_table_iter_next (&it, &k, &val))
    g_hash_table_replace (vm_oc, g_strdup (k), g_strdup (val));
  vbds = xv_new_array ();
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);
    g_autofree char *log = cbt_log_b64 (m, md);
    g_autofree char *was = host_moved_from (
        md->vdi->uuid, sr_vdi_get_other_config (md->vdi, HOST_MOVED_FROM));
    struct xv *e
        = xv_struct ("userdevice", xv_new_string (md->vbd->userdevice),
                     "mode", xv_new_string (md->vbd->mode), "moved_from",
                     xv_new_string (was), NULL);

    if (log) {
      xv_set (e, "cbt_log", xv_new_string (log));
      add_cbt_predecessor (md, e);
    }
    xv_append (vbds, e);
  }
  v = call_dest (m, "migration.commit",
                 xv_struct ("name_label", xv_new_string (m->vm->name_label),
                            "name_description",
                            xv_new_string (m->vm->name_description),
                            "power_state", xv_new_string (m->vm->power_state),
                            "other_config", xv_new_string_map (vm_oc), "vbds",
                            vbds, NULL));
  if (v == NULL)
    return false;
  *dst_vm = g_strdup (v->type == XV_STRING ? v->s : "");

  /* From here the VM lives there: nothing below can fail the task. */
  {
    g_autoptr (GPtrArray) destroyers = g_ptr_array_new ();

    for (guint i = 0; i < m->disks->len; i++) {
      struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

      nbdkit_stop (md->vbd->pid, md->vbd->nbd_socket,
                         md->vbd->control_socket, NBDKIT_STOP_GRACE);
      /* A disk a live snapshot pivoted is its leaf's nbdkit (the VBD's
       * target): the filter mirrored from it; it goes with the VM. */
      if (md->vbd->target_pid)
        nbdkit_stop (md->vbd->target_pid, md->vbd->target_socket, NULL,
                     NBDKIT_STOP_GRACE);
      host_vdi_release (m->d, md->vdi->uuid);
      /* Each image's unlink takes a while: all at once. */
      if (!keep_source)
        g_ptr_array_add (destroyers,
                         g_thread_new ("destroy", destroy_source, md));
    }
    for (guint i = 0; i < destroyers->len; i++)
      g_thread_join (destroyers->pdata[i]);
  }
  /* The VM runs at the destination now, whatever these records say: a
   * record left behind names a halted VM here (its disk servers are
   * gone, host_vms_reconcile halts it), so the migration still
   * succeeds, and says so. */
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    if (state_vbd_remove (m->d->state, md->vbd->uuid) == -1)
      g_warning ("task %s: the old VBD %s stays in the records",
                 job_row (m->job)->task, md->vbd->uuid);
  }
  if (state_vm_remove (m->d->state, m->vm->uuid) == -1)
    g_warning ("task %s: the VM %s stays in the records (halted)",
               job_row (m->job)->task, m->vm->uuid);
  return true;
}

/* Undo: the mirrors stop, the destination drops what it prepared. */
static void
undo (struct migration *m)
{
  for (guint i = 0; i < m->disks->len; i++) {
    struct mdisk *md = &g_array_index (m->disks, struct mdisk, i);

    if (!md->mirroring || md->vbd->control_socket == NULL)
      continue;
    /* Nothing more to do if it fails: the mirror's own state says. */
    mirror_abort (md->vbd->control_socket, NULL);
    md->mirroring = false;
  }
  if (m->client && m->token) {
    g_autofree char *saved = g_steal_pointer (&m->error);
    struct xv *v = call_dest (m, "migration.abort", NULL);

    if (v)
      xv_free (v);
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
  xv_free (m->token);
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
  g_autofree char *secret = NULL;

  m->job = job;
  m->d = job_host (job);
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
  m->dst_host = g_key_file_get_string (m->params, "token", "host", NULL);
  m->client = dest_client (m->params, 120, &error);
  if (m->client == NULL) {
    fail_step (m, "%s", error->message);
    return false;
  }
  m->token = token_value (m->params);
  secret = g_key_file_get_string (m->params, "token", "secret", NULL);
  m->psk = host_migration_write_psk (m->d, row->task, secret ? secret : "",
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
      = g_strconcat (HOST_REF_PREFIX, m->vm ? m->vm->uuid : "", NULL);
  g_autofree char *src = g_strconcat (HOST_REF_PREFIX, m->d->uuid, NULL);
  g_autofree char *dst
      = g_strconcat (HOST_REF_PREFIX, m->dst_host ? m->dst_host : "", NULL);
  g_autofree char *msg = NULL;
  g_autofree char *task_ref = NULL;

  if (dst_vm) {
    /* The destination is a vdimotiond: its refs carry the uuid. */
    const char *uuid = g_str_has_prefix (dst_vm, HOST_REF_PREFIX)
                           ? dst_vm + strlen (HOST_REF_PREFIX)
                           : dst_vm;

    /* The VM is there whatever the answer said: a destination that gave
     * no ref leaves the task without a result. */
    job_succeed (m->job, *uuid ? uuid : NULL);
    return;
  }
  if (m->vm)
    release_disks (m->d, m->vm->uuid);
  msg = g_strdup_printf ("%s: %s", m->step, m->error ? m->error : "failed");
  if (job_cancelled (m->job) && !job_stopping (m->job) && !m->recovering) {
    /* xapi's error, and the step the cancel stopped ("mirror: cancelled"). */
    const char *ei[] = { "TASK_CANCELLED",
                         task_ref = g_strconcat (HOST_REF_PREFIX,
                                                 job_row (m->job)->task, NULL),
                         msg, NULL };

    job_fail (m->job, ei);
    return;
  }
  {
    const char *ei[] = { "VM_MIGRATE_FAILED", vm_ref, src, dst, msg, NULL };

    job_fail (m->job, ei);
  }
}

static void
migrate_run (struct job *job)
{
  struct migration m = { 0 };
  g_autofree char *dst_vm = NULL;
  bool ok;

  ok = migration_init (&m, job) && prepare (&m)
       && (m.live ? mirror_all (&m) && arm_logs (&m) && handover (&m)
                  : copy_all (&m))
       && commit (&m, &dst_vm);
  if (!ok)
    undo (&m);
  else
    g_message ("task %s: VM %s now runs at %s as %s", job_row (job)->task,
               m.vm->uuid, m.dst_host, dst_vm);
  end (&m, ok ? dst_vm : NULL);
  migration_free (&m);
}

static enum job_recovery
migrate_recover (struct job *job)
{
  struct migration m = { .recovering = true };

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
  return JOB_RECOVER_DONE;
}

const struct job_kind job_kind_vm_migrate = {
  .name = "vm-migrate",
  .run = migrate_run,
  .recover = migrate_recover,
};

int
host_vm_migrate_check (struct host *h, const struct host_vm_migrate *p,
                       char ***err)
{
  g_autoptr (state_vm) vm = NULL;
  g_autoptr (GKeyFile) kf = make_params (h, p, &vm, err);
  g_autoptr (xapi_client) cl = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (xv) v = NULL;
  const char *const *desc;
  struct migration m = { 0 };
  int r = -1;

  if (kf == NULL)
    return -1;
  /* Not already migrating (or otherwise busy). */
  if (claim_disks (h, vm->uuid, err) == -1)
    return -1;
  release_disks (h, vm->uuid);
  m.d = h;
  m.vm = vm;
  m.params = kf;
  m.disks = g_array_new (FALSE, TRUE, sizeof (struct mdisk));
  if (!load_disks (&m)) {
    host_err_set (err, "VDI_MISSING", m.error, NULL);
    goto out;
  }
  cl = dest_client (kf, 30, &error);
  if (cl)
    v = xapi_client_call (cl, &error, "migration.check", token_value (kf),
                          disks_value (&m), NULL);
  /* The destination's refusal is ours; not reaching it is a failure of
   * the migration's check. */
  desc = xapi_client_error_description (error);
  if (desc && err) {
    g_assert (*err == NULL);
    *err = g_strdupv ((char **)desc);
  }
  else if (v == NULL) {
    g_autofree char *vm_ref = host_ref (vm->uuid);
    g_autofree char *src = host_ref (h->uuid);
    g_autofree char *msg = g_strdup_printf (
        "check: cannot reach the destination: %s", error->message);

    host_err_set (err, "VM_MIGRATE_FAILED", vm_ref, src, "", msg, NULL);
  }
  else
    r = 0;
out:
  for (guint i = 0; i < m.disks->len; i++) {
    struct mdisk *md = &g_array_index (m.disks, struct mdisk, i);

    state_vbd_free (md->vbd);
    sr_vdi_free (md->vdi);
    g_free (md->dst_sr);
  }
  g_array_unref (m.disks);
  g_free (m.error);
  return r;
}
