/* The backup repositories a daemon serves (--backup-repo NAME=DIR), over
 * its HTTP(S) with the XenAPI's authentication: the HTTP face of
 * libbackup's serving side (backup.h, serve.c).  The protocol is
 * vdimotion-backup-http(7):
 *
 *   GET  /backups/NAME/                    the disks (JSON array)
 *   GET  /backups/NAME/DISK/               its manifests' names
 *   GET  /backups/NAME/DISK/ID.json        a manifest
 *   POST /backups/NAME/verify              {"deep": B} -> the problems
 *   POST /backups/NAME/prune               {"keep-last": N, ...}
 *   POST /backups/NAME/DISK/begin          {"source", "virtual-size",
 *                                           "full"} -> the upload
 *   PUT  /backups/NAME/DISK/data?offset=O  guest bytes
 *   POST /backups/NAME/DISK/done?window=W  a window complete
 *   POST /backups/NAME/DISK/commit         -> the new point's manifest
 *   GET  /backups/NAME/DISK/ID/map         a point's data extents
 *   GET  /backups/NAME/DISK/ID/data?offset=O&length=L
 *
 * Every request carries a session (session_id= in the query or a
 * cookie, or HTTP Basic auth), checked on the main loop as the disk
 * data handlers do (http-vdi.c).  NAME is a key of the table, never a
 * path; DISK and ID are checked by libbackup (backup_name_is_safe).
 * The work runs in a thread of GLib's pool (GTask), each request with
 * its own handle on the repository (so its lock), while the message
 * waits paused; the answer is made back on the main loop.  A refusal
 * is a status with one line of text naming what was wrong: 400 a bad
 * request, 401 no session, 404 an unknown repository, disk or point,
 * 409 an upload in the way, 500 the server's trouble. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "backup.h"
#include "xapi.h"

/* The most bytes one GET .../data answers. */
#define MAX_READ (16u << 20)
/* backup_create's workers in a commit. */
#define COMMIT_THREADS 4

struct request_kind;

/* One request's work, done in a thread. */
struct breq
{
  SoupServerMessage *msg;
  const struct request_kind *kind;
  char *dir;  /* the repository's */
  char *disk; /* or NULL */
  char *name; /* the manifest's or the point's, or NULL */
  GByteArray *body;
  uint64_t offset, length;
  /* The answer. */
  guint status;
  char *type;
  GBytes *reply;
};

static void
breq_free (struct breq *j)
{
  g_object_unref (j->msg);
  g_free (j->dir);
  g_free (j->disk);
  g_free (j->name);
  if (j->body)
    g_byte_array_unref (j->body);
  g_free (j->type);
  if (j->reply)
    g_bytes_unref (j->reply);
  g_free (j);
}

static void
answer (SoupServerMessage *msg, guint status, const char *type,
        const void *data, size_t len)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, type, SOUP_MEMORY_COPY, data, len);
}

static void
answer_text (SoupServerMessage *msg, guint status, const char *text)
{
  g_autofree char *line = g_strdup_printf ("%s\n", text);
  answer (msg, status, "text/plain", line, strlen (line));
}

static void
breq_fail (struct breq *j, GError *e)
{
  j->status
      = !e || e->domain != G_FILE_ERROR ? SOUP_STATUS_INTERNAL_SERVER_ERROR
        : e->code == G_FILE_ERROR_INVAL ? SOUP_STATUS_BAD_REQUEST
        : e->code == G_FILE_ERROR_NOENT ? SOUP_STATUS_NOT_FOUND
        : e->code == G_FILE_ERROR_EXIST ? SOUP_STATUS_CONFLICT
                                        : SOUP_STATUS_INTERNAL_SERVER_ERROR;
  g_autofree char *line = g_strdup_printf ("%s\n", e ? e->message : "failed");
  j->type = g_strdup ("text/plain");
  j->reply = g_bytes_new (line, strlen (line));
  if (e)
    g_error_free (e);
}

static void
breq_json (struct breq *j, char *text)
{
  j->status = SOUP_STATUS_OK;
  j->type = g_strdup ("application/json");
  j->reply = g_bytes_new_take (text, strlen (text));
}

static char *
strv_json (char **v)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_array (b);
  for (char **s = v; s && *s; s++)
    json_builder_add_string_value (b, *s);
  json_builder_end_array (b);
  g_autoptr (JsonGenerator) g = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  return json_generator_to_data (g, NULL);
}

/* The request body as a JSON object (the parser owns it), or NULL with
 * *ERR naming what is wrong. */
static JsonObject *
body_object (struct breq *j, JsonParser *p, GError **err)
{
  JsonNode *root;
  if (!j->body
      || !json_parser_load_from_data (p, (const char *)j->body->data,
                                      j->body->len, NULL)
      || !(root = json_parser_get_root (p))
      || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "the request body is not a JSON object");
    return NULL;
  }
  return json_node_get_object (root);
}

/* A member of O that must be a non-negative integer (DEF if absent). */
static bool
member_u64 (JsonObject *o, const char *key, uint64_t def, uint64_t *out,
            GError **err)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n) {
    *out = def;
    return true;
  }
  if (!JSON_NODE_HOLDS_VALUE (n)
      || json_node_get_value_type (n) != G_TYPE_INT64
      || json_node_get_int (n) < 0) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "\"%s\" is not a non-negative integer", key);
    return false;
  }
  *out = json_node_get_int (n);
  return true;
}

static void
do_verify (struct breq *j, struct backup_repo *r, GError **err)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonObject *o = body_object (j, p, err);
  if (!o)
    return;
  bool deep = json_object_get_boolean_member_with_default (o, "deep", false);
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  if (r->ops->lock (r, false, err) == -1)
    return;
  int n = backup_verify (r, deep, problems, err);
  if (n < 0)
    return;
  g_ptr_array_add (problems, NULL);
  g_autofree char *list = strv_json ((char **)problems->pdata);
  breq_json (j,
             g_strdup_printf ("{\"points\": %d, \"problems\": %s}", n, list));
}

static void
do_prune (struct breq *j, struct backup_repo *r, GError **err)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonObject *o = body_object (j, p, err);
  struct backup_prune_params pp = { 0 };
  uint64_t last, daily, weekly;
  if (!o || !member_u64 (o, "keep-last", 0, &last, err)
      || !member_u64 (o, "keep-daily", 0, &daily, err)
      || !member_u64 (o, "keep-weekly", 0, &weekly, err))
    return;
  if (last == 0 || last > 100000 || daily > 100000 || weekly > 100000) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "keep-last must be 1 to 100000, keep-daily and keep-weekly "
                 "at most 100000");
    return;
  }
  pp.keep_last = last;
  pp.keep_daily = daily;
  pp.keep_weekly = weekly;
  pp.dry_run
      = json_object_get_boolean_member_with_default (o, "dry-run", false);
  g_autoptr (GPtrArray) removed = g_ptr_array_new_with_free_func (g_free);
  struct backup_stats st = { 0 };
  if (r->ops->lock (r, true, err) == -1
      || backup_prune (r, &pp, removed, &st, err) == -1)
    return;
  g_ptr_array_add (removed, NULL);
  g_autofree char *list = strv_json ((char **)removed->pdata);
  breq_json (j, g_strdup_printf ("{\"removed\": %s, \"bytes-read\": %" PRIu64
                                 ", \"bytes-written\": %" PRIu64
                                 ", \"bytes-skipped\": %" PRIu64
                                 ", \"seconds\": %.6f}",
                                 list, st.bytes_read, st.bytes_written,
                                 st.bytes_skipped, st.seconds));
}

static void
do_begin (struct breq *j, struct backup_repo *r, GError **err)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonObject *o = body_object (j, p, err);
  uint64_t size;
  if (!o || !member_u64 (o, "virtual-size", 0, &size, err))
    return;
  const char *source
      = json_object_get_string_member_with_default (o, "source", NULL);
  if (!source || !*source || !g_utf8_validate (source, -1, NULL)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "\"source\" is missing or not a string");
    return;
  }
  struct backup_upload up = {
    .source = source,
    .virtual_size = size,
    .full = json_object_get_boolean_member_with_default (o, "full", false),
  };
  const char *keys[] = { "why-full", "cbt-snapshot", "cbt-generation" };
  const char **vals[] = { &up.why_full, &up.cbt_snapshot, &up.cbt_generation };
  for (size_t i = 0; i < G_N_ELEMENTS (keys); i++) {
    JsonNode *n = json_object_get_member (o, keys[i]);
    if (!n || JSON_NODE_HOLDS_NULL (n))
      continue;
    if (!JSON_NODE_HOLDS_VALUE (n)
        || json_node_get_value_type (n) != G_TYPE_STRING
        || !g_utf8_validate (json_node_get_string (n), -1, NULL)) {
      g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "\"%s\" is not a string", keys[i]);
      return;
    }
    *vals[i] = json_node_get_string (n);
  }
  char *text = backup_serve_begin (r, j->disk, &up, err);
  if (text)
    breq_json (j, text);
}

static void
do_disks (struct breq *j, struct backup_repo *r, GError **err)
{
  g_auto (GStrv) v = r->ops->list_disks (r, err);
  if (v)
    breq_json (j, strv_json (v));
}

static void
do_names (struct breq *j, struct backup_repo *r, GError **err)
{
  if (!backup_name_is_safe (j->disk)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "\"%s\" is not a disk key", j->disk);
    return;
  }
  g_auto (GStrv) v = r->ops->list_names (r, j->disk, ".json", err);
  if (v)
    breq_json (j, strv_json (v));
}

static void
do_manifest (struct breq *j, struct backup_repo *r, GError **err)
{
  size_t len;
  char *text;
  if (!backup_name_is_safe (j->name) || !backup_name_is_safe (j->disk)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "\"%s/%s\" is not a manifest's name", j->disk, j->name);
    return;
  }
  if ((text = r->ops->read (r, j->disk, j->name, &len, err))) {
    j->status = SOUP_STATUS_OK;
    j->type = g_strdup ("application/json");
    j->reply = g_bytes_new_take (text, len);
  }
}

static void
do_write (struct breq *j, struct backup_repo *r, GError **err)
{
  if (backup_serve_write (r, j->disk, j->offset,
                          j->body ? j->body->data : NULL,
                          j->body ? j->body->len : 0, err)
      == 0)
    breq_json (j, g_strdup ("{}"));
}

static void
do_done (struct breq *j, struct backup_repo *r, GError **err)
{
  if (backup_serve_done (r, j->disk, j->offset, err) == 0)
    breq_json (j, g_strdup ("{}"));
}

static void
do_commit (struct breq *j, struct backup_repo *r, GError **err)
{
  struct backup_manifest *m = NULL;
  if (backup_serve_commit (r, j->disk, COMMIT_THREADS, &m, err) == 0) {
    breq_json (j, backup_manifest_to_json (m));
    backup_manifest_free (m);
  }
}

static void
do_map (struct breq *j, struct backup_repo *r, GError **err)
{
  char *text = r->ops->lock (r, false, err) == -1
                   ? NULL
                   : backup_serve_map (r, j->disk, j->name, err);
  if (text)
    breq_json (j, text);
}

static void
do_read (struct breq *j, struct backup_repo *r, GError **err)
{
  if (j->length == 0 || j->length > MAX_READ) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "length=%" PRIu64 " is not 1 to %u bytes", j->length,
                 MAX_READ);
    return;
  }
  void *buf = g_malloc (j->length);
  if (r->ops->lock (r, false, err) == 0
      && backup_serve_read (r, j->disk, j->name, j->offset, j->length, buf,
                            err)
             == 0) {
    j->status = SOUP_STATUS_OK;
    j->type = g_strdup ("application/octet-stream");
    j->reply = g_bytes_new_take (buf, j->length);
  }
  else
    g_free (buf);
}

/* The requests, by method and the shape of the path after
 * /backups/NAME/: DEPTH parts, the last one WORD ("*.json": a name
 * ending so); for DEPTH 2 and 3 the first is DISK, for 3 the second a
 * point id.  QUERY: the numbers it takes (offset=, window=, length=). */
struct request_kind
{
  const char *method;
  unsigned depth;
  const char *word;
  void (*run) (struct breq *j, struct backup_repo *r, GError **err);
  const char *query[2];
  bool body;
};

#define KIND(m, d, w, f, ...)                                                 \
  { .method = m, .depth = d, .word = w, .run = f, __VA_ARGS__ }
static const struct request_kind kinds[] = {
  KIND ("GET", 1, "", do_disks),
  KIND ("POST", 1, "verify", do_verify, .body = true),
  KIND ("POST", 1, "prune", do_prune, .body = true),
  KIND ("GET", 2, "", do_names),
  KIND ("GET", 2, "*.json", do_manifest),
  KIND ("POST", 2, "begin", do_begin, .body = true),
  KIND ("PUT", 2, "data", do_write, .query = { "offset" }, .body = true),
  KIND ("POST", 2, "done", do_done, .query = { "window" }),
  KIND ("POST", 2, "commit", do_commit),
  KIND ("GET", 3, "map", do_map),
  KIND ("GET", 3, "data", do_read, .query = { "offset", "length" }),
};
#undef KIND

static void
work (GTask *task, gpointer source, gpointer data, GCancellable *c)
{
  struct breq *j = data;
  GError *e = NULL;
  struct backup_repo *r = backup_repo_open (j->dir, true, &e);

  if (r) {
    j->kind->run (j, r, &e);
    backup_repo_close (r);
  }
  if (!j->reply)
    breq_fail (j, e);
  else if (e)
    g_error_free (e);
  g_task_return_boolean (task, TRUE);
}

/* Back on the main loop: the answer. */
static void
worked (GObject *source, GAsyncResult *res, gpointer data)
{
  struct breq *j = data;
  gsize len;
  const void *p = g_bytes_get_data (j->reply, &len);

  answer (j->msg, j->status, j->type, p, len);
  soup_server_message_unpause (j->msg);
  breq_free (j);
}

/* A query parameter that must be a non-negative integer. */
static bool
query_u64 (GHashTable *query, const char *key, uint64_t *out, char **why)
{
  const char *s = query ? g_hash_table_lookup (query, key) : NULL;
  char *end;
  if (!s || !g_ascii_isdigit (*s)) {
    *why = g_strdup_printf ("%s= is missing or not a number", key);
    return false;
  }
  errno = 0;
  *out = g_ascii_strtoull (s, &end, 10);
  if (*end || errno) {
    *why = g_strdup_printf ("%s=%s is not a number", key, s);
    return false;
  }
  return true;
}

/* What METHOD REST (the path after /backups/NAME/) asks for: the op,
 * and J's disk and name; false with *WHY if nothing. */
static bool
parse_op (struct breq *j, const char *method, const char *rest,
          GHashTable *query, char **why)
{
  g_auto (GStrv) parts = g_strsplit (rest, "/", 4);
  guint n = MAX (g_strv_length (parts), 1);
  const char *last = parts[0] ? parts[n - 1] : "";

  for (size_t i = 0; i < G_N_ELEMENTS (kinds) && !j->kind; i++) {
    const struct request_kind *k = &kinds[i];
    if (strcmp (k->method, method) == 0 && k->depth == n
        && (strcmp (k->word, "*.json") == 0 ? g_str_has_suffix (last, ".json")
                                            : strcmp (k->word, last) == 0))
      j->kind = k;
  }
  if (!j->kind)
    return false;
  j->disk = n >= 2 ? g_strdup (parts[0]) : NULL;
  j->name = n == 3 ? g_strdup (parts[1]) : n == 2 ? g_strdup (last) : NULL;
  uint64_t *dest[] = { &j->offset, &j->length };
  for (int q = 0; q < 2 && j->kind->query[q]; q++)
    if (!query_u64 (query, j->kind->query[q], dest[q], why))
      return false;
  return true;
}

void
xapi_http_backup (struct xapi_daemon *d, SoupServerMessage *msg,
                  const char *path, GHashTable *query, GByteArray *body)
{
  const char *method = soup_server_message_get_method (msg);
  const char *cookie = soup_message_headers_get_one (
      soup_server_message_get_request_headers (msg), "Cookie");
  g_autoptr (GHashTable) cookies
      = cookie ? soup_header_parse_semi_param_list (cookie) : NULL;
  const char *session
      = cookies ? g_hash_table_lookup (cookies, "session_id") : NULL;
  g_autofree char *text = NULL, *name = NULL, *why = NULL;
  const char *code, *dir, *rest;
  struct breq *j;
  GTask *task;
  guint status;

  if (!session && query)
    session = g_hash_table_lookup (query, "session_id");
  status = xapi_http_check_session (d, msg, session, &text, &code);
  if (status) {
    answer (msg, status, "text/plain", text, strlen (text));
    goto out;
  }
  /* /backups/NAME/REST */
  rest = path + strlen ("/backups");
  if (*rest != '/' && *rest != '\0') { /* /backupsX: not ours */
    answer_text (msg, SOUP_STATUS_NOT_FOUND, "not found");
    goto out;
  }
  if (*rest == '/')
    rest++;
  name = g_strndup (rest, strcspn (rest, "/"));
  rest += strlen (name);
  if (*rest == '/')
    rest++;
  dir = d->backup_repos ? g_hash_table_lookup (d->backup_repos, name) : NULL;
  if (!dir) {
    g_autofree char *line
        = g_strdup_printf ("no backup repository \"%s\" here", name);
    answer_text (msg, SOUP_STATUS_NOT_FOUND, line);
    goto out;
  }
  j = g_new0 (struct breq, 1);
  j->msg = g_object_ref (msg);
  j->dir = g_strdup (dir);
  if (!parse_op (j, method, rest, query, &why)) {
    g_autofree char *line
        = why ? g_strdup_printf ("%s %s: %s", method, path, why)
              : g_strdup_printf ("%s %s: no such request of a backup "
                                 "repository",
                                 method, path);
    answer_text (msg, why ? SOUP_STATUS_BAD_REQUEST : SOUP_STATUS_NOT_FOUND,
                 line);
    breq_free (j);
    goto out;
  }
  if (j->kind->body) {
    j->body = body;
    body = NULL;
  }
  soup_server_message_pause (msg);
  task = g_task_new (NULL, NULL, worked, j);
  g_task_set_task_data (task, j, NULL);
  g_task_run_in_thread (task, work);
  g_object_unref (task);

out:
  if (body)
    g_byte_array_unref (body);
}
