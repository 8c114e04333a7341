/* The VDI end of a job (COPY_VDI): a VDI of an SR (sr.h), opened by the
 * SR and its uuid with its chain, read and written through the local
 * endpoint (endpoint-local.c).  The SR says the format and confines the
 * chain to itself, so nothing here probes or follows a path.
 *
 * As a source: the chain flattened, or (keeping it) layer by layer, each
 * layer labelled with its VDI's name.  As a flattened destination: a VDI
 * that exists (its creator recorded it, as the daemon's jobs do), known
 * to read as zero when it has no parent and nothing stored, so that a
 * fresh VDI is never written with zeroes.  Keeping a chain: a new VDI per
 * layer, bottom first, each created as the child of the one before
 * (sr_vdi_create_params.parent_uuid), the top with the uuid the caller
 * gave; a failed copy destroys them again, top first. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "sr.h"

struct vdi_end
{
  char made[VDISK_MAX_DEPTH + 1][SR_UUID_LEN + 1]; /* VDIs created */
  unsigned n_made;
};

static int
vdi_open (struct copy_side *s, unsigned flags, char **err)
{
  s->disk = sr_vdi_open (s->spec.sr, s->spec.vdi, flags | s->spec.open_flags);
  if (!s->disk)
    return copy_vdisk_error (err);
  s->ep = copy_endpoint_local (s->disk, false, err);
  return s->ep ? 0 : -1;
}

static int
vdi_open_source (struct copy_side *s, char **err)
{
  return vdi_open (s, 0, err);
}

static int
vdi_open_dest (struct copy_side *s, uint64_t size, char **err)
{
  if (vdi_open (s, VDISK_OPEN_RDWR, err) == -1)
    return -1;
  s->fresh = s->params->dest_is_zero;
  if (!s->fresh && copy_disk_reads_zero (s->disk, &s->fresh, err) == -1)
    return -1;
  return 0;
}

/* The name labels of the VDIs of the source chain, top first. */
static char **
vdi_labels (struct copy_side *s, unsigned n, char **err)
{
  char **labels = calloc (n, sizeof *labels);
  struct sr_vdi *v
      = labels ? sr_vdi_get_by_uuid (s->spec.sr, s->spec.vdi) : NULL;

  if (!labels) {
    copy_error_errno (err, ENOMEM, "out of memory");
    return NULL;
  }
  for (unsigned i = 0; v && i < n; i++) {
    struct sr_vdi *parent = NULL;
    labels[i] = strdup (v->name_label);
    if (v->parent_uuid[0])
      parent = sr_vdi_get_by_uuid (s->spec.sr, v->parent_uuid);
    sr_vdi_free (v);
    v = parent;
  }
  sr_vdi_free (v);
  return labels;
}

static int
vdi_make_layer (struct copy_side *s, const struct copy_layer *l, char **err)
{
  struct vdi_end *ve = s->priv;
  struct vdisk_info top;
  int format = s->spec.format;
  struct sr_vdi_create_params cp = { 0 };
  struct sr_vdi *v;

  if (!ve && !(ve = s->priv = calloc (1, sizeof *ve)))
    return copy_error_errno (err, ENOMEM, "out of memory");
  vdisk_get_info (s->src_top, &top);
  if (format < 0)
    format = top.format;
  if (format == VDISK_FORMAT_RAW && !(l->top && l->bottom))
    return copy_error_errno (err, EINVAL,
                             "keeping the chain needs a destination format "
                             "with parents (vhd or qcow2)");
  if (ve->n_made > 0)
    cp.parent_uuid = ve->made[ve->n_made - 1];
  if (l->top)
    cp.uuid = s->spec.vdi;
  v = sr_vdi_create (s->spec.sr, l->label ? l->label : "", format,
                     vdisk_get_size (l->disk), &cp);
  if (!v)
    return copy_vdisk_error (err);
  strcpy (ve->made[ve->n_made++], v->uuid);
  s->disk = sr_vdi_open (s->spec.sr, v->uuid,
                         VDISK_OPEN_RDWR | s->spec.open_flags);
  sr_vdi_free (v);
  if (!s->disk)
    return copy_vdisk_error (err);
  s->ep = copy_endpoint_local (s->disk, false, err);
  return s->ep ? 0 : -1;
}

static int
vdi_close (struct copy_side *s, bool ok, char **err)
{
  struct vdi_end *ve = s->priv;
  int r = copy_side_close_disk (s, ok ? err : NULL);

  if (ve && !ok)
    for (unsigned i = ve->n_made; i-- > 0;)
      sr_vdi_destroy (s->spec.sr, ve->made[i]);
  free (ve);
  s->priv = NULL;
  return r;
}

const struct copy_side_ops copy_side_vdi = {
  .open_source = vdi_open_source,
  .open_dest = vdi_open_dest,
  .labels = vdi_labels,
  .make_layer = vdi_make_layer,
  .close_layer = copy_side_close_disk,
  .close = vdi_close,
};
