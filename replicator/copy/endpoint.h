/* Copy endpoints: one ops table per kind (endpoint-local.c,
 * endpoint-nbd.c, endpoint-stream.c), as nbdcopy's rw_ops.  All calls
 * are synchronous and may be made from many worker threads at once,
 * except on a sequential endpoint (a stream), which takes them in order
 * from one thread.
 *
 * Above them, the ends of a job (struct copy_side): one ops table per
 * kind of copy_spec (endpoint-image.c, endpoint-nbd.c, endpoint-vdi.c,
 * endpoint-stream.c) that opens an end as a source, a destination or,
 * keeping a chain, destination layers, and closes or undoes it
 * (job.c drives them). */
#ifndef VDM_COPY_ENDPOINT_H
#define VDM_COPY_ENDPOINT_H

#include <pthread.h>

#include "copy.h"
#include "vdisk.h"

struct copy_endpoint_ops
{
  const char *kind; /* "local", "nbd", "stream", "vhd-stream" */
  /* Allocation of [offset, offset+count), appended to OUT (flattened
   * unless the endpoint is layer-only). */
  int (*map) (struct copy_endpoint *e, uint64_t offset, uint64_t count,
              struct vdisk_extents *out, char **err);
  int (*pread) (struct copy_endpoint *e, void *buf, size_t count,
                uint64_t offset, char **err);
  int (*pwrite) (struct copy_endpoint *e, const void *buf, size_t count,
                 uint64_t offset, char **err);
  /* Afterwards the range reads as zero. */
  int (*zero) (struct copy_endpoint *e, uint64_t count, uint64_t offset,
               char **err);
  int (*flush) (struct copy_endpoint *e, char **err);
  /* Optional: start making what was written durable, without waiting
   * (the engine calls it as windows finish, so the final flush does not
   * wait for the whole copy's writeback at once). */
  void (*writeback) (struct copy_endpoint *e);
  int (*close) (struct copy_endpoint *e, char **err);
  /* Optional: the plain file descriptor under the endpoint, when bytes can
   * move between two such files with copy_file_range; else -1. */
  int (*plain_fd) (struct copy_endpoint *e);
  /* Optional: before a copy resumed from its journal writes anything:
   * free what the killed run had allocated in the destination and not
   * yet linked (vdisk_repair_leaks), which the resumed run allocates
   * again. */
  int (*repair) (struct copy_endpoint *e, char **err);
  /* Optional: read COUNT bytes at OFFSET of SRC into a buffer of its own
   * and write them, so that nothing is copied twice (a stream hands the
   * buffer on to its reader); *ZERO: they were all zero. */
  int (*pull) (struct copy_endpoint *e, struct copy_endpoint *src,
               uint64_t offset, size_t count, bool *zero, char **err);
};

struct copy_endpoint
{
  const struct copy_endpoint_ops *ops;
  char *name; /* path or URI, for messages */
  uint64_t size;
  uint32_t granularity; /* zero-detection / alignment unit */
  /* Writes must come in order, each where the last ended, and cover
   * everything (a stream): the engine runs one request at a time and
   * skips nothing. */
  bool sequential;
};

/* Write LEN bytes of BUF at OFF to DST: all-zero blocks (DST's
 * granularity, aligned to guest offsets) become zero requests, or
 * nothing if DEST_ZERO; the rest is written in runs.  Counted into
 * STATS, under LOCK if not NULL. */
int copy_write_buffer (struct copy_endpoint *dst, const char *buf,
                       uint64_t off, uint64_t len, bool dest_zero,
                       struct copy_stats *stats, pthread_mutex_t *lock,
                       char **err);
/* Add S to SUM. */
void copy_stats_add (struct copy_stats *sum, const struct copy_stats *s);

/* ------------------------------------------------------------------ */
/* The ends of a job. */

/* One layer of a chain copied as a chain, bottom first. */
struct copy_layer
{
  struct vdisk *disk;  /* the source layer (map it layer-only) */
  struct vdisk *child; /* the layer above it, or NULL for the top */
  const char *label;   /* its name (a VDI's name label, a file's name) */
  bool top, bottom;
};

struct copy_side;

struct copy_side_ops
{
  /* Open as the source: set S->ep (and S->disk if it has one). */
  int (*open_source) (struct copy_side *s, char **err);
  /* Open as the destination of a flattened copy of SIZE bytes: set
   * S->ep, and S->fresh if it reads as zero. */
  int (*open_dest) (struct copy_side *s, uint64_t size, char **err);
  /* Optional (chain kept): the source's layer labels, top first,
   * N of them (malloc'd, or NULL: the layers' file names). */
  char **(*labels) (struct copy_side *s, unsigned n, char **err);
  /* Optional (chain kept): create and open the destination layer for
   * L, over the one made before; set S->ep.  S->fmt_from is the
   * source's top. */
  int (*make_layer) (struct copy_side *s, const struct copy_layer *l,
                     char **err);
  /* Close the layer made last (after its copy, OK or not). */
  int (*close_layer) (struct copy_side *s, char **err);
  /* Close the end.  OK: flush what is left and close (-1 with *ERR if
   * that fails); not OK: remove what was made. */
  int (*close) (struct copy_side *s, bool ok, char **err);
};

struct copy_side
{
  const struct copy_side_ops *ops;
  struct copy_spec spec;
  const struct copy_params *params;
  struct copy_endpoint *ep; /* the flattened end, or the current layer */
  struct vdisk *disk;       /* what the end opened, if an image */
  bool fresh;               /* destination: reads as zero */
  struct vdisk *src_top;    /* destination: the source's top (formats) */
  void *priv;               /* the kind's own state */
};

extern const struct copy_side_ops copy_side_image, copy_side_nbd,
    copy_side_vdi, copy_side_stream;

/* The stream kind's own calls (endpoint-stream.c), for job.c: a source
 * stream starts once its destination DST is open (SIZE guest bytes at
 * most; DEST_ZERO: it reads as zero; STATS counts what is done), is fed
 * the stream's bytes, and finishes (the rest made to read as zero, DST
 * flushed). */
int copy_stream_start (struct copy_side *s, struct copy_endpoint *dst,
                       uint64_t size, bool dest_zero, struct copy_stats *stats,
                       char **err);
int copy_stream_feed (struct copy_side *s, const void *buf, size_t len,
                      char **err);
int copy_stream_finish (struct copy_side *s, char **err);
/* Replace source S's endpoint by the bytes of a VHD file made of its
 * image D (for a VHD stream destination). */
int copy_stream_vhd_source (struct copy_side *s, struct vdisk *d, char **err);

/* errno and *ERR from libvdisk's (or the SR's) last error; returns -1. */
int copy_vdisk_error (char **err);
/* Whether D reads as zero throughout: no parent and nothing stored
 * (from its allocation map, O(allocated)). */
int copy_disk_reads_zero (struct vdisk *d, bool *zero, char **err);
/* Close S's local endpoint and the image under it (S->ep, S->disk):
 * -1 with *ERR if closing the image failed. */
int copy_side_close_disk (struct copy_side *s, char **err);

/* asprintf into *ERR; always returns -1 so callers can `return`. */
int copy_error (char **err, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
/* The same, and errno = ERRNUM (for callers that answer by errno). */
int copy_error_errno (char **err, int errnum, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#endif /* VDM_COPY_ENDPOINT_H */
