/* The client's session and transport: XenAPI calls as XML-RPC (xmlrpc-c
 * base library) POSTed to "/" over HTTP or HTTPS (libsoup, synchronous),
 * the {Status, Value | ErrorDescription} reply unwrapped into a value or
 * a GError.  See client.h for the design. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client-internal.h"
#include "xmlrpc-decode.h"
#include "xmlrpc-utf8.h"

struct client_options client_opts = { .progress = PROGRESS_AUTO };

GQuark
client_error_quark (void)
{
  return g_quark_from_static_string ("vdimotion-client-error-quark");
}

/* A get_all_records of a big SR is larger than xmlrpc-c's default limit
 * of 512 KiB for a parsed document. */
#define CLIENT_MAX_REPLY (64u << 20)

char *
client_uri (struct client *c, const char *path_and_query)
{
  return g_uri_resolve_relative (c->url, path_and_query, G_URI_FLAGS_NONE,
                                 NULL);
}

void
client_set_connect_error (struct client *c, GError **err, const GError *cause)
{
  g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_CONNECT, "%s: %s", c->url,
               cause->message);
}

const char *
client_url (const struct client *c)
{
  return c->url;
}

const char *
client_session (const struct client *c)
{
  return c->session;
}

const char *
client_ref_uuid (const char *ref)
{
  return g_str_has_prefix (ref, CLIENT_REF_PREFIX)
             ? ref + strlen (CLIENT_REF_PREFIX)
             : ref;
}

bool
client_error_is (const GError *err, const char *code)
{
  size_t n = strlen (code);
  return err && err->domain == CLIENT_ERROR && err->code == CLIENT_ERROR_XENAPI
         && strncmp (err->message, code, n) == 0
         && (err->message[n] == '\0' || err->message[n] == ' ');
}

/* XenAPI's reply struct → its Value, or *ERR with the ErrorDescription
 * as "CODE param1 param2...". */
static struct xv *
unwrap_reply (struct client *c, struct xv *reply, GError **err)
{
  const char *status = xv_str (reply, "Status");
  const struct xv *desc;
  struct xv *value;

  if (strcmp (status, "Success") == 0) {
    for (size_t i = 0; i < reply->n; i++)
      if (strcmp (reply->keys[i], "Value") == 0) {
        value = reply->items[i];
        reply->items[i] = NULL;
        xv_free (reply);
        return value;
      }
  }
  else if (strcmp (status, "Failure") == 0) {
    g_autoptr (GString) msg = g_string_new (NULL);
    desc = xv_get (reply, "ErrorDescription");
    for (size_t i = 0; desc && desc->type == XV_ARRAY && i < desc->n; i++) {
      if (i)
        g_string_append_c (msg, ' ');
      if (desc->items[i]->type == XV_STRING)
        g_string_append (msg, desc->items[i]->s);
    }
    if (msg->len == 0)
      g_string_append (msg, "INTERNAL_ERROR (no error description)");
    g_set_error_literal (err, CLIENT_ERROR, CLIENT_ERROR_XENAPI, msg->str);
    xv_free (reply);
    return NULL;
  }
  g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_PROTOCOL,
               "%s: not a XenAPI reply (no Status Success/Failure)", c->url);
  xv_free (reply);
  return NULL;
}

/* POST one XML-RPC call; the parsed, unwrapped reply or NULL and *ERR. */
static struct xv *
post_call (struct client *c, const char *method, xmlrpc_value *params,
           GError **err)
{
  xmlrpc_env env;
  xmlrpc_mem_block *body;
  g_autoptr (GBytes) request = NULL, reply = NULL;
  g_autoptr (SoupMessage) msg = NULL;
  g_autoptr (GError) cause = NULL;
  g_autofree char *uri = client_uri (c, "/");
  xmlrpc_value *result = NULL;
  g_autofree char *why = NULL;
  struct xv *v = NULL;

  xmlrpc_env_init (&env);
  body = xmlrpc_mem_block_new (&env, 0);
  if (!env.fault_occurred)
    xmlrpc_serialize_call2 (&env, body, method, params, xmlrpc_dialect_i8);
  if (env.fault_occurred) {
    g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_LOCAL,
                 "%s: cannot encode the call: %s", method, env.fault_string);
    if (body)
      xmlrpc_mem_block_free (body);
    xmlrpc_env_clean (&env);
    return NULL;
  }
  request = g_bytes_new (xmlrpc_mem_block_contents (body),
                         xmlrpc_mem_block_size (body));
  xmlrpc_mem_block_free (body);

  msg = uri ? soup_message_new ("POST", uri) : NULL;
  if (msg == NULL) {
    g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_CONNECT,
                 "%s: not an http:// or https:// URL", c->url);
    xmlrpc_env_clean (&env);
    return NULL;
  }
  soup_message_set_request_body_from_bytes (msg, "text/xml", request);
  reply = soup_session_send_and_read (c->soup, msg, NULL, &cause);
  if (reply == NULL) {
    client_set_connect_error (c, err, cause);
    xmlrpc_env_clean (&env);
    return NULL;
  }
  if (soup_message_get_status (msg) != SOUP_STATUS_OK) {
    g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_CONNECT, "%s: %s: HTTP %u %s",
                 c->url, method, soup_message_get_status (msg),
                 soup_message_get_reason_phrase (msg));
    xmlrpc_env_clean (&env);
    return NULL;
  }

  /* Our own decoder: what a server sends cannot crash us. */
  result = xapi_response_value (g_bytes_get_data (reply, NULL),
                                g_bytes_get_size (reply), &why);
  if (result == NULL)
    g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_PROTOCOL, "%s: %s: %s",
                 c->url, method, why);
  else {
    v = xv_from_xmlrpc (&env, result);
    xmlrpc_DECREF (result);
    if (v == NULL)
      g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_PROTOCOL,
                   "%s: %s: bad XML-RPC reply: %s", c->url, method,
                   env.fault_string);
  }
  xmlrpc_env_clean (&env);
  return v ? unwrap_reply (c, v, err) : NULL;
}

/* Call METHOD with FIRST (if not NULL) before the values built from FMT. */
static struct xv *
call_va (struct client *c, GError **err, const char *first, const char *method,
         const char *fmt, va_list ap)
{
  xmlrpc_env env;
  xmlrpc_value *built = NULL, *params = NULL;
  const char *tail;
  struct xv *v = NULL;

  xmlrpc_env_init (&env);
  xmlrpc_build_value_va (&env, fmt, ap, &built, &tail);
  if (!env.fault_occurred && xmlrpc_value_type (built) != XMLRPC_TYPE_ARRAY)
    xmlrpc_faultf (&env, "format \"%s\" is not an array", fmt);
  if (!env.fault_occurred)
    params = xmlrpc_array_new (&env);
  if (first && !env.fault_occurred) {
    xmlrpc_value *s = xmlrpc_string_new (&env, first);
    if (!env.fault_occurred) {
      xmlrpc_array_append_item (&env, params, s);
      xmlrpc_DECREF (s);
    }
  }
  for (int i = 0; !env.fault_occurred && i < xmlrpc_array_size (&env, built);
       i++) {
    xmlrpc_value *item;
    xmlrpc_array_read_item (&env, built, i, &item);
    if (!env.fault_occurred) {
      xmlrpc_array_append_item (&env, params, item);
      xmlrpc_DECREF (item);
    }
  }
  if (env.fault_occurred)
    g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_LOCAL,
                 "%s: cannot build the call: %s", method, env.fault_string);
  else
    v = post_call (c, method, params, err);
  if (built)
    xmlrpc_DECREF (built);
  if (params)
    xmlrpc_DECREF (params);
  xmlrpc_env_clean (&env);
  return v;
}

struct xv *
client_call (struct client *c, GError **err, const char *method,
             const char *fmt, ...)
{
  va_list ap;
  struct xv *v;

  va_start (ap, fmt);
  v = call_va (c, err, c->session, method, fmt, ap);
  va_end (ap);
  return v;
}

/* Without a session: session.login_with_password. */
static struct xv *
call_no_session (struct client *c, GError **err, const char *method,
                 const char *fmt, ...)
{
  va_list ap;
  struct xv *v;

  va_start (ap, fmt);
  v = call_va (c, err, NULL, method, fmt, ap);
  va_end (ap);
  return v;
}

/* The password: the first line of FILE, or $VDIMOTION_PASSWORD, or "". */
static char *
read_password (const char *file, GError **err)
{
  g_autofree char *text = NULL;
  const char *env = getenv ("VDIMOTION_PASSWORD");
  size_t len;

  if (file == NULL)
    return g_strdup (env ? env : "");
  if (!g_file_get_contents (file, &text, &len, err))
    return NULL;
  char *pw = g_strndup (text, strcspn (text, "\r\n"));
  explicit_bzero (text, len);
  return pw;
}

static SoupSession *
new_soup_session (const char *ca_file, GError **err)
{
  g_autoptr (SoupSession) s = soup_session_new_with_options (
      "user-agent", "vdimotion/" PACKAGE_VERSION, "timeout", 600, NULL);

  if (ca_file && *ca_file) {
    g_autoptr (GTlsDatabase) db = g_tls_file_database_new (ca_file, err);
    if (db == NULL) {
      g_prefix_error (err, "%s: ", ca_file);
      return NULL;
    }
    soup_session_set_tls_database (s, db);
  }
  return g_steal_pointer (&s);
}

struct client *
client_connect (const struct client_options *opts, GError **err)
{
  const char *server
      = opts->server ? opts->server : getenv ("VDIMOTION_SERVER");
  const char *user = opts->user ? opts->user : getenv ("VDIMOTION_USER");
  const char *ca_file
      = opts->ca_file ? opts->ca_file : getenv ("VDIMOTION_CA_FILE");
  g_autofree char *password = NULL;
  struct client *c;
  struct xv *ref;

  /* Names may hold any character (xmlrpc-utf8.h); this call also links
   * the check that makes it so. */
  if (!xmlrpc_full_unicode ())
    fprintf (stderr, "vdimotion: warning: xmlrpc-c refuses characters "
                     "outside the Basic Multilingual Plane here\n");
  if (server == NULL || *server == '\0') {
    g_set_error_literal (err, CLIENT_ERROR, CLIENT_ERROR_LOCAL,
                         "no server: give --server URL or set "
                         "VDIMOTION_SERVER");
    return NULL;
  }
  if (user == NULL || *user == '\0')
    user = "root";
  password = read_password (opts->password_file, err);
  if (password == NULL)
    return NULL;

  xmlrpc_limit_set (XMLRPC_XML_SIZE_LIMIT_ID, CLIENT_MAX_REPLY);
  c = g_new0 (struct client, 1);
  c->url = g_strdup (server);
  c->soup = new_soup_session (ca_file, err);
  if (c->soup == NULL) {
    explicit_bzero (password, strlen (password));
    client_close (c);
    return NULL;
  }
  ref = call_no_session (c, err, "session.login_with_password", "(ssss)", user,
                         password, "1.0", "vdimotion");
  explicit_bzero (password, strlen (password));
  if (ref == NULL || ref->type != XV_STRING) {
    if (ref)
      g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_PROTOCOL,
                   "%s: session.login_with_password: no session ref", c->url);
    xv_free (ref);
    client_close (c);
    return NULL;
  }
  c->session = g_steal_pointer (&ref->s);
  xv_free (ref);
  return c;
}

void
client_close (struct client *c)
{
  if (c == NULL)
    return;
  if (c->session) {
    g_autoptr (GError) err = NULL;
    xv_free (client_call (c, &err, "session.logout", "()"));
  }
  if (c->soup)
    g_object_unref (c->soup);
  g_free (c->session);
  g_free (c->url);
  g_free (c);
}

/* Looks like a uuid: 36 characters of hex digits and dashes. */
static bool
is_uuid (const char *s)
{
  if (strlen (s) != 36)
    return false;
  for (; *s; s++)
    if (!g_ascii_isxdigit (*s) && *s != '-')
      return false;
  return true;
}

char *
client_lookup (struct client *c, const char *cls, const char *name,
               struct xv **record, GError **err)
{
  g_autofree char *method = NULL;
  g_autofree char *ref = NULL;
  g_autoptr (xv) refs = NULL;

  if (is_uuid (name) || g_str_has_prefix (name, CLIENT_REF_PREFIX)) {
    g_autoptr (GError) e = NULL;
    g_autoptr (xv) v = NULL;
    if (g_str_has_prefix (name, CLIENT_REF_PREFIX)) {
      method = g_strconcat (cls, ".get_uuid", NULL);
      v = client_call (c, &e, method, "(s)", name);
      if (v)
        ref = g_strdup (name);
    }
    else {
      method = g_strconcat (cls, ".get_by_uuid", NULL);
      v = client_call (c, &e, method, "(s)", name);
      if (v && v->type == XV_STRING)
        ref = g_strdup (v->s);
    }
    g_clear_pointer (&method, g_free);
    if (e && e->code != CLIENT_ERROR_XENAPI) {
      g_propagate_error (err, g_steal_pointer (&e));
      return NULL;
    }
  }
  if (ref == NULL) {
    method = g_strconcat (cls, ".get_by_name_label", NULL);
    refs = client_call (c, err, method, "(s)", name);
    if (refs == NULL)
      return NULL;
    if (refs->type != XV_ARRAY || refs->n == 0) {
      g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_XENAPI,
                   "UUID_INVALID %s %s", cls, name);
      return NULL;
    }
    if (refs->n > 1) {
      g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_LOCAL,
                   "%s \"%s\": %zu objects have this name: give a uuid", cls,
                   name, refs->n);
      return NULL;
    }
    if (refs->items[0]->type != XV_STRING) {
      g_set_error (err, CLIENT_ERROR, CLIENT_ERROR_PROTOCOL,
                   "%s: %s: a ref is not a string", c->url, method);
      return NULL;
    }
    ref = g_strdup (refs->items[0]->s);
  }
  if (record) {
    g_autofree char *get = g_strconcat (cls, ".get_record", NULL);
    *record = client_call (c, err, get, "(s)", ref);
    if (*record == NULL)
      return NULL;
  }
  return g_steal_pointer (&ref);
}

int
client_print_new_uuid (struct client *c, const char *cls, const char *ref,
                       GError **err)
{
  g_autofree char *method = g_strconcat (cls, ".get_uuid", NULL);
  g_autoptr (xv) uuid = client_call (c, err, method, "(s)", ref);
  bool first = true;

  if (uuid == NULL || uuid->type != XV_STRING)
    return EXIT_ERROR;
  if (client_opts.json) {
    json_str (&first, "uuid", uuid->s);
    json_end (&first);
    printf ("\n");
  }
  else
    printf ("%s\n", uuid->s);
  return EXIT_OK;
}
