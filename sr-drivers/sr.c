/* SR drivers, the generic part: the table of SR types, argument checks
 * (uuids above all: a uuid is the only thing that names a file, so a
 * malformed one is refused here before any driver sees it), dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cbt-log.h"
#include "sr.h"
#include "vdisk-internal.h"

/* Adding an SR type: one file with its ops, one line here. */
static const struct sr_ops *const sr_types[] = {
  &sr_file_ops,
};

const char *
sr_get_error (void)
{
  return vdisk_get_error ();
}

int
sr_get_errno (void)
{
  return vdisk_get_errno ();
}

bool
sr_uuid_is_valid (const char *s)
{
  size_t i;
  if (s == NULL)
    return false;
  for (i = 0; i < SR_UUID_LEN; i++) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-')
        return false;
    }
    else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  }
  return s[SR_UUID_LEN] == '\0';
}

int
sr_uuid_generate (char out[SR_UUID_LEN + 1])
{
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t r = getrandom (b + got, sizeof b - got, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      vdisk_set_error (errno, "cannot generate a uuid: getrandom: %s",
                       strerror (errno));
      return -1;
    }
    got += r;
  }
  b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
  b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
  static const char hex[] = "0123456789abcdef";
  char *p = out;
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      *p++ = '-';
    *p++ = hex[b[i] >> 4];
    *p++ = hex[b[i] & 15];
  }
  *p = '\0';
  return 0;
}

/* Refuse anything that is not a canonical uuid, before it can reach a
 * path.  The message quotes at most a bounded prefix of the input. */
static int
check_uuid (struct sr *sr, const char *what, const char *uuid)
{
  if (sr_uuid_is_valid (uuid))
    return 0;
  vdisk_set_error (EINVAL,
                   "%s SR %s: %s \"%.64s\" is not a valid uuid (want 36 "
                   "lowercase characters 8-4-4-4-12, hex digits and '-')",
                   sr->ops->name, sr->path, what, uuid ? uuid : "(null)");
  return -1;
}

#define CHECK_SR(sr, ret)                                                     \
  do {                                                                        \
    if ((sr) == NULL) {                                                       \
      vdisk_set_error (EINVAL, "no SR given");                                \
      return ret;                                                             \
    }                                                                         \
  } while (0)

struct sr *
sr_open (const char *type, const char *path, unsigned flags)
{
  const struct sr_ops *ops = NULL;
  if (type == NULL || path == NULL || *path == '\0') {
    vdisk_set_error (EINVAL, "sr_open: SR type and path are required");
    return NULL;
  }
  for (size_t i = 0; i < sizeof sr_types / sizeof sr_types[0]; i++)
    if (strcmp (sr_types[i]->name, type) == 0)
      ops = sr_types[i];
  if (!ops) {
    vdisk_set_error (ENOTSUP, "%s: unknown SR type \"%.64s\" (known: file)",
                     path, type);
    return NULL;
  }
  struct sr *sr = calloc (1, sizeof *sr);
  if (!sr || !(sr->path = strdup (path))) {
    free (sr);
    vdisk_set_error (ENOMEM, "%s SR %s: out of memory", type, path);
    return NULL;
  }
  sr->ops = ops;
  if (ops->open (sr, flags) == -1) {
    free (sr->path);
    free (sr);
    return NULL;
  }
  return sr;
}

int
sr_close (struct sr *sr)
{
  if (!sr)
    return 0;
  sr->ops->close (sr);
  free (sr->path);
  free (sr);
  return 0;
}

const char *
sr_get_path (struct sr *sr)
{
  return sr->path;
}

const char *
sr_get_uuid (struct sr *sr)
{
  return sr->uuid;
}

const char *
sr_get_type (struct sr *sr)
{
  return sr->ops->name;
}

int
sr_scan (struct sr *sr)
{
  CHECK_SR (sr, -1);
  return sr->ops->scan (sr);
}

int
sr_stat (struct sr *sr, struct sr_stat *st)
{
  CHECK_SR (sr, -1);
  memset (st, 0, sizeof *st);
  return sr->ops->stat (sr, st);
}

void
sr_set_watch (struct sr *sr, sr_watch_fn *fn, void *opaque)
{
  sr->watch = fn;
  sr->watch_opaque = opaque;
}

/* Tell the watch about a change of VDI UUID, if the call making it
 * succeeded (OK). */
static void
changed (struct sr *sr, bool ok, const char *uuid, enum sr_change change)
{
  if (ok && sr->watch)
    sr->watch (sr, uuid, change, sr->watch_opaque);
}

/* The same for a call that returned a new VDI's record. */
static struct sr_vdi *
added (struct sr *sr, struct sr_vdi *v)
{
  changed (sr, v != NULL, v ? v->uuid : NULL, SR_VDI_ADDED);
  return v;
}

struct sr_vdi *
sr_vdi_create (struct sr *sr, const char *name_label, enum vdisk_format format,
               uint64_t virtual_size,
               const struct sr_vdi_create_params *params)
{
  CHECK_SR (sr, NULL);
  if (params && params->parent_uuid
      && check_uuid (sr, "parent VDI", params->parent_uuid) == -1)
    return NULL;
  if (params && params->uuid && check_uuid (sr, "VDI", params->uuid) == -1)
    return NULL;
  if (params && params->snapshot_of
      && check_uuid (sr, "snapshot_of VDI", params->snapshot_of) == -1)
    return NULL;
  if (params && params->is_snapshot != (params->snapshot_of != NULL)) {
    vdisk_set_error (EINVAL,
                     "%s SR %s: creating VDI \"%.64s\": a snapshot record "
                     "needs both is_snapshot and snapshot_of",
                     sr->ops->name, sr->path, name_label ? name_label : "");
    return NULL;
  }
  if (format != VDISK_FORMAT_RAW && format != VDISK_FORMAT_VHD
      && format != VDISK_FORMAT_QCOW2) {
    vdisk_set_error (EINVAL, "%s SR %s: unknown VDI format %d", sr->ops->name,
                     sr->path, (int)format);
    return NULL;
  }
  if (virtual_size == 0 && !(params && params->parent_uuid)) {
    vdisk_set_error (EINVAL,
                     "%s SR %s: creating VDI \"%.64s\": virtual size must "
                     "be greater than 0",
                     sr->ops->name, sr->path, name_label ? name_label : "");
    return NULL;
  }
  return added (sr, sr->ops->create_vdi (sr, name_label ? name_label : "",
                                         format, virtual_size, params));
}

int
sr_vdi_list (struct sr *sr, struct sr_vdi_list *out)
{
  CHECK_SR (sr, -1);
  out->v = NULL;
  out->len = 0;
  return sr->ops->list_vdis (sr, out);
}

void
sr_vdi_list_free (struct sr_vdi_list *list)
{
  if (!list)
    return;
  for (size_t i = 0; i < list->len; i++)
    sr_vdi_free (list->v[i]);
  free (list->v);
  list->v = NULL;
  list->len = 0;
}

void
sr_vdi_free (struct sr_vdi *vdi)
{
  if (!vdi)
    return;
  free (vdi->name_label);
  free (vdi->name_description);
  free (vdi->location);
  for (size_t i = 0; i < vdi->n_other_config; i++) {
    free (vdi->other_config[i].key);
    free (vdi->other_config[i].value);
  }
  free (vdi->other_config);
  free (vdi);
}

const char *
sr_vdi_get_other_config (const struct sr_vdi *vdi, const char *key)
{
  for (size_t i = 0; i < vdi->n_other_config; i++)
    if (strcmp (vdi->other_config[i].key, key) == 0)
      return vdi->other_config[i].value;
  return NULL;
}

struct sr_vdi *
sr_vdi_get_by_uuid (struct sr *sr, const char *uuid)
{
  CHECK_SR (sr, NULL);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return NULL;
  return sr->ops->get_vdi (sr, uuid);
}

int
sr_vdi_set_name_label (struct sr *sr, const char *uuid, const char *name_label)
{
  CHECK_SR (sr, -1);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return -1;
  int r = sr->ops->set_vdi_field (sr, uuid, "name_label",
                                  name_label ? name_label : "");
  changed (sr, r == 0, uuid, SR_VDI_CHANGED);
  return r;
}

int
sr_vdi_set_name_description (struct sr *sr, const char *uuid,
                             const char *description)
{
  CHECK_SR (sr, -1);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return -1;
  int r = sr->ops->set_vdi_field (sr, uuid, "name_description",
                                  description ? description : "");
  changed (sr, r == 0, uuid, SR_VDI_CHANGED);
  return r;
}

int
sr_vdi_set_other_config (struct sr *sr, const char *uuid, const char *key,
                         const char *value)
{
  CHECK_SR (sr, -1);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return -1;
  if (key == NULL || *key == '\0') {
    vdisk_set_error (EINVAL, "%s SR %s: VDI %s: other_config key is empty",
                     sr->ops->name, sr->path, uuid);
    return -1;
  }
  char *field;
  if (asprintf (&field, "other_config:%s", key) == -1) {
    vdisk_set_error (ENOMEM, "%s SR %s: out of memory", sr->ops->name,
                     sr->path);
    return -1;
  }
  int r = sr->ops->set_vdi_field (sr, uuid, field, value);
  free (field);
  changed (sr, r == 0, uuid, SR_VDI_CHANGED);
  return r;
}

struct vdisk *
sr_vdi_open (struct sr *sr, const char *uuid, unsigned flags)
{
  CHECK_SR (sr, NULL);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return NULL;
  return sr->ops->open_vdi (sr, uuid, flags);
}

int
sr_vdi_destroy (struct sr *sr, const char *uuid)
{
  CHECK_SR (sr, -1);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return -1;
  int r = sr->ops->destroy_vdi (sr, uuid);
  changed (sr, r == 0, uuid, SR_VDI_REMOVED);
  return r;
}

struct sr_vdi *
sr_vdi_snapshot (struct sr *sr, const char *uuid, const char *name_label)
{
  CHECK_SR (sr, NULL);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return NULL;
  struct sr_vdi *v = added (sr, sr->ops->snapshot (sr, uuid, name_label));
  changed (sr, v != NULL, uuid, SR_VDI_CHANGED);
  return v;
}

struct sr_vdi *
sr_vdi_clone (struct sr *sr, const char *uuid, const char *name_label)
{
  CHECK_SR (sr, NULL);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return NULL;
  struct sr_vdi *v = added (sr, sr->ops->clone (sr, uuid, name_label));
  changed (sr, v != NULL, uuid, SR_VDI_CHANGED);
  return v;
}

int
sr_vdi_set_parent (struct sr *sr, const char *uuid, const char *parent_uuid)
{
  CHECK_SR (sr, -1);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return -1;
  if (parent_uuid && check_uuid (sr, "parent VDI", parent_uuid) == -1)
    return -1;
  if (parent_uuid && strcmp (uuid, parent_uuid) == 0) {
    vdisk_set_error (EINVAL, "%s SR %s: VDI %s cannot be its own parent",
                     sr->ops->name, sr->path, uuid);
    return -1;
  }
  int r = sr->ops->set_parent (sr, uuid, parent_uuid);
  changed (sr, r == 0, uuid, SR_VDI_CHANGED);
  return r;
}

/* ---- changed-block tracking ---- */

/* The driver's OP, or ENOTSUP for an SR type without CBT. */
#define CBT_OP(sr, op, ret)                                                   \
  do {                                                                        \
    if ((sr)->ops->op == NULL) {                                              \
      vdisk_set_error (ENOTSUP,                                               \
                       "%s SR %s: changed-block tracking is not supported "   \
                       "by this SR type",                                     \
                       (sr)->ops->name, (sr)->path);                          \
      return ret;                                                             \
    }                                                                         \
  } while (0)

static int
set_cbt (struct sr *sr, const char *uuid, bool enabled)
{
  CHECK_SR (sr, -1);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return -1;
  CBT_OP (sr, set_cbt, -1);
  int r = sr->ops->set_cbt (sr, uuid, enabled);
  changed (sr, r == 0, uuid, SR_VDI_CHANGED);
  return r;
}

int
sr_vdi_enable_cbt (struct sr *sr, const char *uuid)
{
  return set_cbt (sr, uuid, true);
}

int
sr_vdi_disable_cbt (struct sr *sr, const char *uuid)
{
  return set_cbt (sr, uuid, false);
}

static char *
cbt_log_path (struct sr *sr, const char *uuid, bool enabled_only)
{
  CHECK_SR (sr, NULL);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return NULL;
  CBT_OP (sr, cbt_log_path, NULL);
  return sr->ops->cbt_log_path (sr, uuid, enabled_only);
}

char *
sr_vdi_cbt_log_path (struct sr *sr, const char *uuid)
{
  return cbt_log_path (sr, uuid, true);
}

char *
sr_vdi_cbt_log_location (struct sr *sr, const char *uuid)
{
  return cbt_log_path (sr, uuid, false);
}

int
sr_vdi_cbt_info (struct sr *sr, const char *uuid, struct cbt_log_info *out)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *path = NULL;
  char *p = sr_vdi_cbt_log_path (sr, uuid);

  if (!p)
    return -1;
  path = g_strdup (p);
  free (p);
  if (cbt_log_read_info (path, out, &err) == -1) {
    vdisk_set_error (err->code, "%s SR %s: VDI %s: %s", sr->ops->name,
                     sr->path, uuid, err->message);
    return -1;
  }
  return 0;
}

uint8_t *
sr_vdi_list_changed_blocks (struct sr *sr, const char *from_uuid,
                            const char *to_uuid, size_t *len)
{
  CHECK_SR (sr, NULL);
  if (check_uuid (sr, "VDI", from_uuid) == -1
      || check_uuid (sr, "VDI", to_uuid) == -1)
    return NULL;
  CBT_OP (sr, changed_blocks, NULL);
  return sr->ops->changed_blocks (sr, from_uuid, to_uuid, len);
}

int
sr_vdi_cbt_import (struct sr *sr, const char *uuid, const uint8_t *bytes,
                   size_t len)
{
  CHECK_SR (sr, -1);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return -1;
  CBT_OP (sr, cbt_import, -1);
  int r = sr->ops->cbt_import (sr, uuid, bytes, len);
  changed (sr, r == 0, uuid, SR_VDI_CHANGED);
  return r;
}

int
sr_vdi_data_destroy (struct sr *sr, const char *uuid)
{
  CHECK_SR (sr, -1);
  if (check_uuid (sr, "VDI", uuid) == -1)
    return -1;
  CBT_OP (sr, data_destroy, -1);
  int r = sr->ops->data_destroy (sr, uuid);
  changed (sr, r == 0, uuid, SR_VDI_CHANGED);
  return r;
}

struct sr_vdi *
sr_vdi_create_cbt_metadata (struct sr *sr, const char *uuid,
                            const char *name_label, const char *snapshot_of,
                            int64_t snapshot_time, uint64_t virtual_size)
{
  CHECK_SR (sr, NULL);
  if (check_uuid (sr, "VDI", uuid) == -1
      || check_uuid (sr, "VDI", snapshot_of) == -1)
    return NULL;
  CBT_OP (sr, create_cbt_metadata, NULL);
  struct sr_vdi *v = sr->ops->create_cbt_metadata (
      sr, uuid, name_label ? name_label : "", snapshot_of, snapshot_time,
      virtual_size);
  changed (sr, v != NULL, uuid, SR_VDI_ADDED);
  return v;
}

/* Copy FROM (a log file) into TO_UUID of TO_SR, or with MERGE merge it
 * into TO_UUID's log (made if there is none). */
static int
cbt_copy (const char *from, struct sr *to_sr, const char *to_uuid,
          bool merge)
{
  g_autoptr (GError) err = NULL;
  size_t len;
  g_autofree uint8_t *bytes = cbt_log_export (from, &len, &err);
  if (!bytes) {
    vdisk_set_error (err->code, "%s", err->message);
    return -1;
  }
  return merge ? sr_vdi_cbt_merge (to_sr, to_uuid, bytes, len)
               : sr_vdi_cbt_import (to_sr, to_uuid, bytes, len);
}

int
sr_vdi_cbt_follow (struct sr *from_sr, const char *from_uuid,
                   struct sr *to_sr, const char *to_uuid, bool keep_source)
{
  g_autoptr (GError) err = NULL;
  char *p = sr_vdi_cbt_log_path (from_sr, from_uuid);
  if (!p)
    return sr_get_errno () == ENODATA ? 0 : -1;
  g_autofree char *from = g_strdup (p);
  free (p);
  if (keep_source)
    return cbt_copy (from, to_sr, to_uuid, false);

  char *q = sr_vdi_cbt_log_location (to_sr, to_uuid);
  if (!q)
    return -1;
  g_autofree char *to = g_strdup (q);
  free (q);
  if (rename (from, to) == 0) {
    changed (to_sr, true, to_uuid, SR_VDI_CHANGED);
    changed (from_sr, true, from_uuid, SR_VDI_CHANGED);
    return 0;
  }
  if (errno != EXDEV) {
    vdisk_set_error (errno, "%s SR %s: VDI %s: moving its log to %s: %s",
                     from_sr->ops->name, from_sr->path, from_uuid, to,
                     strerror (errno));
    return -1;
  }
  struct cbt_log_info info;
  if (cbt_log_read_header (from, &info, &err) == -1) {
    vdisk_set_error (err->code, "%s", err->message);
    return -1;
  }
  /* Its writer would go on marking the old file only: a copy would miss
   * those marks, and even a reset one would miss them after the next
   * snapshot.  The caller moves the writer (sr.h). */
  if (info.in_use) {
    vdisk_set_error (EXDEV,
                     "%s SR %s: VDI %s: its changed-block log cannot follow "
                     "it to another filesystem while its disk is served "
                     "(its writer must be moved to VDI %s's log)",
                     from_sr->ops->name, from_sr->path, from_uuid, to_uuid);
    return -1;
  }
  /* Merged, never written over: TO_UUID's log, if a live move's earlier
   * run made it, may be the one its disk server marks now. */
  return cbt_copy (from, to_sr, to_uuid, true);
}

uint8_t *
sr_vdi_cbt_export (struct sr *sr, const char *uuid, size_t *len)
{
  g_autoptr (GError) err = NULL;
  char *path = sr_vdi_cbt_log_path (sr, uuid);
  if (!path)
    return NULL;
  uint8_t *b = cbt_log_export (path, len, &err);
  free (path);
  if (!b) {
    vdisk_set_error (err->code, "%s SR %s: VDI %s: %s", sr->ops->name,
                     sr->path, uuid, err->message);
    return NULL;
  }
  uint8_t *out = malloc (*len);
  if (out)
    memcpy (out, b, *len);
  else
    vdisk_set_error (ENOMEM, "%s SR %s: out of memory", sr->ops->name,
                     sr->path);
  g_free (b);
  return out;
}

int
sr_vdi_cbt_merge (struct sr *sr, const char *uuid, const uint8_t *bytes,
                  size_t len)
{
  g_autoptr (GError) err = NULL;
  char *path = sr_vdi_cbt_log_path (sr, uuid);
  if (!path)
    return sr_get_errno () == ENODATA ? sr_vdi_cbt_import (sr, uuid, bytes,
                                                           len)
                                      : -1;
  int r = cbt_log_merge (path, bytes, len, &err);
  free (path);
  if (r == -1)
    vdisk_set_error (err->code, "%s SR %s: VDI %s: %s", sr->ops->name,
                     sr->path, uuid, err->message);
  changed (sr, r == 0, uuid, SR_VDI_CHANGED);
  return r;
}
