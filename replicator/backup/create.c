/* Creating a point (backup.h's backup_create): the source read through
 * a copy endpoint (a local image, or a VDI snapshot over NBD), hashed
 * in 64 KiB blocks, and the blocks that differ from the previous point
 * written into a new qcow2 layer over that point's file.
 *
 * What differs: with CBT, the blocks the changed bitmap names (others
 * are not even read); without, every block with data is read and its
 * SHA-256 compared with the chain's (the union of the manifests from
 * the previous point back to its full).  A block that became zero is
 * written as a zero cluster (it hides its parent's data).
 *
 * Work goes window by window (about a sixteenth of the disk, in
 * multiples of COPY_WINDOW), THREADS workers taking the window's blocks
 * in turn; at a window's end the layer is flushed and the window marked
 * done in the journal.  A CBT incremental takes windows in groups that
 * hold enough changed blocks to be worth a flush.  A rerun after a kill
 * finds .create.json (the pending point, its manifest without blocks)
 * and the journal: done windows are not read again, their hashes come
 * from the layer itself; the rest is redone. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup.h"
#include "bitmap.h"
#include "clock.h"
#include "copy.h"
#include "endpoint.h"
#include "iszero.h"
#include "journal.h"
#include "vdisk.h"

/* Blocks per window: a multiple of COPY_WINDOW, about a sixteenth of
 * the disk.  Each window costs a flush of the layer and two syncs of
 * the journal; on a 2 GiB disk with 20 % data, 64 windows of 32 MiB
 * spent three quarters of the time waiting for them (tests/bench/backup),
 * and a resume redoes at most one window. */
static uint64_t
window_blocks (uint64_t nblocks)
{
  uint64_t unit = COPY_WINDOW / BACKUP_BLOCK_SIZE;
  uint64_t units = (nblocks / 16 + unit - 1) / unit;
  return MAX (units, 1) * unit;
}
#define PENDING ".create.json"

struct create
{
  struct backup_repo *r;
  const struct backup_create_params *p;
  struct backup_manifest *m; /* the point being made */
  struct copy_endpoint *src;
  struct vdisk *src_disk; /* a local source's image */
  struct vdisk *dst;
  uint64_t nblocks;
  /* The chain's hashes before this point (incremental). */
  uint8_t (*prev)[32];
  uint64_t *prev_has;
  /* This point's blocks: written[] says which, sums[] their hashes. */
  uint8_t (*sums)[32];
  uint64_t *written;
  uint8_t zero_sum[32];

  /* The current window, shared by its workers under LOCK. */
  pthread_mutex_t lock;
  uint64_t first, end; /* blocks [first, end) */
  uint64_t next;
  const uint8_t *may_have_data; /* per block of the window */
  char *err;
  struct backup_stats stats;
  uint64_t done_bytes;
};

static int
fail_errno (GError **err, int code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
fail_errno (GError **err, int code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (err, G_FILE_ERROR, code, msg);
  return -1;
}

static uint64_t
block_len (struct create *c, uint64_t b)
{
  uint64_t off = b * BACKUP_BLOCK_SIZE;
  return MIN (BACKUP_BLOCK_SIZE, c->m->virtual_size - off);
}

/* The chain's hashes: every manifest from PREV back to its full, the
 * newest word for each block winning. */
static int
load_chain (struct create *c, const struct backup_manifest *prev,
            GPtrArray *points, GError **err)
{
  c->prev = g_malloc0 (c->nblocks * 32);
  c->prev_has = g_new0 (uint64_t, bitmap_words (c->nblocks));
  const struct backup_manifest *m = prev;
  unsigned depth = 0;
  while (m) {
    for (size_t i = 0; i < m->n_blocks; i++) {
      uint64_t b = m->blocks[i].index;
      if (b < c->nblocks && !bitmap_get (c->prev_has, b)) {
        bitmap_set (c->prev_has, b);
        memcpy (c->prev[b], m->blocks[i].sha256, 32);
      }
    }
    if (!m->parent)
      break;
    const struct backup_manifest *parent = NULL;
    for (guint i = 0; i < points->len && !parent; i++)
      if (strcmp (((struct backup_manifest *)points->pdata[i])->id,
                  m->parent) == 0)
        parent = points->pdata[i];
    if (!parent || ++depth > 10000)
      return fail_errno (err, G_FILE_ERROR_INVAL,
                         "repository %s: point %s's parent %s is missing",
                         c->r->location, m->id, m->parent);
    m = parent;
  }
  return 0;
}

/* An incremental that reads only what CBT says changed. */
static bool
cbt_incremental (const struct create *c)
{
  return c->m->kind == BACKUP_INCREMENTAL && c->p->changed;
}

static bool
changed_by_cbt (struct create *c, uint64_t b)
{
  /* xapi's order: byte j holds blocks 8j..8j+7, most significant bit
   * first. */
  if (!c->p->changed)
    return true;
  if (b / 8 >= c->p->changed_len)
    return true;
  return c->p->changed[b / 8] & (0x80 >> (b % 8));
}

/* One block: read it (if it may hold data), hash it, and write what
 * differs from the chain. */
static int
do_block (struct create *c, uint64_t b, bool may_have_data, char *buf,
          struct backup_stats *st, char **err)
{
  uint64_t len = block_len (c, b), off = b * BACKUP_BLOCK_SIZE;
  bool incremental = c->m->kind == BACKUP_INCREMENTAL;
  uint8_t sum[32];
  bool zero = true;

  if (incremental && !changed_by_cbt (c, b)) {
    st->bytes_skipped += len;
    return 0;
  }
  if (may_have_data) {
    if (c->src->ops->pread (c->src, buf, len, off, err) == -1)
      return -1;
    st->bytes_read += len;
    zero = is_zero (buf, len);
  }
  if (zero && len == BACKUP_BLOCK_SIZE)
    memcpy (sum, c->zero_sum, 32);
  else {
    if (zero) /* the disk's last, short block */
      memset (buf, 0, len);
    backup_sha256 (buf, len, sum);
  }

  /* What the chain already reads here: its hash, or zeroes. */
  bool had = incremental && bitmap_get (c->prev_has, b);
  bool same = had ? memcmp (c->prev[b], sum, 32) == 0 : zero;
  if (same) {
    st->bytes_skipped += len;
    return 0;
  }
  int r = zero ? vdisk_zero (c->dst, len, off, 0)
               : vdisk_pwrite (c->dst, buf, len, off, 0);
  if (r == -1) {
    *err = g_strdup (vdisk_get_error ());
    return -1;
  }
  st->bytes_written += len;
  pthread_mutex_lock (&c->lock);
  memcpy (c->sums[b], sum, 32);
  bitmap_set (c->written, b);
  pthread_mutex_unlock (&c->lock);
  return 0;
}

static void *
worker (void *opaque)
{
  struct create *c = opaque;
  g_autofree char *buf = g_malloc (BACKUP_BLOCK_SIZE);
  struct backup_stats st = { 0 };
  char *err = NULL;

  for (;;) {
    pthread_mutex_lock (&c->lock);
    uint64_t b = c->next++;
    /* The blocks CBT says are unchanged, passed over while the lock is
     * held: one lock per changed block, not per block of the disk. */
    while (b < c->end && cbt_incremental (c) && !changed_by_cbt (c, b)) {
      st.bytes_skipped += block_len (c, b);
      b = c->next++;
    }
    bool stop = b >= c->end || c->err;
    pthread_mutex_unlock (&c->lock);
    if (stop)
      break;
    if (do_block (c, b, c->may_have_data[b - c->first], buf, &st, &err)
        == -1) {
      pthread_mutex_lock (&c->lock);
      if (!c->err)
        c->err = err;
      else
        g_free (err);
      pthread_mutex_unlock (&c->lock);
      break;
    }
  }
  pthread_mutex_lock (&c->lock);
  c->stats.bytes_read += st.bytes_read;
  c->stats.bytes_written += st.bytes_written;
  c->stats.bytes_skipped += st.bytes_skipped;
  pthread_mutex_unlock (&c->lock);
  return NULL;
}

/* Which blocks of [first, end) may hold data, from the source's map
 * (holes and zero extents are not read). */
static int
map_window (struct create *c, uint8_t *may, char **err)
{
  struct vdisk_extents ex = { 0 };
  uint64_t off = c->first * BACKUP_BLOCK_SIZE;
  uint64_t end = MIN (c->end * BACKUP_BLOCK_SIZE, c->m->virtual_size);

  memset (may, 0, c->end - c->first);
  if (c->src->ops->map (c->src, off, end - off, &ex, err) == -1) {
    vdisk_extents_free (&ex);
    return -1;
  }
  for (size_t i = 0; i < ex.len; i++) {
    if (ex.v[i].type != VDISK_EXTENT_DATA)
      continue;
    uint64_t a = ex.v[i].offset / BACKUP_BLOCK_SIZE;
    uint64_t z = (ex.v[i].offset + ex.v[i].length + BACKUP_BLOCK_SIZE - 1)
                 / BACKUP_BLOCK_SIZE;
    for (uint64_t b = MAX (a, c->first); b < MIN (z, c->end); b++)
      may[b - c->first] = 1;
  }
  vdisk_extents_free (&ex);
  return 0;
}

/* A window done before a kill: its blocks' hashes, from the layer. */
static int
reload_window (struct create *c, char **err)
{
  struct vdisk_extents ex = { 0 };
  g_autofree char *buf = g_malloc (BACKUP_BLOCK_SIZE);
  uint64_t off = c->first * BACKUP_BLOCK_SIZE;
  uint64_t end = MIN (c->end * BACKUP_BLOCK_SIZE, c->m->virtual_size);

  if (vdisk_map (c->dst, off, end - off, VDISK_MAP_LAYER, &ex) == -1) {
    *err = g_strdup (vdisk_get_error ());
    return -1;
  }
  for (size_t i = 0; i < ex.len; i++) {
    if (ex.v[i].type == VDISK_EXTENT_HOLE)
      continue;
    for (uint64_t b = ex.v[i].offset / BACKUP_BLOCK_SIZE;
         b * BACKUP_BLOCK_SIZE < ex.v[i].offset + ex.v[i].length; b++) {
      uint64_t len = block_len (c, b);
      if (vdisk_pread (c->dst, buf, len, b * BACKUP_BLOCK_SIZE) == -1) {
        vdisk_extents_free (&ex);
        *err = g_strdup (vdisk_get_error ());
        return -1;
      }
      backup_sha256 (buf, len, c->sums[b]);
      bitmap_set (c->written, b);
    }
  }
  vdisk_extents_free (&ex);
  c->stats.bytes_skipped += end - off;
  return 0;
}

static int
run_window (struct create *c, unsigned nthreads, char **err)
{
  g_autofree uint8_t *may = g_malloc (c->end - c->first);
  pthread_t th[64];
  unsigned started = 0;

  /* A CBT incremental reads the blocks the bitmap names whatever the
   * map says (a block that became zero reads as zeroes and is written
   * as a zero cluster all the same): no block-status round trip per
   * window. */
  if (cbt_incremental (c))
    memset (may, 1, c->end - c->first);
  else if (map_window (c, may, err) == -1)
    return -1;
  c->may_have_data = may;
  c->next = c->first;
  for (; started < nthreads; started++)
    if (pthread_create (&th[started], NULL, worker, c) != 0)
      break;
  if (started == 0)
    worker (c);
  for (unsigned i = 0; i < started; i++)
    pthread_join (th[i], NULL);
  c->may_have_data = NULL;
  if (c->err) {
    *err = c->err;
    c->err = NULL;
    return -1;
  }
  if (vdisk_flush (c->dst) == -1) {
    *err = g_strdup (vdisk_get_error ());
    return -1;
  }
  return 0;
}

/* The pending point (.create.json, what a rerun needs to continue it)
 * is the point's manifest without blocks: written and read as one. */
struct backup_manifest *
backup_pending (struct backup_repo *r, const char *disk, GError **err)
{
  GError *e = NULL;
  size_t len;
  g_autofree char *text = r->ops->read (r, disk, PENDING, &len, &e);
  g_autofree char *where = g_strdup_printf ("%s/" PENDING, disk);
  if (!text) {
    if (g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_error_free (e);
    else
      g_propagate_error (err, e);
    return NULL;
  }
  struct backup_manifest *m = backup_manifest_parse (text, len, where, &e);
  if (!m) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "repository %s: a killed create's note is damaged (%s): "
                 "remove it to start that point over",
                 r->location, e->message);
    g_error_free (e);
  }
  return m;
}

/* A new point's id: its UTC time to the second, made unique in the
 * repository (ALL its points). */
static char *
new_id (GDateTime *t, GPtrArray *points)
{
  g_autofree char *base = g_date_time_format (t, "%Y%m%dT%H%M%SZ");
  char *id = g_strdup (base);
  for (unsigned n = 2;; n++) {
    bool taken = false;
    for (guint i = 0; i < points->len && !taken; i++)
      taken = strcmp (((struct backup_manifest *)points->pdata[i])->id, id)
              == 0;
    if (!taken)
      return id;
    g_free (id);
    id = g_strdup_printf ("%s-%u", base, n);
  }
}

char *
backup_why_full (bool full, const struct backup_manifest *prev,
                 uint64_t size, const char *why_full)
{
  if (full)
    return g_strdup ("a full was asked for (--full)");
  if (!prev)
    return g_strdup ("the first point of this disk");
  if (prev->virtual_size != size)
    return g_strdup_printf ("the virtual size changed (%" PRIu64
                            " bytes, was %" PRIu64 ")",
                            size, prev->virtual_size);
  return g_strdup (why_full);
}

/* Decide the new point: kind, why, parent. */
static struct backup_manifest *
plan_point (struct create *c, const char *disk, GPtrArray *points,
            GPtrArray *all, uint64_t size)
{
  const struct backup_create_params *p = c->p;
  struct backup_manifest *m = g_new0 (struct backup_manifest, 1);
  const struct backup_manifest *prev
      = points->len ? points->pdata[points->len - 1] : NULL;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();

  m->time = g_date_time_format (now, "%Y-%m-%dT%H:%M:%S.%fZ");
  m->time_us = g_date_time_to_unix (now) * G_USEC_PER_SEC
               + g_date_time_get_microsecond (now);
  m->id = new_id (now, all);
  m->disk = g_strdup (disk);
  m->source = g_strdup (p->source_name ? p->source_name : p->source);
  m->cbt_generation = g_strdup (p->cbt_generation);
  m->cbt_snapshot = g_strdup (p->cbt_snapshot);
  m->file = g_strdup_printf ("%s.qcow2", m->id);
  m->virtual_size = size;
  m->kind = BACKUP_FULL;
  m->why = backup_why_full (p->full, prev, size, p->why_full);
  if (!m->why) {
    m->kind = BACKUP_INCREMENTAL;
    m->parent = g_strdup (prev->id);
    m->why = p->changed
                 ? g_strdup_printf ("changed blocks since point %s from "
                                    "CBT",
                                    prev->id)
                 : g_strdup_printf ("blocks compared by SHA-256 with point "
                                    "%s",
                                    prev->id);
  }
  if (p->why_also) {
    char *why = g_strdup_printf ("%s; %s", m->why, p->why_also);

    g_free (m->why);
    m->why = why;
  }
  return m;
}

/* Open (or create) the point's qcow2 layer.  RESUMED: a killed run's
 * file may be there; STARTED: it wrote to it (else a file that does not
 * open was cut short while being created, and is made again). */
static int
open_dest (struct create *c, bool resumed, bool started, GError **err)
{
  g_autofree char *path = c->r->ops->path (c->r, c->m->disk, c->m->file);
  g_autofree char *parent = c->m->parent
                                ? g_strdup_printf ("%s.qcow2", c->m->parent)
                                : NULL;
  g_autofree char *dir = c->r->ops->path (c->r, c->m->disk, ".");

  if (resumed && g_file_test (path, G_FILE_TEST_EXISTS)) {
    c->dst = vdisk_open_as (path, VDISK_OPEN_RDWR | VDISK_OPEN_BUFFERED,
                            VDISK_FORMAT_QCOW2, dir);
    if (c->dst)
      return vdisk_repair_leaks (c->dst, NULL) == -1
                 ? fail_errno (err, G_FILE_ERROR_IO, "%s",
                               vdisk_get_error ())
                 : 0;
    if (started)
      return fail_errno (err, G_FILE_ERROR_INVAL, "%s", vdisk_get_error ());
    unlink (path);
  }
  struct vdisk_create_params cp = { .parent = parent,
                                    .parent_format = parent ? "qcow2" : NULL,
                                    .confine = dir };
  if (vdisk_create (path, VDISK_FORMAT_QCOW2, c->m->virtual_size, &cp) == -1
      || !(c->dst = vdisk_open_as (path,
                                   VDISK_OPEN_RDWR | VDISK_OPEN_BUFFERED,
                                   VDISK_FORMAT_QCOW2, dir)))
    return fail_errno (err, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
  return 0;
}

/* An NBD source is read over 4 connections; with CBT over one: an
 * incremental's scattered 64 KiB reads are no faster over more (the
 * THREADS workers keep as many in flight on one), and each TLS
 * connection costs a handshake (0.05 s each on a loaded host,
 * tests/bench/backup). */
static int
open_source (struct create *c, GError **err)
{
  char *e = NULL;
  const char *s = c->p->source;
  if (copy_is_nbd_uri (s))
    c->src = copy_endpoint_nbd (s, false, c->p->changed ? 1 : 4, &e);
  else {
    c->src_disk = vdisk_open_as (s, VDISK_OPEN_BUFFERED, c->p->format, NULL);
    if (!c->src_disk)
      return fail_errno (err, G_FILE_ERROR_NOENT, "%s", vdisk_get_error ());
    c->src = copy_endpoint_local (c->src_disk, false, &e);
  }
  if (!c->src) {
    fail_errno (err, G_FILE_ERROR_IO, "%s", e ? e : "cannot open the source");
    free (e);
    return -1;
  }
  return 0;
}

/* The manifest's block list from written[] and sums[]. */
static void
fill_blocks (struct create *c)
{
  struct backup_manifest *m = c->m;
  size_t n = 0;
  for (uint64_t b = 0; b < c->nblocks; b++)
    n += bitmap_get (c->written, b);
  m->blocks = g_new (struct backup_block, n);
  m->n_blocks = 0;
  for (uint64_t b = 0; b < c->nblocks; b++)
    if (bitmap_get (c->written, b)) {
      m->blocks[m->n_blocks].index = b;
      memcpy (m->blocks[m->n_blocks++].sha256, c->sums[b], 32);
    }
}

/* Blocks of a CBT incremental worth a flush: windows that are not done
 * go together (one pass of the workers, one flush, one journal sync
 * for all) until they hold this many changed blocks.  An incremental
 * of 1 % of an 8 GiB disk is two groups, not sixteen windows (each
 * flush a journal commit of the filesystem, 5-20 ms on a busy host);
 * a resume redoes at most a group. */
#define GROUP_CHANGED_BLOCKS 1024

static uint64_t
changed_in (struct create *c, uint64_t first, uint64_t end)
{
  uint64_t n = 0;

  for (uint64_t b = first; b < end; b++)
    n += changed_by_cbt (c, b);
  return n;
}

/* The windows from W that go with it: [W, *END). */
static void
group_windows (struct create *c, struct journal *j, uint64_t w,
               uint64_t per, uint64_t nwindows, uint64_t *end)
{
  uint64_t changed;

  *end = w + 1;
  if (!cbt_incremental (c))
    return;
  changed = changed_in (c, w * per, MIN ((w + 1) * per, c->nblocks));
  while (*end < nwindows
         && !journal_is_done (j, *end) && changed < GROUP_CHANGED_BLOCKS) {
    changed += changed_in (c, *end * per, MIN ((*end + 1) * per, c->nblocks));
    ++*end;
  }
}

/* Windows [W, END), none done: marked started, copied, flushed once,
 * marked done. */
static int
run_group (struct create *c, struct journal *j, uint64_t w, uint64_t end,
           uint64_t per, unsigned threads, char **e)
{
  g_autofree uint64_t *ws = g_new (uint64_t, end - w);

  for (uint64_t k = w; k < end; k++) {
    if (journal_mark_started (j, k, e) == -1)
      return -1;
    ws[k - w] = k;
  }
  c->first = w * per;
  c->end = MIN (end * per, c->nblocks);
  if (run_window (c, threads, e) == -1)
    return -1;
  return journal_mark_done (j, ws, end - w, e);
}

static int
copy_windows (struct create *c, struct journal *j, GError **err)
{
  uint64_t per = window_blocks (c->nblocks);
  uint64_t nwindows = (c->nblocks + per - 1) / per;
  unsigned threads = c->p->threads ? MIN (c->p->threads, 64) : 4;
  char *e = NULL;

  for (uint64_t w = 0, end; w < nwindows; w = end) {
    int r;
    if (journal_is_done (j, w)) {
      end = w + 1;
      c->first = w * per;
      c->end = MIN (c->first + per, c->nblocks);
      r = reload_window (c, &e);
    }
    else {
      group_windows (c, j, w, per, nwindows, &end);
      r = run_group (c, j, w, end, per, threads, &e);
    }
    if (r == -1) {
      fail_errno (err, G_FILE_ERROR_IO, "backup of %s: %s", c->p->source,
                  e ? e : "failed");
      g_free (e);
      return -1;
    }
    if (c->p->progress)
      c->p->progress (MIN (c->end * BACKUP_BLOCK_SIZE, c->m->virtual_size),
                      c->m->virtual_size, c->p->progress_opaque);
  }
  return 0;
}

static void
create_free (struct create *c)
{
  char *e = NULL;
  if (c->src)
    copy_endpoint_close (c->src, &e);
  free (e);
  if (c->src_disk)
    vdisk_close (c->src_disk);
  if (c->dst)
    vdisk_close (c->dst);
  g_free (c->prev);
  g_free (c->prev_has);
  g_free (c->sums);
  g_free (c->written);
  backup_manifest_free (c->m);
  pthread_mutex_destroy (&c->lock);
}

int
backup_create (struct backup_repo *r, const struct backup_create_params *p,
               struct backup_manifest **point, GError **err)
{
  struct create c = { .r = r, .p = p };
  g_autofree char *disk = p->disk ? g_strdup (p->disk)
                                  : backup_disk_key_for_image (p->source);
  double t0 = monotonic_seconds ();
  int ret = -1;
  char *e = NULL;
  struct journal *j = NULL;
  bool resumed = false;
  g_autoptr (GPtrArray) points = NULL;
  g_autofree char *jname = NULL, *jpath = NULL, *identity = NULL;
  g_autofree char *text = NULL, *mname = NULL;

  pthread_mutex_init (&c.lock, NULL);
  if (!backup_name_is_safe (disk)) {
    fail_errno (err, G_FILE_ERROR_INVAL, "\"%s\" is not a disk key", disk);
    goto out;
  }
  if (open_source (&c, err) == -1)
    goto out;
  uint64_t size = copy_endpoint_size (c.src);
  points = backup_repo_points (r, disk, NULL, err);
  if (!points)
    goto out;
  GError *pe = NULL;
  c.m = backup_pending (r, disk, &pe);
  if (pe) {
    g_propagate_error (err, pe);
    goto out;
  }
  if (c.m) {
    /* A killed run's point, published already (killed while it tidied
     * up): done. */
    for (guint i = 0; i < points->len; i++)
      if (strcmp (((struct backup_manifest *)points->pdata[i])->id, c.m->id)
          == 0) {
        backup_manifest_free (c.m);
        c.m = g_ptr_array_steal_index (points, i);
        goto tidy;
      }
    if (c.m->virtual_size != size
        || strcmp (c.m->source,
                   p->source_name ? p->source_name : p->source) != 0) {
      fail_errno (err, G_FILE_ERROR_EXIST,
                  "repository %s: disk %s has an unfinished point %s of "
                  "%s; run that backup again to finish it",
                  r->location, disk, c.m->id, c.m->source);
      goto out;
    }
    resumed = true;
  }
  else {
    g_autoptr (GPtrArray) all = backup_repo_all_points (r, NULL, err);
    if (!all)
      goto out;
    c.m = plan_point (&c, disk, points, all, size);
    text = backup_manifest_to_json (c.m);
    if (r->ops->publish (r, disk, PENDING, text, strlen (text), err) == -1)
      goto out;
  }

  c.nblocks = (size + BACKUP_BLOCK_SIZE - 1) / BACKUP_BLOCK_SIZE;
  c.sums = g_malloc (c.nblocks * 32);
  c.written = g_new0 (uint64_t, bitmap_words (c.nblocks));
  {
    g_autofree char *zero = g_malloc0 (BACKUP_BLOCK_SIZE);
    backup_sha256 (zero, BACKUP_BLOCK_SIZE, c.zero_sum);
  }
  if (c.m->kind == BACKUP_INCREMENTAL) {
    const struct backup_manifest *prev = NULL;
    for (guint i = 0; i < points->len && !prev; i++)
      if (strcmp (((struct backup_manifest *)points->pdata[i])->id,
                  c.m->parent) == 0)
        prev = points->pdata[i];
    if (!prev) {
      fail_errno (err, G_FILE_ERROR_NOENT,
                  "repository %s: point %s's parent %s is gone",
                  r->location, c.m->id, c.m->parent);
      goto out;
    }
    if (load_chain (&c, prev, points, err) == -1)
      goto out;
  }

  jname = g_strdup_printf (".%s.journal", c.m->id);
  jpath = r->ops->path (r, disk, jname);
  identity = g_strdup_printf ("backup %s -> %s/%s (%" PRIu64 " bytes)",
                         c.m->source, disk, c.m->file, size);
  uint64_t nwindows
      = (c.nblocks + window_blocks (c.nblocks) - 1)
        / window_blocks (c.nblocks);
  bool jresumed = false;
  j = journal_open (jpath, identity, nwindows, &jresumed, &e);
  if (!j) {
    fail_errno (err, G_FILE_ERROR_IO, "%s", e);
    goto out;
  }
  bool started = false;
  for (uint64_t w = 0; jresumed && w < nwindows; w++)
    started |= journal_was_started (j, w);
  if (open_dest (&c, resumed && jresumed, started, err) == -1
      || copy_windows (&c, j, err) == -1)
    goto out;
  if (vdisk_close (c.dst) == -1) {
    c.dst = NULL;
    fail_errno (err, G_FILE_ERROR_IO, "%s", vdisk_get_error ());
    goto out;
  }
  c.dst = NULL;

  fill_blocks (&c);
  c.m->bytes_read = c.stats.bytes_read;
  c.m->bytes_written = c.stats.bytes_written;
  c.m->bytes_skipped = c.stats.bytes_skipped;
  c.m->seconds = monotonic_seconds () - t0;
  g_free (text);
  text = backup_manifest_to_json (c.m);
  mname = g_strdup_printf ("%s.json", c.m->id);
  if (r->ops->publish (r, disk, mname, text, strlen (text), err) == -1)
    goto out;

tidy:
  journal_close (j, true);
  j = NULL;
  {
    g_autofree char *jn = g_strdup_printf (".%s.journal", c.m->id);
    g_autofree char *jp = r->ops->path (r, disk, jn);
    if (copy_journal_remove (jp) == -1
        || r->ops->remove (r, disk, PENDING, err) == -1)
      goto out;
  }
  *point = c.m;
  c.m = NULL;
  ret = 0;

out:
  if (j)
    journal_close (j, false);
  free (e);
  create_free (&c);
  return ret;
}
