/* XenAPI's changed-block tracking calls over the SRs' logs (cbt.h). */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cbt-log.h"
#include "cbt.h"
#include "control-client.h"
#include "jobs.h"
#include "nbdkit.h"
#include "vms.h"

/* The SR's last failure on VDI REF during OP (the XenAPI method): its
 * CBT errnos (sr.h) as xapi's codes, the rest as host_err_sr says. */
static void
err_sr (char ***err, const char *ref, const char *op)
{
  switch (sr_get_errno ()) {
  case EMEDIUMTYPE:
    host_err_set (err, "VDI_INCOMPATIBLE_TYPE", ref, "cbt_metadata", NULL);
    break;
  case ENODATA:
    host_err_set (err, "VDI_NO_CBT_METADATA", ref, NULL);
    break;
  default:
    host_err_sr (err, "VDI", ref, op);
  }
}

/* The managed VDI UUID (sr_vdi_free it) and its SR; NULL with
 * HANDLE_INVALID. */
static struct sr_vdi *
find_vdi (struct host *h, const char *uuid, struct host_sr **srp, char ***err)
{
  struct sr_vdi *v = host_find_vdi (h, uuid, srp);

  if (v && v->managed)
    return v;
  sr_vdi_free (v);
  {
    g_autofree char *ref = host_ref (uuid);

    host_err_set (err, "HANDLE_INVALID", "VDI", ref, NULL);
  }
  return NULL;
}

/* Run FN on VDI UUID of S, the VDI claimed for OP ("enable_cbt") the
 * while (no VM starts or stops its disk meanwhile).  0, or -1 with *ERR
 * (FN's). */
static int
claimed_call (struct host *h, struct host_sr *s, const char *uuid,
              const char *op,
              int (*fn) (struct host *h, struct host_sr *s, const char *uuid,
                         char ***err),
              char ***err)
{
  int r;

  if (host_vdi_claim_or_fail (h, uuid, op, err) == -1)
    return -1;
  r = fn (h, s, uuid, err);
  host_vdi_release (h, uuid);
  if (r == 0)
    g_message ("VDI.%s: %s in SR %s", op, uuid, s->name);
  return r;
}

/* The SR's call FN on UUID, its failure as xapi's error for METHOD. */
static int
sr_call (struct host_sr *s, const char *uuid, const char *method,
         int (*fn) (struct sr *sr, const char *uuid), char ***err)
{
  g_autofree char *ref = host_ref (uuid);

  if (fn (s->sr, uuid) == 0)
    return 0;
  err_sr (err, ref, method);
  return -1;
}

/* ---- the served disk's filter (cbt.h: the log of a running VM's disk) */

gboolean
host_cbt_open_on (struct host_sr *s, const char *uuid, const char *control,
                  GError **error)
{
  char *p = sr_vdi_cbt_log_path (s->sr, uuid);
  g_autofree char *path = g_strdup (p);

  free (p);
  if (path == NULL) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                 "VDI %s: its changed-block log: %s", uuid, sr_get_error ());
    return FALSE;
  }
  if (control == NULL) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                 "VDI %s: its disk server has no mirror filter to mark its "
                 "changed-block log",
                 uuid);
    return FALSE;
  }
  return mirror_cbt_open (control, path, error);
}

/* The control socket of the filter that serves VDI UUID to a running VM
 * read-write (g_free), or NULL when nothing marks its log. */
static char *
marking_filter (struct host *h, const char *uuid)
{
  g_autoptr (state_vbd) b = host_vdi_serving_vbd (h, uuid);

  if (b == NULL || g_strcmp0 (b->mode, "RO") == 0)
    return NULL;
  return g_steal_pointer (&b->control_socket);
}

/* Whether ERROR is the refusal of cbt-open by a filter that predates it
 * (a disk server an older vdimotion started, which outlived an upgrade):
 * its parser knows neither the command nor its log=.  Such a filter
 * looks for the log before each request and takes it by itself. */
static bool
older_filter (const GError *error)
{
  return g_error_matches (error, MIRROR_CONTROL_ERROR,
                          MIRROR_CONTROL_ERROR_REFUSED)
         && (strstr (error->message, "cbt-open: unknown parameter \"log\"")
             || strstr (error->message, "unknown command \"cbt-open\""));
}

/* CBT is on for UUID: the filter of its running VM's disk, if any, marks
 * its log from now on.  If that cannot be, CBT goes off again, since a
 * log nobody marks would miss writes, and *ERR says why. */
static int
filter_takes_log (struct host *h, struct host_sr *s, const char *uuid,
                  char ***err)
{
  g_autofree char *control = marking_filter (h, uuid);
  g_autoptr (GError) error = NULL;
  g_autofree char *why = NULL;

  if (control == NULL || host_cbt_open_on (s, uuid, control, &error))
    return 0;
  if (older_filter (error)) {
    g_message ("VDI %s: its disk server's filter predates cbt-open; it "
               "takes the log at its next request",
               uuid);
    return 0;
  }
  why = g_strdup_printf ("VDI %s: the disk server of its running VM cannot "
                         "mark its changed-block log, so CBT stays off: %s",
                         uuid, error->message);
  g_warning ("%s", why);
  if (sr_vdi_disable_cbt (s->sr, uuid) == -1)
    g_critical ("VDI %s: CBT cannot be turned off again: %s (its log "
                "misses the writes from now on)",
                uuid, sr_get_error ());
  host_err_set (err, "INTERNAL_ERROR", why, NULL);
  return -1;
}

static int
enable_cbt (struct host *h, struct host_sr *s, const char *uuid, char ***err)
{
  if (sr_call (s, uuid, "VDI.enable_cbt", sr_vdi_enable_cbt, err) == -1)
    return -1;
  job_crash_point ("enable-cbt-created");
  return filter_takes_log (h, s, uuid, err);
}

/* CBT off for UUID: its log is flagged disabled while a filter holds it
 * (it says nothing from then on, whatever happens next), the filter lets
 * go of it, and it is removed.  A filter that does not answer keeps the
 * flagged file (sr.h), which a later enable_cbt takes up again. */
static int
disable_cbt (struct host *h, struct host_sr *s, const char *uuid,
             char ***err)
{
  g_autofree char *control = marking_filter (h, uuid);
  g_autoptr (GError) error = NULL;

  if (sr_call (s, uuid, "VDI.disable_cbt", sr_vdi_disable_cbt, err) == -1)
    return -1;
  if (control == NULL)
    return 0;
  job_crash_point ("disable-cbt-flagged");
  if (!mirror_cbt_close (control, &error))
    g_warning ("VDI %s: CBT is off, but the disk server of its running VM "
               "still holds the log (flagged disabled: it says nothing): %s",
               uuid, error->message);
  else if (sr_vdi_disable_cbt (s->sr, uuid) == -1)
    g_warning ("VDI %s: CBT is off, its log stays (flagged disabled): %s",
               uuid, sr_get_error ());
  return 0;
}

/* xapi's checks of enable_cbt and disable_cbt, in its order. */
static bool
may_set_cbt (const struct sr_vdi *v, char ***err)
{
  g_autofree char *ref = host_ref (v->uuid);

  if (v->cbt_metadata) {
    host_err_set (err, "VDI_INCOMPATIBLE_TYPE", ref, "cbt_metadata", NULL);
    return false;
  }
  if (v->is_snapshot) {
    g_autofree char *why = g_strconcat ("VDI is a snapshot: ", ref, NULL);

    host_err_set (err, "OPERATION_NOT_ALLOWED", why, NULL);
    return false;
  }
  return true;
}

static int
set_cbt (struct host *h, const char *uuid, bool on, char ***err)
{
  struct host_sr *s = NULL;
  struct sr_vdi *v = find_vdi (h, uuid, &s, err);
  int r;

  if (v == NULL)
    return -1;
  if (!may_set_cbt (v, err))
    r = -1;
  else if (v->cbt_enabled == on)
    r = 0; /* idempotent, as xapi */
  else if (on)
    r = claimed_call (h, s, uuid, "enable_cbt", enable_cbt, err);
  else
    r = claimed_call (h, s, uuid, "disable_cbt", disable_cbt, err);
  sr_vdi_free (v);
  return r;
}

int
host_vdi_enable_cbt (struct host *h, const char *uuid, char ***err)
{
  return set_cbt (h, uuid, true, err);
}

int
host_vdi_disable_cbt (struct host *h, const char *uuid, char ***err)
{
  return set_cbt (h, uuid, false, err);
}

char *
host_vdi_list_changed_blocks (struct host *h, const char *from,
                              const char *to, char ***err)
{
  struct host_sr *s_from = NULL, *s_to = NULL;
  struct sr_vdi *v_from = find_vdi (h, from, &s_from, err);
  struct sr_vdi *v_to = v_from ? find_vdi (h, to, &s_to, err) : NULL;
  g_autofree char *from_ref = host_ref (from);
  g_autofree char *to_ref = host_ref (to);
  g_autofree uint8_t *bitmap = NULL;
  size_t len = 0;
  char *b64 = NULL;

  if (v_to == NULL)
    goto out;
  if (host_vdi_attached (h, to)) {
    host_err_set (err, "VDI_IN_USE", to_ref, "list_changed_blocks", NULL);
    goto out;
  }
  /* FROM may be in another SR: a snapshot a backup took before the
   * disk moved (VDI.pool_migrate, an evacuation) stays where it was,
   * and the walk reads the logs from TO back, never FROM's own. */
  bitmap = sr_vdi_list_changed_blocks (s_to->sr, from, to, &len);
  if (bitmap == NULL) {
    g_message ("VDI.list_changed_blocks %s %s: %s", from, to,
               sr_get_error ());
    /* A backup that must be a full says why: the walk's reason (a
     * reset after an unclean stop, CBT enabled again) follows the ref. */
    if (sr_get_errno () == ENODATA)
      host_err_set (err, "VDI_NO_CBT_METADATA", from_ref, sr_get_error (),
                    NULL);
    else
      err_sr (err, to_ref, "VDI.list_changed_blocks");
    goto out;
  }
  b64 = cbt_bitmap_to_base64 (bitmap, len);
out:
  sr_vdi_free (v_from);
  sr_vdi_free (v_to);
  return b64;
}

static int
data_destroy (struct host *h, struct host_sr *s, const char *uuid,
              char ***err)
{
  return sr_call (s, uuid, "VDI.data_destroy", sr_vdi_data_destroy, err);
}

int
host_vdi_data_destroy (struct host *h, const char *uuid, char ***err)
{
  struct host_sr *s = NULL;
  struct sr_vdi *v = find_vdi (h, uuid, &s, err);
  g_autofree char *ref = host_ref (uuid);
  int r = -1;

  if (v == NULL)
    return -1;
  if (v->cbt_metadata) {
    r = 0; /* idempotent, as xapi */
    goto out;
  }
  if (!v->is_snapshot) {
    g_autofree char *why = g_strconcat ("VDI is not a snapshot: ", ref, NULL);

    host_err_set (err, "OPERATION_NOT_ALLOWED", why, NULL);
    goto out;
  }
  if (!v->cbt_enabled) {
    host_err_set (err, "VDI_NO_CBT_METADATA", ref, NULL);
    goto out;
  }
  if (host_vdi_attached (h, uuid)) {
    host_err_set (err, "VDI_IN_USE", ref, "data_destroy", NULL);
    goto out;
  }
  r = claimed_call (h, s, uuid, "data_destroy", data_destroy, err);
out:
  sr_vdi_free (v);
  return r;
}

/* ---- a live move's log across filesystems (cbt.h: host_cbt_follow) */

/* FROM's log merged into TO's (made if TO has none): bits ORed in while
 * TO's writer may mark, never written over. */
static gboolean
merge_log (struct host_sr *from_s, const char *from, struct host_sr *to_s,
           const char *to, GError **error)
{
  size_t len = 0;
  uint8_t *bytes = sr_vdi_cbt_export (from_s->sr, from, &len);
  int r = bytes ? sr_vdi_cbt_merge (to_s->sr, to, bytes, len) : -1;

  free (bytes);
  if (r == -1)
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                 "VDI %s: merging the changed-block log of VDI %s: %s", to,
                 from, sr_get_error ());
  return r == 0;
}

/* TO's log cannot be trusted to hold every write (its writer was not
 * moved onto it, or the marks made before the switch are not all in
 * it): CBT off for TO, and ERROR says why after WHY. */
static gboolean
follow_failed (struct host_sr *to_s, const char *to, GError **error,
               const char *why)
{
  g_prefix_error (error, "%s, so CBT is off for VDI %s: ", why, to);
  if (sr_vdi_disable_cbt (to_s->sr, to) == -1)
    g_critical ("VDI %s: CBT cannot be turned off: %s (its log misses "
                "writes)",
                to, sr_get_error ());
  return FALSE;
}

/* The filter marking FROM's log (the move's VM's, whose VBD names TO
 * once the move is recorded, FROM before) is moved onto TO's log.  The
 * order of the steps, and why a kill -9 between any two leaves no log
 * that says less than happened: vdi-jobs.c ("The changed-block log
 * follows the disk"). */
static gboolean
follow_live (struct host *h, struct host_sr *from_s, const char *from,
             struct host_sr *to_s, const char *to, GError **error)
{
  g_autofree char *control = marking_filter (h, to);

  if (control == NULL)
    control = marking_filter (h, from);
  if (!merge_log (from_s, from, to_s, to, error))
    return follow_failed (to_s, to, error, "its log was not carried");
  job_crash_point ("cbt-follow-copied");
  if (!host_cbt_open_on (to_s, to, control, error))
    return follow_failed (to_s, to, error,
                          "its running VM's disk server cannot take its "
                          "new changed-block log");
  job_crash_point ("cbt-follow-switched");
  if (!merge_log (from_s, from, to_s, to, error))
    return follow_failed (to_s, to, error,
                          "the writes made before its disk server took its "
                          "new log are not all in it");
  job_crash_point ("cbt-follow-merged");
  if (sr_vdi_disable_cbt (from_s->sr, from) == -1)
    g_warning ("VDI %s: its old changed-block log stays until the VDI "
               "goes: %s",
               from, sr_get_error ());
  g_message ("VDI %s: its changed-block log followed it to VDI %s on "
             "another filesystem; its running VM's disk server marks that "
             "one",
             from, to);
  return TRUE;
}

gboolean
host_cbt_follow (struct host *h, struct host_sr *from_s, const char *from,
                 struct host_sr *to_s, const char *to, bool keep_source,
                 GError **error)
{
  if (sr_vdi_cbt_follow (from_s->sr, from, to_s->sr, to, keep_source) == 0)
    return TRUE;
  if (sr_get_errno () == EXDEV && !keep_source)
    return follow_live (h, from_s, from, to_s, to, error);
  g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s",
               sr_get_error ());
  return FALSE;
}

/* One VBD at start: its filter made to agree with its VDI's record. */
static void
reconcile_vbd (struct host *h, const char *vbd_uuid)
{
  g_autoptr (state_vbd) b = state_vbd_get (h->state, vbd_uuid);
  struct host_sr *s = NULL;
  struct sr_vdi *v = NULL;
  g_autofree char *location = NULL;
  char *p;

  if (b == NULL || b->pid <= 0 || !b->control_socket
      || g_strcmp0 (b->mode, "RO") == 0
      || !nbdkit_serving (b->pid, b->nbd_socket)
      || (v = host_find_vdi (h, b->vdi, &s)) == NULL)
    return;
  if (v->cbt_enabled) {
    /* Enabled while the daemon was stopping: cbt-open may not have
     * been sent.  Idempotent. */
    filter_takes_log (h, s, v->uuid, NULL);
    sr_vdi_free (v);
    return;
  }
  /* A log disabled under its writer whose cbt-close never came. */
  p = sr_vdi_cbt_log_location (s->sr, v->uuid);
  location = g_strdup (p);
  free (p);
  if (location && g_file_test (location, G_FILE_TEST_EXISTS))
    disable_cbt (h, s, v->uuid, NULL);
  sr_vdi_free (v);
}

void
host_cbt_reconcile (struct host *h)
{
  g_autoptr (GPtrArray) vbds = state_list (h->state, "vbds", NULL, NULL);

  for (guint i = 0; i < vbds->len; i++)
    reconcile_vbd (h, vbds->pdata[i]);
}
