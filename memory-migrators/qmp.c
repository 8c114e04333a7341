/* A small synchronous QMP client (qmp.h).  QEMU sends one JSON object per
 * line: the greeting, replies (matched here by "id") and asynchronous
 * events, which are skipped. */

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "migrator.h"
#include "qmp.h"

struct qmp
{
  char *name;
  int fd;
  pid_t pid;
  GString *in; /* bytes read and not yet a whole line */
  guint64 next_id;
  const volatile sig_atomic_t *cancel;
};

/* Short poll slices, so a signal's cancel flag is seen soon even if the
 * handler's interruption of poll is lost in a race. */
#define SLICE_MS 100

static bool
check_cancel (struct qmp *q, GError **err)
{
  if (q->cancel && *q->cancel) {
    g_set_error (err, MM_ERROR, 0, "%s: cancelled", q->name);
    return false;
  }
  return true;
}

/* Wait for EVENTS on the socket, until DEADLINE. */
static bool
wait_fd (struct qmp *q, short events, gint64 deadline, const char *doing,
         GError **err)
{
  for (;;) {
    struct pollfd p = { .fd = q->fd, .events = events };
    gint64 left = deadline - g_get_monotonic_time ();
    int r;

    if (!check_cancel (q, err))
      return false;
    if (left <= 0) {
      g_set_error (err, MM_ERROR, 0, "%s: timed out %s", q->name, doing);
      return false;
    }
    r = poll (&p, 1, MIN (left / 1000 + 1, SLICE_MS));
    if (r > 0)
      return true;
    if (r < 0 && errno != EINTR) {
      g_set_error (err, MM_ERROR, 0, "%s: poll: %s", q->name,
                   g_strerror (errno));
      return false;
    }
  }
}

static bool
send_all (struct qmp *q, const char *text, gint64 deadline, GError **err)
{
  size_t len = strlen (text), done = 0;

  while (done < len) {
    ssize_t w;
    if (!wait_fd (q, POLLOUT, deadline, "sending a command", err))
      return false;
    w = send (q->fd, text + done, len - done, MSG_NOSIGNAL);
    if (w < 0 && errno != EINTR && errno != EAGAIN) {
      g_set_error (err, MM_ERROR, 0, "%s: sending to QMP: %s", q->name,
                   g_strerror (errno));
      return false;
    }
    if (w > 0)
      done += w;
  }
  return true;
}

/* The next whole line from QEMU, or NULL: on EOF with ERR naming it. */
static char *
read_line (struct qmp *q, gint64 deadline, GError **err)
{
  for (;;) {
    char *nl = memchr (q->in->str, '\n', q->in->len);
    char buf[4096];
    ssize_t r;

    if (nl) {
      size_t n = nl - q->in->str;
      char *line = g_strndup (q->in->str, n);
      g_string_erase (q->in, 0, n + 1);
      return line;
    }
    if (!wait_fd (q, POLLIN, deadline, "waiting for QEMU's reply", err))
      return NULL;
    r = recv (q->fd, buf, sizeof buf, 0);
    if (r == 0 || (r < 0 && errno == ECONNRESET)) {
      g_set_error (err, MM_ERROR, QMP_ERROR_CLOSED,
                   "%s: QEMU closed the QMP connection", q->name);
      return NULL;
    }
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      g_set_error (err, MM_ERROR, 0, "%s: reading QMP: %s", q->name,
                   g_strerror (errno));
      return NULL;
    }
    g_string_append_len (q->in, buf, r);
  }
}

/* The next message that is not an event, parsed. */
static JsonNode *
read_message (struct qmp *q, gint64 deadline, GError **err)
{
  for (;;) {
    g_autofree char *line = read_line (q, deadline, err);
    g_autoptr (JsonParser) p = json_parser_new ();
    g_autoptr (GError) perr = NULL;
    JsonNode *root;

    if (line == NULL)
      return NULL;
    if (!json_parser_load_from_data (p, line, -1, &perr)
        || !(root = json_parser_get_root (p))
        || !JSON_NODE_HOLDS_OBJECT (root)) {
      g_set_error (err, MM_ERROR, 0, "%s: QEMU sent what is not QMP: %s",
                   q->name, line);
      return NULL;
    }
    if (json_object_has_member (json_node_get_object (root), "event"))
      continue;
    return json_parser_steal_root (p);
  }
}

static JsonNode *
execute_id (struct qmp *q, const char *command, const char *args,
            gint64 deadline, guint64 *id, GError **err)
{
  g_autofree char *quoted = g_strescape (command, NULL);
  g_autofree char *text = NULL;

  *id = q->next_id++;
  text = g_strdup_printf (
      "{\"execute\": \"%s\"%s%s, \"id\": %" G_GUINT64_FORMAT "}\n", quoted,
      args ? ", \"arguments\": " : "", args ? args : "", *id);
  if (!check_cancel (q, err) || !send_all (q, text, deadline, err))
    return NULL;
  for (;;) {
    g_autoptr (JsonNode) msg = read_message (q, deadline, err);
    JsonObject *o;
    JsonNode *n;

    if (msg == NULL)
      return NULL;
    o = json_node_get_object (msg);
    n = json_object_get_member (o, "id");
    if (n == NULL || !JSON_NODE_HOLDS_VALUE (n)
        || json_node_get_value_type (n) != G_TYPE_INT64
        || (guint64)json_node_get_int (n) != *id)
      continue; /* a reply to a command given up on earlier */
    if ((n = json_object_get_member (o, "error"))) {
      JsonObject *e
          = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
      const char *desc = e && json_object_has_member (e, "desc")
                             ? json_object_get_string_member (e, "desc")
                             : "error without a description";
      g_set_error (err, MM_ERROR, 0, "%s: %s: %s", q->name, command,
                   desc ? desc : "?");
      return NULL;
    }
    if ((n = json_object_get_member (o, "return")))
      return json_node_copy (n);
    g_set_error (err, MM_ERROR, 0, "%s: %s: a reply without \"return\"",
                 q->name, command);
    return NULL;
  }
}

JsonNode *
qmp_execute (struct qmp *q, const char *command, const char *args,
             gint64 deadline, GError **err)
{
  guint64 id;
  return execute_id (q, command, args, deadline, &id, err);
}

bool
qmp_execute_until_hangup (struct qmp *q, const char *command, gint64 deadline,
                          GError **err)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (JsonNode) ret = qmp_execute (q, command, NULL, deadline, &local);

  /* QEMU may close before its reply is read: that is the hang-up too. */
  while (local == NULL)
    g_free (read_line (q, deadline, &local));
  if (g_error_matches (local, MM_ERROR, QMP_ERROR_CLOSED))
    return true;
  g_propagate_error (err, g_steal_pointer (&local));
  return false;
}

struct qmp *
qmp_connect (const char *name, const char *path, gint64 deadline, GError **err)
{
  g_autoptr (qmp) q = g_new0 (struct qmp, 1);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  struct ucred cred;
  socklen_t len = sizeof cred;
  g_autoptr (JsonNode) greeting = NULL;
  g_autoptr (JsonNode) caps = NULL;

  q->name = g_strdup (name);
  q->in = g_string_new (NULL);
  q->next_id = 1;
  q->fd = -1;
  if (strlen (path) >= sizeof sa.sun_path) {
    g_set_error (err, MM_ERROR, 0,
                 "%s: QMP socket path too long for a Unix socket: %s", name,
                 path);
    return NULL;
  }
  strcpy (sa.sun_path, path);
  q->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (q->fd < 0
      || (connect (q->fd, (struct sockaddr *)&sa, sizeof sa) < 0
          && errno != EINPROGRESS)) {
    g_set_error (err, MM_ERROR, 0, "%s: connecting to QMP socket %s: %s", name,
                 path, g_strerror (errno));
    return NULL;
  }
  if (getsockopt (q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0
      || cred.pid <= 0) {
    g_set_error (err, MM_ERROR, 0, "%s: %s: no peer process (SO_PEERCRED)",
                 name, path);
    return NULL;
  }
  q->pid = cred.pid;

  greeting = read_message (q, deadline, err);
  if (greeting == NULL)
    return NULL;
  if (!json_object_has_member (json_node_get_object (greeting), "QMP")) {
    g_set_error (err, MM_ERROR, 0, "%s: %s: no QMP greeting", name, path);
    return NULL;
  }
  caps = qmp_execute (q, "qmp_capabilities", NULL, deadline, err);
  if (caps == NULL)
    return NULL;
  return g_steal_pointer (&q);
}

pid_t
qmp_peer_pid (const struct qmp *q)
{
  return q->pid;
}

void
qmp_set_cancel_flag (struct qmp *q, const volatile sig_atomic_t *flag)
{
  q->cancel = flag;
}

void
qmp_close (struct qmp *q)
{
  if (q == NULL)
    return;
  if (q->fd >= 0)
    close (q->fd);
  g_string_free (q->in, TRUE);
  g_free (q->name);
  g_free (q);
}
