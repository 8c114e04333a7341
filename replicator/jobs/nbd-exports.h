/* VDIs served read-only over TLS NBD to the clients of XenAPI's
 * VDI.get_nbd_info (backup tools reading a snapshot's blocks).
 *
 * Design
 * - One nbdkit per (session, VDI) (nbdkit.h, nbdkit_serve_tls_export):
 *   nbdkit-vdi-plugin read-only over the VDI's image and its chain,
 *   behind nbdkit-exportname-filter that serves one export name and
 *   lists none, with --tls=require and the daemon's own X.509
 *   certificate and key (the ones its HTTPS serves), on the host's NBD
 *   address at the first free port of the configured range.  One
 *   process per export keeps each export's life and credential apart
 *   (stopping one never disturbs another client); the range bounds how
 *   many there are.
 * - The export name is a token: 32 random bytes in hex, made when the
 *   export starts, bound to the session that asked.  Asking again in
 *   the same session for the same VDI gives the same export.  When the
 *   session ends (session.logout, or the oldest session dropped past
 *   the session limit) the face calls nbd_exports_end_session and its
 *   exports stop: the token is refused from then on.
 * - Data that goes stops its exports first (nbd_exports_end_vdi: the
 *   VDI destroyed, or its data destroyed).
 * - The token is on the nbdkit's command line, which local users of the
 *   host can read in /proc: the host is the daemon's, as xapi's dom0 is.
 * - nbdkit runs as its own daemon (it outlives vdimotiond), but an
 *   export is only worth its session's word: exports a previous run
 *   left are stopped when the table is made (nbd_exports_new), and a
 *   client asks VDI.get_nbd_info again (its session survives a
 *   restart).  nbd_exports_free stops them all at a clean exit.
 * - Threads: any; the table is under a lock.  Starting an nbdkit takes
 *   a moment (it waits for the server to listen), as VM.start does.
 *
 * Errors are XenAPI's error_info (host_err_set): INTERNAL_ERROR with
 * nbdkit's words, or when every port of the range is taken.
 */
#ifndef VDM_NBD_EXPORTS_H
#define VDM_NBD_EXPORTS_H

#include <stdbool.h>

#include <glib.h>

#include "host.h"

/* The default range of TCP ports exports listen on (vdimotiond.conf(5)
 * nbd-ports); 10809 is NBD's own port, the one xapi serves on. */
#define NBD_EXPORTS_DEFAULT_FIRST_PORT 10809
#define NBD_EXPORTS_DEFAULT_LAST_PORT 10872

struct nbd_exports_config
{
  const char *address;       /* where exports listen (an IP address) */
  int first_port, last_port; /* the range, inclusive */
  /* The daemon's certificate (PEM; it may hold its chain) and key. */
  const char *cert_file, *key_file;
};

struct nbd_exports;

/* The table of host H's exports, serving with CFG (copied): its
 * certificates are linked into <run-dir>/nbd-tls as nbdkit wants them,
 * the certificate is read for get_nbd_info's cert and subject, and the
 * exports a previous run left are stopped.  NULL with *ERROR naming the
 * file that could not be read or made. */
struct nbd_exports *nbd_exports_new (struct host *h,
                                     const struct nbd_exports_config *cfg,
                                     GError **error);
/* Stop every export and free the table (NULL: nothing). */
void nbd_exports_free (struct nbd_exports *e);

/* What VDI.get_nbd_info answers, one vdi_nbd_server_info. */
struct nbd_export_info
{
  char *address;
  int port;
  char *cert;       /* the certificate, PEM */
  char *exportname; /* the token */
  char *subject;    /* the certificate's first DNS name, else its CN */
};
void nbd_export_info_clear (struct nbd_export_info *info);

/* Serve VDI UUID to SESSION (a session ref) and say how to reach it in
 * *OUT (clear it with nbd_export_info_clear).  The VDI must exist and
 * have data (VDI_INCOMPATIBLE_TYPE for a cbt_metadata VDI).  -1 with
 * *ERR. */
int nbd_exports_serve (struct nbd_exports *e, const char *session,
                       const char *uuid, struct nbd_export_info *out,
                       char ***err);

/* Stop the exports of SESSION (it ended), or of VDI UUID (its data
 * goes).  Any number, none included. */
void nbd_exports_end_session (struct nbd_exports *e, const char *session);
void nbd_exports_end_vdi (struct nbd_exports *e, const char *uuid);

#endif /* VDM_NBD_EXPORTS_H */
