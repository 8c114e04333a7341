/* Test tool: write standard input into IMAGE at OFFSET through libvdisk
 * (any format, including VHD differencing disks, which qemu cannot
 * write).  usage: vdisk-write IMAGE OFFSET < DATA
 *        vdisk-write --zero IMAGE OFFSET LENGTH */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vdisk.h"

int
main (int argc, char **argv)
{
  bool zero = argc > 1 && strcmp (argv[1], "--zero") == 0;
  if (argc != (zero ? 5 : 3)) {
    fprintf (stderr, "usage: vdisk-write IMAGE OFFSET < DATA\n"
                     "       vdisk-write --zero IMAGE OFFSET LENGTH\n");
    return 2;
  }
  struct vdisk *d = vdisk_open (argv[zero ? 2 : 1], VDISK_OPEN_RDWR);
  if (!d) {
    fprintf (stderr, "vdisk-write: %s\n", vdisk_get_error ());
    return 1;
  }
  uint64_t off = strtoull (argv[zero ? 3 : 2], NULL, 0);
  int r = 0;
  if (zero)
    r = vdisk_zero (d, strtoull (argv[4], NULL, 0), off, 0);
  else {
    static char buf[1 << 20];
    ssize_t n;
    while (r == 0 && (n = read (0, buf, sizeof buf)) > 0) {
      r = vdisk_pwrite (d, buf, n, off, 0);
      off += n;
    }
  }
  if (r == 0)
    r = vdisk_close (d);
  else
    vdisk_close (d);
  if (r != 0) {
    fprintf (stderr, "vdisk-write: %s\n", vdisk_get_error ());
    return 1;
  }
  return 0;
}
