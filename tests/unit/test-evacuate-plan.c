/* replicator/jobs/evacuate.c's planner (evacuate_plan) on real file SRs
 * in a scratch directory: every VDI in its chain (a snapshot under its
 * VDI, a clone's unmanaged base with both its leaves), bottom first; a
 * disk larger than any destination refused with the reason; the order
 * by size or by name; exclusion of whole chains; destinations, the
 * margin, the rate's source; and bad options named. */
#include <glib.h>
#include <json-glib/json-glib.h>

#include "evacuate.h"
#include "unit.h"

#define MiB (UINT64_C (1) << 20)

static struct host *h;
static char sr1[SR_UUID_LEN + 1], sr2[SR_UUID_LEN + 1], sr3[SR_UUID_LEN + 1];
/* The VDIs of sr1. */
static char snap[SR_UUID_LEN + 1], leaf[SR_UUID_LEN + 1];
static char twin[SR_UUID_LEN + 1], big[SR_UUID_LEN + 1];
static char lone[SR_UUID_LEN + 1], huge[SR_UUID_LEN + 1];

static struct host_sr *
add_sr (const char *name)
{
  struct host_sr *s = g_new0 (struct host_sr, 1);

  s->name = g_strdup (name);
  s->sr = sr_open ("file", unit_path (name), SR_OPEN_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (s->sr);
  g_ptr_array_add (h->srs, s);
  return s;
}

/* A new VDI of S with LEN bytes of data at 0; its uuid into OUT. */
static void
new_vdi (struct host_sr *s, const char *label, enum vdisk_format fmt,
         uint64_t size, uint64_t len, char out[SR_UUID_LEN + 1])
{
  struct sr_vdi *v = sr_vdi_create (s->sr, label, fmt, size, NULL);
  struct vdisk *d;
  g_autofree char *buf = g_malloc (len ? len : 1);

  CU_ASSERT_PTR_NOT_NULL_FATAL (v);
  g_strlcpy (out, v->uuid, SR_UUID_LEN + 1);
  sr_vdi_free (v);
  if (len == 0)
    return;
  unit_fill (buf, len, 7);
  d = sr_vdi_open (s->sr, out, VDISK_OPEN_RDWR);
  CU_ASSERT_PTR_NOT_NULL_FATAL (d);
  CU_ASSERT_EQUAL (vdisk_pwrite (d, buf, len, 0, 0), 0);
  CU_ASSERT_EQUAL (vdisk_close (d), 0);
}

/* The scratch directory exists once the suite runs: the SRs are made
 * by its first test. */
static void
test_setup (void)
{
  struct host_sr *s;
  struct sr_vdi *v;
  g_autoptr (GError) error = NULL;

  h = host_new ();
  h->state_dir = g_strdup (unit_path ("state"));
  g_mkdir_with_parents (h->state_dir, 0700);
  h->state = state_open (h->state_dir, &error);
  CU_ASSERT_PTR_NOT_NULL_FATAL (h->state);
  s = add_sr ("sr1");
  g_strlcpy (sr1, sr_get_uuid (s->sr), sizeof sr1);
  g_strlcpy (sr2, sr_get_uuid (add_sr ("sr2")->sr), sizeof sr2);
  g_strlcpy (sr3, sr_get_uuid (add_sr ("sr3")->sr), sizeof sr3);
  /* "a": a snapshot, then a clone: snap ← base ← {leaf, clone}. */
  new_vdi (s, "a", VDISK_FORMAT_VHD, 16 * MiB, 2 * MiB, leaf);
  v = sr_vdi_snapshot (s->sr, leaf, "a");
  g_strlcpy (snap, v->uuid, sizeof snap);
  sr_vdi_free (v);
  v = sr_vdi_clone (s->sr, leaf, "a-clone");
  g_strlcpy (twin, v->uuid, sizeof twin);
  sr_vdi_free (v);
  new_vdi (s, "b", VDISK_FORMAT_QCOW2, 16 * MiB, 4 * MiB, big);
  new_vdi (s, "c", VDISK_FORMAT_RAW, 16 * MiB, 1 * MiB, lone);
  /* Larger than the filesystem the SRs are on. */
  {
    struct sr_stat st;

    CU_ASSERT_EQUAL_FATAL (sr_stat (s->sr, &st), 0);
    new_vdi (s, "d-huge", VDISK_FORMAT_QCOW2, st.total_bytes * 2, 0, huge);
  }
}

static void
test_teardown (void)
{
  host_free (h);
}

/* The plan of evacuating sr1 into DESTS with OPTIONS (key, value,
 * ..., NULL), parsed; NULL with *ERR if refused. */
static JsonObject *
plan (const char *const *dests, size_t n, char ***err, ...)
{
  g_autoptr (GHashTable) opts
      = g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree char *text = NULL;
  JsonParser *parser;
  JsonObject *o;
  const char *k;
  va_list ap;

  va_start (ap, err);
  while ((k = va_arg (ap, const char *)) != NULL)
    g_hash_table_insert (opts, (char *)k, va_arg (ap, char *));
  va_end (ap);
  text = evacuate_plan (h, sr1, dests, n, opts, err);
  if (text == NULL)
    return NULL;
  parser = json_parser_new ();
  CU_ASSERT_FATAL (json_parser_load_from_data (parser, text, -1, NULL));
  o = json_object_ref (json_node_get_object (json_parser_get_root (parser)));
  g_object_unref (parser);
  return o;
}

static JsonObject *
chain (JsonObject *p, guint i)
{
  return json_array_get_object_element (
      json_object_get_array_member (p, "chains"), i);
}

static JsonObject *
vdi_of (JsonObject *c, guint i)
{
  return json_array_get_object_element (
      json_object_get_array_member (c, "vdis"), i);
}

static guint
n_vdis (JsonObject *c)
{
  return json_array_get_length (json_object_get_array_member (c, "vdis"));
}

/* The chain whose VDIs include UUID. */
static JsonObject *
chain_with (JsonObject *p, const char *uuid)
{
  JsonArray *a = json_object_get_array_member (p, "chains");

  for (guint i = 0; i < json_array_get_length (a); i++)
    for (guint j = 0; j < n_vdis (chain (p, i)); j++)
      if (strcmp (json_object_get_string_member (vdi_of (chain (p, i), j),
                                                 "uuid"),
                  uuid)
          == 0)
        return chain (p, i);
  return NULL;
}

static void
test_chains (void)
{
  const char *dests[] = { sr2 };
  JsonObject *p = plan (dests, 1, NULL, NULL);
  JsonObject *a, *c;
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  CU_ASSERT_PTR_NOT_NULL_FATAL (p);
  CU_ASSERT_STRING_EQUAL (json_object_get_string_member (p, "sr"), sr1);
  CU_ASSERT_EQUAL (json_array_get_length (
                       json_object_get_array_member (p, "chains")),
                   4);
  /* snap ← base (unmanaged) ← leaf, clone: one chain, parents first. */
  a = chain_with (p, leaf);
  CU_ASSERT_PTR_NOT_NULL_FATAL (a);
  CU_ASSERT_EQUAL (n_vdis (a), 4);
  CU_ASSERT_PTR_EQUAL (chain_with (p, twin), a);
  CU_ASSERT_STRING_EQUAL (json_object_get_string_member (vdi_of (a, 0),
                                                         "uuid"),
                          snap);
  CU_ASSERT (json_object_get_boolean_member (vdi_of (a, 0), "is_snapshot"));
  CU_ASSERT_STRING_EQUAL (
      json_object_get_string_member (vdi_of (a, 0), "snapshot_of"), leaf);
  CU_ASSERT (json_object_get_null_member (vdi_of (a, 0), "parent"));
  CU_ASSERT_FALSE (json_object_get_boolean_member (vdi_of (a, 1), "managed"));
  for (guint j = 0; j < n_vdis (a); j++) {
    JsonObject *v = vdi_of (a, j);

    if (j > 0)
      CU_ASSERT (g_hash_table_contains (
          seen, json_object_get_string_member (v, "parent")));
    g_hash_table_add (seen, (char *)json_object_get_string_member (v, "uuid"));
    CU_ASSERT_STRING_EQUAL (json_object_get_string_member (v, "format"),
                            json_object_get_string_member (v, "dest_format"));
  }
  CU_ASSERT_FALSE (json_object_get_boolean_member (a, "live"));
  CU_ASSERT_EQUAL ((uint64_t)json_object_get_int_member (a, "need"),
                   EVACUATE_MARGIN (
                       (uint64_t)json_object_get_int_member (a, "bytes"), 4));
  CU_ASSERT_STRING_EQUAL (json_object_get_string_member (a, "dest_sr"), sr2);
  /* The huge disk: refused, with why; the plan does not fit. */
  c = chain_with (p, huge);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT (json_object_get_null_member (c, "dest_sr"));
  CU_ASSERT_PTR_NOT_NULL (strstr (json_object_get_string_member (c, "refused"),
                                  "larger than any destination"));
  CU_ASSERT_FALSE (json_object_get_boolean_member (p, "fits"));
  CU_ASSERT_EQUAL (json_object_get_int_member (
                       json_object_get_object_member (p, "totals"), "vdis"),
                   7);
  CU_ASSERT_PTR_NOT_NULL (strstr (
      json_object_get_string_member (
          json_object_get_object_member (p, "rate"), "source"),
      "no copy measured"));
  json_object_unref (p);
}

/* Size order: the most bytes first; name order: by the leaf's label. */
static void
test_order (void)
{
  const char *dests[] = { sr2, sr3 };
  JsonObject *p = plan (dests, 2, NULL, "exclude", huge, NULL);
  JsonArray *a;
  gint64 last = G_MAXINT64;

  CU_ASSERT_PTR_NOT_NULL_FATAL (p);
  CU_ASSERT (json_object_get_boolean_member (p, "fits"));
  a = json_object_get_array_member (p, "chains");
  CU_ASSERT_EQUAL (json_array_get_length (a), 3);
  for (guint i = 0; i < json_array_get_length (a); i++) {
    gint64 b = json_object_get_int_member (chain (p, i), "bytes");
    const char *d = json_object_get_string_member (chain (p, i), "dest_sr");

    CU_ASSERT (b <= last);
    last = b;
    CU_ASSERT (strcmp (d, sr2) == 0 || strcmp (d, sr3) == 0);
    CU_ASSERT_EQUAL (json_object_get_int_member (chain (p, i), "index"), i);
  }
  json_object_unref (p);

  p = plan (dests, 2, NULL, "exclude", huge, "order", "name", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (p);
  /* Leaves: "a" or "a-clone" (a tree's last), then "b", "c". */
  CU_ASSERT_PTR_EQUAL (chain (p, 0), chain_with (p, leaf));
  CU_ASSERT_PTR_EQUAL (chain (p, 1), chain_with (p, big));
  CU_ASSERT_PTR_EQUAL (chain (p, 2), chain_with (p, lone));
  json_object_unref (p);
}

/* Excluding one VDI of a chain leaves the whole chain, each VDI with
 * its reason; partial and a raw destination format. */
static void
test_exclude (void)
{
  const char *dests[] = { sr2 };
  g_autofree char *both = g_strdup_printf ("%s, %s", twin, huge);
  JsonObject *p = plan (dests, 1, NULL, "exclude", both, NULL);
  JsonArray *ex;
  guint n_why = 0;

  CU_ASSERT_PTR_NOT_NULL_FATAL (p);
  CU_ASSERT (json_object_get_boolean_member (p, "fits"));
  CU_ASSERT_PTR_NULL (chain_with (p, leaf));
  ex = json_object_get_array_member (p, "excluded");
  CU_ASSERT_EQUAL (json_array_get_length (ex), 5);
  for (guint i = 0; i < json_array_get_length (ex); i++) {
    JsonObject *e = json_array_get_object_element (ex, i);
    const char *why = json_object_get_string_member (e, "reason");

    if (strcmp (why, "excluded") == 0)
      n_why++;
    else
      CU_ASSERT_PTR_NOT_NULL (strstr (why, "in the chain of the excluded"));
  }
  CU_ASSERT_EQUAL (n_why, 2);
  json_object_unref (p);

  p = plan (dests, 1, NULL, "exclude", huge, "dest-img-format", "raw",
            "partial", "true", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (p);
  CU_ASSERT_FALSE (json_object_get_boolean_member (p, "fits"));
  CU_ASSERT (json_object_get_boolean_member (p, "partial"));
  CU_ASSERT_PTR_NOT_NULL (
      strstr (json_object_get_string_member (chain_with (p, leaf), "refused"),
              "raw cannot have a parent"));
  CU_ASSERT (json_object_get_null_member (chain_with (p, lone), "refused"));
  json_object_unref (p);
}

/* Bad input: the error names what is wrong. */
static void
bad (const char *const *dests, size_t n, const char *code, const char *what,
     const char *key, const char *value)
{
  char **err = NULL;
  JsonObject *p = plan (dests, n, &err, key, value, NULL);

  CU_ASSERT_PTR_NULL (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (err);
  CU_ASSERT_STRING_EQUAL (err[0], code);
  CU_ASSERT_STRING_EQUAL (err[1], what);
  g_strfreev (err);
}

static void
test_bad_input (void)
{
  const char *dests[] = { sr2 };
  const char *self[] = { sr1 };
  const char *twice[] = { sr2, sr2 };
  const char *unknown[] = { "00000000-0000-4000-8000-000000000000" };

  bad (dests, 1, "INVALID_VALUE", "speed", "speed", "1");
  bad (dests, 1, "INVALID_VALUE", "parallel", "parallel", "0");
  bad (dests, 1, "INVALID_VALUE", "parallel", "parallel", "65");
  bad (dests, 1, "INVALID_VALUE", "parallel", "parallel", "two");
  bad (dests, 1, "INVALID_VALUE", "order", "order", "age");
  bad (dests, 1, "INVALID_VALUE", "dest-img-format", "dest-img-format",
       "vmdk");
  bad (dests, 1, "INVALID_VALUE", "exclude", "exclude", "nope");
  bad (dests, 1, "INVALID_VALUE", "exclude", "exclude",
       "00000000-0000-4000-8000-000000000000");
  bad (dests, 1, "INVALID_VALUE", "partial", "partial", "maybe");
  bad (self, 1, "INVALID_VALUE", "dest_srs", NULL, NULL);
  bad (twice, 2, "INVALID_VALUE", "dest_srs", NULL, NULL);
  bad (dests, 0, "INVALID_VALUE", "dest_srs", NULL, NULL);
  bad (unknown, 1, "HANDLE_INVALID", "SR", NULL, NULL);
}

/* A chain holding a cbt_metadata snapshot (a backup's older snapshot,
 * its data destroyed) is refused in the plan with the reason, not failed
 * mid-run; excluded, it stays whole and the plan fits again. */
static void
test_cbt_metadata (void)
{
  struct host_sr *s = h->srs->pdata[0];
  const char *dests[] = { sr2 };
  char e_leaf[SR_UUID_LEN + 1], e_snap[SR_UUID_LEN + 1];
  struct sr_vdi *v;
  JsonObject *p, *c;

  new_vdi (s, "e", VDISK_FORMAT_QCOW2, 16 * MiB, 1 * MiB, e_leaf);
  CU_ASSERT_EQUAL_FATAL (sr_vdi_enable_cbt (s->sr, e_leaf), 0);
  v = sr_vdi_snapshot (s->sr, e_leaf, "e");
  CU_ASSERT_PTR_NOT_NULL_FATAL (v);
  g_strlcpy (e_snap, v->uuid, sizeof e_snap);
  sr_vdi_free (v);
  CU_ASSERT_EQUAL_FATAL (sr_vdi_data_destroy (s->sr, e_snap), 0);

  p = plan (dests, 1, NULL, "exclude", huge, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (p);
  CU_ASSERT_FALSE (json_object_get_boolean_member (p, "fits"));
  c = chain_with (p, e_leaf);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_PTR_NOT_NULL (strstr (json_object_get_string_member (c, "refused"),
                                  "cbt_metadata"));
  CU_ASSERT_PTR_NOT_NULL (
      strstr (json_object_get_string_member (c, "refused"), e_snap));
  json_object_unref (p);

  g_autofree char *both = g_strdup_printf ("%s,%s", huge, e_snap);
  p = plan (dests, 1, NULL, "exclude", both, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (p);
  CU_ASSERT (json_object_get_boolean_member (p, "fits"));
  CU_ASSERT_PTR_NULL (chain_with (p, e_leaf));
  json_object_unref (p);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "setup: SRs and chains", test_setup },
    { "chains, refusal, totals", test_chains },
    { "order and destinations", test_order },
    { "exclude, partial, raw", test_exclude },
    { "bad input", test_bad_input },
    { "a cbt_metadata snapshot refused", test_cbt_metadata },
    { "teardown", test_teardown },
    { NULL },
  };

  return unit_main ("evacuate plan", tests);
}
