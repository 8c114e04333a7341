/* The image end of a job (COPY_IMAGE): a file of any format libvdisk
 * opens, read and written through the local endpoint (endpoint-local.c).
 *
 * As a source it is opened in the format its owner gave (or probed,
 * with a warning).  As a destination it is created, in the format given
 * or named by its extension; an existing file is refused unless the
 * caller says to overwrite it.  With a journal, the journal exists
 * before the destination does, so that a kill at any point leaves
 * either nothing or a journal to resume with; an empty journal is one
 * whose copy never started, and its destination (if the kill came after
 * creating it) is ours to replace.  Keeping a chain, each lower layer
 * goes beside the destination, named after its source layer with the
 * destination format's extension, and its child records it by that
 * relative name.  What the end created is removed if the copy fails,
 * unless a journal keeps it for resuming. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endpoint.h"

struct image
{
  char *made[VDISK_MAX_DEPTH + 1]; /* files created, bottom first */
  unsigned n_made;
  int format;        /* of the destination */
  char *parent_name; /* what the next layer records as its parent */
};

static int
format_from_extension (const char *path)
{
  const char *dot = strrchr (path, '.');
  if (dot && strcmp (dot, ".vhd") == 0)
    return VDISK_FORMAT_VHD;
  if (dot && strcmp (dot, ".qcow2") == 0)
    return VDISK_FORMAT_QCOW2;
  return VDISK_FORMAT_RAW; /* .raw, .img, anything else */
}

static const char *
extension_of (int format)
{
  return format == VDISK_FORMAT_VHD     ? ".vhd"
         : format == VDISK_FORMAT_QCOW2 ? ".qcow2"
                                        : ".raw";
}

static struct image *
image_of (struct copy_side *s, char **err)
{
  if (!s->priv) {
    struct image *im = calloc (1, sizeof *im);
    if (!im) {
      copy_error_errno (err, ENOMEM, "out of memory");
      return NULL;
    }
    im->format = s->spec.format >= 0 ? s->spec.format
                                     : format_from_extension (s->spec.path);
    s->priv = im;
  }
  return s->priv;
}

static int
image_open_source (struct copy_side *s, char **err)
{
  s->disk
      = vdisk_open_as (s->spec.path, s->spec.open_flags, s->spec.format, NULL);
  if (!s->disk)
    return copy_vdisk_error (err);
  if (s->spec.probe_warning)
    vdisk_warn_probed (s->disk, s->spec.probe_warning);
  s->ep = copy_endpoint_local (s->disk, false, err);
  return s->ep ? 0 : -1;
}

/* Create PATH (recording it for removal); a PARENT is of the same
 * format, and the child records so. */
static int
create_image (struct image *im, const char *path, uint64_t size,
              const char *parent, char **err)
{
  struct vdisk_create_params cp = {
    .parent = parent,
    .parent_format = parent ? vdisk_format_name (im->format) : NULL,
  };
  char *copy = strdup (path);
  if (!copy)
    return copy_error_errno (err, ENOMEM, "out of memory");
  if (vdisk_create (path, im->format, size, &cp) == -1) {
    free (copy);
    return copy_vdisk_error (err);
  }
  im->made[im->n_made++] = copy;
  return 0;
}

/* Open PATH, just created or resumed, as the end's endpoint. */
static int
open_created (struct copy_side *s, struct image *im, const char *path,
              char **err)
{
  s->disk = vdisk_open_as (path, VDISK_OPEN_RDWR | s->spec.open_flags,
                           im->format, NULL);
  if (!s->disk)
    return copy_vdisk_error (err);
  s->ep = copy_endpoint_local (s->disk, false, err);
  s->fresh = true;
  return s->ep ? 0 : -1;
}

/* Make the journal (empty) before the destination exists. */
static int
create_journal (const char *path, char **err)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd == -1 || fsync (fd) == -1) {
    int e = errno;
    if (fd >= 0)
      close (fd);
    return copy_error_errno (err, e, "journal %s: %s", path, strerror (e));
  }
  close (fd);
  return 0;
}

static int
image_open_dest (struct copy_side *s, uint64_t size, char **err)
{
  struct image *im = image_of (s, err);
  const char *dst = s->spec.path, *journal = s->params->journal;
  struct stat jst;
  bool have_journal = journal && stat (journal, &jst) == 0;
  bool resuming = have_journal && jst.st_size > 0;

  if (!im)
    return -1;
  /* Refused before the journal is made: a refusal leaves nothing. */
  if (!have_journal && !s->spec.overwrite && access (dst, F_OK) == 0)
    return copy_error_errno (err, EEXIST,
                             "%s already exists (use --overwrite to replace "
                             "it)",
                             dst);
  if (journal && !have_journal && create_journal (journal, err) == -1)
    return -1;
  if (resuming) {
    if (access (dst, F_OK) != 0) {
      return copy_error_errno (err, ENOENT,
                               "journal %s exists but the destination %s "
                               "does not: remove the journal to start over",
                               journal, dst);
    }
    return open_created (s, im, dst, err);
  }
  if (access (dst, F_OK) == 0 && unlink (dst) == -1)
    return copy_error_errno (err, errno, "%s: %s", dst, strerror (errno));
  if (create_image (im, dst, size, NULL, err) == -1)
    return -1;
  return open_created (s, im, dst, err);
}

/* Where a lower layer goes: named after its source file (its child's
 * recorded parent) with the destination format's extension, in DST's
 * directory.  NAME is what its own child records. */
static int
layer_dest_name (struct vdisk *child, const char *dst, int format, char **name,
                 char **path)
{
  struct vdisk_info ci;
  vdisk_get_info (child, &ci);
  char *b = strdup (ci.parent_path);
  char *d = strdup (dst);
  int r = -1;
  if (b && d) {
    char *bn = basename (b);
    char *dot = strrchr (bn, '.');
    if (dot && dot != bn)
      *dot = '\0';
    if (asprintf (name, "%s%s", bn, extension_of (format)) != -1) {
      if (asprintf (path, "%s/%s", dirname (d), *name) != -1)
        r = 0;
      else {
        free (*name);
        *name = NULL;
      }
    }
  }
  free (b);
  free (d);
  return r;
}

static int
image_make_layer (struct copy_side *s, const struct copy_layer *l, char **err)
{
  struct image *im = image_of (s, err);
  char *name = NULL, *path = NULL;
  int r = -1;

  if (!im)
    return -1;
  if (im->format == VDISK_FORMAT_RAW)
    return copy_error_errno (err, EINVAL,
                             "--keep-chain needs a destination format with "
                             "parents (vhd or qcow2)");
  if (l->top)
    path = strdup (s->spec.path);
  else if (layer_dest_name (l->child, s->spec.path, im->format, &name, &path)
           == -1)
    path = NULL;
  if (!path)
    copy_error_errno (err, ENOMEM, "out of memory");
  else if (access (path, F_OK) == 0)
    copy_error_errno (err, EEXIST, "%s already exists", path);
  else if (create_image (im, path, vdisk_get_size (l->disk), im->parent_name,
                         err)
           == 0)
    r = open_created (s, im, path, err);
  free (im->parent_name);
  im->parent_name = name;
  free (path);
  return r;
}

static int
image_close (struct copy_side *s, bool ok, char **err)
{
  struct image *im = s->priv;
  int r = copy_side_close_disk (s, ok ? err : NULL);

  if (im) {
    /* A journal keeps the destination for resuming. */
    for (unsigned i = im->n_made; i-- > 0;) {
      if (!ok && !s->params->journal)
        unlink (im->made[i]);
      free (im->made[i]);
    }
    free (im->parent_name);
    free (im);
    s->priv = NULL;
  }
  return r;
}

const struct copy_side_ops copy_side_image = {
  .open_source = image_open_source,
  .open_dest = image_open_dest,
  .make_layer = image_make_layer,
  .close_layer = copy_side_close_disk,
  .close = image_close,
};
