/* NBD endpoint through libnbd.
 *
 * Worker threads call the synchronous-looking ops; underneath each call is
 * an asynchronous libnbd command on one of the connections, so as many
 * commands are in flight on each socket as there are workers waiting.  A
 * poller thread per connection (nbd-poller.h) drives libnbd's state
 * machine; workers poke it after queuing a command.  Completion callbacks
 * wake the waiting worker. */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "nbd-poller.h"

#define MAX_CONNECTIONS 16
/* NBD lengths are 32-bit; stay well below. */
#define MAX_ZERO (UINT64_C (1) << 30)

struct conn
{
  struct nbd_handle *h;
  struct nbd_poller poller;
  pthread_mutex_t lock; /* protects waiter.done, for the cond */
  pthread_cond_t cond;
};

struct waiter
{
  struct conn *c;
  bool done;
  int err;
};

struct nbdep
{
  struct copy_endpoint ep;
  unsigned n;
  atomic_uint next;
  bool can_zero, can_flush, has_extents;
  struct conn conns[MAX_CONNECTIONS];
  /* At most one early flush (writeback) in flight, not waited for. */
  pthread_mutex_t wb_lock;
  bool wb_queued;
  struct waiter wb;
};

static int
completed (void *opaque, int *error)
{
  struct waiter *w = opaque;
  pthread_mutex_lock (&w->c->lock);
  w->done = true;
  w->err = *error;
  pthread_cond_broadcast (&w->c->cond);
  pthread_mutex_unlock (&w->c->lock);
  return 1; /* retire the command */
}

/* Wait for W after queuing its command (COOKIE -1 = queuing failed). */
static int
wait_for (struct nbdep *n, struct waiter *w, int64_t cookie, const char *what,
          uint64_t offset, char **err)
{
  if (cookie == -1)
    return copy_error (err, "%s: %s at %" PRIu64 ": %s", n->ep.name, what,
                       offset, nbd_get_error ());
  nbd_poller_wake (&w->c->poller);
  pthread_mutex_lock (&w->c->lock);
  while (!w->done)
    pthread_cond_wait (&w->c->cond, &w->c->lock);
  pthread_mutex_unlock (&w->c->lock);
  if (w->err)
    return copy_error (err, "%s: %s at %" PRIu64 ": %s", n->ep.name, what,
                       offset, strerror (w->err));
  return 0;
}

static struct conn *
pick (struct nbdep *n)
{
  return &n->conns[atomic_fetch_add (&n->next, 1) % n->n];
}

static int
nbd_ep_pread (struct copy_endpoint *e, void *buf, size_t count,
              uint64_t offset, char **err)
{
  struct nbdep *n = (struct nbdep *)e;
  struct waiter w = { .c = pick (n) };
  int64_t ck = nbd_aio_pread (
      w.c->h, buf, count, offset,
      (nbd_completion_callback){ .callback = completed, .user_data = &w }, 0);
  return wait_for (n, &w, ck, "read", offset, err);
}

static int
nbd_ep_pwrite (struct copy_endpoint *e, const void *buf, size_t count,
               uint64_t offset, char **err)
{
  struct nbdep *n = (struct nbdep *)e;
  struct waiter w = { .c = pick (n) };
  int64_t ck = nbd_aio_pwrite (
      w.c->h, buf, count, offset,
      (nbd_completion_callback){ .callback = completed, .user_data = &w }, 0);
  return wait_for (n, &w, ck, "write", offset, err);
}

static int
zero_by_writing (struct nbdep *n, uint64_t count, uint64_t offset, char **err)
{
  size_t chunk = count < (1 << 20) ? count : (1 << 20);
  char *z = calloc (1, chunk);
  int r = 0;
  if (!z)
    return copy_error (err, "out of memory");
  while (count && r == 0) {
    size_t k = count < chunk ? count : chunk;
    r = nbd_ep_pwrite (&n->ep, z, k, offset, err);
    count -= k;
    offset += k;
  }
  free (z);
  return r;
}

static int
nbd_ep_zero (struct copy_endpoint *e, uint64_t count, uint64_t offset,
             char **err)
{
  struct nbdep *n = (struct nbdep *)e;
  if (!n->can_zero)
    return zero_by_writing (n, count, offset, err);
  while (count) {
    uint64_t k = count < MAX_ZERO ? count : MAX_ZERO;
    struct waiter w = { .c = pick (n) };
    int64_t ck = nbd_aio_zero (
        w.c->h, k, offset,
        (nbd_completion_callback){ .callback = completed, .user_data = &w },
        0);
    if (wait_for (n, &w, ck, "zero", offset, err) == -1)
      return -1;
    count -= k;
    offset += k;
  }
  return 0;
}

struct extent_ctx
{
  struct vdisk_extents *out;
  uint64_t end;     /* of the requested range */
  uint64_t reached; /* covered so far */
};

static int
got_extents (void *opaque, const char *context, uint64_t offset,
             uint32_t *entries, size_t nr, int *error)
{
  struct extent_ctx *x = opaque;
  if (strcmp (context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  for (size_t i = 0; i + 1 < nr && offset < x->end; i += 2) {
    uint64_t len = entries[i];
    uint32_t f = entries[i + 1];
    if (len > x->end - offset)
      len = x->end - offset;
    enum vdisk_extent_type t = VDISK_EXTENT_DATA;
    if ((f & LIBNBD_STATE_HOLE) && (f & LIBNBD_STATE_ZERO))
      t = VDISK_EXTENT_HOLE;
    else if (f & LIBNBD_STATE_ZERO)
      t = VDISK_EXTENT_ZERO;
    if (offset == x->reached
        && vdisk_extents_append (x->out, offset, len, t, -1, 0) == -1) {
      *error = ENOMEM;
      return -1;
    }
    if (offset == x->reached)
      x->reached += len;
    offset += len;
  }
  return 0;
}

static int
nbd_ep_map (struct copy_endpoint *e, uint64_t offset, uint64_t count,
            struct vdisk_extents *out, char **err)
{
  struct nbdep *n = (struct nbdep *)e;
  if (!n->has_extents)
    return vdisk_extents_append (out, offset, count, VDISK_EXTENT_DATA, -1, 0)
                   == -1
               ? copy_error (err, "out of memory")
               : 0;
  struct extent_ctx x = { out, offset + count, offset };
  /* The server may describe less than asked: ask again from where it
   * stopped. */
  while (x.reached < x.end) {
    uint64_t ask = x.end - x.reached;
    if (ask > MAX_ZERO)
      ask = MAX_ZERO;
    uint64_t before = x.reached;
    struct waiter w = { .c = pick (n) };
    int64_t ck = nbd_aio_block_status (
        w.c->h, ask, x.reached,
        (nbd_extent_callback){ .callback = got_extents, .user_data = &x },
        (nbd_completion_callback){ .callback = completed, .user_data = &w },
        0);
    if (wait_for (n, &w, ck, "block status", before, err) == -1)
      return -1;
    if (x.reached == before)
      return copy_error (err,
                         "%s: block status at %" PRIu64 " described nothing",
                         n->ep.name, before);
  }
  return 0;
}

/* Is the early flush still in flight?  Called with wb_lock held. */
static bool
writeback_busy (struct nbdep *n)
{
  bool done;
  if (!n->wb_queued)
    return false;
  pthread_mutex_lock (&n->wb.c->lock);
  done = n->wb.done;
  pthread_mutex_unlock (&n->wb.c->lock);
  n->wb_queued = !done;
  return n->wb_queued;
}

/* A flush the engine does not wait for, so the server writes back while
 * the copy goes on and the final flush finds little left.  Its error, if
 * any, is the final flush's to report. */
static void
nbd_ep_writeback (struct copy_endpoint *e)
{
  struct nbdep *n = (struct nbdep *)e;
  if (!n->can_flush)
    return;
  pthread_mutex_lock (&n->wb_lock);
  if (!writeback_busy (n)) {
    n->wb = (struct waiter){ .c = pick (n) };
    if (nbd_aio_flush (n->wb.c->h,
                       (nbd_completion_callback){ .callback = completed,
                                                  .user_data = &n->wb },
                       0)
        != -1) {
      n->wb_queued = true;
      nbd_poller_wake (&n->wb.c->poller);
    }
  }
  pthread_mutex_unlock (&n->wb_lock);
}

static int
nbd_ep_flush (struct copy_endpoint *e, char **err)
{
  struct nbdep *n = (struct nbdep *)e;
  if (!n->can_flush)
    return 0;
  pthread_mutex_lock (&n->wb_lock);
  if (writeback_busy (n)) {
    char *ignored = NULL;
    wait_for (n, &n->wb, 0, "flush", 0, &ignored);
    free (ignored);
    n->wb_queued = false;
  }
  pthread_mutex_unlock (&n->wb_lock);
  /* Without multi-conn a flush covers only its own connection's writes;
   * flushing every connection is right either way. */
  for (unsigned i = 0; i < n->n; i++) {
    struct waiter w = { .c = &n->conns[i] };
    int64_t ck = nbd_aio_flush (
        w.c->h,
        (nbd_completion_callback){ .callback = completed, .user_data = &w },
        0);
    if (wait_for (n, &w, ck, "flush", 0, err) == -1)
      return -1;
  }
  return 0;
}

static void
conn_close (struct conn *c)
{
  nbd_poller_stop (&c->poller);
  if (c->h) {
    if (!nbd_aio_is_dead (c->h) && !nbd_aio_is_closed (c->h))
      nbd_shutdown (c->h, 0);
    nbd_close (c->h);
  }
  pthread_mutex_destroy (&c->lock);
  pthread_cond_destroy (&c->cond);
}

static int
nbd_ep_close (struct copy_endpoint *e, char **err)
{
  struct nbdep *n = (struct nbdep *)e;
  for (unsigned i = 0; i < n->n; i++)
    conn_close (&n->conns[i]);
  pthread_mutex_destroy (&n->wb_lock);
  free (n->ep.name);
  free (n);
  return 0;
}

static const struct copy_endpoint_ops nbd_ops = {
  .kind = "nbd",
  .map = nbd_ep_map,
  .pread = nbd_ep_pread,
  .pwrite = nbd_ep_pwrite,
  .zero = nbd_ep_zero,
  .flush = nbd_ep_flush,
  .writeback = nbd_ep_writeback,
  .close = nbd_ep_close,
};

static int
conn_open (struct nbdep *n, struct conn *c, const char *uri, char **err)
{
  pthread_mutex_init (&c->lock, NULL);
  pthread_cond_init (&c->cond, NULL);
  int r = nbd_poller_init (&c->poller);
  c->h = nbd_create ();
  if (r == -1 || !c->h)
    return copy_error (err, "%s: %s", uri,
                       c->h ? strerror (errno) : nbd_get_error ());
  /* nbds:// URIs name their PSK file in the query (tls-psk-file=). */
  if (nbd_set_uri_allow_local_file (c->h, true) == -1
      || nbd_add_meta_context (c->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1)
    return copy_error (err, "%s: %s", uri, nbd_get_error ());
  if (nbd_connect_uri (c->h, uri) == -1)
    return copy_error (err, "%s: cannot connect: %s", uri, nbd_get_error ());
  if (nbd_poller_start (&c->poller, c->h, NULL, NULL) == -1)
    return copy_error (err, "%s: cannot start a thread", uri);
  return 0;
}

struct copy_endpoint *
copy_endpoint_nbd (const char *uri, bool writable, unsigned connections,
                   char **err)
{
  struct nbdep *n = calloc (1, sizeof *n);
  if (!n) {
    copy_error (err, "out of memory");
    return NULL;
  }
  for (unsigned i = 0; i < MAX_CONNECTIONS; i++)
    n->conns[i].poller.wake_fd = -1;
  pthread_mutex_init (&n->wb_lock, NULL);
  n->ep.ops = &nbd_ops;
  n->ep.name = strdup (uri);
  n->ep.granularity = 4096;
  n->n = 1;
  if (conn_open (n, &n->conns[0], uri, err) == -1)
    goto fail;
  struct nbd_handle *h = n->conns[0].h;
  int64_t size = nbd_get_size (h);
  if (size < 0) {
    copy_error (err, "%s: %s", uri, nbd_get_error ());
    goto fail;
  }
  n->ep.size = size;
  if (writable && nbd_is_read_only (h) == 1) {
    copy_error (err, "%s: the export is read-only", uri);
    goto fail;
  }
  n->can_zero = nbd_can_zero (h) == 1;
  n->can_flush = nbd_can_flush (h) == 1;
  n->has_extents
      = nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  /* More connections only where the server promises they see each
   * other's writes. */
  if (connections > MAX_CONNECTIONS)
    connections = MAX_CONNECTIONS;
  if (connections > 1 && nbd_can_multi_conn (h) == 1)
    for (; n->n < connections; n->n++)
      if (conn_open (n, &n->conns[n->n], uri, err) == -1) {
        n->n++;
        goto fail;
      }
  return &n->ep;

fail:
  nbd_ep_close (&n->ep, NULL);
  return NULL;
}

/* The NBD end of a job (COPY_NBD): a disk's guest view, raw bytes with
 * no chain. */
static int
side_open (struct copy_side *s, bool writable, char **err)
{
  unsigned n = s->spec.connections ? s->spec.connections : 4;
  s->ep = copy_endpoint_nbd (s->spec.uri, writable, n, err);
  return s->ep ? 0 : -1;
}

static int
side_open_source (struct copy_side *s, char **err)
{
  return side_open (s, false, err);
}

static int
side_open_dest (struct copy_side *s, uint64_t size, char **err)
{
  return side_open (s, true, err);
}

static int
side_close (struct copy_side *s, bool ok, char **err)
{
  int r = copy_endpoint_close (s->ep, ok ? err : NULL);
  s->ep = NULL;
  return r;
}

const struct copy_side_ops copy_side_nbd = {
  .open_source = side_open_source,
  .open_dest = side_open_dest,
  .close = side_close,
};
