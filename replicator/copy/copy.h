/* The copy engine: a source and its allocation map -> a destination.
 *
 * Design (the replicator's heart, the one way data moves; the CLI, the
 * daemon's copies and migrations, the HTTP import and export, backup and
 * evacuation all drive it through this header):
 *
 * - One entry point, the job (copy_job_open ... copy_job_close, or
 *   copy_simple): two endpoint descriptions (struct copy_spec: an image
 *   file, an NBD export, an SR's VDI, a byte stream) and the parameters
 *   in; the job opens both ends, runs the engine (once per layer when a
 *   chain is kept), flushes and closes, and undoes what it created if
 *   the copy fails.  Nobody else opens or closes endpoints.
 * - Endpoints are an ops table (endpoint.h): a local image of any format
 *   through libvdisk (an image file, or a VDI opened through its SR), an
 *   NBD export through libnbd (nbd://, nbds:// with TLS-PSK,
 *   nbd+unix://), or a byte stream.  Each endpoint offers synchronous
 *   calls that are safe from many threads; the NBD endpoint turns them
 *   into asynchronous commands over several connections, with a poller
 *   thread per connection, so many requests are in flight on each
 *   socket.  A stream destination is sequential: the engine writes it
 *   with one request at a time, in order, in whole request-sized pieces.
 *   A stream source is pushed by its caller (copy_job_feed) and written
 *   as it comes, through a bounded staging buffer.
 * - A chain kept is copied layer by layer, bottom first: each source
 *   layer mapped alone (a HOLE means "the parent's" and is left alone)
 *   into a new destination layer whose parent is the one made before.
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

/* ------------------------------------------------------------------ */
/* "Copy this to that": the one entry point.  Two endpoint descriptions
 * and the parameters in; the job opens both ends, runs the engine (layer
 * by layer when a chain is kept), flushes and closes the destination,
 * and removes what it created if the copy fails.  The CLI's copy, the
 * daemon's offline copy, a migration's copy and the HTTP import and
 * export all go through here. */

struct sr;

enum copy_kind
{
  COPY_IMAGE,  /* an image file of any format (libvdisk) */
  COPY_NBD,    /* an NBD export by URI */
  COPY_VDI,    /* a VDI of an SR (sr.h), by the SR and the VDI's uuid */
  COPY_STREAM, /* a byte stream, in order: raw guest bytes or a VHD file */
};

enum copy_stream_format
{
  COPY_STREAM_RAW,
  COPY_STREAM_VHD,
  /* xapi's chunked encoding (import_raw_vdi?chunked, vhd-tool's
   * Chunked): chunks of a 12-byte header (guest offset, 64 bits, and
   * length, 32 bits, little-endian) then that many guest bytes, ended by
   * a header of offset 0 and length 0.  A source only; only the chunks
   * are written (the rest of the destination is left as it was), so a
   * client can write ranges. */
  COPY_STREAM_CHUNKED,
};

/* A stream destination's consumer: the next LEN bytes of the stream, in
 * order, at most COPY_STREAM_CHUNK.  BUF is malloc'd and becomes the
 * consumer's, to free (also when it fails); NULL means LEN zero bytes.
 * It may block (a slow reader slows the copy down).  Return -1 with a
 * message in *ERR (malloc'd) to stop the copy. */
#define COPY_STREAM_CHUNK (1u << 20)
typedef int copy_stream_write_fn (void *opaque, void *buf, size_t len,
                                  char **err);

/* One end of a copy.  Strings and the SR are the caller's and must live
 * until copy_job_close. */
struct copy_spec
{
  enum copy_kind kind;

  /* COPY_IMAGE: the file at PATH in FORMAT (a source: VDISK_FORMAT_PROBE
   * probes it; a destination: -1 takes the format from the extension,
   * .vhd, .qcow2, else raw).  A destination file is created; an existing
   * one is refused unless OVERWRITE, or unless params.journal names the
   * journal of this very copy (which resumes it).  PROBE_WARNING, if
   * not NULL, prefixes the warning printed when a format was guessed
   * (vdisk_warn_probed). */
  const char *path;
  int format;
  bool overwrite;
  const char *probe_warning;

  /* COPY_NBD: URI (nbd://, nbds:// with TLS-PSK, nbd+unix://) over up
   * to CONNECTIONS connections (0: 4; more than one only when the server
   * allows multi-conn). */
  const char *uri;
  unsigned connections;

  /* COPY_VDI: VDI (uuid) of SR.  A flattened destination must exist; a
   * chain-kept destination is created by the copy, VDI being the uuid
   * its top gets (each lower layer a new VDI below it, named as its
   * source layer, in FORMAT: -1 is the source top's format). */
  struct sr *sr;
  const char *vdi;

  /* COPY_IMAGE and COPY_VDI: more vdisk_open flags (VDISK_OPEN_BUFFERED
   * for the page cache). */
  unsigned open_flags;
  /* COPY_IMAGE and COPY_VDI, on both ends: copy the chain layer by
   * layer, bottom first, into a chain of the same shape (image files:
   * the lower layers go beside the destination, named after their
   * source layers, and each child records its parent by that relative
   * name).  Otherwise the chain is flattened into one image. */
  bool keep_chain;

  /* COPY_STREAM: STREAM says how guest data is in the bytes.  As a
   * destination, WRITE receives them (a VHD needs an image or VDI
   * source: it is made from its allocation map, holding only the blocks
   * with data).  As a source the caller pushes the bytes with
   * copy_job_feed; LENGTH is the stream's length if known in advance
   * (HTTP Content-Length; a VHD's bad BAT entries are then caught before
   * any data is written), else 0; SIZE is the most guest bytes it may
   * carry (0: the destination's size). */
  enum copy_stream_format stream;
  copy_stream_write_fn *write;
  void *opaque;
  uint64_t length;
  uint64_t size;
};

struct copy_job;

/* Open both ends of a copy SRC -> DST.  PARAMS is copied (its strings
 * and callbacks must live until copy_job_close); PARAMS->dest_is_zero
 * is the caller's word that the destination reads as zero, and a
 * destination the job creates is known to.  A source stream needs
 * copy_job_feed; any other source, copy_job_run.  Returns NULL with a
 * message in *ERR (malloc'd) and errno set: EINVAL bad description or
 * data, ENOENT no such file or VDI, EROFS a read-only destination,
 * ENOSPC, EEXIST a destination that exists, ... */
struct copy_job *copy_job_open (const struct copy_spec *src,
                                const struct copy_spec *dst,
                                const struct copy_params *params, char **err);
/* Guest bytes the copy covers (a source stream: at most this many). */
uint64_t copy_job_size (struct copy_job *j);
/* Bytes of the destination stream (a stream destination: its length,
 * known before the first byte); else copy_job_size. */
uint64_t copy_job_length (struct copy_job *j);
/* Whether the destination read as zero before the copy (then zeroes
 * are not written to it). */
bool copy_job_dest_is_zero (struct copy_job *j);
/* Run the copy to its end (any thread; not for a stream source).  -1
 * with *ERR and errno. */
int copy_job_run (struct copy_job *j, char **err);
/* A stream source: the next LEN bytes.  Called from one thread at a
 * time; memory is bounded whatever the stream (it is written as it
 * comes).  After a -1 (*ERR, errno: EINVAL a malformed VHD, EFBIG more
 * than the size) every call fails. */
int copy_job_feed (struct copy_job *j, const void *buf, size_t len,
                   char **err);
/* Finish and free the job.  OK: the copy is complete (a stream source
 * has ended: what it did not cover is made to read as zero); the
 * destination is flushed and closed, -1 with *ERR and errno if that (or
 * the end of the stream) fails.  Not OK: the copy is abandoned, and what
 * the job created is removed (unless a journal keeps it for resuming).
 * STATS (may be NULL) gets the sums over the whole job. */
int copy_job_close (struct copy_job *j, bool ok, struct copy_stats *stats,
                    char **err);
/* Open, run and close: SRC -> DST. */
int copy_simple (const struct copy_spec *src, const struct copy_spec *dst,
                 const struct copy_params *params, struct copy_stats *stats,
                 char **err);

/* ------------------------------------------------------------------ */
/* Endpoints, for the engine's own users (copy_run; the job opens them
 * from descriptions).  Open functions return NULL with a message in
 * *ERR. */
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
