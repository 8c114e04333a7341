/* Evacuating an SR: the plan, and job kind "sr-evacuate" (evacuate.h
 * says what it does; this file how).
 *
 * - The plan (struct plan) is built from the SRs' records and the VBDs
 *   (make_plan) and written as JSON (plan_json).  The run keeps its own
 *   durable state (struct run: chains of layers, each with its state and
 *   its new uuid) in <jobs_dir>/<task>.evacuate.json; the report is made
 *   from that state (report_json), never kept apart.
 * - A chain's states: queued → moving → committing → moved, or failed /
 *   skipped.  A layer's: queued → (mirroring, a live leaf) → copied →
 *   moved, or failed / skipped.  "committing" is the chain's point of no
 *   return: recorded before the first source VDI is touched, so that a
 *   restart finishes the commit (every step of it may be done twice).
 * - Threads: the job's thread runs a pool of `parallel` workers, one
 *   chain each at a time.  run->lock guards every state field and the
 *   state file's writes; the copy engine's progress callbacks take it
 *   briefly.
 * - Every layer's copy carries the source's other_config (without the
 *   task mark) and other_config["vdimotion-moved-from"] (host.h:
 *   HOST_MOVED_FROM): the source's uuid, then the source's own list.
 * - At the commit every layer's changed-block log follows it
 *   (carry_log), its predecessor relinked to the snapshot's new uuid
 *   when that snapshot is in the same chain, so
 *   VDI.list_changed_blocks walks the new uuids.  A cbt_metadata VDI
 *   (no data) cannot be copied yet: the plan refuses its chain with
 *   that reason (chain_unmovable), so nothing starts unless partial.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "cbt-log.h"
#include "cbt.h"
#include "copy.h"
#include "evacuate.h"
#include "jobs.h"
#include "json-builder.h"
#include "vdi-jobs.h"

#define TASK_MARK "vdimotion-task"
#define KIND "sr-evacuate"
#define RATE_SETTING "evacuate-copy-rate"
#define MAX_PARALLEL 64

/* ------------------------------------------------------------------ */
/* Options. */

struct options
{
  unsigned parallel;
  bool by_name;
  int format; /* -1: each layer's own */
  bool partial;
  GHashTable *exclude; /* uuid → itself */
};

static void
options_clear (struct options *o)
{
  g_clear_pointer (&o->exclude, g_hash_table_unref);
}

static const char *const option_keys[]
    = { "parallel", "order", "exclude", "dest-img-format", "partial", NULL };

/* OPTIONS into *O; -1 with *ERR (INVALID_VALUE key value why). */
static int
parse_options (struct host *h, GHashTable *options, struct options *o,
               char ***err)
{
  GHashTableIter it;
  gpointer k, v;

  o->parallel = h->jobs ? jobs_max_running (h->jobs) : 3;
  o->format = -1;
  o->exclude = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  if (options == NULL)
    return 0;
  g_hash_table_iter_init (&it, options);
  while (g_hash_table_iter_next (&it, &k, &v)) {
    const char *key = k, *val = v;
    guint64 n;

    if (!g_strv_contains (option_keys, key)) {
      host_err_set (err, "INVALID_VALUE", key, val,
                    "unknown option (parallel, order, exclude, "
                    "dest-img-format, partial)",
                    NULL);
      return -1;
    }
    if (strcmp (key, "parallel") == 0) {
      if (!g_ascii_string_to_unsigned (val, 10, 1, MAX_PARALLEL, &n, NULL)) {
        host_err_set (err, "INVALID_VALUE", key, val,
                      "a number of chains from 1 to 64", NULL);
        return -1;
      }
      o->parallel = (unsigned)n;
    }
    else if (strcmp (key, "order") == 0) {
      if (strcmp (val, "size") != 0 && strcmp (val, "name") != 0) {
        host_err_set (err, "INVALID_VALUE", key, val, "size or name", NULL);
        return -1;
      }
      o->by_name = strcmp (val, "name") == 0;
    }
    else if (strcmp (key, "dest-img-format") == 0) {
      o->format = vdisk_format_from_name (val);
      if (o->format < 0) {
        host_err_set (err, "INVALID_VALUE", key, val, "vhd, qcow2 or raw",
                      NULL);
        return -1;
      }
    }
    else if (strcmp (key, "partial") == 0) {
      if (strcmp (val, "true") != 0 && strcmp (val, "false") != 0) {
        host_err_set (err, "INVALID_VALUE", key, val, "true or false", NULL);
        return -1;
      }
      o->partial = strcmp (val, "true") == 0;
    }
    else {
      g_auto (GStrv) uuids = g_strsplit (val, ",", -1);

      for (size_t i = 0; uuids[i]; i++) {
        g_strstrip (uuids[i]);
        if (*uuids[i] == '\0')
          continue;
        if (!sr_uuid_is_valid (uuids[i])) {
          host_err_set (err, "INVALID_VALUE", key, uuids[i],
                        "not a VDI uuid", NULL);
          return -1;
        }
        g_hash_table_add (o->exclude, g_strdup (uuids[i]));
      }
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* The plan. */

struct plan_vdi
{
  struct sr_vdi *v;
  int parent;       /* index in the chain, -1 for its base */
  char *vbd;        /* the running VM's VBD using it, or NULL */
  int dest_format;
  char *reason;     /* why it stays (excluded), or NULL */
};

struct plan_chain
{
  GPtrArray *vdis; /* struct plan_vdi *, bottom first */
  uint64_t bytes, need, vsize;
  bool live;
  struct host_sr *dest;
  char *refused;
  const char *label; /* its top's name label */
};

struct plan_dest
{
  struct host_sr *s;
  uint64_t total, free, planned;
  int group; /* the first destination on the same filesystem */
};

struct plan
{
  struct host_sr *src;
  struct options o;
  GArray *dests;      /* struct plan_dest */
  GPtrArray *chains;  /* struct plan_chain *, in their order */
  GPtrArray *excluded; /* struct plan_vdi *, with their reason */
  double rate;
  char *rate_source;
};

static void
plan_vdi_free (gpointer p)
{
  struct plan_vdi *pv = p;

  sr_vdi_free (pv->v);
  g_free (pv->vbd);
  g_free (pv->reason);
  g_free (pv);
}

static void
plan_chain_free (gpointer p)
{
  struct plan_chain *c = p;

  g_ptr_array_unref (c->vdis);
  g_free (c->refused);
  g_free (c);
}

static void
plan_free (struct plan *p)
{
  if (p == NULL)
    return;
  options_clear (&p->o);
  if (p->dests)
    g_array_unref (p->dests);
  if (p->chains)
    g_ptr_array_unref (p->chains);
  if (p->excluded)
    g_ptr_array_unref (p->excluded);
  g_free (p->rate_source);
  g_free (p);
}
typedef struct plan plan;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (plan, plan_free)

/* The uuid of the VBD of a running VM that uses VDI UUID, or NULL. */
static char *
running_vbd (struct host *h, const char *uuid)
{
  g_autoptr (GPtrArray) vbds = state_list (h->state, "vbds", "vdi", uuid);

  for (guint i = 0; i < vbds->len; i++) {
    g_autoptr (state_vbd) b = state_vbd_get (h->state, vbds->pdata[i]);

    if (b && b->pid > 0)
      return g_strdup (b->uuid);
  }
  return NULL;
}

/* The copy rate of this host (bytes/s) and where the figure came from. */
static double
copy_rate (struct host *h, char **source)
{
  g_autofree char *s = state_setting_get (h->state, RATE_SETTING);
  double rate = 0;
  unsigned n = 0;

  if (s && sscanf (s, "%lf %u", &rate, &n) == 2 && rate > 0 && n > 0) {
    *source = g_strdup_printf ("measured on this host: %u copies", n);
    return rate;
  }
  *source = g_strdup ("default: no copy measured on this host yet");
  return EVACUATE_DEFAULT_RATE;
}

/* Fold a copy of BYTES in SECONDS into the host's rate. */
static void
record_rate (struct host *h, uint64_t bytes, double seconds)
{
  static GMutex lock;
  g_autofree char *s = NULL;
  g_autofree char *text = NULL;
  double rate = 0, now;
  unsigned n = 0;

  /* Too small a copy says more about the overheads than the rate. */
  if (bytes < (1u << 20) || seconds < 0.01)
    return;
  now = (double)bytes / seconds;
  g_mutex_lock (&lock);
  s = state_setting_get (h->state, RATE_SETTING);
  if (!(s && sscanf (s, "%lf %u", &rate, &n) == 2 && rate > 0))
    rate = now, n = 0;
  rate = n ? 0.7 * rate + 0.3 * now : now;
  text = g_strdup_printf ("%.0f %u", rate, n + 1);
  if (state_setting_set (h->state, RATE_SETTING, text) == -1)
    g_debug ("the copy rate was not recorded");
  g_mutex_unlock (&lock);
}

/* Add V's tree (V a base) to chain C, bottom first: a parent always
 * before its children.  KIDS: uuid → GPtrArray of children. */
static void
add_tree (struct host *h, struct plan_chain *c, struct sr_vdi *v, int parent,
          GHashTable *kids, const struct options *o)
{
  struct plan_vdi *pv = g_new0 (struct plan_vdi, 1);
  GPtrArray *children = g_hash_table_lookup (kids, v->uuid);
  int me = (int)c->vdis->len;

  pv->v = v;
  pv->parent = parent;
  pv->vbd = running_vbd (h, v->uuid);
  pv->dest_format = o->format >= 0 ? o->format : (int)v->format;
  g_ptr_array_add (c->vdis, pv);
  for (guint i = 0; children && i < children->len; i++)
    add_tree (h, c, children->pdata[i], me, kids, o);
}

/* Put the live leaves last (a leaf has no children, so the order stays
 * parents first): a chain commits right after its pivot. */
static void
live_last (struct plan_chain *c)
{
  g_autoptr (GPtrArray) order = g_ptr_array_new ();
  g_autofree int *new_index = g_new (int, c->vdis->len);

  for (int pass = 0; pass < 2; pass++)
    for (guint i = 0; i < c->vdis->len; i++) {
      struct plan_vdi *pv = c->vdis->pdata[i];

      if ((pv->vbd != NULL) == (pass == 1)) {
        new_index[i] = (int)order->len;
        g_ptr_array_add (order, pv);
      }
    }
  for (guint i = 0; i < order->len; i++) {
    struct plan_vdi *pv = order->pdata[i];

    if (pv->parent >= 0)
      pv->parent = new_index[pv->parent];
    c->vdis->pdata[i] = pv;
  }
}

/* Why chain C cannot move whatever the space (or NULL). */
static char *
chain_unmovable (const struct plan_chain *c, const struct options *o)
{
  unsigned live = 0;

  for (guint i = 0; i < c->vdis->len; i++) {
    struct plan_vdi *pv = c->vdis->pdata[i];
    bool has_child = false;

    for (guint j = 0; j < c->vdis->len; j++)
      has_child |= ((struct plan_vdi *)c->vdis->pdata[j])->parent == (int)i;
    if (pv->vbd && has_child)
      return g_strdup_printf ("VDI %s is used by a running VM but is not a "
                              "leaf of its chain",
                              pv->v->uuid);
    if (pv->v->cbt_metadata)
      return g_strdup_printf ("VDI %s is a cbt_metadata snapshot (its data "
                              "was destroyed): an evacuation does not move "
                              "one yet; exclude it (its chain stays) or "
                              "VDI.destroy it",
                              pv->v->uuid);
    live += pv->vbd != NULL;
  }
  if (live > 1)
    return g_strdup_printf ("%u running VMs use leaves of this chain; move "
                            "their disks one at a time (VDI.pool_migrate)",
                            live);
  if (o->format == VDISK_FORMAT_RAW && c->vdis->len > 1)
    return g_strdup_printf ("dest-img-format raw cannot have a parent: a "
                            "chain of %u layers needs vhd or qcow2",
                            c->vdis->len);
  return NULL;
}

static int
by_size (gconstpointer a, gconstpointer b)
{
  const struct plan_chain *x = *(struct plan_chain *const *)a;
  const struct plan_chain *y = *(struct plan_chain *const *)b;

  if (x->bytes != y->bytes)
    return x->bytes > y->bytes ? -1 : 1;
  return g_strcmp0 (x->label, y->label);
}

static int
by_name (gconstpointer a, gconstpointer b)
{
  const struct plan_chain *x = *(struct plan_chain *const *)a;
  const struct plan_chain *y = *(struct plan_chain *const *)b;
  int r = g_strcmp0 (x->label, y->label);

  if (r)
    return r;
  return by_size (a, b);
}

/* The destinations and their space; -1 with *ERR. */
static int
plan_dests (struct host *h, struct plan *p, const char *const *dest,
            size_t n_dest, char ***err)
{
  if (n_dest == 0) {
    host_err_set (err, "INVALID_VALUE", "dest_srs", "",
                  "at least one destination SR", NULL);
    return -1;
  }
  for (size_t i = 0; i < n_dest; i++) {
    struct plan_dest d = { .s = host_find_sr (h, dest[i]), .group = -1 };
    struct sr_stat st;
    struct stat sb;
    dev_t dev = 0;
    g_autofree char *ref = host_ref (dest[i]);

    if (d.s == NULL) {
      host_err_set (err, "HANDLE_INVALID", "SR", ref, NULL);
      return -1;
    }
    if (d.s == p->src) {
      host_err_set (err, "INVALID_VALUE", "dest_srs", ref,
                    "the SR to evacuate cannot be a destination", NULL);
      return -1;
    }
    for (guint j = 0; j < p->dests->len; j++)
      if (g_array_index (p->dests, struct plan_dest, j).s == d.s) {
        host_err_set (err, "INVALID_VALUE", "dest_srs", ref,
                      "given twice", NULL);
        return -1;
      }
    if (sr_stat (d.s->sr, &st) == -1) {
      host_err_sr (err, "SR", ref, "SR.evacuate");
      return -1;
    }
    d.total = st.total_bytes;
    d.free = st.free_bytes;
    /* Destinations on one filesystem share its free space. */
    if (stat (sr_get_path (d.s->sr), &sb) == 0)
      dev = sb.st_dev;
    for (guint j = 0; j < p->dests->len && d.group < 0; j++) {
      struct plan_dest *o = &g_array_index (p->dests, struct plan_dest, j);
      struct stat ob;

      if (stat (sr_get_path (o->s->sr), &ob) == 0 && ob.st_dev == dev)
        d.group = o->group;
    }
    if (d.group < 0)
      d.group = (int)p->dests->len;
    g_array_append_val (p->dests, d);
  }
  return 0;
}

/* Choose C's destination: the one with the most free space left that
 * holds it, or say why none does. */
static void
place (struct plan *p, struct plan_chain *c)
{
  struct plan_dest *best = NULL, *roomiest = NULL;
  uint64_t largest = 0;

  for (guint i = 0; i < p->dests->len; i++) {
    struct plan_dest *d = &g_array_index (p->dests, struct plan_dest, i);
    struct plan_dest *g = &g_array_index (p->dests, struct plan_dest,
                                          d->group);

    largest = MAX (largest, d->total);
    if (roomiest == NULL || g->free > roomiest->free)
      roomiest = g;
    if (c->vsize > d->total || c->need > g->free)
      continue;
    if (best == NULL
        || g->free > g_array_index (p->dests, struct plan_dest,
                                    best->group).free)
      best = d;
  }
  if (best) {
    struct plan_dest *g = &g_array_index (p->dests, struct plan_dest,
                                          best->group);

    g->free -= c->need;
    best->planned += c->bytes;
    c->dest = best->s;
  }
  else if (c->vsize > largest)
    c->refused = g_strdup_printf (
        "its virtual size (%" G_GUINT64_FORMAT " bytes) is larger than any "
        "destination SR (the largest holds %" G_GUINT64_FORMAT " bytes)",
        c->vsize, largest);
  else
    c->refused = g_strdup_printf (
        "it needs %" G_GUINT64_FORMAT " bytes (%" G_GUINT64_FORMAT
        " with the margin); the most free on a destination is %"
        G_GUINT64_FORMAT " bytes",
        c->bytes, c->need, roomiest ? roomiest->free : 0);
}

/* Every VDI of P->src into chains (bottom first), or excluded. */
static int
plan_chains (struct host *h, struct plan *p, char ***err)
{
  struct sr_vdi_list list = { 0 };
  g_autoptr (GHashTable) by_uuid = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) kids = g_hash_table_new_full (
      g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_ptr_array_unref);
  g_autofree char *src_ref = host_ref (sr_get_uuid (p->src->sr));
  GHashTableIter it;
  gpointer k;

  if (sr_vdi_list (p->src->sr, &list) == -1) {
    host_err_sr (err, "SR", src_ref, "SR.evacuate");
    return -1;
  }
  for (size_t i = 0; i < list.len; i++)
    g_hash_table_insert (by_uuid, list.v[i]->uuid, list.v[i]);
  g_hash_table_iter_init (&it, p->o.exclude);
  while (g_hash_table_iter_next (&it, &k, NULL)) {
    struct sr_vdi *v = g_hash_table_lookup (by_uuid, k);

    if (v == NULL || !v->managed) {
      host_err_set (err, "INVALID_VALUE", "exclude", (const char *)k,
                    "no VDI of the SR to evacuate has this uuid", NULL);
      sr_vdi_list_free (&list);
      return -1;
    }
  }
  for (size_t i = 0; i < list.len; i++) {
    struct sr_vdi *v = list.v[i];
    GPtrArray *a;

    if (!v->parent_uuid[0] || !g_hash_table_contains (by_uuid, v->parent_uuid))
      continue;
    a = g_hash_table_lookup (kids, v->parent_uuid);
    if (a == NULL)
      g_hash_table_insert (kids, v->parent_uuid, a = g_ptr_array_new ());
    g_ptr_array_add (a, v);
  }
  for (size_t i = 0; i < list.len; i++) {
    struct sr_vdi *v = list.v[i];
    struct plan_chain *c;
    const char *why = NULL;

    if (v->parent_uuid[0] && g_hash_table_contains (by_uuid, v->parent_uuid))
      continue; /* not a base */
    c = g_new0 (struct plan_chain, 1);
    c->vdis = g_ptr_array_new_with_free_func (plan_vdi_free);
    add_tree (h, c, v, -1, kids, &p->o);
    live_last (c);
    for (guint j = 0; j < c->vdis->len; j++) {
      struct plan_vdi *pv = c->vdis->pdata[j];

      c->bytes += pv->v->physical_utilisation;
      c->vsize = MAX (c->vsize, pv->v->virtual_size);
      c->live |= pv->vbd != NULL;
      if (why == NULL && g_hash_table_contains (p->o.exclude, pv->v->uuid))
        why = pv->v->uuid;
    }
    c->need = EVACUATE_MARGIN (c->bytes, c->vdis->len);
    c->label = ((struct plan_vdi *)c->vdis->pdata[c->vdis->len - 1])
                   ->v->name_label;
    if (why) {
      /* The chain stays whole where it is. */
      while (c->vdis->len) {
        struct plan_vdi *pv = g_ptr_array_steal_index (c->vdis, 0);

        pv->reason = g_hash_table_contains (p->o.exclude, pv->v->uuid)
                         ? g_strdup ("excluded")
                         : g_strdup_printf (
                               "in the chain of the excluded VDI %s", why);
        g_ptr_array_add (p->excluded, pv);
      }
      plan_chain_free (c);
      continue;
    }
    g_ptr_array_add (p->chains, c);
  }
  /* The records now belong to the chains: free the list's array only. */
  g_free (list.v);
  return 0;
}

static struct plan *
make_plan (struct host *h, const char *src, const char *const *dest,
           size_t n_dest, GHashTable *options, char ***err)
{
  g_autoptr (plan) p = g_new0 (struct plan, 1);
  g_autofree char *src_ref = host_ref (src);

  p->dests = g_array_new (FALSE, TRUE, sizeof (struct plan_dest));
  p->chains = g_ptr_array_new_with_free_func (plan_chain_free);
  p->excluded = g_ptr_array_new_with_free_func (plan_vdi_free);
  if ((p->src = host_find_sr (h, src)) == NULL) {
    host_err_set (err, "HANDLE_INVALID", "SR", src_ref, NULL);
    return NULL;
  }
  if (parse_options (h, options, &p->o, err) == -1
      || plan_dests (h, p, dest, n_dest, err) == -1
      || plan_chains (h, p, err) == -1)
    return NULL;
  g_ptr_array_sort (p->chains, p->o.by_name ? by_name : by_size);
  for (guint i = 0; i < p->chains->len; i++) {
    struct plan_chain *c = p->chains->pdata[i];

    c->refused = chain_unmovable (c, &p->o);
    if (c->refused == NULL)
      place (p, c);
  }
  p->rate = copy_rate (h, &p->rate_source);
  return g_steal_pointer (&p);
}

/* ------------------------------------------------------------------ */
/* The plan as JSON. */

/* A uuid, or null where there is none (NULL or ""). */
static void
add_uuid_or_null (JsonBuilder *b, const char *name, const char *uuid)
{
  json_add_string_member (b, name, uuid && *uuid ? uuid : NULL);
}

/* NAME: [the strings of A]. */
static void
add_strings (JsonBuilder *b, const char *name, GPtrArray *a)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (guint i = 0; i < a->len; i++)
    json_builder_add_string_value (b, a->pdata[i]);
  json_builder_end_array (b);
}

/* "dest_srs": the uuids of P's destinations. */
static void
add_plan_dests (JsonBuilder *b, const struct plan *p)
{
  g_autoptr (GPtrArray) a = g_ptr_array_new ();

  for (guint i = 0; i < p->dests->len; i++)
    g_ptr_array_add (a, (char *)sr_get_uuid (
                            g_array_index (p->dests, struct plan_dest, i)
                                .s->sr));
  add_strings (b, "dest_srs", a);
}

static void
plan_vdi_json (JsonBuilder *b, const struct plan_chain *c,
               const struct plan_vdi *pv)
{
  json_builder_begin_object (b);
  json_add_string_member (b, "uuid", pv->v->uuid);
  json_add_string_member (b, "name_label", pv->v->name_label);
  json_add_string_member (b, "format", vdisk_format_name (pv->v->format));
  json_add_string_member (b, "dest_format",
                          vdisk_format_name (pv->dest_format));
  json_add_int_member (b, "virtual_size", pv->v->virtual_size);
  json_add_int_member (b, "bytes", pv->v->physical_utilisation);
  add_uuid_or_null (b, "parent",
                    pv->parent >= 0 ? ((struct plan_vdi *)c->vdis
                                           ->pdata[pv->parent])->v->uuid
                                    : NULL);
  json_add_bool_member (b, "is_snapshot", pv->v->is_snapshot);
  add_uuid_or_null (b, "snapshot_of", pv->v->snapshot_of);
  json_add_bool_member (b, "managed", pv->v->managed);
  add_uuid_or_null (b, "vbd", pv->vbd);
  json_builder_end_object (b);
}

static char *
json_text (JsonBuilder *b)
{
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autoptr (JsonGenerator) g = json_generator_new ();

  json_generator_set_root (g, root);
  json_generator_set_pretty (g, TRUE);
  return json_generator_to_data (g, NULL);
}

static bool
plan_fits (const struct plan *p)
{
  for (guint i = 0; i < p->chains->len; i++)
    if (((struct plan_chain *)p->chains->pdata[i])->refused)
      return false;
  return true;
}

static char *
plan_json (const struct plan *p)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  uint64_t bytes = 0, refused_bytes = 0, vdis = 0;
  unsigned refused = 0, moving = 0;

  json_builder_begin_object (b);
  json_add_string_member (b, "sr", sr_get_uuid (p->src->sr));
  add_plan_dests (b, p);
  json_add_int_member (b, "parallel", p->o.parallel);
  json_add_string_member (b, "order", p->o.by_name ? "name" : "size");
  json_add_bool_member (b, "partial", p->o.partial);
  json_add_string_member (b, "dest_img_format",
                          p->o.format >= 0 ? vdisk_format_name (p->o.format)
                                           : NULL);
  json_add_bool_member (b, "fits", plan_fits (p));
  json_builder_set_member_name (b, "chains");
  json_builder_begin_array (b);
  for (guint i = 0; i < p->chains->len; i++) {
    const struct plan_chain *c = p->chains->pdata[i];

    json_builder_begin_object (b);
    json_add_int_member (b, "index", i);
    json_add_bool_member (b, "live", c->live);
    json_add_int_member (b, "bytes", c->bytes);
    json_add_int_member (b, "need", c->need);
    json_add_int_member (b, "virtual_size", c->vsize);
    add_uuid_or_null (b, "dest_sr", c->dest ? sr_get_uuid (c->dest->sr)
                                            : NULL);
    json_add_string_member (b, "refused", c->refused);
    json_builder_set_member_name (b, "vdis");
    json_builder_begin_array (b);
    for (guint j = 0; j < c->vdis->len; j++)
      plan_vdi_json (b, c, c->vdis->pdata[j]);
    json_builder_end_array (b);
    json_builder_end_object (b);
    vdis += c->vdis->len;
    if (c->refused)
      refused++, refused_bytes += c->bytes;
    else
      moving++, bytes += c->bytes;
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "excluded");
  json_builder_begin_array (b);
  for (guint i = 0; i < p->excluded->len; i++) {
    const struct plan_vdi *pv = p->excluded->pdata[i];

    json_builder_begin_object (b);
    json_add_string_member (b, "uuid", pv->v->uuid);
    json_add_string_member (b, "name_label", pv->v->name_label);
    json_add_string_member (b, "reason", pv->reason);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "destinations");
  json_builder_begin_array (b);
  for (guint i = 0; i < p->dests->len; i++) {
    const struct plan_dest *d = &g_array_index (p->dests, struct plan_dest, i);
    struct sr_stat st = { 0 };

    if (sr_stat (d->s->sr, &st) == -1)
      st.free_bytes = 0;
    json_builder_begin_object (b);
    json_add_string_member (b, "sr", sr_get_uuid (d->s->sr));
    json_add_string_member (b, "name_label", d->s->name);
    json_add_int_member (b, "free_bytes", st.free_bytes);
    json_add_int_member (b, "planned_bytes", d->planned);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "totals");
  json_builder_begin_object (b);
  json_add_int_member (b, "vdis", vdis + p->excluded->len);
  json_add_int_member (b, "chains", p->chains->len);
  json_add_int_member (b, "bytes", bytes);
  json_add_int_member (b, "refused_chains", refused);
  json_add_int_member (b, "refused_bytes", refused_bytes);
  json_add_int_member (b, "excluded_vdis", p->excluded->len);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "rate");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "bytes_per_second");
  json_builder_add_double_value (b, p->rate);
  json_add_string_member (b, "source", p->rate_source);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "estimated_seconds");
  json_builder_add_double_value (
      b, moving ? (double)bytes / p->rate / MIN (p->o.parallel, moving) : 0.0);
  json_builder_end_object (b);
  return json_text (b);
}

char *
evacuate_plan (struct host *h, const char *src, const char *const *dest,
               size_t n_dest, GHashTable *options, char ***err)
{
  g_autoptr (plan) p = make_plan (h, src, dest, n_dest, options, err);

  return p ? plan_json (p) : NULL;
}

/* ------------------------------------------------------------------ */
/* The run's durable state. */

struct layer
{
  char from[SR_UUID_LEN + 1];
  char to[SR_UUID_LEN + 1]; /* "" until chosen */
  char *name_label;
  int parent; /* index in the chain, -1 for its base */
  int format; /* of the new VDI */
  char *vbd;  /* a live leaf's VBD, or NULL */
  char *state; /* queued, mirroring, copied, moved, failed, skipped */
  char *error;
  uint64_t bytes; /* planned (the layer's physical utilisation) */
  uint64_t done;  /* moved so far */
  double seconds;
};

struct chain
{
  char *state; /* queued, moving, committing, moved, failed, skipped */
  char *error;
  char *code; /* a failure's XenAPI code */
  char dest[SR_UUID_LEN + 1];
  bool live;
  GPtrArray *layers; /* struct layer *, bottom first */
};

struct run
{
  struct job *job;
  struct host *h;
  const char *task;
  struct host_sr *src;
  GPtrArray *dests;    /* uuids */
  unsigned parallel;
  GPtrArray *chains;   /* struct chain * */
  GPtrArray *excluded; /* struct layer * (state skipped, error: why) */
  char *path;          /* the state file */
  GMutex lock;
  uint64_t total;      /* bytes of the chains to move */
  gint64 last_report;  /* when other_config's report was last made */
  /* Wall-clock seconds the run took in earlier starts, and when this
   * start's began (monotonic µs, 0 before it runs). */
  double elapsed;
  gint64 t0;
};

static void
layer_free (gpointer p)
{
  struct layer *l = p;

  g_free (l->name_label);
  g_free (l->vbd);
  g_free (l->state);
  g_free (l->error);
  g_free (l);
}

static void
chain_free (gpointer p)
{
  struct chain *c = p;

  g_free (c->state);
  g_free (c->error);
  g_free (c->code);
  g_ptr_array_unref (c->layers);
  g_free (c);
}

static void
run_free (struct run *r)
{
  if (r == NULL)
    return;
  g_ptr_array_unref (r->dests);
  g_ptr_array_unref (r->chains);
  g_ptr_array_unref (r->excluded);
  g_free (r->path);
  g_mutex_clear (&r->lock);
  g_free (r);
}
typedef struct run run;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (run, run_free)

static void
set_str (char **field, const char *v)
{
  g_free (*field);
  *field = g_strdup (v);
}

static bool
is (const char *state, const char *what)
{
  return g_strcmp0 (state, what) == 0;
}

static char *
state_path (struct job *job)
{
  g_autofree char *file
      = g_strconcat (job_row (job)->task, ".evacuate.json", NULL);

  return g_build_filename (jobs_dir (job_host (job)->jobs), file, NULL);
}

static char *
layer_journal (const struct run *r, const struct layer *l)
{
  g_autofree char *file = g_strconcat (r->task, ".", l->to, ".journal", NULL);

  return g_build_filename (jobs_dir (r->h->jobs), file, NULL);
}

static struct run *
run_new (struct job *job)
{
  struct run *r = g_new0 (struct run, 1);

  r->job = job;
  r->h = job_host (job);
  r->task = job_row (job)->task;
  r->src = host_find_sr (r->h, job_row (job)->vdi);
  r->dests = g_ptr_array_new_with_free_func (g_free);
  r->chains = g_ptr_array_new_with_free_func (chain_free);
  r->excluded = g_ptr_array_new_with_free_func (layer_free);
  r->path = state_path (job);
  g_mutex_init (&r->lock);
  return r;
}

/* The run's first state, from the plan. */
static void
run_from_plan (struct run *r, const struct plan *p)
{
  r->parallel = p->o.parallel;
  for (guint i = 0; i < p->dests->len; i++)
    g_ptr_array_add (r->dests, g_strdup (sr_get_uuid (
                                   g_array_index (p->dests, struct plan_dest,
                                                  i).s->sr)));
  for (guint i = 0; i < p->chains->len; i++) {
    const struct plan_chain *pc = p->chains->pdata[i];
    struct chain *c = g_new0 (struct chain, 1);

    c->layers = g_ptr_array_new_with_free_func (layer_free);
    c->live = pc->live;
    c->state = g_strdup (pc->refused ? "skipped" : "queued");
    c->error = g_strdup (pc->refused);
    if (pc->dest)
      g_strlcpy (c->dest, sr_get_uuid (pc->dest->sr), sizeof c->dest);
    for (guint j = 0; j < pc->vdis->len; j++) {
      const struct plan_vdi *pv = pc->vdis->pdata[j];
      struct layer *l = g_new0 (struct layer, 1);

      g_strlcpy (l->from, pv->v->uuid, sizeof l->from);
      l->name_label = g_strdup (pv->v->name_label);
      l->parent = pv->parent;
      l->format = pv->dest_format;
      l->vbd = g_strdup (pv->vbd);
      l->state = g_strdup (c->state);
      l->error = pc->refused ? g_strdup_printf ("refused: %s", pc->refused)
                             : NULL;
      l->bytes = pv->v->physical_utilisation;
      g_ptr_array_add (c->layers, l);
    }
    g_ptr_array_add (r->chains, c);
  }
  for (guint i = 0; i < p->excluded->len; i++) {
    const struct plan_vdi *pv = p->excluded->pdata[i];
    struct layer *l = g_new0 (struct layer, 1);

    g_strlcpy (l->from, pv->v->uuid, sizeof l->from);
    l->name_label = g_strdup (pv->v->name_label);
    l->parent = -1;
    l->format = pv->v->format;
    l->state = g_strdup ("skipped");
    l->error = g_strdup (pv->reason);
    l->bytes = pv->v->physical_utilisation;
    g_ptr_array_add (r->excluded, l);
  }
}

static void
layer_json (JsonBuilder *b, const struct layer *l)
{
  json_builder_begin_object (b);
  json_add_string_member (b, "from", l->from);
  add_uuid_or_null (b, "to", l->to);
  json_add_string_member (b, "name_label", l->name_label);
  json_add_int_member (b, "parent", (uint64_t)(gint64)l->parent);
  json_add_string_member (b, "format", vdisk_format_name (l->format));
  json_add_string_member (b, "vbd", l->vbd);
  json_add_string_member (b, "state", l->state);
  json_add_string_member (b, "error", l->error);
  json_add_int_member (b, "bytes", l->bytes);
  json_add_int_member (b, "done", l->done);
  json_builder_set_member_name (b, "seconds");
  json_builder_add_double_value (b, l->seconds);
  json_builder_end_object (b);
}

/* Wall-clock seconds the run took so far, over every start. */
static double
run_elapsed (const struct run *r)
{
  return r->elapsed
         + (r->t0 ? (double)(g_get_monotonic_time () - r->t0) / G_USEC_PER_SEC
                  : 0.0);
}

/* The whole state as the file keeps it.  Under r->lock. */
static char *
state_json (const struct run *r)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  json_add_int_member (b, "parallel", r->parallel);
  json_builder_set_member_name (b, "elapsed");
  json_builder_add_double_value (b, run_elapsed (r));
  add_strings (b, "dest_srs", r->dests);
  json_builder_set_member_name (b, "chains");
  json_builder_begin_array (b);
  for (guint i = 0; i < r->chains->len; i++) {
    const struct chain *c = r->chains->pdata[i];

    json_builder_begin_object (b);
    json_add_string_member (b, "state", c->state);
    json_add_string_member (b, "error", c->error);
    json_add_string_member (b, "code", c->code);
    add_uuid_or_null (b, "dest_sr", c->dest);
    json_add_bool_member (b, "live", c->live);
    json_builder_set_member_name (b, "layers");
    json_builder_begin_array (b);
    for (guint j = 0; j < c->layers->len; j++)
      layer_json (b, c->layers->pdata[j]);
    json_builder_end_array (b);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "excluded");
  json_builder_begin_array (b);
  for (guint i = 0; i < r->excluded->len; i++)
    layer_json (b, r->excluded->pdata[i]);
  json_builder_end_array (b);
  json_builder_end_object (b);
  return json_text (b);
}

static const char *
member_str (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);

  return n && JSON_NODE_HOLDS_VALUE (n) ? json_node_get_string (n) : NULL;
}

static gint64
member_int (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);

  return n && JSON_NODE_HOLDS_VALUE (n) ? json_node_get_int (n) : 0;
}

static struct layer *
layer_load (JsonObject *o)
{
  struct layer *l = g_new0 (struct layer, 1);
  JsonNode *sec = json_object_get_member (o, "seconds");
  int f = vdisk_format_from_name (member_str (o, "format") ?: "");

  g_strlcpy (l->from, member_str (o, "from") ?: "", sizeof l->from);
  g_strlcpy (l->to, member_str (o, "to") ?: "", sizeof l->to);
  l->name_label = g_strdup (member_str (o, "name_label") ?: "");
  l->parent = (int)member_int (o, "parent");
  l->format = f < 0 ? VDISK_FORMAT_VHD : f;
  l->vbd = g_strdup (member_str (o, "vbd"));
  l->state = g_strdup (member_str (o, "state") ?: "queued");
  l->error = g_strdup (member_str (o, "error"));
  l->bytes = (uint64_t)member_int (o, "bytes");
  l->done = (uint64_t)member_int (o, "done");
  l->seconds = sec && JSON_NODE_HOLDS_VALUE (sec) ? json_node_get_double (sec)
                                                  : 0;
  return l;
}

/* Remove what a save that a kill cut short left beside PATH: the
 * temporary files g_file_set_contents_full writes before its rename
 * (PATH.XXXXXX).  A thread killed mid-save with the daemon leaves one;
 * the state itself is the last file renamed into place. */
static void
remove_interrupted_saves (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  size_t n = strlen (base);
  const char *e;

  while (d && (e = g_dir_read_name (d)) != NULL)
    if (strlen (e) == n + 7 && strncmp (e, base, n) == 0 && e[n] == '.') {
      g_autofree char *p = g_build_filename (dir, e, NULL);

      (void)g_unlink (p);
    }
}

/* Read the state file back; -1 with *ERROR. */
static int
run_load (struct run *r, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *root;
  JsonArray *a;

  remove_interrupted_saves (r->path);
  if (!json_parser_load_from_file (parser, r->path, error))
    return -1;
  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "%s: not a JSON object", r->path);
    return -1;
  }
  root = json_node_get_object (json_parser_get_root (parser));
  r->elapsed = json_object_get_double_member_with_default (root, "elapsed",
                                                           0.0);
  r->parallel = (unsigned)CLAMP (member_int (root, "parallel"), 1,
                                 MAX_PARALLEL);
  a = json_object_get_array_member (root, "dest_srs");
  for (guint i = 0; a && i < json_array_get_length (a); i++)
    g_ptr_array_add (r->dests, g_strdup (json_array_get_string_element (a, i)));
  a = json_object_get_array_member (root, "chains");
  for (guint i = 0; a && i < json_array_get_length (a); i++) {
    JsonObject *o = json_array_get_object_element (a, i);
    JsonArray *la = json_object_get_array_member (o, "layers");
    struct chain *c = g_new0 (struct chain, 1);

    c->layers = g_ptr_array_new_with_free_func (layer_free);
    c->state = g_strdup (member_str (o, "state") ?: "queued");
    c->error = g_strdup (member_str (o, "error"));
    c->code = g_strdup (member_str (o, "code"));
    g_strlcpy (c->dest, member_str (o, "dest_sr") ?: "", sizeof c->dest);
    c->live = json_object_get_boolean_member_with_default (o, "live", FALSE);
    for (guint j = 0; la && j < json_array_get_length (la); j++)
      g_ptr_array_add (c->layers,
                       layer_load (json_array_get_object_element (la, j)));
    g_ptr_array_add (r->chains, c);
  }
  a = json_object_get_array_member (root, "excluded");
  for (guint i = 0; a && i < json_array_get_length (a); i++)
    g_ptr_array_add (r->excluded,
                     layer_load (json_array_get_object_element (a, i)));
  return 0;
}

/* Write the state file (atomically, durably).  Under r->lock.  -1 with
 * *ERROR. */
static int
run_save_locked (struct run *r, GError **error)
{
  g_autofree char *text = state_json (r);

  if (!g_file_set_contents_full (r->path, text, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT
                                     | G_FILE_SET_CONTENTS_DURABLE,
                                 0600, error))
    return -1;
  return 0;
}

/* ------------------------------------------------------------------ */
/* The report. */

static const char *
report_state (const char *layer_state)
{
  if (is (layer_state, "mirroring") || is (layer_state, "copied"))
    return "moving";
  return layer_state;
}

static void
report_vdi (JsonBuilder *b, const struct run *r, const struct chain *c,
            int index, const struct layer *l, bool live)
{
  const char *st = report_state (l->state);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "from");
  json_builder_begin_object (b);
  json_add_string_member (b, "sr", sr_get_uuid (r->src->sr));
  json_add_string_member (b, "uuid", l->from);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "to");
  json_builder_begin_object (b);
  add_uuid_or_null (b, "sr", c ? c->dest : NULL);
  add_uuid_or_null (b, "uuid", is (st, "skipped") || is (st, "failed")
                                   ? NULL
                                   : l->to);
  json_builder_end_object (b);
  json_add_string_member (b, "name_label", l->name_label);
  json_builder_set_member_name (b, "chain");
  if (index >= 0)
    json_builder_add_int_value (b, index);
  else
    json_builder_add_null_value (b);
  json_add_bool_member (b, "live", live);
  json_add_string_member (b, "state", st);
  json_add_int_member (b, "bytes", l->done);
  json_builder_set_member_name (b, "seconds");
  json_builder_add_double_value (b, l->seconds);
  json_add_string_member (b, "error", l->error);
  json_builder_end_object (b);
}

/* Bytes moved over bytes planned.  Under r->lock. */
static double
run_progress (const struct run *r)
{
  uint64_t done = 0;

  for (guint i = 0; i < r->chains->len; i++) {
    const struct chain *c = r->chains->pdata[i];

    for (guint j = 0; j < c->layers->len; j++)
      done += ((struct layer *)c->layers->pdata[j])->done;
  }
  return r->total ? MIN (1.0, (double)done / (double)r->total) : 1.0;
}

/* The report, in state STATE ("running", "done", ...).  Under r->lock. */
static char *
report_json (const struct run *r, const char *state)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  unsigned n = 0, moved = 0, failed = 0, skipped = 0, queued = 0, moving = 0;
  uint64_t bytes = 0;
  double seconds = run_elapsed (r);

  json_builder_begin_object (b);
  json_add_string_member (b, "task", r->task);
  json_add_string_member (b, "sr", sr_get_uuid (r->src->sr));
  add_strings (b, "dest_srs", r->dests);
  json_add_string_member (b, "state", state);
  json_builder_set_member_name (b, "progress");
  json_builder_add_double_value (b, run_progress (r));
  json_builder_set_member_name (b, "vdis");
  json_builder_begin_array (b);
  for (guint i = 0; i <= r->chains->len; i++) {
    const struct chain *c = i < r->chains->len ? r->chains->pdata[i] : NULL;
    GPtrArray *ls = c ? c->layers : r->excluded;

    for (guint j = 0; j < ls->len; j++) {
      const struct layer *l = ls->pdata[j];
      const char *st = report_state (l->state);

      report_vdi (b, r, c, c ? (int)i : -1, l, l->vbd != NULL);
      n++;
      moved += is (st, "moved");
      failed += is (st, "failed");
      skipped += is (st, "skipped");
      queued += is (st, "queued");
      moving += is (st, "moving");
      bytes += l->done;
    }
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "totals");
  json_builder_begin_object (b);
  json_add_int_member (b, "vdis", n);
  json_add_int_member (b, "moved", moved);
  json_add_int_member (b, "failed", failed);
  json_add_int_member (b, "skipped", skipped);
  json_add_int_member (b, "queued", queued);
  json_add_int_member (b, "moving", moving);
  json_add_int_member (b, "bytes", bytes);
  json_builder_set_member_name (b, "seconds");
  json_builder_add_double_value (b, seconds);
  json_builder_set_member_name (b, "bytes_per_second");
  json_builder_add_double_value (b, seconds > 0 ? (double)bytes / seconds
                                                : 0.0);
  json_builder_end_object (b);
  json_builder_end_object (b);
  return json_text (b);
}

/* Show the report so far and the progress.  Under r->lock. */
static void
show_locked (struct run *r)
{
  g_autofree char *report = report_json (r, "running");

  r->last_report = g_get_monotonic_time ();
  job_set_other_config (r->job, "evacuate-report", report);
  job_set_progress (r->job, run_progress (r));
}

/* Record the state (and show it).  Before the point of no return a
 * failed write is the caller's failure; -1 with *ERR then. */
static int
run_save (struct run *r, char **err)
{
  g_autoptr (GError) error = NULL;
  int ret;

  g_mutex_lock (&r->lock);
  ret = run_save_locked (r, &error);
  show_locked (r);
  g_mutex_unlock (&r->lock);
  if (ret == -1) {
    if (err)
      *err = g_strdup_printf ("cannot record the evacuation's state: %s",
                              error->message);
    else
      g_critical ("task %s: cannot record the evacuation's state: %s; the "
                  "next start finds what was done",
                  r->task, error->message);
  }
  return ret;
}

/* Set layer L's (or chain C's) state under the lock. */
static void
set_layer (struct run *r, struct layer *l, const char *state,
           const char *error)
{
  g_mutex_lock (&r->lock);
  set_str (&l->state, state);
  set_str (&l->error, error);
  g_mutex_unlock (&r->lock);
}

static void
set_chain (struct run *r, struct chain *c, const char *state)
{
  g_mutex_lock (&r->lock);
  set_str (&c->state, state);
  g_mutex_unlock (&r->lock);
}

/* ------------------------------------------------------------------ */
/* Moving one chain. */

/* The new uuid of the layer of C that was SRC_UUID, or NULL. */
static const char *
new_uuid_of (const struct chain *c, const char *src_uuid)
{
  for (guint i = 0; i < c->layers->len; i++) {
    const struct layer *l = c->layers->pdata[i];

    if (strcmp (l->from, src_uuid) == 0)
      return l->to[0] ? l->to : NULL;
  }
  return NULL;
}

/* Choose (and record) the new uuids of every layer of C that has none,
 * before any is created. */
static int
choose_uuids (struct run *r, struct chain *c, char **err)
{
  bool chosen = false;

  g_mutex_lock (&r->lock);
  for (guint i = 0; i < c->layers->len; i++) {
    struct layer *l = c->layers->pdata[i];

    if (l->to[0])
      continue;
    if (sr_uuid_generate (l->to) == -1) {
      g_mutex_unlock (&r->lock);
      *err = g_strdup_printf ("cannot make a uuid: %s", sr_get_error ());
      return -1;
    }
    chosen = true;
  }
  set_str (&c->state, "moving");
  for (guint i = 0; i < c->layers->len; i++) {
    struct layer *l = c->layers->pdata[i];

    if (is (l->state, "queued"))
      set_str (&l->state, "moving");
  }
  g_mutex_unlock (&r->lock);
  if (run_save (r, err) == -1)
    return -1;
  if (chosen)
    job_crash_point ("evacuate-uuids-chosen");
  return 0;
}

/* Layer L's new VDI in DST: made (with the task's mark and the source's
 * record) unless a previous run made it.  NULL with *ERR. */
static struct sr_vdi *
make_layer (struct run *r, struct chain *c, struct layer *l,
            struct host_sr *dst, char **err)
{
  struct sr_vdi *v = sr_vdi_get_by_uuid (dst->sr, l->to);
  struct sr_vdi *src = NULL;
  struct sr_vdi_create_params p = { 0 };
  g_autoptr (GArray) oc = NULL;
  struct sr_kv mark = { (char *)TASK_MARK, (char *)r->task };
  struct sr_kv moved;
  g_autofree char *was = NULL;
  g_autofree char *journal = NULL;

  if (v) {
    host_vdi_claim (r->h, v->uuid, KIND);
    return v;
  }
  /* An image a crash left without its record goes, and its journal. */
  if (sr_vdi_destroy (dst->sr, l->to) == 0)
    g_message ("task %s: removed the partial image of VDI %s", r->task,
               l->to);
  journal = layer_journal (r, l);
  copy_journal_remove (journal);
  src = sr_vdi_get_by_uuid (r->src->sr, l->from);
  if (src == NULL) {
    *err = g_strdup_printf ("VDI %s is gone: %s", l->from, sr_get_error ());
    return NULL;
  }
  /* The copy knows what it was (host.h: HOST_MOVED_FROM). */
  was = host_moved_from (src->uuid,
                         sr_vdi_get_other_config (src, HOST_MOVED_FROM));
  moved = (struct sr_kv){ (char *)HOST_MOVED_FROM, was };
  oc = g_array_new (FALSE, FALSE, sizeof (struct sr_kv));
  for (size_t i = 0; i < src->n_other_config; i++)
    if (strcmp (src->other_config[i].key, TASK_MARK) != 0
        && strcmp (src->other_config[i].key, HOST_MOVED_FROM) != 0)
      g_array_append_val (oc, src->other_config[i]);
  g_array_append_val (oc, mark);
  g_array_append_val (oc, moved);
  p.name_description = src->name_description;
  p.uuid = l->to;
  p.parent_uuid = l->parent >= 0
                      ? ((struct layer *)c->layers->pdata[l->parent])->to
                      : NULL;
  p.other_config = (struct sr_kv *)oc->data;
  p.n_other_config = oc->len;
  p.unmanaged = !src->managed;
  if (src->is_snapshot) {
    /* A snapshot stays the snapshot of its VDI's copy, which this chain
     * makes too (else it keeps naming the VDI it was taken of). */
    const char *of = new_uuid_of (c, src->snapshot_of);

    p.is_snapshot = true;
    p.snapshot_of = of ? of : src->snapshot_of;
    p.snapshot_time = src->snapshot_time;
  }
  v = sr_vdi_create (dst->sr, src->name_label, l->format, src->virtual_size,
                     &p);
  if (v == NULL)
    *err = g_strdup_printf ("cannot create the copy of VDI %s: %s", l->from,
                            sr_get_error ());
  else
    host_vdi_claim (r->h, v->uuid, KIND);
  sr_vdi_free (src);
  return v;
}

struct layer_progress
{
  struct run *r;
  struct layer *l;
};

static void
layer_progress_fraction (struct layer_progress *lp, double fraction)
{
  struct run *r = lp->r;

  g_mutex_lock (&r->lock);
  lp->l->done = (uint64_t)((double)lp->l->bytes * fraction);
  job_set_progress (r->job, run_progress (r));
  if (g_get_monotonic_time () - r->last_report > G_USEC_PER_SEC)
    show_locked (r);
  g_mutex_unlock (&r->lock);
}

static void
copy_progress (const struct copy_progress *p, void *opaque)
{
  if (p->total)
    layer_progress_fraction (opaque, (double)p->done / (double)p->total);
}

/* Copy layer L alone (its own blocks; a hole there is its parent's)
 * into its new VDI V of DST, with a journal so that it resumes. */
static int
copy_layer (struct run *r, struct layer *l, struct host_sr *dst,
            const struct sr_vdi *v, char **err)
{
  g_autofree char *journal = layer_journal (r, l);
  g_autofree char *path = host_vdi_path (dst, v);
  struct layer_progress lp = { r, l };
  struct copy_params p = {
    .dest_is_zero = l->parent < 0,
    .holes_fall_through = true,
    .journal = journal,
    .progress = copy_progress,
    .progress_opaque = &lp,
    .cancel = job_cancel_flag (r->job),
    .keep_journal = true,
  };
  struct copy_stats stats = { 0 };
  struct vdisk *sd = NULL, *dd = NULL;
  struct copy_endpoint *se = NULL, *de = NULL;
  char *e = NULL;
  int ret = -1;

  /* The new VDI is read-only when it is a snapshot: written through its
   * image, which only this job knows of while it carries the mark. */
  if ((sd = sr_vdi_open (r->src->sr, l->from, VDISK_OPEN_BUFFERED)) == NULL
      || (dd = vdisk_open_as (path, VDISK_OPEN_RDWR | VDISK_OPEN_BUFFERED,
                              v->format, sr_get_path (dst->sr)))
             == NULL) {
    *err = g_strdup_printf ("cannot open %s: %s", sd ? path : l->from,
                            vdisk_get_error ());
    goto out;
  }
  if ((se = copy_endpoint_local (sd, true, &e)) == NULL
      || (de = copy_endpoint_local (dd, false, &e)) == NULL
      || copy_run (se, de, &p, &stats, &e) == -1)
    goto out;
  ret = 0;
out:
  if (se)
    copy_endpoint_close (se, NULL);
  if (de && copy_endpoint_close (de, ret == 0 ? &e : NULL) == -1)
    ret = -1;
  if (sd)
    vdisk_close (sd);
  if (dd && vdisk_close (dd) == -1 && ret == 0) {
    e = g_strdup (vdisk_get_error ());
    ret = -1;
  }
  if (ret == -1 && *err == NULL)
    *err = g_strdup (e ? e : "copy failed");
  free (e);
  if (ret == 0) {
    copy_journal_remove (journal);
    g_mutex_lock (&r->lock);
    l->done = l->bytes;
    l->seconds += stats.seconds;
    g_mutex_unlock (&r->lock);
    record_rate (r->h, stats.bytes_read + stats.bytes_zeroed, stats.seconds);
    g_message ("task %s: layer %s → %s copied: %" G_GUINT64_FORMAT
               " bytes read in %.1f s",
               r->task, l->from, l->to, stats.bytes_read, stats.seconds);
  }
  return ret;
}

/* A live leaf's hooks for vdi_live_move. */
static bool
live_cancelled (void *opaque)
{
  struct layer_progress *lp = opaque;

  return job_cancelled (lp->r->job);
}

static void
live_progress (double fraction, void *opaque)
{
  layer_progress_fraction (opaque, fraction);
}

static int
live_mirroring (void *opaque, GError **error)
{
  struct layer_progress *lp = opaque;
  g_autofree char *e = NULL;

  set_layer (lp->r, lp->l, "mirroring", NULL);
  if (run_save (lp->r, &e) == -1) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, e);
    return -1;
  }
  return 0;
}

static void
live_pivoted (void *opaque)
{
  struct layer_progress *lp = opaque;

  set_layer (lp->r, lp->l, "copied", NULL);
  run_save (lp->r, NULL);
}

static const struct vdi_live_ops evac_live_ops = {
  .cancelled = live_cancelled,
  .progress = live_progress,
  .mirroring = live_mirroring,
  .pivoted = live_pivoted,
};

/* Remove layer L's new VDI if this task made it (or an image a crash
 * left of it), and its journal. */
static void
undo_layer (struct run *r, struct layer *l, struct host_sr *dst)
{
  g_autofree char *journal = NULL;
  struct sr_vdi *v;

  if (!l->to[0])
    return;
  journal = layer_journal (r, l);
  copy_journal_remove (journal);
  if (dst == NULL)
    return;
  v = sr_vdi_get_by_uuid (dst->sr, l->to);
  if (v == NULL || g_strcmp0 (sr_vdi_get_other_config (v, TASK_MARK), r->task)
                       == 0) {
    if (sr_vdi_destroy (dst->sr, l->to) == 0)
      g_message ("task %s: removed the partial VDI %s", r->task, l->to);
    else if (v)
      g_warning ("task %s: cannot remove the partial VDI %s: %s", r->task,
                 l->to, sr_get_error ());
  }
  host_vdi_release (r->h, l->to);
  sr_vdi_free (v);
}

/* Move one layer into DST: copied, or a live leaf mirrored and pivoted. */
static int
move_layer (struct run *r, struct chain *c, struct layer *l,
            struct host_sr *dst, char **err)
{
  struct sr_vdi *v = make_layer (r, c, l, dst, err);
  gint64 t0 = g_get_monotonic_time ();
  struct layer_progress lp = { r, l };
  int ret;

  if (v == NULL)
    return -1;
  if (l->vbd && host_vdi_attached (r->h, l->from)) {
    g_autofree char *what = g_strconcat ("task ", r->task, NULL);

    ret = vdi_live_move (r->h, what, l->vbd, dst, v, l->parent >= 0,
                         &evac_live_ops, &lp, err);
    g_mutex_lock (&r->lock);
    l->seconds += (double)(g_get_monotonic_time () - t0) / G_USEC_PER_SEC;
    if (ret == 0)
      l->done = l->bytes;
    g_mutex_unlock (&r->lock);
    if (ret == -1) {
      /* What the mirror wrote is not to be trusted by another attempt. */
      undo_layer (r, l, dst);
      set_layer (r, l, "moving", NULL);
    }
  }
  else {
    ret = copy_layer (r, l, dst, v, err);
    if (ret == 0) {
      set_layer (r, l, "copied", NULL);
      if (run_save (r, err) == -1)
        ret = -1;
      else
        job_crash_point ("evacuate-layer-copied");
    }
  }
  sr_vdi_free (v);
  return ret;
}

/* The changed-block log of layer L goes to its new VDI in DST
 * (host_cbt_follow: renamed, or across filesystems merged into a copy,
 * a live leaf's filter moved onto it), and counts from the new uuid of
 * the snapshot it counted from, if that moved in chain C too: the walk
 * of VDI.list_changed_blocks follows predecessors by uuid, from the new
 * uuids as `vdimotion backup create` asks it after the move (a snapshot
 * of the disk that moved alone, VDI.pool_migrate, keeps its uuid: no
 * link changes).  Logged if it cannot (the next backup is a full).
 * Done again after a crash, it finds the log moved already, and the
 * link rewritten. */
static void
carry_log (struct run *r, struct chain *c, struct layer *l,
           struct host_sr *dst)
{
  g_autoptr (GError) error = NULL;
  struct cbt_log_info info;
  const char *pred;
  char *p;
  g_autofree char *path = NULL;

  if (!host_cbt_follow (r->h, r->src, l->from, dst, l->to, false, &error)) {
    g_warning ("task %s: the changed-block log of VDI %s does not follow "
               "it to %s: %s",
               r->task, l->from, l->to, error->message);
    return;
  }
  p = sr_vdi_cbt_log_path (dst->sr, l->to);
  path = g_strdup (p);
  free (p);
  if (path == NULL || cbt_log_read_header (path, &info, NULL) == -1
      || (pred = new_uuid_of (c, info.predecessor)) == NULL)
    return;
  if (cbt_log_relink (path, info.predecessor, pred, &error) == -1)
    g_warning ("task %s: the changed-block log of VDI %s still counts "
               "from VDI %s, not its copy %s: %s",
               r->task, l->to, info.predecessor, pred, error->message);
}

/* Chain C is in DST whole: from here it only goes forward.  VBDs follow
 * their VDIs, the marks go, the source layers are destroyed top down.
 * Every step may be done again after a crash. */
static void
commit_chain (struct run *r, struct chain *c, struct host_sr *dst)
{
  if (!is (c->state, "committing")) {
    set_chain (r, c, "committing");
    run_save (r, NULL);
    job_crash_point ("evacuate-committing");
  }
  for (guint i = 0; i < c->layers->len; i++) {
    struct layer *l = c->layers->pdata[i];
    g_autoptr (GPtrArray) vbds
        = state_list (r->h->state, "vbds", "vdi", l->from);

    for (guint j = 0; j < vbds->len; j++) {
      g_autoptr (state_vbd) b = state_vbd_get (r->h->state, vbds->pdata[j]);

      if (b)
        vdi_live_commit (r->h, b, l->to);
    }
    /* Every layer's changed-block log follows it (a live leaf's
     * filter marks it on), before its source goes. */
    if (dst)
      carry_log (r, c, l, dst);
    if (dst && sr_vdi_set_other_config (dst->sr, l->to, TASK_MARK, NULL) == -1
        && sr_get_errno () != ENOENT)
      g_warning ("task %s: VDI %s keeps its mark: %s", r->task, l->to,
                 sr_get_error ());
  }
  for (guint i = c->layers->len; i-- > 0;) {
    struct layer *l = c->layers->pdata[i];

    if (sr_vdi_destroy (r->src->sr, l->from) == -1
        && sr_get_errno () != ENOENT)
      g_warning ("task %s: the old VDI %s stays: %s", r->task, l->from,
                 sr_get_error ());
    host_vdi_release (r->h, l->from);
    host_vdi_release (r->h, l->to);
    g_mutex_lock (&r->lock);
    l->done = l->bytes;
    set_str (&l->state, "moved");
    g_mutex_unlock (&r->lock);
  }
  job_crash_point ("evacuate-sources-destroyed");
  set_chain (r, c, "moved");
  run_save (r, NULL);
  g_message ("task %s: chain of %u VDIs moved to SR %s", r->task,
             c->layers->len, c->dest);
}

/* Chain C did not finish: its new VDIs go, its sources stay.  STATE
 * "failed" (with CODE and ERROR) or "skipped" (cancelled). */
static void
undo_chain (struct run *r, struct chain *c, const char *state,
            const char *code, const char *error)
{
  struct host_sr *dst = host_find_sr (r->h, c->dest);

  for (guint i = c->layers->len; i-- > 0;) {
    struct layer *l = c->layers->pdata[i];

    undo_layer (r, l, dst);
    host_vdi_release (r->h, l->from);
  }
  g_mutex_lock (&r->lock);
  set_str (&c->state, state);
  set_str (&c->code, code);
  set_str (&c->error, error);
  for (guint i = 0; i < c->layers->len; i++) {
    struct layer *l = c->layers->pdata[i];

    set_str (&l->state, state);
    set_str (&l->error, error);
    l->done = 0;
    l->to[0] = '\0';
  }
  g_mutex_unlock (&r->lock);
  run_save (r, NULL);
}

static void
move_chain (struct run *r, struct chain *c)
{
  struct host_sr *dst = host_find_sr (r->h, c->dest);
  g_autofree char *err = NULL;
  bool live = false;

  if (is (c->state, "moved") || is (c->state, "failed")
      || is (c->state, "skipped") || job_cancelled (r->job))
    return;
  if (is (c->state, "committing")) {
    commit_chain (r, c, dst);
    return;
  }
  if (dst == NULL)
    err = g_strdup_printf ("the destination SR %s is gone", c->dest);
  else if (choose_uuids (r, c, &err) == 0) {
    for (guint i = 0; i < c->layers->len && err == NULL; i++) {
      struct layer *l = c->layers->pdata[i];

      if (is (l->state, "copied"))
        continue;
      live |= l->vbd != NULL;
      move_layer (r, c, l, dst, &err);
    }
  }
  if (err == NULL) {
    commit_chain (r, c, dst);
    return;
  }
  if (job_stopping (r->job)) {
    /* Left for the next start, which resumes from the journals. */
    g_message ("task %s: chain stopped at the daemon's exit: %s", r->task,
               err);
    return;
  }
  if (job_cancelled (r->job))
    undo_chain (r, c, "skipped", NULL, "cancelled before it was moved");
  else {
    g_warning ("task %s: a chain failed: %s", r->task, err);
    undo_chain (r, c, "failed", live ? "MIRROR_FAILED" : "VDI_COPY_FAILED",
                err);
  }
}

static void
chain_worker (gpointer data, gpointer user_data)
{
  move_chain (user_data, data);
}

/* ------------------------------------------------------------------ */
/* The kind. */

/* Claim the source VDIs of the chains still to move; a chain whose VDIs
 * another operation holds fails (it cannot move now). */
static void
claim_sources (struct run *r)
{
  for (guint i = 0; i < r->chains->len; i++) {
    struct chain *c = r->chains->pdata[i];

    if (!is (c->state, "queued") && !is (c->state, "moving"))
      continue;
    for (guint j = 0; j < c->layers->len; j++) {
      struct layer *l = c->layers->pdata[j];
      g_autofree char *op = NULL;

      if (host_vdi_claim (r->h, l->from, KIND))
        continue;
      op = host_vdi_operation (r->h, l->from);
      if (g_strcmp0 (op, KIND) != 0) {
        g_autofree char *why = g_strdup_printf (
            "VDI %s is busy with another operation (%s)", l->from, op);

        undo_chain (r, c, "failed", "OTHER_OPERATION_IN_PROGRESS", why);
        break;
      }
    }
  }
}

static void
count_total (struct run *r)
{
  r->total = 0;
  for (guint i = 0; i < r->chains->len; i++) {
    struct chain *c = r->chains->pdata[i];

    for (guint j = 0; j < c->layers->len; j++)
      if (!is (c->state, "skipped"))
        r->total += ((struct layer *)c->layers->pdata[j])->bytes;
  }
}

/* The plan the job was submitted with (its row's params: {"dest_srs":
 * [...], "options": {...}}).  NULL with *ERR. */
static struct plan *
plan_of_row (struct host *h, const struct state_job *row, char ***err)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GHashTable) options
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GPtrArray) dests = g_ptr_array_new_with_free_func (g_free);
  JsonObject *root, *o;
  JsonArray *a;

  if (row->params == NULL
      || !json_parser_load_from_data (parser, row->params, -1, NULL)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    host_err_set (err, "INTERNAL_ERROR", "the evacuation's parameters are "
                                         "unreadable", NULL);
    return NULL;
  }
  root = json_node_get_object (json_parser_get_root (parser));
  a = json_object_get_array_member (root, "dest_srs");
  for (guint i = 0; a && i < json_array_get_length (a); i++)
    g_ptr_array_add (dests, g_strdup (json_array_get_string_element (a, i)));
  o = json_object_get_object_member (root, "options");
  if (o) {
    g_autoptr (GList) keys = json_object_get_members (o);

    for (GList *k = keys; k; k = k->next)
      g_hash_table_insert (options, g_strdup (k->data),
                           g_strdup (json_object_get_string_member (
                               o, k->data)));
  }
  return make_plan (h, row->vdi, (const char *const *)dests->pdata,
                    dests->len, options, err);
}

/* End the job with the report. */
static void
run_end (struct run *r)
{
  g_autofree char *report = NULL;
  g_autofree char *task_ref = host_ref (r->task);
  const struct chain *failed = NULL;
  bool cancelled = job_cancel_requested (r->job);

  g_mutex_lock (&r->lock);
  for (guint i = 0; i < r->chains->len; i++) {
    struct chain *c = r->chains->pdata[i];

    if (is (c->state, "queued")) {
      set_str (&c->state, "skipped");
      for (guint j = 0; j < c->layers->len; j++) {
        struct layer *l = c->layers->pdata[j];

        set_str (&l->state, "skipped");
        set_str (&l->error, "cancelled before it started");
        host_vdi_release (r->h, l->from);
      }
    }
    if (failed == NULL && is (c->state, "failed"))
      failed = c;
  }
  report = report_json (r, cancelled  ? "cancelled"
                           : failed ? "failed"
                                    : "done");
  g_mutex_unlock (&r->lock);
  if (cancelled) {
    const char *ei[] = { "TASK_CANCELLED", task_ref, NULL };

    job_fail_text (r->job, ei, report);
  }
  else if (failed) {
    const struct layer *l = failed->layers->pdata[failed->layers->len - 1];
    g_autofree char *ref = host_ref (l->from);
    const char *ei[] = { failed->code ? failed->code : "VDI_COPY_FAILED",
                         failed->error ? failed->error : "failed", ref,
                         NULL };

    job_fail_text (r->job, ei, report);
  }
  else
    job_succeed_text (r->job, report);
  if (g_unlink (r->path) == -1 && errno != ENOENT)
    g_warning ("task %s: cannot remove %s: %s", r->task, r->path,
               g_strerror (errno));
}

/* The run's state: read back, or made from a fresh plan and recorded.
 * NULL after ending the job (it cannot go on). */
static struct run *
run_open (struct job *job)
{
  g_autoptr (run) r = run_new (job);
  g_autoptr (GError) error = NULL;
  g_autoptr (plan) p = NULL;
  char **err = NULL;

  if (r->src == NULL) {
    g_autofree char *ref = host_ref (job_row (job)->vdi);
    const char *ei[] = { "HANDLE_INVALID", "SR", ref, NULL };

    job_fail (job, ei);
    return NULL;
  }
  if (g_file_test (r->path, G_FILE_TEST_EXISTS)) {
    if (run_load (r, &error) == 0)
      return g_steal_pointer (&r);
    {
      const char *ei[] = { "INTERNAL_ERROR", error->message, NULL };

      job_fail (job, ei);
      return NULL;
    }
  }
  if ((p = plan_of_row (r->h, job_row (job), &err)) == NULL) {
    job_fail (job, (const char *const *)err);
    g_strfreev (err);
    return NULL;
  }
  run_from_plan (r, p);
  if (run_save_locked (r, &error) == -1) {
    const char *ei[] = { "INTERNAL_ERROR", error->message, NULL };

    job_fail (job, ei);
    return NULL;
  }
  job_crash_point ("evacuate-planned");
  return g_steal_pointer (&r);
}

static void
evacuate_run (struct job *job)
{
  g_autoptr (run) r = run_open (job);
  GThreadPool *pool;

  if (r == NULL)
    return;
  claim_sources (r);
  count_total (r);
  g_mutex_lock (&r->lock);
  show_locked (r);
  g_mutex_unlock (&r->lock);
  r->t0 = g_get_monotonic_time ();
  pool = g_thread_pool_new (chain_worker, r, (int)r->parallel, FALSE, NULL);
  for (guint i = 0; i < r->chains->len; i++)
    g_thread_pool_push (pool, r->chains->pdata[i], NULL);
  /* Wait for every chain. */
  g_thread_pool_free (pool, FALSE, TRUE);
  if (job_stopping (job)) {
    g_message ("task %s: evacuation stopped at the daemon's exit; resumes "
               "at start",
               r->task);
    return;
  }
  run_end (r);
}

/* At start.  A live leaf caught mid-mirror: pivoted (the filter says so)
 * it is committed, else its mirror is dropped and its new leaf removed,
 * to be moved again.  A cancel asked before the stop is finished here. */
static enum job_recovery
evacuate_recover (struct job *job)
{
  g_autoptr (run) r = run_new (job);
  g_autoptr (GError) error = NULL;

  if (!g_file_test (r->path, G_FILE_TEST_EXISTS)) {
    if (job_cancel_requested (job)) {
      g_autofree char *ref = host_ref (r->task);
      const char *ei[] = { "TASK_CANCELLED", ref, NULL };

      job_fail (job, ei);
      return JOB_RECOVER_DONE;
    }
    return JOB_RECOVER_RESUME; /* never planned: plans at run */
  }
  if (r->src == NULL || run_load (r, &error) == -1) {
    const char *ei[] = { "INTERNAL_ERROR",
                         error ? error->message : "the SR is gone", NULL };

    job_fail (job, ei);
    return JOB_RECOVER_DONE;
  }
  for (guint i = 0; i < r->chains->len; i++) {
    struct chain *c = r->chains->pdata[i];

    for (guint j = 0; j < c->layers->len; j++) {
      struct layer *l = c->layers->pdata[j];
      g_autoptr (state_vbd) b = NULL;

      /* Pivoted, but the move's end (the earlier target's stop) may be
       * left to do. */
      if (l->vbd && is (l->state, "copied")
          && vdi_live_under_way (r->h, l->vbd))
        vdi_live_recover (r->h, l->vbd, l->to, true);
      if (l->vbd == NULL || !is (c->state, "moving")
          || is (l->state, "copied"))
        continue;
      b = state_vbd_get (r->h->state, l->vbd);
      /* A move begun before "mirroring" was recorded is ours too (the
       * VDI is claimed: no other move runs on it). */
      if (!is (l->state, "mirroring") && !(b && b->target_pid)
          && !vdi_live_under_way (r->h, l->vbd))
        continue;
      /* Finished (the old leaf's nbdkit stopped) or undone. */
      if (vdi_live_recover (r->h, l->vbd, l->to,
                            b && g_strcmp0 (b->vdi, l->to) == 0)) {
        g_message ("task %s: the VBD's disk was pivoted to VDI %s", r->task,
                   l->to);
        set_str (&l->state, "copied");
        l->done = l->bytes;
      }
      else {
        undo_layer (r, l, host_find_sr (r->h, c->dest));
        set_str (&l->state, "moving");
        l->done = 0;
      }
    }
  }
  if (run_save_locked (r, &error) == -1) {
    g_critical ("task %s: %s; left for the next start", r->task,
                error->message);
    return JOB_RECOVER_LEAVE;
  }
  /* Claimed again before the daemon serves, so that no client starts
   * another operation on a VDI to move (the run checks each). */
  for (guint i = 0; i < r->chains->len; i++) {
    struct chain *c = r->chains->pdata[i];

    for (guint j = 0; j < c->layers->len && !is (c->state, "moved")
                      && !is (c->state, "failed")
                      && !is (c->state, "skipped");
         j++)
      host_vdi_claim (r->h, ((struct layer *)c->layers->pdata[j])->from,
                      KIND);
  }
  if (job_cancel_requested (job)) {
    /* Finish what passed its point of no return, undo the rest. */
    for (guint i = 0; i < r->chains->len; i++) {
      struct chain *c = r->chains->pdata[i];

      if (is (c->state, "committing"))
        commit_chain (r, c, host_find_sr (r->h, c->dest));
      else if (is (c->state, "moving"))
        undo_chain (r, c, "skipped", NULL, "cancelled before it was moved");
    }
    count_total (r);
    run_end (r);
    return JOB_RECOVER_DONE;
  }
  return JOB_RECOVER_RESUME;
}

/* The task ended before its row went: its files go. */
static void
evacuate_forget (struct job *job)
{
  g_autoptr (run) r = run_new (job);

  if (run_load (r, NULL) == 0)
    for (guint i = 0; i < r->chains->len; i++) {
      struct chain *c = r->chains->pdata[i];

      for (guint j = 0; j < c->layers->len; j++) {
        struct layer *l = c->layers->pdata[j];
        g_autofree char *journal = l->to[0] ? layer_journal (r, l) : NULL;

        if (journal)
          copy_journal_remove (journal);
      }
    }
  g_unlink (r->path);
}

const struct job_kind job_kind_sr_evacuate = {
  .name = KIND,
  .run = evacuate_run,
  .recover = evacuate_recover,
  .forget = evacuate_forget,
};

/* ------------------------------------------------------------------ */
/* Submission. */

static char *
params_json (const struct plan *p, GHashTable *options)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  add_plan_dests (b, p);
  json_builder_set_member_name (b, "options");
  json_builder_begin_object (b);
  if (options) {
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init (&it, options);
    while (g_hash_table_iter_next (&it, &k, &v))
      json_add_string_member (b, k, v);
  }
  json_builder_end_object (b);
  json_builder_end_object (b);
  return json_text (b);
}

/* Release the claims of the first N chains of P. */
static void
release_plan (struct host *h, const struct plan *p, guint n)
{
  for (guint i = 0; i < n; i++) {
    const struct plan_chain *c = p->chains->pdata[i];

    for (guint j = 0; !c->refused && j < c->vdis->len; j++)
      host_vdi_release (h, ((struct plan_vdi *)c->vdis->pdata[j])->v->uuid);
  }
}

char *
evacuate_submit (struct host *h, const char *src, const char *const *dest,
                 size_t n_dest, GHashTable *options, char ***err)
{
  g_autoptr (plan) p = make_plan (h, src, dest, n_dest, options, err);
  g_autofree char *params = NULL;
  g_autofree char *label = NULL;
  g_autoptr (GError) error = NULL;
  struct state_job j = { 0 };
  char *task;

  if (p == NULL)
    return NULL;
  if (!plan_fits (p) && !p->o.partial) {
    g_autofree char *ref = host_ref (src);

    for (guint i = 0; i < p->chains->len; i++) {
      const struct plan_chain *c = p->chains->pdata[i];
      const struct plan_vdi *top = c->vdis->pdata[c->vdis->len - 1];

      if (c->refused) {
        g_autofree char *why = g_strdup_printf (
            "the chain of VDI %s cannot move: %s (options partial=true "
            "moves the rest)",
            top->v->uuid, c->refused);

        host_err_set (err, "SR_FULL", ref, why, NULL);
        return NULL;
      }
    }
  }
  /* Nothing else starts on a VDI to move until its chain is done. */
  for (guint i = 0; i < p->chains->len; i++) {
    const struct plan_chain *c = p->chains->pdata[i];

    for (guint k = 0; !c->refused && k < c->vdis->len; k++) {
      const char *uuid = ((struct plan_vdi *)c->vdis->pdata[k])->v->uuid;

      if (host_vdi_claim_or_fail (h, uuid, KIND, err) == -1) {
        for (guint m = 0; m < k; m++)
          host_vdi_release (h,
                            ((struct plan_vdi *)c->vdis->pdata[m])->v->uuid);
        release_plan (h, p, i);
        return NULL;
      }
    }
  }
  params = params_json (p, options);
  j.kind = (char *)KIND;
  j.vdi = (char *)src;
  j.dst_sr = (char *)sr_get_uuid (
      g_array_index (p->dests, struct plan_dest, 0).s->sr);
  j.format = (char *)(p->o.format >= 0 ? vdisk_format_name (p->o.format)
                                       : NULL);
  j.phase = "queued";
  j.params = params;
  label = g_strdup_printf ("SR.evacuate %s", p->src->name);
  task = jobs_submit (h->jobs, &j, label, &error);
  g_free (j.task);
  if (task == NULL) {
    host_err_set (err, "INTERNAL_ERROR", error->message, NULL);
    release_plan (h, p, p->chains->len);
  }
  return task;
}
