/* The nbdkit processes of the host: VMs' disks, live-move targets,
 * migration exports (nbdkit.c says how they live and die).
 *
 * Each nbdkit is its own daemon, started through GSubprocess: it forks
 * into the background once its socket listens and writes its pid file,
 * so it outlives a restart of vdimotiond.  Its messages go to
 * <run-dir>/<name>.log.  A pid is only signalled after /proc says it is
 * still the nbdkit serving that socket, so a recycled pid is never
 * killed.
 */
#ifndef VDM_NBDKIT_H
#define VDM_NBDKIT_H

#include <stdbool.h>
#include <sys/types.h>

#include <glib.h>

#include "host.h"

/* nbdkit serving VDI V of SR S on <run-dir>/<name>.sock, with the mirror
 * filter (control on <name>.ctl) when MIRROR, read-only when READONLY.
 * The plugin is told the VDI's format from its record and kept inside
 * the SR's directory: a guest's bytes are never taken for an image
 * header.  0 and *OUT (free its strings), or -1 with *ERROR (which holds
 * the end of nbdkit's log). */
struct nbdkit_served
{
  char *socket;
  char *control; /* NULL without the mirror filter */
  pid_t pid;
};
int nbdkit_serve_image (struct host *h, const char *name, struct host_sr *s,
                        const struct sr_vdi *v, bool mirror, bool readonly,
                        struct nbdkit_served *out, GError **error);

/* nbdkit forwarding TLS-PSK NBD on ADDR:<a free port> to UNIX_SOCKET
 * (the TCP export a migration's source mirrors into), with the key in
 * PSK_FILE.  0 and *OUT, or -1 with *ERROR. */
struct nbdkit_forward
{
  char *pidfile; /* <run-dir>/<name>.pid: names the process */
  int port;
  pid_t pid;
};
int nbdkit_serve_forward (struct host *h, const char *name,
                          const char *unix_socket, const char *psk_file,
                          const char *addr, struct nbdkit_forward *out,
                          GError **error);

/* nbdkit serving VDI V of SR S read-only over TLS on ADDR:PORT: the NBD
 * export of XenAPI's VDI.get_nbd_info.  X.509 (--tls=require) with the
 * certificates in CERTS_DIR as nbdkit-tls(1) names them; only export
 * name EXPORTNAME is served and no name is listed
 * (nbdkit-exportname-filter, strict).  Its files are <run-dir>/<name>.pid
 * and .log.  0 and *OUT, or -1 with *ERROR; *BUSY when nbdkit itself
 * failed to start (a port taken, which the caller may retry on another). */
int nbdkit_serve_tls_export (struct host *h, const char *name,
                             struct host_sr *s, const struct sr_vdi *v,
                             const char *certs_dir, const char *addr,
                             int port, const char *exportname,
                             struct nbdkit_forward *out, bool *busy,
                             GError **error);

/* The pid an nbdkit wrote into PATH (-P), or 0 if none can be read. */
pid_t nbdkit_read_pidfile (const char *path);

/* Is PID still the nbdkit serving SOCKET (or using pid file SOCKET)? */
bool nbdkit_serving (pid_t pid, const char *socket);

/* Stop it (SIGTERM, then SIGKILL after GRACE_SECONDS) and remove its
 * socket (or pid file), pid file, log and control socket (CONTROL, may be
 * NULL).  A server whose data still matters gets NBDKIT_STOP_GRACE; one
 * whose image is about to be destroyed, NBDKIT_STOP_NOW. */
#define NBDKIT_STOP_GRACE 10
#define NBDKIT_STOP_NOW 1
void nbdkit_stop (pid_t pid, const char *socket, const char *control,
                  int grace_seconds);

#endif /* VDM_NBDKIT_H */
