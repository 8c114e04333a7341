/* A XenAPI client over XML-RPC (xapi-client.h): libsoup carries the
 * request, xmlrpc-c writes and parses it. */

#include <string.h>

#include <libsoup/soup.h>

#include "xapi-client.h"
#include "xmlrpc-decode.h"

struct xapi_client
{
  char *url;
  char *pin; /* lowercase hex, or NULL */
  SoupSession *session;
};

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

struct xapi_client *
xapi_client_new (const char *url, const char *cert_sha256, int timeout_seconds)
{
  struct xapi_client *cl = g_new0 (struct xapi_client, 1);

  cl->url = g_strdup (url);
  cl->pin = cert_sha256 && *cert_sha256 ? normalize_pin (cert_sha256) : NULL;
  cl->session = soup_session_new_with_options (
      "timeout", timeout_seconds, "user-agent", "vdimotiond", NULL);
  return cl;
}

void
xapi_client_free (struct xapi_client *cl)
{
  if (cl == NULL)
    return;
  g_object_unref (cl->session);
  g_free (cl->url);
  g_free (cl->pin);
  g_free (cl);
}

/* With a pin, the certificate is accepted exactly when its fingerprint
 * is the pinned one, whatever its issuer. */
static gboolean
accept_certificate (SoupMessage *msg, GTlsCertificate *cert,
                    GTlsCertificateFlags errors, gpointer opaque)
{
  struct xapi_client *cl = opaque;
  g_autofree char *fp = xapi_cert_sha256 (cert);

  return cl->pin && fp && strcmp (fp, cl->pin) == 0;
}

/* Unwrap {Status, Value | ErrorDescription}. */
static xmlrpc_value *
unwrap (xmlrpc_env *env, xmlrpc_value *reply, char ***error_description,
        GError **error)
{
  g_autoptr (GPtrArray) desc = NULL;
  xmlrpc_value *status = NULL, *v = NULL;
  const char *st = NULL;
  int n;

  if (xmlrpc_value_type (reply) == XMLRPC_TYPE_STRUCT)
    xmlrpc_struct_find_value (env, reply, "Status", &status);
  if (status == NULL || xmlrpc_value_type (status) != XMLRPC_TYPE_STRING) {
    if (status)
      xmlrpc_DECREF (status);
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "not a XenAPI reply (no Status)");
    return NULL;
  }
  xmlrpc_read_string (env, status, &st);
  xmlrpc_DECREF (status);
  if (st && strcmp (st, "Success") == 0) {
    free ((void *)st);
    xmlrpc_struct_find_value (env, reply, "Value", &v);
    if (v == NULL)
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "a XenAPI Success without a Value");
    return v;
  }
  free ((void *)st);
  xmlrpc_struct_find_value (env, reply, "ErrorDescription", &v);
  desc = g_ptr_array_new_with_free_func (g_free);
  n = v && xmlrpc_value_type (v) == XMLRPC_TYPE_ARRAY
          ? xmlrpc_array_size (env, v)
          : 0;
  for (int i = 0; i < n && !env->fault_occurred; i++) {
    xmlrpc_value *item = NULL;
    const char *s = NULL;

    xmlrpc_array_read_item (env, v, i, &item);
    if (item && xmlrpc_value_type (item) == XMLRPC_TYPE_STRING) {
      xmlrpc_read_string (env, item, &s);
      g_ptr_array_add (desc, g_strdup (s ? s : ""));
      free ((void *)s);
    }
    if (item)
      xmlrpc_DECREF (item);
  }
  if (v)
    xmlrpc_DECREF (v);
  if (desc->len == 0)
    g_ptr_array_add (desc, g_strdup ("INTERNAL_ERROR"));
  g_ptr_array_add (desc, NULL);
  *error_description
      = (char **)g_ptr_array_free (g_steal_pointer (&desc), FALSE);
  return NULL;
}

xmlrpc_value *
xapi_client_call (struct xapi_client *cl, const char *method,
                  xmlrpc_value *params, char ***error_description,
                  GError **error)
{
  xmlrpc_env env;
  xmlrpc_mem_block *body = NULL;
  g_autoptr (SoupMessage) msg = NULL;
  g_autoptr (GBytes) req = NULL;
  g_autoptr (GBytes) resp = NULL;
  xmlrpc_value *reply = NULL, *value = NULL;
  g_autofree char *why = NULL;
  gsize len;
  const char *data;

  *error_description = NULL;
  xmlrpc_env_init (&env);
  body = XMLRPC_MEMBLOCK_NEW (char, &env, 0);
  if (body)
    xmlrpc_serialize_call (&env, body, method, params);
  if (env.fault_occurred) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s", method,
                 env.fault_string);
    goto out;
  }
  req = g_bytes_new (XMLRPC_MEMBLOCK_CONTENTS (char, body),
                     XMLRPC_MEMBLOCK_SIZE (char, body));
  msg = soup_message_new (SOUP_METHOD_POST, cl->url);
  if (msg == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "%s: not a URL", cl->url);
    goto out;
  }
  if (cl->pin)
    g_signal_connect (msg, "accept-certificate",
                      G_CALLBACK (accept_certificate), cl);
  soup_message_set_request_body_from_bytes (msg, "text/xml", req);
  resp = soup_session_send_and_read (cl->session, msg, NULL, error);
  if (resp == NULL) {
    g_prefix_error (error, "%s: ", cl->url);
    goto out;
  }
  if (soup_message_get_status (msg) != SOUP_STATUS_OK) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: HTTP %u %s",
                 cl->url, soup_message_get_status (msg),
                 soup_message_get_reason_phrase (msg));
    goto out;
  }
  data = g_bytes_get_data (resp, &len);
  /* Our own decoder: what a peer sends cannot crash us (xmlrpc-decode.h). */
  reply = xapi_response_value (data, len, &why);
  if (reply == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: %s", cl->url,
                 why);
    goto out;
  }
  value = unwrap (&env, reply, error_description, error);
out:
  if (reply)
    xmlrpc_DECREF (reply);
  if (body)
    XMLRPC_MEMBLOCK_FREE (char, body);
  xmlrpc_env_clean (&env);
  return value;
}
