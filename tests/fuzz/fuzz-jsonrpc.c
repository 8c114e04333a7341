/* libFuzzer target: one JSON-RPC request body through vdimotiond's
 * request → reply path (xapi-shim/rpc.h with the JSON-RPC codec,
 * jsonrpc.c: the bounding scan, json-glib's parser, the mapping both
 * ways), without sockets or a daemon; and the same body posted to /json
 * (rpc.h's xapi_rpc_sniff).
 *
 * The dispatcher echoes the decoded parameters back as the Value of a
 * XenAPI success, so that every tree the decoder builds is also encoded;
 * a method starting with "f" fails instead, with the method and the
 * parameters' strings as its ErrorDescription.  Checked on every input:
 * no crash, leak or sanitizer report; the answer is 200 application/json
 * (or text/xml from /json for a body that is not JSON) or 400
 * text/plain; a 200 JSON answer is one JSON object with an "id" and a
 * "result" or an "error", in valid UTF-8.
 *
 * Built by tests/fuzz/Makefile (make fuzz) with rpc.c, jsonrpc.c,
 * xmlrpc-decode.c and xmlrpc-utf8.c, json-glib and xmlrpc-c.  Seeds:
 * tests/fuzz/corpus/jsonrpc/; dictionary: tests/fuzz/jsonrpc.dict.  Use
 * -max_len=65536 or more so that deep nesting is reached. */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <xmlrpc-c/base.h>

#include "rpc.h"

static xmlrpc_value *
echo (void *opaque, xmlrpc_env *env, const char *method, xmlrpc_value *params)
{
  xmlrpc_value *reply, *desc;
  int n;

  if (method[0] != 'f')
    return xmlrpc_build_value (env, "{s:s,s:V}", "Status", "Success", "Value",
                               params);
  desc = xmlrpc_build_value (env, "(s)", method);
  /* On failure xmlrpc-c leaves DESC uninitialized: never touch it. */
  if (env->fault_occurred)
    return NULL;
  n = xmlrpc_array_size (env, params);
  for (int i = 0; i < n && !env->fault_occurred; i++) {
    xmlrpc_value *v = xmlrpc_array_get_item (env, params, i);

    if (!env->fault_occurred && xmlrpc_value_type (v) == XMLRPC_TYPE_STRING)
      xmlrpc_array_append_item (env, desc, v);
  }
  if (env->fault_occurred) {
    if (desc)
      xmlrpc_DECREF (desc);
    return NULL;
  }
  reply = xmlrpc_build_value (env, "{s:s,s:V}", "Status", "Failure",
                              "ErrorDescription", desc);
  xmlrpc_DECREF (desc);
  return reply;
}

static void
check_json_reply (const char *data, size_t len)
{
  g_autoptr (JsonParser) p = json_parser_new_immutable ();
  JsonObject *o;

  if (!g_utf8_validate_len (data, len, NULL) || memchr (data, 0, len))
    abort ();
  if (!json_parser_load_from_data (p, data, (gssize)len, NULL))
    abort ();
  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
    abort ();
  o = json_node_get_object (json_parser_get_root (p));
  if (!json_object_has_member (o, "id")
      || !(json_object_has_member (o, "result")
           || json_object_has_member (o, "error")))
    abort ();
}

static void
run (const struct xapi_rpc_codec *codec, const uint8_t *data, size_t size)
{
  unsigned status = 0;
  const char *ctype = NULL;
  gsize len;
  GBytes *out
      = xapi_rpc_process_with (codec, data, size, echo, NULL, &status, &ctype);
  const char *reply = g_bytes_get_data (out, &len);

  if (status == 200 && strcmp (ctype, "application/json") == 0)
    check_json_reply (reply, len);
  else if (status == 200 && codec == &xapi_rpc_sniff
           && strcmp (ctype, "text/xml") == 0) {
    if (g_strstr_len (reply, (gssize)len, "<methodResponse>") == NULL)
      abort ();
  }
  else if (status != 400 || strcmp (ctype, "text/plain") != 0)
    abort ();
  g_bytes_unref (out);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  run (&xapi_rpc_json, data, size);
  run (&xapi_rpc_sniff, data, size);
  return 0;
}
