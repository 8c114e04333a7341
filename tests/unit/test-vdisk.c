/* The libvdisk core, through the raw format: extents, bounds, errors,
 * create/open, writes and maps. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "vdisk.h"

static void
test_extents_merge (void)
{
  struct vdisk_extents e = { 0 };
  CU_ASSERT (vdisk_extents_append (&e, 0, 10, VDISK_EXTENT_DATA, 100, 0) == 0);
  /* Contiguous in guest and host: merged. */
  CU_ASSERT (vdisk_extents_append (&e, 10, 5, VDISK_EXTENT_DATA, 110, 0) == 0);
  CU_ASSERT_EQUAL (e.len, 1);
  CU_ASSERT_EQUAL (e.v[0].length, 15);
  /* Host offset jumps: a new extent, as qemu-img map reports it. */
  CU_ASSERT (vdisk_extents_append (&e, 15, 5, VDISK_EXTENT_DATA, 500, 0) == 0);
  CU_ASSERT_EQUAL (e.len, 2);
  /* Different depth or type: new extents. */
  CU_ASSERT (vdisk_extents_append (&e, 20, 5, VDISK_EXTENT_HOLE, -1, 0) == 0);
  CU_ASSERT (vdisk_extents_append (&e, 25, 5, VDISK_EXTENT_HOLE, -1, 1) == 0);
  CU_ASSERT (vdisk_extents_append (&e, 30, 5, VDISK_EXTENT_HOLE, -1, 1) == 0);
  CU_ASSERT_EQUAL (e.len, 4);
  CU_ASSERT_EQUAL (e.v[3].length, 10);
  /* Empty extents are ignored. */
  CU_ASSERT (vdisk_extents_append (&e, 35, 0, VDISK_EXTENT_DATA, 0, 0) == 0);
  CU_ASSERT_EQUAL (e.len, 4);
  vdisk_extents_free (&e);
}

static void
test_format_names (void)
{
  CU_ASSERT_EQUAL (vdisk_format_from_name ("vpc"), VDISK_FORMAT_VHD);
  CU_ASSERT_EQUAL (vdisk_format_from_name ("vhd"), VDISK_FORMAT_VHD);
  CU_ASSERT_EQUAL (vdisk_format_from_name ("qcow2"), VDISK_FORMAT_QCOW2);
  CU_ASSERT_EQUAL (vdisk_format_from_name ("raw"), VDISK_FORMAT_RAW);
  CU_ASSERT_EQUAL (vdisk_format_from_name ("vmdk"), -1);
  CU_ASSERT_STRING_EQUAL (vdisk_format_name (VDISK_FORMAT_VHD), "vhd");
}

/* The owner's word: an explicit format is never second-guessed by the
 * content, a qcow2 child's recorded backing format is honoured, a
 * confining directory holds the whole chain and allows no probing. */
static void
test_open_as_owner_says (void)
{
  const char *base = unit_path ("owner-base.raw");
  const char *top = unit_path ("owner-top.qcow2");
  struct vdisk_create_params cp
      = { .parent = "owner-base.raw", .parent_format = "raw" };
  static unsigned char magic[4] = { 'Q', 'F', 'I', 0xfb }, r[4];
  struct vdisk_info info;
  struct vdisk *d;
  char dir[512];

  snprintf (dir, sizeof dir, "%s", unit_path ("."));
  /* A raw disk whose guest wrote qcow2's magic at offset 0. */
  CU_ASSERT_FATAL (vdisk_create (base, VDISK_FORMAT_RAW, 1 << 20, NULL) == 0);
  CU_ASSERT_FATAL (
      (d = vdisk_open_as (base, VDISK_OPEN_RDWR, VDISK_FORMAT_RAW, NULL))
      != NULL);
  CU_ASSERT (vdisk_pwrite (d, magic, 4, 0, 0) == 0);
  vdisk_get_info (d, &info);
  CU_ASSERT (!info.probed);
  vdisk_close (d);
  /* Probing now fails (a qcow2 header with nothing behind it)... */
  CU_ASSERT (vdisk_open (base, 0) == NULL);
  /* ...but the owner's word still reads the guest's bytes. */
  CU_ASSERT_FATAL ((d = vdisk_open_as (base, 0, VDISK_FORMAT_RAW, NULL))
                   != NULL);
  CU_ASSERT (vdisk_pread (d, r, 4, 0) == 0 && memcmp (r, magic, 4) == 0);
  vdisk_close (d);

  /* A child that records "raw": its parent is opened as raw. */
  CU_ASSERT_FATAL (vdisk_create (top, VDISK_FORMAT_QCOW2, 0, &cp) == 0);
  CU_ASSERT_FATAL ((d = vdisk_open_as (top, 0, VDISK_FORMAT_QCOW2, dir))
                   != NULL);
  vdisk_get_info (d, &info);
  CU_ASSERT_STRING_EQUAL (info.parent_format_name, "raw");
  vdisk_get_info (vdisk_get_parent (d), &info);
  CU_ASSERT_EQUAL (info.format, VDISK_FORMAT_RAW);
  CU_ASSERT (!info.probed);
  CU_ASSERT (vdisk_pread (d, r, 4, 0) == 0 && memcmp (r, magic, 4) == 0);
  vdisk_close (d);

  /* Confined: a format must be given; a directory that does not hold
   * the image refuses it. */
  CU_ASSERT (vdisk_open_as (top, 0, VDISK_FORMAT_PROBE, dir) == NULL);
  CU_ASSERT_EQUAL (vdisk_get_errno (), EINVAL);
  CU_ASSERT (vdisk_open_as (top, 0, VDISK_FORMAT_QCOW2, "/usr") == NULL);
  CU_ASSERT_EQUAL (vdisk_get_errno (), EXDEV);
  CU_ASSERT (strstr (vdisk_get_error (), "directly in /usr") != NULL);
  /* The wrong format is an error, not a fallback. */
  CU_ASSERT (vdisk_open_as (top, 0, VDISK_FORMAT_VHD, NULL) == NULL);
  CU_ASSERT (vdisk_open_as (top, 0, 42, NULL) == NULL);
}

static void
test_raw_write_read_map (void)
{
  const char *p = unit_path ("a.raw");
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_RAW, 8 << 20, NULL) == 0);
  struct vdisk *d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT_EQUAL (vdisk_get_size (d), 8 << 20);

  static unsigned char buf[300000], r[300000];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = i * 13 + 1;
  CU_ASSERT (vdisk_pwrite (d, buf, 300000, 1 << 20, 0) == 0);
  CU_ASSERT (vdisk_pwrite (d, buf, 1, 7, VDISK_FUA) == 0);
  CU_ASSERT (vdisk_pread (d, r, 300000, 1 << 20) == 0);
  CU_ASSERT (memcmp (r, buf, 300000) == 0);

  struct vdisk_extents e = { 0 };
  CU_ASSERT (vdisk_map (d, 0, 8 << 20, 0, &e) == 0);
  /* Sorted, contiguous, covering the disk; data where we wrote. */
  uint64_t pos = 0, data = 0;
  for (size_t i = 0; i < e.len; i++) {
    CU_ASSERT_EQUAL (e.v[i].offset, pos);
    pos += e.v[i].length;
    if (e.v[i].type == VDISK_EXTENT_DATA) {
      data += e.v[i].length;
      CU_ASSERT_EQUAL ((uint64_t)e.v[i].host_offset, e.v[i].offset);
    }
  }
  CU_ASSERT_EQUAL (pos, 8 << 20);
  CU_ASSERT (data >= 300000 + 1);
  CU_ASSERT (data < 1 << 20);

  /* Zero with MAY_TRIM punches a hole: reads zero, maps as hole. */
  CU_ASSERT (vdisk_zero (d, 1 << 20, 1 << 20, VDISK_MAY_TRIM) == 0);
  CU_ASSERT (vdisk_pread (d, r, 4096, 1 << 20) == 0);
  CU_ASSERT (r[0] == 0 && memcmp (r, r + 1, 4095) == 0);
  vdisk_extents_reset (&e);
  CU_ASSERT (vdisk_map (d, 1 << 20, 1 << 20, 0, &e) == 0);
  CU_ASSERT_EQUAL (e.len, 1);
  CU_ASSERT_EQUAL (e.v[0].type, VDISK_EXTENT_HOLE);
  vdisk_extents_free (&e);
  CU_ASSERT (vdisk_close (d) == 0);
}

static void
test_out_of_range_is_refused (void)
{
  const char *p = unit_path ("b.raw");
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_RAW, 1 << 20, NULL) == 0);
  struct vdisk *d = vdisk_open (p, VDISK_OPEN_RDWR);
  CU_ASSERT_FATAL (d != NULL);
  char b[16];
  CU_ASSERT (vdisk_pread (d, b, 16, (1 << 20) - 8) == -1);
  CU_ASSERT (strstr (vdisk_get_error (), "beyond the virtual size") != NULL);
  CU_ASSERT (strstr (vdisk_get_error (), p) != NULL);
  CU_ASSERT (vdisk_pwrite (d, b, 16, UINT64_MAX - 4, 0) == -1);
  vdisk_close (d);
}

static void
test_readonly_refuses_writes (void)
{
  const char *p = unit_path ("c.raw");
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_RAW, 1 << 20, NULL) == 0);
  struct vdisk *d = vdisk_open (p, 0);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (vdisk_pwrite (d, "x", 1, 0, 0) == -1);
  CU_ASSERT_EQUAL (vdisk_get_errno (), EROFS);
  vdisk_close (d);
}

static void
test_create_never_overwrites (void)
{
  const char *p = unit_path ("d.raw");
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_RAW, 1 << 20, NULL) == 0);
  CU_ASSERT (vdisk_create (p, VDISK_FORMAT_RAW, 2 << 20, NULL) == -1);
  CU_ASSERT_EQUAL (vdisk_get_errno (), EEXIST);
  CU_ASSERT (vdisk_create (unit_path ("e.raw"), VDISK_FORMAT_RAW, 0, NULL)
             == -1);
  struct vdisk_create_params cp = { .parent = "d.raw" };
  CU_ASSERT (vdisk_create (unit_path ("f.raw"), VDISK_FORMAT_RAW, 0, &cp)
             == -1);
  CU_ASSERT (access (unit_path ("f.raw"), F_OK) == -1);
}

static void
test_info (void)
{
  const char *p = unit_path ("g.raw");
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_RAW, 3 << 20, NULL) == 0);
  struct vdisk *d = vdisk_open (p, 0);
  CU_ASSERT_FATAL (d != NULL);
  struct vdisk_info i;
  vdisk_get_info (d, &i);
  CU_ASSERT_EQUAL (i.format, VDISK_FORMAT_RAW);
  CU_ASSERT_STRING_EQUAL (i.format_name, "raw");
  CU_ASSERT_EQUAL (i.virtual_size, 3 << 20);
  CU_ASSERT_EQUAL (i.file_size, 3 << 20);
  CU_ASSERT (i.parent_name == NULL);
  CU_ASSERT_EQUAL (i.chain_depth, 0);
  CU_ASSERT (vdisk_get_parent (d) == NULL);
  vdisk_close (d);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "extents merge", test_extents_merge },
    { "format names", test_format_names },
    { "open as the owner says", test_open_as_owner_says },
    { "raw write read map", test_raw_write_read_map },
    { "out of range is refused", test_out_of_range_is_refused },
    { "readonly refuses writes", test_readonly_refuses_writes },
    { "create never overwrites", test_create_never_overwrites },
    { "info", test_info },
    { NULL },
  };
  return unit_main ("vdisk", tests);
}
