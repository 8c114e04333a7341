/* Copy endpoints: one ops table per kind (endpoint-local.c,
 * endpoint-nbd.c), as nbdcopy's rw_ops.  All calls are synchronous and
 * may be made from many worker threads at once. */
#ifndef VDM_COPY_ENDPOINT_H
#define VDM_COPY_ENDPOINT_H

#include "copy.h"
#include "vdisk.h"

struct copy_endpoint_ops
{
  const char *kind; /* "local", "nbd" */
  /* Allocation of [offset, offset+count), appended to OUT (flattened
   * unless the endpoint is layer-only). */
  int (*map) (struct copy_endpoint *e, uint64_t offset, uint64_t count,
              struct vdisk_extents *out, char **err);
  int (*pread) (struct copy_endpoint *e, void *buf, size_t count,
                uint64_t offset, char **err);
  int (*pwrite) (struct copy_endpoint *e, const void *buf, size_t count,
                 uint64_t offset, char **err);
  /* Afterwards the range reads as zero. */
  int (*zero) (struct copy_endpoint *e, uint64_t count, uint64_t offset,
               char **err);
  int (*flush) (struct copy_endpoint *e, char **err);
  /* Optional: start making what was written durable, without waiting
   * (the engine calls it as windows finish, so the final flush does not
   * wait for the whole copy's writeback at once). */
  void (*writeback) (struct copy_endpoint *e);
  int (*close) (struct copy_endpoint *e, char **err);
  /* Optional: the plain file descriptor under the endpoint, when bytes can
   * move between two such files with copy_file_range; else -1. */
  int (*plain_fd) (struct copy_endpoint *e);
  /* Optional: before a copy resumed from its journal writes anything:
   * free what the killed run had allocated in the destination and not
   * yet linked (vdisk_repair_leaks), which the resumed run allocates
   * again. */
  int (*repair) (struct copy_endpoint *e, char **err);
};

struct copy_endpoint
{
  const struct copy_endpoint_ops *ops;
  char *name; /* path or URI, for messages */
  uint64_t size;
  uint32_t granularity; /* zero-detection / alignment unit */
};

/* asprintf into *ERR; always returns -1 so callers can `return`. */
int copy_error (char **err, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

#endif /* VDM_COPY_ENDPOINT_H */
