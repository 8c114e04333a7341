/* vdimotion sr: the storage repositories of a server (XenAPI SR class).
 *   sr list       one line per SR: uuid, name, size, use, VDI count
 *   sr evacuate   empty an SR into others while its VMs run: vdimotiond's
 *                 SR.evacuate_plan (the dry run, printed as a table),
 *                 then Async.SR.evacuate, waited on with a bar and the
 *                 VDIs moving now (the task's other_config); Ctrl-C
 *                 cancels it; the report at the end
 *
 * The plan and the report are JSON strings the daemon writes (their
 * fields: vdimotiond(8), replicator/jobs/evacuate.h); this file reads
 * them with json-glib and prints them, the same with --json.  SRs and
 * VDIs are named by uuid or name label, as every server command takes
 * them; the server is given uuids. */
#include <inttypes.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "client.h"

static int
sr_list (struct xapi_client *c, const struct client_args *a, GError **err)
{
  g_autoptr (xv) srs = xapi_client_call (c, err, "SR.get_all_records", NULL);
  g_autofree size_t *order = NULL;
  bool first = true;

  if (srs == NULL)
    return EXIT_ERROR;
  order = xv_sort_records (srs, "name_label");
  if (client_opts.json)
    printf ("[");
  else
    printf ("%-36s  %-16s %10s %10s %10s %5s\n", "UUID", "NAME", "SIZE",
            "USED", "ALLOCATED", "VDIS");
  for (size_t k = 0; k < srs->n; k++) {
    const struct xv *r = srs->items[order[k]];
    const struct xv *vdis = xv_get (r, "VDIs");
    size_t n_vdis = vdis && vdis->type == XV_ARRAY ? vdis->n : 0;
    if (client_opts.json) {
      if (k)
        printf (",\n ");
      json_str (&first, "uuid", xv_str (r, "uuid"));
      json_str (&first, "name_label", xv_str (r, "name_label"));
      json_str (&first, "type", xv_str (r, "type"));
      json_u64 (&first, "physical_size", xv_u64 (r, "physical_size"));
      json_u64 (&first, "physical_utilisation",
                xv_u64 (r, "physical_utilisation"));
      json_u64 (&first, "virtual_allocation",
                xv_u64 (r, "virtual_allocation"));
      json_u64 (&first, "vdis", n_vdis);
      json_end (&first);
    }
    else {
      char size[32], used[32], alloc[32];
      printf ("%-36s  %-16s %10s %10s %10s %5zu\n", xv_str (r, "uuid"),
              xv_str (r, "name_label"),
              cli_human_size (xv_u64 (r, "physical_size"), size, sizeof size),
              cli_human_size (xv_u64 (r, "physical_utilisation"), used,
                              sizeof used),
              cli_human_size (xv_u64 (r, "virtual_allocation"), alloc,
                              sizeof alloc),
              n_vdis);
    }
  }
  if (client_opts.json)
    printf ("]\n");
  return EXIT_OK;
}

/* ---- sr evacuate ---------------------------------------------------- */

/* A plan or a report: the JSON string a call answered, parsed.  NULL and
 * *ERR naming METHOD if it is not a JSON object. */
static JsonNode *
parse_answer (struct xapi_client *c, const char *text, const char *method,
              GError **err)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) e = NULL;

  if (text == NULL || !json_parser_load_from_data (p, text, -1, &e)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p))) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: %s: the answer is not a JSON object%s%s",
                 xapi_client_url (c), method, e ? ": " : "",
                 e ? e->message : "");
    return NULL;
  }
  return json_node_copy (json_parser_get_root (p));
}

/* Members of a plan or report, with defaults for what a server left out. */
static const char *
jstr (JsonObject *o, const char *key)
{
  return json_object_get_string_member_with_default (o, key, "");
}

/* A count of bytes or VDIs: a JSON number, or a string of digits as
 * XenAPI writes its int64s. */
static uint64_t
ju64 (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return 0;
  if (json_node_get_value_type (n) == G_TYPE_STRING)
    return g_ascii_strtoull (json_node_get_string (n), NULL, 10);
  if (json_node_get_value_type (n) == G_TYPE_DOUBLE)
    return MAX (json_node_get_double (n), 0);
  return MAX (json_node_get_int (n), 0);
}

static double
jdouble (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return 0;
  if (json_node_get_value_type (n) == G_TYPE_STRING)
    return g_ascii_strtod (json_node_get_string (n), NULL);
  return json_node_get_double (n);
}

static JsonArray *
jarray (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);

  return n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

static JsonObject *
jitem (JsonArray *a, guint i)
{
  JsonNode *n = json_array_get_element (a, i);

  return JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

/* The SRs' name labels by uuid, for the tables (an SR we cannot name
 * shows as its uuid). */
static GHashTable *
sr_names (struct xapi_client *c, GError **err)
{
  g_autoptr (xv) srs = xapi_client_call (c, err, "SR.get_all_records", NULL);
  GHashTable *names;

  if (srs == NULL)
    return NULL;
  names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  for (size_t i = 0; srs->type == XV_STRUCT && i < srs->n; i++)
    g_hash_table_insert (names, g_strdup (xv_str (srs->items[i], "uuid")),
                         g_strdup (xv_str (srs->items[i], "name_label")));
  return names;
}

static const char *
sr_name (GHashTable *names, const char *uuid)
{
  const char *name = g_hash_table_lookup (names, uuid);

  return name && *name ? name : *uuid ? uuid : "-";
}

/* SR.evacuate*'s arguments: the source SR's ref, the destinations'
 * (--to, comma-separated) and the options (parallel, order, exclude as
 * uuids), as the server takes them. */
struct evacuation
{
  char *sr;
  struct xv *dests, *options;
};

static void
evacuation_clear (struct evacuation *e)
{
  g_free (e->sr);
  xv_free (e->dests);
  xv_free (e->options);
}

static int
evacuation_args (struct xapi_client *c, const struct client_args *a,
                 struct evacuation *e, GError **err)
{
  g_auto (GStrv) to = g_strsplit (a->to, ",", -1);
  g_autoptr (GPtrArray) uuids = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *exclude = NULL;

  if ((e->sr = client_lookup (c, "SR", a->argv[0], NULL, err)) == NULL)
    return -1;
  e->dests = xv_new_array ();
  for (char **t = to; *t; t++) {
    char *ref;
    if (**t == '\0')
      continue; /* "a,,b" and a trailing comma */
    if ((ref = client_lookup (c, "SR", *t, NULL, err)) == NULL) {
      g_prefix_error (err, "--to %s: ", *t);
      return -1;
    }
    xv_append (e->dests, xv_new_string (ref));
    g_free (ref);
  }
  if (e->dests->n == 0) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                 "--to %s: no SR named", a->to);
    return -1;
  }
  for (size_t i = 0; i < a->n_excludes; i++) {
    g_autoptr (xv) rec = NULL;
    g_autofree char *ref
        = client_lookup (c, "VDI", a->excludes[i], &rec, err);
    if (ref == NULL) {
      g_prefix_error (err, "--exclude %s: ", a->excludes[i]);
      return -1;
    }
    g_ptr_array_add (uuids, g_strdup (xv_str (rec, "uuid")));
  }
  g_ptr_array_add (uuids, NULL);
  exclude = g_strjoinv (",", (char **)uuids->pdata);
  e->options = xv_new_struct ();
  if (a->parallel)
    xv_set (e->options, "parallel", xv_new_string (a->parallel));
  if (a->order)
    xv_set (e->options, "order", xv_new_string (a->order));
  if (*exclude)
    xv_set (e->options, "exclude", xv_new_string (exclude));
  return 0;
}

/* Call METHOD (SR.evacuate_plan, Async.SR.evacuate) with E's arguments:
 * its string answer (caller frees), or NULL and *ERR. */
static char *
evacuation_call (struct xapi_client *c, const char *method,
                 const struct evacuation *e, GError **err)
{
  g_autoptr (xv) r = xapi_client_call (c, err, method, xv_new_string (e->sr),
                                       xv_copy (e->dests),
                                       xv_copy (e->options), NULL);

  if (r && r->type != XV_STRING) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                 "%s: %s: the answer is not a string", xapi_client_url (c),
                 method);
    return NULL;
  }
  return r ? g_steal_pointer (&r->s) : NULL;
}

static bool
jbool (JsonObject *o, const char *key)
{
  return json_object_get_boolean_member_with_default (o, key, false);
}

/* What becomes of a chain: its destination's name, or why not. */
static const char *
chain_fate (JsonObject *chain, GHashTable *srs)
{
  if (*jstr (chain, "refused"))
    return "REFUSED";
  if (jbool (chain, "excluded"))
    return "excluded";
  return sr_name (srs, jstr (chain, "destination"));
}

/* One chain of the plan: a line per VDI, base first; the chain's number,
 * mode and fate on its first line. */
static void
print_plan_chain (guint k, JsonObject *chain, GHashTable *srs)
{
  JsonArray *vdis = jarray (chain, "vdis");
  guint n = vdis ? json_array_get_length (vdis) : 0;

  for (guint i = 0; i < n; i++) {
    JsonObject *v = jitem (vdis, i);
    char num[16] = "", bytes[32];
    if (v == NULL)
      continue;
    if (i == 0)
      snprintf (num, sizeof num, "%u", k + 1);
    printf ("%-5s %-36s  %-20s %-8s %-6s %10s %-7s %s\n", num,
            jstr (v, "uuid"), jstr (v, "name_label"), jstr (v, "role"),
            jstr (v, "format"),
            cli_human_size (ju64 (v, "bytes"), bytes, sizeof bytes),
            i ? "" : jbool (chain, "live") ? "live" : "offline",
            i ? "" : chain_fate (chain, srs));
  }
}

/* The plan for people: the chains, then what is refused and why, then
 * the figures. */
static void
print_plan (JsonObject *plan, GHashTable *srs)
{
  JsonArray *chains = jarray (plan, "chains");
  guint n = chains ? json_array_get_length (chains) : 0;
  char bytes[32], rate[32];

  printf ("%-5s %-36s  %-20s %-8s %-6s %10s %-7s %s\n", "CHAIN", "VDI",
          "NAME", "ROLE", "FORMAT", "BYTES", "MODE", "DESTINATION");
  for (guint k = 0; k < n; k++)
    if (jitem (chains, k))
      print_plan_chain (k, jitem (chains, k), srs);
  for (guint k = 0; k < n; k++) {
    JsonObject *chain = jitem (chains, k);
    if (chain && *jstr (chain, "refused"))
      printf ("refused: chain %u (%s): %s\n", k + 1, jstr (chain, "leaf"),
              jstr (chain, "refused"));
  }
  printf ("%s: %s to move", sr_name (srs, jstr (plan, "sr")),
          cli_human_size (ju64 (plan, "bytes"), bytes, sizeof bytes));
  if (jdouble (plan, "rate") > 0)
    printf (", about %.0f s at %s/s", jdouble (plan, "estimate_seconds"),
            cli_human_size ((uint64_t)jdouble (plan, "rate"), rate,
                            sizeof rate));
  printf ("; %s\n", jbool (plan, "fits") ? "the plan fits"
                                           : "the plan does not fit");
}

/* The report for people: a line per VDI, then the totals. */
static void
print_report (JsonObject *report, GHashTable *srs)
{
  JsonArray *vdis = jarray (report, "vdis");
  guint n = vdis ? json_array_get_length (vdis) : 0;
  char bytes[32], rate[32];

  printf ("%-36s  %-20s %-8s %-8s %10s %8s %-7s %s\n", "VDI", "NAME", "FROM",
          "TO", "BYTES", "SECONDS", "RESULT", "ERROR");
  for (guint i = 0; i < n; i++) {
    JsonObject *v = jitem (vdis, i);
    if (v == NULL)
      continue;
    printf ("%-36s  %-20s %-8s %-8s %10s %8.1f %-7s %s\n", jstr (v, "uuid"),
            jstr (v, "name_label"), sr_name (srs, jstr (v, "from")),
            sr_name (srs, jstr (v, "to")),
            cli_human_size (ju64 (v, "bytes"), bytes, sizeof bytes),
            jdouble (v, "seconds"), jstr (v, "result"), jstr (v, "error"));
  }
  printf ("%" PRIu64 " moved, %" PRIu64 " failed, %" PRIu64
          " skipped: %s in %.1f s, %s/s\n",
          ju64 (report, "moved"), ju64 (report, "failed"),
          ju64 (report, "skipped"),
          cli_human_size (ju64 (report, "bytes"), bytes, sizeof bytes),
          jdouble (report, "seconds"),
          cli_human_size ((uint64_t)jdouble (report, "throughput"), rate,
                          sizeof rate));
}

/* The VDIs' name labels by uuid, from the plan, for the bar's text. */
static GHashTable *
plan_names (JsonObject *plan)
{
  GHashTable *names = g_hash_table_new (g_str_hash, g_str_equal);
  JsonArray *chains = jarray (plan, "chains");

  for (guint k = 0; chains && k < json_array_get_length (chains); k++) {
    JsonArray *vdis = jitem (chains, k) ? jarray (jitem (chains, k), "vdis")
                                        : NULL;
    for (guint i = 0; vdis && i < json_array_get_length (vdis); i++)
      if (jitem (vdis, i))
        g_hash_table_insert (names, (char *)jstr (jitem (vdis, i), "uuid"),
                             (char *)jstr (jitem (vdis, i), "name_label"));
  }
  return names;
}

/* The text after the bar: how many VDIs have moved of all, and the names
 * of those moving now, from the task's other_config (VDI uuid → state,
 * the keys "evacuate:UUID"). */
static char *
evacuation_status (struct xapi_client *c, const char *task, void *opaque)
{
  GHashTable *names = opaque;
  g_autoptr (GError) e = NULL;
  g_autoptr (xv) oc = xapi_client_call (c, &e, "task.get_other_config",
                                        xv_new_string (task), NULL);
  g_autoptr (GString) moving = g_string_new (NULL);
  size_t moved = 0, all = 0;

  for (size_t i = 0; oc && oc->type == XV_STRUCT && i < oc->n; i++) {
    const char *uuid = oc->keys[i], *name;
    if (!g_str_has_prefix (uuid, "evacuate:")
        || oc->items[i]->type != XV_STRING)
      continue;
    uuid += strlen ("evacuate:");
    all++;
    if (strcmp (oc->items[i]->s, "moved") == 0)
      moved++;
    if (strcmp (oc->items[i]->s, "moving") != 0)
      continue;
    name = g_hash_table_lookup (names, uuid);
    g_string_append_printf (moving, " %s", name && *name ? name : uuid);
  }
  if (all == 0)
    return NULL;
  if (moving->len > 48) /* a terminal line: the first names, and "..." */
    g_string_overwrite (g_string_truncate (moving, 45), 45, "...");
  return g_strdup_printf ("%zu/%zu moved%s%s", moved, all,
                          moving->len ? ", moving:" : "", moving->str);
}

/* Run the evacuation of PLAN and wait for it: the report as the server
 * wrote it (caller frees), or NULL and *ERR. */
static char *
evacuate (struct xapi_client *c, const struct evacuation *e, JsonObject *plan,
          GError **err)
{
  g_autoptr (GHashTable) names = plan_names (plan);
  g_autofree char *task = NULL;
  struct client_task_wait how = {
    .what = "the evacuation",
    .done = "the evacuation has ended",
    .total = ju64 (plan, "bytes"),
    .status = evacuation_status,
    .opaque = names,
  };

  client_catch_interrupt ();
  task = evacuation_call (c, "Async.SR.evacuate", e, err);
  return task ? client_task_wait (c, task, &how, err) : NULL;
}

static int
sr_evacuate (struct xapi_client *c, const struct client_args *a, GError **err)
{
  __attribute__ ((cleanup (evacuation_clear))) struct evacuation e = { 0 };
  g_autoptr (GHashTable) srs = NULL;
  g_autofree char *text = NULL;
  g_autoptr (JsonNode) plan = NULL, report = NULL;

  if (evacuation_args (c, a, &e, err) == -1
      || (srs = sr_names (c, err)) == NULL
      || (text = evacuation_call (c, "SR.evacuate_plan", &e, err)) == NULL
      || (plan = parse_answer (c, text, "SR.evacuate_plan", err)) == NULL)
    return EXIT_ERROR;
  if (a->dry_run) {
    if (client_opts.json)
      printf ("%s\n", text);
    else {
      print_plan (json_node_get_object (plan), srs);
      printf ("dry run: nothing started\n");
    }
    return EXIT_OK;
  }
  if (!client_opts.json)
    print_plan (json_node_get_object (plan), srs);
  g_free (text);
  text = evacuate (c, &e, json_node_get_object (plan), err);
  if (text == NULL
      || (report = parse_answer (c, text, "Async.SR.evacuate", err)) == NULL)
    return EXIT_ERROR;
  if (client_opts.json)
    printf ("%s\n", text);
  else
    print_report (json_node_get_object (report), srs);
  if (ju64 (json_node_get_object (report), "failed") > 0) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                 "%" PRIu64 " VDIs failed to move (see the report)",
                 ju64 (json_node_get_object (report), "failed"));
    return EXIT_ERROR;
  }
  return EXIT_OK;
}

static const struct client_subcommand subs[] = {
  { "list", "[--json]", 0, 0, 0, sr_list },
  { "evacuate",
    "SR --to SR2[,SR3...] [--parallel N] [--dry-run] [--order size|name] "
    "[--exclude VDI]... [--json]",
    1, 1, CLIENT_OPT_EVACUATE, sr_evacuate },
  { NULL },
};

static int
run (int argc, char **argv)
{
  return client_run_group (&cmd_sr, subs, argc, argv);
}

const struct command cmd_sr
    = { "sr", "list [--json] | evacuate SR --to SR2[,SR3...] [--dry-run]", run };
