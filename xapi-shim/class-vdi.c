/* The VDI class: the managed VDIs of every SR (sr.h).
 *
 * VDI.create picks the image format from sm_config["image-format"] (the
 * key xapi's own qcow2-capable SMs read), else other_config
 * ["dest-img-format"] (the key of VDI.pool_migrate's options), else vhd;
 * each is one of vhd, qcow2, raw.  The image is <uuid>.<format> in the SR
 * directory; the name label never becomes a path. */

#include <errno.h>
#include <string.h>

#include "xapi.h"

struct sr_vdi *
xapi_vdi_by_ref (struct xapi_call *c, const char *ref, struct host_sr **srp)
{
  const char *uuid = xapi_ref_uuid (ref);

  for (guint i = 0; uuid && i < c->d->host->srs->len; i++) {
    struct host_sr *s = c->d->host->srs->pdata[i];
    struct sr_vdi *v = sr_vdi_get_by_uuid (s->sr, uuid);

    if (v && v->managed) {
      if (srp)
        *srp = s;
      return v;
    }
    if (v) {
      sr_vdi_free (v);
      break; /* an SR-internal image: not a XenAPI object */
    }
    if (sr_get_errno () != ENOENT) {
      xapi_fail_sr (c, "VDI", ref);
      return NULL;
    }
  }
  xapi_fail (c, "HANDLE_INVALID", "VDI", ref ? ref : "", NULL);
  return NULL;
}

bool
xapi_vdi_claim (struct xapi_call *c, const char *uuid, const char *op)
{
  g_autofree char *busy = NULL;
  g_autofree char *ref = NULL;

  if (host_vdi_claim (c->d->host, uuid, op))
    return true;
  busy = host_vdi_operation (c->d->host, uuid);
  ref = g_strconcat (XAPI_REF_PREFIX, uuid, NULL);
  xapi_fail (c, "OTHER_OPERATION_IN_PROGRESS", "VDI", ref, busy ? busy : "",
             NULL);
  return false;
}

/* The VDI's current_operations: {task-or-"": op}, as xapi shows them. */
static xmlrpc_value *
vdi_current_operations (struct xapi_call *c, const char *uuid)
{
  xmlrpc_value *st = xmlrpc_struct_new (c->env);
  g_autofree char *op = host_vdi_operation (c->d->host, uuid);

  if (op)
    xapi_set (c, st, "OpaqueRef:NULL", xapi_string (c, op));
  return st;
}

/* What the VDI can do now, as xapi's vdi_operations name it: copy and
 * move (VDI.pool_migrate is xapi's "mirror") when no operation runs and
 * it has data, destroy too when no running VM uses it; and the CBT calls
 * xapi would allow (cbt.h): enable_cbt and disable_cbt on a VDI with
 * data that is not a snapshot, data_destroy on a snapshot with CBT that
 * no running VM uses, list_changed_blocks always. */
static xmlrpc_value *
vdi_allowed_operations (struct xapi_call *c, const struct sr_vdi *v)
{
  xmlrpc_value *a = xmlrpc_array_new (c->env);
  g_autofree char *op = host_vdi_operation (c->d->host, v->uuid);
  bool attached;

  if (op)
    return a;
  attached = host_vdi_attached (c->d->host, v->uuid);
  if (!v->cbt_metadata) {
    xapi_append (c, a, xapi_string (c, "copy"));
    xapi_append (c, a, xapi_string (c, "mirror"));
  }
  if (!attached)
    xapi_append (c, a, xapi_string (c, "destroy"));
  if (!v->cbt_metadata && !v->is_snapshot) {
    xapi_append (c, a, xapi_string (c, "enable_cbt"));
    xapi_append (c, a, xapi_string (c, "disable_cbt"));
  }
  if (v->is_snapshot && (v->cbt_enabled || v->cbt_metadata) && !attached)
    xapi_append (c, a, xapi_string (c, "data_destroy"));
  xapi_append (c, a, xapi_string (c, "list_changed_blocks"));
  return a;
}

static bool
vdi_list (struct xapi_call *c, GPtrArray *refs)
{
  for (guint i = 0; i < c->d->host->srs->len; i++) {
    struct host_sr *s = c->d->host->srs->pdata[i];
    struct sr_vdi_list list = { 0 };

    if (sr_vdi_list (s->sr, &list) == -1) {
      xapi_fail_sr (c, "SR", s->name);
      return false;
    }
    for (size_t j = 0; j < list.len; j++)
      if (list.v[j]->managed)
        g_ptr_array_add (refs,
                         g_strconcat (XAPI_REF_PREFIX, list.v[j]->uuid, NULL));
    sr_vdi_list_free (&list);
  }
  return true;
}

static xmlrpc_value *vdi_snapshots (struct xapi_call *c, struct host_sr *s,
                                     const char *uuid);

static xmlrpc_value *
vdi_record (struct xapi_call *c, const char *ref)
{
  struct host_sr *s = NULL;
  struct sr_vdi *v = xapi_vdi_by_ref (c, ref, &s);
  g_autoptr (GPtrArray) vbds = NULL;
  xmlrpc_value *r, *oc, *sm, *a;

  if (v == NULL)
    return NULL;
  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, v->uuid));
  xapi_set (c, r, "name_label", xapi_string (c, v->name_label));
  xapi_set (c, r, "name_description", xapi_string (c, v->name_description));
  xapi_set (c, r, "allowed_operations", vdi_allowed_operations (c, v));
  xapi_set (c, r, "current_operations", vdi_current_operations (c, v->uuid));
  xapi_set (c, r, "SR", xapi_ref (c, sr_get_uuid (s->sr)));
  vbds = state_list (c->d->host->state, "vbds", "vdi", v->uuid);
  a = xmlrpc_array_new (c->env);
  for (guint i = 0; i < vbds->len; i++)
    xapi_append (c, a, xapi_ref (c, vbds->pdata[i]));
  xapi_set (c, r, "VBDs", a);
  xapi_set (c, r, "crash_dumps", xapi_empty_array (c));
  xapi_set (c, r, "virtual_size", xapi_int64 (c, (int64_t)v->virtual_size));
  xapi_set (c, r, "physical_utilisation",
            xapi_int64 (c, (int64_t)v->physical_utilisation));
  xapi_set (c, r, "type",
            xapi_string (c, v->cbt_metadata ? "cbt_metadata" : "user"));
  xapi_set (c, r, "sharable", xapi_bool (c, false));
  xapi_set (c, r, "read_only", xapi_bool (c, v->read_only));
  oc = xmlrpc_struct_new (c->env);
  for (size_t i = 0; i < v->n_other_config; i++)
    xapi_set (c, oc, v->other_config[i].key,
              xapi_string (c, v->other_config[i].value));
  xapi_set (c, r, "other_config", oc);
  xapi_set (c, r, "storage_lock", xapi_bool (c, false));
  char *location = sr_printable (v->location);
  xapi_set (c, r, "location", xapi_string (c, location));
  free (location);
  xapi_set (c, r, "managed", xapi_bool (c, true));
  xapi_set (c, r, "missing", xapi_bool (c, false));
  xapi_set (c, r, "parent", xapi_string (c, XAPI_NULL_REF));
  xapi_set (c, r, "xenstore_data", xapi_empty_struct (c));
  sm = xmlrpc_struct_new (c->env);
  xapi_set (c, sm, "image-format",
            xapi_string (c, vdisk_format_name (v->format)));
  if (v->parent_uuid[0])
    xapi_set (c, sm,
              v->format == VDISK_FORMAT_VHD ? "vhd-parent" : "image-parent",
              xapi_string (c, v->parent_uuid));
  if (v->cbt_generation[0])
    xapi_set (c, sm, "cbt-generation", xapi_string (c, v->cbt_generation));
  xapi_set (c, r, "sm_config", sm);
  xapi_set (c, r, "is_a_snapshot", xapi_bool (c, v->is_snapshot));
  xapi_set (c, r, "snapshot_of",
            v->snapshot_of[0] ? xapi_ref (c, v->snapshot_of)
                              : xapi_string (c, XAPI_NULL_REF));
  xapi_set (c, r, "snapshots", vdi_snapshots (c, s, v->uuid));
  xapi_set (c, r, "snapshot_time",
            xmlrpc_datetime_new_sec (c->env, v->snapshot_time));
  xapi_set (c, r, "tags", xapi_empty_array (c));
  xapi_set (c, r, "allow_caching", xapi_bool (c, false));
  xapi_set (c, r, "on_boot", xapi_string (c, "persist"));
  xapi_set (c, r, "metadata_of_pool", xapi_string (c, XAPI_NULL_REF));
  xapi_set (c, r, "metadata_latest", xapi_bool (c, false));
  xapi_set (c, r, "is_tools_iso", xapi_bool (c, false));
  xapi_set (c, r, "cbt_enabled", xapi_bool (c, v->cbt_enabled));
  sr_vdi_free (v);
  return r;
}

/* virtual_size: a string as XenAPI sends int64, or an XML-RPC int. */
static bool
member_size (struct xapi_call *c, xmlrpc_value *rec, uint64_t *out)
{
  g_autoptr (xmlrpc_value) v = NULL;
  g_autofree char *s = NULL;

  xmlrpc_struct_find_value (c->env, rec, "virtual_size", &v);
  if (v && xmlrpc_value_type (v) == XMLRPC_TYPE_INT) {
    int i;
    xmlrpc_read_int (c->env, v, &i);
    if (i < 0)
      goto bad;
    *out = (uint64_t)i;
    return true;
  }
  if (v && xmlrpc_value_type (v) == XMLRPC_TYPE_I8) {
    xmlrpc_int64 i;
    xmlrpc_read_i8 (c->env, v, &i);
    if (i < 0)
      goto bad;
    *out = (uint64_t)i;
    return true;
  }
  if (v == NULL || (s = xapi_read_string (c, v, "virtual_size")) == NULL
      || !g_ascii_string_to_unsigned (s, 10, 1, INT64_MAX, out, NULL))
    goto bad;
  return true;
bad:
  if (!xapi_failed (c))
    xapi_fail (c, "FIELD_TYPE_ERROR", "virtual_size", NULL);
  return false;
}

static bool
pick_format (struct xapi_call *c, xmlrpc_value *rec, enum vdisk_format *fmt)
{
  g_autofree char *name
      = xapi_map_string (c, rec, "sm_config", "image-format");
  int f;

  if (name == NULL && !xapi_failed (c))
    name = xapi_map_string (c, rec, "other_config", "dest-img-format");
  if (xapi_failed (c))
    return false;
  if (name == NULL) {
    *fmt = VDISK_FORMAT_VHD;
    return true;
  }
  f = vdisk_format_from_name (name);
  if (f < 0) {
    xapi_fail (c, "INVALID_VALUE", "image-format", name, NULL);
    return false;
  }
  *fmt = f;
  return true;
}

struct new_vdi
{
  struct host_sr *s;
  const char *uuid;
};

static bool
set_one (struct xapi_call *c, const char *key, const char *value, void *opaque)
{
  struct new_vdi *nv = opaque;

  if (sr_vdi_set_other_config (nv->s->sr, nv->uuid, key, value) == 0)
    return true;
  xapi_fail_sr (c, "VDI", nv->uuid);
  return false;
}

/* Copy the record's other_config onto the new VDI. */
static bool
set_other_config (struct xapi_call *c, struct host_sr *s, const char *uuid,
                  xmlrpc_value *rec)
{
  g_autoptr (xmlrpc_value) m = NULL;
  struct new_vdi nv = { s, uuid };

  xmlrpc_struct_find_value (c->env, rec, "other_config", &m);
  return m == NULL
         || xapi_read_string_map (c, m, "other_config", set_one, &nv);
}

/* VDI.create(session, record) → ref.  The record's SR, name_label,
 * name_description, virtual_size, other_config and sm_config are used;
 * type, sharable and read_only are accepted (a new VDI is a writable
 * "user" disk). */
static xmlrpc_value *
vdi_create (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  xmlrpc_value *rec = args[1];
  g_autofree char *sr_ref = NULL;
  g_autofree char *label = NULL;
  g_autofree char *desc = NULL;
  struct sr_vdi_create_params params = { 0 };
  struct host_sr *s;
  struct sr_vdi *v;
  enum vdisk_format fmt;
  uint64_t size;
  xmlrpc_value *ref;

  if (xmlrpc_value_type (rec) != XMLRPC_TYPE_STRUCT) {
    xapi_fail (c, "FIELD_TYPE_ERROR", "args", NULL);
    return NULL;
  }
  sr_ref = xapi_member_string (c, rec, "SR");
  if (sr_ref == NULL) {
    if (!xapi_failed (c))
      xapi_fail (c, "FIELD_TYPE_ERROR", "SR", NULL);
    return NULL;
  }
  if ((s = xapi_sr_by_ref (c, sr_ref)) == NULL)
    return NULL;
  label = xapi_member_string (c, rec, "name_label");
  desc = xapi_member_string (c, rec, "name_description");
  if (xapi_failed (c) || !member_size (c, rec, &size)
      || !pick_format (c, rec, &fmt))
    return NULL;

  params.name_description = desc;
  v = sr_vdi_create (s->sr, label ? label : "", fmt, size, &params);
  if (v == NULL) {
    xapi_fail_sr (c, "SR", sr_ref);
    return NULL;
  }
  if (!set_other_config (c, s, v->uuid, rec)) {
    /* Half a VDI is worse than none. */
    sr_vdi_destroy (s->sr, v->uuid);
    sr_vdi_free (v);
    return NULL;
  }
  g_message ("VDI.create: %s in SR %s (%s)", v->uuid, s->name,
             vdisk_format_name (fmt));
  ref = xapi_ref (c, v->uuid);
  sr_vdi_free (v);
  return ref;
}

static xmlrpc_value *
vdi_destroy (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vdi");
  struct host_sr *s = NULL;
  struct sr_vdi *v = ref ? xapi_vdi_by_ref (c, ref, &s) : NULL;
  char **err = NULL;
  int r;

  if (v == NULL)
    return NULL;
  r = host_vdi_destroy (c->d->host, s, v->uuid, &err);
  if (r == 0)
    nbd_exports_end_vdi (c->d->nbd, v->uuid); /* its data is gone */
  sr_vdi_free (v);
  if (r == -1) {
    xapi_fail_err (c, err);
    return NULL;
  }
  return xapi_void (c);
}

/* VDI.copy(session, vdi, sr) and VDI.pool_migrate(session, vdi, sr,
 * options): a job (replicator/jobs/vdi-jobs.h).  copy makes a new VDI in SR with the same
 * content, of the same format; the VDI must not be attached to a running
 * VM.  pool_migrate moves the VDI to SR: a new VDI in
 * options["dest-img-format"] (default: the same format) replaces it —
 * live, through the mirror filter, when a running VM uses it, so the VM
 * never stops — and the old one is destroyed.  Both answer the new VDI
 * (or, as Async.*, a task whose result it is). */
static xmlrpc_value *
submit_move (struct xapi_call *c, xmlrpc_value *const *args, bool migrate)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vdi");
  g_autofree char *sr_ref = ref ? xapi_read_string (c, args[2], "sr") : NULL;
  g_autofree char *fmt_name = NULL;
  g_autofree char *task = NULL;
  struct host_sr *dst;
  struct sr_vdi *v;
  enum vdisk_format fmt;
  char **err = NULL;

  if (sr_ref == NULL || (v = xapi_vdi_by_ref (c, ref, NULL)) == NULL
      || (dst = xapi_sr_by_ref (c, sr_ref)) == NULL)
    return NULL;
  fmt = v->format;
  if (migrate && xapi_is_record (c, args[3], "options"))
    fmt_name = xapi_member_string (c, args[3], "dest-img-format");
  if (fmt_name && vdisk_format_from_name (fmt_name) < 0)
    xapi_fail (c, "INVALID_VALUE", "dest-img-format", fmt_name, NULL);
  else if (fmt_name)
    fmt = vdisk_format_from_name (fmt_name);
  if (!xapi_failed (c)) {
    task = host_vdi_move_submit (c->d->host, v->uuid, dst, fmt, migrate, &err);
    if (task == NULL)
      xapi_fail_err (c, err);
  }
  sr_vdi_free (v);
  return task ? xapi_job_reply (c, task) : NULL;
}

static xmlrpc_value *
vdi_copy (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return submit_move (c, args, false);
}

static xmlrpc_value *
vdi_pool_migrate (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return submit_move (c, args, true);
}

/* Snapshots: VDI.snapshot and the record's snapshots field. */

/* The refs of the snapshots of VDI UUID in S (those whose snapshot_of
 * it is). */
static xmlrpc_value *
vdi_snapshots (struct xapi_call *c, struct host_sr *s, const char *uuid)
{
  xmlrpc_value *a = xmlrpc_array_new (c->env);
  struct sr_vdi_list list = { 0 };

  if (sr_vdi_list (s->sr, &list) == -1)
    return a; /* the record says what it can; the SR's error is logged */
  for (size_t i = 0; i < list.len; i++)
    if (list.v[i]->managed && strcmp (list.v[i]->snapshot_of, uuid) == 0)
      xapi_append (c, a, xapi_ref (c, list.v[i]->uuid));
  sr_vdi_list_free (&list);
  return a;
}

static bool
accept_param (struct xapi_call *c, const char *key, const char *value,
              void *opaque)
{
  return true;
}

/* VDI.snapshot(session, vdi, driver_params) → the snapshot's ref: the
 * VDI's content now, frozen into a new read-only VDI (is_a_snapshot,
 * snapshot_of the VDI, snapshot_time now); the VDI keeps its ref and
 * goes on over it.  driver_params (a map of strings) mean nothing to a
 * file SR.  A VDI attached to a running VM: VDI_IN_USE
 * (host_vdi_snapshot, vdi-jobs.h). */
static xmlrpc_value *
vdi_snapshot (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "vdi");
  g_autofree char *snap = NULL;
  struct host_sr *s = NULL;
  struct sr_vdi *v;
  char **err = NULL;

  if (ref == NULL
      || !xapi_read_string_map (c, args[2], "driver_params", accept_param,
                                NULL)
      || (v = xapi_vdi_by_ref (c, ref, &s)) == NULL)
    return NULL;
  snap = host_vdi_snapshot (c->d->host, s, v->uuid, &err);
  sr_vdi_free (v);
  if (snap == NULL) {
    xapi_fail_err (c, err);
    return NULL;
  }
  return xapi_ref (c, snap);
}

/* Changed-block tracking and backup access, as xapi spells them:
 * VDI.enable_cbt, disable_cbt, list_changed_blocks, data_destroy and
 * get_nbd_info (the brain: replicator/jobs/cbt.h, nbd-exports.h). */

/* A method (session, self) that calls the brain's OP on the VDI and
 * answers Void: VDI.enable_cbt, VDI.disable_cbt, VDI.data_destroy. */
static xmlrpc_value *
vdi_op (struct xapi_call *c, xmlrpc_value *const *args,
        int (*op) (struct host *h, const char *uuid, char ***err))
{
  g_autofree char *ref = xapi_read_string (c, args[1], "self");
  struct sr_vdi *v = ref ? xapi_vdi_by_ref (c, ref, NULL) : NULL;
  char **err = NULL;
  int r;

  if (v == NULL)
    return NULL;
  r = op (c->d->host, v->uuid, &err);
  sr_vdi_free (v);
  if (r == -1) {
    xapi_fail_err (c, err);
    return NULL;
  }
  return xapi_void (c);
}

static xmlrpc_value *
vdi_enable_cbt (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return vdi_op (c, args, host_vdi_enable_cbt);
}

static xmlrpc_value *
vdi_disable_cbt (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return vdi_op (c, args, host_vdi_disable_cbt);
}

/* VDI.list_changed_blocks(session, vdi_from, vdi_to) → base64 of the
 * bitmap of 64 KiB blocks written between the two snapshots. */
static xmlrpc_value *
vdi_list_changed_blocks (struct xapi_call *c, xmlrpc_value *const *args,
                         int nargs)
{
  g_autofree char *from_ref = xapi_read_string (c, args[1], "vdi_from");
  g_autofree char *to_ref
      = from_ref ? xapi_read_string (c, args[2], "vdi_to") : NULL;
  struct sr_vdi *from = to_ref ? xapi_vdi_by_ref (c, from_ref, NULL) : NULL;
  struct sr_vdi *to = from ? xapi_vdi_by_ref (c, to_ref, NULL) : NULL;
  g_autofree char *b64 = NULL;
  char **err = NULL;

  if (to)
    b64 = host_vdi_list_changed_blocks (c->d->host, from->uuid, to->uuid,
                                        &err);
  if (to && b64 == NULL)
    xapi_fail_err (c, err);
  sr_vdi_free (from);
  sr_vdi_free (to);
  return b64 ? xapi_string (c, b64) : NULL;
}

/* VDI.data_destroy(session, self): the snapshot keeps its record and
 * changed-block log, its data goes (type cbt_metadata); its NBD exports
 * stop. */
static xmlrpc_value *
vdi_data_destroy (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  xmlrpc_value *r = vdi_op (c, args, host_vdi_data_destroy);
  g_autofree char *ref = r ? xapi_read_string (c, args[1], "self") : NULL;

  if (ref)
    nbd_exports_end_vdi (c->d->nbd, xapi_ref_uuid (ref));
  return r;
}

/* One vdi_nbd_server_info record. */
static xmlrpc_value *
nbd_server_info (struct xapi_call *c, const struct nbd_export_info *info)
{
  xmlrpc_value *r = xmlrpc_struct_new (c->env);

  xapi_set (c, r, "address", xapi_string (c, info->address));
  xapi_set (c, r, "port", xapi_int64 (c, info->port));
  xapi_set (c, r, "cert", xapi_string (c, info->cert));
  xapi_set (c, r, "exportname", xapi_string (c, info->exportname));
  xapi_set (c, r, "subject", xapi_string (c, info->subject));
  return r;
}

/* VDI.get_nbd_info(session, self) → a set of vdi_nbd_server_info: the
 * VDI read-only over TLS NBD, its export name a token of this session
 * (nbd-exports.h); [] when the daemon has no certificate to serve TLS
 * with, as xapi answers without an NBD network. */
static xmlrpc_value *
vdi_get_nbd_info (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *session = xapi_read_string (c, args[0], "session_id");
  g_autofree char *ref = session ? xapi_read_string (c, args[1], "self") : NULL;
  struct sr_vdi *v = ref ? xapi_vdi_by_ref (c, ref, NULL) : NULL;
  struct nbd_export_info info = { 0 };
  xmlrpc_value *a;
  char **err = NULL;
  int r;

  if (v == NULL)
    return NULL;
  a = xmlrpc_array_new (c->env);
  r = c->d->nbd ? nbd_exports_serve (c->d->nbd, session, v->uuid, &info, &err)
                : 1;
  sr_vdi_free (v);
  if (r == -1) {
    xmlrpc_DECREF (a);
    xapi_fail_err (c, err);
    return NULL;
  }
  if (r == 0)
    xapi_append (c, a, nbd_server_info (c, &info));
  nbd_export_info_clear (&info);
  return a;
}

/* VDI.set_name_label(session, self, value): the SR's record. */
static xmlrpc_value *
vdi_set_name_label (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "self");
  g_autofree char *value = ref ? xapi_read_string (c, args[2], "value") : NULL;
  struct host_sr *s = NULL;
  struct sr_vdi *v = value ? xapi_vdi_by_ref (c, ref, &s) : NULL;
  int r;

  if (v == NULL)
    return NULL;
  r = sr_vdi_set_name_label (s->sr, v->uuid, value);
  sr_vdi_free (v);
  if (r == -1) {
    xapi_fail_sr (c, "VDI", ref);
    return NULL;
  }
  return xapi_void (c);
}

/* VDI.set_other_config, add_to_other_config and remove_from_other_config
 * (xapi_change_other_config), written to the SR's record key by key:
 * the keys that went are removed, the new or changed ones set. */
static xmlrpc_value *
vdi_change_other_config (struct xapi_call *c, xmlrpc_value *const *args,
                         int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "self");
  struct host_sr *s = NULL;
  struct sr_vdi *v = ref ? xapi_vdi_by_ref (c, ref, &s) : NULL;
  g_autoptr (GHashTable) oc
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  GHashTableIter it;
  gpointer key, value;
  bool ok = true;

  if (v == NULL)
    return NULL;
  for (size_t i = 0; i < v->n_other_config; i++)
    g_hash_table_replace (oc, g_strdup (v->other_config[i].key),
                          g_strdup (v->other_config[i].value));
  if (!xapi_change_other_config (c, args, "VDI", ref, oc)) {
    sr_vdi_free (v);
    return NULL;
  }
  for (size_t i = 0; ok && i < v->n_other_config; i++)
    if (!g_hash_table_contains (oc, v->other_config[i].key))
      ok = sr_vdi_set_other_config (s->sr, v->uuid, v->other_config[i].key,
                                    NULL)
           == 0;
  g_hash_table_iter_init (&it, oc);
  while (ok && g_hash_table_iter_next (&it, &key, &value))
    if (g_strcmp0 (sr_vdi_get_other_config (v, key), value) != 0)
      ok = sr_vdi_set_other_config (s->sr, v->uuid, key, value) == 0;
  sr_vdi_free (v);
  if (!ok) {
    xapi_fail_sr (c, "VDI", ref);
    return NULL;
  }
  return xapi_void (c);
}

static const struct xapi_method methods[] = {
  { "create", 2, 2, false, vdi_create },
  { "snapshot", 3, 3, false, vdi_snapshot },
  { "destroy", 2, 2, false, vdi_destroy },
  { "copy", 3, 3, false, vdi_copy },
  { "pool_migrate", 4, 4, false, vdi_pool_migrate },
  { "enable_cbt", 2, 2, false, vdi_enable_cbt },
  { "disable_cbt", 2, 2, false, vdi_disable_cbt },
  { "list_changed_blocks", 3, 3, false, vdi_list_changed_blocks },
  { "data_destroy", 2, 2, false, vdi_data_destroy },
  { "get_nbd_info", 2, 2, false, vdi_get_nbd_info },
  { "set_name_label", 3, 3, false, vdi_set_name_label },
  { "set_other_config", 3, 3, false, vdi_change_other_config },
  { "add_to_other_config", 4, 4, false, vdi_change_other_config },
  { "remove_from_other_config", 3, 3, false, vdi_change_other_config },
  { NULL },
};

const struct xapi_class xapi_class_vdi = {
  .name = "VDI",
  .methods = methods,
  .list = vdi_list,
  .get_record = vdi_record,
};
