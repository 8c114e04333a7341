/* Helpers shared by the vdimotion commands. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cli.h"
#include "json.h"
#include "vdisk.h"

int
cli_parse_format (const char *cmd, const char *name)
{
  int f = vdisk_format_from_name (name);
  if (f < 0)
    cli_error (cmd, "unknown format \"%s\" (raw, vhd or qcow2)", name);
  return f;
}

struct vdisk *
cli_open_image (const char *cmd, const char *path, unsigned flags, int format)
{
  struct vdisk *d = vdisk_open_as (path, flags, format, NULL);
  if (!d) {
    cli_error (cmd, "%s", vdisk_get_error ());
    return NULL;
  }
  char prefix[64];
  snprintf (prefix, sizeof prefix, "vdimotion %s", cmd);
  vdisk_warn_probed (d, prefix);
  return d;
}

void
cli_error (const char *cmd, const char *fmt, ...)
{
  va_list ap;
  fprintf (stderr, "vdimotion %s: ", cmd);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

int
cli_usage (const struct command *c)
{
  fprintf (stderr, "usage: vdimotion %s %s\n", c->name, c->synopsis);
  return EXIT_USAGE;
}

int
cli_parse_size (const char *s, uint64_t *out)
{
  char *end;
  errno = 0;
  if (!isdigit ((unsigned char)s[0]))
    return -1;
  unsigned long long v = strtoull (s, &end, 10);
  if (errno)
    return -1;
  int shift = 0;
  switch (toupper ((unsigned char)*end)) {
  case '\0': break;
  case 'B':
    shift = 0;
    end++;
    break;
  case 'K':
    shift = 10;
    end++;
    break;
  case 'M':
    shift = 20;
    end++;
    break;
  case 'G':
    shift = 30;
    end++;
    break;
  case 'T':
    shift = 40;
    end++;
    break;
  default: return -1;
  }
  /* Accept "10G", "10GB", "10GiB". */
  if (shift && (strcmp (end, "iB") == 0 || strcmp (end, "B") == 0))
    end += strlen (end);
  if (*end)
    return -1;
  if (shift && v > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t)v << shift;
  return 0;
}

const char *
cli_human_size (uint64_t n, char *buf, size_t len)
{
  static const char *const units[]
      = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = n;
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (buf, len, "%llu B", (unsigned long long)n);
  else
    snprintf (buf, len, "%.3g %s", v, units[u]);
  return buf;
}

void
cli_json_string (FILE *f, const char *s)
{
  json_write_string (f, s);
}

void
progress_init (struct progress *p, int mode, uint64_t total)
{
  p->enabled = mode == PROGRESS_ON || (mode == PROGRESS_AUTO && isatty (2));
  p->total = total;
  p->start = monotonic_seconds ();
  p->last_draw = 0;
}

static void
draw (struct progress *p, uint64_t done)
{
  const int width = 30;
  double t = monotonic_seconds () - p->start;
  double frac = p->total ? (double)done / p->total : 1;
  int fill = frac * width;
  char rate[32], eta[32] = "";
  double bps = t > 0 ? done / t : 0;
  cli_human_size ((uint64_t)bps, rate, sizeof rate);
  if (bps > 0 && frac < 1)
    snprintf (eta, sizeof eta, " ETA %.0fs", (p->total - done) / bps);
  fprintf (stderr, "\r[%.*s%*s] %5.1f%% %s/s%s  ", fill,
           "##############################", width - fill, "", frac * 100,
           rate, eta);
}

void
progress_update (struct progress *p, uint64_t done)
{
  if (!p->enabled)
    return;
  double t = monotonic_seconds ();
  if (t - p->last_draw < 0.1)
    return;
  p->last_draw = t;
  draw (p, done);
}

void
progress_finish (struct progress *p)
{
  if (!p->enabled)
    return;
  draw (p, p->total);
  fputc ('\n', stderr);
}
