/* vdimotion: the command dispatcher.  Options of the server commands
 * (--server URL, ...; client.h) may come before the command name, as in
 * "vdimotion --server URL sr list"; they are taken here, the rest of the
 * line goes to the command. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client.h"

static const struct command *const commands[] = {
  &cmd_info,          &cmd_map, &cmd_create, &cmd_compare, &cmd_copy,
  &cmd_mirror,        &cmd_sr,  &cmd_vdi,    &cmd_vm,      &cmd_task,
  &cmd_hash_password,
  &cmd_backup,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void
usage (FILE *f)
{
  fprintf (f, "usage: vdimotion [SERVER OPTIONS] COMMAND [OPTIONS] "
              "ARGS...\n\ncommands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++)
    fprintf (f, "  %s %s\n", commands[i]->name, commands[i]->synopsis);
  client_usage_options (f);
  fprintf (f, "\nSee vdimotion(1).\n");
}

int
main (int argc, char **argv)
{
  /* Server options before the command name. */
  while (argc > 1) {
    int n = client_global_option (argc - 1, argv + 1);
    if (n == 0)
      break;
    if (n < 0) {
      fprintf (stderr, "vdimotion: option %s needs a value\n", argv[1]);
      return EXIT_USAGE;
    }
    argv[n] = argv[0];
    argv += n;
    argc -= n;
  }
  if (argc < 2) {
    usage (stderr);
    return EXIT_USAGE;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0
      || strcmp (argv[1], "help") == 0) {
    usage (stdout);
    return EXIT_OK;
  }
  if (strcmp (argv[1], "--version") == 0) {
    printf ("vdimotion %s\n", PACKAGE_VERSION);
    return EXIT_OK;
  }
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (strcmp (argv[1], commands[i]->name) == 0)
      return commands[i]->run (argc - 1, argv + 1);
  fprintf (stderr, "vdimotion: unknown command \"%s\"\n", argv[1]);
  usage (stderr);
  return EXIT_USAGE;
}
