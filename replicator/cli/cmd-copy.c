/* vdimotion copy: SRC -> DST with the copy engine.  SRC and DST are
 * image paths or NBD URIs.  A DST path is created (refused if it exists,
 * unless --overwrite, or unless --journal names the journal of this very
 * copy, which resumes it). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* What the command created, removed again if the copy fails. */
struct created
{
  char *paths[VDISK_MAX_DEPTH + 1];
  unsigned n;
};

static int
format_from_extension (const char *path)
{
  const char *dot = strrchr (path, '.');
  if (dot && strcmp (dot, ".vhd") == 0)
    return VDISK_FORMAT_VHD;
  if (dot && strcmp (dot, ".qcow2") == 0)
    return VDISK_FORMAT_QCOW2;
  return VDISK_FORMAT_RAW; /* .raw, .img, anything else */
}

static const char *
extension_of (int format)
{
  return format == VDISK_FORMAT_VHD     ? ".vhd"
         : format == VDISK_FORMAT_QCOW2 ? ".qcow2"
                                        : ".raw";
}

static void
on_progress (const struct copy_progress *pr, void *opaque)
{
  struct progress *p = opaque;
  p->total = pr->total;
  progress_update (p, pr->done);
}

static void
add_stats (struct copy_stats *sum, const struct copy_stats *s)
{
  sum->bytes_read += s->bytes_read;
  sum->bytes_written += s->bytes_written;
  sum->bytes_zeroed += s->bytes_zeroed;
  sum->bytes_skipped += s->bytes_skipped;
  sum->seconds += s->seconds;
}

/* Run one engine copy between two endpoints, with a progress bar. */
static int
run_engine (struct copy_endpoint *src, struct copy_endpoint *dst,
            struct options *o, bool dest_zero, bool layer,
            struct copy_stats *sum)
{
  struct progress bar;
  struct copy_params p = o->params;
  struct copy_stats st = { 0 };
  char *err = NULL;
  progress_init (&bar, o->progress, copy_endpoint_size (src));
  p.dest_is_zero = dest_zero;
  p.holes_fall_through = layer;
  p.progress = on_progress;
  p.progress_opaque = &bar;
  int r = copy_run (src, dst, &p, &st, &err);
  if (r == 0)
    progress_finish (&bar);
  else if (bar.enabled)
    fputc ('\n', stderr);
  add_stats (sum, &st);
  if (r == -1) {
    cli_error ("copy", "%s", err ? err : "copy failed");
    free (err);
  }
  return r;
}

/* Open SRC as an endpoint (and keep its vdisk for the caller). */
static struct copy_endpoint *
open_source (const char *src, struct options *o, struct vdisk **d)
{
  char *err = NULL;
  struct copy_endpoint *e;
  *d = NULL;
  if (copy_is_nbd_uri (src))
    e = copy_endpoint_nbd (src, false, o->connections, &err);
  else {
    *d = cli_open_image ("copy", src, COPY_OPEN_FLAGS, o->src_format);
    if (!*d)
      return NULL;
    e = copy_endpoint_local (*d, false, &err);
  }
  if (!e) {
    cli_error ("copy", "%s", err);
    free (err);
    vdisk_close (*d);
    *d = NULL;
  }
  return e;
}

static void
remove_created (struct created *c)
{
  for (unsigned i = 0; i < c->n; i++) {
    unlink (c->paths[i]);
    free (c->paths[i]);
  }
  c->n = 0;
}

static void
forget_created (struct created *c)
{
  for (unsigned i = 0; i < c->n; i++)
    free (c->paths[i]);
  c->n = 0;
}

/* Create PATH (recording it for cleanup); a PARENT is of the same
 * FORMAT, and the child records so. */
static int
create_image (struct created *c, const char *path, int format, uint64_t size,
              const char *parent)
{
  struct vdisk_create_params cp = {
    .parent = parent,
    .parent_format = parent ? vdisk_format_name (format) : NULL,
  };
  if (vdisk_create (path, format, size, &cp) == -1) {
    cli_error ("copy", "%s", vdisk_get_error ());
    return -1;
  }
  c->paths[c->n++] = strdup (path);
  return 0;
}

/* Copy into a local destination path: one flattened image. */
static int
copy_to_path (struct copy_endpoint *src, const char *dst, struct options *o,
              struct created *made, struct copy_stats *sum)
{
  int format = o->format >= 0 ? o->format : format_from_extension (dst);
  char *err = NULL;
  /* The journal exists before the destination does, so that a kill at any
   * point leaves either nothing or a journal to resume with.  An empty
   * journal is one whose copy never started: its destination (if the kill
   * came after creating it) is ours to replace. */
  struct stat jst;
  bool have_journal = o->journal && stat (o->journal, &jst) == 0;
  bool resuming = have_journal && jst.st_size > 0;
  /* Refused before the journal is made: a refusal leaves nothing. */
  if (!have_journal && !o->overwrite && access (dst, F_OK) == 0) {
    cli_error ("copy", "%s already exists (use --overwrite to replace it)",
               dst);
    return -1;
  }
  if (o->journal && !have_journal) {
    int fd = open (o->journal, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd == -1 || fsync (fd) == -1) {
      cli_error ("copy", "journal %s: %s", o->journal, strerror (errno));
      if (fd >= 0)
        close (fd);
      return -1;
    }
    close (fd);
  }
  if (resuming) {
    if (access (dst, F_OK) != 0) {
      cli_error ("copy",
                 "journal %s exists but the destination %s does "
                 "not: remove the journal to start over",
                 o->journal, dst);
      return -1;
    }
  }
  else {
    if (access (dst, F_OK) == 0) {
      if (!o->overwrite && !have_journal) {
        cli_error ("copy",
                   "%s already exists (use --overwrite to replace "
                   "it)",
                   dst);
        return -1;
      }
      if (unlink (dst) == -1) {
        cli_error ("copy", "%s: %s", dst, strerror (errno));
        return -1;
      }
    }
    if (create_image (made, dst, format, copy_endpoint_size (src), NULL) == -1)
      return -1;
  }
  struct vdisk *d
      = vdisk_open_as (dst, VDISK_OPEN_RDWR | COPY_OPEN_FLAGS, format, NULL);
  if (!d) {
    cli_error ("copy", "%s", vdisk_get_error ());
    return -1;
  }
  struct copy_endpoint *de = copy_endpoint_local (d, false, &err);
  int r = -1;
  o->params.keep_journal = true;
  if (!de)
    cli_error ("copy", "%s", err);
  else
    r = run_engine (src, de, o, true, false, sum);
  copy_endpoint_close (de, NULL);
  if (vdisk_close (d) == -1 && r == 0) {
    cli_error ("copy", "%s", vdisk_get_error ());
    r = -1;
  }
  /* The journal goes last, once the destination is complete and closed. */
  if (r == 0 && o->journal && copy_journal_remove (o->journal) == -1) {
    cli_error ("copy", "journal %s: %s", o->journal, strerror (errno));
    r = -1;
  }
  free (err);
  return r;
}

/* Where a lower layer goes: named after its source file (its child's
 * recorded parent) with the destination format's extension, in DST's
 * directory.  NAME is what its own child records. */
static int
layer_dest_name (struct vdisk *child, const char *dir, int format, char **name,
                 char **path)
{
  struct vdisk_info ci;
  vdisk_get_info (child, &ci);
  char *b = strdup (ci.parent_path);
  if (!b)
    return -1;
  char *bn = basename (b);
  char *dot = strrchr (bn, '.');
  if (dot && dot != bn)
    *dot = '\0';
  int r = 0;
  if (asprintf (name, "%s%s", bn, extension_of (format)) == -1
      || asprintf (path, "%s/%s", dir, *name) == -1)
    r = -1;
  free (b);
  return r;
}

/* --keep-chain: copy every layer of SRC's chain, bottom first, into a
 * chain of the same shape.  The top becomes DST; each lower layer goes
 * beside it, named after its source layer with DST's format's extension,
 * and is recorded as its child's parent by that relative name. */
static int
copy_chain (struct vdisk *src, const char *dst, struct options *o,
            struct created *made, struct copy_stats *sum)
{
  struct vdisk *layers[VDISK_MAX_DEPTH + 1];
  unsigned n = 0;
  int format = o->format >= 0 ? o->format : format_from_extension (dst);
  if (format == VDISK_FORMAT_RAW) {
    cli_error ("copy", "--keep-chain needs a destination format with "
                       "parents (vhd or qcow2)");
    return -1;
  }
  for (struct vdisk *l = src; l; l = vdisk_get_parent (l))
    layers[n++] = l;

  char *dir_copy = strdup (dst);
  const char *dir = dirname (dir_copy);
  char *parent_name = NULL;
  int r = 0;
  for (unsigned i = n; i-- > 0 && r == 0;) {
    char *path = NULL, *name = NULL;
    if (i == 0)
      path = strdup (dst);
    else if (layer_dest_name (layers[i - 1], dir, format, &name, &path) == -1)
      r = -1;
    if (r == 0 && access (path, F_OK) == 0) {
      cli_error ("copy", "%s already exists", path);
      r = -1;
    }
    if (r == 0)
      r = create_image (made, path, format, vdisk_get_size (layers[i]),
                        parent_name);
    if (r == 0) {
      char *err = NULL;
      struct vdisk *d = vdisk_open_as (path, VDISK_OPEN_RDWR | COPY_OPEN_FLAGS,
                                       format, NULL);
      struct copy_endpoint *se = copy_endpoint_local (layers[i], true, &err);
      struct copy_endpoint *de
          = d ? copy_endpoint_local (d, false, &err) : NULL;
      if (!d)
        cli_error ("copy", "%s", vdisk_get_error ());
      else if (!se || !de)
        cli_error ("copy", "%s", err);
      r = d && se && de
              ? run_engine (se, de, o, parent_name == NULL, true, sum)
              : -1;
      copy_endpoint_close (se, NULL);
      copy_endpoint_close (de, NULL);
      if (d && vdisk_close (d) == -1 && r == 0) {
        cli_error ("copy", "%s", vdisk_get_error ());
        r = -1;
      }
      free (err);
    }
    free (parent_name);
    parent_name = name;
    free (path);
  }
  free (parent_name);
  free (dir_copy);
  return r;
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

  struct vdisk *sd;
  struct copy_endpoint *se = open_source (src, &o, &sd);
  if (!se)
    return EXIT_ERROR;
  struct copy_stats sum = { 0 };
  struct created made = { 0 };
  int r;
  char *err = NULL;
  if (o.keep_chain)
    r = copy_chain (sd, dst, &o, &made, &sum);
  else if (copy_is_nbd_uri (dst)) {
    struct copy_endpoint *de
        = copy_endpoint_nbd (dst, true, o.connections, &err);
    if (!de) {
      cli_error ("copy", "%s", err);
      r = -1;
    }
    else
      r = run_engine (se, de, &o, false, false, &sum);
    if (de && copy_endpoint_close (de, &err) == -1 && r == 0) {
      cli_error ("copy", "%s", err);
      r = -1;
    }
  }
  else
    r = copy_to_path (se, dst, &o, &made, &sum);
  free (err);
  copy_endpoint_close (se, NULL);
  vdisk_close (sd);

  /* A failed copy leaves nothing it created -- unless a journal keeps the
   * destination for resuming. */
  if (r == -1 && !o.journal)
    remove_created (&made);
  else
    forget_created (&made);
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
