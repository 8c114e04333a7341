/* The XenAPI client (xapi-client.h): calls written by xmlrpc-c, carried
 * by libsoup's synchronous API, read back by our decoder
 * (xmlrpc-decode.h) and converted to value trees (xapi-value.h).  This
 * file is the only one of the client's users' code that sees XML-RPC. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmlrpc-c/base.h>

#include "xapi-client.h"
#include "xmlrpc-decode.h"
#include "xmlrpc-utf8.h"

/* Strings may hold any character: calling it links xmlrpc-utf8.c's
 * check (which replaces xmlrpc-c's) into every program with a client. */
bool
xapi_client_full_unicode (void)
{
  return xmlrpc_full_unicode ();
}

struct xapi_client
{
  char *url;     /* as given, e.g. "http://127.0.0.1:4430" */
  char *session; /* "OpaqueRef:..." once logged in */
  SoupSession *soup;
};

/* ---- Errors ----------------------------------------------------------- */

typedef struct
{
  char **description; /* a Failure's ErrorDescription, or NULL */
} XapiClientErrorPrivate;

static void
xapi_client_error_private_init (XapiClientErrorPrivate *p)
{
  p->description = NULL;
}

static void
xapi_client_error_private_copy (const XapiClientErrorPrivate *src,
                                XapiClientErrorPrivate *dst)
{
  dst->description = g_strdupv (src->description);
}

static void
xapi_client_error_private_clear (XapiClientErrorPrivate *p)
{
  g_clear_pointer (&p->description, g_strfreev);
}

G_DEFINE_EXTENDED_ERROR (XapiClientError, xapi_client_error)

const char *const *
xapi_client_error_description (const GError *err)
{
  if (err == NULL || err->domain != XAPI_CLIENT_ERROR
      || err->code != XAPI_CLIENT_ERROR_FAILURE)
    return NULL;
  return (const char *const *)xapi_client_error_get_private (err)->description;
}

bool
xapi_client_error_is (const GError *err, const char *code)
{
  const char *const *desc = xapi_client_error_description (err);

  return desc && desc[0] && strcmp (desc[0], code) == 0;
}

void
xapi_client_set_failure (GError **err, const char *const *description)
{
  static const char *const unknown[] = { "INTERNAL_ERROR", NULL };
  g_autofree char *msg = g_strjoinv (" ", (char **)description);
  GError *e;

  /* The message is what the vdimotion command prints. */
  e = g_error_new_literal (XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_FAILURE,
                           *msg ? msg
                                : "INTERNAL_ERROR (no error description)");
  xapi_client_error_get_private (e)->description
      = g_strdupv ((char **)(description[0] ? description : unknown));
  g_propagate_error (err, e);
}

/* ---- Values to and from XML-RPC ---------------------------------------- */

/* V as XML-RPC (a new reference), or NULL with ENV's fault set (a string
 * that is not UTF-8). */
static xmlrpc_value *
to_xmlrpc (xmlrpc_env *env, const struct xv *v)
{
  xmlrpc_value *x = NULL;

  switch (v->type) {
  case XV_NIL: x = xmlrpc_nil_new (env); break;
  case XV_STRING: x = xmlrpc_string_new (env, v->s); break;
  case XV_INT:
    x = v->i >= INT32_MIN && v->i <= INT32_MAX
            ? xmlrpc_int_new (env, (int)v->i)
            : xmlrpc_i8_new (env, v->i);
    break;
  case XV_BOOL: x = xmlrpc_bool_new (env, v->b); break;
  case XV_DOUBLE: x = xmlrpc_double_new (env, v->d); break;
  case XV_ARRAY:
  case XV_STRUCT:
    x = v->type == XV_ARRAY ? xmlrpc_array_new (env) : xmlrpc_struct_new (env);
    for (size_t i = 0; i < v->n && !env->fault_occurred; i++) {
      xmlrpc_value *m = to_xmlrpc (env, v->items[i]);

      if (m == NULL)
        break;
      if (v->type == XV_ARRAY)
        xmlrpc_array_append_item (env, x, m);
      else
        xmlrpc_struct_set_value (env, x, v->keys[i], m);
      xmlrpc_DECREF (m);
    }
    break;
  }
  if (env->fault_occurred) {
    /* On failure xmlrpc-c's constructors return no value at all. */
    if (x && (v->type == XV_ARRAY || v->type == XV_STRUCT))
      xmlrpc_DECREF (x);
    return NULL;
  }
  return x;
}

static struct xv *from_xmlrpc (xmlrpc_env *env, xmlrpc_value *x);

/* The members of an array or struct X into V, made at their size. */
static void
from_xmlrpc_members (xmlrpc_env *env, xmlrpc_value *x, struct xv *v)
{
  bool st = v->type == XV_STRUCT;
  int n = st ? xmlrpc_struct_size (env, x) : xmlrpc_array_size (env, x);

  v->items = g_new0 (struct xv *, n > 0 ? n : 1);
  if (st)
    v->keys = g_new0 (char *, n > 0 ? n : 1);
  for (int i = 0; i < n && !env->fault_occurred; i++) {
    xmlrpc_value *k = NULL, *m = NULL;
    const char *key = NULL;

    if (st) {
      xmlrpc_struct_read_member (env, x, i, &k, &m);
      if (!env->fault_occurred)
        xmlrpc_read_string (env, k, &key);
    }
    else
      xmlrpc_array_read_item (env, x, i, &m);
    if (!env->fault_occurred) {
      v->items[v->n] = from_xmlrpc (env, m);
      if (v->items[v->n]) {
        if (st)
          v->keys[v->n] = g_strdup (key);
        v->n++;
      }
    }
    free ((void *)key);
    if (k)
      xmlrpc_DECREF (k);
    if (m)
      xmlrpc_DECREF (m);
  }
}

/* X as an owned tree, or NULL with ENV's fault set.  Our decoder bounds
 * the depth of what a server sends, so the recursion is bounded too. */
static struct xv *
from_xmlrpc (xmlrpc_env *env, xmlrpc_value *x)
{
  struct xv *v = NULL;

  switch (xmlrpc_value_type (x)) {
  case XMLRPC_TYPE_INT: {
    int i = 0;
    xmlrpc_read_int (env, x, &i);
    v = xv_new_int (i);
    break;
  }
  case XMLRPC_TYPE_I8: {
    xmlrpc_int64 i = 0;
    xmlrpc_read_i8 (env, x, &i);
    v = xv_new_int (i);
    break;
  }
  case XMLRPC_TYPE_BOOL: {
    xmlrpc_bool b = 0;
    xmlrpc_read_bool (env, x, &b);
    v = xv_new_bool (b);
    break;
  }
  case XMLRPC_TYPE_DOUBLE: {
    double d = 0;
    xmlrpc_read_double (env, x, &d);
    v = xv_new_double (d);
    break;
  }
  case XMLRPC_TYPE_DATETIME: {
    /* As xapi writes them: 20260101T12:00:00Z. */
    time_t t;
    struct tm tm;
    char buf[32];
    xmlrpc_read_datetime_sec (env, x, &t);
    if (!env->fault_occurred && gmtime_r (&t, &tm)
        && strftime (buf, sizeof buf, "%Y%m%dT%H:%M:%SZ", &tm))
      v = xv_new_string (buf);
    else
      v = xv_new_string ("");
    break;
  }
  case XMLRPC_TYPE_STRING: {
    const char *s = NULL;
    size_t len;
    xmlrpc_read_string_lp (env, x, &len, &s);
    if (!env->fault_occurred)
      v = xv_new_string (s);
    free ((void *)s);
    break;
  }
  case XMLRPC_TYPE_BASE64: {
    const unsigned char *b = NULL;
    size_t len;
    xmlrpc_read_base64 (env, x, &len, &b);
    if (!env->fault_occurred) {
      g_autofree char *text = g_strndup ((const char *)b, len);
      v = xv_new_string (text);
    }
    free ((void *)b);
    break;
  }
  case XMLRPC_TYPE_ARRAY:
    v = xv_new_array ();
    from_xmlrpc_members (env, x, v);
    break;
  case XMLRPC_TYPE_STRUCT:
    v = xv_new_struct ();
    from_xmlrpc_members (env, x, v);
    break;
  default: v = xv_new_nil (); break;
  }
  if (env->fault_occurred) {
    xv_free (v);
    return NULL;
  }
  return v;
}

/* ---- TLS ---------------------------------------------------------------- */

char *
xapi_cert_sha256 (GTlsCertificate *cert)
{
  g_autoptr (GByteArray) der = NULL;

  g_object_get (cert, "certificate", &der, NULL);
  if (der == NULL)
    return NULL;
  return g_compute_checksum_for_data (G_CHECKSUM_SHA256, der->data, der->len);
}

/* "AB:cd:..." → "abcd..." */
static char *
normalize_pin (const char *pin)
{
  GString *s = g_string_new (NULL);

  for (const char *p = pin; *p; p++)
    if (*p != ':')
      g_string_append_c (s, g_ascii_tolower (*p));
  return g_string_free (s, FALSE);
}

/* A TLS database that trusts exactly one certificate, by its
 * fingerprint, whatever its issuer or names: with a pin, nothing else
 * (not even a system CA) can vouch for a server.  Its check runs in
 * GIO's TLS handshake, before any request is sent. */
typedef struct
{
  GTlsDatabase parent;
  char *pin; /* lowercase hex */
} PinDatabase;

typedef struct
{
  GTlsDatabaseClass parent_class;
} PinDatabaseClass;

static GType pin_database_get_type (void);
G_DEFINE_TYPE (PinDatabase, pin_database, G_TYPE_TLS_DATABASE)

static GTlsCertificateFlags
pin_verify_chain (GTlsDatabase *db, GTlsCertificate *chain,
                  const char *purpose, GSocketConnectable *identity,
                  GTlsInteraction *interaction, GTlsDatabaseVerifyFlags flags,
                  GCancellable *cancellable, GError **err)
{
  PinDatabase *p = (PinDatabase *)db;
  g_autofree char *fp = xapi_cert_sha256 (chain);

  return fp && strcmp (fp, p->pin) == 0 ? 0 : G_TLS_CERTIFICATE_UNKNOWN_CA;
}

static void
pin_database_finalize (GObject *o)
{
  g_free (((PinDatabase *)o)->pin);
  G_OBJECT_CLASS (pin_database_parent_class)->finalize (o);
}

static void
pin_database_class_init (PinDatabaseClass *k)
{
  G_OBJECT_CLASS (k)->finalize = pin_database_finalize;
  G_TLS_DATABASE_CLASS (k)->verify_chain = pin_verify_chain;
}

static void
pin_database_init (PinDatabase *p)
{
}

/* The TLS database of CFG: its pin, its CA file, or NULL (the system's). */
static GTlsDatabase *
tls_database (const struct xapi_client_config *cfg, GError **err)
{
  if (cfg->cert_sha256 && *cfg->cert_sha256) {
    PinDatabase *p = g_object_new (pin_database_get_type (), NULL);

    p->pin = normalize_pin (cfg->cert_sha256);
    return G_TLS_DATABASE (p);
  }
  if (cfg->ca_file && *cfg->ca_file) {
    g_autoptr (GError) cause = NULL;
    GTlsDatabase *db = g_tls_file_database_new (cfg->ca_file, &cause);

    if (db == NULL)
      g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL, "%s: %s",
                   cfg->ca_file, cause->message);
    return db;
  }
  return NULL;
}

/* ---- The client ----------------------------------------------------------
 */

struct xapi_client *
xapi_client_new (const struct xapi_client_config *cfg, GError **err)
{
  g_autoptr (GTlsDatabase) db = NULL;
  g_autoptr (GError) e = NULL;
  struct xapi_client *cl;

  g_return_val_if_fail (cfg->url != NULL, NULL);
  db = tls_database (cfg, &e);
  if (e) {
    g_propagate_error (err, g_steal_pointer (&e));
    return NULL;
  }
  cl = g_new0 (struct xapi_client, 1);
  cl->url = g_strdup (cfg->url);
  cl->soup = soup_session_new_with_options (
      "timeout", cfg->timeout_seconds, "user-agent", cfg->user_agent, NULL);
  if (db)
    soup_session_set_tls_database (cl->soup, db);
  return cl;
}

void
xapi_client_free (struct xapi_client *cl)
{
  if (cl == NULL)
    return;
  g_object_unref (cl->soup);
  g_free (cl->session);
  g_free (cl->url);
  g_free (cl);
}

const char *
xapi_client_url (const struct xapi_client *cl)
{
  return cl->url;
}

const char *
xapi_client_session (const struct xapi_client *cl)
{
  return cl->session;
}

static void
set_connect_error (struct xapi_client *cl, GError **err, const GError *cause)
{
  g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_CONNECT, "%s: %s",
               cl->url, cause->message);
}

/* A message to URI (NULL: CL's URL itself), which must be http(s) and
 * name a host (libsoup would go on to other schemes, or complain). */
static SoupMessage *
new_message (struct xapi_client *cl, const char *method, const char *uri,
             GError **err)
{
  g_autoptr (GUri) u = g_uri_parse (uri ? uri : cl->url, G_URI_FLAGS_NONE,
                                    NULL);
  const char *scheme = u ? g_uri_get_scheme (u) : NULL;

  if (u == NULL
      || (g_ascii_strcasecmp (scheme, "http") != 0
          && g_ascii_strcasecmp (scheme, "https") != 0)
      || g_uri_get_host (u) == NULL || *g_uri_get_host (u) == '\0') {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_CONNECT,
                 "%s: not an http:// or https:// URL", cl->url);
    return NULL;
  }
  return soup_message_new_from_uri (method, u);
}

SoupMessage *
xapi_client_message (struct xapi_client *cl, const char *method,
                     const char *path_and_query, GError **err)
{
  g_autofree char *uri = g_uri_resolve_relative (cl->url, path_and_query,
                                                 G_URI_FLAGS_NONE, NULL);

  if (uri == NULL) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_CONNECT,
                 "%s: not an http:// or https:// URL", cl->url);
    return NULL;
  }
  return new_message (cl, method, uri, err);
}

GBytes *
xapi_client_send_and_read (struct xapi_client *cl, SoupMessage *msg,
                           GError **err)
{
  g_autoptr (GError) cause = NULL;
  GBytes *reply = soup_session_send_and_read (cl->soup, msg, NULL, &cause);

  if (reply == NULL)
    set_connect_error (cl, err, cause);
  return reply;
}

GInputStream *
xapi_client_send (struct xapi_client *cl, SoupMessage *msg, GError **err)
{
  g_autoptr (GError) cause = NULL;
  GInputStream *in = soup_session_send (cl->soup, msg, NULL, &cause);

  if (in == NULL)
    set_connect_error (cl, err, cause);
  return in;
}

/* ---- Calls -----------------------------------------------------------------
 */

/* XenAPI's reply struct → its Value, or *ERR with the ErrorDescription.
 * REPLY is taken. */
static struct xv *
unwrap_reply (struct xapi_client *cl, struct xv *reply, GError **err)
{
  g_autoptr (xv) r = reply;
  const char *status = xv_str (r, "Status");

  if (strcmp (status, "Success") == 0) {
    for (size_t i = 0; i < r->n; i++)
      if (strcmp (r->keys[i], "Value") == 0)
        return g_steal_pointer (&r->items[i]);
  }
  else if (strcmp (status, "Failure") == 0) {
    const struct xv *desc = xv_get (r, "ErrorDescription");
    g_autoptr (GPtrArray) d = g_ptr_array_new ();

    for (size_t i = 0; desc && desc->type == XV_ARRAY && i < desc->n; i++)
      g_ptr_array_add (d, desc->items[i]->type == XV_STRING ? desc->items[i]->s
                                                            : "");
    g_ptr_array_add (d, NULL);
    xapi_client_set_failure (err, (const char *const *)d->pdata);
    return NULL;
  }
  g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
               "%s: not a XenAPI reply (no Status Success/Failure)", cl->url);
  return NULL;
}

/* BODY (an XML-RPC call) POSTed; the decoded, unwrapped reply or NULL
 * and *ERR. */
static struct xv *
post (struct xapi_client *cl, const char *method, GBytes *body, GError **err)
{
  g_autoptr (SoupMessage) msg = new_message (cl, "POST", NULL, err);
  g_autoptr (GBytes) reply = NULL;
  g_autofree char *why = NULL;
  xmlrpc_value *result;
  xmlrpc_env env;
  struct xv *v;

  if (msg == NULL)
    return NULL;
  soup_message_set_request_body_from_bytes (msg, "text/xml", body);
  reply = xapi_client_send_and_read (cl, msg, err);
  if (reply == NULL)
    return NULL;
  if (soup_message_get_status (msg) != SOUP_STATUS_OK) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_CONNECT,
                 "%s: %s: HTTP %u %s", cl->url, method,
                 soup_message_get_status (msg),
                 soup_message_get_reason_phrase (msg));
    return NULL;
  }
  /* Our own decoder: what a server sends cannot crash us. */
  result = xapi_response_value (g_bytes_get_data (reply, NULL),
                                g_bytes_get_size (reply), &why);
  if (result == NULL) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: %s: %s", cl->url, method, why);
    return NULL;
  }
  xmlrpc_env_init (&env);
  v = from_xmlrpc (&env, result);
  xmlrpc_DECREF (result);
  if (v == NULL)
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: %s: bad XML-RPC reply: %s", cl->url, method,
                 env.fault_string);
  xmlrpc_env_clean (&env);
  return v ? unwrap_reply (cl, v, err) : NULL;
}

/* The XML-RPC call METHOD (PARAMS), or NULL and ENV's fault. */
static GBytes *
encode_call (xmlrpc_env *env, const char *method, const struct xv *params)
{
  xmlrpc_value *x = to_xmlrpc (env, params);
  xmlrpc_mem_block *body = NULL;
  GBytes *bytes = NULL;

  if (x)
    body = xmlrpc_mem_block_new (env, 0);
  if (body)
    xmlrpc_serialize_call2 (env, body, method, x, xmlrpc_dialect_i8);
  if (!env->fault_occurred)
    bytes = g_bytes_new (xmlrpc_mem_block_contents (body),
                         xmlrpc_mem_block_size (body));
  if (body)
    xmlrpc_mem_block_free (body);
  if (x)
    xmlrpc_DECREF (x);
  return bytes;
}

struct xv *
xapi_client_call_array (struct xapi_client *cl, const char *method,
                        const struct xv *params, GError **err)
{
  g_autoptr (GBytes) body = NULL;
  xmlrpc_env env;

  g_return_val_if_fail (params->type == XV_ARRAY, NULL);
  xmlrpc_env_init (&env);
  body = encode_call (&env, method, params);
  if (body == NULL)
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                 "%s: cannot encode the call: %s", method, env.fault_string);
  xmlrpc_env_clean (&env);
  return body ? post (cl, method, body, err) : NULL;
}

struct xv *
xapi_client_call (struct xapi_client *cl, GError **err, const char *method,
                  ...)
{
  g_autoptr (xv) params = xv_new_array ();
  struct xv *p;
  va_list ap;

  if (cl->session)
    xv_append (params, xv_new_string (cl->session));
  va_start (ap, method);
  while ((p = va_arg (ap, struct xv *)) != NULL)
    xv_append (params, p);
  va_end (ap);
  return xapi_client_call_array (cl, method, params, err);
}

bool
xapi_client_login (struct xapi_client *cl, const char *user,
                   const char *password, const char *originator, GError **err)
{
  g_autoptr (xv) params
      = xv_array (xv_new_string (user), xv_new_string (password),
                  xv_new_string ("1.0"), xv_new_string (originator), NULL);
  g_autoptr (xv) ref = NULL;

  g_return_val_if_fail (cl->session == NULL, false);
  ref = xapi_client_call_array (cl, "session.login_with_password", params,
                                err);
  explicit_bzero (params->items[1]->s, strlen (params->items[1]->s));
  if (ref == NULL)
    return false;
  if (ref->type != XV_STRING) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: session.login_with_password: no session ref", cl->url);
    return false;
  }
  cl->session = g_steal_pointer (&ref->s);
  return true;
}

bool
xapi_client_logout (struct xapi_client *cl, GError **err)
{
  g_autoptr (xv) r = NULL;

  if (cl->session == NULL)
    return true;
  r = xapi_client_call (cl, err, "session.logout", NULL);
  g_clear_pointer (&cl->session, g_free);
  return r != NULL;
}

/* ---- Tasks
 * ------------------------------------------------------------------ */

#define TASK_POLL_US 200000

static void
markup_text (GMarkupParseContext *ctx, const char *text, gsize len,
             void *opaque, GError **err)
{
  g_string_append_len (opaque, text, len);
}

/* xapi puts the XML-RPC of the result in the task's result field,
 * "<value>OpaqueRef:...</value>", with XML's entities (a JSON report's
 * quotes are &quot;); vdimotiond may put the bare ref.  Both read as the
 * text, tags dropped and entities decoded by GMarkup; a RESULT that is
 * not XML is taken as it is. */
char *
xapi_client_result_text (const char *result)
{
  static const GMarkupParser parser = { .text = markup_text };
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GMarkupParseContext) ctx
      = g_markup_parse_context_new (&parser, 0, out, NULL);
  g_autofree char *doc = g_strconcat ("<r>", result, "</r>", NULL);

  if (!g_markup_parse_context_parse (ctx, doc, -1, NULL)
      || !g_markup_parse_context_end_parse (ctx, NULL))
    return g_strstrip (g_strdup (result));
  return g_strstrip (g_string_free (g_steal_pointer (&out), false));
}

/* The task's error_info as a XenAPI failure. */
static void
set_task_error (GError **err, const struct xv *rec, const char *task,
                const char *status)
{
  const struct xv *info = xv_get (rec, "error_info");
  g_autoptr (GPtrArray) d = g_ptr_array_new ();

  for (size_t i = 0; info && info->type == XV_ARRAY && i < info->n; i++)
    if (info->items[i]->type == XV_STRING)
      g_ptr_array_add (d, info->items[i]->s);
  if (d->len == 0) {
    g_ptr_array_add (d, strcmp (status, "cancelled") == 0 ? "TASK_CANCELLED"
                                                          : "INTERNAL_ERROR");
    g_ptr_array_add (d, (char *)task);
  }
  g_ptr_array_add (d, NULL);
  xapi_client_set_failure (err, (const char *const *)d->pdata);
}

char *
xapi_client_task_wait (struct xapi_client *cl, const char *task,
                       xapi_client_progress_fn *progress, void *opaque,
                       GError **err)
{
  for (;;) {
    g_autoptr (xv) rec = xapi_client_call (cl, err, "task.get_record",
                                           xv_new_string (task), NULL);
    const char *status;

    if (rec == NULL)
      return NULL;
    status = xv_str (rec, "status");
    if (strcmp (status, "pending") == 0
        || strcmp (status, "cancelling") == 0) {
      if (progress)
        progress (CLAMP (xv_double (rec, "progress"), 0, 1), opaque);
      g_usleep (TASK_POLL_US);
      continue;
    }
    if (strcmp (status, "success") == 0)
      return xapi_client_result_text (xv_str (rec, "result"));
    set_task_error (err, rec, task, status);
    return NULL;
  }
}
