/* libFuzzer target: qcow2 images (v2, v3, backing files, zero and
 * compressed clusters) through libvdisk: open, map, read.  Seeds in
 * corpus/qcow2/; the body is shared with fuzz-vhd.c (fuzz-image.h). */
#include "fuzz-image.h"
