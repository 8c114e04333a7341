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
 * disk as in idle, and accept a new `start`.
 *
 * The disk.  What the guest sees is the plugin, until a pivot (complete
 * pivot=true, resume target= pivot=true) makes a target the disk
 * (`disk_target`); a later pivot replaces it.  A mirror started after a
 * pivot treats that target as the disk in every way the plugin is one
 * below: guest writes go to it and to the new target, the copier reads
 * it and follows its map (NBD block status, or for sync=top its server's
 * top-layer view, `disk_layer`), pause flushes it; complete without a
 * pivot, abort and failure leave it the disk, complete pivot=true
 * flushes it (with the new target) and drops it.  Everything said below
 * of "the local disk" holds of it: the range locks, the ordering of a
 * write's two halves, the stale-copy race.  Its failure is the guest's
 * (EIO, there is no other copy), and fails the mirror only through the
 * copier's reads.
 *
 * Modes.  Every guest request runs under a read lock of `mode_lock` and
 * looks at `mode` once: LOCAL (pass through to the plugin: idle,
 * completed-detached, aborted, failed), MIRROR (a target is attached;
 * the disk is the plugin or disk_target), PIVOTED (all I/O goes to
 * disk_target).  disk_target changes only under the write lock, so a
 * request reads it once, without `lock`; LOCAL never looks at it, so the
 * idle path costs what it did.  Changing mode takes the write lock,
 * which drains the requests in flight (a writer-preferring lock, so a
 * busy guest cannot starve it).  This is the quiesce of §3: start drains the pass-through
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
 * After a pivot the same holds of the pivoted target's server: its
 * writes are acknowledged before start's write lock is granted, and its
 * top-layer view shares the image with the connection we write through
 * (nbdkit-vdi-plugin(1)), so the map it gives is the image's as it is.
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
 * undo of a snapshot puts that image back).  nbdkit shutting down ends a
 * pause at once, the same way (it would wait for the held requests).
 * Not the rwlock held across
 * commands: a command answers, and the lock is the control thread's.
 * Pause is refused while a mirror runs (its copier does not pass the
 * gate); it is allowed after a pivot (a second live snapshot), when the
 * flush and the next pivot concern the target, and after a mirror
 * started after a pivot has ended (a live snapshot of a disk moved live).
 *
 * Changed-block tracking (cbt-log=PATH, cbt-log.h).  Every guest write,
 * zero and trim marks its 64 KiB blocks in the VDI's log first, in every
 * mode, and only then goes to the disk: a write the guest hears of is
 * always in the log, even if nbdkit is killed right after.  A mark that
 * fails fails the request with EIO, untouched.  The log is taken as its
 * writer (its consistent flag cleared and fsynced; a log a dead writer
 * left is reset there, with its reason) in .after_fork when cbt-log=
 * names one that is there (a disk started with CBT on), and let go
 * cleanly in .cleanup, nbdkit's clean stop (the flag set and fsynced).
 * While the disk is served, its owner turns tracking on and off with the
 * commands `cbt-open [log=PATH]` and `cbt-close` (vdimotiond on
 * VDI.enable_cbt and disable_cbt of a running VM's disk, replicator/jobs/
 * cbt.c).  The filter never looks for a log by itself: with CBT off a
 * request costs one atomic load, no system call.
 *
 * Why a write acknowledged after cbt-open's reply is marked.  The log
 * pointer `cbt` is read once per request, past the pause gate and under
 * mode_lock's read lock, and the mark is made right then, before the
 * request goes to the disk, under the same read lock.  cbt-open takes the
 * log first without holding anything (the slow part: the file's lock,
 * the flag, an fsync; requests go on unmarked meanwhile, as they did
 * before the command), then swaps the pointer under mode_lock's write
 * lock, which waits for the requests in flight to leave.  So a request
 * either took the read lock before the swap, and has returned (its
 * write on the disk) before the swap and so before the reply, or took it
 * after and marks the new log.  A request the pause gate holds has not
 * read the pointer yet: it marks the log that is there when it passes.
 * The same drain makes cbt-close, and a cbt-open of another file (a log
 * moved to another filesystem), close the old log right after the swap:
 * no request can still be marking it.  A cbt-open of the file the filter
 * marks already (the same inode: a live move renamed it to the new
 * VDI's) changes nothing.  Writers in other processes are kept out by
 * the log's own lock (EBUSY, cbt-log.h).  VDI.disable_cbt flags the log
 * disabled under its writer (cbt_log_disable) before cbt-close, so a log
 * whose cbt-close never came says nothing and is harmless.
 *
 * After a pivot the filter keeps marking the same file: a live snapshot
 * keeps the VDI (its rotation empties the log in place while the pause
 * gate is closed), and a live move renames the log to the new VDI
 * (vdi-jobs.c).  A request marks once past the pause gate, never before:
 * a write a live snapshot's pause held lands in the new leaf, so its
 * mark must land in the log rotated for that leaf, not in the
 * snapshot's.
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
#include <sys/stat.h>
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
/* cbt-log=, then the path of the last log cbt-open took.  Only the
 * control thread (and .after_fork, before it runs) uses it. */
static char *cbt_path;

/* The changed-block log while one is taken (.after_fork, cbt-open) until
 * cbt-close or .cleanup; NULL while CBT is off.  Changed only under
 * mode_lock's write lock (cbt_swap), read once by each request under the
 * read lock; cbt_log_mark is thread-safe.  cbt_file: the file's device
 * and inode, so that a cbt-open of that same file is known (the control
 * thread's). */
static struct cbt_log *_Atomic cbt;
static struct stat cbt_file;

/* Set in .after_fork. */
static nbdkit_backend *plugin_backend; /* what we filter: for `layer` */
static nbdkit_next *bg;    /* the copier's own context */
static nbdkit_next *layer; /* sync=top's map, opened at its first start */
static uint64_t disk_size, nchunks;

static pthread_rwlock_t mode_lock;
static enum mode mode = MODE_LOCAL; /* written under the write lock */
/* The disk the guest sees: the plugin (NULL), or after a pivot that
 * target.  disk_layer: sync=top's map of it (nbdkit-vdi-plugin's top
 * layer view through a second connection), opened at a start with
 * sync=top, dropped with it.  Both written under mode_lock's write lock
 * and `lock`, read under either (a running mirror never sees them
 * change: pause and resume are refused while it runs, complete joins
 * the copier first). */
static struct target *disk_target, *disk_layer;

/* The mirror: everything below is under `lock`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct chunks chunks; /* dirty bits and range locks (chunks.h) */
static pthread_cond_t copier_cond = PTHREAD_COND_INITIALIZER;
static enum mirror_state state = MIRROR_IDLE;
static char *error_msg;
static struct target *target;
static uint64_t cursor; /* where the copier looks next */
static bool copier_stop;
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

/* What the copier reads and whose map it follows: the disk the guest
 * sees (the plugin through a backend context, or after a pivot that
 * target), and its map: the disk's own, or with LAYER its top layer's
 * alone. */
struct source
{
  nbdkit_next *next;   /* the plugin's data, or NULL: DISK's */
  struct target *disk; /* after a pivot */
  nbdkit_next *map;    /* the plugin's map, or NULL: MAP_T's */
  struct target *map_t;
  bool layer;
};

/* The disk as it is: NEXT, or the pivoted target.  Under mode_lock or
 * lock. */
static struct source
disk_source (nbdkit_next *next)
{
  if (disk_target)
    return (struct source){ .disk = disk_target, .map_t = disk_target };
  return (struct source){ .next = next, .map = next };
}

/* Read COUNT bytes at OFFSET of the disk into BUF. */
static int
source_pread (const struct source *src, char *buf, uint32_t count,
              uint64_t offset, char **why)
{
  int e = 0;

  if (src->disk)
    return target_sync (src->disk, TREQ_READ, buf, count, offset, false,
                        timeout_ms (), why);
  if (src->next->pread (src->next, buf, count, offset, 0, &e) == 0)
    return 0;
  if (asprintf (why, "local disk: read of %" PRIu32 " bytes at %" PRIu64
                ": %s", count, offset, strerror (e))
      == -1)
    *why = NULL;
  return -1;
}

/* The map of [OFFSET, OFFSET+COUNT) into EX. */
static int
source_map (const struct source *src, uint32_t count, uint64_t offset,
            struct nbdkit_extents *ex, char **why)
{
  int e = 0;

  if (src->map_t) {
    struct target_extents te;
    uint64_t pos = offset;

    if (target_map (src->map_t, offset, count, timeout_ms (), &te, why)
        == -1)
      return -1;
    /* NBD's base:allocation bits are nbdkit's extent types. */
    for (size_t i = 0; i < te.n && e == 0; pos += te.v[i++].length)
      e = nbdkit_add_extent (ex, pos, te.v[i].length,
                             te.v[i].flags
                                 & (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO));
    free (te.v);
    if (e == 0)
      return 0;
    e = errno ? errno : ENOMEM;
  }
  else if (src->map->extents (src->map, count, offset, 0, ex, &e) == 0)
    return 0;
  if (asprintf (why, "%s: map at %" PRIu64 ": %s",
                src->map_t ? target_uri (src->map_t) : "local disk", offset,
                strerror (e))
      == -1)
    *why = NULL;
  return -1;
}

/* Make [start, end) of the target read what FROM's disk reads: its map
 * first (the disk's own, or the top layer's: then its holes are skipped,
 * the lower layers hold them on both sides), zero requests for zero
 * ranges, reads and writes for the rest.  BUF holds COPY_RUN bytes.  The
 * caller holds the range lock. */
static int
sync_span_map (const struct source *from, struct target *t, uint64_t start,
               uint64_t end, char *buf, char **why)
{
  uint64_t pos = start;
  while (pos < end) {
    struct nbdkit_extents *ex = nbdkit_extents_new (pos, end);
    if (!ex) {
      *why = strdup ("mirror: out of memory");
      return -1;
    }
    uint64_t ask = end - pos > (1u << 30) ? (1u << 30) : end - pos;
    if (source_map (from, ask, pos, ex, why) == -1) {
      nbdkit_extents_free (ex);
      return -1;
    }
    uint64_t before = pos;
    for (size_t i = 0; i < nbdkit_extents_count (ex) && pos < end; i++) {
      struct nbdkit_extent x = nbdkit_get_extent (ex, i);
      uint64_t xend = x.offset + x.length < end ? x.offset + x.length : end;
      if (x.offset > pos || xend <= pos)
        continue;
      if (from->layer && (x.type & NBDKIT_EXTENT_HOLE)) {
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
          if (source_pread (from, buf, n, pos, why) == -1)
            goto fail;
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
      if (asprintf (why, "%s: map at %" PRIu64 " described nothing",
                    from->map_t ? target_uri (from->map_t) : "local disk",
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

/* What the copier reads (the disk) and whose map it follows (with
 * sync=top the top layer's: the plugin's view, or after a pivot the
 * disk's view through disk_layer).  Caller holds lock. */
static struct source
copy_source_locked (void)
{
  struct source src = disk_source (bg);

  if (sync_mode == MIRROR_SYNC_TOP) {
    src.layer = true;
    src.map = disk_target ? NULL : layer;
    src.map_t = disk_target ? disk_layer : NULL;
  }
  return src;
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
  struct source src = copy_source_locked ();

  pthread_mutex_unlock (&lock);
  /* Ask about one run first: on a disk full of data, mapping ZERO_RUN
   * ahead for every megabyte copied made the sync quadratic in the
   * extents.  Only a zero range that fills the whole run is worth the
   * longer look. */
  for (uint64_t ask = COPY_RUN;; ask = ZERO_RUN) {
    uint64_t end = start + ask < disk_size ? start + ask : disk_size;
    struct nbdkit_extents *ex = nbdkit_extents_new (start, end);
    char *why = NULL;

    zero_end = start;
    if (ex && source_map (&src, end - start, start, ex, &why) == 0) {
      for (size_t i = 0; i < nbdkit_extents_count (ex); i++) {
        struct nbdkit_extent x = nbdkit_get_extent (ex, i);

        if (x.offset != zero_end || !no_data (x.type, src.layer))
          break;
        zero_end = x.offset + x.length < end ? x.offset + x.length : end;
      }
    }
    free (why); /* only a hint: the copy asks again and says why */
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
    struct source src = copy_source_locked ();
    target_ref (t);
    pthread_mutex_unlock (&lock);

    char *why = NULL;
    int r = sync_span_map (&src, t, c * granularity, chunk_end (c + n - 1),
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

/* The mode once no mirror is attached: I/O to the disk as it is. */
static enum mode
mode_without_mirror (void)
{
  return disk_target ? MODE_PIVOTED : MODE_LOCAL;
}

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

/* nbdkit is shutting down: a pause would hold its connections, and so
 * the shutdown, until it expired.  nbdkit_nanosleep returns at once, and
 * in this thread (no client connection) fails only when nbdkit quits. */
static void
release_on_shutdown (void)
{
  pthread_mutex_lock (&gate_lock);
  if (gate_closed && nbdkit_nanosleep (0, 0) == -1) {
    nbdkit_error ("mirror: nbdkit is shutting down: the pause ends, guest "
                  "I/O goes on on the disk as it was");
    pause_expired = true;
    gate_open_locked ();
  }
  pthread_mutex_unlock (&gate_lock);
}

void
mirror_reap (void)
{
  paused (); /* an expired pause opens here if no one else looks */
  release_on_shutdown ();
  pthread_mutex_lock (&lock);
  bool dead = state == MIRROR_FAILED && target;
  pthread_mutex_unlock (&lock);
  if (!dead)
    return;
  copier_join ();
  pthread_rwlock_wrlock (&mode_lock);
  pthread_mutex_lock (&lock);
  struct target *t = target;
  target = NULL;
  mode = mode_without_mirror ();
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

/* sync=top's map after a pivot: the same view of the disk's top layer,
 * asked of the server of disk_target through a second connection.
 * Kept until disk_target changes.  NULL with *WHY (malloc'd) if that
 * server gives no such view. */
static struct target *
open_disk_layer (char **why)
{
  struct target *v;
  const char *desc;
  char *err = NULL;

  if (disk_layer)
    return disk_layer;
  v = target_open_view (disk_target, LAYER_EXPORT, timeout_ms (), &err);
  if (!v) {
    *why = NULL;
    if (asprintf (why, "the top layer's map: %s", err ? err : "no answer")
        == -1)
      *why = NULL;
    free (err);
    return NULL;
  }
  desc = target_description (v);
  if (!desc || strncmp (desc, LAYER_DESCRIPTION, strlen (LAYER_DESCRIPTION))
      || target_size (v) != target_size (disk_target)) {
    if (asprintf (why, "%s does not map the top layer alone "
                  "(nbdkit-vdi-plugin does)", target_uri (disk_target))
        == -1)
      *why = NULL;
    target_unref (v);
    return NULL;
  }
  nbdkit_debug ("mirror: sync=top follows %s", desc);
  pthread_rwlock_wrlock (&mode_lock);
  pthread_mutex_lock (&lock);
  disk_layer = v;
  pthread_mutex_unlock (&lock);
  pthread_rwlock_unlock (&mode_lock);
  return v;
}

char *
mirror_cmd_start (const char *uri, const char *psk_file,
                  enum mirror_sync sync)
{
  mirror_reap ();
  if (paused ())
    return mirror_reply_error ("start: the filter is paused (resume first)");
  pthread_mutex_lock (&lock);
  bool busy_now = attached_locked ();
  pthread_mutex_unlock (&lock);
  if (busy_now)
    return mirror_reply_error ("start: a mirror is already running");
  if (!bg)
    return mirror_reply_error ("start: the filter has no backend context");
  if (!copy_is_nbd_uri (uri))
    return mirror_reply_error ("start: \"%s\" is not an NBD URI "
                               "(nbd://, nbds://, nbd+unix://)",
                               uri);
  /* Only the control thread changes disk_target. */
  if (disk_target && strcmp (uri, target_uri (disk_target)) == 0)
    return mirror_reply_error ("start: %s is the disk already (the target "
                               "of the last pivot): a mirror onto itself",
                               uri);

  char *err = NULL;
  if (sync == MIRROR_SYNC_TOP
      && (disk_target ? open_disk_layer (&err) == NULL
                      : open_layer (&err) == NULL)) {
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
  nbdkit_debug ("mirror: started to %s (sync=%s)%s%s", uri,
                mirror_sync_name (sync), disk_target ? " from " : "",
                disk_target ? target_uri (disk_target) : "");
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
  /* The mirror's target while one is attached, else the disk's. */
  struct target *shown = target ? target : disk_target;
  json_write_string (f, shown ? target_uri (shown) : NULL);
  fprintf (f,
           ",\"pivoted\":%s,\"bytes_total\":%" PRIu64
           ",\"bytes_done\":%" PRIu64 ",\"dirty_bytes\":%" PRIu64,
           disk_target ? "true" : "false", total,
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

static char *flush_disk (void);

/* Make T the disk the guest sees.  Caller holds mode_lock's write lock
 * and lock.  Returns the disk it replaces (an earlier pivot's, or NULL:
 * the plugin) and its top layer's map in *OLD_LAYER, to drop_targets. */
static struct target *
make_disk_locked (struct target *t, struct target **old_layer)
{
  struct target *old = disk_target;

  *old_layer = disk_layer;
  disk_layer = NULL;
  disk_target = t;
  return old;
}

/* Let go of targets no one uses any more (each may be NULL). */
static void
drop_targets (struct target *a, struct target *b, struct target *c)
{
  struct target *all[] = { a, b, c };

  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (all[i])
      target_unref (all[i]);
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

  /* Flush both sides, in parallel: the disk (which a pivot drops) and
   * the target. */
  char *why = NULL;
  struct treq *rq = target_start (t, TREQ_FLUSH, NULL, 0, 0, false);
  char *disk_why = flush_disk ();
  int tr = target_finish (t, rq, NULL, timeout_ms (), &why);
  if (disk_why || tr == -1) {
    char *msg = tr == -1 ? why : disk_why;
    if (tr == -1)
      free (disk_why);
    char *r = mirror_reply_error ("complete: %s", msg ? msg : "flush failed");
    mirror_fail (msg);
    pthread_rwlock_unlock (&mode_lock);
    mirror_reap ();
    return r;
  }

  struct target *old = NULL, *old_layer = NULL;
  pthread_mutex_lock (&lock);
  state = MIRROR_COMPLETED;
  target = NULL;
  if (pivot)
    old = make_disk_locked (t, &old_layer);
  mode = mode_without_mirror ();
  pthread_mutex_unlock (&lock);
  pthread_rwlock_unlock (&mode_lock);
  drop_targets (pivot ? NULL : t, old, old_layer);
  nbdkit_debug ("mirror: completed (%s)", pivot ? "pivot" : "detached");
  return reply_ok (pivot ? ",\"pivoted\":true" : ",\"pivoted\":false");
}

char *
mirror_cmd_abort (void)
{
  pthread_mutex_lock (&lock);
  if (disk_target && !target) {
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
  mode = mode_without_mirror ();
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
  struct target *t = disk_target;
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
 * replaces (an earlier pivot's), to unref, and its map in *OLD_LAYER. */
static struct target *
pivot_to_locked (struct target *t, struct target **old_layer)
{
  assert (gate_closed); /* and no request past it: pause drained them */
  pthread_rwlock_wrlock (&mode_lock);
  pthread_mutex_lock (&lock);
  assert (!attached_locked ()); /* pause is refused while a mirror runs */
  struct target *old = make_disk_locked (t, old_layer);
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
  struct target *t = NULL, *old = NULL, *old_layer = NULL;
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
    old = pivot_to_locked (t, &old_layer);
  gate_open_locked ();
  pthread_mutex_unlock (&gate_lock);
  drop_targets (NULL, old, old_layer);
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

/* After a pivot the target is the disk: a request to it, its failure
 * the guest's (EIO: there is no other copy).  Under mode_lock. */
static int
on_target (enum treq_op op, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags, int *err)
{
  struct target *t = disk_target;
  char *why = NULL;

  assert (t);
  if (target_sync (t, op, buf, count, offset, flags & NBDKIT_FLAG_FUA,
                   timeout_ms (), &why)
      == 0)
    return 0;
  nbdkit_error ("mirror: pivoted target: %s", why ? why : "failed");
  free (why);
  *err = EIO;
  return -1;
}

/* A write, zero or trim of the disk the guest sees while a mirror is
 * attached: the plugin's (NEXT), or after a pivot its target's. */
static int
disk_op (nbdkit_next *next, enum treq_op op, const void *buf, uint32_t count,
         uint64_t offset, uint32_t flags, int *err)
{
  if (disk_target)
    return on_target (op, (void *)buf, count, offset, flags, err);
  switch (op) {
  case TREQ_WRITE: return next->pwrite (next, buf, count, offset, flags, err);
  case TREQ_ZERO: return next->zero (next, count, offset, flags, err);
  case TREQ_TRIM: return next->trim (next, count, offset, flags, err);
  default: abort ();
  }
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
  int r = disk_op (next, op, buf, count, offset, flags, err);
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

/* Mark a guest request's blocks in the changed-block log, if one is
 * taken, before it reaches the disk.  Under mode_lock's read lock (the
 * design comment says why that makes cbt-open race-free). */
static int
cbt_mark (uint32_t count, uint64_t offset, int *err)
{
  GError *e = NULL;
  struct cbt_log *log;

  assert (pthread_rwlock_trywrlock (&mode_lock) != 0); /* we read-hold it */
  log = atomic_load (&cbt);
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
  int r = mode != MODE_LOCAL && disk_target
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
  /* Marked past the pause gate: a write a live snapshot's pause
   * held counts in the log of the leaf it lands in. */
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
  /* Marked past the pause gate: a write a live snapshot's pause
   * held counts in the log of the leaf it lands in. */
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
  /* Marked past the pause gate: a write a live snapshot's pause
   * held counts in the log of the leaf it lands in. */
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
    r = disk_op (next, TREQ_TRIM, NULL, count, offset, flags, err);
    enum after what = KEEP;
    if (t) {
      char *why = NULL;
      char *buf = malloc (COPY_RUN);
      struct source src = disk_source (next);
      if (!buf)
        what = DIRTY_ALL;
      else if (sync_span_map (&src, t, c0 * granularity, chunk_end (c1), buf,
                              &why)
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
    r = disk_target ? on_target (TREQ_FLUSH, NULL, 0, 0, 0, err)
                    : next->flush (next, flags, err);
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
  if (mode != MODE_LOCAL && disk_target)
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
  int r = mode != MODE_LOCAL && disk_target
              ? 0
              : next->cache (next, count, offset, flags, err);
  io_end ();
  return r;
}

/* ---- the changed-block log: taken, swapped, let go ---- */

/* Open the log at PATH as its writer, for a disk of disk_size bytes; the
 * file's identity into *ST.  NULL with *E. */
static struct cbt_log *
cbt_take (const char *path, struct stat *st, GError **e)
{
  struct cbt_log_info info;
  struct cbt_log *log = cbt_log_open (path, CBT_LOG_WRITER, e);

  if (!log)
    return NULL;
  if (cbt_log_get_info (log, &info, e) == 0 && info.virtual_size != disk_size)
    g_set_error (e, CBT_LOG_ERROR, EINVAL,
                 "cbt log %s: it is the log of a %" PRIu64 "-byte disk, "
                 "this one is %" PRIu64 " bytes",
                 path, info.virtual_size, disk_size);
  else if (!*e && stat (path, st) == -1)
    g_set_error (e, CBT_LOG_ERROR, errno, "cbt log %s: stat: %s", path,
                 strerror (errno));
  if (*e) {
    cbt_log_close (log, NULL);
    return NULL;
  }
  nbdkit_debug ("mirror: cbt-log %s: generation %s, counting from %s%s%s",
                path, info.generation,
                info.predecessor[0] ? info.predecessor : "enabling or reset",
                info.reset_reason[0] ? ", last reset: " : "",
                info.reset_reason);
  return log;
}

/* Make LOG (NULL: none) the log every request marks from the next one
 * on, the file ST (with LOG); returns the log it replaces, which no
 * request marks any more: the write lock waits for the requests in
 * flight to leave. */
static struct cbt_log *
cbt_swap (struct cbt_log *log, const struct stat *st)
{
  pthread_rwlock_wrlock (&mode_lock);
  struct cbt_log *old = atomic_exchange (&cbt, log);
  pthread_rwlock_unlock (&mode_lock);
  if (log)
    cbt_file = *st;
  return old;
}

/* Let go of LOG (NULL: nothing) cleanly: its flag set and synced.  If
 * that fails it is logged, and the log's next writer resets it. */
static void
cbt_release (struct cbt_log *log)
{
  GError *e = NULL;

  if (cbt_log_close (log, &e) == -1) {
    nbdkit_error ("mirror: cbt-log: %s (the next open resets it)",
                  e->message);
    g_error_free (e);
  }
}

/* The reply of cbt-open and cbt-close: the log marked now, or null. */
static char *
reply_cbt (void)
{
  g_autofree char *q
      = atomic_load (&cbt) && cbt_path ? json_quote (cbt_path) : NULL;
  g_autofree char *extra = g_strdup_printf (",\"cbt_log\":%s", q ? q : "null");

  return reply_ok (extra);
}

char *
mirror_cmd_cbt_open (const char *path)
{
  g_autoptr (GError) e = NULL;
  const char *p = path ? path : cbt_path;
  struct stat st;
  struct cbt_log *log;

  if (!p)
    return mirror_reply_error ("cbt-open: which log? give log=PATH (the "
                               "filter was started without cbt-log=)");
  if (atomic_load (&cbt) && stat (p, &st) == 0
      && st.st_dev == cbt_file.st_dev && st.st_ino == cbt_file.st_ino) {
    nbdkit_debug ("mirror: cbt-open %s: marked already", p);
    log = NULL;
  }
  else if (!(log = cbt_take (p, &st, &e)))
    return mirror_reply_error ("cbt-open: %s", e->message);
  if (p != cbt_path) {
    free (cbt_path);
    cbt_path = strdup (p);
  }
  if (log) {
    cbt_release (cbt_swap (log, &st));
    nbdkit_debug ("mirror: cbt-open: every request from now on marks %s",
                  p);
  }
  return reply_cbt ();
}

char *
mirror_cmd_cbt_close (void)
{
  struct cbt_log *old = atomic_load (&cbt) ? cbt_swap (NULL, NULL) : NULL;

  if (old) {
    cbt_release (old);
    nbdkit_debug ("mirror: cbt-close: %s let go, nothing is marked",
                  cbt_path);
  }
  return reply_cbt ();
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

/* A disk started with CBT on: the log cbt-log= names, if it is there.
 * If it is not, CBT is off until a cbt-open. */
static int
cbt_open_at_start (void)
{
  GError *e = NULL;
  struct stat st;
  struct cbt_log *log = cbt_take (cbt_path, &st, &e);

  if (log) {
    cbt_release (cbt_swap (log, &st));
    return 0;
  }
  if (e->code == ENOENT) {
    nbdkit_debug ("mirror: cbt-log %s: not there: nothing is marked until "
                  "cbt-open",
                  cbt_path);
    g_error_free (e);
    return 0;
  }
  nbdkit_error ("mirror: cbt-log: %s", e->message);
  g_error_free (e);
  return -1;
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
  /* A log that is there must be usable; one that is not is off. */
  if (cbt_path && cbt_open_at_start () == -1)
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
  drop_targets (target, disk_target, disk_layer);
  target = disk_target = disk_layer = NULL;
  if (layer) {
    layer->finalize (layer);
    nbdkit_next_context_close (layer);
    layer = NULL;
  }
  /* nbdkit's clean stop: no request is running any more. */
  cbt_release (atomic_exchange (&cbt, NULL));
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
