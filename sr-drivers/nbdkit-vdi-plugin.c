/* nbdkit-vdi-plugin: serves one libvdisk image (raw, VHD, qcow2, with its
 * whole backing chain) over NBD, read-write, with extents taken from the
 * format's metadata.
 *
 * The image is opened once, before nbdkit starts serving, and shared by
 * every connection and every worker thread: libvdisk is thread-safe, so
 * all connections see each other's writes and one flush makes the whole
 * image durable.  That is what lets us advertise multi-conn.
 *
 * Two views of the one image, chosen when a handle is opened (the handle
 * is the view): the whole disk, read-write; and the top layer's map
 * (TOP_LAYER_EXPORT, read-only), whose extents are the top layer's own
 * (vdisk_map's VDISK_MAP_LAYER: HOLE = the layer does not hold it, the
 * layers below do) while its reads are the whole disk's.  The mirror
 * filter's sync=top follows that map.  A client connection chooses it by
 * its export name.  A context a filter opens for itself has no client
 * connection, and nbdkit 1.32 does not tell a plugin that context's
 * export name, so there the read-only flag chooses: read-only is the
 * layer's map (the mirror filter opens it so, with the export name for
 * the nbdkit versions that pass it), read-write the whole disk (the
 * mirror's copier).  .preconnect, which runs in a client connection's
 * thread before it opens, tells the two cases apart.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "vdisk.h"

static char *filename; /* absolute: nbdkit may chdir("/") when forking */
static int format = VDISK_FORMAT_PROBE; /* format=, the owner's word */
static char *confine;                   /* confine=DIR, absolute */
static bool readonly;                   /* readonly=true */
static bool buffered;                   /* cache=writeback: no O_DIRECT */
static struct vdisk *disk; /* opened in get_ready, shared by all handles */

/* The export name of the top layer's map (nbdkit-vdi-plugin(1)), and
 * how its description begins (the mirror filter checks it). */
#define TOP_LAYER_EXPORT "vdi:top-layer"
#define TOP_LAYER_DESCRIPTION "top layer of "

/* A handle: which view of the disk. */
struct view
{
  bool top_layer;
};
static struct view whole_disk = { false }, top_layer = { true };
static char *top_layer_description;

/* Set in a client connection's thread (see the top of the file). */
static __thread bool client_thread;

/* Report the libvdisk error of this thread through nbdkit: the message
 * (which already names the file and the structure) and the errno that
 * goes back to the client. */
static void
vdi_error (void)
{
  nbdkit_error ("%s", vdisk_get_error ());
  nbdkit_set_error (vdisk_get_errno ());
}

static void
vdi_unload (void)
{
  free (filename);
  free (confine);
  free (top_layer_description);
}

static int
vdi_config (const char *key, const char *value)
{
  if (strcmp (key, "file") == 0) {
    free (filename);
    filename = nbdkit_realpath (value);
    if (filename == NULL)
      return -1;
  }
  else if (strcmp (key, "format") == 0) {
    format = vdisk_format_from_name (value);
    if (format == -1) {
      nbdkit_error ("format=%s: expected raw, vhd (or vpc) or qcow2", value);
      return -1;
    }
  }
  else if (strcmp (key, "confine") == 0) {
    free (confine);
    confine = nbdkit_realpath (value);
    if (confine == NULL)
      return -1;
  }
  else if (strcmp (key, "readonly") == 0) {
    int r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    readonly = r;
  }
  else if (strcmp (key, "cache") == 0) {
    if (strcmp (value, "none") == 0)
      buffered = false;
    else if (strcmp (value, "writeback") == 0)
      buffered = true;
    else {
      nbdkit_error ("cache=%s: expected 'none' or 'writeback'", value);
      return -1;
    }
  }
  else {
    nbdkit_error ("unknown parameter '%s'", key);
    return -1;
  }
  return 0;
}

static int
vdi_config_complete (void)
{
  if (filename == NULL) {
    nbdkit_error ("you must supply the file=IMAGE parameter");
    return -1;
  }
  if (confine && format == VDISK_FORMAT_PROBE) {
    nbdkit_error ("confine=%s needs format=: formats are never guessed "
                  "inside a confining directory",
                  confine);
    return -1;
  }
  return 0;
}

#define vdi_config_help                                                       \
  "file=<IMAGE>     (required) The image (raw, VHD or qcow2) to serve.\n"     \
  "format=raw|vhd|qcow2  The image's format (default: probe it).\n"           \
  "confine=<DIR>    Every layer of the chain must be a file in DIR.\n"        \
  "readonly=true    Open the image read-only and refuse writes.\n"            \
  "cache=none|writeback  O_DIRECT (default) or the host page cache."

static void
vdi_dump_plugin (void)
{
  printf ("vdi_formats=raw,vhd,qcow2\n");
}

/* Open before serving (and before nbdkit forks into the background), so a
 * bad image -- corrupt metadata, a missing parent, a loop in the chain --
 * stops nbdkit at startup with libvdisk's message instead of failing every
 * connection later.  libvdisk's per-thread I/O contexts are created by the
 * worker threads on first use, after any fork. */
static int
vdi_get_ready (void)
{
  unsigned flags = buffered ? VDISK_OPEN_BUFFERED : 0;

  disk = vdisk_open_as (filename, flags | (readonly ? 0 : VDISK_OPEN_RDWR),
                        format, confine);
  /* Like nbdkit-file-plugin: an image we may not write is served
   * read-only (can_write says so) rather than not at all. */
  if (disk == NULL && !readonly
      && (vdisk_get_errno () == EACCES || vdisk_get_errno () == EROFS
          || vdisk_get_errno () == EPERM)) {
    nbdkit_debug ("vdi: %s, serving read-only", vdisk_get_error ());
    disk = vdisk_open_as (filename, flags, format, confine);
  }
  if (disk == NULL) {
    vdi_error ();
    return -1;
  }
  if (asprintf (&top_layer_description, "%s%s", TOP_LAYER_DESCRIPTION,
                filename)
      == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  struct vdisk_info info;
  vdisk_get_info (disk, &info);
  /* A guessed raw disk is one a guest could turn into an image by writing
   * a header: whoever starts us should say format=. */
  vdisk_warn_probed (disk, "nbdkit: vdi");
  nbdkit_debug ("vdi: %s: %s%s%s, %" PRIu64 " bytes, %u parent layer(s)%s%s",
                filename, info.format_name, info.subformat ? " " : "",
                info.subformat ? info.subformat : "", info.virtual_size,
                info.chain_depth,
                vdisk_is_writable (disk) ? "" : ", read-only",
                buffered ? ", cache=writeback" : "");
  return 0;
}

/* The final flush happens here; nbdkit has no way left to report a
 * failure, so at least log it. */
static void
vdi_cleanup (void)
{
  if (disk && vdisk_close (disk) == -1)
    nbdkit_error ("%s", vdisk_get_error ());
  disk = NULL;
}

static int
vdi_preconnect (int conn_readonly)
{
  client_thread = true;
  return 0;
}

/* Every connection shares the one image; the handle is the view. */
static void *
vdi_open (int conn_readonly)
{
  bool top = conn_readonly; /* a filter's own context */

  if (client_thread) {
    const char *name = nbdkit_export_name ();
    top = name && strcmp (name, TOP_LAYER_EXPORT) == 0;
  }
  return top ? &top_layer : &whole_disk;
}

static const char *
vdi_export_description (void *handle)
{
  const struct view *v = handle;

  return v->top_layer ? top_layer_description : NULL;
}

static int64_t
vdi_get_size (void *handle)
{
  return vdisk_get_size (disk);
}

static int
vdi_can_write (void *handle)
{
  const struct view *v = handle;

  return !v->top_layer && vdisk_is_writable (disk);
}

static int
vdi_can_flush (void *handle)
{
  return 1;
}

static int
vdi_can_trim (void *handle)
{
  return 1;
}

/* Zero is native in every format: a raw hole, a qcow2 zero cluster, a
 * VHD block left unallocated or written with zeroes. */
static int
vdi_can_zero (void *handle)
{
  return 1;
}

/* Whether a zero request becomes a metadata update or a write of zeroes
 * depends on the format, the alignment and the chain underneath; we
 * cannot promise it is fast, so we do not advertise fast zero and
 * clients fall back to writing. */
static int
vdi_can_fast_zero (void *handle)
{
  return 0;
}

static int
vdi_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

/* All connections go through the same struct vdisk, and vdisk_flush
 * flushes everything any of them wrote. */
static int
vdi_can_multi_conn (void *handle)
{
  return 1;
}

static int
vdi_can_extents (void *handle)
{
  return 1;
}

/* Any size and alignment works (libvdisk splits and aligns internally);
 * 4 KiB requests avoid the read-modify-write of partial sectors and the
 * buffered fallback of O_DIRECT. */
static int
vdi_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                uint32_t *maximum)
{
  *minimum = 1;
  *preferred = 4096;
  *maximum = 0xffffffff;
  return 0;
}

static int
vdi_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  if (vdisk_pread (disk, buf, count, offset) == -1) {
    vdi_error ();
    return -1;
  }
  return 0;
}

static unsigned
vdisk_flags (uint32_t flags)
{
  unsigned f = 0;
  if (flags & NBDKIT_FLAG_FUA)
    f |= VDISK_FUA;
  if (flags & NBDKIT_FLAG_MAY_TRIM)
    f |= VDISK_MAY_TRIM;
  return f;
}

static int
vdi_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  if (vdisk_pwrite (disk, buf, count, offset, vdisk_flags (flags)) == -1) {
    vdi_error ();
    return -1;
  }
  return 0;
}

static int
vdi_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  /* Not advertised, but a filter above us may still ask. */
  if (flags & NBDKIT_FLAG_FAST_ZERO) {
    nbdkit_set_error (ENOTSUP);
    return -1;
  }
  if (vdisk_zero (disk, count, offset, vdisk_flags (flags)) == -1) {
    vdi_error ();
    return -1;
  }
  return 0;
}

static int
vdi_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (vdisk_trim (disk, count, offset, vdisk_flags (flags)) == -1) {
    vdi_error ();
    return -1;
  }
  return 0;
}

static int
vdi_flush (void *handle, uint32_t flags)
{
  if (vdisk_flush (disk) == -1) {
    vdi_error ();
    return -1;
  }
  return 0;
}

/* The flattened map of the chain: a HOLE there is allocated in no layer,
 * so it reads as zero.  The top layer's map: a HOLE is what the layers
 * below hold, which need not read as zero. */
static uint32_t
nbd_extent_type (uint32_t type, bool layer_map)
{
  switch (type) {
  case VDISK_EXTENT_ZERO: return NBDKIT_EXTENT_ZERO;
  case VDISK_EXTENT_HOLE:
    return layer_map ? NBDKIT_EXTENT_HOLE
                     : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
  default: return 0;
  }
}

static int
vdi_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
             struct nbdkit_extents *extents)
{
  const struct view *v = handle;
  struct vdisk_extents map = { 0 };
  int r = 0;

  if (vdisk_map (disk, offset, count, v->top_layer ? VDISK_MAP_LAYER : 0,
                 &map)
      == -1) {
    vdi_error ();
    return -1;
  }
  for (size_t i = 0; i < map.len; i++) {
    const struct vdisk_extent *e = &map.v[i];
    r = nbdkit_add_extent (extents, e->offset, e->length,
                           nbd_extent_type (e->type, v->top_layer));
    if (r == -1 || (flags & NBDKIT_FLAG_REQ_ONE))
      break;
  }
  vdisk_extents_free (&map);
  return r;
}

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static struct nbdkit_plugin plugin = {
  .name = "vdi",
  .longname = "nbdkit vdimotion disk image plugin",
  .version = PACKAGE_VERSION,
  .description = "Serves a raw, VHD or qcow2 image (with its backing "
                 "chain) read-write",
  .unload = vdi_unload,
  .config = vdi_config,
  .config_complete = vdi_config_complete,
  .config_help = vdi_config_help,
  .magic_config_key = "file",
  .dump_plugin = vdi_dump_plugin,
  .get_ready = vdi_get_ready,
  .cleanup = vdi_cleanup,
  .preconnect = vdi_preconnect,
  .open = vdi_open,
  .export_description = vdi_export_description,
  .get_size = vdi_get_size,
  .block_size = vdi_block_size,
  .can_write = vdi_can_write,
  .can_flush = vdi_can_flush,
  .can_trim = vdi_can_trim,
  .can_zero = vdi_can_zero,
  .can_fast_zero = vdi_can_fast_zero,
  .can_fua = vdi_can_fua,
  .can_multi_conn = vdi_can_multi_conn,
  .can_extents = vdi_can_extents,
  .pread = vdi_pread,
  .pwrite = vdi_pwrite,
  .zero = vdi_zero,
  .trim = vdi_trim,
  .flush = vdi_flush,
  .extents = vdi_extents,
  .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN (plugin)
