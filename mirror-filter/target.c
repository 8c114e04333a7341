/* The mirror's target connection (see target.h for why it is not the copy
 * engine's endpoint).
 *
 * One libnbd handle.  Callers queue commands with nbd_aio_* from their
 * own threads (libnbd's handle lock makes that safe); the copy engine's
 * poller thread (nbd-poller.h) drives the state machine, poked when a
 * command could not be sent at once.  Each request is refcounted: one share
 * for the waiter, one for libnbd (dropped in the completion's .free, which
 * libnbd calls exactly once, even when queuing fails).  Requests in flight are
 * on a list so target_kill can finish them all with ECANCELED.
 *
 * A view (target_open_view) is one more connection to the same server
 * under another export name: NBD's option haggling (libnbd's opt mode)
 * replaces the URI's export name before NBD_OPT_GO. */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "nbd-poller.h"
#include "strprintf.h"
#include "target.h"

struct treq
{
  struct target *t;
  struct treq *prev, *next; /* in flight, under t->lock */
  int refs;
  bool done;
  int err;
  pthread_cond_t cond;
  enum treq_op op;
  uint64_t offset;
  uint32_t count;
  void *data;        /* private copy (write) or bounce buffer (read) */
  uint64_t zero_end; /* TREQ_MAP: where the zero prefix ends so far;
                        TREQ_EXTENTS: where the extents seen end */
  bool map_done;     /* TREQ_MAP: a non-zero extent ended the prefix */
  struct target_extents ext; /* TREQ_EXTENTS: seen so far */
};

struct target
{
  pthread_mutex_t lock;
  int refs;
  struct treq inflight; /* list head */
  bool killed;
  struct nbd_handle *h;
  struct nbd_poller poller;
  char *uri;
  char *psk_file;    /* or NULL */
  char *description; /* or NULL */
  uint64_t size;
  bool can_fua, can_zero, can_trim, can_flush, can_map;
};

static const char *const op_names[]
    = { "read", "write", "zero", "trim", "flush", "map", "map" };

/* The connection died: nothing will ever complete, so release everyone. */
static void
connection_gone (void *opaque)
{
  target_kill (opaque);
}

/* Caller holds t->lock. */
static void
finish_locked (struct treq *r, int err)
{
  if (r->done)
    return;
  r->done = true;
  r->err = err;
  pthread_cond_signal (&r->cond);
}

/* Caller holds t->lock. */
static void
unref_locked (struct treq *r)
{
  if (--r->refs > 0)
    return;
  pthread_cond_destroy (&r->cond);
  free (r->data);
  free (r->ext.v);
  free (r);
}

static int
completed (void *opaque, int *error)
{
  struct treq *r = opaque;
  pthread_mutex_lock (&r->t->lock);
  finish_locked (r, *error);
  pthread_mutex_unlock (&r->t->lock);
  return 1;
}

/* TREQ_EXTENTS: keep the extents that continue where the last one
 * ended, clipped to the range asked.  Caller holds the target's lock. */
static void
extents_keep_locked (struct treq *r, uint64_t offset, const uint32_t *entries,
                     size_t nr_entries)
{
  uint64_t end = r->offset + r->count;

  for (size_t i = 0; i + 1 < nr_entries && r->zero_end < end; i += 2) {
    uint64_t len = entries[i];

    if (offset != r->zero_end || len == 0)
      return;
    if (len > end - offset)
      len = end - offset;
    struct target_extent *v
        = realloc (r->ext.v, (r->ext.n + 1) * sizeof *r->ext.v);
    if (!v)
      return; /* what we have is still true; the caller asks again */
    r->ext.v = v;
    v[r->ext.n++] = (struct target_extent){ len, entries[i + 1] };
    r->zero_end += len;
    offset += len;
  }
}

/* base:allocation extents of a TREQ_MAP, from the poller thread: extend
 * the zero prefix while the extents are contiguous and read as zero; of
 * a TREQ_EXTENTS: keep them. */
static int
extents_seen (void *opaque, const char *metacontext, uint64_t offset,
              uint32_t *entries, size_t nr_entries, int *error)
{
  struct treq *r = opaque;
  if (strcmp (metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  pthread_mutex_lock (&r->t->lock);
  if (r->op == TREQ_EXTENTS) {
    extents_keep_locked (r, offset, entries, nr_entries);
    pthread_mutex_unlock (&r->t->lock);
    return 0;
  }
  for (size_t i = 0; i + 1 < nr_entries && !r->map_done; i += 2) {
    if (offset != r->zero_end || !(entries[i + 1] & LIBNBD_STATE_ZERO))
      r->map_done = true;
    else
      r->zero_end += entries[i];
    offset += entries[i];
  }
  pthread_mutex_unlock (&r->t->lock);
  return 0;
}

static void
released (void *opaque)
{
  struct treq *r = opaque;
  struct target *t = r->t;
  pthread_mutex_lock (&t->lock);
  /* Queuing failed without a completion: the waiter still needs an
   * answer. */
  finish_locked (r, EIO);
  unref_locked (r);
  pthread_mutex_unlock (&t->lock);
}

struct treq *
target_start (struct target *t, enum treq_op op, const void *buf,
              uint32_t count, uint64_t offset, bool fua)
{
  struct treq *r = calloc (1, sizeof *r);
  if (!r)
    return NULL;
  r->t = t;
  r->refs = 2;
  r->op = op;
  r->offset = offset;
  r->count = count;
  pthread_condattr_t ca;
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&r->cond, &ca);
  pthread_condattr_destroy (&ca);
  if (op == TREQ_WRITE || op == TREQ_READ) {
    r->data = malloc (count ? count : 1);
    if (!r->data) {
      pthread_cond_destroy (&r->cond);
      free (r);
      return NULL;
    }
    if (op == TREQ_WRITE)
      memcpy (r->data, buf, count);
  }

  pthread_mutex_lock (&t->lock);
  target_ref (t);
  r->next = t->inflight.next;
  r->prev = &t->inflight;
  r->next->prev = r;
  t->inflight.next = r;
  bool killed = t->killed;
  pthread_mutex_unlock (&t->lock);
  if (killed) {
    pthread_mutex_lock (&t->lock);
    finish_locked (r, ECANCELED);
    unref_locked (r); /* libnbd's share: never queued */
    pthread_mutex_unlock (&t->lock);
    return r;
  }

  uint32_t flags = fua && t->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
  nbd_completion_callback cb
      = { .callback = completed, .user_data = r, .free = released };
  int64_t ck = -1;
  switch (op) {
  case TREQ_READ:
    ck = nbd_aio_pread (t->h, r->data, count, offset, cb, 0);
    break;
  case TREQ_WRITE:
    ck = nbd_aio_pwrite (t->h, r->data, count, offset, cb, flags);
    break;
  case TREQ_ZERO:
    if (t->can_zero)
      ck = nbd_aio_zero (t->h, count, offset, cb, flags);
    else {
      /* Zero by writing zeroes: the range must read as zero. */
      void *z = calloc (1, count ? count : 1);
      if (z) {
        r->data = z;
        ck = nbd_aio_pwrite (t->h, z, count, offset, cb, flags);
      }
      else
        cb.free (r);
    }
    break;
  case TREQ_TRIM:
    if (t->can_trim)
      ck = nbd_aio_trim (t->h, count, offset, cb, flags);
    else {
      /* Trim is advisory: doing nothing is a valid trim. */
      pthread_mutex_lock (&t->lock);
      finish_locked (r, 0);
      unref_locked (r);
      pthread_mutex_unlock (&t->lock);
      return r;
    }
    break;
  case TREQ_EXTENTS:
  case TREQ_MAP:
    r->zero_end = offset;
    if (t->can_map)
      ck = nbd_aio_block_status (
          t->h, count, offset,
          (nbd_extent_callback){ .callback = extents_seen, .user_data = r },
          cb, 0);
    else {
      r->map_done = true; /* nothing known */
      pthread_mutex_lock (&t->lock);
      finish_locked (r, 0);
      unref_locked (r);
      pthread_mutex_unlock (&t->lock);
      return r;
    }
    break;
  case TREQ_FLUSH:
    if (t->can_flush)
      ck = nbd_aio_flush (t->h, cb, 0);
    else {
      pthread_mutex_lock (&t->lock);
      finish_locked (r, 0);
      unref_locked (r);
      pthread_mutex_unlock (&t->lock);
      return r;
    }
    break;
  }
  (void)ck; /* on failure libnbd has called .free, which finished R */
  /* The command may not have fitted in the socket at once. */
  if (nbd_aio_get_direction (t->h) & LIBNBD_AIO_DIRECTION_WRITE)
    nbd_poller_wake (&t->poller);
  return r;
}

int
target_finish (struct target *t, struct treq *r, void *buf, int timeout_ms,
               char **why)
{
  if (!r) {
    *why = str_printf ("%s: out of memory", t->uri);
    return -1;
  }
  struct timespec dl = monotonic_deadline (timeout_ms);
  int ret = 0;
  pthread_mutex_lock (&t->lock);
  while (!r->done)
    if (pthread_cond_timedwait (&r->cond, &t->lock, &dl) == ETIMEDOUT
        && !r->done) {
      *why = str_printf ("%s: %s of %" PRIu32 " bytes at %" PRIu64
                         " took longer than %d.%03d s",
                         t->uri, op_names[r->op], r->count, r->offset,
                         timeout_ms / 1000, timeout_ms % 1000);
      ret = -1;
      break;
    }
  if (ret == 0 && r->err) {
    *why = str_printf ("%s: %s of %" PRIu32 " bytes at %" PRIu64 ": %s",
                       t->uri, op_names[r->op], r->count, r->offset,
                       r->err == ECANCELED ? "target dropped"
                                           : strerror (r->err));
    ret = -1;
  }
  if (ret == 0 && r->op == TREQ_READ && buf)
    memcpy (buf, r->data, r->count);
  if (ret == 0 && r->op == TREQ_MAP && buf) {
    uint64_t n = r->zero_end - r->offset;
    *(uint64_t *)buf = n < r->count ? n : r->count;
  }
  if (ret == 0 && r->op == TREQ_EXTENTS && buf) {
    *(struct target_extents *)buf = r->ext;
    r->ext = (struct target_extents){ NULL, 0 };
  }
  r->prev->next = r->next;
  r->next->prev = r->prev;
  r->prev = r->next = r;
  unref_locked (r);
  pthread_mutex_unlock (&t->lock);
  target_unref (t);
  return ret;
}

int
target_sync (struct target *t, enum treq_op op, void *buf, uint32_t count,
             uint64_t offset, bool fua, int timeout_ms, char **why)
{
  return target_finish (t, target_start (t, op, buf, count, offset, fua), buf,
                        timeout_ms, why);
}

int
target_zero_prefix (struct target *t, uint64_t offset, uint32_t count,
                    int timeout_ms, uint64_t *len, char **why)
{
  *len = 0;
  if (!t->can_map)
    return 0;
  return target_finish (t,
                        target_start (t, TREQ_MAP, NULL, count, offset, false),
                        len, timeout_ms, why);
}

int
target_map (struct target *t, uint64_t offset, uint32_t count,
            int timeout_ms, struct target_extents *out, char **why)
{
  *out = (struct target_extents){ NULL, 0 };
  if (t->can_map
      && target_finish (t,
                        target_start (t, TREQ_EXTENTS, NULL, count, offset,
                                      false),
                        out, timeout_ms, why)
             == -1)
    return -1;
  if (out->n == 0) {
    /* No base:allocation, or an answer that said nothing usable. */
    free (out->v);
    out->v = malloc (sizeof *out->v);
    if (!out->v) {
      *why = str_printf ("%s: out of memory", t->uri);
      return -1;
    }
    out->v[0] = (struct target_extent){ count, 0 };
    out->n = 1;
  }
  return 0;
}

void
target_kill (struct target *t)
{
  pthread_mutex_lock (&t->lock);
  t->killed = true;
  for (struct treq *r = t->inflight.next; r != &t->inflight; r = r->next)
    finish_locked (r, ECANCELED);
  pthread_mutex_unlock (&t->lock);
}

void
target_ref (struct target *t)
{
  __atomic_add_fetch (&t->refs, 1, __ATOMIC_SEQ_CST);
}

static void
target_free (struct target *t)
{
  nbd_poller_stop (&t->poller);
  if (t->h) {
    /* A clean goodbye only to a healthy peer: a stalled one would make
     * us wait. */
    if (!t->killed && !nbd_aio_is_dead (t->h) && !nbd_aio_is_closed (t->h)
        && nbd_aio_is_ready (t->h))
      nbd_aio_disconnect (t->h, 0);
    nbd_close (t->h); /* fails what is left; libnbd calls every .free */
  }
  pthread_mutex_destroy (&t->lock);
  free (t->uri);
  free (t->psk_file);
  free (t->description);
  free (t);
}

void
target_unref (struct target *t)
{
  if (__atomic_sub_fetch (&t->refs, 1, __ATOMIC_SEQ_CST) == 0)
    target_free (t);
}

uint64_t
target_size (struct target *t)
{
  return t->size;
}

bool
target_can_fua (struct target *t)
{
  return t->can_fua;
}

const char *
target_uri (struct target *t)
{
  return t->uri;
}

const char *
target_description (struct target *t)
{
  return t->description;
}

/* Drive the handshake until it stops (ready, negotiating, or dead)
 * without blocking past START + TIMEOUT_MS. */
static int
handshake (struct target *t, const char *uri, uint64_t start, int timeout_ms,
           char **err)
{
  while (nbd_aio_is_connecting (t->h)) {
    int64_t left = timeout_ms - (int64_t)(monotonic_ns () - start) / 1000000;
    if (left <= 0) {
      *err = str_printf ("%s: cannot connect: no answer within %d s", uri,
                         timeout_ms / 1000);
      return -1;
    }
    if (nbd_poll (t->h, (int)left) == -1) {
      *err = str_printf ("%s: cannot connect: %s", uri, nbd_get_error ());
      return -1;
    }
  }
  return 0;
}

/* Connect without blocking past the deadline: a dead host must not hang
 * the control socket.  EXPORT (or NULL: the URI's) replaces the URI's
 * export name. */
static int
connect_with_deadline (struct target *t, const char *uri, const char *export,
                       int timeout_ms, char **err)
{
  uint64_t start = monotonic_ns ();

  if (nbd_aio_connect_uri (t->h, uri) == -1) {
    *err = str_printf ("%s: cannot connect: %s", uri, nbd_get_error ());
    return -1;
  }
  if (handshake (t, uri, start, timeout_ms, err) == -1)
    return -1;
  if (export && nbd_aio_is_negotiating (t->h)) {
    if (nbd_set_export_name (t->h, export) == -1
        || nbd_aio_opt_go (t->h, (nbd_completion_callback){ 0 }) == -1) {
      *err = str_printf ("%s: export %s: %s", uri, export, nbd_get_error ());
      return -1;
    }
    if (handshake (t, uri, start, timeout_ms, err) == -1)
      return -1;
  }
  if (!nbd_aio_is_ready (t->h)) {
    const char *e = nbd_get_error ();
    *err = str_printf ("%s: cannot connect: %s", uri,
                       e ? e : "the server closed the connection");
    return -1;
  }
  return 0;
}

/* Open URI (with EXPORT instead of its export name, if not NULL); a
 * read-only export only if READ_ONLY_OK. */
static struct target *
open_export (const char *uri, const char *psk_file, const char *export,
             bool read_only_ok, int timeout_ms, char **err)
{
  struct target *t = calloc (1, sizeof *t);
  if (!t) {
    *err = str_printf ("out of memory");
    return NULL;
  }
  pthread_mutex_init (&t->lock, NULL);
  t->refs = 1;
  t->inflight.next = t->inflight.prev = &t->inflight;
  t->uri = strdup (uri);
  t->psk_file = psk_file ? strdup (psk_file) : NULL;
  int pr = nbd_poller_init (&t->poller);
  t->h = nbd_create ();
  if (!t->uri || (psk_file && !t->psk_file) || pr == -1 || !t->h) {
    *err = str_printf ("%s: %s", uri,
                       t->h ? strerror (errno) : nbd_get_error ());
    goto fail;
  }
  if (nbd_set_uri_allow_local_file (t->h, true) == -1
      || nbd_add_meta_context (t->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1
      || (psk_file
          && (nbd_set_tls (t->h, LIBNBD_TLS_REQUIRE) == -1
              || nbd_set_tls_psk_file (t->h, psk_file) == -1))
      || (export
          && (nbd_set_opt_mode (t->h, true) == -1
              || nbd_set_full_info (t->h, true) == -1))) {
    *err = str_printf ("%s: %s", uri, nbd_get_error ());
    goto fail;
  }
  if (connect_with_deadline (t, uri, export, timeout_ms, err) == -1)
    goto fail;
  int64_t size = nbd_get_size (t->h);
  if (size < 0) {
    *err = str_printf ("%s: %s", uri, nbd_get_error ());
    goto fail;
  }
  if (!read_only_ok && nbd_is_read_only (t->h) == 1) {
    *err = str_printf ("%s: the export is read-only", uri);
    goto fail;
  }
  t->size = size;
  if (export)
    t->description = nbd_get_export_description (t->h); /* NULL if none */
  t->can_fua = nbd_can_fua (t->h) == 1;
  t->can_zero = nbd_can_zero (t->h) == 1;
  t->can_trim = nbd_can_trim (t->h) == 1;
  t->can_flush = nbd_can_flush (t->h) == 1;
  t->can_map
      = nbd_can_meta_context (t->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  if (nbd_poller_start (&t->poller, t->h, connection_gone, t) == -1) {
    *err = str_printf ("%s: cannot start a thread", uri);
    goto fail;
  }
  return t;

fail:
  t->killed = true;
  target_free (t);
  return NULL;
}

struct target *
target_open (const char *uri, const char *psk_file, int timeout_ms, char **err)
{
  return open_export (uri, psk_file, NULL, false, timeout_ms, err);
}

struct target *
target_open_view (struct target *t, const char *export, int timeout_ms,
                  char **err)
{
  return open_export (t->uri, t->psk_file, export, true, timeout_ms, err);
}
