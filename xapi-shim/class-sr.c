/* The SR class: the SRs given with --sr NAME=PATH (file SRs, sr.h).  Its
 * name_label is NAME; its uuid is the one kept inside the SR.  Besides
 * xapi's SR.scan, vdimotion's own SR.evacuate_plan, SR.evacuate and
 * Async.SR.evacuate (the brain's replicator/jobs/evacuate.h). */

#include <string.h>

#include "evacuate.h"
#include "xapi.h"

struct host_sr *
xapi_sr_by_ref (struct xapi_call *c, const char *ref)
{
  struct host_sr *s = host_find_sr (c->d->host, xapi_ref_uuid (ref));

  if (s == NULL)
    xapi_fail (c, "HANDLE_INVALID", "SR", ref ? ref : "", NULL);
  return s;
}

static bool
sr_list (struct xapi_call *c, GPtrArray *refs)
{
  for (guint i = 0; i < c->d->host->srs->len; i++) {
    struct host_sr *s = c->d->host->srs->pdata[i];
    g_ptr_array_add (refs,
                     g_strconcat (XAPI_REF_PREFIX, sr_get_uuid (s->sr), NULL));
  }
  return true;
}

/* What a file SR does, as xapi's storage_operations name it. */
static const char *const sr_operations[]
    = { "scan", "vdi_create", "vdi_destroy", "vdi_copy", "vdi_mirror" };

static xmlrpc_value *
sr_record (struct xapi_call *c, const char *ref)
{
  struct host_sr *s = xapi_sr_by_ref (c, ref);
  struct sr_stat st;
  struct sr_vdi_list list = { 0 };
  xmlrpc_value *r, *vdis, *sm, *ops;

  if (s == NULL)
    return NULL;
  if (sr_stat (s->sr, &st) == -1 || sr_vdi_list (s->sr, &list) == -1) {
    xapi_fail_sr (c, "SR", ref);
    return NULL;
  }
  vdis = xmlrpc_array_new (c->env);
  for (size_t i = 0; i < list.len; i++)
    if (list.v[i]->managed)
      xapi_append (c, vdis, xapi_ref (c, list.v[i]->uuid));
  sr_vdi_list_free (&list);

  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, sr_get_uuid (s->sr)));
  xapi_set (c, r, "name_label", xapi_string (c, s->name));
  xapi_set (c, r, "name_description", xapi_string (c, ""));
  ops = xmlrpc_array_new (c->env);
  for (size_t i = 0; i < G_N_ELEMENTS (sr_operations); i++)
    xapi_append (c, ops, xapi_string (c, sr_operations[i]));
  xapi_set (c, r, "allowed_operations", ops);
  xapi_set (c, r, "current_operations", xapi_empty_struct (c));
  xapi_set (c, r, "VDIs", vdis);
  xapi_set (c, r, "PBDs", xapi_empty_array (c));
  xapi_set (c, r, "virtual_allocation",
            xapi_int64 (c, (int64_t)st.virtual_allocation));
  xapi_set (c, r, "physical_utilisation",
            xapi_int64 (c, (int64_t)st.physical_utilisation));
  xapi_set (c, r, "physical_size", xapi_int64 (c, (int64_t)st.total_bytes));
  xapi_set (c, r, "type", xapi_string (c, sr_get_type (s->sr)));
  xapi_set (c, r, "content_type", xapi_string (c, "user"));
  xapi_set (c, r, "shared", xapi_bool (c, false));
  xapi_set (c, r, "other_config", xapi_empty_struct (c));
  xapi_set (c, r, "tags", xapi_empty_array (c));
  sm = xmlrpc_struct_new (c->env);
  xapi_set (c, sm, "path", xapi_string (c, sr_get_path (s->sr)));
  xapi_set (c, r, "sm_config", sm);
  xapi_set (c, r, "blobs", xapi_empty_struct (c));
  xapi_set (c, r, "local_cache_enabled", xapi_bool (c, false));
  xapi_set (c, r, "introduced_by", xapi_string (c, XAPI_NULL_REF));
  xapi_set (c, r, "clustered", xapi_bool (c, false));
  xapi_set (c, r, "is_tools_sr", xapi_bool (c, false));
  return r;
}

/* SR.scan(session, sr): records for images dropped into the SR, none for
 * images that are gone. */
static xmlrpc_value *
sr_scan_method (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "sr");
  struct host_sr *s = ref ? xapi_sr_by_ref (c, ref) : NULL;

  if (s == NULL)
    return NULL;
  if (sr_scan (s->sr) == -1) {
    xapi_fail_sr (c, "SR", ref);
    return NULL;
  }
  return xapi_void (c);
}

/* Evacuation (replicator/jobs/evacuate.h says what the plan, the
 * options and the report hold). */

/* The arguments (session, sr, dest_srs, options) of an SR.evacuate*
 * call: the SR's uuid, the destinations' uuids and the options
 * (read_evacuate_args: false after xapi_fail). */
struct evacuate_args
{
  const char *src;
  GPtrArray *dests; /* char *, NULL-terminated */
  GHashTable *options;
};

static void
evacuate_args_clear (struct evacuate_args *a)
{
  g_clear_pointer (&a->dests, g_ptr_array_unref);
  g_clear_pointer (&a->options, g_hash_table_unref);
}

static bool
add_option (struct xapi_call *c, const char *key, const char *value,
            void *opaque)
{
  g_hash_table_insert (opaque, g_strdup (key), g_strdup (value));
  return true;
}

static bool
read_evacuate_args (struct xapi_call *c, xmlrpc_value *const *args,
                    struct evacuate_args *a)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "sr");
  struct host_sr *s = ref ? xapi_sr_by_ref (c, ref) : NULL;
  int n;

  if (s == NULL)
    return false;
  a->src = sr_get_uuid (s->sr);
  if (xmlrpc_value_type (args[2]) != XMLRPC_TYPE_ARRAY) {
    xapi_fail (c, "FIELD_TYPE_ERROR", "dest_srs", NULL);
    return false;
  }
  a->dests = g_ptr_array_new_with_free_func (g_free);
  n = xmlrpc_array_size (c->env, args[2]);
  for (int i = 0; i < n && !xapi_failed (c); i++) {
    g_autoptr (xmlrpc_value) item = NULL;
    g_autofree char *dref = NULL;
    struct host_sr *d;

    xmlrpc_array_read_item (c->env, args[2], i, &item);
    if (item && (dref = xapi_read_string (c, item, "dest_srs"))
        && (d = xapi_sr_by_ref (c, dref)))
      g_ptr_array_add (a->dests, g_strdup (sr_get_uuid (d->sr)));
  }
  g_ptr_array_add (a->dests, NULL);
  a->options = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return !xapi_failed (c)
         && xapi_read_string_map (c, args[3], "options", add_option,
                                  a->options);
}

/* SR.evacuate_plan (RUN false) or SR.evacuate: the brain's plan or the
 * job's task. */
static xmlrpc_value *
evacuate_call (struct xapi_call *c, xmlrpc_value *const *args, bool run)
{
  struct evacuate_args a = { 0 };
  g_autofree char *out = NULL;
  char **err = NULL;

  if (read_evacuate_args (c, args, &a)) {
    const char *const *dests = (const char *const *)a.dests->pdata;

    out = run ? evacuate_submit (c->d->host, a.src, dests, a.dests->len - 1,
                                 a.options, &err)
              : evacuate_plan (c->d->host, a.src, dests, a.dests->len - 1,
                               a.options, &err);
    if (out == NULL)
      xapi_fail_err (c, err);
  }
  evacuate_args_clear (&a);
  if (out == NULL)
    return NULL;
  return run ? xapi_job_reply (c, out) : xapi_string (c, out);
}

/* SR.evacuate_plan(session, sr, dest_srs, options) → the plan, a JSON
 * string: nothing moves. */
static xmlrpc_value *
sr_evacuate_plan (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return evacuate_call (c, args, false);
}

/* SR.evacuate(session, sr, dest_srs, options) → the report, a JSON
 * string, once every chain moved (Async.SR.evacuate: a task whose result
 * it is). */
static xmlrpc_value *
sr_evacuate (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return evacuate_call (c, args, true);
}

static const struct xapi_method methods[] = {
  { "scan", 2, 2, false, sr_scan_method },
  { "evacuate_plan", 4, 4, false, sr_evacuate_plan },
  { "evacuate", 4, 4, false, sr_evacuate },
  { NULL },
};

const struct xapi_class xapi_class_sr = {
  .name = "SR",
  .methods = methods,
  .list = sr_list,
  .get_record = sr_record,
};
