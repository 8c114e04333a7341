/* A live snapshot: VDI.snapshot of a VDI a running VM uses
 * (live-snapshot.h). */

#include <string.h>

#include "control-client.h"
#include "jobs.h"
#include "live-snapshot.h"
#include "nbdkit.h"
#include "vms.h"

/* Times the leaf's nbdkit and the pivot to it are tried. */
#define PIVOT_ATTEMPTS 2
/* other_config keys of a snapshot: a live snapshot under way (the VBD),
 * and one that is not frozen (why). */
#define PENDING_KEY "vdimotion-live-snapshot"
#define INVALID_KEY "vdimotion-snapshot-invalid"

/* The leaf's nbdkit of snapshot SNAP is <run-dir>/<SNAP>-leaf. */
static char *
leaf_name (const char *snap)
{
  return g_strconcat (snap, "-leaf", NULL);
}

/* SNAP's other_config KEY set to VALUE (NULL: removed); logged if not. */
static void
mark (struct host_sr *s, const char *snap, const char *key,
      const char *value)
{
  if (sr_vdi_set_other_config (s->sr, snap, key, value) == -1)
    g_critical ("snapshot %s: cannot set other_config %s: %s", snap, key,
                sr_get_error ());
}

/* Serve the new leaf LEAF and make it the disk of B's filter.  True with
 * *SV its nbdkit; false with *WHY (g_free), nothing left running. */
static bool
pivot_to_leaf (struct host *h, struct host_sr *s, const struct sr_vdi *leaf,
               const char *name, const struct state_vbd *b,
               struct nbdkit_served *sv, char **why)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *uri = NULL;

  if (nbdkit_serve_image (h, name, s, leaf, false, false, sv, &error) == -1) {
    *why = g_strdup (error->message);
    return false;
  }
  uri = g_strdup_printf ("nbd+unix:///?socket=%s", sv->socket);
  if (mirror_resume (b->control_socket, uri, NULL, true, &error))
    return true;
  *why = g_strdup (error->message);
  nbdkit_stop (sv->pid, sv->socket, NULL, NBDKIT_STOP_NOW);
  g_clear_pointer (&sv->socket, g_free);
  return false;
}

/* After the pivot: B's target is SV (the previous one stops). */
static void
record_target (struct host *h, struct state_vbd *b, struct nbdkit_served *sv)
{
  pid_t old_pid = b->target_pid == sv->pid ? 0 : b->target_pid;
  g_autofree char *old_socket = b->target_socket;

  b->target_socket = g_steal_pointer (&sv->socket);
  b->target_pid = sv->pid;
  if (state_vbd_update (h->state, b) == -1)
    g_critical ("VBD %s: its disk is the nbdkit %d on %s but that cannot "
                "be recorded; stop it by hand once the VM stops",
                b->uuid, (int)b->target_pid, b->target_socket);
  /* Nothing writes through the previous leaf's server any more: its
   * image is the new snapshot. */
  if (old_pid)
    nbdkit_stop (old_pid, old_socket, NULL, NBDKIT_STOP_GRACE);
}

/* The pivot failed: the guest goes on on the image it wrote, now SNAP's
 * (nbdkit-mirror-filter(1): plain resume), and SNAP says it is not
 * frozen. */
static void
give_up (struct host *h, struct host_sr *s, const struct state_vbd *b,
         const char *snap, const char *why)
{
  g_autoptr (GError) error = NULL;

  if (!mirror_resume (b->control_socket, NULL, NULL, false, &error))
    g_critical ("VBD %s: resume after a failed live snapshot: %s (the "
                "filter's pause timeout resumes it)",
                b->uuid, error->message);
  mark (s, snap, INVALID_KEY, why);
  mark (s, snap, PENDING_KEY, NULL);
}

char *
host_vdi_snapshot_live (struct host *h, struct host_sr *s,
                        const struct sr_vdi *v, char ***err)
{
  g_autoptr (state_vbd) b = host_vdi_serving_vbd (h, v->uuid);
  g_autofree char *ref = host_ref (v->uuid);
  g_autoptr (GError) error = NULL;
  g_autofree char *why = NULL;
  g_autofree char *name = NULL;
  struct nbdkit_served sv = { 0 };
  struct sr_vdi *snap = NULL, *leaf = NULL;
  char *r = NULL;

  if (b == NULL) {
    host_err_set (err, "INTERNAL_ERROR",
                  "live snapshot: the VM's disk is no longer served", NULL);
    return NULL;
  }
  if (host_vdi_claim_or_fail (h, v->uuid, "snapshot", err) == -1)
    return NULL;
  if (!mirror_pause (b->control_socket, &error)) {
    why = g_strdup_printf ("live snapshot of VDI %s: %s", v->uuid,
                           error->message);
    host_err_set (err, "INTERNAL_ERROR", why, NULL);
    goto out;
  }
  snap = sr_vdi_snapshot (s->sr, v->uuid, v->name_label);
  if (snap == NULL) {
    g_message ("VDI.snapshot of %s (live): %s", v->uuid, sr_get_error ());
    host_err_sr (err, "VDI", ref, "VDI.snapshot");
    if (!mirror_resume (b->control_socket, NULL, NULL, false, &error))
      g_critical ("VBD %s: resume: %s", b->uuid, error->message);
    goto out;
  }
  mark (s, snap->uuid, PENDING_KEY, b->uuid);
  job_crash_point ("live-snapshot-frozen");
  leaf = sr_vdi_get_by_uuid (s->sr, v->uuid);
  name = leaf_name (snap->uuid);
  for (int i = 0; i < PIVOT_ATTEMPTS && leaf; i++) {
    g_clear_pointer (&why, g_free);
    if (pivot_to_leaf (h, s, leaf, name, b, &sv, &why))
      break;
    g_message ("live snapshot of VDI %s: %s", v->uuid, why);
  }
  if (leaf == NULL)
    why = g_strdup_printf ("the new leaf: %s", sr_get_error ());
  if (sv.socket == NULL) {
    g_autofree char *msg = g_strdup_printf (
        "live snapshot of VDI %s: %s; the VM goes on with its data whole, "
        "but snapshot %s is not frozen",
        v->uuid, why, snap->uuid);

    give_up (h, s, b, snap->uuid, why);
    g_warning ("%s", msg);
    host_err_set (err, "INTERNAL_ERROR", msg, NULL);
    goto out;
  }
  job_crash_point ("live-snapshot-pivoted");
  record_target (h, b, &sv);
  mark (s, snap->uuid, PENDING_KEY, NULL);
  g_message ("VDI.snapshot: %s of %s in SR %s (live: VBD %s now on %s)",
             snap->uuid, v->uuid, s->name, b->uuid, b->target_socket);
  r = g_strdup (snap->uuid);
out:
  host_vdi_release (h, v->uuid);
  sr_vdi_free (snap);
  sr_vdi_free (leaf);
  return r;
}

/* Restarts. */

/* Is B's filter pivoted onto SOCKET?  *PAUSED: whether it waits for a
 * resume. */
static bool
pivoted_onto (const struct state_vbd *b, const char *socket, bool *paused)
{
  struct mirror_status st = { 0 };
  bool r = false;

  *paused = false;
  if (b == NULL || b->control_socket == NULL
      || !nbdkit_serving (b->pid, b->nbd_socket)
      || !mirror_get_status (b->control_socket, &st, NULL))
    return false;
  *paused = st.paused;
  r = st.pivoted && st.target && strstr (st.target, socket);
  mirror_status_clear (&st);
  return r;
}

/* Snapshot SNAP of S was being taken live for VBD VBD_UUID when the
 * daemon stopped: finish or undo it (live-snapshot.h). */
static void
recover_one (struct host *h, struct host_sr *s, const char *snap,
             const char *vbd_uuid)
{
  g_autoptr (state_vbd) b = state_vbd_get (h->state, vbd_uuid);
  g_autofree char *name = leaf_name (snap);
  g_autofree char *file = g_strconcat (name, ".sock", NULL);
  g_autofree char *pidfile_name = g_strconcat (name, ".pid", NULL);
  g_autofree char *socket = g_build_filename (h->run_dir, file, NULL);
  g_autofree char *pidfile = g_build_filename (h->run_dir, pidfile_name, NULL);
  pid_t pid = nbdkit_read_pidfile (pidfile);
  bool paused;

  if (pivoted_onto (b, socket, &paused) && nbdkit_serving (pid, socket)) {
    struct nbdkit_served sv = { .socket = g_strdup (socket), .pid = pid };

    record_target (h, b, &sv);
    g_free (sv.socket);
    mark (s, snap, PENDING_KEY, NULL);
    g_message ("live snapshot %s: finished (VBD %s on %s)", snap, vbd_uuid,
               socket);
    return;
  }
  if (paused && !mirror_resume (b->control_socket, NULL, NULL, false, NULL))
    g_warning ("VBD %s: cannot resume its filter (its pause times out)",
               vbd_uuid);
  if (pid)
    nbdkit_stop (pid, socket, NULL, NBDKIT_STOP_NOW);
  g_warning ("live snapshot %s: vdimotiond stopped before the pivot; "
             "marked not frozen", snap);
  mark (s, snap, INVALID_KEY,
        "vdimotiond stopped during the live snapshot: the guest went on "
        "writing the snapshot's image");
  mark (s, snap, PENDING_KEY, NULL);
}

void
host_live_snapshots_recover (struct host *h)
{
  for (guint i = 0; i < h->srs->len; i++) {
    struct host_sr *s = h->srs->pdata[i];
    struct sr_vdi_list list = { 0 };

    if (sr_vdi_list (s->sr, &list) == -1) {
      g_warning ("SR %s: %s", s->name, sr_get_error ());
      continue;
    }
    for (size_t j = 0; j < list.len; j++) {
      const char *vbd
          = sr_vdi_get_other_config (list.v[j], PENDING_KEY);

      if (vbd)
        recover_one (h, s, list.v[j]->uuid, vbd);
    }
    sr_vdi_list_free (&list);
  }
}
