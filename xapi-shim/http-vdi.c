/* xapi's HTTP handlers for disk data, as xapi spells them:
 *
 *   PUT /import_raw_vdi?session_id=S&vdi=REF&format=raw|vhd
 *   GET /export_raw_vdi?session_id=S&vdi=REF&format=raw|vhd
 *
 * Both are copies of the copy engine (copy.h) between the VDI and a byte
 * stream (COPY_STREAM, raw or VHD); this file holds the HTTP side only.
 *
 * An import is checked from the request headers alone (session, VDI,
 * format, size, the VDI free of other operations) and its copy opened
 * (the VDI, the VHD reader), so a refused upload is answered before its
 * body is read (http.c).  The body then flows through got-chunk as it
 * arrives, fed to the copy (copy_job_feed), which writes it before the
 * handler returns: libsoup reads no more of the socket than the image
 * takes, and memory is the engine's staging buffer whatever the disk
 * size.  Into a fresh VDI (as VDI.create leaves it: nothing allocated,
 * no parent) zeroes are not written at all; into one with content they
 * are written as zero ranges, so the VDI ends up reading exactly as the
 * body, whatever it held before.
 *
 * An export is a copy run by a thread per transfer, whose stream
 * destination hands chunks to the main loop, which appends them to the
 * paused response.  The thread waits while more than EXPORT_QUEUE bytes
 * are queued in libsoup (counted down by wrote-body-data), so memory
 * stays bounded and a slow client slows the reader down.
 *
 * While a transfer runs the VDI carries the operation "import" or
 * "export" (xapi_vdi_claim): a second transfer, VDI.destroy etc. are
 * refused with OTHER_OPERATION_IN_PROGRESS.
 */

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <libsoup/soup.h>

#include "copy.h"
#include "xapi.h"

/* Export: bytes at most queued in libsoup. */
#define EXPORT_QUEUE (4u << 20)

/* The VDI a request names, claimed for OP. */
struct vdi_target
{
  struct xapi_daemon *d;
  struct sr_vdi *vdi;
  struct host_sr *sr;
  enum copy_stream_format format;
  bool claimed;
};

static void
vdi_target_clear (struct vdi_target *t)
{
  if (t->claimed)
    host_vdi_release (t->d->host, t->vdi->uuid);
  t->claimed = false;
  if (t->vdi)
    sr_vdi_free (t->vdi);
  t->vdi = NULL;
}

/* Check the query of a transfer and claim its VDI.  0, or an HTTP status
 * with *TEXT saying why (to be freed). */
static guint
vdi_target_get (struct vdi_target *t, struct xapi_daemon *d, GHashTable *query,
                const char *op, char **text)
{
  const char *session
      = query ? g_hash_table_lookup (query, "session_id") : NULL;
  const char *ref = query ? g_hash_table_lookup (query, "vdi") : NULL;
  const char *format = query ? g_hash_table_lookup (query, "format") : NULL;
  xmlrpc_env env;
  struct xapi_call c = { .d = d, .env = &env, .method = op };
  guint status = 0;

  memset (t, 0, sizeof *t);
  t->d = d;
  if (session == NULL || !xapi_session_valid (d, session)) {
    *text
        = g_strdup_printf ("SESSION_INVALID %s\n",
                           session ? session : "(no session_id in the query)");
    return SOUP_STATUS_UNAUTHORIZED;
  }
  if (format == NULL || strcmp (format, "raw") == 0)
    t->format = COPY_STREAM_RAW;
  else if (strcmp (format, "vhd") == 0)
    t->format = COPY_STREAM_VHD;
  else {
    *text = g_strdup_printf ("format=%s: not raw or vhd\n", format);
    return SOUP_STATUS_BAD_REQUEST;
  }
  if (ref == NULL) {
    *text = g_strdup ("HANDLE_INVALID VDI (no vdi in the query)\n");
    return SOUP_STATUS_NOT_FOUND;
  }

  xmlrpc_env_init (&env);
  t->vdi = xapi_vdi_by_ref (&c, ref, &t->sr);
  if (t->vdi && !xapi_vdi_claim (&c, t->vdi->uuid, op)) {
    sr_vdi_free (t->vdi);
    t->vdi = NULL;
  }
  else if (t->vdi)
    t->claimed = true;
  if (t->vdi == NULL) {
    /* The XenAPI error, as a client of the XML-RPC side would see it. */
    g_autofree char *desc = NULL;
    const char *code = c.error ? c.error->pdata[0] : "INTERNAL_ERROR";

    if (c.error) {
      g_ptr_array_add (c.error, NULL);
      desc = g_strjoinv (" ", (char **)c.error->pdata);
    }
    status = strcmp (code, "HANDLE_INVALID") == 0 ? SOUP_STATUS_NOT_FOUND
             : strcmp (code, "OTHER_OPERATION_IN_PROGRESS") == 0
                 ? SOUP_STATUS_CONFLICT
                 : SOUP_STATUS_INTERNAL_SERVER_ERROR;
    *text = g_strdup_printf ("%s\n", desc ? desc : env.fault_string);
  }
  if (c.error)
    g_ptr_array_unref (c.error);
  xmlrpc_env_clean (&env);
  return status;
}

/* The HTTP status for a failure of the copy's (errno). */
static guint
status_of_errno (int errnum)
{
  switch (errnum) {
  case EINVAL:
  case ENOTSUP: return SOUP_STATUS_BAD_REQUEST;
  case EFBIG: return SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE;
  case ENOSPC: return SOUP_STATUS_INSUFFICIENT_STORAGE;
  case EROFS: return SOUP_STATUS_FORBIDDEN;
  default: return SOUP_STATUS_INTERNAL_SERVER_ERROR;
  }
}

/* ------------------------------------------------------------------ */
/* Import. */

struct import
{
  struct vdi_target t;
  struct copy_job *job;
  uint64_t size;     /* guest bytes the body may cover */
  uint64_t received; /* body bytes */
  bool answered;     /* import_end ran */
  gint64 started;
  /* The first failure; the rest of the body is then read and dropped. */
  guint status;
  char *error;
};

/* The copy failed with ERR (errno ERRNUM). */
static void
import_fail (struct import *im, int errnum, const char *err)
{
  im->status = status_of_errno (errnum);
  im->error = g_strdup_printf ("VDI %s: import: %s", im->t.vdi->uuid,
                               err ? err : "failed");
}

static void
import_free (gpointer p)
{
  struct import *im = p;

  if (im->job && !im->answered)
    g_message ("VDI %s: import abandoned after %" PRIu64
               " bytes: the client went away",
               im->t.vdi->uuid, im->received);
  if (im->job)
    copy_job_close (im->job, false, NULL, NULL);
  vdi_target_clear (&im->t);
  g_free (im->error);
  g_free (im);
}

static void
import_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer user_data)
{
  struct import *im = user_data;
  gsize len;
  const guint8 *p = g_bytes_get_data (chunk, &len);
  char *err = NULL;

  if (im->status)
    return; /* failed: the rest of the body is dropped */
  if (im->t.format == COPY_STREAM_RAW && len > im->size - im->received) {
    /* A chunked body, whose size the headers did not say. */
    im->status = SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE;
    im->error = g_strdup_printf ("VDI %s: import: the body is larger than "
                                 "the VDI's virtual size (%" PRIu64 " bytes)",
                                 im->t.vdi->uuid, im->size);
    return;
  }
  if (copy_job_feed (im->job, p, len, &err) == -1)
    import_fail (im, errno, err);
  im->received += len;
  free (err);
}

guint
xapi_http_vdi_import_begin (struct xapi_daemon *d, SoupServerMessage *msg,
                            GHashTable *query, char **text)
{
  SoupMessageHeaders *hdrs = soup_server_message_get_request_headers (msg);
  struct import *im = g_new0 (struct import, 1);
  struct copy_spec from = { .kind = COPY_STREAM };
  struct copy_spec to = { .kind = COPY_VDI };
  struct copy_params params = { 0 };
  uint64_t length = 0;
  char *err = NULL;
  guint status;

  status = vdi_target_get (&im->t, d, query, "import", text);
  if (status) {
    import_free (im);
    return status;
  }
  im->size = im->t.vdi->virtual_size;
  if (soup_message_headers_get_encoding (hdrs) == SOUP_ENCODING_CONTENT_LENGTH)
    length = soup_message_headers_get_content_length (hdrs);
  /* A raw body cannot be larger than the disk; a VHD is a little
   * larger than its data, so it is checked as it is read. */
  if (im->t.format == COPY_STREAM_RAW && length > im->size) {
    *text = g_strdup_printf ("VDI %s: import: the body (%" PRIu64
                             " bytes) is larger than the VDI's virtual size "
                             "(%" PRIu64 " bytes)\n",
                             im->t.vdi->uuid, length, im->size);
    import_free (im);
    return SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE;
  }
  from.stream = im->t.format;
  from.length = length;
  from.size = im->size;
  to.sr = im->t.sr->sr;
  to.vdi = im->t.vdi->uuid;
  im->job = copy_job_open (&from, &to, &params, &err);
  if (im->job == NULL) {
    status = status_of_errno (errno);
    *text = g_strdup_printf ("VDI %s: import: %s\n", im->t.vdi->uuid,
                             err ? err : "cannot open");
    free (err);
    import_free (im);
    return status;
  }
  /* The image may be bigger than the record says (rounded up). */
  im->size = copy_job_size (im->job);
  im->started = g_get_monotonic_time ();
  g_object_set_data_full (G_OBJECT (msg), "xapi-import", im, import_free);
  g_signal_connect (msg, "got-chunk", G_CALLBACK (import_chunk), im);
  g_message ("VDI %s: import (%s) from %s started%s", im->t.vdi->uuid,
             im->t.format == COPY_STREAM_VHD ? "vhd" : "raw",
             soup_server_message_get_remote_host (msg),
             copy_job_dest_is_zero (im->job) ? ""
                                             : " (over existing content)");
  return 0;
}

void
xapi_http_vdi_import_end (struct xapi_daemon *d, SoupServerMessage *msg)
{
  struct import *im = g_object_get_data (G_OBJECT (msg), "xapi-import");
  g_autofree char *text = NULL;
  struct copy_stats stats = { 0 };
  char *err = NULL;
  double secs;

  if (im == NULL) {
    soup_server_message_set_status (msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
                                    NULL);
    return;
  }
  /* The end of the body: what it did not cover reads as zero, and the
   * VDI is flushed and closed. */
  if (im->status == 0) {
    int r = copy_job_close (im->job, true, &stats, &err);

    im->job = NULL;
    if (r == -1)
      import_fail (im, errno, err);
    free (err);
  }
  secs = (g_get_monotonic_time () - im->started) / 1e6;
  im->answered = true;
  if (im->status) {
    g_message ("%s", im->error);
    text = g_strdup_printf ("%s\n", im->error);
    soup_message_headers_replace (
        soup_server_message_get_response_headers (msg), "Connection", "close");
  }
  else {
    g_message ("VDI %s: imported %" PRIu64 " bytes (%" PRIu64
               " written) in %.1f s",
               im->t.vdi->uuid, im->received,
               stats.bytes_written + stats.bytes_zeroed, secs);
    text = g_strdup ("imported\n");
  }
  soup_server_message_set_status (
      msg, im->status ? im->status : SOUP_STATUS_OK, NULL);
  soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_COPY, text,
                                    strlen (text));
  g_signal_handlers_disconnect_by_data (msg, im);
  /* Close the image and release the VDI now, not when libsoup drops
   * the message: the client may go on with the VDI at once. */
  g_object_set_data (G_OBJECT (msg), "xapi-import", NULL);
}

/* ------------------------------------------------------------------ */
/* Export. */

struct export
{
  gint refs;
  struct vdi_target t;
  struct copy_job *job;
  uint64_t length;
  uint64_t sent; /* main thread only */
  gint64 started;
  SoupServerMessage *msg; /* main thread only */
  bool finished;          /* main thread only: msg is done */
  GThread *thread;
  GMutex lock;
  GCond cond;
  uint64_t queued; /* bytes given to libsoup, not yet written */
  bool cancelled;
  char *error; /* the thread's failure */
};

static struct export *
export_ref (struct export *e)
{
  g_atomic_int_inc (&e->refs);
  return e;
}

/* Main thread only (it drops the message). */
static void
export_unref (struct export *e)
{
  if (!g_atomic_int_dec_and_test (&e->refs))
    return;
  if (e->msg) {
    g_signal_handlers_disconnect_by_data (e->msg, e);
    g_object_unref (e->msg);
  }
  if (e->job)
    copy_job_close (e->job, false, NULL, NULL);
  vdi_target_clear (&e->t);
  g_mutex_clear (&e->lock);
  g_cond_clear (&e->cond);
  g_free (e->error);
  g_free (e);
}

/* A chunk on its way from the thread to the main loop. */
struct export_chunk
{
  struct export *e;
  GBytes *bytes; /* NULL: the end */
};

static void
export_chunk_free (gpointer p)
{
  struct export_chunk *ch = p;

  if (ch->bytes)
    g_bytes_unref (ch->bytes);
  export_unref (ch->e);
  g_free (ch);
}

/* Cut the connection: after a failure half-way through the body the
 * client must see a short body, not a complete one. */
static void
export_abort (struct export *e)
{
  GSocket *sock = soup_server_message_get_socket (e->msg);

  if (sock)
    g_socket_shutdown (sock, TRUE, TRUE, NULL);
}

static gboolean
export_push (gpointer p)
{
  struct export_chunk *ch = p;
  struct export *e = ch->e;
  SoupMessageBody *body;

  if (e->finished)
    return G_SOURCE_REMOVE;
  body = soup_server_message_get_response_body (e->msg);
  if (ch->bytes)
    soup_message_body_append_bytes (body, ch->bytes);
  else if (e->error) {
    g_message ("VDI %s: export failed: %s", e->t.vdi->uuid, e->error);
    export_abort (e);
  }
  else
    soup_message_body_complete (body);
  soup_server_message_unpause (e->msg);
  return G_SOURCE_REMOVE;
}

static void
export_send (struct export *e, GBytes *bytes)
{
  struct export_chunk *ch = g_new0 (struct export_chunk, 1);

  ch->e = export_ref (e);
  ch->bytes = bytes;
  g_main_context_invoke_full (NULL, G_PRIORITY_DEFAULT, export_push, ch,
                              export_chunk_free);
}

/* Main loop: the thread is done (its last chunk was sent before). */
static gboolean
export_joined (gpointer p)
{
  struct export *e = p;

  g_thread_join (e->thread);
  e->thread = NULL;
  return G_SOURCE_REMOVE;
}

/* Zeroes to send for ranges that hold nothing (read-only, in .bss). */
static const uint8_t zero_chunk[COPY_STREAM_CHUNK];

/* The copy's stream destination (copy_stream_write_fn), in the thread:
 * queue the next bytes for the main loop, waiting while too many are. */
static int
export_write (void *opaque, void *buf, size_t len, char **err)
{
  struct export *e = opaque;
  bool cancelled;

  g_mutex_lock (&e->lock);
  while (e->queued >= EXPORT_QUEUE && !e->cancelled)
    g_cond_wait (&e->cond, &e->lock);
  cancelled = e->cancelled;
  if (!cancelled)
    e->queued += len;
  g_mutex_unlock (&e->lock);
  if (cancelled) {
    free (buf);
    *err = strdup ("the client went away");
    return -1;
  }
  export_send (e, buf ? g_bytes_new_with_free_func (buf, len, free, buf)
                      : g_bytes_new_static (zero_chunk, len));
  return 0;
}

static gpointer
export_thread (gpointer p)
{
  struct export *e = p;
  char *err = NULL;

  if (copy_job_run (e->job, &err) == -1) {
    g_mutex_lock (&e->lock);
    if (!e->cancelled)
      e->error = g_strdup (err);
    g_mutex_unlock (&e->lock);
  }
  free (err);
  export_send (e, NULL);
  g_main_context_invoke_full (NULL, G_PRIORITY_DEFAULT, export_joined, e,
                              (GDestroyNotify)export_unref);
  return NULL;
}

static void
export_wrote (SoupServerMessage *msg, guint chunk_size, gpointer user_data)
{
  struct export *e = user_data;

  e->sent += chunk_size;
  g_mutex_lock (&e->lock);
  e->queued -= MIN (e->queued, chunk_size);
  g_cond_signal (&e->cond);
  g_mutex_unlock (&e->lock);
}

/* The response is done: sent, or the client went away. */
static void
export_finished (SoupServerMessage *msg, gpointer user_data)
{
  struct export *e = user_data;
  double secs = (g_get_monotonic_time () - e->started) / 1e6;

  g_message ("VDI %s: export %s: %" PRIu64 " of %" PRIu64
             " bytes sent in %.1f s",
             e->t.vdi->uuid, e->sent == e->length ? "done" : "cut short",
             e->sent, e->length, secs);
  e->finished = true;
  g_mutex_lock (&e->lock);
  e->cancelled = true;
  g_cond_signal (&e->cond);
  g_mutex_unlock (&e->lock);
  g_signal_handlers_disconnect_by_data (msg, e);
  export_unref (e); /* the message's reference */
}

static void
answer (SoupServerMessage *msg, guint status, const char *text)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_COPY, text,
                                    strlen (text));
}

void
xapi_http_vdi_export (struct xapi_daemon *d, SoupServerMessage *msg,
                      GHashTable *query)
{
  struct export *e = g_new0 (struct export, 1);
  /* Through the page cache: what a transfer reads is often what was
   * just written or is read again. */
  struct copy_spec from
      = { .kind = COPY_VDI, .open_flags = VDISK_OPEN_BUFFERED };
  struct copy_spec to = { .kind = COPY_STREAM };
  struct copy_params params = { 0 };
  g_autofree char *text = NULL;
  char *err = NULL;
  guint status;

  e->refs = 1;
  g_mutex_init (&e->lock);
  g_cond_init (&e->cond);
  status = vdi_target_get (&e->t, d, query, "export", &text);
  if (status) {
    answer (msg, status, text);
    export_unref (e);
    return;
  }
  from.sr = e->t.sr->sr;
  from.vdi = e->t.vdi->uuid;
  to.stream = e->t.format;
  to.write = export_write;
  to.opaque = e;
  e->job = copy_job_open (&from, &to, &params, &err);
  if (e->job == NULL) {
    status = status_of_errno (errno);
    text = g_strdup_printf ("VDI %s: export: %s\n", e->t.vdi->uuid,
                            err ? err : "cannot open");
    free (err);
    answer (msg, status, text);
    export_unref (e);
    return;
  }
  e->length = copy_job_length (e->job);

  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  soup_message_headers_set_content_type (
      soup_server_message_get_response_headers (msg),
      "application/octet-stream", NULL);
  soup_message_headers_set_content_length (
      soup_server_message_get_response_headers (msg), e->length);
  soup_message_body_set_accumulate (
      soup_server_message_get_response_body (msg), FALSE);
  e->msg = g_object_ref (msg);
  e->started = g_get_monotonic_time ();
  g_signal_connect (msg, "wrote-body-data", G_CALLBACK (export_wrote), e);
  g_signal_connect (msg, "finished", G_CALLBACK (export_finished), e);
  g_message ("VDI %s: export (%s, %" PRIu64 " bytes) to %s started",
             e->t.vdi->uuid, e->t.format == COPY_STREAM_VHD ? "vhd" : "raw",
             e->length, soup_server_message_get_remote_host (msg));
  if (soup_server_message_get_method (msg) == SOUP_METHOD_HEAD) {
    soup_message_body_complete (soup_server_message_get_response_body (msg));
    return; /* export_finished drops the reference */
  }
  soup_server_message_pause (msg);
  /* One reference for the message (export_finished), one for the
   * thread (export_joined). */
  e->thread = g_thread_new ("export", export_thread, export_ref (e));
}
