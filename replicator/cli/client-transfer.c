/* Disk contents over HTTP, as xapi moves them:
 *   PUT /import_raw_vdi?session_id=S&vdi=REF&format=raw|vhd  (body: bytes)
 *   GET /export_raw_vdi?session_id=S&vdi=REF&format=raw|vhd
 *
 * Import streams the body from a small GInputStream (source_stream) that
 * reads either the VHD file as it is, or the guest-visible bytes of any
 * image through libvdisk, and draws the progress bar as libsoup pulls.
 * Export writes what arrives; a raw file is left sparse where whole
 * blocks are zero. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "iszero.h"
#include "vdisk.h"

/* ---- A GInputStream over a file or a libvdisk image ---------------- */

typedef struct
{
  GInputStream parent;
  struct vdisk *d; /* read through libvdisk if set, */
  int fd;          /* else pread from this file */
  const char *path;
  uint64_t offset, size;
  struct progress *p;
} SourceStream;

typedef struct
{
  GInputStreamClass parent_class;
} SourceStreamClass;

static GType source_stream_get_type (void);
G_DEFINE_TYPE (SourceStream, source_stream, G_TYPE_INPUT_STREAM)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SourceStream, g_object_unref)

static gssize
source_read (GInputStream *stream, void *buf, gsize count,
             GCancellable *cancellable, GError **err)
{
  SourceStream *s = (SourceStream *)stream;
  uint64_t n = MIN ((uint64_t)count, s->size - s->offset);

  if (n == 0)
    return 0;
  if (s->d) {
    if (vdisk_pread (s->d, buf, n, s->offset) == -1) {
      g_set_error (err, G_IO_ERROR, g_io_error_from_errno (vdisk_get_errno ()),
                   "%s", vdisk_get_error ());
      return -1;
    }
  }
  else {
    ssize_t r = pread (s->fd, buf, n, s->offset);
    if (r <= 0) {
      g_set_error (err, G_IO_ERROR, g_io_error_from_errno (r ? errno : EIO),
                   "%s: read: %s", s->path,
                   r ? g_strerror (errno) : "file shrank while read");
      return -1;
    }
    n = r;
  }
  s->offset += n;
  progress_update (s->p, s->offset);
  return n;
}

static void
source_stream_class_init (SourceStreamClass *k)
{
  G_INPUT_STREAM_CLASS (k)->read_fn = source_read;
}

static void
source_stream_init (SourceStream *s)
{
  s->fd = -1;
}

/* ---- import ---------------------------------------------------------- */

/* A request METHOD of WHAT (import_raw_vdi, ...) of VDI in FORMAT. */
static SoupMessage *
transfer_message (struct xapi_client *c, const char *method, const char *what,
                  const char *vdi, const char *format, GError **err)
{
  g_autofree char *s
      = g_uri_escape_string (xapi_client_session (c), NULL, false);
  g_autofree char *v = g_uri_escape_string (vdi, NULL, false);
  g_autofree char *rel = g_strdup_printf ("/%s?session_id=%s&vdi=%s&format=%s",
                                          what, s, v, format);
  return xapi_client_message (c, method, rel, err);
}

/* A failed transfer's HTTP status, and the first line the server said. */
static void
set_http_error (struct xapi_client *c, GError **err, SoupMessage *msg,
                const char *what, GBytes *body)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  const char *data = body ? g_bytes_get_data (body, &len) : NULL;

  if (data && len)
    text = g_strndup (data, MIN (len, strcspn (data, "\r\n")));
  g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_CONNECT,
               "%s: %s: HTTP %u %s%s%s", xapi_client_url (c), what,
               soup_message_get_status (msg),
               soup_message_get_reason_phrase (msg), text ? ": " : "",
               text ? text : "");
}

int
client_import_vdi (struct xapi_client *c, const char *vdi, const char *path,
                   int format, int progress_mode, GError **err)
{
  struct vdisk *d = vdisk_open_as (path, VDISK_OPEN_BUFFERED, format, NULL);
  struct vdisk_info info;
  g_autoptr (SourceStream) in = NULL;
  g_autoptr (SoupMessage) msg = NULL;
  g_autoptr (GBytes) reply = NULL;
  struct progress p;
  struct stat st;
  bool as_vhd;

  if (d == NULL) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL, "%s",
                 vdisk_get_error ());
    return -1;
  }
  vdisk_get_info (d, &info);
  /* A differencing VHD is sent flattened: its parent stays here. */
  as_vhd = info.format == VDISK_FORMAT_VHD && vdisk_get_parent (d) == NULL;
  in = g_object_new (source_stream_get_type (), NULL);
  in->path = path;
  in->p = &p;
  if (as_vhd) {
    vdisk_close (d);
    in->fd = open (path, O_RDONLY | O_CLOEXEC);
    if (in->fd == -1 || fstat (in->fd, &st) == -1) {
      g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL, "%s: %s",
                   path, g_strerror (errno));
      if (in->fd != -1)
        close (in->fd);
      return -1;
    }
    in->size = st.st_size;
  }
  else {
    in->d = d;
    in->size = vdisk_get_size (d);
  }

  msg = transfer_message (c, "PUT", "import_raw_vdi", vdi,
                          as_vhd ? "vhd" : "raw", err);
  if (msg == NULL) {
    if (in->d)
      vdisk_close (in->d);
    if (in->fd != -1)
      close (in->fd);
    return -1;
  }
  soup_message_set_request_body (msg, "application/octet-stream",
                                 G_INPUT_STREAM (in), in->size);
  progress_init (&p, progress_mode, in->size);
  reply = xapi_client_send_and_read (c, msg, err);
  if (in->d)
    vdisk_close (in->d);
  if (in->fd != -1)
    close (in->fd);
  in->d = NULL;
  in->fd = -1;
  if (reply == NULL) {
    if (p.enabled)
      fputc ('\n', stderr);
    return -1;
  }
  if (soup_message_get_status (msg) != SOUP_STATUS_OK) {
    if (p.enabled)
      fputc ('\n', stderr);
    set_http_error (c, err, msg, "import_raw_vdi", reply);
    return -1;
  }
  progress_finish (&p);
  return 0;
}

/* ---- export ---------------------------------------------------------- */

#define EXPORT_BUF (1u << 20)
#define SPARSE_BLOCK 65536

/* Write LEN bytes of BUF at OFFSET of FD; in SPARSE mode, blocks of zeros
 * are skipped (the file is extended at the end). */
static int
write_out (int fd, const char *buf, size_t len, uint64_t offset, bool sparse)
{
  for (size_t done = 0; done < len;) {
    size_t n = MIN (len - done, (size_t)SPARSE_BLOCK);
    if (!(sparse && is_zero (buf + done, n))) {
      ssize_t r = pwrite (fd, buf + done, n, offset + done);
      if (r <= 0)
        return -1;
      n = r;
    }
    done += n;
  }
  return 0;
}

int
client_export_vdi (struct xapi_client *c, const char *vdi, uint64_t size,
                   const char *path, int progress_mode, GError **err)
{
  bool vhd = g_str_has_suffix (path, ".vhd");
  g_autoptr (SoupMessage) msg = transfer_message (
      c, "GET", "export_raw_vdi", vdi, vhd ? "vhd" : "raw", err);
  g_autoptr (GInputStream) in = NULL;
  g_autoptr (GError) cause = NULL;
  g_autofree char *buf = NULL;
  struct progress p;
  uint64_t offset = 0;
  goffset len;
  int fd;

  if (msg == NULL)
    return -1;
  in = xapi_client_send (c, msg, err);
  if (in == NULL)
    return -1;
  if (soup_message_get_status (msg) != SOUP_STATUS_OK) {
    g_autoptr (GBytes) body = g_input_stream_read_bytes (in, 4096, NULL, NULL);
    set_http_error (c, err, msg, "export_raw_vdi", body);
    return -1;
  }
  len = soup_message_headers_get_content_length (
      soup_message_get_response_headers (msg));
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd == -1) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL, "%s: %s",
                 path, g_strerror (errno));
    return -1;
  }
  buf = g_malloc (EXPORT_BUF);
  progress_init (&p, progress_mode, len > 0 ? (uint64_t)len : size);
  for (;;) {
    gsize n = 0;
    if (!g_input_stream_read_all (in, buf, EXPORT_BUF, &n, NULL, &cause)) {
      g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_CONNECT, "%s: %s",
                   xapi_client_url (c), cause->message);
      goto fail;
    }
    if (n == 0)
      break;
    if (write_out (fd, buf, n, offset, !vhd) == -1) {
      g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                   "%s: write: %s", path, g_strerror (errno));
      goto fail;
    }
    offset += n;
    progress_update (&p, offset);
  }
  if (len > 0 && offset != (uint64_t)len) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_CONNECT,
                 "%s: export_raw_vdi: %" G_GUINT64_FORMAT
                 " bytes received of %" G_GINT64_FORMAT,
                 xapi_client_url (c), offset, len);
    goto fail;
  }
  if (ftruncate (fd, offset) == -1 || fsync (fd) == -1 || close (fd) == -1) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL, "%s: %s",
                 path, g_strerror (errno));
    fd = -1;
    goto fail;
  }
  progress_finish (&p);
  return 0;

fail:
  if (p.enabled)
    fputc ('\n', stderr);
  if (fd != -1)
    close (fd);
  unlink (path);
  return -1;
}
