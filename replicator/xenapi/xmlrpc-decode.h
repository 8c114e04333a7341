/* Our own decoder of XML-RPC calls and responses (xmlrpc-c's parser is
 * used on neither): GLib's GMarkup reads the XML, and the values come out
 * as xmlrpc_value trees, for the daemon's dispatcher and for the XenAPI
 * clients (vdimotion, and a migration's source talking to its
 * destination), so that a hostile peer cannot crash either.
 *
 * What it accepts: one <methodCall> with a <methodName> and optionally
 * <params>, each <param> holding one <value> of XML-RPC's types: i4, int,
 * i8 (or ex:i8), boolean, double, dateTime.iso8601, base64, string (or
 * untyped text), struct, array, nil (or ex:nil).  Comments and processing
 * instructions (<?xml ...?>) are skipped; CDATA sections are text.
 *
 * What it refuses, and how:
 *
 *  XAPI_DECODE_MALFORMED (the HTTP layer answers 400): a body that is
 *   not well-formed XML; any document type declaration (<!DOCTYPE>), so
 *   no DTD is ever read and no entity but XML's five predefined ones and
 *   character references is ever expanded; elements out of XML-RPC's
 *   structure (an unknown element, a <member> without <name> or
 *   <value>, a second <methodName>, text between elements, ...).
 *
 *  XAPI_DECODE_BAD_VALUE (a XenAPI failure XMLRPC_UNMARSHAL_FAILURE
 *   (expected, received)): a well-formed call whose content is not
 *   acceptable: a value whose text is not of its type's form
 *   (<int>x</int>, <boolean>7</boolean>, an int out of 32 bits, bad
 *   base64, a date that does not exist), text that is not valid UTF-8 or
 *   holds characters XML 1.0 does not allow (NUL, most C0 controls, even
 *   as character references), values nested deeper than
 *   XAPI_DECODE_MAX_DEPTH or more than XAPI_DECODE_MAX_VALUES of them.
 *
 * The decoder stops at the first error.  It never recurses (the XML is
 * read with an explicit stack bounded by the depth limit), so its stack
 * use does not depend on the input, and its time and memory are linear
 * in the body's size.  It is safe to run in any thread: it shares
 * nothing. */
#ifndef XMLRPC_DECODE_H
#define XMLRPC_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xmlrpc-c/base.h>

/* Values nest at most this deep: a parameter is at depth 1, the members
 * or items of a struct or array at depth d are at depth d + 1. */
#define XAPI_DECODE_MAX_DEPTH 64
/* At most this many values in one call (each costs a few hundred bytes
 * once decoded, so this bounds what a request can make us hold). */
#define XAPI_DECODE_MAX_VALUES 100000

enum xapi_decode_status
{
  XAPI_DECODE_OK,
  XAPI_DECODE_MALFORMED,
  XAPI_DECODE_BAD_VALUE,
};

struct xapi_decoded
{
  /* XAPI_DECODE_OK: the call, or the response. */
  char *method;         /* g_free; NULL for a response */
  xmlrpc_value *params; /* an array; xmlrpc_DECREF.  A response's holds
                           its one value */
  bool fault;           /* a response that is a <fault> (its value is the
                           fault struct: faultCode, faultString) */
  /* XAPI_DECODE_MALFORMED: why (one line, ASCII or valid UTF-8).
   * XAPI_DECODE_BAD_VALUE: what was expected and what came, the two
   * parameters of XMLRPC_UNMARSHAL_FAILURE (valid UTF-8, short). */
  char *message;
  char *expected;
  char *received;
};

/* Is U a character XML 1.0 allows in text (its Char production)? */
static inline bool
xapi_xml_char (uint32_t u)
{
  return u == 0x9 || u == 0xa || u == 0xd || (u >= 0x20 && u <= 0xd7ff)
         || (u >= 0xe000 && u <= 0xfffd) || (u >= 0x10000 && u <= 0x10ffff);
}

/* Does S (LEN bytes of valid UTF-8) hold only characters XML allows?
 * Fast: most blocks of text are passed over in one vectorized scan. */
bool xapi_xml_utf8_ok (const char *s, size_t len);

/* Decode the call in BODY (LEN bytes; need not be NUL-terminated).  OUT
 * is filled in either way; release it with xapi_decoded_clear. */
enum xapi_decode_status xapi_decode_call (const char *body, size_t len,
                                          struct xapi_decoded *out);
/* Decode the response in BODY: one <methodResponse> holding <params>
 * with one <param>, or a <fault>; the same limits and errors as a call
 * (a response with other than one value is XAPI_DECODE_MALFORMED). */
enum xapi_decode_status xapi_decode_response (const char *body, size_t len,
                                              struct xapi_decoded *out);
void xapi_decoded_clear (struct xapi_decoded *d);

/* For a client: the one value of the response in BODY (a new reference),
 * or NULL and *WHY (g_free) saying what was wrong: "bad XML-RPC reply:
 * ..." for a reply that does not decode, "XML-RPC fault CODE: STRING"
 * for a fault. */
xmlrpc_value *xapi_response_value (const char *body, size_t len, char **why);

#endif /* XMLRPC_DECODE_H */
