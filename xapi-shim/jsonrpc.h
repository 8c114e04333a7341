/* JSON-RPC for XenAPI (the codec is rpc.h's xapi_rpc_json): xapi's JSON
 * mapping of XenAPI's values, both ways, between json-glib's nodes and
 * the dispatcher's xmlrpc_value trees.
 *
 * In (a call's parameters), as xapi reads them:
 *   integer → int64 (XMLRPC_TYPE_I8), number with a fraction or an
 *   exponent → double, string → string (refs, enums, datetimes, and ints
 *   sent as strings, are strings in JSON too), true/false → bool, null →
 *   nil, array → array, object → struct.
 * Out (a reply):
 *   string → string, int64 and int32 → integer, double → number, bool,
 *   datetime → "20261130T09:00:00Z" (a string, as xapi writes it),
 *   base64 → its base64 text, nil → null, array, struct → object.
 *
 * Bounded like the XML-RPC decoder (xmlrpc-decode.h): a call's values
 * nest at most XAPI_DECODE_MAX_DEPTH deep and number at most
 * XAPI_DECODE_MAX_VALUES, and text holds only characters XML allows (what
 * a JSON client stores must be readable by XML-RPC clients too). */
#ifndef XAPI_JSONRPC_H
#define XAPI_JSONRPC_H

#include <json-glib/json-glib.h>
#include <xmlrpc-c/base.h>

/* A JSON value of a call's parameters: NODE at depth DEPTH (a parameter
 * is at depth 1) as a new xmlrpc_value.  *VALUES counts the values made
 * (start it at 0 for a call).  On a value XenAPI cannot take, NULL and
 * *EXPECTED and *RECEIVED (g_free), the parameters of
 * XMLRPC_UNMARSHAL_FAILURE, as the XML-RPC decoder gives them.  Any
 * thread. */
xmlrpc_value *xapi_json_to_value (JsonNode *node, int depth, size_t *values,
                                  char **expected, char **received);

/* V as a new JSON node, or NULL and *WHY (g_free) if JSON cannot carry
 * it (a string that is not valid UTF-8 or holds NUL, a number that is
 * not finite, a type XenAPI has not).  Any thread, as long as no other
 * thread touches V. */
JsonNode *xapi_value_to_json (xmlrpc_value *v, char **why);

#endif /* XAPI_JSONRPC_H */
