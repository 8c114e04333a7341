/* A backup point's manifest: JSON through json-glib, checked field by
 * field on the way in (a manifest is a file anyone could have edited:
 * every fault is a clear error naming the manifest and the field, never
 * a crash or a wrong restore).
 *
 * {"format": "vdimotion-backup-manifest", "version": 1,
 *  "id": "20261130T120000Z", "disk": "image-a.raw-0123abcd",
 *  "time": "2026-11-30T12:00:00.123456Z", "source": "/var/a.raw",
 *  "cbt-generation": null, "cbt-snapshot": null,
 *  "kind": "incremental", "why": "...", "parent": "20261129T120000Z",
 *  "file": "20261130T120000Z.qcow2", "virtual-size": 1073741824,
 *  "block-size": 65536,
 *  "blocks": [[17, "<64 hex digits>"], ...],
 *  "bytes-read": ..., "bytes-written": ..., "bytes-skipped": ...,
 *  "seconds": 1.5}
 */
#include <math.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <json-glib/json-glib.h>

#include "backup.h"
#include "json-builder.h"
#include "json.h"

void
backup_sha256 (const void *buf, size_t len, uint8_t out[32])
{
  /* gnutls_hash_fast needs no global init (3.3+); it fails only for a
   * digest the library does not have. */
  if (gnutls_hash_fast (GNUTLS_DIG_SHA256, buf, len, out) != 0)
    g_error ("GnuTLS cannot compute SHA-256");
}

bool
backup_name_is_safe (const char *s)
{
  size_t n = strlen (s);
  if (n == 0 || n > 128 || s[0] == '.')
    return false;
  for (const char *p = s; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '.' && *p != '_' && *p != '-')
      return false;
  return true;
}

char *
backup_disk_key_for_image (const char *path)
{
  /* An NBD URI is taken as it is; a path made absolute. */
  bool uri = strstr (path, "://") != NULL;
  g_autofree char *abs = uri ? g_strdup (path)
                             : g_canonicalize_filename (path, NULL);
  g_autofree char *base = uri ? g_strdup ("nbd") : g_path_get_basename (abs);
  g_autofree char *sum
      = g_compute_checksum_for_string (G_CHECKSUM_SHA256, abs, -1);
  GString *key = g_string_new ("image-");

  for (const char *p = base; *p && key->len < 64; p++)
    g_string_append_c (key, g_ascii_isalnum (*p) || *p == '.' || *p == '_'
                                    || *p == '-'
                                ? *p
                                : '_');
  g_string_append_printf (key, "-%.8s", sum);
  return g_string_free (key, false);
}

void
backup_manifest_free (struct backup_manifest *m)
{
  if (!m)
    return;
  g_free (m->id);
  g_free (m->disk);
  g_free (m->time);
  g_free (m->source);
  g_free (m->cbt_generation);
  g_free (m->cbt_snapshot);
  g_free (m->why);
  g_free (m->parent);
  g_free (m->file);
  g_free (m->blocks);
  g_free (m);
}

struct backup_manifest *
backup_manifest_copy (const struct backup_manifest *m)
{
  struct backup_manifest *c = g_memdup2 (m, sizeof *m);

  c->id = g_strdup (m->id);
  c->disk = g_strdup (m->disk);
  c->time = g_strdup (m->time);
  c->source = g_strdup (m->source);
  c->cbt_generation = g_strdup (m->cbt_generation);
  c->cbt_snapshot = g_strdup (m->cbt_snapshot);
  c->why = g_strdup (m->why);
  c->parent = g_strdup (m->parent);
  c->file = g_strdup (m->file);
  c->blocks = g_memdup2 (m->blocks, m->n_blocks * sizeof *m->blocks);
  return c;
}

/* The parse of one manifest: where errors go and whose they are. */
struct reader
{
  JsonObject *o;
  const char *name;
  GError **err;
};

static bool
bad (struct reader *r, const char *field, const char *what)
{
  g_set_error (r->err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
               "manifest %s: field \"%s\" %s", r->name, field, what);
  return false;
}

/* A string member; OPTIONAL allows null or absence (*OUT = NULL). */
static bool
get_str (struct reader *r, const char *field, bool optional, char **out)
{
  JsonNode *n = json_object_get_member (r->o, field);
  *out = NULL;
  if (!n || JSON_NODE_HOLDS_NULL (n)) {
    if (optional)
      return true;
    return bad (r, field, "is missing");
  }
  if (!JSON_NODE_HOLDS_VALUE (n)
      || json_node_get_value_type (n) != G_TYPE_STRING)
    return bad (r, field, "is not a string");
  /* What an escape made of it must be UTF-8 too (json-glib lets a bad
   * escape through as a lone byte): it is written back by a prune. */
  if (!g_utf8_validate (json_node_get_string (n), -1, NULL))
    return bad (r, field, "is not UTF-8 text");
  *out = g_strdup (json_node_get_string (n));
  if (!**out && !optional)
    return bad (r, field, "is empty");
  return true;
}

static bool
get_u64 (struct reader *r, const char *field, uint64_t *out)
{
  JsonNode *n = json_object_get_member (r->o, field);
  if (!n || !JSON_NODE_HOLDS_VALUE (n)
      || json_node_get_value_type (n) != G_TYPE_INT64)
    return bad (r, field, "is missing or not an integer");
  gint64 v = json_node_get_int (n);
  if (v < 0)
    return bad (r, field, "is negative");
  *out = v;
  return true;
}

static bool
get_double (struct reader *r, const char *field, double *out)
{
  JsonNode *n = json_object_get_member (r->o, field);
  if (!n || !JSON_NODE_HOLDS_VALUE (n))
    return bad (r, field, "is missing or not a number");
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    *out = json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (n);
  else
    return bad (r, field, "is not a number");
  /* A number too large for a double reads as infinity, which JSON
   * cannot write back (a prune rewrites manifests). */
  if (!isfinite (*out) || *out < 0)
    return bad (r, field, "is not a finite number of seconds at least 0");
  return true;
}

static bool
parse_hex (const char *s, uint8_t out[32])
{
  if (strlen (s) != 64)
    return false;
  for (int i = 0; i < 32; i++) {
    int hi = g_ascii_xdigit_value (s[2 * i]);
    int lo = g_ascii_xdigit_value (s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i] = hi << 4 | lo;
  }
  return true;
}

/* "blocks": [[index, "hex"], ...], sorted, each within the disk. */
static bool
get_blocks (struct reader *r, struct backup_manifest *m)
{
  JsonNode *n = json_object_get_member (r->o, "blocks");
  if (!n || !JSON_NODE_HOLDS_ARRAY (n))
    return bad (r, "blocks", "is missing or not an array");
  JsonArray *a = json_node_get_array (n);
  uint64_t nblocks
      = (m->virtual_size + BACKUP_BLOCK_SIZE - 1) / BACKUP_BLOCK_SIZE;
  m->n_blocks = json_array_get_length (a);
  if (m->n_blocks > nblocks)
    return bad (r, "blocks", "lists more blocks than the disk has");
  m->blocks = g_new0 (struct backup_block, m->n_blocks);
  for (size_t i = 0; i < m->n_blocks; i++) {
    JsonNode *e = json_array_get_element (a, i);
    JsonArray *pair = JSON_NODE_HOLDS_ARRAY (e) ? json_node_get_array (e)
                                                : NULL;
    JsonNode *idx = pair && json_array_get_length (pair) == 2
                        ? json_array_get_element (pair, 0)
                        : NULL;
    JsonNode *sum = idx ? json_array_get_element (pair, 1) : NULL;
    g_autofree char *what = NULL;
    if (!idx || !JSON_NODE_HOLDS_VALUE (idx)
        || json_node_get_value_type (idx) != G_TYPE_INT64
        || !JSON_NODE_HOLDS_VALUE (sum)
        || json_node_get_value_type (sum) != G_TYPE_STRING) {
      what = g_strdup_printf ("entry %zu is not [index, \"sha256\"]", i);
      return bad (r, "blocks", what);
    }
    gint64 v = json_node_get_int (idx);
    if (v < 0 || (uint64_t)v >= nblocks) {
      what = g_strdup_printf ("entry %zu: block %" G_GINT64_FORMAT
                              " is outside the disk (%" G_GUINT64_FORMAT
                              " blocks)",
                              i, v, nblocks);
      return bad (r, "blocks", what);
    }
    if (i > 0 && (uint64_t)v <= m->blocks[i - 1].index) {
      what = g_strdup_printf ("entry %zu: block %" G_GINT64_FORMAT
                              " is out of order",
                              i, v);
      return bad (r, "blocks", what);
    }
    m->blocks[i].index = v;
    if (!parse_hex (json_node_get_string (sum), m->blocks[i].sha256)) {
      what = g_strdup_printf ("entry %zu: the SHA-256 is not 64 hex digits",
                              i);
      return bad (r, "blocks", what);
    }
  }
  return true;
}

static bool
check_name (struct reader *r, const char *field, const char *v)
{
  if (v && !backup_name_is_safe (v))
    return bad (r, field, "is not a plain name ([A-Za-z0-9._-], no "
                          "leading dot)");
  return true;
}

static bool
read_fields (struct reader *r, struct backup_manifest *m)
{
  g_autofree char *format = NULL, *kind = NULL;
  uint64_t version, block_size;

  if (!get_str (r, "format", false, &format))
    return false;
  if (strcmp (format, BACKUP_MANIFEST_FORMAT) != 0)
    return bad (r, "format", "is not \"" BACKUP_MANIFEST_FORMAT "\"");
  if (!get_u64 (r, "version", &version))
    return false;
  if (version != BACKUP_MANIFEST_VERSION)
    return bad (r, "version", "is not a version this program reads (1)");
  if (!get_str (r, "id", false, &m->id) || !check_name (r, "id", m->id)
      || !get_str (r, "disk", false, &m->disk)
      || !check_name (r, "disk", m->disk)
      || !get_str (r, "time", false, &m->time)
      || !get_str (r, "source", false, &m->source)
      || !get_str (r, "cbt-generation", true, &m->cbt_generation)
      || !get_str (r, "cbt-snapshot", true, &m->cbt_snapshot)
      || !get_str (r, "kind", false, &kind)
      || !get_str (r, "why", false, &m->why)
      || !get_str (r, "parent", true, &m->parent)
      || !check_name (r, "parent", m->parent)
      || !get_str (r, "file", false, &m->file)
      || !check_name (r, "file", m->file)
      || !get_u64 (r, "virtual-size", &m->virtual_size)
      || !get_u64 (r, "block-size", &block_size)
      || !get_u64 (r, "bytes-read", &m->bytes_read)
      || !get_u64 (r, "bytes-written", &m->bytes_written)
      || !get_u64 (r, "bytes-skipped", &m->bytes_skipped)
      || !get_double (r, "seconds", &m->seconds))
    return false;
  g_autoptr (GDateTime) t = g_date_time_new_from_iso8601 (m->time, NULL);
  if (!t)
    return bad (r, "time", "is not an ISO 8601 time");
  m->time_us = g_date_time_to_unix (t) * G_USEC_PER_SEC
               + g_date_time_get_microsecond (t);
  if (strcmp (kind, "full") == 0)
    m->kind = BACKUP_FULL;
  else if (strcmp (kind, "incremental") == 0)
    m->kind = BACKUP_INCREMENTAL;
  else
    return bad (r, "kind", "is neither \"full\" nor \"incremental\"");
  if ((m->kind == BACKUP_FULL) != (m->parent == NULL))
    return bad (r, "parent", m->kind == BACKUP_FULL
                                 ? "is set on a full point"
                                 : "is missing on an incremental point");
  if (block_size != BACKUP_BLOCK_SIZE)
    return bad (r, "block-size", "is not 65536");
  if (m->virtual_size == 0 || m->virtual_size % 512)
    return bad (r, "virtual-size", "is not a positive multiple of 512");
  if (!g_str_has_suffix (m->file, ".qcow2"))
    return bad (r, "file", "does not end in .qcow2");
  return get_blocks (r, m);
}

struct backup_manifest *
backup_manifest_parse (const char *text, size_t len, const char *name,
                       GError **err)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  GError *e = NULL;

  /* json-glib lets bytes that are not UTF-8 through inside strings, and
   * then cannot write them back (a prune rewrites manifests). */
  if (!g_utf8_validate_len (text, len, NULL)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "manifest %s: not UTF-8 text", name);
    return NULL;
  }
  if (!json_parser_load_from_data (p, text, len, &e)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "manifest %s: not JSON: %s", name, e->message);
    g_error_free (e);
    return NULL;
  }
  JsonNode *root = json_parser_get_root (p);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "manifest %s: not a JSON object", name);
    return NULL;
  }
  struct backup_manifest *m = g_new0 (struct backup_manifest, 1);
  struct reader r = { json_node_get_object (root), name, err };
  if (!read_fields (&r, m)) {
    backup_manifest_free (m);
    return NULL;
  }
  return m;
}

char *
backup_manifest_to_json (const struct backup_manifest *m)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  char hex[65];

  json_builder_begin_object (b);
  json_add_string_member (b, "format", BACKUP_MANIFEST_FORMAT);
  json_add_int_member (b, "version", BACKUP_MANIFEST_VERSION);
  json_add_string_member (b, "id", m->id);
  json_add_string_member (b, "disk", m->disk);
  json_add_string_member (b, "time", m->time);
  json_add_string_member (b, "source", m->source);
  json_add_string_member (b, "cbt-generation", m->cbt_generation);
  json_add_string_member (b, "cbt-snapshot", m->cbt_snapshot);
  json_add_string_member (b, "kind",
                          m->kind == BACKUP_FULL ? "full" : "incremental");
  json_add_string_member (b, "why", m->why);
  json_add_string_member (b, "parent", m->parent);
  json_add_string_member (b, "file", m->file);
  json_add_int_member (b, "virtual-size", m->virtual_size);
  json_add_int_member (b, "block-size", BACKUP_BLOCK_SIZE);
  json_builder_set_member_name (b, "blocks");
  json_builder_begin_array (b);
  for (size_t i = 0; i < m->n_blocks; i++) {
    for (int k = 0; k < 32; k++)
      snprintf (hex + 2 * k, 3, "%02x", m->blocks[i].sha256[k]);
    json_builder_begin_array (b);
    json_builder_add_int_value (b, m->blocks[i].index);
    json_builder_add_string_value (b, hex);
    json_builder_end_array (b);
  }
  json_builder_end_array (b);
  json_add_int_member (b, "bytes-read", m->bytes_read);
  json_add_int_member (b, "bytes-written", m->bytes_written);
  json_add_int_member (b, "bytes-skipped", m->bytes_skipped);
  json_builder_set_member_name (b, "seconds");
  json_builder_add_double_value (b, m->seconds);
  json_builder_end_object (b);

  g_autoptr (JsonGenerator) g = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  char *text = json_generator_to_data (g, NULL);
  char *fixed = json_fix_generated (text);
  char *out = g_strconcat (fixed, "\n", NULL);
  g_free (fixed);
  return out;
}
