/* One XML-RPC request's way to its reply, without sockets: decode
 * (xmlrpc-decode.h), dispatch (the caller's), encode.  http.c runs the
 * three steps apart (decoding and encoding in worker threads, dispatch
 * on the main loop); xapi_rpc_process runs them in a row, for tests and
 * fuzzing. */
#ifndef XAPI_RPC_H
#define XAPI_RPC_H

#include <stdbool.h>
#include <stddef.h>

#include <glib.h>
#include <xmlrpc-c/base.h>

/* A decoded request: a call to dispatch, or an answer to give at once. */
struct xapi_rpc_request
{
  char *method;             /* the call (answer NULL) */
  xmlrpc_value *params;     /* its parameters, an array */
  GBytes *answer;           /* else the body of the answer, */
  unsigned status;          /* its HTTP status: 200 (a XenAPI failure,
                               XMLRPC_UNMARSHAL_FAILURE) or 400 (not XML-RPC,
                               plain text), */
  const char *content_type; /* "text/xml" or "text/plain", */
  char *log;                /* and one line for the log */
};

/* Decode BODY.  Any thread. */
void xapi_rpc_decode (const void *body, size_t len,
                      struct xapi_rpc_request *rq);
void xapi_rpc_request_clear (struct xapi_rpc_request *rq);

/* The XML of REPLY (a methodResponse), checked: xmlrpc-c built it and it
 * is UTF-8 holding only characters XML allows.  A reply that cannot be
 * encoded becomes {Status: "Failure", ErrorDescription: ["INTERNAL_ERROR",
 * why]}; this never fails.  Any thread, as long as no other thread
 * touches REPLY meanwhile. */
GBytes *xapi_rpc_encode (xmlrpc_value *reply);

/* The XML of a XenAPI failure: DESC is CODE, params..., NULL.  Strings
 * that are not valid UTF-8 or hold characters XML cannot carry are
 * cleaned up (see xapi_rpc_clean_text) so that this never fails. */
GBytes *xapi_rpc_failure (const char *const *desc);

/* S (NULL: "") as valid UTF-8 holding only characters XML allows: the
 * others become U+FFFD.  g_free the result. */
char *xapi_rpc_clean_text (const char *s);


/* The dispatcher: the wrapped reply ({Status, Value/ErrorDescription})
 * of METHOD(PARAMS), a new reference, or NULL with ENV faulted. */
typedef xmlrpc_value *xapi_rpc_dispatch_fn (void *opaque, xmlrpc_env *env,
                                            const char *method,
                                            xmlrpc_value *params);

/* Bytes in, reply bytes out: BODY decoded, given to DISPATCH, its reply
 * encoded.  *STATUS and *CONTENT_TYPE say how to send it. */
GBytes *xapi_rpc_process (const void *body, size_t len,
                          xapi_rpc_dispatch_fn *dispatch, void *opaque,
                          unsigned *status, const char **content_type);

#endif /* XAPI_RPC_H */
