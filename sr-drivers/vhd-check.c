/* The rules a VHD's footer and dynamic header must pass, whoever reads
 * them (vhd-format.h).
 *
 * The image driver (vhd.c) reads the footer at the end of a file; the
 * stream reader (vhd-stream.c) reads the copy at the start of a body and
 * the footer at its end; both then read the dynamic header.  Both ask
 * here, so that a rule added for bad input is added once and both
 * refuse the same footers and headers, in the same words.  What only one
 * reader can know stays with it: the stream's target size (EFBIG), which
 * disk types it can stream, that a closing footer matches its copy, and
 * where the BAT may lie. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "vhd-format.h"

/* What a footer and a dynamic header share: a cookie, a checksum and a
 * version, with NAME and VERSION_NAME for messages. */
struct envelope
{
  const char *cookie;
  size_t len, checksum, version;
  const char *name, *version_name;
};

static const struct envelope footer = {
  "conectix", FOOTER_SIZE, F_CHECKSUM, F_VERSION, "footer", "format version",
};
static const struct envelope header = {
  "cxsparse", HEADER_SIZE, H_CHECKSUM, H_VERSION, "dynamic header", "version",
};

/* Both cookies open their structure. */
static_assert (F_COOKIE == 0 && H_COOKIE == 0, "cookies at offset 0");

static int
check_envelope (const uint8_t *p, const struct envelope *env, char *why,
                size_t why_len)
{
  uint32_t stored = get_be32 (p + env->checksum);
  uint32_t computed = vhd_checksum (p, env->len, env->checksum);
  uint32_t version = get_be32 (p + env->version);

  if (memcmp (p, env->cookie, 8) != 0) {
    snprintf (why, why_len, "%s: bad cookie", env->name);
    return EINVAL;
  }
  if (stored != computed) {
    snprintf (why, why_len,
              "%s checksum mismatch (stored 0x%08" PRIx32
              ", computed 0x%08" PRIx32 ")",
              env->name, stored, computed);
    return EINVAL;
  }
  if (version >> 16 != 1) {
    snprintf (why, why_len, "%s: unsupported %s 0x%08" PRIx32, env->name,
              env->version_name, version);
    return ENOTSUP;
  }
  return 0;
}

/* Dynamic and differencing disks: where the dynamic header lies. */
static int
check_header_offset (const uint8_t *ft, uint64_t end, char *why,
                     size_t why_len)
{
  uint64_t off = get_be64 (ft + F_DATA_OFFSET);

  /* Sector-aligned, after the footer copy, below the 2 TiB every
   * offset of the format lies within. */
  if (off < FOOTER_SIZE || off % SECTOR != 0 || off > VHD_MAX_SIZE) {
    snprintf (why, why_len,
              "footer: dynamic header offset %" PRIu64
              " is not on a sector boundary after the footer copy",
              off);
    return EINVAL;
  }
  if (end != VHD_END_UNKNOWN && (off > end || end - off < HEADER_SIZE)) {
    snprintf (why, why_len,
              "footer: dynamic header offset %" PRIu64
              " lies outside the file",
              off);
    return EINVAL;
  }
  return 0;
}

int
vhd_footer_check (const uint8_t *ft, uint64_t end, char *why, size_t why_len)
{
  uint32_t type = get_be32 (ft + F_DISK_TYPE);
  uint64_t size = get_be64 (ft + F_CUR_SIZE);
  int e = check_envelope (ft, &footer, why, why_len);

  if (e)
    return e;
  if (type != TYPE_FIXED && type != TYPE_DYNAMIC && type != TYPE_DIFF) {
    snprintf (why, why_len, "footer: unknown disk type %" PRIu32, type);
    return EINVAL;
  }
  if (size == 0 || size > VHD_MAX_SIZE) {
    snprintf (why, why_len,
              "footer: virtual size %" PRIu64 " out of range (1..%" PRIu64 ")",
              size, VHD_MAX_SIZE);
    return EINVAL;
  }
  if (type == TYPE_FIXED && end != VHD_END_UNKNOWN && end < size) {
    snprintf (why, why_len,
              "fixed VHD data area truncated: %" PRIu64
              " bytes before the footer, virtual size %" PRIu64,
              end, size);
    return EINVAL;
  }
  if (type != TYPE_FIXED)
    return check_header_offset (ft, end, why, why_len);
  return 0;
}

int
vhd_header_check (const uint8_t *hdr, uint64_t size, char *why, size_t why_len)
{
  uint32_t bs = get_be32 (hdr + H_BLOCK_SIZE);
  uint32_t entries = get_be32 (hdr + H_MAX_ENTRIES);
  int e = check_envelope (hdr, &header, why, why_len);

  if (e)
    return e;
  if (!is_power_of_2 (bs) || bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE) {
    snprintf (why, why_len,
              "dynamic header: block size %" PRIu32
              " is not a power of two between %u and %" PRIu32,
              bs, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE);
    return EINVAL;
  }
  if (entries < (size + bs - 1) / bs || entries > MAX_BAT_ENTRIES) {
    snprintf (why, why_len,
              "dynamic header: max_table_entries %" PRIu32
              " does not fit virtual size %" PRIu64 " and block size %" PRIu32,
              entries, size, bs);
    return EINVAL;
  }
  return 0;
}
