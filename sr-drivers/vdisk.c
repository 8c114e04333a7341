/* libvdisk core: format detection, chains, bounds checks, flattened
 * maps and error reporting.  The formats themselves live in raw.c, vhd.c
 * and qcow2.c. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdisk-internal.h"

/* Probed in this order; raw is the fallback for anything unrecognised. */
static const struct vdisk_format_ops *const formats[] = {
  &vdisk_qcow2_ops,
  &vdisk_vhd_ops,
};

static const struct vdisk_format_ops *
ops_of (int format)
{
  switch (format) {
  case VDISK_FORMAT_RAW: return &vdisk_raw_ops;
  case VDISK_FORMAT_VHD: return &vdisk_vhd_ops;
  case VDISK_FORMAT_QCOW2: return &vdisk_qcow2_ops;
  }
  return NULL;
}

/* ---- errors ---- */

static __thread char error_msg[1024];
static __thread int error_errno;

const char *
vdisk_get_error (void)
{
  return error_msg[0] ? error_msg : "no error";
}

int
vdisk_get_errno (void)
{
  return error_errno;
}

void
vdisk_set_error (int errnum, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (error_msg, sizeof error_msg, fmt, ap);
  va_end (ap);
  error_errno = errnum ? errnum : EIO;
  errno = error_errno;
}

void
vdisk_error (struct vdisk *d, int errnum, const char *fmt, ...)
{
  char msg[768];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  vdisk_set_error (errnum, "%s: %s: %s", d->ops->name, d->path, msg);
}

/* ---- names ---- */

const char *
vdisk_format_name (enum vdisk_format format)
{
  const struct vdisk_format_ops *ops = ops_of (format);
  return ops ? ops->name : "unknown";
}

int
vdisk_format_from_name (const char *name)
{
  if (strcmp (name, "raw") == 0)
    return VDISK_FORMAT_RAW;
  if (strcmp (name, "vhd") == 0 || strcmp (name, "vpc") == 0)
    return VDISK_FORMAT_VHD;
  if (strcmp (name, "qcow2") == 0)
    return VDISK_FORMAT_QCOW2;
  return -1;
}

/* ---- opening ---- */

static const struct vdisk_format_ops *
probe (struct vfile *f)
{
  uint8_t head[4096], tail[512];
  uint64_t size;
  if (vfile_get_size (f, &size) == -1)
    return NULL;
  size_t hl = size < sizeof head ? size : sizeof head;
  size_t tl = size < sizeof tail ? size : sizeof tail;
  if (vfile_pread (f, head, hl, 0) == -1
      || vfile_pread (f, tail, tl, size - tl) == -1)
    return NULL;
  for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
    if (formats[i]->probe (head, hl, tail, tl, size))
      return formats[i];
  return &vdisk_raw_ops;
}

/* Resolve a recorded parent name: absolute as is, relative against the
 * child's directory (as qemu and vhd-util do). */
static char *
resolve_parent (const char *child, const char *name)
{
  char *p;
  if (name[0] == '/')
    return strdup (name);
  char *c = strdup (child);
  if (!c)
    return NULL;
  if (asprintf (&p, "%s/%s", dirname (c), name) == -1)
    p = NULL;
  free (c);
  return p;
}

/* How a chain is opened: the same for every layer. */
struct open_ctx
{
  unsigned flags;
  const char *confine; /* realpath of the confining directory, or NULL */
  const char *seen[VDISK_MAX_DEPTH + 1]; /* realpaths above this layer */
};

static struct vdisk *open_layer (const char *path, int format,
                                 struct open_ctx *ctx, unsigned depth);

/* Open D's parent from the candidate names the format found, as the
 * format D records for it. */
static int
open_parent (struct vdisk *d, struct open_ctx *ctx, unsigned depth)
{
  unsigned i;

  if (d->parent_format == VDISK_FORMAT_PROBE && ctx->confine) {
    vdisk_error (d, ENOTSUP,
                 "the backing file's format is not recorded (no "
                 "backing-format header extension), and formats are never "
                 "guessed inside %s",
                 ctx->confine);
    return -1;
  }
  ctx->seen[depth] = d->realpath;
  for (i = 0; i < d->n_parent_names; i++) {
    char *p = resolve_parent (d->path, d->parent_names[i]);
    if (!p) {
      vdisk_error (d, ENOMEM, "out of memory");
      return -1;
    }
    if (access (p, F_OK) == 0) {
      d->parent = open_layer (p, d->parent_format, ctx, depth + 1);
      if (!d->parent) {
        /* Say whose word the parent was opened on. */
        char why[768];
        snprintf (why, sizeof why, "%s", vdisk_get_error ());
        int e = vdisk_get_errno ();
        vdisk_error (d, e, "backing file \"%s\", opened as %s%s: %s",
                     d->parent_names[i], vdisk_format_name (d->parent_format),
                     d->parent_format == VDISK_FORMAT_PROBE ? " (probed)"
                     : d->ops->format == VDISK_FORMAT_VHD
                         ? " (a VHD's parent)"
                         : " (as the image records)",
                     why);
        free (p);
        return -1;
      }
      d->parent_path = p;
      d->info.parent_path = p;
      break;
    }
    free (p);
  }
  if (!d->parent) {
    vdisk_error (d, ENOENT, "parent image \"%s\" not found",
                 d->parent_names[0]);
    return -1;
  }
  if (d->ops->attach_parent && d->ops->attach_parent (d) == -1)
    return -1;
  d->info.chain_depth = d->parent->info.chain_depth + 1;
  return 0;
}

/* Whether canonical PATH is a file directly in canonical directory DIR,
 * named as an image of FORMAT is in a confining directory: not hidden,
 * and ending in ".<format>" (raw, vhd, qcow2).  So a layer is always
 * opened as what its name says, whoever named it, and no other file of
 * the directory (an SR's database, a file being deleted) can be one. */
static bool
is_image_in (const char *path, const char *dir, int format)
{
  size_t n = strlen (dir);
  if (n == 1 && dir[0] == '/')
    n = 0;
  if (strncmp (path, dir, n) != 0 || path[n] != '/'
      || strchr (path + n + 1, '/') != NULL)
    return false;
  const char *name = path + n + 1, *dot = strrchr (name, '.');
  return name[0] != '.' && dot && dot != name
         && vdisk_format_from_name (dot + 1) == format
         && strcmp (dot + 1, "vpc") != 0;
}

static void free_layer (struct vdisk *d);

static struct vdisk *
open_layer (const char *path, int format, struct open_ctx *ctx, unsigned depth)
{
  struct vdisk *d = calloc (1, sizeof *d);
  if (!d) {
    vdisk_set_error (ENOMEM, "%s: out of memory", path);
    return NULL;
  }
  d->file.fd = -1;
  d->flags = depth == 0 ? ctx->flags : ctx->flags & ~VDISK_OPEN_RDWR;
  d->parent_format = VDISK_FORMAT_PROBE;
  d->path = strdup (path);
  d->realpath = realpath (path, NULL);
  if (!d->path || !d->realpath) {
    vdisk_set_error (errno, "%s: %s", path, strerror (errno));
    goto fail;
  }
  if (ctx->confine && !is_image_in (d->realpath, ctx->confine, format)) {
    vdisk_set_error (EXDEV,
                     "%s: is %s: not a %s image's name directly in %s (a "
                     "confined chain stays in its directory, and a file is "
                     "opened only as the format its name ends in)",
                     path, d->realpath,
                     format == VDISK_FORMAT_PROBE ? "known"
                                                  : vdisk_format_name (format),
                     ctx->confine);
    goto fail;
  }
  /* A chain that comes back to an image already in it would recurse
   * forever: refuse it, naming the loop. */
  for (unsigned i = 0; i < depth; i++)
    if (strcmp (ctx->seen[i], d->realpath) == 0) {
      vdisk_set_error (ELOOP, "%s: backing chain loops back to %s", path,
                       ctx->seen[i]);
      goto fail;
    }
  if (depth >= VDISK_MAX_DEPTH) {
    vdisk_set_error (ELOOP, "%s: backing chain deeper than %d images", path,
                     VDISK_MAX_DEPTH);
    goto fail;
  }
  if (vfile_open (&d->file, path, d->flags & VDISK_OPEN_RDWR,
                  !(d->flags & VDISK_OPEN_BUFFERED))
      == -1)
    goto fail;
  if (format == VDISK_FORMAT_PROBE) {
    d->ops = probe (&d->file);
    d->info.probed = true;
  }
  else
    d->ops = ops_of (format);
  if (!d->ops)
    goto fail;
  d->info.format = d->ops->format;
  d->info.format_name = d->ops->name;
  if (d->ops->open (d) == -1)
    goto fail;
  d->info.virtual_size = d->size;
  if (d->n_parent_names > 0) {
    d->info.parent_name = d->parent_names[0];
    if (d->parent_format != VDISK_FORMAT_PROBE)
      d->info.parent_format_name = vdisk_format_name (d->parent_format);
    if (!(d->flags & VDISK_OPEN_NO_PARENT)
        && open_parent (d, ctx, depth) == -1)
      goto fail;
  }
  return d;

fail:
  free_layer (d);
  return NULL;
}

struct vdisk *
vdisk_open_as (const char *path, unsigned flags, int format,
               const char *confine)
{
  struct open_ctx ctx = { .flags = flags };
  struct vdisk *d;

  if (format != VDISK_FORMAT_PROBE && !ops_of (format)) {
    vdisk_set_error (EINVAL, "%s: unknown format %d", path, format);
    return NULL;
  }
  if (confine) {
    if (format == VDISK_FORMAT_PROBE) {
      vdisk_set_error (EINVAL,
                       "%s: the format must be given: formats are never "
                       "guessed inside %s",
                       path, confine);
      return NULL;
    }
    char *dir = realpath (confine, NULL);
    if (!dir) {
      vdisk_set_error (errno, "%s: %s", confine, strerror (errno));
      return NULL;
    }
    ctx.confine = dir;
  }
  d = open_layer (path, format, &ctx, 0);
  free ((char *)ctx.confine);
  return d;
}

struct vdisk *
vdisk_open (const char *path, unsigned flags)
{
  return vdisk_open_as (path, flags, VDISK_FORMAT_PROBE, NULL);
}

static void
free_layer (struct vdisk *d)
{
  if (d->parent)
    vdisk_close (d->parent);
  if (d->priv && d->ops && d->ops->close)
    d->ops->close (d);
  if (d->file.path)
    vfile_close (&d->file);
  for (unsigned i = 0; i < d->n_parent_names; i++)
    free (d->parent_names[i]);
  free (d->parent_path);
  free (d->path);
  free (d->realpath);
  free (d);
}

int
vdisk_close (struct vdisk *d)
{
  int r = 0;
  if (!d)
    return 0;
  if (vdisk_is_writable (d))
    r = vdisk_flush (d);
  free_layer (d);
  return r;
}

/* ---- creating ---- */

int
vdisk_create (const char *path, enum vdisk_format format, uint64_t size,
              const struct vdisk_create_params *params)
{
  const struct vdisk_format_ops *ops = ops_of (format);
  struct vdisk_create_params none = { 0 };
  struct vdisk *parent = NULL;
  struct vfile f;
  int r = -1;

  if (!params)
    params = &none;
  if (params->parent) {
    if (format == VDISK_FORMAT_RAW) {
      vdisk_set_error (EINVAL, "%s: raw images cannot have a parent", path);
      return -1;
    }
    char *p = resolve_parent (path, params->parent);
    if (!p) {
      vdisk_set_error (ENOMEM, "%s: out of memory", path);
      return -1;
    }
    /* A VHD's parent is a VHD; a qcow2's is what the caller says. */
    int pf = format == VDISK_FORMAT_VHD ? VDISK_FORMAT_VHD : VDISK_FORMAT_PROBE;
    if (params->parent_format
        && (pf = vdisk_format_from_name (params->parent_format)) == -1) {
      vdisk_set_error (ENOTSUP, "%s: unknown backing format \"%s\"", path,
                       params->parent_format);
      free (p);
      return -1;
    }
    if (format == VDISK_FORMAT_VHD && pf != VDISK_FORMAT_VHD) {
      vdisk_set_error (EINVAL,
                       "%s: a differencing VHD's parent is a VHD, not %s",
                       path, params->parent_format);
      free (p);
      return -1;
    }
    parent = vdisk_open_as (p, 0, pf, params->confine);
    free (p);
    if (!parent)
      return -1;
    if (size == 0)
      size = vdisk_get_size (parent);
  }
  if (size == 0) {
    vdisk_set_error (EINVAL, "%s: virtual size must be greater than 0", path);
    goto out;
  }
  /* One size rule for every format, qemu-img's: whole 512-byte sectors.
   * A header that said 1000001 would be read as 999936 by qemu, which
   * rounds down, and the tail would be lost. */
  if (size > UINT64_MAX - 511) {
    vdisk_set_error (EFBIG, "%s: virtual size %" PRIu64 " is too big", path,
                     size);
    goto out;
  }
  size = (size + 511) & ~(uint64_t)511;
  if (vfile_create (&f, path, true) == -1)
    goto out;
  r = ops->create (&f, size, params, parent);
  if (r == 0)
    r = vfile_flush (&f);
  vfile_close (&f);
  if (r == -1) {
    /* Keep the error of the failure, not of the cleanup. */
    unlink (path);
  }
out:
  vdisk_close (parent);
  return r;
}

/* ---- accessors ---- */

unsigned
vdisk_warn_probed (struct vdisk *d, const char *prefix)
{
  unsigned n = 0;
  /* As qemu: a top layer guessed qcow2 or VHD by its magic is what its
   * user named; a guessed raw one, or any guessed backing file, is not. */
  for (bool top = true; d; d = d->parent, top = false)
    if (d->info.probed && (!top || d->ops == &vdisk_raw_ops)) {
      fprintf (stderr,
               "%s: warning: the format of %s was not given and probing "
               "guessed %s\n",
               prefix, d->path, d->ops->name);
      n++;
    }
  return n;
}

uint64_t
vdisk_get_size (struct vdisk *d)
{
  return d->size;
}

bool
vdisk_is_writable (struct vdisk *d)
{
  return d->flags & VDISK_OPEN_RDWR;
}

int
vdisk_get_plain_fd (struct vdisk *d)
{
  return d->ops == &vdisk_raw_ops && !d->parent ? d->file.fd : -1;
}

struct vdisk *
vdisk_get_parent (struct vdisk *d)
{
  return d->parent;
}

void
vdisk_get_info (struct vdisk *d, struct vdisk_info *info)
{
  struct stat st;
  *info = d->info;
  if (fstat (d->file.fd, &st) == 0) {
    info->file_size = st.st_size;
    info->allocated_bytes = (uint64_t)st.st_blocks * 512;
  }
}

/* ---- data ---- */

static int
check_range (struct vdisk *d, uint64_t count, uint64_t offset, bool write)
{
  if (write && !vdisk_is_writable (d)) {
    vdisk_error (d, EROFS, "image is open read-only");
    return -1;
  }
  if (offset > d->size || count > d->size - offset) {
    vdisk_error (d, EINVAL,
                 "request of %" PRIu64 " bytes at %" PRIu64
                 " lies beyond the virtual size %" PRIu64,
                 count, offset, d->size);
    return -1;
  }
  return 0;
}

int
vdisk_pread (struct vdisk *d, void *buf, uint64_t count, uint64_t offset)
{
  if (check_range (d, count, offset, false) == -1)
    return -1;
  return count ? d->ops->pread (d, buf, count, offset) : 0;
}

int
vdisk_pwrite (struct vdisk *d, const void *buf, uint64_t count,
              uint64_t offset, unsigned flags)
{
  if (check_range (d, count, offset, true) == -1)
    return -1;
  if (count && d->ops->pwrite (d, buf, count, offset, flags) == -1)
    return -1;
  return (flags & VDISK_FUA) ? vdisk_flush (d) : 0;
}

int
vdisk_zero (struct vdisk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  if (check_range (d, count, offset, true) == -1)
    return -1;
  if (count && d->ops->zero (d, count, offset, flags) == -1)
    return -1;
  return (flags & VDISK_FUA) ? vdisk_flush (d) : 0;
}

int
vdisk_trim (struct vdisk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  if (check_range (d, count, offset, true) == -1)
    return -1;
  if (count && d->ops->trim && d->ops->trim (d, count, offset, flags) == -1)
    return -1;
  return (flags & VDISK_FUA) ? vdisk_flush (d) : 0;
}

int
vdisk_flush (struct vdisk *d)
{
  if (!vdisk_is_writable (d))
    return 0;
  return d->ops->flush (d);
}

int
vdisk_repair_leaks (struct vdisk *d, uint64_t *freed)
{
  uint64_t n = 0;
  int r = 0;

  if (vdisk_is_writable (d) && d->ops->repair_leaks)
    r = d->ops->repair_leaks (d, &n);
  if (freed)
    *freed = n;
  return r;
}

void
vdisk_start_writeback (struct vdisk *d)
{
  if (vdisk_is_writable (d))
    vfile_start_writeback (&d->file);
}

int
vdisk_read_parent (struct vdisk *d, void *buf, uint64_t count, uint64_t offset)
{
  struct vdisk *p = d->parent;
  uint64_t n = 0;
  /* A parent smaller than its child reads as zero past its end. */
  if (p && offset < p->size)
    n = count < p->size - offset ? count : p->size - offset;
  if (n && p->ops->pread (p, buf, n, offset) == -1)
    return -1;
  memset ((char *)buf + n, 0, count - n);
  return 0;
}

/* ---- maps ---- */

int
vdisk_extents_append (struct vdisk_extents *e, uint64_t offset,
                      uint64_t length, enum vdisk_extent_type type,
                      int64_t host_offset, uint32_t depth)
{
  if (length == 0)
    return 0;
  if (e->len > 0) {
    struct vdisk_extent *l = &e->v[e->len - 1];
    bool host_ok = (l->host_offset < 0 && host_offset < 0)
                   || (l->host_offset >= 0
                       && l->host_offset + (int64_t)l->length == host_offset);
    if (l->type == type && l->depth == depth && l->offset + l->length == offset
        && host_ok) {
      l->length += length;
      return 0;
    }
  }
  if (e->len == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 64;
    struct vdisk_extent *v = realloc (e->v, cap * sizeof *v);
    if (!v) {
      vdisk_set_error (ENOMEM, "out of memory growing an extent list");
      return -1;
    }
    e->v = v;
    e->cap = cap;
  }
  e->v[e->len++]
      = (struct vdisk_extent){ offset, length, host_offset, type, depth };
  return 0;
}

void
vdisk_extents_reset (struct vdisk_extents *e)
{
  e->len = 0;
}

void
vdisk_extents_free (struct vdisk_extents *e)
{
  free (e->v);
  e->v = NULL;
  e->len = e->cap = 0;
}

/* Flatten: map layer D; where it has holes, descend into the parent.
 * Each layer is asked only about the ranges the layers above leave open,
 * so the cost stays proportional to the metadata of what is allocated. */
static int
map_flat (struct vdisk *d, uint64_t offset, uint64_t count, uint32_t depth,
          struct vdisk_extents *out)
{
  struct vdisk_extents layer = { 0 };
  int r = -1;

  if (d->ops->map (d, offset, count, &layer) == -1)
    goto out;
  for (size_t i = 0; i < layer.len; i++) {
    struct vdisk_extent *x = &layer.v[i];
    struct vdisk *p = d->parent;
    if (x->type != VDISK_EXTENT_HOLE || !p) {
      if (vdisk_extents_append (out, x->offset, x->length, x->type,
                                x->host_offset, depth)
          == -1)
        goto out;
      continue;
    }
    /* Past the parent's end the chain reads as zero: a hole at this
     * layer's own depth, as qemu-img map reports it. */
    uint64_t in = 0;
    if (x->offset < p->size)
      in = x->length < p->size - x->offset ? x->length : p->size - x->offset;
    if (in && map_flat (p, x->offset, in, depth + 1, out) == -1)
      goto out;
    if (in < x->length
        && vdisk_extents_append (out, x->offset + in, x->length - in,
                                 VDISK_EXTENT_HOLE, -1, depth)
               == -1)
      goto out;
  }
  r = 0;
out:
  vdisk_extents_free (&layer);
  return r;
}

int
vdisk_map (struct vdisk *d, uint64_t offset, uint64_t count, unsigned flags,
           struct vdisk_extents *out)
{
  if (check_range (d, count, offset, false) == -1)
    return -1;
  if (count == 0)
    return 0;
  if (flags & VDISK_MAP_LAYER) {
    struct vdisk_extents layer = { 0 };
    int r = d->ops->map (d, offset, count, &layer);
    for (size_t i = 0; r == 0 && i < layer.len; i++)
      r = vdisk_extents_append (out, layer.v[i].offset, layer.v[i].length,
                                layer.v[i].type, layer.v[i].host_offset, 0);
    vdisk_extents_free (&layer);
    return r;
  }
  return map_flat (d, offset, count, 0, out);
}
