/* The mirror's control socket: a Unix stream socket, one command per
 * line, one JSON object per reply line (the protocol is documented in
 * nbdkit-mirror-filter(1)).  One thread serves one client at a time; the
 * commands are short (start connects within mirror-timeout, complete
 * drains and flushes), and a client that sends nothing for a while is
 * dropped so it cannot block the next one. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "full-io.h"
#include "mirror.h"

#define IDLE_CLIENT_SECONDS 60
#define MAX_LINE 4096

static int listen_fd = -1;
static char *sock_path;
static pthread_t thread;
static bool running;
static atomic_bool stopping;

int
control_listen (const char *path)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  if (strlen (path) >= sizeof a.sun_path) {
    nbdkit_error ("mirror-control: %s: path too long", path);
    return -1;
  }
  strcpy (a.sun_path, path);
  listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd == -1) {
    nbdkit_error ("mirror-control: socket: %m");
    return -1;
  }
  unlink (path); /* a stale socket from an earlier run */
  if (bind (listen_fd, (struct sockaddr *)&a, sizeof a) == -1
      || listen (listen_fd, 4) == -1) {
    nbdkit_error ("mirror-control: %s: %m", path);
    close (listen_fd);
    listen_fd = -1;
    return -1;
  }
  sock_path = strdup (path);
  return 0;
}

/* One command line; returns the reply. */
static char *
dispatch (char *line)
{
  struct control_request req;
  char *reply;

  if (control_parse (line, &req, &reply) == -1)
    return reply;
  switch (req.cmd) {
  case CONTROL_START:
    return mirror_cmd_start (req.target, req.tls_psk_file, req.sync);
  case CONTROL_STATUS: return mirror_cmd_status ();
  case CONTROL_COMPLETE: return mirror_cmd_complete (req.pivot);
  case CONTROL_ABORT: return mirror_cmd_abort ();
  case CONTROL_PAUSE: return mirror_cmd_pause ();
  case CONTROL_RESUME:
    return mirror_cmd_resume (req.target, req.tls_psk_file);
  case CONTROL_CBT_OPEN: return mirror_cmd_cbt_open (req.cbt_log);
  case CONTROL_CBT_CLOSE: return mirror_cmd_cbt_close ();
  }
  return mirror_reply_error ("unknown command");
}

static void
serve_client (int fd)
{
  char buf[MAX_LINE + 1];
  size_t have = 0;
  struct timeval tv = { IDLE_CLIENT_SECONDS, 0 };
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (!atomic_load (&stopping)) {
    char *nl = memchr (buf, '\n', have);
    if (!nl) {
      if (have == MAX_LINE) {
        char *r = mirror_reply_error ("line too long");
        if (r)
          full_write (fd, r, strlen (r)), full_write (fd, "\n", 1);
        free (r);
        return;
      }
      ssize_t k = recv (fd, buf + have, MAX_LINE - have, 0);
      if (k == -1 && errno == EINTR)
        continue;
      if (k <= 0)
        return;
      have += k;
      continue;
    }
    *nl = '\0';
    char *reply = dispatch (buf);
    int r = reply ? full_write (fd, reply, strlen (reply)) : -1;
    if (r == 0)
      r = full_write (fd, "\n", 1);
    free (reply);
    size_t used = nl + 1 - buf;
    memmove (buf, nl + 1, have - used);
    have -= used;
    if (r == -1)
      return;
  }
}

static void *
control_main (void *arg)
{
  while (!atomic_load (&stopping)) {
    struct pollfd p = { listen_fd, POLLIN, 0 };
    int n = poll (&p, 1, 200);
    mirror_reap ();
    if (n <= 0)
      continue;
    int fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd == -1)
      continue;
    serve_client (fd);
    close (fd);
    mirror_reap ();
  }
  return NULL;
}

int
control_start (void)
{
  if (listen_fd == -1)
    return 0;
  int e = pthread_create (&thread, NULL, control_main, NULL);
  if (e) {
    nbdkit_error ("mirror-control: cannot start a thread: %s", strerror (e));
    return -1;
  }
  running = true;
  return 0;
}

void
control_stop (void)
{
  atomic_store (&stopping, true);
  if (running)
    pthread_join (thread, NULL);
  running = false;
  if (listen_fd >= 0)
    close (listen_fd);
  listen_fd = -1;
  if (sock_path)
    unlink (sock_path);
  free (sock_path);
  sock_path = NULL;
}
