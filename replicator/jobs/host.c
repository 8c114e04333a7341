/* The host: opening it, its SRs, VDI claims and small shared helpers
 * (host.h). */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "events.h"
#include "host.h"
#include "jobs.h"

static void
host_sr_free (gpointer p)
{
  struct host_sr *s = p;

  if (sr_close (s->sr) == -1)
    g_warning ("SR %s: %s", s->name, sr_get_error ());
  g_free (s->name);
  g_free (s);
}

struct host *
host_new (void)
{
  struct host *h = g_new0 (struct host, 1);

  h->srs = g_ptr_array_new_with_free_func (host_sr_free);
  h->lock_fd = -1;
  h->vdi_ops = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_mutex_init (&h->vdi_ops_lock);
  h->events = events_new (0);
  return h;
}

void
host_free (struct host *h)
{
  if (h == NULL)
    return;
  /* The jobs first: they use the SRs and the state. */
  jobs_free (h->jobs);
  g_ptr_array_unref (h->srs);
  g_hash_table_unref (h->vdi_ops);
  g_mutex_clear (&h->vdi_ops_lock);
  state_close (h->state);
  events_free (h->events); /* after all that may log into it */
  g_free (h->uuid);
  g_free (h->name_label);
  g_free (h->network_uuid);
  g_free (h->pool_uuid);
  g_free (h->state_dir);
  g_free (h->run_dir);
  g_free (h->nbdkit);
  g_free (h->vdi_plugin);
  g_free (h->mirror_filter);
  g_free (h->migration_url);
  g_free (h->cert_sha256);
  g_free (h->nbd_address);
  g_free (h->memory_migrator);
  if (h->lock_fd >= 0)
    close (h->lock_fd); /* last: the state is closed */
  g_free (h);
}

/* A uuid made once and kept in the state directory (the host's, the
 * network's, the pool's): FILE names it there. */
static char *
kept_uuid (const char *state_dir, const char *file, GError **error)
{
  g_autofree char *path = g_build_filename (state_dir, file, NULL);
  g_autofree char *text = NULL;
  char uuid[SR_UUID_LEN + 1];

  if (g_file_get_contents (path, &text, NULL, NULL)) {
    g_strstrip (text);
    if (sr_uuid_is_valid (text))
      return g_steal_pointer (&text);
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: not a uuid",
                 path);
    return NULL;
  }
  if (sr_uuid_generate (uuid) == -1) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                 "cannot make a uuid: %s", sr_get_error ());
    return NULL;
  }
  if (!g_file_set_contents (path, uuid, -1, error))
    return NULL;
  return g_strdup (uuid);
}

/* Wait until FN (which tries once, false while the resource is held by
 * another process) succeeds or DEADLINE (monotonic) passes; WHAT is
 * logged once when it has to wait. */
static bool
wait_for (bool (*fn) (void *), void *opaque, gint64 deadline, const char *what)
{
  bool logged = false;

  for (;;) {
    if (fn (opaque))
      return true;
    if (g_get_monotonic_time () >= deadline)
      return false;
    if (!logged) {
      g_message (
          "%s is held by another process (a previous vdimotiond "
          "still exiting?): waiting up to %d s",
          what,
          (int)((deadline - g_get_monotonic_time ()) / G_USEC_PER_SEC + 1));
      logged = true;
    }
    g_usleep (20 * 1000);
  }
}

struct try_flock
{
  int fd;
};

static bool
try_flock (void *opaque)
{
  struct try_flock *t = opaque;

  return flock (t->fd, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK;
}

/* One daemon per state directory: an flock on <state-dir>/lock, held
 * until the process ends (a kill -9 included).  A start right after a
 * kill waits for the old process to be gone.  The descriptor, or -1. */
static int
lock_state_dir (const char *state_dir, gint64 deadline, GError **error)
{
  g_autofree char *path = g_build_filename (state_dir, "lock", NULL);
  struct try_flock t = { open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) };

  if (t.fd == -1) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno),
                 "%s: %s", path, g_strerror (errno));
    return -1;
  }
  if (!wait_for (try_flock, &t, deadline, path)
      || flock (t.fd, LOCK_EX | LOCK_NB) == -1) {
    int e = errno;

    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e), "%s: %s",
                 path,
                 e == EWOULDBLOCK ? "another vdimotiond uses this state "
                                    "directory"
                                  : g_strerror (e));
    close (t.fd);
    return -1;
  }
  return t.fd;
}

struct try_sr
{
  const char *path;
  struct sr *sr;
};

static bool
try_sr (void *opaque)
{
  struct try_sr *t = opaque;

  t->sr = sr_open ("file", t->path, SR_OPEN_CREATE);
  return t->sr || sr_get_errno () != EBUSY;
}

/* An SR's watch (sr_set_watch): a VDI's record changed.  An SR's record
 * lists its VDIs, so it changes with their coming and going. */
static void
vdi_changed (struct sr *sr, const char *uuid, enum sr_change change,
             void *opaque)
{
  struct host *h = opaque;
  enum event_op op = change == SR_VDI_ADDED     ? EVENT_ADD
                     : change == SR_VDI_REMOVED ? EVENT_DEL
                                                : EVENT_MOD;

  events_add (h->events, EVENT_CLASS_VDI, op, uuid);
  if (op != EVENT_MOD)
    events_add (h->events, EVENT_CLASS_SR, EVENT_MOD, sr_get_uuid (sr));
}

static int
open_srs (struct host *h, const char *const *srs, gint64 deadline,
          GError **error)
{
  for (const char *const *s = srs; s && *s; s++) {
    const char *eq = strchr (*s, '=');
    struct host_sr *x;
    struct sr *sr;

    if (eq == NULL || eq == *s || eq[1] == '\0') {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--sr %s: expected NAME=PATH", *s);
      return -1;
    }
    {
      /* The SR's lock is the previous daemon's until it is gone. */
      g_autofree char *what = g_strdup_printf ("SR %s", eq + 1);
      struct try_sr t = { eq + 1, NULL };

      wait_for (try_sr, &t, deadline, what);
      sr = t.sr;
    }
    if (sr == NULL) {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s",
                   sr_get_error ());
      return -1;
    }
    sr_set_watch (sr, vdi_changed, h);
    x = g_new0 (struct host_sr, 1);
    x->name = g_strndup (*s, eq - *s);
    x->sr = sr;
    g_ptr_array_add (h->srs, x);
    g_message ("SR %s: %s (%s)", x->name, sr_get_uuid (sr), eq + 1);
  }
  return 0;
}

struct host *
host_open (const struct host_config *cfg, GError **error)
{
  struct host *h = host_new ();
  gint64 deadline = g_get_monotonic_time ()
                    + (gint64)cfg->lock_wait_seconds * G_USEC_PER_SEC;

  h->state_dir = g_strdup (cfg->state_dir);
  if (g_mkdir_with_parents (h->state_dir, 0700) == -1) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno),
                 "%s: %s", h->state_dir, g_strerror (errno));
    goto fail;
  }
  if ((h->lock_fd = lock_state_dir (h->state_dir, deadline, error)) == -1)
    goto fail;
  if ((h->uuid = kept_uuid (h->state_dir, "host-uuid", error)) == NULL
      || (h->network_uuid = kept_uuid (h->state_dir, "network-uuid", error))
             == NULL
      || (h->pool_uuid = kept_uuid (h->state_dir, "pool-uuid", error))
             == NULL)
    goto fail;
  h->run_dir = g_build_filename (h->state_dir, "run", NULL);
  if (g_mkdir_with_parents (h->run_dir, 0700) == -1) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno),
                 "%s: %s", h->run_dir, g_strerror (errno));
    goto fail;
  }
  if ((h->state = state_open (h->state_dir, error)) == NULL)
    goto fail;
  state_set_events (h->state, h->events);
  h->name_label = g_strdup (cfg->name_label);
  h->nbdkit = g_strdup (cfg->nbdkit);
  h->vdi_plugin = g_strdup (cfg->vdi_plugin);
  h->mirror_filter = g_strdup (cfg->mirror_filter);
  h->memory_migrator = g_strdup (cfg->memory_migrator);
  if (open_srs (h, cfg->srs, deadline, error) == -1)
    goto fail;
  return h;

fail:
  host_free (h);
  return NULL;
}

struct host_sr *
host_find_sr (struct host *h, const char *uuid)
{
  for (guint i = 0; uuid && i < h->srs->len; i++) {
    struct host_sr *s = h->srs->pdata[i];

    if (strcmp (sr_get_uuid (s->sr), uuid) == 0)
      return s;
  }
  return NULL;
}

struct sr_vdi *
host_find_vdi (struct host *h, const char *uuid, struct host_sr **srp)
{
  for (guint i = 0; uuid && i < h->srs->len; i++) {
    struct host_sr *s = h->srs->pdata[i];
    struct sr_vdi *v = sr_vdi_get_by_uuid (s->sr, uuid);

    if (v) {
      if (srp)
        *srp = s;
      return v;
    }
  }
  return NULL;
}

char *
host_vdi_path (const struct host_sr *s, const struct sr_vdi *v)
{
  return g_build_filename (sr_get_path (s->sr), v->location, NULL);
}

char *
host_moved_from (const char *uuid, const char *was)
{
  g_auto (GStrv) old = g_strsplit (was ? was : "", ",", -1);
  g_autoptr (GString) s = g_string_new (uuid);
  guint n = 1;

  for (guint i = 0; old[i] && n < HOST_MOVED_FROM_MAX; i++)
    if (*old[i] && strcmp (old[i], uuid) != 0) {
      g_string_append_printf (s, ",%s", old[i]);
      n++;
    }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

bool
host_vdi_claim (struct host *h, const char *uuid, const char *op)
{
  bool ok;

  g_mutex_lock (&h->vdi_ops_lock);
  ok = !g_hash_table_contains (h->vdi_ops, uuid);
  if (ok)
    g_hash_table_insert (h->vdi_ops, g_strdup (uuid), g_strdup (op));
  g_mutex_unlock (&h->vdi_ops_lock);
  /* The VDI's current_operations changed. */
  if (ok)
    events_add (h->events, EVENT_CLASS_VDI, EVENT_MOD, uuid);
  return ok;
}

void
host_vdi_release (struct host *h, const char *uuid)
{
  bool had;

  g_mutex_lock (&h->vdi_ops_lock);
  had = g_hash_table_remove (h->vdi_ops, uuid);
  g_mutex_unlock (&h->vdi_ops_lock);
  if (had)
    events_add (h->events, EVENT_CLASS_VDI, EVENT_MOD, uuid);
}

char *
host_vdi_operation (struct host *h, const char *uuid)
{
  char *op;

  g_mutex_lock (&h->vdi_ops_lock);
  op = g_strdup (g_hash_table_lookup (h->vdi_ops, uuid));
  g_mutex_unlock (&h->vdi_ops_lock);
  return op;
}

bool
host_vdi_attached (struct host *h, const char *vdi_uuid)
{
  g_autoptr (GPtrArray) uuids = state_list (h->state, "vbds", "vdi", vdi_uuid);

  for (guint i = 0; i < uuids->len; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (h->state, uuids->pdata[i]);

    if (b && b->pid > 0)
      return true;
  }
  return false;
}

char *
host_ref (const char *uuid)
{
  return g_strconcat (HOST_REF_PREFIX, uuid, NULL);
}

void
host_err_set (char ***err, const char *code, ...)
{
  GPtrArray *a;
  va_list ap;
  const char *p;

  if (err == NULL)
    return;
  g_assert (*err == NULL); /* a failure is reported once */
  a = g_ptr_array_new ();
  g_ptr_array_add (a, g_strdup (code));
  va_start (ap, code);
  while ((p = va_arg (ap, const char *)))
    g_ptr_array_add (a, g_strdup (p));
  va_end (ap);
  g_ptr_array_add (a, NULL);
  *err = (char **)g_ptr_array_free (a, FALSE);
}

void
host_err_sr (char ***err, const char *cls, const char *ref, const char *op)
{
  const char *msg = sr_get_error ();

  switch (sr_get_errno ()) {
  case ENOENT: host_err_set (err, "HANDLE_INVALID", cls, ref, NULL); break;
  case EINVAL: host_err_set (err, "UUID_INVALID", cls, ref, NULL); break;
  case EBUSY: host_err_set (err, "VDI_IN_USE", ref, op, NULL); break;
  case EROFS: host_err_set (err, "VDI_READ_ONLY", ref, NULL); break;
  case ENOSPC: host_err_set (err, "SR_FULL", ref, msg, NULL); break;
  case ENOTSUP:
    host_err_set (err, "SR_OPERATION_NOT_SUPPORTED", ref, msg, NULL);
    break;
  default:
    host_err_set (err, "INTERNAL_ERROR", msg ? msg : "unknown", NULL);
  }
}

int
host_vdi_claim_or_fail (struct host *h, const char *uuid, const char *op,
                        char ***err)
{
  g_autofree char *busy = NULL;
  g_autofree char *ref = NULL;

  if (host_vdi_claim (h, uuid, op))
    return 0;
  busy = host_vdi_operation (h, uuid);
  ref = host_ref (uuid);
  host_err_set (err, "OTHER_OPERATION_IN_PROGRESS", "VDI", ref,
                busy ? busy : "", NULL);
  return -1;
}

GHashTable *
host_oc_parse (const char *text)
{
  GHashTable *oc
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GVariant) v = NULL;
  GVariantIter it;
  const char *k, *val;

  if (text && *text)
    v = g_variant_parse (G_VARIANT_TYPE ("a{ss}"), text, NULL, NULL, NULL);
  if (v == NULL)
    return oc;
  g_variant_iter_init (&it, v);
  while (g_variant_iter_next (&it, "{&s&s}", &k, &val))
    g_hash_table_replace (oc, g_strdup (k), g_strdup (val));
  return oc;
}

char *
host_oc_print (GHashTable *oc)
{
  GVariantBuilder b;
  GHashTableIter it;
  gpointer k, v;
  g_autoptr (GVariant) var = NULL;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{ss}"));
  g_hash_table_iter_init (&it, oc);
  while (g_hash_table_iter_next (&it, &k, &v))
    g_variant_builder_add (&b, "{ss}", (const char *)k, (const char *)v);
  var = g_variant_ref_sink (g_variant_builder_end (&b));
  return g_variant_print (var, FALSE);
}
