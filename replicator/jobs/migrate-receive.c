/* The destination side of a cross-host migration.
 *
 * Design
 * - VM.migrate_receive / Host.migrate_receive issue a token: a map of
 *   strings the client hands to the source unread.  It names this host
 *   (url, host uuid, the HTTPS certificate's SHA-256 so the source can
 *   pin it), the migration (a uuid), a one-time 256-bit secret, its
 *   expiry (10 minutes), the default destination SR, and the address the
 *   NBD exports will listen on.  Only the secret's SHA-256 is kept here,
 *   and the secret is never logged.
 * - The source then calls the "migration" class, which takes the token
 *   instead of a session: check (would it work?), prepare (once: create
 *   one VDI per disk, serve each with nbdkit on a Unix socket with the
 *   mirror filter, i.e. as a VM's disk, and put a TLS-PSK TCP forwarder
 *   in front of it for the source to mirror into), keepalive, commit (the
 *   VM and its VBDs now live here, on those sockets; the forwarders go)
 *   and abort (everything prepared goes).  The NBD pre-shared key is
 *   derived from the secret, so only this migration's source can connect,
 *   and only while the migration lives.
 * - A token is refused when expired (before prepare), used twice, shown
 *   to another host, or wrong; each with its reason.
 * - A prepared migration whose source has gone quiet for 5 minutes (no
 *   call at all) is aborted, so a dead source never leaves VDIs here.
 */

#include <string.h>
#include <unistd.h>

#include "xapi.h"

#define TOKEN_LIFETIME (10 * 60)
#define SOURCE_SILENCE_LIMIT (5 * 60)
#define MIGRATION_MARK "vdimotion-migration"
#define PSK_IDENTITY "vdimotion"
/* A disk's forwarder is <vdi>-fwd in the run dir (.pid, .log). */
#define FORWARDER_SUFFIX "-fwd"

static int64_t
now_s (void)
{
  return g_get_real_time () / G_USEC_PER_SEC;
}

char *
xapi_migration_psk (const char *secret)
{
  g_autofree char *in = g_strconcat ("vdimotion-nbd-psk:", secret, NULL);

  return g_compute_checksum_for_string (G_CHECKSUM_SHA256, in, -1);
}

char *
xapi_migration_write_psk (struct host *d, const char *name,
                          const char *secret, GError **error)
{
  g_autofree char *file = g_strconcat (name, ".psk", NULL);
  g_autofree char *path = g_build_filename (d->run_dir, file, NULL);
  g_autofree char *key = xapi_migration_psk (secret);
  g_autofree char *text = g_strdup_printf ("%s:%s\n", PSK_IDENTITY, key);

  /* The run dir is 0700; the file is written whole, then renamed. */
  if (!g_file_set_contents_full (path, text, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, error))
    return NULL;
  return g_steal_pointer (&path);
}

/* Token issue. */

static xmlrpc_value *
issue_token (struct xapi_call *c, struct host_sr *sr, xmlrpc_value *options)
{
  g_autofree char *ttl_s = xapi_member_string (c, options, "token-lifetime");
  guint64 ttl = TOKEN_LIFETIME;
  struct host *d = c->d->host;
  guint8 raw[32];
  g_autoptr (GString) secret = g_string_new (NULL);
  g_autofree char *uuid = g_uuid_string_random ();
  g_autofree char *expires = NULL;
  g_autoptr (GDateTime) t = NULL;
  struct state_migration m = { 0 };
  xmlrpc_value *tok;

  if (ttl_s
      && !g_ascii_string_to_unsigned (ttl_s, 10, 1, TOKEN_LIFETIME, &ttl,
                                      NULL)) {
    xapi_fail (c, "INVALID_VALUE", "token-lifetime", ttl_s, NULL);
    return NULL;
  }
  if (xapi_failed (c))
    return NULL;
  if (d->migration_url == NULL) {
    xapi_fail (c, "INTERNAL_ERROR",
               "this host has no migration URL (see --migration-url)", NULL);
    return NULL;
  }
  if (getentropy (raw, sizeof raw) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "no randomness for the token", NULL);
    return NULL;
  }
  for (size_t i = 0; i < sizeof raw; i++)
    g_string_append_printf (secret, "%02x", raw[i]);
  explicit_bzero (raw, sizeof raw);
  m.uuid = uuid;
  m.secret_sha256
      = g_compute_checksum_for_string (G_CHECKSUM_SHA256, secret->str, -1);
  m.expires = now_s () + (int64_t)ttl;
  m.sr = (char *)sr_get_uuid (sr->sr);
  m.state = "issued";
  m.last_seen = now_s ();
  if (state_migration_add (d->state, &m) == -1) {
    g_free (m.secret_sha256);
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the migration", NULL);
    return NULL;
  }
  g_free (m.secret_sha256);
  t = g_date_time_new_from_unix_utc (m.expires);
  expires = g_date_time_format (t, "%Y%m%dT%H:%M:%SZ");

  tok = xmlrpc_struct_new (c->env);
  xapi_set (c, tok, "url", xapi_string (c, d->migration_url));
  xapi_set (c, tok, "host", xapi_string (c, d->uuid));
  xapi_set (c, tok, "migration", xapi_string (c, uuid));
  xapi_set (c, tok, "secret", xapi_string (c, secret->str));
  xapi_set (c, tok, "expires", xapi_string (c, expires));
  xapi_set (c, tok, "sr", xapi_string (c, sr_get_uuid (sr->sr)));
  xapi_set (c, tok, "nbd-address", xapi_string (c, d->nbd_address));
  xapi_set (c, tok, "nbd-tls", xapi_string (c, "psk"));
  if (d->cert_sha256)
    xapi_set (c, tok, "tls-cert-sha256", xapi_string (c, d->cert_sha256));
  explicit_bzero (secret->str, secret->len);
  g_message ("migration %s: token issued (SR %s, until %s)", uuid, sr->name,
             expires);
  return tok;
}

/* VM.migrate_receive(session, host, sr, options) → token. */
xmlrpc_value *
xapi_vm_migrate_receive (struct xapi_call *c, xmlrpc_value *const *args,
                         int nargs)
{
  g_autofree char *host = xapi_read_string (c, args[1], "host");
  g_autofree char *sr_ref = host ? xapi_read_string (c, args[2], "sr") : NULL;
  struct host_sr *sr;

  if (sr_ref == NULL || !xapi_is_record (c, args[3], "options"))
    return NULL;
  if (g_strcmp0 (xapi_ref_uuid (host), c->d->host->uuid) != 0) {
    xapi_fail (c, "HANDLE_INVALID", "host", host, NULL);
    return NULL;
  }
  if ((sr = xapi_sr_by_ref (c, sr_ref)) == NULL)
    return NULL;
  return issue_token (c, sr, args[3]);
}

/* Host.migrate_receive(session, host, network, options) → token; the
 * destination SR is options["sr"] (a ref), else this host's first SR;
 * VM.migrate_send's vdi_map places disks elsewhere. */
xmlrpc_value *
xapi_host_migrate_receive (struct xapi_call *c, xmlrpc_value *const *args,
                           int nargs)
{
  g_autofree char *host = xapi_read_string (c, args[1], "host");
  g_autofree char *net
      = host ? xapi_read_string (c, args[2], "network") : NULL;
  g_autofree char *sr_ref = NULL;
  struct host_sr *sr;

  if (net == NULL || !xapi_is_record (c, args[3], "options"))
    return NULL;
  if (g_strcmp0 (xapi_ref_uuid (host), c->d->host->uuid) != 0) {
    xapi_fail (c, "HANDLE_INVALID", "host", host, NULL);
    return NULL;
  }
  if (g_strcmp0 (xapi_ref_uuid (net), c->d->host->network_uuid) != 0) {
    xapi_fail (c, "HANDLE_INVALID", "network", net, NULL);
    return NULL;
  }
  sr_ref = xapi_member_string (c, args[3], "sr");
  if (xapi_failed (c))
    return NULL;
  if (sr_ref)
    sr = xapi_sr_by_ref (c, sr_ref);
  else if (c->d->host->srs->len)
    sr = c->d->host->srs->pdata[0];
  else {
    xapi_fail (c, "SR_NOT_FOUND", "this host has no SR", NULL);
    return NULL;
  }
  return sr ? issue_token (c, sr, args[3]) : NULL;
}

/* The migration a token names, checked.  USE: the token is spent now
 * (prepare); else the migration must be prepared already (or, with
 * ISSUED_OK, may still be only issued: check). */
enum token_use
{
  TOKEN_CHECK,   /* issued, unexpired, unspent */
  TOKEN_PREPARE, /* the same, and spend it */
  TOKEN_ACTIVE,  /* prepared (keepalive, commit, abort) */
};

static struct state_migration *
token_migration (struct xapi_call *c, xmlrpc_value *tok, enum token_use use)
{
  g_autofree char *id = NULL;
  g_autofree char *secret = NULL;
  g_autofree char *host = NULL;
  g_autofree char *hash = NULL;
  struct state_migration *m = NULL;
  const char *why = NULL;

  if (!xapi_is_record (c, tok, "token"))
    return NULL;
  id = xapi_member_string (c, tok, "migration");
  secret = xapi_member_string (c, tok, "secret");
  host = xapi_member_string (c, tok, "host");
  if (xapi_failed (c))
    return NULL;
  if (id == NULL || secret == NULL || host == NULL)
    why = "not a migration token";
  else if (strcmp (host, c->d->host->uuid) != 0)
    why = "the token is for another host";
  else if (!sr_uuid_is_valid (id)
           || (m = state_migration_get (c->d->host->state, id)) == NULL)
    why = "no such migration";
  else {
    hash = g_compute_checksum_for_string (G_CHECKSUM_SHA256, secret, -1);
    /* Both are hex digests of the same length. */
    unsigned char diff = strlen (hash) != strlen (m->secret_sha256);
    for (size_t i = 0; hash[i] && m->secret_sha256[i]; i++)
      diff |= hash[i] ^ m->secret_sha256[i];
    if (diff)
      why = "wrong secret";
    else if (use != TOKEN_ACTIVE && strcmp (m->state, "issued") != 0)
      why = "the token was already used";
    else if (use != TOKEN_ACTIVE && m->expires < now_s ())
      why = "the token expired";
    else if (use == TOKEN_ACTIVE && strcmp (m->state, "prepared") != 0)
      why = strcmp (m->state, "issued") == 0 ? "the migration is not prepared"
                                             : "the migration is over";
  }
  if (secret)
    explicit_bzero (secret, strlen (secret));
  if (why) {
    g_message ("migration %s: token refused: %s", id ? id : "?", why);
    xapi_fail (c, "MIGRATION_TOKEN_INVALID", why, NULL);
    state_migration_free (m);
    return NULL;
  }
  m->last_seen = now_s ();
  state_migration_update (c->d->host->state, m);
  return m;
}

/* Disks: [{userdevice, virtual_size, format, sr, physical_utilisation}]. */
struct disk_req
{
  char *userdevice;
  uint64_t size, physical;
  enum vdisk_format format;
  struct host_sr *sr;
};

static void
disk_req_clear (gpointer p)
{
  g_free (((struct disk_req *)p)->userdevice);
}

static bool
read_u64 (struct xapi_call *c, xmlrpc_value *rec, const char *key,
          uint64_t *out)
{
  g_autofree char *s = xapi_member_string (c, rec, key);

  if (s && g_ascii_string_to_unsigned (s, 10, 0, G_MAXINT64, out, NULL))
    return true;
  if (!xapi_failed (c))
    xapi_fail (c, "FIELD_TYPE_ERROR", key, NULL);
  return false;
}

/* Read the disks and check them against the SRs (free space, formats). */
static GArray *
read_disks (struct xapi_call *c, xmlrpc_value *v,
            const struct state_migration *m)
{
  g_autoptr (GArray) a = g_array_new (FALSE, TRUE, sizeof (struct disk_req));
  g_autoptr (GHashTable) need = g_hash_table_new (NULL, NULL);
  int n;

  if (xmlrpc_value_type (v) != XMLRPC_TYPE_ARRAY) {
    xapi_fail (c, "FIELD_TYPE_ERROR", "disks", NULL);
    return NULL;
  }
  g_array_set_clear_func (a, disk_req_clear);
  n = xmlrpc_array_size (c->env, v);
  for (int i = 0; i < n && !xapi_failed (c); i++) {
    g_autoptr (xmlrpc_value) d = NULL;
    g_autofree char *fmt = NULL;
    g_autofree char *sr = NULL;
    struct disk_req r = { 0 };

    xmlrpc_array_read_item (c->env, v, i, &d);
    if (!xapi_is_record (c, d, "disks"))
      break;
    r.userdevice = xapi_member_string (c, d, "userdevice");
    fmt = xapi_member_string (c, d, "format");
    sr = xapi_member_string (c, d, "sr");
    g_array_append_val (a, r); /* owns userdevice from here */
    if (xapi_failed (c) || !read_u64 (c, d, "virtual_size", &r.size)
        || !read_u64 (c, d, "physical_utilisation", &r.physical))
      break;
    if (r.userdevice == NULL) {
      xapi_fail (c, "FIELD_TYPE_ERROR", "userdevice", NULL);
      break;
    }
    if (fmt == NULL || vdisk_format_from_name (fmt) < 0) {
      xapi_fail (c, "VDI_INCOMPATIBLE_TYPE", fmt ? fmt : "", "format", NULL);
      break;
    }
    r.format = vdisk_format_from_name (fmt);
    r.sr = host_find_sr (c->d->host, sr && *sr ? sr : m->sr);
    if (r.sr == NULL) {
      xapi_fail (c, "HANDLE_INVALID", "SR", sr ? sr : m->sr, NULL);
      break;
    }
    g_array_index (a, struct disk_req, a->len - 1) = r;
    /* A raw image takes its whole size; sparse ones what the source's
     * occupies. */
    g_hash_table_insert (
        need, r.sr,
        GSIZE_TO_POINTER (
            GPOINTER_TO_SIZE (g_hash_table_lookup (need, r.sr))
            + (r.format == VDISK_FORMAT_RAW ? r.size : r.physical)));
  }
  if (!xapi_failed (c)) {
    GHashTableIter it;
    gpointer k, val;

    g_hash_table_iter_init (&it, need);
    while (g_hash_table_iter_next (&it, &k, &val)) {
      struct host_sr *s = k;
      struct sr_stat st;

      if (sr_stat (s->sr, &st) == 0
          && st.free_bytes < GPOINTER_TO_SIZE (val)) {
        g_autofree char *ref
            = g_strconcat (HOST_REF_PREFIX, sr_get_uuid (s->sr), NULL);
        g_autofree char *want
            = g_strdup_printf ("%" G_GSIZE_FORMAT, GPOINTER_TO_SIZE (val));

        xapi_fail (c, "SR_FULL", ref, want, NULL);
        break;
      }
    }
  }
  return xapi_failed (c) ? NULL : g_steal_pointer (&a);
}

/* Stop a disk's TLS forwarder.  It has no socket of its own, so
 * nbdkit_stop knows it by its pid file and leaves its log
 * (<vdi>-fwd.log) behind: that goes here. */
static void
stop_forwarder (struct host *d, const struct state_mdisk *md,
                int grace_seconds)
{
  g_autofree char *name
      = g_strconcat (md->uuid, FORWARDER_SUFFIX ".log", NULL);
  g_autofree char *log = g_build_filename (d->run_dir, name, NULL);

  nbdkit_stop (md->fwd_pid, md->fwd_pidfile, NULL, grace_seconds);
  unlink (log);
}

/* Undo a prepared (or half-prepared) migration: the forwarders and disk
 * servers stop, the new VDIs go. */
static void
drop_migration (struct host *d, struct state_migration *m,
                const char *state)
{
  g_autoptr (GPtrArray) disks
      = state_list (d->state, "mdisks", "migration", m->uuid);
  g_autofree char *psk_name = g_strconcat (m->uuid, ".psk", NULL);
  g_autofree char *psk = g_build_filename (d->run_dir, psk_name, NULL);

  for (guint i = 0; i < disks->len; i++) {
    g_autoptr (state_mdisk) md = state_mdisk_get (d->state, disks->pdata[i]);
    struct host_sr *s = NULL;
    struct sr_vdi *v;

    if (md == NULL)
      continue;
    stop_forwarder (d, md, NBDKIT_STOP_NOW);
    nbdkit_stop (md->pid, md->socket, md->control, NBDKIT_STOP_NOW);
    if ((v = host_find_vdi (d, md->uuid, &s))) {
      if (sr_vdi_destroy (s->sr, v->uuid) == -1)
        g_warning ("migration %s: cannot remove VDI %s: %s", m->uuid, v->uuid,
                   sr_get_error ());
      sr_vdi_free (v);
    }
    state_mdisk_remove (d->state, md->uuid);
  }
  unlink (psk);
  g_free (m->state);
  m->state = g_strdup (state);
  state_migration_update (d->state, m);
  g_message ("migration %s: %s", m->uuid, state);
}

static xmlrpc_value *
migration_check (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autoptr (state_migration) m = token_migration (c, args[0], TOKEN_CHECK);
  GArray *disks = m ? read_disks (c, args[1], m) : NULL;

  if (disks == NULL)
    return NULL;
  g_array_unref (disks);
  return xapi_void (c);
}

/* Create, serve and export one disk; false after xapi_fail. */
static bool
prepare_disk (struct xapi_call *c, struct state_migration *m,
              const struct disk_req *r, const char *psk, xmlrpc_value *out)
{
  struct host *d = c->d->host;
  struct sr_vdi_create_params params = { 0 };
  struct sr_vdi *v
      = sr_vdi_create (r->sr->sr, "", r->format, r->size, &params);
  g_autofree char *fwd_name = NULL;
  g_autofree char *uri = NULL;
  g_autoptr (GError) error = NULL;
  struct nbdkit_served sv = { 0 };
  struct nbdkit_forward fw = { 0 };
  struct state_mdisk md = { 0 };
  xmlrpc_value *e;

  if (v == NULL) {
    xapi_fail_sr (c, "SR", sr_get_uuid (r->sr->sr));
    return false;
  }
  sr_vdi_set_other_config (r->sr->sr, v->uuid, MIGRATION_MARK, m->uuid);
  md.uuid = v->uuid;
  md.migration = m->uuid;
  md.userdevice = r->userdevice;
  /* Recorded before anything runs, so an abort finds the VDI. */
  state_mdisk_add (d->state, &md);
  fwd_name = g_strconcat (v->uuid, FORWARDER_SUFFIX, NULL);
  if (nbdkit_serve_image (d, v->uuid, r->sr, v, true, false, &sv, &error) == -1
      || nbdkit_serve_forward (d, fwd_name, sv.socket, psk, d->nbd_address, &fw,
                             &error)
             == -1) {
    if (sv.pid) {
      md.socket = sv.socket;
      md.control = sv.control;
      md.pid = sv.pid;
      state_mdisk_remove (d->state, md.uuid);
      state_mdisk_add (d->state, &md);
    }
    xapi_fail (c, "INTERNAL_ERROR", error->message, NULL);
    g_free (sv.socket);
    g_free (sv.control);
    sr_vdi_free (v);
    return false;
  }
  md.socket = sv.socket;
  md.control = sv.control;
  md.pid = sv.pid;
  md.fwd_pidfile = fw.pidfile;
  md.fwd_pid = fw.pid;
  md.fwd_port = fw.port;
  state_mdisk_remove (d->state, md.uuid);
  state_mdisk_add (d->state, &md);

  if (strchr (d->nbd_address, ':'))
    uri = g_strdup_printf ("nbds://" PSK_IDENTITY "@[%s]:%d/", d->nbd_address,
                           fw.port);
  else
    uri = g_strdup_printf ("nbds://" PSK_IDENTITY "@%s:%d/", d->nbd_address,
                           fw.port);
  e = xmlrpc_struct_new (c->env);
  xapi_set (c, e, "userdevice", xapi_string (c, r->userdevice));
  xapi_set (c, e, "vdi", xapi_string (c, v->uuid));
  xapi_set (c, e, "uri", xapi_string (c, uri));
  xapi_set (c, e, "socket", xapi_string (c, sv.socket));
  xapi_append (c, out, e);
  g_free (sv.socket);
  g_free (sv.control);
  g_free (fw.pidfile);
  sr_vdi_free (v);
  return true;
}

/* migration.prepare(token, disks) → [{userdevice, vdi, uri, socket}]. */
static xmlrpc_value *
migration_prepare (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autoptr (state_migration) m = token_migration (c, args[0], TOKEN_PREPARE);
  g_autoptr (GArray) disks = m ? read_disks (c, args[1], m) : NULL;
  g_autofree char *secret = NULL;
  g_autofree char *psk = NULL;
  g_autoptr (GError) error = NULL;
  xmlrpc_value *out;

  if (disks == NULL)
    return NULL;
  /* Spent from here on: a second prepare is refused. */
  g_free (m->state);
  m->state = g_strdup ("prepared");
  state_migration_update (c->d->host->state, m);
  secret = xapi_member_string (c, args[0], "secret");
  psk = xapi_migration_write_psk (c->d->host, m->uuid, secret, &error);
  explicit_bzero (secret, strlen (secret));
  if (psk == NULL) {
    xapi_fail (c, "INTERNAL_ERROR", error->message, NULL);
    drop_migration (c->d->host, m, "aborted");
    return NULL;
  }
  out = xmlrpc_array_new (c->env);
  for (guint i = 0; i < disks->len && !xapi_failed (c); i++)
    prepare_disk (c, m, &g_array_index (disks, struct disk_req, i), psk, out);
  if (xapi_failed (c)) {
    xmlrpc_DECREF (out);
    drop_migration (c->d->host, m, "aborted");
    return NULL;
  }
  g_message ("migration %s: prepared %u disks", m->uuid, disks->len);
  return out;
}

static xmlrpc_value *
migration_keepalive (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autoptr (state_migration) m = token_migration (c, args[0], TOKEN_ACTIVE);

  return m ? xapi_void (c) : NULL;
}

static xmlrpc_value *
migration_abort (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autoptr (state_migration) m = token_migration (c, args[0], TOKEN_ACTIVE);

  if (m == NULL)
    return NULL;
  drop_migration (c->d->host, m, "aborted");
  return xapi_void (c);
}

/* migration.commit(token, vm) → the VM's ref here.  vm: {name_label,
 * name_description, other_config, vbds: [{userdevice, mode}]}.  The VM
 * runs here from now on, on the disks' sockets. */
static xmlrpc_value *
migration_commit (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  struct host *d = c->d->host;
  g_autoptr (state_migration) m = token_migration (c, args[0], TOKEN_ACTIVE);
  g_autoptr (GPtrArray) disks = NULL;
  g_autoptr (xmlrpc_value) vbds = NULL;
  g_autoptr (xmlrpc_value) ocv = NULL;
  g_autoptr (GHashTable) oc = host_oc_parse (NULL);
  g_autofree char *label = NULL;
  g_autofree char *desc = NULL;
  g_autofree char *power = NULL;
  g_autofree char *vm_uuid = g_uuid_string_random ();
  g_autofree char *oc_text = NULL;
  struct state_vm vm = { 0 };
  int n;

  if (m == NULL || !xapi_is_record (c, args[1], "vm"))
    return NULL;
  label = xapi_member_string (c, args[1], "name_label");
  desc = xapi_member_string (c, args[1], "name_description");
  power = xapi_member_string (c, args[1], "power_state");
  xmlrpc_struct_find_value (c->env, args[1], "other_config", &ocv);
  xmlrpc_struct_find_value (c->env, args[1], "vbds", &vbds);
  if (xapi_failed (c))
    return NULL;
  if (ocv && !xapi_oc_from_xmlrpc (c, ocv, oc))
    return NULL;
  vm.uuid = vm_uuid;
  vm.name_label = label ? label : "";
  vm.name_description = desc ? desc : "";
  /* A halted VM's disks were copied, not mirrored: no server stays. */
  vm.power_state = g_strcmp0 (power, "Halted") == 0 ? "Halted" : "Running";
  vm.created = now_s ();
  vm.other_config = oc_text = host_oc_print (oc);
  if (state_vm_add (d->state, &vm) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the VM", NULL);
    return NULL;
  }
  /* Each disk becomes a VBD of the VM on its running nbdkit; its
   * forwarder goes, and its VDI is an ordinary VDI. */
  disks = state_list (d->state, "mdisks", "migration", m->uuid);
  for (guint i = 0; i < disks->len; i++) {
    g_autoptr (state_mdisk) md = state_mdisk_get (d->state, disks->pdata[i]);
    g_autofree char *vbd_uuid = g_uuid_string_random ();
    struct host_sr *s = NULL;
    struct sr_vdi *v;
    struct state_vbd b = { 0 };
    const char *mode = "RW";

    if (md == NULL)
      continue;
    n = vbds && xmlrpc_value_type (vbds) == XMLRPC_TYPE_ARRAY
            ? xmlrpc_array_size (c->env, vbds)
            : 0;
    for (int j = 0; j < n; j++) {
      g_autoptr (xmlrpc_value) e = NULL;
      g_autofree char *dev = NULL;
      g_autofree char *mo = NULL;

      xmlrpc_array_read_item (c->env, vbds, j, &e);
      if (e == NULL || xmlrpc_value_type (e) != XMLRPC_TYPE_STRUCT)
        continue;
      dev = xapi_member_string (c, e, "userdevice");
      mo = xapi_member_string (c, e, "mode");
      if (g_strcmp0 (dev, md->userdevice) == 0 && g_strcmp0 (mo, "RO") == 0)
        mode = "RO";
    }
    stop_forwarder (d, md, NBDKIT_STOP_GRACE);
    if (strcmp (vm.power_state, "Halted") == 0) {
      nbdkit_stop (md->pid, md->socket, md->control, NBDKIT_STOP_GRACE);
      g_clear_pointer (&md->socket, g_free);
      g_clear_pointer (&md->control, g_free);
      md->pid = 0;
    }
    if ((v = host_find_vdi (d, md->uuid, &s))) {
      sr_vdi_set_other_config (s->sr, v->uuid, MIGRATION_MARK, NULL);
      if (label)
        sr_vdi_set_name_label (s->sr, v->uuid, label);
      sr_vdi_free (v);
    }
    b.uuid = vbd_uuid;
    b.vm = vm_uuid;
    b.vdi = md->uuid;
    b.userdevice = md->userdevice;
    b.mode = (char *)mode;
    b.nbd_socket = md->socket;
    b.control_socket = md->control;
    b.pid = md->pid;
    state_vbd_add (d->state, &b);
    state_mdisk_remove (d->state, md->uuid);
  }
  {
    g_autofree char *psk_name = g_strconcat (m->uuid, ".psk", NULL);
    g_autofree char *psk = g_build_filename (d->run_dir, psk_name, NULL);

    unlink (psk);
  }
  g_free (m->state);
  m->state = g_strdup ("committed");
  state_migration_update (d->state, m);
  g_message ("migration %s: committed: VM %s (%s) runs here with %u disks",
             m->uuid, vm_uuid, vm.name_label, disks->len);
  return xapi_ref (c, vm_uuid);
}

void
xapi_migrations_expire (struct host *d, bool at_start)
{
  g_autoptr (GPtrArray) ids = state_list (d->state, "migrations", NULL, NULL);
  int64_t now = now_s ();

  for (guint i = 0; i < ids->len; i++) {
    g_autoptr (state_migration) m
        = state_migration_get (d->state, ids->pdata[i]);

    if (m == NULL)
      continue;
    if (strcmp (m->state, "prepared") == 0 && at_start) {
      /* We do not know what happened while we were away: the source
       * hears "the migration is over" at its next call, and undoes. */
      g_warning ("migration %s: prepared before a restart: aborted", m->uuid);
      drop_migration (d, m, "aborted");
    }
    else if (strcmp (m->state, "prepared") == 0
             && m->last_seen + SOURCE_SILENCE_LIMIT < now) {
      g_warning ("migration %s: no word from the source for %d s: aborted",
                 m->uuid, SOURCE_SILENCE_LIMIT);
      drop_migration (d, m, "aborted");
    }
    else if (strcmp (m->state, "prepared") != 0
             && m->expires + TOKEN_LIFETIME < now)
      state_migration_remove (d->state, m->uuid); /* long over */
  }
}

static const struct xapi_method methods[] = {
  { "check", 2, 2, true, migration_check },
  { "prepare", 2, 2, true, migration_prepare },
  { "keepalive", 1, 1, true, migration_keepalive },
  { "commit", 2, 2, true, migration_commit },
  { "abort", 1, 1, true, migration_abort },
  { NULL },
};

/* Called by the source daemon, authenticated by the token (not by a
 * session): the methods are listed in vdimotiond(8). */
const struct xapi_class xapi_class_migration = {
  .name = "migration",
  .methods = methods,
};
