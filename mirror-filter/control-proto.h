/* The words of the mirror filter's control protocol
 * (nbdkit-mirror-filter(1)), shared by the filter (control.c parses a
 * command line, mirror.c names its state) and its client
 * (control-client.c formats the line, reads the state back), so that
 * the two sides spell them in one place.  Plain C, no nbdkit, no GLib:
 * the fuzz target links control-proto.c alone. */
#ifndef VDM_MIRROR_CONTROL_PROTO_H
#define VDM_MIRROR_CONTROL_PROTO_H

#include <stdbool.h>

/* The mirror's state, as "state" in every reply says it. */
enum mirror_state
{
  MIRROR_IDLE,
  MIRROR_SYNCING,
  MIRROR_READY,
  MIRROR_COMPLETED,
  MIRROR_ABORTED,
  MIRROR_FAILED,
};

/* "idle", "syncing", ...: a static string. */
const char *mirror_state_name (enum mirror_state state);
/* The state named NAME; -1 if NAME names none. */
int mirror_state_from_name (const char *name);

/* What `start` copies (start's sync=, as QEMU's drive-mirror names its
 * modes).  FULL: the whole disk.  TOP: only what the disk's top layer
 * holds; the target is a new leaf over copies of the lower layers, so
 * what the top layer does not hold already reads the same there.  NONE:
 * nothing; the target already reads what the disk reads, and only the
 * guest's writes are mirrored. */
enum mirror_sync
{
  MIRROR_SYNC_FULL,
  MIRROR_SYNC_TOP,
  MIRROR_SYNC_NONE,
};

/* "full", "top", "none": a static string. */
const char *mirror_sync_name (enum mirror_sync sync);
/* The mode named NAME; -1 if NAME names none. */
int mirror_sync_from_name (const char *name);

/* The commands, and a command line parsed. */
enum control_command
{
  CONTROL_START,
  CONTROL_STATUS,
  CONTROL_COMPLETE,
  CONTROL_ABORT,
  CONTROL_PAUSE,
  CONTROL_RESUME,
  CONTROL_CBT_OPEN,  /* "cbt-open" */
  CONTROL_CBT_CLOSE, /* "cbt-close" */
};
/* The command named NAME ("start", ...); -1 if NAME names none. */
int control_command_from_name (const char *name);

struct control_request
{
  enum control_command cmd;
  const char *target;       /* start: required; resume: with pivot */
  const char *tls_psk_file; /* start, resume: or NULL */
  bool pivot;               /* complete; resume: required with target */
  enum mirror_sync sync;    /* start (MIRROR_SYNC_FULL when not said) */
  const char *cbt_log;      /* cbt-open: log=, an absolute path, or NULL
                               (the filter's cbt-log=) */
};

/* Parse LINE (one command, without its newline; split in place): the
 * filter's side.  TARGET, TLS_PSK_FILE and CBT_LOG of *REQ point into
 * LINE.
 * Returns 0, or -1 with the error reply in *REPLY (malloc'd; NULL if out
 * of memory). */
int control_parse (char *line, struct control_request *req, char **reply);

/* The command line of REQ, newline included, as control_parse reads it
 * back: the client's side.  Returns a malloc'd string, or NULL with
 * errno EINVAL when the protocol cannot carry REQ (start without a
 * target, resume with a target but no pivot or the other way round, a
 * cbt_log on another command than cbt-open, a value with blanks: words
 * are split on blanks) or ENOMEM.  A start
 * with MIRROR_SYNC_FULL is written without sync=, as before sync
 * existed. */
char *control_format (const struct control_request *req);

#endif /* VDM_MIRROR_CONTROL_PROTO_H */
