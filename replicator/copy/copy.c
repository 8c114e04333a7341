/* The copy engine (design in copy.h).
 *
 * Threads: one mapper, which maps the source a few windows ahead and
 * cuts each window into pieces; `requests` workers, which take pieces in
 * order and move them.  A window is done when its last piece is; done
 * windows go to the journal after a destination flush. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "iszero.h"
#include "clock.h"
#include "endpoint.h"
#include "journal.h"

#define MAP_AHEAD 4 /* windows mapped ahead of the copy */

enum piece_kind
{
  PIECE_DATA,
  PIECE_ZERO,
};

struct piece
{
  uint64_t offset, length;
  enum piece_kind kind;
};

/* One window of guest space, mapped and cut into pieces. */
struct window
{
  uint64_t index;
  struct piece *pieces;
  size_t n, next;     /* pieces, and the next one to hand out */
  size_t outstanding; /* handed out, not finished */
  bool dest_zero;     /* destination reads zero here before the copy */
  uint64_t skipped;   /* bytes needing no work */
};

struct engine
{
  struct copy_endpoint *src, *dst;
  const struct copy_params *p;
  struct journal *journal;
  uint64_t size, nwindows;
  size_t request_size;
  int src_fd, dst_fd; /* copy_file_range, or -1 */
  atomic_bool use_cfr;

  pthread_mutex_t lock;
  pthread_cond_t cond; /* mapper <-> workers */
  struct window *ring[MAP_AHEAD];
  size_t ring_head, ring_len;
  bool mapper_done;
  bool failed;
  unsigned writeback_due; /* windows retired since the last writeback */
  char *err;

  uint64_t *finished; /* windows done, not yet journaled */
  size_t n_finished, cap_finished;

  struct copy_stats stats;
  uint64_t done_bytes;
};

/* Record the first failure; everyone stops at their next step. */
static void
fail (struct engine *e, char *msg)
{
  pthread_mutex_lock (&e->lock);
  if (!e->failed) {
    e->failed = true;
    e->err = msg;
    msg = NULL;
  }
  pthread_cond_broadcast (&e->cond);
  pthread_mutex_unlock (&e->lock);
  free (msg);
}

static void
window_free (struct window *w)
{
  if (w) {
    free (w->pieces);
    free (w);
  }
}

static int
add_piece (struct window *w, size_t *cap, uint64_t off, uint64_t len,
           enum piece_kind k)
{
  if (w->n == *cap) {
    size_t c = *cap ? *cap * 2 : 16;
    struct piece *p = realloc (w->pieces, c * sizeof *p);
    if (!p)
      return -1;
    w->pieces = p;
    *cap = c;
  }
  w->pieces[w->n++] = (struct piece){ off, len, k };
  return 0;
}

/* A sequential destination (a stream) takes whole request-sized pieces,
 * aligned: data where any of the piece holds data (the rest of it reads
 * as zero from the source), zeroes elsewhere.  Few large writes, as a
 * stream's reader wants, rather than one per extent. */
static int
cut_coarse (struct engine *e, struct window *w, size_t *cap,
            const struct vdisk_extents *x, uint64_t start, uint64_t len)
{
  uint64_t rs = e->request_size;
  size_t i = 0;
  for (uint64_t off = start; off < start + len;) {
    uint64_t end = (off / rs + 1) * rs;
    bool data = false;
    if (end > start + len)
      end = start + len;
    while (i < x->len && x->v[i].offset + x->v[i].length <= off)
      i++;
    for (size_t k = i; k < x->len && x->v[k].offset < end; k++)
      data = data || x->v[k].type == VDISK_EXTENT_DATA;
    if (add_piece (w, cap, off, end - off, data ? PIECE_DATA : PIECE_ZERO)
        == -1)
      return -1;
    off = end;
  }
  return 0;
}

/* Any other destination: data in request-sized pieces, zeroes where the
 * destination does not already read zero. */
static int
cut_fine (struct engine *e, struct window *w, size_t *cap,
          const struct vdisk_extents *x)
{
  for (size_t i = 0; i < x->len; i++) {
    uint64_t off = x->v[i].offset, n = x->v[i].length;
    if (x->v[i].type != VDISK_EXTENT_DATA) {
      /* A hole of a single layer means "the parent's", so it is left
       * alone. */
      bool leave
          = w->dest_zero
            || (x->v[i].type == VDISK_EXTENT_HOLE && e->p->holes_fall_through);
      if (leave)
        w->skipped += n;
      else if (add_piece (w, cap, off, n, PIECE_ZERO) == -1)
        return -1;
      continue;
    }
    while (n > 0) {
      uint64_t k = n < e->request_size ? n : e->request_size;
      if (add_piece (w, cap, off, k, PIECE_DATA) == -1)
        return -1;
      off += k;
      n -= k;
    }
  }
  return 0;
}

/* Map window INDEX of the source and cut it into pieces. */
static struct window *
map_window (struct engine *e, uint64_t index, char **err)
{
  struct window *w = calloc (1, sizeof *w);
  struct vdisk_extents x = { 0 };
  size_t cap = 0;
  uint64_t start = index * COPY_WINDOW;
  uint64_t len = e->size - start < COPY_WINDOW ? e->size - start : COPY_WINDOW;
  if (!w) {
    copy_error (err, "out of memory");
    return NULL;
  }
  w->index = index;
  if (e->journal && journal_is_done (e->journal, index)) {
    w->skipped = len;
    return w;
  }
  w->dest_zero = e->p->dest_is_zero && !e->dst->sequential
                 && !(e->journal && journal_was_started (e->journal, index));
  if (e->src->ops->map (e->src, start, len, &x, err) == -1)
    goto fail;
  if ((e->dst->sequential ? cut_coarse (e, w, &cap, &x, start, len)
                          : cut_fine (e, w, &cap, &x))
      == -1)
    goto oom;
  vdisk_extents_free (&x);
  return w;
oom:
  copy_error (err, "out of memory");
fail:
  vdisk_extents_free (&x);
  window_free (w);
  return NULL;
}

static void *
mapper (void *opaque)
{
  struct engine *e = opaque;
  for (uint64_t i = 0; i < e->nwindows; i++) {
    char *err = NULL;
    struct window *w = map_window (e, i, &err);
    if (!w) {
      fail (e, err);
      break;
    }
    pthread_mutex_lock (&e->lock);
    while (e->ring_len == MAP_AHEAD && !e->failed)
      pthread_cond_wait (&e->cond, &e->lock);
    if (e->failed) {
      pthread_mutex_unlock (&e->lock);
      window_free (w);
      break;
    }
    e->ring[(e->ring_head + e->ring_len) % MAP_AHEAD] = w;
    e->ring_len++;
    pthread_cond_broadcast (&e->cond);
    pthread_mutex_unlock (&e->lock);
  }
  pthread_mutex_lock (&e->lock);
  e->mapper_done = true;
  pthread_cond_broadcast (&e->cond);
  pthread_mutex_unlock (&e->lock);
  return NULL;
}

static void
report_progress (struct engine *e)
{
  if (e->p->progress) {
    struct copy_progress pr = { e->done_bytes, e->size };
    e->p->progress (&pr, e->p->progress_opaque);
  }
}

/* With the lock held: account for window W ending; pop finished windows
 * off the front of the ring. */
static void
window_finished (struct engine *e, struct window *w)
{
  e->stats.bytes_skipped += w->skipped;
  e->done_bytes += w->skipped;
  if (e->journal) {
    if (e->n_finished == e->cap_finished) {
      size_t c = e->cap_finished ? e->cap_finished * 2 : 64;
      uint64_t *f = realloc (e->finished, c * sizeof *f);
      if (f) {
        e->finished = f;
        e->cap_finished = c;
      }
    }
    /* Without room the window is simply not journaled: redone on resume. */
    if (e->n_finished < e->cap_finished)
      e->finished[e->n_finished++] = w->index;
  }
}

/* With the lock held: retire the drained windows at the head of the ring,
 * making room for the mapper. */
static void
retire_windows (struct engine *e)
{
  bool retired = false;
  while (e->ring_len > 0) {
    struct window *w = e->ring[e->ring_head];
    if (w->next < w->n || w->outstanding > 0)
      break;
    window_finished (e, w);
    window_free (w);
    e->writeback_due++;
    e->ring_head = (e->ring_head + 1) % MAP_AHEAD;
    e->ring_len--;
    retired = true;
  }
  if (retired) {
    report_progress (e);
    pthread_cond_broadcast (&e->cond);
  }
}

/* Take the next piece, waiting for the mapper if need be.  Returns false
 * when there is no more work (or the copy failed). */
static bool
next_piece (struct engine *e, struct window **wp, struct piece *out)
{
  pthread_mutex_lock (&e->lock);
  for (;;) {
    if (!e->failed && e->p->cancel
        && __atomic_load_n (e->p->cancel, __ATOMIC_RELAXED)) {
      e->failed = true;
      e->err = strdup ("cancelled");
      pthread_cond_broadcast (&e->cond);
    }
    if (e->failed)
      break;
    retire_windows (e);
    for (size_t i = 0; i < e->ring_len; i++) {
      struct window *w = e->ring[(e->ring_head + i) % MAP_AHEAD];
      if (w->next < w->n) {
        *out = w->pieces[w->next++];
        w->outstanding++;
        *wp = w;
        pthread_mutex_unlock (&e->lock);
        return true;
      }
    }
    if (e->mapper_done && e->ring_len == 0)
      break;
    pthread_cond_wait (&e->cond, &e->lock);
  }
  pthread_mutex_unlock (&e->lock);
  return false;
}

/* Flush the destination, then record the finished windows as done. */
static int
sync_journal (struct engine *e, char **err)
{
  pthread_mutex_lock (&e->lock);
  size_t n = e->n_finished;
  uint64_t *ws = malloc ((n ? n : 1) * sizeof *ws);
  if (ws)
    memcpy (ws, e->finished, n * sizeof *ws);
  if (ws)
    e->n_finished = 0;
  pthread_mutex_unlock (&e->lock);
  if (!ws)
    return copy_error (err, "out of memory");
  int r = 0;
  if (n > 0) {
    r = e->dst->ops->flush (e->dst, err);
    if (r == 0)
      r = journal_mark_done (e->journal, ws, n, err);
  }
  free (ws);
  return r;
}

/* Move one run of data or zeroes of a read buffer. */
static int
put_run (struct copy_endpoint *dst, const char *buf, uint64_t off,
         uint64_t len, bool zero, bool dest_zero, struct copy_stats *stats,
         pthread_mutex_t *lock, char **err)
{
  int r = 0;
  if (lock)
    pthread_mutex_lock (lock);
  if (!zero)
    stats->bytes_written += len;
  else if (!dest_zero)
    stats->bytes_zeroed += len;
  else
    stats->bytes_skipped += len;
  if (lock)
    pthread_mutex_unlock (lock);
  if (!zero)
    r = dst->ops->pwrite (dst, buf, len, off, err);
  else if (!dest_zero)
    r = dst->ops->zero (dst, len, off, err);
  return r;
}

int
copy_write_buffer (struct copy_endpoint *dst, const char *buf, uint64_t off,
                   uint64_t len, bool dest_zero, struct copy_stats *stats,
                   pthread_mutex_t *lock, char **err)
{
  uint64_t g = dst->granularity, pos = 0;
  uint64_t run_start = 0;
  int run_zero = -1;
  while (pos < len) {
    uint64_t k = g - (off + pos) % g;
    if (k > len - pos)
      k = len - pos;
    int z = is_zero (buf + pos, k);
    if (run_zero != -1 && z != run_zero) {
      if (put_run (dst, buf + run_start, off + run_start, pos - run_start,
                   run_zero, dest_zero, stats, lock, err)
          == -1)
        return -1;
      run_start = pos;
    }
    run_zero = z;
    pos += k;
  }
  if (len > run_start)
    return put_run (dst, buf + run_start, off + run_start, len - run_start,
                    run_zero, dest_zero, stats, lock, err);
  return 0;
}

void
copy_stats_add (struct copy_stats *sum, const struct copy_stats *s)
{
  sum->bytes_read += s->bytes_read;
  sum->bytes_written += s->bytes_written;
  sum->bytes_zeroed += s->bytes_zeroed;
  sum->bytes_skipped += s->bytes_skipped;
  sum->seconds += s->seconds;
}

/* copy_file_range for a data piece between plain files; returns 1 when it
 * does not apply here (the caller falls back to read and write). */
static int
try_copy_file_range (struct engine *e, const struct piece *pc, char **err)
{
  loff_t in = pc->offset, out = pc->offset;
  uint64_t left = pc->length;
  while (left > 0) {
    ssize_t r = copy_file_range (e->src_fd, &in, e->dst_fd, &out, left, 0);
    if (r == -1
        && (errno == EXDEV || errno == EINVAL || errno == ENOSYS
            || errno == EOPNOTSUPP)
        && left == pc->length) {
      e->use_cfr = false;
      return 1;
    }
    if (r <= 0)
      return copy_error (err, "copy_file_range at %" PRIu64 ": %s",
                         (uint64_t)in,
                         r == 0 ? "short copy" : strerror (errno));
    left -= r;
  }
  pthread_mutex_lock (&e->lock);
  e->stats.bytes_read += pc->length;
  e->stats.bytes_written += pc->length;
  pthread_mutex_unlock (&e->lock);
  return 0;
}

static int
do_piece (struct engine *e, const struct window *w, const struct piece *pc,
          char *buf, char **err)
{
  if (pc->kind == PIECE_ZERO) {
    pthread_mutex_lock (&e->lock);
    e->stats.bytes_zeroed += pc->length;
    pthread_mutex_unlock (&e->lock);
    return e->dst->ops->zero (e->dst, pc->length, pc->offset, err);
  }
  if (e->use_cfr) {
    int r = try_copy_file_range (e, pc, err);
    if (r != 1)
      return r;
  }
  if (e->dst->ops->pull) {
    bool zero;
    if (e->dst->ops->pull (e->dst, e->src, pc->offset, pc->length, &zero, err)
        == -1)
      return -1;
    pthread_mutex_lock (&e->lock);
    e->stats.bytes_read += pc->length;
    if (zero)
      e->stats.bytes_zeroed += pc->length;
    else
      e->stats.bytes_written += pc->length;
    pthread_mutex_unlock (&e->lock);
    return 0;
  }
  if (e->src->ops->pread (e->src, buf, pc->length, pc->offset, err) == -1)
    return -1;
  pthread_mutex_lock (&e->lock);
  e->stats.bytes_read += pc->length;
  pthread_mutex_unlock (&e->lock);
  return copy_write_buffer (e->dst, buf, pc->offset, pc->length, w->dest_zero,
                            &e->stats, &e->lock, err);
}

static void *
worker (void *opaque)
{
  struct engine *e = opaque;
  char *buf = NULL;
  if (posix_memalign ((void **)&buf, 4096, e->request_size) != 0) {
    char *err = NULL;
    copy_error (&err, "out of memory for a %zu byte buffer", e->request_size);
    fail (e, err);
    return NULL;
  }
  struct window *w;
  struct piece pc;
  while (next_piece (e, &w, &pc)) {
    char *err = NULL;
    if (e->journal
        && journal_mark_started (e->journal, w->index, &err) == -1) {
      fail (e, err);
      break;
    }
    if (do_piece (e, w, &pc, buf, &err) == -1) {
      fail (e, err);
      break;
    }
    pthread_mutex_lock (&e->lock);
    w->outstanding--;
    e->done_bytes += pc.length;
    retire_windows (e);
    /* A finished window is journaled at once: one destination flush per
     * window (64 MiB) is cheap, and a kill loses at most what is in
     * flight. */
    bool journal_due = e->journal && e->n_finished > 0;
    /* Without a journal nothing flushes until the end: start each
     * window's writeback as it finishes instead, so the device writes
     * while we copy and the final flush has little left to wait for. */
    bool writeback_due
        = !e->journal && e->writeback_due > 0 && e->dst->ops->writeback;
    e->writeback_due = 0;
    report_progress (e);
    /* No broadcast: a finished piece wakes nobody unless it retired a
     * window, and retire_windows broadcasts that (waking the mapper for
     * every piece cost a stream's single worker its pace). */
    pthread_mutex_unlock (&e->lock);
    if (writeback_due)
      e->dst->ops->writeback (e->dst);
    if (journal_due && sync_journal (e, &err) == -1) {
      fail (e, err);
      break;
    }
  }
  free (buf);
  return NULL;
}

static char *
identity (struct copy_endpoint *src, struct copy_endpoint *dst)
{
  char *s = NULL;
  if (asprintf (&s, "%s -> %s, %" PRIu64 " bytes", src->name, dst->name,
                src->size)
      == -1)
    return NULL;
  return s;
}

int
copy_run (struct copy_endpoint *src, struct copy_endpoint *dst,
          const struct copy_params *params, struct copy_stats *stats,
          char **err)
{
  struct engine e = { .src = src, .dst = dst, .p = params };
  unsigned nthreads = params->requests ? params->requests : 16;
  pthread_t *threads = NULL, map_thread;
  bool resumed = false;
  double t0 = monotonic_seconds ();
  int r = -1;

  if (nthreads > 256)
    nthreads = 256;
  e.request_size = params->request_size ? params->request_size : 1 << 20;
  if (e.request_size > (32 << 20) || e.request_size < 4096
      || e.request_size % 512)
    return copy_error (err,
                       "request size %zu must be a multiple of 512 "
                       "between 4 KiB and 32 MiB",
                       e.request_size);
  e.size = src->size;
  if (dst->size < e.size)
    return copy_error (err,
                       "destination %s (%" PRIu64
                       " bytes) is smaller than the source (%" PRIu64
                       " bytes)",
                       dst->name, dst->size, e.size);
  if (dst->sequential && params->journal)
    return copy_error (err, "%s: a stream cannot resume from a journal",
                       dst->name);
  /* A stream takes its bytes in order: one request at a time, which the
   * single worker takes in offset order, in chunks its reader takes. */
  if (dst->sequential) {
    nthreads = 1;
    if (e.request_size > COPY_STREAM_CHUNK)
      e.request_size = COPY_STREAM_CHUNK;
  }
  e.nwindows = (e.size + COPY_WINDOW - 1) / COPY_WINDOW;
  e.src_fd = src->ops->plain_fd ? src->ops->plain_fd (src) : -1;
  e.dst_fd = dst->ops->plain_fd ? dst->ops->plain_fd (dst) : -1;
  e.use_cfr = e.src_fd >= 0 && e.dst_fd >= 0;
  pthread_mutex_init (&e.lock, NULL);
  pthread_cond_init (&e.cond, NULL);

  if (params->journal) {
    char *id = identity (src, dst);
    if (!id) {
      copy_error (err, "out of memory");
      goto out;
    }
    e.journal = journal_open (params->journal, id, e.nwindows, &resumed, err);
    free (id);
    if (!e.journal)
      goto out;
    /* The killed run may have allocated space in the destination that
     * nothing points at yet (a qcow2 cluster counted before its L2
     * entry was written); the windows it started are copied again and
     * allocate anew, so give that space back first. */
    if (resumed && dst->ops->repair && dst->ops->repair (dst, err) == -1)
      goto out;
  }

  threads = calloc (nthreads, sizeof *threads);
  if (!threads || pthread_create (&map_thread, NULL, mapper, &e) != 0) {
    copy_error (err, "cannot start the copy threads");
    goto out;
  }
  unsigned started = 0;
  for (; started < nthreads; started++)
    if (pthread_create (&threads[started], NULL, worker, &e) != 0)
      break;
  if (started == 0) {
    char *m = NULL;
    copy_error (&m, "cannot start the copy threads");
    fail (&e, m);
  }
  for (unsigned i = 0; i < started; i++)
    pthread_join (threads[i], NULL);
  pthread_join (map_thread, NULL);

  if (!e.failed) {
    char *m = NULL;
    if (dst->ops->flush (dst, &m) == -1
        || (e.journal && sync_journal (&e, &m) == -1))
      fail (&e, m);
  }
  if (e.failed) {
    free (*err);
    *err = e.err;
    e.err = NULL;
  }
  else
    r = 0;

out:
  /* Leftover mapped windows after a failure. */
  for (size_t i = 0; i < e.ring_len; i++)
    window_free (e.ring[(e.ring_head + i) % MAP_AHEAD]);
  journal_close (e.journal, r == 0 && !params->keep_journal);
  free (e.finished);
  free (threads);
  free (e.err);
  pthread_mutex_destroy (&e.lock);
  pthread_cond_destroy (&e.cond);
  e.stats.seconds = monotonic_seconds () - t0;
  if (stats)
    *stats = e.stats;
  return r;
}
