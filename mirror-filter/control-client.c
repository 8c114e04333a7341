/* The mirror filter's control client (control-client.h). */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "control-client.h"

#define MAX_REPLY 65536

static char *
fmt_err (const char *path, const char *what)
{
  char *s = NULL;

  if (asprintf (&s, "mirror control %s: %s", path, what) == -1)
    s = NULL;
  return s;
}

static int
connect_control (const char *path, char **err)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (path) >= sizeof a.sun_path) {
    *err = fmt_err (path, "path too long");
    return -1;
  }
  strcpy (a.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 || connect (fd, (struct sockaddr *)&a, sizeof a) == -1) {
    *err = fmt_err (path, strerror (errno));
    if (fd != -1)
      close (fd);
    return -1;
  }
  return fd;
}

char *
mirror_control_call (const char *path, const char *line, int timeout_seconds,
                     char **err)
{
  int fd = connect_control (path, err);
  size_t n = strlen (line), have = 0;
  double deadline = monotonic_seconds () + timeout_seconds;
  char *buf, *nl;

  if (fd == -1)
    return NULL;
  for (size_t off = 0; off < n;) {
    ssize_t k = send (fd, line + off, n - off, MSG_NOSIGNAL);
    if (k == -1 && errno == EINTR)
      continue;
    if (k <= 0) {
      *err = fmt_err (path, strerror (errno));
      close (fd);
      return NULL;
    }
    off += k;
  }
  buf = malloc (MAX_REPLY);
  while (buf && have < MAX_REPLY - 1) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int left = (int)((deadline - monotonic_seconds ()) * 1000);
    ssize_t k;

    if (left <= 0 || poll (&p, 1, left) == 0) {
      *err = fmt_err (path, "no reply in time");
      free (buf);
      close (fd);
      return NULL;
    }
    k = recv (fd, buf + have, MAX_REPLY - 1 - have, 0);
    if (k == -1 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    have += k;
    if (memchr (buf + have - k, '\n', k))
      break;
  }
  close (fd);
  if (buf == NULL) {
    *err = fmt_err (path, strerror (ENOMEM));
    return NULL;
  }
  buf[have] = '\0';
  nl = strchr (buf, '\n');
  if (nl == NULL) {
    *err = fmt_err (path, "no reply from the filter");
    free (buf);
    return NULL;
  }
  *nl = '\0';
  return buf;
}

/* Find "KEY": at the top level of the flat object J; returns the start
 * of the value. */
static const char *
find_member (const char *j, const char *key)
{
  size_t klen = strlen (key);
  const char *p = j;
  bool in_string = false;

  for (; *p; p++) {
    if (in_string) {
      if (*p == '\\' && p[1])
        p++;
      else if (*p == '"')
        in_string = false;
      continue;
    }
    if (*p != '"')
      continue;
    if (strncmp (p + 1, key, klen) == 0 && p[1 + klen] == '"') {
      const char *v = p + 2 + klen;
      while (*v == ' ')
        v++;
      if (*v == ':') {
        v++;
        while (*v == ' ')
          v++;
        return v;
      }
    }
    in_string = true;
  }
  return NULL;
}

char *
mirror_reply_get (const char *j, const char *key)
{
  const char *v = find_member (j, key);
  char *out, *o;

  if (v == NULL)
    return NULL;
  if (*v != '"') {
    size_t n = strcspn (v, ",}");
    while (n > 0 && v[n - 1] == ' ')
      n--;
    return strndup (v, n);
  }
  out = o = malloc (strlen (v) + 1);
  if (out == NULL)
    return NULL;
  for (v++; *v && *v != '"'; v++) {
    if (*v == '\\' && v[1]) {
      v++;
      switch (*v) {
      case 'n': *o++ = '\n'; break;
      case 't': *o++ = '\t'; break;
      case 'u': /* not needed by the replies' contents: shown as '?' */
        for (int k = 0; k < 4 && isxdigit ((unsigned char)v[1]); k++)
          v++;
        *o++ = '?';
        break;
      default: *o++ = *v;
      }
    }
    else
      *o++ = *v;
  }
  *o = '\0';
  return out;
}

bool
mirror_reply_get_u64 (const char *j, const char *key, uint64_t *out)
{
  char *s = mirror_reply_get (j, key);
  char *end;
  bool ok;

  if (s == NULL)
    return false;
  errno = 0;
  *out = strtoull (s, &end, 10);
  ok = errno == 0 && end != s && *end == '\0' && s[0] != '-';
  free (s);
  return ok;
}
