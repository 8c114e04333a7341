/* vfile: the file underneath one image layer.
 *
 * Opened with O_DIRECT where the filesystem accepts it (and fallback to
 * buffered I/O where it does not, e.g. tmpfs).  vfile_pread/vfile_pwrite
 * hide the alignment O_DIRECT needs: aligned requests use the direct
 * descriptor, unaligned ones a second, buffered descriptor of the same
 * file.  The page cache merges small writes into their pages atomically,
 * and the kernel writes back and invalidates cached pages before direct
 * I/O touches them, so the two stay coherent.
 *
 * vfile_rw_batch puts many data requests in flight at once through libaio
 * (one io_context per thread), for reads and writes that scatter over
 * several places of the file (a VHD read over several blocks, a qcow2 read
 * over several clusters).
 */
#ifndef VDISK_VFILE_H
#define VDISK_VFILE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vfile
{
  int fd;
  int bfd;     /* buffered descriptor (== fd unless direct) */
  bool direct; /* fd opened with O_DIRECT */
  bool writable;
  uint32_t align; /* required alignment of buffer, offset, length */
  char *path;
};

/* Open an existing file.  Sets the vdisk error on failure. */
int vfile_open (struct vfile *f, const char *path, bool writable,
                bool try_direct);
/* Create a new file (O_EXCL), writable. */
int vfile_create (struct vfile *f, const char *path, bool try_direct);
void vfile_close (struct vfile *f);

/* Whole transfers; a short read is an error (EIO, "unexpected end of
 * file") unless vfile_pread_upto is used. */
int vfile_pread (struct vfile *f, void *buf, size_t count, uint64_t offset);
/* Like vfile_pread but reads as much as exists; the rest of BUF past end
 * of file is zero-filled. */
int vfile_pread_upto (struct vfile *f, void *buf, size_t count,
                      uint64_t offset);
int vfile_pwrite (struct vfile *f, const void *buf, size_t count,
                  uint64_t offset);

struct vfile_req
{
  void *buf;
  size_t count;
  uint64_t offset;
  bool write;
};
/* All requests in flight at once (libaio); returns when all finished, -1
 * if any failed.  Unaligned requests fall back to vfile_pread/pwrite. */
int vfile_rw_batch (struct vfile *f, struct vfile_req *reqs, size_t n);

int vfile_flush (struct vfile *f); /* fdatasync */
/* Start writing the file's dirty pages out, without waiting for them
 * (sync_file_range WRITE): a hint, it never fails. */
void vfile_start_writeback (struct vfile *f);
int vfile_get_size (struct vfile *f, uint64_t *size);
int vfile_truncate (struct vfile *f, uint64_t size);
/* Make [offset, offset+count) read as zeroes, deallocating if possible
 * (fallocate PUNCH_HOLE, then ZERO_RANGE, then writing zeroes). */
int vfile_zero (struct vfile *f, uint64_t count, uint64_t offset,
                bool may_deallocate);
/* lseek SEEK_DATA / SEEK_HOLE wrappers: return the offset, or the file
 * size when there is no further data (SEEK_DATA's ENXIO). */
int vfile_seek_data (struct vfile *f, uint64_t from, uint64_t *out);
int vfile_seek_hole (struct vfile *f, uint64_t from, uint64_t *out);

#endif /* VDISK_VFILE_H */
