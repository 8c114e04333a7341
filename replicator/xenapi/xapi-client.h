/* A XenAPI client over XML-RPC: one daemon calling another (the source of
 * a migration calling its destination).
 *
 * Calls are synchronous, made from whatever thread owns the client (a job
 * thread): the SoupSession is created in, and used from, that thread.
 * HTTPS servers are checked against a pinned SHA-256 fingerprint of their
 * certificate (a migration token carries the destination's), since
 * vdimotion hosts commonly have self-signed certificates; without a pin
 * the system's CAs decide. */
#ifndef XAPI_CLIENT_H
#define XAPI_CLIENT_H

#include <glib.h>
#include <xmlrpc-c/base.h>

struct xapi_client;

/* URL: "http://host:port/" or "https://...".  CERT_SHA256: the server
 * certificate's fingerprint as hex (colons allowed), or NULL. */
struct xapi_client *xapi_client_new (const char *url, const char *cert_sha256,
                                     int timeout_seconds);
void xapi_client_free (struct xapi_client *cl);
typedef struct xapi_client xapi_client;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (xapi_client, xapi_client_free)

/* Call METHOD with PARAMS (an XML-RPC array, borrowed).  Returns the
 * Value of a Success (a new reference).  NULL on failure: a XenAPI
 * Failure sets *ERROR_DESCRIPTION (NULL-terminated; g_strfreev), any other
 * problem (connection, HTTP status, not XML-RPC) sets *ERROR. */
xmlrpc_value *xapi_client_call (struct xapi_client *cl, const char *method,
                                xmlrpc_value *params,
                                char ***error_description, GError **error);

/* The SHA-256 fingerprint (lowercase hex, no colons) of a certificate
 * (g_free it). */
char *xapi_cert_sha256 (GTlsCertificate *cert);

#endif /* XAPI_CLIENT_H */
