/* vdimotiond: the host daemon (DESIGN.md §1): the XenAPI face over the
 * SRs it is given (sessions, host, network, SR, VDI, VM, VBD, task), the
 * VMs' disk servers, and the jobs that copy and move VDIs.  Its own state
 * is durable (state.h); at start it takes back the sessions, checks the
 * running VMs' nbdkits and resumes or cleans up the jobs a previous run
 * left, before it serves anyone.
 *
 * Configuration comes from --config FILE (GKeyFile, vdimotiond.conf(5));
 * flags override it.  Without --foreground the daemon forks and the parent
 * exits once the child is listening (or with the child's error). */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib.h>
#include <gio/gio.h>

#include "backup.h"
#include "cbt.h"
#include "live-snapshot.h"
#include "xapi-client.h"
#include "xapi.h"

#define DEFAULT_LISTEN "127.0.0.1:80"
#define DEFAULT_STATE_DIR "/var/lib/vdimotion"
#define DEFAULT_MAX_REQUEST_SIZE (16 * 1024 * 1024)
#define DEFAULT_MAX_STORAGE_OPERATIONS 3
#define DEFAULT_NBDKIT "nbdkit"
#define DEFAULT_VDI_PLUGIN NBDKIT_PLUGINDIR "/nbdkit-vdi-plugin.so"
#define DEFAULT_MIRROR_FILTER NBDKIT_FILTERDIR "/nbdkit-mirror-filter.so"
#define DEFAULT_MEMORY_MIGRATOR "vdimotion-mm-none"
/* How long a start waits for the locks (host_open) and the listening
 * port of a previous daemon that is still exiting, e.g. right after a
 * kill -9. */
#define LOCK_WAIT_SECONDS 30
#define PORT_WAIT_SECONDS 5

struct options
{
  char *config;
  char *listen;
  char *listen_https;
  char *state_dir;
  char **srs; /* NAME=PATH */
  char **backup_repos; /* NAME=DIR */
  char *auth_file;
  char *tls_cert;
  char *tls_key;
  char *name_label;
  char *nbdkit;
  char *vdi_plugin;
  char *mirror_filter;
  char *migration_url;
  char *migration_address;
  char *memory_migrator;
  char *nbd_ports; /* FIRST-LAST */
  int nbd_first_port, nbd_last_port; /* read from it */
  gint64 max_request_size;
  gint64 max_storage_operations;
  gboolean foreground;
  gboolean hash_password;
};

static void
options_clear (struct options *o)
{
  g_free (o->config);
  g_free (o->listen);
  g_free (o->listen_https);
  g_free (o->state_dir);
  g_strfreev (o->srs);
  g_strfreev (o->backup_repos);
  g_free (o->auth_file);
  g_free (o->tls_cert);
  g_free (o->tls_key);
  g_free (o->name_label);
  g_free (o->nbdkit);
  g_free (o->vdi_plugin);
  g_free (o->mirror_filter);
  g_free (o->migration_url);
  g_free (o->migration_address);
  g_free (o->memory_migrator);
  g_free (o->nbd_ports);
}

/* Fill what the flags left unset from [daemon] of the config file; the
 * [sr:NAME] groups are added after the --sr ones. */
static int
read_config (struct options *o, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_auto (GStrv) groups = NULL;
  g_autoptr (GPtrArray) srs = g_ptr_array_new_with_free_func (g_free);
  struct
  {
    const char *key;
    char **dest;
  } strings[] = {
    { "listen", &o->listen },         { "listen-https", &o->listen_https },
    { "state-dir", &o->state_dir },   { "auth-file", &o->auth_file },
    { "tls-cert", &o->tls_cert },     { "tls-key", &o->tls_key },
    { "name-label", &o->name_label }, { "nbdkit", &o->nbdkit },
    { "vdi-plugin", &o->vdi_plugin }, { "mirror-filter", &o->mirror_filter },
    { "nbd-ports", &o->nbd_ports },
  };
  struct
  {
    const char *key;
    char **dest;
  } migration[] = {
    { "url", &o->migration_url },
    { "nbd-address", &o->migration_address },
    { "memory-migrator", &o->memory_migrator },
  };
  struct
  {
    const char *key;
    gint64 *dest;
  } ints[] = {
    { "max-request-size", &o->max_request_size },
    { "max-storage-operations", &o->max_storage_operations },
  };

  if (!g_key_file_load_from_file (kf, o->config, G_KEY_FILE_NONE, error)) {
    g_prefix_error (error, "%s: ", o->config);
    return -1;
  }
  for (size_t i = 0; i < G_N_ELEMENTS (strings); i++)
    if (*strings[i].dest == NULL)
      *strings[i].dest
          = g_key_file_get_string (kf, "daemon", strings[i].key, NULL);
  for (size_t i = 0; i < G_N_ELEMENTS (migration); i++)
    if (*migration[i].dest == NULL)
      *migration[i].dest
          = g_key_file_get_string (kf, "migration", migration[i].key, NULL);
  for (size_t i = 0; i < G_N_ELEMENTS (ints); i++) {
    GError *e = NULL;

    if (*ints[i].dest != 0
        || !g_key_file_has_key (kf, "daemon", ints[i].key, NULL))
      continue;
    *ints[i].dest = g_key_file_get_int64 (kf, "daemon", ints[i].key, &e);
    if (e) {
      g_propagate_prefixed_error (error, e, "%s: ", o->config);
      return -1;
    }
  }

  if (!o->backup_repos)
    o->backup_repos = g_key_file_get_string_list (kf, "daemon", "backup-repo",
                                                  NULL, NULL);
  for (char **s = o->srs; s && *s; s++)
    g_ptr_array_add (srs, g_strdup (*s));
  groups = g_key_file_get_groups (kf, NULL);
  for (char **g = groups; *g; g++) {
    g_autofree char *path = NULL;
    g_autofree char *type = NULL;

    if (!g_str_has_prefix (*g, "sr:"))
      continue;
    type = g_key_file_get_string (kf, *g, "type", NULL);
    if (type && strcmp (type, "file") != 0) {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "%s: [%s]: type %s: only file SRs exist", o->config, *g,
                   type);
      return -1;
    }
    path = g_key_file_get_string (kf, *g, "path", error);
    if (path == NULL) {
      g_prefix_error (error, "%s: ", o->config);
      return -1;
    }
    g_ptr_array_add (srs, g_strdup_printf ("%s=%s", *g + 3, path));
  }
  g_ptr_array_add (srs, NULL);
  g_strfreev (o->srs);
  o->srs = (char **)g_ptr_array_steal (srs, NULL);
  return 0;
}

/* The table of --backup-repo NAME=DIR words: NAME a plain name (it is
 * a URL's path segment, never a path), DIR an existing directory. */
static GHashTable *
backup_repos (char **words, GError **error)
{
  g_autoptr (GHashTable) t
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  for (char **w = words; w && *w; w++) {
    const char *eq = strchr (*w, '=');
    g_autofree char *name = eq ? g_strndup (*w, eq - *w) : NULL;

    if (!name || !backup_name_is_safe (name) || !eq[1]) {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--backup-repo %s: not NAME=DIR with NAME of "
                   "[A-Za-z0-9._-] (not starting with a dot)",
                   *w);
      return NULL;
    }
    if (!g_file_test (eq + 1, G_FILE_TEST_IS_DIR)) {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--backup-repo %s: %s is not a directory", *w, eq + 1);
      return NULL;
    }
    if (g_hash_table_contains (t, name)) {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--backup-repo %s: %s is given twice", *w, name);
      return NULL;
    }
    g_hash_table_insert (t, g_steal_pointer (&name),
                         g_canonicalize_filename (eq + 1, NULL));
  }
  return g_steal_pointer (&t);
}

static gboolean
expire_migrations (gpointer d)
{
  host_migrations_expire (((struct xapi_daemon *)d)->host, false);
  return G_SOURCE_CONTINUE;
}

/* Where migration NBD exports listen: as given, else the host of the
 * migration URL (an address, or a name resolved now), else loopback. */
static char *
migration_address (const char *given, const char *url)
{
  g_autoptr (GUri) u = NULL;
  const char *host;
  g_autoptr (GResolver) r = NULL;
  GList *addrs;
  char *ret = NULL;

  if (given)
    return g_strdup (given);
  u = url ? g_uri_parse (url, G_URI_FLAGS_NONE, NULL) : NULL;
  host = u ? g_uri_get_host (u) : NULL;
  if (host == NULL || *host == '\0')
    return g_strdup ("127.0.0.1");
  if (g_hostname_is_ip_address (host))
    return g_strdup (host);
  r = g_resolver_get_default ();
  addrs = g_resolver_lookup_by_name (r, host, NULL, NULL);
  if (addrs)
    ret = g_inet_address_to_string (addrs->data);
  g_resolver_free_addresses (addrs);
  return ret ? ret : g_strdup ("127.0.0.1");
}

/* O->nbd_ports ("FIRST-LAST", default NBD_EXPORTS_DEFAULT_*) into
 * O->nbd_first_port and O->nbd_last_port. */
static int
parse_port_range (struct options *o, GError **error)
{
  const char *text = o->nbd_ports;
  g_auto (GStrv) ends = NULL;
  guint64 a, b;

  o->nbd_first_port = NBD_EXPORTS_DEFAULT_FIRST_PORT;
  o->nbd_last_port = NBD_EXPORTS_DEFAULT_LAST_PORT;
  if (text == NULL)
    return 0;
  ends = g_strsplit (text, "-", -1);
  if (g_strv_length (ends) != 2
      || !g_ascii_string_to_unsigned (ends[0], 10, 1, 65535, &a, NULL)
      || !g_ascii_string_to_unsigned (ends[1], 10, a, 65535, &b, NULL)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "nbd-ports %s: expected FIRST-LAST, two ports of 1 to "
                 "65535, FIRST <= LAST",
                 text);
    return -1;
  }
  o->nbd_first_port = (int)a;
  o->nbd_last_port = (int)b;
  return 0;
}

/* VDI.get_nbd_info's exports (nbd-exports.h): served with the HTTPS
 * certificate and key on the host's NBD address, at ports of O's range.
 * Without a certificate there are none (get_nbd_info answers [], as
 * xapi does with no NBD network). */
static int
start_nbd_exports (struct xapi_daemon *d, const struct options *o,
                   GError **error)
{
  struct nbd_exports_config cfg = {
    .address = NULL, /* the host's, known once it listens */
    .first_port = o->nbd_first_port,
    .last_port = o->nbd_last_port,
    .cert_file = o->tls_cert,
    .key_file = o->tls_key,
  };

  if (o->tls_cert == NULL) {
    g_message ("no --tls-cert: VDI.get_nbd_info offers no NBD export");
    return 0;
  }
  d->nbd = nbd_exports_new (d->host, &cfg, error);
  return d->nbd ? 0 : -1;
}

/* Listen on ADDR_PORT; while the port is in use (by a previous daemon
 * still exiting), try again for a few seconds. */
static int
listen_waiting (struct xapi_http *h, const char *addr_port,
                GTlsCertificate *tls, GError **error)
{
  gint64 deadline
      = g_get_monotonic_time () + PORT_WAIT_SECONDS * G_USEC_PER_SEC;
  bool logged = false;

  for (;;) {
    GError *e = NULL;

    if (xapi_http_listen (h, addr_port, tls, &e) == 0)
      return 0;
    if (!g_error_matches (e, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE)
        || g_get_monotonic_time () >= deadline) {
      g_propagate_error (error, e);
      return -1;
    }
    if (!logged) {
      g_message ("%s is in use: waiting up to %d s", addr_port,
                 PORT_WAIT_SECONDS);
      logged = true;
    }
    g_error_free (e);
    g_usleep (20 * 1000);
  }
}

static gboolean
on_signal (gpointer loop)
{
  g_message ("stopping");
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

/* Fork; the parent waits on a pipe for the child's word that it is
 * serving and exits 0, or 1 if the child failed first.  Returns the
 * write end the child reports on (-1 in the foreground). */
static int
daemonize (void)
{
  int p[2];
  pid_t pid;
  char c;

  if (pipe (p) == -1 || (pid = fork ()) == -1) {
    perror ("vdimotiond: fork");
    exit (1);
  }
  if (pid > 0) {
    close (p[1]);
    exit (read (p[0], &c, 1) == 1 && c == 'R' ? 0 : 1);
  }
  close (p[0]);
  setsid ();
  return p[1];
}

static void
report_ready (int fd)
{
  int null;

  if (fd < 0)
    return;
  if (write (fd, "R", 1) != 1)
    perror ("vdimotiond: write");
  close (fd);
  /* Messages after this point are lost unless run with --foreground
   * (as the systemd unit does, into the journal). */
  null = open ("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2 (null, 0);
    dup2 (null, 1);
    dup2 (null, 2);
    if (null > 2)
      close (null);
  }
}

static int
run (struct options *o)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GTlsCertificate) tls = NULL;
  g_autoptr (GMainLoop) loop = NULL;
  struct xapi_daemon d = { 0 };
  struct host *host = NULL;
  struct xapi_http *h = NULL;
  g_autofree char *served = NULL;
  int ready_fd = -1, ret = 1;

  if (o->config && read_config (o, &error) == -1)
    goto out;
  if (!o->listen && !o->listen_https)
    o->listen = g_strdup (DEFAULT_LISTEN);
  if (!o->state_dir)
    o->state_dir = g_strdup (DEFAULT_STATE_DIR);
  if (o->max_request_size <= 0)
    o->max_request_size = DEFAULT_MAX_REQUEST_SIZE;
  if (o->max_storage_operations <= 0)
    o->max_storage_operations = DEFAULT_MAX_STORAGE_OPERATIONS;
  if ((o->tls_cert == NULL) != (o->tls_key == NULL)
      || (o->listen_https && o->tls_cert == NULL)) {
    g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "HTTPS needs both --tls-cert and --tls-key");
    goto out;
  }
  if (o->tls_cert && o->listen_https == NULL) {
    g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--tls-cert given but no --listen-https address");
    goto out;
  }
  if (parse_port_range (o, &error) == -1)
    goto out;
  if (o->tls_cert) {
    tls = g_tls_certificate_new_from_files (o->tls_cert, o->tls_key, &error);
    if (tls == NULL) {
      g_prefix_error (&error, "%s: ", o->tls_cert);
      goto out;
    }
  }

  if (!o->foreground)
    ready_fd = daemonize ();

  d.max_request_size = o->max_request_size;
  if ((d.backup_repos = backup_repos (o->backup_repos, &error)) == NULL)
    goto out;
  d.users = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  d.sessions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  if (o->auth_file) {
    if (xapi_load_auth_file (&d, o->auth_file, &error) == -1)
      goto out;
  }
  else
    g_warning ("no --auth-file: nobody can log in");
  {
    struct host_config hc = {
      .state_dir = o->state_dir,
      .srs = (const char *const *)o->srs,
      .name_label = o->name_label ? o->name_label : g_get_host_name (),
      .nbdkit = o->nbdkit ? o->nbdkit : DEFAULT_NBDKIT,
      .vdi_plugin = o->vdi_plugin ? o->vdi_plugin : DEFAULT_VDI_PLUGIN,
      .mirror_filter
      = o->mirror_filter ? o->mirror_filter : DEFAULT_MIRROR_FILTER,
      .memory_migrator
      = o->memory_migrator ? o->memory_migrator : DEFAULT_MEMORY_MIGRATOR,
      .lock_wait_seconds = LOCK_WAIT_SECONDS,
    };

    if ((d.host = host = host_open (&hc, &error)) == NULL)
      goto out;
  }
  xapi_load_sessions (&d);
  host_vms_reconcile (host);
  host_live_snapshots_recover (host);
  host_cbt_reconcile (host);
  host->jobs = jobs_new (host, o->max_storage_operations, job_kinds);
  jobs_recover (host->jobs);
  d.events = xapi_events_new (&d);
  /* Before anyone is served: a previous run's exports stop. */
  if (start_nbd_exports (&d, o, &error) == -1)
    goto out;

  if ((h = xapi_http_new (&d, &error)) == NULL)
    goto out;
  if (o->listen && listen_waiting (h, o->listen, NULL, &error) == -1)
    goto out;
  if (o->listen_https
      && listen_waiting (h, o->listen_https, tls, &error) == -1)
    goto out;
  served = xapi_http_log_uris (h);
  /* Sources reach us at the URL we serve (HTTPS first), unless told. */
  host->migration_url = g_strdup (o->migration_url ? o->migration_url : served);
  host->nbd_address
      = migration_address (o->migration_address, host->migration_url);
  if (tls)
    host->cert_sha256 = xapi_cert_sha256 (tls);
  host_migrations_expire (host, true);
  g_timeout_add_seconds (30, expire_migrations, &d);

  loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGTERM, on_signal, loop);
  g_unix_signal_add (SIGINT, on_signal, loop);
  report_ready (ready_fd);
  ready_fd = -1;
  g_main_loop_run (loop);
  ret = 0;

out:
  if (error)
    fprintf (stderr, "vdimotiond: %s\n", error->message);
  if (ready_fd >= 0)
    close (ready_fd); /* the waiting parent exits 1 */
  xapi_http_free (h);
  nbd_exports_free (d.nbd); /* no call asks for one any more */
  xapi_events_free (d.events); /* no call waits any more */
  host_free (host); /* its jobs first, then its SRs and state */
  if (d.users)
    g_hash_table_unref (d.users);
  g_queue_clear (&d.session_order); /* the refs are the table's keys */
  if (d.sessions)
    g_hash_table_unref (d.sessions);
  if (d.task_drives)
    g_hash_table_unref (d.task_drives);
  if (d.backup_repos)
    g_hash_table_unref (d.backup_repos);
  return ret;
}

int
main (int argc, char **argv)
{
  struct options o = { 0 };
  GOptionEntry entries[] = {
    { "config", 0, 0, G_OPTION_ARG_FILENAME, &o.config,
      "Read the configuration from FILE (vdimotiond.conf(5))", "FILE" },
    { "listen", 0, 0, G_OPTION_ARG_STRING, &o.listen,
      "Serve HTTP on ADDR:PORT (default " DEFAULT_LISTEN ")", "ADDR:PORT" },
    { "listen-https", 0, 0, G_OPTION_ARG_STRING, &o.listen_https,
      "Serve HTTPS on ADDR:PORT", "ADDR:PORT" },
    { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &o.state_dir,
      "Keep state in DIR (default " DEFAULT_STATE_DIR ")", "DIR" },
    { "sr", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o.srs,
      "Serve the file SR at PATH as NAME (repeatable)", "NAME=PATH" },
    { "backup-repo", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o.backup_repos,
      "Serve the backup repository in DIR at /backups/NAME (repeatable)",
      "NAME=DIR" },
    { "auth-file", 0, 0, G_OPTION_ARG_FILENAME, &o.auth_file,
      "Users and their crypt(3) hashes, one user:HASH a line", "FILE" },
    { "tls-cert", 0, 0, G_OPTION_ARG_FILENAME, &o.tls_cert,
      "TLS certificate (PEM) for HTTPS", "FILE" },
    { "tls-key", 0, 0, G_OPTION_ARG_FILENAME, &o.tls_key,
      "TLS private key (PEM) for HTTPS", "FILE" },
    { "name-label", 0, 0, G_OPTION_ARG_STRING, &o.name_label,
      "The host's name label (default: the host name)", "NAME" },
    { "max-request-size", 0, 0, G_OPTION_ARG_INT64, &o.max_request_size,
      "Refuse request bodies over BYTES (default 16 MiB)", "BYTES" },
    { "max-storage-operations", 0, 0, G_OPTION_ARG_INT64,
      &o.max_storage_operations,
      "Run at most N copies and moves at once, queue the others "
      "(default 3)",
      "N" },
    { "nbdkit", 0, 0, G_OPTION_ARG_FILENAME, &o.nbdkit,
      "The nbdkit program serving VMs' disks (default " DEFAULT_NBDKIT ")",
      "PROGRAM" },
    { "vdi-plugin", 0, 0, G_OPTION_ARG_FILENAME, &o.vdi_plugin,
      "Path of nbdkit-vdi-plugin.so (default " DEFAULT_VDI_PLUGIN ")",
      "FILE" },
    { "mirror-filter", 0, 0, G_OPTION_ARG_FILENAME, &o.mirror_filter,
      "Path of nbdkit-mirror-filter.so (default " DEFAULT_MIRROR_FILTER ")",
      "FILE" },
    { "migration-url", 0, 0, G_OPTION_ARG_STRING, &o.migration_url,
      "The URL migration sources reach this daemon at (default: the "
      "one it serves, HTTPS first)",
      "URL" },
    { "migration-address", 0, 0, G_OPTION_ARG_STRING, &o.migration_address,
      "Where incoming migrations' NBD exports listen (default: the "
      "migration URL's host)",
      "ADDR" },
    { "memory-migrator", 0, 0, G_OPTION_ARG_FILENAME, &o.memory_migrator,
      "The command that hands a running VM over to the destination "
      "(default " DEFAULT_MEMORY_MIGRATOR ")",
      "COMMAND" },
    { "nbd-ports", 0, 0, G_OPTION_ARG_STRING, &o.nbd_ports,
      "VDI.get_nbd_info's TLS NBD exports listen on ports FIRST to LAST "
      "(default 10809-10872)",
      "FIRST-LAST" },
    { "foreground", 0, 0, G_OPTION_ARG_NONE, &o.foreground,
      "Stay in the foreground (for systemd)", NULL },
    { "hash-password", 0, 0, G_OPTION_ARG_NONE, &o.hash_password,
      "Read a password on stdin, print its crypt(3) hash", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx
      = g_option_context_new ("- the vdimotion host daemon (XenAPI)");
  g_autoptr (GError) error = NULL;
  int ret;

  g_set_prgname ("vdimotiond");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "vdimotiond: %s\n", error->message);
    options_clear (&o);
    return 2;
  }
  if (argc > 1) {
    fprintf (stderr, "vdimotiond: unexpected argument %s\n", argv[1]);
    options_clear (&o);
    return 2;
  }
  if (o.hash_password)
    ret = xapi_hash_password ();
  else
    ret = run (&o);
  options_clear (&o);
  return ret;
}
