/* The changed-block log: a fixed 4 KiB header, then a bitmap of 64 KiB
 * blocks in XenAPI's layout (format and rules: cbt-log.h and
 * vdimotion-sr(5)).
 *
 * Design: the file is the only state.  A writer keeps no copy of the
 * bitmap: it maps the file (MAP_SHARED, the bitmap's blocks allocated
 * first so a page fault never meets a full disk) and a mark is an atomic
 * OR of its bits into the mapped bytes, i.e. into the page cache of the
 * file itself.  So a log rotated in place under a quiesced writer (a
 * live snapshot) needs nothing from the writer; what a mark said is in
 * the file before the guest hears of the write, and a writer killed at
 * any point leaves every acknowledged mark behind; and another process
 * may OR bits into a log while its writer marks it (cbt_log_merge, a
 * migration's destination) without either losing a bit, which a
 * read-modify-write with pread/pwrite could not promise.  A mark costs
 * no system call.
 *
 * A dead writer is told from a live one by an open-file-description lock
 * (F_OFD_SETLK) that only writers take: the kernel drops it when the
 * writer's process dies, whatever killed it.  A clear flag under no lock
 * means "died while writing"; whoever finds that resets the log before
 * using it (reset_if_stale).
 *
 * Whole-file replacements (create, import, the snapshot's copy) are
 * written beside the target ("<path>.tmp"), fsynced and renamed over
 * it, then the directory is fsynced.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cbt-log.h"
#include "full-io.h"

#define MAGIC "VDMCBTLG"
#define LOG_VERSION 1
#define HEADER_SIZE 4096
#define FLAG_CONSISTENT 0x1
#define FLAG_DISABLED 0x2
/* Header field offsets (cbt-log.h). */
#define OFF_VERSION 8
#define OFF_BLOCK_SIZE 12
#define OFF_VIRTUAL_SIZE 16
#define OFF_GENERATION 24
#define OFF_PREDECESSOR 64
#define UUID_FIELD 40
#define OFF_FLAGS 104
#define OFF_RESET_TIME 112
#define OFF_REASON 120
#define REASON_FIELD 128
/* The largest disk a log describes: 64 TiB (a 128 MiB bitmap). */
#define MAX_VIRTUAL_SIZE (UINT64_C (64) << 40)

G_DEFINE_QUARK (cbt-log-error-quark, cbt_log_error)

struct cbt_log
{
  char *path;
  int fd;
  bool writer;
  uint8_t *map; /* a writer's mapping of the whole file */
  size_t map_len;
  struct cbt_log_info info;
};

/* The header in host form; the file's is little-endian. */
struct header
{
  uint64_t virtual_size;
  char generation[CBT_LOG_UUID_LEN + 1];
  char predecessor[CBT_LOG_UUID_LEN + 1];
  uint32_t flags;
  int64_t reset_time;
  char reason[CBT_LOG_REASON_MAX + 1];
};

static void __attribute__ ((format (printf, 4, 5)))
set_err (GError **err, int code, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (err, CBT_LOG_ERROR, code, "cbt log %s: %s", path, msg);
}

static void
set_errno_err (GError **err, const char *path, const char *doing)
{
  int e = errno ? errno : EIO;
  set_err (err, e, path, "%s: %s", doing, g_strerror (e));
}

static uint64_t
bitmap_bytes (uint64_t virtual_size)
{
  return (cbt_log_blocks (virtual_size) + 7) / 8;
}

static void
put32 (uint8_t *p, uint32_t v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, 4);
}

static void
put64 (uint8_t *p, uint64_t v)
{
  v = GUINT64_TO_LE (v);
  memcpy (p, &v, 8);
}

static uint32_t
get32 (const uint8_t *p)
{
  uint32_t v;
  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

static uint64_t
get64 (const uint8_t *p)
{
  uint64_t v;
  memcpy (&v, p, 8);
  return GUINT64_FROM_LE (v);
}

static void
encode (const struct header *h, uint8_t buf[HEADER_SIZE])
{
  memset (buf, 0, HEADER_SIZE);
  memcpy (buf, MAGIC, 8);
  put32 (buf + OFF_VERSION, LOG_VERSION);
  put32 (buf + OFF_BLOCK_SIZE, CBT_BLOCK_SIZE);
  put64 (buf + OFF_VIRTUAL_SIZE, h->virtual_size);
  memcpy (buf + OFF_GENERATION, h->generation, strlen (h->generation));
  memcpy (buf + OFF_PREDECESSOR, h->predecessor, strlen (h->predecessor));
  put32 (buf + OFF_FLAGS, h->flags);
  put64 (buf + OFF_RESET_TIME, (uint64_t)h->reset_time);
  memcpy (buf + OFF_REASON, h->reason, strlen (h->reason));
}

/* A uuid field: NUL-padded, "" or a uuid's 36 characters of [0-9a-f-]. */
static bool
get_uuid (const uint8_t *field, char out[CBT_LOG_UUID_LEN + 1])
{
  size_t n = strnlen ((const char *)field, UUID_FIELD);
  if (n != 0 && n != CBT_LOG_UUID_LEN)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!g_ascii_isxdigit (field[i]) && field[i] != '-')
      return false;
  memcpy (out, field, n);
  out[n] = '\0';
  return true;
}

/* Check and decode a header read from PATH, whose file is FILE_SIZE
 * bytes long. */
static int
decode (const uint8_t buf[HEADER_SIZE], uint64_t file_size, const char *path,
        struct header *h, GError **err)
{
  if (memcmp (buf, MAGIC, 8) != 0) {
    set_err (err, EINVAL, path, "bad magic: not a changed-block log");
    return -1;
  }
  if (get32 (buf + OFF_VERSION) != LOG_VERSION) {
    set_err (err, EINVAL, path, "version %" G_GUINT32_FORMAT
             " is not one this program knows (%d)",
             get32 (buf + OFF_VERSION), LOG_VERSION);
    return -1;
  }
  if (get32 (buf + OFF_BLOCK_SIZE) != CBT_BLOCK_SIZE) {
    set_err (err, EINVAL, path,
             "block size %" G_GUINT32_FORMAT " is not %d",
             get32 (buf + OFF_BLOCK_SIZE), CBT_BLOCK_SIZE);
    return -1;
  }
  h->virtual_size = get64 (buf + OFF_VIRTUAL_SIZE);
  if (h->virtual_size == 0 || h->virtual_size > MAX_VIRTUAL_SIZE) {
    set_err (err, EINVAL, path,
             "virtual size %" G_GUINT64_FORMAT " is out of range",
             h->virtual_size);
    return -1;
  }
  if (file_size < HEADER_SIZE + bitmap_bytes (h->virtual_size)) {
    set_err (err, EINVAL, path,
             "file is %" G_GUINT64_FORMAT " bytes, too short for the "
             "bitmap of a %" G_GUINT64_FORMAT "-byte disk",
             file_size, h->virtual_size);
    return -1;
  }
  if (!get_uuid (buf + OFF_GENERATION, h->generation)
      || !h->generation[0]
      || !get_uuid (buf + OFF_PREDECESSOR, h->predecessor)) {
    set_err (err, EINVAL, path, "bad generation or predecessor uuid");
    return -1;
  }
  h->flags = get32 (buf + OFF_FLAGS);
  h->reset_time = (int64_t)get64 (buf + OFF_RESET_TIME);
  size_t n = strnlen ((const char *)buf + OFF_REASON, REASON_FIELD);
  if (n > CBT_LOG_REASON_MAX) {
    set_err (err, EINVAL, path, "reset reason is not terminated");
    return -1;
  }
  memcpy (h->reason, buf + OFF_REASON, n);
  h->reason[n] = '\0';
  return 0;
}

static int
read_header (int fd, const char *path, struct header *h, GError **err)
{
  uint8_t buf[HEADER_SIZE];
  struct stat sb;

  if (fstat (fd, &sb) == -1) {
    set_errno_err (err, path, "fstat");
    return -1;
  }
  ssize_t r = full_pread (fd, buf, sizeof buf, 0);
  if (r == -1) {
    set_errno_err (err, path, "reading the header");
    return -1;
  }
  if (r < HEADER_SIZE) {
    set_err (err, EINVAL, path, "file is %zd bytes, shorter than a header",
             r);
    return -1;
  }
  return decode (buf, sb.st_size, path, h, err);
}

static int
write_header (int fd, const char *path, const struct header *h, GError **err)
{
  uint8_t buf[HEADER_SIZE];
  encode (h, buf);
  if (full_pwrite (fd, buf, sizeof buf, 0) == -1) {
    set_errno_err (err, path, "writing the header");
    return -1;
  }
  return 0;
}

/* Write header bytes [FROM, TO) of H only: the flags and the lineage
 * (generation to last reset) are written apart, so that a writer's close
 * (the flags) and a merge (the lineage) never undo each other. */
static int
write_header_part (int fd, const char *path, const struct header *h,
                   size_t from, size_t to, GError **err)
{
  uint8_t buf[HEADER_SIZE];
  encode (h, buf);
  if (full_pwrite (fd, buf + from, to - from, from) == -1) {
    set_errno_err (err, path, "writing the header");
    return -1;
  }
  return 0;
}

static int
sync_fd (int fd, const char *path, GError **err)
{
  if (fsync (fd) == -1) {
    set_errno_err (err, path, "fsync");
    return -1;
  }
  return 0;
}

/* fsync the directory holding PATH, so a rename or unlink in it lasts. */
static int
sync_dir_of (const char *path, GError **err)
{
  g_autofree char *dir = g_path_get_dirname (path);
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1) {
    set_errno_err (err, path, "opening its directory");
    return -1;
  }
  int r = sync_fd (fd, path, err);
  close (fd);
  return r;
}

/* A fresh generation: a version 4 uuid from GLib. */
static void
new_generation (char out[CBT_LOG_UUID_LEN + 1])
{
  g_autofree char *u = g_uuid_string_random ();
  g_strlcpy (out, u, CBT_LOG_UUID_LEN + 1);
}

static void
set_reset (struct header *h, const char *reason)
{
  new_generation (h->generation);
  h->predecessor[0] = '\0';
  h->reset_time = time (NULL);
  g_strlcpy (h->reason, reason, sizeof h->reason);
}

/* Whether another open file description holds the writer's lock on FD's
 * file; -1 on error. */
static int
writer_holds (int fd, const char *path, GError **err)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  if (fcntl (fd, F_OFD_GETLK, &fl) == -1) {
    set_errno_err (err, path, "testing the writer's lock");
    return -1;
  }
  return fl.l_type != F_UNLCK;
}

/* Fill the bitmap of a disk of VIRTUAL_SIZE with every block set (FILL
 * true) or none, bits past the last block clear. */
static int
fill_bitmap (int fd, const char *path, uint64_t virtual_size, bool fill,
             GError **err)
{
  uint64_t n = bitmap_bytes (virtual_size);
  uint64_t blocks = cbt_log_blocks (virtual_size);
  g_autofree uint8_t *chunk = g_malloc (65536);

  memset (chunk, fill ? 0xff : 0, 65536);
  for (uint64_t off = 0; off < n; off += 65536) {
    size_t len = MIN (n - off, 65536);
    if (fill && off + len == n && blocks % 8)
      chunk[len - 1] = (uint8_t)(0xff00 >> (blocks % 8));
    if (full_pwrite (fd, chunk, len, HEADER_SIZE + off) == -1) {
      set_errno_err (err, path, "writing the bitmap");
      return -1;
    }
  }
  return 0;
}

/* Write a whole log (H, and BITMAP or an empty one) to "<PATH>.tmp",
 * fsync, rename over PATH, fsync the directory. */
static int
write_whole (const char *path, const struct header *h, const uint8_t *bitmap,
             GError **err)
{
  g_autofree char *tmp = g_strconcat (path, ".tmp", NULL);
  uint64_t n = bitmap_bytes (h->virtual_size);
  int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                 0644);
  if (fd == -1) {
    set_errno_err (err, tmp, "creating");
    return -1;
  }
  if (write_header (fd, tmp, h, err) == -1)
    goto fail;
  if (bitmap ? full_pwrite (fd, bitmap, n, HEADER_SIZE) == -1
             : ftruncate (fd, HEADER_SIZE + n) == -1) {
    set_errno_err (err, tmp, "writing the bitmap");
    goto fail;
  }
  if (sync_fd (fd, tmp, err) == -1)
    goto fail;
  close (fd);
  if (rename (tmp, path) == -1) {
    set_errno_err (err, path, "renaming the new log into place");
    unlink (tmp);
    return -1;
  }
  return sync_dir_of (path, err);
fail:
  close (fd);
  unlink (tmp);
  return -1;
}

int
cbt_log_create (const char *path, uint64_t virtual_size, GError **err)
{
  struct header h = { .virtual_size = virtual_size,
                      .flags = FLAG_CONSISTENT };
  if (virtual_size == 0 || virtual_size > MAX_VIRTUAL_SIZE) {
    set_err (err, EINVAL, path,
             "virtual size %" G_GUINT64_FORMAT " is out of range",
             virtual_size);
    return -1;
  }
  set_reset (&h, "enabled");
  return write_whole (path, &h, NULL, err);
}

static void
info_from_header (const struct header *h, bool in_use,
                  struct cbt_log_info *out)
{
  memset (out, 0, sizeof *out);
  out->version = LOG_VERSION;
  out->block_size = CBT_BLOCK_SIZE;
  out->virtual_size = h->virtual_size;
  out->blocks = cbt_log_blocks (h->virtual_size);
  memcpy (out->generation, h->generation, sizeof out->generation);
  memcpy (out->predecessor, h->predecessor, sizeof out->predecessor);
  out->consistent = h->flags & FLAG_CONSISTENT;
  out->disabled = h->flags & FLAG_DISABLED;
  out->in_use = in_use;
  out->reset_time = h->reset_time;
  memcpy (out->reset_reason, h->reason, sizeof out->reset_reason);
}

static void
header_from_info (const struct cbt_log_info *in, struct header *h)
{
  memset (h, 0, sizeof *h);
  h->virtual_size = in->virtual_size;
  memcpy (h->generation, in->generation, sizeof h->generation);
  memcpy (h->predecessor, in->predecessor, sizeof h->predecessor);
  h->flags = (in->consistent ? FLAG_CONSISTENT : 0)
             | (in->disabled ? FLAG_DISABLED : 0);
  h->reset_time = in->reset_time;
  memcpy (h->reason, in->reset_reason, sizeof h->reason);
}

/* Reset the log open at FD in place (header H updated), leaving its
 * flag as it was. */
static int
reset_fd (int fd, const char *path, struct header *h, const char *reason,
          GError **err)
{
  set_reset (h, reason);
  /* Bits first: a crash between leaves every bit set under the old
   * generation, which says too much, never too little. */
  if (fill_bitmap (fd, path, h->virtual_size, true, err) == -1
      || write_header (fd, path, h, err) == -1)
    return -1;
  return sync_fd (fd, path, err);
}

static const char stale_reason[] = "not closed cleanly";

/* Reset a log left by a writer that died (flag clear, no lock held). */
static int
reset_if_stale (int fd, const char *path, struct header *h, GError **err)
{
  if (h->flags & FLAG_CONSISTENT)
    return 0;
  int held = writer_holds (fd, path, err);
  if (held != 0)
    return held < 0 ? -1 : 0;
  g_message ("cbt log %s: %s: reset (every block marked, new generation)",
             path, stale_reason);
  h->flags |= FLAG_CONSISTENT;
  return reset_fd (fd, path, h, stale_reason, err);
}

static void
log_free (struct cbt_log *log)
{
  if (log->map)
    munmap (log->map, log->map_len);
  if (log->fd >= 0)
    close (log->fd); /* drops the OFD lock */
  g_free (log->path);
  g_free (log);
}

/* FD's file mapped shared, header and bitmap (*LEN bytes), the bitmap's
 * blocks allocated so that no store into it can fault for space. */
static uint8_t *
map_bitmap (int fd, const char *path, uint64_t virtual_size, size_t *len,
            GError **err)
{
  *len = HEADER_SIZE + bitmap_bytes (virtual_size);
  int e = posix_fallocate (fd, HEADER_SIZE, *len - HEADER_SIZE);
  if (e) {
    errno = e;
    set_errno_err (err, path, "allocating the bitmap");
    return NULL;
  }
  void *m = mmap (NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    set_errno_err (err, path, "mapping the bitmap");
    return NULL;
  }
  return m;
}

/* OR BITS into byte I of the mapped bitmap MAP, atomically with respect
 * to every other process mapping the file. */
static void
or_byte (uint8_t *map, uint64_t i, uint8_t bits)
{
  uint8_t *p = map + HEADER_SIZE + i;
  if ((__atomic_load_n (p, __ATOMIC_RELAXED) & bits) != bits)
    __atomic_fetch_or (p, bits, __ATOMIC_SEQ_CST);
}

/* The writer's part of cbt_log_open. */
static int
become_writer (struct cbt_log *log, struct header *h, GError **err)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  if (fcntl (log->fd, F_OFD_SETLK, &fl) == -1) {
    if (errno == EAGAIN || errno == EACCES)
      set_err (err, EBUSY, log->path, "another writer has it open");
    else
      set_errno_err (err, log->path, "taking the writer's lock");
    return -1;
  }
  log->writer = true;
  if (!(h->flags & FLAG_CONSISTENT)) {
    g_message ("cbt log %s: %s: reset (every block marked, new generation)",
               log->path, stale_reason);
    if (reset_fd (log->fd, log->path, h, stale_reason, err) == -1)
      return -1;
  }
  h->flags &= ~FLAG_CONSISTENT;
  if (write_header (log->fd, log->path, h, err) == -1
      || sync_fd (log->fd, log->path, err) == -1)
    return -1;
  log->map = map_bitmap (log->fd, log->path, h->virtual_size, &log->map_len,
                         err);
  return log->map ? 0 : -1;
}

struct cbt_log *
cbt_log_open (const char *path, unsigned flags, GError **err)
{
  struct cbt_log *log = g_new0 (struct cbt_log, 1);
  struct header h;
  bool writer = flags & CBT_LOG_WRITER;

  log->path = g_strdup (path);
  log->fd = open (path, (writer ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
  if (log->fd == -1) {
    set_errno_err (err, path, "opening");
    goto fail;
  }
  if (read_header (log->fd, path, &h, err) == -1)
    goto fail;
  if (writer && become_writer (log, &h, err) == -1)
    goto fail;
  int held = writer ? 1 : writer_holds (log->fd, path, err);
  if (held == -1)
    goto fail;
  info_from_header (&h, held, &log->info);
  return log;
fail:
  log_free (log);
  return NULL;
}

int
cbt_log_mark (struct cbt_log *log, uint64_t offset, uint64_t count,
              GError **err)
{
  if (!log->writer) {
    set_err (err, EINVAL, log->path, "mark: not opened for writing");
    return -1;
  }
  if (count == 0)
    return 0;
  if (offset >= log->info.virtual_size
      || count > log->info.virtual_size - offset) {
    set_err (err, EINVAL, log->path,
             "mark: bytes %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
             " are past the disk's end (%" G_GUINT64_FORMAT ")",
             offset, count, log->info.virtual_size);
    return -1;
  }
  uint64_t first = offset / CBT_BLOCK_SIZE;
  uint64_t last = (offset + count - 1) / CBT_BLOCK_SIZE;

  /* The partial first and last bytes, then whole bytes between. */
  for (uint64_t byte = first / 8; byte <= last / 8; byte++) {
    uint8_t bits = 0xff;
    if (byte == first / 8)
      bits &= 0xff >> (first % 8);
    if (byte == last / 8)
      bits &= (uint8_t)(0xff00 >> (last % 8 + 1));
    or_byte (log->map, byte, bits);
  }
  return 0;
}

int
cbt_log_close (struct cbt_log *log, GError **err)
{
  int r = 0;
  if (!log)
    return 0;
  if (log->writer) {
    struct header h;
    header_from_info (&log->info, &h);
    /* Reread: a rotation may have changed the predecessor under us. */
    r = read_header (log->fd, log->path, &h, err);
    if (r == 0)
      r = sync_fd (log->fd, log->path, err);
    if (r == 0) {
      h.flags |= FLAG_CONSISTENT;
      r = write_header_part (log->fd, log->path, &h, OFF_FLAGS,
                             OFF_FLAGS + 4, err);
    }
    if (r == 0)
      r = sync_fd (log->fd, log->path, err);
  }
  log_free (log);
  return r;
}

/* Bits set in the bitmap of the file at FD. */
static int
count_set (int fd, const char *path, uint64_t virtual_size, uint64_t *out,
           GError **err)
{
  uint64_t n = bitmap_bytes (virtual_size);
  g_autofree uint8_t *buf = g_malloc (65536);
  *out = 0;
  for (uint64_t off = 0; off < n; off += 65536) {
    size_t len = MIN (n - off, 65536);
    if (full_pread (fd, buf, len, HEADER_SIZE + off) != (ssize_t)len) {
      set_errno_err (err, path, "reading the bitmap");
      return -1;
    }
    for (size_t k = 0; k < len; k++)
      *out += __builtin_popcount (buf[k]);
  }
  return 0;
}

int
cbt_log_get_info (struct cbt_log *log, struct cbt_log_info *out,
                  GError **err)
{
  struct header h;
  if (read_header (log->fd, log->path, &h, err) == -1)
    return -1;
  info_from_header (&h, log->info.in_use, &log->info);
  *out = log->info;
  return count_set (log->fd, log->path, h.virtual_size, &out->blocks_set,
                    err);
}

int
cbt_log_read_info (const char *path, struct cbt_log_info *out, GError **err)
{
  struct cbt_log *log = cbt_log_open (path, 0, err);
  if (!log)
    return -1;
  int r = cbt_log_get_info (log, out, err);
  cbt_log_close (log, NULL);
  return r;
}

int
cbt_log_read_header (const char *path, struct cbt_log_info *out,
                     GError **err)
{
  struct cbt_log *log = cbt_log_open (path, 0, err);
  if (!log)
    return -1;
  *out = log->info;
  cbt_log_close (log, NULL);
  return 0;
}

static uint8_t *
read_bitmap_fd (int fd, const char *path, uint64_t virtual_size, size_t *len,
                GError **err)
{
  uint64_t n = bitmap_bytes (virtual_size);
  uint8_t *b = g_malloc (n ? n : 1);
  if (full_pread (fd, b, n, HEADER_SIZE) != (ssize_t)n) {
    set_errno_err (err, path, "reading the bitmap");
    g_free (b);
    return NULL;
  }
  /* Bits past the last block say nothing: keep them out of results. */
  if (cbt_log_blocks (virtual_size) % 8)
    b[n - 1] &= (uint8_t)(0xff00 >> (cbt_log_blocks (virtual_size) % 8));
  *len = n;
  return b;
}

uint8_t *
cbt_log_read_bitmap (struct cbt_log *log, size_t *len, GError **err)
{
  return read_bitmap_fd (log->fd, log->path, log->info.virtual_size, len,
                         err);
}

/* Open PATH read-write for an administrative change (not as a writer),
 * with its header, a log left by a dead writer reset first. */
static int
open_admin (const char *path, struct header *h, GError **err)
{
  int fd = open (path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd == -1) {
    set_errno_err (err, path, "opening");
    return -1;
  }
  if (read_header (fd, path, h, err) == -1
      || reset_if_stale (fd, path, h, err) == -1) {
    close (fd);
    return -1;
  }
  return fd;
}

int
cbt_log_reset (const char *path, const char *reason, GError **err)
{
  struct header h;
  int fd = open_admin (path, &h, err);
  if (fd == -1)
    return -1;
  int r = reset_fd (fd, path, &h, reason, err);
  close (fd);
  return r;
}

int
cbt_log_enable (const char *path, uint64_t virtual_size, GError **err)
{
  struct header h;
  int fd = open (path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd == -1 && errno == ENOENT)
    return cbt_log_create (path, virtual_size, err);
  if (fd == -1) {
    set_errno_err (err, path, "opening");
    return -1;
  }
  int r = read_header (fd, path, &h, err);
  if (r == 0 && !(h.flags & FLAG_DISABLED))
    goto out; /* enabled already */
  if (r == 0 && h.virtual_size != virtual_size) {
    /* Nobody can be marking a disk of another size: start afresh. */
    close (fd);
    return cbt_log_create (path, virtual_size, err);
  }
  /* Counting starts now, in the file a writer may hold: bits cleared
   * (writes racing with this count as before it), then a new
   * generation, enabled. */
  if (r == 0)
    r = fill_bitmap (fd, path, h.virtual_size, false, err);
  if (r == 0) {
    set_reset (&h, "enabled");
    h.flags &= ~FLAG_DISABLED;
    r = write_header (fd, path, &h, err);
  }
  if (r == 0)
    r = sync_fd (fd, path, err);
out:
  close (fd);
  return r;
}

int
cbt_log_disable (const char *path, GError **err)
{
  struct header h;
  int fd = open (path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd == -1 && errno == ENOENT)
    return 0;
  if (fd == -1) {
    set_errno_err (err, path, "opening");
    return -1;
  }
  int held = writer_holds (fd, path, err);
  int r = held == -1 ? -1 : 0;
  if (held == 0 && unlink (path) == -1) {
    set_errno_err (err, path, "removing");
    r = -1;
  }
  else if (held == 0)
    r = sync_dir_of (path, err);
  else if (held == 1 && (r = read_header (fd, path, &h, err)) == 0) {
    h.flags |= FLAG_DISABLED;
    r = write_header (fd, path, &h, err);
    if (r == 0)
      r = sync_fd (fd, path, err);
  }
  close (fd);
  return r;
}

int
cbt_log_rotate (const char *path, const char *snapshot_path,
                const char *snapshot_uuid, GError **err)
{
  struct header h;
  size_t len;
  int r = -1;

  if (strlen (snapshot_uuid) != CBT_LOG_UUID_LEN) {
    set_err (err, EINVAL, path, "rotate: bad snapshot uuid");
    return -1;
  }
  int fd = open_admin (path, &h, err);
  if (fd == -1)
    return -1;
  g_autofree uint8_t *bits
      = read_bitmap_fd (fd, path, h.virtual_size, &len, err);
  if (bits) {
    struct header s = h;
    s.flags |= FLAG_CONSISTENT;
    r = write_whole (snapshot_path, &s, bits, err);
  }
  if (r == 0) {
    /* Predecessor first: a crash before the bits are cleared leaves bits
     * that say too much. */
    g_strlcpy (h.predecessor, snapshot_uuid, sizeof h.predecessor);
    r = write_header (fd, path, &h, err);
  }
  if (r == 0)
    r = fill_bitmap (fd, path, h.virtual_size, false, err);
  if (r == 0)
    r = sync_fd (fd, path, err);
  close (fd);
  return r;
}

uint8_t *
cbt_log_export (const char *path, size_t *len, GError **err)
{
  struct header h;
  size_t n;
  int fd = open_admin (path, &h, err);
  if (fd == -1)
    return NULL;
  uint8_t *bits = read_bitmap_fd (fd, path, h.virtual_size, &n, err);
  close (fd);
  if (!bits)
    return NULL;
  uint8_t *out = g_malloc (HEADER_SIZE + n);
  encode (&h, out);
  memcpy (out + HEADER_SIZE, bits, n);
  g_free (bits);
  *len = HEADER_SIZE + n;
  return out;
}

int
cbt_log_import (const char *path, const uint8_t *bytes, size_t len,
                uint64_t virtual_size, GError **err)
{
  struct header h;
  if (len < HEADER_SIZE) {
    set_err (err, EINVAL, path, "import: %zu bytes, shorter than a header",
             len);
    return -1;
  }
  if (decode (bytes, len, path, &h, err) == -1)
    return -1;
  if (h.virtual_size != virtual_size) {
    set_err (err, EINVAL, path,
             "import: the log is of a %" G_GUINT64_FORMAT "-byte disk, the "
             "VDI is %" G_GUINT64_FORMAT " bytes",
             h.virtual_size, virtual_size);
    return -1;
  }
  h.flags |= FLAG_CONSISTENT;
  return write_whole (path, &h, bytes + HEADER_SIZE, err);
}

int
cbt_log_merge (const char *path, const uint8_t *bytes, size_t len,
               GError **err)
{
  struct header h, in;
  size_t map_len;
  int r = -1;

  if (len < HEADER_SIZE) {
    set_err (err, EINVAL, path, "merge: %zu bytes, shorter than a header",
             len);
    return -1;
  }
  if (decode (bytes, len, path, &in, err) == -1)
    return -1;
  int fd = open (path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd == -1) {
    set_errno_err (err, path, "opening");
    return -1;
  }
  if (read_header (fd, path, &h, err) == -1)
    goto out;
  if (h.virtual_size != in.virtual_size) {
    set_err (err, EINVAL, path,
             "merge: the log is of a %" G_GUINT64_FORMAT "-byte disk, the "
             "merged one of a %" G_GUINT64_FORMAT "-byte disk",
             h.virtual_size, in.virtual_size);
    goto out;
  }
  uint8_t *map = map_bitmap (fd, path, h.virtual_size, &map_len, err);
  if (!map)
    goto out;
  for (uint64_t i = 0; i < bitmap_bytes (h.virtual_size); i++)
    if (bytes[HEADER_SIZE + i])
      or_byte (map, i, bytes[HEADER_SIZE + i]);
  munmap (map, map_len);
  /* Bits before the header: a crash between leaves this log's own
   * generation, which chains to nothing older. */
  if (fdatasync (fd) == -1) {
    set_errno_err (err, path, "merge: syncing the bitmap");
    goto out;
  }
  memcpy (h.generation, in.generation, sizeof h.generation);
  memcpy (h.predecessor, in.predecessor, sizeof h.predecessor);
  h.reset_time = in.reset_time;
  memcpy (h.reason, in.reason, sizeof h.reason);
  if (write_header_part (fd, path, &h, OFF_GENERATION, OFF_FLAGS, err) == 0
      && write_header_part (fd, path, &h, OFF_RESET_TIME,
                            OFF_REASON + REASON_FIELD, err)
             == 0)
    r = sync_fd (fd, path, err);
out:
  close (fd);
  return r;
}

int
cbt_log_coalesce (const char *from, const char *into, GError **err)
{
  struct header hf, hi;
  size_t nf, map_len = 0;
  g_autofree char *from_uuid = g_path_get_basename (from);
  g_autofree uint8_t *bf = NULL;
  uint8_t *map = NULL;
  int r = -1;

  int ffd = open_admin (from, &hf, err);
  if (ffd == -1)
    return -1;
  int ifd = open_admin (into, &hi, err);
  if (ifd == -1) {
    close (ffd);
    return -1;
  }
  from_uuid[strcspn (from_uuid, ".")] = '\0';
  if (strcmp (hi.predecessor, from_uuid) != 0
      || strcmp (hi.generation, hf.generation) != 0
      || hi.virtual_size != hf.virtual_size) {
    r = 0;
    goto out;
  }
  bf = read_bitmap_fd (ffd, from, hf.virtual_size, &nf, err);
  if (!bf)
    goto out;
  /* INTO may be the log of a disk being served: its filter marks bits in
   * a shared mapping at any moment, so the bits are ORed into that same
   * mapping atomically, as cbt_log_merge does (a read, OR and write back
   * of the bitmap would lose a mark made in between), and of the header
   * only the predecessor is written (the filter owns the flags).  Bits
   * before the link: a crash between leaves the old link with extra bits
   * (too much), or both done. */
  map = map_bitmap (ifd, into, hi.virtual_size, &map_len, err);
  if (!map)
    goto out;
  for (size_t k = 0; k < nf; k++)
    if (bf[k])
      or_byte (map, k, bf[k]);
  memcpy (hi.predecessor, hf.predecessor, sizeof hi.predecessor);
  if (fdatasync (ifd) == -1) {
    set_errno_err (err, into, "coalesce: syncing the bitmap");
    goto out;
  }
  if (write_header_part (ifd, into, &hi, OFF_PREDECESSOR,
                         OFF_PREDECESSOR + UUID_FIELD, err) == -1
      || sync_fd (ifd, into, err) == -1)
    goto out;
  r = 0;
out:
  if (map)
    munmap (map, map_len);
  close (ffd);
  close (ifd);
  return r;
}

int
cbt_log_relink (const char *path, const char *old_uuid, const char *new_uuid,
                GError **err)
{
  struct header h;
  int r = -1;

  if (strlen (new_uuid) > CBT_LOG_UUID_LEN) {
    set_err (err, EINVAL, path, "relink: \"%s\" is not a uuid", new_uuid);
    return -1;
  }
  int fd = open_admin (path, &h, err);
  if (fd == -1)
    return -1;
  if (strcmp (h.predecessor, old_uuid) != 0) {
    r = 0; /* another link, or relinked already */
    goto out;
  }
  /* Of the header only the predecessor is written: a writer (the
   * filter of a running VM's disk) owns the flags and the bitmap. */
  memset (h.predecessor, 0, sizeof h.predecessor);
  g_strlcpy (h.predecessor, new_uuid, sizeof h.predecessor);
  if (write_header_part (fd, path, &h, OFF_PREDECESSOR,
                         OFF_PREDECESSOR + UUID_FIELD, err) == -1
      || sync_fd (fd, path, err) == -1)
    goto out;
  r = 0;
out:
  close (fd);
  return r;
}

/* Raise ENODATA for the walk from TO back to FROM, with WHY. */
static void __attribute__ ((format (printf, 5, 6)))
no_chain (GError **err, const char *dir, const char *from, const char *to,
          const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (err, CBT_LOG_ERROR, ENODATA,
               "cbt logs in %s: no changed-block logs chain VDI %s back to "
               "VDI %s: %s",
               dir, to, from, why);
}

uint8_t *
cbt_log_changed_blocks (const char *dir, const char *from_uuid,
                        const char *to_uuid, size_t *len, GError **err)
{
  g_autofree char *cur = g_strdup (to_uuid);
  g_autofree uint8_t *acc = NULL;
  char generation[CBT_LOG_UUID_LEN + 1] = "";
  uint64_t size = 0;
  size_t n = 0;

  /* Each step moves to an older log; a chain longer than this loops. */
  for (int steps = 0; steps < 100000; steps++) {
    g_autofree char *name = g_strconcat (cur, CBT_LOG_SUFFIX, NULL);
    g_autofree char *path = g_build_filename (dir, name, NULL);
    g_autoptr (GError) e = NULL;
    struct cbt_log *log = cbt_log_open (path, 0, &e);
    if (!log) {
      if (e->code == ENOENT)
        no_chain (err, dir, from_uuid, to_uuid, "VDI %s has no log", cur);
      else
        g_propagate_error (err, g_steal_pointer (&e));
      return NULL;
    }
    struct cbt_log_info info = log->info;
    if (info.disabled) {
      no_chain (err, dir, from_uuid, to_uuid,
                "changed-block tracking is off for VDI %s", cur);
      cbt_log_close (log, NULL);
      return NULL;
    }
    if (!info.consistent && !info.in_use) {
      no_chain (err, dir, from_uuid, to_uuid,
                "the log of VDI %s was not closed cleanly", cur);
      cbt_log_close (log, NULL);
      return NULL;
    }
    if (steps == 0) {
      memcpy (generation, info.generation, sizeof generation);
      size = info.virtual_size;
      acc = g_malloc0 (bitmap_bytes (size));
      n = bitmap_bytes (size);
      if (strcmp (from_uuid, to_uuid) == 0) {
        cbt_log_close (log, NULL);
        break;
      }
    }
    else if (strcmp (info.generation, generation) != 0) {
      no_chain (err, dir, from_uuid, to_uuid,
                "the log of VDI %s is of another generation (CBT was reset "
                "or enabled again: %s)",
                cur, info.reset_reason);
      cbt_log_close (log, NULL);
      return NULL;
    }
    else if (info.virtual_size != size) {
      set_err (err, EINVAL, path, "the disk's size changed along the chain");
      cbt_log_close (log, NULL);
      return NULL;
    }
    size_t bn;
    g_autofree uint8_t *bits = cbt_log_read_bitmap (log, &bn, err);
    cbt_log_close (log, NULL);
    if (!bits)
      return NULL;
    for (size_t k = 0; k < n; k++)
      acc[k] |= bits[k];
    if (strcmp (info.predecessor, from_uuid) == 0)
      break;
    if (info.predecessor[0] == '\0') {
      no_chain (err, dir, from_uuid, to_uuid,
                "the logs start at %s before reaching it (%s)",
                info.reset_time ? "a reset or enabling" : "enabling",
                info.reset_reason);
      return NULL;
    }
    g_free (cur);
    cur = g_strdup (info.predecessor);
    if (steps == 99999) {
      no_chain (err, dir, from_uuid, to_uuid, "the chain of logs loops");
      return NULL;
    }
  }
  *len = n;
  return g_steal_pointer (&acc);
}

char *
cbt_bitmap_to_base64 (const uint8_t *bitmap, size_t len)
{
  return g_base64_encode (bitmap, len);
}
