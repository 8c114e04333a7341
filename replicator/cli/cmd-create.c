/* vdimotion create: a new empty image, optionally on a parent. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "cli.h"
#include "vdisk.h"

/* -o key=value[,key=value]: subformat=fixed|dynamic, block_size=,
 * cluster_size= (qemu-img's spellings). */
static int
parse_options (char *s, struct vdisk_create_params *p)
{
  char *save = NULL;
  for (char *kv = strtok_r (s, ",", &save); kv;
       kv = strtok_r (NULL, ",", &save)) {
    char *v = strchr (kv, '=');
    if (!v) {
      cli_error ("create", "option \"%s\" needs a value", kv);
      return -1;
    }
    *v++ = '\0';
    if (strcmp (kv, "subformat") == 0) {
      if (strcmp (v, "fixed") == 0)
        p->fixed = true;
      else if (strcmp (v, "dynamic") == 0)
        p->fixed = false;
      else {
        cli_error ("create", "unknown subformat \"%s\" (fixed or dynamic)", v);
        return -1;
      }
    }
    else if (strcmp (kv, "block_size") == 0
             || strcmp (kv, "cluster_size") == 0) {
      uint64_t n;
      if (cli_parse_size (v, &n) == -1 || n == 0 || n > UINT32_MAX
          || (n & (n - 1))) {
        cli_error ("create", "%s \"%s\" is not a power of two", kv, v);
        return -1;
      }
      p->block_size = n;
    }
    else {
      cli_error ("create", "unknown option \"%s\"", kv);
      return -1;
    }
  }
  return 0;
}

/* -b without -F for a qcow2: say what the parent looks like, and refuse. */
static int
refuse_unnamed_backing (const char *image, const char *parent)
{
  char *dir = g_path_get_dirname (image);
  char *path = g_path_is_absolute (parent)
                   ? g_strdup (parent)
                   : g_build_filename (dir, parent, NULL);
  struct vdisk *d
      = vdisk_open (path, VDISK_OPEN_NO_PARENT | VDISK_OPEN_BUFFERED);
  struct vdisk_info info = { .format_name = NULL };
  if (d)
    vdisk_get_info (d, &info);
  cli_error ("create",
             "backing file specified without backing format (-F)%s%s%s; "
             "say it, e.g. -F %s",
             d ? ": it looks like " : "", d ? info.format_name : "",
             d ? ", but a guest may have written what it looks like" : "",
             d ? info.format_name : "raw");
  vdisk_close (d);
  g_free (path);
  g_free (dir);
  return EXIT_ERROR;
}

static int
run (int argc, char **argv)
{
  static const struct option opts[] = {
    { "format", required_argument, NULL, 'f' },
    { "backing", required_argument, NULL, 'b' },
    { "backing-format", required_argument, NULL, 'F' },
    { "options", required_argument, NULL, 'o' },
    { "help", no_argument, NULL, 'h' },
    { NULL },
  };
  struct vdisk_create_params p = { 0 };
  int format = -1, c;
  while ((c = getopt_long (argc, argv, "f:b:F:o:h", opts, NULL)) != -1) {
    switch (c) {
    case 'f':
      format = vdisk_format_from_name (optarg);
      if (format < 0) {
        cli_error ("create", "unknown format \"%s\" (raw, vhd or qcow2)",
                   optarg);
        return EXIT_USAGE;
      }
      break;
    case 'b': p.parent = optarg; break;
    case 'F':
      if (cli_parse_format ("create", optarg) < 0)
        return EXIT_USAGE;
      p.parent_format = optarg;
      break;
    case 'o':
      if (parse_options (optarg, &p) == -1)
        return EXIT_USAGE;
      break;
    case 'h':
      printf ("usage: vdimotion create %s\n", cmd_create.synopsis);
      return EXIT_OK;
    default: return cli_usage (&cmd_create);
    }
  }
  int nargs = argc - optind;
  if (format < 0 || nargs < 1 || nargs > 2 || (nargs == 1 && !p.parent))
    return cli_usage (&cmd_create);
  uint64_t size = 0;
  if (nargs == 2 && cli_parse_size (argv[optind + 1], &size) == -1) {
    cli_error ("create", "invalid size \"%s\" (a number with K, M, G or T)",
               argv[optind + 1]);
    return EXIT_USAGE;
  }
  if (p.parent_format && !p.parent) {
    cli_error ("create", "-F (backing format) needs -b (backing file)");
    return EXIT_USAGE;
  }
  /* As qemu-img: a qcow2 records its backing file's format, and that
   * record is the user's word, never a guess of ours. */
  if (p.parent && !p.parent_format && format == VDISK_FORMAT_QCOW2)
    return refuse_unnamed_backing (argv[optind], p.parent);
  if (vdisk_create (argv[optind], format, size, &p) == -1) {
    cli_error ("create", "%s", vdisk_get_error ());
    return EXIT_ERROR;
  }
  return EXIT_OK;
}

const struct command cmd_create
    = { "create",
        "-f raw|vhd|qcow2 [-b PARENT [-F FMT]] [-o OPTIONS] IMAGE [SIZE]",
        run };
