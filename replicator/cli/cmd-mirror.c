/* vdimotion mirror: drive nbdkit-mirror-filter through its control socket
 * (the line protocol of nbdkit-mirror-filter(1)): send one command line,
 * read one JSON reply line.  --json prints the reply as it came; without
 * it, the reply is shown as "key: value" lines.  Exit 1 when the filter
 * says {"ok":false}. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

#define MAX_REPLY 65536

static int
connect_control (const char *path)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  if (strlen (path) >= sizeof a.sun_path) {
    cli_error ("mirror", "%s: path too long", path);
    return -1;
  }
  strcpy (a.sun_path, path);
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 || connect (fd, (struct sockaddr *)&a, sizeof a) == -1) {
    cli_error ("mirror", "%s: %s", path, strerror (errno));
    if (fd != -1)
      close (fd);
    return -1;
  }
  return fd;
}

/* Send LINE, read the reply line into a malloc'd string. */
static char *
exchange (const char *path, const char *line)
{
  int fd = connect_control (path);
  if (fd == -1)
    return NULL;
  size_t n = strlen (line);
  for (size_t off = 0; off < n;) {
    ssize_t k = send (fd, line + off, n - off, MSG_NOSIGNAL);
    if (k == -1 && errno == EINTR)
      continue;
    if (k <= 0) {
      cli_error ("mirror", "%s: %s", path, strerror (errno));
      close (fd);
      return NULL;
    }
    off += k;
  }
  char *buf = malloc (MAX_REPLY);
  size_t have = 0;
  while (buf && have < MAX_REPLY - 1) {
    ssize_t k = recv (fd, buf + have, MAX_REPLY - 1 - have, 0);
    if (k == -1 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    have += k;
    if (memchr (buf + have - k, '\n', k))
      break;
  }
  close (fd);
  if (!buf)
    return NULL;
  buf[have] = '\0';
  char *nl = strchr (buf, '\n');
  if (!nl) {
    cli_error ("mirror", "%s: no reply from the filter", path);
    free (buf);
    return NULL;
  }
  *nl = '\0';
  return buf;
}

/* The replies are flat JSON objects of strings, numbers, booleans and
 * null: print each member as "key: value". */
static void
print_human (const char *j)
{
  const char *p = j;
  while (*p && *p != '{')
    p++;
  if (*p)
    p++;
  while (*p && *p != '}') {
    while (*p == ',' || *p == ' ')
      p++;
    if (*p != '"')
      break;
    const char *k = ++p;
    while (*p && *p != '"')
      p++;
    int klen = (int)(p - k);
    if (*p)
      p++;
    if (*p == ':')
      p++;
    if (klen == 2 && strncmp (k, "ok", 2) == 0) {
      while (*p && *p != ',' && *p != '}')
        p++;
      continue;
    }
    printf ("%.*s: ", klen, k);
    if (*p == '"') {
      for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) {
          p++;
          if (*p == 'u' && strlen (p) >= 5) {
            putchar ('?');
            p += 4;
            continue;
          }
        }
        putchar (*p);
      }
      if (*p)
        p++;
    }
    else
      while (*p && *p != ',' && *p != '}')
        putchar (*p++);
    putchar ('\n');
  }
}

/* The "error" member of an {"ok":false} reply, for stderr. */
static void
print_error (const char *j)
{
  const char *e = strstr (j, "\"error\":\"");
  if (!e) {
    cli_error ("mirror", "%s", j);
    return;
  }
  fprintf (stderr, "vdimotion mirror: ");
  for (e += 9; *e && *e != '"'; e++) {
    if (*e == '\\' && e[1])
      e++;
    fputc (*e, stderr);
  }
  fputc ('\n', stderr);
}

static int
run (int argc, char **argv)
{
  static const struct option opts[] = {
    { "control", required_argument, NULL, 'c' },
    { "target", required_argument, NULL, 't' },
    { "tls-psk-file", required_argument, NULL, 'k' },
    { "pivot", no_argument, NULL, 'P' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL },
  };
  const char *control = NULL, *target = NULL, *psk = NULL;
  bool json = false, pivot = false;
  int c;
  while ((c = getopt_long (argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'c': control = optarg; break;
    case 't': target = optarg; break;
    case 'k': psk = optarg; break;
    case 'P': pivot = true; break;
    case 'j': json = true; break;
    case 'h':
      printf ("usage: vdimotion mirror %s\n", cmd_mirror.synopsis);
      return EXIT_OK;
    default: return cli_usage (&cmd_mirror);
    }
  }
  if (argc - optind != 1 || !control)
    return cli_usage (&cmd_mirror);
  const char *verb = argv[optind];
  bool is_start = strcmp (verb, "start") == 0;
  if (!is_start && strcmp (verb, "status") != 0
      && strcmp (verb, "complete") != 0 && strcmp (verb, "abort") != 0) {
    cli_error ("mirror", "unknown subcommand \"%s\"", verb);
    return cli_usage (&cmd_mirror);
  }
  if (is_start != (target != NULL) || (psk && !is_start)
      || (pivot && strcmp (verb, "complete") != 0)) {
    cli_error ("mirror", is_start ? "start needs --target URI"
                                  : "--target, --tls-psk-file and --pivot "
                                    "belong to start and complete");
    return cli_usage (&cmd_mirror);
  }
  /* The protocol splits on blanks: refuse what it cannot carry. */
  if ((target && strpbrk (target, " \t\r\n"))
      || (psk && strpbrk (psk, " \t\r\n"))) {
    cli_error ("mirror", "the target URI and PSK file may not contain blanks");
    return EXIT_USAGE;
  }

  char *line = NULL;
  int r;
  if (is_start)
    r = asprintf (&line, "start target=%s%s%s\n", target,
                  psk ? " tls-psk-file=" : "", psk ? psk : "");
  else
    r = asprintf (&line, "%s%s\n", verb, pivot ? " pivot=true" : "");
  if (r == -1) {
    cli_error ("mirror", "out of memory");
    return EXIT_ERROR;
  }
  char *reply = exchange (control, line);
  free (line);
  if (!reply)
    return EXIT_ERROR;
  bool ok = strncmp (reply, "{\"ok\":true", 10) == 0;
  if (json)
    printf ("%s\n", reply);
  else if (ok)
    print_human (reply);
  if (!ok)
    print_error (reply);
  free (reply);
  return ok ? EXIT_OK : EXIT_ERROR;
}

const struct command cmd_mirror
    = { "mirror",
        "start|status|complete|abort --control SOCKET [--target URI] "
        "[--tls-psk-file FILE] [--pivot] [--json]",
        run };
