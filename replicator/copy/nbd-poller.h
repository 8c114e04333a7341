/* A thread that drives one libnbd handle's state machine, for code that
 * queues nbd_aio_* commands from many threads and waits for their
 * completion callbacks (the copy engine's NBD endpoint, the mirror
 * filter's target).
 *
 * The thread polls the socket in the direction libnbd asks for, plus an
 * eventfd: a caller whose command could not be sent at once (it needs
 * POLLOUT while the thread sleeps waiting for replies) pokes it with
 * nbd_poller_wake.  Reading comes first, so a closed socket (POLLHUP) is
 * noticed and libnbd fails every command in flight.  When the connection
 * dies the loop ends and ON_EXIT (if any) runs in the thread. */
#ifndef VDM_NBD_POLLER_H
#define VDM_NBD_POLLER_H

#include <libnbd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct nbd_poller
{
  struct nbd_handle *h;
  int wake_fd;
  atomic_bool stop;
  pthread_t thread;
  bool running;
  void (*on_exit) (void *opaque);
  void *opaque;
};

/* Make the eventfd; call before anything else (wake_fd -1 on failure,
 * with errno set).  Safe to nbd_poller_stop afterwards in any case. */
int nbd_poller_init (struct nbd_poller *p);
/* Start driving H (connected).  Returns -1 if the thread cannot start. */
int nbd_poller_start (struct nbd_poller *p, struct nbd_handle *h,
                      void (*on_exit) (void *opaque), void *opaque);
void nbd_poller_wake (struct nbd_poller *p);
/* Stop and join the thread, close the eventfd.  The handle stays the
 * caller's. */
void nbd_poller_stop (struct nbd_poller *p);

#endif /* VDM_NBD_POLLER_H */
