/* vfile: aligned, direct file I/O for one image layer (see vfile.h). */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "full-io.h"
#include "vdisk-internal.h"

#define DEFAULT_ALIGN 4096

/* The alignment O_DIRECT needs on this file: STATX_DIOALIGN where the
 * kernel reports it, else a safe 4096. */
static uint32_t
direct_alignment (int fd)
{
#ifdef STATX_DIOALIGN
  struct statx stx;
  if (statx (fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0
      && (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align > 0) {
    uint32_t a = stx.stx_dio_offset_align;
    if (stx.stx_dio_mem_align > a)
      a = stx.stx_dio_mem_align;
    return a;
  }
#endif
  return DEFAULT_ALIGN;
}

static int
vfile_init (struct vfile *f, const char *path, int fd, bool writable,
            bool direct)
{
  f->fd = fd;
  f->bfd = fd;
  if (direct) {
    /* A second, buffered descriptor for what O_DIRECT cannot do. */
    f->bfd = open (path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (f->bfd == -1) {
      vdisk_set_error (errno, "%s: %s", path, strerror (errno));
      close (fd);
      return -1;
    }
  }
  f->writable = writable;
  f->direct = direct;
  f->align = direct ? direct_alignment (fd) : 1;
  f->path = strdup (path);
  if (!f->path) {
    close (fd);
    vdisk_set_error (ENOMEM, "%s: out of memory", path);
    return -1;
  }
  return 0;
}

/* Open with O_DIRECT if asked and the filesystem allows it; tmpfs and
 * some FUSE filesystems refuse with EINVAL, and then buffered I/O is the
 * right answer, not an error. */
static int
open_maybe_direct (const char *path, int flags, bool try_direct, bool *direct)
{
  int fd = -1;
  *direct = false;
  if (try_direct) {
    fd = open (path, flags | O_DIRECT | O_CLOEXEC, 0644);
    if (fd >= 0)
      *direct = true;
    else if (errno != EINVAL)
      return -1;
  }
  if (fd < 0)
    fd = open (path, flags | O_CLOEXEC, 0644);
  return fd;
}

int
vfile_open (struct vfile *f, const char *path, bool writable, bool try_direct)
{
  bool direct;
  int fd = open_maybe_direct (path, writable ? O_RDWR : O_RDONLY, try_direct,
                              &direct);
  if (fd < 0) {
    vdisk_set_error (errno, "%s: %s", path, strerror (errno));
    return -1;
  }
  struct stat st;
  if (fstat (fd, &st) == 0 && !S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode)) {
    close (fd);
    vdisk_set_error (EINVAL, "%s: not a regular file or block device", path);
    return -1;
  }
  return vfile_init (f, path, fd, writable, direct);
}

int
vfile_create (struct vfile *f, const char *path, bool try_direct)
{
  bool direct;
  int fd = open_maybe_direct (path, O_RDWR | O_CREAT | O_EXCL, try_direct,
                              &direct);
  if (fd < 0) {
    vdisk_set_error (errno, "%s: %s", path, strerror (errno));
    return -1;
  }
  return vfile_init (f, path, fd, true, direct);
}

void
vfile_close (struct vfile *f)
{
  if (f->bfd >= 0 && f->bfd != f->fd)
    close (f->bfd);
  if (f->fd >= 0)
    close (f->fd);
  f->fd = f->bfd = -1;
  free (f->path);
  f->path = NULL;
}

static bool
is_aligned (const struct vfile *f, const void *buf, size_t count,
            uint64_t offset)
{
  uint64_t a = f->align;
  return ((uintptr_t)buf % a) == 0 && count % a == 0 && offset % a == 0;
}

/* The descriptor for a request: the O_DIRECT one when the request meets
 * its alignment, the buffered one otherwise. */
static int
fd_for (const struct vfile *f, const void *buf, size_t count, uint64_t offset)
{
  return f->direct && !is_aligned (f, buf, count, offset) ? f->bfd : f->fd;
}

/* Read up to COUNT bytes; returns bytes read (short at end of file). */
static ssize_t
read_any (struct vfile *f, void *buf, size_t count, uint64_t offset)
{
  return full_pread (fd_for (f, buf, count, offset), buf, count, offset);
}

int
vfile_pread (struct vfile *f, void *buf, size_t count, uint64_t offset)
{
  ssize_t r = read_any (f, buf, count, offset);
  if (r < 0) {
    vdisk_set_error (errno, "%s: read at %" PRIu64 ": %s", f->path, offset,
                     strerror (errno));
    return -1;
  }
  if ((size_t)r < count) {
    vdisk_set_error (
        EIO, "%s: unexpected end of file reading %zu bytes at %" PRIu64,
        f->path, count, offset);
    return -1;
  }
  return 0;
}

int
vfile_pread_upto (struct vfile *f, void *buf, size_t count, uint64_t offset)
{
  ssize_t r = read_any (f, buf, count, offset);
  if (r < 0) {
    vdisk_set_error (errno, "%s: read at %" PRIu64 ": %s", f->path, offset,
                     strerror (errno));
    return -1;
  }
  memset ((char *)buf + r, 0, count - r);
  return 0;
}

int
vfile_pwrite (struct vfile *f, const void *buf, size_t count, uint64_t offset)
{
  int r;
  if (count == 0)
    return 0;
  /* Unaligned writes go through the buffered descriptor: the page cache
   * merges them into their pages under the page lock, so neighbouring
   * small writes from different threads never undo each other, and the
   * kernel keeps it coherent with the direct descriptor. */
  r = full_pwrite (fd_for (f, buf, count, offset), buf, count, offset);
  if (r == -1) {
    int e = errno;
    vdisk_set_error (e, "%s: write of %zu bytes at %" PRIu64 ": %s", f->path,
                     count, offset,
                     e == ENOSPC ? "no space left on device" : strerror (e));
    return -1;
  }
  return 0;
}

/* One libaio context per thread: io_setup/io_destroy are far too slow to
 * do per call, and sharing a context between threads would let one thread
 * reap another's completions. */
#define AIO_DEPTH 64
static pthread_key_t aio_key;
static pthread_once_t aio_once = PTHREAD_ONCE_INIT;

static void
aio_ctx_free (void *p)
{
  io_context_t ctx = p;
  io_destroy (ctx);
}

static void
aio_key_init (void)
{
  pthread_key_create (&aio_key, aio_ctx_free);
}

static io_context_t
thread_aio_ctx (void)
{
  pthread_once (&aio_once, aio_key_init);
  io_context_t ctx = pthread_getspecific (aio_key);
  if (ctx)
    return ctx;
  ctx = 0;
  int r = io_setup (AIO_DEPTH, &ctx);
  if (r < 0) {
    errno = -r;
    return NULL;
  }
  pthread_setspecific (aio_key, ctx);
  return ctx;
}

/* Submit up to AIO_DEPTH aligned requests and wait for all of them. */
static int
aio_round (struct vfile *f, io_context_t ctx, struct vfile_req *reqs, size_t n)
{
  struct iocb cbs[AIO_DEPTH], *ptrs[AIO_DEPTH];
  struct io_event events[AIO_DEPTH];
  for (size_t i = 0; i < n; i++) {
    if (reqs[i].write)
      io_prep_pwrite (&cbs[i], f->fd, reqs[i].buf, reqs[i].count,
                      reqs[i].offset);
    else
      io_prep_pread (&cbs[i], f->fd, reqs[i].buf, reqs[i].count,
                     reqs[i].offset);
    cbs[i].data = &reqs[i];
    ptrs[i] = &cbs[i];
  }
  size_t submitted = 0;
  while (submitted < n) {
    int r = io_submit (ctx, n - submitted, ptrs + submitted);
    if (r == -EINTR || r == -EAGAIN)
      continue;
    if (r <= 0) {
      /* Reap what is in flight before failing. */
      for (size_t done = 0; done < submitted;) {
        int g = io_getevents (ctx, 1, submitted - done, events, NULL);
        if (g > 0)
          done += g;
        else if (g != -EINTR)
          break;
      }
      errno = r < 0 ? -r : EIO;
      return -1;
    }
    submitted += r;
  }
  int err = 0;
  for (size_t done = 0; done < n;) {
    int g = io_getevents (ctx, 1, n - done, events, NULL);
    if (g == -EINTR)
      continue;
    if (g < 0) {
      errno = -g;
      return -1;
    }
    for (int i = 0; i < g; i++) {
      struct vfile_req *rq = events[i].data;
      long res = (long)events[i].res;
      if (res < 0)
        err = -res;
      else if ((size_t)res < rq->count) {
        /* Short read at end of file: the rest reads as zero, as
         * vfile_pread_upto does; a short write is an error. */
        if (rq->write)
          err = EIO;
        else
          memset ((char *)rq->buf + res, 0, rq->count - res);
      }
    }
    done += g;
  }
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

int
vfile_rw_batch (struct vfile *f, struct vfile_req *reqs, size_t n)
{
  /* Fast path: one request needs no libaio round trip. */
  if (n == 1)
    return reqs[0].write
               ? vfile_pwrite (f, reqs[0].buf, reqs[0].count, reqs[0].offset)
               : vfile_pread_upto (f, reqs[0].buf, reqs[0].count,
                                   reqs[0].offset);

  io_context_t ctx = thread_aio_ctx ();
  struct vfile_req *aligned[AIO_DEPTH];
  size_t i = 0;
  while (i < n) {
    /* Gather a round of aligned requests; do unaligned ones directly. */
    struct vfile_req round[AIO_DEPTH];
    size_t k = 0;
    for (; i < n && k < AIO_DEPTH; i++) {
      struct vfile_req *rq = &reqs[i];
      if (ctx
          && (is_aligned (f, rq->buf, rq->count, rq->offset) || !f->direct)) {
        aligned[k] = rq;
        round[k++] = *rq;
        continue;
      }
      int r = rq->write ? vfile_pwrite (f, rq->buf, rq->count, rq->offset)
                        : vfile_pread_upto (f, rq->buf, rq->count, rq->offset);
      if (r == -1)
        return -1;
    }
    if (k > 0 && aio_round (f, ctx, round, k) == -1) {
      vdisk_set_error (errno, "%s: %s of %zu requests: %s", f->path,
                       aligned[0]->write ? "write" : "read", k,
                       strerror (errno));
      return -1;
    }
  }
  return 0;
}

int
vfile_flush (struct vfile *f)
{
  if (fdatasync (f->fd) == -1) {
    vdisk_set_error (errno, "%s: flush: %s", f->path, strerror (errno));
    return -1;
  }
  return 0;
}

void
vfile_start_writeback (struct vfile *f)
{
  /* The page cache is the inode's: either descriptor reaches it. */
  (void)sync_file_range (f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

int
vfile_get_size (struct vfile *f, uint64_t *size)
{
  struct stat st;
  if (fstat (f->fd, &st) == -1) {
    vdisk_set_error (errno, "%s: stat: %s", f->path, strerror (errno));
    return -1;
  }
  *size = st.st_size;
  return 0;
}

int
vfile_truncate (struct vfile *f, uint64_t size)
{
  if (ftruncate (f->fd, size) == -1) {
    vdisk_set_error (errno, "%s: truncate to %" PRIu64 ": %s", f->path, size,
                     strerror (errno));
    return -1;
  }
  return 0;
}

static int
write_zeroes (struct vfile *f, uint64_t count, uint64_t offset)
{
  size_t chunk = count < (1 << 20) ? count : (1 << 20);
  char *z = NULL;
  if (posix_memalign ((void **)&z, 4096, chunk < 4096 ? 4096 : chunk) != 0)
    z = NULL;
  if (!z) {
    vdisk_set_error (ENOMEM, "%s: out of memory", f->path);
    return -1;
  }
  memset (z, 0, chunk);
  int r = 0;
  while (count > 0 && r == 0) {
    size_t n = count < chunk ? count : chunk;
    r = vfile_pwrite (f, z, n, offset);
    offset += n;
    count -= n;
  }
  free (z);
  return r;
}

int
vfile_zero (struct vfile *f, uint64_t count, uint64_t offset,
            bool may_deallocate)
{
  uint64_t size;
  if (count == 0)
    return 0;
  if (vfile_get_size (f, &size) == -1)
    return -1;
  /* fallocate works on filesystem blocks; keep partial blocks at the
   * edges as plain writes so no neighbouring byte is touched. */
  uint64_t a = 4096;
  uint64_t head = offset % a ? a - offset % a : 0;
  if (head > count)
    head = count;
  uint64_t mid = (count - head) / a * a;
  uint64_t tail = count - head - mid;
  if (head && write_zeroes (f, head, offset) == -1)
    return -1;
  if (mid) {
    uint64_t mo = offset + head;
    int r = -1;
    if (mo + mid <= size) {
      if (may_deallocate)
        r = fallocate (f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, mo,
                       mid);
      if (r == -1)
        r = fallocate (f->fd, FALLOC_FL_ZERO_RANGE, mo, mid);
    }
    else if (mo >= size && ftruncate (f->fd, mo + mid) == 0)
      r = 0; /* extending with a hole reads as zero */
    if (r == -1 && write_zeroes (f, mid, mo) == -1)
      return -1;
  }
  if (tail && write_zeroes (f, tail, offset + head + mid) == -1)
    return -1;
  return 0;
}

static int
seek_to (struct vfile *f, uint64_t from, int whence, uint64_t *out)
{
  off_t r = lseek (f->fd, from, whence);
  if (r == -1) {
    if (errno == ENXIO)
      return vfile_get_size (f, out);
    vdisk_set_error (errno, "%s: lseek: %s", f->path, strerror (errno));
    return -1;
  }
  *out = r;
  return 0;
}

int
vfile_seek_data (struct vfile *f, uint64_t from, uint64_t *out)
{
  return seek_to (f, from, SEEK_DATA, out);
}

int
vfile_seek_hole (struct vfile *f, uint64_t from, uint64_t *out)
{
  return seek_to (f, from, SEEK_HOLE, out);
}
