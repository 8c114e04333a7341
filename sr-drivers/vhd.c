/* VHD images (Microsoft "Virtual Hard Disk Image Format Specification"):
 * fixed, dynamic and differencing, read and write.
 *
 * All integers on disk are big-endian.
 *
 *   fixed:   [data, virtual size bytes][footer 512]
 *   dynamic: [footer copy 512][dynamic header 1024][BAT][locator data]
 *            [block][block]...[footer 512]
 *
 * A block is a sector bitmap (one bit per 512-byte sector, most
 * significant bit first, padded to whole sectors) followed by block_size
 * bytes of data.  The BAT holds, per block, the sector number of its
 * bitmap, or 0xFFFFFFFF when the block is not allocated.  A clear bitmap
 * bit means "not in this layer": zero in a dynamic image, the parent's
 * data in a differencing one.
 *
 * New blocks are placed at the end of the file so that their data starts
 * 4096-aligned (O_DIRECT friendly); the bytes of a new block nobody wrote
 * are past the old end of file and so read as zero, which is what qemu
 * (which ignores the bitmaps and sets them all when it writes) expects.
 * Allocation writes in crash-safe order: the footer at the new end, then
 * data and bitmap, then the BAT entry.
 *
 * Locking: h->lock protects the BAT, the bitmap cache and the end of
 * file.  Data of already allocated blocks moves without it; a sector
 * whose bitmap bit is clear and which a write covers only partly is
 * merged with the parent's data under the lock, so that two disjoint
 * partial writes into the same sector cannot undo each other.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "vdisk-internal.h"
#include "vhd-format.h"

#define MAX_LOCATOR_LEN 4096u
#define DATA_ALIGN 4096u
/* Memory given to cached sector bitmaps. */
#define BITMAP_CACHE_BYTES (4u << 20)

/* Parent locator platform codes. */
#define PLAT_W2RU 0x57327275u /* "W2ru": relative Windows path, UTF-16LE */
#define PLAT_W2KU 0x57326B75u /* "W2ku": absolute Windows path, UTF-16LE */
#define PLAT_MACX 0x4D616358u /* "MacX": file:// URL, UTF-8 */

/* One cached sector bitmap (direct-mapped by block number). */
struct bm_slot
{
  uint32_t blk;
  bool valid;
};

struct vhd
{
  pthread_mutex_t lock;
  uint32_t type;
  uint8_t footer[FOOTER_SIZE]; /* rewritten at every new end of file */
  uint32_t block_size;         /* bytes */
  uint32_t bitmap_size;        /* bytes, whole sectors */
  uint32_t n_entries;          /* max_table_entries */
  uint64_t bat_offset;
  uint32_t *bat;       /* host order */
  uint32_t granule;    /* bytes a write takes over at once */
  uint64_t alloc_base; /* the footer lives here; new blocks go here */
  uint8_t parent_uuid[16];
  struct bm_slot *slots;
  uint8_t *slot_mem; /* n_slots * bitmap_size */
  uint32_t n_slots;
};

static void
uuid_to_string (const uint8_t *u, char *out)
{
  static const char hex[] = "0123456789abcdef";
  size_t i, j = 0;

  for (i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[j++] = '-';
    out[j++] = hex[u[i] >> 4];
    out[j++] = hex[u[i] & 15];
  }
  out[j] = '\0';
}

/* UTF-16 (BE or LE) <-> UTF-8, enough for path names.  Invalid input
 * becomes '?' rather than an error: a garbled name just fails to be
 * found. */

static size_t
utf8_put (char *out, uint32_t c)
{
  if (c < 0x80) {
    out[0] = c;
    return 1;
  }
  if (c < 0x800) {
    out[0] = 0xC0 | c >> 6;
    out[1] = 0x80 | (c & 0x3F);
    return 2;
  }
  if (c < 0x10000) {
    out[0] = 0xE0 | c >> 12;
    out[1] = 0x80 | (c >> 6 & 0x3F);
    out[2] = 0x80 | (c & 0x3F);
    return 3;
  }
  out[0] = 0xF0 | c >> 18;
  out[1] = 0x80 | (c >> 12 & 0x3F);
  out[2] = 0x80 | (c >> 6 & 0x3F);
  out[3] = 0x80 | (c & 0x3F);
  return 4;
}

/* Decode LEN bytes of UTF-16 up to the first NUL; malloc'd string. */
static char *
utf16_to_utf8 (const uint8_t *p, size_t len, bool big_endian)
{
  size_t n = len / 2, i, j = 0;
  char *out = malloc (n * 3 + 1);

  if (out == NULL)
    return NULL;
  for (i = 0; i < n; i++) {
    uint32_t c = big_endian ? get_be16 (p + 2 * i)
                            : (uint32_t)(p[2 * i] | p[2 * i + 1] << 8);
    if (c == 0)
      break;
    if (c >= 0xD800 && c < 0xDC00 && i + 1 < n) {
      uint32_t c2 = big_endian ? get_be16 (p + 2 * i + 2)
                               : (uint32_t)(p[2 * i + 2] | p[2 * i + 3] << 8);
      if (c2 >= 0xDC00 && c2 < 0xE000) {
        c = 0x10000 + ((c - 0xD800) << 10) + (c2 - 0xDC00);
        i++;
      }
      else
        c = '?';
    }
    else if (c >= 0xD800 && c < 0xE000)
      c = '?';
    j += utf8_put (out + j, c);
  }
  out[j] = '\0';
  return out;
}

/* Encode S as UTF-16 into OUT (at most MAX bytes); returns bytes used. */
static size_t
utf8_to_utf16 (const char *s, uint8_t *out, size_t max, bool big_endian)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t j = 0;

  while (*p) {
    uint32_t c;
    int more;
    if (*p < 0x80)
      c = *p, more = 0;
    else if ((*p & 0xE0) == 0xC0)
      c = *p & 0x1F, more = 1;
    else if ((*p & 0xF0) == 0xE0)
      c = *p & 0x0F, more = 2;
    else if ((*p & 0xF8) == 0xF0)
      c = *p & 0x07, more = 3;
    else
      c = '?', more = 0;
    p++;
    for (; more > 0; more--, p++) {
      if ((*p & 0xC0) != 0x80) {
        c = '?';
        break;
      }
      c = c << 6 | (*p & 0x3F);
    }
    uint16_t units[2];
    size_t n = 1;
    if (c >= 0x10000) {
      units[0] = 0xD800 + ((c - 0x10000) >> 10);
      units[1] = 0xDC00 + ((c - 0x10000) & 0x3FF);
      n = 2;
    }
    else
      units[0] = c;
    if (j + 2 * n > max)
      break;
    for (size_t k = 0; k < n; k++, j += 2) {
      if (big_endian)
        put_be16 (out + j, units[k]);
      else {
        out[j] = units[k];
        out[j + 1] = units[k] >> 8;
      }
    }
  }
  return j;
}

/* ------------------------------------------------------------------ */
/* Sector bitmaps. */

static bool
bit_get (const uint8_t *bits, uint32_t s)
{
  return bits[s / 8] & (0x80 >> (s % 8));
}

static void
bit_set (uint8_t *bits, uint32_t s)
{
  bits[s / 8] |= 0x80 >> (s % 8);
}

/* First sector in (s, end) whose bit differs from sector s's, or END.
 * Whole bytes are skipped at once so a full block costs bitmap_size
 * steps, not one per sector. */
static uint32_t
bit_run_end (const uint8_t *bits, uint32_t s, uint32_t end)
{
  bool set = bit_get (bits, s);
  uint8_t same = set ? 0xFF : 0x00;

  for (s++; s < end; s++) {
    if (s % 8 == 0) {
      while (s + 8 <= end && bits[s / 8] == same)
        s += 8;
      if (s >= end)
        break;
    }
    if (bit_get (bits, s) != set)
      return s;
  }
  return end;
}

static uint64_t
block_bitmap_offset (struct vhd *h, uint32_t blk)
{
  return (uint64_t)h->bat[blk] * SECTOR;
}

static uint64_t
block_data_offset (struct vhd *h, uint32_t blk)
{
  return block_bitmap_offset (h, blk) + h->bitmap_size;
}

/* The cached bitmap of an allocated block, read on a miss.  The pointer
 * is valid while the lock is held. */
static uint8_t *
get_bitmap_locked (struct vdisk *d, uint32_t blk)
{
  struct vhd *h = d->priv;
  uint32_t i = blk % h->n_slots;
  uint8_t *bits = h->slot_mem + (size_t)i * h->bitmap_size;

  if (h->slots[i].valid && h->slots[i].blk == blk)
    return bits;
  h->slots[i].valid = false;
  if (vfile_pread (&d->file, bits, h->bitmap_size,
                   block_bitmap_offset (h, blk))
      == -1)
    return NULL;
  h->slots[i].blk = blk;
  h->slots[i].valid = true;
  return bits;
}

/* Put a bitmap we just wrote into the cache without reading it back. */
static void
cache_bitmap_locked (struct vhd *h, uint32_t blk, const uint8_t *bits)
{
  uint32_t i = blk % h->n_slots;

  memcpy (h->slot_mem + (size_t)i * h->bitmap_size, bits, h->bitmap_size);
  h->slots[i].blk = blk;
  h->slots[i].valid = true;
}

/* ------------------------------------------------------------------ */
/* Probe and open. */

static bool
is_footer (const uint8_t *p)
{
  return memcmp (p, "conectix", 8) == 0;
}

static bool
vhd_probe (const uint8_t *head, size_t head_len, const uint8_t *tail,
           size_t tail_len, uint64_t file_size)
{
  /* The footer at the end (512 bytes, or 511 in very old images), or the
   * copy at the start that dynamic disks have: claiming a VHD whose end
   * was cut off lets open say "truncated" instead of serving it raw. */
  if (tail_len >= FOOTER_SIZE && is_footer (tail + tail_len - FOOTER_SIZE))
    return true;
  if (tail_len >= FOOTER_SIZE - 1
      && is_footer (tail + tail_len - (FOOTER_SIZE - 1)))
    return true;
  return head_len >= FOOTER_SIZE && is_footer (head)
         && get_be32 (head + F_DISK_TYPE) != TYPE_FIXED;
}

/* The footer at the end of the file; sets *FOOTER_POS. */
static int
read_footer (struct vdisk *d, uint64_t file_size, uint8_t *footer,
             uint64_t *footer_pos)
{
  uint8_t head[8];

  if (file_size < FOOTER_SIZE - 1) {
    vdisk_error (d, EINVAL, "file too short for a footer (%" PRIu64 " bytes)",
                 file_size);
    return -1;
  }
  memset (footer, 0, FOOTER_SIZE);
  if (file_size >= FOOTER_SIZE) {
    if (vfile_pread (&d->file, footer, FOOTER_SIZE, file_size - FOOTER_SIZE)
        == -1)
      return -1;
    if (is_footer (footer)) {
      *footer_pos = file_size - FOOTER_SIZE;
      return 0;
    }
  }
  /* Images from before Virtual PC 2004 have a 511-byte footer. */
  if (vfile_pread (&d->file, footer, FOOTER_SIZE - 1,
                   file_size - (FOOTER_SIZE - 1))
      == -1)
    return -1;
  footer[FOOTER_SIZE - 1] = 0;
  if (is_footer (footer)) {
    *footer_pos = file_size - (FOOTER_SIZE - 1);
    return 0;
  }
  if (file_size >= FOOTER_SIZE
      && vfile_pread (&d->file, head, sizeof head, 0) == 0 && is_footer (head))
    vdisk_error (d, EINVAL,
                 "footer missing at end of file (%" PRIu64
                 " bytes): truncated or torn image",
                 file_size);
  else
    vdisk_error (d, EINVAL, "no VHD footer at end of file");
  return -1;
}

/* The footer's own rules (vhd-check.c), with the file's end known. */
static int
check_footer (struct vdisk *d, const uint8_t *footer, uint64_t footer_pos)
{
  char why[256];
  int e = vhd_footer_check (footer, footer_pos, why, sizeof why);

  if (e) {
    vdisk_error (d, e, "%s", why);
    return -1;
  }
  return 0;
}

/* A region of metadata that blocks must not overlap. */
struct region
{
  uint64_t start, end;
  const char *what;
};

#define MAX_REGIONS (3 + N_LOCATORS)

static const char *
region_hit (const struct region *r, size_t n, uint64_t start, uint64_t end)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (start < r[i].end && r[i].start < end)
      return r[i].what;
  return NULL;
}

/* The header's own rules (vhd-check.c), then the BAT inside the file. */
static int
check_header (struct vdisk *d, const uint8_t *hdr, uint64_t size,
              uint64_t footer_pos)
{
  uint32_t entries = get_be32 (hdr + H_MAX_ENTRIES);
  uint64_t bat = get_be64 (hdr + H_TABLE_OFFSET);
  char why[256];
  int e = vhd_header_check (hdr, size, why, sizeof why);

  if (e) {
    vdisk_error (d, e, "%s", why);
    return -1;
  }
  if (bat % SECTOR != 0 || bat > footer_pos
      || (uint64_t)entries * 4 > footer_pos - bat) {
    vdisk_error (d, EINVAL,
                 "BAT (offset %" PRIu64 ", %" PRIu32
                 " entries) lies past end of file",
                 bat, entries);
    return -1;
  }
  return 0;
}

/* Candidate parent name from one locator, or NULL if not a path kind we
 * read.  Windows separators become POSIX ones; a drive letter is
 * dropped (the path is then tried from the root). */
static char *
locator_name (uint32_t code, const uint8_t *data, uint32_t len)
{
  char *s, *p;

  if (code == PLAT_W2RU || code == PLAT_W2KU)
    s = utf16_to_utf8 (data, len, false);
  else if (code == PLAT_MACX) {
    s = strndup ((const char *)data, len);
    if (s && strncmp (s, "file://", 7) == 0)
      memmove (s, s + 7, strlen (s + 7) + 1);
  }
  else
    return NULL;
  if (s == NULL)
    return NULL;
  for (p = s; *p; p++)
    if (*p == '\\')
      *p = '/';
  if (code == PLAT_W2KU && s[0] && s[1] == ':' && s[2] == '/')
    memmove (s, s + 2, strlen (s + 2) + 1);
  if (s[0] == '\0') {
    free (s);
    return NULL;
  }
  return s;
}

static void
add_parent_name (struct vdisk *d, char *name)
{
  unsigned i;

  if (name == NULL)
    return;
  for (i = 0; i < d->n_parent_names; i++)
    if (strcmp (d->parent_names[i], name) == 0) {
      free (name);
      return;
    }
  if (d->n_parent_names >= VDISK_MAX_PARENT_NAMES) {
    free (name);
    return;
  }
  d->parent_names[d->n_parent_names++] = name;
}

/* Reads the parent locators of a differencing image into
 * d->parent_names (relative first) and their extents into REGIONS. */
static int
read_locators (struct vdisk *d, const uint8_t *hdr, uint64_t footer_pos,
               struct region *regions, size_t *n_regions)
{
  static const uint32_t order[] = { PLAT_W2RU, PLAT_W2KU, PLAT_MACX };
  size_t pass, i;

  for (pass = 0; pass < 3; pass++)
    for (i = 0; i < N_LOCATORS; i++) {
      const uint8_t *loc = hdr + H_LOCATORS + i * LOCATOR_SIZE;
      uint32_t code = get_be32 (loc);
      uint32_t len = get_be32 (loc + 8);
      uint64_t off = get_be64 (loc + 16);
      uint8_t *data;

      if (code == 0 || len == 0)
        continue;
      if (off > footer_pos || len > footer_pos - off || off < SECTOR) {
        vdisk_error (d, EINVAL,
                     "parent locator %zu (offset %" PRIu64 ", %" PRIu32
                     " bytes) lies outside the file",
                     i, off, len);
        return -1;
      }
      if (pass == 0)
        regions[(*n_regions)++]
            = (struct region){ off, off + len, "a parent locator" };
      if (code != order[pass] || len > MAX_LOCATOR_LEN)
        continue;
      data = malloc (len);
      if (data == NULL) {
        vdisk_error (d, errno, "malloc");
        return -1;
      }
      if (vfile_pread (&d->file, data, len, off) == -1) {
        free (data);
        return -1;
      }
      add_parent_name (d, locator_name (code, data, len));
      free (data);
    }

  /* Last resort: the parent's file name from the header, next to us. */
  add_parent_name (
      d, utf16_to_utf8 (hdr + H_PARENT_NAME, H_PARENT_NAME_LEN, true));
  if (d->n_parent_names == 0) {
    vdisk_error (d, EINVAL,
                 "differencing image has no parent locator or parent name");
    return -1;
  }
  /* The parent of a differencing VHD is a VHD (its unique id and time
   * stamp are checked against ours in attach_parent). */
  d->parent_format = VDISK_FORMAT_VHD;
  return 0;
}

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Every allocated block must lie inside the file, outside the metadata,
 * and apart from every other block. */
static int
check_bat (struct vdisk *d, uint64_t size, uint64_t footer_pos,
           const struct region *regions, size_t n_regions)
{
  struct vhd *h = d->priv;
  uint64_t *sorted = NULL;
  size_t n = 0, i;
  uint32_t blk;
  int r = -1;

  for (blk = 0; blk < h->n_entries; blk++) {
    uint64_t start, end, in_size;
    const char *what;

    if (h->bat[blk] == BAT_UNUSED)
      continue;
    /* Blocks wholly past the virtual size are never read; the last one
     * only needs its in-size sectors to exist. */
    if ((uint64_t)blk * h->block_size >= size) {
      h->bat[blk] = BAT_UNUSED;
      continue;
    }
    in_size = size - (uint64_t)blk * h->block_size;
    if (in_size > h->block_size)
      in_size = h->block_size;
    start = block_bitmap_offset (h, blk);
    end = start + h->bitmap_size + round_up (in_size, SECTOR);
    if (end > footer_pos) {
      vdisk_error (d, EINVAL, "BAT entry %" PRIu32 " points past end of file",
                   blk);
      goto out;
    }
    what = region_hit (regions, n_regions, start, end);
    if (what) {
      vdisk_error (d, EINVAL, "BAT entry %" PRIu32 " points into %s", blk,
                   what);
      goto out;
    }
    n++;
  }
  if (n < 2)
    return 0;

  sorted = malloc (n * sizeof *sorted);
  if (sorted == NULL) {
    vdisk_error (d, errno, "malloc");
    return -1;
  }
  for (blk = 0, i = 0; blk < h->n_entries; blk++)
    if (h->bat[blk] != BAT_UNUSED)
      sorted[i++] = (uint64_t)h->bat[blk] << 32 | blk;
  qsort (sorted, n, sizeof *sorted, cmp_u64);
  for (i = 1; i < n; i++) {
    uint64_t prev_end
        = (sorted[i - 1] >> 32) * SECTOR + h->bitmap_size + h->block_size;
    /* A short last block may be followed by nothing but the footer. */
    if ((sorted[i] >> 32) * SECTOR < prev_end) {
      vdisk_error (d, EINVAL,
                   "BAT entries %" PRIu32 " and %" PRIu32 " overlap",
                   (uint32_t)sorted[i - 1], (uint32_t)sorted[i]);
      goto out;
    }
  }
  r = 0;
out:
  free (sorted);
  return r;
}

static void
vhd_free (struct vhd *h)
{
  if (h == NULL)
    return;
  pthread_mutex_destroy (&h->lock);
  free (h->bat);
  free (h->slots);
  free (h->slot_mem);
  free (h);
}

static int
read_bat (struct vdisk *d)
{
  struct vhd *h = d->priv;
  size_t bytes = (size_t)h->n_entries * 4;
  uint8_t *raw = malloc (bytes ? bytes : 1);
  uint32_t i;

  h->bat = malloc ((h->n_entries ? h->n_entries : 1) * sizeof *h->bat);
  if (raw == NULL || h->bat == NULL) {
    free (raw);
    vdisk_error (d, ENOMEM, "out of memory for a BAT of %" PRIu32 " entries",
                 h->n_entries);
    return -1;
  }
  if (vfile_pread (&d->file, raw, bytes, h->bat_offset) == -1) {
    free (raw);
    return -1;
  }
  for (i = 0; i < h->n_entries; i++)
    h->bat[i] = get_be32 (raw + 4 * (size_t)i);
  free (raw);
  return 0;
}

static int
alloc_bitmap_cache (struct vdisk *d)
{
  struct vhd *h = d->priv;
  uint32_t n = BITMAP_CACHE_BYTES / h->bitmap_size;

  if (n < 16)
    n = 16;
  if (n > h->n_entries)
    n = h->n_entries ? h->n_entries : 1;
  h->n_slots = n;
  h->slots = calloc (n, sizeof *h->slots);
  h->slot_mem = malloc ((size_t)n * h->bitmap_size);
  if (h->slots == NULL || h->slot_mem == NULL) {
    vdisk_error (d, ENOMEM, "out of memory for the bitmap cache");
    return -1;
  }
  return 0;
}

/* Dynamic and differencing images: header, BAT, locators, and where the
 * next block goes. */
static int
open_sparse (struct vdisk *d, uint64_t file_size, uint64_t footer_pos)
{
  struct vhd *h = d->priv;
  uint64_t size = get_be64 (h->footer + F_CUR_SIZE);
  uint64_t hdr_off = get_be64 (h->footer + F_DATA_OFFSET);
  uint8_t hdr[HEADER_SIZE];
  struct region regions[MAX_REGIONS];
  size_t n_regions = 0, i;
  uint64_t base;
  uint32_t blk;

  /* check_footer saw the header lie inside the file. */
  assert (hdr_off >= SECTOR && hdr_off <= footer_pos
          && footer_pos - hdr_off >= HEADER_SIZE);
  if (vfile_pread (&d->file, hdr, HEADER_SIZE, hdr_off) == -1
      || check_header (d, hdr, size, footer_pos) == -1)
    return -1;
  h->block_size = get_be32 (hdr + H_BLOCK_SIZE);
  h->bitmap_size = round_up (h->block_size / SECTOR / 8, SECTOR);
  h->n_entries = get_be32 (hdr + H_MAX_ENTRIES);
  h->bat_offset = get_be64 (hdr + H_TABLE_OFFSET);
  h->granule = h->type == TYPE_DIFF ? 4096 : SECTOR;
  memcpy (h->parent_uuid, hdr + H_PARENT_UUID, 16);

  regions[n_regions++] = (struct region){ 0, SECTOR, "the footer copy" };
  regions[n_regions++] = (struct region){ hdr_off, hdr_off + HEADER_SIZE,
                                          "the dynamic header" };
  regions[n_regions++] = (struct region){
    h->bat_offset, h->bat_offset + (uint64_t)h->n_entries * 4, "the BAT"
  };
  if (region_hit (regions, 2, regions[2].start, regions[2].end)) {
    vdisk_error (d, EINVAL, "BAT at %" PRIu64 " overlaps the dynamic header",
                 h->bat_offset);
    return -1;
  }
  if (h->type == TYPE_DIFF
      && read_locators (d, hdr, footer_pos, regions, &n_regions) == -1)
    return -1;

  if (read_bat (d) == -1
      || check_bat (d, size, footer_pos, regions, n_regions) == -1
      || alloc_bitmap_cache (d) == -1)
    return -1;

  /* New blocks go after everything there is: normally that is exactly
   * where the footer is. */
  base = round_up (footer_pos, SECTOR);
  for (i = 0; i < n_regions; i++)
    if (round_up (regions[i].end, SECTOR) > base)
      base = round_up (regions[i].end, SECTOR);
  for (blk = 0; blk < h->n_entries; blk++)
    if (h->bat[blk] != BAT_UNUSED
        && block_data_offset (h, blk) + h->block_size > base)
      base = block_data_offset (h, blk) + h->block_size;
  h->alloc_base = base;
  (void)file_size;
  return 0;
}

static int
vhd_open (struct vdisk *d)
{
  struct vhd *h;
  uint64_t file_size, footer_pos;

  h = calloc (1, sizeof *h);
  if (h == NULL) {
    vdisk_error (d, ENOMEM, "out of memory");
    return -1;
  }
  pthread_mutex_init (&h->lock, NULL);
  d->priv = h;

  if (vfile_get_size (&d->file, &file_size) == -1
      || read_footer (d, file_size, h->footer, &footer_pos) == -1
      || check_footer (d, h->footer, footer_pos) == -1)
    return -1;
  h->type = get_be32 (h->footer + F_DISK_TYPE);
  if (h->type != TYPE_FIXED && open_sparse (d, file_size, footer_pos) == -1)
    return -1;

  d->size = get_be64 (h->footer + F_CUR_SIZE);
  d->info.subformat = h->type == TYPE_FIXED     ? "fixed"
                      : h->type == TYPE_DYNAMIC ? "dynamic"
                                                : "differencing";
  d->info.block_size = h->type == TYPE_FIXED ? 0 : h->block_size;
  uuid_to_string (h->footer + F_UUID, d->info.uuid);
  return 0;
}

static void
vhd_close (struct vdisk *d)
{
  vhd_free (d->priv);
  d->priv = NULL;
}

/* The parent must be the very image this one was made from. */
static int
vhd_attach_parent (struct vdisk *d)
{
  struct vhd *h = d->priv;
  char want[37];

  uuid_to_string (h->parent_uuid, want);
  if (strcasecmp (d->parent->info.uuid, want) != 0) {
    vdisk_error (d, EINVAL,
                 "dynamic header: parent UUID %s does not match %s (unique "
                 "id %s)",
                 want, d->parent->path,
                 d->parent->info.uuid[0] ? d->parent->info.uuid : "none");
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Walking a range: maximal runs that are in this layer (HOST >= 0, the
 * file offset) or not (HOST == -1).  Metadata only, never data. */

typedef int (*run_fn) (void *opaque, uint64_t off, uint64_t len, int64_t host);

struct walker
{
  run_fn fn;
  void *opaque;
  uint64_t off, len; /* pending run */
  int64_t host;
};

static int
walker_add (struct walker *w, uint64_t off, uint64_t len, int64_t host)
{
  if (w->len > 0 && w->off + w->len == off
      && ((w->host < 0 && host < 0)
          || (w->host >= 0 && w->host + (int64_t)w->len == host))) {
    w->len += len;
    return 0;
  }
  if (w->len > 0 && w->fn (w->opaque, w->off, w->len, w->host) == -1)
    return -1;
  w->off = off;
  w->len = len;
  w->host = host;
  return 0;
}

/* One block's part [boff, boff+n) of the walk. */
static int
walk_block_locked (struct vdisk *d, struct walker *w, uint32_t blk,
                   uint32_t boff, uint32_t n)
{
  struct vhd *h = d->priv;
  uint64_t base = (uint64_t)blk * h->block_size;
  const uint8_t *bits;
  uint64_t data;
  uint32_t p = boff, end = boff + n;

  if (h->bat[blk] == BAT_UNUSED)
    return walker_add (w, base + boff, n, -1);
  bits = get_bitmap_locked (d, blk);
  if (bits == NULL)
    return -1;
  data = block_data_offset (h, blk);
  while (p < end) {
    uint32_t s = p / SECTOR;
    uint32_t e_sec = (end + SECTOR - 1) / SECTOR;
    uint32_t q = bit_run_end (bits, s, e_sec) * SECTOR;
    if (q > end)
      q = end;
    if (walker_add (w, base + p, q - p,
                    bit_get (bits, s) ? (int64_t)(data + p) : -1)
        == -1)
      return -1;
    p = q;
  }
  return 0;
}

static int
walk (struct vdisk *d, uint64_t off, uint64_t count, run_fn fn, void *opaque)
{
  struct vhd *h = d->priv;
  struct walker w = { fn, opaque, 0, 0, -1 };
  int r = 0;

  if (h->type == TYPE_FIXED)
    return fn (opaque, off, count, off);

  pthread_mutex_lock (&h->lock);
  while (count > 0 && r == 0) {
    uint32_t blk = off / h->block_size;
    uint32_t boff = off % h->block_size;
    uint32_t n = h->block_size - boff;
    if (n > count)
      n = count;
    r = walk_block_locked (d, &w, blk, boff, n);
    off += n;
    count -= n;
  }
  if (r == 0 && w.len > 0)
    r = fn (opaque, w.off, w.len, w.host);
  pthread_mutex_unlock (&h->lock);
  return r;
}

static int
map_run (void *opaque, uint64_t off, uint64_t len, int64_t host)
{
  return vdisk_extents_append (
      opaque, off, len, host >= 0 ? VDISK_EXTENT_DATA : VDISK_EXTENT_HOLE,
      host, 0);
}

static int
vhd_map (struct vdisk *d, uint64_t offset, uint64_t count,
         struct vdisk_extents *out)
{
  return walk (d, offset, count, map_run, out);
}

/* ------------------------------------------------------------------ */
/* Reading: plan the runs under the lock, then move the data without it:
 * every piece stored here in one libaio batch, the rest from below. */

struct read_plan
{
  uint8_t *buf;
  uint64_t start;
  struct vfile_req *reqs;
  size_t n_reqs, cap_reqs;
  struct vfile_req *below; /* offset = guest offset */
  size_t n_below, cap_below;
};

static int
plan_push (struct vfile_req **v, size_t *n, size_t *cap, struct vfile_req rq)
{
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 16;
    struct vfile_req *nv = realloc (*v, c * sizeof *nv);
    if (nv == NULL) {
      vdisk_set_error (ENOMEM, "out of memory planning a read");
      return -1;
    }
    *v = nv;
    *cap = c;
  }
  (*v)[(*n)++] = rq;
  return 0;
}

static int
read_run (void *opaque, uint64_t off, uint64_t len, int64_t host)
{
  struct read_plan *p = opaque;
  struct vfile_req rq = { p->buf + (off - p->start), len,
                          host >= 0 ? (uint64_t)host : off, false };

  if (host >= 0)
    return plan_push (&p->reqs, &p->n_reqs, &p->cap_reqs, rq);
  return plan_push (&p->below, &p->n_below, &p->cap_below, rq);
}

static int
vhd_pread (struct vdisk *d, void *buf, uint64_t count, uint64_t offset)
{
  struct read_plan p = { .buf = buf, .start = offset };
  size_t i;
  int r = -1;

  if (walk (d, offset, count, read_run, &p) == -1)
    goto out;
  if (p.n_reqs && vfile_rw_batch (&d->file, p.reqs, p.n_reqs) == -1)
    goto out;
  for (i = 0; i < p.n_below; i++)
    if (vdisk_read_parent (d, p.below[i].buf, p.below[i].count,
                           p.below[i].offset)
        == -1)
      goto out;
  r = 0;
out:
  free (p.reqs);
  free (p.below);
  return r;
}

/* ------------------------------------------------------------------ */
/* Writing. */

/* Rewrite the footer at the new end of file (and the copy at the front
 * is left alone: it never changes). */
static int
write_footer_locked (struct vdisk *d, uint64_t pos)
{
  struct vhd *h = d->priv;
  return vfile_pwrite (&d->file, h->footer, FOOTER_SIZE, pos);
}

static int
write_bitmap_locked (struct vdisk *d, uint32_t blk, const uint8_t *bits)
{
  struct vhd *h = d->priv;
  return vfile_pwrite (&d->file, bits, h->bitmap_size,
                       block_bitmap_offset (h, blk));
}

/* Granules: the unit in which a layer takes sectors over (h->granule
 * bytes, whole bitmap bits at a time).  Dynamic images use single
 * sectors.  Differencing images use 4 KiB (one bitmap byte): libvhdi
 * treats a bitmap byte as present from its first set bit to its end, so
 * a layer whose bytes are only ever 0x00 or 0xFF reads the same through
 * any reader -- and 4 KiB pieces suit O_DIRECT. */

static bool
granule_full (struct vhd *h, const uint8_t *bits, uint32_t g)
{
  uint32_t per = h->granule / SECTOR, s;

  for (s = g * per; s < (g + 1) * per; s++)
    if (!bit_get (bits, s))
      return false;
  return true;
}

/* Set the bits of every granule that [a, b) (in-block bytes) touches. */
static bool
granules_set (struct vhd *h, uint8_t *bits, uint32_t a, uint32_t b)
{
  uint32_t per = h->granule / SECTOR, s;
  bool changed = false;

  for (s = a / h->granule * per; s < (b + h->granule - 1) / h->granule * per;
       s++)
    if (!bit_get (bits, s)) {
      bit_set (bits, s);
      changed = true;
    }
  return changed;
}

/* Granule G of block BLK, not (fully) in this layer yet: fill it with
 * what the guest sees there now, [off, off+len) of it replaced by SRC
 * (zeroes if NULL), write it whole and set its bits. */
static int
merge_granule_locked (struct vdisk *d, uint32_t blk, uint8_t *bits, uint32_t g,
                      uint32_t off, uint32_t len, const uint8_t *src)
{
  struct vhd *h = d->priv;
  uint32_t per = h->granule / SECTOR, i;
  uint64_t in_block = (uint64_t)g * h->granule;
  uint64_t host = block_data_offset (h, blk) + in_block;
  uint8_t buf[4096], mine[4096];

  if (vdisk_read_parent (d, buf, h->granule,
                         (uint64_t)blk * h->block_size + in_block)
      == -1)
    return -1;
  for (i = 0; i < per; i++)
    if (bit_get (bits, g * per + i)) {
      /* Partly ours already (an image from another tool). */
      if (vfile_pread (&d->file, mine, h->granule, host) == -1)
        return -1;
      for (; i < per; i++)
        if (bit_get (bits, g * per + i))
          memcpy (buf + i * SECTOR, mine + i * SECTOR, SECTOR);
    }
  if (src)
    memcpy (buf + off, src, len);
  else
    memset (buf + off, 0, len);
  if (vfile_pwrite (&d->file, buf, h->granule, host) == -1)
    return -1;
  granules_set (h, bits, in_block, in_block + h->granule);
  return 0;
}

/* Merge the partly covered first and last granules of the in-block range
 * [*a, *b) that this layer does not fully hold, and shrink the range to
 * what is left to write (advancing *SRC).  Sets *CHANGED. */
static int
merge_edges_locked (struct vdisk *d, uint32_t blk, uint8_t *bits, uint32_t *a,
                    uint32_t *b, const uint8_t **src, bool *changed)
{
  struct vhd *h = d->priv;
  uint32_t gs = h->granule;
  uint32_t g0 = *a / gs, g1 = (*b - 1) / gs;

  if ((*a % gs || *b < (g0 + 1) * gs) && !granule_full (h, bits, g0)) {
    uint32_t len = (*b < (g0 + 1) * gs ? *b : (g0 + 1) * gs) - *a;
    if (merge_granule_locked (d, blk, bits, g0, *a % gs, len, *src) == -1)
      return -1;
    *a += len;
    if (*src)
      *src += len;
    *changed = true;
  }
  if (g1 != g0 && *b % gs && !granule_full (h, bits, g1)) {
    uint32_t tail = *b % gs;
    if (merge_granule_locked (d, blk, bits, g1, 0, tail,
                              *src ? *src + (*b - tail - *a) : NULL)
        == -1)
      return -1;
    *b -= tail;
    *changed = true;
  }
  return 0;
}

/* Allocate block BLK at the end of the file and write [boff, boff+n) of
 * it from SRC (zeroes if NULL).  Crash-safe order: the footer at the new
 * end first (the file always ends in a valid footer, so a process killed
 * at any point leaves an image that opens), then data and bitmap, and
 * the BAT entry last: until it is written the block is only unused
 * space.  Data nobody wrote lies past the old end of file and so reads
 * as zero. */
static int
allocate_locked (struct vdisk *d, uint32_t blk, uint32_t boff, uint32_t n,
                 const uint8_t *src)
{
  struct vhd *h = d->priv;
  uint64_t bm
      = round_up (h->alloc_base + h->bitmap_size, DATA_ALIGN) - h->bitmap_size;
  uint64_t end = bm + h->bitmap_size + h->block_size;
  uint32_t a = boff, b = boff + n;
  bool changed = false;
  uint8_t be[4], *bits;
  int r = -1;

  if (bm / SECTOR >= BAT_UNUSED) {
    vdisk_error (d, EFBIG,
                 "no room for block %" PRIu32
                 ": a VHD file cannot grow past 2 TiB",
                 blk);
    return -1;
  }
  bits = calloc (1, h->bitmap_size);
  if (bits == NULL) {
    vdisk_error (d, ENOMEM, "out of memory");
    return -1;
  }
  if (write_footer_locked (d, end) == -1)
    goto out;
  h->alloc_base = end;
  /* The BAT entry in memory now, so the data offsets are known; it
   * reaches the disk only after data and bitmap. */
  h->bat[blk] = bm / SECTOR;
  if (merge_edges_locked (d, blk, bits, &a, &b, &src, &changed) == -1)
    goto out;
  if (src && b > a
      && vfile_pwrite (&d->file, src, b - a, block_data_offset (h, blk) + a)
             == -1)
    goto out;
  if (b > a)
    granules_set (h, bits, a, b);
  if (vfile_pwrite (&d->file, bits, h->bitmap_size, bm) == -1)
    goto out;
  put_be32 (be, bm / SECTOR);
  if (vfile_pwrite (&d->file, be, 4, h->bat_offset + 4 * (uint64_t)blk) == -1)
    goto out;
  cache_bitmap_locked (h, blk, bits);
  r = 0;
out:
  if (r == -1)
    h->bat[blk] = BAT_UNUSED;
  free (bits);
  return r;
}

/* Write [boff, boff+n) of an allocated block.  Edge granules not yet in
 * this layer are merged under the lock; the rest of the data moves
 * without it, and its bits are set once it is written. */
static int
write_allocated (struct vdisk *d, uint32_t blk, uint32_t boff, uint32_t n,
                 const uint8_t *src)
{
  struct vhd *h = d->priv;
  uint64_t data = block_data_offset (h, blk);
  uint32_t a = boff, b = boff + n;
  bool changed = false;
  uint8_t *bits;
  int r;

  bits = get_bitmap_locked (d, blk);
  if (bits == NULL
      || merge_edges_locked (d, blk, bits, &a, &b, &src, &changed) == -1)
    return -1;
  if (changed && write_bitmap_locked (d, blk, bits) == -1)
    return -1;
  if (a >= b)
    return 0;

  pthread_mutex_unlock (&h->lock);
  if (src)
    r = vfile_pwrite (&d->file, src, b - a, data + a);
  else
    r = vfile_zero (&d->file, b - a, data + a, true);
  pthread_mutex_lock (&h->lock);
  if (r == -1)
    return -1;

  /* The bitmap may have been evicted and re-read meanwhile. */
  bits = get_bitmap_locked (d, blk);
  if (bits == NULL)
    return -1;
  return granules_set (h, bits, a, b) ? write_bitmap_locked (d, blk, bits) : 0;
}

/* One block's part of a write or zero (SRC == NULL). */
static int
write_piece (struct vdisk *d, uint32_t blk, uint32_t boff, uint32_t n,
             const uint8_t *src)
{
  struct vhd *h = d->priv;
  int r;

  pthread_mutex_lock (&h->lock);
  if (h->bat[blk] == BAT_UNUSED) {
    /* Without a parent, an unallocated block already reads as zero. */
    if (src == NULL && h->type == TYPE_DYNAMIC)
      r = 0;
    else
      r = allocate_locked (d, blk, boff, n, src);
  }
  else
    r = write_allocated (d, blk, boff, n, src);
  pthread_mutex_unlock (&h->lock);
  return r;
}

static int
write_range (struct vdisk *d, const uint8_t *src, uint64_t count,
             uint64_t offset)
{
  struct vhd *h = d->priv;

  while (count > 0) {
    uint32_t blk = offset / h->block_size;
    uint32_t boff = offset % h->block_size;
    uint32_t n = h->block_size - boff;
    if (n > count)
      n = count;
    if (write_piece (d, blk, boff, n, src) == -1)
      return -1;
    if (src)
      src += n;
    offset += n;
    count -= n;
  }
  return 0;
}

static int
vhd_pwrite (struct vdisk *d, const void *buf, uint64_t count, uint64_t offset,
            unsigned flags)
{
  struct vhd *h = d->priv;

  if (h->type == TYPE_FIXED)
    return vfile_pwrite (&d->file, buf, count, offset);
  return write_range (d, buf, count, offset);
}

static int
vhd_zero (struct vdisk *d, uint64_t count, uint64_t offset, unsigned flags)
{
  struct vhd *h = d->priv;

  if (h->type == TYPE_FIXED)
    return vfile_zero (&d->file, count, offset, flags & VDISK_MAY_TRIM);
  return write_range (d, NULL, count, offset);
}

static int
vhd_flush (struct vdisk *d)
{
  return vfile_flush (&d->file);
}

/* ------------------------------------------------------------------ */
/* Creating. */

static int create_error (struct vfile *f, int errnum, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
create_error (struct vfile *f, int errnum, const char *fmt, ...)
{
  char msg[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  vdisk_set_error (errnum, "vhd: %s: %s", f->path, msg);
  return -1;
}

static int
new_uuid (struct vfile *f, uint8_t *u)
{
  if (getrandom (u, 16, 0) != 16)
    return create_error (f, errno, "getrandom: %s", strerror (errno));
  u[6] = (u[6] & 0x0F) | 0x40; /* version 4 */
  u[8] = (u[8] & 0x3F) | 0x80; /* RFC 4122 variant */
  return 0;
}

/* TO relative to the directory FROM; both absolute and canonical. */
static char *
relative_path (const char *from, const char *to)
{
  size_t i = 0, last = 0, ups = 0, k;
  char *out, *p;

  while (from[i] && to[i] && from[i] == to[i]) {
    if (from[i] == '/')
      last = i;
    i++;
  }
  if (from[i] == '\0' && to[i] == '/')
    last = i;
  for (k = last; from[k]; k++)
    if (from[k] == '/' && from[k + 1] != '\0')
      ups++;
  out = malloc (ups * 3 + strlen (to + last) + 1);
  if (out == NULL)
    return NULL;
  for (p = out, k = 0; k < ups; k++, p += 3)
    memcpy (p, "../", 3);
  strcpy (p, to + last + (to[last] == '/'));
  return out;
}

/* One locator: header entry + data (UTF-16LE, Windows separators) at
 * *DATA_OFF inside META.  Returns -1 if the path does not fit. */
static int
put_locator (uint8_t *meta, uint8_t *entry, uint32_t code, const char *prefix,
             const char *path, uint64_t *data_off)
{
  char *s = malloc (strlen (prefix) + strlen (path) + 1), *p;
  size_t len;

  if (s == NULL)
    return -1;
  strcpy (s, prefix);
  strcat (s, path);
  for (p = s; *p; p++)
    if (*p == '/')
      *p = '\\';
  len = utf8_to_utf16 (s, meta + *data_off, MAX_LOCATOR_LEN, false);
  free (s);
  if (len == 0 || len >= MAX_LOCATOR_LEN)
    return -1;
  put_be32 (entry, code);
  put_be32 (entry + 4, round_up (len, SECTOR) / SECTOR); /* in sectors */
  put_be32 (entry + 8, len);
  put_be64 (entry + 16, *data_off);
  *data_off += round_up (len, SECTOR);
  return 0;
}

/* Parent fields of a differencing header: UUID, time stamp, name, and
 * the relative (W2ru) and absolute (W2ku) locators. */
static int
fill_parent (struct vfile *f, uint8_t *meta, uint8_t *hdr,
             const char *recorded, struct vdisk *parent, uint64_t *data_off)
{
  const char *pabs = parent->realpath ? parent->realpath : parent->path;
  const char *base = strrchr (recorded, '/');
  char *self = NULL, *rel = NULL;
  struct stat st;
  int r = -1;

  if (parent->ops != &vdisk_vhd_ops)
    return create_error (f, EINVAL,
                         "parent %s is %s, but a differencing VHD needs a "
                         "VHD parent",
                         parent->path, parent->ops->name);
  memcpy (hdr + H_PARENT_UUID, ((struct vhd *)parent->priv)->footer + F_UUID,
          16);
  if (fstat (parent->file.fd, &st) == 0)
    put_be32 (hdr + H_PARENT_TS, vhd_time (st.st_mtime));
  utf8_to_utf16 (base ? base + 1 : recorded, hdr + H_PARENT_NAME,
                 H_PARENT_NAME_LEN, true);

  if (recorded[0] != '/')
    rel = strdup (recorded);
  else {
    self = realpath (f->path, NULL);
    if (self)
      *strrchr (self, '/') = '\0';
    rel = self ? relative_path (self[0] ? self : "/", pabs) : NULL;
  }
  if (rel == NULL) {
    create_error (f, errno ? errno : ENOMEM,
                  "cannot make a relative path to the parent");
    goto out;
  }
  if (put_locator (meta, hdr + H_LOCATORS, PLAT_W2RU,
                   strncmp (rel, "../", 3) == 0 ? "" : "./", rel, data_off)
          == -1
      || put_locator (meta, hdr + H_LOCATORS + LOCATOR_SIZE, PLAT_W2KU, "",
                      recorded[0] == '/' ? recorded : pabs, data_off)
             == -1) {
    create_error (f, ENAMETOOLONG, "parent path too long for a locator");
    goto out;
  }
  r = 0;
out:
  free (self);
  free (rel);
  return r;
}

static int
create_fixed (struct vfile *f, uint64_t size, const uint8_t *uuid)
{
  uint8_t ft[FOOTER_SIZE];

  /* The data area stays a hole: sparse, and reads as zero. */
  make_footer (ft, TYPE_FIXED, size, NO_OFFSET, uuid);
  if (vfile_truncate (f, size) == -1)
    return -1;
  return vfile_pwrite (f, ft, FOOTER_SIZE, size);
}

static int
create_sparse (struct vfile *f, uint64_t size, uint32_t bs,
               const char *recorded, struct vdisk *parent, const uint8_t *uuid)
{
  uint32_t entries = (size + bs - 1) / bs;
  uint64_t bat_off = SECTOR + HEADER_SIZE;
  uint64_t bat_bytes = round_up ((uint64_t)entries * 4, SECTOR);
  uint64_t end = bat_off + bat_bytes;
  uint64_t meta_len = end + (parent ? 2 * MAX_LOCATOR_LEN : 0);
  uint8_t *meta = calloc (1, meta_len), *hdr;
  int r = -1;

  if (meta == NULL)
    return create_error (f, ENOMEM, "out of memory");
  hdr = meta + SECTOR;
  memcpy (hdr + H_COOKIE, "cxsparse", 8);
  put_be64 (hdr + H_DATA_OFFSET, NO_OFFSET);
  put_be64 (hdr + H_TABLE_OFFSET, bat_off);
  put_be32 (hdr + H_VERSION, 0x00010000);
  put_be32 (hdr + H_MAX_ENTRIES, entries);
  put_be32 (hdr + H_BLOCK_SIZE, bs);
  memset (meta + bat_off, 0xFF, (size_t)entries * 4);
  if (parent && fill_parent (f, meta, hdr, recorded, parent, &end) == -1)
    goto out;
  put_be32 (hdr + H_CHECKSUM, vhd_checksum (hdr, HEADER_SIZE, H_CHECKSUM));
  make_footer (meta, parent ? TYPE_DIFF : TYPE_DYNAMIC, size, SECTOR, uuid);

  /* Metadata first, the footer at the end last: until it is there, the
   * file is not a VHD. */
  if (vfile_pwrite (f, meta, end, 0) == -1
      || vfile_pwrite (f, meta, FOOTER_SIZE, end) == -1)
    goto out;
  r = 0;
out:
  free (meta);
  return r;
}

static int
vhd_create (struct vfile *f, uint64_t size,
            const struct vdisk_create_params *params, struct vdisk *parent)
{
  uint32_t bs = params->block_size ? params->block_size : DEFAULT_BLOCK_SIZE;
  uint8_t uuid[16];

  if (parent && size == 0)
    size = vdisk_get_size (parent);
  if (size > VHD_MAX_SIZE)
    return create_error (f, EFBIG,
                         "virtual size %" PRIu64
                         " is more than a VHD can hold (%" PRIu64 " bytes)",
                         size, VHD_MAX_SIZE);
  if (size == 0 || size % SECTOR != 0)
    return create_error (
        f, EINVAL,
        "virtual size %" PRIu64 " must be a multiple of 512 and not 0", size);
  if (!is_power_of_2 (bs) || bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE)
    return create_error (f, EINVAL,
                         "block size %" PRIu32
                         " is not a power of two between %u and %" PRIu32,
                         bs, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE);
  if (params->fixed && parent)
    return create_error (f, EINVAL, "a fixed VHD cannot have a parent");
  if (new_uuid (f, uuid) == -1)
    return -1;
  if (params->fixed)
    return create_fixed (f, size, uuid);
  return create_sparse (f, size, bs, parent ? params->parent : NULL, parent,
                        uuid);
}

const struct vdisk_format_ops vdisk_vhd_ops = {
  .name = "vhd",
  .format = VDISK_FORMAT_VHD,
  .probe = vhd_probe,
  .open = vhd_open,
  .attach_parent = vhd_attach_parent,
  .close = vhd_close,
  .create = vhd_create,
  .map = vhd_map,
  .pread = vhd_pread,
  .pwrite = vhd_pwrite,
  .zero = vhd_zero,
  .flush = vhd_flush,
};
