/* The copy engine: a source and its allocation map -> a destination.
 *
 * Design (the replicator's heart; the CLI, the daemon, backup, evacuation
 * and the mirror filter all drive it through this header):
 *
 * - Endpoints are an ops table (endpoint.h): a local image of any format
 *   through libvdisk, or an NBD export through libnbd (nbd://, nbds://
 *   with TLS-PSK, nbd+unix://).  Each endpoint offers synchronous calls
 *   that are safe from many threads; the NBD endpoint turns them into
 *   asynchronous commands over several connections, with a poller thread
 *   per connection, so many requests are in flight on each socket.
 * - The source's map is fetched a window ahead of the copy (windows of
 *   COPY_WINDOW bytes of guest space), never in lockstep with it.  Holes
 *   are never read.  ZERO and HOLE ranges become zero requests on the
 *   destination, or nothing at all when the destination is known to read
 *   as zero (a fresh image without a parent).  TRIM never stands in for
 *   zero.
 * - `requests` worker threads each take the next piece (at most
 *   `request_size` bytes) of the current window, read it, look for
 *   all-zero blocks at the destination's granularity, and write the data
 *   runs and zero runs.  Pieces complete out of order; nothing waits on a
 *   slow neighbour.  Memory is requests x request_size, whatever the disk.
 * - Plain file to plain file on one filesystem uses copy_file_range.
 * - The journal (journal.h) records which windows are done, after the
 *   destination has flushed them, so a copy killed at any point resumes
 *   where it stopped and redoes at most the windows that were in flight.
 */
#ifndef VDM_COPY_H
#define VDM_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct copy_endpoint;

#define COPY_WINDOW (UINT64_C (32) << 20)

struct copy_progress
{
  uint64_t done, total; /* bytes of guest space handled */
};
typedef void (*copy_progress_fn) (const struct copy_progress *p, void *opaque);

struct copy_params
{
  unsigned requests;         /* in flight at once (worker threads); 0 = 16 */
  size_t request_size;       /* bytes per request; 0 = 1 MiB */
  bool dest_is_zero;         /* destination reads as zero before the copy */
  bool holes_fall_through;   /* source HOLEs are left alone on the
                                destination (a layer copy: a hole there
                                means "the parent's data") */
  const char *journal;       /* path, or NULL */
  copy_progress_fn progress; /* called with the engine's lock held: be quick */
  void *progress_opaque;
  /* If not NULL: when *cancel becomes nonzero (another thread sets it),
   * the copy stops at its next step and fails with "cancelled". */
  const int *cancel;
  /* A completed copy leaves its journal to the caller, to remove once
   * the destination is closed: a kill before that then resumes (and
   * finds nothing left to copy) rather than finding a destination and
   * no journal. */
  bool keep_journal;
};

struct copy_stats
{
  uint64_t bytes_read;    /* data read from the source */
  uint64_t bytes_written; /* data written to the destination */
  uint64_t bytes_zeroed;  /* zero requests sent to the destination */
  uint64_t bytes_skipped; /* neither read nor written (already zero, or
                             done before a resume) */
  double seconds;
};

/* Copy the whole of SRC onto DST (DST at least as large).  The caller
 * opened both; the engine flushes DST at the end.  On failure returns -1
 * with a message in *ERR (malloc'd; the caller frees it). */
int copy_run (struct copy_endpoint *src, struct copy_endpoint *dst,
              const struct copy_params *params, struct copy_stats *stats,
              char **err);

/* Endpoints.  Open functions return NULL with a message in *ERR. */
struct vdisk;
/* A local image (the engine does not close D).  LAYER_ONLY maps and
 * copies only what the top layer holds (--keep-chain). */
struct copy_endpoint *copy_endpoint_local (struct vdisk *d, bool layer_only,
                                           char **err);
/* An NBD export by URI; CONNECTIONS > 1 is used only when the server
 * allows multi-conn. */
struct copy_endpoint *copy_endpoint_nbd (const char *uri, bool writable,
                                         unsigned connections, char **err);
uint64_t copy_endpoint_size (struct copy_endpoint *e);
const char *copy_endpoint_name (struct copy_endpoint *e);
/* Returns -1 (message in *ERR) if the final flush or shutdown failed. */
int copy_endpoint_close (struct copy_endpoint *e, char **err);

/* Is this string an NBD URI rather than a path? */
bool copy_is_nbd_uri (const char *s);

/* Remove the journal at PATH (and what an interrupted creation of it
 * left beside it).  -1 with errno if it exists and cannot be removed. */
int copy_journal_remove (const char *path);

#endif /* VDM_COPY_H */
