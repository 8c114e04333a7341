/* VDIs served over TLS NBD for VDI.get_nbd_info (nbd-exports.h). */

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "nbd-exports.h"
#include "nbdkit.h"

/* The run-dir names of exports: "nbd-<vdi uuid>-<port>" (.pid, .log). */
#define EXPORT_PREFIX "nbd-"
#define TOKEN_BYTES 32

struct nbd_export
{
  char *session;
  char *vdi;
  char *token;
  struct nbdkit_forward nbdkit; /* its pid, port and pid file */
};

struct nbd_exports
{
  struct host *host;
  char *address;
  int first_port, last_port;
  char *certs_dir; /* <run-dir>/nbd-tls */
  char *cert_pem;
  char *subject;
  GMutex lock;
  GPtrArray *exports; /* struct nbd_export *, under lock */
};

/* Stop X's nbdkit; its pid file names it (nbdkit.h), its log goes too. */
static void
export_stop (struct nbd_export *x)
{
  g_autofree char *base = NULL;
  g_autofree char *log = NULL;

  if (x->nbdkit.pidfile == NULL)
    return;
  nbdkit_stop (x->nbdkit.pid, x->nbdkit.pidfile, NULL, NBDKIT_STOP_NOW);
  base = g_strndup (x->nbdkit.pidfile,
                    strlen (x->nbdkit.pidfile) - strlen (".pid"));
  log = g_strconcat (base, ".log", NULL);
  unlink (log);
  g_message ("NBD export of VDI %s on port %d stopped", x->vdi,
             x->nbdkit.port);
}

static void
export_free (struct nbd_export *x)
{
  if (x->token)
    memset (x->token, 0, strlen (x->token));
  g_free (x->session);
  g_free (x->vdi);
  g_free (x->token);
  g_free (x->nbdkit.pidfile);
  g_free (x);
}

/* Link PATH (made absolute) as NAME in DIR. */
static bool
link_as (const char *dir, const char *name, const char *path, GError **error)
{
  g_autofree char *abs = g_canonicalize_filename (path, NULL);
  g_autofree char *link = g_build_filename (dir, name, NULL);

  unlink (link);
  if (symlink (abs, link) == -1) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno),
                 "%s: %s", link, g_strerror (errno));
    return false;
  }
  return true;
}

/* nbdkit-tls(1)'s directory: server-cert.pem, server-key.pem and
 * ca-cert.pem (which nbdkit insists on; it verifies clients with it
 * only under --tls-verify-peer, which exports do not ask). */
static bool
make_certs_dir (struct nbd_exports *e, const struct nbd_exports_config *cfg,
                GError **error)
{
  if (g_mkdir_with_parents (e->certs_dir, 0700) == -1) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno),
                 "%s: %s", e->certs_dir, g_strerror (errno));
    return false;
  }
  return link_as (e->certs_dir, "server-cert.pem", cfg->cert_file, error)
         && link_as (e->certs_dir, "server-key.pem", cfg->key_file, error)
         && link_as (e->certs_dir, "ca-cert.pem", cfg->cert_file, error);
}

/* CN's value in an RFC 4514 name ("CN=host,O=org"), or NULL. */
static char *
common_name (const char *dn)
{
  g_auto (GStrv) parts = dn ? g_strsplit (dn, ",", -1) : NULL;

  for (char **p = parts; p && *p; p++) {
    const char *rdn = g_strstrip (*p);

    if (g_ascii_strncasecmp (rdn, "CN=", 3) == 0)
      return g_strdup (rdn + 3);
  }
  return NULL;
}

/* What get_nbd_info says of the certificate: the PEM of the server's
 * own certificate, and its subject as xapi gives it (the first DNS name
 * of subjectAltName; here, lacking one, the CN). */
static bool
read_certificate (struct nbd_exports *e, const char *path, GError **error)
{
  g_autoptr (GTlsCertificate) cert
      = g_tls_certificate_new_from_file (path, error);
  g_autoptr (GPtrArray) names = NULL;
  g_autofree char *dn = NULL;

  if (cert == NULL) {
    g_prefix_error (error, "%s: ", path);
    return false;
  }
  g_object_get (cert, "certificate-pem", &e->cert_pem, NULL);
  names = g_tls_certificate_get_dns_names (cert);
  if (names && names->len) {
    GBytes *b = names->pdata[0];
    gsize len;
    const char *s = g_bytes_get_data (b, &len);

    e->subject = g_strndup (s, len);
  }
  else {
    dn = g_tls_certificate_get_subject_name (cert);
    e->subject = common_name (dn);
  }
  if (e->subject == NULL)
    e->subject = g_strdup ("");
  return true;
}

/* Exports a previous run left behind: stopped (nbd-exports.h). */
static void
stop_leftovers (struct nbd_exports *e)
{
  g_autoptr (GDir) dir = g_dir_open (e->host->run_dir, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir))) {
    struct nbd_export x = { 0 };
    g_autofree char *text = NULL;
    guint64 pid;

    if (!g_str_has_prefix (name, EXPORT_PREFIX)
        || !g_str_has_suffix (name, ".pid"))
      continue;
    x.nbdkit.pidfile = g_build_filename (e->host->run_dir, name, NULL);
    if (g_file_get_contents (x.nbdkit.pidfile, &text, NULL, NULL)
        && g_ascii_string_to_unsigned (g_strstrip (text), 10, 2, G_MAXINT32,
                                       &pid, NULL))
      x.nbdkit.pid = (pid_t)pid;
    x.vdi = g_strndup (name + strlen (EXPORT_PREFIX), 36);
    export_stop (&x);
    g_free (x.vdi);
    g_free (x.nbdkit.pidfile);
  }
}

struct nbd_exports *
nbd_exports_new (struct host *h, const struct nbd_exports_config *cfg,
                 GError **error)
{
  struct nbd_exports *e = g_new0 (struct nbd_exports, 1);

  e->host = h;
  e->address = g_strdup (cfg->address);
  e->first_port = cfg->first_port;
  e->last_port = cfg->last_port;
  e->certs_dir = g_build_filename (h->run_dir, "nbd-tls", NULL);
  g_mutex_init (&e->lock);
  e->exports = g_ptr_array_new_with_free_func ((GDestroyNotify)export_free);
  stop_leftovers (e);
  if (!read_certificate (e, cfg->cert_file, error)
      || !make_certs_dir (e, cfg, error)) {
    nbd_exports_free (e);
    return NULL;
  }
  return e;
}

void
nbd_exports_free (struct nbd_exports *e)
{
  if (e == NULL)
    return;
  for (guint i = 0; i < e->exports->len; i++)
    export_stop (e->exports->pdata[i]);
  g_ptr_array_unref (e->exports);
  g_mutex_clear (&e->lock);
  g_free (e->address);
  g_free (e->certs_dir);
  g_free (e->cert_pem);
  g_free (e->subject);
  g_free (e);
}

void
nbd_export_info_clear (struct nbd_export_info *info)
{
  g_free (info->address);
  g_free (info->cert);
  if (info->exportname)
    memset (info->exportname, 0, strlen (info->exportname));
  g_free (info->exportname);
  g_free (info->subject);
  memset (info, 0, sizeof *info);
}

static void
fill_info (struct nbd_exports *e, const struct nbd_export *x,
           struct nbd_export_info *out)
{
  out->address = g_strdup (e->address);
  out->port = x->nbdkit.port;
  out->cert = g_strdup (e->cert_pem);
  out->exportname = g_strdup (x->token);
  out->subject = g_strdup (e->subject);
}

/* A fresh token: TOKEN_BYTES from the kernel's generator, in hex. */
static char *
new_token (void)
{
  guint8 bytes[TOKEN_BYTES];
  GString *s = g_string_sized_new (2 * TOKEN_BYTES);
  g_autoptr (GRand) fallback = NULL;

  if (getentropy (bytes, sizeof bytes) == -1) {
    /* Only on a kernel without getrandom(2): GRand seeds from
     * /dev/urandom. */
    fallback = g_rand_new ();
    for (size_t i = 0; i < sizeof bytes; i++)
      bytes[i] = (guint8)g_rand_int (fallback);
  }
  for (size_t i = 0; i < sizeof bytes; i++)
    g_string_append_printf (s, "%02x", bytes[i]);
  explicit_bzero (bytes, sizeof bytes);
  return g_string_free (s, FALSE);
}

/* Is PORT used by one of our exports?  Under e->lock. */
static bool
port_used (struct nbd_exports *e, int port)
{
  for (guint i = 0; i < e->exports->len; i++)
    if (((struct nbd_export *)e->exports->pdata[i])->nbdkit.port == port)
      return true;
  return false;
}

/* Start X's nbdkit on the first port of the range that is ours to take
 * and that nbdkit can bind.  Under e->lock.  -1 with *ERR. */
static int
export_start (struct nbd_exports *e, struct nbd_export *x, struct host_sr *s,
              const struct sr_vdi *v, char ***err)
{
  g_autoptr (GError) error = NULL;

  for (int port = e->first_port; port <= e->last_port; port++) {
    g_autofree char *name = NULL;
    bool busy = false;

    if (port_used (e, port))
      continue;
    name = g_strdup_printf (EXPORT_PREFIX "%s-%d", v->uuid, port);
    g_clear_error (&error);
    if (nbdkit_serve_tls_export (e->host, name, s, v, e->certs_dir,
                                 e->address, port, x->token, &x->nbdkit,
                                 &busy, &error)
        == 0)
      return 0;
    if (!busy)
      break;
  }
  if (error)
    host_err_set (err, "INTERNAL_ERROR", error->message, NULL);
  else {
    g_autofree char *why = g_strdup_printf (
        "no free NBD port in %d-%d on %s (nbd-ports)", e->first_port,
        e->last_port, e->address);

    host_err_set (err, "INTERNAL_ERROR", why, NULL);
  }
  return -1;
}

int
nbd_exports_serve (struct nbd_exports *e, const char *session,
                   const char *uuid, struct nbd_export_info *out, char ***err)
{
  struct host_sr *s = NULL;
  struct sr_vdi *v = host_find_vdi (e->host, uuid, &s);
  g_autofree char *ref = host_ref (uuid);
  struct nbd_export *x;
  int r = -1;

  if (v == NULL || !v->managed) {
    host_err_set (err, "HANDLE_INVALID", "VDI", ref, NULL);
    goto out;
  }
  if (v->cbt_metadata) { /* no data left to serve */
    host_err_set (err, "VDI_INCOMPATIBLE_TYPE", ref, "cbt_metadata", NULL);
    goto out;
  }
  g_mutex_lock (&e->lock);
  for (guint i = 0; i < e->exports->len; i++) {
    x = e->exports->pdata[i];
    if (strcmp (x->session, session) == 0 && strcmp (x->vdi, uuid) == 0
        && nbdkit_serving (x->nbdkit.pid, x->nbdkit.pidfile)) {
      fill_info (e, x, out);
      r = 0;
      break;
    }
  }
  if (r == -1) {
    x = g_new0 (struct nbd_export, 1);
    x->session = g_strdup (session);
    x->vdi = g_strdup (uuid);
    x->token = new_token ();
    if (export_start (e, x, s, v, err) == 0) {
      g_ptr_array_add (e->exports, x);
      fill_info (e, x, out);
      r = 0;
    }
    else
      export_free (x);
  }
  g_mutex_unlock (&e->lock);
out:
  sr_vdi_free (v);
  return r;
}

/* Stop and forget the exports for which MATCH (X, KEY) holds. */
static void
end_matching (struct nbd_exports *e,
              bool (*match) (const struct nbd_export *x, const char *key),
              const char *key)
{
  if (e == NULL)
    return;
  g_mutex_lock (&e->lock);
  for (guint i = e->exports->len; i-- > 0;) {
    struct nbd_export *x = e->exports->pdata[i];

    if (match (x, key)) {
      export_stop (x);
      g_ptr_array_remove_index (e->exports, i);
    }
  }
  g_mutex_unlock (&e->lock);
}

static bool
of_session (const struct nbd_export *x, const char *session)
{
  return strcmp (x->session, session) == 0;
}

static bool
of_vdi (const struct nbd_export *x, const char *uuid)
{
  return strcmp (x->vdi, uuid) == 0;
}

void
nbd_exports_end_session (struct nbd_exports *e, const char *session)
{
  end_matching (e, of_session, session);
}

void
nbd_exports_end_vdi (struct nbd_exports *e, const char *uuid)
{
  end_matching (e, of_vdi, uuid);
}
