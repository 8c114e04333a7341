/* vdimotion info: describe an image and its chain, like qemu-img info. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "vdisk.h"

static void
print_human (struct vdisk *d, const char *name)
{
  char a[32], b[32];
  for (; d; d = vdisk_get_parent (d)) {
    struct vdisk_info i;
    vdisk_get_info (d, &i);
    printf ("image: %s\n", name);
    name = i.parent_path;
    printf ("file format: %s\n", i.format_name);
    if (i.subformat)
      printf ("subformat: %s\n", i.subformat);
    printf ("virtual size: %s (%" PRIu64 " bytes)\n",
            cli_human_size (i.virtual_size, a, sizeof a), i.virtual_size);
    printf ("disk size: %s\n",
            cli_human_size (i.allocated_bytes, b, sizeof b));
    if (i.block_size)
      printf ("%s size: %" PRIu32 "\n",
              i.format == VDISK_FORMAT_QCOW2 ? "cluster" : "block",
              i.block_size);
    if (i.uuid[0])
      printf ("uuid: %s\n", i.uuid);
    if (i.parent_name)
      printf ("backing file: %s%s%s%s\n", i.parent_name,
              i.parent_path ? " (actual path: " : "",
              i.parent_path ? i.parent_path : "", i.parent_path ? ")" : "");
    if (i.parent_format_name)
      printf ("backing file format: %s\n", i.parent_format_name);
    if (vdisk_get_parent (d))
      printf ("\n");
  }
}

static void
print_json_layer (struct vdisk *d, const char *filename)
{
  struct vdisk_info i;
  vdisk_get_info (d, &i);
  printf ("{\n    \"filename\": ");
  cli_json_string (stdout, filename);
  printf (",\n    \"format\": ");
  cli_json_string (stdout, i.format_name);
  if (i.subformat) {
    printf (",\n    \"subformat\": ");
    cli_json_string (stdout, i.subformat);
  }
  printf (",\n    \"virtual-size\": %" PRIu64, i.virtual_size);
  printf (",\n    \"actual-size\": %" PRIu64, i.allocated_bytes);
  printf (",\n    \"file-size\": %" PRIu64, i.file_size);
  if (i.block_size)
    printf (",\n    \"cluster-size\": %" PRIu32, i.block_size);
  if (i.uuid[0]) {
    printf (",\n    \"uuid\": ");
    cli_json_string (stdout, i.uuid);
  }
  if (i.parent_name) {
    printf (",\n    \"backing-filename\": ");
    cli_json_string (stdout, i.parent_name);
  }
  if (i.parent_format_name) {
    printf (",\n    \"backing-filename-format\": ");
    cli_json_string (stdout, i.parent_format_name);
  }
  if (i.parent_path) {
    printf (",\n    \"full-backing-filename\": ");
    cli_json_string (stdout, i.parent_path);
  }
  printf (",\n    \"chain-depth\": %u\n}", i.chain_depth);
}

static int
run (int argc, char **argv)
{
  static const struct option opts[] = {
    { "json", no_argument, NULL, 'j' },
    { "format", required_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },
    { NULL },
  };
  bool json = false;
  int c, format = VDISK_FORMAT_PROBE;
  while ((c = getopt_long (argc, argv, "f:h", opts, NULL)) != -1) {
    if (c == 'j')
      json = true;
    else if (c == 'f') {
      if ((format = cli_parse_format ("info", optarg)) < 0)
        return EXIT_USAGE;
    }
    else if (c == 'h') {
      printf ("usage: vdimotion info %s\n", cmd_info.synopsis);
      return EXIT_OK;
    }
    else
      return cli_usage (&cmd_info);
  }
  if (argc - optind != 1)
    return cli_usage (&cmd_info);
  const char *path = argv[optind];
  struct vdisk *d = cli_open_image ("info", path, VDISK_OPEN_BUFFERED, format);
  if (!d)
    return EXIT_ERROR;
  if (json) {
    /* One object for the image; with a chain, an array top first (as
     * qemu-img info --backing-chain). */
    bool chain = vdisk_get_parent (d) != NULL;
    if (chain)
      printf ("[");
    const char *name = path;
    for (struct vdisk *l = d; l; l = vdisk_get_parent (l)) {
      struct vdisk_info i;
      vdisk_get_info (l, &i);
      print_json_layer (l, name);
      name = i.parent_path;
      if (vdisk_get_parent (l))
        printf (",\n");
    }
    printf (chain ? "]\n" : "\n");
  }
  else {
    print_human (d, path);
  }
  vdisk_close (d);
  return EXIT_OK;
}

const struct command cmd_info = { "info", "[-f FMT] [--json] IMAGE", run };
