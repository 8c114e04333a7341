/* The serving side of a remote repository (replicator/backup/serve.c,
 * vdimotion-backup-http(7)), called as vdimotiond's face calls it: an
 * upload staged window by window becomes the point itself at commit,
 * its manifest listing exactly the blocks sent, each with the SHA-256
 * of what the point's file holds (whole blocks, a block of zeroes, a
 * write of part of a block); verify --deep agrees; the point reads
 * back as the bytes sent over the base; a write into a window already
 * done is refused; and a commit cut short after the point's file was
 * renamed, or after its manifest was published, is finished by the
 * rerun (begin answers every window done) as the same point. */
#include <glib.h>
#include <json-glib/json-glib.h>

#include "backup.h"
#include "copy.h"
#include "unit.h"

#define BS BACKUP_BLOCK_SIZE
/* Two windows; the last block is short. */
#define SIZE (COPY_WINDOW + 5 * BS + 1024)
#define DISK "d"

static struct backup_repo *
open_repo (void)
{
  GError *e = NULL;
  struct backup_repo *r = backup_repo_open (unit_path ("repo"), true, &e);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  return r;
}

/* begin (WHY_FULL: a full is wanted, or NULL): its answer, parsed by
 * P. */
static JsonObject *
begin (struct backup_repo *r, JsonParser *p, const char *why_full)
{
  struct backup_upload up
      = { .source = "src", .virtual_size = SIZE, .why_full = why_full };
  GError *e = NULL;
  g_autofree char *text = backup_serve_begin (r, DISK, &up, &e);
  if (!text)
    fprintf (stderr, "\nbegin: %s\n", e->message);
  CU_ASSERT_PTR_NOT_NULL_FATAL (text);
  CU_ASSERT_FATAL (json_parser_load_from_data (p, text, -1, NULL));
  return json_node_get_object (json_parser_get_root (p));
}

/* Write LEN bytes of IMG at OFF (the disk as the client has it). */
static void
send (struct backup_repo *r, const char *img, uint64_t off, size_t len)
{
  GError *e = NULL;
  CU_ASSERT_EQUAL (backup_serve_write (r, DISK, off, img + off, len, &e), 0);
  if (e)
    fprintf (stderr, "\nwrite: %s\n", e->message);
  g_clear_error (&e);
}

static void
done_all (struct backup_repo *r)
{
  GError *e = NULL;
  for (uint64_t w = 0; w < 2; w++)
    CU_ASSERT_EQUAL (backup_serve_done (r, DISK, w, &e), 0);
  g_clear_error (&e);
}

static struct backup_manifest *
commit (struct backup_repo *r)
{
  struct backup_manifest *m = NULL;
  GError *e = NULL;
  if (backup_serve_commit (r, DISK, 2, &m, &e) == -1)
    fprintf (stderr, "\ncommit: %s\n", e->message);
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  return m;
}

/* M lists exactly the blocks WANT (ascending, -1 ended), each with the
 * SHA-256 of IMG's bytes there. */
static void
expect_blocks (const struct backup_manifest *m, const char *img,
               const int64_t *want)
{
  size_t n = 0;
  for (; want[n] >= 0; n++) {
    uint64_t off = want[n] * BS, len = MIN (BS, SIZE - off);
    uint8_t sum[32];
    if (n >= m->n_blocks)
      break;
    backup_sha256 (img + off, len, sum);
    CU_ASSERT_EQUAL (m->blocks[n].index, (uint64_t)want[n]);
    CU_ASSERT (memcmp (m->blocks[n].sha256, sum, 32) == 0);
  }
  CU_ASSERT_EQUAL (m->n_blocks, n);
}

/* verify --deep finds nothing; point ID reads as IMG. */
static void
expect_good (struct backup_repo *r, const char *id, const char *img)
{
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *back = g_malloc (SIZE);
  GError *e = NULL;
  CU_ASSERT (backup_verify (r, true, problems, &e) >= 1);
  for (guint i = 0; i < problems->len; i++)
    fprintf (stderr, "\nverify: %s\n", (char *)problems->pdata[i]);
  CU_ASSERT_EQUAL (problems->len, 0);
  CU_ASSERT_EQUAL (backup_serve_read (r, DISK, id, 0, SIZE, back, &e), 0);
  CU_ASSERT (memcmp (back, img, SIZE) == 0);
  g_clear_error (&e);
}

/* M is a point of KIND (and WHY, if not NULL) holding the blocks WANT of
 * IMG, and is good. */
static void
expect_point (struct backup_repo *r, const struct backup_manifest *m,
              enum backup_kind kind, const char *why, const char *img,
              const int64_t *want)
{
  CU_ASSERT_EQUAL (m->kind, kind);
  if (why)
    CU_ASSERT_STRING_EQUAL (m->why, why);
  expect_blocks (m, img, want);
  expect_good (r, m->id, img);
}

static void
test_upload_is_the_point (void)
{
  g_autofree char *img = g_malloc0 (SIZE);
  struct backup_repo *r = open_repo ();
  GError *e = NULL;

  /* A full: blocks 0-3, one in the second window, the short last. */
  {
    g_autoptr (JsonParser) p = json_parser_new ();
    JsonObject *o = begin (r, p, NULL);
    CU_ASSERT (json_object_get_null_member (o, "base"));
    unit_fill (img, 4 * BS, 1);
    unit_fill (img + COPY_WINDOW + BS, BS, 2);
    unit_fill (img + SIZE - 1024, 1024, 3);
    send (r, img, 0, 4 * BS);
    send (r, img, COPY_WINDOW + BS, BS);
    send (r, img, SIZE - 1024, 1024);
    done_all (r);
  }
  g_autoptr (backup_manifest) full = commit (r);
  const int64_t want_full[] = { 0, 1, 2, 3, COPY_WINDOW / BS + 1,
                                SIZE / BS, -1 };
  expect_point (r, full, BACKUP_FULL, "the first point of this disk", img,
                want_full);

  /* An incremental: block 1 new, block 2 zeroed, part of block 5 (a
   * block the base does not hold). */
  {
    g_autoptr (JsonParser) p = json_parser_new ();
    JsonObject *o = begin (r, p, NULL);
    CU_ASSERT_STRING_EQUAL (json_object_get_string_member (o, "base"),
                            full->id);
    CU_ASSERT_EQUAL (
        json_object_get_size (json_object_get_object_member (o, "blocks")),
        6);
    unit_fill (img + BS, BS, 4);
    memset (img + 2 * BS, 0, BS);
    unit_fill (img + 5 * BS + 300, 1000, 5);
    send (r, img, BS, 2 * BS);
    send (r, img, 5 * BS + 300, 1000);
    done_all (r);
    /* A done window's bytes are final. */
    CU_ASSERT_EQUAL (backup_serve_write (r, DISK, 0, img, BS, &e), -1);
    CU_ASSERT (g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_INVAL));
    CU_ASSERT_PTR_NOT_NULL (e ? strstr (e->message, "done already") : NULL);
    g_clear_error (&e);
  }
  g_autofree char *note = NULL;
  CU_ASSERT (g_file_get_contents (unit_path ("repo/" DISK "/.upload.json"),
                                  &note, NULL, NULL));
  g_autoptr (backup_manifest) inc = commit (r);
  CU_ASSERT_STRING_EQUAL (inc->parent, full->id);
  const int64_t want_inc[] = { 1, 2, 5, -1 };
  expect_point (r, inc, BACKUP_INCREMENTAL, NULL, img, want_inc);
  CU_ASSERT (!g_file_test (unit_path ("repo/" DISK "/.upload.qcow2"),
                           G_FILE_TEST_EXISTS));

  /* Cut short after the rename (no manifest yet), then after the
   * publication (the notes still there): the rerun finishes the same
   * point. */
  g_autofree char *point = backup_manifest_to_json (inc);
  g_autofree char *mpath = g_strdup_printf ("%s/" DISK "/%s.json",
                                            unit_path ("repo"), inc->id);
  for (int cut = 0; cut < 2; cut++) {
    CU_ASSERT (g_file_set_contents (unit_path ("repo/" DISK "/.upload.json"),
                                    note, -1, NULL));
    CU_ASSERT (g_file_set_contents (
        unit_path ("repo/" DISK "/.upload.point.json"), point, -1, NULL));
    if (cut == 0)
      CU_ASSERT_EQUAL (unlink (mpath), 0);
    g_autoptr (JsonParser) p = json_parser_new ();
    JsonObject *o = begin (r, p, NULL);
    CU_ASSERT_EQUAL (
        json_array_get_length (json_object_get_array_member (o, "done")), 2);
    g_autoptr (backup_manifest) again = commit (r);
    CU_ASSERT_STRING_EQUAL (again->id, inc->id);
    expect_blocks (again, img, want_inc);
    g_autoptr (GPtrArray) points = backup_repo_points (r, DISK, NULL, &e);
    CU_ASSERT_EQUAL_FATAL (points->len, 2);
    CU_ASSERT (!g_file_test (unit_path ("repo/" DISK "/.upload.point.json"),
                             G_FILE_TEST_EXISTS));
    expect_good (r, inc->id, img);
  }

  /* A full that why-full asks for, staged over the base: made by
   * comparison with the chain, the whole disk in its layer. */
  {
    g_autoptr (JsonParser) p = json_parser_new ();
    JsonObject *o = begin (r, p, "the changed-block log was not trusted");
    CU_ASSERT_STRING_EQUAL (json_object_get_string_member (o, "base"),
                            inc->id);
    unit_fill (img + 3 * BS, BS, 6);
    send (r, img, 3 * BS, BS);
    done_all (r);
  }
  g_autoptr (backup_manifest) again = commit (r);
  const int64_t want_again[] = { 0, 1, 3, 5, COPY_WINDOW / BS + 1,
                                 SIZE / BS, -1 };
  expect_point (r, again, BACKUP_FULL,
                "the changed-block log was not trusted", img, want_again);
  backup_repo_close (r);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "an upload becomes the point, its sums those sent",
      test_upload_is_the_point },
    { NULL },
  };
  return unit_main ("backup-serve", tests);
}
