/* vdimotion backup create|list|restore|verify|prune: the face of
 * libbackup (replicator/backup/backup.h) on a repository directory.
 * With --server (vdimotion --server URL backup create VDI REPO) the
 * source is a VDI, read as xapi's CBT workflow does: VDI.snapshot,
 * VDI.list_changed_blocks from the previous point's snapshot,
 * VDI.get_nbd_info's TLS NBD export of the new snapshot, and
 * VDI.data_destroy of the previous snapshot once the point is
 * published; the XenAPI talk is here, libbackup sees an NBD URI and a
 * bitmap.  The disk's key in the repository is the VDI's uuid, or for a
 * VDI a move made (a new uuid) the first uuid of its
 * other_config["vdimotion-moved-from"] the repository has (vdi_disk), so
 * the chain goes on across the move; the previous point's snapshot is
 * found by its uuid, or after an evacuation (which moved it too) by
 * the moved-from of the VDI's snapshots (snapshot_ref).
 * With --server, restore writes the point into a new VDI (SR:NAME) from
 * a local or remote repository alike, resumably: the VDI is made first,
 * named and marked (other_config) as an unfinished restore, written
 * window by window through xapi's chunked import_raw_vdi with each
 * window recorded in the marker, and named and unmarked at the end; a
 * rerun finds it by its marker (restore_to_vdi).
 * Each subcommand takes the repository's lock (create and prune
 * exclusive), does its one call, and prints a line per result, or with
 * --json one JSON document at the end.  A killed create, restore or
 * prune is continued by running the same command again. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

enum lock_mode
{
  LOCK_NONE,      /* list: manifests are published atomically */
  LOCK_SHARED,    /* restore, verify: no prune under them */
  LOCK_EXCLUSIVE, /* create, prune */
};

/* Open and lock REPO (create: made if missing). */
static struct backup_repo *
open_repo (const char *location, bool create, enum lock_mode lock)
{
  GError *e = NULL;
  struct backup_repo *r = backup_location_is_remote (location)
                              ? open_remote (location, &e)
                              : backup_repo_open (location, create, &e);
  if (r && lock != LOCK_NONE
      && r->ops->lock (r, lock == LOCK_EXCLUSIVE, &e) == -1) {
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

static int do_create_vdi (struct options *o, const char *vdi,
                          const char *repo);

static void
print_point (const struct options *o, const struct backup_manifest *m)
{
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
}

static int
do_create (struct options *o, const char *source, const char *repo)
{
  if (client_opts.server)
    return do_create_vdi (o, source, repo);
  if (!copy_is_nbd_uri (source) && o->format == VDISK_FORMAT_PROBE) {
    /* Probing a local image's format is qemu-img's rule; it warns. */
    struct vdisk *d = cli_open_image ("backup", source, 0, o->format);
    if (!d)
      return EXIT_ERROR;
    vdisk_close (d);
  }
  struct backup_repo *r = open_repo (repo, true, LOCK_EXCLUSIVE);
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
  print_point (o, m);
  backup_manifest_free (m);
  return EXIT_OK;
}

/* ---- A VDI through --server: xapi's CBT workflow ------------------- */

/* A VDI's snapshot and how to read it: what backup_create needs beyond
 * the repository. */
struct vdi_source
{
  struct xapi_client *c;
  char *vdi_uuid;
  char *disk;      /* the repository's disk: vdi_uuid, or what it was */
  char *why_moved; /* why DISK is not vdi_uuid, or NULL */
  char *snap_ref, *snap_uuid;
  char *cbt_generation; /* the snapshot's log's, or NULL */
  char *uri;      /* nbds://ADDRESS:PORT/TOKEN?tls-certificates=DIR */
  char *cert_dir; /* where get_nbd_info's certificate is, as ca-cert.pem */
  guchar *changed;
  gsize changed_len;
  char *why_full;
};

static void
vdi_source_clear (struct vdi_source *v)
{
  if (v->cert_dir) {
    g_autofree char *ca = g_build_filename (v->cert_dir, "ca-cert.pem", NULL);
    unlink (ca);
    rmdir (v->cert_dir);
  }
  g_free (v->vdi_uuid);
  g_free (v->disk);
  g_free (v->why_moved);
  g_free (v->snap_ref);
  g_free (v->snap_uuid);
  g_free (v->cbt_generation);
  g_free (v->uri);
  g_free (v->cert_dir);
  g_free (v->changed);
  g_free (v->why_full);
  if (v->c)
    client_close (v->c);
}

static char *
vdi_ref_of_uuid (struct xapi_client *c, const char *uuid, GError **err)
{
  g_autoptr (xv) r = xapi_client_call (c, err, "VDI.get_by_uuid",
                                       xv_new_string (uuid), NULL);
  return r && r->type == XV_STRING ? g_strdup (r->s) : NULL;
}

/* The snapshot's changed-block log generation, for the point's
 * manifest: vdimotiond gives it as sm_config["cbt-generation"] (xapi has
 * no such field: then, and without CBT, none is recorded). */
static void
vdi_snapshot_generation (struct vdi_source *v)
{
  g_autoptr (xv) sm = xapi_client_call (v->c, NULL, "VDI.get_sm_config",
                                        xv_new_string (v->snap_ref), NULL);
  const struct xv *g = sm ? xv_get (sm, "cbt-generation") : NULL;
  if (g && g->type == XV_STRING && g->s[0])
    v->cbt_generation = g_strdup (g->s);
}

/* The ref of snapshot UUID of the VDI whose record is REC, or of the
 * snapshot a move made of it: an SR's evacuation moves the snapshots
 * with the disk, each under a new uuid that lists UUID in its
 * other_config["vdimotion-moved-from"] (VDI.pool_migrate leaves them
 * where they are, under their uuids).  NULL with *ERR (the lookup of
 * UUID's). */
static char *
snapshot_ref (struct xapi_client *c, const struct xv *rec, const char *uuid,
              GError **err)
{
  char *ref = vdi_ref_of_uuid (c, uuid, err);
  const struct xv *snaps = xv_get (rec, "snapshots");

  for (size_t i = 0; !ref && snaps && snaps->type == XV_ARRAY && i < snaps->n;
       i++) {
    const struct xv *s = snaps->items[i];
    g_autoptr (xv) r
        = s->type == XV_STRING ? xapi_client_call (c, NULL, "VDI.get_record",
                                                   xv_new_string (s->s), NULL)
                               : NULL;
    g_auto (GStrv) was = g_strsplit (
        xv_map_str (r, "other_config", "vdimotion-moved-from"), ",", -1);

    if (r && g_strv_contains ((const char *const *)was, uuid)) {
      g_clear_error (err);
      ref = g_strdup (s->s);
    }
  }
  return ref;
}

/* The snapshot to read: the unfinished point's (a rerun after a kill),
 * else a new VDI.snapshot. */
static int
vdi_snapshot (struct vdi_source *v, const char *vdi_ref,
              const struct backup_manifest *pending, GError **err)
{
  if (pending && pending->cbt_snapshot) {
    v->snap_uuid = g_strdup (pending->cbt_snapshot);
    v->snap_ref = vdi_ref_of_uuid (v->c, v->snap_uuid, err);
    if (!v->snap_ref)
      return -1;
    vdi_snapshot_generation (v);
    return 0;
  }
  g_autoptr (xv) snap
      = xapi_client_call (v->c, err, "VDI.snapshot", xv_new_string (vdi_ref),
                          xv_new_struct (), NULL);
  if (!snap || snap->type != XV_STRING)
    return -1;
  v->snap_ref = g_strdup (snap->s);
  g_autoptr (xv) uuid = xapi_client_call (v->c, err, "VDI.get_uuid",
                                          xv_new_string (v->snap_ref), NULL);
  if (!uuid || uuid->type != XV_STRING)
    return -1;
  v->snap_uuid = g_strdup (uuid->s);
  vdi_snapshot_generation (v);
  return 0;
}

/* Does R have a point (or a killed create's) of DISK?  *ERR if it cannot
 * tell.  By the manifests' names: they are parsed once, for the latest
 * point (a full's manifest is 1.7 MB for 8 GiB with 20 % data). */
static bool
repo_has_disk (struct backup_repo *r, const char *disk, GError **err)
{
  g_auto (GStrv) names = r->ops->list_names (r, disk, ".json", err);
  g_autoptr (backup_manifest) m = NULL;

  if (names == NULL)
    return false;
  if (names[0])
    return true;
  m = backup_pending (r, disk, err);
  return m != NULL;
}

/* The repository's disk for the VDI V (its record REC): its uuid if R
 * has it; else, a VDI that a move made (vdimotiond(8):
 * other_config["vdimotion-moved-from"], newest first), the first of the
 * uuids it was that R has, whose chain it continues (V->why_moved says
 * so); else its uuid (a new disk).  -1 with *ERR. */
static int
vdi_disk (struct vdi_source *v, struct backup_repo *r, const struct xv *rec,
          GError **err)
{
  g_auto (GStrv) was = g_strsplit (
      xv_map_str (rec, "other_config", "vdimotion-moved-from"), ",", -1);

  if (repo_has_disk (r, v->vdi_uuid, err) || *err)
    goto own;
  for (guint i = 0; was[i]; i++) {
    if (!backup_name_is_safe (was[i]))
      continue;
    if (repo_has_disk (r, was[i], err)) {
      v->disk = g_strdup (was[i]);
      v->why_moved = g_strdup_printf ("VDI %s continues the chain of VDI %s "
                                      "after a move",
                                      v->vdi_uuid, was[i]);
      return 0;
    }
    if (*err)
      return -1;
  }
own:
  if (*err)
    return -1;
  v->disk = g_strdup (v->vdi_uuid);
  return 0;
}

/* The changed blocks since the previous point's snapshot, or why this
 * point is a full. */
static void
vdi_changed_blocks (struct vdi_source *v, const struct backup_manifest *prev,
                    const struct xv *rec, bool cbt_enabled)
{
  GError *e = NULL;
  if (!prev)
    return;
  if (!cbt_enabled) {
    v->why_full = g_strdup ("changed-block tracking is not enabled on the "
                            "VDI (VDI.enable_cbt)");
    return;
  }
  if (!prev->cbt_snapshot) {
    v->why_full = g_strdup_printf ("point %s recorded no CBT snapshot",
                                   prev->id);
    return;
  }
  g_autofree char *from = snapshot_ref (v->c, rec, prev->cbt_snapshot, &e);
  g_autoptr (xv) b64
      = from ? xapi_client_call (v->c, &e, "VDI.list_changed_blocks",
                                 xv_new_string (from),
                                 xv_new_string (v->snap_ref), NULL)
             : NULL;
  if (!b64 || b64->type != XV_STRING) {
    v->why_full = g_strdup_printf (
        "no changed blocks since point %s's snapshot %s: %s", prev->id,
        prev->cbt_snapshot, e ? e->message : "not a string");
    g_clear_error (&e);
    return;
  }
  v->changed = g_base64_decode (b64->s, &v->changed_len);
}

/* VDI.get_nbd_info: the first server, as an nbds:// URI that trusts the
 * certificate it names. */
static int
vdi_nbd_uri (struct vdi_source *v, GError **err)
{
  g_autoptr (xv) infos = xapi_client_call (v->c, err, "VDI.get_nbd_info",
                                           xv_new_string (v->snap_ref), NULL);
  if (!infos)
    return -1;
  if (infos->type != XV_ARRAY || infos->n == 0
      || infos->items[0]->type != XV_STRUCT) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "VDI.get_nbd_info offered no NBD server for %s (the "
                 "server has no TLS NBD)",
                 v->snap_uuid);
    return -1;
  }
  const struct xv *i = infos->items[0];
  const char *token = xv_str (i, "exportname");
  if (!backup_name_is_safe (token)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "VDI.get_nbd_info: export name \"%s\" is not a token",
                 token);
    return -1;
  }
  v->cert_dir = g_dir_make_tmp ("vdimotion-backup-XXXXXX", NULL);
  g_autofree char *ca = v->cert_dir ? g_build_filename (v->cert_dir,
                                                        "ca-cert.pem", NULL)
                                    : NULL;
  if (!ca || !g_file_set_contents (ca, xv_str (i, "cert"), -1, err))
    return -1;
  const char *addr = xv_str (i, "address");
  bool v6 = strchr (addr, ':') != NULL;
  v->uri = g_strdup_printf ("nbds://%s%s%s:%" PRIu64
                            "/%s?tls-certificates=%s",
                            v6 ? "[" : "", addr, v6 ? "]" : "",
                            xv_u64 (i, "port"), token, v->cert_dir);
  return 0;
}

/* The latest point of a disk, read in a thread of its own while the
 * main thread has the server take the snapshot and export it: the
 * parse of a full's manifest (0.1 s of CPU, more on a loaded host)
 * overlaps the server's work. */
struct latest_read
{
  struct backup_repo *r;
  const char *disk;
  struct backup_manifest *m;
  GError *err;
};

static gpointer
read_latest (gpointer opaque)
{
  struct latest_read *l = opaque;

  l->m = backup_latest (l->r, l->disk, &l->err);
  return NULL;
}

static int
do_create_vdi (struct options *o, const char *vdi, const char *repo)
{
  struct vdi_source v = { 0 };
  struct backup_repo *r = NULL;
  struct backup_manifest *m = NULL;
  g_autoptr (backup_manifest) prev = NULL;
  g_autoptr (backup_manifest) pending = NULL;
  g_autoptr (xv) rec = NULL;
  g_autofree char *ref = NULL;
  struct progress bar;
  GError *e = NULL;
  int ret = EXIT_ERROR;

  progress_init (&bar, o->progress, 0);
  if (!(v.c = client_connect (&client_opts, &e))
      || !(ref = client_lookup (v.c, "VDI", vdi, &rec, &e)))
    goto out;
  v.vdi_uuid = g_strdup (xv_str (rec, "uuid"));
  if (!(r = open_repo (repo, true, LOCK_EXCLUSIVE)))
    goto out_quiet;
  if (vdi_disk (&v, r, rec, &e) == -1)
    goto out;
  pending = backup_pending (r, v.disk, &e);
  if (e)
    goto out;
  {
    struct latest_read latest = { .r = r, .disk = v.disk };
    GThread *reader = g_thread_new ("latest point", read_latest, &latest);
    int got = vdi_snapshot (&v, ref, pending, &e) == -1 ? -1
                                                         : vdi_nbd_uri (&v, &e);

    g_thread_join (reader);
    prev = latest.m;
    if (got == -1 || latest.err) {
      if (got == -1)
        g_clear_error (&latest.err);
      else
        e = latest.err;
      goto out;
    }
  }
  if (!o->full && !pending)
    vdi_changed_blocks (&v, prev, rec, xv_bool (rec, "cbt_enabled"));
  else if (pending && pending->kind == BACKUP_INCREMENTAL)
    vdi_changed_blocks (&v, prev, rec, true);

  struct backup_create_params p = { .source = v.uri,
                                    .disk = v.disk,
                                    .source_name = v.vdi_uuid,
                                    .full = o->full,
                                    .cbt_snapshot = v.snap_uuid,
                                    .cbt_generation = v.cbt_generation,
                                    .changed = v.changed,
                                    .changed_len = v.changed_len,
                                    .why_full = v.why_full,
                                    .why_also = v.why_moved,
                                    .progress = on_progress,
                                    .progress_opaque = &bar };
  if ((r->ops->create ? r->ops->create : backup_create) (r, &p, &m, &e)
      == -1)
    goto out;
  progress_finish (&bar);

  /* The previous snapshot's data is no longer needed: its changed-block
   * log stays for the next list_changed_blocks. */
  if (prev && prev->cbt_snapshot
      && g_strcmp0 (prev->cbt_snapshot, v.snap_uuid) != 0) {
    g_autofree char *old = snapshot_ref (v.c, rec, prev->cbt_snapshot, &e);
    g_autoptr (xv) done
        = old ? xapi_client_call (v.c, &e, "VDI.data_destroy",
                                  xv_new_string (old), NULL)
              : NULL;
    if (!done) {
      cli_error ("backup", "warning: VDI.data_destroy of snapshot %s: %s",
                 prev->cbt_snapshot, e ? e->message : "failed");
      g_clear_error (&e);
    }
  }
  print_point (o, m);
  ret = EXIT_OK;
  goto out_quiet;

out:
  if (bar.enabled)
    fputc ('\n', stderr);
  report_error ("create: ", e);
  e = NULL;
out_quiet:
  g_clear_error (&e);
  backup_manifest_free (m);
  backup_repo_close (r);
  vdi_source_clear (&v);
  return ret;
}

static int
do_list (struct options *o, const char *repo)
{
  struct backup_repo *r = open_repo (repo, false, LOCK_NONE);
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

/* A restore's JSON document begins with the point and where it went. */
static void
print_restore_json (bool *first, const struct backup_manifest *m,
                    const char *dst)
{
  json_str (first, "point", m->id);
  json_str (first, "disk", m->disk);
  json_str (first, "destination", dst);
}

/* ---- Into a VDI through --server: resumable -------------------------- */

/* A restore into a VDI keeps its state in the VDI's other_config (so the
 * same command continues it from any host, and a daemon's restart loses
 * nothing): the point ("DISK/ID"), the repository, the name the VDI gets
 * and the guest bytes written and flushed so far, from the start.  The
 * marker goes last, once the VDI has its name: a VDI with it is a
 * restore that is not over, named so. */
#define RESTORE_POINT "vdimotion-restore-point"
#define RESTORE_FROM "vdimotion-restore-from"
#define RESTORE_NAME "vdimotion-restore-name"
#define RESTORE_DONE "vdimotion-restore-done"

/* A rerun may find the killed run's import still holding the VDI
 * (OTHER_OPERATION_IN_PROGRESS) until the daemon sees its connection
 * gone: so many tries a second apart. */
#define IMPORT_BUSY_TRIES 30

struct vdi_restore
{
  struct xapi_client *c;
  char *ref;
  char *uuid;
  GHashTable *oc; /* the VDI's other_config, as we set it */
  uint64_t resumed_at;
  uint64_t sent; /* body bytes PUT by this run */
};

static void
vdi_restore_clear (struct vdi_restore *v)
{
  if (v->oc)
    g_hash_table_unref (v->oc);
  g_free (v->ref);
  g_free (v->uuid);
  if (v->c)
    client_close (v->c);
}

/* VDI.set_other_config of V's map. */
static int
vdi_restore_save (struct vdi_restore *v, GError **err)
{
  g_autoptr (xv) r = xapi_client_call (v->c, err, "VDI.set_other_config",
                                       xv_new_string (v->ref),
                                       xv_new_string_map (v->oc), NULL);
  return r ? 0 : -1;
}

/* PUT one window's chunks: xapi's import_raw_vdi with chunked. */
static int
put_chunks (struct vdi_restore *v, const struct backup_chunks *ch,
            GError **err)
{
  g_autofree char *sess
      = g_uri_escape_string (xapi_client_session (v->c), NULL, false);
  g_autofree char *rel = g_strdup_printf (
      "/import_raw_vdi?session_id=%s&vdi=%s&format=raw&chunked=true", sess,
      v->ref);

  for (int try = 1;; try++) {
    g_autoptr (SoupMessage) msg = xapi_client_message (v->c, "PUT", rel, err);
    g_autoptr (GBytes) body = g_bytes_new_static (ch->body, ch->len);
    g_autoptr (GBytes) reply = NULL;
    gsize n = 0;
    const char *text;
    guint status;

    if (!msg)
      return -1;
    soup_message_set_request_body_from_bytes (msg, "application/octet-stream",
                                              body);
    if (!(reply = xapi_client_send_and_read (v->c, msg, err)))
      return -1;
    status = soup_message_get_status (msg);
    if (status == SOUP_STATUS_OK) {
      v->sent += ch->len;
      return 0;
    }
    if (status == SOUP_STATUS_CONFLICT && try < IMPORT_BUSY_TRIES) {
      g_usleep (G_USEC_PER_SEC);
      continue;
    }
    text = g_bytes_get_data (reply, &n);
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
                 "import_raw_vdi (chunked) of bytes %" PRIu64 "-%" PRIu64
                 " into VDI %s: HTTP %u: %.*s",
                 ch->offset, ch->end, v->uuid, status,
                 (int)(text ? strcspn (text, "\r\n") : 0), text ? text : "");
    return -1;
  }
}

/* backup_restore_chunked's window: sent (when it holds data), then
 * recorded done. */
static int
vdi_restore_window (const struct backup_chunks *ch, void *opaque, GError **err)
{
  struct vdi_restore *v = opaque;

  if (ch->data > 0 && put_chunks (v, ch, err) == -1)
    return -1;
  g_hash_table_replace (v->oc, g_strdup (RESTORE_DONE),
                        g_strdup_printf ("%" PRIu64, ch->end));
  return vdi_restore_save (v, err);
}

/* The VDI of SR a killed restore of the same point from the same
 * repository under the same NAME left (by its marker), into V; false if
 * there is none. */
static bool
vdi_restore_find (struct vdi_restore *v, const char *sr, const char *point,
                  const char *from, const char *name, GError **err)
{
  g_autoptr (xv) all
      = xapi_client_call (v->c, err, "VDI.get_all_records", NULL);

  for (size_t i = 0; all && all->type == XV_STRUCT && i < all->n; i++) {
    const struct xv *rec = all->items[i];
    if (strcmp (xv_str (rec, "SR"), sr) != 0
        || strcmp (xv_map_str (rec, "other_config", RESTORE_POINT), point)
        || strcmp (xv_map_str (rec, "other_config", RESTORE_FROM), from)
        || strcmp (xv_map_str (rec, "other_config", RESTORE_NAME), name))
      continue;
    const struct xv *oc = xv_get (rec, "other_config");
    v->ref = g_strdup (all->keys[i]);
    v->uuid = g_strdup (xv_str (rec, "uuid"));
    for (size_t k = 0; oc && oc->type == XV_STRUCT && k < oc->n; k++)
      if (oc->items[k]->type == XV_STRING)
        g_hash_table_replace (v->oc, g_strdup (oc->keys[k]),
                              g_strdup (oc->items[k]->s));
    v->resumed_at = g_ascii_strtoull (
        xv_map_str (rec, "other_config", RESTORE_DONE), NULL, 10);
    return true;
  }
  return false;
}

/* A new VDI for the restore, marked and named as unfinished. */
static int
vdi_restore_create (struct vdi_restore *v, const char *sr,
                    const struct backup_manifest *m, const char *name,
                    GError **err)
{
  g_autofree char *size = g_strdup_printf ("%" PRIu64, m->virtual_size);
  g_autofree char *label
      = g_strdup_printf ("%s (restoring point %s: incomplete)", name, m->id);
  g_autoptr (xv) vdi = xapi_client_call (
      v->c, err, "VDI.create",
      xv_struct (
          "SR", xv_new_string (sr), "name_label", xv_new_string (label),
          "virtual_size", xv_new_string (size), "type", xv_new_string ("user"),
          "sharable", xv_new_bool (false), "read_only", xv_new_bool (false),
          "other_config", xv_new_string_map (v->oc), "sm_config",
          xv_struct ("image-format", xv_new_string ("qcow2"), NULL), NULL),
      NULL);
  g_autoptr (xv) uuid = NULL;

  if (!vdi)
    return -1;
  if (vdi->type != XV_STRING) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "VDI.create: no ref");
    return -1;
  }
  v->ref = g_strdup (vdi->s);
  uuid = xapi_client_call (v->c, err, "VDI.get_uuid", xv_new_string (v->ref),
                           NULL);
  v->uuid = uuid && uuid->type == XV_STRING ? g_strdup (uuid->s) : NULL;
  if (uuid && !v->uuid)
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "VDI.get_uuid: no uuid");
  return v->uuid ? 0 : -1;
}

/* The restore is whole: the VDI gets its name, then loses the marker. */
static int
vdi_restore_finish (struct vdi_restore *v, const char *name, GError **err)
{
  g_autoptr (xv) r
      = xapi_client_call (v->c, err, "VDI.set_name_label",
                          xv_new_string (v->ref), xv_new_string (name), NULL);
  if (!r)
    return -1;
  g_hash_table_remove (v->oc, RESTORE_POINT);
  g_hash_table_remove (v->oc, RESTORE_FROM);
  g_hash_table_remove (v->oc, RESTORE_NAME);
  g_hash_table_remove (v->oc, RESTORE_DONE);
  return vdi_restore_save (v, err);
}

/* --server: point M into a new VDI NAME of SR (DST "SR:NAME"), written
 * window by window through xapi's chunked import, each window recorded
 * in the VDI's marker once written; a rerun finds the marked VDI and
 * goes on from there.  Prints the VDI's uuid last. */
static int
restore_to_vdi (struct options *o, struct backup_repo *r,
                const struct backup_manifest *m, const char *dst, GError **err)
{
  const char *colon = strchr (dst, ':');
  if (!colon || colon == dst || !colon[1]) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "with --server the destination is SR:NAME, not \"%s\"",
                 dst);
    return -1;
  }
  g_autofree char *sr_name = g_strndup (dst, colon - dst);
  const char *name = colon + 1;
  g_autofree char *point = g_strdup_printf ("%s/%s", m->disk, m->id);
  g_autofree char *from = backup_location_is_remote (r->location)
                              ? g_strdup (r->location)
                              : g_canonicalize_filename (r->location, NULL);
  g_autofree char *sr = NULL;
  struct vdi_restore v = { .oc = g_hash_table_new_full (
                               g_str_hash, g_str_equal, g_free, g_free) };
  struct backup_stats st = { 0 };
  struct progress bar;
  int ret = -1;

  progress_init (&bar, o->progress, m->virtual_size);
  if (!(v.c = client_connect (&client_opts, err))
      || !(sr = client_lookup (v.c, "SR", sr_name, NULL, err)))
    goto out;
  if (!vdi_restore_find (&v, sr, point, from, name, err)) {
    if (*err)
      goto out;
    g_hash_table_replace (v.oc, g_strdup (RESTORE_POINT), g_strdup (point));
    g_hash_table_replace (v.oc, g_strdup (RESTORE_FROM), g_strdup (from));
    g_hash_table_replace (v.oc, g_strdup (RESTORE_NAME), g_strdup (name));
    g_hash_table_replace (v.oc, g_strdup (RESTORE_DONE), g_strdup ("0"));
    if (vdi_restore_create (&v, sr, m, name, err) == -1)
      goto out;
  }
  if (backup_restore_chunked (r, m, v.resumed_at, vdi_restore_window, &v,
                              on_progress, &bar, &st, err)
          == -1
      || vdi_restore_finish (&v, name, err) == -1) {
    if (bar.enabled)
      fputc ('\n', stderr);
    if (v.uuid)
      g_prefix_error (err,
                      "into VDI %s (kept, marked %s; the same command "
                      "continues it): ",
                      v.uuid, RESTORE_POINT);
    goto out;
  }
  progress_finish (&bar);
  if (o->json) {
    bool first = true;
    print_restore_json (&first, m, dst);
    json_str (&first, "vdi", v.uuid);
    json_u64 (&first, "resumed-at", v.resumed_at);
    json_u64 (&first, "bytes-sent", v.sent);
    print_stats_json (&first, &st);
    json_end (&first);
    putchar ('\n');
  }
  else {
    printf ("point %s restored into VDI %s of SR %s: %" PRIu64 " bytes sent",
            m->id, name, sr_name, v.sent);
    if (v.resumed_at)
      printf (" (continued at byte %" PRIu64 ")", v.resumed_at);
    printf ("\n%s\n", v.uuid);
  }
  ret = 0;
out:
  vdi_restore_clear (&v);
  return ret;
}

static int
do_restore (struct options *o, const char *repo, const char *point,
            const char *dst)
{
  struct backup_repo *r = open_repo (repo, false, LOCK_SHARED);
  if (!r)
    return EXIT_ERROR;
  GError *e = NULL;
  g_autoptr (backup_manifest) m
      = backup_repo_find_point (r, point, o->disk, &e);
  if (!m) {
    backup_repo_close (r);
    return report_error ("restore: ", e);
  }
  if (client_opts.server) {
    int ret = restore_to_vdi (o, r, m, dst, &e);
    backup_repo_close (r);
    return ret == 0 ? EXIT_OK : report_error ("restore: ", e);
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
    print_restore_json (&first, m, dst);
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
  struct backup_repo *r = open_repo (repo, false, LOCK_SHARED);
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
  struct backup_repo *r = open_repo (repo, false, LOCK_EXCLUSIVE);
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
