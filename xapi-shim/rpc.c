/* A request's way to its reply without sockets (rpc.h), and the XML-RPC
 * codec: decoding with xmlrpc-decode.c, encoding here.
 *
 * Replies are written as xapi writes them (ocaml-rpc's Xmlrpc.to_string),
 * not as xmlrpc-c would: Xen Orchestra's parser keeps every blank
 * between tags as a node and chokes on it, and reads <string> tags as
 * nothing.  So:
 *   <?xml version="1.0"?><methodResponse><params><param>VALUE</param>
 *   </params></methodResponse>
 * (one line, no blank anywhere between tags, no newline at the end),
 * where a VALUE is
 *   string, and int64 (XMLRPC_TYPE_I8) as xapi sends them: <value>text</value>
 *   int32    <value><i4>5</i4></value>
 *   bool     <value><boolean>1</boolean></value>
 *   double   <value><double>%.16g</double></value>
 *   datetime <value><dateTime.iso8601>20261130T09:00:00Z</dateTime.iso8601>
 *            </value> (UTC, with xapi's Z)
 *   base64, nil, array (<array><data>...</data></array>), struct
 *            (<struct><member><name>k</name>VALUE</member>...</struct>).
 * Text escapes &, <, > and " as xapi does.  A string that is not valid
 * UTF-8 or holds a character XML 1.0 does not allow is not written: the
 * reply becomes INTERNAL_ERROR (xapi would drop the character; refusing
 * keeps a reply from silently saying something else).  Strings outside
 * the Basic Multilingual Plane pass xmlrpc-c thanks to
 * common/xmlrpc-utf8.c. */

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include <glib.h>
#include <xmlrpc-c/base.h>
#include <xmlrpc-c/util.h>

#include "rpc.h"
#include "xmlrpc-decode.h"

/* Values we build never nest deeper than the decoder lets a call's
 * (XAPI_DECODE_MAX_DEPTH) plus the reply's wrapping; a deeper one is a
 * bug, refused rather than followed down the stack. */
#define ENCODE_MAX_DEPTH (2 * XAPI_DECODE_MAX_DEPTH + 8)

bool
xapi_rpc_xml_text (const char *data, size_t len)
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
  if (xapi_rpc_xml_text (s, strlen (s)))
    return g_strdup (s);
  valid = g_utf8_make_valid (s, -1);
  out = g_string_sized_new (strlen (valid));

  for (const char *p = valid; *p; p = g_utf8_next_char (p)) {
    gunichar u = g_utf8_get_char (p);

    g_string_append_unichar (out, xapi_xml_char (u) ? u : 0xfffd);
  }
  return g_string_free (out, FALSE);
}

/* Append TEXT (LEN bytes, checked XML text) escaped as xapi escapes. */
static void
put_escaped (GString *out, const char *text, size_t len)
{
  size_t run = 0;

  for (size_t i = 0; i < len; i++) {
    const char *esc;

    switch (text[i]) {
    case '&': esc = "&amp;"; break;
    case '<': esc = "&lt;"; break;
    case '>': esc = "&gt;"; break;
    case '"': esc = "&quot;"; break;
    default: continue;
    }
    g_string_append_len (out, text + run, (gssize)(i - run));
    g_string_append (out, esc);
    run = i + 1;
  }
  g_string_append_len (out, text + run, (gssize)(len - run));
}

/* Append TEXT, or false and *WHY if XML cannot carry it. */
static bool
put_text (GString *out, const char *text, size_t len, char **why)
{
  if (!g_utf8_validate_len (text, len, NULL)) {
    *why = g_strdup ("the reply is not valid UTF-8");
    return false;
  }
  if (!xapi_xml_utf8_ok (text, len)) {
    *why = g_strdup ("the reply holds a character XML cannot carry");
    return false;
  }
  put_escaped (out, text, len);
  return true;
}

static bool put_value (GString *out, xmlrpc_env *env, xmlrpc_value *v,
                       int depth, char **why);

static bool
put_string (GString *out, xmlrpc_env *env, xmlrpc_value *v, char **why)
{
  const char *s = NULL;
  size_t len = 0;
  bool ok;

  xmlrpc_read_string_lp (env, v, &len, &s);
  if (env->fault_occurred)
    return false;
  g_string_append (out, "<value>");
  ok = put_text (out, s, len, why);
  g_string_append (out, "</value>");
  free ((void *)s);
  return ok;
}

static bool
put_double (GString *out, xmlrpc_env *env, xmlrpc_value *v, char **why)
{
  double d = 0;
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  xmlrpc_read_double (env, v, &d);
  if (env->fault_occurred)
    return false;
  if (!isfinite (d)) {
    *why = g_strdup ("the reply holds a number that is not finite");
    return false;
  }
  g_string_append_printf (out, "<value><double>%s</double></value>",
                          g_ascii_formatd (buf, sizeof buf, "%.16g", d));
  return true;
}

static bool
put_base64 (GString *out, xmlrpc_env *env, xmlrpc_value *v)
{
  const unsigned char *data = NULL;
  size_t len = 0;
  g_autofree char *b64 = NULL;

  xmlrpc_read_base64 (env, v, &len, &data);
  if (env->fault_occurred)
    return false;
  b64 = g_base64_encode (data, len);
  free ((void *)data);
  g_string_append_printf (out, "<value><base64>%s</base64></value>", b64);
  return true;
}

static bool
put_array (GString *out, xmlrpc_env *env, xmlrpc_value *v, int depth,
           char **why)
{
  int n = xmlrpc_array_size (env, v);

  g_string_append (out, "<value><array><data>");
  for (int i = 0; i < n && !env->fault_occurred; i++) {
    xmlrpc_value *item = NULL;

    item = xmlrpc_array_get_item (env, v, i); /* borrowed */
    if (!env->fault_occurred && !put_value (out, env, item, depth + 1, why))
      return false;
  }
  g_string_append (out, "</data></array></value>");
  return !env->fault_occurred;
}

static bool
put_struct (GString *out, xmlrpc_env *env, xmlrpc_value *v, int depth,
            char **why)
{
  int n = xmlrpc_struct_size (env, v);

  g_string_append (out, "<value><struct>");
  for (int i = 0; i < n && !env->fault_occurred; i++) {
    xmlrpc_value *k = NULL, *m = NULL;
    const char *name = NULL;
    size_t len = 0;
    bool ok;

    xmlrpc_struct_read_member (env, v, (unsigned)i, &k, &m);
    if (env->fault_occurred)
      break;
    xmlrpc_read_string_lp (env, k, &len, &name);
    ok = !env->fault_occurred;
    g_string_append (out, "<member><name>");
    ok = ok && put_text (out, name, len, why);
    g_string_append (out, "</name>");
    ok = ok && put_value (out, env, m, depth + 1, why);
    g_string_append (out, "</member>");
    free ((void *)name);
    xmlrpc_DECREF (k);
    xmlrpc_DECREF (m);
    if (!ok)
      return false;
  }
  g_string_append (out, "</struct></value>");
  return !env->fault_occurred;
}

/* Append V as xapi writes it (see the top of the file); false (and ENV
 * faulted or *WHY set) if it cannot be. */
static bool
put_value (GString *out, xmlrpc_env *env, xmlrpc_value *v, int depth,
           char **why)
{
  xmlrpc_int64 i8;
  xmlrpc_int32 i4;
  xmlrpc_bool b;
  xmlrpc_datetime dt;

  if (depth > ENCODE_MAX_DEPTH) {
    *why = g_strdup ("the reply nests too deep");
    return false;
  }
  switch (xmlrpc_value_type (v)) {
  case XMLRPC_TYPE_STRING: return put_string (out, env, v, why);
  case XMLRPC_TYPE_I8:
    xmlrpc_read_i8 (env, v, &i8);
    g_string_append_printf (out, "<value>%" PRId64 "</value>", (int64_t)i8);
    break;
  case XMLRPC_TYPE_INT:
    xmlrpc_read_int (env, v, &i4);
    g_string_append_printf (out, "<value><i4>%d</i4></value>", (int)i4);
    break;
  case XMLRPC_TYPE_BOOL:
    xmlrpc_read_bool (env, v, &b);
    g_string_append_printf (out, "<value><boolean>%d</boolean></value>",
                            b ? 1 : 0);
    break;
  case XMLRPC_TYPE_DOUBLE: return put_double (out, env, v, why);
  case XMLRPC_TYPE_DATETIME:
    xmlrpc_read_datetime (env, v, &dt);
    g_string_append_printf (
        out,
        "<value><dateTime.iso8601>" XAPI_RPC_DATETIME_FORMAT
        "</dateTime.iso8601></value>",
        dt.Y, dt.M, dt.D, dt.h, dt.m, dt.s);
    break;
  case XMLRPC_TYPE_BASE64: return put_base64 (out, env, v);
  case XMLRPC_TYPE_NIL: g_string_append (out, "<value><nil/></value>"); break;
  case XMLRPC_TYPE_ARRAY: return put_array (out, env, v, depth, why);
  case XMLRPC_TYPE_STRUCT: return put_struct (out, env, v, depth, why);
  default:
    *why = g_strdup ("the reply holds a value of a type XenAPI has not");
    return false;
  }
  return !env->fault_occurred;
}

/* V as XML, or NULL and *WHY. */
static GString *
value_xml (xmlrpc_value *v, char **why)
{
  GString *out = g_string_new (NULL);
  char *reason = NULL;
  xmlrpc_env env;

  xmlrpc_env_init (&env);
  if (!put_value (out, &env, v, 0, &reason) || env.fault_occurred) {
    *why = reason ? reason : xapi_rpc_clean_text (env.fault_string);
    g_string_free (out, TRUE);
    out = NULL;
  }
  xmlrpc_env_clean (&env);
  return out;
}

char *
xapi_rpc_value_xml (xmlrpc_value *value, char **why)
{
  GString *out = value_xml (value, why);

  return out ? g_string_free (out, FALSE) : NULL;
}

#define RESPONSE_HEAD "<?xml version=\"1.0\"?><methodResponse><params><param>"
#define RESPONSE_TAIL "</param></params></methodResponse>"

static GBytes *
response (GString *value)
{
  g_string_prepend (value, RESPONSE_HEAD);
  g_string_append (value, RESPONSE_TAIL);
  return g_string_free_to_bytes (value);
}

GBytes *
xapi_rpc_failure (const char *const *desc)
{
  GString *out = g_string_new (
      "<value><struct><member><name>Status</name><value>Failure</value>"
      "</member><member><name>ErrorDescription</name><value><array><data>");

  for (size_t i = 0; desc[i]; i++) {
    g_autofree char *s = xapi_rpc_clean_text (desc[i]);

    g_string_append (out, "<value>");
    put_escaped (out, s, strlen (s));
    g_string_append (out, "</value>");
  }
  g_string_append (out, "</data></array></value></member></struct></value>");
  return response (out);
}

GBytes *
xapi_rpc_encode (xmlrpc_value *reply)
{
  g_autofree char *why = NULL;
  g_autofree char *msg = NULL;
  GString *out = value_xml (reply, &why);

  if (out)
    return response (out);
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

static void
xml_decode (const void *body, size_t len, struct xapi_rpc_request *rq,
            struct xapi_rpc_form *form)
{
  memset (form, 0, sizeof *form);
  form->codec = &xapi_rpc_xml;
  xapi_rpc_decode (body, len, rq);
}

static GBytes *
xml_encode (const struct xapi_rpc_form *form, xmlrpc_value *reply)
{
  return xapi_rpc_encode (reply);
}

static GBytes *
xml_failure (const struct xapi_rpc_form *form, const char *const *desc)
{
  return xapi_rpc_failure (desc);
}

const struct xapi_rpc_codec xapi_rpc_xml = {
  .name = "XML-RPC",
  .content_type = "text/xml",
  .decode = xml_decode,
  .encode = xml_encode,
  .failure = xml_failure,
};

/* xapi_rpc_sniff: the codec is chosen by the body, and the decoded call
 * is answered through the one chosen (form->codec), never through this
 * one's encode, kept for a form that was never decoded. */
static void
sniff_decode (const void *body, size_t len, struct xapi_rpc_request *rq,
              struct xapi_rpc_form *form)
{
  const char *p = body, *end = p + (p ? len : 0);

  while (p < end && g_ascii_isspace (*p))
    p++;
  if (p < end && (*p == '{' || *p == '['))
    xapi_rpc_json.decode (body, len, rq, form);
  else
    xapi_rpc_xml.decode (body, len, rq, form);
}

const struct xapi_rpc_codec xapi_rpc_sniff = {
  .name = "XML-RPC or JSON-RPC",
  .content_type = "text/xml",
  .decode = sniff_decode,
  .encode = xml_encode,
  .failure = xml_failure,
};

void
xapi_rpc_decode_with (const struct xapi_rpc_codec *codec, const void *body,
                      size_t len, struct xapi_rpc_request *rq,
                      struct xapi_rpc_form *form)
{
  codec->decode (body, len, rq, form);
  g_assert (form->codec != NULL);
}

void
xapi_rpc_request_clear (struct xapi_rpc_request *rq)
{
  g_clear_pointer (&rq->method, g_free);
  g_clear_pointer (&rq->params, xmlrpc_DECREF);
  g_clear_pointer (&rq->answer, g_bytes_unref);
  g_clear_pointer (&rq->log, g_free);
}

void
xapi_rpc_form_clear (struct xapi_rpc_form *form)
{
  g_clear_pointer (&form->id, g_free);
}

GBytes *
xapi_rpc_answer (const struct xapi_rpc_form *form, xmlrpc_value *reply)
{
  return form->codec->encode (form, reply);
}

GBytes *
xapi_rpc_answer_failure (const struct xapi_rpc_form *form,
                         const char *const *desc)
{
  return form->codec->failure (form, desc);
}

GBytes *
xapi_rpc_process_with (const struct xapi_rpc_codec *codec, const void *body,
                       size_t len, xapi_rpc_dispatch_fn *dispatch,
                       void *opaque, unsigned *status,
                       const char **content_type)
{
  struct xapi_rpc_request rq;
  struct xapi_rpc_form form;
  xmlrpc_env env;
  xmlrpc_value *reply;
  GBytes *bytes;

  xapi_rpc_decode_with (codec, body, len, &rq, &form);
  if (rq.answer) {
    *status = rq.status;
    *content_type = rq.content_type;
    bytes = g_steal_pointer (&rq.answer);
    xapi_rpc_request_clear (&rq);
    xapi_rpc_form_clear (&form);
    return bytes;
  }
  *status = 200;
  *content_type = form.codec->content_type;
  xmlrpc_env_init (&env);
  reply = dispatch (opaque, &env, rq.method, rq.params);
  xapi_rpc_request_clear (&rq);
  if (reply && !env.fault_occurred)
    bytes = xapi_rpc_answer (&form, reply);
  else
    bytes = xapi_rpc_answer_failure (
        &form, (const char *const[]){
                   "INTERNAL_ERROR",
                   env.fault_occurred ? env.fault_string : "no reply", NULL });
  if (reply)
    xmlrpc_DECREF (reply);
  xmlrpc_env_clean (&env);
  xapi_rpc_form_clear (&form);
  return bytes;
}

GBytes *
xapi_rpc_process (const void *body, size_t len, xapi_rpc_dispatch_fn *dispatch,
                  void *opaque, unsigned *status, const char **content_type)
{
  return xapi_rpc_process_with (&xapi_rpc_xml, body, len, dispatch, opaque,
                                status, content_type);
}
