/* The network class: the one network a storage host has to offer.
 *
 * vdimotiond moves disks, not VIFs, but XenAPI clients (and
 * VM.migrate_send's VIF map later) look networks up, so the host shows
 * one: the network storage traffic crosses.  Its uuid is kept in the
 * state dir, so its ref is stable across restarts. */

#include "xapi.h"

static bool
network_list (struct xapi_call *c, GPtrArray *refs)
{
  g_ptr_array_add (refs,
                   g_strconcat (XAPI_REF_PREFIX, c->d->host->network_uuid, NULL));
  return true;
}

static xmlrpc_value *
network_record (struct xapi_call *c, const char *ref)
{
  const char *uuid = xapi_ref_uuid (ref);
  xmlrpc_value *r;

  if (uuid == NULL || g_strcmp0 (uuid, c->d->host->network_uuid) != 0) {
    xapi_fail (c, "HANDLE_INVALID", "network", ref ? ref : "", NULL);
    return NULL;
  }
  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, uuid));
  xapi_set (c, r, "name_label", xapi_string (c, "storage network"));
  xapi_set (c, r, "name_description",
            xapi_string (c, "the network vdimotiond's storage traffic uses"));
  xapi_set (c, r, "allowed_operations", xapi_empty_array (c));
  xapi_set (c, r, "current_operations", xapi_empty_struct (c));
  xapi_set (c, r, "VIFs", xapi_empty_array (c));
  xapi_set (c, r, "PIFs", xapi_empty_array (c));
  xapi_set (c, r, "MTU", xapi_int64 (c, 1500));
  xapi_set (c, r, "other_config", xapi_empty_struct (c));
  xapi_set (c, r, "bridge", xapi_string (c, ""));
  xapi_set (c, r, "managed", xapi_bool (c, true));
  xapi_set (c, r, "tags", xapi_empty_array (c));
  return r;
}

const struct xapi_class xapi_class_network = {
  .name = "network",
  .list = network_list,
  .get_record = network_record,
};
