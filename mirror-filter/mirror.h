/* Between the mirror (mirror.c) and its control socket (control.c). */
#ifndef VDM_MIRROR_H
#define VDM_MIRROR_H

#include <stdbool.h>
#include <stdio.h>

#include "control-proto.h"

/* The commands of the control protocol (nbdkit-mirror-filter(1)).  Each
 * returns its one-line JSON reply, malloc'd, without the newline. */
char *mirror_cmd_start (const char *uri, const char *psk_file,
                        enum mirror_sync sync);
char *mirror_cmd_status (void);
char *mirror_cmd_complete (bool pivot);
char *mirror_cmd_abort (void);
char *mirror_cmd_pause (void);
/* URI NULL: release on the disk as it was; else pivot to URI. */
char *mirror_cmd_resume (const char *uri, const char *psk_file);
/* Changed-block tracking turned on or off while the disk is served:
 * take the log at PATH (NULL: the cbt-log= parameter's) as its writer,
 * or let go of the one taken.  Every write acknowledged after the reply
 * is marked, or none is (mirror.c says why). */
char *mirror_cmd_cbt_open (const char *path);
char *mirror_cmd_cbt_close (void);
/* Housekeeping between commands: a failed target is detached here, an
 * expired pause released. */
void mirror_reap (void);

/* control-proto.c: a reply {"ok":false,"error":MSG}, malloc'd (NULL if
 * out of memory). */
char *mirror_reply_error (const char *fmt, ...)
    __attribute__ ((format (printf, 1, 2)));

/* control.c: bind in .get_ready (errors still reach the terminal), serve
 * from a thread started in .after_fork, stop in .cleanup. */
int control_listen (const char *path);
int control_start (void);
void control_stop (void);

#endif /* VDM_MIRROR_H */
