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
      || json_parser_get_root (p) == NULL /* "" */
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
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n)
      || json_node_get_value_type (n) != G_TYPE_STRING)
    return ""; /* absent, null, or not a string */
  return json_node_get_string (n);
}

/* A number: a JSON number, or a string of digits as XenAPI writes its
 * int64s. */
static double
jdouble (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return 0;
  if (json_node_get_value_type (n) == G_TYPE_STRING)
    return g_ascii_strtod (json_node_get_string (n), NULL);
  return json_node_get_double (n);
}

/* A count of bytes or VDIs (exact up to 2^53: 8 PiB). */
static uint64_t
ju64 (JsonObject *o, const char *key)
{
  double d = jdouble (o, key);

  return d > 0 ? (uint64_t)d : 0;
}

static JsonArray *
jarray (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;

  return n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

static JsonObject *
jitem (JsonArray *a, guint i)
{
  JsonNode *n = json_array_get_element (a, i);

  return JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static bool
jbool (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;

  return n && JSON_NODE_HOLDS_VALUE (n)
         && json_node_get_value_type (n) == G_TYPE_BOOLEAN
         && json_node_get_boolean (n);
}

static JsonObject *
jobject (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;

  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static guint
jlength (JsonArray *a)
{
  return a ? json_array_get_length (a) : 0;
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

/* What a VDI of a plan's chain is: the base (no parent; "unmanaged" for
 * a clone base the SR keeps for its children only), a snapshot, or a
 * leaf. */
static const char *
vdi_role (JsonObject *v)
{
  if (!*jstr (v, "parent"))
    return jbool (v, "managed") || !json_object_has_member (v, "managed")
               ? "base"
               : "unmanaged";
  return jbool (v, "is_snapshot") ? "snapshot" : "leaf";
}

/* The name a chain goes by: its leaf's (the last VDI not a snapshot). */
static const char *
chain_name (JsonObject *chain)
{
  JsonArray *vdis = jarray (chain, "vdis");
  const char *name = "";

  for (guint i = 0; i < jlength (vdis); i++)
    if (jitem (vdis, i) && !jbool (jitem (vdis, i), "is_snapshot"))
      name = jstr (jitem (vdis, i), "name_label");
  return name;
}

/* One chain of the plan: a line per VDI, base first; the chain's number,
 * mode and destination (or REFUSED) on its first line. */
static void
print_plan_chain (guint k, JsonObject *chain, GHashTable *srs)
{
  JsonArray *vdis = jarray (chain, "vdis");

  for (guint i = 0; i < jlength (vdis); i++) {
    JsonObject *v = jitem (vdis, i);
    char num[16] = "", bytes[32];
    const char *mode = "", *dest = "";
    if (v == NULL)
      continue;
    if (i == 0) {
      snprintf (num, sizeof num, "%u", k + 1);
      mode = jbool (chain, "live") ? "live" : "offline";
      dest = *jstr (chain, "refused") ? "REFUSED"
                                      : sr_name (srs, jstr (chain, "dest_sr"));
    }
    printf ("%-5s %-36s  %-20s %-9s %-6s %10s %-7s %s\n", num,
            jstr (v, "uuid"), jstr (v, "name_label"), vdi_role (v),
            jstr (v, "format"),
            cli_human_size (ju64 (v, "bytes"), bytes, sizeof bytes), mode,
            dest);
  }
}

/* The plan's last line: what moves, how long it should take, and
 * whether it can start. */
static void
print_plan_totals (JsonObject *plan, GHashTable *srs)
{
  JsonObject *totals = jobject (plan, "totals"), *rate = jobject (plan, "rate");
  JsonArray *dests = jarray (plan, "dest_srs");
  char bytes[32], bps[32];

  printf ("%s: %" PRIu64 " VDIs in %" PRIu64 " chains; %s to move to",
          sr_name (srs, jstr (plan, "sr")), ju64 (totals, "vdis"),
          ju64 (totals, "chains"),
          cli_human_size (ju64 (totals, "bytes"), bytes, sizeof bytes));
  for (guint i = 0; i < jlength (dests); i++) {
    const char *uuid = json_array_get_string_element (dests, i);
    printf ("%s%s", i ? ", " : " ", sr_name (srs, uuid ? uuid : ""));
  }
  printf (", about %.0f s at %s/s (%s)\n", jdouble (plan, "estimated_seconds"),
          cli_human_size ((uint64_t)jdouble (rate, "bytes_per_second"), bps,
                          sizeof bps),
          jstr (rate, "source"));
  if (ju64 (totals, "refused_chains"))
    printf ("chains refused: %" PRIu64 " (%s): %s\n",
            ju64 (totals, "refused_chains"),
            cli_human_size (ju64 (totals, "refused_bytes"), bytes,
                            sizeof bytes),
            jbool (plan, "partial")
                ? "they stay, the rest moves"
                : "nothing starts (--exclude them, then run again)");
}

/* The plan for people: the chains, what is refused and why, what is
 * excluded, then the totals. */
static void
print_plan (JsonObject *plan, GHashTable *srs)
{
  JsonArray *chains = jarray (plan, "chains");
  JsonArray *excluded = jarray (plan, "excluded");

  printf ("%-5s %-36s  %-20s %-9s %-6s %10s %-7s %s\n", "CHAIN", "VDI",
          "NAME", "ROLE", "FORMAT", "BYTES", "MODE", "DESTINATION");
  for (guint k = 0; k < jlength (chains); k++)
    if (jitem (chains, k))
      print_plan_chain (k, jitem (chains, k), srs);
  for (guint k = 0; k < jlength (chains); k++) {
    JsonObject *chain = jitem (chains, k);
    if (chain && *jstr (chain, "refused"))
      printf ("refused: chain %u (%s): %s\n", k + 1, chain_name (chain),
              jstr (chain, "refused"));
  }
  for (guint i = 0; i < jlength (excluded); i++) {
    JsonObject *v = jitem (excluded, i);
    if (v)
      printf ("excluded: %s (%s): %s\n", jstr (v, "uuid"),
              jstr (v, "name_label"), jstr (v, "reason"));
  }
  print_plan_totals (plan, srs);
}

/* The report for people: a line per VDI, then the totals. */
static void
print_report (JsonObject *report, GHashTable *srs)
{
  JsonArray *vdis = jarray (report, "vdis");
  JsonObject *totals = jobject (report, "totals");
  char bytes[32], rate[32];

  printf ("%-36s  %-20s %-8s %-36s  %10s %8s %-7s %s\n", "VDI", "NAME", "TO",
          "NEW-VDI", "BYTES", "SECONDS", "STATE", "ERROR");
  for (guint i = 0; i < jlength (vdis); i++) {
    JsonObject *v = jitem (vdis, i);
    JsonObject *from = jobject (v, "from"), *to = jobject (v, "to");
    if (v == NULL)
      continue;
    printf ("%-36s  %-20s %-8s %-36s  %10s %8.1f %-7s %s\n",
            jstr (from, "uuid"), jstr (v, "name_label"),
            *jstr (to, "sr") ? sr_name (srs, jstr (to, "sr")) : "-",
            *jstr (to, "uuid") ? jstr (to, "uuid") : "-",
            cli_human_size (ju64 (v, "bytes"), bytes, sizeof bytes),
            jdouble (v, "seconds"), jstr (v, "state"), jstr (v, "error"));
  }
  printf ("%s: %" PRIu64 " moved, %" PRIu64 " failed, %" PRIu64
          " skipped; %s in %.1f s of copies, %s/s\n",
          jstr (report, "state"), ju64 (totals, "moved"),
          ju64 (totals, "failed"), ju64 (totals, "skipped"),
          cli_human_size (ju64 (totals, "bytes"), bytes, sizeof bytes),
          jdouble (totals, "seconds"),
          cli_human_size ((uint64_t)jdouble (totals, "bytes_per_second"),
                          rate, sizeof rate));
}

/* The text after the bar: how many VDIs have moved of all, and the names
 * of those moving now (a chain's VDIs share theirs: once each), from
 * the report so far (the task's other_config["evacuate-report"]). */
static char *
evacuation_status (struct xapi_client *c, const char *task, void *opaque)
{
  g_autoptr (GError) e = NULL;
  g_autoptr (xv) oc = xapi_client_call (c, &e, "task.get_other_config",
                                        xv_new_string (task), NULL);
  g_autoptr (JsonNode) report = NULL;
  g_autoptr (GString) moving = g_string_new (NULL);
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  JsonObject *totals;
  JsonArray *vdis;

  if (oc == NULL || oc->type != XV_STRUCT
      || (report = parse_answer (c, xv_str (oc, "evacuate-report"),
                                 "task.get_other_config", NULL))
             == NULL)
    return NULL;
  totals = jobject (json_node_get_object (report), "totals");
  vdis = jarray (json_node_get_object (report), "vdis");
  for (guint i = 0; i < jlength (vdis); i++) {
    JsonObject *v = jitem (vdis, i);
    if (v && strcmp (jstr (v, "state"), "moving") == 0
        && g_hash_table_add (seen, (char *)jstr (v, "name_label")))
      g_string_append_printf (moving, " %s", jstr (v, "name_label"));
  }
  if (moving->len > 48) /* one terminal line: the first names, and "..." */
    g_string_overwrite (g_string_truncate (moving, 45), 45, "...");
  return g_strdup_printf ("%" PRIu64 "/%" PRIu64 " moved%s%s",
                          ju64 (totals, "moved"), ju64 (totals, "vdis"),
                          moving->len ? ", moving:" : "", moving->str);
}

/* Start the evacuation of PLAN (its task into *TASK) and wait for it:
 * the report as the server wrote it (caller frees), or NULL and *ERR. */
static char *
evacuate (struct xapi_client *c, const struct evacuation *e, JsonObject *plan,
          char **task, GError **err)
{
  struct client_task_wait how = {
    .what = "the evacuation",
    .done = "the evacuation has ended",
    .total = ju64 (jobject (plan, "totals"), "bytes"),
    .status = evacuation_status,
  };

  client_catch_interrupt ();
  *task = evacuation_call (c, "Async.SR.evacuate", e, err);
  return *task ? client_task_wait (c, *task, &how, err) : NULL;
}

/* The report for a task that failed or was cancelled: its result all
 * the same, printed as the report of one that succeeded; nothing if
 * there is none. */
static void
print_failed_report (struct xapi_client *c, const char *task,
                     GHashTable *srs)
{
  g_autoptr (GError) e = NULL;
  g_autofree char *text = task ? client_task_result (c, task, &e) : NULL;
  g_autoptr (JsonNode) report = NULL;

  if (text == NULL || *text == '\0'
      || (report = parse_answer (c, text, "task.get_result", NULL)) == NULL)
    return;
  if (client_opts.json)
    printf ("%s\n", text);
  else
    print_report (json_node_get_object (report), srs);
}

static int
sr_evacuate (struct xapi_client *c, const struct client_args *a, GError **err)
{
  __attribute__ ((cleanup (evacuation_clear))) struct evacuation e = { 0 };
  g_autoptr (GHashTable) srs = NULL;
  g_autofree char *text = NULL, *task = NULL, *result = NULL;
  g_autoptr (JsonNode) plan = NULL, report = NULL;
  uint64_t failed;

  if (evacuation_args (c, a, &e, err) == -1
      || (srs = sr_names (c, err)) == NULL
      || (text = evacuation_call (c, "SR.evacuate_plan", &e, err)) == NULL
      || (plan = parse_answer (c, text, "SR.evacuate_plan", err)) == NULL)
    return EXIT_ERROR;
  if (a->dry_run && client_opts.json)
    printf ("%s\n", text);
  else if (a->dry_run || !client_opts.json)
    print_plan (json_node_get_object (plan), srs);
  if (a->dry_run) {
    if (!client_opts.json)
      printf ("dry run: nothing started\n");
    return EXIT_OK;
  }

  result = evacuate (c, &e, json_node_get_object (plan), &task, err);
  if (result == NULL) {
    print_failed_report (c, task, srs);
    return EXIT_ERROR;
  }
  if ((report = parse_answer (c, result, "Async.SR.evacuate", err)) == NULL)
    return EXIT_ERROR;
  if (client_opts.json)
    printf ("%s\n", result);
  else
    print_report (json_node_get_object (report), srs);
  failed = ju64 (jobject (json_node_get_object (report), "totals"), "failed");
  if (failed > 0) {
    g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                 "%" PRIu64 " VDIs failed to move (see the report)", failed);
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
