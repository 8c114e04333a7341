/* A small synchronous QMP client (QEMU's JSON monitor protocol) over a
 * Unix socket, for vdimotion-mm-qemu.  Every call has a deadline and can
 * be interrupted by a cancel flag a signal handler sets. */

#ifndef VDM_QMP_H
#define VDM_QMP_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include <glib.h>
#include <json-glib/json-glib.h>

struct qmp;

/* The GError code (domain MM_ERROR) when QEMU closed the connection. */
#define QMP_ERROR_CLOSED 1

/* Connect to the QMP socket PATH, read QEMU's greeting and leave
 * capabilities negotiation mode, all before DEADLINE (g_get_monotonic_time
 * microseconds).  NAME ("source", "destination") prefixes errors. */
struct qmp *qmp_connect (const char *name, const char *path, gint64 deadline,
                         GError **err);

/* The pid of the process that serves the socket (SO_PEERCRED). */
pid_t qmp_peer_pid (const struct qmp *q);

/* While *FLAG is non-zero, calls fail at once with "cancelled"; NULL (the
 * default) for calls that must run anyway, as the undo steps. */
void qmp_set_cancel_flag (struct qmp *q, const volatile sig_atomic_t *flag);

/* Run COMMAND with ARGS (a JSON object text, or NULL) and return its
 * "return" value (caller unrefs).  A QMP error becomes a GError
 * "NAME: COMMAND: DESC".  Events met on the way are skipped. */
JsonNode *qmp_execute (struct qmp *q, const char *command, const char *args,
                       gint64 deadline, GError **err);

/* Send COMMAND and wait until QEMU closes the connection (for "quit"). */
bool qmp_execute_until_hangup (struct qmp *q, const char *command,
                               gint64 deadline, GError **err);

void qmp_close (struct qmp *q);
typedef struct qmp qmp;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (qmp, qmp_close)

#endif /* VDM_QMP_H */
