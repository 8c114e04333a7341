/* The host class: one record, this host.  Its uuid is kept in the state
 * directory (host-uuid), so it stays the same across restarts. */

#include <string.h>

#include "xapi.h"

static bool
host_list (struct xapi_call *c, GPtrArray *refs)
{
  g_ptr_array_add (refs, g_strconcat (XAPI_REF_PREFIX, c->d->host->uuid, NULL));
  return true;
}

static xmlrpc_value *
host_record (struct xapi_call *c, const char *ref)
{
  const char *uuid = xapi_ref_uuid (ref);
  xmlrpc_value *r, *sv, *a;

  if (uuid == NULL || strcmp (uuid, c->d->host->uuid) != 0) {
    xapi_fail (c, "HANDLE_INVALID", "host", ref, NULL);
    return NULL;
  }
  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, c->d->host->uuid));
  xapi_set (c, r, "name_label", xapi_string (c, c->d->host->name_label));
  xapi_set (c, r, "name_description", xapi_string (c, "vdimotiond"));
  xapi_set (c, r, "hostname", xapi_string (c, g_get_host_name ()));
  xapi_set (c, r, "address", xapi_string (c, ""));
  xapi_set (c, r, "enabled", xapi_bool (c, true));
  xapi_set (c, r, "API_version_major", xapi_int64 (c, 2));
  xapi_set (c, r, "API_version_minor", xapi_int64 (c, 21));
  xapi_set (c, r, "API_version_vendor", xapi_string (c, "vdimotion"));
  sv = xmlrpc_struct_new (c->env);
  xapi_set (c, sv, "product_brand", xapi_string (c, PACKAGE_NAME));
  xapi_set (c, sv, "product_version", xapi_string (c, PACKAGE_VERSION));
  xapi_set (c, r, "software_version", sv);
  xapi_set (c, r, "other_config", xapi_empty_struct (c));
  xapi_set (c, r, "tags", xapi_empty_array (c));
  a = xmlrpc_array_new (c->env);
  {
    g_autoptr (GPtrArray) vms = state_list (c->d->host->state, "vms", NULL, NULL);

    for (guint i = 0; i < vms->len; i++) {
      g_autoptr (state_vm) vm = state_vm_get (c->d->host->state, vms->pdata[i]);

      if (vm && strcmp (vm->power_state, "Running") == 0)
        xapi_append (c, a, xapi_ref (c, vm->uuid));
    }
  }
  xapi_set (c, r, "resident_VMs", a);
  xapi_set (c, r, "allowed_operations", xapi_empty_array (c));
  xapi_set (c, r, "current_operations", xapi_empty_struct (c));
  xapi_set (c, r, "PBDs", xapi_empty_array (c));
  /* SRs reachable from this host: all of ours (there are no PBDs yet). */
  a = xmlrpc_array_new (c->env);
  for (guint i = 0; i < c->d->host->srs->len; i++) {
    struct host_sr *s = c->d->host->srs->pdata[i];
    xapi_append (c, a, xapi_ref (c, sr_get_uuid (s->sr)));
  }
  xapi_set (c, r, "local_SRs", a);
  return r;
}

static const struct xapi_method methods[] = {
  { "migrate_receive", 4, 4, false, xapi_host_migrate_receive },
  { NULL },
};

const struct xapi_class xapi_class_host = {
  .name = "host",
  .methods = methods,
  .list = host_list,
  .get_record = host_record,
};
