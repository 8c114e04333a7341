/* The migration destination's XenAPI: VM.migrate_receive and
 * Host.migrate_receive (a token), and class "migration", which a source
 * daemon calls with the token instead of a session (check, prepare,
 * keepalive, cbt_arm, commit, abort; listed in vdimotiond(8)).  The work is the
 * brain's (replicator/jobs/migrate-receive.h); here the arguments are
 * read and the answers written. */

#include <string.h>

#include "migrate-receive.h"
#include "xapi.h"

static xmlrpc_value *
token_value (struct xapi_call *c, GHashTable *tok)
{
  xmlrpc_value *v = xmlrpc_struct_new (c->env);
  GHashTableIter it;
  gpointer k, s;

  g_hash_table_iter_init (&it, tok);
  while (g_hash_table_iter_next (&it, &k, &s))
    xapi_set (c, v, k, xapi_string (c, s));
  return v;
}

/* A token for SR, with options["token-lifetime"] (seconds) if given. */
static xmlrpc_value *
issue_token (struct xapi_call *c, struct host_sr *sr, xmlrpc_value *options)
{
  g_autofree char *ttl_s = xapi_member_string (c, options, "token-lifetime");
  guint64 ttl = HOST_MIGRATION_TOKEN_LIFETIME;
  g_autoptr (GHashTable) tok = NULL;
  char **err = NULL;
  xmlrpc_value *v;

  if (ttl_s
      && !g_ascii_string_to_unsigned (ttl_s, 10, 1,
                                      HOST_MIGRATION_TOKEN_LIFETIME, &ttl,
                                      NULL)) {
    xapi_fail (c, "INVALID_VALUE", "token-lifetime", ttl_s, NULL);
    return NULL;
  }
  if (xapi_failed (c))
    return NULL;
  if ((tok = host_migration_issue (c->d->host, sr, ttl, &err)) == NULL) {
    xapi_fail_err (c, err);
    return NULL;
  }
  v = token_value (c, tok);
  /* The secret is for the client, not for this process's memory. */
  {
    char *secret = g_hash_table_lookup (tok, "secret");

    if (secret)
      explicit_bzero (secret, strlen (secret));
  }
  return v;
}

/* VM.migrate_receive(session, host, sr, options) → token. */
xmlrpc_value *
xapi_vm_migrate_receive (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *host = xapi_read_string (c, args[1], "host");
  g_autofree char *sr_ref = host ? xapi_read_string (c, args[2], "sr") : NULL;
  struct host_sr *sr;

  if (sr_ref == NULL || !xapi_is_record (c, args[3], "options"))
    return NULL;
  if (g_strcmp0 (xapi_ref_uuid (host), c->d->host->uuid) != 0) {
    xapi_fail (c, "HANDLE_INVALID", "host", host, NULL);
    return NULL;
  }
  if ((sr = xapi_sr_by_ref (c, sr_ref)) == NULL)
    return NULL;
  return issue_token (c, sr, args[3]);
}

/* Host.migrate_receive(session, host, network, options) → token; the
 * destination SR is options["sr"] (a ref), else this host's first SR;
 * VM.migrate_send's vdi_map places disks elsewhere. */
xmlrpc_value *
xapi_host_migrate_receive (struct xapi_call *c, xmlrpc_value *const *args,
                           int nargs)
{
  g_autofree char *host = xapi_read_string (c, args[1], "host");
  g_autofree char *net
      = host ? xapi_read_string (c, args[2], "network") : NULL;
  g_autofree char *sr_ref = NULL;
  struct host_sr *sr;

  if (net == NULL || !xapi_is_record (c, args[3], "options"))
    return NULL;
  if (g_strcmp0 (xapi_ref_uuid (host), c->d->host->uuid) != 0) {
    xapi_fail (c, "HANDLE_INVALID", "host", host, NULL);
    return NULL;
  }
  if (g_strcmp0 (xapi_ref_uuid (net), c->d->host->network_uuid) != 0) {
    xapi_fail (c, "HANDLE_INVALID", "network", net, NULL);
    return NULL;
  }
  sr_ref = xapi_member_string (c, args[3], "sr");
  if (xapi_failed (c))
    return NULL;
  if (sr_ref)
    sr = xapi_sr_by_ref (c, sr_ref);
  else if (c->d->host->srs->len)
    sr = c->d->host->srs->pdata[0];
  else {
    xapi_fail (c, "SR_NOT_FOUND", "this host has no SR", NULL);
    return NULL;
  }
  return sr ? issue_token (c, sr, args[3]) : NULL;
}

/* Class "migration". */

/* A token argument: the members the brain checks. */
struct token
{
  char *migration, *secret, *host;
};

static void
token_clear (struct token *t)
{
  g_free (t->migration);
  g_free (t->host);
  if (t->secret)
    explicit_bzero (t->secret, strlen (t->secret));
  g_free (t->secret);
}

/* Read V into *T and have the brain check it as the step will
 * (PREPARED: keepalive, commit, abort), before any other argument is
 * read, as xapi answers a bad token first.  The migration's default SR
 * uuid (g_free), or NULL after xapi_fail. */
static char *
read_token (struct xapi_call *c, xmlrpc_value *v, bool prepared,
            struct token *t, struct host_migration_token *out)
{
  char **err = NULL;
  char *sr;

  if (!xapi_is_record (c, v, "token"))
    return NULL;
  t->migration = xapi_member_string (c, v, "migration");
  t->secret = xapi_member_string (c, v, "secret");
  t->host = xapi_member_string (c, v, "host");
  if (xapi_failed (c))
    return NULL;
  out->migration = t->migration;
  out->secret = t->secret;
  out->host = t->host;
  if ((sr = host_migration_token_check (c->d->host, out, prepared, &err))
      == NULL)
    xapi_fail_err (c, err);
  return sr;
}

static void
disk_clear (gpointer p)
{
  struct host_migration_disk *d = p;

  g_free (d->userdevice);
  g_free (d->format);
  g_free (d->sr);
}

static bool
read_u64 (struct xapi_call *c, xmlrpc_value *rec, const char *key,
          uint64_t *out)
{
  g_autofree char *s = xapi_member_string (c, rec, key);

  if (s && g_ascii_string_to_unsigned (s, 10, 0, G_MAXINT64, out, NULL))
    return true;
  if (!xapi_failed (c))
    xapi_fail (c, "FIELD_TYPE_ERROR", key, NULL);
  return false;
}

/* Disks: [{userdevice, virtual_size, format, sr, physical_utilisation}],
 * each checked by the brain once read (its SR DEFAULT_SR when it names
 * none); NULL after xapi_fail. */
static GArray *
read_disks (struct xapi_call *c, xmlrpc_value *v, const char *default_sr)
{
  g_autoptr (GArray) a
      = g_array_new (FALSE, TRUE, sizeof (struct host_migration_disk));
  int n;

  if (xmlrpc_value_type (v) != XMLRPC_TYPE_ARRAY) {
    xapi_fail (c, "FIELD_TYPE_ERROR", "disks", NULL);
    return NULL;
  }
  g_array_set_clear_func (a, disk_clear);
  n = xmlrpc_array_size (c->env, v);
  for (int i = 0; i < n && !xapi_failed (c); i++) {
    g_autoptr (xmlrpc_value) d = NULL;
    struct host_migration_disk *r;

    xmlrpc_array_read_item (c->env, v, i, &d);
    if (!xapi_is_record (c, d, "disks"))
      break;
    g_array_set_size (a, a->len + 1);
    r = &g_array_index (a, struct host_migration_disk, a->len - 1);
    r->userdevice = xapi_member_string (c, d, "userdevice");
    r->format = xapi_member_string (c, d, "format");
    r->sr = xapi_member_string (c, d, "sr");
    if (xapi_failed (c) || !read_u64 (c, d, "virtual_size", &r->virtual_size)
        || !read_u64 (c, d, "physical_utilisation",
                      &r->physical_utilisation))
      break;
    if (r->userdevice == NULL)
      xapi_fail (c, "FIELD_TYPE_ERROR", "userdevice", NULL);
    else {
      char **err = NULL;

      if (host_migration_disk_check (c->d->host, default_sr, r, &err) == -1)
        xapi_fail_err (c, err);
    }
  }
  return xapi_failed (c) ? NULL : g_steal_pointer (&a);
}

/* migration.check(token, disks). */
static xmlrpc_value *
migration_check (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  struct token t = { 0 };
  struct host_migration_token tok;
  g_autoptr (GArray) disks = NULL;
  g_autofree char *sr = NULL;
  char **err = NULL;
  int r = -1;

  if ((sr = read_token (c, args[0], false, &t, &tok)) != NULL
      && (disks = read_disks (c, args[1], sr)) != NULL)
    r = host_migration_check (c->d->host, &tok,
                              (struct host_migration_disk *)disks->data,
                              disks->len, &err);
  token_clear (&t);
  if (r == -1 && !xapi_failed (c))
    xapi_fail_err (c, err);
  return r == -1 ? NULL : xapi_void (c);
}

/* migration.prepare(token, disks) → [{userdevice, vdi, uri, socket}]. */
static xmlrpc_value *
migration_prepare (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  struct token t = { 0 };
  struct host_migration_token tok;
  g_autoptr (GArray) disks = NULL;
  g_autoptr (GPtrArray) out = NULL;
  g_autofree char *sr = NULL;
  char **err = NULL;
  xmlrpc_value *v;

  if ((sr = read_token (c, args[0], false, &t, &tok)) != NULL
      && (disks = read_disks (c, args[1], sr)) != NULL)
    out = host_migration_prepare (c->d->host, &tok,
                                  (struct host_migration_disk *)disks->data,
                                  disks->len, &err);
  token_clear (&t);
  if (out == NULL) {
    if (!xapi_failed (c))
      xapi_fail_err (c, err);
    return NULL;
  }
  v = xmlrpc_array_new (c->env);
  for (guint i = 0; i < out->len; i++) {
    const struct host_migration_export *e = out->pdata[i];
    xmlrpc_value *st = xmlrpc_struct_new (c->env);

    xapi_set (c, st, "userdevice", xapi_string (c, e->userdevice));
    xapi_set (c, st, "vdi", xapi_string (c, e->vdi));
    xapi_set (c, st, "uri", xapi_string (c, e->uri));
    xapi_set (c, st, "socket", xapi_string (c, e->socket));
    xapi_append (c, v, st);
  }
  return v;
}

/* migration.keepalive(token) and migration.abort(token). */
static xmlrpc_value *
migration_token_only (struct xapi_call *c, xmlrpc_value *const *args,
                      int nargs)
{
  struct token t = { 0 };
  struct host_migration_token tok;
  g_autofree char *sr = NULL;
  char **err = NULL;
  int r = -1;

  if ((sr = read_token (c, args[0], true, &t, &tok)) != NULL)
    r = g_str_has_suffix (c->method, ".abort")
            ? host_migration_abort (c->d->host, &tok, &err)
            : host_migration_keepalive (c->d->host, &tok, &err);
  token_clear (&t);
  if (r == -1 && !xapi_failed (c))
    xapi_fail_err (c, err);
  return r == -1 ? NULL : xapi_void (c);
}

/* migration.cbt_arm(token, [userdevice]): those disks' changed-block
 * logs start here (host_migration_cbt_arm). */
static xmlrpc_value *
migration_cbt_arm (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  struct token t = { 0 };
  struct host_migration_token tok;
  g_autoptr (GPtrArray) devs = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *sr = NULL;
  char **err = NULL;
  int r = -1;

  if ((sr = read_token (c, args[0], true, &t, &tok)) == NULL)
    goto out;
  if (xmlrpc_value_type (args[1]) != XMLRPC_TYPE_ARRAY) {
    xapi_fail (c, "FIELD_TYPE_ERROR", "userdevices", NULL);
    goto out;
  }
  for (int j = 0; j < xmlrpc_array_size (c->env, args[1]); j++) {
    g_autoptr (xmlrpc_value) e = NULL;
    char *dev;
    xmlrpc_array_read_item (c->env, args[1], j, &e);
    if (e == NULL || (dev = xapi_read_string (c, e, "userdevices")) == NULL)
      goto out;
    g_ptr_array_add (devs, dev);
  }
  r = host_migration_cbt_arm (c->d->host, &tok,
                              (const char *const *)devs->pdata, devs->len,
                              &err);
out:
  token_clear (&t);
  if (r == -1 && !xapi_failed (c))
    xapi_fail_err (c, err);
  return r == -1 ? NULL : xapi_void (c);
}

/* Member KEY of each struct of VBDS ([{userdevice, KEY, ...}]) that has
 * it, userdevice → its string. */
static GHashTable *
vbds_member (struct xapi_call *c, xmlrpc_value *vbds, const char *key)
{
  GHashTable *t = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         g_free);
  int n = vbds && xmlrpc_value_type (vbds) == XMLRPC_TYPE_ARRAY
              ? xmlrpc_array_size (c->env, vbds)
              : 0;

  for (int j = 0; j < n; j++) {
    g_autoptr (xmlrpc_value) e = NULL;
    g_autofree char *dev = NULL;
    g_autofree char *val = NULL;

    xmlrpc_array_read_item (c->env, vbds, j, &e);
    if (e == NULL || xmlrpc_value_type (e) != XMLRPC_TYPE_STRUCT)
      continue;
    dev = xapi_member_string (c, e, "userdevice");
    val = xapi_member_string (c, e, key);
    if (dev && val)
      g_hash_table_replace (t, g_steal_pointer (&dev), g_steal_pointer (&val));
  }
  return t;
}

/* The userdevices of VBDS ([{userdevice, mode}]) attached "RO". */
static GHashTable *
read_only_devices (struct xapi_call *c, xmlrpc_value *vbds)
{
  g_autoptr (GHashTable) modes = vbds_member (c, vbds, "mode");
  GHashTable *ro = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                          NULL);
  GHashTableIter it;
  gpointer dev, mode;

  g_hash_table_iter_init (&it, modes);
  while (g_hash_table_iter_next (&it, &dev, &mode))
    if (strcmp (mode, "RO") == 0)
      g_hash_table_add (ro, g_strdup (dev));
  return ro;
}

/* The source's changed-block logs in VBDS ([{userdevice, cbt_log}],
 * cbt_log the log's bytes in base64), userdevice → GBytes. */
static GHashTable *
cbt_logs (struct xapi_call *c, xmlrpc_value *vbds)
{
  g_autoptr (GHashTable) b64 = vbds_member (c, vbds, "cbt_log");
  GHashTable *logs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                            (GDestroyNotify)g_bytes_unref);
  GHashTableIter it;
  gpointer dev, text;

  g_hash_table_iter_init (&it, b64);
  while (g_hash_table_iter_next (&it, &dev, &text)) {
    gsize len = 0;
    guchar *raw = g_base64_decode (text, &len);

    g_hash_table_replace (logs, g_strdup (dev), g_bytes_new_take (raw, len));
  }
  return logs;
}

/* migration.commit(token, vm) → the VM's ref here.  vm: {name_label,
 * name_description, power_state, other_config, vbds: [{userdevice,
 * mode, cbt_log (optional), moved_from (optional: the disk's
 * HOST_MOVED_FROM value, host.h), cbt_predecessor, cbt_predecessor_name,
 * cbt_predecessor_time (optional: the snapshot the log counts from,
 * recorded here without data)}]}.  The VM runs here from now on, on the disks' sockets. */
static xmlrpc_value *
migration_commit (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  struct token t = { 0 };
  struct host_migration_token tok;
  g_autoptr (xmlrpc_value) vbds = NULL;
  g_autoptr (xmlrpc_value) ocv = NULL;
  g_autoptr (GHashTable) oc = host_oc_parse (NULL);
  g_autoptr (GHashTable) ro = NULL;
  g_autoptr (GHashTable) logs = NULL;
  g_autoptr (GHashTable) moved_from = NULL;
  g_autoptr (GHashTable) pred = NULL;
  g_autoptr (GHashTable) pred_name = NULL;
  g_autoptr (GHashTable) pred_time = NULL;
  g_autofree char *label = NULL;
  g_autofree char *desc = NULL;
  g_autofree char *power = NULL;
  g_autofree char *vm_uuid = NULL;
  struct host_migration_vm vm = { 0 };
  g_autofree char *sr = NULL;
  char **err = NULL;

  if ((sr = read_token (c, args[0], true, &t, &tok)) == NULL
      || !xapi_is_record (c, args[1], "vm"))
    goto out;
  label = xapi_member_string (c, args[1], "name_label");
  desc = xapi_member_string (c, args[1], "name_description");
  power = xapi_member_string (c, args[1], "power_state");
  xmlrpc_struct_find_value (c->env, args[1], "other_config", &ocv);
  xmlrpc_struct_find_value (c->env, args[1], "vbds", &vbds);
  if (xapi_failed (c) || (ocv && !xapi_oc_from_xmlrpc (c, ocv, oc)))
    goto out;
  ro = read_only_devices (c, vbds);
  logs = cbt_logs (c, vbds);
  vm.cbt_logs = logs;
  moved_from = vbds_member (c, vbds, "moved_from");
  vm.moved_from = moved_from;
  vm.cbt_predecessor = pred = vbds_member (c, vbds, "cbt_predecessor");
  vm.cbt_predecessor_name = pred_name
      = vbds_member (c, vbds, "cbt_predecessor_name");
  vm.cbt_predecessor_time = pred_time
      = vbds_member (c, vbds, "cbt_predecessor_time");
  vm.name_label = label;
  vm.name_description = desc;
  vm.power_state = power;
  vm.other_config = oc;
  vm.read_only = ro;
  if ((vm_uuid = host_migration_commit (c->d->host, &tok, &vm, &err)) == NULL)
    xapi_fail_err (c, err);
out:
  token_clear (&t);
  return vm_uuid ? xapi_ref (c, vm_uuid) : NULL;
}

static const struct xapi_method methods[] = {
  { "check", 2, 2, true, migration_check },
  { "prepare", 2, 2, true, migration_prepare },
  { "keepalive", 1, 1, true, migration_token_only },
  { "cbt_arm", 2, 2, true, migration_cbt_arm },
  { "commit", 2, 2, true, migration_commit },
  { "abort", 1, 1, true, migration_token_only },
  { NULL },
};

/* Called by the source daemon, authenticated by the token (not by a
 * session): the methods are listed in vdimotiond(8). */
const struct xapi_class xapi_class_migration = {
  .name = "migration",
  .methods = methods,
};
