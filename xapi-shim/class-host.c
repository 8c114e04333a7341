/* The host class: one record, this host.  Its uuid is kept in the state
 * directory (host-uuid), so it stays the same across restarts.
 *
 * The record is xapi's (every field: xapi_class_record fills what is not
 * set here with the datamodel's defaults).  The API version is the one
 * current xapi gives (2.23, vendor XenSource), which is what clients
 * compare against; software_version has xapi's keys, with this daemon's
 * version where xapi has its own and "" where a storage host has
 * nothing to say (no Xen, no network backend); address is where
 * clients reach the daemon. */

#include <string.h>
#include <sys/utsname.h>

#include "xapi.h"

static bool
host_list (struct xapi_call *c, GPtrArray *refs)
{
  g_ptr_array_add (refs, g_strconcat (XAPI_REF_PREFIX, c->d->host->uuid, NULL));
  return true;
}

/* xapi's API version, as xen-api's ocaml/idl/api_version.ml says it. */
#define API_VERSION_MAJOR 2
#define API_VERSION_MINOR 23

/* The address clients reach this daemon at: the host of its migration
 * URL (the URL it serves, unless configured) when that is an address,
 * else the address migrations use (resolved from that URL at start),
 * never empty. */
static char *
host_address (struct host *h)
{
  g_autoptr (GUri) u
      = h->migration_url ? g_uri_parse (h->migration_url, G_URI_FLAGS_NONE,
                                        NULL)
                         : NULL;
  const char *host = u ? g_uri_get_host (u) : NULL;

  if (host && g_hostname_is_ip_address (host) && strcmp (host, "0.0.0.0") != 0
      && strcmp (host, "::") != 0)
    return g_strdup (host);
  if (h->nbd_address && strcmp (h->nbd_address, "0.0.0.0") != 0
      && strcmp (h->nbd_address, "::") != 0)
    return g_strdup (h->nbd_address);
  return g_strdup ("127.0.0.1");
}

/* xapi's software_version keys (xen-api ocaml/xapi/xapi_globs.ml,
 * create_misc.ml); clients read product_version and platform_version
 * as dotted numbers, product_brand and platform_name as names. */
static xmlrpc_value *
software_version (struct xapi_call *c)
{
  g_autofree char *api
      = g_strdup_printf ("%d.%d", API_VERSION_MAJOR, API_VERSION_MINOR);
  struct utsname u;
  const struct
  {
    const char *key, *value;
  } keys[] = {
    { "product_version", PACKAGE_VERSION },
    { "product_version_text", PACKAGE_VERSION },
    { "product_version_text_short", PACKAGE_VERSION },
    { "platform_name", PACKAGE_NAME },
    { "platform_version", PACKAGE_VERSION },
    { "product_brand", PACKAGE_NAME },
    { "xapi", PACKAGE_VERSION },
    { "xapi_build", PACKAGE_VERSION },
    { "build_number", "" },
    { "git_id", "" },
    { "date", "" },
    { "hostname", g_get_host_name () },
    { "xen", "" },
    { "linux", uname (&u) == 0 ? u.release : "" },
    { "xencenter_min", api },
    { "xencenter_max", api },
    { "network_backend", "" },
    { "db_schema", "" },
  };
  xmlrpc_value *sv = xmlrpc_struct_new (c->env);

  for (size_t i = 0; i < G_N_ELEMENTS (keys); i++)
    xapi_set (c, sv, keys[i].key, xapi_string (c, keys[i].value));
  return sv;
}

/* The running VMs: xapi's resident_VMs. */
static xmlrpc_value *
resident_vms (struct xapi_call *c)
{
  g_autoptr (GPtrArray) vms
      = state_list (c->d->host->state, "vms", NULL, NULL);
  xmlrpc_value *a = xmlrpc_array_new (c->env);

  for (guint i = 0; i < vms->len; i++) {
    g_autoptr (state_vm) vm = state_vm_get (c->d->host->state, vms->pdata[i]);

    if (vm && strcmp (vm->power_state, "Running") == 0)
      xapi_append (c, a, xapi_ref (c, vm->uuid));
  }
  return a;
}

static xmlrpc_value *
host_record (struct xapi_call *c, const char *ref)
{
  const char *uuid = xapi_ref_uuid (ref);
  struct host *h = c->d->host;
  g_autofree char *address = NULL;
  xmlrpc_value *r, *a;

  if (uuid == NULL || strcmp (uuid, h->uuid) != 0) {
    xapi_fail (c, "HANDLE_INVALID", "host", ref, NULL);
    return NULL;
  }
  address = host_address (h);
  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, h->uuid));
  xapi_set (c, r, "name_label", xapi_string (c, h->name_label));
  xapi_set (c, r, "name_description", xapi_string (c, "vdimotiond"));
  xapi_set (c, r, "hostname", xapi_string (c, g_get_host_name ()));
  xapi_set (c, r, "address", xapi_string (c, address));
  xapi_set (c, r, "enabled", xapi_bool (c, true));
  xapi_set (c, r, "API_version_major", xapi_int64 (c, API_VERSION_MAJOR));
  xapi_set (c, r, "API_version_minor", xapi_int64 (c, API_VERSION_MINOR));
  xapi_set (c, r, "API_version_vendor", xapi_string (c, "XenSource"));
  xapi_set (c, r, "software_version", software_version (c));
  xapi_set (c, r, "resident_VMs", resident_vms (c));
  a = xmlrpc_array_new (c->env);
  xapi_append (c, a, xapi_int64 (c, 0));
  xapi_set (c, r, "virtual_hardware_platform_versions", a);
  {
    xmlrpc_value *ls = xmlrpc_struct_new (c->env);

    xapi_set (c, ls, "address", xapi_string (c, "localhost"));
    xapi_set (c, ls, "port", xapi_string (c, "27000"));
    xapi_set (c, r, "license_server", ls);
  }
  /* No legacy SSL; SSH is not the daemon's to offer. */
  xapi_set (c, r, "ssl_legacy", xapi_bool (c, false));
  xapi_set (c, r, "ssh_enabled", xapi_bool (c, false));
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
