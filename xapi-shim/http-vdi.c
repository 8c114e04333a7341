/* xapi's HTTP handlers for disk data, as xapi spells them:
 *
 *   PUT /import_raw_vdi?session_id=S&vdi=REF&format=raw|vhd[&chunked]
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
 * With chunked (any value; raw only, as xapi) the body is xapi's chunked
 * encoding (vhd-tool's: 12-byte headers of a guest offset and a length,
 * little-endian, each followed by its bytes, the last header offset 0
 * and length 0; COPY_STREAM_CHUNKED): only the chunks are written, the
 * rest of the VDI stays as it was, so a client writes ranges (vdimotion
 * backup restore into a VDI, resumable, does).  A chunked body that
 * ends without its last header fails as a short raw body does.
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
 *
 * As xapi's, the handlers take their parameters from the query or a
 * cookie (the session and task from the cookie first), the session as
 * session_id= or as HTTP Basic auth (a user and password that would log
 * in), and the VDI by ref or by uuid.  With task_id= (a task the client
 * made with task.create) the transfer reports into that task: its
 * progress as bytes move, then success (an import's result is the VDI's
 * ref) or failure with the XenAPI error; a refusal from the headers
 * fails the task too, and is still answered with its HTTP status.
 *
 * An import with a task and a Content-Length is answered as xapi does,
 * before its body is read: 200, Connection: close, task-id, and no
 * length; the connection is then taken from libsoup and the body read
 * from it until its length or its end, and closed once the import is
 * over.  Clients that wait for the answer before they send (Xen
 * Orchestra announces 1 PiB for a stream of unknown length and cuts the
 * connection after the last byte) work so; what goes wrong after the
 * answer is in the task: a body that ends early fails the task with
 * VDI_IO_ERROR (what was written stays), unless it was a whole VHD.  A
 * body larger than the disk is then no refusal from the headers either:
 * the bytes past the disk fail the task.  Without a task (or with a
 * chunked body) the answer comes after the body, as above.  An empty
 * PUT without a task (Xen Orchestra's probe before its upload) is
 * answered 200 once checked, and touches no disk.
 */

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <libsoup/soup.h>

#include "copy.h"
#include "xapi.h"

/* The Content-Length Xen Orchestra's client announces for a stream whose
 * length it does not know (2^50 bytes, "1 PiB"): no real upload is so
 * long. */
#define UNKNOWN_LENGTH_MARK (UINT64_C (1) << 50)

/* An import answered first is given up after this long without a byte
 * from its client. */
#define IMPORT_IDLE_SECONDS 300

/* Export: bytes at most queued in libsoup. */
#define EXPORT_QUEUE (4u << 20)

/* The VDI a request names, claimed for OP, and the task it reports
 * into (or NULL). */
struct vdi_target
{
  struct xapi_daemon *d;
  struct sr_vdi *vdi;
  struct host_sr *sr;
  enum copy_stream_format format;
  bool claimed;
  struct xapi_task_drive *task;
};

/* End the task of T (if any): success with RESULT_UUID (or void), or
 * failure with ERROR_INFO (NULL-terminated). */
static void
vdi_target_end_task (struct vdi_target *t, const char *result_uuid,
                     const char *const *error_info)
{
  if (t->task)
    xapi_task_drive_end (t->task, result_uuid, error_info);
  t->task = NULL;
}

/* Fail the task of T with CODE and MESSAGE (a line of text: its
 * newline is dropped). */
static void
vdi_target_fail_task (struct vdi_target *t, const char *code,
                      const char *message)
{
  g_autofree char *m = g_strchomp (g_strdup (message));

  vdi_target_end_task (t, NULL, (const char *const[]){ code, m, NULL });
}

static void
vdi_target_clear (struct vdi_target *t)
{
  /* A transfer that ends without saying how (the daemon stops). */
  vdi_target_fail_task (t, "INTERNAL_ERROR", "the transfer was abandoned");
  if (t->claimed)
    host_vdi_release (t->d->host, t->vdi->uuid);
  t->claimed = false;
  if (t->vdi)
    sr_vdi_free (t->vdi);
  t->vdi = NULL;
}

/* A parameter of the request: in the query or in a cookie, as xapi
 * takes them; COOKIE_FIRST for the session and the task, as xapi. */
static const char *
req_param (GHashTable *query, GHashTable *cookies, const char *name,
           bool cookie_first)
{
  const char *q = query ? g_hash_table_lookup (query, name) : NULL;
  const char *c = cookies ? g_hash_table_lookup (cookies, name) : NULL;

  return cookie_first ? (c ? c : q) : (q ? q : c);
}

/* HTTP Basic auth: true if the request carries a user and password that
 * log in (*USER set, g_free), false with *USER the user refused (or
 * NULL without Basic auth).  crypt(3) runs here, on the main loop: a
 * client that wants the loop for itself logs in over XML-RPC and sends
 * session_id= instead. */
static bool
basic_auth (struct xapi_daemon *d, SoupServerMessage *msg, char **user)
{
  const char *h = soup_message_headers_get_one (
      soup_server_message_get_request_headers (msg), "Authorization");
  g_autofree guchar *raw = NULL;
  g_autofree char *text = NULL;
  gsize len;
  char *colon;
  bool ok;

  *user = NULL;
  if (h == NULL || g_ascii_strncasecmp (h, "Basic ", 6) != 0)
    return false;
  raw = g_base64_decode (h + 6, &len);
  text = g_strndup ((const char *)raw, len);
  colon = strchr (text, ':');
  if (colon == NULL || strlen (text) != len) {
    *user = g_strdup ("(malformed)");
    return false;
  }
  *colon = '\0';
  ok = xapi_password_ok (d, text, colon + 1);
  explicit_bzero (text, len);
  *user = g_strdup (text);
  return ok;
}

/* The session of a transfer: 0, or an HTTP status with *TEXT and
 * *CODE (the XenAPI error) saying why (xapi.h). */
guint
xapi_http_check_session (struct xapi_daemon *d, SoupServerMessage *msg,
                         const char *session, char **text, const char **code)
{
  g_autofree char *user = NULL;

  if (session) {
    if (xapi_session_valid (d, session))
      return 0;
  }
  else if (basic_auth (d, msg, &user))
    return 0;
  *code = "SESSION_INVALID";
  if (session)
    *text = g_strdup_printf ("SESSION_INVALID %s\n", session);
  else if (user) {
    *code = "SESSION_AUTHENTICATION_FAILED";
    *text = g_strdup_printf ("SESSION_AUTHENTICATION_FAILED %s (Basic "
                             "auth)\n",
                             user);
  }
  else
    *text = g_strdup ("SESSION_INVALID (no session_id in the query)\n");
  return SOUP_STATUS_UNAUTHORIZED;
}

/* Check the query of a transfer and claim its VDI.  0, or an HTTP status
 * with *TEXT saying why (to be freed); the task, if any, has then
 * failed with the same error. */
static guint
vdi_target_get (struct vdi_target *t, struct xapi_daemon *d,
                SoupServerMessage *msg, GHashTable *query, const char *op,
                char **text)
{
  const char *cookie = soup_message_headers_get_one (
      soup_server_message_get_request_headers (msg), "Cookie");
  g_autoptr (GHashTable) cookies
      = cookie ? soup_header_parse_semi_param_list (cookie) : NULL;
  const char *session = req_param (query, cookies, "session_id", true);
  const char *task = req_param (query, cookies, "task_id", true);
  const char *ref = req_param (query, cookies, "vdi", false);
  const char *format = req_param (query, cookies, "format", false);
  bool chunked = strcmp (op, "import") == 0
                 && req_param (query, cookies, "chunked", false) != NULL;
  g_autofree char *uuid_ref = NULL;
  xmlrpc_env env;
  struct xapi_call c = { .d = d, .env = &env, .method = op };
  const char *code = "INTERNAL_ERROR";
  guint status = 0;

  memset (t, 0, sizeof *t);
  t->d = d;
  if (task && (t->task = xapi_task_drive_begin (d, task, text)) == NULL) {
    char *why = g_strdup_printf ("%s\n", *text);

    g_free (*text);
    *text = why;
    return SOUP_STATUS_NOT_FOUND;
  }
  status = xapi_http_check_session (d, msg, session, text, &code);
  if (status == 0 && format != NULL && strcmp (format, "raw") != 0
      && strcmp (format, "vhd") != 0) {
    *text = g_strdup_printf ("format=%s: not raw or vhd\n", format);
    status = SOUP_STATUS_BAD_REQUEST;
  }
  if (status == 0 && chunked && format && strcmp (format, "vhd") == 0) {
    *text = g_strdup ("chunked: a VHD cannot be imported in chunks (only "
                      "format=raw)\n");
    status = SOUP_STATUS_BAD_REQUEST;
  }
  if (status == 0 && ref == NULL) {
    code = "HANDLE_INVALID";
    *text = g_strdup ("HANDLE_INVALID VDI (no vdi in the query)\n");
    status = SOUP_STATUS_NOT_FOUND;
  }
  if (status) {
    vdi_target_fail_task (t, code, *text);
    return status;
  }
  t->format = format && strcmp (format, "vhd") == 0 ? COPY_STREAM_VHD
              : chunked                             ? COPY_STREAM_CHUNKED
                                                    : COPY_STREAM_RAW;
  /* xapi: a ref, else a uuid. */
  if (sr_uuid_is_valid (ref))
    ref = uuid_ref = g_strconcat (XAPI_REF_PREFIX, ref, NULL);

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

    code = c.error ? c.error->pdata[0] : "INTERNAL_ERROR";
    if (c.error) {
      g_ptr_array_add (c.error, NULL);
      desc = g_strjoinv (" ", (char **)c.error->pdata);
    }
    status = strcmp (code, "HANDLE_INVALID") == 0 ? SOUP_STATUS_NOT_FOUND
             : strcmp (code, "OTHER_OPERATION_IN_PROGRESS") == 0
                 ? SOUP_STATUS_CONFLICT
                 : SOUP_STATUS_INTERNAL_SERVER_ERROR;
    *text = g_strdup_printf ("%s\n", desc ? desc : env.fault_string);
    if (c.error)
      vdi_target_end_task (t, NULL, (const char *const *)c.error->pdata);
    else
      vdi_target_fail_task (t, code, *text);
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
  uint64_t length;   /* the body's announced length (0: unknown) */
  uint64_t received; /* body bytes */
  bool answered;     /* import_end ran, or the answer went first */
  bool probe;        /* an empty body without a task: nothing to do */
  gint64 started;
  /* The first failure; the rest of the body is then read and dropped. */
  guint status;
  int errnum;
  char *error;
  /* Answered first (see the top): the connection, ours now. */
  GIOStream *io;
  bool eof; /* the client's end */
  /* While answered first: a read is given up on task.cancel or after
   * IMPORT_IDLE_SECONDS without a byte, so that a stalled client cannot
   * hold the VDI (import_watch). */
  GCancellable *cancel;
  guint watch;
  gint64 last_byte;
};

/* The copy failed with ERR (errno ERRNUM). */
static void
import_fail (struct import *im, int errnum, const char *err)
{
  im->status = status_of_errno (errnum);
  im->errnum = errnum;
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
  if (im->io) {
    g_io_stream_close (im->io, NULL, NULL);
    g_object_unref (im->io);
  }
  if (im->watch)
    g_source_remove (im->watch);
  g_clear_object (&im->cancel);
  vdi_target_clear (&im->t);
  g_free (im->error);
  g_free (im);
}

/* The share of the import done, for its task: the body read of its
 * length, or of the disk when the length is no measure (unknown, or
 * Xen Orchestra's 1 PiB). */
static double
import_progress (const struct import *im)
{
  uint64_t of = im->length;

  if (of == 0 || of > im->size + im->size / 8 + (64u << 20))
    of = im->size;
  return of ? (double)im->received / of : 0;
}

/* The next LEN bytes of the body. */
static void
import_feed (struct import *im, const guint8 *p, gsize len)
{
  char *err = NULL;

  if (im->status)
    return; /* failed: the rest of the body is dropped */
  if (im->t.task && xapi_task_drive_cancelled (im->t.task)) {
    im->status = SOUP_STATUS_INTERNAL_SERVER_ERROR;
    im->error = g_strdup_printf ("VDI %s: import cancelled", im->t.vdi->uuid);
    return;
  }
  if (im->t.format == COPY_STREAM_RAW && len > im->size - im->received) {
    /* A chunked body, whose size the headers did not say. */
    im->status = SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE;
    im->errnum = EFBIG;
    im->error = g_strdup_printf ("VDI %s: import: the body is larger than "
                                 "the VDI's virtual size (%" PRIu64 " bytes)",
                                 im->t.vdi->uuid, im->size);
    return;
  }
  if (copy_job_feed (im->job, p, len, &err) == -1)
    import_fail (im, errno, err);
  im->received += len;
  if (im->t.task)
    xapi_task_drive_progress (im->t.task, import_progress (im));
  free (err);
}

static void
import_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer user_data)
{
  gsize len;
  const guint8 *p = g_bytes_get_data (chunk, &len);

  import_feed (user_data, p, len);
}

/* The end of the body (or of the connection): close the copy and end
 * the task.  False if the import failed (im->error says why). */
static bool
import_finish (struct import *im)
{
  struct copy_stats stats = { 0 };
  char *err = NULL;
  double secs;

  /* The end of the body: what it did not cover reads as zero, and the
   * VDI is flushed and closed. */
  if (im->status == 0 && im->job) {
    int r = copy_job_close (im->job, true, &stats, &err);

    im->job = NULL;
    if (r == -1)
      import_fail (im, errno, err);
    free (err);
  }
  /* A raw body that ended before its length: what came is written, but
   * the disk is not what the client meant to send. */
  if (im->status == 0 && im->io && im->received < im->length
      && im->t.format == COPY_STREAM_RAW) {
    im->status = SOUP_STATUS_BAD_REQUEST;
    im->error = g_strdup_printf ("VDI %s: import: the body ended at byte "
                                 "%" PRIu64 " of %" PRIu64 " announced",
                                 im->t.vdi->uuid, im->received, im->length);
  }
  secs = (g_get_monotonic_time () - im->started) / 1e6;
  im->answered = true;
  if (im->status) {
    g_message ("%s", im->error);
    if (im->t.task && xapi_task_drive_cancelled (im->t.task)) {
      g_autofree char *ref = g_strdup (xapi_task_drive_ref (im->t.task));

      vdi_target_end_task (&im->t, NULL,
                           (const char *const[]){ "TASK_CANCELLED", ref,
                                                  NULL });
    }
    else
      vdi_target_fail_task (&im->t,
                            im->errnum == ENOSPC ? "SR_FULL" : "VDI_IO_ERROR",
                            im->error);
    return false;
  }
  g_message ("VDI %s: imported %" PRIu64 " bytes (%" PRIu64
             " written) in %.1f s",
             im->t.vdi->uuid, im->received,
             stats.bytes_written + stats.bytes_zeroed, secs);
  vdi_target_end_task (&im->t, im->t.vdi->uuid, NULL);
  return true;
}

/* ---- answered first: the body read from the connection ---- */

static void import_read (struct import *im);

static void
import_read_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  struct import *im = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bytes
      = g_input_stream_read_bytes_finish (G_INPUT_STREAM (source), res,
                                          &error);
  gsize len = bytes ? g_bytes_get_size (bytes) : 0;

  if (bytes == NULL && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    ; /* import_watch gave up on the client and said why */
  else if (bytes == NULL)
    /* The client cut the connection (as Xen Orchestra does after its
     * last byte, through TLS too): the end of the body. */
    g_message ("VDI %s: import: the connection ended: %s", im->t.vdi->uuid,
               error->message);
  if (len > 0)
    im->last_byte = g_get_monotonic_time ();
  if (len == 0)
    im->eof = true;
  else
    import_feed (im, g_bytes_get_data (bytes, NULL), len);
  import_read (im);
}

/* Read the next piece of the body, or end the import. */
static void
import_read (struct import *im)
{
  uint64_t left = im->length - im->received;

  if (!im->eof && left > 0 && im->status == 0) {
    g_input_stream_read_bytes_async (g_io_stream_get_input_stream (im->io),
                                     MIN (left, COPY_STREAM_CHUNK),
                                     G_PRIORITY_DEFAULT, im->cancel,
                                     import_read_done, im);
    return;
  }
  import_finish (im);
  /* xapi's answer has no length: its end is the connection's. */
  import_free (im);
}

/* Once a second while the body is read: give up the read when the task
 * is cancelled or the client has sent nothing for IMPORT_IDLE_SECONDS. */
static gboolean
import_watch (gpointer p)
{
  struct import *im = p;
  bool cancelled = im->t.task && xapi_task_drive_cancelled (im->t.task);
  bool idle = g_get_monotonic_time () - im->last_byte
              > IMPORT_IDLE_SECONDS * G_USEC_PER_SEC;

  if (!cancelled && !idle)
    return G_SOURCE_CONTINUE;
  if (im->status == 0) {
    im->status = SOUP_STATUS_REQUEST_TIMEOUT;
    im->error
        = cancelled
              ? g_strdup_printf ("VDI %s: import cancelled", im->t.vdi->uuid)
              : g_strdup_printf ("VDI %s: import: no byte from the client "
                                 "for %d s",
                                 im->t.vdi->uuid, IMPORT_IDLE_SECONDS);
  }
  im->watch = 0;
  g_cancellable_cancel (im->cancel);
  return G_SOURCE_REMOVE;
}

/* Answer 200 now, as xapi does, and read the body from the connection
 * (see the top of the file). */
static void
import_answer_first (struct import *im, SoupServerMessage *msg)
{
  g_autofree char *task = im->t.task ? g_strdup_printf (
                                "task-id: %s\r\n",
                                xapi_task_drive_ref (im->t.task))
                                     : g_strdup ("");
  g_autofree char *head = g_strdup_printf (
      "HTTP/1.1 200 OK\r\nConnection: close\r\n"
      "Cache-Control: no-cache, no-store\r\n%s"
      "Content-Type: application/octet-stream\r\n\r\n",
      task);
  g_autoptr (GError) error = NULL;

  im->io = soup_server_message_steal_connection (msg);
  im->cancel = g_cancellable_new ();
  im->last_byte = g_get_monotonic_time ();
  im->watch = g_timeout_add_seconds (1, import_watch, im);
  if (im->io == NULL
      || !g_output_stream_write_all (g_io_stream_get_output_stream (im->io),
                                     head, strlen (head), NULL, NULL, &error)
      || !g_output_stream_flush (g_io_stream_get_output_stream (im->io), NULL,
                                 &error))
    im->eof = true; /* the client is gone: nothing comes */
  import_read (im);
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
  bool known = soup_message_headers_get_encoding (hdrs)
               == SOUP_ENCODING_CONTENT_LENGTH;
  bool first;
  char *err = NULL;
  guint status;

  status = vdi_target_get (&im->t, d, msg, query, "import", text);
  if (status) {
    import_free (im);
    return status;
  }
  im->size = im->t.vdi->virtual_size;
  if (known)
    im->length = soup_message_headers_get_content_length (hdrs);
  /* Answered before the body is read, as xapi answers every import:
   * with a task to report into, or when the length is Xen Orchestra's
   * mark for "unknown" (it then sends its data and cuts the
   * connection; its probe for a redirect is the same header with no
   * body, and touches nothing). */
  first = known && im->length > 0
          && (im->t.task || im->length >= UNKNOWN_LENGTH_MARK);
  if (known && im->length == 0 && im->t.task == NULL) {
    im->probe = true;
    g_object_set_data_full (G_OBJECT (msg), "xapi-import", im, import_free);
    return 0;
  }
  /* A raw body cannot be larger than the disk; a VHD is a little
   * larger than its data, so it is checked as it is read.  Answered
   * first, the bytes past the disk fail the task instead. */
  if (im->t.format == COPY_STREAM_RAW && im->length > im->size && !first) {
    *text = g_strdup_printf ("VDI %s: import: the body (%" PRIu64
                             " bytes) is larger than the VDI's virtual size "
                             "(%" PRIu64 " bytes)\n",
                             im->t.vdi->uuid, im->length, im->size);
    vdi_target_fail_task (&im->t, "VDI_IO_ERROR", *text);
    import_free (im);
    return SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE;
  }
  from.stream = im->t.format;
  from.length = im->t.format == COPY_STREAM_RAW && im->length > im->size
                    ? 0
                    : im->length;
  from.size = im->size;
  to.sr = im->t.sr->sr;
  to.vdi = im->t.vdi->uuid;
  im->job = copy_job_open (&from, &to, &params, &err);
  if (im->job == NULL) {
    status = status_of_errno (errno);
    *text = g_strdup_printf ("VDI %s: import: %s\n", im->t.vdi->uuid,
                             err ? err : "cannot open");
    vdi_target_fail_task (&im->t, "VDI_IO_ERROR", *text);
    free (err);
    import_free (im);
    return status;
  }
  /* The image may be bigger than the record says (rounded up). */
  im->size = copy_job_size (im->job);
  im->started = g_get_monotonic_time ();
  g_message ("VDI %s: import (%s) from %s started%s%s", im->t.vdi->uuid,
             im->t.format == COPY_STREAM_VHD       ? "vhd"
             : im->t.format == COPY_STREAM_CHUNKED ? "chunked"
                                                   : "raw",
             soup_server_message_get_remote_host (msg),
             copy_job_dest_is_zero (im->job) ? "" : " (over existing content)",
             first ? ", answered first" : "");
  if (first) {
    import_answer_first (im, msg);
    return 0;
  }
  g_object_set_data_full (G_OBJECT (msg), "xapi-import", im, import_free);
  g_signal_connect (msg, "got-chunk", G_CALLBACK (import_chunk), im);
  return 0;
}

void
xapi_http_vdi_import_end (struct xapi_daemon *d, SoupServerMessage *msg)
{
  struct import *im = g_object_get_data (G_OBJECT (msg), "xapi-import");
  g_autofree char *text = NULL;
  guint status = SOUP_STATUS_OK;

  if (im == NULL) {
    soup_server_message_set_status (msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
                                    NULL);
    return;
  }
  if (im->probe)
    text = g_strdup ("nothing to import: the body is empty\n");
  else if (import_finish (im))
    text = g_strdup ("imported\n");
  else {
    status = im->status;
    text = g_strdup_printf ("%s\n", im->error);
    soup_message_headers_replace (
        soup_server_message_get_response_headers (msg), "Connection", "close");
  }
  soup_server_message_set_status (msg, status, NULL);
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
  if (e->t.task && e->length)
    xapi_task_drive_progress (e->t.task, (double)e->sent / e->length);
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
  /* xapi: an export's task has no result. */
  if (e->sent == e->length)
    vdi_target_end_task (&e->t, NULL, NULL);
  else
    vdi_target_fail_task (&e->t, "VDI_IO_ERROR",
                          e->error ? e->error : "the client went away");
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
  status = vdi_target_get (&e->t, d, msg, query, "export", &text);
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
    vdi_target_fail_task (&e->t, "VDI_IO_ERROR", text);
    answer (msg, status, text);
    export_unref (e);
    return;
  }
  e->length = copy_job_length (e->job);
  if (e->t.task)
    soup_message_headers_replace (
        soup_server_message_get_response_headers (msg), "task-id",
        xapi_task_drive_ref (e->t.task));

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
