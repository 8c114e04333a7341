/* vdimotion mirror: drive nbdkit-mirror-filter through its control socket
 * (the line protocol of nbdkit-mirror-filter(1)): send one command line,
 * read one JSON reply line.  --json prints the reply as it came; without
 * it, the reply is shown as "key: value" lines.  Exit 1 when the filter
 * says {"ok":false} (its message on stderr) or something that is no
 * reply (control-client.h reads it). */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "control-client.h"

/* Long enough for "complete", which drains and flushes both sides. */
#define CONTROL_TIMEOUT 600

/* A member's value as a person reads it: strings unquoted. */
static void
print_value (JsonNode *v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (JSON_NODE_HOLDS_NULL (v))
    fputs ("null", stdout);
  else if (!JSON_NODE_HOLDS_VALUE (v)) {
    g_autofree char *j = json_to_string (v, FALSE);
    fputs (j, stdout);
  }
  else if (json_node_get_value_type (v) == G_TYPE_STRING)
    fputs (json_node_get_string (v), stdout);
  else if (json_node_get_value_type (v) == G_TYPE_BOOLEAN)
    fputs (json_node_get_boolean (v) ? "true" : "false", stdout);
  else if (json_node_get_value_type (v) == G_TYPE_DOUBLE)
    fputs (g_ascii_dtostr (buf, sizeof buf, json_node_get_double (v)),
           stdout);
  else
    printf ("%" G_GINT64_FORMAT, json_node_get_int (v));
}

/* Each member of an "ok" reply but "ok" as "key: value", in order. */
static void
print_human (JsonObject *o)
{
  g_autoptr (GList) keys = json_object_get_members (o);

  for (GList *k = keys; k; k = k->next) {
    if (strcmp (k->data, "ok") == 0)
      continue;
    printf ("%s: ", (const char *)k->data);
    print_value (json_object_get_member (o, k->data));
    putchar ('\n');
  }
}

/* What is wrong with the options for command CMD, or NULL. */
static const char *
options_misuse (int cmd, const char *target, const char *psk, bool pivot,
                const char *sync, const char *cbt_log)
{
  bool is_start = cmd == CONTROL_START, is_resume = cmd == CONTROL_RESUME;

  if (is_start && !target)
    return "start needs --target URI";
  if (is_resume && (target != NULL) != pivot)
    return "resume takes --target URI and --pivot together";
  if ((target || psk) && !is_start && !is_resume)
    return "--target and --tls-psk-file belong to start and resume";
  if (psk && !target)
    return "--tls-psk-file goes with --target";
  if (pivot && cmd != CONTROL_COMPLETE && !is_resume)
    return "--pivot belongs to complete and resume";
  if (sync && !is_start)
    return "--sync belongs to start";
  if (sync && mirror_sync_from_name (sync) == -1)
    return "--sync must be full, top or none";
  if (cbt_log && cmd != CONTROL_CBT_OPEN)
    return "--cbt-log belongs to cbt-open";
  return NULL;
}

static int
run (int argc, char **argv)
{
  static const struct option opts[] = {
    { "control", required_argument, NULL, 'c' },
    { "target", required_argument, NULL, 't' },
    { "tls-psk-file", required_argument, NULL, 'k' },
    { "pivot", no_argument, NULL, 'P' },
    { "sync", required_argument, NULL, 's' },
    { "cbt-log", required_argument, NULL, 'l' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL },
  };
  const char *control = NULL, *target = NULL, *psk = NULL, *sync = NULL;
  const char *cbt_log = NULL;
  bool json = false, pivot = false;
  int c;
  while ((c = getopt_long (argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'c': control = optarg; break;
    case 't': target = optarg; break;
    case 'k': psk = optarg; break;
    case 'P': pivot = true; break;
    case 's': sync = optarg; break;
    case 'l': cbt_log = optarg; break;
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
  int cmd = control_command_from_name (verb);
  if (cmd == -1) {
    cli_error ("mirror", "unknown subcommand \"%s\"", verb);
    return cli_usage (&cmd_mirror);
  }
  const char *misuse
      = options_misuse (cmd, target, psk, pivot, sync, cbt_log);
  if (misuse) {
    cli_error ("mirror", "%s", misuse);
    return cli_usage (&cmd_mirror);
  }
  /* The filter runs elsewhere: a relative path is ours. */
  g_autofree char *log
      = cbt_log ? g_canonicalize_filename (cbt_log, NULL) : NULL;
  struct control_request req
      = { .cmd = cmd, .target = target, .tls_psk_file = psk, .pivot = pivot,
          .sync = sync ? mirror_sync_from_name (sync) : MIRROR_SYNC_FULL,
          .cbt_log = log };
  char *line = control_format (&req);
  if (!line && errno == EINVAL) {
    /* The protocol splits on blanks: refuse what it cannot carry. */
    cli_error ("mirror", "the target URI, PSK file and log path may not "
                         "contain blanks");
    return EXIT_USAGE;
  }
  if (!line) {
    cli_error ("mirror", "out of memory");
    return EXIT_ERROR;
  }
  g_autoptr (GError) error = NULL;
  g_autofree char *reply
      = mirror_control_call (control, line, CONTROL_TIMEOUT, &error);
  free (line);
  if (!reply) {
    cli_error ("mirror", "%s", error->message);
    return EXIT_ERROR;
  }
  g_autoptr (JsonObject) o = mirror_reply_parse (reply, &error);
  if (json)
    printf ("%s\n", reply);
  else if (o)
    print_human (o);
  if (!o)
    cli_error ("mirror", "%s", error->message);
  return o ? EXIT_OK : EXIT_ERROR;
}

const struct command cmd_mirror
    = { "mirror",
        "start|status|complete|abort|pause|resume|cbt-open|cbt-close "
        "--control SOCKET [--target URI] [--tls-psk-file FILE] "
        "[--sync full|top|none] [--pivot] [--cbt-log PATH] [--json]",
        run };
