/* The destination side of a cross-host migration (migrate-receive.h).
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
 * - Changed-block logs follow the VM's disks: once the source's mirrors
 *   are in sync it arms each disk with CBT (cbt_arm: an empty log here,
 *   which the disk's server marks from then on), and its commit carries
 *   the source's final logs, merged into ours (generation and
 *   predecessor theirs, bits the union), so the next backup after the
 *   move is still incremental.
 * - A token is refused when expired (before prepare), used twice, shown
 *   to another host, or wrong; each with its reason.
 * - A prepared migration whose source has gone quiet for 5 minutes (no
 *   call at all) is aborted, so a dead source never leaves VDIs here.
 */

#include <string.h>
#include <unistd.h>

#include "cbt.h"
#include "migrate-receive.h"
#include "nbdkit.h"

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
host_migration_psk (const char *secret)
{
  g_autofree char *in = g_strconcat ("vdimotion-nbd-psk:", secret, NULL);

  return g_compute_checksum_for_string (G_CHECKSUM_SHA256, in, -1);
}

char *
host_migration_write_psk (struct host *h, const char *name,
                          const char *secret, GError **error)
{
  g_autofree char *file = g_strconcat (name, ".psk", NULL);
  g_autofree char *path = g_build_filename (h->run_dir, file, NULL);
  g_autofree char *key = host_migration_psk (secret);
  g_autofree char *text = g_strdup_printf ("%s:%s\n", PSK_IDENTITY, key);

  /* The run dir is 0700; the file is written whole, then renamed. */
  if (!g_file_set_contents_full (path, text, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, error))
    return NULL;
  return g_steal_pointer (&path);
}

void
host_migration_export_free (struct host_migration_export *e)
{
  if (e == NULL)
    return;
  g_free (e->userdevice);
  g_free (e->vdi);
  g_free (e->uri);
  g_free (e->socket);
  g_free (e);
}

/* Token issue. */

GHashTable *
host_migration_issue (struct host *h, struct host_sr *sr, guint64 lifetime,
                      char ***err)
{
  guint8 raw[32];
  g_autoptr (GString) secret = g_string_new (NULL);
  g_autofree char *uuid = g_uuid_string_random ();
  g_autofree char *expires = NULL;
  g_autoptr (GDateTime) t = NULL;
  struct state_migration m = { 0 };
  GHashTable *tok;

  g_assert (lifetime >= 1 && lifetime <= HOST_MIGRATION_TOKEN_LIFETIME);
  if (h->migration_url == NULL) {
    host_err_set (err, "INTERNAL_ERROR",
                  "this host has no migration URL (see --migration-url)",
                  NULL);
    return NULL;
  }
  if (getentropy (raw, sizeof raw) == -1) {
    host_err_set (err, "INTERNAL_ERROR", "no randomness for the token", NULL);
    return NULL;
  }
  for (size_t i = 0; i < sizeof raw; i++)
    g_string_append_printf (secret, "%02x", raw[i]);
  explicit_bzero (raw, sizeof raw);
  m.uuid = uuid;
  m.secret_sha256
      = g_compute_checksum_for_string (G_CHECKSUM_SHA256, secret->str, -1);
  m.expires = now_s () + (int64_t)lifetime;
  m.sr = (char *)sr_get_uuid (sr->sr);
  m.state = "issued";
  m.last_seen = now_s ();
  if (state_migration_add (h->state, &m) == -1) {
    g_free (m.secret_sha256);
    explicit_bzero (secret->str, secret->len);
    host_err_set (err, "INTERNAL_ERROR", "cannot record the migration", NULL);
    return NULL;
  }
  g_free (m.secret_sha256);
  t = g_date_time_new_from_unix_utc (m.expires);
  expires = g_date_time_format (t, "%Y%m%dT%H:%M:%SZ");

  tok = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  g_hash_table_insert (tok, "url", g_strdup (h->migration_url));
  g_hash_table_insert (tok, "host", g_strdup (h->uuid));
  g_hash_table_insert (tok, "migration", g_strdup (uuid));
  g_hash_table_insert (tok, "secret", g_strdup (secret->str));
  g_hash_table_insert (tok, "expires", g_strdup (expires));
  g_hash_table_insert (tok, "sr", g_strdup (sr_get_uuid (sr->sr)));
  g_hash_table_insert (tok, "nbd-address", g_strdup (h->nbd_address));
  g_hash_table_insert (tok, "nbd-tls", g_strdup ("psk"));
  if (h->cert_sha256)
    g_hash_table_insert (tok, "tls-cert-sha256", g_strdup (h->cert_sha256));
  explicit_bzero (secret->str, secret->len);
  g_message ("migration %s: token issued (SR %s, until %s)", uuid, sr->name,
             expires);
  return tok;
}

/* The migration a token names, checked.  USE: the token is spent now
 * (prepare); else the migration must be prepared already (or may still
 * be only issued: check).  Its last_seen is brought up to now. */
enum token_use
{
  TOKEN_CHECK,   /* issued, unexpired, unspent */
  TOKEN_PREPARE, /* the same, and spend it */
  TOKEN_ACTIVE,  /* prepared (keepalive, commit, abort) */
};

static struct state_migration *
token_migration (struct host *h, const struct host_migration_token *tok,
                 enum token_use use, char ***err)
{
  g_autofree char *hash = NULL;
  struct state_migration *m = NULL;
  const char *id = tok->migration;
  const char *why = NULL;

  if (id == NULL || tok->secret == NULL || tok->host == NULL)
    why = "not a migration token";
  else if (strcmp (tok->host, h->uuid) != 0)
    why = "the token is for another host";
  else if (!sr_uuid_is_valid (id)
           || (m = state_migration_get (h->state, id)) == NULL)
    why = "no such migration";
  else {
    hash = g_compute_checksum_for_string (G_CHECKSUM_SHA256, tok->secret, -1);
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
  if (why) {
    g_message ("migration %s: token refused: %s", id ? id : "?", why);
    host_err_set (err, "MIGRATION_TOKEN_INVALID", why, NULL);
    state_migration_free (m);
    return NULL;
  }
  /* The source's sign of life: a missed record only brings the silence
   * limit nearer (host_migrations_expire). */
  m->last_seen = now_s ();
  if (state_migration_update (h->state, m) == -1)
    g_warning ("migration %s: cannot record the source's call", m->uuid);
  return m;
}

char *
host_migration_token_check (struct host *h,
                            const struct host_migration_token *tok,
                            bool prepared, char ***err)
{
  g_autoptr (state_migration) m
      = token_migration (h, tok, prepared ? TOKEN_ACTIVE : TOKEN_CHECK, err);

  return m ? g_strdup (m->sr) : NULL;
}

/* Disk R's SR (DEFAULT_SR if it names none), its format checked; NULL
 * with *ERR. */
static struct host_sr *
disk_sr (struct host *h, const char *default_sr,
         const struct host_migration_disk *r, char ***err)
{
  const char *sr = r->sr && *r->sr ? r->sr : default_sr;
  struct host_sr *s;

  if (r->format == NULL || vdisk_format_from_name (r->format) < 0) {
    host_err_set (err, "VDI_INCOMPATIBLE_TYPE", r->format ? r->format : "",
                  "format", NULL);
    return NULL;
  }
  if ((s = host_find_sr (h, sr)) == NULL)
    host_err_set (err, "HANDLE_INVALID", "SR", sr, NULL);
  return s;
}

int
host_migration_disk_check (struct host *h, const char *default_sr,
                           const struct host_migration_disk *d, char ***err)
{
  return disk_sr (h, default_sr, d, err) ? 0 : -1;
}

/* The SRs of DISKS (into SRS, N entries) checked: formats known, SRs
 * here, room for them.  -1 with *ERR. */
static int
check_disks (struct host *h, const struct state_migration *m,
             const struct host_migration_disk *disks, size_t n,
             struct host_sr **srs, char ***err)
{
  g_autoptr (GHashTable) need = g_hash_table_new (NULL, NULL);
  GHashTableIter it;
  gpointer k, val;

  for (size_t i = 0; i < n; i++) {
    const struct host_migration_disk *r = &disks[i];
    int format;

    if ((srs[i] = disk_sr (h, m->sr, r, err)) == NULL)
      return -1;
    format = vdisk_format_from_name (r->format);
    /* A raw image takes its whole size; sparse ones what the source's
     * occupies. */
    g_hash_table_insert (
        need, srs[i],
        GSIZE_TO_POINTER (GPOINTER_TO_SIZE (g_hash_table_lookup (need, srs[i]))
                          + (format == VDISK_FORMAT_RAW
                                 ? r->virtual_size
                                 : r->physical_utilisation)));
  }
  g_hash_table_iter_init (&it, need);
  while (g_hash_table_iter_next (&it, &k, &val)) {
    struct host_sr *s = k;
    struct sr_stat st;

    if (sr_stat (s->sr, &st) == 0 && st.free_bytes < GPOINTER_TO_SIZE (val)) {
      g_autofree char *ref = host_ref (sr_get_uuid (s->sr));
      g_autofree char *want
          = g_strdup_printf ("%" G_GSIZE_FORMAT, GPOINTER_TO_SIZE (val));

      host_err_set (err, "SR_FULL", ref, want, NULL);
      return -1;
    }
  }
  return 0;
}

/* Stop a disk's TLS forwarder.  It has no socket of its own, so
 * nbdkit_stop knows it by its pid file and leaves its log
 * (<vdi>-fwd.log) behind: that goes here. */
static void
stop_forwarder (struct host *h, const struct state_mdisk *md,
                int grace_seconds)
{
  g_autofree char *name
      = g_strconcat (md->uuid, FORWARDER_SUFFIX ".log", NULL);
  g_autofree char *log = g_build_filename (h->run_dir, name, NULL);

  nbdkit_stop (md->fwd_pid, md->fwd_pidfile, NULL, grace_seconds);
  unlink (log);
}

/* Undo a prepared (or half-prepared) migration: the forwarders and disk
 * servers stop, the new VDIs go.  A disk whose record cannot be removed
 * stays listed, so the next expiry tries it again. */
static void
drop_migration (struct host *h, struct state_migration *m, const char *state)
{
  g_autoptr (GPtrArray) disks
      = state_list (h->state, "mdisks", "migration", m->uuid);
  g_autofree char *psk_name = g_strconcat (m->uuid, ".psk", NULL);
  g_autofree char *psk = g_build_filename (h->run_dir, psk_name, NULL);
  bool all_gone = true;

  for (guint i = 0; i < disks->len; i++) {
    g_autoptr (state_mdisk) md = state_mdisk_get (h->state, disks->pdata[i]);
    struct host_sr *s = NULL;
    struct sr_vdi *v;

    if (md == NULL)
      continue;
    stop_forwarder (h, md, NBDKIT_STOP_NOW);
    nbdkit_stop (md->pid, md->socket, md->control, NBDKIT_STOP_NOW);
    if ((v = host_find_vdi (h, md->uuid, &s))) {
      if (sr_vdi_destroy (s->sr, v->uuid) == -1)
        g_warning ("migration %s: cannot remove VDI %s: %s", m->uuid, v->uuid,
                   sr_get_error ());
      sr_vdi_free (v);
    }
    if (state_mdisk_remove (h->state, md->uuid) == -1)
      all_gone = false;
  }
  unlink (psk);
  if (!all_gone) {
    g_warning ("migration %s: some disks' records stay; retried later",
               m->uuid);
    return;
  }
  g_free (m->state);
  m->state = g_strdup (state);
  if (state_migration_update (h->state, m) == -1)
    g_warning ("migration %s: cannot record it %s", m->uuid, state);
  else
    g_message ("migration %s: %s", m->uuid, state);
}

int
host_migration_check (struct host *h, const struct host_migration_token *tok,
                      const struct host_migration_disk *disks, size_t n,
                      char ***err)
{
  g_autoptr (state_migration) m = token_migration (h, tok, TOKEN_CHECK, err);
  g_autofree struct host_sr **srs = g_new0 (struct host_sr *, n + 1);

  if (m == NULL)
    return -1;
  return check_disks (h, m, disks, n, srs, err);
}

/* Record MD (replacing its row); false if it could not be. */
static bool
save_mdisk (struct host *h, const struct state_mdisk *md)
{
  return state_mdisk_remove (h->state, md->uuid) == 0
         && state_mdisk_add (h->state, md) == 0;
}

/* Create, serve and export one disk into S; NULL with *ERR. */
static struct host_migration_export *
prepare_disk (struct host *h, struct state_migration *m,
              const struct host_migration_disk *r, struct host_sr *s,
              const char *psk, char ***err)
{
  struct sr_vdi_create_params params = { 0 };
  struct sr_vdi *v
      = sr_vdi_create (s->sr, "", vdisk_format_from_name (r->format),
                       r->virtual_size, &params);
  g_autofree char *fwd_name = NULL;
  g_autoptr (GError) error = NULL;
  struct nbdkit_served sv = { 0 };
  struct nbdkit_forward fw = { 0 };
  struct state_mdisk md = { 0 };
  struct host_migration_export *e;

  if (v == NULL) {
    host_err_sr (err, "SR", sr_get_uuid (s->sr), "migration.prepare");
    return NULL;
  }
  md.uuid = v->uuid;
  md.migration = m->uuid;
  md.userdevice = r->userdevice;
  /* Recorded before anything runs, so an abort finds the VDI. */
  if (sr_vdi_set_other_config (s->sr, v->uuid, MIGRATION_MARK, m->uuid) == -1
      || state_mdisk_add (h->state, &md) == -1) {
    host_err_set (err, "INTERNAL_ERROR", "cannot record the new disk", NULL);
    if (sr_vdi_destroy (s->sr, v->uuid) == -1)
      g_warning ("migration %s: cannot remove VDI %s: %s", m->uuid, v->uuid,
                 sr_get_error ());
    sr_vdi_free (v);
    return NULL;
  }
  fwd_name = g_strconcat (v->uuid, FORWARDER_SUFFIX, NULL);
  if (nbdkit_serve_image (h, v->uuid, s, v, true, false, &sv, &error) == -1
      || nbdkit_serve_forward (h, fwd_name, sv.socket, psk, h->nbd_address,
                               &fw, &error)
             == -1) {
    if (sv.pid) {
      md.socket = sv.socket;
      md.control = sv.control;
      md.pid = sv.pid;
      if (!save_mdisk (h, &md)) {
        /* The abort would not find this server: stop it now. */
        nbdkit_stop (sv.pid, sv.socket, sv.control, NBDKIT_STOP_NOW);
      }
    }
    host_err_set (err, "INTERNAL_ERROR", error->message, NULL);
    g_free (sv.socket);
    g_free (sv.control);
    sr_vdi_free (v);
    return NULL;
  }
  md.socket = sv.socket;
  md.control = sv.control;
  md.pid = sv.pid;
  md.fwd_pidfile = fw.pidfile;
  md.fwd_pid = fw.pid;
  md.fwd_port = fw.port;
  if (!save_mdisk (h, &md)) {
    nbdkit_stop (fw.pid, fw.pidfile, NULL, NBDKIT_STOP_NOW);
    nbdkit_stop (sv.pid, sv.socket, sv.control, NBDKIT_STOP_NOW);
    host_err_set (err, "INTERNAL_ERROR", "cannot record the disk's servers",
                  NULL);
    g_free (sv.socket);
    g_free (sv.control);
    g_free (fw.pidfile);
    sr_vdi_free (v);
    return NULL;
  }

  e = g_new0 (struct host_migration_export, 1);
  e->userdevice = g_strdup (r->userdevice);
  e->vdi = g_strdup (v->uuid);
  if (strchr (h->nbd_address, ':'))
    e->uri = g_strdup_printf ("nbds://" PSK_IDENTITY "@[%s]:%d/",
                              h->nbd_address, fw.port);
  else
    e->uri = g_strdup_printf ("nbds://" PSK_IDENTITY "@%s:%d/",
                              h->nbd_address, fw.port);
  e->socket = sv.socket;
  g_free (sv.control);
  g_free (fw.pidfile);
  sr_vdi_free (v);
  return e;
}

GPtrArray *
host_migration_prepare (struct host *h, const struct host_migration_token *tok,
                        const struct host_migration_disk *disks, size_t n,
                        char ***err)
{
  g_autoptr (state_migration) m = token_migration (h, tok, TOKEN_PREPARE, err);
  g_autofree struct host_sr **srs = g_new0 (struct host_sr *, n + 1);
  g_autoptr (GPtrArray) out = NULL;
  g_autofree char *psk = NULL;
  g_autoptr (GError) error = NULL;

  if (m == NULL || check_disks (h, m, disks, n, srs, err) == -1)
    return NULL;
  /* Spent from here on: a second prepare is refused. */
  g_free (m->state);
  m->state = g_strdup ("prepared");
  if (state_migration_update (h->state, m) == -1) {
    host_err_set (err, "INTERNAL_ERROR", "cannot record the migration", NULL);
    return NULL;
  }
  psk = host_migration_write_psk (h, m->uuid, tok->secret, &error);
  if (psk == NULL) {
    host_err_set (err, "INTERNAL_ERROR", error->message, NULL);
    drop_migration (h, m, "aborted");
    return NULL;
  }
  /* Spent before any disk exists: a second prepare finds it so. */
  g_assert (strcmp (m->state, "prepared") == 0);
  out = g_ptr_array_new_with_free_func (
      (GDestroyNotify)host_migration_export_free);
  for (size_t i = 0; i < n; i++) {
    struct host_migration_export *e
        = prepare_disk (h, m, &disks[i], srs[i], psk, err);

    if (e == NULL) {
      drop_migration (h, m, "aborted");
      return NULL;
    }
    g_ptr_array_add (out, e);
  }
  g_message ("migration %s: prepared %zu disks", m->uuid, n);
  return g_steal_pointer (&out);
}

int
host_migration_keepalive (struct host *h,
                          const struct host_migration_token *tok, char ***err)
{
  g_autoptr (state_migration) m = token_migration (h, tok, TOKEN_ACTIVE, err);

  return m ? 0 : -1;
}

int
host_migration_abort (struct host *h, const struct host_migration_token *tok,
                      char ***err)
{
  g_autoptr (state_migration) m = token_migration (h, tok, TOKEN_ACTIVE, err);

  if (m == NULL)
    return -1;
  drop_migration (h, m, "aborted");
  return 0;
}

int
host_migration_cbt_arm (struct host *h, const struct host_migration_token *tok,
                        const char *const *userdevices, size_t n, char ***err)
{
  g_autoptr (state_migration) m = token_migration (h, tok, TOKEN_ACTIVE, err);
  g_autoptr (GPtrArray) disks = NULL;
  g_autoptr (GError) error = NULL;
  int r = 0;

  if (m == NULL)
    return -1;
  disks = state_list (h->state, "mdisks", "migration", m->uuid);
  for (guint i = 0; i < disks->len && r == 0; i++) {
    g_autoptr (state_mdisk) md = state_mdisk_get (h->state, disks->pdata[i]);
    struct host_sr *s = NULL;
    struct sr_vdi *v;
    bool wanted = false;

    for (size_t j = 0; md && j < n && !wanted; j++)
      wanted = g_strcmp0 (md->userdevice, userdevices[j]) == 0;
    if (!wanted || (v = host_find_vdi (h, md->uuid, &s)) == NULL)
      continue;
    if (sr_vdi_enable_cbt (s->sr, v->uuid) == -1) {
      host_err_set (err, "INTERNAL_ERROR", sr_get_error (), NULL);
      r = -1;
    }
    else if (!host_cbt_open_on (s, v->uuid, md->control, &error)) {
      host_err_set (err, "INTERNAL_ERROR", error->message, NULL);
      r = -1;
    }
    sr_vdi_free (v);
  }
  return r;
}

/* The source's log of MD's disk, if it sent one, into the new VDI V. */
static void
take_cbt_log (struct host_sr *s, const struct sr_vdi *v,
              const struct state_mdisk *md, GHashTable *logs)
{
  GBytes *b = logs ? g_hash_table_lookup (logs, md->userdevice) : NULL;
  gsize len;
  const uint8_t *bytes = b ? g_bytes_get_data (b, &len) : NULL;

  if (bytes && sr_vdi_cbt_merge (s->sr, v->uuid, bytes, len) == -1)
    g_warning ("VDI %s: the source's changed-block log is not taken (the "
               "next backup is full): %s",
               v->uuid, sr_get_error ());
}

/* What MD's disk was on the source, if it said, into the new VDI V's
 * other_config (host.h: HOST_MOVED_FROM). */
static void
take_moved_from (struct host_sr *s, const struct sr_vdi *v,
                 const struct state_mdisk *md, GHashTable *moved_from)
{
  const char *was
      = moved_from ? g_hash_table_lookup (moved_from, md->userdevice) : NULL;

  if (was && *was
      && sr_vdi_set_other_config (s->sr, v->uuid, HOST_MOVED_FROM, was) == -1)
    g_warning ("VDI %s: does not record what it was (%s): %s", v->uuid, was,
               sr_get_error ());
}

/* A record of the snapshot MD's log counts from, if the source named
 * one, in V's SR (snapshot_of V): see host_migration_vm. */
static void
take_cbt_predecessor (struct host *h, struct host_sr *s, const struct sr_vdi *v,
                      const struct state_mdisk *md,
                      const struct host_migration_vm *in)
{
  const char *uuid = in->cbt_predecessor ? g_hash_table_lookup (
                         in->cbt_predecessor, md->userdevice)
                                         : NULL;
  const char *name = in->cbt_predecessor_name ? g_hash_table_lookup (
                         in->cbt_predecessor_name, md->userdevice)
                                              : NULL;
  const char *time = in->cbt_predecessor_time ? g_hash_table_lookup (
                         in->cbt_predecessor_time, md->userdevice)
                                              : NULL;
  struct sr_vdi *p;

  if (uuid == NULL || *uuid == '\0')
    return;
  if ((p = host_find_vdi (h, uuid, NULL)) == NULL)
    p = sr_vdi_create_cbt_metadata (
        s->sr, uuid, name, v->uuid,
        time ? g_ascii_strtoll (time, NULL, 10) : 0, v->virtual_size);
  if (p == NULL)
    g_warning ("VDI %s: no record of snapshot %s, its log's predecessor "
               "(the next backup is full): %s",
               v->uuid, uuid, sr_get_error ());
  sr_vdi_free (p);
}

char *
host_migration_commit (struct host *h, const struct host_migration_token *tok,
                       const struct host_migration_vm *in, char ***err)
{
  g_autoptr (state_migration) m = token_migration (h, tok, TOKEN_ACTIVE, err);
  g_autoptr (GPtrArray) disks = NULL;
  g_autoptr (GHashTable) oc = host_oc_parse (NULL);
  g_autofree char *vm_uuid = g_uuid_string_random ();
  g_autofree char *oc_text = NULL;
  struct state_vm vm = { 0 };
  bool all_recorded = true;

  if (m == NULL)
    return NULL;
  if (in->other_config) {
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init (&it, in->other_config);
    while (g_hash_table_iter_next (&it, &k, &v))
      g_hash_table_replace (oc, g_strdup (k), g_strdup (v));
  }
  vm.uuid = vm_uuid;
  vm.name_label = (char *)(in->name_label ? in->name_label : "");
  vm.name_description
      = (char *)(in->name_description ? in->name_description : "");
  /* A halted VM's disks were copied, not mirrored: no server stays. */
  vm.power_state
      = g_strcmp0 (in->power_state, "Halted") == 0 ? "Halted" : "Running";
  vm.created = now_s ();
  vm.other_config = oc_text = host_oc_print (oc);
  if (state_vm_add (h->state, &vm) == -1) {
    host_err_set (err, "INTERNAL_ERROR", "cannot record the VM", NULL);
    return NULL;
  }
  /* Each disk becomes a VBD of the VM on its running nbdkit; its
   * forwarder goes, and its VDI is an ordinary VDI. */
  disks = state_list (h->state, "mdisks", "migration", m->uuid);
  for (guint i = 0; i < disks->len; i++) {
    g_autoptr (state_mdisk) md = state_mdisk_get (h->state, disks->pdata[i]);
    g_autofree char *vbd_uuid = g_uuid_string_random ();
    struct host_sr *s = NULL;
    struct sr_vdi *v;
    struct state_vbd b = { 0 };
    bool ro;

    if (md == NULL)
      continue;
    ro = in->read_only && g_hash_table_contains (in->read_only, md->userdevice);
    stop_forwarder (h, md, NBDKIT_STOP_GRACE);
    if (strcmp (vm.power_state, "Halted") == 0) {
      nbdkit_stop (md->pid, md->socket, md->control, NBDKIT_STOP_GRACE);
      g_clear_pointer (&md->socket, g_free);
      g_clear_pointer (&md->control, g_free);
      md->pid = 0;
    }
    if ((v = host_find_vdi (h, md->uuid, &s))) {
      take_cbt_log (s, v, md, in->cbt_logs);
      take_moved_from (s, v, md, in->moved_from);
      take_cbt_predecessor (h, s, v, md, in);
      if (sr_vdi_set_other_config (s->sr, v->uuid, MIGRATION_MARK, NULL)
          == -1)
        g_warning ("VDI %s keeps its migration mark: %s", v->uuid,
                   sr_get_error ());
      if (in->name_label
          && sr_vdi_set_name_label (s->sr, v->uuid, in->name_label) == -1)
        g_warning ("VDI %s keeps its name: %s", v->uuid, sr_get_error ());
      sr_vdi_free (v);
    }
    b.uuid = vbd_uuid;
    b.vm = vm_uuid;
    b.vdi = md->uuid;
    b.userdevice = md->userdevice;
    b.mode = (char *)(ro ? "RO" : "RW");
    b.nbd_socket = md->socket;
    b.control_socket = md->control;
    b.pid = md->pid;
    if (state_vbd_add (h->state, &b) == -1
        || state_mdisk_remove (h->state, md->uuid) == -1)
      all_recorded = false;
  }
  {
    g_autofree char *psk_name = g_strconcat (m->uuid, ".psk", NULL);
    g_autofree char *psk = g_build_filename (h->run_dir, psk_name, NULL);

    unlink (psk);
  }
  g_free (m->state);
  m->state = g_strdup ("committed");
  if (!all_recorded || state_migration_update (h->state, m) == -1) {
    /* The VM runs here now (the source let go of it): say what is
     * missing rather than pretend. */
    host_err_set (err, "INTERNAL_ERROR",
                  "the VM is here but its records are incomplete", NULL);
    return NULL;
  }
  g_message ("migration %s: committed: VM %s (%s) runs here with %u disks",
             m->uuid, vm_uuid, vm.name_label, disks->len);
  return g_steal_pointer (&vm_uuid);
}

void
host_migrations_expire (struct host *h, bool at_start)
{
  g_autoptr (GPtrArray) ids = state_list (h->state, "migrations", NULL, NULL);
  int64_t now = now_s ();

  for (guint i = 0; i < ids->len; i++) {
    g_autoptr (state_migration) m
        = state_migration_get (h->state, ids->pdata[i]);

    if (m == NULL)
      continue;
    if (strcmp (m->state, "prepared") == 0 && at_start) {
      /* We do not know what happened while we were away: the source
       * hears "the migration is over" at its next call, and undoes. */
      g_warning ("migration %s: prepared before a restart: aborted", m->uuid);
      drop_migration (h, m, "aborted");
    }
    else if (strcmp (m->state, "prepared") == 0
             && m->last_seen + SOURCE_SILENCE_LIMIT < now) {
      g_warning ("migration %s: no word from the source for %d s: aborted",
                 m->uuid, SOURCE_SILENCE_LIMIT);
      drop_migration (h, m, "aborted");
    }
    else if (strcmp (m->state, "prepared") != 0
             && m->expires + HOST_MIGRATION_TOKEN_LIFETIME < now
             && state_migration_remove (h->state, m->uuid) == -1)
      g_warning ("migration %s: long over, but its record stays", m->uuid);
  }
}
