/* The mirror filter's control client (control-client.h).  The socket is
 * plain POSIX (one short connection per command, with a deadline); the
 * replies are read with json-glib and checked member by member, since a
 * filter that says something else must give an error, not a guess. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "control-client.h"

#define MAX_REPLY 65536

G_DEFINE_QUARK (mirror-control-error-quark, mirror_control_error)

/* ---- the socket ---- */

static void
set_io_error (GError **error, const char *socket, const char *why)
{
  g_set_error (error, MIRROR_CONTROL_ERROR, MIRROR_CONTROL_ERROR_IO,
               "mirror control %s: %s", socket, why);
}

static int
connect_control (const char *path, GError **error)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (path) >= sizeof a.sun_path) {
    set_io_error (error, path, "path too long");
    return -1;
  }
  strcpy (a.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 || connect (fd, (struct sockaddr *)&a, sizeof a) == -1) {
    set_io_error (error, path, g_strerror (errno));
    if (fd != -1)
      close (fd);
    return -1;
  }
  return fd;
}

static gboolean
send_line (int fd, const char *path, const char *line, GError **error)
{
  size_t n = strlen (line);

  for (size_t off = 0; off < n;) {
    ssize_t k = send (fd, line + off, n - off, MSG_NOSIGNAL);

    if (k == -1 && errno == EINTR)
      continue;
    if (k <= 0) {
      set_io_error (error, path, g_strerror (errno));
      return FALSE;
    }
    off += k;
  }
  return TRUE;
}

/* Receive until a newline, the end of the stream or MAX_REPLY bytes;
 * the bytes, NUL-terminated, or NULL when DEADLINE (monotonic seconds)
 * passes first. */
static char *
receive_reply (int fd, const char *path, double deadline, GError **error)
{
  g_autofree char *buf = g_malloc (MAX_REPLY);
  size_t have = 0;

  while (have < MAX_REPLY - 1) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int left = (int)((deadline - monotonic_seconds ()) * 1000);
    ssize_t k;

    if (left <= 0 || poll (&p, 1, left) == 0) {
      set_io_error (error, path, "no reply in time");
      return NULL;
    }
    k = recv (fd, buf + have, MAX_REPLY - 1 - have, 0);
    if (k == -1 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    have += k;
    if (memchr (buf + have - k, '\n', k))
      break;
  }
  buf[have] = '\0';
  return g_steal_pointer (&buf);
}

char *
mirror_control_call (const char *socket, const char *line,
                     int timeout_seconds, GError **error)
{
  double deadline = monotonic_seconds () + timeout_seconds;
  int fd = connect_control (socket, error);
  char *buf = NULL, *nl;

  if (fd == -1)
    return NULL;
  if (send_line (fd, socket, line, error))
    buf = receive_reply (fd, socket, deadline, error);
  close (fd);
  if (buf == NULL)
    return NULL;
  nl = strchr (buf, '\n');
  if (nl == NULL) {
    set_io_error (error, socket, "no reply from the filter");
    g_free (buf);
    return NULL;
  }
  *nl = '\0';
  return buf;
}

/* ---- the replies ---- */

static gboolean G_GNUC_PRINTF (2, 3)
reply_error (GError **error, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_propagate_error (error, g_error_new_valist (MIRROR_CONTROL_ERROR,
                                                MIRROR_CONTROL_ERROR_REPLY,
                                                fmt, ap));
  va_end (ap);
  return FALSE;
}

/* Member KEY of O as a JSON value of TYPE (G_TYPE_INT64, G_TYPE_STRING,
 * ...), or NULL after an error; with NULLABLE, *IS_NULL says null. */
static JsonNode *
member (JsonObject *o, const char *key, GType type, bool nullable,
        bool *is_null, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  static const struct
  {
    GType type;
    const char *what;
  } names[] = { { G_TYPE_INT64, "an integer" },
                { G_TYPE_DOUBLE, "a number" },
                { G_TYPE_BOOLEAN, "true or false" },
                { G_TYPE_STRING, "a string" } };
  const char *what = "a value";

  if (is_null)
    *is_null = false;
  if (n && nullable && JSON_NODE_HOLDS_NULL (n)) {
    *is_null = true;
    return n;
  }
  if (n && JSON_NODE_HOLDS_VALUE (n)
      && (json_node_get_value_type (n) == type
          || (type == G_TYPE_DOUBLE
              && json_node_get_value_type (n) == G_TYPE_INT64)))
    return n;
  for (size_t i = 0; i < G_N_ELEMENTS (names); i++)
    if (names[i].type == type)
      what = names[i].what;
  if (n == NULL)
    reply_error (error, "the reply has no \"%s\"", key);
  else
    reply_error (error, "the reply's \"%s\" is not %s%s", key, what,
                 nullable ? " or null" : "");
  return NULL;
}

static gboolean
get_u64 (JsonObject *o, const char *key, uint64_t *out, GError **error)
{
  JsonNode *n = member (o, key, G_TYPE_INT64, false, NULL, error);

  if (n == NULL)
    return FALSE;
  /* json-glib wraps numbers of 2^63 and more to negative ones. */
  if (json_node_get_int (n) < 0)
    return reply_error (error, "the reply's \"%s\" is negative or too large",
                        key);
  *out = json_node_get_int (n);
  return TRUE;
}

static gboolean
get_double (JsonObject *o, const char *key, double *out, GError **error)
{
  JsonNode *n = member (o, key, G_TYPE_DOUBLE, false, NULL, error);

  if (n)
    *out = json_node_get_double (n);
  return n != NULL;
}

static gboolean
get_bool (JsonObject *o, const char *key, bool *out, GError **error)
{
  JsonNode *n = member (o, key, G_TYPE_BOOLEAN, false, NULL, error);

  if (n)
    *out = json_node_get_boolean (n);
  return n != NULL;
}

/* A string or null (*OUT NULL), g_free'd by the caller. */
static gboolean
get_string_or_null (JsonObject *o, const char *key, char **out,
                    GError **error)
{
  bool is_null;
  JsonNode *n = member (o, key, G_TYPE_STRING, true, &is_null, error);

  if (n)
    *out = is_null ? NULL : json_node_dup_string (n);
  return n != NULL;
}

static gboolean
get_state (JsonObject *o, enum mirror_state *out, GError **error)
{
  JsonNode *n = member (o, "state", G_TYPE_STRING, false, NULL, error);
  int s;

  if (n == NULL)
    return FALSE;
  s = mirror_state_from_name (json_node_get_string (n));
  if (s == -1)
    return reply_error (error, "the reply's \"state\" \"%s\" is no state",
                        json_node_get_string (n));
  *out = s;
  return TRUE;
}

JsonObject *
mirror_reply_parse (const char *reply, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) e = NULL;
  JsonNode *root, *ok;
  JsonObject *o;
  char *msg = NULL;

  if (!json_parser_load_from_data (parser, reply, -1, &e)) {
    reply_error (error, "the reply is not JSON (%s)", e->message);
    return NULL;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    reply_error (error, "the reply is not a JSON object");
    return NULL;
  }
  o = json_node_get_object (root);
  if ((ok = member (o, "ok", G_TYPE_BOOLEAN, false, NULL, error)) == NULL)
    return NULL;
  if (json_node_get_boolean (ok))
    return json_object_ref (o);
  if (!get_string_or_null (o, "error", &msg, error))
    return NULL;
  g_set_error (error, MIRROR_CONTROL_ERROR, MIRROR_CONTROL_ERROR_REFUSED,
               "%s", msg ? msg : "(no message)");
  g_free (msg);
  return NULL;
}

void
mirror_status_clear (struct mirror_status *st)
{
  g_free (st->target);
  g_free (st->error);
  *st = (struct mirror_status){ 0 };
}

/* Members a filter without sync modes and pause does not send. */
static gboolean
status_extras (JsonObject *o, struct mirror_status *st, GError **error)
{
  JsonNode *n;
  int sync;

  if (json_object_has_member (o, "sync")) {
    n = member (o, "sync", G_TYPE_STRING, false, NULL, error);
    if (n == NULL)
      return FALSE;
    sync = mirror_sync_from_name (json_node_get_string (n));
    if (sync == -1)
      return reply_error (error, "the reply's \"sync\" \"%s\" is no mode",
                          json_node_get_string (n));
    st->sync = sync;
  }
  return (!json_object_has_member (o, "paused")
          || get_bool (o, "paused", &st->paused, error))
         && (!json_object_has_member (o, "bytes_backing")
             || get_u64 (o, "bytes_backing", &st->bytes_backing, error));
}

/* The members of a status reply, in the filter's order. */
static gboolean
status_from_object (JsonObject *o, struct mirror_status *st, GError **error)
{
  return get_state (o, &st->state, error)
         && get_string_or_null (o, "target", &st->target, error)
         && get_bool (o, "pivoted", &st->pivoted, error)
         && get_u64 (o, "bytes_total", &st->bytes_total, error)
         && get_u64 (o, "bytes_done", &st->bytes_done, error)
         && get_u64 (o, "dirty_bytes", &st->dirty_bytes, error)
         && get_string_or_null (o, "error", &st->error, error)
         && get_u64 (o, "bytes_copied", &st->bytes_copied, error)
         && get_u64 (o, "bytes_zeroed", &st->bytes_zeroed, error)
         && get_u64 (o, "bytes_skipped", &st->bytes_skipped, error)
         && get_u64 (o, "writes_mirrored", &st->writes_mirrored, error)
         && get_double (o, "write_latency_mean_us",
                        &st->write_latency_mean_us, error)
         && get_double (o, "write_latency_p99_us", &st->write_latency_p99_us,
                        error)
         && get_u64 (o, "granularity", &st->granularity, error)
         && get_u64 (o, "timeout", &st->timeout, error)
         && status_extras (o, st, error);
}

gboolean
mirror_status_parse (const char *reply, struct mirror_status *st,
                     GError **error)
{
  g_autoptr (JsonObject) o = mirror_reply_parse (reply, error);

  *st = (struct mirror_status){ 0 };
  if (o == NULL)
    return FALSE;
  if (!status_from_object (o, st, error)) {
    mirror_status_clear (st);
    return FALSE;
  }
  return TRUE;
}

/* ---- the commands ---- */

/* Send REQ to SOCKET; the reply's object, or NULL with an error that
 * says which side failed. */
static JsonObject *
command (const char *socket, const struct control_request *req,
         GError **error)
{
  char *line = control_format (req);
  g_autofree char *reply = NULL;
  GError *e = NULL;
  JsonObject *o;

  if (line == NULL) {
    g_set_error (error, MIRROR_CONTROL_ERROR, MIRROR_CONTROL_ERROR_REQUEST,
                 "mirror control %s: %s", socket,
                 errno == EINVAL ? "a value has blanks, which the "
                                   "protocol cannot carry"
                                 : g_strerror (errno));
    return NULL;
  }
  reply = mirror_control_call (socket, line, MIRROR_CONTROL_TIMEOUT, error);
  free (line);
  if (reply == NULL)
    return NULL;
  o = mirror_reply_parse (reply, &e);
  if (e && e->code == MIRROR_CONTROL_ERROR_REFUSED)
    g_prefix_error (&e, "mirror filter: ");
  else if (e)
    g_prefix_error (&e, "mirror control %s: ", socket);
  if (e)
    g_propagate_error (error, e);
  return o;
}

/* A command whose reply says the state it left. */
static gboolean
command_state (const char *socket, const struct control_request *req,
               GError **error)
{
  g_autoptr (JsonObject) o = command (socket, req, error);
  enum mirror_state state;

  if (o && !get_state (o, &state, error)) {
    g_prefix_error (error, "mirror control %s: ", socket);
    return FALSE;
  }
  return o != NULL;
}

gboolean
mirror_start (const char *socket, const char *target_uri,
              const char *tls_psk_file, GError **error)
{
  return mirror_start_sync (socket, target_uri, tls_psk_file,
                            MIRROR_SYNC_FULL, error);
}

gboolean
mirror_get_status (const char *socket, struct mirror_status *st,
                   GError **error)
{
  struct control_request req = { .cmd = CONTROL_STATUS };
  g_autoptr (JsonObject) o = command (socket, &req, error);

  *st = (struct mirror_status){ 0 };
  if (o == NULL)
    return FALSE;
  if (!status_from_object (o, st, error)) {
    g_prefix_error (error, "mirror control %s: ", socket);
    mirror_status_clear (st);
    return FALSE;
  }
  return TRUE;
}

gboolean
mirror_complete (const char *socket, bool pivot, GError **error)
{
  struct control_request req = { .cmd = CONTROL_COMPLETE, .pivot = pivot };

  return command_state (socket, &req, error);
}

gboolean
mirror_abort (const char *socket, GError **error)
{
  struct control_request req = { .cmd = CONTROL_ABORT };

  return command_state (socket, &req, error);
}

gboolean
mirror_start_sync (const char *socket, const char *target_uri,
                   const char *tls_psk_file, enum mirror_sync sync,
                   GError **error)
{
  struct control_request req = { .cmd = CONTROL_START,
                                 .target = target_uri,
                                 .tls_psk_file = tls_psk_file,
                                 .sync = sync };

  return command_state (socket, &req, error);
}

gboolean
mirror_pause (const char *socket, GError **error)
{
  struct control_request req = { .cmd = CONTROL_PAUSE };

  return command_state (socket, &req, error);
}

gboolean
mirror_resume (const char *socket, const char *target_uri,
               const char *tls_psk_file, bool pivot, GError **error)
{
  struct control_request req = { .cmd = CONTROL_RESUME,
                                 .target = target_uri,
                                 .tls_psk_file = tls_psk_file,
                                 .pivot = pivot };

  if (pivot != (target_uri != NULL) || (tls_psk_file && !target_uri)) {
    g_set_error (error, MIRROR_CONTROL_ERROR, MIRROR_CONTROL_ERROR_REQUEST,
                 "mirror control %s: resume: a target and pivot go together",
                 socket);
    return FALSE;
  }
  return command_state (socket, &req, error);
}

/* ---- waiting for mirrors ---- */

static gboolean
poll_disk (struct mirror_disk *d, GError **error)
{
  struct mirror_status st;

  if (!mirror_get_status (d->socket, &st, error))
    return FALSE;
  d->state = st.state;
  d->bytes_done = st.bytes_done;
  d->bytes_total = st.bytes_total;
  if (st.state == MIRROR_FAILED)
    g_set_error (error, MIRROR_CONTROL_ERROR, MIRROR_CONTROL_ERROR_FAILED,
                 "the mirror failed: %s", st.error ? st.error : "?");
  mirror_status_clear (&st);
  return d->state != MIRROR_FAILED;
}

gboolean
mirror_poll (struct mirror_disk *disks, size_t n, bool *all_ready,
             GError **error)
{
  *all_ready = true;
  for (size_t i = 0; i < n; i++) {
    if (!poll_disk (&disks[i], error)) {
      if (disks[i].name)
        g_prefix_error (error, "disk %s: ", disks[i].name);
      return FALSE;
    }
    if (disks[i].state != MIRROR_READY)
      *all_ready = false;
  }
  return TRUE;
}

gboolean
mirror_wait_ready (struct mirror_disk *disks, size_t n, unsigned interval_ms,
                   const struct mirror_wait_ops *ops, void *opaque,
                   GError **error)
{
  for (;;) {
    bool ready;

    if (ops && ops->cancelled && ops->cancelled (opaque)) {
      g_set_error_literal (error, MIRROR_CONTROL_ERROR,
                           MIRROR_CONTROL_ERROR_CANCELLED, "cancelled");
      return FALSE;
    }
    if (!mirror_poll (disks, n, &ready, error))
      return FALSE;
    if (ops && ops->progress
        && !ops->progress (disks, n, ready, opaque, error))
      return FALSE;
    if (ready)
      return TRUE;
    g_usleep ((gulong)interval_ms * 1000);
  }
}

gboolean
mirror_cbt_open (const char *socket, const char *log_path, GError **error)
{
  struct control_request req = { .cmd = CONTROL_CBT_OPEN,
                                 .cbt_log = log_path };

  return command_state (socket, &req, error);
}

gboolean
mirror_cbt_close (const char *socket, GError **error)
{
  struct control_request req = { .cmd = CONTROL_CBT_CLOSE };

  return command_state (socket, &req, error);
}
