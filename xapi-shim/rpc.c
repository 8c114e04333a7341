/* A request's way to its reply without sockets (rpc.h): decoding with
 * xmlrpc-decode.c, encoding with xmlrpc-c, and the failures in between.
 * Strings outside the Basic Multilingual Plane pass xmlrpc-c thanks to
 * common/xmlrpc-utf8.c. */

#include <string.h>

#include <glib.h>
#include <xmlrpc-c/base.h>
#include <xmlrpc-c/util.h>

#include "rpc.h"
#include "xmlrpc-decode.h"

/* Is DATA valid UTF-8 holding only characters XML allows? */
static bool
xml_text (const char *data, size_t len)
{
  return g_utf8_validate_len (data, len, NULL) && xapi_xml_utf8_ok (data, len);
}

char *
xapi_rpc_clean_text (const char *s)
{
  g_autofree char *valid = NULL;
  GString *out;

  if (s == NULL)
    return g_strdup ("");
  if (xml_text (s, strlen (s)))
    return g_strdup (s);
  valid = g_utf8_make_valid (s, -1);
  out = g_string_sized_new (strlen (valid));

  for (const char *p = valid; *p; p = g_utf8_next_char (p)) {
    gunichar u = g_utf8_get_char (p);

    g_string_append_unichar (out, xapi_xml_char (u) ? u : 0xfffd);
  }
  return g_string_free (out, FALSE);
}

/* Is the XML we made valid UTF-8 with only characters XML allows?
 * xmlrpc-c writes a string's bytes as they are. */
static const char *
check_xml (const char *data, size_t len)
{
  if (!g_utf8_validate_len (data, len, NULL))
    return "the reply is not valid UTF-8";
  if (!xapi_xml_utf8_ok (data, len))
    return "the reply holds a character XML cannot carry";
  return NULL;
}

/* xmlrpc-c's own form of {Status: "Failure", ErrorDescription:
 * ["INTERNAL_ERROR", "cannot encode the reply"]}, for when xmlrpc-c
 * cannot make even that (out of memory).  The unit test checks that it
 * is what xmlrpc-c writes. */
static const char canned_failure[]
    = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
      "<methodResponse>\r\n"
      "<params>\r\n"
      "<param><value><struct>\r\n"
      "<member><name>Status</name>\r\n"
      "<value><string>Failure</string></value></member>\r\n"
      "<member><name>ErrorDescription</name>\r\n"
      "<value><array><data>\r\n"
      "<value><string>INTERNAL_ERROR</string></value>\r\n"
      "<value><string>cannot encode the reply</string></value>\r\n"
      "</data></array></value></member>\r\n"
      "</struct></value></param>\r\n"
      "</params>\r\n"
      "</methodResponse>\r\n";

/* REPLY serialized, or NULL and *WHY (g_free). */
static GBytes *
serialize (xmlrpc_value *reply, char **why)
{
  xmlrpc_env env;
  xmlrpc_mem_block *out;
  GBytes *bytes = NULL;

  xmlrpc_env_init (&env);
  out = XMLRPC_MEMBLOCK_NEW (char, &env, 0);
  if (!env.fault_occurred) {
    xmlrpc_serialize_response (&env, out, reply);
    if (!env.fault_occurred) {
      const char *data = XMLRPC_MEMBLOCK_CONTENTS (char, out);
      size_t len = XMLRPC_MEMBLOCK_SIZE (char, out);
      const char *bad = check_xml (data, len);

      if (bad)
        *why = g_strdup (bad);
      else
        bytes = g_bytes_new (data, len);
    }
    XMLRPC_MEMBLOCK_FREE (char, out);
  }
  if (env.fault_occurred)
    *why = xapi_rpc_clean_text (env.fault_string);
  xmlrpc_env_clean (&env);
  return bytes;
}

GBytes *
xapi_rpc_failure (const char *const *desc)
{
  xmlrpc_env env;
  xmlrpc_value *reply, *array, *v;
  GBytes *bytes = NULL;
  g_autofree char *why = NULL;

  xmlrpc_env_init (&env);
  reply = xmlrpc_struct_new (&env);
  if (env.fault_occurred)
    goto out;
  v = xmlrpc_string_new (&env, "Failure");
  if (!env.fault_occurred) {
    xmlrpc_struct_set_value (&env, reply, "Status", v);
    xmlrpc_DECREF (v);
  }
  array = env.fault_occurred ? NULL : xmlrpc_array_new (&env);
  if (env.fault_occurred)
    array = NULL; /* xmlrpc-c may leave garbage there */
  for (size_t i = 0; !env.fault_occurred && desc[i]; i++) {
    g_autofree char *s = xapi_rpc_clean_text (desc[i]);

    v = xmlrpc_string_new (&env, s);
    if (!env.fault_occurred) {
      xmlrpc_array_append_item (&env, array, v);
      xmlrpc_DECREF (v);
    }
  }
  if (!env.fault_occurred)
    xmlrpc_struct_set_value (&env, reply, "ErrorDescription", array);
  if (array)
    xmlrpc_DECREF (array);
  if (!env.fault_occurred)
    bytes = serialize (reply, &why);
  xmlrpc_DECREF (reply);
out:
  xmlrpc_env_clean (&env);
  if (bytes == NULL)
    bytes = g_bytes_new_static (canned_failure, sizeof canned_failure - 1);
  return bytes;
}

GBytes *
xapi_rpc_encode (xmlrpc_value *reply)
{
  g_autofree char *why = NULL;
  g_autofree char *msg = NULL;
  GBytes *bytes = serialize (reply, &why);

  if (bytes)
    return bytes;
  msg = g_strdup_printf ("cannot encode the reply: %s", why);
  g_message ("%s", msg);
  return xapi_rpc_failure (
      (const char *const[]){ "INTERNAL_ERROR", msg, NULL });
}

void
xapi_rpc_decode (const void *body, size_t len, struct xapi_rpc_request *rq)
{
  struct xapi_decoded d;

  memset (rq, 0, sizeof *rq);
  switch (xapi_decode_call (body, len, &d)) {
  case XAPI_DECODE_OK:
    rq->method = g_steal_pointer (&d.method);
    rq->params = g_steal_pointer (&d.params);
    break;
  case XAPI_DECODE_MALFORMED:
    /* Not XML-RPC at all: the client's error, answered 400 rather than
     * with a reply the client might take for a XenAPI answer. */
    rq->status = 400;
    rq->content_type = "text/plain";
    rq->log = g_strdup_printf ("malformed XML-RPC request: %s", d.message);
    rq->answer = g_bytes_new_take (g_strconcat (rq->log, "\n", NULL),
                                   strlen (rq->log) + 1);
    break;
  case XAPI_DECODE_BAD_VALUE:
    rq->status = 200;
    rq->content_type = "text/xml";
    rq->log = g_strdup_printf ("XMLRPC_UNMARSHAL_FAILURE: expected %s, "
                               "received %s",
                               d.expected, d.received);
    rq->answer = xapi_rpc_failure ((const char *const[]){
        "XMLRPC_UNMARSHAL_FAILURE", d.expected, d.received, NULL });
    break;
  }
  xapi_decoded_clear (&d);
}

void
xapi_rpc_request_clear (struct xapi_rpc_request *rq)
{
  g_clear_pointer (&rq->method, g_free);
  g_clear_pointer (&rq->params, xmlrpc_DECREF);
  g_clear_pointer (&rq->answer, g_bytes_unref);
  g_clear_pointer (&rq->log, g_free);
}

GBytes *
xapi_rpc_process (const void *body, size_t len, xapi_rpc_dispatch_fn *dispatch,
                  void *opaque, unsigned *status, const char **content_type)
{
  struct xapi_rpc_request rq;
  xmlrpc_env env;
  xmlrpc_value *reply;
  GBytes *bytes;

  xapi_rpc_decode (body, len, &rq);
  if (rq.answer) {
    *status = rq.status;
    *content_type = rq.content_type;
    bytes = g_steal_pointer (&rq.answer);
    xapi_rpc_request_clear (&rq);
    return bytes;
  }
  *status = 200;
  *content_type = "text/xml";
  xmlrpc_env_init (&env);
  reply = dispatch (opaque, &env, rq.method, rq.params);
  xapi_rpc_request_clear (&rq);
  if (reply && !env.fault_occurred)
    bytes = xapi_rpc_encode (reply);
  else
    bytes = xapi_rpc_failure ((const char *const[]){
        "INTERNAL_ERROR", env.fault_occurred ? env.fault_string : "no reply",
        NULL });
  if (reply)
    xmlrpc_DECREF (reply);
  xmlrpc_env_clean (&env);
  return bytes;
}
