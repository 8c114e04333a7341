/* The front of the server commands (sr, vdi, vm, task): each is a table
 * of subcommands (struct client_subcommand); this file parses the options
 * they share (--server, --user, ... anywhere on the line, also before the
 * command name), checks each subcommand's own options and arguments,
 * logs in, runs it, logs out and prints the error, once. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "vdisk.h"

enum
{
  OPT_SERVER = 256,
  OPT_USER,
  OPT_PASSWORD_FILE,
  OPT_CA_FILE,
  OPT_JSON,
  OPT_PROGRESS,
  OPT_NO_PROGRESS,
  OPT_NAME,
  OPT_LIVE,
  OPT_DISK,
  OPT_FORMAT,
  OPT_TO,
  OPT_TO_USER,
  OPT_TO_PASSWORD_FILE,
  OPT_SR,
  OPT_MAP,
  OPT_OPTION,
  OPT_OFFLINE,
  OPT_PARALLEL,
  OPT_DRY_RUN,
  OPT_ORDER,
  OPT_EXCLUDE,
  OPT_HELP,
};

static const struct option long_opts[] = {
  { "server", required_argument, NULL, OPT_SERVER },
  { "user", required_argument, NULL, OPT_USER },
  { "password-file", required_argument, NULL, OPT_PASSWORD_FILE },
  { "ca-file", required_argument, NULL, OPT_CA_FILE },
  { "json", no_argument, NULL, OPT_JSON },
  { "progress", no_argument, NULL, OPT_PROGRESS },
  { "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
  { "name", required_argument, NULL, OPT_NAME },
  { "live", no_argument, NULL, OPT_LIVE },
  { "disk", required_argument, NULL, OPT_DISK },
  { "format", required_argument, NULL, OPT_FORMAT },
  { "to", required_argument, NULL, OPT_TO },
  { "to-user", required_argument, NULL, OPT_TO_USER },
  { "to-password-file", required_argument, NULL, OPT_TO_PASSWORD_FILE },
  { "sr", required_argument, NULL, OPT_SR },
  { "map", required_argument, NULL, OPT_MAP },
  { "option", required_argument, NULL, OPT_OPTION },
  { "offline", no_argument, NULL, OPT_OFFLINE },
  { "parallel", required_argument, NULL, OPT_PARALLEL },
  { "dry-run", no_argument, NULL, OPT_DRY_RUN },
  { "order", required_argument, NULL, OPT_ORDER },
  { "exclude", required_argument, NULL, OPT_EXCLUDE },
  { "help", no_argument, NULL, OPT_HELP },
  { NULL },
};

void
client_usage_options (FILE *f)
{
  fprintf (f, "\nserver options (also before the command name):\n"
              "  --server URL           or $VDIMOTION_SERVER\n"
              "  --user USER            or $VDIMOTION_USER, else root\n"
              "  --password-file FILE   or $VDIMOTION_PASSWORD\n"
              "  --ca-file FILE         or $VDIMOTION_CA_FILE (https)\n"
              "  --json  --progress  --no-progress\n");
}

/* Apply a client option; false if C is not one. */
static bool
client_option (int c, const char *arg)
{
  switch (c) {
  case OPT_SERVER: client_opts.server = arg; return true;
  case OPT_USER: client_opts.user = arg; return true;
  case OPT_PASSWORD_FILE: client_opts.password_file = arg; return true;
  case OPT_CA_FILE: client_opts.ca_file = arg; return true;
  case OPT_JSON: client_opts.json = true; return true;
  case OPT_PROGRESS: client_opts.progress = PROGRESS_ON; return true;
  case OPT_NO_PROGRESS: client_opts.progress = PROGRESS_OFF; return true;
  default: return false;
  }
}

int
client_global_option (int argc, char **argv)
{
  const char *word = argv[0];

  if (!g_str_has_prefix (word, "--"))
    return 0;
  for (const struct option *o = long_opts; o->name; o++) {
    size_t n = strlen (o->name);
    if (o->val > OPT_NO_PROGRESS || strncmp (word + 2, o->name, n) != 0)
      continue;
    if (word[2 + n] == '\0') {
      if (o->has_arg == no_argument)
        return client_option (o->val, NULL) ? 1 : 0;
      if (argc < 2)
        return -1;
      client_option (o->val, argv[1]);
      return 2;
    }
    if (word[2 + n] == '=' && o->has_arg == required_argument) {
      client_option (o->val, word + 3 + n);
      return 1;
    }
  }
  return 0;
}

static void
group_usage (FILE *f, const struct command *group,
             const struct client_subcommand *subs)
{
  fprintf (f, "usage:\n");
  for (const struct client_subcommand *s = subs; s->name; s++)
    fprintf (f, "  vdimotion %s %s%s%s\n", group->name, s->name,
             *s->synopsis ? " " : "", s->synopsis);
  client_usage_options (f);
}

static int
sub_usage (const struct command *group, const struct client_subcommand *s)
{
  fprintf (stderr, "usage: vdimotion %s %s%s%s\n", group->name, s->name,
           *s->synopsis ? " " : "", s->synopsis);
  return EXIT_USAGE;
}

/* A --map or --option word: KEY=VALUE with a key. */
static bool
is_pair (const char *word)
{
  const char *eq = strchr (word, '=');

  return eq && eq != word;
}

/* One of vm migrate's options (C) into *A or the lists of words. */
static void
migrate_option (struct client_args *a, int c, const char *arg, GPtrArray *maps,
                GPtrArray *options)
{
  switch (c) {
  case OPT_TO: a->to = arg; break;
  case OPT_TO_USER: a->to_user = arg; break;
  case OPT_TO_PASSWORD_FILE: a->to_password_file = arg; break;
  case OPT_SR: a->sr = arg; break;
  case OPT_MAP: g_ptr_array_add (maps, (char *)arg); break;
  case OPT_OPTION: g_ptr_array_add (options, (char *)arg); break;
  case OPT_OFFLINE: a->offline = true; break;
  default: g_assert_not_reached ();
  }
}

/* The checks of vm migrate's options that need no server; false after
 * saying what is wrong. */
static bool
migrate_args_ok (const struct command *group,
                 const struct client_subcommand *sub,
                 const struct client_args *a)
{
  if (a->to == NULL || *a->to == '\0') {
    cli_error (group->name, "%s: --to URL is needed", sub->name);
    return false;
  }
  if (a->live && a->offline) {
    cli_error (group->name, "%s: --live or --offline, not both", sub->name);
    return false;
  }
  for (size_t i = 0; i < a->n_maps; i++)
    if (!is_pair (a->maps[i])) {
      cli_error (group->name, "%s: --map %s: expected VDI=SR", sub->name,
                 a->maps[i]);
      return false;
    }
  for (size_t i = 0; i < a->n_options; i++)
    if (!is_pair (a->options[i])) {
      cli_error (group->name, "%s: --option %s: expected KEY=VALUE", sub->name,
                 a->options[i]);
      return false;
    }
  return true;
}

/* One of sr evacuate's options (C) into *A or its --exclude words. */
static void
evacuate_option (struct client_args *a, int c, const char *arg,
                 GPtrArray *excludes)
{
  switch (c) {
  case OPT_TO: a->to = arg; break;
  case OPT_PARALLEL: a->parallel = arg; break;
  case OPT_DRY_RUN: a->dry_run = true; break;
  case OPT_ORDER: a->order = arg; break;
  case OPT_EXCLUDE: g_ptr_array_add (excludes, (char *)arg); break;
  default: g_assert_not_reached ();
  }
}

/* The checks of sr evacuate's options that need no server; false after
 * saying what is wrong. */
static bool
evacuate_args_ok (const struct command *group,
                  const struct client_subcommand *sub,
                  const struct client_args *a)
{
  guint64 n;

  if (a->to == NULL || *a->to == '\0') {
    cli_error (group->name, "%s: --to SR[,SR...] is needed", sub->name);
    return false;
  }
  if (a->parallel
      && (!g_ascii_string_to_unsigned (a->parallel, 10, 1, 64, &n, NULL))) {
    cli_error (group->name, "%s: --parallel %s: expected a number of 1 to 64",
               sub->name, a->parallel);
    return false;
  }
  if (a->order && strcmp (a->order, "size") != 0
      && strcmp (a->order, "name") != 0) {
    cli_error (group->name, "%s: --order %s: expected size or name",
               sub->name, a->order);
    return false;
  }
  return true;
}

int
client_run_group (const struct command *group,
                  const struct client_subcommand *subs, int argc, char **argv)
{
  const struct client_subcommand *sub = NULL;
  g_autoptr (GPtrArray) disks = g_ptr_array_new ();
  g_autoptr (GPtrArray) maps = g_ptr_array_new ();
  g_autoptr (GPtrArray) options = g_ptr_array_new ();
  g_autoptr (GPtrArray) excludes = g_ptr_array_new ();
  g_autoptr (GError) err = NULL;
  struct client_args a = { 0 };
  struct xapi_client *client;
  int c, rc, longindex = 0;

  if (argc < 2) {
    group_usage (stderr, group, subs);
    return EXIT_USAGE;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    group_usage (stdout, group, subs);
    return EXIT_OK;
  }
  for (const struct client_subcommand *s = subs; s->name; s++)
    if (strcmp (argv[1], s->name) == 0)
      sub = s;
  if (sub == NULL) {
    cli_error (group->name, "unknown subcommand \"%s\"", argv[1]);
    group_usage (stderr, group, subs);
    return EXIT_USAGE;
  }

  argc--;
  argv++;
  optind = 0; /* glibc: start afresh */
  a.format = VDISK_FORMAT_PROBE;
  while ((c = getopt_long (argc, argv, "f:h", long_opts, &longindex)) != -1) {
    unsigned need = 0;
    if (client_option (c, optarg))
      continue;
    switch (c) {
    case OPT_NAME:
      need = CLIENT_OPT_NAME;
      a.name = optarg;
      break;
    case OPT_LIVE:
      need = CLIENT_OPT_LIVE;
      a.live = true;
      break;
    case OPT_DISK:
      need = CLIENT_OPT_DISK;
      g_ptr_array_add (disks, optarg);
      break;
    case OPT_TO:
      /* vm migrate's server, sr evacuate's SRs. */
      need = sub->options & CLIENT_OPT_EVACUATE ? CLIENT_OPT_EVACUATE
                                                : CLIENT_OPT_MIGRATE;
      if (need == CLIENT_OPT_EVACUATE)
        evacuate_option (&a, c, optarg, excludes);
      else
        migrate_option (&a, c, optarg, maps, options);
      break;
    case OPT_PARALLEL:
    case OPT_DRY_RUN:
    case OPT_ORDER:
    case OPT_EXCLUDE:
      need = CLIENT_OPT_EVACUATE;
      evacuate_option (&a, c, optarg, excludes);
      break;
    case OPT_TO_USER:
    case OPT_TO_PASSWORD_FILE:
    case OPT_SR:
    case OPT_MAP:
    case OPT_OPTION:
    case OPT_OFFLINE:
      need = CLIENT_OPT_MIGRATE;
      migrate_option (&a, c, optarg, maps, options);
      break;
    case 'f':
    case OPT_FORMAT:
      need = CLIENT_OPT_FORMAT;
      if ((a.format = cli_parse_format (group->name, optarg)) < 0)
        return sub_usage (group, sub);
      break;
    case 'h':
    case OPT_HELP:
      printf ("usage: vdimotion %s %s%s%s\n", group->name, sub->name,
              *sub->synopsis ? " " : "", sub->synopsis);
      client_usage_options (stdout);
      return EXIT_OK;
    default: return sub_usage (group, sub);
    }
    if (!(sub->options & need)) {
      /* Named as its table has it: argv[optind - 1] may be its value. */
      cli_error (group->name, "%s: option %s%s is not for this subcommand",
                 sub->name, c == 'f' ? "-" : "--",
                 c == 'f' ? "f" : long_opts[longindex].name);
      return sub_usage (group, sub);
    }
  }
  a.argc = argc - optind;
  a.argv = argv + optind;
  a.disks = (const char **)disks->pdata;
  a.n_disks = disks->len;
  a.maps = (const char **)maps->pdata;
  a.n_maps = maps->len;
  a.options = (const char **)options->pdata;
  a.n_options = options->len;
  a.excludes = (const char **)excludes->pdata;
  a.n_excludes = excludes->len;
  if (a.argc < sub->min_args || a.argc > sub->max_args)
    return sub_usage (group, sub);
  if ((sub->options & CLIENT_OPT_DISK) && a.n_disks == 0) {
    cli_error (group->name, "%s: at least one --disk VDI is needed",
               sub->name);
    return sub_usage (group, sub);
  }
  if ((sub->options & CLIENT_OPT_MIGRATE) && !migrate_args_ok (group, sub, &a))
    return sub_usage (group, sub);
  if ((sub->options & CLIENT_OPT_EVACUATE)
      && !evacuate_args_ok (group, sub, &a))
    return sub_usage (group, sub);

  if (client_opts.server == NULL && getenv ("VDIMOTION_SERVER") == NULL) {
    cli_error (group->name, "no server: give --server URL or set "
                            "VDIMOTION_SERVER");
    return sub_usage (group, sub);
  }
  client = client_connect (&client_opts, &err);
  if (client == NULL) {
    fprintf (stderr, "vdimotion: %s\n", err->message);
    return EXIT_ERROR;
  }
  rc = sub->run (client, &a, &err);
  client_close (client);
  if (rc != EXIT_OK && err)
    fprintf (stderr, "vdimotion: %s\n", err->message);
  return rc;
}
