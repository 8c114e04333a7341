/* vdimotion backup create|list|restore|verify|prune: the face of
 * libbackup (replicator/backup/backup.h) on a repository directory.
 * Each subcommand takes the repository's lock (create and prune
 * exclusive), does its one call, and prints a line per result, or with
 * --json one JSON document at the end.  A killed create, restore or
 * prune is continued by running the same command again. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "cli.h"
#include "client.h"
#include "copy.h"
#include "vdisk.h"

struct options
{
  bool json, full, deep, dry_run;
  int progress;
  int format; /* -f of the source */
  const char *disk;
  struct backup_prune_params prune;
};

static int
sub_usage (const char *sub)
{
  fprintf (stderr, "usage: vdimotion backup %s\n", cmd_backup.synopsis);
  (void)sub;
  return EXIT_USAGE;
}

static void
on_progress (uint64_t done, uint64_t total, void *opaque)
{
  struct progress *p = opaque;
  p->total = total;
  progress_update (p, done);
}

static int
report_error (const char *what, GError *e)
{
  cli_error ("backup", "%s%s", what, e ? e->message : "failed");
  if (e)
    g_error_free (e);
  return EXIT_ERROR;
}

/* A remote repository's login (the server commands' options: --user,
 * --password-file, --ca-file or their environment), logged out at
 * exit. */
static struct xapi_client *remote_login;

static void
remote_logout (void)
{
  client_close (remote_login);
}

/* The remote repository at URL, logged in to its server. */
static struct backup_repo *
open_remote (const char *url, GError **err)
{
  g_autoptr (GUri) u = g_uri_parse (url, G_URI_FLAGS_NONE, err);
  if (!u)
    return NULL;
  g_autofree char *server = g_uri_join (G_URI_FLAGS_NONE, "https", NULL,
                                        g_uri_get_host (u),
                                        g_uri_get_port (u), "/", NULL, NULL);
  struct client_options o = client_opts;
  o.server = server;
  if (!remote_login) {
    if (!(remote_login = client_connect (&o, err)))
      return NULL;
    atexit (remote_logout);
  }
  struct backup_remote_config cfg = {
    .session = xapi_client_session (remote_login),
    .ca_file = o.ca_file ? o.ca_file : getenv ("VDIMOTION_CA_FILE"),
  };
  return backup_repo_open_remote (url, &cfg, err);
}

/* Open and lock REPO (create: made if missing). */
static struct backup_repo *
open_repo (const char *location, bool create, bool exclusive)
{
  GError *e = NULL;
  struct backup_repo *r = backup_location_is_remote (location)
                              ? open_remote (location, &e)
                              : backup_repo_open (location, create, &e);
  if (r && r->ops->lock (r, exclusive, &e) == -1) {
    backup_repo_close (r);
    r = NULL;
  }
  if (!r)
    report_error ("", e);
  return r;
}

static void
print_stats_json (bool *first, const struct backup_stats *s)
{
  json_u64 (first, "bytes-read", s->bytes_read);
  json_u64 (first, "bytes-written", s->bytes_written);
  json_u64 (first, "bytes-skipped", s->bytes_skipped);
  json_double (first, "seconds", s->seconds);
}

static void
print_point_json (const struct backup_manifest *m)
{
  bool first = true;
  json_str (&first, "id", m->id);
  json_str (&first, "disk", m->disk);
  json_str (&first, "time", m->time);
  json_str (&first, "source", m->source);
  json_str (&first, "kind", m->kind == BACKUP_FULL ? "full" : "incremental");
  json_str (&first, "why", m->why);
  json_key (&first, "parent");
  if (m->parent)
    cli_json_string (stdout, m->parent);
  else
    fputs ("null", stdout);
  json_str (&first, "file", m->file);
  json_u64 (&first, "virtual-size", m->virtual_size);
  json_key (&first, "cbt-generation");
  if (m->cbt_generation)
    cli_json_string (stdout, m->cbt_generation);
  else
    fputs ("null", stdout);
  json_key (&first, "cbt-snapshot");
  if (m->cbt_snapshot)
    cli_json_string (stdout, m->cbt_snapshot);
  else
    fputs ("null", stdout);
  json_u64 (&first, "blocks", m->n_blocks);
  struct backup_stats s = { m->bytes_read, m->bytes_written,
                            m->bytes_skipped, m->seconds };
  print_stats_json (&first, &s);
  json_end (&first);
}

static int
do_create (struct options *o, const char *source, const char *repo)
{
  if (!copy_is_nbd_uri (source) && o->format == VDISK_FORMAT_PROBE) {
    /* Probing a local image's format is qemu-img's rule; it warns. */
    struct vdisk *d = cli_open_image ("backup", source, 0, o->format);
    if (!d)
      return EXIT_ERROR;
    vdisk_close (d);
  }
  struct backup_repo *r = open_repo (repo, true, true);
  if (!r)
    return EXIT_ERROR;
  struct progress bar;
  progress_init (&bar, o->progress, 0);
  struct backup_create_params p = { .source = source,
                                    .format = o->format,
                                    .full = o->full,
                                    .progress = on_progress,
                                    .progress_opaque = &bar };
  struct backup_manifest *m = NULL;
  GError *e = NULL;
  int r_ = (r->ops->create ? r->ops->create : backup_create) (r, &p, &m,
                                                             &e);
  backup_repo_close (r);
  if (r_ == -1) {
    if (bar.enabled)
      fputc ('\n', stderr);
    return report_error ("create: ", e);
  }
  progress_finish (&bar);
  if (o->json) {
    print_point_json (m);
    putchar ('\n');
  }
  else
    printf ("point %s of disk %s: %s (%s): %" PRIu64 " bytes read, %" PRIu64
            " written, %" PRIu64 " skipped, %.1f s\n",
            m->id, m->disk, m->kind == BACKUP_FULL ? "full" : "incremental",
            m->why, m->bytes_read, m->bytes_written, m->bytes_skipped,
            m->seconds);
  backup_manifest_free (m);
  return EXIT_OK;
}

static int
do_list (struct options *o, const char *repo)
{
  struct backup_repo *r = open_repo (repo, false, false);
  if (!r)
    return EXIT_ERROR;
  GError *e = NULL;
  g_autoptr (GPtrArray) pts = backup_repo_all_points (r, NULL, &e);
  backup_repo_close (r);
  if (!pts)
    return report_error ("list: ", e);
  if (o->json)
    putchar ('[');
  for (guint i = 0; i < pts->len; i++) {
    const struct backup_manifest *m = pts->pdata[i];
    char size[32], written[32];
    if (o->json) {
      if (i)
        fputs (", ", stdout);
      print_point_json (m);
      continue;
    }
    printf ("%-20s %-27s %-11s %9s %9s %s\n", m->id, m->time,
            m->kind == BACKUP_FULL ? "full" : "incremental",
            cli_human_size (m->virtual_size, size, sizeof size),
            cli_human_size (m->bytes_written, written, sizeof written),
            m->disk);
  }
  if (o->json)
    puts ("]");
  return EXIT_OK;
}

static int
do_restore (struct options *o, const char *repo, const char *point,
            const char *dst)
{
  struct backup_repo *r = open_repo (repo, false, false);
  if (!r)
    return EXIT_ERROR;
  GError *e = NULL;
  g_autoptr (backup_manifest) m
      = backup_repo_find_point (r, point, o->disk, &e);
  if (!m) {
    backup_repo_close (r);
    return report_error ("restore: ", e);
  }
  struct progress bar;
  struct backup_stats st = { 0 };
  progress_init (&bar, o->progress, m->virtual_size);
  int ret = (r->ops->restore ? r->ops->restore : backup_restore) (
      r, m, dst, on_progress, &bar, &st, &e);
  backup_repo_close (r);
  if (ret == -1) {
    if (bar.enabled)
      fputc ('\n', stderr);
    return report_error ("", e);
  }
  progress_finish (&bar);
  if (o->json) {
    bool first = true;
    json_str (&first, "point", m->id);
    json_str (&first, "disk", m->disk);
    json_str (&first, "destination", dst);
    print_stats_json (&first, &st);
    json_end (&first);
    putchar ('\n');
  }
  else
    printf ("point %s restored to %s\n", m->id, dst);
  return EXIT_OK;
}

static int
do_verify (struct options *o, const char *repo)
{
  struct backup_repo *r = open_repo (repo, false, false);
  if (!r)
    return EXIT_ERROR;
  GError *e = NULL;
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  int n = (r->ops->verify ? r->ops->verify : backup_verify) (r, o->deep,
                                                             problems, &e);
  backup_repo_close (r);
  if (n < 0)
    return report_error ("verify: ", e);
  if (o->json) {
    bool first = true;
    json_u64 (&first, "points", n);
    json_bool (&first, "deep", o->deep);
    json_key (&first, "problems");
    putchar ('[');
    for (guint i = 0; i < problems->len; i++) {
      if (i)
        fputs (", ", stdout);
      cli_json_string (stdout, problems->pdata[i]);
    }
    putchar (']');
    json_end (&first);
    putchar ('\n');
  }
  else {
    for (guint i = 0; i < problems->len; i++)
      printf ("%s\n", (char *)problems->pdata[i]);
    printf ("%d points checked%s, %u problems\n", n,
            o->deep ? " (deep)" : "", problems->len);
  }
  return problems->len ? EXIT_ERROR : EXIT_OK;
}

static int
do_prune (struct options *o, const char *repo)
{
  if (o->prune.keep_last == 0) {
    cli_error ("backup", "prune: --keep-last N (at least 1) is required");
    return EXIT_USAGE;
  }
  o->prune.dry_run = o->dry_run;
  struct backup_repo *r = open_repo (repo, false, true);
  if (!r)
    return EXIT_ERROR;
  GError *e = NULL;
  g_autoptr (GPtrArray) removed = g_ptr_array_new_with_free_func (g_free);
  struct backup_stats st = { 0 };
  int ret = (r->ops->prune ? r->ops->prune : backup_prune) (r, &o->prune,
                                                            removed, &st, &e);
  backup_repo_close (r);
  if (ret == -1)
    return report_error ("prune: ", e);
  if (o->json) {
    bool first = true;
    json_bool (&first, "dry-run", o->dry_run);
    json_key (&first, "removed");
    putchar ('[');
    for (guint i = 0; i < removed->len; i++) {
      if (i)
        fputs (", ", stdout);
      cli_json_string (stdout, removed->pdata[i]);
    }
    putchar (']');
    print_stats_json (&first, &st);
    json_end (&first);
    putchar ('\n');
  }
  else
    for (guint i = 0; i < removed->len; i++)
      printf ("%s %s\n", o->dry_run ? "would remove" : "removed",
              (char *)removed->pdata[i]);
  return EXIT_OK;
}

static int
parse_count (const char *opt, const char *s, unsigned *out)
{
  char *end;
  unsigned long v = strtoul (s, &end, 10);
  if (!*s || *end || v > 100000) {
    cli_error ("backup", "%s \"%s\" is not a count", opt, s);
    return -1;
  }
  *out = v;
  return 0;
}

static int
parse_args (int argc, char **argv, struct options *o)
{
  enum
  {
    OPT_JSON = 256,
    OPT_FULL,
    OPT_DEEP,
    OPT_DRY,
    OPT_LAST,
    OPT_DAILY,
    OPT_WEEKLY,
    OPT_DISK,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
  };
  static const struct option opts[] = {
    { "json", no_argument, NULL, OPT_JSON },
    { "full", no_argument, NULL, OPT_FULL },
    { "deep", no_argument, NULL, OPT_DEEP },
    { "dry-run", no_argument, NULL, OPT_DRY },
    { "keep-last", required_argument, NULL, OPT_LAST },
    { "keep-daily", required_argument, NULL, OPT_DAILY },
    { "keep-weekly", required_argument, NULL, OPT_WEEKLY },
    { "disk", required_argument, NULL, OPT_DISK },
    { "progress", no_argument, NULL, OPT_PROGRESS },
    { "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
    { "help", no_argument, NULL, 'h' },
    { NULL },
  };
  int c;
  while ((c = getopt_long (argc, argv, "f:h", opts, NULL)) != -1) {
    switch (c) {
    case 'f':
      if ((o->format = cli_parse_format ("backup", optarg)) < 0)
        return -1;
      break;
    case OPT_JSON: o->json = true; break;
    case OPT_FULL: o->full = true; break;
    case OPT_DEEP: o->deep = true; break;
    case OPT_DRY: o->dry_run = true; break;
    case OPT_LAST:
      if (parse_count ("--keep-last", optarg, &o->prune.keep_last) == -1)
        return -1;
      break;
    case OPT_DAILY:
      if (parse_count ("--keep-daily", optarg, &o->prune.keep_daily) == -1)
        return -1;
      break;
    case OPT_WEEKLY:
      if (parse_count ("--keep-weekly", optarg, &o->prune.keep_weekly) == -1)
        return -1;
      break;
    case OPT_DISK:
      if (!backup_name_is_safe (optarg)) {
        cli_error ("backup", "--disk \"%s\" is not a disk key", optarg);
        return -1;
      }
      o->disk = optarg;
      break;
    case OPT_PROGRESS: o->progress = PROGRESS_ON; break;
    case OPT_NO_PROGRESS: o->progress = PROGRESS_OFF; break;
    case 'h':
      printf ("usage: vdimotion backup %s\n", cmd_backup.synopsis);
      exit (EXIT_OK);
    default: return -1;
    }
  }
  return 0;
}

static int
run (int argc, char **argv)
{
  struct options o = { .format = VDISK_FORMAT_PROBE };
  if (argc < 2)
    return sub_usage (NULL);
  const char *sub = argv[1];
  if (parse_args (argc - 1, argv + 1, &o) == -1)
    return sub_usage (sub);
  char **a = argv + 1 + optind;
  int n = argc - 1 - optind;
  if (strcmp (sub, "create") == 0 && n == 2)
    return do_create (&o, a[0], a[1]);
  if (strcmp (sub, "list") == 0 && n == 1)
    return do_list (&o, a[0]);
  if (strcmp (sub, "restore") == 0 && n == 3)
    return do_restore (&o, a[0], a[1], a[2]);
  if (strcmp (sub, "verify") == 0 && n == 1)
    return do_verify (&o, a[0]);
  if (strcmp (sub, "prune") == 0 && n == 1)
    return do_prune (&o, a[0]);
  return sub_usage (sub);
}

const struct command cmd_backup
    = { "backup",
        "create [-f FMT] [--full] [--json] SOURCE REPO | "
        "list [--json] REPO | "
        "restore [--disk KEY] [--json] REPO POINT DST | "
        "verify [--deep] [--json] REPO | "
        "prune --keep-last N [--keep-daily N] [--keep-weekly N] [--dry-run] "
        "[--json] REPO",
        run };
