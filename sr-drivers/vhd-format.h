/* The VHD on-disk format (Microsoft "Virtual Hard Disk Image Format
 * Specification"): field offsets, limits, big-endian accessors, the
 * checksum and the footer (made here, checked in vhd-check.c), shared
 * by the image driver (vhd.c) and the streaming reader and writer
 * (vhd-stream.c).  Nothing outside sr-drivers/ includes this. */
#ifndef VHD_FORMAT_H
#define VHD_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define SECTOR 512
#define FOOTER_SIZE 512
#define HEADER_SIZE 1024
#define BAT_UNUSED 0xFFFFFFFFu
#define NO_OFFSET UINT64_C (0xFFFFFFFFFFFFFFFF)
/* BAT entries are 32-bit sector numbers, so nothing can live past
 * 2 TiB of file; a bigger virtual size could never be filled.  (qemu
 * refuses more than 2040 GiB; Hyper-V makes at most 2040 GiB.) */
#define VHD_MAX_SIZE (UINT64_C (2) << 40)
#define DEFAULT_BLOCK_SIZE (UINT32_C (2) << 20)
#define MIN_BLOCK_SIZE 4096u
#define MAX_BLOCK_SIZE (UINT32_C (256) << 20)
/* Bounds the in-memory BAT to 64 MiB whatever the file claims. */
#define MAX_BAT_ENTRIES (UINT32_C (1) << 24)
/* Seconds from the Unix epoch to the VHD one, 2000-01-01 00:00 UTC. */
#define VHD_EPOCH 946684800

enum disk_type
{
  TYPE_FIXED = 2,
  TYPE_DYNAMIC = 3,
  TYPE_DIFF = 4,
};

/* Footer fields. */
#define F_COOKIE 0
#define F_FEATURES 8
#define F_VERSION 12
#define F_DATA_OFFSET 16
#define F_TIMESTAMP 24
#define F_CREATOR_APP 28
#define F_CREATOR_VER 32
#define F_CREATOR_OS 36
#define F_ORIG_SIZE 40
#define F_CUR_SIZE 48
#define F_GEOMETRY 56
#define F_DISK_TYPE 60
#define F_CHECKSUM 64
#define F_UUID 68

/* Dynamic header fields. */
#define H_COOKIE 0
#define H_DATA_OFFSET 8
#define H_TABLE_OFFSET 16
#define H_VERSION 24
#define H_MAX_ENTRIES 28
#define H_BLOCK_SIZE 32
#define H_CHECKSUM 36
#define H_PARENT_UUID 40
#define H_PARENT_TS 56
#define H_PARENT_NAME 64
#define H_PARENT_NAME_LEN 512
#define H_LOCATORS 576
#define N_LOCATORS 8
#define LOCATOR_SIZE 24

/* Big-endian fields. */

static inline uint16_t
get_be16 (const uint8_t *p)
{
  return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t
get_be32 (const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8
         | p[3];
}

static inline uint64_t
get_be64 (const uint8_t *p)
{
  return (uint64_t)get_be32 (p) << 32 | get_be32 (p + 4);
}

static inline void
put_be16 (uint8_t *p, uint16_t v)
{
  p[0] = v >> 8;
  p[1] = v;
}

static inline void
put_be32 (uint8_t *p, uint32_t v)
{
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static inline void
put_be64 (uint8_t *p, uint64_t v)
{
  put_be32 (p, v >> 32);
  put_be32 (p + 4, (uint32_t)v);
}

static inline uint64_t
round_up (uint64_t v, uint64_t to)
{
  return (v + to - 1) / to * to;
}

static inline bool
is_power_of_2 (uint64_t v)
{
  return v && (v & (v - 1)) == 0;
}

/* The spec's checksum: one's complement of the byte sum, the checksum
 * field itself counted as zero. */
static inline uint32_t
vhd_checksum (const uint8_t *p, size_t len, size_t csum_off)
{
  uint32_t sum = 0;
  size_t i;

  for (i = 0; i < len; i++)
    if (i < csum_off || i >= csum_off + 4)
      sum += p[i];
  return ~sum;
}

/* CHS geometry from the spec's appendix: cylinders, heads, sectors per
 * track packed as the footer stores them. */
static inline uint32_t
chs_geometry (uint64_t size)
{
  uint64_t total = size / SECTOR;
  uint32_t spt, heads, cth;

  if (total > 65535ULL * 16 * 255)
    total = 65535ULL * 16 * 255;
  if (total >= 65535ULL * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = total / spt;
  }
  else {
    spt = 17;
    cth = total / spt;
    heads = (cth + 1023) / 1024;
    if (heads < 4)
      heads = 4;
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = total / spt;
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = total / spt;
    }
  }
  return (cth / heads) << 16 | heads << 8 | spt;
}

static inline uint32_t
vhd_time (time_t t)
{
  return t > VHD_EPOCH ? (uint32_t)(t - VHD_EPOCH) : 0;
}

static inline void
make_footer (uint8_t *ft, uint32_t type, uint64_t size, uint64_t data_offset,
             const uint8_t *uuid)
{
  memset (ft, 0, FOOTER_SIZE);
  memcpy (ft + F_COOKIE, "conectix", 8);
  put_be32 (ft + F_FEATURES, 2); /* "reserved", always set */
  put_be32 (ft + F_VERSION, 0x00010000);
  put_be64 (ft + F_DATA_OFFSET, data_offset);
  put_be32 (ft + F_TIMESTAMP, vhd_time (time (NULL)));
  /* XenServer's tapdisk: qemu and Hyper-V then take the size from
   * current_size instead of rounding it to the CHS geometry. */
  memcpy (ft + F_CREATOR_APP, "tap\0", 4);
  put_be32 (ft + F_CREATOR_VER, 0x00010003);
  memcpy (ft + F_CREATOR_OS, "Wi2k", 4);
  put_be64 (ft + F_ORIG_SIZE, size);
  put_be64 (ft + F_CUR_SIZE, size);
  put_be32 (ft + F_GEOMETRY, chs_geometry (size));
  put_be32 (ft + F_DISK_TYPE, type);
  memcpy (ft + F_UUID, uuid, 16);
  put_be32 (ft + F_CHECKSUM, vhd_checksum (ft, FOOTER_SIZE, F_CHECKSUM));
}

/* END for vhd_footer_check when the footer's place is not known yet. */
#define VHD_END_UNKNOWN UINT64_MAX

/* Whether FT (FOOTER_SIZE bytes; a 511-byte footer padded with a zero)
 * is a footer vdimotion reads: the cookie, the checksum, format version
 * 1.x, a known disk type, a virtual size of 1 byte to VHD_MAX_SIZE; for
 * a dynamic or differencing disk, a dynamic header offset on a sector
 * boundary after the footer copy.  END is where this footer lies in its
 * file (the end of everything the footer describes), or
 * VHD_END_UNKNOWN: when known, a fixed disk's data must hold its virtual
 * size and a dynamic header must end before it.  The one rule set of vhd.c and
 * vhd-stream.c (vhd-check.c).
 * Returns 0, or EINVAL (ENOTSUP for a format version other than 1.x)
 * with WHY (WHY_LEN bytes) saying which rule failed, for example
 * "footer checksum mismatch (stored 0x..., computed 0x...)". */
int vhd_footer_check (const uint8_t *ft, uint64_t end, char *why,
                      size_t why_len);

/* Whether HDR (HEADER_SIZE bytes) is a dynamic header vdimotion reads,
 * for a disk of SIZE bytes (from its checked footer): the cookie, the
 * checksum, version 1.x, a block size that is a power of two from
 * MIN_BLOCK_SIZE to MAX_BLOCK_SIZE, and a BAT of enough entries for SIZE
 * but at most MAX_BAT_ENTRIES.  Where the BAT lies is the reader's to
 * check.  Returns as vhd_footer_check. */
int vhd_header_check (const uint8_t *hdr, uint64_t size, char *why,
                      size_t why_len);

#endif /* VHD_FORMAT_H */
