/* The client of the mirror filter's control socket (the line protocol
 * of nbdkit-mirror-filter(1)), used by `vdimotion mirror` and by
 * vdimotiond's live moves and migrations.
 *
 * Three layers: mirror_control_call sends one command line and returns
 * the reply line as it came; mirror_reply_parse reads a reply with
 * json-glib; the typed commands (mirror_start, mirror_start_sync,
 * mirror_get_status, mirror_complete, mirror_abort, mirror_pause,
 * mirror_resume, mirror_cbt_open, mirror_cbt_close) do both, and mirror_wait_ready polls
 * one or several mirrors until all are in sync.  The command lines come
 * from control_format (control-proto.h), which the filter's parser
 * reads back.
 *
 * Errors are GErrors of MIRROR_CONTROL_ERROR (below); their messages say
 * which socket or which side failed.  Sizes are bytes, times seconds
 * unless a name says otherwise. */
#ifndef VDM_MIRROR_CONTROL_CLIENT_H
#define VDM_MIRROR_CONTROL_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "control-proto.h"

#define MIRROR_CONTROL_ERROR (mirror_control_error_quark ())
GQuark mirror_control_error_quark (void);

enum mirror_control_error
{
  /* The socket: cannot connect, send or receive, no reply in time.
   * "mirror control SOCKET: WHY". */
  MIRROR_CONTROL_ERROR_IO,
  /* The filter refused: {"ok":false,"error":MSG}.  mirror_reply_parse
   * says MSG as the filter wrote it; the typed commands say "mirror
   * filter: MSG". */
  MIRROR_CONTROL_ERROR_REFUSED,
  /* The reply is not JSON, not an object, or lacks a member or has one
   * of the wrong type: "the reply ..." from mirror_reply_parse and
   * mirror_status_parse, "mirror control SOCKET: the reply ..." from the
   * typed commands. */
  MIRROR_CONTROL_ERROR_REPLY,
  /* The request cannot be written as a line (a blank in a value, a
   * resume with a target and no pivot): "mirror control SOCKET: ...". */
  MIRROR_CONTROL_ERROR_REQUEST,
  /* mirror_wait_ready: a mirror failed ("the mirror failed: WHY", WHY
   * the status's error). */
  MIRROR_CONTROL_ERROR_FAILED,
  /* mirror_wait_ready: the caller cancelled ("cancelled"). */
  MIRROR_CONTROL_ERROR_CANCELLED,
};

/* How long the typed commands wait for a reply.  "complete" drains the
 * guest's requests and flushes both sides, which may take a while. */
#define MIRROR_CONTROL_TIMEOUT 60

/* Send LINE (one command line, ending in '\n') to the control socket
 * SOCKET and return the reply line as it came, without its newline
 * (g_free it), waiting at most TIMEOUT_SECONDS.  NULL with a
 * MIRROR_CONTROL_ERROR_IO error on failure.  Says nothing about the
 * reply's contents. */
char *mirror_control_call (const char *socket, const char *line,
                           int timeout_seconds, GError **error);

/* Read REPLY, one reply line.  Returns its object (json_object_unref
 * it) when it says "ok":true; NULL with MIRROR_CONTROL_ERROR_REFUSED
 * (the message is the filter's "error" as written) when it says
 * "ok":false, or MIRROR_CONTROL_ERROR_REPLY when it is anything else.
 * Never trusts REPLY: any bytes give a reply or an error. */
JsonObject *mirror_reply_parse (const char *reply, GError **error);

/* What "status" reports (nbdkit-mirror-filter(1) names each member). */
struct mirror_status
{
  enum mirror_state state;
  char *target; /* the target's URI, or NULL without one */
  bool pivoted;
  uint64_t bytes_total; /* the disk's size */
  uint64_t bytes_done;  /* bytes_total - dirty_bytes */
  uint64_t dirty_bytes; /* what the copier still owes */
  char *error;          /* why the mirror failed, or NULL */
  uint64_t bytes_copied, bytes_zeroed, bytes_skipped;
  uint64_t writes_mirrored;
  double write_latency_mean_us, write_latency_p99_us; /* microseconds */
  uint64_t granularity;  /* bytes of one chunk */
  uint64_t timeout;      /* seconds a target request may take */
  /* Said by filters that know sync modes and pause (absent: full, not
   * paused, 0): */
  enum mirror_sync sync; /* what the last start copies */
  bool paused;           /* guest requests wait for resume */
  uint64_t bytes_backing; /* sync=top: left to the lower layers */
};

/* Free what ST holds (not ST itself) and zero it. */
void mirror_status_clear (struct mirror_status *st);

/* Read a status reply into *ST (clear it with mirror_status_clear).
 * FALSE with an error as mirror_reply_parse's, or
 * MIRROR_CONTROL_ERROR_REPLY naming the member that is missing, of the
 * wrong type, negative or too large. */
gboolean mirror_status_parse (const char *reply, struct mirror_status *st,
                              GError **error);

/* The commands.  Each sends its line to SOCKET, waits at most
 * MIRROR_CONTROL_TIMEOUT for the reply, and returns TRUE when the filter
 * accepted it, else FALSE with an error (REFUSED: "mirror filter: MSG").
 *
 * mirror_start: start mirroring to TARGET_URI (an NBD URI); with
 * TLS_PSK_FILE (or NULL) TLS is required.
 * mirror_get_status: the status into *ST (mirror_status_clear it).
 * mirror_complete: detach the target once in sync, or with PIVOT make it
 * the disk.
 * mirror_abort: stop, drop the target, the local disk stays the disk. */
gboolean mirror_start (const char *socket, const char *target_uri,
                       const char *tls_psk_file, GError **error);
gboolean mirror_get_status (const char *socket, struct mirror_status *st,
                            GError **error);
gboolean mirror_complete (const char *socket, bool pivot, GError **error);
gboolean mirror_abort (const char *socket, GError **error);

/* mirror_start_sync: mirror_start with start's sync= (control-proto.h,
 * enum mirror_sync): MIRROR_SYNC_TOP when TARGET_URI is a new leaf over
 * copies of the disk's lower layers (the filter refuses it when its
 * plugin cannot map the top layer alone), MIRROR_SYNC_NONE when the
 * target already reads what the disk reads (the state is ready at
 * once).  MIRROR_SYNC_FULL sends the same line as mirror_start. */
gboolean mirror_start_sync (const char *socket, const char *target_uri,
                            const char *tls_psk_file, enum mirror_sync sync,
                            GError **error);

/* mirror_pause: drain the guest's requests in flight, flush the disk, and
 * make new requests wait (they do not fail) until mirror_resume, or until
 * the filter's mirror-pause-timeout passes (then they go on on the disk
 * as it was, and a later resume is refused).  Refused while a mirror
 * runs (syncing or ready).  Returns once drained and flushed.
 *
 * mirror_resume: release the waiting requests.  TARGET_URI NULL: on the
 * disk as it was before the pause.  TARGET_URI (an NBD URI, with
 * TLS_PSK_FILE or NULL) with PIVOT true: connect it, check its size, and
 * make it the disk (as complete's pivot does) before releasing them; if
 * it cannot be connected the filter stays paused and the error says why
 * (REFUSED: "mirror filter: resume: ...").  PIVOT without TARGET_URI, or
 * TARGET_URI without PIVOT, is MIRROR_CONTROL_ERROR_REQUEST.  This is a
 * live snapshot's quiesce: pause, the owner renames the image into the
 * snapshot and creates the new leaf, serves it, resume with a pivot. */
gboolean mirror_pause (const char *socket, GError **error);
gboolean mirror_resume (const char *socket, const char *target_uri,
                        const char *tls_psk_file, bool pivot,
                        GError **error);

/* mirror_cbt_open: changed-block tracking turned on for the served disk
 * (VDI.enable_cbt of a running VM's disk): the filter takes the log at
 * LOG_PATH (an absolute path; NULL: its cbt-log= parameter's) as its
 * writer, and every guest write it acknowledges after this returns is
 * marked there.  A log it marks already (the same file, under any name)
 * is kept.  Refused (REFUSED, "mirror filter: cbt-open: ...") when the
 * log cannot be taken: no such file, not a log, of a disk of another
 * size, held by another writer.
 *
 * mirror_cbt_close: tracking turned off (VDI.disable_cbt): the filter
 * lets go of its log cleanly (the log's consistent flag set) and marks
 * nothing from the reply on; nothing to do when it marks no log.  The
 * file stays: its owner removes it. */
gboolean mirror_cbt_open (const char *socket, const char *log_path,
                          GError **error);
gboolean mirror_cbt_close (const char *socket, GError **error);

/* One mirror that mirror_poll and mirror_wait_ready watch. */
struct mirror_disk
{
  const char *name;   /* the disk, for errors ("disk NAME: ..."); or NULL */
  const char *socket; /* its control socket */
  /* From the last status read: */
  enum mirror_state state;
  uint64_t bytes_done, bytes_total;
};

/* Read the status of each of the N DISKS once, filling in their last
 * three members; *ALL_READY when every one is ready.  FALSE with an
 * error at the first disk that cannot be read or whose mirror failed
 * (MIRROR_CONTROL_ERROR_FAILED), its message prefixed "disk NAME: " when
 * the disk has a name. */
gboolean mirror_poll (struct mirror_disk *disks, size_t n, bool *all_ready,
                      GError **error);

/* The caller's side of mirror_wait_ready.  CANCELLED (or NULL) is asked
 * before each poll; PROGRESS (or NULL) is called after each, with the
 * DISKS just read: it may do the caller's own periodic work and fail
 * the wait by returning FALSE with an error. */
struct mirror_wait_ops
{
  bool (*cancelled) (void *opaque);
  gboolean (*progress) (const struct mirror_disk *disks, size_t n,
                        bool all_ready, void *opaque, GError **error);
};

/* Poll the N DISKS with mirror_poll every INTERVAL_MS milliseconds until
 * all are ready (TRUE), or until a poll or PROGRESS fails or CANCELLED
 * says so (FALSE with mirror_poll's or PROGRESS's error, or
 * MIRROR_CONTROL_ERROR_CANCELLED).  A VM's migration waits for all its
 * disks at once; a live move for its one disk. */
gboolean mirror_wait_ready (struct mirror_disk *disks, size_t n,
                            unsigned interval_ms,
                            const struct mirror_wait_ops *ops, void *opaque,
                            GError **error);

#endif /* VDM_MIRROR_CONTROL_CLIENT_H */
