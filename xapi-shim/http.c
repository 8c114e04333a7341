/* XenAPI over HTTP(S): a SoupServer serving xapi's URLs (see routes):
 * XML-RPC POSTs at / and /RPC2, JSON-RPC at /jsonrpc, either at /json,
 * and disk data at PUT /import_raw_vdi and GET /export_raw_vdi
 * (http-vdi.c).  A path is served, as xapi serves it, by the handler of
 * its method with the longest prefix, so /xmlrpc is XML-RPC and
 * /import_raw_vdi/ the import.
 *
 * Request bodies are bounded before they are read: a Content-Length over
 * max-request-size is answered 413 from the headers alone, and a chunked
 * body is collected here (not by libsoup) and dropped as soon as it passes
 * the limit, so a huge request never costs more than the limit in
 * memory.
 *
 * One call, once its body is in: the message is paused; a worker thread
 * (rpc_work) decodes the body with its route's codec (rpc.h: XML-RPC,
 * xmlrpc-decode.c: bounded depth, no DTD, no entity expansion; JSON-RPC,
 * jsonrpc.c: the same bounds) and checks a login's password (crypt(3) is slow by
 * design); the main loop, which owns the daemon's state, runs the call
 * (xapi_dispatch); a worker thread encodes the reply in the call's
 * protocol (rpc_call.form); the main loop sends it.  So a huge or
 * hostile body never holds up the main loop that answers every other
 * client.  A call answered later (a synchronous call of a job's method
 * such as VDI.copy, event.from, event.next: struct xapi_deferral) waits
 * without a thread and without a nested main loop: its message stays
 * paused, the deferral calls deferred_ready once the answer can be made,
 * and the reply takes the same way from there.  When the daemon stops,
 * the calls still waiting are dropped (xapi_http_free). */

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <libsoup/soup.h>

#include "rpc.h"
#include "xapi.h"
#include "xmlrpc-utf8.h"

struct xapi_http
{
  struct xapi_daemon *d;
  SoupServer *server;
  GThreadPool *fast, *bulk, *login; /* see rpc_work */
  unsigned inflight;                /* calls between pause and answer */
  GPtrArray *waiting; /* struct rpc_call * deferred (see the top) */
  bool stopping;      /* xapi_http_free: answer nothing more */
};

/* What serves a request. */
enum route_kind
{
  ROUTE_RPC,    /* a call, decoded by the route's codec */
  ROUTE_IMPORT, /* http-vdi.c */
  ROUTE_EXPORT,
  ROUTE_BACKUP, /* http-backup.c */
};

struct route
{
  const char *method; /* one HTTP method */
  const char *path;   /* the prefix it serves */
  enum route_kind kind;
  const struct xapi_rpc_codec *codec; /* ROUTE_RPC */
  const char *other_method;           /* answered 405 to another method */
};

/* xapi's handlers (xapi.ml, Constants): the paths, and the methods. */
static const struct route routes[] = {
  { "POST", "/", ROUTE_RPC, &xapi_rpc_xml,
    "XenAPI takes XML-RPC calls as POST /\n" },
  { "POST", "/RPC2", ROUTE_RPC, &xapi_rpc_xml,
    "XenAPI takes XML-RPC calls as POST /RPC2\n" },
  { "POST", "/json", ROUTE_RPC, &xapi_rpc_sniff,
    "XenAPI takes calls as POST /json\n" },
  { "POST", "/jsonrpc", ROUTE_RPC, &xapi_rpc_json,
    "XenAPI takes JSON-RPC calls as POST /jsonrpc\n" },
  { "PUT", "/import_raw_vdi", ROUTE_IMPORT, NULL,
    "import_raw_vdi takes the disk as PUT\n" },
  { "GET", "/export_raw_vdi", ROUTE_EXPORT, NULL,
    "export_raw_vdi is a GET\n" },
  { "HEAD", "/export_raw_vdi", ROUTE_EXPORT, NULL,
    "export_raw_vdi is a GET\n" },
  /* Ours: the backup repositories (--backup-repo). */
  { "GET", "/backups", ROUTE_BACKUP, NULL, "no such backup request\n" },
  { "PUT", "/backups", ROUTE_BACKUP, NULL, "no such backup request\n" },
  { "POST", "/backups", ROUTE_BACKUP, NULL, "no such backup request\n" },
};

/* Does PATH name the route at PREFIX: PREFIX itself, or a path below it
 * ("/import_raw_vdi/")?  "/" names only itself. */
static bool
names_route (const char *path, const char *prefix)
{
  size_t n = strlen (prefix);

  if (strcmp (prefix, "/") == 0)
    return strcmp (path, "/") == 0;
  return strncmp (path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The route of METHOD PATH: the route of METHOD with the longest prefix
 * of PATH, as xapi chooses.  A path that names a route of another method
 * (names_route) and none longer of METHOD is that route with
 * *WRONG_METHOD set (405: "POST /export_raw_vdi" is not a call).  NULL
 * if none (404). */
static const struct route *
route_find (const char *method, const char *path, bool *wrong_method)
{
  const struct route *best = NULL, *other = NULL;

  for (size_t i = 0; i < G_N_ELEMENTS (routes); i++) {
    const struct route *r = &routes[i];
    size_t n = strlen (r->path);

    if (strcmp (r->method, method) == 0) {
      if (strncmp (path, r->path, n) == 0
          && (best == NULL || n > strlen (best->path)))
        best = r;
    }
    else if (names_route (path, r->path)
             && (other == NULL || n > strlen (other->path)))
      other = r;
  }
  *wrong_method
      = other && (best == NULL || strlen (other->path) > strlen (best->path));
  return *wrong_method ? other : best;
}

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
struct drain_after_refusal
{
  GIOStream *io;
  GSocket *sock;
  gint64 deadline;
};

#define LINGER_SECONDS 5

static gboolean
linger_read (GSocket *sock, GIOCondition cond, gpointer user_data)
{
  struct drain_after_refusal *l = user_data;
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
  struct drain_after_refusal *l = p;

  g_io_stream_close (l->io, NULL, NULL);
  g_object_unref (l->io);
  g_object_unref (l->sock);
  g_free (l);
}

/* An answer straight from the headers: take the connection from libsoup
 * (which would otherwise read the whole body before answering), answer,
 * and close it. */
static void
refuse_now (SoupServerMessage *msg, guint status, const char *text)
{
  g_autofree char *answer = g_strdup_printf (
      "HTTP/1.1 %u %s\r\n"
      "Connection: close\r\nContent-Type: text/plain\r\n"
      "Content-Length: %zu\r\n\r\n%s",
      status, soup_status_get_phrase (status), strlen (text), text);
  /* Take the socket first: the stolen stream wraps it (and TLS). */
  GSocket *sock = soup_server_message_get_socket (msg);
  GIOStream *io;
  struct drain_after_refusal *l;
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
                             strlen (answer), NULL, NULL, NULL);
  g_output_stream_flush (g_io_stream_get_output_stream (io), NULL, NULL);
  l = g_new0 (struct drain_after_refusal, 1);
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

/* PUT /import_raw_vdi: checked from the headers, so that a refused
 * upload is answered before its body is sent; the body then goes to
 * http-vdi.c as it arrives, never into memory. */
static void
early_import (struct xapi_http *h, SoupServerMessage *msg, GHashTable *query)
{
  g_autofree char *text = NULL;
  guint status;

  soup_message_body_set_accumulate (soup_server_message_get_request_body (msg),
                                    FALSE);
  if (soup_server_message_get_method (msg) != SOUP_METHOD_PUT) {
    refuse_now (msg, SOUP_STATUS_METHOD_NOT_ALLOWED,
                "import_raw_vdi takes the disk as PUT\n");
    return;
  }
  status = xapi_http_vdi_import_begin (h->d, msg, query, &text);
  if (status) {
    g_message ("%s: import_raw_vdi refused (%u): %s",
               soup_server_message_get_remote_host (msg), status, text);
    refuse_now (msg, status, text);
  }
}

/* Runs once the headers are in, before any of the body is read. */
static void
early_handler (SoupServer *server, SoupServerMessage *msg, const char *path,
               GHashTable *query, gpointer user_data)
{
  struct xapi_http *h = user_data;
  SoupMessageHeaders *hdrs = soup_server_message_get_request_headers (msg);
  struct body *b;
  bool wrong_method;
  const struct route *r
      = route_find (soup_server_message_get_method (msg), path, &wrong_method);

  if (r && r->kind == ROUTE_IMPORT) {
    early_import (h, msg, query);
    return;
  }
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
    refuse_now (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE,
                "request body too large\n");
    return;
  }
  b = g_new0 (struct body, 1);
  /* Sized from the header (checked above): growing a big body by
   * doubling would copy it again and again on the main loop. */
  if (soup_message_headers_get_encoding (hdrs) == SOUP_ENCODING_CONTENT_LENGTH)
    b->data = g_byte_array_sized_new (
        (guint)soup_message_headers_get_content_length (hdrs));
  else
    b->data = g_byte_array_new ();
  b->limit = h->d->max_request_size;
  g_object_set_data_full (G_OBJECT (msg), "xapi-body", b, body_free);
  g_signal_connect (msg, "got-chunk", G_CALLBACK (got_chunk), b);
}

/* Worker threads.  Bodies up to BULK_BODY bytes (the calls clients
 * make) are decoded, and their replies encoded, by up to FAST_THREADS
 * threads; bigger ones by up to BULK_THREADS threads that run at a lower
 * CPU priority (nice SLOW_NICE).  So a flood of huge bodies neither takes
 * the CPU from the main loop nor keeps small calls waiting in a queue
 * behind them.  The passwords of logins are checked by LOGIN_THREADS
 * threads of their own: a flood of guesses then queues up there and
 * slows down logins, not everyone.  They keep the normal priority, so
 * that a thread holding a lock the main loop may need (the allocator's,
 * the memory map's: crypt(3) maps megabytes) is not one the scheduler
 * starves. */
#define BULK_BODY (64 * 1024)
#define FAST_THREADS 4
#define BULK_THREADS 2
#define LOGIN_THREADS 2
#define SLOW_NICE 10

enum step
{
  STEP_DECODE,
  STEP_LOGIN,
  STEP_ENCODE,
};

/* One XML-RPC call on its way (see the top of the file). */
struct rpc_call
{
  struct xapi_http *h;
  SoupServerMessage *msg; /* a reference, paused */
  bool bulk;              /* a big body: the bulk threads */
  enum step step;         /* the worker's next step */
  GByteArray *body;
  const struct xapi_rpc_codec *codec; /* the route's */
  struct xapi_rpc_request rq;         /* decoded */
  struct xapi_rpc_form form;          /* how to answer it */
  struct xapi_login_check login;      /* a login's password, checked */
  xmlrpc_value *reply;                /* from the dispatcher, to encode */
  struct xapi_deferral *deferred;     /* answered once it is ready */
  GSource *peer_watch;                /* while deferred: the client leaving */
  bool peer_gone;                     /* it left: answer nobody */
  GBytes *out;                        /* encoded */
};

static void
rpc_call_free (struct rpc_call *rc)
{
  if (rc->body)
    g_byte_array_unref (rc->body);
  xapi_rpc_request_clear (&rc->rq);
  xapi_rpc_form_clear (&rc->form);
  xapi_login_check_clear (&rc->login);
  if (rc->reply)
    xmlrpc_DECREF (rc->reply);
  if (rc->out)
    g_bytes_unref (rc->out);
  xapi_deferral_free (rc->deferred);
  if (rc->peer_watch) {
    g_source_destroy (rc->peer_watch);
    g_source_unref (rc->peer_watch);
  }
  g_object_unref (rc->msg);
  g_free (rc);
}

/* Send BYTES as the answer and let the message go on. */
static void
rpc_answer (struct rpc_call *rc, guint status, const char *content_type,
            GBytes *bytes)
{
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);

  soup_server_message_set_status (rc->msg, status, NULL);
  if (status != SOUP_STATUS_OK)
    soup_message_headers_replace (
        soup_server_message_get_response_headers (rc->msg), "Connection",
        "close");
  soup_server_message_set_response (rc->msg, content_type, SOUP_MEMORY_COPY,
                                    data, len);
  soup_server_message_unpause (rc->msg);
}

/* Answer INTERNAL_ERROR: the dispatcher could not even make a reply
 * (ENV says why, if it does). */
static void
rpc_answer_internal_error (struct rpc_call *rc, xmlrpc_env *env)
{
  g_autoptr (GBytes) out = xapi_rpc_answer_failure (
      &rc->form, (const char *const[]){ "INTERNAL_ERROR",
                                        env->fault_occurred ? env->fault_string
                                                            : "no reply",
                                        NULL });

  rpc_answer (rc, SOUP_STATUS_OK, rc->form.codec->content_type, out);
}

/* The end of a call: answered, or dropped while the daemon stops. */
static void
rpc_done (struct rpc_call *rc)
{
  rc->h->inflight--;
  rpc_call_free (rc);
}

static gboolean decoded (gpointer user_data);
static gboolean encoded (gpointer user_data);
static void deferred_ready (struct xapi_deferral *df, void *opaque);
static void watch_peer (struct rpc_call *rc);

/* A thread's step of a call, then back to the main loop. */
static void rpc_queue (struct rpc_call *rc);

/* A worker's step of a call, then back to the main loop. */
static void
rpc_work (gpointer data, gpointer pool_data)
{
  static __thread bool niced;
  struct rpc_call *rc = data;
  GSource *src;

  if (pool_data && !niced) { /* a slow pool's thread (exclusive) */
    if (setpriority (PRIO_PROCESS, (id_t)syscall (SYS_gettid), SLOW_NICE)
        == -1)
      g_message ("cannot lower the priority of a worker: %s",
                 g_strerror (errno));
    niced = true;
  }
  switch (rc->step) {
  case STEP_DECODE:
    xapi_rpc_decode_with (rc->codec, rc->body->data, rc->body->len, &rc->rq,
                          &rc->form);
    g_clear_pointer (&rc->body, g_byte_array_unref);
    if (rc->rq.method && xapi_login_method (rc->rq.method)) {
      rc->step = STEP_LOGIN;
      rpc_queue (rc);
      return;
    }
    break;
  case STEP_LOGIN:
    xapi_login_precheck (rc->h->d, rc->rq.method, rc->rq.params, &rc->login);
    break;
  case STEP_ENCODE:
    /* The reply is this call's alone now (the dispatcher returned it and
     * the main loop no longer looks at it). */
    rc->out = xapi_rpc_answer (&rc->form, rc->reply);
    g_clear_pointer (&rc->reply, xmlrpc_DECREF);
    break;
  }
  /* Not g_main_context_invoke, which may run the callback right here
   * when the main context happens to be free. */
  src = g_idle_source_new ();
  g_source_set_callback (src, rc->step == STEP_ENCODE ? encoded : decoded, rc,
                         NULL);
  g_source_attach (src, NULL);
  g_source_unref (src);
}

static void
rpc_queue (struct rpc_call *rc)
{
  struct xapi_http *h = rc->h;

  g_thread_pool_push (rc->step == STEP_LOGIN ? h->login
                      : rc->bulk             ? h->bulk
                                             : h->fast,
                      rc, NULL);
}

static gboolean
encoded (gpointer user_data)
{
  struct rpc_call *rc = user_data;

  if (!rc->h->stopping)
    rpc_answer (rc, SOUP_STATUS_OK, rc->form.codec->content_type, rc->out);
  rpc_done (rc);
  return G_SOURCE_REMOVE;
}

/* Back on the main loop with the decoded call: run it here (the
 * daemon's state is the main loop's), encode the reply in a thread. */
static gboolean
decoded (gpointer user_data)
{
  struct rpc_call *rc = user_data;
  xmlrpc_env env;

  if (rc->h->stopping) {
    rpc_done (rc);
    return G_SOURCE_REMOVE;
  }
  if (rc->rq.answer) {
    g_message ("%s: %s", soup_server_message_get_remote_host (rc->msg),
               rc->rq.log);
    rpc_answer (rc, rc->rq.status, rc->rq.content_type, rc->rq.answer);
    rpc_done (rc);
    return G_SOURCE_REMOVE;
  }
  xmlrpc_env_init (&env);
  rc->reply = xapi_dispatch (rc->h->d, &env, rc->rq.method, rc->rq.params,
                             rc->login.user ? &rc->login : NULL,
                             &rc->deferred);
  if (rc->deferred) {
    /* Answered when the deferral is ready (deferred_ready). */
    xmlrpc_env_clean (&env);
    xapi_rpc_request_clear (&rc->rq);
    g_ptr_array_add (rc->h->waiting, rc);
    rc->deferred->ready = deferred_ready;
    rc->deferred->opaque = rc;
    rc->deferred->ops->start (rc->deferred);
    watch_peer (rc);
    return G_SOURCE_REMOVE;
  }
  if (env.fault_occurred || rc->reply == NULL) {
    /* xapi_dispatch turns xmlrpc-c's own errors into INTERNAL_ERROR;
     * this is for when it could not even build that. */
    g_warning ("xmlrpc: %s",
               env.fault_occurred ? env.fault_string : "no reply");
    rpc_answer_internal_error (rc, &env);
    xmlrpc_env_clean (&env);
    rpc_done (rc);
    return G_SOURCE_REMOVE;
  }
  xmlrpc_env_clean (&env);
  xapi_rpc_request_clear (&rc->rq); /* the parameters, before the thread */
  rc->step = STEP_ENCODE;
  rpc_queue (rc);
  return G_SOURCE_REMOVE;
}

/* A client that leaves while its call is deferred (an event.from with a
 * long timeout, then a closed connection) is noticed: its deferral is
 * cancelled at once, so that it holds no socket and takes no events
 * meant for the session's next call.  Readable with nothing to read is
 * the end of the connection; readable with data (a request sent ahead,
 * or TLS's close_notify) ends the watch, so that it never spins. */
static gboolean
peer_event (GSocket *sock, GIOCondition cond, gpointer opaque)
{
  struct rpc_call *rc = opaque;

  if (!(cond & (G_IO_HUP | G_IO_ERR))) {
    char b;
    ssize_t n = recv (g_socket_get_fd (sock), &b, 1, MSG_PEEK | MSG_DONTWAIT);

    if (n > 0 || (n == -1 && (errno == EAGAIN || errno == EINTR))) {
      g_clear_pointer (&rc->peer_watch, g_source_unref);
      return G_SOURCE_REMOVE;
    }
  }
  g_clear_pointer (&rc->peer_watch, g_source_unref);
  /* libsoup lets the connection go once the message goes on (its
   * answer falls into the closed socket). */
  soup_server_message_set_status (rc->msg, SOUP_STATUS_NO_CONTENT, NULL);
  soup_message_headers_replace (
      soup_server_message_get_response_headers (rc->msg), "Connection",
      "close");
  soup_server_message_unpause (rc->msg);
  if (rc->deferred->ops->cancel (rc->deferred)) {
    g_ptr_array_remove_fast (rc->h->waiting, rc);
    rpc_done (rc);
  }
  else
    rc->peer_gone = true; /* deferred_ready is on its way */
  return G_SOURCE_REMOVE;
}

static void
watch_peer (struct rpc_call *rc)
{
  GSocket *sock = soup_server_message_get_socket (rc->msg);

  if (sock == NULL)
    return;
  rc->peer_watch
      = g_socket_create_source (sock, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback (rc->peer_watch, (GSourceFunc)(void (*) (void))peer_event,
                         rc, NULL);
  g_source_attach (rc->peer_watch, NULL);
}

/* A deferred call can be answered (the main loop): its reply goes to a
 * thread to be encoded. */
static void
deferred_ready (struct xapi_deferral *df, void *opaque)
{
  struct rpc_call *rc = opaque;
  xmlrpc_env env;

  g_ptr_array_remove_fast (rc->h->waiting, rc);
  if (rc->peer_watch) {
    g_source_destroy (rc->peer_watch);
    g_clear_pointer (&rc->peer_watch, g_source_unref);
  }
  if (rc->h->stopping || rc->peer_gone) {
    rpc_done (rc);
    return;
  }
  xmlrpc_env_init (&env);
  rc->reply = xapi_dispatch_deferred (rc->h->d, &env, df);
  if (env.fault_occurred || rc->reply == NULL) {
    rpc_answer_internal_error (rc, &env);
    xmlrpc_env_clean (&env);
    rpc_done (rc);
    return;
  }
  xmlrpc_env_clean (&env);
  rc->step = STEP_ENCODE;
  rpc_queue (rc);
}

static void
handler (SoupServer *server, SoupServerMessage *msg, const char *path,
         GHashTable *query, gpointer user_data)
{
  struct xapi_http *h = user_data;
  struct body *b = g_object_get_data (G_OBJECT (msg), "xapi-body");
  struct rpc_call *rc;
  bool wrong_method;
  const struct route *r
      = route_find (soup_server_message_get_method (msg), path, &wrong_method);

  if (soup_server_message_get_status (msg) != 0)
    return; /* refused by early_handler */
  if (r == NULL) {
    refuse (msg, SOUP_STATUS_NOT_FOUND, "not found\n");
    return;
  }
  if (r->kind == ROUTE_IMPORT) { /* its method was checked early */
    xapi_http_vdi_import_end (h->d, msg);
    return;
  }
  if (wrong_method) {
    refuse (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, r->other_method);
    return;
  }
  if (r->kind == ROUTE_EXPORT) {
    xapi_http_vdi_export (h->d, msg, query);
    return;
  }
  if (b == NULL || b->too_big) {
    refuse (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE,
            "request body too large\n");
    return;
  }
  if (r->kind == ROUTE_BACKUP) {
    xapi_http_backup (h->d, msg, path, query, g_steal_pointer (&b->data));
    return;
  }

  rc = g_new0 (struct rpc_call, 1);
  rc->h = h;
  rc->msg = g_object_ref (msg);
  rc->codec = r->codec;
  rc->body = g_steal_pointer (&b->data);
  rc->bulk = rc->body->len > BULK_BODY;
  h->inflight++;
  soup_server_message_pause (msg);
  rpc_queue (rc);
}

struct xapi_http *
xapi_http_new (struct xapi_daemon *d, GError **error)
{
  struct xapi_http *h = g_new0 (struct xapi_http, 1);

  h->d = d;
  h->waiting = g_ptr_array_new ();
  /* Exclusive: the bulk threads lower their own priority, so they must
   * not serve anyone else. */
  h->fast = g_thread_pool_new (rpc_work, NULL, FAST_THREADS, TRUE, NULL);
  h->bulk = g_thread_pool_new (rpc_work, h, BULK_THREADS, TRUE, NULL);
  h->login = g_thread_pool_new (rpc_work, NULL, LOGIN_THREADS, TRUE, NULL);
  if (!xmlrpc_full_unicode ())
    g_warning ("xmlrpc-c refuses characters outside the Basic Multilingual "
               "Plane: strings holding them will be refused");
  h->server = soup_server_new ("server-header",
                               PACKAGE_NAME "/" PACKAGE_VERSION " ", NULL);
  soup_server_add_early_handler (h->server, NULL, early_handler, h, NULL);
  soup_server_add_handler (h->server, NULL, handler, h, NULL);
  return h;
}

/* Clients keep many connections open at once (Xen Orchestra 20, each
 * event.from caller one more): the listening sockets' backlog is
 * LISTEN_BACKLOG (the kernel caps it at net.core.somaxconn), not GLib's
 * 10, past which the kernel answers new connections with SYN cookies
 * and, now and then, a reset.  (listen(2) again on a listening socket
 * sets its backlog.) */
#define LISTEN_BACKLOG 4096

static void
listen_backlog (struct xapi_http *h)
{
  GSList *socks = soup_server_get_listeners (h->server);

  for (GSList *l = socks; l; l = l->next) {
    /* libsoup's GSocket is listening already, and GLib sets a backlog
     * only before: listen again through a second GSocket of the same
     * socket (a dup of its fd, closed with it). */
    int fd = dup (g_socket_get_fd (l->data));
    g_autoptr (GSocket) again = fd >= 0 ? g_socket_new_from_fd (fd, NULL)
                                        : NULL;

    if (again == NULL && fd >= 0)
      close (fd);
    if (again)
      g_socket_set_listen_backlog (again, LISTEN_BACKLOG);
    if (again == NULL || !g_socket_listen (again, NULL))
      g_warning ("cannot raise the backlog of a listening socket");
  }
  g_slist_free (socks);
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
  listen_backlog (h);
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
  h->stopping = true;
  if (h->server) {
    soup_server_disconnect (h->server);
    g_object_unref (h->server);
  }
  /* Calls still in a worker thread come back to the main context, and
   * are dropped there (decoding and encoding take a bounded time). */
  if (h->fast)
    g_thread_pool_free (h->fast, FALSE, TRUE);
  if (h->bulk)
    g_thread_pool_free (h->bulk, FALSE, TRUE);
  if (h->login)
    g_thread_pool_free (h->login, FALSE, TRUE);
  /* Deferred calls are dropped: the jobs they wait for end only after
   * this (the host stops them), and the daemon answers nothing more.  A
   * deferral already on its way comes back through deferred_ready. */
  for (guint i = h->waiting->len; i-- > 0;) {
    struct rpc_call *rc = h->waiting->pdata[i];

    if (rc->deferred->ops->cancel (rc->deferred)) {
      g_ptr_array_remove_index_fast (h->waiting, i);
      rpc_done (rc);
    }
  }
  while (h->inflight > 0)
    g_main_context_iteration (NULL, TRUE);
  g_ptr_array_unref (h->waiting);
  g_free (h);
}
