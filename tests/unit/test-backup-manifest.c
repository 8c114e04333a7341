/* libbackup's manifests and repository (replicator/backup/backup.h):
 * a manifest survives its round trip; every kind of bad manifest is
 * refused with an error naming the manifest and the field; names cannot
 * climb out of the repository; publishing is atomic and listing shows
 * only published points, in time order; "latest", ids and times find
 * the right point. */
#include <glib.h>

#include "backup.h"
#include "unit.h"

static struct backup_manifest *
sample (const char *id, const char *time, const char *parent)
{
  struct backup_manifest *m = g_new0 (struct backup_manifest, 1);
  m->id = g_strdup (id);
  m->disk = g_strdup ("image-a.raw-0123abcd");
  m->time = g_strdup (time);
  m->source = g_strdup ("/var/a \"quoted\".raw");
  m->kind = parent ? BACKUP_INCREMENTAL : BACKUP_FULL;
  m->why = g_strdup ("because");
  m->parent = g_strdup (parent);
  m->file = g_strdup_printf ("%s.qcow2", id);
  m->virtual_size = 10 * BACKUP_BLOCK_SIZE + 512;
  m->n_blocks = 3;
  m->blocks = g_new0 (struct backup_block, 3);
  for (int i = 0; i < 3; i++) {
    m->blocks[i].index = i * 5;
    memset (m->blocks[i].sha256, 0xa0 + i, 32);
  }
  m->bytes_written = 3 * BACKUP_BLOCK_SIZE;
  m->seconds = 1.5;
  return m;
}

static void
test_round_trip (void)
{
  g_autoptr (backup_manifest) m
      = sample ("20261130T120000Z", "2026-11-30T12:00:00.250000Z", NULL);
  g_autofree char *text = backup_manifest_to_json (m);
  GError *e = NULL;
  g_autoptr (backup_manifest) back
      = backup_manifest_parse (text, strlen (text), "x", &e);
  CU_ASSERT_PTR_NOT_NULL_FATAL (back);
  CU_ASSERT_STRING_EQUAL (back->id, m->id);
  CU_ASSERT_STRING_EQUAL (back->source, m->source);
  CU_ASSERT_EQUAL (back->kind, BACKUP_FULL);
  CU_ASSERT_PTR_NULL (back->parent);
  CU_ASSERT_PTR_NULL (back->cbt_generation);
  CU_ASSERT_EQUAL (back->virtual_size, m->virtual_size);
  CU_ASSERT_EQUAL (back->n_blocks, 3);
  CU_ASSERT_EQUAL (back->blocks[2].index, 10);
  CU_ASSERT (memcmp (back->blocks[1].sha256, m->blocks[1].sha256, 32) == 0);
  CU_ASSERT_EQUAL (back->time_us % G_USEC_PER_SEC, 250000);
  CU_ASSERT_DOUBLE_EQUAL (back->seconds, 1.5, 1e-9);
}

/* Replace the first FROM in the good manifest by TO; the parse must fail
 * with a message holding WANT. */
static void
expect_bad (const char *from, const char *to, const char *want)
{
  g_autoptr (backup_manifest) m
      = sample ("P1", "2026-11-30T12:00:00Z", "P0");
  g_autofree char *text = backup_manifest_to_json (m);
  char *at = strstr (text, from);
  CU_ASSERT_PTR_NOT_NULL_FATAL (at);
  g_autofree char *bad = g_strdup_printf ("%.*s%s%s", (int)(at - text), text,
                                          to, at + strlen (from));
  GError *e = NULL;
  struct backup_manifest *r
      = backup_manifest_parse (bad, strlen (bad), "d/P1.json", &e);
  CU_ASSERT_PTR_NULL (r);
  backup_manifest_free (r);
  CU_ASSERT_PTR_NOT_NULL_FATAL (e);
  if (!strstr (e->message, want) || !strstr (e->message, "d/P1.json"))
    fprintf (stderr, "\nwanted \"%s\" in \"%s\"\n", want, e->message);
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, want));
  CU_ASSERT_PTR_NOT_NULL (strstr (e->message, "d/P1.json"));
  g_error_free (e);
}

static void
test_bad_manifests (void)
{
  expect_bad ("{", "[", "not");
  expect_bad ("\"seconds\"", "\"x\": {{, \"s\"", "not JSON");
  expect_bad ("vdimotion-backup-manifest", "other", "\"format\"");
  expect_bad ("\"version\":1", "\"version\":2", "\"version\"");
  expect_bad ("\"id\":\"P1\"", "\"id\":\"../x\"", "\"id\" is not a plain");
  expect_bad ("\"file\":\"P1.qcow2\"", "\"file\":\"/etc/passwd\"",
              "\"file\" is not a plain");
  expect_bad ("\"file\":\"P1.qcow2\"", "\"file\":\"P1.raw\"", "\"file\"");
  expect_bad ("\"virtual-size\":655872", "\"virtual-size\":\"big\"",
              "\"virtual-size\" is missing or not an integer");
  expect_bad ("\"virtual-size\":655872", "\"virtual-size\":-512",
              "\"virtual-size\" is negative");
  expect_bad ("\"virtual-size\":655872", "\"virtual-size\":1000",
              "multiple of 512");
  expect_bad ("\"kind\":\"incremental\"", "\"kind\":\"partial\"",
              "\"kind\"");
  expect_bad ("\"parent\":\"P0\"", "\"parent\":null",
              "missing on an incremental");
  expect_bad ("\"time\":\"2026-11-30T12:00:00Z\"", "\"time\":\"yesterday\"",
              "ISO 8601");
  expect_bad ("\"block-size\":65536", "\"block-size\":4096", "65536");
  expect_bad ("[0,", "[99,", "outside the disk");
  expect_bad ("[5,", "[0,", "out of order");
  expect_bad ("[0,\"a0", "[0,\"zz", "64 hex digits");
  expect_bad ("[0,\"", "[\"0\",\"", "is not [index");
  expect_bad ("\"disk\":", "\"dusk\":", "\"disk\" is missing");
}

static void
test_names (void)
{
  CU_ASSERT (backup_name_is_safe ("20261130T120000Z.qcow2"));
  CU_ASSERT (!backup_name_is_safe (""));
  CU_ASSERT (!backup_name_is_safe (".."));
  CU_ASSERT (!backup_name_is_safe (".hidden"));
  CU_ASSERT (!backup_name_is_safe ("a/b"));
  CU_ASSERT (!backup_name_is_safe ("a b"));
  g_autofree char *k1 = backup_disk_key_for_image ("/x/../../etc/my disk.raw");
  g_autofree char *k2 = backup_disk_key_for_image ("/y/my disk.raw");
  CU_ASSERT (backup_name_is_safe (k1));
  CU_ASSERT (g_str_has_prefix (k1, "image-my_disk.raw-"));
  CU_ASSERT_STRING_NOT_EQUAL (k1, k2);
}

static void
publish (struct backup_repo *r, struct backup_manifest *m)
{
  g_autofree char *text = backup_manifest_to_json (m);
  g_autofree char *name = g_strdup_printf ("%s.json", m->id);
  GError *e = NULL;
  CU_ASSERT_EQUAL (r->ops->publish (r, m->disk, name, text, strlen (text), &e),
                   0);
  backup_manifest_free (m);
}

static void
test_repository (void)
{
  GError *e = NULL;
  CU_ASSERT_PTR_NULL (backup_repo_open (unit_path ("none"), false, &e));
  CU_ASSERT (g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT));
  g_clear_error (&e);

  struct backup_repo *r = backup_repo_open (unit_path ("repo"), true, &e);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  CU_ASSERT_EQUAL (r->ops->lock (r, true, &e), 0);
  publish (r, sample ("B", "2026-11-30T12:00:00Z", NULL));
  publish (r, sample ("A", "2026-11-30T13:00:00Z", "B"));
  /* Work in progress is never listed. */
  CU_ASSERT_EQUAL (r->ops->publish (r, "image-a.raw-0123abcd", ".C.json.tmp",
                                    "{", 1, &e),
                   0);
  /* A name cannot climb out. */
  CU_ASSERT_EQUAL (r->ops->publish (r, "..", "x.json", "{", 1, &e), -1);
  g_clear_error (&e);

  g_autoptr (GPtrArray) pts = backup_repo_all_points (r, NULL, &e);
  CU_ASSERT_PTR_NOT_NULL_FATAL (pts);
  CU_ASSERT_EQUAL_FATAL (pts->len, 2);
  CU_ASSERT_STRING_EQUAL (((struct backup_manifest *)pts->pdata[0])->id, "B");

  g_autoptr (backup_manifest) l = backup_repo_find_point (r, "latest", NULL,
                                                          &e);
  CU_ASSERT (l && strcmp (l->id, "A") == 0);
  g_autoptr (backup_manifest) t
      = backup_repo_find_point (r, "2026-11-30T12:30:00Z", NULL, &e);
  CU_ASSERT (t && strcmp (t->id, "B") == 0);
  CU_ASSERT_PTR_NULL (
      backup_repo_find_point (r, "2026-11-29T00:00:00Z", NULL, &e));
  g_clear_error (&e);
  CU_ASSERT_PTR_NULL (backup_repo_find_point (r, "nonsense", NULL, &e));
  CU_ASSERT (e && strstr (e->message, "no point \"nonsense\""));
  g_clear_error (&e);

  /* A damaged manifest: the listing names it, or skips it into BAD. */
  CU_ASSERT_EQUAL (r->ops->publish (r, "image-a.raw-0123abcd", "D.json",
                                    "{}", 2, &e),
                   0);
  CU_ASSERT_PTR_NULL (backup_repo_all_points (r, NULL, &e));
  CU_ASSERT (e && strstr (e->message, "D.json"));
  g_clear_error (&e);
  g_autoptr (GPtrArray) bad = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) some = backup_repo_all_points (r, bad, &e);
  CU_ASSERT (some && some->len == 2 && bad->len == 1);
  /* A manifest under another point's name. */
  g_autoptr (backup_manifest) m = sample ("E", "2026-11-30T14:00:00Z", NULL);
  g_autofree char *text = backup_manifest_to_json (m);
  CU_ASSERT_EQUAL (r->ops->publish (r, m->disk, "F.json", text, strlen (text),
                                    &e),
                   0);
  g_ptr_array_set_size (bad, 0);
  g_autoptr (GPtrArray) again = backup_repo_all_points (r, bad, &e);
  CU_ASSERT (bad->len == 2 && strstr (bad->pdata[1], "not its name's"));
  backup_repo_close (r);
}

/* Each manifest is parsed once per handle (repo.c): a point's manifest
 * replaced under the same name (a prune's union) is read anew, and the
 * callers' copies are their own. */
static void
test_manifest_cache (void)
{
  GError *e = NULL;
  struct backup_repo *r = backup_repo_open (unit_path ("cache"), true, &e);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  publish (r, sample ("B", "2026-11-30T12:00:00Z", NULL));
  g_autoptr (backup_manifest) first = backup_latest (r, "image-a.raw-0123abcd",
                                                     &e);
  CU_ASSERT_FATAL (first && first->n_blocks == 3);
  first->blocks[0].index = 99;
  g_free (first->why);
  first->why = g_strdup ("changed by the caller");
  g_autoptr (backup_manifest) second
      = backup_latest (r, "image-a.raw-0123abcd", &e);
  CU_ASSERT_FATAL (second != NULL);
  CU_ASSERT_EQUAL (second->blocks[0].index, 0);
  CU_ASSERT_STRING_EQUAL (second->why, "because");

  struct backup_manifest *m = sample ("B", "2026-11-30T12:00:00Z", NULL);
  m->n_blocks = 2;
  g_free (m->why);
  m->why = g_strdup ("merged");
  publish (r, m);
  g_autoptr (backup_manifest) third = backup_latest (r, "image-a.raw-0123abcd",
                                                     &e);
  CU_ASSERT_FATAL (third != NULL);
  CU_ASSERT_EQUAL (third->n_blocks, 2);
  CU_ASSERT_STRING_EQUAL (third->why, "merged");
  g_autoptr (backup_manifest) copy = backup_manifest_copy (third);
  CU_ASSERT (copy->blocks != third->blocks && copy->n_blocks == 2
             && memcmp (copy->blocks, third->blocks,
                        2 * sizeof *copy->blocks) == 0);
  CU_ASSERT_STRING_EQUAL (copy->id, "B");
  backup_repo_close (r);
}

/* backup_sha256: FIPS 180-4's examples, a zero block as sha256sum says,
 * and the same from threads at once (the create workers). */
static const char *
hex (const uint8_t sum[32], char out[65])
{
  for (int i = 0; i < 32; i++)
    snprintf (out + 2 * i, 3, "%02x", sum[i]);
  return out;
}

static void *
hash_zeroes (void *opaque)
{
  uint8_t *sum = opaque;
  g_autofree char *zero = g_malloc0 (BACKUP_BLOCK_SIZE);
  for (int i = 0; i < 100; i++)
    backup_sha256 (zero, BACKUP_BLOCK_SIZE, sum);
  return NULL;
}

static void
test_sha256 (void)
{
  uint8_t sum[32], sums[4][32];
  char h[65];
  const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  const char *zero64k
      = "de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31";

  backup_sha256 ("abc", 3, sum);
  CU_ASSERT_STRING_EQUAL (
      hex (sum, h),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  backup_sha256 (msg, strlen (msg), sum);
  CU_ASSERT_STRING_EQUAL (
      hex (sum, h),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  backup_sha256 ("", 0, sum);
  CU_ASSERT_STRING_EQUAL (
      hex (sum, h),
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  GThread *th[4];
  for (int i = 0; i < 4; i++)
    th[i] = g_thread_new ("sha256", hash_zeroes, sums[i]);
  for (int i = 0; i < 4; i++) {
    g_thread_join (th[i]);
    CU_ASSERT_STRING_EQUAL (hex (sums[i], h), zero64k);
  }
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "manifest round trip", test_round_trip },
    { "bad manifests are refused by name and field", test_bad_manifests },
    { "names stay inside the repository", test_names },
    { "publish, list and find points", test_repository },
    { "a manifest is parsed once while its file stays the same",
      test_manifest_cache },
    { "SHA-256 of blocks (GnuTLS)", test_sha256 },
    { NULL },
  };
  return unit_main ("backup-manifest", tests);
}
