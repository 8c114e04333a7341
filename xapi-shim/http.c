/* XenAPI over HTTP(S): a SoupServer taking XML-RPC POSTs at "/", as xapi
 * does.  xmlrpc-c parses the call and hands every method name to one
 * default handler, xapi_dispatch.
 *
 * Request bodies are bounded before they are read: a Content-Length over
 * max-request-size is answered 413 from the headers alone, and a chunked
 * body is collected here (not by libsoup) and dropped as soon as it passes
 * the limit, so a huge request never costs more than the limit in
 * memory. */

#include <string.h>

#include <libsoup/soup.h>
#include <xmlrpc-c/server.h>

#include "xapi.h"

struct xapi_http
{
  struct xapi_daemon *d;
  SoupServer *server;
  xmlrpc_registry *registry;
};

/* The body of one request as it arrives. */
struct body
{
  GByteArray *data;
  gboolean too_big;
  size_t limit;
};

static void
body_free (gpointer p)
{
  struct body *b = p;

  if (b->data)
    g_byte_array_unref (b->data);
  g_free (b);
}

static void
got_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer user_data)
{
  struct body *b = user_data;
  gsize len;
  const guint8 *p = g_bytes_get_data (chunk, &len);

  if (b->too_big)
    return;
  if (b->data->len + len > b->limit) {
    b->too_big = TRUE;
    g_byte_array_set_size (b->data, 0);
    return;
  }
  g_byte_array_append (b->data, p, len);
}

static void
refuse (SoupServerMessage *msg, guint status, const char *text)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                "Connection", "close");
  soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_COPY, text,
                                    strlen (text));
}

/* A connection we answered before reading the request body: the rest of
 * the body is read and thrown away for a while before closing, so that
 * the client, still sending, gets to read our answer (closing with unread
 * data would reset the connection and lose it). */
struct linger
{
  GIOStream *io;
  GSocket *sock;
  gint64 deadline;
};

#define LINGER_SECONDS 5

static gboolean
linger_read (GSocket *sock, GIOCondition cond, gpointer user_data)
{
  struct linger *l = user_data;
  char buf[65536];
  gssize n;

  do
    n = g_socket_receive (sock, buf, sizeof buf, NULL, NULL);
  while (n > 0 && g_get_monotonic_time () < l->deadline);
  if (n < 0 && g_get_monotonic_time () < l->deadline)
    return G_SOURCE_CONTINUE; /* would block (or an error: see below) */
  return G_SOURCE_REMOVE;     /* EOF, or time is up */
}

static void
linger_free (gpointer p)
{
  struct linger *l = p;

  g_io_stream_close (l->io, NULL, NULL);
  g_object_unref (l->io);
  g_object_unref (l->sock);
  g_free (l);
}

/* 413 straight from the headers: take the connection from libsoup (which
 * would otherwise read the whole body before answering), answer, and
 * close it. */
static void
refuse_now (SoupServerMessage *msg)
{
  static const char answer[]
      = "HTTP/1.1 413 Request Entity Too Large\r\n"
        "Connection: close\r\nContent-Type: text/plain\r\n"
        "Content-Length: 23\r\n\r\nrequest body too large\n";
  /* Take the socket first: the stolen stream wraps it (and TLS). */
  GSocket *sock = soup_server_message_get_socket (msg);
  GIOStream *io;
  struct linger *l;
  GSource *src;

  if (sock == NULL)
    return;
  g_object_ref (sock);
  io = soup_server_message_steal_connection (msg);
  if (io == NULL) {
    g_object_unref (sock);
    return;
  }
  g_output_stream_write_all (g_io_stream_get_output_stream (io), answer,
                             sizeof answer - 1, NULL, NULL, NULL);
  g_output_stream_flush (g_io_stream_get_output_stream (io), NULL, NULL);
  l = g_new0 (struct linger, 1);
  l->io = io;
  l->sock = sock;
  l->deadline = g_get_monotonic_time () + LINGER_SECONDS * G_USEC_PER_SEC;
  g_socket_set_blocking (l->sock, FALSE);
  g_socket_shutdown (l->sock, FALSE, TRUE, NULL);
  src = g_socket_create_source (l->sock, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback (src, G_SOURCE_FUNC (linger_read), l, linger_free);
  /* Wake at the deadline too, for a client that neither sends nor
   * closes. */
  g_source_set_ready_time (src, l->deadline);
  g_source_attach (src, NULL);
  g_source_unref (src);
}

/* Runs once the headers are in, before any of the body is read. */
static void
early_handler (SoupServer *server, SoupServerMessage *msg, const char *path,
               GHashTable *query, gpointer user_data)
{
  struct xapi_http *h = user_data;
  SoupMessageHeaders *hdrs = soup_server_message_get_request_headers (msg);
  struct body *b;

  /* The body is ours to collect (got_chunk), never libsoup's: a refused
   * body that libsoup still reads is dropped as it arrives. */
  soup_message_body_set_accumulate (soup_server_message_get_request_body (msg),
                                    FALSE);
  if (soup_message_headers_get_encoding (hdrs) == SOUP_ENCODING_CONTENT_LENGTH
      && (guint64)soup_message_headers_get_content_length (hdrs)
             > h->d->max_request_size) {
    g_message ("%s: request of %" G_GINT64_FORMAT " bytes refused (limit "
               "%zu)",
               soup_server_message_get_remote_host (msg),
               soup_message_headers_get_content_length (hdrs),
               h->d->max_request_size);
    refuse_now (msg);
    return;
  }
  b = g_new0 (struct body, 1);
  b->data = g_byte_array_new ();
  b->limit = h->d->max_request_size;
  g_object_set_data_full (G_OBJECT (msg), "xapi-body", b, body_free);
  g_signal_connect (msg, "got-chunk", G_CALLBACK (got_chunk), b);
}

static xmlrpc_value *
default_method (xmlrpc_env *env, const char *call_info, const char *method,
                xmlrpc_value *params, void *user_data)
{
  struct xapi_http *h = user_data;

  return xapi_dispatch (h->d, env, method, params);
}

static void
handler (SoupServer *server, SoupServerMessage *msg, const char *path,
         GHashTable *query, gpointer user_data)
{
  struct xapi_http *h = user_data;
  struct body *b = g_object_get_data (G_OBJECT (msg), "xapi-body");
  xmlrpc_env env;
  const char *method_name = NULL;
  xmlrpc_value *params = NULL;
  xmlrpc_mem_block *out = NULL;

  if (soup_server_message_get_status (msg) != 0)
    return; /* refused by early_handler */
  if (strcmp (path, "/") != 0) {
    refuse (msg, SOUP_STATUS_NOT_FOUND, "not found\n");
    return;
  }
  if (soup_server_message_get_method (msg) != SOUP_METHOD_POST) {
    refuse (msg, SOUP_STATUS_METHOD_NOT_ALLOWED,
            "XenAPI takes XML-RPC calls as POST /\n");
    return;
  }
  if (b == NULL || b->too_big) {
    refuse (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE,
            "request body too large\n");
    return;
  }

  /* A request that is not XML-RPC at all is the client's error: 400,
   * rather than a fault the client might take for a XenAPI answer. */
  xmlrpc_env_init (&env);
  xmlrpc_parse_call (&env, (const char *)b->data->data, b->data->len,
                     &method_name, &params);
  if (env.fault_occurred) {
    g_autofree char *text = g_strdup_printf ("malformed XML-RPC request: %s\n",
                                             env.fault_string);
    g_message ("%s: %s", soup_server_message_get_remote_host (msg),
               g_strchomp (text));
    refuse (msg, SOUP_STATUS_BAD_REQUEST, text);
    xmlrpc_env_clean (&env);
    return;
  }
  if (g_ascii_strncasecmp (method_name, "system.", 7) == 0) {
    /* xmlrpc-c answers system.* itself, with XML-RPC faults; a XenAPI
     * client gets a XenAPI reply (MESSAGE_METHOD_UNKNOWN) instead. */
    xmlrpc_value *reply = xapi_dispatch (h->d, &env, method_name, params);

    out = XMLRPC_MEMBLOCK_NEW (char, &env, 0);
    if (!env.fault_occurred)
      xmlrpc_serialize_response (&env, out, reply);
    xmlrpc_DECREF (reply);
  }
  else
    xmlrpc_registry_process_call2 (&env, h->registry,
                                   (const char *)b->data->data, b->data->len,
                                   NULL, &out);
  free ((void *)method_name);
  xmlrpc_DECREF (params);
  if (env.fault_occurred) {
    g_warning ("xmlrpc: %s", env.fault_string);
    refuse (msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal error\n");
    xmlrpc_env_clean (&env);
    return;
  }
  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  soup_server_message_set_response (msg, "text/xml", SOUP_MEMORY_COPY,
                                    XMLRPC_MEMBLOCK_CONTENTS (char, out),
                                    XMLRPC_MEMBLOCK_SIZE (char, out));
  XMLRPC_MEMBLOCK_FREE (char, out);
  xmlrpc_env_clean (&env);
}

struct xapi_http *
xapi_http_new (struct xapi_daemon *d, GError **error)
{
  struct xapi_http *h = g_new0 (struct xapi_http, 1);
  xmlrpc_env env;

  h->d = d;
  /* xmlrpc-c refuses documents over 512 KiB by default; our own limit
   * (checked before parsing) is the one that counts. */
  xmlrpc_limit_set (XMLRPC_XML_SIZE_LIMIT_ID, d->max_request_size);

  xmlrpc_env_init (&env);
  h->registry = xmlrpc_registry_new (&env);
  if (!env.fault_occurred)
    xmlrpc_registry_set_default_method (&env, h->registry, default_method, h);
  if (env.fault_occurred) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "xmlrpc-c: %s",
                 env.fault_string);
    xmlrpc_env_clean (&env);
    xapi_http_free (h);
    return NULL;
  }
  xmlrpc_env_clean (&env);

  h->server = soup_server_new ("server-header",
                               PACKAGE_NAME "/" PACKAGE_VERSION " ", NULL);
  soup_server_add_early_handler (h->server, NULL, early_handler, h, NULL);
  soup_server_add_handler (h->server, NULL, handler, h, NULL);
  return h;
}

/* ADDR_PORT is "HOST:PORT" or "[V6]:PORT"; port 0 picks a free one (the
 * daemon logs the URIs it serves). */
int
xapi_http_listen (struct xapi_http *h, const char *addr_port,
                  GTlsCertificate *tls, GError **error)
{
  g_autoptr (GSocketConnectable) sc = NULL;
  g_autoptr (GSocketAddressEnumerator) e = NULL;
  g_autoptr (GSocketAddress) sa = NULL;
  SoupServerListenOptions opts = 0;

  sc = g_network_address_parse (addr_port, 0, error);
  if (sc == NULL)
    return -1;
  e = g_socket_connectable_enumerate (sc);
  sa = g_socket_address_enumerator_next (e, NULL, error);
  if (sa == NULL) {
    if (error && *error == NULL)
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: no address",
                   addr_port);
    return -1;
  }
  if (tls) {
    soup_server_set_tls_certificate (h->server, tls);
    opts |= SOUP_SERVER_LISTEN_HTTPS;
  }
  if (!soup_server_listen (h->server, sa, opts, error)) {
    g_prefix_error (error, "listen on %s: ", addr_port);
    return -1;
  }
  return 0;
}

/* The URIs served, logged once listening so that tests (and admins)
 * see the ports picked for :0. */
char *
xapi_http_log_uris (struct xapi_http *h)
{
  GSList *uris = soup_server_get_uris (h->server);
  char *best = NULL;

  for (GSList *l = uris; l; l = l->next) {
    g_autofree char *s = g_uri_to_string (l->data);

    g_message ("listening on %s", s);
    if (best == NULL || g_str_has_prefix (s, "https:")) {
      g_free (best);
      best = g_strdup (s);
    }
  }
  g_slist_free_full (uris, (GDestroyNotify)g_uri_unref);
  return best;
}

void
xapi_http_free (struct xapi_http *h)
{
  if (h == NULL)
    return;
  if (h->server) {
    soup_server_disconnect (h->server);
    g_object_unref (h->server);
  }
  if (h->registry)
    xmlrpc_registry_free (h->registry);
  g_free (h);
}
