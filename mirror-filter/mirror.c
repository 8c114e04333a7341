/* nbdkit-mirror-filter: a synchronous mirror of a running guest's disk
 * to an NBD target (DESIGN.md §1 mirror-filter, §3 Hazards).
 *
 * Design
 * ------
 * States (reported by `status`):
 *
 *   idle -> syncing -> ready -> completed
 *              \         \---> aborted | failed
 *               \------------> aborted | failed
 *
 * completed, aborted and failed leave the filter passing I/O to the
 * plugin as in idle (except after a pivot), and accept a new `start`.
 *
 * Modes.  Every guest request runs under a read lock of `mode_lock` and
 * looks at `mode` once: LOCAL (pass through: idle, completed-detached,
 * aborted, failed), MIRROR (a target is attached), PIVOTED (all I/O goes
 * to the target).  Changing mode takes the write lock, which drains the
 * requests in flight (a writer-preferring lock, so a busy guest cannot
 * starve it).  This is the quiesce of §3: start drains the pass-through
 * writes before the copier can read anything; complete drains, rechecks,
 * flushes both sides, then detaches or pivots, all while new requests
 * wait.  Idle costs one uncontended read lock per request (and the
 * pause gate's atomic increment, below).
 *
 * The dirty bitmap has one bit per mirror-granularity chunk of the whole
 * disk.  `start` marks every chunk dirty (the target is not known to read
 * as zero); the copier consults the plugin's extents for each run it
 * copies, so zero and hole ranges are never read: they become NBD zero
 * requests, except where the target's own extents say it already reads
 * as zero (asked under the run's range lock, so no mirrored write can
 * change that before the run is done).
 *
 * Range locks.  A `busy` bit per chunk, taken all-or-nothing under one
 * mutex.  A mirrored guest request takes the busy bits of every chunk it
 * touches; the copier takes the bits of the run it copies.  Each waits
 * while any of its chunks is busy.  The copier clears a chunk's dirty bit
 * *before* reading it, under the busy bit, so the stale-copy race cannot
 * happen: a guest write to that chunk waits until the copy has reached
 * the target, then lands on both sides after it.
 *
 * Write path (MIRROR).  Lock the range; copy the guest's buffer (the
 * target request may outlive the guest request after a timeout); start
 * the target command (libnbd aio, target.c); do the local command
 * (next->pwrite / zero); wait for the target with a deadline of
 * mirror-timeout seconds.  Latency is max(local, remote).  Then:
 *   - both succeeded: the chunks the request covers *entirely* are now
 *     the same on both sides and become clean; an unaligned head or tail
 *     chunk keeps its dirty bit (the copier still owes it).
 *   - the local side failed: the guest gets the error, and every chunk
 *     touched becomes dirty (the target may hold what the local disk
 *     does not).
 *   - the target failed or timed out: state failed (with the reason)
 *     *before* the guest is answered, the target is killed (every waiter
 *     released at once), and the guest's write succeeds if the local one
 *     did.  No write is ever acknowledged as mirrored while the state says
 *     syncing/ready unless the target acknowledged it.
 * Trim (MIRROR): the local trim, then the touched chunks are copied again
 * from the local disk under their locks (TRIM is not zero: the target
 * must read what the local disk now reads).  Flush flushes both sides in
 * parallel.
 *
 * The copier is COPIERS threads sharing one backend context, opened
 * shared in .after_fork, so they never borrow a client connection.  Each
 * takes the next run of consecutive dirty chunks (at most COPY_RUN bytes)
 * under the lock, asks the plugin's extents, and writes data / zero
 * requests to the target, so COPIERS runs are in flight at once (one at a
 * time made every megabyte wait a full round trip to the target).  The
 * state is ready when nothing is dirty *and* no run is in flight (a run's
 * chunks are clean from the moment it is taken); then they sleep.  The
 * bitmap stays empty because every guest write is synchronous, whatever
 * the write rate.
 *
 * Sync modes (start's sync=, QEMU drive-mirror's names).  full: as
 * above.  none: the target already reads what the disk reads; nothing
 * is dirty at start, the state is ready at once, and only the guest's
 * requests are mirrored.  top: the target is a new leaf over copies of
 * the disk's lower layers, so only what the disk's top layer holds is
 * owed.  Every chunk starts dirty as in full, but the copier asks a
 * second backend context, `layer`, for the map: nbdkit-vdi-plugin's
 * view of the top layer alone (its export LAYER_EXPORT, read-only).
 * Where that map says HOLE (the top layer does not hold the range: the
 * parent's data, the same on both sides) the run is skipped, neither
 * read nor zeroed; ZERO (a zero cluster hiding the parent) is zeroed on
 * the target as in full; data is read from `bg` (the whole disk) and
 * written.  Why no guest write is lost:
 *   - a block first written before start: start drains the pass-through
 *     writes (write lock) before any chunk is taken, and the copier asks
 *     the layer map only once it holds the run's range lock, so the
 *     write has landed and allocated its cluster in the top layer: the
 *     map says DATA and the chunk is copied.
 *   - a block first written after start: the write is mirrored, so the
 *     target gets it whatever the map says.  A partial write leaves its
 *     chunk dirty; by the time the copier locks that chunk the local
 *     write is in the top layer (a qcow2 cluster holding the parent's
 *     bytes around it, or a VHD block whose bitmap marks just the
 *     sectors written), so the map says DATA for what the layer now
 *     holds and that is copied; the rest is still the parent's, the
 *     same on both sides.  A write waiting on the range lock lands on
 *     both sides after the copy.
 *   - the layer map is asked under the range lock, so no request of the
 *     guest can change that range's allocation between the answer and
 *     the copy; the lower layers are frozen (snapshots), so a HOLE reads
 *     the same on the target's copies for as long as the mirror runs.
 *
 * Pause.  `pause` closes a gate (gate_lock + gate_cond) that every guest
 * request passes before mode_lock: new requests wait there (they do not
 * fail), the command waits until the requests in flight have left,
 * flushes the disk and answers (the gate's atomics: see gate_lock).  The owner then changes the images
 * underneath (a live snapshot renames the image the plugin holds open
 * into the snapshot and creates a new leaf, served by a second nbdkit),
 * and `resume target=URI pivot=true` connects that leaf and makes it
 * the disk (mode PIVOTED) before opening the gate; plain `resume` opens
 * it on the disk as it was.  Resume with a target that cannot be
 * connected leaves the gate closed: the owner undoes and resumes.  A
 * gate closed longer than mirror-pause-timeout opens by itself (whoever
 * looks first: a waiting request, status, the control thread's loop),
 * logged, so a dead owner cannot hang the guest; a later resume is then
 * refused, and the writes since went to the disk as it was (the owner's
 * undo of a snapshot puts that image back).  Not the rwlock held across
 * commands: a command answers, and the lock is the control thread's.
 * Pause is refused while a mirror runs (its copier does not pass the
 * gate); it is allowed after a pivot (a second live snapshot), when the
 * flush and the next pivot concern the target.
 * Changed-block tracking (cbt-log=PATH, cbt-log.h).  Every guest write,
 * zero and trim marks its 64 KiB blocks in the VDI's log first, in every
 * mode, once past the pause gate (so a live snapshot's pause sees every
 * mark of the writes before it, and none of those after), and only then
 * goes to the disk: a write the guest hears of is
 * always in the log, even if nbdkit is killed right after.  A mark that
 * fails fails the request with EIO, untouched.  The log is opened as its
 * writer in .after_fork (its consistent flag cleared and fsynced; a log
 * a dead writer left is reset there, with its reason) and closed cleanly
 * in .cleanup, nbdkit's clean stop (the flag set and fsynced).  A log
 * that is not there yet (CBT off) is looked for before each request, so
 * that VDI.enable_cbt on a served disk tracks every request that starts
 * after it (one access(2) per request while CBT is off); disabling it
 * while served leaves the file to us, flagged (cbt_log_disable), so the
 * filter never needs to let go of it.  After a
 * pivot the filter keeps marking the same file: a live snapshot keeps
 * the VDI, and a live move renames the log to the new VDI (vdi-jobs.c).
 *
 * A failed target is detached by the control thread (mirror_reap), which
 * also answers the control socket (control.c).  The target connection is
 * target.c: libnbd aio with deadlines, see target.h for why not the copy
 * engine's NBD endpoint.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "cbt-log.h"
#include "clock.h"
#include "chunks.h"
#include "copy.h"
#include "json.h"
#include "mirror.h"
#include "target.h"

#define COPY_RUN (1u << 20)
#define WRITEBACK_EVERY (UINT64_C (64) << 20)
#define COPIERS 8
#define ZERO_RUN (UINT64_C (1) << 30)
#define LAT_BUCKETS 1024
/* nbdkit-vdi-plugin's view of the top layer alone, and how the plugin
 * describes it (nbdkit-vdi-plugin(1)): the description is what tells
 * us a plugin gave the view and not the whole disk's map. */
#define LAYER_EXPORT "vdi:top-layer"
#define LAYER_DESCRIPTION "top layer of "

enum mode
{
  MODE_LOCAL,
  MODE_MIRROR,
  MODE_PIVOTED,
};

/* Parameters. */
static char *control_path;
static uint64_t granularity = 65536;
static unsigned timeout_s = 30;
static unsigned pause_timeout_s = 60;
static char *cbt_path; /* cbt-log= */

/* The changed-block log, open from .after_fork (or from the first
 * request after it appeared: CBT enabled while the disk is served) to
 * .cleanup; NULL while there is none.  Set once, under cbt_open_lock;
 * cbt_log_mark is thread-safe. */
static struct cbt_log *_Atomic cbt;
static pthread_mutex_t cbt_open_lock = PTHREAD_MUTEX_INITIALIZER;

/* Set in .after_fork. */
static nbdkit_backend *plugin_backend; /* what we filter: for `layer` */
static nbdkit_next *bg;    /* the copier's own context */
static nbdkit_next *layer; /* sync=top's map, opened at its first start */
static uint64_t disk_size, nchunks;

static pthread_rwlock_t mode_lock;
static enum mode mode = MODE_LOCAL; /* written under the write lock */

/* The mirror: everything below is under `lock`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct chunks chunks; /* dirty bits and range locks (chunks.h) */
static pthread_cond_t copier_cond = PTHREAD_COND_INITIALIZER;
static enum mirror_state state = MIRROR_IDLE;
static char *error_msg;
static struct target *target;
static uint64_t cursor; /* where the copier looks next */
static bool copier_stop, pivoted;
static enum mirror_sync sync_mode;
static unsigned copiers_running; /* threads in copiers[] to join */
static unsigned runs_in_flight;  /* runs taken and not yet written */
static pthread_t copiers[COPIERS];
/* The copier's early target flush: at most one in flight, started every
 * WRITEBACK_EVERY bytes copied, so the target writes back while the sync
 * goes on and complete's flush finds little left (the copy engine's
 * writeback, copy.c).  Under `lock`. */
static struct treq *wb_req;
static struct target *wb_target;
static uint64_t wb_bytes;

/* Statistics (atomics, read without the lock). */
static atomic_uint_fast64_t writes_mirrored, bytes_copied, bytes_zeroed,
    bytes_skipped, bytes_backing;

/* The pause gate: every guest request passes it (io_begin) before
 * mode_lock.  An open gate costs a request one atomic increment and one
 * load: a request counts itself in gate_inflight, then looks at
 * gate_closed; pause sets gate_closed, then waits for gate_inflight to
 * drop to 0 (both sequentially consistent, so one of the two always sees
 * the other).  gate_closed and the rest are written under gate_lock. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static atomic_bool gate_closed;
static atomic_uint gate_inflight; /* requests past the gate */
static bool pause_expired;        /* the last pause opened by itself */
static uint64_t gate_deadline;    /* monotonic_ns when a pause expires */
static atomic_uint_fast64_t lat_sum_ns, lat_count;
static atomic_uint_fast64_t lat_hist[LAT_BUCKETS];

static int
timeout_ms (void)
{
  return (int)timeout_s * 1000;
}

/* ---- latency histogram: log-linear, 16 steps per power of two ---- */

static unsigned
lat_bucket (uint64_t us)
{
  if (us < 32)
    return us;
  unsigned msb = 63 - __builtin_clzll (us);
  unsigned i = 32 + (msb - 5) * 16 + ((us >> (msb - 4)) & 15);
  return i < LAT_BUCKETS ? i : LAT_BUCKETS - 1;
}

/* The upper edge of bucket I, in microseconds. */
static double
lat_value (unsigned i)
{
  if (i < 32)
    return i + 1;
  unsigned k = i - 32, msb = 5 + k / 16, sub = k % 16;
  return (double)((uint64_t)(17 + sub) << (msb - 4));
}

static void
lat_record (uint64_t ns)
{
  atomic_fetch_add (&lat_sum_ns, ns);
  atomic_fetch_add (&lat_count, 1);
  atomic_fetch_add (&lat_hist[lat_bucket (ns / 1000)], 1);
}

static double
lat_percentile (double p)
{
  uint64_t n = atomic_load (&lat_count);
  if (n == 0)
    return 0;
  uint64_t want = (uint64_t)(p * n + 0.999999), seen = 0;
  for (unsigned i = 0; i < LAT_BUCKETS; i++) {
    seen += atomic_load (&lat_hist[i]);
    if (seen >= want)
      return lat_value (i);
  }
  return lat_value (LAT_BUCKETS - 1);
}

static void
stats_reset (void)
{
  atomic_store (&writes_mirrored, 0);
  atomic_store (&bytes_copied, 0);
  atomic_store (&bytes_zeroed, 0);
  atomic_store (&bytes_skipped, 0);
  atomic_store (&bytes_backing, 0);
  atomic_store (&lat_sum_ns, 0);
  atomic_store (&lat_count, 0);
  for (unsigned i = 0; i < LAT_BUCKETS; i++)
    atomic_store (&lat_hist[i], 0);
}

/* ---- the pause gate ---- */

/* Open the gate and wake everyone.  Caller holds gate_lock. */
static void
gate_open_locked (void)
{
  gate_closed = false;
  pthread_cond_broadcast (&gate_cond);
}

/* A pause held past its deadline opens by itself.  Caller holds
 * gate_lock.  Returns whether the gate is open. */
static bool
gate_expire_locked (void)
{
  if (gate_closed && monotonic_ns () >= gate_deadline) {
    nbdkit_error ("mirror: paused for more than %u s without resume: "
                  "guest I/O goes on on the disk as it was",
                  pause_timeout_s);
    pause_expired = true;
    gate_open_locked ();
  }
  return !gate_closed;
}

/* Wait on gate_cond until the pause deadline at most. */
static void
gate_wait_locked (void)
{
  struct timespec ts;
  uint64_t now = monotonic_ns ();
  uint64_t left = gate_deadline > now ? gate_deadline - now : 0;

  clock_gettime (CLOCK_REALTIME, &ts);
  left += ts.tv_nsec + 1000000; /* a millisecond late rather than early */
  ts.tv_sec += left / 1000000000;
  ts.tv_nsec = left % 1000000000;
  pthread_cond_timedwait (&gate_cond, &gate_lock, &ts);
}

/* A request leaves the gate: the last one out wakes a draining pause. */
static void
gate_leave (void)
{
  unsigned was = atomic_fetch_sub (&gate_inflight, 1);

  assert (was > 0);
  if (was == 1 && atomic_load (&gate_closed)) {
    pthread_mutex_lock (&gate_lock);
    pthread_cond_broadcast (&gate_cond);
    pthread_mutex_unlock (&gate_lock);
  }
}

/* Every guest request: wait while paused, then take mode_lock. */
static void
io_begin (void)
{
  for (;;) {
    atomic_fetch_add (&gate_inflight, 1);
    if (!atomic_load (&gate_closed))
      break;
    gate_leave ();
    pthread_mutex_lock (&gate_lock);
    while (!gate_expire_locked ())
      gate_wait_locked ();
    pthread_mutex_unlock (&gate_lock);
  }
  pthread_rwlock_rdlock (&mode_lock);
}

static void
io_end (void)
{
  pthread_rwlock_unlock (&mode_lock);
  gate_leave ();
}

static bool
paused (void)
{
  pthread_mutex_lock (&gate_lock);
  bool p = !gate_expire_locked ();
  pthread_mutex_unlock (&gate_lock);
  return p;
}

/* ---- the dirty map ---- */

/* Caller holds lock. */
static void
mark_dirty (uint64_t c0, uint64_t c1)
{
  chunks_mark_dirty (&chunks, c0, c1);
  if (chunks.dirty_count && state == MIRROR_READY)
    state = MIRROR_SYNCING;
  pthread_cond_signal (&copier_cond);
}

static bool
attached_locked (void)
{
  return state == MIRROR_SYNCING || state == MIRROR_READY;
}

/* The target failed: say so before anyone is answered, release every
 * waiter.  The control thread detaches it (mirror_reap).  Takes WHY. */
static void
fail_locked (char *why)
{
  if (!attached_locked ()) {
    free (why);
    return;
  }
  nbdkit_error ("mirror: failed: %s", why ? why : "unknown error");
  free (error_msg);
  error_msg = why;
  state = MIRROR_FAILED;
  if (target)
    target_kill (target);
  copier_stop = true;
  pthread_cond_broadcast (&copier_cond);
  pthread_cond_broadcast (&chunks.freed);
}

static void
mirror_fail (char *why)
{
  pthread_mutex_lock (&lock);
  fail_locked (why);
  pthread_mutex_unlock (&lock);
}

/* ---- range locks ---- */

/* Lock chunks C0..C1 for a guest request; returns a reference to the
 * target if the request must be mirrored (NULL once the mirror failed or
 * was aborted). */
static struct target *
lock_range (uint64_t c0, uint64_t c1)
{
  pthread_mutex_lock (&lock);
  chunks_lock (&chunks, c0, c1);
  struct target *t = attached_locked () ? target : NULL;
  if (t)
    target_ref (t);
  pthread_mutex_unlock (&lock);
  return t;
}

enum after
{
  KEEP,        /* bitmap unchanged */
  CLEAN_WHOLE, /* chunks entirely inside [offset, offset+count) are clean */
  CLEAN_ALL,   /* every chunk C0..C1 is clean (they were re-copied) */
  DIRTY_ALL,   /* every chunk C0..C1 is dirty */
};

static void
unlock_range (uint64_t c0, uint64_t c1, uint64_t offset, uint64_t count,
              enum after what)
{
  pthread_mutex_lock (&lock);
  if (attached_locked ())
    switch (what) {
    case KEEP: break;
    case CLEAN_WHOLE: {
      uint64_t first = (offset + granularity - 1) / granularity;
      uint64_t end = offset + count;
      uint64_t last_end = end == disk_size ? nchunks : end / granularity;
      if (first < last_end)
        chunks_mark_clean (&chunks, first, last_end - 1);
      break;
    }
    case CLEAN_ALL: chunks_mark_clean (&chunks, c0, c1); break;
    case DIRTY_ALL: mark_dirty (c0, c1); break;
    }
  chunks_unlock (&chunks, c0, c1);
  pthread_mutex_unlock (&lock);
}

/* ---- copying chunks from the local disk to the target ---- */

/* Whether a range of this extent type needs no read: it reads as zero,
 * or (in the top layer's map) the layer does not hold it. */
static bool
no_data (uint32_t type, bool layer_map)
{
  return (type & NBDKIT_EXTENT_ZERO)
         || (layer_map && (type & NBDKIT_EXTENT_HOLE));
}

/* Make [start, end) of the target read what NEXT reads: MAP's extents
 * first (NEXT's own, or the top layer's: then its holes are skipped,
 * the lower layers hold them on both sides), zero requests for zero
 * ranges, reads from NEXT and writes for the rest.  BUF holds COPY_RUN
 * bytes.  The caller holds the range lock. */
static int
sync_span_map (nbdkit_next *next, nbdkit_next *map, struct target *t,
               uint64_t start, uint64_t end, char *buf, char **why)
{
  uint64_t pos = start;
  int e = 0;
  while (pos < end) {
    struct nbdkit_extents *ex = nbdkit_extents_new (pos, end);
    if (!ex) {
      *why = strdup ("mirror: out of memory");
      return -1;
    }
    uint64_t ask = end - pos > (1u << 30) ? (1u << 30) : end - pos;
    if (map->extents (map, ask, pos, 0, ex, &e) == -1) {
      nbdkit_extents_free (ex);
      if (asprintf (why, "local disk: map at %" PRIu64 ": %s", pos,
                    strerror (e))
          == -1)
        *why = NULL;
      return -1;
    }
    uint64_t before = pos;
    for (size_t i = 0; i < nbdkit_extents_count (ex) && pos < end; i++) {
      struct nbdkit_extent x = nbdkit_get_extent (ex, i);
      uint64_t xend = x.offset + x.length < end ? x.offset + x.length : end;
      if (x.offset > pos || xend <= pos)
        continue;
      if (map != next && (x.type & NBDKIT_EXTENT_HOLE)) {
        atomic_fetch_add (&bytes_backing, xend - pos);
        pos = xend;
      }
      else if (x.type & NBDKIT_EXTENT_ZERO) {
        while (pos < xend) {
          uint32_t n = xend - pos > (1u << 30) ? (1u << 30) : xend - pos;
          /* What the target already reads as zero needs no request (a
           * fresh destination is mostly that).  Nothing else writes
           * these chunks while we hold their lock, so the answer holds
           * until we let go. */
          uint64_t known;
          if (target_zero_prefix (t, pos, n, timeout_ms (), &known, why) == -1)
            goto fail;
          if (known > 0) {
            atomic_fetch_add (&bytes_skipped, known);
            pos += known;
            continue;
          }
          if (target_sync (t, TREQ_ZERO, NULL, n, pos, false, timeout_ms (),
                           why)
              == -1)
            goto fail;
          atomic_fetch_add (&bytes_zeroed, n);
          pos += n;
        }
      }
      else {
        while (pos < xend) {
          uint32_t n = xend - pos > COPY_RUN ? COPY_RUN : xend - pos;
          if (next->pread (next, buf, n, pos, 0, &e) == -1) {
            if (asprintf (why,
                          "local disk: read of %" PRIu32 " bytes at %" PRIu64
                          ": %s",
                          n, pos, strerror (e))
                == -1)
              *why = NULL;
            goto fail;
          }
          if (target_sync (t, TREQ_WRITE, buf, n, pos, false, timeout_ms (),
                           why)
              == -1)
            goto fail;
          atomic_fetch_add (&bytes_copied, n);
          pos += n;
        }
      }
    }
    nbdkit_extents_free (ex);
    if (pos == before) {
      if (asprintf (why, "local disk: map at %" PRIu64 " described nothing",
                    pos)
          == -1)
        *why = NULL;
      return -1;
    }
    continue;
  fail:
    nbdkit_extents_free (ex);
    return -1;
  }
  return 0;
}

static int
sync_span (nbdkit_next *next, struct target *t, uint64_t start, uint64_t end,
           char *buf, char **why)
{
  return sync_span_map (next, next, t, start, end, buf, why);
}

/* The context whose map the copier follows.  Caller holds lock. */
static nbdkit_next *
copy_map_locked (void)
{
  return sync_mode == MIRROR_SYNC_TOP ? layer : bg;
}

static uint64_t
chunk_end (uint64_t c)
{
  uint64_t e = (c + 1) * granularity;
  return e < disk_size ? e : disk_size;
}

/* How many chunks from C on the plugin says read as zero, or with
 * sync=top are not the top layer's (0 if C's extent is data), looking at
 * most ZERO_RUN bytes ahead.  Called with the
 * lock held; drops it while asking. */
static uint64_t
zero_chunks_hint (uint64_t c)
{
  uint64_t start = c * granularity;
  uint64_t zero_end = start;
  int e = 0;
  nbdkit_next *map = copy_map_locked ();

  pthread_mutex_unlock (&lock);
  /* Ask about one run first: on a disk full of data, mapping ZERO_RUN
   * ahead for every megabyte copied made the sync quadratic in the
   * extents.  Only a zero range that fills the whole run is worth the
   * longer look. */
  for (uint64_t ask = COPY_RUN;; ask = ZERO_RUN) {
    uint64_t end = start + ask < disk_size ? start + ask : disk_size;
    struct nbdkit_extents *ex = nbdkit_extents_new (start, end);

    zero_end = start;
    if (ex && map->extents (map, end - start, start, 0, ex, &e) == 0) {
      for (size_t i = 0; i < nbdkit_extents_count (ex); i++) {
        struct nbdkit_extent x = nbdkit_get_extent (ex, i);

        if (x.offset != zero_end || !no_data (x.type, map != bg))
          break;
        zero_end = x.offset + x.length < end ? x.offset + x.length : end;
      }
    }
    if (ex)
      nbdkit_extents_free (ex);
    if (ask == ZERO_RUN || zero_end < end || end == disk_size)
      break;
  }
  pthread_mutex_lock (&lock);
  /* Whole chunks only (the last chunk of the disk may be short). */
  return zero_end == disk_size ? nchunks - c
                               : (zero_end - start) / granularity;
}

/* Finish the previous early flush and start the next on T.  Called with
 * the lock held; drops it meanwhile.  Returns false (the mirror failed)
 * if the previous flush did. */
static bool
writeback_locked (struct target *t)
{
  struct treq *prev = wb_req;
  struct target *prev_t = wb_target;
  char *why = NULL;
  int r = 0;

  wb_req = NULL;
  wb_bytes = 0;
  pthread_mutex_unlock (&lock);
  if (prev)
    r = target_finish (prev_t, prev, NULL, timeout_ms (), &why);
  struct treq *next
      = r == 0 ? target_start (t, TREQ_FLUSH, NULL, 0, 0, false) : NULL;
  pthread_mutex_lock (&lock);
  if (r == -1) {
    fail_locked (why ? why : strdup ("flush failed"));
    return false;
  }
  if (wb_req) {
    /* Another copier started one meanwhile: one is enough. */
    pthread_mutex_unlock (&lock);
    target_finish (t, next, NULL, timeout_ms (), &why);
    free (why);
    pthread_mutex_lock (&lock);
    return true;
  }
  wb_req = next;
  wb_target = t;
  return true;
}

/* Wait for the early flush, if one is in flight (its outcome is for
 * complete's own flush to find out).  Caller does not hold lock. */
static void
writeback_drain (void)
{
  pthread_mutex_lock (&lock);
  struct treq *r = wb_req;
  struct target *t = wb_target;
  wb_req = NULL;
  wb_bytes = 0;
  pthread_mutex_unlock (&lock);
  if (r) {
    char *why = NULL;
    target_finish (t, r, NULL, timeout_ms (), &why);
    free (why);
  }
}

static void *
copier_main (void *arg)
{
  char *buf = malloc (COPY_RUN);
  uint64_t run_chunks = COPY_RUN / granularity ? COPY_RUN / granularity : 1;
  pthread_mutex_lock (&lock);
  if (!buf)
    fail_locked (strdup ("mirror: out of memory"));
  for (;;) {
    if (copier_stop || !attached_locked ())
      break;
    if (chunks.dirty_count == 0) {
      if (runs_in_flight == 0)
        state = MIRROR_READY;
      pthread_cond_wait (&copier_cond, &lock);
      continue;
    }
    /* A chunk a guest write holds will not stay dirty unless its local
     * write fails: take a free one; if every dirty chunk is busy, wait
     * for one to be released. */
    uint64_t c = chunks_next_dirty (&chunks, cursor, true);
    if (c == nchunks) {
      chunks_wait_freed (&chunks);
      continue;
    }
    /* A run is at most COPY_RUN bytes of data, but a zero or hole range
     * needs no buffer: ask the extents (without the lock: only a hint,
     * sync_span asks again once the chunks are ours) and take the whole
     * zero range at once, up to ZERO_RUN, so a mostly empty disk is not
     * sent as thousands of small zero requests. */
    uint64_t limit = run_chunks;
    uint64_t hint = zero_chunks_hint (c);
    if (!chunks_is_dirty (&chunks, c) || chunks_is_busy (&chunks, c))
      continue; /* another copier or a guest write took it meanwhile */
    if (hint > limit)
      limit = hint;
    uint64_t n = chunks_take_run (&chunks, c, limit);
    runs_in_flight++;
    if (chunks.dirty_count)
      pthread_cond_signal (&copier_cond); /* more for another copier */
    struct target *t = target;
    nbdkit_next *map = copy_map_locked ();
    target_ref (t);
    pthread_mutex_unlock (&lock);

    char *why = NULL;
    int r = sync_span_map (bg, map, t, c * granularity, chunk_end (c + n - 1),
                           buf, &why);
    target_unref (t);

    pthread_mutex_lock (&lock);
    runs_in_flight--;
    chunks_unlock (&chunks, c, c + n - 1);
    if (runs_in_flight == 0 && chunks.dirty_count == 0)
      pthread_cond_broadcast (&copier_cond); /* someone declares ready */
    if (r == -1) {
      mark_dirty (c, c + n - 1);
      fail_locked (why ? why : strdup ("copy failed"));
      break;
    }
    cursor = c + n < nchunks ? c + n : 0;
    wb_bytes += n * granularity;
    if (wb_bytes >= WRITEBACK_EVERY && attached_locked () && target
        && !writeback_locked (target))
      break;
  }
  pthread_mutex_unlock (&lock);
  free (buf);
  return NULL;
}

/* Stop and join the copier.  Caller does not hold lock. */
static void
copier_join (void)
{
  pthread_mutex_lock (&lock);
  unsigned running = copiers_running;
  copier_stop = true;
  pthread_cond_broadcast (&copier_cond);
  pthread_cond_broadcast (&chunks.freed);
  pthread_mutex_unlock (&lock);
  for (unsigned i = 0; i < running; i++)
    pthread_join (copiers[i], NULL);
  writeback_drain ();
  pthread_mutex_lock (&lock);
  copiers_running = 0;
  pthread_mutex_unlock (&lock);
}

/* ---- control commands (called from the control thread only) ---- */

static char *
reply_ok (const char *extra)
{
  char *out = NULL;
  pthread_mutex_lock (&lock);
  const char *st = mirror_state_name (state);
  pthread_mutex_unlock (&lock);
  if (asprintf (&out, "{\"ok\":true,\"state\":\"%s\"%s}", st, extra) == -1)
    return NULL;
  return out;
}

void
mirror_reap (void)
{
  paused (); /* an expired pause opens here if no one else looks */
  pthread_mutex_lock (&lock);
  bool dead = state == MIRROR_FAILED && target && !pivoted;
  pthread_mutex_unlock (&lock);
  if (!dead)
    return;
  copier_join ();
  pthread_rwlock_wrlock (&mode_lock);
  pthread_mutex_lock (&lock);
  struct target *t = target;
  target = NULL;
  mode = MODE_LOCAL;
  pthread_mutex_unlock (&lock);
  pthread_rwlock_unlock (&mode_lock);
  if (t)
    target_unref (t);
}

/* sync=top's context: the plugin's map of the top layer alone.  Opened
 * once, kept until cleanup.  NULL with *WHY (malloc'd) if the plugin
 * gives no such view. */
static nbdkit_next *
open_layer (char **why)
{
  const char *desc;

  if (layer)
    return layer;
  layer = nbdkit_next_context_open (plugin_backend, 1, LAYER_EXPORT, 1);
  if (layer && layer->prepare (layer) == -1) {
    nbdkit_next_context_close (layer);
    layer = NULL;
  }
  if (!layer) {
    *why = strdup ("cannot open a context for the top layer's map");
    return NULL;
  }
  desc = layer->export_description (layer);
  if (!desc || strncmp (desc, LAYER_DESCRIPTION, strlen (LAYER_DESCRIPTION))
      || layer->can_extents (layer) != 1
      || layer->get_size (layer) != (int64_t)disk_size) {
    *why = strdup ("the plugin does not map the top layer alone "
                   "(nbdkit-vdi-plugin does)");
    layer->finalize (layer);
    nbdkit_next_context_close (layer);
    layer = NULL;
    return NULL;
  }
  nbdkit_debug ("mirror: sync=top follows %s", desc);
  return layer;
}

char *
mirror_cmd_start (const char *uri, const char *psk_file,
                  enum mirror_sync sync)
{
  mirror_reap ();
  if (paused ())
    return mirror_reply_error ("start: the filter is paused (resume first)");
  pthread_mutex_lock (&lock);
  bool busy_now = attached_locked (), piv = pivoted;
  pthread_mutex_unlock (&lock);
  if (piv)
    return mirror_reply_error ("start: the disk was pivoted to its target");
  if (busy_now)
    return mirror_reply_error ("start: a mirror is already running");
  if (!bg)
    return mirror_reply_error ("start: the filter has no backend context");
  if (!copy_is_nbd_uri (uri))
    return mirror_reply_error ("start: \"%s\" is not an NBD URI "
                               "(nbd://, nbds://, nbd+unix://)",
                               uri);

  char *err = NULL;
  if (sync == MIRROR_SYNC_TOP && !open_layer (&err)) {
    char *r = mirror_reply_error ("start: sync=top: %s", err);
    free (err);
    return r;
  }
  struct target *t = target_open (uri, psk_file, timeout_ms (), &err);
  if (!t) {
    char *r = mirror_reply_error ("start: %s", err ? err : "cannot connect");
    free (err);
    return r;
  }
  if (target_size (t) < disk_size) {
    char *r = mirror_reply_error ("start: %s: the target (%" PRIu64
                                  " bytes) is smaller than the "
                                  "disk (%" PRIu64 " bytes)",
                                  uri, target_size (t), disk_size);
    target_unref (t);
    return r;
  }

  /* Drain the pass-through writes: from here on every write is mirrored,
   * and the copier reads only after all earlier writes landed. */
  pthread_rwlock_wrlock (&mode_lock);
  pthread_mutex_lock (&lock);
  sync_mode = sync;
  if (sync != MIRROR_SYNC_NONE)
    chunks_mark_all_dirty (&chunks);
  else if (nchunks) /* what an earlier, aborted mirror left is not owed */
    chunks_mark_clean (&chunks, 0, nchunks - 1);
  cursor = 0;
  target = t;
  state = chunks.dirty_count ? MIRROR_SYNCING : MIRROR_READY;
  free (error_msg);
  error_msg = NULL;
  stats_reset ();
  copier_stop = false;
  runs_in_flight = 0;
  int e = 0;
  while (copiers_running < COPIERS
         && (e = pthread_create (&copiers[copiers_running], NULL, copier_main,
                                 NULL))
                == 0)
    copiers_running++;
  if (copiers_running)
    e = 0; /* fewer copiers is slower, not wrong */
  if (e) {
    target = NULL;
    state = MIRROR_IDLE;
  }
  else
    mode = MODE_MIRROR;
  pthread_mutex_unlock (&lock);
  pthread_rwlock_unlock (&mode_lock);
  if (e) {
    target_unref (t);
    return mirror_reply_error ("start: cannot start a thread: %s",
                               strerror (e));
  }
  nbdkit_debug ("mirror: started to %s (sync=%s)", uri,
                mirror_sync_name (sync));
  return reply_ok ("");
}

char *
mirror_cmd_status (void)
{
  char *out = NULL;
  size_t len;
  FILE *f = open_memstream (&out, &len);
  if (!f)
    return NULL;
  pthread_mutex_lock (&lock);
  enum mirror_sync sync_now = sync_mode;
  uint64_t dirty_bytes = chunks.dirty_count * granularity;
  if (chunks.dirty_count && chunks_is_dirty (&chunks, nchunks - 1))
    dirty_bytes -= nchunks * granularity - disk_size;
  if (dirty_bytes > disk_size)
    dirty_bytes = disk_size;
  uint64_t total = disk_size;
  if (state == MIRROR_IDLE)
    dirty_bytes = 0;
  fprintf (f, "{\"ok\":true,\"state\":\"%s\",\"target\":",
           mirror_state_name (state));
  json_write_string (f, target ? target_uri (target) : NULL);
  fprintf (f,
           ",\"pivoted\":%s,\"bytes_total\":%" PRIu64
           ",\"bytes_done\":%" PRIu64 ",\"dirty_bytes\":%" PRIu64,
           pivoted ? "true" : "false", total,
           state == MIRROR_IDLE ? 0 : total - dirty_bytes, dirty_bytes);
  fputs (",\"error\":", f);
  json_write_string (f, error_msg);
  pthread_mutex_unlock (&lock);
  uint64_t n = atomic_load (&lat_count);
  fprintf (f,
           ",\"bytes_copied\":%" PRIu64 ",\"bytes_zeroed\":%" PRIu64
           ",\"bytes_skipped\":%" PRIu64 ",\"writes_mirrored\":%" PRIu64
           ",\"write_latency_mean_us\":%.1f"
           ",\"write_latency_p99_us\":%.1f"
           ",\"granularity\":%" PRIu64 ",\"timeout\":%u"
           ",\"sync\":\"%s\",\"paused\":%s,\"bytes_backing\":%" PRIu64 "}",
           (uint64_t)atomic_load (&bytes_copied),
           (uint64_t)atomic_load (&bytes_zeroed),
           (uint64_t)atomic_load (&bytes_skipped),
           (uint64_t)atomic_load (&writes_mirrored),
           n ? atomic_load (&lat_sum_ns) / 1000.0 / n : 0.0,
           lat_percentile (0.99), granularity, timeout_s,
           mirror_sync_name (sync_now), paused () ? "true" : "false",
           (uint64_t)atomic_load (&bytes_backing));
  fclose (f);
  return out;
}

char *
mirror_cmd_complete (bool pivot)
{
  mirror_reap ();
  if (paused ())
    return mirror_reply_error ("complete: the filter is paused "
                               "(resume first)");
  pthread_mutex_lock (&lock);
  enum mirror_state st = state;
  uint64_t d = chunks.dirty_count;
  pthread_mutex_unlock (&lock);
  if (st != MIRROR_READY)
    return mirror_reply_error (
        "complete: the mirror is %s, not ready%s", mirror_state_name (st),
        st == MIRROR_SYNCING && d ? " (still copying)" : "");

  /* Quiesce: no guest request in flight, none starts. */
  pthread_rwlock_wrlock (&mode_lock);
  pthread_mutex_lock (&lock);
  if (state != MIRROR_READY || chunks.dirty_count) {
    st = state;
    pthread_mutex_unlock (&lock);
    pthread_rwlock_unlock (&mode_lock);
    return mirror_reply_error ("complete: the mirror is %s, not ready",
                               mirror_state_name (st));
  }
  struct target *t = target;
  pthread_mutex_unlock (&lock);
  copier_join ();

  /* Flush both sides, in parallel. */
  char *why = NULL;
  int e = 0;
  struct treq *rq = target_start (t, TREQ_FLUSH, NULL, 0, 0, false);
  int lr = bg->flush (bg, 0, &e);
  int tr = target_finish (t, rq, NULL, timeout_ms (), &why);
  if (lr == -1 || tr == -1) {
    char *msg = NULL;
    if (tr == -1)
      msg = why;
    else if (asprintf (&msg, "local disk: flush: %s", strerror (e)) == -1)
      msg = NULL;
    char *r = mirror_reply_error ("complete: %s", msg ? msg : "flush failed");
    mirror_fail (msg);
    pthread_rwlock_unlock (&mode_lock);
    mirror_reap ();
    return r;
  }

  pthread_mutex_lock (&lock);
  state = MIRROR_COMPLETED;
  if (pivot)
    pivoted = true;
  else
    target = NULL;
  mode = pivot ? MODE_PIVOTED : MODE_LOCAL;
  pthread_mutex_unlock (&lock);
  pthread_rwlock_unlock (&mode_lock);
  if (!pivot)
    target_unref (t);
  nbdkit_debug ("mirror: completed (%s)", pivot ? "pivot" : "detached");
  return reply_ok (pivot ? ",\"pivoted\":true" : ",\"pivoted\":false");
}

char *
mirror_cmd_abort (void)
{
  pthread_mutex_lock (&lock);
  if (pivoted) {
    pthread_mutex_unlock (&lock);
    return mirror_reply_error (
        "abort: the disk was pivoted to its target; there is nothing to "
        "abort");
  }
  /* Aborted before anyone sees a target error caused by the kill. */
  state = MIRROR_ABORTED;
  if (target)
    target_kill (target);
  pthread_mutex_unlock (&lock);
  copier_join ();

  pthread_rwlock_wrlock (&mode_lock);
  pthread_mutex_lock (&lock);
  struct target *t = target;
  target = NULL;
  mode = MODE_LOCAL;
  pthread_mutex_unlock (&lock);
  pthread_rwlock_unlock (&mode_lock);
  if (t)
    target_unref (t);
  nbdkit_debug ("mirror: aborted");
  return reply_ok ("");
}

/* Flush what is the disk now: the local disk, or the target after a
 * pivot.  NULL, or why not (malloc'd). */
static char *
flush_disk (void)
{
  char *why = NULL;
  int e = 0;

  pthread_mutex_lock (&lock);
  struct target *t = pivoted ? target : NULL;
  if (t)
    target_ref (t);
  pthread_mutex_unlock (&lock);
  if (t) {
    target_sync (t, TREQ_FLUSH, NULL, 0, 0, false, timeout_ms (), &why);
    target_unref (t);
  }
  else if (bg->flush (bg, 0, &e) == -1
           && asprintf (&why, "local disk: flush: %s", strerror (e)) == -1)
    why = strdup ("local disk: flush failed");
  return why;
}

char *
mirror_cmd_pause (void)
{
  mirror_reap ();
  pthread_mutex_lock (&lock);
  enum mirror_state st = state;
  bool running = attached_locked ();
  pthread_mutex_unlock (&lock);
  if (running)
    return mirror_reply_error ("pause: a mirror is running (state %s): "
                               "complete or abort it first",
                               mirror_state_name (st));
  if (!bg)
    return mirror_reply_error ("pause: the filter has no backend context");

  pthread_mutex_lock (&gate_lock);
  if (gate_closed) {
    pthread_mutex_unlock (&gate_lock);
    return mirror_reply_error ("pause: already paused");
  }
  gate_closed = true;
  pause_expired = false;
  gate_deadline = monotonic_ns () + pause_timeout_s * UINT64_C (1000000000);
  while (gate_inflight && !gate_expire_locked ())
    gate_wait_locked ();
  bool drained = gate_closed;
  pthread_mutex_unlock (&gate_lock);
  if (!drained)
    return mirror_reply_error ("pause: the requests in flight did not "
                               "finish within %u s; not paused",
                               pause_timeout_s);

  char *why = flush_disk ();
  if (why) {
    char *r = mirror_reply_error ("pause: %s; not paused", why);
    free (why);
    pthread_mutex_lock (&gate_lock);
    gate_open_locked ();
    pthread_mutex_unlock (&gate_lock);
    return r;
  }
  nbdkit_debug ("mirror: paused");
  return reply_ok (",\"paused\":true");
}

/* Why resume cannot: the gate is open.  Caller holds gate_lock. */
static char *
not_paused_locked (void)
{
  if (pause_expired)
    return mirror_reply_error (
        "resume: the pause expired after %u s (mirror-pause-timeout) and "
        "guest I/O went on on the disk as it was",
        pause_timeout_s);
  return mirror_reply_error ("resume: the filter is not paused");
}

/* Make T the disk (as complete's pivot) while the gate is closed and
 * nothing is in flight.  Caller holds gate_lock.  Returns the target it
 * replaces (an earlier pivot's), to unref. */
static struct target *
pivot_to_locked (struct target *t)
{
  assert (gate_closed); /* and no request past it: pause drained them */
  pthread_rwlock_wrlock (&mode_lock);
  pthread_mutex_lock (&lock);
  struct target *old = target;
  target = t;
  pivoted = true;
  state = MIRROR_COMPLETED;
  free (error_msg);
  error_msg = NULL;
  mode = MODE_PIVOTED;
  pthread_mutex_unlock (&lock);
  pthread_rwlock_unlock (&mode_lock);
  return old;
}

char *
mirror_cmd_resume (const char *uri, const char *psk_file)
{
  struct target *t = NULL, *old = NULL;
  char *err = NULL, *r;

  mirror_reap ();
  if (!paused ()) {
    pthread_mutex_lock (&gate_lock);
    r = not_paused_locked ();
    pthread_mutex_unlock (&gate_lock);
    return r;
  }
  if (uri && !copy_is_nbd_uri (uri))
    return mirror_reply_error ("resume: \"%s\" is not an NBD URI "
                               "(nbd://, nbds://, nbd+unix://); still paused",
                               uri);
  /* Connect before anything changes: a target that fails leaves the
   * filter paused, for the owner to decide. */
  if (uri && !(t = target_open (uri, psk_file, timeout_ms (), &err))) {
    r = mirror_reply_error ("resume: %s; still paused",
                            err ? err : "cannot connect");
    free (err);
    return r;
  }
  if (t && target_size (t) < disk_size) {
    r = mirror_reply_error ("resume: %s: the target (%" PRIu64
                            " bytes) is smaller than the disk (%" PRIu64
                            " bytes); still paused",
                            uri, target_size (t), disk_size);
    target_unref (t);
    return r;
  }

  pthread_mutex_lock (&gate_lock);
  if (!gate_closed) { /* expired while we connected */
    r = not_paused_locked ();
    pthread_mutex_unlock (&gate_lock);
    if (t)
      target_unref (t);
    return r;
  }
  if (t)
    old = pivot_to_locked (t);
  gate_open_locked ();
  pthread_mutex_unlock (&gate_lock);
  if (old)
    target_unref (old);
  nbdkit_debug ("mirror: resumed%s%s", t ? ", pivoted to " : "",
                t ? uri : "");
  return reply_ok (t ? ",\"pivoted\":true,\"paused\":false"
                     : ",\"paused\":false");
}

/* ---- guest I/O ---- */

static void
chunks_of (uint64_t offset, uint64_t count, uint64_t *c0, uint64_t *c1)
{
  *c0 = offset / granularity;
  *c1 = (offset + (count ? count : 1) - 1) / granularity;
  if (*c1 >= nchunks)
    *c1 = nchunks ? nchunks - 1 : 0;
}

/* A write or zero on both sides at once. */
static int
mirrored (nbdkit_next *next, enum treq_op op, const void *buf, uint32_t count,
          uint64_t offset, uint32_t flags, int *err)
{
  uint64_t c0, c1;
  chunks_of (offset, count, &c0, &c1);
  struct target *t = lock_range (c0, c1);
  uint64_t t0 = monotonic_ns ();
  struct treq *rq
      = t ? target_start (t, op, buf, count, offset, flags & NBDKIT_FLAG_FUA)
          : NULL;
  int r = op == TREQ_WRITE
              ? next->pwrite (next, buf, count, offset, flags, err)
              : next->zero (next, count, offset, flags, err);
  enum after what = KEEP;
  if (t) {
    char *why = NULL;
    if (target_finish (t, rq, NULL, timeout_ms (), &why) == -1)
      mirror_fail (why); /* before the guest hears anything */
    else if (r == 0) {
      lat_record (monotonic_ns () - t0);
      atomic_fetch_add (&writes_mirrored, 1);
      what = CLEAN_WHOLE;
    }
    else
      what = DIRTY_ALL;
    target_unref (t);
  }
  unlock_range (c0, c1, offset, count, what);
  return r;
}

/* After a pivot the target is the disk. */
static int
on_target (enum treq_op op, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags, int *err)
{
  pthread_mutex_lock (&lock);
  struct target *t = target;
  target_ref (t);
  pthread_mutex_unlock (&lock);
  char *why = NULL;
  int r = target_sync (t, op, buf, count, offset, flags & NBDKIT_FLAG_FUA,
                       timeout_ms (), &why);
  target_unref (t);
  if (r == -1) {
    nbdkit_error ("mirror: pivoted target: %s", why ? why : "failed");
    free (why);
    *err = EIO;
  }
  return r;
}

static int cbt_open (void);

/* The log, taken if it appeared since the last look; NULL if there is
 * none (or it cannot be opened: *FAILED, with nbdkit's error). */
static struct cbt_log *
cbt_get (bool *failed)
{
  struct cbt_log *log = atomic_load (&cbt);
  *failed = false;
  if (log || !cbt_path || access (cbt_path, F_OK) == -1)
    return log;
  pthread_mutex_lock (&cbt_open_lock);
  if (!atomic_load (&cbt)) {
    nbdkit_debug ("mirror: cbt-log %s appeared: tracking starts", cbt_path);
    *failed = cbt_open () == -1;
  }
  pthread_mutex_unlock (&cbt_open_lock);
  return atomic_load (&cbt);
}

/* Mark a guest request's blocks in the changed-block log before it
 * reaches the disk. */
static int
cbt_mark (uint32_t count, uint64_t offset, int *err)
{
  GError *e = NULL;
  bool failed;
  struct cbt_log *log = cbt_get (&failed);
  if (failed) {
    *err = EIO;
    return -1;
  }
  if (!log || cbt_log_mark (log, offset, count, &e) == 0)
    return 0;
  nbdkit_error ("mirror: %s (the request fails: it could not be tracked)",
                e->message);
  g_error_free (e);
  *err = EIO;
  return -1;
}

static int
mirror_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  io_begin ();
  int r = mode == MODE_PIVOTED
              ? on_target (TREQ_READ, buf, count, offset, 0, err)
              : next->pread (next, buf, count, offset, flags, err);
  io_end ();
  return r;
}

static int
mirror_pwrite (nbdkit_next *next, void *handle, const void *buf,
               uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  io_begin ();
  if (cbt_mark (count, offset, err) == -1) {
    io_end ();
    return -1;
  }
  int r;
  switch (mode) {
  case MODE_MIRROR:
    r = mirrored (next, TREQ_WRITE, buf, count, offset, flags, err);
    break;
  case MODE_PIVOTED:
    r = on_target (TREQ_WRITE, (void *)buf, count, offset, flags, err);
    break;
  default: r = next->pwrite (next, buf, count, offset, flags, err);
  }
  io_end ();
  return r;
}

static int
mirror_zero (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  io_begin ();
  if (cbt_mark (count, offset, err) == -1) {
    io_end ();
    return -1;
  }
  int r;
  switch (mode) {
  case MODE_MIRROR:
    r = mirrored (next, TREQ_ZERO, NULL, count, offset, flags, err);
    break;
  case MODE_PIVOTED:
    r = on_target (TREQ_ZERO, NULL, count, offset, flags, err);
    break;
  default: r = next->zero (next, count, offset, flags, err);
  }
  io_end ();
  return r;
}

/* TRIM is not zero: after the local trim the target is made to read what
 * the local disk now reads, chunk by chunk, under the range lock. */
static int
mirror_trim (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  io_begin ();
  if (cbt_mark (count, offset, err) == -1) {
    io_end ();
    return -1;
  }
  int r;
  if (mode == MODE_PIVOTED)
    r = on_target (TREQ_TRIM, NULL, count, offset, flags, err);
  else if (mode == MODE_LOCAL)
    r = next->trim (next, count, offset, flags, err);
  else {
    uint64_t c0, c1;
    chunks_of (offset, count, &c0, &c1);
    struct target *t = lock_range (c0, c1);
    r = next->trim (next, count, offset, flags, err);
    enum after what = KEEP;
    if (t) {
      char *why = NULL;
      char *buf = malloc (COPY_RUN);
      if (!buf)
        what = DIRTY_ALL;
      else if (sync_span (next, t, c0 * granularity, chunk_end (c1), buf, &why)
               == -1)
        mirror_fail (why);
      else
        what = CLEAN_ALL;
      free (buf);
      target_unref (t);
    }
    unlock_range (c0, c1, offset, count, what);
  }
  io_end ();
  return r;
}

static int
mirror_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  io_begin ();
  int r;
  if (mode == MODE_PIVOTED)
    r = on_target (TREQ_FLUSH, NULL, 0, 0, 0, err);
  else {
    struct target *t = NULL;
    if (mode == MODE_MIRROR) {
      pthread_mutex_lock (&lock);
      if (attached_locked () && (t = target))
        target_ref (t);
      pthread_mutex_unlock (&lock);
    }
    struct treq *rq
        = t ? target_start (t, TREQ_FLUSH, NULL, 0, 0, false) : NULL;
    r = next->flush (next, flags, err);
    if (t) {
      char *why = NULL;
      if (target_finish (t, rq, NULL, timeout_ms (), &why) == -1)
        mirror_fail (why);
      target_unref (t);
    }
  }
  io_end ();
  return r;
}

static int
mirror_extents (nbdkit_next *next, void *handle, uint32_t count,
                uint64_t offset, uint32_t flags,
                struct nbdkit_extents *extents, int *err)
{
  io_begin ();
  int r;
  if (mode == MODE_PIVOTED)
    /* Everything may hold data: always true, never wrong. */
    r = nbdkit_add_extent (extents, offset, count, 0);
  else
    r = next->extents (next, count, offset, flags, extents, err);
  io_end ();
  if (r == -1 && !*err)
    *err = errno ? errno : EIO;
  return r;
}

static int
mirror_cache (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
              uint32_t flags, int *err)
{
  io_begin ();
  int r = mode == MODE_PIVOTED ? 0
                               : next->cache (next, count, offset, flags, err);
  io_end ();
  return r;
}

/* ---- configuration and lifetime ---- */

static int
parse_pause_timeout (const char *value)
{
  if (nbdkit_parse_unsigned ("mirror-pause-timeout", value, &pause_timeout_s)
      == -1)
    return -1;
  if (pause_timeout_s == 0 || pause_timeout_s > 86400) {
    nbdkit_error ("mirror-pause-timeout must be between 1 and 86400 "
                  "seconds");
    return -1;
  }
  return 0;
}

static int
mirror_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
               const char *key, const char *value)
{
  if (strcmp (key, "mirror-control") == 0) {
    free (control_path);
    control_path = strdup (value);
    return control_path ? 0 : -1;
  }
  if (strcmp (key, "mirror-granularity") == 0) {
    int64_t g = nbdkit_parse_size (value);
    if (g == -1)
      return -1;
    if (g < 512 || g > (64 << 20) || (g & (g - 1))) {
      nbdkit_error ("mirror-granularity must be a power of two between 512 "
                    "and 64M");
      return -1;
    }
    granularity = g;
    return 0;
  }
  if (strcmp (key, "cbt-log") == 0) {
    free (cbt_path);
    cbt_path = nbdkit_absolute_path (value);
    return cbt_path ? 0 : -1;
  }
  if (strcmp (key, "mirror-timeout") == 0) {
    if (nbdkit_parse_unsigned ("mirror-timeout", value, &timeout_s) == -1)
      return -1;
    if (timeout_s == 0 || timeout_s > 86400) {
      nbdkit_error ("mirror-timeout must be between 1 and 86400 seconds");
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "mirror-pause-timeout") == 0)
    return parse_pause_timeout (value);
  return next (nxdata, key, value);
}

static int
mirror_config_complete (nbdkit_next_config_complete *next,
                        nbdkit_backend *nxdata)
{
  if (!control_path) {
    nbdkit_error ("mirror-control=SOCKET is required");
    return -1;
  }
  return next (nxdata);
}

#define mirror_config_help                                                    \
  "mirror-control=SOCKET   (required) Unix socket for the control "           \
  "protocol.\n"                                                               \
  "mirror-granularity=SIZE Dirty bitmap granularity (default 64K).\n"         \
  "mirror-timeout=SECS     Target request timeout (default 30).\n"           \
  "mirror-pause-timeout=SECS  A pause resumes by itself after (default 60).\n" \
  "cbt-log=PATH            Changed-block log to mark (vdimotion-sr(5))."

static int
mirror_get_ready (int thread_model)
{
  pthread_rwlockattr_t a;
  pthread_rwlockattr_init (&a);
  pthread_rwlockattr_setkind_np (&a,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&mode_lock, &a);
  pthread_rwlockattr_destroy (&a);
  return control_listen (control_path);
}

/* Take the changed-block log as its writer, for a disk of disk_size
 * bytes. */
static int
cbt_open (void)
{
  GError *e = NULL;
  struct cbt_log_info info;
  struct cbt_log *log = cbt_log_open (cbt_path, CBT_LOG_WRITER, &e);

  if (log && cbt_log_get_info (log, &info, &e) == 0
      && info.virtual_size != disk_size)
    g_set_error (&e, CBT_LOG_ERROR, EINVAL,
                 "cbt log %s: it is the log of a %" PRIu64 "-byte disk, "
                 "this one is %" PRIu64 " bytes",
                 cbt_path, info.virtual_size, disk_size);
  if (e) {
    nbdkit_error ("mirror: cbt-log: %s", e->message);
    g_error_free (e);
    cbt_log_close (log, NULL);
    return -1;
  }
  atomic_store (&cbt, log);
  nbdkit_debug ("mirror: cbt-log %s: generation %s, counting from %s%s%s",
                cbt_path, info.generation,
                info.predecessor[0] ? info.predecessor : "enabling or reset",
                info.reset_reason[0] ? ", last reset: " : "",
                info.reset_reason);
  return 0;
}

static int
mirror_after_fork (nbdkit_backend *backend)
{
  plugin_backend = backend;
  bg = nbdkit_next_context_open (backend, 0, "", 1);
  if (!bg) {
    nbdkit_error ("mirror: cannot open a backend context for the copier");
    return -1;
  }
  if (bg->prepare (bg) == -1) {
    nbdkit_next_context_close (bg);
    bg = NULL;
    return -1;
  }
  int64_t size = bg->get_size (bg);
  /* Ask once, so later calls from the copier are answered from cache. */
  if (size == -1 || bg->can_write (bg) == -1 || bg->can_flush (bg) == -1
      || bg->can_zero (bg) == -1 || bg->can_extents (bg) == -1
      || bg->can_fua (bg) == -1)
    return -1;
  disk_size = size;
  /* A log that is there must be usable; one that is not yet is looked
   * for before each request. */
  if (cbt_path && access (cbt_path, F_OK) == 0 && cbt_open () == -1)
    return -1;
  nchunks = (disk_size + granularity - 1) / granularity;
  if (chunks_init (&chunks, nchunks, &lock) == -1) {
    nbdkit_error ("mirror: out of memory for the bitmap");
    return -1;
  }
  return control_start ();
}

static void
mirror_cleanup (nbdkit_backend *backend)
{
  control_stop ();
  pthread_mutex_lock (&lock);
  if (target)
    target_kill (target);
  pthread_mutex_unlock (&lock);
  copier_join ();
  if (target)
    target_unref (target);
  target = NULL;
  if (layer) {
    layer->finalize (layer);
    nbdkit_next_context_close (layer);
    layer = NULL;
  }
  struct cbt_log *log = atomic_exchange (&cbt, NULL);
  if (log) {
    /* nbdkit's clean stop: no request is running any more. */
    GError *e = NULL;
    if (cbt_log_close (log, &e) == -1) {
      nbdkit_error ("mirror: cbt-log: %s (the next open resets it)",
                    e->message);
      g_error_free (e);
    }
  }
  if (bg) {
    bg->finalize (bg);
    nbdkit_next_context_close (bg);
    bg = NULL;
  }
}

static void
mirror_unload (void)
{
  free (control_path);
  free (cbt_path);
  chunks_free (&chunks);
  free (error_msg);
}

static struct nbdkit_filter filter = {
  .name = "mirror",
  .longname = "vdimotion synchronous mirror filter",
  .config = mirror_config,
  .config_complete = mirror_config_complete,
  .config_help = mirror_config_help,
  .get_ready = mirror_get_ready,
  .after_fork = mirror_after_fork,
  .cleanup = mirror_cleanup,
  .unload = mirror_unload,
  .pread = mirror_pread,
  .pwrite = mirror_pwrite,
  .zero = mirror_zero,
  .trim = mirror_trim,
  .flush = mirror_flush,
  .extents = mirror_extents,
  .cache = mirror_cache,
};

NBDKIT_REGISTER_FILTER (filter)
