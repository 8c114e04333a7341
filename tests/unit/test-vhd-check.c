/* One rule set for VHD footers (vhd-footer.c): the image driver (a file
 * opened as a VHD) and the stream reader (the same bytes as an import
 * body, its length known or not) are given the same broken footers, and
 * both refuse every one with the same errno and an error that names the
 * broken rule. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "vdisk.h"
#include "vhd-format.h"
#include "vhd-stream.h"

#define MiB (UINT64_C (1) << 20)
#define SIZE (4 * MiB)

/* A good VHD file's bytes, dynamic or fixed, with data at 0 and 1 MiB. */
static uint8_t *
make_vhd (bool fixed, size_t *len)
{
  const char *p = unit_path (fixed ? "good-fixed.vhd" : "good-dynamic.vhd");
  struct vdisk_create_params params = { .fixed = fixed };
  static uint8_t data[MiB];
  struct vdisk *d;
  uint8_t *vhd;
  FILE *f;

  unlink (p);
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, SIZE, &params) == 0);
  d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  unit_fill (data, sizeof data, 3);
  CU_ASSERT (vdisk_pwrite (d, data, sizeof data, 0, 0) == 0);
  CU_ASSERT (vdisk_pwrite (d, data, sizeof data, MiB, 0) == 0);
  CU_ASSERT_FATAL (vdisk_close (d) == 0);
  f = fopen (p, "rb");
  CU_ASSERT_FATAL (f != NULL);
  fseek (f, 0, SEEK_END);
  *len = ftell (f);
  rewind (f);
  vhd = malloc (*len);
  CU_ASSERT_FATAL (vhd != NULL);
  CU_ASSERT_FATAL (fread (vhd, 1, *len, f) == *len);
  fclose (f);
  return vhd;
}

static int
discard (void *opaque, const void *buf, size_t len, uint64_t offset)
{
  return 0;
}

/* The reader's verdict on VHD as a body, fed in 64 KiB pieces. */
static int
stream_verdict (const uint8_t *vhd, size_t len, uint64_t stream_len)
{
  struct vhd_stream_reader *r
      = vhd_stream_reader_new (4 * SIZE, stream_len, discard, NULL, NULL);
  int ret = 0;

  CU_ASSERT_FATAL (r != NULL);
  for (size_t off = 0; off < len && ret == 0; off += 65536)
    ret = vhd_stream_reader_feed (r, vhd + off,
                                  len - off < 65536 ? len - off : 65536);
  if (ret == 0)
    ret = vhd_stream_reader_finish (r);
  vhd_stream_reader_free (r);
  return ret;
}

/* The driver's verdict on VHD as a file opened as a VHD. */
static int
file_verdict (const uint8_t *vhd, size_t len)
{
  const char *p = unit_path ("damaged.vhd");
  FILE *f = fopen (p, "wb");
  struct vdisk *d;

  CU_ASSERT_FATAL (f != NULL);
  CU_ASSERT_FATAL (fwrite (vhd, 1, len, f) == len);
  CU_ASSERT_FATAL (fclose (f) == 0);
  d = vdisk_open_as (p, 0, VDISK_FORMAT_VHD, NULL);
  if (d == NULL)
    return -1;
  vdisk_close (d);
  return 0;
}

static void
expect_error (const char *reader, const char *damage, int errnum,
              const char *words)
{
  if (vdisk_get_errno () != errnum || !strstr (vdisk_get_error (), words)) {
    fprintf (stderr, "%s, %s: got \"%s\" (errno %d), want \"%s\" (%d)\n",
             reader, damage, vdisk_get_error (), vdisk_get_errno (), words,
             errnum);
    CU_FAIL ("wrong error");
  }
}

/* One broken field: WIDTH bytes big-endian at OFF of every footer (or
 * of the dynamic header). */
struct damage
{
  const char *name;
  size_t off;
  int width;
  uint64_t value;
  bool stale_checksum; /* leave the checksum as it was */
  int errnum;
  const char *words; /* in both readers' errors */
};

/* DM on the structure at P of LEN bytes, its checksum at CSUM. */
static void
put_field (uint8_t *p, size_t len, size_t csum, const struct damage *dm)
{
  switch (dm->width) {
  case 1: p[dm->off] = dm->value; break;
  case 4: put_be32 (p + dm->off, dm->value); break;
  case 8: put_be64 (p + dm->off, dm->value); break;
  }
  if (!dm->stale_checksum)
    put_be32 (p + csum, vhd_checksum (p, len, csum));
}

/* Both readers refuse BAD (LEN bytes) with DM's error. */
static void
both_refuse (const uint8_t *bad, size_t len, const struct damage *dm)
{
  CU_ASSERT (file_verdict (bad, len) == -1);
  expect_error ("file", dm->name, dm->errnum, dm->words);
  CU_ASSERT (stream_verdict (bad, len, len) == -1);
  expect_error ("stream", dm->name, dm->errnum, dm->words);
  /* Its length unknown (chunked), the body is refused all the same. */
  CU_ASSERT (stream_verdict (bad, len, 0) == -1);
}

/* Both readers refuse GOOD with DM applied to its closing footer and,
 * for a dynamic disk, to the copy at its start. */
static void
refused_by_both (const uint8_t *good, size_t len, bool fixed,
                 const struct damage *dm)
{
  uint8_t *bad = malloc (len);

  CU_ASSERT_FATAL (bad != NULL);
  memcpy (bad, good, len);
  put_field (bad + len - FOOTER_SIZE, FOOTER_SIZE, F_CHECKSUM, dm);
  if (!fixed)
    put_field (bad, FOOTER_SIZE, F_CHECKSUM, dm);
  both_refuse (bad, len, dm);
  free (bad);
}

static const struct damage common_damage[] = {
  { "bad cookie", F_COOKIE, 1, 'C', false, EINVAL, "no VHD footer" },
  { "checksum", F_CHECKSUM + 3, 1, 0x5a, true, EINVAL,
    "footer checksum mismatch" },
  { "version 2", F_VERSION, 4, 0x00020000, false, ENOTSUP,
    "footer: unsupported format version 0x00020000" },
  { "version 0", F_VERSION, 4, 0x00000005, false, ENOTSUP,
    "footer: unsupported format version 0x00000005" },
  { "disk type 7", F_DISK_TYPE, 4, 7, false, EINVAL,
    "footer: unknown disk type 7" },
  { "disk type 0", F_DISK_TYPE, 4, 0, false, EINVAL,
    "footer: unknown disk type 0" },
  { "size 0", F_CUR_SIZE, 8, 0, false, EINVAL,
    "footer: virtual size 0 out of range" },
  { "size past 2 TiB", F_CUR_SIZE, 8, VHD_MAX_SIZE + SECTOR, false, EINVAL,
    "out of range (1..2199023255552)" },
  { NULL },
};

static void
test_common_rules_dynamic (void)
{
  size_t len;
  uint8_t *good = make_vhd (false, &len);

  CU_ASSERT (file_verdict (good, len) == 0);
  CU_ASSERT (stream_verdict (good, len, len) == 0);
  for (const struct damage *dm = common_damage; dm->name; dm++)
    refused_by_both (good, len, false, dm);
  free (good);
}

static void
test_common_rules_fixed (void)
{
  size_t len;
  uint8_t *good = make_vhd (true, &len);

  CU_ASSERT (file_verdict (good, len) == 0);
  CU_ASSERT (stream_verdict (good, len, len) == 0);
  for (const struct damage *dm = common_damage; dm->name; dm++)
    refused_by_both (good, len, true, dm);
  free (good);
}

/* Where a dynamic disk's header lies: a sector after the footer copy,
 * inside the file. */
static void
test_header_offset (void)
{
  size_t len;
  uint8_t *good = make_vhd (false, &len);
  const struct damage offsets[] = {
    { "header offset 0", F_DATA_OFFSET, 8, 0, false, EINVAL,
      "dynamic header offset 0 is not on a sector boundary after the footer "
      "copy" },
    { "header offset 100", F_DATA_OFFSET, 8, 100, false, EINVAL,
      "dynamic header offset 100 is not on a sector boundary" },
    { "header offset 1000", F_DATA_OFFSET, 8, 1000, false, EINVAL,
      "dynamic header offset 1000 is not on a sector boundary" },
    { "header offset none", F_DATA_OFFSET, 8, NO_OFFSET, false, EINVAL,
      "is not on a sector boundary after the footer copy" },
    { "header offset 4 TiB", F_DATA_OFFSET, 8, VHD_MAX_SIZE * 2, false, EINVAL,
      "is not on a sector boundary after the footer copy" },
    { "header past the footer", F_DATA_OFFSET, 8,
      round_up (len, SECTOR) + SECTOR, false, EINVAL,
      "lies outside the file" },
    { "header across the footer", F_DATA_OFFSET, 8, len - FOOTER_SIZE - SECTOR,
      false, EINVAL, "lies outside the file" },
    { NULL },
  };

  for (const struct damage *dm = offsets; dm->name; dm++)
    refused_by_both (good, len, false, dm);
  free (good);
}

/* A fixed disk's data must hold its virtual size. */
static void
test_fixed_data_short (void)
{
  size_t len;
  uint8_t *good = make_vhd (true, &len);
  const struct damage bigger = {
    .name = "size past the data",
    .off = F_CUR_SIZE,
    .width = 8,
    .value = SIZE + SECTOR,
    .errnum = EINVAL,
    .words = "fixed VHD data area truncated: 4194304 bytes before the "
             "footer, virtual size 4194816",
  };

  refused_by_both (good, len, true, &bigger);
  free (good);
}

/* The dynamic header's own rules. */
static void
test_header_rules (void)
{
  size_t len;
  uint8_t *good = make_vhd (false, &len);
  uint8_t *bad = malloc (len);
  const uint64_t hdr = get_be64 (good + len - FOOTER_SIZE + F_DATA_OFFSET);
  const struct damage damage[] = {
    { "header cookie", H_COOKIE, 1, 'C', false, EINVAL,
      "dynamic header: bad cookie" },
    { "header checksum", H_CHECKSUM, 1, 0x5a, true, EINVAL,
      "dynamic header checksum mismatch" },
    { "header version 2", H_VERSION, 4, 0x00020000, false, ENOTSUP,
      "dynamic header: unsupported version 0x00020000" },
    { "block size 3000", H_BLOCK_SIZE, 4, 3000, false, EINVAL,
      "block size 3000 is not a power of two" },
    { "block size 2 KiB", H_BLOCK_SIZE, 4, 2048, false, EINVAL,
      "block size 2048 is not a power of two between" },
    { "block size 512 MiB", H_BLOCK_SIZE, 4, 512 * MiB, false, EINVAL,
      "block size 536870912 is not a power of two between" },
    { "one BAT entry", H_MAX_ENTRIES, 4, 1, false, EINVAL,
      "max_table_entries 1 does not fit virtual size 4194304" },
    { "2^24 + 1 BAT entries", H_MAX_ENTRIES, 4, (1 << 24) + 1, false, EINVAL,
      "max_table_entries 16777217 does not fit" },
    { NULL },
  };

  CU_ASSERT_FATAL (bad != NULL && hdr + HEADER_SIZE < len);
  for (const struct damage *dm = damage; dm->name; dm++) {
    memcpy (bad, good, len);
    put_field (bad + hdr, HEADER_SIZE, H_CHECKSUM, dm);
    both_refuse (bad, len, dm);
  }
  free (bad);
  free (good);
}

/* The same rules through the function itself: a good footer passes, and
 * END is where it lies. */
static void
test_check_function (void)
{
  static const uint8_t uuid[16];
  uint8_t ft[FOOTER_SIZE];
  char why[256];

  make_footer (ft, TYPE_DYNAMIC, SIZE, FOOTER_SIZE, uuid);
  CU_ASSERT_EQUAL (vhd_footer_check (ft, VHD_END_UNKNOWN, why, sizeof why), 0);
  CU_ASSERT_EQUAL (
      vhd_footer_check (ft, FOOTER_SIZE + HEADER_SIZE, why, sizeof why), 0);
  CU_ASSERT_EQUAL (
      vhd_footer_check (ft, FOOTER_SIZE + HEADER_SIZE - 1, why, sizeof why),
      EINVAL);
  CU_ASSERT_EQUAL (vhd_footer_check (ft, 0, why, sizeof why), EINVAL);
  make_footer (ft, TYPE_FIXED, SIZE, NO_OFFSET, uuid);
  CU_ASSERT_EQUAL (vhd_footer_check (ft, SIZE, why, sizeof why), 0);
  CU_ASSERT_EQUAL (vhd_footer_check (ft, SIZE - 1, why, sizeof why), EINVAL);
  /* A fixed disk's data offset is not read. */
  put_be64 (ft + F_DATA_OFFSET, 3);
  put_be32 (ft + F_CHECKSUM, vhd_checksum (ft, FOOTER_SIZE, F_CHECKSUM));
  CU_ASSERT_EQUAL (vhd_footer_check (ft, VHD_END_UNKNOWN, why, sizeof why), 0);
  /* A message always fits WHY, cut if need be. */
  ft[0] = 0;
  CU_ASSERT_EQUAL (vhd_footer_check (ft, VHD_END_UNKNOWN, why, 8), EINVAL);
  CU_ASSERT_STRING_EQUAL (why, "footer:");
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "dynamic: footer rules", test_common_rules_dynamic },
    { "fixed: footer rules", test_common_rules_fixed },
    { "dynamic: header offset", test_header_offset },
    { "fixed: data shorter than the size", test_fixed_data_short },
    { "dynamic: header rules", test_header_rules },
    { "vhd_footer_check", test_check_function },
    { NULL },
  };
  return unit_main ("vhd footer and header", tests);
}
