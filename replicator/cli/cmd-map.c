/* vdimotion map: the allocation map, from metadata only, in the words of
 * qemu-img map (the JSON output has the same fields). */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "vdisk.h"

/* Maps are fetched a window at a time so memory stays bounded for huge
 * fragmented disks; the extent list is merged across windows by carrying
 * the last extent over. */
#define MAP_WINDOW (UINT64_C (1) << 36) /* 64 GiB of guest space */

static void
print_json (const struct vdisk_extent *x, bool first)
{
  bool data = x->type == VDISK_EXTENT_DATA;
  bool present = x->type != VDISK_EXTENT_HOLE;
  printf ("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
          ", \"depth\": %" PRIu32 ", \"present\": %s, \"zero\": %s"
          ", \"data\": %s",
          first ? "[" : ",\n", x->offset, x->length, x->depth,
          present ? "true" : "false", data ? "false" : "true",
          data ? "true" : "false");
  if (x->host_offset >= 0)
    printf (", \"offset\": %" PRId64, x->host_offset);
  printf ("}");
}

static void
print_human (const struct vdisk_extent *x, bool first)
{
  static const char *const names[] = { "data", "zero", "hole" };
  if (first)
    printf ("%-18s %-18s %-5s %-5s %s\n", "Offset", "Length", "Type", "Depth",
            "Mapped to");
  printf ("%#-18" PRIx64 " %#-18" PRIx64 " %-5s %-5" PRIu32, x->offset,
          x->length, names[x->type], x->depth);
  if (x->host_offset >= 0)
    printf (" %#" PRIx64, x->host_offset);
  printf ("\n");
}

static int
run (int argc, char **argv)
{
  static const struct option opts[] = {
    { "json", no_argument, NULL, 'j' },
    { "output", required_argument, NULL, 'o' },
    { "layer", no_argument, NULL, 'l' },
    { "format", required_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },
    { NULL },
  };
  bool json = false, layer = false;
  int c, format = VDISK_FORMAT_PROBE;
  while ((c = getopt_long (argc, argv, "f:h", opts, NULL)) != -1) {
    switch (c) {
    case 'f':
      if ((format = cli_parse_format ("map", optarg)) < 0)
        return EXIT_USAGE;
      break;
    case 'j': json = true; break;
    case 'l': layer = true; break;
    case 'o':
      /* qemu-img's spelling, for scripts written against it. */
      if (strcmp (optarg, "json") == 0)
        json = true;
      else if (strcmp (optarg, "human") != 0)
        return cli_usage (&cmd_map);
      break;
    case 'h':
      printf ("usage: vdimotion map %s\n", cmd_map.synopsis);
      return EXIT_OK;
    default: return cli_usage (&cmd_map);
    }
  }
  if (argc - optind != 1)
    return cli_usage (&cmd_map);

  struct vdisk *d
      = cli_open_image ("map", argv[optind], VDISK_OPEN_BUFFERED, format);
  if (!d)
    return EXIT_ERROR;
  uint64_t size = vdisk_get_size (d), pos = 0;
  struct vdisk_extents e = { 0 };
  bool first = true;
  int ret = EXIT_OK;
  /* Print every extent but the last of each window; the last may merge
   * with the first of the next window. */
  while (pos < size) {
    uint64_t n = size - pos < MAP_WINDOW ? size - pos : MAP_WINDOW;
    if (vdisk_map (d, pos, n, layer ? VDISK_MAP_LAYER : 0, &e) == -1) {
      cli_error ("map", "%s", vdisk_get_error ());
      ret = EXIT_ERROR;
      break;
    }
    pos += n;
    size_t keep = pos < size ? 1 : 0;
    for (size_t i = 0; i + keep < e.len; i++) {
      (json ? print_json : print_human) (&e.v[i], first);
      first = false;
    }
    if (keep) {
      e.v[0] = e.v[e.len - 1];
      e.len = 1;
    }
  }
  if (ret == EXIT_OK && json)
    printf (first ? "[]\n" : "]\n");
  vdisk_extents_free (&e);
  if (vdisk_close (d) == -1 && ret == EXIT_OK) {
    cli_error ("map", "%s", vdisk_get_error ());
    ret = EXIT_ERROR;
  }
  return ret;
}

const struct command cmd_map
    = { "map", "[-f FMT] [--json] [--layer] IMAGE", run };
