/* A remote repository (backup.h's backup_repo_open_remote): the client
 * of https://HOST:PORT/backups/NAME, which a vdimotiond serves
 * (xapi-shim/http-backup.c, serve.c; vdimotion-backup-http(7)).
 *
 * Design: the server runs libbackup on its own directory; this side
 * has the guest data and moves it.
 *
 * - Reading manifests goes through the ops table (list_disks,
 *   list_names, read as GETs), so listing and finding points is
 *   repo.c's code, as for a local directory.  The files themselves are
 *   out of reach (no path, publish, rename, remove): create, restore,
 *   verify and prune are the ops' whole operations.
 * - create: POST begin names the disk (the local key, as
 *   backup_disk_key_for_image), the source and its size; the answer
 *   gives the base point's block hashes, the window size and the
 *   windows already done (a rerun after a kill).  CONNECTIONS threads,
 *   each with its own connection, take the other windows in turn: read
 *   the source's data blocks (holes are not read), hash them, and PUT
 *   the runs of blocks that differ from the base (a block that became
 *   zero is sent as zeroes, since the server stages over the base),
 *   then POST done.  POST commit makes the point; its manifest comes
 *   back, with this side's figures (what was read here and sent).
 * - restore: the point's data extents (GET map), then the threads GET
 *   ranges of up to REQUEST_SIZE bytes of them and write them to the
 *   destination (an image, created in the format its extension says,
 *   or an NBD URI); the rest reads as zero (a new image) or is zeroed.
 *   An image's restore keeps a journal of windows done beside it
 *   (DIR/.NAME.restore.journal), so a rerun goes on where a kill
 *   stopped it.
 * - verify and prune: one POST each; the server's answer in the
 *   structures the local calls fill.
 *
 * The HTTPS is the XenAPI client's (xapi-client.h: its TLS policy: a
 * pinned certificate, a CA file, or the system's), one client per
 * thread; every request carries the session the caller logged in with.
 * Errors: G_FILE_ERROR GErrors naming the URL and what the server said
 * (HTTP 404 → NOENT, 400 → INVAL, 409 → EXIST, 401 → PERM). */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "backup.h"
#include "bitmap.h"
#include "clock.h"
#include "copy.h"
#include "endpoint.h"
#include "iszero.h"
#include "journal.h"
#include "vdisk.h"
#include "xapi-client.h"

/* Bytes per PUT or GET of guest data. */
#define REQUEST_SIZE (4u << 20)

struct remote
{
  struct backup_repo r; /* first: the ops see a struct backup_repo */
  char *base;           /* "https://host:port" */
  char *prefix;         /* "/backups/NAME/" */
  struct xapi_client_config cfg;
  char *session;
  unsigned connections;
  struct xapi_client *main; /* the caller thread's */
};

static struct remote *
remote_of (struct backup_repo *r)
{
  return (struct remote *)r;
}

bool
backup_location_is_remote (const char *location)
{
  return g_str_has_prefix (location, "https://");
}

static struct xapi_client *
new_client (struct remote *rm, GError **err)
{
  GError *e = NULL;
  struct xapi_client *c = xapi_client_new (&rm->cfg, &e);
  if (!c)
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s", e->message);
  g_clear_error (&e);
  return c;
}

/* One request: METHOD of REL (below the repository's prefix) with
 * QUERY (or NULL) and BODY (or NULL).  The answer's body on 200; else
 * NULL with *ERR saying what the server said. */
static GBytes *
request (struct remote *rm, struct xapi_client *c, const char *method,
         const char *rel, const char *query, const void *body, size_t len,
         GError **err)
{
  g_autofree char *sess = g_uri_escape_string (rm->session, NULL, false);
  g_autofree char *path
      = g_strdup_printf ("%s%s?session_id=%s%s%s", rm->prefix, rel, sess,
                         query ? "&" : "", query ? query : "");
  GError *e = NULL;
  g_autoptr (SoupMessage) msg = xapi_client_message (c, method, path, &e);
  GBytes *reply = NULL;

  if (msg && body) {
    g_autoptr (GBytes) b = g_bytes_new_static (body, len);
    soup_message_set_request_body_from_bytes (msg, "application/octet-stream",
                                              b);
  }
  if (msg)
    reply = xapi_client_send_and_read (c, msg, &e);
  if (!reply) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s%s: %s", rm->base,
                 path, e ? e->message : "failed");
    g_clear_error (&e);
    return NULL;
  }
  guint status = soup_message_get_status (msg);
  if (status == SOUP_STATUS_OK)
    return reply;
  gsize n;
  const char *text = g_bytes_get_data (reply, &n);
  g_autofree char *line
      = g_strndup (text ? text : "", text ? strcspn (text, "\r\n") : 0);
  if (line && n < strlen (line))
    line[n] = '\0';
  int code = status == SOUP_STATUS_NOT_FOUND      ? G_FILE_ERROR_NOENT
             : status == SOUP_STATUS_BAD_REQUEST  ? G_FILE_ERROR_INVAL
             : status == SOUP_STATUS_CONFLICT     ? G_FILE_ERROR_EXIST
             : status == SOUP_STATUS_UNAUTHORIZED ? G_FILE_ERROR_PERM
                                                  : G_FILE_ERROR_IO;
  g_set_error (err, G_FILE_ERROR, code, "%s%s%s: HTTP %u: %s", rm->base,
               rm->prefix, rel, status, line);
  g_bytes_unref (reply);
  return NULL;
}

/* The answer to a request as JSON (the parser owns it). */
static JsonNode *
request_json (struct remote *rm, struct xapi_client *c, const char *method,
              const char *rel, const char *query, const char *body,
              JsonParser *p, GError **err)
{
  g_autoptr (GBytes) reply = request (rm, c, method, rel, query, body,
                                      body ? strlen (body) : 0, err);
  gsize len;
  if (!reply)
    return NULL;
  const char *text = g_bytes_get_data (reply, &len);
  if (!json_parser_load_from_data (p, text ? text : "", len, NULL)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
                 "%s%s%s: the answer is not JSON", rm->base, rm->prefix, rel);
    return NULL;
  }
  return json_parser_get_root (p);
}

/* A JSON array of strings as a strv (NULL with *ERR if it is not). */
static char **
strv_of (struct remote *rm, JsonNode *n, const char *what, GError **err)
{
  if (!n || !JSON_NODE_HOLDS_ARRAY (n))
    goto bad;
  JsonArray *a = json_node_get_array (n);
  guint len = json_array_get_length (a);
  char **v = g_new0 (char *, len + 1);
  for (guint i = 0; i < len; i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!JSON_NODE_HOLDS_VALUE (e)
        || json_node_get_value_type (e) != G_TYPE_STRING) {
      g_strfreev (v);
      goto bad;
    }
    v[i] = g_strdup (json_node_get_string (e));
  }
  return v;
bad:
  g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
               "%s%s: %s: the answer is not a list of names", rm->base,
               rm->prefix, what);
  return NULL;
}

/* ---- The ops table: manifests --------------------------------------- */

static int
remote_lock (struct backup_repo *r, bool exclusive, GError **err)
{
  return 0; /* the server locks around each request */
}

static char **
remote_list_disks (struct backup_repo *r, GError **err)
{
  struct remote *rm = remote_of (r);
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonNode *n = request_json (rm, rm->main, "GET", "", NULL, NULL, p, err);
  return n ? strv_of (rm, n, "the disks", err) : NULL;
}

static char **
remote_list_names (struct backup_repo *r, const char *disk, const char *suffix,
                   GError **err)
{
  struct remote *rm = remote_of (r);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autofree char *rel = g_strdup_printf ("%s/", disk);
  JsonNode *n = request_json (rm, rm->main, "GET", rel, NULL, NULL, p, err);
  g_auto (GStrv) all = n ? strv_of (rm, n, rel, err) : NULL;
  if (!all)
    return NULL;
  GPtrArray *out = g_ptr_array_new ();
  for (char **s = all; *s; s++)
    if (g_str_has_suffix (*s, suffix) && backup_name_is_safe (*s))
      g_ptr_array_add (out, g_strdup (*s));
  g_ptr_array_add (out, NULL);
  return (char **)g_ptr_array_free (out, false);
}

static char *
remote_read (struct backup_repo *r, const char *disk, const char *name,
             size_t *len, GError **err)
{
  struct remote *rm = remote_of (r);
  if (name[0] == '.') {
    /* Work in progress is the server's own (its upload), never read
     * from here. */
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "repository %s: %s/%s is the server's", r->location, disk,
                 name);
    return NULL;
  }
  g_autofree char *rel = g_strdup_printf ("%s/%s", disk, name);
  g_autoptr (GBytes) reply
      = request (rm, rm->main, "GET", rel, NULL, NULL, 0, err);
  if (!reply)
    return NULL;
  gsize n;
  const char *data = g_bytes_get_data (reply, &n);
  *len = n;
  return g_strndup (data ? data : "", n);
}

static int
remote_not_here (struct backup_repo *r, GError **err)
{
  g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_PERM,
               "repository %s: its files are the server's", r->location);
  return -1;
}

static int
remote_publish (struct backup_repo *r, const char *disk, const char *name,
                const char *data, size_t len, GError **err)
{
  return remote_not_here (r, err);
}

static int
remote_rename (struct backup_repo *r, const char *disk, const char *from,
               const char *to, GError **err)
{
  return remote_not_here (r, err);
}

static int
remote_remove (struct backup_repo *r, const char *disk, const char *name,
               GError **err)
{
  return remote_not_here (r, err);
}

static char *
remote_path (struct backup_repo *r, const char *disk, const char *name)
{
  return NULL;
}

static void
remote_close (struct backup_repo *r)
{
  struct remote *rm = remote_of (r);
  if (rm->main)
    xapi_client_free (rm->main);
  g_free (rm->base);
  g_free (rm->prefix);
  g_free ((char *)rm->cfg.url);
  g_free ((char *)rm->cfg.ca_file);
  g_free ((char *)rm->cfg.cert_sha256);
  if (rm->session)
    explicit_bzero (rm->session, strlen (rm->session));
  g_free (rm->session);
  /* backup_repo_close frees the rest. */
}

/* ---- Parallel work ---------------------------------------------------- */

/* Windows handed out to CONNECTIONS threads, each with its client. */
struct pool
{
  struct remote *rm;
  GMutex lock;
  uint64_t next, nwindows;
  const uint64_t *skip; /* bitmap: windows not to do */
  GError *err;          /* the first failure: everyone stops */
  uint64_t windows_done;
  backup_progress_fn progress;
  void *opaque;
  uint64_t size, window_size;
  struct backup_stats stats;
  /* Does window W with the thread's client C; -1 with *ERR. */
  int (*window) (struct pool *pl, struct xapi_client *c, uint64_t w,
                 struct backup_stats *st, GError **err);
  void *op;
};

static gpointer
pool_thread (gpointer data)
{
  struct pool *pl = data;
  GError *e = NULL;
  struct backup_stats st = { 0 };
  struct xapi_client *c = new_client (pl->rm, &e);

  while (c && !e) {
    g_mutex_lock (&pl->lock);
    while (pl->next < pl->nwindows && bitmap_get (pl->skip, pl->next))
      pl->next++;
    uint64_t w = pl->next++;
    bool stop = w >= pl->nwindows || pl->err;
    g_mutex_unlock (&pl->lock);
    if (stop)
      break;
    if (pl->window (pl, c, w, &st, &e) == -1)
      break;
    g_mutex_lock (&pl->lock);
    pl->windows_done++;
    if (pl->progress)
      pl->progress (MIN (pl->windows_done * pl->window_size, pl->size),
                    pl->size, pl->opaque);
    g_mutex_unlock (&pl->lock);
  }
  g_mutex_lock (&pl->lock);
  if (e && !pl->err)
    pl->err = e;
  else if (e)
    g_error_free (e);
  pl->stats.bytes_read += st.bytes_read;
  pl->stats.bytes_written += st.bytes_written;
  pl->stats.bytes_skipped += st.bytes_skipped;
  g_mutex_unlock (&pl->lock);
  if (c)
    xapi_client_free (c);
  return NULL;
}

static int
pool_run (struct pool *pl, GError **err)
{
  GThread *th[64];
  unsigned n = MIN (MAX (pl->rm->connections, 1), 64);

  g_mutex_init (&pl->lock);
  for (uint64_t w = 0; w < pl->nwindows; w++)
    if (bitmap_get (pl->skip, w))
      pl->windows_done++;
  for (unsigned i = 0; i < n; i++)
    th[i] = g_thread_new ("backup-remote", pool_thread, pl);
  for (unsigned i = 0; i < n; i++)
    g_thread_join (th[i]);
  g_mutex_clear (&pl->lock);
  if (pl->err) {
    g_propagate_error (err, pl->err);
    pl->err = NULL;
    return -1;
  }
  return 0;
}

/* ---- create ----------------------------------------------------------- */

struct upload
{
  const char *disk;
  const struct backup_create_params *p;
  bool has_base;
  struct copy_endpoint *src;
  uint64_t size, nblocks;
  uint8_t (*base)[32]; /* the base chain's hashes */
  uint64_t *base_has;
};

/* Block B is one CBT says did not change since the base: not even read
 * (xapi's bitmap order: byte j holds blocks 8j..8j+7, most significant
 * bit first; past its end, changed). */
static bool
unchanged_by_cbt (const struct upload *u, uint64_t b)
{
  const struct backup_create_params *p = u->p;
  if (!p->changed || !u->has_base || p->why_full || p->full
      || b / 8 >= p->changed_len)
    return false;
  return !(p->changed[b / 8] & (0x80 >> (b % 8)));
}

/* PUT the LEN bytes of BUF at OFF. */
static int
put_run (struct pool *pl, struct xapi_client *c, const char *disk,
         uint64_t off, const char *buf, size_t len, struct backup_stats *st,
         GError **err)
{
  g_autofree char *rel = g_strdup_printf ("%s/data", disk);
  g_autofree char *q = g_strdup_printf ("offset=%" PRIu64, off);
  g_autoptr (GBytes) r = request (pl->rm, c, "PUT", rel, q, buf, len, err);
  if (!r)
    return -1;
  st->bytes_written += len;
  return 0;
}

static int
upload_window (struct pool *pl, struct xapi_client *c, uint64_t w,
               struct backup_stats *st, GError **err)
{
  struct upload *u = pl->op;
  uint64_t off = w * pl->window_size;
  uint64_t end = MIN (off + pl->window_size, u->size);
  struct vdisk_extents ex = { 0 };
  char *e = NULL;
  g_autofree char *run = g_malloc (REQUEST_SIZE);
  g_autofree char *block = g_malloc (BACKUP_BLOCK_SIZE);
  g_autofree char *rel = g_strdup_printf ("%s/done", u->disk);
  g_autofree char *q = g_strdup_printf ("window=%" PRIu64, w);
  g_autoptr (GBytes) r = NULL;
  uint64_t run_off = 0;
  size_t run_len = 0;
  size_t x = 0;

  if (u->src->ops->map (u->src, off, end - off, &ex, &e) == -1)
    goto fail_e;
  for (uint64_t pos = off; pos < end; pos += BACKUP_BLOCK_SIZE) {
    uint64_t b = pos / BACKUP_BLOCK_SIZE;
    size_t len = MIN (BACKUP_BLOCK_SIZE, end - pos);
    bool data = false;
    if (unchanged_by_cbt (u, b)) {
      st->bytes_skipped += len;
      continue;
    }
    while (x < ex.len && ex.v[x].offset + ex.v[x].length <= pos)
      x++;
    for (size_t i = x; i < ex.len && ex.v[i].offset < pos + len; i++)
      data |= ex.v[i].type == VDISK_EXTENT_DATA;
    if (data) {
      if (u->src->ops->pread (u->src, block, len, pos, &e) == -1)
        goto fail_e;
      st->bytes_read += len;
      data = !is_zero (block, len);
    }
    if (!data)
      memset (block, 0, len);
    bool send;
    if (bitmap_get (u->base_has, b)) {
      uint8_t sum[32];
      backup_sha256 (block, len, sum);
      send = memcmp (sum, u->base[b], 32) != 0;
    }
    else
      send = data;
    if (send && run_len
        && (run_off + run_len != pos || run_len + len > REQUEST_SIZE)) {
      if (put_run (pl, c, u->disk, run_off, run, run_len, st, err) == -1)
        goto fail;
      run_len = 0;
    }
    if (send) {
      if (!run_len)
        run_off = pos;
      memcpy (run + run_len, block, len);
      run_len += len;
    }
    else
      st->bytes_skipped += len;
  }
  if (run_len
      && put_run (pl, c, u->disk, run_off, run, run_len, st, err) == -1)
    goto fail;
  vdisk_extents_free (&ex);
  r = request (pl->rm, c, "POST", rel, q, NULL, 0, err);
  return r ? 0 : -1;

fail_e:
  g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", e ? e : "failed");
  g_free (e);
fail:
  vdisk_extents_free (&ex);
  return -1;
}

/* The begin answer into U and PL: the base's hashes, the windows done. */
static int
take_begin (struct remote *rm, JsonNode *n, struct upload *u, struct pool *pl,
            uint64_t **skip, GError **err)
{
  JsonObject *o
      = n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
  JsonNode *done = o ? json_object_get_member (o, "done") : NULL;
  JsonNode *blocks = o ? json_object_get_member (o, "blocks") : NULL;
  int64_t ws
      = o ? json_object_get_int_member_with_default (o, "window-size", 0) : 0;
  if (!done || !JSON_NODE_HOLDS_ARRAY (done) || !blocks
      || !JSON_NODE_HOLDS_OBJECT (blocks) || ws < BACKUP_BLOCK_SIZE
      || ws % BACKUP_BLOCK_SIZE)
    goto bad;
  JsonNode *base = json_object_get_member (o, "base");
  u->has_base = base && !JSON_NODE_HOLDS_NULL (base);
  pl->window_size = ws;
  pl->nwindows = (u->size + ws - 1) / ws;
  *skip = g_new0 (uint64_t, bitmap_words (pl->nwindows));
  JsonArray *a = json_node_get_array (done);
  for (guint i = 0; i < json_array_get_length (a); i++) {
    int64_t w = json_array_get_int_element (a, i);
    if (w < 0 || (uint64_t)w >= pl->nwindows)
      goto bad;
    bitmap_set (*skip, w);
  }
  u->base = g_malloc (u->nblocks * sizeof *u->base);
  u->base_has = g_new0 (uint64_t, bitmap_words (u->nblocks));
  JsonObjectIter it;
  const char *k;
  JsonNode *v;
  json_object_iter_init (&it, json_node_get_object (blocks));
  while (json_object_iter_next (&it, &k, &v)) {
    char *end;
    uint64_t b = g_ascii_strtoull (k, &end, 10);
    const char *hex = JSON_NODE_HOLDS_VALUE (v)
                              && json_node_get_value_type (v) == G_TYPE_STRING
                          ? json_node_get_string (v)
                          : "";
    if (*end || b >= u->nblocks || strlen (hex) != 64
        || strspn (hex, "0123456789abcdef") != 64)
      goto bad;
    for (int i = 0; i < 32; i++)
      u->base[b][i] = g_ascii_xdigit_value (hex[2 * i]) << 4
                      | g_ascii_xdigit_value (hex[2 * i + 1]);
    bitmap_set (u->base_has, b);
  }
  return 0;
bad:
  g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
               "%s%s: the answer to begin is not the protocol's", rm->base,
               rm->prefix);
  return -1;
}

static int
remote_create (struct backup_repo *r, const struct backup_create_params *p,
               struct backup_manifest **point, GError **err)
{
  struct remote *rm = remote_of (r);
  g_autofree char *disk
      = p->disk ? g_strdup (p->disk) : backup_disk_key_for_image (p->source);
  struct vdisk *d = NULL;
  struct upload u = { .disk = disk, .p = p };
  struct pool pl = { .rm = rm,
                     .progress = p->progress,
                     .opaque = p->progress_opaque,
                     .window = upload_window,
                     .op = &u };
  g_autofree uint64_t *skip = NULL;
  g_autoptr (JsonParser) jp = json_parser_new ();
  double t0 = monotonic_seconds ();
  char *e = NULL;
  int ret = -1;

  if (copy_is_nbd_uri (p->source))
    u.src = copy_endpoint_nbd (p->source, false, 4, &e);
  else if ((d
            = vdisk_open_as (p->source, VDISK_OPEN_BUFFERED, p->format, NULL)))
    u.src = copy_endpoint_local (d, false, &e);
  else
    e = g_strdup (vdisk_get_error ());
  if (!u.src) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_NOENT, "%s",
                 e ? e : "cannot open the source");
    goto out;
  }
  u.size = pl.size = copy_endpoint_size (u.src);
  u.nblocks = (u.size + BACKUP_BLOCK_SIZE - 1) / BACKUP_BLOCK_SIZE;
  {
    g_autoptr (JsonBuilder) b = json_builder_new ();
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "source");
    json_builder_add_string_value (b, p->source_name ? p->source_name
                                                     : p->source);
    json_builder_set_member_name (b, "virtual-size");
    json_builder_add_int_value (b, u.size);
    json_builder_set_member_name (b, "full");
    json_builder_add_boolean_value (b, p->full);
    const char *keys[] = { "why-full", "cbt-snapshot", "cbt-generation" };
    const char *vals[] = { p->why_full, p->cbt_snapshot, p->cbt_generation };
    for (size_t i = 0; i < G_N_ELEMENTS (keys); i++) {
      json_builder_set_member_name (b, keys[i]);
      json_builder_add_string_value (b, vals[i]);
    }
    json_builder_end_object (b);
    g_autoptr (JsonGenerator) g = json_generator_new ();
    g_autoptr (JsonNode) root = json_builder_get_root (b);
    json_generator_set_root (g, root);
    g_autofree char *body = json_generator_to_data (g, NULL);
    g_autofree char *rel = g_strdup_printf ("%s/begin", disk);
    JsonNode *n
        = request_json (rm, rm->main, "POST", rel, NULL, body, jp, err);
    if (!n || take_begin (rm, n, &u, &pl, &skip, err) == -1)
      goto out;
  }
  pl.skip = skip;
  if (pool_run (&pl, err) == -1)
    goto out;
  {
    g_autoptr (JsonParser) mp = json_parser_new ();
    g_autofree char *rel = g_strdup_printf ("%s/commit", disk);
    g_autoptr (GBytes) reply
        = request (rm, rm->main, "POST", rel, NULL, NULL, 0, err);
    gsize len;
    if (!reply)
      goto out;
    const char *text = g_bytes_get_data (reply, &len);
    *point = backup_manifest_parse (text ? text : "", len, rel, err);
    if (!*point)
      goto out;
  }
  /* What moved between here and there, rather than the server's
   * staging. */
  (*point)->bytes_read = pl.stats.bytes_read;
  (*point)->bytes_written = pl.stats.bytes_written;
  (*point)->bytes_skipped = pl.stats.bytes_skipped;
  (*point)->seconds = monotonic_seconds () - t0;
  ret = 0;

out:
  g_free (e);
  e = NULL;
  if (u.src)
    copy_endpoint_close (u.src, &e);
  g_free (e);
  if (d)
    vdisk_close (d);
  g_free (u.base);
  g_free (u.base_has);
  return ret;
}

/* ---- restore ---------------------------------------------------------- */

struct restore
{
  const struct backup_manifest *m;
  struct copy_endpoint *dst;
  bool fresh;          /* DST reads as zero */
  uint64_t (*data)[2]; /* the point's data extents, sorted */
  size_t n_data;
  struct journal *j; /* or NULL */
  GMutex jlock;
};

/* GET [OFF, OFF+LEN) of the point and write it to the destination. */
static int
fetch (struct pool *pl, struct xapi_client *c, struct restore *rs,
       uint64_t off, uint64_t len, struct backup_stats *st, GError **err)
{
  g_autofree char *rel
      = g_strdup_printf ("%s/%s/data", rs->m->disk, rs->m->id);
  for (uint64_t at = off; at < off + len; at += REQUEST_SIZE) {
    uint64_t n = MIN (REQUEST_SIZE, off + len - at);
    g_autofree char *q
        = g_strdup_printf ("offset=%" PRIu64 "&length=%" PRIu64, at, n);
    g_autoptr (GBytes) r = request (pl->rm, c, "GET", rel, q, NULL, 0, err);
    gsize got;
    char *e = NULL;
    if (!r)
      return -1;
    const char *buf = g_bytes_get_data (r, &got);
    if (got != n) {
      g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
                   "%s%s%s: %zu bytes came for %" PRIu64, pl->rm->base,
                   pl->rm->prefix, rel, (size_t)got, n);
      return -1;
    }
    if (rs->dst->ops->pwrite (rs->dst, buf, n, at, &e) == -1) {
      g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", e);
      g_free (e);
      return -1;
    }
    st->bytes_read += n;
    st->bytes_written += n;
  }
  return 0;
}

static int
zero_range (struct restore *rs, uint64_t off, uint64_t len,
            struct backup_stats *st, GError **err)
{
  char *e = NULL;
  if (len == 0)
    return 0;
  if (rs->fresh) {
    st->bytes_skipped += len;
    return 0;
  }
  if (rs->dst->ops->zero (rs->dst, len, off, &e) == -1) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", e);
    g_free (e);
    return -1;
  }
  st->bytes_written += len;
  return 0;
}

static int
restore_window (struct pool *pl, struct xapi_client *c, uint64_t w,
                struct backup_stats *st, GError **err)
{
  struct restore *rs = pl->op;
  uint64_t off = w * pl->window_size;
  uint64_t end = MIN (off + pl->window_size, pl->size);
  uint64_t pos = off;
  char *e = NULL;

  for (size_t i = 0; i < rs->n_data && pos < end; i++) {
    uint64_t a = MAX (rs->data[i][0], off);
    uint64_t z = MIN (rs->data[i][0] + rs->data[i][1], end);
    if (z <= a)
      continue;
    if (zero_range (rs, pos, a - pos, st, err) == -1
        || fetch (pl, c, rs, a, z - a, st, err) == -1)
      return -1;
    pos = z;
  }
  if (zero_range (rs, pos, end - pos, st, err) == -1)
    return -1;
  if (!rs->j)
    return 0;
  int r = 0;
  if (rs->dst->ops->flush (rs->dst, &e) == 0) {
    g_mutex_lock (&rs->jlock);
    r = journal_mark_done (rs->j, &w, 1, &e);
    g_mutex_unlock (&rs->jlock);
  }
  else
    r = -1;
  if (r == -1) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", e);
    g_free (e);
  }
  return r;
}

/* The point's map into RS (and PL's size); -1 with *ERR. */
static int
take_map (struct remote *rm, const struct backup_manifest *m,
          struct restore *rs, struct pool *pl, GError **err)
{
  g_autoptr (JsonParser) jp = json_parser_new ();
  g_autofree char *rel = g_strdup_printf ("%s/%s/map", m->disk, m->id);
  JsonNode *n = request_json (rm, rm->main, "GET", rel, NULL, NULL, jp, err);
  if (!n)
    return -1;
  JsonObject *o = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
  JsonNode *data = o ? json_object_get_member (o, "data") : NULL;
  int64_t size
      = o ? json_object_get_int_member_with_default (o, "virtual-size", 0) : 0;
  if (!data || !JSON_NODE_HOLDS_ARRAY (data) || size <= 0)
    goto bad;
  JsonArray *a = json_node_get_array (data);
  rs->n_data = json_array_get_length (a);
  rs->data = g_malloc_n (rs->n_data, sizeof *rs->data);
  uint64_t last = 0;
  for (size_t i = 0; i < rs->n_data; i++) {
    JsonNode *x = json_array_get_element (a, i);
    if (!JSON_NODE_HOLDS_ARRAY (x)
        || json_array_get_length (json_node_get_array (x)) != 2)
      goto bad;
    int64_t off = json_array_get_int_element (json_node_get_array (x), 0);
    int64_t len = json_array_get_int_element (json_node_get_array (x), 1);
    if (off < (int64_t)last || len <= 0 || off + len > size)
      goto bad;
    rs->data[i][0] = off;
    rs->data[i][1] = len;
    last = off + len;
  }
  pl->size = size;
  return 0;
bad:
  g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
               "%s%s%s: the map is not the protocol's", rm->base, rm->prefix,
               rel);
  return -1;
}

/* DST's journal: DIR/.NAME.restore.journal. */
static char *
journal_path (const char *dst)
{
  g_autofree char *dir = g_path_get_dirname (dst);
  g_autofree char *base = g_path_get_basename (dst);
  g_autofree char *name = g_strdup_printf (".%s.restore.journal", base);
  return g_build_filename (dir, name, NULL);
}

/* The format an image's extension says (raw when it says none). */
static int
format_of (const char *path)
{
  const char *dot = strrchr (path, '.');
  int f = dot ? vdisk_format_from_name (dot + 1) : -1;
  return f < 0 ? VDISK_FORMAT_RAW : f;
}

static int
remote_restore (struct backup_repo *r, const struct backup_manifest *m,
                const char *dst, backup_progress_fn progress, void *opaque,
                struct backup_stats *stats, GError **err)
{
  struct remote *rm = remote_of (r);
  struct restore rs = { .m = m };
  struct pool pl = { .rm = rm,
                     .progress = progress,
                     .opaque = opaque,
                     .window = restore_window,
                     .op = &rs,
                     .window_size = COPY_WINDOW };
  g_autofree uint64_t *skip = NULL;
  g_autofree char *jpath = NULL;
  struct vdisk *d = NULL;
  double t0 = monotonic_seconds ();
  char *e = NULL;
  int ret = -1;

  g_mutex_init (&rs.jlock);
  if (take_map (rm, m, &rs, &pl, err) == -1)
    goto out;
  pl.nwindows = (pl.size + COPY_WINDOW - 1) / COPY_WINDOW;
  skip = g_new0 (uint64_t, bitmap_words (pl.nwindows));
  if (copy_is_nbd_uri (dst)) {
    if (!(rs.dst = copy_endpoint_nbd (dst, true, rm->connections, &e)))
      goto out_e;
  }
  else {
    bool resumed = false;
    int format = format_of (dst);
    g_autofree char *identity = g_strdup_printf (
        "restore %s%s%s/%s -> %s", rm->base, rm->prefix, m->disk, m->id, dst);
    jpath = journal_path (dst);
    bool had = g_file_test (jpath, G_FILE_TEST_EXISTS);
    if (!had && g_file_test (dst, G_FILE_TEST_EXISTS)) {
      g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                   "%s exists: restore to a new image", dst);
      goto out;
    }
    if (!(rs.j = journal_open (jpath, identity, pl.nwindows, &resumed, &e)))
      goto out_e;
    bool exists = g_file_test (dst, G_FILE_TEST_EXISTS);
    rs.fresh = !exists;
    if (!exists && vdisk_create (dst, format, pl.size, NULL) == -1)
      goto out_vdisk;
    d = vdisk_open_as (dst, VDISK_OPEN_RDWR | VDISK_OPEN_BUFFERED, format,
                       NULL);
    if (!d)
      goto out_vdisk;
    if (exists && vdisk_repair_leaks (d, NULL) == -1)
      goto out_vdisk;
    if (!(rs.dst = copy_endpoint_local (d, false, &e)))
      goto out_e;
    for (uint64_t w = 0; w < pl.nwindows; w++)
      if (journal_is_done (rs.j, w))
        bitmap_set (skip, w);
  }
  if (copy_endpoint_size (rs.dst) < pl.size) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "%s is smaller (%" PRIu64 " bytes) than point %s (%" PRIu64
                 " bytes)",
                 dst, copy_endpoint_size (rs.dst), m->id, pl.size);
    goto out;
  }
  pl.skip = skip;
  if (pool_run (&pl, err) == -1)
    goto out;
  if (rs.dst->ops->flush (rs.dst, &e) == -1)
    goto out_e;
  ret = 0;
  goto out;

out_vdisk:
  e = g_strdup (vdisk_get_error ());
out_e:
  g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", e ? e : "failed");
out:
  g_free (e);
  e = NULL;
  if (rs.dst && copy_endpoint_close (rs.dst, &e) == -1 && ret == 0) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", e);
    ret = -1;
  }
  g_free (e);
  if (d && vdisk_close (d) == -1 && ret == 0) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
    ret = -1;
  }
  if (rs.j)
    journal_close (rs.j, ret == 0);
  g_mutex_clear (&rs.jlock);
  g_free (rs.data);
  if (stats) {
    *stats = pl.stats;
    stats->seconds = monotonic_seconds () - t0;
  }
  return ret;
}

/* ---- verify and prune ------------------------------------------------- */

static int
remote_verify (struct backup_repo *r, bool deep, GPtrArray *problems,
               GError **err)
{
  struct remote *rm = remote_of (r);
  g_autoptr (JsonParser) jp = json_parser_new ();
  JsonNode *n = request_json (rm, rm->main, "POST", "verify", NULL,
                              deep ? "{\"deep\": true}" : "{\"deep\": false}",
                              jp, err);
  JsonObject *o
      = n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
  JsonNode *list = o ? json_object_get_member (o, "problems") : NULL;
  g_auto (GStrv) v = NULL;
  if (!n)
    return -1;
  if (!o || !json_object_has_member (o, "points")
      || !(v = strv_of (rm, list, "verify", err)))
    goto bad;
  for (char **s = v; *s; s++)
    g_ptr_array_add (problems, g_strdup (*s));
  return json_object_get_int_member (o, "points");
bad:
  g_clear_error (err);
  g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
               "%s%sverify: the answer is not the protocol's", rm->base,
               rm->prefix);
  return -1;
}

static int
remote_prune (struct backup_repo *r, const struct backup_prune_params *p,
              GPtrArray *removed, struct backup_stats *stats, GError **err)
{
  struct remote *rm = remote_of (r);
  g_autoptr (JsonParser) jp = json_parser_new ();
  g_autofree char *body = g_strdup_printf (
      "{\"keep-last\": %u, \"keep-daily\": %u, \"keep-weekly\": %u, "
      "\"dry-run\": %s}",
      p->keep_last, p->keep_daily, p->keep_weekly,
      p->dry_run ? "true" : "false");
  JsonNode *n
      = request_json (rm, rm->main, "POST", "prune", NULL, body, jp, err);
  JsonObject *o
      = n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
  g_auto (GStrv) v = NULL;
  if (!n)
    return -1;
  if (!o
      || !(v = strv_of (rm, json_object_get_member (o, "removed"), "prune",
                        err))) {
    g_clear_error (err);
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
                 "%s%sprune: the answer is not the protocol's", rm->base,
                 rm->prefix);
    return -1;
  }
  for (char **s = v; *s; s++)
    g_ptr_array_add (removed, g_strdup (*s));
  if (stats) {
    stats->bytes_read
        = json_object_get_int_member_with_default (o, "bytes-read", 0);
    stats->bytes_written
        = json_object_get_int_member_with_default (o, "bytes-written", 0);
    stats->bytes_skipped
        = json_object_get_int_member_with_default (o, "bytes-skipped", 0);
    stats->seconds
        = json_object_get_double_member_with_default (o, "seconds", 0);
  }
  return 0;
}

static const struct backup_repo_ops remote_ops = {
  .name = "remote",
  .lock = remote_lock,
  .list_disks = remote_list_disks,
  .list_names = remote_list_names,
  .read = remote_read,
  .publish = remote_publish,
  .rename = remote_rename,
  .remove = remote_remove,
  .path = remote_path,
  .close = remote_close,
  .create = remote_create,
  .restore = remote_restore,
  .verify = remote_verify,
  .prune = remote_prune,
};

struct backup_repo *
backup_repo_open_remote (const char *url,
                         const struct backup_remote_config *cfg, GError **err)
{
  g_autoptr (GUri) u = g_uri_parse (url, G_URI_FLAGS_NONE, NULL);
  const char *path = u ? g_uri_get_path (u) : NULL;
  g_autofree char *name = NULL;

  if (!u || strcmp (g_uri_get_scheme (u), "https") != 0 || !g_uri_get_host (u)
      || !g_str_has_prefix (path, "/backups/")) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "%s is not a remote repository's URL "
                 "(https://HOST:PORT/backups/NAME)",
                 url);
    return NULL;
  }
  name = g_strndup (path + strlen ("/backups/"),
                    strcspn (path + strlen ("/backups/"), "/"));
  if (!backup_name_is_safe (name)
      || strlen (path) > strlen ("/backups/") + strlen (name) + 1) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "%s: the repository's name \"%s\" is not a plain name "
                 "([A-Za-z0-9._-], not starting with a dot)",
                 url, name);
    return NULL;
  }
  struct remote *rm = g_new0 (struct remote, 1);
  rm->r.ops = &remote_ops;
  rm->r.location = g_strdup (url);
  rm->r.lock_fd = -1;
  rm->base = g_uri_get_port (u) > 0
                 ? g_strdup_printf ("https://%s:%d", g_uri_get_host (u),
                                    g_uri_get_port (u))
                 : g_strdup_printf ("https://%s", g_uri_get_host (u));
  rm->prefix = g_strdup_printf ("/backups/%s/", name);
  rm->cfg.url = g_strdup_printf ("%s/", rm->base);
  rm->cfg.ca_file = g_strdup (cfg->ca_file);
  rm->cfg.cert_sha256 = g_strdup (cfg->cert_sha256);
  rm->cfg.timeout_seconds = 600;
  rm->cfg.user_agent = "vdimotion/" PACKAGE_VERSION;
  rm->session = g_strdup (cfg->session ? cfg->session : "");
  rm->connections = cfg->connections ? cfg->connections : 4;
  if (!(rm->main = new_client (rm, err))) {
    backup_repo_close (&rm->r);
    return NULL;
  }
  return &rm->r;
}

/* ---- A point read range by range (backup_restore_chunked) ------------ */

int
backup_remote_point_map (struct backup_repo *r,
                         const struct backup_manifest *m, uint64_t (**data)[2],
                         size_t *n, GError **err)
{
  struct restore rs = { .m = m };
  struct pool pl = { .rm = remote_of (r) };

  if (take_map (remote_of (r), m, &rs, &pl, err) == -1) {
    g_free (rs.data);
    return -1;
  }
  *data = rs.data;
  *n = rs.n_data;
  return 0;
}

int
backup_remote_point_read (struct backup_repo *r,
                          const struct backup_manifest *m, uint64_t offset,
                          size_t len, void *buf, GError **err)
{
  struct remote *rm = remote_of (r);
  g_autofree char *rel = g_strdup_printf ("%s/%s/data", m->disk, m->id);

  for (size_t at = 0; at < len; at += REQUEST_SIZE) {
    size_t want = MIN (REQUEST_SIZE, len - at);
    g_autofree char *q
        = g_strdup_printf ("offset=%" PRIu64 "&length=%zu", offset + at, want);
    g_autoptr (GBytes) reply
        = request (rm, rm->main, "GET", rel, q, NULL, 0, err);
    gsize got = 0;
    const void *p = reply ? g_bytes_get_data (reply, &got) : NULL;

    if (!reply)
      return -1;
    if (got != want) {
      g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_IO,
                   "%s%s%s: %zu bytes came for %zu", rm->base, rm->prefix, rel,
                   (size_t)got, want);
      return -1;
    }
    memcpy ((char *)buf + at, p, want);
  }
  return 0;
}
