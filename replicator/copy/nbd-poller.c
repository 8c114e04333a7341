/* The thread that drives a libnbd handle (see nbd-poller.h). */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "copy.h"
#include "nbd-poller.h"

int
nbd_poller_init (struct nbd_poller *p)
{
  *p = (struct nbd_poller){ .wake_fd = -1 };
  p->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  return p->wake_fd == -1 ? -1 : 0;
}

void
nbd_poller_wake (struct nbd_poller *p)
{
  uint64_t one = 1;
  if (write (p->wake_fd, &one, sizeof one) == -1) {
    /* A saturated counter: the thread is awake anyway. */
  }
}

static void *
loop (void *opaque)
{
  struct nbd_poller *p = opaque;
  while (!atomic_load (&p->stop)) {
    int fd = nbd_aio_get_fd (p->h);
    unsigned dir = nbd_aio_get_direction (p->h);
    if (fd == -1 || nbd_aio_is_dead (p->h) || nbd_aio_is_closed (p->h))
      break;
    struct pollfd fds[2] = {
      { fd,
        (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0)
            | (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0),
        0 },
      { p->wake_fd, POLLIN, 0 },
    };
    if (poll (fds, 2, -1) == -1) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      if (read (p->wake_fd, &v, sizeof v) == -1) {
        /* spurious */
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR))
      nbd_aio_notify_read (p->h);
    else if (fds[0].revents & POLLOUT)
      nbd_aio_notify_write (p->h);
  }
  if (p->on_exit)
    p->on_exit (p->opaque);
  return NULL;
}

int
nbd_poller_start (struct nbd_poller *p, struct nbd_handle *h,
                  void (*on_exit) (void *opaque), void *opaque)
{
  p->h = h;
  p->on_exit = on_exit;
  p->opaque = opaque;
  if (pthread_create (&p->thread, NULL, loop, p) != 0)
    return -1;
  p->running = true;
  return 0;
}

void
nbd_poller_stop (struct nbd_poller *p)
{
  if (p->running) {
    atomic_store (&p->stop, true);
    nbd_poller_wake (p);
    pthread_join (p->thread, NULL);
    p->running = false;
  }
  if (p->wake_fd >= 0)
    close (p->wake_fd);
  p->wake_fd = -1;
}

bool
copy_is_nbd_uri (const char *s)
{
  return strncmp (s, "nbd://", 6) == 0 || strncmp (s, "nbds://", 7) == 0
         || strncmp (s, "nbd+unix://", 11) == 0
         || strncmp (s, "nbds+unix://", 12) == 0;
}
