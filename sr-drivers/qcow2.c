/* libvdisk: the qcow2 format (version 3, and version 2 images).
 *
 * Follows qemu's docs/interop/qcow2.txt.  A guest offset is translated
 * through a two-level table: the L1 table (kept in memory) points at L2
 * tables (one cluster each, cached), whose entries point at data
 * clusters.  Every cluster in use is counted in the refcount blocks,
 * which the refcount table (kept in memory) points at.
 *
 * Writing appends new clusters at the end of the file and orders the
 * metadata updates so that a crash leaves at worst a leaked cluster,
 * never a reference to a cluster that is not counted or not written:
 * refcount first, then the cluster's content, then the entry that points
 * at it.  Metadata is written through (each entry as it changes), so
 * flush is an fdatasync.
 *
 * Locking: q->lock guards the in-memory tables, the caches and every
 * metadata update.  Data of clusters already allocated moves outside the
 * lock; the first write to a cluster (which allocates it) holds it.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "vdisk-internal.h"

#define QCOW2_MAGIC 0x514649fbU
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_CREATE_HEADER_LEN 112 /* qemu's: with compression type */

/* Incompatible feature bits. */
#define INCOMPAT_DIRTY (1ULL << 0)
#define INCOMPAT_CORRUPT (1ULL << 1)
#define INCOMPAT_DATA_FILE (1ULL << 2)
#define INCOMPAT_COMPRESSION (1ULL << 3)
#define INCOMPAT_EXTL2 (1ULL << 4)
#define INCOMPAT_KNOWN 0x1fULL

/* Header extensions. */
#define EXT_END 0
#define EXT_BACKING_FORMAT 0xe2792acaU

/* Table entries. */
#define OFLAG_COPIED (1ULL << 63)
#define OFLAG_COMPRESSED (1ULL << 62)
#define OFLAG_ZERO (1ULL << 0)
#define OFFSET_MASK 0x00fffffffffffe00ULL
#define L1_RESERVED 0x7f000000000001ffULL
#define L2_RESERVED 0x3f000000000001feULL
#define RT_RESERVED 0x1ffULL

/* Limits, as qemu's: bigger tables are not images, they are attacks. */
#define MAX_L1_BYTES (32U << 20)
#define MAX_RT_BYTES (8U << 20)
#define MAX_BACKING_NAME 1023
#define MAX_SEGS 256

/* Cache budget: this many bytes of L2 tables (and as much again of
 * refcount blocks), between CACHE_MIN and CACHE_MAX tables. */
#define CACHE_BYTES (4U << 20)
#define CACHE_MIN 4
#define CACHE_MAX 32

enum ctype
{
  C_UNALLOC,
  C_NORMAL,
  C_ZERO_PLAIN,
  C_ZERO_ALLOC,
  C_COMPRESSED,
};

struct cache_slot
{
  uint64_t offset; /* 0 = empty (cluster 0 is the header, never a table) */
  uint64_t stamp;
  uint8_t *data; /* the cluster as on disk (big-endian) */
};

/* A small LRU cache of metadata clusters. */
struct cache
{
  struct cache_slot *slots;
  unsigned n;
  uint64_t clock;
};

struct qcow2
{
  pthread_mutex_t lock;
  unsigned version;
  unsigned cluster_bits;
  uint64_t cluster_size;
  unsigned l2_bits;        /* log2 of entries per L2 table */
  unsigned refcount_order; /* log2 of bits per refcount */
  unsigned rb_bits;        /* log2 of entries per refcount block */
  uint64_t incompat;
  uint64_t autoclear; /* cleared before the first write */
  uint32_t nb_snapshots;

  uint64_t l1_offset;
  uint32_t l1_size;
  uint64_t *l1; /* host endian */

  uint64_t rt_offset;
  uint32_t rt_clusters;
  uint64_t rt_entries;
  uint64_t *rt; /* host endian */

  uint64_t file_end;   /* bytes that exist or are being written */
  uint64_t next_alloc; /* where the next cluster goes (aligned) */
  uint64_t phys_end;   /* the file's length, as grown by grow_file */
  bool data_locked;    /* clusters smaller than the I/O alignment */

  unsigned csize_shift; /* compressed entries: where the size starts */
  uint64_t csize_mask;
  uint64_t coff_mask;

  struct cache l2c; /* L2 tables */
  struct cache rbc; /* refcount blocks */
};

/* Big-endian fields. */
static inline uint16_t
get16 (const uint8_t *p)
{
  return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t
get32 (const uint8_t *p)
{
  uint32_t v;
  memcpy (&v, p, 4);
  return be32toh (v);
}

static inline uint64_t
get64 (const uint8_t *p)
{
  uint64_t v;
  memcpy (&v, p, 8);
  return be64toh (v);
}

static inline void
put16 (uint8_t *p, uint16_t v)
{
  p[0] = v >> 8;
  p[1] = v & 0xff;
}

static inline void
put32 (uint8_t *p, uint32_t v)
{
  v = htobe32 (v);
  memcpy (p, &v, 4);
}

static inline void
put64 (uint8_t *p, uint64_t v)
{
  v = htobe64 (v);
  memcpy (p, &v, 8);
}

static inline uint64_t
div_round_up (uint64_t a, uint64_t b)
{
  return a / b + (a % b != 0);
}

/* Cluster buffers are aligned so O_DIRECT takes them without a bounce. */
static void *
alloc_cluster_buf (uint64_t size)
{
  void *p = NULL;
  if (posix_memalign (&p, 4096, size) != 0)
    return NULL;
  return p;
}

/* ---------------------------------------------------------------- */
/* Refcount entries of any width (refcount_order 0..6). */

static uint64_t
rb_get (const uint8_t *b, unsigned order, uint64_t i)
{
  unsigned bits = 1U << order;
  switch (order) {
  case 0:
  case 1:
  case 2: return (b[i * bits / 8] >> (i * bits % 8)) & ((1U << bits) - 1);
  case 3: return b[i];
  case 4: return get16 (b + i * 2);
  case 5: return get32 (b + i * 4);
  default: return get64 (b + i * 8);
  }
}

/* Store V in entry I; returns the offset and length of the bytes that
 * changed, for writing them through. */
static void
rb_put (uint8_t *b, unsigned order, uint64_t i, uint64_t v, uint64_t *boff,
        unsigned *blen)
{
  unsigned bits = 1U << order;
  switch (order) {
  case 0:
  case 1:
  case 2: {
    unsigned shift = i * bits % 8;
    uint8_t mask = ((1U << bits) - 1) << shift;
    b[i * bits / 8] = (b[i * bits / 8] & ~mask) | ((v << shift) & mask);
    *boff = i * bits / 8;
    *blen = 1;
    return;
  }
  case 3: b[i] = v; break;
  case 4: put16 (b + i * 2, v); break;
  case 5: put32 (b + i * 4, v); break;
  default: put64 (b + i * 8, v); break;
  }
  *boff = i * (bits / 8);
  *blen = bits / 8;
}

/* ---------------------------------------------------------------- */
/* The metadata caches. */

static int
cache_init (struct cache *c, uint64_t cluster_size)
{
  uint64_t n = CACHE_BYTES / cluster_size;
  if (n < CACHE_MIN)
    n = CACHE_MIN;
  if (n > CACHE_MAX)
    n = CACHE_MAX;
  c->slots = calloc (n, sizeof *c->slots);
  if (!c->slots)
    return -1;
  c->n = n;
  return 0;
}

static void
cache_free (struct cache *c)
{
  unsigned i;
  if (!c->slots)
    return;
  for (i = 0; i < c->n; i++)
    free (c->slots[i].data);
  free (c->slots);
  c->slots = NULL;
}

static uint8_t *
cache_find (struct cache *c, uint64_t offset)
{
  unsigned i;
  for (i = 0; i < c->n; i++)
    if (c->slots[i].offset == offset) {
      c->slots[i].stamp = ++c->clock;
      return c->slots[i].data;
    }
  return NULL;
}

/* The least recently used slot, emptied, with its buffer allocated. */
static struct cache_slot *
cache_victim (struct cache *c, uint64_t cluster_size)
{
  struct cache_slot *v = &c->slots[0];
  unsigned i;
  for (i = 1; i < c->n && v->offset; i++)
    if (!c->slots[i].offset || c->slots[i].stamp < v->stamp)
      v = &c->slots[i];
  v->offset = 0;
  if (!v->data)
    v->data = alloc_cluster_buf (cluster_size);
  return v;
}

/* ---------------------------------------------------------------- */
/* Checks of table entries. */

/* Which structure of the fixed metadata [off, off+len) overlaps, if any.
 * Data and tables pointing there would overwrite (or read) the header. */
static const char *
overlaps_metadata (struct qcow2 *q, uint64_t off, uint64_t len)
{
  uint64_t l1_end = q->l1_offset + (uint64_t)q->l1_size * 8;
  uint64_t rt_end = q->rt_offset + (uint64_t)q->rt_clusters * q->cluster_size;

  if (off < q->cluster_size)
    return "the header";
  if (q->l1_size && off < l1_end && off + len > q->l1_offset)
    return "the L1 table";
  if (off < rt_end && off + len > q->rt_offset)
    return "the refcount table";
  return NULL;
}

#define NO_INDEX UINT64_MAX

/* Check a table entry's cluster offset: aligned, inside the file, not
 * over the header.  WHAT, INDEX (the table's number, or NO_INDEX for the
 * one L1 and refcount table) and ENTRY name it in the message. */
static int
check_cluster_offset (struct vdisk *d, struct qcow2 *q, uint64_t off,
                      const char *what, uint64_t index, uint64_t entry)
{
  char name[64];
  const char *m;

  if (index == NO_INDEX)
    snprintf (name, sizeof name, "%s entry %" PRIu64, what, entry);
  else
    snprintf (name, sizeof name, "%s %" PRIu64 " entry %" PRIu64, what, index,
              entry);
  if (off & (q->cluster_size - 1)) {
    vdisk_error (d, EINVAL, "%s is not cluster aligned (0x%" PRIx64 ")", name,
                 off);
    return -1;
  }
  if (off >= q->file_end || q->file_end - off < q->cluster_size) {
    vdisk_error (d, EINVAL, "%s points past end of file (0x%" PRIx64 ")", name,
                 off);
    return -1;
  }
  if ((m = overlaps_metadata (q, off, q->cluster_size)) != NULL) {
    vdisk_error (d, EINVAL, "%s points into %s (0x%" PRIx64 ")", name, m, off);
    return -1;
  }
  return 0;
}

static void
compressed_range (struct qcow2 *q, uint64_t e, uint64_t *off, uint64_t *len)
{
  uint64_t sectors = ((e >> q->csize_shift) & q->csize_mask) + 1;
  *off = e & q->coff_mask;
  *len = sectors * 512 - (*off & 511);
}

/* Check every entry of L2 table L1I, once, when it is read. */
static int
check_l2_table (struct vdisk *d, struct qcow2 *q, uint64_t l1i,
                const uint8_t *t)
{
  uint64_t n = 1ULL << q->l2_bits, i;

  for (i = 0; i < n; i++) {
    uint64_t e = get64 (t + i * 8);
    if (e == 0)
      continue;
    if (e & OFLAG_COMPRESSED) {
      uint64_t off, len;
      const char *m;
      compressed_range (q, e, &off, &len);
      if (off >= q->file_end) {
        vdisk_error (d, EINVAL,
                     "L2 table %" PRIu64 " entry %" PRIu64
                     " (compressed) points past end of file",
                     l1i, i);
        return -1;
      }
      if ((m = overlaps_metadata (q, off, len)) != NULL) {
        vdisk_error (d, EINVAL,
                     "L2 table %" PRIu64 " entry %" PRIu64
                     " (compressed) points into %s",
                     l1i, i, m);
        return -1;
      }
      continue;
    }
    if ((e & L2_RESERVED) || (q->version < 3 && (e & OFLAG_ZERO))) {
      vdisk_error (d, EINVAL,
                   "L2 table %" PRIu64 " entry %" PRIu64
                   " has reserved bits set (0x%" PRIx64 ")",
                   l1i, i, e);
      return -1;
    }
    if ((e & OFFSET_MASK)
        && check_cluster_offset (d, q, e & OFFSET_MASK, "L2 table", l1i, i)
               == -1)
      return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- */
/* Metadata access (all under q->lock). */

/* L2 table number L1I, read and checked if not cached; NULL if the L1
 * entry is unallocated (and no error). */
static int
get_l2 (struct vdisk *d, struct qcow2 *q, uint64_t l1i, uint8_t **out)
{
  uint64_t off = l1i < q->l1_size ? q->l1[l1i] & OFFSET_MASK : 0;
  struct cache_slot *s;

  *out = NULL;
  if (off == 0)
    return 0;
  if ((*out = cache_find (&q->l2c, off)) != NULL)
    return 0;
  s = cache_victim (&q->l2c, q->cluster_size);
  if (!s->data) {
    vdisk_error (d, ENOMEM, "cannot allocate L2 cache");
    return -1;
  }
  if (vfile_pread (&d->file, s->data, q->cluster_size, off) == -1
      || check_l2_table (d, q, l1i, s->data) == -1)
    return -1;
  s->offset = off;
  s->stamp = ++q->l2c.clock;
  *out = s->data;
  return 0;
}

/* The L2 entry for guest offset OFF (0 when unallocated). */
static int
get_entry (struct vdisk *d, struct qcow2 *q, uint64_t off, uint64_t *e)
{
  uint64_t l1i = off >> (q->cluster_bits + q->l2_bits);
  uint64_t l2i = (off >> q->cluster_bits) & ((1ULL << q->l2_bits) - 1);
  uint8_t *t;

  if (get_l2 (d, q, l1i, &t) == -1)
    return -1;
  *e = t ? get64 (t + l2i * 8) : 0;
  return 0;
}

static enum ctype
classify (struct qcow2 *q, uint64_t e, uint64_t *host)
{
  *host = e & OFFSET_MASK;
  if (e & OFLAG_COMPRESSED) {
    *host = e & q->coff_mask;
    return C_COMPRESSED;
  }
  if (q->version >= 3 && (e & OFLAG_ZERO))
    return *host ? C_ZERO_ALLOC : C_ZERO_PLAIN;
  return *host ? C_NORMAL : C_UNALLOC;
}

static int
get_refblock (struct vdisk *d, struct qcow2 *q, uint64_t off, uint8_t **out)
{
  struct cache_slot *s;

  if ((*out = cache_find (&q->rbc, off)) != NULL)
    return 0;
  s = cache_victim (&q->rbc, q->cluster_size);
  if (!s->data) {
    vdisk_error (d, ENOMEM, "cannot allocate refcount cache");
    return -1;
  }
  if (vfile_pread (&d->file, s->data, q->cluster_size, off) == -1)
    return -1;
  s->offset = off;
  s->stamp = ++q->rbc.clock;
  *out = s->data;
  return 0;
}

static int refcount_set (struct vdisk *d, struct qcow2 *q, uint64_t host,
                         uint64_t value);
static int refcount_set_range (struct vdisk *d, struct qcow2 *q, uint64_t host,
                               uint64_t n, uint64_t value);

/* Reserve the next cluster at the end of the file, uncounted. */
static uint64_t
reserve_cluster (struct qcow2 *q)
{
  uint64_t off = q->next_alloc;
  q->next_alloc += q->cluster_size;
  return off;
}

/* A new refcount block for table entry RTI.  It is written (counting
 * itself if it covers itself) before the table points at it. */
static int
new_refblock (struct vdisk *d, struct qcow2 *q, uint64_t rti)
{
  uint64_t off = reserve_cluster (q);
  uint64_t covers = rti << (q->rb_bits + q->cluster_bits);
  bool self = off >> (q->rb_bits + q->cluster_bits) == rti;
  struct cache_slot *s = cache_victim (&q->rbc, q->cluster_size);
  uint8_t be[8];
  uint64_t boff;
  unsigned blen;

  if (!s->data) {
    vdisk_error (d, ENOMEM, "cannot allocate refcount cache");
    return -1;
  }
  memset (s->data, 0, q->cluster_size);
  if (self)
    rb_put (s->data, q->refcount_order, (off - covers) >> q->cluster_bits, 1,
            &boff, &blen);
  if (vfile_pwrite (&d->file, s->data, q->cluster_size, off) == -1)
    return -1;
  if (q->file_end < off + q->cluster_size)
    q->file_end = off + q->cluster_size;
  s->offset = off;
  s->stamp = ++q->rbc.clock;

  q->rt[rti] = off;
  put64 (be, off);
  if (vfile_pwrite (&d->file, be, 8, q->rt_offset + rti * 8) == -1)
    return -1;
  /* Not covering itself: count it in the block that does. */
  return self ? 0 : refcount_set (d, q, off, 1);
}

/* Move the refcount table to a bigger place at the end of the file, so
 * that it has an entry RTI.  The new table is written and its clusters
 * counted before the header points at it; the old one is freed after.
 * A crash in between leaks clusters but corrupts nothing. */
static int
grow_reftable (struct vdisk *d, struct qcow2 *q, uint64_t rti)
{
  uint64_t cs = q->cluster_size;
  uint64_t block_covers = 1ULL << (q->rb_bits + q->cluster_bits);
  uint64_t old_off = q->rt_offset, old_clusters = q->rt_clusters;
  uint64_t n = q->rt_clusters, table, end, i;
  uint64_t *nrt;
  uint8_t *buf, hdr[12];

  /* Big enough for RTI, for the table itself and for the blocks that
   * will count it, with room to spare. */
  for (;;) {
    n = n * 2 + 1;
    table = q->next_alloc;
    end = table + n * cs + (n * cs / block_covers + 4) * cs;
    if (n * cs / 8 > rti && n * cs / 8 > end / block_covers + 1)
      break;
  }
  if (n * cs > MAX_RT_BYTES) {
    vdisk_error (d, EFBIG, "refcount table would exceed %u bytes",
                 MAX_RT_BYTES);
    return -1;
  }
  nrt = calloc (n * cs / 8, sizeof *nrt);
  buf = alloc_cluster_buf (n * cs);
  if (!nrt || !buf) {
    free (nrt);
    free (buf);
    vdisk_error (d, ENOMEM, "cannot grow refcount table");
    return -1;
  }
  memcpy (nrt, q->rt, q->rt_entries * 8);
  memset (buf, 0, n * cs);
  for (i = 0; i < q->rt_entries; i++)
    put64 (buf + i * 8, nrt[i]);
  q->next_alloc += n * cs;
  if (vfile_pwrite (&d->file, buf, n * cs, table) == -1) {
    free (nrt);
    free (buf);
    return -1;
  }
  free (buf);
  if (q->file_end < table + n * cs)
    q->file_end = table + n * cs;

  /* From here on, entries (and new blocks) go to the new table. */
  free (q->rt);
  q->rt = nrt;
  q->rt_entries = n * cs / 8;
  q->rt_offset = table;
  q->rt_clusters = n;
  if (refcount_set_range (d, q, table, n, 1) == -1)
    return -1;
  if (vfile_flush (&d->file) == -1)
    return -1;
  put64 (hdr, table);
  put32 (hdr + 8, n);
  if (vfile_pwrite (&d->file, hdr, 12, 48) == -1)
    return -1;
  return refcount_set_range (d, q, old_off, old_clusters, 0);
}

static int
refcount_get (struct vdisk *d, struct qcow2 *q, uint64_t host, uint64_t *v)
{
  uint64_t rti = host >> (q->rb_bits + q->cluster_bits);
  uint64_t idx = (host >> q->cluster_bits) & ((1ULL << q->rb_bits) - 1);
  uint8_t *b;

  *v = 0;
  if (rti >= q->rt_entries || q->rt[rti] == 0)
    return 0;
  if (get_refblock (d, q, q->rt[rti], &b) == -1)
    return -1;
  *v = rb_get (b, q->refcount_order, idx);
  return 0;
}

/* Set the refcounts of the N clusters from HOST, creating blocks (and
 * growing the table) as needed, and write them through: one write per
 * refcount block touched. */
static int
refcount_set_range (struct vdisk *d, struct qcow2 *q, uint64_t host,
                    uint64_t n, uint64_t value)
{
  unsigned bits = 1U << q->refcount_order;

  while (n > 0) {
    uint64_t rti = host >> (q->rb_bits + q->cluster_bits);
    uint64_t idx = (host >> q->cluster_bits) & ((1ULL << q->rb_bits) - 1);
    uint64_t m = (1ULL << q->rb_bits) - idx, j, boff, first, last;
    unsigned blen;
    uint8_t *b;

    if (m > n)
      m = n;
    if (rti >= q->rt_entries && grow_reftable (d, q, rti) == -1)
      return -1;
    if (q->rt[rti] == 0 && new_refblock (d, q, rti) == -1)
      return -1;
    if (get_refblock (d, q, q->rt[rti], &b) == -1)
      return -1;
    for (j = 0; j < m; j++)
      rb_put (b, q->refcount_order, idx + j, value, &boff, &blen);
    first = idx * bits / 8;
    last = ((idx + m) * bits + 7) / 8;
    if (vfile_pwrite (&d->file, b + first, last - first, q->rt[rti] + first)
        == -1)
      return -1;
    host += m << q->cluster_bits;
    n -= m;
  }
  return 0;
}

static int
refcount_set (struct vdisk *d, struct qcow2 *q, uint64_t host, uint64_t value)
{
  return refcount_set_range (d, q, host, 1, value);
}

/* Make the file as long as everything reserved, before a refcount counts
 * the new clusters: a crash (kill -9) between the refcount and the data
 * then leaves a leak inside the file, never a count past its end, which
 * the next open would take for a truncated file.  next_alloc only grows
 * and every write lands below it, so this never shortens the file.
 *
 * The file grows GROW_STEP past what is reserved: ftruncate takes the
 * inode lock that every buffered write holds too, and one per allocated
 * run made a copy's sixteen writers spin on it.  Flush (trim_file) gives
 * the slack back; after a crash it stays as unused space at the end,
 * which nothing counts. */
#define GROW_STEP (UINT64_C (32) << 20)

static int
grow_file (struct vdisk *d, struct qcow2 *q)
{
  if (q->next_alloc <= q->phys_end)
    return 0;
  if (vfile_truncate (&d->file, q->next_alloc + GROW_STEP) == -1)
    return -1;
  q->phys_end = q->next_alloc + GROW_STEP;
  return 0;
}

/* Cut the file back to what is reserved.  Called with the lock held. */
static int
trim_file (struct vdisk *d, struct qcow2 *q)
{
  if (q->phys_end <= q->next_alloc)
    return 0;
  if (vfile_truncate (&d->file, q->next_alloc) == -1)
    return -1;
  q->phys_end = q->next_alloc;
  return 0;
}

/* A new cluster at the end of the file, counted. */
static int
alloc_cluster (struct vdisk *d, struct qcow2 *q, uint64_t *host)
{
  *host = reserve_cluster (q);
  if (grow_file (d, q) == -1)
    return -1;
  return refcount_set (d, q, *host, 1);
}

/* Drop one reference from every cluster of [off, off+len). */
static int
unref_range (struct vdisk *d, struct qcow2 *q, uint64_t off, uint64_t len)
{
  uint64_t c = off & ~(q->cluster_size - 1), v;

  for (; c < off + len; c += q->cluster_size) {
    if (refcount_get (d, q, c, &v) == -1)
      return -1;
    if (v == 0) {
      vdisk_error (d, EINVAL, "refcount of cluster 0x%" PRIx64 " is already 0",
                   c);
      return -1;
    }
    if (refcount_set (d, q, c, v - 1) == -1)
      return -1;
  }
  return 0;
}

/* Drop the clusters an L2 entry held (after it stopped pointing there). */
static int
unref_entry (struct vdisk *d, struct qcow2 *q, uint64_t e)
{
  uint64_t host, len;

  switch (classify (q, e, &host)) {
  case C_COMPRESSED:
    compressed_range (q, e, &host, &len);
    return unref_range (d, q, host, len);
  case C_NORMAL:
  case C_ZERO_ALLOC: return unref_range (d, q, host, q->cluster_size);
  default: return 0;
  }
}

/* The L2 table for guest offset OFF, allocating it if needed: counted,
 * written as zeroes, then entered in L1. */
static int
ensure_l2 (struct vdisk *d, struct qcow2 *q, uint64_t off, uint8_t **out)
{
  uint64_t l1i = off >> (q->cluster_bits + q->l2_bits);
  struct cache_slot *s;
  uint64_t host;
  uint8_t be[8];

  if (get_l2 (d, q, l1i, out) == -1)
    return -1;
  if (*out)
    return 0;
  if (alloc_cluster (d, q, &host) == -1)
    return -1;
  s = cache_victim (&q->l2c, q->cluster_size);
  if (!s->data) {
    vdisk_error (d, ENOMEM, "cannot allocate L2 cache");
    return -1;
  }
  memset (s->data, 0, q->cluster_size);
  if (vfile_pwrite (&d->file, s->data, q->cluster_size, host) == -1)
    return -1;
  if (q->file_end < host + q->cluster_size)
    q->file_end = host + q->cluster_size;
  s->offset = host;
  s->stamp = ++q->l2c.clock;
  q->l1[l1i] = host | OFLAG_COPIED;
  put64 (be, q->l1[l1i]);
  if (vfile_pwrite (&d->file, be, 8, q->l1_offset + l1i * 8) == -1)
    return -1;
  *out = s->data;
  return 0;
}

/* Point the L2 entry of guest offset OFF at E, writing it through. */
static int
set_entry (struct vdisk *d, struct qcow2 *q, uint64_t off, uint64_t e)
{
  uint64_t l1i = off >> (q->cluster_bits + q->l2_bits);
  uint64_t l2i = (off >> q->cluster_bits) & ((1ULL << q->l2_bits) - 1);
  uint8_t *t;

  if (ensure_l2 (d, q, off, &t) == -1)
    return -1;
  put64 (t + l2i * 8, e);
  return vfile_pwrite (&d->file, t + l2i * 8, 8,
                       (q->l1[l1i] & OFFSET_MASK) + l2i * 8);
}

/* ---------------------------------------------------------------- */
/* Data. */

/* The spec lets a program write to an image with auto-clear features it
 * does not maintain (persistent bitmaps) only after clearing them: our
 * writes would make those bitmaps silently wrong.  Done at the first
 * write, not at open, so that opening never changes the file.  Lock
 * held. */
static int
clear_autoclear (struct vdisk *d, struct qcow2 *q)
{
  uint8_t zero[8] = { 0 };

  if (q->autoclear == 0)
    return 0;
  if (vfile_pwrite (&d->file, zero, 8, 88) == -1
      || vfile_flush (&d->file) == -1)
    return -1;
  q->autoclear = 0;
  return 0;
}

/* Inflate the compressed cluster of entry E into BUF (one cluster).
 * Raw deflate with a 4 KiB window, as qemu writes it. */
static int
read_compressed (struct vdisk *d, struct qcow2 *q, uint64_t e, uint8_t *buf)
{
  uint64_t off, len;
  uint8_t *in;
  z_stream z;
  int r;

  compressed_range (q, e, &off, &len);
  in = malloc (len);
  if (!in) {
    vdisk_error (d, ENOMEM, "cannot allocate compressed buffer");
    return -1;
  }
  /* The size is rounded up to sectors: it may run past end of file. */
  if (vfile_pread_upto (&d->file, in, len, off) == -1) {
    free (in);
    return -1;
  }
  memset (&z, 0, sizeof z);
  if (inflateInit2 (&z, -12) != Z_OK) {
    free (in);
    vdisk_error (d, ENOMEM, "inflateInit2 failed");
    return -1;
  }
  z.next_in = in;
  z.avail_in = len;
  z.next_out = buf;
  z.avail_out = q->cluster_size;
  r = inflate (&z, Z_FINISH);
  inflateEnd (&z);
  free (in);
  if ((r != Z_STREAM_END && r != Z_BUF_ERROR) || z.avail_out != 0) {
    vdisk_error (d, EIO,
                 "compressed cluster at 0x%" PRIx64 " does not inflate to "
                 "one cluster",
                 off);
    return -1;
  }
  return 0;
}

/* One piece of a read: a run of guest bytes served the same way. */
struct seg
{
  enum ctype type;
  uint8_t *buf;
  uint64_t goff, len;
  uint64_t host;  /* C_NORMAL: where in the file */
  uint64_t entry; /* C_COMPRESSED: the L2 entry */
};

/* Look up the pieces of [offset, offset+count) under the lock, merging
 * runs (contiguous data, zeroes, parent).  Stops at MAX_SEGS. */
static int
plan_read (struct vdisk *d, struct qcow2 *q, uint8_t *buf, uint64_t count,
           uint64_t offset, struct seg *segs, size_t *nsegs, uint64_t *done)
{
  uint64_t pos = 0;
  size_t n = 0;

  while (pos < count) {
    uint64_t off = offset + pos, e, host;
    uint64_t in = off & (q->cluster_size - 1);
    uint64_t len = q->cluster_size - in;
    enum ctype t;

    if (len > count - pos)
      len = count - pos;
    if (get_entry (d, q, off, &e) == -1)
      return -1;
    t = classify (q, e, &host);
    if (t == C_ZERO_ALLOC)
      t = C_ZERO_PLAIN;
    if (t == C_NORMAL)
      host += in;
    if (n > 0 && t == segs[n - 1].type && t != C_COMPRESSED
        && (t != C_NORMAL || segs[n - 1].host + segs[n - 1].len == host)) {
      segs[n - 1].len += len;
    }
    else {
      if (n == MAX_SEGS)
        break;
      segs[n] = (struct seg){ .type = t,
                              .buf = buf + pos,
                              .goff = off,
                              .len = len,
                              .host = host,
                              .entry = e };
      n++;
    }
    pos += len;
  }
  *nsegs = n;
  *done = pos;
  return 0;
}

/* Carry out planned pieces: data reads in flight together. */
static int
run_read (struct vdisk *d, struct qcow2 *q, struct seg *segs, size_t n)
{
  struct vfile_req reqs[MAX_SEGS];
  size_t nreqs = 0, i;
  uint8_t *cbuf = NULL;
  int r = 0;

  for (i = 0; i < n && r == 0; i++) {
    struct seg *s = &segs[i];
    switch (s->type) {
    case C_NORMAL:
      reqs[nreqs++] = (struct vfile_req){ .buf = s->buf,
                                          .count = s->len,
                                          .offset = s->host };
      break;
    case C_UNALLOC: r = vdisk_read_parent (d, s->buf, s->len, s->goff); break;
    case C_COMPRESSED:
      if (!cbuf && !(cbuf = alloc_cluster_buf (q->cluster_size))) {
        vdisk_error (d, ENOMEM, "cannot allocate cluster buffer");
        r = -1;
        break;
      }
      r = read_compressed (d, q, s->entry, cbuf);
      if (r == 0)
        memcpy (s->buf, cbuf + (s->goff & (q->cluster_size - 1)), s->len);
      break;
    default: memset (s->buf, 0, s->len); break;
    }
  }
  free (cbuf);
  if (r == 0 && nreqs == 1)
    r = vfile_pread (&d->file, reqs[0].buf, reqs[0].count, reqs[0].offset);
  else if (r == 0 && nreqs > 1)
    r = vfile_rw_batch (&d->file, reqs, nreqs);
  return r;
}

static int
qcow2_pread (struct vdisk *d, void *buf, uint64_t count, uint64_t offset)
{
  struct qcow2 *q = d->priv;
  struct seg *segs = malloc (MAX_SEGS * sizeof *segs);
  uint64_t pos = 0, done;
  size_t n;
  int r = 0;

  if (!segs) {
    vdisk_error (d, ENOMEM, "cannot allocate read plan");
    return -1;
  }
  while (r == 0 && pos < count) {
    pthread_mutex_lock (&q->lock);
    r = plan_read (d, q, (uint8_t *)buf + pos, count - pos, offset + pos, segs,
                   &n, &done);
    pthread_mutex_unlock (&q->lock);
    if (r == 0)
      r = run_read (d, q, segs, n);
    pos += done;
  }
  free (segs);
  return r;
}

/* The guest's view of the cluster at guest offset COFF before a write,
 * given its entry E: from the parent, zeroes, or inflated. */
static int
old_cluster (struct vdisk *d, struct qcow2 *q, uint64_t coff, uint64_t e,
             uint8_t *buf)
{
  uint64_t host, len = q->cluster_size;

  switch (classify (q, e, &host)) {
  case C_UNALLOC:
    memset (buf, 0, q->cluster_size);
    if (len > d->size - coff)
      len = d->size - coff;
    return vdisk_read_parent (d, buf, len, coff);
  case C_COMPRESSED: return read_compressed (d, q, e, buf);
  case C_NORMAL: return vfile_pread (&d->file, buf, q->cluster_size, host);
  default: memset (buf, 0, q->cluster_size); return 0;
  }
}

/* First write to the cluster at COFF (entry E): build the whole new
 * cluster, put it in a new cluster (or the zero cluster's own), and only
 * then point the L2 entry at it.  Called with the lock held. */
static int
write_new_cluster (struct vdisk *d, struct qcow2 *q, uint64_t coff, uint64_t e,
                   const uint8_t *data, uint64_t in, uint64_t len)
{
  uint8_t *buf = alloc_cluster_buf (q->cluster_size);
  uint64_t host;
  int r = -1;

  if (!buf) {
    vdisk_error (d, ENOMEM, "cannot allocate cluster buffer");
    return -1;
  }
  if (clear_autoclear (d, q) == -1)
    goto out;
  if (len < q->cluster_size && old_cluster (d, q, coff, e, buf) == -1)
    goto out;
  memcpy (buf + in, data, len);
  /* The L2 table first, so that it is not placed after the data. */
  uint8_t *t;
  if (ensure_l2 (d, q, coff, &t) == -1)
    goto out;
  if (classify (q, e, &host) != C_ZERO_ALLOC
      && alloc_cluster (d, q, &host) == -1)
    goto out;
  if (vfile_pwrite (&d->file, buf, q->cluster_size, host) == -1)
    goto out;
  if (q->file_end < host + q->cluster_size)
    q->file_end = host + q->cluster_size;
  if (set_entry (d, q, coff, host | OFLAG_COPIED) == -1)
    goto out;
  if (classify (q, e, &host) == C_COMPRESSED && unref_entry (d, q, e) == -1)
    goto out;
  r = 0;
out:
  free (buf);
  return r;
}

/* Does a write to a cluster with entry E need a new cluster? */
static bool
needs_new_cluster (struct qcow2 *q, uint64_t e)
{
  uint64_t host;
  enum ctype t = classify (q, e, &host);
  return t == C_UNALLOC || t == C_ZERO_PLAIN || t == C_COMPRESSED;
}

/* How many whole clusters from OFF (aligned) the write of COUNT bytes
 * covers that all need new clusters, within one L2 table.  Lock held. */
static int
count_run (struct vdisk *d, struct qcow2 *q, uint64_t off, uint64_t count,
           uint64_t *n)
{
  uint64_t l2i = (off >> q->cluster_bits) & ((1ULL << q->l2_bits) - 1);
  uint64_t max = count >> q->cluster_bits, e;

  if (max > (1ULL << q->l2_bits) - l2i)
    max = (1ULL << q->l2_bits) - l2i;
  if (max > 1024)
    max = 1024;
  for (*n = 0; *n < max; (*n)++) {
    if (get_entry (d, q, off + (*n << q->cluster_bits), &e) == -1)
      return -1;
    if (!needs_new_cluster (q, e))
      break;
  }
  return 0;
}

/* First write of N whole clusters from guest offset OFF (aligned, one L2
 * table), in three steps so that the data -- the bulk of a copy into a
 * fresh image -- moves without the lock:
 *   1. (lock held)   reserve N contiguous clusters and count them;
 *   2. (lock free)   write the data from the caller's buffer;
 *   3. (lock held)   point the N entries at them in one write.
 * The order on disk stays length, refcount, data, L2: a crash leaks at
 * worst (grow_file).
 * Called and returns with the lock held. */
static int
write_new_run (struct vdisk *d, struct qcow2 *q, uint64_t off, uint64_t n,
               const uint8_t *data)
{
  uint64_t l1i = off >> (q->cluster_bits + q->l2_bits);
  uint64_t l2i = (off >> q->cluster_bits) & ((1ULL << q->l2_bits) - 1);
  uint64_t host, j;
  uint8_t *t;
  int r;

  if (clear_autoclear (d, q) == -1 || ensure_l2 (d, q, off, &t) == -1)
    return -1;
  host = q->next_alloc;
  q->next_alloc += n << q->cluster_bits;
  if (grow_file (d, q) == -1 || refcount_set_range (d, q, host, n, 1) == -1)
    return -1;
  if (q->file_end < host + (n << q->cluster_bits))
    q->file_end = host + (n << q->cluster_bits);

  if (q->data_locked)
    r = vfile_pwrite (&d->file, data, n << q->cluster_bits, host);
  else {
    pthread_mutex_unlock (&q->lock);
    r = vfile_pwrite (&d->file, data, n << q->cluster_bits, host);
    pthread_mutex_lock (&q->lock);
  }
  if (r == -1)
    return -1;

  /* The table may have left the cache while the lock was free. */
  uint64_t *olds = malloc (n * sizeof *olds);
  if (!olds) {
    vdisk_error (d, ENOMEM, "cannot allocate entry list");
    return -1;
  }
  r = get_l2 (d, q, l1i, &t);
  for (j = 0; r == 0 && j < n; j++) {
    olds[j] = get64 (t + (l2i + j) * 8);
    put64 (t + (l2i + j) * 8, (host + (j << q->cluster_bits)) | OFLAG_COPIED);
  }
  if (r == 0)
    r = vfile_pwrite (&d->file, t + l2i * 8, n * 8,
                      (q->l1[l1i] & OFFSET_MASK) + l2i * 8);
  /* Compressed clusters overwritten whole are freed only now that no
   * entry points at them (unref may evict T, so after its last use). */
  for (j = 0; r == 0 && j < n; j++)
    if (olds[j] & OFLAG_COMPRESSED)
      r = unref_entry (d, q, olds[j]);
  free (olds);
  return r;
}

static int
qcow2_pwrite (struct vdisk *d, const void *buf, uint64_t count,
              uint64_t offset, unsigned flags)
{
  struct qcow2 *q = d->priv;
  struct vfile_req reqs[64];
  size_t nreqs = 0;
  uint64_t pos = 0;
  int r = 0;

  while (r == 0 && pos < count) {
    uint64_t off = offset + pos, e, host;
    uint64_t in = off & (q->cluster_size - 1);
    uint64_t len = q->cluster_size - in;

    if (len > count - pos)
      len = count - pos;
    pthread_mutex_lock (&q->lock);
    r = get_entry (d, q, off, &e);
    if (r == 0)
      r = clear_autoclear (d, q);
    if (r == 0 && classify (q, e, &host) == C_NORMAL) {
      if (q->data_locked)
        r = vfile_pwrite (&d->file, (const uint8_t *)buf + pos, len,
                          host + in);
      else if (nreqs > 0
               && reqs[nreqs - 1].offset + reqs[nreqs - 1].count == host + in
               && (uint8_t *)reqs[nreqs - 1].buf + reqs[nreqs - 1].count
                      == (uint8_t *)buf + pos)
        reqs[nreqs - 1].count += len; /* contiguous in the file too */
      else {
        /* Already ours: the data goes outside the lock, batched. */
        reqs[nreqs++] = (struct vfile_req){ .buf = (uint8_t *)buf + pos,
                                            .count = len,
                                            .offset = host + in,
                                            .write = true };
      }
    }
    else if (r == 0 && in == 0 && count - pos >= q->cluster_size
             && needs_new_cluster (q, e)) {
      uint64_t n;
      r = count_run (d, q, off, count - pos, &n);
      if (r == 0 && n == 0) /* cannot happen: the first one needs it */
        r = write_new_cluster (d, q, off, e, (const uint8_t *)buf + pos, 0,
                               len);
      else if (r == 0) {
        r = write_new_run (d, q, off, n, (const uint8_t *)buf + pos);
        len = n << q->cluster_bits;
      }
    }
    else if (r == 0)
      r = write_new_cluster (d, q, off - in, e, (const uint8_t *)buf + pos, in,
                             len);
    pthread_mutex_unlock (&q->lock);
    pos += len;
    if (r == 0 && (nreqs == 64 || (pos == count && nreqs > 0))) {
      r = nreqs == 1 ? vfile_pwrite (&d->file, reqs[0].buf, reqs[0].count,
                                     reqs[0].offset)
                     : vfile_rw_batch (&d->file, reqs, nreqs);
      nreqs = 0;
    }
  }
  if (r == 0 && (flags & VDISK_FUA))
    r = vfile_flush (&d->file);
  return r;
}

/* Zero part of one cluster: write zeroes unless it already reads so. */
static int
zero_partial (struct vdisk *d, struct qcow2 *q, uint64_t len, uint64_t off)
{
  uint64_t e, host;
  enum ctype t;
  uint8_t *z;
  int r;

  pthread_mutex_lock (&q->lock);
  r = get_entry (d, q, off, &e);
  pthread_mutex_unlock (&q->lock);
  if (r == -1)
    return -1;
  t = classify (q, e, &host);
  if (t == C_ZERO_PLAIN || t == C_ZERO_ALLOC
      || (t == C_UNALLOC && d->parent == NULL))
    return 0;
  z = calloc (1, len);
  if (!z) {
    vdisk_error (d, ENOMEM, "cannot allocate zero buffer");
    return -1;
  }
  r = qcow2_pwrite (d, z, len, off, 0);
  free (z);
  return r;
}

/* Zero one whole cluster through its L2 entry.  Called with the lock. */
static int
zero_cluster (struct vdisk *d, struct qcow2 *q, uint64_t off, unsigned flags)
{
  uint64_t e, host, ne;
  enum ctype t;

  if (get_entry (d, q, off, &e) == -1)
    return -1;
  t = classify (q, e, &host);
  if (t == C_ZERO_PLAIN || (t == C_ZERO_ALLOC && !(flags & VDISK_MAY_TRIM)))
    return 0;
  if (t == C_UNALLOC && d->parent == NULL)
    return 0;
  if (clear_autoclear (d, q) == -1)
    return -1;
  if (t == C_NORMAL && !(flags & VDISK_MAY_TRIM))
    ne = e | OFLAG_ZERO; /* keep the cluster for the next write */
  else
    ne = OFLAG_ZERO;
  if (set_entry (d, q, off, ne) == -1)
    return -1;
  if (ne == OFLAG_ZERO && t != C_UNALLOC) {
    if (unref_entry (d, q, e) == -1)
      return -1;
    /* Give the space back to the filesystem; never reused by us. */
    if (t != C_COMPRESSED)
      (void)vfile_zero (&d->file, q->cluster_size, host, true); /* a hint */
  }
  return 0;
}

static int
qcow2_zero (struct vdisk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  struct qcow2 *q = d->priv;
  uint64_t cs = q->cluster_size;
  uint64_t end = offset + count;
  unsigned l1_shift = q->cluster_bits + q->l2_bits;
  int r = 0;

  /* v2 has no zero flag: write zeroes (or nothing where it reads as
   * zero already). */
  if (q->version < 3) {
    for (; r == 0 && offset < end;) {
      uint64_t len = cs - (offset & (cs - 1));
      if (len > end - offset)
        len = end - offset;
      r = zero_partial (d, q, len, offset);
      offset += len;
    }
    return r;
  }
  while (r == 0 && offset < end) {
    uint64_t in = offset & (cs - 1);
    uint64_t len = cs - in;
    uint64_t l1i = offset >> l1_shift;
    bool no_l2;
    pthread_mutex_lock (&q->lock);
    no_l2 = l1i >= q->l1_size || (q->l1[l1i] & OFFSET_MASK) == 0;
    pthread_mutex_unlock (&q->lock);
    if (d->parent == NULL && no_l2) {
      /* No L2 table and nothing below: the span already reads as zero;
       * skip it whole (a copy zeroes big ranges of fresh images). */
      uint64_t next = (l1i + 1) << l1_shift;
      offset = next < end ? next : end;
      continue;
    }
    if (len > end - offset)
      len = end - offset;
    /* A whole cluster, or the tail cluster up to the virtual size. */
    if (in == 0 && (len == cs || offset + len == d->size)) {
      pthread_mutex_lock (&q->lock);
      r = zero_cluster (d, q, offset, flags);
      pthread_mutex_unlock (&q->lock);
    }
    else
      r = zero_partial (d, q, len, offset);
    offset += len;
  }
  if (r == 0 && (flags & VDISK_FUA))
    r = vfile_flush (&d->file);
  return r;
}

static int
qcow2_flush (struct vdisk *d)
{
  struct qcow2 *q = d->priv;
  int r;

  pthread_mutex_lock (&q->lock);
  r = trim_file (d, q);
  pthread_mutex_unlock (&q->lock);
  return r == -1 ? -1 : vfile_flush (&d->file);
}

/* ---------------------------------------------------------------- */
/* Leak repair. */

/* One more reference to every cluster of [off, off+len), in REFS (N
 * clusters, the file's length). */
static int
count_refs (struct vdisk *d, struct qcow2 *q, uint32_t *refs, uint64_t n,
            uint64_t off, uint64_t len)
{
  uint64_t c = off >> q->cluster_bits;
  uint64_t end = div_round_up (off + len, q->cluster_size);

  for (; c < end; c++) {
    if (c >= n) {
      vdisk_error (d, EINVAL,
                   "cannot repair: cluster 0x%" PRIx64
                   " is in use but past the end of the file",
                   c << q->cluster_bits);
      return -1;
    }
    refs[c]++;
  }
  return 0;
}

/* What every cluster of the file should count: the header, the L1 and
 * refcount tables, the refcount blocks, the L2 tables and what their
 * entries point at.  Lock held. */
static int
count_all_refs (struct vdisk *d, struct qcow2 *q, uint32_t *refs, uint64_t n)
{
  uint64_t cs = q->cluster_size, i, j;
  uint8_t *t;

  if (count_refs (d, q, refs, n, 0, cs) == -1
      || (q->l1_size
          && count_refs (d, q, refs, n, q->l1_offset, (uint64_t)q->l1_size * 8)
                 == -1)
      || count_refs (d, q, refs, n, q->rt_offset,
                     (uint64_t)q->rt_clusters * cs)
             == -1)
    return -1;
  for (i = 0; i < q->rt_entries; i++)
    if (q->rt[i] && count_refs (d, q, refs, n, q->rt[i], cs) == -1)
      return -1;
  for (i = 0; i < q->l1_size; i++) {
    uint64_t l2 = q->l1[i] & OFFSET_MASK;

    if (l2 == 0)
      continue;
    if (count_refs (d, q, refs, n, l2, cs) == -1 || get_l2 (d, q, i, &t) == -1)
      return -1;
    for (j = 0; j < (1ULL << q->l2_bits); j++) {
      uint64_t e = get64 (t + j * 8), host, len = cs;

      switch (classify (q, e, &host)) {
      case C_COMPRESSED:
        compressed_range (q, e, &host, &len);
        /* fall through */
      case C_NORMAL:
      case C_ZERO_ALLOC:
        if (count_refs (d, q, refs, n, host, len) == -1)
          return -1;
        break;
      default: break;
      }
    }
  }
  return 0;
}

/* Make the refcounts say what count_all_refs found.  Only refcount
 * blocks that exist are changed (a writer killed half-way leaves counts
 * too high, never a block missing); leaked clusters are given back to
 * the filesystem, and the file is cut after the last cluster in use.
 * Lock held. */
static int
repair_locked (struct vdisk *d, struct qcow2 *q, uint64_t *freed)
{
  uint64_t cs = q->cluster_size, per = 1ULL << q->rb_bits;
  uint64_t n = div_round_up (q->next_alloc, cs), last = 0, rti, i;
  uint64_t nblocks = div_round_up (n, per), hole = 0, nhole = 0;
  unsigned bits = 1U << q->refcount_order;
  uint32_t *refs = calloc (n ? n : 1, sizeof *refs);
  int r = -1;

  *freed = 0;
  /* Clusters of structures we do not walk (persistent bitmaps, whose
   * auto-clear bit is still set) would look leaked: leave such an
   * image alone. */
  if (q->autoclear) {
    free (refs);
    return 0;
  }
  if (!refs) {
    vdisk_error (d, ENOMEM, "cannot allocate the refcount check");
    return -1;
  }
  if (count_all_refs (d, q, refs, n) == -1)
    goto out;
  if (nblocks < q->rt_entries)
    nblocks = q->rt_entries;
  for (rti = 0; rti < nblocks; rti++) {
    uint64_t base = rti << q->rb_bits, first = UINT64_MAX, end = 0;
    uint8_t *b = NULL;

    if (rti < q->rt_entries && q->rt[rti]
        && get_refblock (d, q, q->rt[rti], &b) == -1)
      goto out;
    for (i = 0; i < per && (b || base + i < n); i++) {
      uint64_t c = base + i, boff;
      uint64_t want = c < n ? refs[c] : 0;
      uint64_t have = b ? rb_get (b, q->refcount_order, i) : 0;
      unsigned blen;

      if (want)
        last = c + 1;
      if (want == have)
        continue;
      if (!b) {
        vdisk_error (d, EINVAL,
                     "cannot repair: cluster 0x%" PRIx64
                     " is in use but has no refcount block",
                     c << q->cluster_bits);
        goto out;
      }
      if (want > (bits == 64 ? UINT64_MAX : (1ULL << bits) - 1)) {
        vdisk_error (d, EINVAL,
                     "cannot repair: cluster 0x%" PRIx64
                     " has more references than its refcount holds",
                     c << q->cluster_bits);
        goto out;
      }
      rb_put (b, q->refcount_order, i, want, &boff, &blen);
      if (first > boff)
        first = boff;
      if (end < boff + blen)
        end = boff + blen;
      if (want == 0)
        (*freed)++;
      if (want == 0 && c < n) {
        if (nhole && hole + nhole == c)
          nhole++;
        else {
          if (nhole)
            (void)vfile_zero (&d->file, nhole * cs, hole * cs, true);
          hole = c;
          nhole = 1;
        }
      }
    }
    if (b && first < end
        && vfile_pwrite (&d->file, b + first, end - first, q->rt[rti] + first)
               == -1)
      goto out;
  }
  /* Give the leaked clusters' space back (a hint, as in zero_cluster). */
  if (nhole)
    (void)vfile_zero (&d->file, nhole * cs, hole * cs, true);
  if (last * cs < q->next_alloc) {
    q->next_alloc = last * cs;
    q->file_end = q->next_alloc;
    if (trim_file (d, q) == -1)
      goto out;
  }
  r = vfile_flush (&d->file);
out:
  free (refs);
  return r;
}

static int
qcow2_repair_leaks (struct vdisk *d, uint64_t *freed)
{
  struct qcow2 *q = d->priv;
  int r;

  pthread_mutex_lock (&q->lock);
  r = repair_locked (d, q, freed);
  pthread_mutex_unlock (&q->lock);
  return r;
}

/* ---------------------------------------------------------------- */
/* Map. */

/* Append an extent, merging it into the last one when qemu would. */
static int
emit (struct vdisk_extents *out, uint64_t off, uint64_t len,
      enum vdisk_extent_type type, int64_t host)
{
  if (out->len > 0) {
    struct vdisk_extent *l = &out->v[out->len - 1];
    if (l->type == type && l->depth == 0 && l->offset + l->length == off
        && ((l->host_offset == -1 && host == -1)
            || (l->host_offset >= 0 && host >= 0
                && (uint64_t)l->host_offset + l->length == (uint64_t)host))) {
      l->length += len;
      return 0;
    }
  }
  return vdisk_extents_append (out, off, len, type, host, 0);
}

/* Map the part of [off, end) inside L2 table L1I.  Lock held. */
static int
map_l2 (struct vdisk *d, struct qcow2 *q, uint64_t l1i, uint64_t off,
        uint64_t end, struct vdisk_extents *out)
{
  uint8_t *t;

  if (get_l2 (d, q, l1i, &t) == -1)
    return -1;
  while (off < end) {
    uint64_t l2i = (off >> q->cluster_bits) & ((1ULL << q->l2_bits) - 1);
    uint64_t len = q->cluster_size - (off & (q->cluster_size - 1)), host;
    uint64_t e = get64 (t + l2i * 8);
    int r;

    if (len > end - off)
      len = end - off;
    switch (classify (q, e, &host)) {
    case C_NORMAL:
      r = emit (out, off, len, VDISK_EXTENT_DATA,
                host + (off & (q->cluster_size - 1)));
      break;
    case C_COMPRESSED: r = emit (out, off, len, VDISK_EXTENT_DATA, -1); break;
    case C_ZERO_ALLOC:
      r = emit (out, off, len, VDISK_EXTENT_ZERO,
                host + (off & (q->cluster_size - 1)));
      break;
    case C_ZERO_PLAIN: r = emit (out, off, len, VDISK_EXTENT_ZERO, -1); break;
    default: r = emit (out, off, len, VDISK_EXTENT_HOLE, -1); break;
    }
    if (r == -1) {
      vdisk_error (d, ENOMEM, "cannot grow extent list");
      return -1;
    }
    off += len;
  }
  return 0;
}

/* Unallocated L1 entries are skipped whole: the cost is O(allocated
 * L2 tables), not O(virtual size). */
static int
qcow2_map (struct vdisk *d, uint64_t offset, uint64_t count,
           struct vdisk_extents *out)
{
  struct qcow2 *q = d->priv;
  unsigned l1_shift = q->cluster_bits + q->l2_bits;
  uint64_t end = offset + count;
  int r = 0;

  while (r == 0 && offset < end) {
    uint64_t l1i = offset >> l1_shift;
    uint64_t span_end = (l1i + 1) << l1_shift;

    if (span_end > end)
      span_end = end;
    if (l1i >= q->l1_size || (q->l1[l1i] & OFFSET_MASK) == 0) {
      r = emit (out, offset, span_end - offset, VDISK_EXTENT_HOLE, -1);
      if (r == -1)
        vdisk_error (d, ENOMEM, "cannot grow extent list");
    }
    else {
      pthread_mutex_lock (&q->lock);
      r = map_l2 (d, q, l1i, offset, span_end, out);
      pthread_mutex_unlock (&q->lock);
    }
    offset = span_end;
  }
  return r;
}

/* ---------------------------------------------------------------- */
/* Open. */

static bool
qcow2_probe (const uint8_t *head, size_t head_len, const uint8_t *tail,
             size_t tail_len, uint64_t file_size)
{
  return head_len >= 4 && get32 (head) == QCOW2_MAGIC;
}

/* The header fields that do not depend on the rest of the file. */
static int
parse_header_fields (struct vdisk *d, struct qcow2 *q, const uint8_t *h,
                     uint64_t hlen, uint64_t *header_length)
{
  q->version = get32 (h + 4);
  if (q->version != 2 && q->version != 3) {
    vdisk_error (d, EINVAL, "unsupported qcow2 version %u", q->version);
    return -1;
  }
  q->cluster_bits = get32 (h + 20);
  if (q->cluster_bits < 9 || q->cluster_bits > 21) {
    vdisk_error (d, EINVAL, "cluster_bits %u is out of range 9..21",
                 q->cluster_bits);
    return -1;
  }
  q->cluster_size = 1ULL << q->cluster_bits;
  q->l2_bits = q->cluster_bits - 3;
  if (get32 (h + 32) != 0) {
    vdisk_error (d, ENOTSUP, "encrypted images are not supported");
    return -1;
  }
  q->nb_snapshots = get32 (h + 60);
  *header_length = QCOW2_V2_HEADER_LEN;
  q->refcount_order = 4;
  if (q->version == 2)
    return 0;

  if (hlen < QCOW2_V3_HEADER_LEN) {
    vdisk_error (d, EINVAL, "file too short for the qcow2 v3 header");
    return -1;
  }
  q->incompat = get64 (h + 72);
  q->autoclear = get64 (h + 88);
  *header_length = get32 (h + 100);
  q->refcount_order = get32 (h + 96);
  if (*header_length < QCOW2_V3_HEADER_LEN || *header_length > hlen
      || *header_length > q->cluster_size) {
    vdisk_error (d, EINVAL, "bad header length %" PRIu64, *header_length);
    return -1;
  }
  if (q->refcount_order > 6) {
    vdisk_error (d, EINVAL, "refcount_order %u is out of range 0..6",
                 q->refcount_order);
    return -1;
  }
  return 0;
}

/* Incompatible features: refuse what we cannot read (or write) right. */
static int
check_features (struct vdisk *d, struct qcow2 *q, const uint8_t *h,
                uint64_t header_length)
{
  bool rw = d->flags & VDISK_OPEN_RDWR;

  if (q->incompat & ~INCOMPAT_KNOWN) {
    vdisk_error (d, ENOTSUP, "unknown incompatible feature bits 0x%" PRIx64,
                 (uint64_t)(q->incompat & ~INCOMPAT_KNOWN));
    return -1;
  }
  if (q->incompat & INCOMPAT_DATA_FILE) {
    vdisk_error (d, ENOTSUP, "external data files are not supported");
    return -1;
  }
  if (q->incompat & INCOMPAT_EXTL2) {
    vdisk_error (d, ENOTSUP,
                 "extended L2 entries (subclusters) are not supported");
    return -1;
  }
  if ((q->incompat & INCOMPAT_COMPRESSION)
      && (header_length <= 104 || h[104] != 0)) {
    vdisk_error (d, ENOTSUP,
                 "compression type other than zlib is not supported");
    return -1;
  }
  if (rw && (q->incompat & INCOMPAT_DIRTY)) {
    vdisk_error (d, ENOTSUP,
                 "dirty bit set (lazy refcounts not written back): "
                 "run qemu-img check -r all first");
    return -1;
  }
  if (rw && (q->incompat & INCOMPAT_CORRUPT)) {
    vdisk_error (d, EINVAL, "image is marked corrupt: cannot write to it");
    return -1;
  }
  if (rw && q->nb_snapshots) {
    vdisk_error (d, ENOTSUP,
                 "writing to images with internal snapshots is not "
                 "supported");
    return -1;
  }
  return 0;
}

/* The backing file name, if any, into d->parent_names[0]. */
static int
read_backing_name (struct vdisk *d, struct qcow2 *q, const uint8_t *h,
                   uint64_t header_length, uint64_t file_size)
{
  uint64_t off = get64 (h + 8);
  uint32_t len = get32 (h + 16);
  char *name;

  if (off == 0)
    return 0;
  if (len == 0 || len > MAX_BACKING_NAME) {
    vdisk_error (d, EINVAL, "backing file name length %u is out of range",
                 len);
    return -1;
  }
  if (off < header_length || off > q->cluster_size
      || off + len > q->cluster_size || off + len > file_size) {
    vdisk_error (d, EINVAL, "backing file name is outside the header");
    return -1;
  }
  name = calloc (1, len + 1);
  if (!name) {
    vdisk_error (d, ENOMEM, "cannot allocate backing file name");
    return -1;
  }
  memcpy (name, h + off, len);
  if (strlen (name) != len) {
    free (name);
    vdisk_error (d, EINVAL, "backing file name contains a NUL byte");
    return -1;
  }
  d->parent_names[0] = name;
  d->n_parent_names = 1;
  return 0;
}

/* The backing-format extension: the child's word for its parent's
 * format, which the core then opens the parent as (never probing it). */
static int
read_backing_format (struct vdisk *d, const uint8_t *data, uint32_t len)
{
  char name[32];
  int f;

  if (len == 0 || len >= sizeof name || memchr (data, '\0', len)) {
    vdisk_error (d, EINVAL,
                 "backing format header extension (%u bytes) is not a "
                 "format name",
                 len);
    return -1;
  }
  memcpy (name, data, len);
  name[len] = '\0';
  f = vdisk_format_from_name (name);
  if (f == -1) {
    vdisk_error (d, ENOTSUP, "backing format \"%s\" is not supported", name);
    return -1;
  }
  d->parent_format = f;
  return 0;
}

/* Walk the header extensions: check their framing and read the one we
 * need, the backing format. */
static int
check_extensions (struct vdisk *d, const uint8_t *h, uint64_t start,
                  uint64_t end)
{
  uint64_t off = start;

  while (off + 8 <= end) {
    uint32_t type = get32 (h + off), len = get32 (h + off + 4);
    if (type == EXT_END)
      return 0;
    if (len > end - off - 8) {
      vdisk_error (d, EINVAL,
                   "header extension 0x%08x at %" PRIu64 " overflows the "
                   "header",
                   type, off);
      return -1;
    }
    if (type == EXT_BACKING_FORMAT
        && read_backing_format (d, h + off + 8, len) == -1)
      return -1;
    off += 8 + ((uint64_t)len + 7) / 8 * 8;
  }
  return 0;
}

/* Size, L1 and refcount table geometry. */
static int
check_geometry (struct vdisk *d, struct qcow2 *q, const uint8_t *h,
                uint64_t file_size)
{
  uint64_t l2_covers = 1ULL << (q->cluster_bits + q->l2_bits);
  uint64_t need;

  d->size = get64 (h + 24);
  q->l1_size = get32 (h + 36);
  q->l1_offset = get64 (h + 40);
  q->rt_offset = get64 (h + 48);
  q->rt_clusters = get32 (h + 56);

  if (d->size > (1ULL << 62)) {
    vdisk_error (d, EFBIG, "virtual size %" PRIu64 " is absurd", d->size);
    return -1;
  }
  need = div_round_up (d->size, l2_covers);
  if ((uint64_t)q->l1_size * 8 > MAX_L1_BYTES) {
    vdisk_error (d, EFBIG, "L1 table of %u entries is too big", q->l1_size);
    return -1;
  }
  if (q->l1_size < need) {
    vdisk_error (
        d, EINVAL,
        "L1 table (%u entries) too small for the virtual size %" PRIu64,
        q->l1_size, d->size);
    return -1;
  }
  if (q->l1_size
      && ((q->l1_offset & (q->cluster_size - 1)) || q->l1_offset == 0)) {
    vdisk_error (d, EINVAL, "L1 table offset 0x%" PRIx64 " is misaligned",
                 q->l1_offset);
    return -1;
  }
  if (q->l1_size
      && (q->l1_offset > file_size
          || file_size - q->l1_offset < (uint64_t)q->l1_size * 8)) {
    vdisk_error (d, EINVAL, "L1 table extends past end of file");
    return -1;
  }
  if (q->rt_clusters == 0
      || (uint64_t)q->rt_clusters * q->cluster_size > MAX_RT_BYTES) {
    vdisk_error (d, EINVAL, "refcount table of %u clusters is out of range",
                 q->rt_clusters);
    return -1;
  }
  if ((q->rt_offset & (q->cluster_size - 1)) || q->rt_offset == 0) {
    vdisk_error (d, EINVAL,
                 "refcount table offset 0x%" PRIx64 " is misaligned",
                 q->rt_offset);
    return -1;
  }
  if (q->rt_offset > file_size
      || file_size - q->rt_offset
             < (uint64_t)q->rt_clusters * q->cluster_size) {
    vdisk_error (d, EINVAL, "refcount table extends past end of file");
    return -1;
  }
  return 0;
}

static int
read_table (struct vdisk *d, uint64_t off, uint64_t n, uint64_t **out)
{
  uint8_t *raw = alloc_cluster_buf (n ? n * 8 : 8);
  uint64_t i;

  *out = calloc (n ? n : 1, sizeof **out);
  if (!raw || !*out) {
    free (raw);
    vdisk_error (d, ENOMEM, "cannot allocate table");
    return -1;
  }
  if (n && vfile_pread (&d->file, raw, n * 8, off) == -1) {
    free (raw);
    return -1;
  }
  for (i = 0; i < n; i++)
    (*out)[i] = get64 (raw + i * 8);
  free (raw);
  return 0;
}

static int
load_l1 (struct vdisk *d, struct qcow2 *q)
{
  uint32_t i;

  if (read_table (d, q->l1_offset, q->l1_size, &q->l1) == -1)
    return -1;
  for (i = 0; i < q->l1_size; i++) {
    uint64_t e = q->l1[i];
    if (e & L1_RESERVED) {
      vdisk_error (d, EINVAL,
                   "L1 table entry %u has reserved bits set (0x%" PRIx64 ")",
                   i, e);
      return -1;
    }
    if ((e & OFFSET_MASK)
        && check_cluster_offset (d, q, e & OFFSET_MASK, "L1 table", NO_INDEX,
                                 i)
               == -1)
      return -1;
  }
  return 0;
}

/* The refcount table, and a cheap truncation check: the last refcount
 * block names the last cluster in use, which must exist.  (One cluster
 * past the end is allowed: a crash between counting a new cluster and
 * writing it leaves that.) */
static int
load_reftable (struct vdisk *d, struct qcow2 *q, uint64_t file_size)
{
  uint64_t i, last = 0, n, rounded;
  uint8_t *b;

  q->rt_entries = (uint64_t)q->rt_clusters * q->cluster_size / 8;
  if (read_table (d, q->rt_offset, q->rt_entries, &q->rt) == -1)
    return -1;
  for (i = 0; i < q->rt_entries; i++) {
    uint64_t e = q->rt[i];
    if (e & RT_RESERVED) {
      vdisk_error (d, EINVAL,
                   "refcount table entry %" PRIu64 " is misaligned "
                   "(0x%" PRIx64 ")",
                   i, e);
      return -1;
    }
    if (e
        && check_cluster_offset (d, q, e, "refcount table", NO_INDEX, i) == -1)
      return -1;
    if (e)
      last = i + 1;
  }
  if (last == 0)
    return 0;
  if (get_refblock (d, q, q->rt[last - 1], &b) == -1)
    return -1;
  n = 1ULL << q->rb_bits;
  while (n > 0 && rb_get (b, q->refcount_order, n - 1) == 0)
    n--;
  if (n == 0)
    return 0;
  i = ((last - 1) << (q->rb_bits + q->cluster_bits))
      + ((n - 1) << q->cluster_bits);
  rounded = div_round_up (file_size, q->cluster_size) * q->cluster_size;
  if (i > rounded) {
    vdisk_error (d, EINVAL,
                 "file is truncated: refcount block %" PRIu64
                 " counts cluster 0x%" PRIx64
                 " but the file ends at 0x%" PRIx64,
                 last - 1, i, file_size);
    return -1;
  }
  return 0;
}

static int
read_header (struct vdisk *d, uint8_t **h, uint64_t len)
{
  free (*h);
  *h = alloc_cluster_buf (len);
  if (!*h) {
    vdisk_error (d, ENOMEM, "cannot allocate header buffer");
    return -1;
  }
  return vfile_pread (&d->file, *h, len, 0);
}

static void
qcow2_close (struct vdisk *d)
{
  struct qcow2 *q = d->priv;

  if (!q)
    return;
  cache_free (&q->l2c);
  cache_free (&q->rbc);
  free (q->l1);
  free (q->rt);
  pthread_mutex_destroy (&q->lock);
  free (q);
  d->priv = NULL;
}

static int
qcow2_open (struct vdisk *d)
{
  struct qcow2 *q;
  uint64_t file_size, hlen, header_length, ext_end;
  uint8_t *h = NULL;
  int r = -1;

  if (vfile_get_size (&d->file, &file_size) == -1)
    return -1;
  if (file_size < QCOW2_V2_HEADER_LEN) {
    vdisk_error (d, EINVAL, "file too short for a qcow2 header");
    return -1;
  }
  q = calloc (1, sizeof *q);
  if (!q) {
    vdisk_error (d, ENOMEM, "cannot allocate qcow2 state");
    return -1;
  }
  pthread_mutex_init (&q->lock, NULL);
  d->priv = q;
  q->file_end = file_size;
  q->phys_end = file_size;

  /* The fixed fields first, then the whole header cluster (extensions
   * and backing name live there) once its size is known and checked. */
  hlen = file_size < 4096 ? file_size : 4096;
  if (read_header (d, &h, hlen) == -1)
    goto out;
  if (get32 (h) != QCOW2_MAGIC) {
    vdisk_error (d, EINVAL, "bad qcow2 magic");
    goto out;
  }
  if (parse_header_fields (d, q, h, hlen, &header_length) == -1)
    goto out;
  hlen = file_size < q->cluster_size ? file_size : q->cluster_size;
  if (read_header (d, &h, hlen) == -1
      || check_features (d, q, h, header_length) == -1)
    goto out;
  q->rb_bits = q->cluster_bits + 3 - q->refcount_order;
  q->csize_shift = 62 - (q->cluster_bits - 8);
  q->csize_mask = (1ULL << (q->cluster_bits - 8)) - 1;
  q->coff_mask = (1ULL << q->csize_shift) - 1;
  q->next_alloc = div_round_up (file_size, q->cluster_size) * q->cluster_size;
  q->data_locked = q->cluster_size < d->file.align;

  ext_end = get64 (h + 8) ? get64 (h + 8) : hlen;
  if (ext_end > hlen)
    ext_end = hlen;
  if (check_extensions (d, h, header_length, ext_end) == -1
      || read_backing_name (d, q, h, header_length, hlen) == -1
      || check_geometry (d, q, h, file_size) == -1)
    goto out;
  if (cache_init (&q->l2c, q->cluster_size) == -1
      || cache_init (&q->rbc, q->cluster_size) == -1) {
    vdisk_error (d, ENOMEM, "cannot allocate caches");
    goto out;
  }
  if (load_l1 (d, q) == -1 || load_reftable (d, q, file_size) == -1)
    goto out;

  d->info.subformat = q->version == 3 ? "v3" : "v2";
  d->info.block_size = q->cluster_size;
  r = 0;
out:
  free (h);
  return r;
}

/* ---------------------------------------------------------------- */
/* Create. */

/* qemu's name for the backing format (qemu calls VHD "vpc"). */
static const char *
qemu_format_name (enum vdisk_format f)
{
  switch (f) {
  case VDISK_FORMAT_VHD: return "vpc";
  case VDISK_FORMAT_QCOW2: return "qcow2";
  default: return "raw";
  }
}

/* Header, extensions and backing name in the first cluster. */
static int
build_header (uint8_t *h, uint64_t cs, unsigned cluster_bits, uint64_t size,
              uint32_t l1_size, uint64_t l1_off, uint64_t rt_off,
              uint32_t rt_clusters, const char *backing, const char *bfmt)
{
  uint64_t off = QCOW2_CREATE_HEADER_LEN;
  size_t blen = backing ? strlen (backing) : 0;
  size_t flen = bfmt ? strlen (bfmt) : 0;

  if (blen > MAX_BACKING_NAME || off + 8 + (flen + 7) / 8 * 8 + 8 + blen > cs)
    return -1;
  put32 (h, QCOW2_MAGIC);
  put32 (h + 4, 3);
  put32 (h + 20, cluster_bits);
  put64 (h + 24, size);
  put32 (h + 36, l1_size);
  put64 (h + 40, l1_off);
  put64 (h + 48, rt_off);
  put32 (h + 56, rt_clusters);
  put32 (h + 96, 4);
  put32 (h + 100, QCOW2_CREATE_HEADER_LEN);
  if (backing) {
    put32 (h + off, EXT_BACKING_FORMAT);
    put32 (h + off + 4, flen);
    memcpy (h + off + 8, bfmt, flen);
    off += 8 + (flen + 7) / 8 * 8;
  }
  off += 8; /* end of extensions: all zeroes */
  if (backing) {
    put64 (h + 8, off);
    put32 (h + 16, blen);
    memcpy (h + off, backing, blen);
  }
  return 0;
}

static int
qcow2_create (struct vfile *f, uint64_t size,
              const struct vdisk_create_params *params, struct vdisk *parent)
{
  uint64_t cs = params->block_size ? params->block_size : 65536;
  unsigned bits = __builtin_ctzll (cs);
  uint64_t l1_size, l1c, rtc = 1, rbc = 1, total, i;
  uint64_t rb_entries = cs / 2; /* 16-bit refcounts */
  uint8_t *buf;
  int r;

  if (cs < 512 || cs > (2U << 20) || (cs & (cs - 1))) {
    vdisk_set_error (EINVAL,
                     "qcow2: %s: cluster size %" PRIu64
                     " must be a power of 2 in 512..2M",
                     f->path, cs);
    return -1;
  }
  if (size > (1ULL << 62)) {
    vdisk_set_error (EFBIG, "qcow2: %s: size %" PRIu64 " is too big", f->path,
                     size);
    return -1;
  }
  l1_size = div_round_up (size, cs * (cs / 8));
  if (l1_size * 8 > MAX_L1_BYTES) {
    vdisk_set_error (EFBIG,
                     "qcow2: %s: size %" PRIu64 " is too big for cluster "
                     "size %" PRIu64,
                     f->path, size, cs);
    return -1;
  }
  l1c = l1_size ? div_round_up (l1_size * 8, cs) : 1;
  /* Refcount blocks for all the metadata, and a table for them. */
  for (;;) {
    total = 1 + rtc + rbc + l1c;
    uint64_t nrbc = div_round_up (total, rb_entries);
    uint64_t nrtc = div_round_up (nrbc * 8, cs);
    if (nrbc == rbc && nrtc == rtc)
      break;
    rbc = nrbc;
    rtc = nrtc;
  }

  buf = alloc_cluster_buf ((1 + rtc + rbc) * cs);
  if (!buf) {
    vdisk_set_error (ENOMEM, "qcow2: %s: out of memory", f->path);
    return -1;
  }
  memset (buf, 0, (1 + rtc + rbc) * cs);
  if (build_header (buf, cs, bits, size, l1_size, (1 + rtc + rbc) * cs, cs,
                    rtc, params->parent,
                    parent ? qemu_format_name (parent->info.format) : NULL)
      == -1) {
    free (buf);
    vdisk_set_error (ENAMETOOLONG,
                     "qcow2: %s: backing file name too long for the header",
                     f->path);
    return -1;
  }
  for (i = 0; i < rbc; i++)
    put64 (buf + cs + i * 8, (1 + rtc + i) * cs);
  for (i = 0; i < total; i++)
    put16 (buf + (1 + rtc) * cs + i * 2, 1);
  /* The L1 table is zeroes: extend the file over it, sparse. */
  r = vfile_truncate (f, total * cs);
  if (r == 0)
    r = vfile_pwrite (f, buf, (1 + rtc + rbc) * cs, 0);
  if (r == 0)
    r = vfile_flush (f);
  free (buf);
  return r;
}

const struct vdisk_format_ops vdisk_qcow2_ops = {
  .name = "qcow2",
  .format = VDISK_FORMAT_QCOW2,
  .probe = qcow2_probe,
  .open = qcow2_open,
  .close = qcow2_close,
  .create = qcow2_create,
  .map = qcow2_map,
  .pread = qcow2_pread,
  .pwrite = qcow2_pwrite,
  .zero = qcow2_zero,
  .flush = qcow2_flush,
  .repair_leaks = qcow2_repair_leaks,
};
