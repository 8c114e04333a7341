/* The file SR (sr.h, sr-file.c): records, images, snapshots and clones,
 * scans of moved and edited directories, hostile names, crash recovery of
 * a half-done snapshot, and several threads at once. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cbt-log.h"
#include "sr.h"
#include "unit.h"

#define MiB (1024 * 1024)

static bool
file_exists (const char *path)
{
  struct stat sb;
  return lstat (path, &sb) == 0;
}

/* A fresh SR directory under the scratch directory. */
static struct sr *
new_sr (const char *name)
{
  struct sr *sr = sr_open ("file", unit_path (name), SR_OPEN_CREATE);
  if (!sr)
    fprintf (stderr, "sr_open: %s\n", sr_get_error ());
  return sr;
}

/* Fill [off, off+len) of VDI with BYTE. */
static int
write_fill (struct sr *sr, const char *uuid, int byte, uint64_t off,
            size_t len)
{
  struct vdisk *d = sr_vdi_open (sr, uuid, VDISK_OPEN_RDWR);
  if (!d) {
    fprintf (stderr, "%s\n", sr_get_error ());
    return -1;
  }
  char *buf = malloc (len);
  memset (buf, byte, len);
  int r = vdisk_pwrite (d, buf, len, off, 0);
  free (buf);
  if (vdisk_close (d) == -1)
    r = -1;
  return r;
}

/* true if [off, off+len) of VDI reads as BYTE. */
static bool
reads_as (struct sr *sr, const char *uuid, int byte, uint64_t off, size_t len)
{
  struct vdisk *d = sr_vdi_open (sr, uuid, 0);
  if (!d) {
    fprintf (stderr, "%s\n", sr_get_error ());
    return false;
  }
  unsigned char *buf = malloc (len);
  bool ok = vdisk_pread (d, buf, len, off) == 0;
  for (size_t i = 0; ok && i < len; i++)
    ok = buf[i] == byte;
  free (buf);
  vdisk_close (d);
  return ok;
}

/* The whole VDI as libvdisk reads it, into the file OUT. */
static int
dump (struct sr *sr, const char *uuid, const char *out)
{
  struct vdisk *d = sr_vdi_open (sr, uuid, 0);
  FILE *f = fopen (out, "w");
  int r = d && f ? 0 : -1;
  static char buf[MiB];
  for (uint64_t off = 0; r == 0 && off < vdisk_get_size (d); off += MiB) {
    uint64_t n
        = vdisk_get_size (d) - off < MiB ? vdisk_get_size (d) - off : MiB;
    if (vdisk_pread (d, buf, n, off) == -1 || fwrite (buf, 1, n, f) != n)
      r = -1;
  }
  if (f && fclose (f) != 0)
    r = -1;
  if (d)
    vdisk_close (d);
  return r;
}

static char *
vdi_path (struct sr *sr, const struct sr_vdi *v)
{
  static __thread char p[1024];
  snprintf (p, sizeof p, "%s/%s", sr_get_path (sr), v->location);
  return p;
}

/* Names in DIR, sorted, joined with '\n' (for before/after checks). */
static char *
dir_listing (const char *dir)
{
  struct dirent **ents;
  int n = scandir (dir, &ents, NULL, alphasort);
  size_t cap = 1, len = 0;
  char *out = calloc (1, 1);
  for (int i = 0; i < n; i++) {
    size_t l = strlen (ents[i]->d_name);
    cap += l + 1;
    out = realloc (out, cap);
    memcpy (out + len, ents[i]->d_name, l);
    len += l;
    out[len++] = '\n';
    out[len] = '\0';
    free (ents[i]);
  }
  if (n >= 0)
    free (ents);
  return out;
}

static size_t
count_images (const char *dir)
{
  char *l = dir_listing (dir);
  size_t n = 0;
  for (char *p = l; (p = strpbrk (p, ".")) != NULL; p++)
    if (strncmp (p, ".vhd\n", 5) == 0 || strncmp (p, ".qcow2\n", 7) == 0
        || strncmp (p, ".raw\n", 5) == 0)
      n++;
  free (l);
  return n;
}

/* ---- tests ---- */

static void
test_uuid_syntax (void)
{
  char u[SR_UUID_LEN + 1];
  CU_ASSERT (sr_uuid_generate (u) == 0);
  CU_ASSERT (sr_uuid_is_valid (u));
  CU_ASSERT (u[14] == '4');
  CU_ASSERT (sr_uuid_is_valid ("01234567-89ab-cdef-0123-456789abcdef"));
  CU_ASSERT (!sr_uuid_is_valid ("01234567-89AB-cdef-0123-456789abcdef"));
  CU_ASSERT (!sr_uuid_is_valid ("01234567-89ab-cdef-0123-456789abcdef0"));
  CU_ASSERT (!sr_uuid_is_valid ("01234567-89ab-cdef-0123-456789abcde"));
  CU_ASSERT (!sr_uuid_is_valid ("0123456789ab-cdef-0123-456789abcdef-"));
  CU_ASSERT (!sr_uuid_is_valid ("../../etc/passwd"));
  CU_ASSERT (!sr_uuid_is_valid ("../../../../../../../../../etc/passwd.."));
  CU_ASSERT (!sr_uuid_is_valid (""));
  CU_ASSERT (!sr_uuid_is_valid (NULL));
}

static void
test_create_each_format_and_list (void)
{
  struct sr *sr = new_sr ("sr-create");
  CU_ASSERT_FATAL (sr != NULL);
  CU_ASSERT (sr_uuid_is_valid (sr_get_uuid (sr)));
  CU_ASSERT_STRING_EQUAL (sr_get_type (sr), "file");
  const enum vdisk_format fmts[]
      = { VDISK_FORMAT_RAW, VDISK_FORMAT_VHD, VDISK_FORMAT_QCOW2 };
  char uuids[3][SR_UUID_LEN + 1];
  for (int i = 0; i < 3; i++) {
    struct sr_vdi_create_params cp = { .name_description = "a test disk" };
    struct sr_vdi *v = sr_vdi_create (sr, "disk", fmts[i], 64 * MiB, &cp);
    CU_ASSERT_FATAL (v != NULL);
    CU_ASSERT (sr_uuid_is_valid (v->uuid));
    CU_ASSERT_STRING_EQUAL (v->name_label, "disk");
    CU_ASSERT_STRING_EQUAL (v->name_description, "a test disk");
    CU_ASSERT_EQUAL (v->format, fmts[i]);
    CU_ASSERT (v->virtual_size >= 64 * MiB);
    CU_ASSERT (v->virtual_size < 65 * MiB);
    CU_ASSERT (!v->read_only && v->managed && !v->is_snapshot);
    CU_ASSERT_STRING_EQUAL (v->parent_uuid, "");
    CU_ASSERT (v->created > 0);
    char want[64];
    snprintf (want, sizeof want, "%s.%s", v->uuid,
              vdisk_format_name (fmts[i]));
    CU_ASSERT_STRING_EQUAL (v->location, want);
    CU_ASSERT (file_exists (vdi_path (sr, v)));
    strcpy (uuids[i], v->uuid);
    sr_vdi_free (v);
  }
  CU_ASSERT (strcmp (uuids[0], uuids[1]) != 0);

  struct sr_vdi_list l;
  CU_ASSERT_FATAL (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, 3);
  for (size_t i = 0; i < l.len; i++)
    CU_ASSERT (strcmp (l.v[i]->uuid, uuids[0]) == 0
               || strcmp (l.v[i]->uuid, uuids[1]) == 0
               || strcmp (l.v[i]->uuid, uuids[2]) == 0);
  sr_vdi_list_free (&l);

  /* Bad arguments. */
  CU_ASSERT (sr_vdi_create (sr, "zero", VDISK_FORMAT_VHD, 0, NULL) == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);
  CU_ASSERT (sr_vdi_create (sr, "bad", 42, MiB, NULL) == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);
  CU_ASSERT (sr_open ("lvm", unit_path ("sr-create"), 0) == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), ENOTSUP);

  /* Unknown but well-formed uuid: ENOENT naming SR and VDI. */
  CU_ASSERT (sr_vdi_get_by_uuid (sr, "01234567-89ab-4def-8123-456789abcdef")
             == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), ENOENT);
  CU_ASSERT (strstr (sr_get_error (), "01234567-89ab-4def-8123-456789abcdef")
             != NULL);
  CU_ASSERT (strstr (sr_get_error (), unit_path ("sr-create")) != NULL);
  CU_ASSERT (sr_close (sr) == 0);
}

static void
test_second_open_refused (void)
{
  struct sr *sr = new_sr ("sr-twice");
  CU_ASSERT_FATAL (sr != NULL);
  CU_ASSERT (sr_open ("file", unit_path ("sr-twice"), 0) == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), EBUSY);
  char uuid[SR_UUID_LEN + 1];
  strcpy (uuid, sr_get_uuid (sr));
  sr_close (sr);
  /* Closed: opens again, same SR uuid. */
  sr = sr_open ("file", unit_path ("sr-twice"), 0);
  CU_ASSERT_FATAL (sr != NULL);
  CU_ASSERT_STRING_EQUAL (sr_get_uuid (sr), uuid);
  sr_close (sr);
  /* A missing directory without SR_OPEN_CREATE. */
  CU_ASSERT (sr_open ("file", unit_path ("no-such-sr"), 0) == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), ENOENT);
}

static void
test_rename_and_other_config (void)
{
  struct sr *sr = new_sr ("sr-rename");
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_vdi *v = sr_vdi_create (sr, "old", VDISK_FORMAT_QCOW2, MiB, NULL);
  CU_ASSERT_FATAL (v != NULL);
  CU_ASSERT (sr_vdi_set_name_label (sr, v->uuid, "new name") == 0);
  CU_ASSERT (sr_vdi_set_name_description (sr, v->uuid, "described") == 0);
  CU_ASSERT (sr_vdi_set_other_config (sr, v->uuid, "owner", "alice") == 0);
  CU_ASSERT (sr_vdi_set_other_config (sr, v->uuid, "tmp", "x") == 0);
  CU_ASSERT (sr_vdi_set_other_config (sr, v->uuid, "tmp", NULL) == 0);
  CU_ASSERT (sr_vdi_set_other_config (sr, v->uuid, "", "x") == -1);
  struct sr_vdi *w = sr_vdi_get_by_uuid (sr, v->uuid);
  CU_ASSERT_FATAL (w != NULL);
  CU_ASSERT_STRING_EQUAL (w->name_label, "new name");
  CU_ASSERT_STRING_EQUAL (w->name_description, "described");
  CU_ASSERT_EQUAL (w->n_other_config, 1);
  CU_ASSERT_STRING_EQUAL (sr_vdi_get_other_config (w, "owner"), "alice");
  CU_ASSERT (sr_vdi_get_other_config (w, "tmp") == NULL);
  /* The file name does not follow the label. */
  CU_ASSERT_STRING_EQUAL (w->location, v->location);
  CU_ASSERT (
      sr_vdi_set_name_label (sr, "01234567-89ab-4def-8123-456789abcdef", "x")
      == -1);
  CU_ASSERT_EQUAL (sr_get_errno (), ENOENT);
  sr_vdi_free (v);
  sr_vdi_free (w);
  sr_close (sr);
}

static void
test_open_write_read (void)
{
  struct sr *sr = new_sr ("sr-io");
  CU_ASSERT_FATAL (sr != NULL);
  const enum vdisk_format fmts[]
      = { VDISK_FORMAT_RAW, VDISK_FORMAT_VHD, VDISK_FORMAT_QCOW2 };
  for (int i = 0; i < 3; i++) {
    struct sr_vdi *v = sr_vdi_create (sr, "io", fmts[i], 16 * MiB, NULL);
    CU_ASSERT_FATAL (v != NULL);
    CU_ASSERT (write_fill (sr, v->uuid, 0xa5, 3 * MiB + 512, 100000) == 0);
    CU_ASSERT (reads_as (sr, v->uuid, 0xa5, 3 * MiB + 512, 100000));
    CU_ASSERT (reads_as (sr, v->uuid, 0, 0, 65536));
    struct vdisk *d = sr_vdi_open (sr, v->uuid, 0);
    CU_ASSERT_FATAL (d != NULL);
    CU_ASSERT (!vdisk_is_writable (d));
    CU_ASSERT_EQUAL (vdisk_get_size (d), v->virtual_size);
    vdisk_close (d);
    struct sr_vdi *w = sr_vdi_get_by_uuid (sr, v->uuid);
    CU_ASSERT (w && w->physical_utilisation >= 100000);
    sr_vdi_free (w);
    sr_vdi_free (v);
  }
  sr_close (sr);
}

/* Snapshot of one format: the snapshot keeps the old data, the VDI
 * (same uuid) gets the new. */
static void
snapshot_of_format (enum vdisk_format fmt)
{
  struct sr *sr = new_sr (vdisk_format_name (fmt));
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_vdi *v = sr_vdi_create (sr, "vm disk", fmt, 32 * MiB, NULL);
  CU_ASSERT_FATAL (v != NULL);
  CU_ASSERT (write_fill (sr, v->uuid, 0x11, 0, 3 * MiB) == 0);

  struct sr_vdi *s = sr_vdi_snapshot (sr, v->uuid, "before upgrade");
  CU_ASSERT_FATAL (s != NULL);
  CU_ASSERT (strcmp (s->uuid, v->uuid) != 0);
  CU_ASSERT (s->is_snapshot && s->read_only && s->managed);
  CU_ASSERT_STRING_EQUAL (s->snapshot_of, v->uuid);
  CU_ASSERT (s->snapshot_time > 0);
  CU_ASSERT_STRING_EQUAL (s->name_label, "before upgrade");
  CU_ASSERT_EQUAL (s->format, fmt);

  struct sr_vdi *v2 = sr_vdi_get_by_uuid (sr, v->uuid);
  CU_ASSERT_FATAL (v2 != NULL);
  CU_ASSERT_STRING_EQUAL (v2->parent_uuid, s->uuid);
  CU_ASSERT (!v2->read_only && !v2->is_snapshot);
  CU_ASSERT_STRING_EQUAL (v2->name_label, "vm disk");
  CU_ASSERT_EQUAL (v2->virtual_size, v->virtual_size);
  /* Raw has no backing file: its leaf becomes qcow2. */
  CU_ASSERT_EQUAL (v2->format,
                   fmt == VDISK_FORMAT_RAW ? VDISK_FORMAT_QCOW2 : fmt);

  /* Write through the VDI after the snapshot. */
  CU_ASSERT (reads_as (sr, v->uuid, 0x11, 0, 3 * MiB));
  CU_ASSERT (write_fill (sr, v->uuid, 0x22, MiB, MiB) == 0);
  CU_ASSERT (reads_as (sr, v->uuid, 0x22, MiB, MiB));
  CU_ASSERT (reads_as (sr, v->uuid, 0x11, 0, MiB));
  CU_ASSERT (reads_as (sr, v->uuid, 0x11, 2 * MiB, MiB));
  CU_ASSERT (reads_as (sr, s->uuid, 0x11, 0, 3 * MiB));

  /* The snapshot is read-only. */
  CU_ASSERT (sr_vdi_open (sr, s->uuid, VDISK_OPEN_RDWR) == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), EROFS);
  CU_ASSERT (strstr (sr_get_error (), s->uuid) != NULL);
  CU_ASSERT (sr_vdi_snapshot (sr, s->uuid, NULL) == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), EROFS);

  /* A second snapshot stacks on the first. */
  struct sr_vdi *s2 = sr_vdi_snapshot (sr, v->uuid, NULL);
  CU_ASSERT_FATAL (s2 != NULL);
  CU_ASSERT_STRING_EQUAL (s2->parent_uuid, s->uuid);
  CU_ASSERT_STRING_EQUAL (s2->name_label, "vm disk");
  CU_ASSERT (write_fill (sr, v->uuid, 0x33, MiB, 4096) == 0);
  CU_ASSERT (reads_as (sr, s2->uuid, 0x22, MiB, MiB));
  CU_ASSERT (reads_as (sr, v->uuid, 0x33, MiB, 4096));

  if (unit_have_qemu_img ()) {
    struct sr_vdi *leaf = sr_vdi_get_by_uuid (sr, v->uuid);
    CU_ASSERT_FATAL (leaf != NULL);
    CU_ASSERT (unit_sh ("qemu-img info --backing-chain '%s' >/dev/null",
                        vdi_path (sr, leaf))
               == 0);
    if (leaf->format == VDISK_FORMAT_QCOW2)
      CU_ASSERT (unit_sh ("qemu-img check -q '%s'", vdi_path (sr, leaf)) == 0);
    if (s->format == VDISK_FORMAT_QCOW2)
      CU_ASSERT (unit_sh ("qemu-img check -q '%s'", vdi_path (sr, s)) == 0);
    /* qemu reads the snapshot as we do. */
    CU_ASSERT (unit_sh ("qemu-img convert -O raw '%s' '%s'", vdi_path (sr, s),
                        unit_path ("snap.raw"))
               == 0);
    CU_ASSERT (
        unit_sh ("cmp -s -n %d '%s' /dev/zero", 1, unit_path ("snap.raw"))
        != 0);
    /* VHD chains (qemu reads no VHD differencing parents): libvhdi,
     * the independent reader, agrees with libvdisk. */
    const char *vhdi_cat = getenv ("VHDI_CAT");
    if (vhdi_cat && leaf->format == VDISK_FORMAT_VHD) {
      CU_ASSERT (dump (sr, v->uuid, unit_path ("leaf.raw")) == 0);
      CU_ASSERT (unit_sh ("'%s' '%s' '%s' && cmp -s '%s' '%s'", vhdi_cat,
                          vdi_path (sr, leaf), unit_path ("leaf-vhdi.raw"),
                          unit_path ("leaf-vhdi.raw"), unit_path ("leaf.raw"))
                 == 0);
    }
    sr_vdi_free (leaf);
  }

  sr_vdi_free (v);
  sr_vdi_free (v2);
  sr_vdi_free (s);
  sr_vdi_free (s2);
  sr_close (sr);
}

static void
test_snapshot_vhd (void)
{
  snapshot_of_format (VDISK_FORMAT_VHD);
}

static void
test_snapshot_qcow2 (void)
{
  snapshot_of_format (VDISK_FORMAT_QCOW2);
}

static void
test_snapshot_raw (void)
{
  snapshot_of_format (VDISK_FORMAT_RAW);
}

static void
test_clone (void)
{
  struct sr *sr = new_sr ("sr-clone");
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_vdi *v
      = sr_vdi_create (sr, "golden", VDISK_FORMAT_VHD, 16 * MiB, NULL);
  CU_ASSERT_FATAL (v != NULL);
  CU_ASSERT (write_fill (sr, v->uuid, 0x44, 0, MiB) == 0);

  /* Clone of a writable VDI: both sit on a hidden base. */
  struct sr_vdi *c = sr_vdi_clone (sr, v->uuid, "copy");
  CU_ASSERT_FATAL (c != NULL);
  CU_ASSERT (!c->read_only && c->managed && !c->is_snapshot);
  CU_ASSERT_STRING_EQUAL (c->name_label, "copy");
  struct sr_vdi *v2 = sr_vdi_get_by_uuid (sr, v->uuid);
  CU_ASSERT_FATAL (v2 != NULL);
  CU_ASSERT_STRING_EQUAL (v2->parent_uuid, c->parent_uuid);
  struct sr_vdi *base = sr_vdi_get_by_uuid (sr, c->parent_uuid);
  CU_ASSERT_FATAL (base != NULL);
  CU_ASSERT (!base->managed && base->read_only && !base->is_snapshot);

  CU_ASSERT (reads_as (sr, c->uuid, 0x44, 0, MiB));
  CU_ASSERT (write_fill (sr, c->uuid, 0x55, 0, 4096) == 0);
  CU_ASSERT (reads_as (sr, c->uuid, 0x55, 0, 4096));
  CU_ASSERT (reads_as (sr, v->uuid, 0x44, 0, MiB));

  /* Clone of a snapshot: a leaf straight over it. */
  struct sr_vdi *s = sr_vdi_snapshot (sr, v->uuid, "snap");
  CU_ASSERT_FATAL (s != NULL);
  struct sr_vdi *c2 = sr_vdi_clone (sr, s->uuid, NULL);
  CU_ASSERT_FATAL (c2 != NULL);
  CU_ASSERT_STRING_EQUAL (c2->parent_uuid, s->uuid);
  CU_ASSERT_STRING_EQUAL (c2->name_label, "snap");
  CU_ASSERT (reads_as (sr, c2->uuid, 0x44, 0, MiB));

  /* Destroying both users of the hidden base removes the base too. */
  size_t before = count_images (sr_get_path (sr));
  CU_ASSERT (sr_vdi_destroy (sr, c->uuid) == 0);
  struct sr_vdi *kept = sr_vdi_get_by_uuid (sr, base->uuid);
  CU_ASSERT (kept != NULL); /* still the base of V */
  sr_vdi_free (kept);
  CU_ASSERT (sr_vdi_destroy (sr, c2->uuid) == 0);
  CU_ASSERT (sr_vdi_destroy (sr, v->uuid) == 0);
  CU_ASSERT (sr_vdi_destroy (sr, s->uuid) == 0);
  struct sr_vdi *gone = sr_vdi_get_by_uuid (sr, base->uuid);
  CU_ASSERT (gone == NULL);
  CU_ASSERT_EQUAL (count_images (sr_get_path (sr)), before - 5);
  CU_ASSERT_EQUAL (count_images (sr_get_path (sr)), 0);

  sr_vdi_free (v);
  sr_vdi_free (v2);
  sr_vdi_free (c);
  sr_vdi_free (c2);
  sr_vdi_free (s);
  sr_vdi_free (base);
  sr_close (sr);
}

static void
test_destroy_refused_while_parent (void)
{
  struct sr *sr = new_sr ("sr-destroy");
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_vdi *v = sr_vdi_create (sr, "d", VDISK_FORMAT_QCOW2, MiB, NULL);
  CU_ASSERT_FATAL (v != NULL);
  struct sr_vdi *s = sr_vdi_snapshot (sr, v->uuid, NULL);
  CU_ASSERT_FATAL (s != NULL);

  CU_ASSERT (sr_vdi_destroy (sr, s->uuid) == -1);
  CU_ASSERT_EQUAL (sr_get_errno (), EBUSY);
  CU_ASSERT (strstr (sr_get_error (), s->uuid) != NULL);
  CU_ASSERT (strstr (sr_get_error (), v->uuid) != NULL);
  CU_ASSERT (strstr (sr_get_error (), "parent") != NULL);
  CU_ASSERT (file_exists (vdi_path (sr, s)));

  /* Leaf first, then the snapshot. */
  struct sr_vdi *leaf = sr_vdi_get_by_uuid (sr, v->uuid);
  CU_ASSERT_FATAL (leaf != NULL);
  CU_ASSERT (sr_vdi_destroy (sr, v->uuid) == 0);
  CU_ASSERT (!file_exists (vdi_path (sr, leaf)));
  CU_ASSERT (sr_vdi_destroy (sr, s->uuid) == 0);
  CU_ASSERT (!file_exists (vdi_path (sr, s)));
  CU_ASSERT (sr_vdi_destroy (sr, s->uuid) == -1);
  CU_ASSERT_EQUAL (sr_get_errno (), ENOENT);

  struct sr_vdi_list l;
  CU_ASSERT (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, 0);
  sr_vdi_list_free (&l);
  sr_vdi_free (leaf);
  sr_vdi_free (v);
  sr_vdi_free (s);
  sr_close (sr);
}

/* Destroy leaves no image and no renamed leftover; a leftover a crash
 * left between the rename and the unlink goes at the next open, and is
 * never adopted by a scan. */
static void
test_destroy_leaves_nothing (void)
{
  struct sr *sr = new_sr ("sr-trash");
  CU_ASSERT_FATAL (sr != NULL);
  char *dir = strdup (sr_get_path (sr));
  char *before = dir_listing (dir);
  struct sr_vdi *v = sr_vdi_create (sr, "d", VDISK_FORMAT_VHD, MiB, NULL);
  CU_ASSERT_FATAL (v != NULL);
  CU_ASSERT (write_fill (sr, v->uuid, 0x5a, 0, 65536) == 0);
  CU_ASSERT (sr_vdi_destroy (sr, v->uuid) == 0);
  char *after = dir_listing (dir);
  CU_ASSERT_STRING_EQUAL (after, before);
  free (after);

  char crashed[1100];
  snprintf (crashed, sizeof crashed, "%s/.deleting-%s", dir, v->location);
  FILE *f = fopen (crashed, "w");
  CU_ASSERT_FATAL (f != NULL);
  fputs ("what a crash left", f);
  fclose (f);
  CU_ASSERT (sr_scan (sr) == 0);
  struct sr_vdi_list l;
  CU_ASSERT (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, 0);
  sr_vdi_list_free (&l);
  sr_close (sr);
  sr = sr_open ("file", dir, 0);
  CU_ASSERT_FATAL (sr != NULL);
  CU_ASSERT (!file_exists (crashed));
  after = dir_listing (dir);
  CU_ASSERT_STRING_EQUAL (after, before);
  free (after);
  free (before);
  free (dir);
  sr_vdi_free (v);
  sr_close (sr);
}

static void
test_chain_create_and_set_parent (void)
{
  struct sr *sr = new_sr ("sr-parent");
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_vdi *a
      = sr_vdi_create (sr, "base", VDISK_FORMAT_VHD, 8 * MiB, NULL);
  CU_ASSERT_FATAL (a != NULL);
  CU_ASSERT (write_fill (sr, a->uuid, 0x66, 0, MiB) == 0);
  struct sr_vdi_create_params cp = { .parent_uuid = a->uuid };
  /* Layer by layer, as a chain copy does: size 0 = the parent's. */
  struct sr_vdi *b = sr_vdi_create (sr, "top", VDISK_FORMAT_QCOW2, 0, &cp);
  CU_ASSERT_FATAL (b != NULL);
  CU_ASSERT_STRING_EQUAL (b->parent_uuid, a->uuid);
  CU_ASSERT_EQUAL (b->virtual_size, a->virtual_size);
  CU_ASSERT (reads_as (sr, b->uuid, 0x66, 0, MiB));
  struct sr_vdi *a2 = sr_vdi_get_by_uuid (sr, a->uuid);
  CU_ASSERT (a2 && a2->read_only);
  sr_vdi_free (a2);
  CU_ASSERT (sr_vdi_create (sr, "raw child", VDISK_FORMAT_RAW, 0, &cp)
             == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);

  /* The image names A: recording it again is fine; anything else is
   * refused because the file SR does not rewrite images. */
  CU_ASSERT (sr_vdi_set_parent (sr, b->uuid, a->uuid) == 0);
  CU_ASSERT (sr_vdi_set_parent (sr, b->uuid, NULL) == -1);
  CU_ASSERT_EQUAL (sr_get_errno (), ENOTSUP);
  struct sr_vdi *c = sr_vdi_create (sr, "other", VDISK_FORMAT_VHD, MiB, NULL);
  CU_ASSERT_FATAL (c != NULL);
  CU_ASSERT (sr_vdi_set_parent (sr, c->uuid, a->uuid) == -1);
  CU_ASSERT_EQUAL (sr_get_errno (), ENOTSUP);
  CU_ASSERT (sr_vdi_set_parent (sr, c->uuid, NULL) == 0);
  CU_ASSERT (sr_vdi_set_parent (sr, a->uuid, b->uuid) == -1);
  CU_ASSERT_EQUAL (sr_get_errno (), ELOOP);
  CU_ASSERT (sr_vdi_set_parent (sr, a->uuid, a->uuid) == -1);
  CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);

  sr_vdi_free (a);
  sr_vdi_free (b);
  sr_vdi_free (c);
  sr_close (sr);
}

static void
test_scan_after_move (void)
{
  struct sr *sr = new_sr ("sr-here");
  CU_ASSERT_FATAL (sr != NULL);
  char sr_uuid[SR_UUID_LEN + 1];
  strcpy (sr_uuid, sr_get_uuid (sr));
  struct sr_vdi *v
      = sr_vdi_create (sr, "travels", VDISK_FORMAT_VHD, 8 * MiB, NULL);
  CU_ASSERT_FATAL (v != NULL);
  CU_ASSERT (write_fill (sr, v->uuid, 0x77, 0, MiB) == 0);
  struct sr_vdi *s = sr_vdi_snapshot (sr, v->uuid, "point");
  CU_ASSERT_FATAL (s != NULL);
  CU_ASSERT (write_fill (sr, v->uuid, 0x78, 0, 4096) == 0);
  CU_ASSERT (sr_vdi_set_other_config (sr, v->uuid, "k", "v") == 0);
  sr_close (sr);

  CU_ASSERT_FATAL (unit_sh ("mkdir -p '%s' && mv '%s' '%s'",
                            unit_path ("elsewhere"), unit_path ("sr-here"),
                            unit_path ("elsewhere/sr-there"))
                   == 0);
  sr = sr_open ("file", unit_path ("elsewhere/sr-there"), 0);
  CU_ASSERT_FATAL (sr != NULL);
  CU_ASSERT_STRING_EQUAL (sr_get_uuid (sr), sr_uuid);
  CU_ASSERT (sr_scan (sr) == 0);
  struct sr_vdi_list l;
  CU_ASSERT_FATAL (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, 2);
  sr_vdi_list_free (&l);
  struct sr_vdi *v2 = sr_vdi_get_by_uuid (sr, v->uuid);
  struct sr_vdi *s2 = sr_vdi_get_by_uuid (sr, s->uuid);
  CU_ASSERT_FATAL (v2 && s2);
  CU_ASSERT_STRING_EQUAL (v2->name_label, "travels");
  CU_ASSERT_STRING_EQUAL (v2->parent_uuid, s->uuid);
  CU_ASSERT_STRING_EQUAL (sr_vdi_get_other_config (v2, "k"), "v");
  CU_ASSERT (s2->is_snapshot && s2->read_only);
  CU_ASSERT_STRING_EQUAL (s2->snapshot_of, v->uuid);
  CU_ASSERT_STRING_EQUAL (s2->name_label, "point");
  CU_ASSERT (reads_as (sr, v->uuid, 0x78, 0, 4096));
  CU_ASSERT (reads_as (sr, v->uuid, 0x77, 4096, MiB - 4096));
  CU_ASSERT (reads_as (sr, s->uuid, 0x77, 0, MiB));
  sr_vdi_free (v);
  sr_vdi_free (s);
  sr_vdi_free (v2);
  sr_vdi_free (s2);
  sr_close (sr);

  /* Without its database (copied with the images only) the chain is
   * rebuilt from the images; labels become file names. */
  CU_ASSERT (unit_sh ("rm -f '%s'", unit_path ("elsewhere/sr-there/sr.db"))
             == 0);
  sr = sr_open ("file", unit_path ("elsewhere/sr-there"), 0);
  CU_ASSERT_FATAL (sr != NULL);
  CU_ASSERT (sr_scan (sr) == 0);
  CU_ASSERT_FATAL (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, 2);
  int linked = 0;
  for (size_t i = 0; i < l.len; i++) {
    CU_ASSERT_STRING_EQUAL (l.v[i]->name_label, l.v[i]->location);
    if (l.v[i]->parent_uuid[0])
      linked++;
  }
  CU_ASSERT_EQUAL (linked, 1);
  sr_vdi_list_free (&l);
  sr_close (sr);
}

static void
test_scan_adopts_and_forgets (void)
{
  if (!unit_have_qemu_img ()) {
    fprintf (stderr, "qemu-img missing: scan test uses libvdisk only\n");
  }
  struct sr *sr = new_sr ("sr-scan");
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_vdi *gone
      = sr_vdi_create (sr, "gone", VDISK_FORMAT_QCOW2, MiB, NULL);
  struct sr_vdi *stays
      = sr_vdi_create (sr, "stays", VDISK_FORMAT_RAW, MiB, NULL);
  CU_ASSERT_FATAL (gone && stays);

  /* Drop in a foreign chain (base.vhd <- top.qcow2), a stray text file
   * and a half-written hidden file; delete one VDI's image. */
  const char *dir = sr_get_path (sr);
  char p[1024];
  snprintf (p, sizeof p, "%s/base.vhd", dir);
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_VHD, 4 * MiB, NULL) == 0);
  struct vdisk_create_params cp = { .parent = "base.vhd" };
  snprintf (p, sizeof p, "%s/top.qcow2", dir);
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_QCOW2, 0, &cp) == 0);
  CU_ASSERT (unit_sh ("echo hello > '%s/notes.txt'", dir) == 0);
  CU_ASSERT (unit_sh ("echo junk > '%s/.partial.vhd'", dir) == 0);
  CU_ASSERT (unit_sh ("rm '%s/%s'", dir, gone->location) == 0);

  CU_ASSERT (sr_scan (sr) == 0);
  struct sr_vdi_list l;
  CU_ASSERT_FATAL (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, 3);
  struct sr_vdi *base = NULL, *top = NULL;
  for (size_t i = 0; i < l.len; i++) {
    CU_ASSERT (strcmp (l.v[i]->uuid, gone->uuid) != 0);
    if (strcmp (l.v[i]->name_label, "base.vhd") == 0)
      base = l.v[i];
    if (strcmp (l.v[i]->name_label, "top.qcow2") == 0)
      top = l.v[i];
  }
  CU_ASSERT_FATAL (base && top);
  CU_ASSERT_STRING_EQUAL (base->location, "base.vhd");
  CU_ASSERT_EQUAL (base->format, VDISK_FORMAT_VHD);
  CU_ASSERT_EQUAL (top->format, VDISK_FORMAT_QCOW2);
  CU_ASSERT_STRING_EQUAL (top->parent_uuid, base->uuid);
  CU_ASSERT (base->read_only);
  CU_ASSERT (sr_uuid_is_valid (top->uuid));
  /* Adopted VDIs work like any other. */
  CU_ASSERT (write_fill (sr, top->uuid, 0x12, 0, 4096) == 0);
  CU_ASSERT (sr_vdi_destroy (sr, base->uuid) == -1);
  CU_ASSERT_EQUAL (sr_get_errno (), EBUSY);

  /* A second scan changes nothing. */
  char top_uuid[SR_UUID_LEN + 1];
  strcpy (top_uuid, top->uuid);
  sr_vdi_list_free (&l);
  CU_ASSERT (sr_scan (sr) == 0);
  CU_ASSERT_FATAL (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, 3);
  sr_vdi_list_free (&l);
  struct sr_vdi *t = sr_vdi_get_by_uuid (sr, top_uuid);
  CU_ASSERT (t != NULL);
  sr_vdi_free (t);

  /* An image named by a uuid (e.g. copied from another SR) keeps it. */
  char u[SR_UUID_LEN + 1];
  sr_uuid_generate (u);
  snprintf (p, sizeof p, "%s/%s.qcow2", dir, u);
  CU_ASSERT_FATAL (vdisk_create (p, VDISK_FORMAT_QCOW2, MiB, NULL) == 0);
  CU_ASSERT (sr_scan (sr) == 0);
  t = sr_vdi_get_by_uuid (sr, u);
  CU_ASSERT (t != NULL);
  sr_vdi_free (t);

  sr_vdi_free (gone);
  sr_vdi_free (stays);
  sr_close (sr);
}

static void
test_hostile_names (void)
{
  CU_ASSERT_FATAL (unit_sh ("mkdir -p '%s'", unit_path ("jail")) == 0);
  struct sr *sr = sr_open ("file", unit_path ("jail/sr"), SR_OPEN_CREATE);
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_vdi *v = sr_vdi_create (sr, "victim", VDISK_FORMAT_VHD, MiB, NULL);
  CU_ASSERT_FATAL (v != NULL);
  char *before_jail = dir_listing (unit_path ("jail"));
  char *before_top = dir_listing (unit_dir);

  const char *bad[] = {
    "../../etc/passwd",
    "../victim",
    "/etc/passwd",
    "01234567-89AB-4def-8123-456789abcdef",
    "01234567-89ab-4def-8123-456789abcdef/../../x",
    "01234567-89ab-4def-8123-456789abcde",
    "",
    NULL,
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *u = bad[i];
    CU_ASSERT (sr_vdi_get_by_uuid (sr, u) == NULL);
    CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);
    CU_ASSERT (strstr (sr_get_error (), "not a valid uuid") != NULL);
    CU_ASSERT (sr_vdi_open (sr, u, VDISK_OPEN_RDWR) == NULL);
    CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);
    CU_ASSERT (sr_vdi_destroy (sr, u) == -1);
    CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);
    CU_ASSERT (sr_vdi_snapshot (sr, u, "x") == NULL);
    CU_ASSERT (sr_vdi_clone (sr, u, "x") == NULL);
    CU_ASSERT (sr_vdi_set_name_label (sr, u, "x") == -1);
    CU_ASSERT (sr_vdi_set_parent (sr, v->uuid, u ? u : "") == -1);
    CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);
    struct sr_vdi_create_params cp = { .parent_uuid = u ? u : "" };
    CU_ASSERT (sr_vdi_create (sr, "x", VDISK_FORMAT_QCOW2, MiB, &cp) == NULL);
    CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);
  }

  /* Path tricks in a name label are just text. */
  const char *labels[]
      = { "../../escape", "../sr2/evil.vhd", "a/b/c", "/etc/passwd",
          "..",           "new\nline" };
  for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
    struct sr_vdi *w
        = sr_vdi_create (sr, labels[i], VDISK_FORMAT_QCOW2, MiB, NULL);
    CU_ASSERT_FATAL (w != NULL);
    CU_ASSERT_STRING_EQUAL (w->name_label, labels[i]);
    CU_ASSERT (strchr (w->location, '/') == NULL);
    CU_ASSERT (strncmp (w->location, w->uuid, SR_UUID_LEN) == 0);
    CU_ASSERT (sr_vdi_set_name_label (sr, w->uuid, "../../../tmp/x") == 0);
    struct sr_vdi *s = sr_vdi_snapshot (sr, w->uuid, labels[i]);
    CU_ASSERT (s != NULL);
    sr_vdi_free (s);
    sr_vdi_free (w);
  }
  CU_ASSERT (sr_scan (sr) == 0);

  char *after_jail = dir_listing (unit_path ("jail"));
  char *after_top = dir_listing (unit_dir);
  CU_ASSERT_STRING_EQUAL (before_jail, after_jail);
  CU_ASSERT_STRING_EQUAL (before_top, after_top);
  CU_ASSERT (!file_exists (unit_path ("escape")));
  CU_ASSERT (!file_exists (unit_path ("jail/escape")));
  free (before_jail);
  free (after_jail);
  free (before_top);
  free (after_top);
  sr_vdi_free (v);
  sr_close (sr);
}

static void
db_exec_file (const char *dir, const char *sql)
{
  char db[1024];
  sqlite3 *h;
  snprintf (db, sizeof db, "%s/sr.db", dir);
  CU_ASSERT_FATAL (sqlite3_open (db, &h) == SQLITE_OK);
  CU_ASSERT (sqlite3_exec (h, sql, NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close (h);
}

/* An SR from elsewhere with a doctored sr.db or a planted symlink
 * cannot make us touch files outside it. */
static void
test_hostile_metadata (void)
{
  CU_ASSERT_FATAL (unit_sh ("mkdir -p '%s'", unit_path ("jail2")) == 0);
  const char *dir = unit_path ("jail2/sr");
  struct sr *sr = sr_open ("file", dir, SR_OPEN_CREATE);
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_vdi *v = sr_vdi_create (sr, "a", VDISK_FORMAT_QCOW2, MiB, NULL);
  struct sr_vdi *w = sr_vdi_create (sr, "b", VDISK_FORMAT_RAW, MiB, NULL);
  CU_ASSERT_FATAL (v && w);
  sr_close (sr);

  /* A location that climbs out of the SR, and an image replaced by a
   * symlink to a file outside. */
  char sql[512];
  snprintf (sql, sizeof sql,
            "UPDATE vdi SET location = '../outside.qcow2' WHERE uuid = '%s'",
            v->uuid);
  db_exec_file (dir, sql);
  CU_ASSERT (unit_sh ("echo secret > '%s' && rm '%s/%s' && ln -s ../secret "
                      "'%s/%s'",
                      unit_path ("jail2/secret"), dir, w->location, dir,
                      w->location)
             == 0);
  char *before = dir_listing (unit_path ("jail2"));

  sr = sr_open ("file", dir, 0);
  CU_ASSERT_FATAL (sr != NULL);
  CU_ASSERT (sr_vdi_get_by_uuid (sr, v->uuid) == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), EIO);
  CU_ASSERT (strstr (sr_get_error (), "bad location") != NULL);
  CU_ASSERT (sr_vdi_destroy (sr, v->uuid) == -1);
  CU_ASSERT (sr_vdi_open (sr, w->uuid, VDISK_OPEN_RDWR) == NULL);
  CU_ASSERT_EQUAL (sr_get_errno (), EINVAL);
  CU_ASSERT (sr_vdi_destroy (sr, w->uuid) == 0); /* removes the link only */
  struct sr_vdi_list l;
  CU_ASSERT (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, 0);
  sr_vdi_list_free (&l);
  CU_ASSERT (sr_scan (sr) == 0);
  /* The orphaned real image of V is adopted again under its uuid. */
  struct sr_vdi *again = sr_vdi_get_by_uuid (sr, v->uuid);
  CU_ASSERT (again != NULL);
  sr_vdi_free (again);
  sr_close (sr);

  char *after = dir_listing (unit_path ("jail2"));
  CU_ASSERT_STRING_EQUAL (before, after);
  CU_ASSERT (unit_sh ("grep -qx secret '%s'", unit_path ("jail2/secret"))
             == 0);
  free (before);
  free (after);
  sr_vdi_free (v);
  sr_vdi_free (w);
}

/* Simulate a crash inside sr_vdi_snapshot by writing the journal record
 * (and doing the rename) by hand, then reopening. */
static void
journal (const char *dir, const char *frozen, const char *leaf,
         const char *fmt)
{
  char db[1024], sql[1024];
  sqlite3 *h;
  snprintf (db, sizeof db, "%s/sr.db", dir);
  snprintf (sql, sizeof sql,
            "INSERT INTO vdi (uuid, location, name_label, format, "
            "virtual_size, read_only, managed, is_snapshot, snapshot_of, "
            "snapshot_time, created, pending_leaf) VALUES ('%s', '%s.%s', "
            "'crash', '%s', 0, 1, 1, 1, '%s', 1, 1, '%s')",
            frozen, frozen, fmt, fmt, leaf, leaf);
  CU_ASSERT_FATAL (sqlite3_open (db, &h) == SQLITE_OK);
  CU_ASSERT (sqlite3_exec (h, sql, NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close (h);
}

static void
test_crash_recovery_of_snapshot (void)
{
  struct sr *sr = new_sr ("sr-crash");
  CU_ASSERT_FATAL (sr != NULL);
  char dir[512];
  snprintf (dir, sizeof dir, "%s", sr_get_path (sr));
  struct sr_vdi *v = sr_vdi_create (sr, "v", VDISK_FORMAT_VHD, 4 * MiB, NULL);
  struct sr_vdi *w
      = sr_vdi_create (sr, "w", VDISK_FORMAT_QCOW2, 4 * MiB, NULL);
  CU_ASSERT_FATAL (v && w);
  CU_ASSERT (write_fill (sr, v->uuid, 0x99, 0, MiB) == 0);
  CU_ASSERT (write_fill (sr, w->uuid, 0x98, 0, MiB) == 0);
  sr_close (sr);

  /* V: crashed after the rename (roll forward).  W: crashed before it
   * (roll back). */
  char fv[SR_UUID_LEN + 1], fw[SR_UUID_LEN + 1];
  sr_uuid_generate (fv);
  sr_uuid_generate (fw);
  journal (dir, fv, v->uuid, "vhd");
  journal (dir, fw, w->uuid, "qcow2");
  CU_ASSERT (unit_sh ("mv '%s/%s.vhd' '%s/%s.vhd'", dir, v->uuid, dir, fv)
             == 0);

  sr = sr_open ("file", dir, 0);
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_vdi *v2 = sr_vdi_get_by_uuid (sr, v->uuid);
  struct sr_vdi *s = sr_vdi_get_by_uuid (sr, fv);
  CU_ASSERT_FATAL (v2 && s);
  CU_ASSERT_STRING_EQUAL (v2->parent_uuid, fv);
  CU_ASSERT (s->is_snapshot);
  CU_ASSERT (reads_as (sr, v->uuid, 0x99, 0, MiB));
  CU_ASSERT (reads_as (sr, fv, 0x99, 0, MiB));
  CU_ASSERT (sr_vdi_get_by_uuid (sr, fw) == NULL);
  CU_ASSERT (reads_as (sr, w->uuid, 0x98, 0, MiB));
  struct sr_vdi_list l;
  CU_ASSERT (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, 3);
  sr_vdi_list_free (&l);
  sr_vdi_free (v);
  sr_vdi_free (w);
  sr_vdi_free (v2);
  sr_vdi_free (s);
  sr_close (sr);
}

static void
test_stat_and_thin_provisioning (void)
{
  struct sr *sr = new_sr ("sr-stat");
  CU_ASSERT_FATAL (sr != NULL);
  struct sr_stat st;
  CU_ASSERT_FATAL (sr_stat (sr, &st) == 0);
  CU_ASSERT (st.total_bytes > 0);
  CU_ASSERT (st.free_bytes <= st.total_bytes);
  CU_ASSERT (st.used_bytes <= st.total_bytes);
  CU_ASSERT_EQUAL (st.n_vdis, 0);

  /* Larger than the free space: allowed, the images are sparse. */
  uint64_t big = (st.total_bytes * 4 + MiB) & ~(uint64_t)(MiB - 1);
  struct sr_vdi *q = sr_vdi_create (sr, "thin", VDISK_FORMAT_QCOW2, big, NULL);
  CU_ASSERT_FATAL (q != NULL);
  struct sr_vdi *d
      = sr_vdi_create (sr, "data", VDISK_FORMAT_VHD, 8 * MiB, NULL);
  CU_ASSERT_FATAL (d != NULL);
  CU_ASSERT (write_fill (sr, d->uuid, 1, 0, 2 * MiB) == 0);
  CU_ASSERT_FATAL (sr_stat (sr, &st) == 0);
  CU_ASSERT_EQUAL (st.n_vdis, 2);
  CU_ASSERT (st.virtual_allocation >= big + 8 * MiB);
  CU_ASSERT (st.physical_utilisation >= 2 * MiB);
  CU_ASSERT (st.physical_utilisation < big / 2);
  sr_vdi_free (q);
  sr_vdi_free (d);
  sr_close (sr);
}

#define THREADS 4
#define PER_THREAD 8

struct worker
{
  struct sr *sr;
  int id;
  int failures;
  char uuids[PER_THREAD][SR_UUID_LEN + 1];
};

static void *
worker (void *arg)
{
  struct worker *w = arg;
  const enum vdisk_format fmts[]
      = { VDISK_FORMAT_RAW, VDISK_FORMAT_VHD, VDISK_FORMAT_QCOW2 };
  for (int i = 0; i < PER_THREAD; i++) {
    char label[64];
    snprintf (label, sizeof label, "t%d-%d", w->id, i);
    struct sr_vdi *v
        = sr_vdi_create (w->sr, label, fmts[(w->id + i) % 3], MiB, NULL);
    if (!v) {
      fprintf (stderr, "thread %d: %s\n", w->id, sr_get_error ());
      w->failures++;
      continue;
    }
    strcpy (w->uuids[i], v->uuid);
    struct sr_vdi_list l;
    if (sr_vdi_list (w->sr, &l) == -1)
      w->failures++;
    sr_vdi_list_free (&l);
    if (i % 2 && sr_vdi_set_name_label (w->sr, v->uuid, "renamed") == -1)
      w->failures++;
    if (i == 3) {
      struct sr_vdi *s = sr_vdi_snapshot (w->sr, v->uuid, NULL);
      if (!s)
        w->failures++;
      sr_vdi_free (s);
    }
    sr_vdi_free (v);
  }
  return NULL;
}

static void
test_threads_create_concurrently (void)
{
  struct sr *sr = new_sr ("sr-threads");
  CU_ASSERT_FATAL (sr != NULL);
  pthread_t t[THREADS];
  struct worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (struct worker){ .sr = sr, .id = i };
    CU_ASSERT_FATAL (pthread_create (&t[i], NULL, worker, &w[i]) == 0);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join (t[i], NULL);
    CU_ASSERT_EQUAL (w[i].failures, 0);
  }
  struct sr_vdi_list l;
  CU_ASSERT_FATAL (sr_vdi_list (sr, &l) == 0);
  /* Every thread made PER_THREAD VDIs and one snapshot. */
  CU_ASSERT_EQUAL (l.len, THREADS * (PER_THREAD + 1));
  for (size_t i = 0; i < l.len; i++)
    for (size_t j = i + 1; j < l.len; j++)
      CU_ASSERT (strcmp (l.v[i]->uuid, l.v[j]->uuid) != 0);
  sr_vdi_list_free (&l);
  CU_ASSERT_EQUAL (count_images (sr_get_path (sr)),
                   THREADS * (PER_THREAD + 1));
  /* The records agree with a scan. */
  CU_ASSERT (sr_scan (sr) == 0);
  CU_ASSERT_FATAL (sr_vdi_list (sr, &l) == 0);
  CU_ASSERT_EQUAL (l.len, THREADS * (PER_THREAD + 1));
  sr_vdi_list_free (&l);
  sr_close (sr);
}

/* Mark [off, off+len) in VDI's log as the mirror filter does. */
static void
cbt_write (struct sr *sr, const char *uuid, uint64_t off, uint64_t len)
{
  char *path = sr_vdi_cbt_log_path (sr, uuid);
  CU_ASSERT_PTR_NOT_NULL_FATAL (path);
  struct cbt_log *w = cbt_log_open (path, CBT_LOG_WRITER, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (w);
  CU_ASSERT_EQUAL (cbt_log_mark (w, off, len, NULL), 0);
  CU_ASSERT_EQUAL (cbt_log_close (w, NULL), 0);
  free (path);
}

/* Changed-block tracking through the SR: enable, snapshot rotation,
 * list_changed_blocks, data_destroy of a snapshot the leaf reads
 * through, destroy merging logs, reopen, disable. */
static void
test_cbt (void)
{
  struct sr *sr = new_sr ("sr-cbt");
  CU_ASSERT_PTR_NOT_NULL_FATAL (sr);
  struct sr_vdi *v
      = sr_vdi_create (sr, "disk", VDISK_FORMAT_QCOW2, 4 * MiB, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (v);
  CU_ASSERT (!v->cbt_enabled);
  CU_ASSERT_PTR_NULL (sr_vdi_cbt_log_path (sr, v->uuid));
  CU_ASSERT_EQUAL (sr_get_errno (), ENODATA);
  CU_ASSERT_EQUAL (sr_vdi_enable_cbt (sr, v->uuid), 0);
  CU_ASSERT_EQUAL (sr_vdi_enable_cbt (sr, v->uuid), 0); /* idempotent */
  struct sr_vdi *r = sr_vdi_get_by_uuid (sr, v->uuid);
  CU_ASSERT (r->cbt_enabled && !r->cbt_metadata);
  sr_vdi_free (r);
  struct cbt_log_info i0;
  CU_ASSERT_EQUAL_FATAL (sr_vdi_cbt_info (sr, v->uuid, &i0), 0);

  /* write block 0, snapshot s1; blocks 5, 6; snapshot s2; block 63. */
  CU_ASSERT_EQUAL (write_fill (sr, v->uuid, 'a', 0, 4096), 0);
  cbt_write (sr, v->uuid, 0, 4096);
  struct sr_vdi *s1 = sr_vdi_snapshot (sr, v->uuid, "s1");
  CU_ASSERT_PTR_NOT_NULL_FATAL (s1);
  CU_ASSERT (s1->cbt_enabled);
  cbt_write (sr, v->uuid, 5 * 65536, 2 * 65536);
  struct sr_vdi *s2 = sr_vdi_snapshot (sr, v->uuid, "s2");
  CU_ASSERT_PTR_NOT_NULL_FATAL (s2);
  cbt_write (sr, v->uuid, 63 * 65536, 1);
  struct cbt_log_info iv;
  CU_ASSERT_EQUAL (sr_vdi_cbt_info (sr, v->uuid, &iv), 0);
  CU_ASSERT_STRING_EQUAL (iv.generation, i0.generation);
  CU_ASSERT_STRING_EQUAL (iv.predecessor, s2->uuid);

  size_t n;
  uint8_t *b = sr_vdi_list_changed_blocks (sr, s1->uuid, s2->uuid, &n);
  CU_ASSERT_PTR_NOT_NULL_FATAL (b);
  CU_ASSERT_EQUAL (n, 8);
  char *b64 = cbt_bitmap_to_base64 (b, n);
  CU_ASSERT_STRING_EQUAL (b64, "BgAAAAAAAAA="); /* blocks 5, 6 */
  g_free (b64);
  free (b);
  CU_ASSERT_PTR_NULL (sr_vdi_list_changed_blocks (sr, s2->uuid, s1->uuid,
                                                  &n));
  CU_ASSERT_EQUAL (sr_get_errno (), ENODATA);

  /* data_destroy: only snapshots; s1 is read through by s2 and the
   * leaf, so its image stays, hidden. */
  CU_ASSERT_EQUAL (sr_vdi_data_destroy (sr, v->uuid), -1);
  CU_ASSERT_EQUAL (sr_get_errno (), EMEDIUMTYPE);
  CU_ASSERT_EQUAL (sr_vdi_data_destroy (sr, s1->uuid), 0);
  r = sr_vdi_get_by_uuid (sr, s1->uuid);
  CU_ASSERT (r->cbt_metadata && r->cbt_enabled && r->managed);
  sr_vdi_free (r);
  CU_ASSERT_PTR_NULL (sr_vdi_open (sr, s1->uuid, 0));
  CU_ASSERT_EQUAL (sr_get_errno (), EMEDIUMTYPE);
  CU_ASSERT (reads_as (sr, v->uuid, 'a', 0, 4096));
  b = sr_vdi_list_changed_blocks (sr, s1->uuid, v->uuid, &n);
  CU_ASSERT_PTR_NOT_NULL_FATAL (b);
  CU_ASSERT_EQUAL (b[0], 0x06);
  CU_ASSERT_EQUAL (b[7], 0x01);
  free (b);

  /* Survives a reopen and a scan. */
  CU_ASSERT_EQUAL (sr_close (sr), 0);
  sr = sr_open ("file", unit_path ("sr-cbt"), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sr);
  CU_ASSERT_EQUAL (sr_scan (sr), 0);
  r = sr_vdi_get_by_uuid (sr, s1->uuid);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  CU_ASSERT (r->cbt_metadata);
  sr_vdi_free (r);

  /* Destroying s2 merges its log into the VDI's: s1..VDI still walks.
   * s2 is a parent (EBUSY), so data_destroy it, then destroy both. */
  CU_ASSERT_EQUAL (sr_vdi_data_destroy (sr, s2->uuid), 0);
  CU_ASSERT_EQUAL (sr_vdi_destroy (sr, s2->uuid), 0);
  r = sr_vdi_get_by_uuid (sr, s2->uuid);
  CU_ASSERT (r && !r->managed && !r->cbt_enabled);
  sr_vdi_free (r);
  b = sr_vdi_list_changed_blocks (sr, s1->uuid, v->uuid, &n);
  CU_ASSERT_PTR_NOT_NULL_FATAL (b);
  CU_ASSERT_EQUAL (b[0], 0x06);
  CU_ASSERT_EQUAL (b[7], 0x01);
  free (b);
  CU_ASSERT (reads_as (sr, v->uuid, 'a', 0, 4096));

  /* Disable, then enable: a new generation, no chain to s1. */
  CU_ASSERT_EQUAL (sr_vdi_disable_cbt (sr, v->uuid), 0);
  CU_ASSERT_EQUAL (sr_vdi_enable_cbt (sr, v->uuid), 0);
  CU_ASSERT_PTR_NULL (sr_vdi_list_changed_blocks (sr, s1->uuid, v->uuid,
                                                  &n));
  CU_ASSERT_EQUAL (sr_get_errno (), ENODATA);

  /* Destroying the VDI takes every image and log. */
  CU_ASSERT_EQUAL (sr_vdi_destroy (sr, v->uuid), 0);
  CU_ASSERT_EQUAL (sr_vdi_destroy (sr, s1->uuid), 0);
  struct sr_vdi_list l;
  CU_ASSERT_EQUAL (sr_vdi_list (sr, &l), 0);
  CU_ASSERT_EQUAL (l.len, 0);
  sr_vdi_list_free (&l);
  CU_ASSERT_EQUAL (unit_sh ("ls '%s' | grep -qv '^sr.db'",
                            unit_path ("sr-cbt")),
                   256);
  sr_vdi_free (v);
  sr_vdi_free (s1);
  sr_vdi_free (s2);
  sr_close (sr);
}

/* A cbt_metadata record without image or log (a migrated disk's log's
 * predecessor): a snapshot of its VDI, kept by the scan and a reopen,
 * made twice the same, refused over a VDI with data or a bad uuid;
 * destroying it leaves nothing behind. */
static void
test_cbt_metadata_record (void)
{
  struct sr *sr = new_sr ("sr-cbtmeta");
  CU_ASSERT_PTR_NOT_NULL_FATAL (sr);
  struct sr_vdi *v
      = sr_vdi_create (sr, "disk", VDISK_FORMAT_QCOW2, 4 * MiB, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (v);
  char old[SR_UUID_LEN + 1];
  CU_ASSERT_EQUAL_FATAL (sr_uuid_generate (old), 0);
  struct sr_vdi *m = sr_vdi_create_cbt_metadata (sr, old, "snap", v->uuid,
                                                 1700000000, 4 * MiB);
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  CU_ASSERT (m->cbt_metadata && m->is_snapshot && m->read_only);
  CU_ASSERT_STRING_EQUAL (m->snapshot_of, v->uuid);
  CU_ASSERT_STRING_EQUAL (m->name_label, "snap");
  CU_ASSERT_EQUAL (m->snapshot_time, 1700000000);
  CU_ASSERT_EQUAL (m->virtual_size, 4 * MiB);
  CU_ASSERT (!m->cbt_enabled);
  sr_vdi_free (m);
  CU_ASSERT_PTR_NULL (sr_vdi_open (sr, old, 0));
  m = sr_vdi_create_cbt_metadata (sr, old, "snap", v->uuid, 1700000000,
                                  4 * MiB);
  CU_ASSERT (m && m->cbt_metadata);
  sr_vdi_free (m);
  CU_ASSERT_PTR_NULL (sr_vdi_create_cbt_metadata (sr, v->uuid, "x", v->uuid,
                                                  0, 4 * MiB));
  CU_ASSERT_EQUAL (sr_get_errno (), EEXIST);
  CU_ASSERT_PTR_NULL (sr_vdi_create_cbt_metadata (sr, "not-a-uuid", "x",
                                                  v->uuid, 0, 4 * MiB));

  /* The scan (which drops records whose image is gone) and a reopen
   * keep it. */
  CU_ASSERT_EQUAL (sr_vdi_enable_cbt (sr, v->uuid), 0);
  CU_ASSERT (sr_scan (sr) == 0);
  sr_close (sr);
  sr = sr_open ("file", unit_path ("sr-cbtmeta"), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sr);
  m = sr_vdi_get_by_uuid (sr, old);
  CU_ASSERT (m && m->cbt_metadata && m->managed);
  sr_vdi_free (m);
  CU_ASSERT_EQUAL (sr_vdi_destroy (sr, old), 0);
  CU_ASSERT_EQUAL (sr_vdi_destroy (sr, v->uuid), 0);
  CU_ASSERT_EQUAL (unit_sh ("ls '%s' | grep -qv '^sr.db'",
                            unit_path ("sr-cbtmeta")),
                   256);
  sr_vdi_free (v);
  sr_close (sr);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "uuid syntax", test_uuid_syntax },
    { "create each format and list", test_create_each_format_and_list },
    { "second open refused", test_second_open_refused },
    { "destroy leaves nothing", test_destroy_leaves_nothing },
    { "rename and other_config", test_rename_and_other_config },
    { "open, write, read", test_open_write_read },
    { "snapshot vhd", test_snapshot_vhd },
    { "snapshot qcow2", test_snapshot_qcow2 },
    { "snapshot raw (leaf becomes qcow2)", test_snapshot_raw },
    { "clone", test_clone },
    { "destroy refused while parent", test_destroy_refused_while_parent },
    { "chain create and set_parent", test_chain_create_and_set_parent },
    { "scan after moving the SR", test_scan_after_move },
    { "scan adopts and forgets images", test_scan_adopts_and_forgets },
    { "hostile uuids and names", test_hostile_names },
    { "hostile metadata and symlinks", test_hostile_metadata },
    { "crash recovery of a snapshot", test_crash_recovery_of_snapshot },
    { "stat and thin provisioning", test_stat_and_thin_provisioning },
    { "threads create concurrently", test_threads_create_concurrently },
    { "changed-block tracking", test_cbt },
    { "cbt_metadata record without image", test_cbt_metadata_record },
    { NULL, NULL },
  };
  return unit_main ("sr-file", tests);
}
