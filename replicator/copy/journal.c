/* The copy journal (see journal.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endpoint.h"
#include "journal.h"

#define MAGIC "VDMJRNL1"
#define IDENTITY_MAX 4000
#define HEADER_SIZE 4096 /* magic, nwindows, identity */

struct journal
{
  int fd;
  char *path;
  uint64_t nwindows;
  size_t bitmap_bytes;
  uint8_t *started, *done;
  pthread_mutex_t lock;
};

static int
write_all (struct journal *j, const void *buf, size_t n, off_t off, char **err)
{
  if (pwrite (j->fd, buf, n, off) != (ssize_t)n)
    return copy_error (err, "journal %s: write: %s", j->path,
                       strerror (errno ? errno : EIO));
  return 0;
}

static int
sync_journal (struct journal *j, char **err)
{
  if (fdatasync (j->fd) == -1)
    return copy_error (err, "journal %s: sync: %s", j->path, strerror (errno));
  return 0;
}

/* A new journal replaces the (empty) file at its path whole: written
 * and synced under another name, then renamed, so that a kill at any
 * point leaves the path empty (a copy that never started) or complete,
 * never a header without its bitmaps. */
static int
create_new (struct journal *j, const char *identity, char **err)
{
  size_t len = HEADER_SIZE + 2 * j->bitmap_bytes;
  char *buf = calloc (1, len);
  char *tmp = NULL;
  int fd = -1, r = -1;

  if (!buf || asprintf (&tmp, "%s.new", j->path) == -1) {
    free (buf);
    return copy_error (err, "journal %s: out of memory", j->path);
  }
  memcpy (buf, MAGIC, 8);
  memcpy (buf + 8, &j->nwindows, 8);
  strcpy (buf + 16, identity);
  /* The bitmaps start all clear (calloc). */
  fd = open (tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd == -1)
    copy_error (err, "journal %s: %s", tmp, strerror (errno));
  else if (pwrite (fd, buf, len, 0) != (ssize_t)len)
    copy_error (err, "journal %s: write: %s", tmp,
                strerror (errno ? errno : EIO));
  else if (fdatasync (fd) == -1)
    copy_error (err, "journal %s: sync: %s", tmp, strerror (errno));
  else if (rename (tmp, j->path) == -1)
    copy_error (err, "journal %s: %s", j->path, strerror (errno));
  else {
    close (j->fd);
    j->fd = fd;
    fd = -1;
    r = 0;
  }
  if (fd >= 0) {
    close (fd);
    unlink (tmp);
  }
  free (tmp);
  free (buf);
  return r;
}

static int
load (struct journal *j, const char *identity, char **err)
{
  char hdr[HEADER_SIZE];
  uint64_t n;
  if (pread (j->fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr
      || memcmp (hdr, MAGIC, 8) != 0)
    return copy_error (err, "journal %s: not a vdimotion copy journal",
                       j->path);
  memcpy (&n, hdr + 8, 8);
  hdr[HEADER_SIZE - 1] = '\0';
  if (n != j->nwindows || strcmp (hdr + 16, identity) != 0)
    return copy_error (err,
                       "journal %s belongs to another copy (%s), not this "
                       "one (%s)",
                       j->path, hdr + 16, identity);
  if (pread (j->fd, j->started, j->bitmap_bytes, HEADER_SIZE)
          != (ssize_t)j->bitmap_bytes
      || pread (j->fd, j->done, j->bitmap_bytes, HEADER_SIZE + j->bitmap_bytes)
             != (ssize_t)j->bitmap_bytes)
    return copy_error (err, "journal %s: truncated", j->path);
  return 0;
}

struct journal *
journal_open (const char *path, const char *identity, uint64_t nwindows,
              bool *resumed, char **err)
{
  struct journal *j = calloc (1, sizeof *j);
  if (!j || strlen (identity) >= IDENTITY_MAX) {
    copy_error (err, "journal %s: %s", path,
                j ? "copy description too long" : "out of memory");
    free (j);
    return NULL;
  }
  pthread_mutex_init (&j->lock, NULL);
  j->nwindows = nwindows;
  j->bitmap_bytes = (nwindows + 7) / 8;
  j->started = calloc (1, j->bitmap_bytes + 1);
  j->done = calloc (1, j->bitmap_bytes + 1);
  j->path = strdup (path);
  /* An empty file is a journal whose copy never started (the CLI creates
   * it before the destination): start it afresh. */
  struct stat st;
  *resumed = stat (path, &st) == 0 && st.st_size > 0;
  j->fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (j->fd == -1)
    copy_error (err, "journal %s: %s", path, strerror (errno));
  else if ((*resumed ? load (j, identity, err) : create_new (j, identity, err))
           == 0)
    return j;
  journal_close (j, false);
  return NULL;
}

static bool
bit (const uint8_t *map, uint64_t w)
{
  return map[w / 8] & (1 << (w % 8));
}

bool
journal_is_done (struct journal *j, uint64_t w)
{
  pthread_mutex_lock (&j->lock);
  bool r = bit (j->done, w);
  pthread_mutex_unlock (&j->lock);
  return r;
}

bool
journal_was_started (struct journal *j, uint64_t w)
{
  pthread_mutex_lock (&j->lock);
  bool r = bit (j->started, w);
  pthread_mutex_unlock (&j->lock);
  return r;
}

/* Write back the byte of MAP holding window W. */
static int
store_byte (struct journal *j, uint8_t *map, uint64_t w, off_t base,
            char **err)
{
  return write_all (j, &map[w / 8], 1, base + w / 8, err);
}

int
journal_mark_started (struct journal *j, uint64_t w, char **err)
{
  pthread_mutex_lock (&j->lock);
  int r = 0;
  if (!bit (j->started, w)) {
    j->started[w / 8] |= 1 << (w % 8);
    r = store_byte (j, j->started, w, HEADER_SIZE, err);
    if (r == 0)
      r = sync_journal (j, err);
  }
  pthread_mutex_unlock (&j->lock);
  return r;
}

int
journal_mark_done (struct journal *j, const uint64_t *ws, size_t n, char **err)
{
  int r = 0;
  pthread_mutex_lock (&j->lock);
  for (size_t i = 0; i < n && r == 0; i++) {
    j->done[ws[i] / 8] |= 1 << (ws[i] % 8);
    r = store_byte (j, j->done, ws[i], HEADER_SIZE + j->bitmap_bytes, err);
  }
  if (r == 0 && n > 0)
    r = sync_journal (j, err);
  pthread_mutex_unlock (&j->lock);
  return r;
}

void
journal_close (struct journal *j, bool remove)
{
  if (!j)
    return;
  if (j->fd >= 0)
    close (j->fd);
  if (remove && j->path)
    copy_journal_remove (j->path);
  pthread_mutex_destroy (&j->lock);
  free (j->started);
  free (j->done);
  free (j->path);
  free (j);
}

int
copy_journal_remove (const char *path)
{
  char *tmp = NULL;
  int r = unlink (path) == -1 && errno != ENOENT ? -1 : 0;
  int e = errno;

  /* What a kill in the middle of create_new left. */
  if (asprintf (&tmp, "%s.new", path) != -1) {
    unlink (tmp);
    free (tmp);
  }
  errno = e;
  return r;
}
