/* vdimotion mirror: drive nbdkit-mirror-filter through its control socket
 * (the line protocol of nbdkit-mirror-filter(1)): send one command line,
 * read one JSON reply line.  --json prints the reply as it came; without
 * it, the reply is shown as "key: value" lines.  Exit 1 when the filter
 * says {"ok":false}. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "control-client.h"

/* Long enough for "complete", which drains and flushes both sides. */
#define CONTROL_TIMEOUT 600

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
  char *e = mirror_reply_get (j, "error");

  cli_error ("mirror", "%s", e ? e : j);
  free (e);
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
  char *err = NULL;
  char *reply = mirror_control_call (control, line, CONTROL_TIMEOUT, &err);
  free (line);
  if (!reply) {
    cli_error ("mirror", "%s", err ? err : "no reply");
    free (err);
    return EXIT_ERROR;
  }
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
