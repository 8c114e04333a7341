/* The XenAPI client: the vdimotion command talking to a server, and the
 * source of a migration talking to its destination's daemon.
 *
 * Design: one `struct xapi_client` is one server (a URL) with its TLS
 * policy and timeout, and optionally one login session.  A call is
 * XML-RPC POSTed to the URL with libsoup's synchronous API, its
 * parameters and result typed value trees (xapi-value.h); the XML-RPC
 * wire form (written by xmlrpc-c, read by our decoder xmlrpc-decode.h so
 * a hostile server cannot crash us) stays inside xapi-client.c.  XenAPI's
 * reply {Status, Value | ErrorDescription} is unwrapped here: callers get
 * the Value, or a GError (XAPI_CLIENT_ERROR) whose message is
 * "CODE param1 param2..." for a XenAPI Failure, its code and parameters
 * readable with xapi_client_error_description.
 *
 * HTTPS: a pinned SHA-256 fingerprint of the server's certificate (a
 * migration token carries the destination's; vdimotion hosts commonly
 * have self-signed certificates) is then the only thing trusted; else
 * the CAs of a file; else the system's.
 *
 * Threads: calls are synchronous and block the calling thread; a client
 * is used by one thread at a time (the daemon makes one per migration in
 * the job's thread).  Errors are returned, never printed. */
#ifndef VDM_XAPI_CLIENT_H
#define VDM_XAPI_CLIENT_H

#include <stdbool.h>

#include <gio/gio.h>
#include <glib.h>
#include <libsoup/soup.h>

#include "xapi-value.h"

/* The error domain of the client.  An extended GError: a
 * XAPI_CLIENT_ERROR_FAILURE carries the ErrorDescription. */
#define XAPI_CLIENT_ERROR (xapi_client_error_quark ())
GQuark xapi_client_error_quark (void);
enum xapi_client_error
{
  XAPI_CLIENT_ERROR_FAILURE,  /* the server said Failure: the message is
                                 "CODE param1 param2..." */
  XAPI_CLIENT_ERROR_CONNECT,  /* could not talk to the server (refused,
                                 TLS, timeout, an HTTP error, not an
                                 http(s) URL): the message names the URL */
  XAPI_CLIENT_ERROR_PROTOCOL, /* the reply is not XML-RPC or not XenAPI:
                                 the message names the URL */
  XAPI_CLIENT_ERROR_LOCAL,    /* ours: a CA file, a call that cannot be
                                 encoded (a string that is not UTF-8) */
};

/* A XenAPI Failure's ErrorDescription, code first then its parameters
 * (NULL-terminated, owned by ERR), or NULL if ERR is not a
 * XAPI_CLIENT_ERROR_FAILURE. */
const char *const *xapi_client_error_description (const GError *err);
/* True if ERR is the XenAPI Failure CODE. */
bool xapi_client_error_is (const GError *err, const char *code);
/* Set *ERR to the XenAPI Failure DESCRIPTION (code first, then its
 * parameters; NULL-terminated, copied), as a server would have said it;
 * for failures a caller finds on its own (an unknown name). */
void xapi_client_set_failure (GError **err, const char *const *description);

struct xapi_client_config
{
  const char *url;          /* "http://host:port/" or "https://..." */
  const char *cert_sha256;  /* https: the fingerprint of the only
                               certificate trusted (hex, colons allowed),
                               or NULL */
  const char *ca_file;      /* https without a pin: the CAs (PEM) to trust
                               instead of the system's, or NULL */
  unsigned timeout_seconds; /* of each request's I/O; 0: none */
  const char *user_agent;   /* or NULL */
};

struct xapi_client;

/* A client of the server CFG names (CFG's strings are copied).  NULL and
 * *ERR (XAPI_CLIENT_ERROR_LOCAL, naming the file) if the CA file cannot
 * be read.  The URL is checked by the first call. */
struct xapi_client *xapi_client_new (const struct xapi_client_config *cfg,
                                     GError **err);
/* Free CL (a session is not logged out: see xapi_client_logout). */
void xapi_client_free (struct xapi_client *cl);
typedef struct xapi_client xapi_client;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (xapi_client, xapi_client_free)

const char *xapi_client_url (const struct xapi_client *cl);

/* session.login_with_password (USER, PASSWORD, "1.0", ORIGINATOR): from
 * now on each call's first parameter is the session's ref.  False and
 * *ERR on failure (SESSION_AUTHENTICATION_FAILED for a wrong password). */
bool xapi_client_login (struct xapi_client *cl, const char *user,
                        const char *password, const char *originator,
                        GError **err);
/* The session's ref ("OpaqueRef:..."), or NULL before a login. */
const char *xapi_client_session (const struct xapi_client *cl);
/* session.logout, and the session is forgotten even if that fails.
 * False and *ERR if the server did not take it. */
bool xapi_client_logout (struct xapi_client *cl, GError **err);

/* Call METHOD with the session's ref (once logged in) followed by the
 * parameters given, up to a NULL (each taken, also on failure).  Returns
 * the Value of a Success (the caller's), or NULL and *ERR. */
struct xv *xapi_client_call (struct xapi_client *cl, GError **err,
                             const char *method, ...) G_GNUC_NULL_TERMINATED;
/* The same with the parameters as an XV_ARRAY (borrowed), sent as they
 * are: no session is added. */
struct xv *xapi_client_call_array (struct xapi_client *cl, const char *method,
                                   const struct xv *params, GError **err);

/* Called while a task runs: DONE is its progress, 0 to 1. */
typedef void xapi_client_progress_fn (double done, void *opaque);

/* Wait for TASK (a ref, as the Async.* methods answer) to end, polling
 * task.get_record every 200 ms and calling PROGRESS (if not NULL) after
 * each poll of a pending task.  Returns the task's result as text
 * (xapi_client_result_text: a ref, or a report; g_free it), or NULL and *ERR: a failed or
 * cancelled task is a XAPI_CLIENT_ERROR_FAILURE of its error_info
 * (TASK_CANCELLED TASK if it has none).  The task stays on the server. */
char *xapi_client_task_wait (struct xapi_client *cl, const char *task,
                             xapi_client_progress_fn *progress, void *opaque,
                             GError **err);

/* A task's result field as text: xapi's "<value>...</value>" without
 * its tags and with XML's entities decoded, or a bare result as it is
 * (g_free it). */
char *xapi_client_result_text (const char *result);

/* ---- Other HTTP requests (xapi's /import_raw_vdi, /export_raw_vdi) ---- */

/* A request METHOD of PATH_AND_QUERY ("/export_raw_vdi?session_id=...")
 * on CL's server, under CL's TLS policy; NULL and *ERR
 * (XAPI_CLIENT_ERROR_CONNECT) if CL's URL is not http(s). */
SoupMessage *xapi_client_message (struct xapi_client *cl, const char *method,
                                  const char *path_and_query, GError **err);
/* Send MSG and read the whole reply / open the reply's body; NULL and
 * *ERR (XAPI_CLIENT_ERROR_CONNECT, naming the URL) if it could not be
 * sent.  Any HTTP status is the caller's to check. */
GBytes *xapi_client_send_and_read (struct xapi_client *cl, SoupMessage *msg,
                                   GError **err);
GInputStream *xapi_client_send (struct xapi_client *cl, SoupMessage *msg,
                                GError **err);

/* The SHA-256 fingerprint (lowercase hex, no colons) of a certificate
 * (g_free it), or NULL if it has no DER form; the face publishes its own
 * in migration tokens. */
char *xapi_cert_sha256 (GTlsCertificate *cert);

/* Does this process send and take strings with any Unicode character
 * (xmlrpc-c's own check refuses those outside the Basic Multilingual
 * Plane; replicator/xenapi/xmlrpc-utf8.c replaces it)?  A program warns
 * when not. */
bool xapi_client_full_unicode (void);

#endif /* VDM_XAPI_CLIENT_H */
