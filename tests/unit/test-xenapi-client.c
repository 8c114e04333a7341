/* Unit tests of the XenAPI client (xapi-client.h) against a real
 * vdimotiond that the test starts (as tests/xapi-functions.sh does: an
 * auth file, two SR directories, a state directory, a free port, and
 * HTTPS with a self-signed certificate when openssl is there): login, a
 * call and its value, a XenAPI Failure's code and parameters, a wrong
 * password, a refused connection, a timeout, a pinned certificate right
 * and wrong, a CA file, a task waited on with progress, logout; and the
 * value trees' builders and readers (xapi-value.h).
 *
 * Needs the daemon of this build (top_builddir/xapi-shim/vdimotiond, or
 * $VDIMOTIOND): without it the test is skipped (exit 77). */
#include <signal.h>
#include <string.h>

#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "unit.h"
#include "xapi-client.h"
#include "xapi-value.h"

static char *daemon_path;
static GSubprocess *daemon_proc;
static char *http_url, *https_url; /* https_url: NULL without openssl */
static char *cert_pin;             /* the daemon's certificate's */

/* ---- The daemon ----------------------------------------------------------
 */

/* NAME in the scratch directory (unit_path's buffers are reused). */
static const char *
scratch (const char *name)
{
  return g_intern_string (unit_path (name));
}

/* The output of ARGV fed INPUT; NULL (and what it said) if it failed. */
static char *
run_program (const char *const *argv, const char *input)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GSubprocess) p = g_subprocess_newv (
      argv,
      G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE
          | G_SUBPROCESS_FLAGS_STDERR_PIPE,
      &err);
  g_autofree char *errors = NULL;
  char *out = NULL;

  if (p == NULL
      || !g_subprocess_communicate_utf8 (p, input, NULL, &out, &errors, &err)
      || !g_subprocess_get_successful (p)) {
    fprintf (stderr, "%s: %s\n%s", argv[0], err ? err->message : "failed",
             errors ? errors : "");
    g_free (out);
    return NULL;
  }
  return out;
}

/* The URL after "listening on SCHEME" in the daemon's LOG, or NULL. */
static char *
listening_url (const char *log, const char *scheme)
{
  g_autofree char *needle = g_strconcat ("listening on ", scheme, NULL);
  const char *p = strstr (log, needle);

  if (p == NULL)
    return NULL;
  p += strlen ("listening on ");
  return g_strndup (p, strcspn (p, " \r\n"));
}

/* A self-signed certificate and key for 127.0.0.1 in the scratch
 * directory; false if openssl is not there. */
static bool
make_certificate (void)
{
  const char *argv[]
      = { "openssl",  "req",
          "-x509",    "-newkey",
          "rsa:2048", "-nodes",
          "-subj",    "/CN=localhost",
          "-addext",  "subjectAltName=DNS:localhost,IP:127.0.0.1",
          "-days",    "1",
          "-keyout",  scratch ("key.pem"),
          "-out",     scratch ("cert.pem"),
          NULL };
  g_autofree char *openssl = g_find_program_in_path ("openssl");
  g_autofree char *out = NULL;
  g_autoptr (GTlsCertificate) cert = NULL;

  if (openssl == NULL)
    return false;
  out = run_program (argv, "");
  cert = out ? g_tls_certificate_new_from_file (scratch ("cert.pem"), NULL)
             : NULL;
  if (cert == NULL)
    return false;
  cert_pin = xapi_cert_sha256 (cert);
  return true;
}

static void
stop_daemon (void)
{
  if (daemon_proc) {
    g_subprocess_send_signal (daemon_proc, SIGTERM);
    g_subprocess_wait (daemon_proc, NULL, NULL);
    g_clear_object (&daemon_proc);
  }
}

/* Start DAEMON on free ports of 127.0.0.1, user root, password "secret";
 * sets http_url (and https_url).  Exits 99 if it does not start. */
static void
start_daemon (const char *daemon)
{
  const char *hash_argv[] = { daemon, "--hash-password", NULL };
  g_autofree char *hash = run_program (hash_argv, "secret\n");
  g_autofree char *auth = NULL;
  g_autofree char *sr1 = g_strconcat ("sr1=", scratch ("sr1"), NULL);
  g_autofree char *sr2 = g_strconcat ("sr2=", scratch ("sr2"), NULL);
  g_autoptr (GSubprocessLauncher) l = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) err = NULL;
  bool tls = make_certificate ();

  if (hash == NULL)
    exit (99);
  auth = g_strdup_printf ("root:%s\n", g_strstrip (hash));
  g_mkdir (scratch ("state"), 0700);
  g_mkdir (scratch ("sr1"), 0700);
  g_mkdir (scratch ("sr2"), 0700);
  if (!g_file_set_contents (scratch ("auth"), auth, -1, &err)) {
    fprintf (stderr, "%s\n", err->message);
    exit (99);
  }
  g_ptr_array_add (argv, (char *)daemon);
  g_ptr_array_add (argv, "--foreground");
  g_ptr_array_add (argv, "--listen=127.0.0.1:0");
  g_ptr_array_add (argv, "--state-dir");
  g_ptr_array_add (argv, (char *)scratch ("state"));
  g_ptr_array_add (argv, "--auth-file");
  g_ptr_array_add (argv, (char *)scratch ("auth"));
  g_ptr_array_add (argv, "--sr");
  g_ptr_array_add (argv, sr1);
  g_ptr_array_add (argv, "--sr");
  g_ptr_array_add (argv, sr2);
  if (tls) {
    g_ptr_array_add (argv, "--listen-https=127.0.0.1:0");
    g_ptr_array_add (argv, "--tls-cert");
    g_ptr_array_add (argv, (char *)scratch ("cert.pem"));
    g_ptr_array_add (argv, "--tls-key");
    g_ptr_array_add (argv, (char *)scratch ("key.pem"));
  }
  g_ptr_array_add (argv, NULL);

  l = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_subprocess_launcher_set_stderr_file_path (l, scratch ("vdimotiond.log"));
  daemon_proc = g_subprocess_launcher_spawnv (
      l, (const char *const *)argv->pdata, &err);
  if (daemon_proc == NULL) {
    fprintf (stderr, "%s: %s\n", daemon, err->message);
    exit (99);
  }
  atexit (stop_daemon);
  /* 10 s to start, as the shell tests give it. */
  for (int i = 0; i < 100 && (http_url == NULL || (tls && !https_url)); i++) {
    g_autofree char *log = NULL;

    g_usleep (100000);
    if (!g_file_get_contents (scratch ("vdimotiond.log"), &log, NULL, NULL))
      continue;
    g_free (http_url);
    g_free (https_url);
    http_url = listening_url (log, "http://");
    https_url = listening_url (log, "https://");
    /* No identifier: it has exited. */
    if (http_url == NULL && !g_subprocess_get_identifier (daemon_proc)) {
      fprintf (stderr, "vdimotiond exited at startup:\n%s", log);
      exit (99);
    }
  }
  if (http_url == NULL) {
    fprintf (stderr, "vdimotiond did not start\n");
    exit (99);
  }
  printf ("vdimotiond at %s %s\n", http_url, https_url ? https_url : "");
}

/* ---- Helpers ---------------------------------------------------------------
 */

/* The daemon's URL (HTTPS: NULL without openssl); the daemon is started
 * by the first test that needs it, in the scratch directory unit_main
 * makes. */
static const char *
daemon_url (bool https)
{
  if (daemon_proc == NULL)
    start_daemon (daemon_path);
  return https ? https_url : http_url;
}

static struct xapi_client *
client_of (const char *url, const char *pin, const char *ca_file)
{
  g_autoptr (GError) err = NULL;
  struct xapi_client *cl = xapi_client_new (
      &(struct xapi_client_config){ .url = url,
                                    .cert_sha256 = pin,
                                    .ca_file = ca_file,
                                    .timeout_seconds = 30,
                                    .user_agent = "test-xenapi-client" },
      &err);

  CU_ASSERT_PTR_NULL (err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (cl);
  return cl;
}

/* A client of the daemon's HTTP URL, logged in as root. */
static struct xapi_client *
logged_in (void)
{
  g_autoptr (GError) err = NULL;
  struct xapi_client *cl = client_of (daemon_url (false), NULL, NULL);

  CU_ASSERT_TRUE_FATAL (
      xapi_client_login (cl, "root", "secret", "test", &err));
  return cl;
}

/* The ref of the SR named NAME. */
static char *
sr_ref (struct xapi_client *cl, const char *name)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (xv) refs = xapi_client_call (cl, &err, "SR.get_by_name_label",
                                          xv_new_string (name), NULL);

  CU_ASSERT_PTR_NULL (err);
  CU_ASSERT_FATAL (refs && refs->type == XV_ARRAY && refs->n == 1
                   && refs->items[0]->type == XV_STRING);
  return g_strdup (refs->items[0]->s);
}

/* ---- Value trees -----------------------------------------------------------
 */

static void
test_value_builders (void)
{
  g_autoptr (xv) st = xv_struct (
      "name", xv_new_string ("disk"), "size", xv_new_string ("1073741824"),
      "n", xv_new_int (-5), "big", xv_new_int (INT64_C (1) << 40), "on",
      xv_new_bool (true), "ratio", xv_new_double (0.25), "none", xv_new_nil (),
      "tags",
      xv_array (xv_new_string ("a"), xv_new_int (1), xv_new_string ("b"),
                NULL),
      "other_config", xv_struct ("k", xv_new_string ("v"), NULL), NULL);
  g_autoptr (xv) copy = NULL;
  g_autofree char *joined = NULL;

  CU_ASSERT_EQUAL (st->type, XV_STRUCT);
  CU_ASSERT_EQUAL (st->n, 9);
  CU_ASSERT_STRING_EQUAL (xv_str (st, "name"), "disk");
  CU_ASSERT_EQUAL (xv_u64 (st, "size"), UINT64_C (1073741824));
  CU_ASSERT_EQUAL (xv_u64 (st, "big"), UINT64_C (1) << 40);
  CU_ASSERT_EQUAL (xv_get (st, "n")->i, -5);
  CU_ASSERT_EQUAL (xv_u64 (st, "n"), 0); /* negative reads as 0 */
  CU_ASSERT_TRUE (xv_bool (st, "on"));
  CU_ASSERT_DOUBLE_EQUAL (xv_double (st, "ratio"), 0.25, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL (xv_double (st, "size"), 1073741824.0, 1e-3);
  CU_ASSERT_EQUAL (xv_get (st, "none")->type, XV_NIL);
  CU_ASSERT_STRING_EQUAL (xv_map_str (st, "other_config", "k"), "v");
  joined = xv_values_joined (xv_get (st, "tags"), ",");
  CU_ASSERT_STRING_EQUAL (joined, "a,b"); /* strings only */

  /* Readers never fail: absent or of the wrong type. */
  CU_ASSERT_STRING_EQUAL (xv_str (st, "absent"), "");
  CU_ASSERT_STRING_EQUAL (xv_str (st, "n"), "");
  CU_ASSERT_FALSE (xv_bool (st, "name"));
  CU_ASSERT_EQUAL (xv_u64 (st, "on"), 0);
  CU_ASSERT_PTR_NULL (xv_get (xv_get (st, "tags"), "a"));
  CU_ASSERT_PTR_NULL (xv_get (NULL, "a"));
  CU_ASSERT_STRING_EQUAL (xv_map_str (st, "absent", "k"), "");
  {
    g_autoptr (xv) empty = xv_new_string (NULL);
    CU_ASSERT_STRING_EQUAL (empty->s, "");
  }

  /* A member set again is replaced, not added. */
  xv_set (st, "name", xv_new_string ("disk2"));
  CU_ASSERT_EQUAL (st->n, 9);
  CU_ASSERT_STRING_EQUAL (xv_str (st, "name"), "disk2");

  /* A copy is deep: changing one leaves the other. */
  copy = xv_copy (st);
  xv_set (st, "name", xv_new_string ("disk3"));
  xv_append ((struct xv *)xv_get (st, "tags"), xv_new_string ("c"));
  CU_ASSERT_STRING_EQUAL (xv_str (copy, "name"), "disk2");
  CU_ASSERT_EQUAL (xv_get (copy, "tags")->n, 3);
  CU_ASSERT_EQUAL (xv_get (st, "tags")->n, 4);
  CU_ASSERT_STRING_EQUAL (xv_map_str (copy, "other_config", "k"), "v");
  CU_ASSERT_PTR_NULL (xv_copy (NULL));
}

static void
test_value_string_map (void)
{
  g_autoptr (GHashTable) t = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (xv) m = NULL;
  g_autoptr (xv) records = NULL;

  g_hash_table_insert (t, "url", "https://h:443/");
  g_hash_table_insert (t, "name", "\xf0\x9f\x98\x80"); /* U+1F600 */
  m = xv_new_string_map (t);
  CU_ASSERT_EQUAL (m->n, 2);
  CU_ASSERT_STRING_EQUAL (xv_str (m, "url"), "https://h:443/");
  CU_ASSERT_STRING_EQUAL (xv_str (m, "name"), "\xf0\x9f\x98\x80");

  /* A get_all_records answer: ref → record. */
  records = xv_struct (
      "OpaqueRef:a", xv_struct ("uuid", xv_new_string ("a"), NULL),
      "OpaqueRef:b", xv_struct ("uuid", xv_new_string ("b"), NULL), NULL);
  CU_ASSERT_STRING_EQUAL (xv_str (xv_record (records, "OpaqueRef:b"), "uuid"),
                          "b");
  CU_ASSERT_PTR_NULL (xv_record (records, "OpaqueRef:c"));
}

static void
test_failure_errors (void)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GError) empty = NULL;
  g_autoptr (GError) copy = NULL;
  g_autoptr (GError) other
      = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "HANDLE_INVALID");
  const char *const *d;

  xapi_client_set_failure (
      &err, (const char *const[]){ "UUID_INVALID", "SR", "my sr", NULL });
  CU_ASSERT_STRING_EQUAL (err->message, "UUID_INVALID SR my sr");
  CU_ASSERT_TRUE (xapi_client_error_is (err, "UUID_INVALID"));
  CU_ASSERT_FALSE (xapi_client_error_is (err, "UUID"));
  /* The parameters survive a copy (and spaces inside them). */
  copy = g_error_copy (err);
  d = xapi_client_error_description (copy);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT_STRING_EQUAL (d[0], "UUID_INVALID");
  CU_ASSERT_STRING_EQUAL (d[2], "my sr");
  CU_ASSERT_PTR_NULL (d[3]);

  xapi_client_set_failure (&empty, (const char *const[]){ NULL });
  CU_ASSERT_STRING_EQUAL (empty->message,
                          "INTERNAL_ERROR (no error description)");
  CU_ASSERT_TRUE (xapi_client_error_is (empty, "INTERNAL_ERROR"));

  CU_ASSERT_PTR_NULL (xapi_client_error_description (other));
  CU_ASSERT_FALSE (xapi_client_error_is (other, "HANDLE_INVALID"));
  CU_ASSERT_PTR_NULL (xapi_client_error_description (NULL));
}

/* ---- Against the daemon --------------------------------------------------
 */

static void
test_login_and_call (void)
{
  g_autoptr (xapi_client) cl = logged_in ();
  g_autoptr (GError) err = NULL;
  g_autofree char *sr1 = NULL;
  g_autoptr (xv) name = NULL;
  g_autoptr (xv) records = NULL;

  CU_ASSERT_TRUE (g_str_has_prefix (xapi_client_session (cl), "OpaqueRef:"));
  CU_ASSERT_STRING_EQUAL (xapi_client_url (cl), daemon_url (false));
  sr1 = sr_ref (cl, "sr1");
  name = xapi_client_call (cl, &err, "SR.get_name_label", xv_new_string (sr1),
                           NULL);
  CU_ASSERT_PTR_NULL (err);
  CU_ASSERT_FATAL (name != NULL && name->type == XV_STRING);
  CU_ASSERT_STRING_EQUAL (name->s, "sr1");

  records = xapi_client_call (cl, &err, "SR.get_all_records", NULL);
  CU_ASSERT_FATAL (records != NULL && records->type == XV_STRUCT);
  CU_ASSERT_EQUAL (records->n, 2);
  CU_ASSERT_STRING_EQUAL (xv_str (xv_record (records, sr1), "name_label"),
                          "sr1");
}

static void
test_failure_code_and_params (void)
{
  g_autoptr (xapi_client) cl = logged_in ();
  g_autoptr (GError) err = NULL;
  g_autoptr (xv) v = xapi_client_call (
      cl, &err, "VDI.get_record", xv_new_string ("OpaqueRef:nosuch"), NULL);
  const char *const *d = xapi_client_error_description (err);
  g_autofree char *joined = NULL;

  CU_ASSERT_PTR_NULL (v);
  CU_ASSERT_FATAL (err != NULL && d != NULL);
  CU_ASSERT_EQUAL (err->domain, XAPI_CLIENT_ERROR);
  CU_ASSERT_EQUAL (err->code, XAPI_CLIENT_ERROR_FAILURE);
  CU_ASSERT_STRING_EQUAL (d[0], "HANDLE_INVALID");
  CU_ASSERT_TRUE (xapi_client_error_is (err, "HANDLE_INVALID"));
  CU_ASSERT_PTR_NOT_NULL_FATAL (d[1]);
  CU_ASSERT_STRING_EQUAL (d[1], "VDI");
  /* The message the vdimotion command prints: "CODE param1 param2". */
  joined = g_strjoinv (" ", (char **)d);
  CU_ASSERT_STRING_EQUAL (err->message, joined);
  CU_ASSERT_PTR_NOT_NULL (strstr (err->message, "OpaqueRef:nosuch"));

  /* A method nobody has is a Failure too. */
  g_clear_error (&err);
  v = xapi_client_call (cl, &err, "SR.no_such_method", NULL);
  CU_ASSERT_PTR_NULL (v);
  CU_ASSERT_TRUE (xapi_client_error_is (err, "MESSAGE_METHOD_UNKNOWN"));
}

static void
test_wrong_password (void)
{
  g_autoptr (xapi_client) cl = client_of (daemon_url (false), NULL, NULL);
  g_autoptr (GError) err = NULL;

  CU_ASSERT_FALSE (xapi_client_login (cl, "root", "wrong", "test", &err));
  CU_ASSERT_TRUE (xapi_client_error_is (err, "SESSION_AUTHENTICATION_FAILED"));
  CU_ASSERT_PTR_NULL (xapi_client_session (cl));
}

/* A port of 127.0.0.1 that is listened on (LISTEN) or not. */
static GSocket *
local_socket (bool listen, char **url)
{
  g_autoptr (GInetAddress) lo
      = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) any = g_inet_socket_address_new (lo, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  GSocket *s = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                             G_SOCKET_PROTOCOL_TCP, NULL);

  CU_ASSERT_FATAL (s != NULL && g_socket_bind (s, any, false, NULL));
  if (listen)
    CU_ASSERT_FATAL (g_socket_listen (s, NULL));
  bound = g_socket_get_local_address (s, NULL);
  *url = g_strdup_printf (
      "http://127.0.0.1:%u/",
      g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
  return s;
}

static void
test_refused (void)
{
  g_autofree char *url = NULL;
  g_autoptr (GSocket) s
      = local_socket (false, &url); /* bound, not listening */
  g_autoptr (xapi_client) cl = client_of (url, NULL, NULL);
  g_autoptr (GError) err = NULL;

  CU_ASSERT_FALSE (xapi_client_login (cl, "root", "secret", "test", &err));
  CU_ASSERT_FATAL (err != NULL);
  CU_ASSERT_EQUAL (err->code, XAPI_CLIENT_ERROR_CONNECT);
  CU_ASSERT_TRUE (g_str_has_prefix (err->message, url));
  CU_ASSERT_PTR_NULL (xapi_client_error_description (err));
}

static void
test_timeout (void)
{
  g_autofree char *url = NULL;
  g_autoptr (GSocket) s = local_socket (true, &url); /* never answers */
  g_autoptr (GError) err = NULL;
  g_autoptr (xapi_client) cl = xapi_client_new (
      &(struct xapi_client_config){ .url = url, .timeout_seconds = 1 }, &err);
  gint64 start = g_get_monotonic_time ();
  g_autoptr (xv) v = NULL;

  CU_ASSERT_PTR_NOT_NULL_FATAL (cl);
  v = xapi_client_call (cl, &err, "session.logout", NULL);
  CU_ASSERT_PTR_NULL (v);
  CU_ASSERT_FATAL (err != NULL);
  CU_ASSERT_EQUAL (err->code, XAPI_CLIENT_ERROR_CONNECT);
  CU_ASSERT (g_get_monotonic_time () - start < 10 * G_USEC_PER_SEC);
}

static void
test_not_a_url (void)
{
  const char *bad[] = { "no-scheme", "ftp://127.0.0.1/", "http://", "" };
  g_autoptr (GError) ca = NULL;

  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (xapi_client) cl = client_of (bad[i], NULL, NULL);
    g_autoptr (GError) err = NULL;
    g_autofree char *msg
        = g_strdup_printf ("%s: not an http:// or https:// URL", bad[i]);

    CU_ASSERT_FALSE (xapi_client_login (cl, "root", "secret", "test", &err));
    CU_ASSERT_FATAL (err != NULL);
    CU_ASSERT_EQUAL (err->code, XAPI_CLIENT_ERROR_CONNECT);
    CU_ASSERT_STRING_EQUAL (err->message, msg);
  }

  /* A CA file that is not there is named at once. */
  CU_ASSERT_PTR_NULL (xapi_client_new (
      &(struct xapi_client_config){ .url = daemon_url (false),
                                    .ca_file = scratch ("no-such.pem") },
      &ca));
  CU_ASSERT_FATAL (ca != NULL);
  CU_ASSERT_EQUAL (ca->code, XAPI_CLIENT_ERROR_LOCAL);
  CU_ASSERT_PTR_NOT_NULL (strstr (ca->message, "no-such.pem"));
}

/* Log in over HTTPS with PIN and CA_FILE: does it work? */
static bool
https_login (const char *pin, const char *ca_file)
{
  g_autoptr (xapi_client) cl = client_of (daemon_url (true), pin, ca_file);
  g_autoptr (GError) err = NULL;
  bool ok = xapi_client_login (cl, "root", "secret", "test", &err);

  if (!ok) {
    CU_ASSERT_EQUAL (err->code, XAPI_CLIENT_ERROR_CONNECT);
    CU_ASSERT_TRUE (g_str_has_prefix (err->message, daemon_url (true)));
  }
  else
    CU_ASSERT_TRUE (xapi_client_logout (cl, &err));
  return ok;
}

static void
test_https (void)
{
  g_autofree char *colons = NULL;
  GString *s;

  if (daemon_url (true) == NULL) {
    printf ("(no openssl: no HTTPS) ");
    return;
  }
  /* The pin alone is trusted: the certificate is self-signed. */
  CU_ASSERT_TRUE (https_login (cert_pin, NULL));
  s = g_string_new (NULL);
  for (const char *p = cert_pin; *p; p += 2)
    g_string_append_printf (s, "%s%c%c", s->len ? ":" : "",
                            g_ascii_toupper (p[0]), g_ascii_toupper (p[1]));
  colons = g_string_free (s, false);
  CU_ASSERT_TRUE (https_login (colons, NULL));
  CU_ASSERT_FALSE (https_login ("00112233445566778899aabbccddeeff"
                                "00112233445566778899aabbccddeeff",
                                NULL));
  /* Without a pin: the CA file decides, else the system's CAs. */
  CU_ASSERT_TRUE (https_login (NULL, scratch ("cert.pem")));
  CU_ASSERT_FALSE (https_login (NULL, NULL));
  /* A wrong pin wins over a CA that would vouch for the server. */
  CU_ASSERT_FALSE (https_login ("ff", scratch ("cert.pem")));
}

static void
progress (double done, void *opaque)
{
  double *last = opaque;

  CU_ASSERT (done >= 0 && done <= 1);
  *last = done;
}

static void
test_task_wait (void)
{
  g_autoptr (xapi_client) cl = logged_in ();
  g_autoptr (GError) err = NULL;
  g_autofree char *sr1 = sr_ref (cl, "sr1");
  g_autofree char *sr2 = sr_ref (cl, "sr2");
  g_autofree char *moved = NULL;
  g_autoptr (xv) vdi = NULL;
  g_autoptr (xv) task = NULL;
  g_autoptr (xv) rec = NULL;
  double last = -1;

  vdi = xapi_client_call (
      cl, &err, "VDI.create",
      xv_struct ("SR", xv_new_string (sr1), "name_label",
                 xv_new_string ("t \xf0\x9f\x98\x80"), "virtual_size",
                 xv_new_string ("4194304"), "type", xv_new_string ("user"),
                 "sharable", xv_new_bool (false), "read_only",
                 xv_new_bool (false), "other_config", xv_new_struct (), NULL),
      NULL);
  CU_ASSERT_PTR_NULL (err);
  CU_ASSERT_FATAL (vdi != NULL && vdi->type == XV_STRING);
  task = xapi_client_call (cl, &err, "Async.VDI.pool_migrate",
                           xv_new_string (vdi->s), xv_new_string (sr2),
                           xv_new_struct (), NULL);
  CU_ASSERT_FATAL (task != NULL && task->type == XV_STRING);
  moved = xapi_client_task_wait (cl, task->s, progress, &last, &err);
  CU_ASSERT_PTR_NULL (err);
  CU_ASSERT_FATAL (moved != NULL);
  CU_ASSERT_TRUE (g_str_has_prefix (moved, "OpaqueRef:"));
  rec = xapi_client_call (cl, &err, "VDI.get_record", xv_new_string (moved),
                          NULL);
  CU_ASSERT_FATAL (rec != NULL);
  CU_ASSERT_STRING_EQUAL (xv_str (rec, "SR"), sr2);
  CU_ASSERT_STRING_EQUAL (xv_str (rec, "name_label"), "t \xf0\x9f\x98\x80");
  CU_ASSERT_EQUAL (xv_u64 (rec, "virtual_size"), 4194304);
  printf ("(last progress %.2f) ", last);

  /* A task that is not there. */
  g_free (xapi_client_task_wait (cl, "OpaqueRef:nosuch", NULL, NULL, &err));
  CU_ASSERT_TRUE (xapi_client_error_is (err, "HANDLE_INVALID"));
}

static void
test_logout (void)
{
  g_autoptr (xapi_client) cl = logged_in ();
  g_autoptr (GError) err = NULL;
  g_autofree char *session = g_strdup (xapi_client_session (cl));
  g_autoptr (xv) params = xv_array (xv_new_string (session), NULL);
  g_autoptr (xv) v = NULL;

  CU_ASSERT_TRUE (xapi_client_logout (cl, &err));
  CU_ASSERT_PTR_NULL (xapi_client_session (cl));
  /* The session is gone at the server. */
  v = xapi_client_call_array (cl, "SR.get_all", params, &err);
  CU_ASSERT_PTR_NULL (v);
  CU_ASSERT_TRUE (xapi_client_error_is (err, "SESSION_INVALID"));
  /* A second logout has nothing to do. */
  g_clear_error (&err);
  CU_ASSERT_TRUE (xapi_client_logout (cl, &err));
}

int
main (void)
{
  const char *dir = getenv ("top_builddir");
  static const struct unit_test tests[] = {
    { "value builders and readers", test_value_builders },
    { "string maps and records", test_value_string_map },
    { "XenAPI failures as GErrors", test_failure_errors },
    { "login and a call", test_login_and_call },
    { "a Failure's code and params", test_failure_code_and_params },
    { "wrong password", test_wrong_password },
    { "refused connection", test_refused },
    { "timeout", test_timeout },
    { "not a URL, a missing CA file", test_not_a_url },
    { "https: pin, CA file", test_https },
    { "task wait", test_task_wait },
    { "logout", test_logout },
    { NULL },
  };
  int rc;

  daemon_path = getenv ("VDIMOTIOND")
                    ? g_strdup (getenv ("VDIMOTIOND"))
                    : g_build_filename (dir ? dir : ".", "xapi-shim",
                                        "vdimotiond", NULL);
  if (!g_file_test (daemon_path, G_FILE_TEST_IS_EXECUTABLE)) {
    printf ("SKIP: %s is not built: no daemon to test the client on\n",
            daemon_path);
    return 77;
  }
  rc = unit_main ("xenapi-client", tests);
  stop_daemon ();
  g_free (daemon_path);
  return rc;
}
