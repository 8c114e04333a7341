/* One call's way to its reply, without sockets: decode, dispatch (the
 * caller's), encode.  Two protocols, each a codec (struct
 * xapi_rpc_codec): XML-RPC (here, rpc.c: decoding by xmlrpc-decode.c,
 * replies written byte for byte as xapi writes them) and JSON-RPC 1.0
 * and 2.0 (jsonrpc.c).  Both decode into the same call (a method name and
 * an array of xmlrpc_value parameters) for the one dispatcher, and
 * encode its wrapped reply ({Status, Value} or {Status,
 * ErrorDescription}).
 *
 * http.c runs the three steps apart (decoding and encoding in worker
 * threads, dispatch on the main loop); xapi_rpc_process runs them in a
 * row, for tests and fuzzing. */
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
                               XMLRPC_UNMARSHAL_FAILURE) or 400 (not a
                               call of the protocol, plain text), */
  const char *content_type; /* the codec's, or "text/plain", */
  char *log;                /* and one line for the log */
};

struct xapi_rpc_form;

/* A protocol.  Every function may run in any thread. */
struct xapi_rpc_codec
{
  const char *name;         /* "XML-RPC", for messages */
  const char *content_type; /* of its replies */
  /* Decode BODY (LEN bytes, need not be NUL-terminated) into RQ, and
   * into FORM what the reply must say back (its codec, a JSON-RPC id).
   * Never fails: what is not a call becomes RQ's answer. */
  void (*decode) (const void *body, size_t len, struct xapi_rpc_request *rq,
                  struct xapi_rpc_form *form);
  /* The body answering FORM's call with REPLY, the dispatcher's
   * wrapped reply (a value without Status, system.listMethods' array,
   * is sent as it is).  A reply that cannot be encoded becomes the
   * failure INTERNAL_ERROR; this never fails. */
  GBytes *(*encode) (const struct xapi_rpc_form *form, xmlrpc_value *reply);
  /* The body of a XenAPI failure: DESC is CODE, params..., NULL.
   * Strings that are not valid UTF-8 or hold characters XML cannot
   * carry are cleaned (xapi_rpc_clean_text), so that this never
   * fails. */
  GBytes *(*failure) (const struct xapi_rpc_form *form,
                      const char *const *desc);
};

/* How a decoded call is to be answered. */
struct xapi_rpc_form
{
  const struct xapi_rpc_codec *codec; /* set by every decode */
  int jsonrpc;                        /* JSON-RPC: version 1 or 2 */
  char *id;                           /* JSON-RPC: the call's id, as JSON
                                         text (a number or a string) */
};

/* XML-RPC (rpc.c), as xapi serves it at / and /RPC2. */
extern const struct xapi_rpc_codec xapi_rpc_xml;
/* JSON-RPC 1.0 and 2.0 (jsonrpc.c), as xapi serves it at /jsonrpc. */
extern const struct xapi_rpc_codec xapi_rpc_json;
/* xapi's /json takes XML-RPC; clients told "JSON-RPC at /json" send
 * JSON: this one decodes a body whose first non-blank byte is '{' or '['
 * as JSON-RPC, anything else as XML-RPC, and answers in kind. */
extern const struct xapi_rpc_codec xapi_rpc_sniff;

/* Decode BODY with CODEC (see struct xapi_rpc_codec).  Release RQ with
 * xapi_rpc_request_clear and FORM with xapi_rpc_form_clear. */
void xapi_rpc_decode_with (const struct xapi_rpc_codec *codec,
                           const void *body, size_t len,
                           struct xapi_rpc_request *rq,
                           struct xapi_rpc_form *form);
void xapi_rpc_request_clear (struct xapi_rpc_request *rq);
void xapi_rpc_form_clear (struct xapi_rpc_form *form);

/* The answer to FORM's call: REPLY encoded, or a failure. */
GBytes *xapi_rpc_answer (const struct xapi_rpc_form *form,
                         xmlrpc_value *reply);
GBytes *xapi_rpc_answer_failure (const struct xapi_rpc_form *form,
                                 const char *const *desc);

/* XML-RPC alone, as before there were two codecs: decode BODY; encode
 * REPLY; a failure.  (xapi_rpc_xml's functions.) */
void xapi_rpc_decode (const void *body, size_t len,
                      struct xapi_rpc_request *rq);
GBytes *xapi_rpc_encode (xmlrpc_value *reply);
GBytes *xapi_rpc_failure (const char *const *desc);

/* VALUE as the XML-RPC text xapi writes for it, "<value>...</value>"
 * (a task's result), or NULL and *WHY (g_free) if it cannot be written:
 * a string that is not valid UTF-8 or holds a character XML cannot
 * carry, a non-finite double, a type XenAPI has not. */
char *xapi_rpc_value_xml (xmlrpc_value *value, char **why);

/* A datetime as xapi writes it in both protocols (UTC, with the Z):
 * printf'd with an xmlrpc_datetime's Y, M, D, h, m, s. */
#define XAPI_RPC_DATETIME_FORMAT "%04u%02u%02uT%02u:%02u:%02uZ"

/* S (NULL: "") as valid UTF-8 holding only characters XML allows: the
 * others become U+FFFD.  g_free the result. */
char *xapi_rpc_clean_text (const char *s);

/* Is DATA (LEN bytes) valid UTF-8 holding only characters XML allows? */
bool xapi_rpc_xml_text (const char *data, size_t len);

/* The dispatcher: the wrapped reply ({Status, Value/ErrorDescription})
 * of METHOD(PARAMS), a new reference, or NULL with ENV faulted. */
typedef xmlrpc_value *xapi_rpc_dispatch_fn (void *opaque, xmlrpc_env *env,
                                            const char *method,
                                            xmlrpc_value *params);

/* Bytes in, reply bytes out: BODY decoded with CODEC, given to DISPATCH,
 * its reply encoded.  *STATUS and *CONTENT_TYPE say how to send it. */
GBytes *xapi_rpc_process_with (const struct xapi_rpc_codec *codec,
                               const void *body, size_t len,
                               xapi_rpc_dispatch_fn *dispatch, void *opaque,
                               unsigned *status, const char **content_type);
/* The same with XML-RPC. */
GBytes *xapi_rpc_process (const void *body, size_t len,
                          xapi_rpc_dispatch_fn *dispatch, void *opaque,
                          unsigned *status, const char **content_type);

#endif /* XAPI_RPC_H */
