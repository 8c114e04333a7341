/* libFuzzer target: VHD images (fixed, dynamic, differencing chains)
 * through libvdisk: open, map, read.  Seeds in corpus/vhd/; the body is
 * shared with fuzz-qcow2.c (fuzz-image.h), since libvdisk chooses the
 * format by content and a VHD may sit on a qcow2 and the other way
 * round. */
#include "fuzz-image.h"
