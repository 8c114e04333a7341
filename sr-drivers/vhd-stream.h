/* VHD images as byte streams, read and written in file order without a
 * file: what an HTTP import receives and an HTTP export sends (xapi's
 * /import_raw_vdi and /export_raw_vdi with format=vhd).
 *
 * The reader is pushed the bytes of a VHD file as they arrive and hands
 * the guest data it finds, in stream order, to a write callback.  Its
 * memory is the BAT (4 bytes per block of the virtual size) and one
 * sector bitmap, whatever the image size: data passes through.  It takes
 * dynamic VHDs whose BAT comes before their blocks (as qemu-img, Hyper-V
 * and vhd-util write them) and fixed VHDs; differencing VHDs are refused
 * (ENOTSUP), as is a dynamic VHD whose blocks do not follow its BAT.
 * What reads as zero without being stored (unallocated blocks, sectors a
 * block's bitmap leaves clear, the disk beyond the VHD's size) goes to a
 * zero callback, which a caller writing into a fresh image can leave
 * out.
 *
 * The writer turns an open image (its whole chain, flattened) into a
 * dynamic VHD of 2 MiB blocks holding only the blocks the allocation map
 * says hold data.  Its length is known before the first byte, and any
 * range of it can be read at any time, so a sender can give a
 * Content-Length and then stream it in pieces.
 *
 * Errors: -1 or NULL, with a message and an errno as everywhere in
 * libvdisk (vdisk_get_error / vdisk_get_errno).  Messages start with
 * "vhd stream: " and say where in the stream the fault lies.  EINVAL:
 * the stream is not a well-formed VHD; EFBIG: its data does not fit the
 * size given to the reader; ENOTSUP: a VHD the reader cannot stream.
 */
#ifndef VHD_STREAM_H
#define VHD_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "vdisk.h"

/* Guest data found in the stream: LEN bytes at guest OFFSET.  Return -1
 * after setting the libvdisk error (vdisk_get_error) to stop the
 * reader. */
typedef int vhd_stream_write_fn (void *opaque, const void *buf, size_t len,
                                 uint64_t offset);

/* Guest range [OFFSET, OFFSET+LEN) reads as zero.  Ranges come in no
 * particular order, but never overlap each other or written data. */
typedef int vhd_stream_zero_fn (void *opaque, uint64_t len, uint64_t offset);

struct vhd_stream_reader;

/* A reader for a VHD whose virtual size may be at most MAX_SIZE (the
 * target's size).  STREAM_LEN is the length of the whole stream if known
 * in advance (HTTP Content-Length), which lets bad BAT entries be caught
 * before any data is written; 0 if unknown.  ZERO may be NULL. */
struct vhd_stream_reader *vhd_stream_reader_new (uint64_t max_size,
                                                 uint64_t stream_len,
                                                 vhd_stream_write_fn *write,
                                                 vhd_stream_zero_fn *zero,
                                                 void *opaque);
/* The next LEN bytes of the stream.  After a -1 every call fails. */
int vhd_stream_reader_feed (struct vhd_stream_reader *r, const void *buf,
                            size_t len);
/* End of stream: -1 unless a whole VHD, closing footer included, was
 * seen. */
int vhd_stream_reader_finish (struct vhd_stream_reader *r);
void vhd_stream_reader_free (struct vhd_stream_reader *r);

struct vhd_stream_writer;

/* A dynamic VHD of D's content.  Reads the allocation map of the whole
 * disk (flattened chain) once; D must stay open while the writer is
 * used.  D's size must be a multiple of 512 and at most 2 TiB. */
struct vhd_stream_writer *vhd_stream_writer_new (struct vdisk *d);
/* Bytes in the whole VHD file. */
uint64_t vhd_stream_writer_get_length (struct vhd_stream_writer *w);
/* Bytes [OFFSET, OFFSET+COUNT) of the VHD file; the range must lie
 * within its length.  May be called from several threads at once. */
int vhd_stream_writer_read (struct vhd_stream_writer *w, void *buf,
                            size_t count, uint64_t offset);
void vhd_stream_writer_free (struct vhd_stream_writer *w);

#endif /* VHD_STREAM_H */
