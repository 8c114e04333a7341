/* vdimotion copy: SRC -> DST with the copy engine (copy_simple).  SRC
 * and DST are image paths or NBD URIs.  A DST path is created (refused if
 * it exists, unless --overwrite, or unless --journal names the journal of
 * this very copy, which resumes it); with --keep-chain, its lower layers
 * beside it.  What the copy created is removed if it fails, unless a
 * journal keeps it. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "copy.h"
#include "vdisk.h"

/* Both ends of a copy go through the page cache, with one fdatasync of
 * the destination at the end (and per journaled window).  Measured on an
 * 8 GiB disk with 20 % data (tests/bench/copy, README): O_DIRECT through
 * synchronous worker threads was 2x slower at both ends. */
#define COPY_OPEN_FLAGS VDISK_OPEN_BUFFERED

struct options
{
  int format;     /* -O, or -1 */
  int src_format; /* -f, or VDISK_FORMAT_PROBE */
  bool keep_chain, overwrite, json;
  int progress;
  const char *journal;
  struct copy_params params;
  unsigned connections;
};

static void
on_progress (const struct copy_progress *pr, void *opaque)
{
  struct progress *p = opaque;
  p->total = pr->total;
  progress_update (p, pr->done);
}

/* SRC or DST as an endpoint description. */
static struct copy_spec
spec_of (const char *s, const struct options *o, bool dest)
{
  struct copy_spec sp = { .kind = COPY_IMAGE };
  if (copy_is_nbd_uri (s)) {
    sp.kind = COPY_NBD;
    sp.uri = s;
    sp.connections = o->connections;
    return sp;
  }
  sp.path = s;
  sp.format = dest ? o->format : o->src_format;
  sp.overwrite = o->overwrite;
  sp.probe_warning = dest ? NULL : "vdimotion copy";
  sp.open_flags = COPY_OPEN_FLAGS;
  sp.keep_chain = o->keep_chain;
  return sp;
}

static void
print_json (const struct copy_stats *s)
{
  printf ("{\"bytes-read\": %" PRIu64 ", \"bytes-written\": %" PRIu64
          ", \"bytes-zeroed\": %" PRIu64 ", \"bytes-skipped\": %" PRIu64
          ", \"seconds\": %.3f}\n",
          s->bytes_read, s->bytes_written, s->bytes_zeroed, s->bytes_skipped,
          s->seconds);
}

static int
parse_uint (const char *opt, const char *s, uint64_t min, uint64_t max,
            uint64_t *out)
{
  if (cli_parse_size (s, out) == -1 || *out < min || *out > max) {
    cli_error ("copy", "%s \"%s\" must be between %" PRIu64 " and %" PRIu64,
               opt, s, min, max);
    return -1;
  }
  return 0;
}

static int
parse_args (int argc, char **argv, struct options *o)
{
  enum
  {
    OPT_KEEP = 256,
    OPT_JOURNAL,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
    OPT_JSON,
    OPT_REQUESTS,
    OPT_REQSIZE,
    OPT_CONNS,
    OPT_OVERWRITE
  };
  static const struct option opts[] = {
    { "keep-chain", no_argument, NULL, OPT_KEEP },
    { "journal", required_argument, NULL, OPT_JOURNAL },
    { "progress", no_argument, NULL, OPT_PROGRESS },
    { "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
    { "json", no_argument, NULL, OPT_JSON },
    { "requests", required_argument, NULL, OPT_REQUESTS },
    { "request-size", required_argument, NULL, OPT_REQSIZE },
    { "connections", required_argument, NULL, OPT_CONNS },
    { "overwrite", no_argument, NULL, OPT_OVERWRITE },
    { "help", no_argument, NULL, 'h' },
    { NULL },
  };
  uint64_t v;
  int c;
  while ((c = getopt_long (argc, argv, "f:O:h", opts, NULL)) != -1) {
    switch (c) {
    case 'f':
      if ((o->src_format = cli_parse_format ("copy", optarg)) < 0)
        return -1;
      break;
    case 'O':
      o->format = vdisk_format_from_name (optarg);
      if (o->format < 0) {
        cli_error ("copy", "unknown format \"%s\" (raw, vhd or qcow2)",
                   optarg);
        return -1;
      }
      break;
    case OPT_KEEP: o->keep_chain = true; break;
    case OPT_JOURNAL: o->journal = optarg; break;
    case OPT_PROGRESS: o->progress = PROGRESS_ON; break;
    case OPT_NO_PROGRESS: o->progress = PROGRESS_OFF; break;
    case OPT_JSON: o->json = true; break;
    case OPT_OVERWRITE: o->overwrite = true; break;
    case OPT_REQUESTS:
      if (parse_uint ("--requests", optarg, 1, 256, &v) == -1)
        return -1;
      o->params.requests = v;
      break;
    case OPT_REQSIZE:
      if (parse_uint ("--request-size", optarg, 4096, 32 << 20, &v) == -1)
        return -1;
      if (v % 4096) {
        cli_error ("copy", "--request-size must be a multiple of 4096");
        return -1;
      }
      o->params.request_size = v;
      break;
    case OPT_CONNS:
      if (parse_uint ("--connections", optarg, 1, 16, &v) == -1)
        return -1;
      o->connections = v;
      break;
    case 'h':
      printf ("usage: vdimotion copy %s\n", cmd_copy.synopsis);
      exit (EXIT_OK);
    default: return -1;
    }
  }
  if (argc - optind != 2)
    return -1;
  o->params.journal = o->journal;
  return 0;
}

static int
run (int argc, char **argv)
{
  struct options o
      = { .format = -1, .src_format = VDISK_FORMAT_PROBE, .connections = 4 };
  if (parse_args (argc, argv, &o) == -1)
    return cli_usage (&cmd_copy);
  const char *src = argv[optind], *dst = argv[optind + 1];
  if (o.keep_chain && (copy_is_nbd_uri (src) || copy_is_nbd_uri (dst))) {
    cli_error ("copy", "--keep-chain copies between image files, not NBD");
    return EXIT_USAGE;
  }
  if (o.keep_chain && o.journal) {
    cli_error ("copy", "--keep-chain cannot be combined with --journal yet");
    return EXIT_USAGE;
  }
  /* An NBD export is a disk's guest view: raw bytes, nothing to open. */
  if (copy_is_nbd_uri (src) && o.src_format != VDISK_FORMAT_PROBE
      && o.src_format != VDISK_FORMAT_RAW) {
    cli_error ("copy", "-f %s: an NBD source is read as raw bytes",
               vdisk_format_name (o.src_format));
    return EXIT_USAGE;
  }

  struct copy_spec s = spec_of (src, &o, false), d = spec_of (dst, &o, true);
  struct copy_stats sum = { 0 };
  struct progress bar;
  char *err = NULL;
  progress_init (&bar, o.progress, 0);
  o.params.progress = on_progress;
  o.params.progress_opaque = &bar;
  int r = copy_simple (&s, &d, &o.params, &sum, &err);
  if (r == 0)
    progress_finish (&bar);
  else {
    if (bar.enabled)
      fputc ('\n', stderr);
    cli_error ("copy", "%s", err ? err : "copy failed");
  }
  free (err);
  if (r == 0 && o.json)
    print_json (&sum);
  return r == 0 ? EXIT_OK : EXIT_ERROR;
}

const struct command cmd_copy
    = { "copy",
        "[-f FMT] [-O raw|vhd|qcow2] [--keep-chain] [--journal FILE] "
        "[--progress|--no-progress] [--json] [--requests N] "
        "[--request-size BYTES] [--connections N] [--overwrite] SRC DST",
        run };
