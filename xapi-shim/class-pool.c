/* The pool class: a pool of one, whose master is this host.
 *
 * Clients find the host through the pool (os_xenapi and the SDK's
 * session.API_version: pool.get_all, pool.get_master; Xen Orchestra:
 * pool.get_all_records), read its default SR and keep marks in its
 * other_config (Xen Orchestra's barrier).  Its uuid is kept in the state
 * dir like the host's (host_open); its name, description, other_config
 * and default SR are host settings in the state database (state.h), so
 * they survive a restart.  The rest of its record is xapi's defaults: no
 * HA, no WLB, no updates. */

#include <string.h>

#include "xapi.h"

/* Settings keys (state_setting_get). */
#define POOL_NAME_LABEL "pool-name-label"
#define POOL_NAME_DESCRIPTION "pool-name-description"
#define POOL_OTHER_CONFIG "pool-other-config"
#define POOL_DEFAULT_SR "pool-default-sr"

static bool
pool_list (struct xapi_call *c, GPtrArray *refs)
{
  g_ptr_array_add (refs,
                   g_strconcat (XAPI_REF_PREFIX, c->d->host->pool_uuid, NULL));
  return true;
}

/* Is REF the pool?  Fails the call with HANDLE_INVALID if not. */
static bool
is_pool (struct xapi_call *c, const char *ref)
{
  const char *uuid = xapi_ref_uuid (ref);

  if (uuid && strcmp (uuid, c->d->host->pool_uuid) == 0)
    return true;
  xapi_fail (c, "HANDLE_INVALID", "pool", ref ? ref : "", NULL);
  return false;
}

/* The default SR: the one set with pool.set_default_SR while it is
 * served, else the first SR (a client asking for it wants somewhere to
 * put disks), else none. */
static xmlrpc_value *
default_sr (struct xapi_call *c)
{
  struct host *h = c->d->host;
  g_autofree char *uuid = state_setting_get (h->state, POOL_DEFAULT_SR);

  if (uuid && host_find_sr (h, uuid))
    return xapi_ref (c, uuid);
  if (h->srs->len > 0)
    return xapi_ref (c, sr_get_uuid (((struct host_sr *)h->srs->pdata[0])->sr));
  return xapi_string (c, XAPI_NULL_REF);
}

static xmlrpc_value *
setting (struct xapi_call *c, const char *key)
{
  g_autofree char *v = state_setting_get (c->d->host->state, key);

  return xapi_string (c, v);
}

static xmlrpc_value *
pool_record (struct xapi_call *c, const char *ref)
{
  g_autofree char *oc_text = NULL;
  g_autoptr (GHashTable) oc = NULL;
  xmlrpc_value *r;

  if (!is_pool (c, ref))
    return NULL;
  oc_text = state_setting_get (c->d->host->state, POOL_OTHER_CONFIG);
  oc = host_oc_parse (oc_text);
  r = xmlrpc_struct_new (c->env);
  xapi_set (c, r, "uuid", xapi_string (c, c->d->host->pool_uuid));
  xapi_set (c, r, "name_label", setting (c, POOL_NAME_LABEL));
  xapi_set (c, r, "name_description", setting (c, POOL_NAME_DESCRIPTION));
  xapi_set (c, r, "master", xapi_ref (c, c->d->host->uuid));
  xapi_set (c, r, "default_SR", default_sr (c));
  xapi_set (c, r, "other_config", xapi_string_map (c, oc));
  return r;
}

/* The pool's record changed: a mod event (its settings are not rows the
 * state's writes log). */
static void
pool_changed (struct xapi_call *c)
{
  events_add (c->d->host->events, "pool", EVENT_MOD, c->d->host->pool_uuid);
}

/* pool.set_name_label / set_name_description(session, pool, value). */
static xmlrpc_value *
pool_set_name (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "self");
  g_autofree char *value
      = ref && is_pool (c, ref) ? xapi_read_string (c, args[2], "value")
                                : NULL;
  bool label = g_str_has_suffix (c->method, "_label");

  if (value == NULL)
    return NULL;
  if (state_setting_set (c->d->host->state,
                         label ? POOL_NAME_LABEL : POOL_NAME_DESCRIPTION,
                         value)
      == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the pool's name", NULL);
    return NULL;
  }
  pool_changed (c);
  return xapi_void (c);
}

/* pool.set_default_SR(session, pool, sr): an SR of this host, or
 * OpaqueRef:NULL for none (the first SR then stands in). */
static xmlrpc_value *
pool_set_default_sr (struct xapi_call *c, xmlrpc_value *const *args,
                     int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "self");
  g_autofree char *sr = ref && is_pool (c, ref)
                            ? xapi_read_string (c, args[2], "value")
                            : NULL;
  struct host_sr *s = NULL;

  if (sr == NULL)
    return NULL;
  if (strcmp (sr, XAPI_NULL_REF) != 0 && (s = xapi_sr_by_ref (c, sr)) == NULL)
    return NULL;
  if (state_setting_set (c->d->host->state, POOL_DEFAULT_SR,
                         s ? sr_get_uuid (s->sr) : NULL)
      == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the pool's default SR",
               NULL);
    return NULL;
  }
  g_message ("pool.set_default_SR: %s", s ? sr_get_uuid (s->sr) : "none");
  pool_changed (c);
  return xapi_void (c);
}

/* pool.add_to_other_config, remove_from_other_config, set_other_config
 * (xapi_change_other_config). */
static xmlrpc_value *
pool_change_other_config (struct xapi_call *c, xmlrpc_value *const *args,
                          int nargs)
{
  g_autofree char *ref = xapi_read_string (c, args[1], "self");
  g_autofree char *old = NULL;
  g_autofree char *text = NULL;
  g_autoptr (GHashTable) oc = NULL;

  if (ref == NULL || !is_pool (c, ref))
    return NULL;
  old = state_setting_get (c->d->host->state, POOL_OTHER_CONFIG);
  oc = host_oc_parse (old);
  if (!xapi_change_other_config (c, args, "pool", ref, oc))
    return NULL;
  text = host_oc_print (oc);
  if (state_setting_set (c->d->host->state, POOL_OTHER_CONFIG, text) == -1) {
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the pool's other_config",
               NULL);
    return NULL;
  }
  pool_changed (c);
  return xapi_void (c);
}

static const struct xapi_method methods[] = {
  { "set_name_label", 3, 3, false, pool_set_name },
  { "set_name_description", 3, 3, false, pool_set_name },
  { "set_default_SR", 3, 3, false, pool_set_default_sr },
  { "set_other_config", 3, 3, false, pool_change_other_config },
  { "add_to_other_config", 4, 4, false, pool_change_other_config },
  { "remove_from_other_config", 3, 3, false, pool_change_other_config },
  { NULL },
};

const struct xapi_class xapi_class_pool = {
  .name = "pool",
  .methods = methods,
  .list = pool_list,
  .get_record = pool_record,
};
