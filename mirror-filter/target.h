/* The mirror's target: one NBD connection driven asynchronously through
 * libnbd, with a deadline on every request and a kill switch.
 *
 * Why not the copy engine's NBD endpoint: its calls are synchronous and
 * wait without a deadline, and nothing can cancel them.  The mirror must
 * (a) start the target write *before* the local write and wait for both,
 * so latency is max(local, remote); (b) give up on a target request after
 * mirror-timeout seconds while the request may still be in flight; (c)
 * release every waiter at once when the target is dropped.  A request is
 * therefore a small refcounted object shared by its waiter and libnbd
 * (which drops its reference in the completion callback's .free), and
 * its data buffer is a private copy, so a request that outlives its
 * waiter never touches the guest's memory. */
#ifndef VDM_MIRROR_TARGET_H
#define VDM_MIRROR_TARGET_H

#include <stdbool.h>
#include <stdint.h>

struct target;
struct treq;

enum treq_op
{
  TREQ_READ,
  TREQ_WRITE,
  TREQ_ZERO,
  TREQ_TRIM,
  TREQ_FLUSH,
  TREQ_MAP,     /* base:allocation; see target_zero_prefix */
  TREQ_EXTENTS, /* base:allocation; see target_map */
};

/* One extent of target_map: LENGTH bytes with FLAGS, NBD's
 * base:allocation bits (LIBNBD_STATE_HOLE 1, LIBNBD_STATE_ZERO 2: the
 * same values as nbdkit's NBDKIT_EXTENT_HOLE and NBDKIT_EXTENT_ZERO). */
struct target_extent
{
  uint64_t length;
  uint32_t flags;
};

/* What target_map returns: N contiguous extents from the offset asked,
 * V malloc'd (free it). */
struct target_extents
{
  struct target_extent *v;
  size_t n;
};

/* Connect (within TIMEOUT_MS).  PSK_FILE may be NULL.  Returns NULL with
 * a malloc'd message in *ERR. */
struct target *target_open (const char *uri, const char *psk_file,
                            int timeout_ms, char **err);
/* A second connection to the server T is connected to, with the
 * export name EXPORT instead of T's, and T's TLS settings; it may be
 * read-only.  Its export description (NBD_INFO_DESCRIPTION) is
 * target_description's.  NULL with a malloc'd message in *ERR.  Used
 * for nbdkit-vdi-plugin's view of a pivoted disk's top layer. */
struct target *target_open_view (struct target *t, const char *export,
                                 int timeout_ms, char **err);
uint64_t target_size (struct target *t);
/* The export's description, or NULL if the server gave none. */
const char *target_description (struct target *t);
bool target_can_fua (struct target *t);
const char *target_uri (struct target *t);

/* Start a request.  For TREQ_WRITE the data is copied first; for
 * TREQ_READ the caller passes its buffer to target_finish instead.
 * Never returns NULL: a request that could not be queued is already
 * finished with its error. */
struct treq *target_start (struct target *t, enum treq_op op, const void *buf,
                           uint32_t count, uint64_t offset, bool fua);
/* Wait up to TIMEOUT_MS for R (and copy read data into BUF).  Returns 0,
 * or -1 with a malloc'd reason in *WHY (error, timeout or cancelled).
 * Frees the caller's share of R either way. */
int target_finish (struct target *t, struct treq *r, void *buf, int timeout_ms,
                   char **why);
/* Both steps at once. */
int target_sync (struct target *t, enum treq_op op, void *buf, uint32_t count,
                 uint64_t offset, bool fua, int timeout_ms, char **why);

/* How many bytes from OFFSET on (at most COUNT) the target says read as
 * zero (its base:allocation extents), within TIMEOUT_MS.  *LEN is 0 when
 * the target does not say (no base:allocation, or data at OFFSET).
 * Returns -1 with a malloc'd reason in *WHY as target_finish. */
int target_zero_prefix (struct target *t, uint64_t offset, uint32_t count,
                        int timeout_ms, uint64_t *len, char **why);

/* The target's extents (base:allocation) from OFFSET on, at most COUNT
 * bytes of them, within TIMEOUT_MS: at least one extent, the first
 * starting at OFFSET, their lengths summing to at most COUNT.  A target
 * without base:allocation answers one data extent of COUNT bytes (always
 * true, never wrong).  Returns -1 with a malloc'd reason in *WHY as
 * target_finish. */
int target_map (struct target *t, uint64_t offset, uint32_t count,
                int timeout_ms, struct target_extents *out, char **why);

/* Fail every request in flight and every later one (ECANCELED).  Safe to
 * call more than once and from any thread. */
void target_kill (struct target *t);
/* References: target_open returns one. */
void target_ref (struct target *t);
void target_unref (struct target *t);

#endif /* VDM_MIRROR_TARGET_H */
