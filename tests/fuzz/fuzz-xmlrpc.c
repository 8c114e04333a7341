/* libFuzzer target: one XML-RPC request body through vdimotiond's
 * request → reply path (xapi-shim/rpc.h: our decoder, a dispatcher,
 * xmlrpc-c's encoder with our checks), without sockets or a daemon.
 *
 * The dispatcher echoes the decoded parameters back as the Value of a
 * XenAPI success, so that every tree the decoder builds is also encoded.
 * Checked on every input: no crash, leak or sanitizer report; the answer
 * is 200 text/xml or 400 text/plain; a 200 answer is a methodResponse in
 * valid UTF-8 holding only characters XML allows.
 *
 * Built by tests/fuzz/Makefile (make fuzz): xapi-shim/rpc.c,
 * replicator/xenapi/xmlrpc-decode.c and xmlrpc-utf8.c with this file,
 * -fsanitize=fuzzer,address,undefined, GLib's flags, and linked with
 * `pkg-config --libs glib-2.0` and `xmlrpc-c-config --libs` (libxmlrpc,
 * libxmlrpc_util; xmlrpc-c's parser is not used).  Seeds:
 * tests/fuzz/corpus/xmlrpc/.  Use -max_len=65536 or more so that deep
 * nesting is reached. */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <xmlrpc-c/base.h>

#include "rpc.h"
#include "xmlrpc-decode.h"

static xmlrpc_value *
echo (void *opaque, xmlrpc_env *env, const char *method, xmlrpc_value *params)
{
  xmlrpc_value *reply = xmlrpc_struct_new (env);
  xmlrpc_value *s;

  if (env->fault_occurred)
    return NULL;
  s = xmlrpc_string_new (env, "Success");
  if (env->fault_occurred) {
    xmlrpc_DECREF (reply);
    return NULL;
  }
  xmlrpc_struct_set_value (env, reply, "Status", s);
  xmlrpc_DECREF (s);
  xmlrpc_struct_set_value (env, reply, "Value", params);
  /* the method name goes back too, as a member name */
  if (!env->fault_occurred)
    xmlrpc_struct_set_value (env, reply, method, params);
  return reply;
}

static void
check_xml_text (const char *data, size_t len)
{
  const char *end = data + len;

  if (!g_utf8_validate_len (data, len, NULL))
    abort ();
  for (const char *p = data; p < end; p = g_utf8_next_char (p)) {
    gunichar u = g_utf8_get_char (p);

    if (!(u == 0x9 || u == 0xa || u == 0xd || (u >= 0x20 && u <= 0xd7ff)
          || (u >= 0xe000 && u <= 0xfffd) || (u >= 0x10000 && u <= 0x10ffff)))
      abort ();
  }
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  unsigned status = 0;
  const char *ctype = NULL;
  GBytes *out;
  gsize len;
  const char *reply;

  out = xapi_rpc_process (data, size, echo, NULL, &status, &ctype);
  reply = g_bytes_get_data (out, &len);
  if (status == 200) {
    if (strcmp (ctype, "text/xml") != 0)
      abort ();
    check_xml_text (reply, len);
    if (g_strstr_len (reply, (gssize)len, "<methodResponse>") == NULL)
      abort ();
  }
  else if (status != 400 || strcmp (ctype, "text/plain") != 0)
    abort ();
  g_bytes_unref (out);

  /* The same bytes as a reply to one of our clients: a value, or why
   * not; never both, never neither. */
  {
    char *why = NULL;
    xmlrpc_value *v = xapi_response_value ((const char *)data, size, &why);

    if ((v == NULL) == (why == NULL))
      abort ();
    if (why && !g_utf8_validate (why, -1, NULL))
      abort ();
    if (v)
      xmlrpc_DECREF (v);
    g_free (why);
  }
  return 0;
}
