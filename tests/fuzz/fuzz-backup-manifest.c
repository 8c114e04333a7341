/* libFuzzer target: a backup point's manifest (replicator/backup/
 * manifest.c), as `vdimotion backup` and vdimotiond's served
 * repositories read it from a repository nobody vouches for.  Whatever
 * the bytes, backup_manifest_parse either fails with a message that names
 * the manifest, or gives a manifest whose JSON (backup_manifest_to_json)
 * parses back to the same point: ids and file names that are plain
 * names, blocks sorted and inside the virtual size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "backup.h"

#define NAME "fuzz"

static int
streq (const char *a, const char *b)
{
  return (a == NULL && b == NULL) || (a && b && strcmp (a, b) == 0);
}

static void
check_same (const struct backup_manifest *a, const struct backup_manifest *b)
{
  if (!streq (a->id, b->id) || !streq (a->disk, b->disk)
      || !streq (a->time, b->time) || !streq (a->source, b->source)
      || !streq (a->cbt_generation, b->cbt_generation)
      || !streq (a->cbt_snapshot, b->cbt_snapshot)
      || !streq (a->why, b->why) || !streq (a->parent, b->parent)
      || !streq (a->file, b->file) || a->kind != b->kind
      || a->virtual_size != b->virtual_size || a->n_blocks != b->n_blocks
      || a->bytes_read != b->bytes_read
      || a->bytes_written != b->bytes_written
      || a->bytes_skipped != b->bytes_skipped)
    abort ();
  for (size_t i = 0; i < a->n_blocks; i++)
    if (a->blocks[i].index != b->blocks[i].index
        || memcmp (a->blocks[i].sha256, b->blocks[i].sha256, 32) != 0)
      abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (backup_manifest) m
      = backup_manifest_parse ((const char *)data, size, NAME, &err);

  if (m == NULL) {
    /* A refusal names the manifest. */
    if (err == NULL || strstr (err->message, NAME) == NULL)
      abort ();
    return 0;
  }
  if (!backup_name_is_safe (m->id) || !backup_name_is_safe (m->file))
    abort ();
  for (size_t i = 0; i < m->n_blocks; i++)
    if ((i > 0 && m->blocks[i].index <= m->blocks[i - 1].index)
        || m->blocks[i].index * (uint64_t)BACKUP_BLOCK_SIZE
               >= m->virtual_size)
      abort ();

  g_autofree char *json = backup_manifest_to_json (m);
  g_autoptr (GError) err2 = NULL;
  g_autoptr (backup_manifest) back
      = backup_manifest_parse (json, strlen (json), NAME, &err2);
  if (back == NULL)
    abort ();
  check_same (m, back);
  return 0;
}
