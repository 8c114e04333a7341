/* The nbdkit processes that serve a running VM's disks.
 *
 * One nbdkit per VBD: nbdkit-vdi-plugin opens the VDI's image (with its
 * chain) and nbdkit-mirror-filter sits on top, so a live move can start at
 * any time without the VM noticing.  The hypervisor (or fio, in tests)
 * attaches to <run-dir>/<vbd>.sock; the filter's control socket is
 * <run-dir>/<vbd>.ctl.  A live move adds a second nbdkit, without the
 * filter, serving the new VDI on <run-dir>/<vdi>-target.sock.
 *
 * A disk served with the filter is given its VDI's changed-block log
 * (cbt-log=<SR dir>/<uuid>.cbtlog, sr_vdi_cbt_log_location) whether CBT
 * is on or not: the filter marks it when it is there at start, and is
 * told to take it or let go while it serves (cbt.h), so VDI.enable_cbt
 * works on a running VM's disk.
 *
 * nbdkit runs as its own daemon (it forks into the background once its
 * socket listens, and writes its pid file), so it outlives a restart of
 * vdimotiond: a VM keeps its disks while the daemon is upgraded or
 * killed.  Its messages go to <run-dir>/<name>.log.  A pid is only ever
 * signalled after /proc says it is still the nbdkit serving that socket,
 * so a recycled pid is never killed.
 */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "nbdkit.h"

static char *
run_path (struct host *d, const char *name, const char *ext)
{
  g_autofree char *file = g_strconcat (name, ext, NULL);

  return g_build_filename (d->run_dir, file, NULL);
}

/* The last lines of an nbdkit log, for an error message. */
static char *
log_tail (const char *log)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  const char *p;

  if (!g_file_get_contents (log, &text, &len, NULL) || len == 0)
    return g_strdup ("(nbdkit said nothing)");
  while (len > 0 && text[len - 1] == '\n')
    text[--len] = '\0';
  p = len > 400 ? text + len - 400 : text;
  return g_strdup (p);
}

/* GnuTLS negotiates ChaCha20-Poly1305 for the NBD TLS-PSK sessions here
 * even on CPUs with AES-NI, and perf showed half of a migration's CPU in
 * it.  On such a CPU, unless the host has its own GnuTLS configuration,
 * the nbdkits get one that takes ChaCha20 and the AES-256 ciphers out, so
 * AES-128-GCM (in hardware; TLS 1.3's mandatory suite) is chosen: with
 * AES-256-GCM the source, forwarder and destination of a one-disk
 * migration spent about 10 % more CPU.  The file is
 * <run-dir>/gnutls.conf, through GNUTLS_SYSTEM_PRIORITY_FILE.
 * Returns the file to use, or NULL. */
static const char *
gnutls_config (struct host *d)
{
  static char *path;
  static gsize done;

  if (g_once_init_enter (&done)) {
    g_autofree char *cpuinfo = NULL;
    char *p = g_build_filename (d->run_dir, "gnutls.conf", NULL);

    if (g_getenv ("GNUTLS_SYSTEM_PRIORITY_FILE") == NULL
        && !g_file_test ("/etc/gnutls/config", G_FILE_TEST_EXISTS)
        && g_file_get_contents ("/proc/cpuinfo", &cpuinfo, NULL, NULL)
        && strstr (cpuinfo, " aes ")
        && g_file_set_contents (p,
                                "# vdimotiond: AES-128-GCM (AES-NI) for "
                                "NBD TLS, see vdimotiond(8)\n[overrides]\n"
                                "tls-disabled-cipher = CHACHA20-POLY1305\n"
                                "tls-disabled-cipher = AES-256-GCM\n"
                                "tls-disabled-cipher = AES-256-CCM\n"
                                "tls-disabled-cipher = AES-256-CBC\n",
                                -1, NULL))
      path = p;
    else
      g_free (p);
    g_once_init_leave (&done, 1);
  }
  return path;
}

static GSubprocessLauncher *
launcher (struct host *d, const char *log)
{
  GSubprocessLauncher *l
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_INHERIT);
  const char *cfg = gnutls_config (d);

  g_subprocess_launcher_set_stdout_file_path (l, "/dev/null");
  g_subprocess_launcher_set_stderr_file_path (l, log);
  if (cfg)
    g_subprocess_launcher_setenv (l, "GNUTLS_SYSTEM_PRIORITY_FILE", cfg, TRUE);
  return l;
}

pid_t
nbdkit_read_pidfile (const char *path)
{
  g_autofree char *text = NULL;
  guint64 pid;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  g_strstrip (text);
  if (!g_ascii_string_to_unsigned (text, 10, 2, G_MAXINT32, &pid, NULL))
    return 0;
  return (pid_t)pid;
}

/* Run nbdkit with ARGV (NULL-terminated; it names PIDFILE after -P) and
 * wait for the server it leaves in the background: its pid, or 0 with
 * *ERROR (BUSY: the foreground nbdkit failed, e.g. a port taken, with
 * the log's tail in the message). */
static pid_t
start_nbdkit (struct host *d, const char *const *argv,
              const char *pidfile, const char *log, const char *what,
              bool *busy, GError **error)
{
  g_autoptr (GSubprocessLauncher) l = launcher (d, log);
  g_autoptr (GSubprocess) p = NULL;
  pid_t pid = 0;

  *busy = false;
  unlink (pidfile);
  /* The foreground nbdkit exits once the socket listens and the server
   * has gone into the background. */
  p = g_subprocess_launcher_spawnv (l, argv, error);
  if (p == NULL || !g_subprocess_wait (p, NULL, error))
    return 0;
  if (!g_subprocess_get_if_exited (p) || g_subprocess_get_exit_status (p)) {
    g_autofree char *tail = log_tail (log);

    *busy = true;
    g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                 "nbdkit %s failed: %s", what, tail);
    return 0;
  }
  /* The background server writes its pid file right after the fork. */
  for (int i = 0; i < 500 && (pid = nbdkit_read_pidfile (pidfile)) == 0; i++)
    g_usleep (10 * 1000);
  if (pid == 0)
    g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                 "nbdkit %s wrote no pid file %s", what, pidfile);
  return pid;
}

int
nbdkit_serve_image (struct host *d, const char *name, struct host_sr *s,
                  const struct sr_vdi *v, bool mirror, bool readonly,
                  struct nbdkit_served *out, GError **error)
{
  g_autofree char *image = host_vdi_path (s, v);
  g_autofree char *format_arg
      = g_strconcat ("format=", vdisk_format_name (v->format), NULL);
  g_autofree char *confine_arg
      = g_strconcat ("confine=", sr_get_path (s->sr), NULL);
  g_autofree char *sock = run_path (d, name, ".sock");
  g_autofree char *ctl = mirror ? run_path (d, name, ".ctl") : NULL;
  g_autofree char *pidfile = run_path (d, name, ".pid");
  g_autofree char *log = run_path (d, name, ".log");
  g_autofree char *file_arg = g_strconcat ("file=", image, NULL);
  g_autofree char *ctl_arg
      = ctl ? g_strconcat ("mirror-control=", ctl, NULL) : NULL;
  g_autofree char *filter_arg
      = g_strconcat ("--filter=", d->mirror_filter, NULL);
  g_autofree char *cbt_arg = NULL;
  g_autofree char *what = g_strconcat ("serving ", image, NULL);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  bool busy;
  pid_t pid;

  unlink (sock);
  g_ptr_array_add (argv, d->nbdkit);
  g_ptr_array_add (argv, "--log=stderr");
  g_ptr_array_add (argv, "-U");
  g_ptr_array_add (argv, sock);
  g_ptr_array_add (argv, "-P");
  g_ptr_array_add (argv, pidfile);
  if (mirror)
    g_ptr_array_add (argv, filter_arg);
  g_ptr_array_add (argv, d->vdi_plugin);
  g_ptr_array_add (argv, file_arg);
  g_ptr_array_add (argv, format_arg);
  g_ptr_array_add (argv, confine_arg);
  if (readonly)
    g_ptr_array_add (argv, "readonly=true");
  if (mirror)
    g_ptr_array_add (argv, ctl_arg);
  if (mirror && !readonly) {
    char *cbt_log = sr_vdi_cbt_log_location (s->sr, v->uuid);
    if (cbt_log == NULL) {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                   "VDI %s: its changed-block log: %s", v->uuid,
                   sr_get_error ());
      return -1;
    }
    cbt_arg = g_strconcat ("cbt-log=", cbt_log, NULL);
    free (cbt_log);
    g_ptr_array_add (argv, cbt_arg);
  }
  g_ptr_array_add (argv, NULL);

  pid = start_nbdkit (d, (const char *const *)argv->pdata, pidfile, log, what,
                      &busy, error);
  if (pid == 0)
    return -1;
  out->pid = pid;
  out->socket = g_steal_pointer (&sock);
  out->control = g_steal_pointer (&ctl);
  g_message ("nbdkit %d serves %s on %s", (int)pid, image, out->socket);
  return 0;
}

/* A free TCP port on ADDR (the kernel's pick; nbdkit binds it a moment
 * later, and a lost race only makes that nbdkit fail to start). */
static int
free_port (const char *addr)
{
  g_autoptr (GInetAddress) ia = g_inet_address_new_from_string (addr);
  g_autoptr (GSocketAddress) sa = NULL;
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GSocket) sock = NULL;

  if (ia == NULL)
    return -1;
  sa = g_inet_socket_address_new (ia, 0);
  sock = g_socket_new (g_inet_address_get_family (ia), G_SOCKET_TYPE_STREAM,
                       G_SOCKET_PROTOCOL_TCP, NULL);
  if (sock == NULL || !g_socket_bind (sock, sa, TRUE, NULL)
      || (bound = g_socket_get_local_address (sock, NULL)) == NULL)
    return -1;
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

int
nbdkit_serve_forward (struct host *d, const char *name,
                    const char *unix_socket, const char *psk_file,
                    const char *addr, struct nbdkit_forward *out, GError **error)
{
  g_autofree char *pidfile = run_path (d, name, ".pid");
  g_autofree char *log = run_path (d, name, ".log");
  g_autofree char *psk_arg = g_strconcat ("--tls-psk=", psk_file, NULL);
  g_autofree char *sock_arg = g_strconcat ("socket=", unix_socket, NULL);

  g_autofree char *what = g_strconcat ("forwarding to ", unix_socket, NULL);

  /* A port taken between free_port and nbdkit's bind: try another. */
  for (int attempt = 0;; attempt++) {
    g_autofree char *port = NULL;
    int n = free_port (addr);
    bool busy;
    pid_t pid;

    if (n <= 0) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "no free port on %s",
                   addr);
      return -1;
    }
    port = g_strdup_printf ("%d", n);
    {
      const char *argv[]
          = { d->nbdkit, "--log=stderr", "-P", pidfile, "--tls=require",
              psk_arg,   "-i",           addr, "-p",    port,
              "nbd",     sock_arg,       NULL };

      pid = start_nbdkit (d, argv, pidfile, log, what, &busy, error);
    }
    if (pid == 0 && busy && attempt < 2) {
      g_clear_error (error);
      continue;
    }
    if (pid == 0)
      return -1;
    out->pid = pid;
    out->port = n;
    out->pidfile = g_steal_pointer (&pidfile);
    g_message ("nbdkit %d forwards %s:%d (TLS-PSK) to %s", (int)pid, addr, n,
               unix_socket);
    return 0;
  }
}

int
nbdkit_serve_tls_export (struct host *d, const char *name, struct host_sr *s,
                         const struct sr_vdi *v, const char *certs_dir,
                         const char *addr, int port, const char *exportname,
                         struct nbdkit_forward *out, bool *busy,
                         GError **error)
{
  g_autofree char *image = host_vdi_path (s, v);
  g_autofree char *pidfile = run_path (d, name, ".pid");
  g_autofree char *log = run_path (d, name, ".log");
  g_autofree char *port_arg = g_strdup_printf ("%d", port);
  g_autofree char *certs_arg
      = g_strconcat ("--tls-certificates=", certs_dir, NULL);
  g_autofree char *file_arg = g_strconcat ("file=", image, NULL);
  g_autofree char *format_arg
      = g_strconcat ("format=", vdisk_format_name (v->format), NULL);
  g_autofree char *confine_arg
      = g_strconcat ("confine=", sr_get_path (s->sr), NULL);
  g_autofree char *export_arg = g_strconcat ("exportname=", exportname, NULL);
  g_autofree char *what = g_strdup_printf ("exporting %s on %s:%d", image,
                                           addr, port);
  /* The name is the only credential: never listed, nothing else served. */
  const char *argv[]
      = { d->nbdkit,     "--log=stderr",         "-P",
          pidfile,       "--tls=require",        certs_arg,
          "-i",          addr,                   "-p",
          port_arg,      "--filter=exportname",  d->vdi_plugin,
          file_arg,      format_arg,             confine_arg,
          "readonly=true", export_arg,           "exportname-strict=true",
          "exportname-list=empty", NULL };
  pid_t pid = start_nbdkit (d, argv, pidfile, log, what, busy, error);

  if (pid == 0)
    return -1;
  out->pid = pid;
  out->port = port;
  out->pidfile = g_steal_pointer (&pidfile);
  g_message ("nbdkit %d exports %s on %s:%d (TLS)", (int)pid, image, addr,
             port);
  return 0;
}

/* Is PID a live (not zombie) process whose command line names SOCKET? */
bool
nbdkit_serving (pid_t pid, const char *socket)
{
  g_autofree char *cmdline_path = NULL;
  g_autofree char *stat_path = NULL;
  g_autofree char *cmdline = NULL;
  g_autofree char *stat = NULL;
  gsize len = 0;
  const char *paren;

  if (pid <= 0 || socket == NULL)
    return false;
  cmdline_path = g_strdup_printf ("/proc/%d/cmdline", (int)pid);
  stat_path = g_strdup_printf ("/proc/%d/stat", (int)pid);
  if (!g_file_get_contents (cmdline_path, &cmdline, &len, NULL)
      || !g_file_get_contents (stat_path, &stat, NULL, NULL))
    return false;
  /* "pid (comm) S ...": a zombie's state is Z. */
  paren = strrchr (stat, ')');
  if (paren == NULL || paren[1] != ' ' || paren[2] == 'Z')
    return false;
  /* The arguments are NUL-separated; look for SOCKET as one of them. */
  for (gsize off = 0; off < len; off += strlen (cmdline + off) + 1)
    if (strcmp (cmdline + off, socket) == 0)
      return true;
  return false;
}

void
nbdkit_stop (pid_t pid, const char *socket, const char *control,
                   int grace_seconds)
{
  if (nbdkit_serving (pid, socket)) {
    kill (pid, SIGTERM);
    /* nbdkit finishes the requests in flight and flushes. */
    for (int i = 0; i < grace_seconds * 100 && nbdkit_serving (pid, socket); i++)
      g_usleep (10 * 1000);
    if (nbdkit_serving (pid, socket)) {
      g_message ("nbdkit %d still runs %d s after SIGTERM: killing it",
                 (int)pid, grace_seconds);
      kill (pid, SIGKILL);
      for (int i = 0; i < 500 && nbdkit_serving (pid, socket); i++)
        g_usleep (10 * 1000);
    }
    g_message ("nbdkit %d (%s) stopped", (int)pid, socket);
  }
  if (socket) {
    /* <name>.sock: its pid file and log go with it. */
    g_autofree char *base = g_strndup (
        socket,
        strlen (socket)
            - (g_str_has_suffix (socket, ".sock") ? strlen (".sock") : 0));
    g_autofree char *pidfile = g_strconcat (base, ".pid", NULL);
    g_autofree char *log = g_strconcat (base, ".log", NULL);

    unlink (socket);
    unlink (pidfile);
    unlink (log);
  }
  if (control)
    unlink (control);
}
