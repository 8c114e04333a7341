/* Whole reads and writes on a file descriptor: read(2), write(2) and
 * their positioned forms may move fewer bytes than asked, or be
 * interrupted by a signal (EINTR) before moving any; these loops retry
 * until everything has moved, end of file, or a real error.  Written
 * once here so that every part gets the same rules (a short write is
 * never an error, EINTR never fails a request).
 *
 * Errors: -1 with errno set, as the system calls set it; a descriptor
 * that accepts no more bytes (a write of 0) is EIO. */
#ifndef VDM_FULL_IO_H
#define VDM_FULL_IO_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* Read COUNT bytes at OFFSET of FD, fewer only at end of file.  Returns
 * the bytes read, or -1. */
static inline ssize_t
full_pread (int fd, void *buf, size_t count, uint64_t offset)
{
  size_t done = 0;

  while (done < count) {
    ssize_t r = pread (fd, (char *)buf + done, count - done, offset + done);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    if (r == 0)
      break;
    done += r;
  }
  return done;
}

/* The loop behind full_pwrite and full_write: at *AT of FD, or at its
 * current position when AT is NULL. */
static inline int
full_write_loop (int fd, const char *p, size_t count, const uint64_t *at)
{
  bool socket = at == NULL;
  size_t done = 0;

  while (done < count) {
    size_t n = count - done;
    ssize_t r = at       ? pwrite (fd, p + done, n, *at + done)
                : socket ? send (fd, p + done, n, MSG_NOSIGNAL)
                         : write (fd, p + done, n);
    if (r == -1 && socket && errno == ENOTSOCK) {
      socket = false;
      continue;
    }
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    done += r;
  }
  return 0;
}

/* Write all COUNT bytes of BUF at OFFSET of FD.  Returns 0, or -1. */
static inline int
full_pwrite (int fd, const void *buf, size_t count, uint64_t offset)
{
  return full_write_loop (fd, buf, count, &offset);
}

/* Write all COUNT bytes of BUF to FD (a pipe, a socket, a file).  On a
 * socket the bytes go with MSG_NOSIGNAL, so a peer that went away is an
 * EPIPE error, never a SIGPIPE that kills the process; on anything else
 * with write(2).  Returns 0, or -1. */
static inline int
full_write (int fd, const void *buf, size_t count)
{
  return full_write_loop (fd, buf, count, NULL);
}

#endif /* VDM_FULL_IO_H */
