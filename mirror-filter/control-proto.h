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

/* The commands, and a command line parsed. */
enum control_command
{
  CONTROL_START,
  CONTROL_STATUS,
  CONTROL_COMPLETE,
  CONTROL_ABORT,
};
/* The command named NAME ("start", ...); -1 if NAME names none. */
int control_command_from_name (const char *name);

struct control_request
{
  enum control_command cmd;
  const char *target;       /* start: required */
  const char *tls_psk_file; /* start: or NULL */
  bool pivot;               /* complete */
};

/* Parse LINE (one command, without its newline; split in place): the
 * filter's side.  TARGET and TLS_PSK_FILE of *REQ point into LINE.
 * Returns 0, or -1 with the error reply in *REPLY (malloc'd; NULL if out
 * of memory). */
int control_parse (char *line, struct control_request *req, char **reply);

/* The command line of REQ, newline included, as control_parse reads it
 * back: the client's side.  Returns a malloc'd string, or NULL with
 * errno EINVAL when the protocol cannot carry REQ (start without a
 * target, a value with blanks: words are split on blanks) or ENOMEM. */
char *control_format (const struct control_request *req);

#endif /* VDM_MIRROR_CONTROL_PROTO_H */
