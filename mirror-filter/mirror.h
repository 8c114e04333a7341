/* Between the mirror (mirror.c) and its control socket (control.c). */
#ifndef VDM_MIRROR_H
#define VDM_MIRROR_H

#include <stdbool.h>
#include <stdio.h>

/* The commands of the control protocol (nbdkit-mirror-filter(1)).  Each
 * returns its one-line JSON reply, malloc'd, without the newline. */
char *mirror_cmd_start (const char *uri, const char *psk_file);
char *mirror_cmd_status (void);
char *mirror_cmd_complete (bool pivot);
char *mirror_cmd_abort (void);
/* Housekeeping between commands: a failed target is detached here. */
void mirror_reap (void);

/* control-proto.c: a command line parsed.  TARGET and TLS_PSK_FILE
 * point into the line. */
enum control_command
{
  CONTROL_START,
  CONTROL_STATUS,
  CONTROL_COMPLETE,
  CONTROL_ABORT,
};
struct control_request
{
  enum control_command cmd;
  const char *target;       /* start: required */
  const char *tls_psk_file; /* start: or NULL */
  bool pivot;               /* complete */
};
/* Parse LINE (one command, without its newline; split in place).
 * Returns 0, or -1 with the error reply in *REPLY (malloc'd; NULL if out
 * of memory). */
int control_parse (char *line, struct control_request *req, char **reply);

/* A reply {"ok":false,"error":MSG}. */
char *mirror_reply_error (const char *fmt, ...)
    __attribute__ ((format (printf, 1, 2)));
/* Write S as a JSON string, quotes included. */
void mirror_json_string (FILE *f, const char *s);

/* control.c: bind in .get_ready (errors still reach the terminal), serve
 * from a thread started in .after_fork, stop in .cleanup. */
int control_listen (const char *path);
int control_start (void);
void control_stop (void);

#endif /* VDM_MIRROR_H */
