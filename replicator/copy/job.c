/* A copy job: "copy this to that" (copy.h), the one entry point.
 *
 * A job opens its two ends by kind (the table below; each kind a file,
 * endpoint-*.c), then either runs the engine (copy_run) once over the
 * flattened ends, or, keeping a chain, once per layer, bottom first:
 * each source layer read layer-only (a hole means "the parent's"), into
 * a destination layer the destination end creates over the one before
 * (only the bottom reads as zero), or is fed a source stream.  Closing
 * finishes the stream, flushes and closes the destination (an error
 * there fails the copy), and only then removes the journal, so a kill
 * before the destination is complete resumes.  A failed job's
 * destination removes what it created, unless a journal keeps it.
 *
 * Errors keep their errno (KEEP_ERRNO) through the cleanup that
 * follows them, for callers that answer by it (HTTP statuses). */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"

static const struct copy_side_ops *const kinds[] = {
  [COPY_IMAGE] = &copy_side_image,
  [COPY_NBD] = &copy_side_nbd,
  [COPY_VDI] = &copy_side_vdi,
  [COPY_STREAM] = &copy_side_stream,
};

struct copy_job
{
  struct copy_side src, dst;
  struct copy_params params; /* the caller's; the engine's differ */
  bool keep_chain;
  bool dest_zero;
  uint64_t size;
  struct copy_stats stats;
  /* A kept chain's progress: layers done so far, and all of them. */
  uint64_t chain_done, chain_total;
};

/* Run STMT (a cleanup after a failure) keeping the failure's errno. */
#define KEEP_ERRNO(stmt)                                                      \
  do {                                                                        \
    int saved_errno_ = errno;                                                 \
    stmt;                                                                     \
    errno = saved_errno_;                                                     \
  } while (0)

static int
side_init (struct copy_side *s, const struct copy_spec *spec,
           const struct copy_params *params, char **err)
{
  if ((unsigned)spec->kind >= sizeof kinds / sizeof kinds[0])
    return copy_error_errno (err, EINVAL, "unknown endpoint kind %d",
                             (int)spec->kind);
  s->ops = kinds[spec->kind];
  s->spec = *spec;
  s->params = params;
  return 0;
}

/* Whether the copy can keep a chain between these ends. */
static int
check_chain (struct copy_job *j, char **err)
{
  j->keep_chain = j->src.spec.keep_chain || j->dst.spec.keep_chain;
  if (!j->keep_chain)
    return 0;
  if ((j->src.spec.kind != COPY_IMAGE && j->src.spec.kind != COPY_VDI)
      || !j->dst.ops->make_layer)
    return copy_error_errno (err, EINVAL,
                             "a chain is kept only between image files and "
                             "VDIs");
  if (j->params.journal)
    return copy_error_errno (err, EINVAL,
                             "a kept chain cannot resume from a journal yet");
  return 0;
}

/* Open the ends; the destination is made later, layer by layer, when a
 * chain is kept. */
static int
open_ends (struct copy_job *j, char **err)
{
  struct copy_side *src = &j->src, *dst = &j->dst;
  bool vhd_out
      = dst->spec.kind == COPY_STREAM && dst->spec.stream == COPY_STREAM_VHD;

  if (src->ops->open_source (src, err) == -1
      || (vhd_out && copy_stream_vhd_source (src, src->disk, err) == -1))
    return -1;
  if (src->spec.kind == COPY_STREAM) {
    j->size = src->spec.size;
    if (!j->size && dst->spec.kind == COPY_IMAGE)
      return copy_error_errno (err, EINVAL,
                               "%s: a stream into a new image needs its size",
                               dst->spec.path);
    if (dst->ops->open_dest (dst, j->size, err) == -1)
      return -1;
    if (!j->size || j->size > copy_endpoint_size (dst->ep))
      j->size = copy_endpoint_size (dst->ep);
    j->dest_zero = j->params.dest_is_zero || dst->fresh;
    return copy_stream_start (src, dst->ep, j->size, j->dest_zero, &j->stats,
                              err);
  }
  j->size = copy_endpoint_size (src->ep);
  dst->src_top = src->disk;
  if (j->keep_chain)
    return 0;
  if (dst->ops->open_dest (dst, j->size, err) == -1)
    return -1;
  j->dest_zero = j->params.dest_is_zero || dst->fresh;
  return 0;
}

struct copy_job *
copy_job_open (const struct copy_spec *src, const struct copy_spec *dst,
               const struct copy_params *params, char **err)
{
  struct copy_job *j = calloc (1, sizeof *j);

  if (!j) {
    copy_error_errno (err, ENOMEM, "out of memory");
    return NULL;
  }
  j->params = *params;
  if (side_init (&j->src, src, &j->params, err) == -1
      || side_init (&j->dst, dst, &j->params, err) == -1
      || check_chain (j, err) == -1 || open_ends (j, err) == -1) {
    KEEP_ERRNO (copy_job_close (j, false, NULL, NULL));
    return NULL;
  }
  return j;
}

uint64_t
copy_job_size (struct copy_job *j)
{
  return j->size;
}

uint64_t
copy_job_length (struct copy_job *j)
{
  return j->dst.spec.kind == COPY_STREAM ? copy_endpoint_size (j->src.ep)
                                         : j->size;
}

bool
copy_job_dest_is_zero (struct copy_job *j)
{
  return j->dest_zero;
}

/* A kept chain's progress: the layers done, plus this one's. */
static void
chain_progress (const struct copy_progress *pr, void *opaque)
{
  struct copy_job *j = opaque;
  struct copy_progress all = { j->chain_done + pr->done, j->chain_total };
  j->params.progress (&all, j->params.progress_opaque);
}

/* One engine run from SRC into DST; its stats go into the job's. */
static int
run_engine (struct copy_job *j, struct copy_endpoint *src,
            struct copy_endpoint *dst, bool dest_zero, bool layer, char **err)
{
  struct copy_params p = j->params;
  struct copy_stats st = { 0 };
  int r;

  p.dest_is_zero = dest_zero;
  p.holes_fall_through = layer;
  if (layer && p.progress) {
    p.progress = chain_progress;
    p.progress_opaque = j;
  }
  /* The journal goes when the destination is closed (copy_job_close). */
  p.keep_journal = true;
  r = copy_run (src, dst, &p, &st, err);
  copy_stats_add (&j->stats, &st);
  return r;
}

/* The label of layer I of N (top first) for its destination: the
 * source's word (a VDI's name), else its file's name. */
static char *
layer_label (struct copy_job *j, char **labels, struct vdisk **layers,
             unsigned i)
{
  struct vdisk_info ci;
  char *b, *r;

  if (labels && labels[i])
    return strdup (labels[i]);
  if (i == 0)
    b = strdup (j->src.spec.path ? j->src.spec.path : "");
  else {
    vdisk_get_info (layers[i - 1], &ci);
    b = strdup (ci.parent_path ? ci.parent_path : "");
  }
  r = b ? strdup (basename (b)) : NULL;
  free (b);
  return r;
}

/* Copy layer I of N (top first) into a new destination layer. */
static int
copy_layer (struct copy_job *j, struct vdisk **layers, unsigned i, unsigned n,
            char **labels, char **err)
{
  struct copy_side *dst = &j->dst;
  struct copy_layer l = {
    .disk = layers[i],
    .child = i > 0 ? layers[i - 1] : NULL,
    .top = i == 0,
    .bottom = i == n - 1,
  };
  char *label = layer_label (j, labels, layers, i);
  struct copy_endpoint *se = NULL;
  int r = -1;

  l.label = label;
  if (dst->ops->make_layer (dst, &l, err) == 0
      && (se = copy_endpoint_local (layers[i], true, err)) != NULL)
    r = run_engine (j, se, dst->ep, l.bottom, true, err);
  copy_endpoint_close (se, NULL);
  if (dst->ep && dst->ops->close_layer (dst, r == 0 ? err : NULL) == -1)
    r = -1;
  j->chain_done += vdisk_get_size (layers[i]);
  free (label);
  return r;
}

static int
run_chain (struct copy_job *j, char **err)
{
  struct vdisk *layers[VDISK_MAX_DEPTH + 1];
  char **labels = NULL;
  unsigned n = 0;
  int r = 0;

  for (struct vdisk *l = j->src.disk; l && n <= VDISK_MAX_DEPTH;
       l = vdisk_get_parent (l))
    layers[n++] = l;
  for (unsigned i = 0; i < n; i++)
    j->chain_total += vdisk_get_size (layers[i]);
  if (j->src.ops->labels && !(labels = j->src.ops->labels (&j->src, n, err)))
    return -1;
  for (unsigned i = n; i-- > 0 && r == 0;)
    r = copy_layer (j, layers, i, n, labels, err);
  for (unsigned i = 0; labels && i < n; i++)
    free (labels[i]);
  free (labels);
  return r;
}

int
copy_job_run (struct copy_job *j, char **err)
{
  if (j->src.spec.kind == COPY_STREAM)
    return copy_error_errno (err, EINVAL, "a source stream is fed, not run");
  if (j->keep_chain)
    return run_chain (j, err);
  return run_engine (j, j->src.ep, j->dst.ep, j->dest_zero, false, err);
}

int
copy_job_feed (struct copy_job *j, const void *buf, size_t len, char **err)
{
  if (j->src.spec.kind != COPY_STREAM)
    return copy_error_errno (err, EINVAL, "only a source stream is fed");
  return copy_stream_feed (&j->src, buf, len, err);
}

int
copy_job_close (struct copy_job *j, bool ok, struct copy_stats *stats,
                char **err)
{
  const char *journal = j->params.journal;
  int r = 0;

  if (ok && j->src.spec.kind == COPY_STREAM && j->src.priv
      && copy_stream_finish (&j->src, err) == -1)
    r = -1, ok = false;
  if (j->dst.ops && j->dst.ops->close (&j->dst, ok, ok ? err : NULL) == -1)
    r = -1, ok = false;
  if (j->src.ops)
    KEEP_ERRNO (j->src.ops->close (&j->src, true, NULL));
  /* The journal goes last, once the destination is complete and
   * closed. */
  if (ok && journal && !j->params.keep_journal
      && copy_journal_remove (journal) == -1)
    r = copy_error_errno (err, errno, "journal %s: %s", journal,
                          strerror (errno));
  if (stats)
    *stats = j->stats;
  free (j);
  return r;
}

int
copy_simple (const struct copy_spec *src, const struct copy_spec *dst,
             const struct copy_params *params, struct copy_stats *stats,
             char **err)
{
  struct copy_job *j = copy_job_open (src, dst, params, err);
  int r;

  if (stats)
    memset (stats, 0, sizeof *stats);
  if (!j)
    return -1;
  r = copy_job_run (j, err);
  if (r == -1)
    KEEP_ERRNO (copy_job_close (j, false, stats, NULL));
  else
    r = copy_job_close (j, true, stats, err);
  return r;
}
