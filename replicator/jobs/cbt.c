/* XenAPI's changed-block tracking calls over the SRs' logs (cbt.h). */

#include <errno.h>

#include "cbt-log.h"
#include "cbt.h"

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
 * while; the SR's failure as xapi's error.  0, or -1 with *ERR. */
static int
claimed_call (struct host *h, struct host_sr *s, const char *uuid,
              const char *op, int (*fn) (struct sr *sr, const char *uuid),
              char ***err)
{
  g_autofree char *ref = host_ref (uuid);
  g_autofree char *method = g_strconcat ("VDI.", op, NULL);
  int r;

  if (host_vdi_claim_or_fail (h, uuid, op, err) == -1)
    return -1;
  r = fn (s->sr, uuid);
  if (r == -1)
    err_sr (err, ref, method);
  host_vdi_release (h, uuid);
  if (r == 0)
    g_message ("%s: %s in SR %s", method, uuid, s->name);
  return r;
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
    r = claimed_call (h, s, uuid, "enable_cbt", sr_vdi_enable_cbt, err);
  else
    r = claimed_call (h, s, uuid, "disable_cbt", sr_vdi_disable_cbt, err);
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
  /* The logs chain inside one SR: a VDI of another SR is unrelated. */
  if (s_from != s_to) {
    host_err_set (err, "VDI_NO_CBT_METADATA", from_ref, NULL);
    goto out;
  }
  bitmap = sr_vdi_list_changed_blocks (s_to->sr, from, to, &len);
  if (bitmap == NULL) {
    g_message ("VDI.list_changed_blocks %s %s: %s", from, to,
               sr_get_error ());
    err_sr (err, sr_get_errno () == ENODATA ? from_ref : to_ref,
            "VDI.list_changed_blocks");
    goto out;
  }
  b64 = cbt_bitmap_to_base64 (bitmap, len);
out:
  sr_vdi_free (v_from);
  sr_vdi_free (v_to);
  return b64;
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
  r = claimed_call (h, s, uuid, "data_destroy", sr_vdi_data_destroy, err);
out:
  sr_vdi_free (v);
  return r;
}
