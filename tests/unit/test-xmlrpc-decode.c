/* Unit tests of the XML-RPC request decoder (xmlrpc-decode.h) and of the
 * request → reply path (rpc.h): every XML-RPC type decodes, values of the
 * wrong form are XMLRPC_UNMARSHAL_FAILURE, non-XML-RPC is MALFORMED, deep
 * nesting, DTDs and entity bombs are refused at once, any valid UTF-8
 * (emoji too) round-trips, and a reply that cannot be encoded becomes
 * INTERNAL_ERROR. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <xmlrpc-c/base.h>

#include "rpc.h"
#include "unit.h"
#include "xmlrpc-decode.h"
#include "xmlrpc-utf8.h"

#define CALL(params)                                                          \
  "<?xml "                                                                    \
  "version='1.0'?><methodCall><methodName>m</methodName><params>" params      \
  "</params></methodCall>"
#define PARAM(v) "<param><value>" v "</value></param>"

static enum xapi_decode_status
decode (const char *body, struct xapi_decoded *d)
{
  return xapi_decode_call (body, strlen (body), d);
}

/* The first parameter of a call that must decode. */
static xmlrpc_value *
first_param (const char *body)
{
  struct xapi_decoded d;
  xmlrpc_env env;
  xmlrpc_value *v = NULL;

  CU_ASSERT_EQUAL_FATAL (decode (body, &d), XAPI_DECODE_OK);
  xmlrpc_env_init (&env);
  xmlrpc_array_read_item (&env, d.params, 0, &v);
  CU_ASSERT_FALSE_FATAL (env.fault_occurred);
  xmlrpc_env_clean (&env);
  xapi_decoded_clear (&d);
  return v;
}

static void
expect (const char *body, enum xapi_decode_status want)
{
  struct xapi_decoded d;
  enum xapi_decode_status got = decode (body, &d);

  if (got != want)
    fprintf (stderr, "%.80s: %d, wanted %d (%s / %s / %s)\n", body, got, want,
             d.message, d.expected, d.received);
  CU_ASSERT_EQUAL (got, want);
  if (got == XAPI_DECODE_BAD_VALUE) {
    CU_ASSERT_PTR_NOT_NULL (d.expected);
    CU_ASSERT_PTR_NOT_NULL (d.received);
    CU_ASSERT_TRUE (g_utf8_validate (d.received, -1, NULL));
  }
  if (got == XAPI_DECODE_MALFORMED)
    CU_ASSERT_PTR_NOT_NULL (d.message);
  if (got != XAPI_DECODE_OK) {
    CU_ASSERT_PTR_NULL (d.method);
    CU_ASSERT_PTR_NULL (d.params);
  }
  xapi_decoded_clear (&d);
}

static void
test_types (void)
{
  xmlrpc_env env;
  xmlrpc_value *v;
  struct xapi_decoded d;
  int i;
  long long i8;
  xmlrpc_bool b;
  double dbl;
  const char *s;
  size_t len;
  const unsigned char *bytes;
  xmlrpc_datetime dt;

  xmlrpc_env_init (&env);
  CU_ASSERT_EQUAL (
      decode (CALL (PARAM ("<int>-42</int>") PARAM ("<i4> 7 </i4>")), &d),
      XAPI_DECODE_OK);
  CU_ASSERT_STRING_EQUAL (d.method, "m");
  CU_ASSERT_EQUAL (xmlrpc_array_size (&env, d.params), 2);
  xapi_decoded_clear (&d);

  v = first_param (CALL (PARAM ("<int>-2147483648</int>")));
  xmlrpc_read_int (&env, v, &i);
  CU_ASSERT_EQUAL (i, INT32_MIN);
  xmlrpc_DECREF (v);
  v = first_param (CALL (PARAM ("<i8>-9223372036854775808</i8>")));
  xmlrpc_read_i8 (&env, v, &i8);
  CU_ASSERT_EQUAL (i8, INT64_MIN);
  xmlrpc_DECREF (v);
  v = first_param (CALL (PARAM ("<ex:i8>9223372036854775807</ex:i8>")));
  xmlrpc_read_i8 (&env, v, &i8);
  CU_ASSERT_EQUAL (i8, INT64_MAX);
  xmlrpc_DECREF (v);
  v = first_param (CALL (PARAM ("<boolean>1</boolean>")));
  xmlrpc_read_bool (&env, v, &b);
  CU_ASSERT_TRUE (b);
  xmlrpc_DECREF (v);
  v = first_param (CALL (PARAM ("<double>-1.5e3</double>")));
  xmlrpc_read_double (&env, v, &dbl);
  CU_ASSERT_EQUAL (dbl, -1500.0);
  xmlrpc_DECREF (v);
  v = first_param (CALL (PARAM ("<base64>aGVs\nbG8=</base64>")));
  xmlrpc_read_base64 (&env, v, &len, &bytes);
  CU_ASSERT_EQUAL (len, 5);
  CU_ASSERT_EQUAL (memcmp (bytes, "hello", 5), 0);
  free ((void *)bytes);
  xmlrpc_DECREF (v);
  v = first_param (CALL (PARAM ("<dateTime.iso8601>20240229T23:59:58Z"
                                "</dateTime.iso8601>")));
  xmlrpc_read_datetime (&env, v, &dt);
  CU_ASSERT_FALSE (env.fault_occurred);
  CU_ASSERT_EQUAL (dt.Y, 2024);
  CU_ASSERT_EQUAL (dt.D, 29);
  xmlrpc_DECREF (v);
  v = first_param (CALL (PARAM ("<nil/>")));
  CU_ASSERT_EQUAL (xmlrpc_value_type (v), XMLRPC_TYPE_NIL);
  xmlrpc_DECREF (v);
  /* untyped text is a string, blanks kept; entities and CDATA */
  v = first_param (
      CALL (PARAM (" a &lt;b&gt; &amp;&#x1F600;<![CDATA[<c>]]> ")));
  xmlrpc_read_string (&env, v, &s);
  CU_ASSERT_STRING_EQUAL (s, " a <b> &\xf0\x9f\x98\x80<c> ");
  free ((void *)s);
  xmlrpc_DECREF (v);
  /* CR LF in the text is LF (XML), a CR sent as &#13; stays */
  v = first_param (CALL (PARAM ("<string>a\r\nb\rc&#13;</string>")));
  xmlrpc_read_string_lp (&env, v, &len, &s);
  CU_ASSERT_EQUAL (len, 6);
  CU_ASSERT_EQUAL (memcmp (s, "a\nb\nc\r", 6), 0);
  free ((void *)s);
  xmlrpc_DECREF (v);
  /* struct, array, comments between elements */
  v = first_param (CALL (PARAM (
      "<struct><!-- c --><member><name>k\xe4\xb8\xad</name><value><array>"
      "<data><value>x</value><value><int>1</int></value></data></array>"
      "</value></member><member><name>e</name><value><struct/></value>"
      "</member></struct>")));
  CU_ASSERT_EQUAL (xmlrpc_value_type (v), XMLRPC_TYPE_STRUCT);
  CU_ASSERT_EQUAL (xmlrpc_struct_size (&env, v), 2);
  CU_ASSERT_TRUE (xmlrpc_struct_has_key (&env, v, "k\xe4\xb8\xad"));
  xmlrpc_DECREF (v);
  /* no params at all */
  CU_ASSERT_EQUAL (decode ("<methodCall><methodName>a.b</methodName>"
                           "</methodCall>",
                           &d),
                   XAPI_DECODE_OK);
  CU_ASSERT_EQUAL (xmlrpc_array_size (&env, d.params), 0);
  xapi_decoded_clear (&d);
  CU_ASSERT_FALSE (env.fault_occurred);
  xmlrpc_env_clean (&env);
}

static void
test_bad_values (void)
{
  static const char *const bad[] = {
    CALL (PARAM ("<int>x</int>")),
    CALL (PARAM ("<int></int>")),
    CALL (PARAM ("<int>2147483648</int>")),
    CALL (PARAM ("<int>-2147483649</int>")),
    CALL (PARAM ("<int>1.0</int>")),
    CALL (PARAM ("<i4>0x10</i4>")),
    CALL (PARAM ("<i8>A</i8>")),
    CALL (PARAM ("<i8>9223372036854775808</i8>")),
    CALL (PARAM ("<boolean>7</boolean>")),
    CALL (PARAM ("<boolean>true</boolean>")),
    CALL (PARAM ("<double>nan</double>")),
    CALL (PARAM ("<double>1e999</double>")),
    CALL (PARAM ("<double>0x1p3</double>")),
    CALL (PARAM ("<double>.</double>")),
    CALL (PARAM ("<base64>!!!!</base64>")),
    CALL (PARAM ("<base64>abc</base64>")),
    CALL (PARAM ("<base64>a=bc</base64>")),
    CALL (PARAM ("<dateTime.iso8601>yesterday</dateTime.iso8601>")),
    CALL (PARAM ("<dateTime.iso8601>20230229T00:00:00</dateTime.iso8601>")),
    CALL (PARAM ("<dateTime.iso8601>20231301T00:00:00</dateTime.iso8601>")),
    CALL (PARAM ("<dateTime.iso8601>20231201T24:00:00</dateTime.iso8601>")),
    CALL (PARAM ("<string>\xff\xfe</string>")),
    CALL (PARAM ("<string>a\xed\xa0\x80</string>")), /* a surrogate */
    CALL (PARAM ("<string>\x01</string>")),
    CALL (PARAM ("<string>&#1;</string>")),
    "<methodCall><methodName>\xc0\xaf</methodName></methodCall>",
  };

  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++)
    expect (bad[i], XAPI_DECODE_BAD_VALUE);
}

static void
test_malformed (void)
{
  static const char *const bad[] = {
    "",
    "not xml at all",
    "<methodCall><methodName>x",
    "<?xml version='1.0'?><methodCall></methodCall>",
    "<methodCall><methodName>x</methodName><methodName>y</methodName>"
    "</methodCall>",
    "<methodResponse><params/></methodResponse>",
    "<methodCall><methodName>x</methodName></methodCall><methodCall/>",
    CALL (PARAM ("<struct><member><name>a</name></member></struct>")),
    CALL (PARAM ("<struct><member><value>a</value></member></struct>")),
    CALL (PARAM ("<array></array>")),
    CALL (PARAM ("<foo>1</foo>")),
    CALL (PARAM ("<int>1</int><int>2</int>")),
    CALL (PARAM ("text<int>1</int>")),
    CALL ("<param><value>a</value><value>b</value></param>"),
    CALL ("<param>text</param>"),
    CALL (PARAM ("<int><b>1</b></int>")),
    CALL (PARAM ("<string>&lol;</string>")),
    CALL (PARAM ("<string>&#xFFFE;</string>")), /* GMarkup refuses it */
    "<methodCall>" CALL ("") "</methodCall>",
    "<!DOCTYPE methodCall [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
    "<methodCall><methodName>&x;</methodName></methodCall>",
  };

  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++)
    expect (bad[i], XAPI_DECODE_MALFORMED);
}

/* The "billion laughs": refused for its DTD, before any expansion. */
static void
test_entity_bomb (void)
{
  GString *b = g_string_new ("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n"
                             " <!ENTITY lol \"lol\">\n");

  for (int i = 1; i <= 9; i++) {
    g_string_append_printf (b, " <!ENTITY lol%d \"", i);
    for (int j = 0; j < 10; j++)
      g_string_append_printf (b, i == 1 ? "&lol;" : "&lol%d;", i - 1);
    g_string_append (b, "\">\n");
  }
  g_string_append (b, "]>\n<methodCall><methodName>&lol9;</methodName>"
                      "</methodCall>\n");
  expect (b->str, XAPI_DECODE_MALFORMED);
  g_string_free (b, TRUE);
}

static GString *
nested (const char *open, const char *close, int n, const char *inner)
{
  GString *b = g_string_new ("<methodCall><methodName>x</methodName>"
                             "<params><param>");

  for (int i = 0; i < n; i++)
    g_string_append (b, open);
  g_string_append (b, inner);
  for (int i = 0; i < n; i++)
    g_string_append (b, close);
  g_string_append (b, "</param></params></methodCall>");
  return b;
}

static void
test_depth (void)
{
  GString *b;
  gint64 t0 = g_get_monotonic_time ();

  /* 64 values deep: fine; 65: refused */
  b = nested ("<value><array><data>", "</data></array></value>", 63,
              "<value>x</value>");
  expect (b->str, XAPI_DECODE_OK);
  g_string_free (b, TRUE);
  b = nested ("<value><array><data>", "</data></array></value>", 64,
              "<value>x</value>");
  expect (b->str, XAPI_DECODE_BAD_VALUE);
  g_string_free (b, TRUE);
  b = nested ("<value><struct><member><name>a</name>",
              "</member></struct></value>", 64, "<value>x</value>");
  expect (b->str, XAPI_DECODE_BAD_VALUE);
  g_string_free (b, TRUE);
  /* 200,000 arrays (5 MB): refused at depth 65, quickly */
  b = nested ("<value><array><data>", "</data></array></value>", 200000,
              "<value>x</value>");
  expect (b->str, XAPI_DECODE_BAD_VALUE);
  g_string_free (b, TRUE);
  CU_ASSERT_TRUE (g_get_monotonic_time () - t0 < 5 * G_USEC_PER_SEC);
}

static void
test_too_many_values (void)
{
  GString *b = g_string_new (
      "<methodCall><methodName>x</methodName><params><param><value><array>"
      "<data>");

  for (int i = 0; i < XAPI_DECODE_MAX_VALUES; i++)
    g_string_append (b, "<value/>");
  g_string_append (b, "</data></array></value></param></params>"
                      "</methodCall>");
  expect (b->str, XAPI_DECODE_BAD_VALUE);
  g_string_free (b, TRUE);
}

/* A dispatcher that answers {Status: Success, Value: params}. */
static xmlrpc_value *
echo (void *opaque, xmlrpc_env *env, const char *method, xmlrpc_value *params)
{
  xmlrpc_value *reply = xmlrpc_struct_new (env);
  xmlrpc_value *s = xmlrpc_string_new (env, "Success");

  xmlrpc_struct_set_value (env, reply, "Status", s);
  xmlrpc_DECREF (s);
  xmlrpc_struct_set_value (env, reply, "Value", params);
  return reply;
}

static void
test_round_trip (void)
{
  static const char *const texts[] = {
    "plain",
    "\xf0\x9f\x98\x80 emoji",
    "\xe4\xb8\xad\xe6\x96\x87 CJK",
    "mixed \xf0\x9f\x8e\x89\xe6\x97\xa5\xe6\x9c\xac <&> \xf4\x8f\xbf\xbd",
  };

  CU_ASSERT_TRUE (xmlrpc_full_unicode ());
  for (size_t i = 0; i < G_N_ELEMENTS (texts); i++) {
    g_autofree char *escaped = g_markup_escape_text (texts[i], -1);
    g_autofree char *body = g_strdup_printf (
        CALL (PARAM ("<string>%s</string>") PARAM ("%s")), escaped, escaped);
    unsigned status;
    const char *ctype;
    GBytes *out
        = xapi_rpc_process (body, strlen (body), echo, NULL, &status, &ctype);
    gsize len;
    const char *data = g_bytes_get_data (out, &len);
    g_autofree char *text = g_strndup (data, len);

    CU_ASSERT_EQUAL (status, 200);
    CU_ASSERT_STRING_EQUAL (ctype, "text/xml");
    CU_ASSERT_PTR_NOT_NULL (strstr (text, "Success"));
    /* escaped as xapi escapes: <, >, & and " */
    CU_ASSERT_PTR_NOT_NULL (strstr (text, escaped));
    g_bytes_unref (out);
  }
}

static void
test_process_failures (void)
{
  unsigned status;
  const char *ctype;
  GBytes *out;
  const char *body = CALL (PARAM ("<i8>A</i8>"));

  out = xapi_rpc_process (body, strlen (body), echo, NULL, &status, &ctype);
  CU_ASSERT_EQUAL (status, 200);
  CU_ASSERT_PTR_NOT_NULL (g_strstr_len (g_bytes_get_data (out, NULL),
                                        (gssize)g_bytes_get_size (out),
                                        "XMLRPC_UNMARSHAL_FAILURE"));
  g_bytes_unref (out);
  out = xapi_rpc_process (NULL, 0, echo, NULL, &status, &ctype);
  CU_ASSERT_EQUAL (status, 400);
  g_bytes_unref (out);
  out = xapi_rpc_process ("<x", 2, echo, NULL, &status, &ctype);
  CU_ASSERT_EQUAL (status, 400);
  CU_ASSERT_STRING_EQUAL (ctype, "text/plain");
  g_bytes_unref (out);
}

/* A reply xmlrpc-c can build but XML cannot carry (a C0 control), and one
 * it cannot build: INTERNAL_ERROR either way. */
static void
test_unencodable (void)
{
  xmlrpc_env env;
  xmlrpc_value *reply;
  GBytes *out;
  const char *data;
  gsize len;
  const char *desc[] = { "CODE", "bad \xff byte \x01", NULL };

  xmlrpc_env_init (&env);
  reply = xmlrpc_build_value (&env, "{s:s,s:s}", "Status", "Success", "Value",
                              "ctl \x01");
  CU_ASSERT_FALSE_FATAL (env.fault_occurred);
  out = xapi_rpc_encode (reply);
  data = g_bytes_get_data (out, &len);
  CU_ASSERT_PTR_NOT_NULL (g_strstr_len (data, (gssize)len, "INTERNAL_ERROR"));
  CU_ASSERT_PTR_NULL (g_strstr_len (data, (gssize)len, "\x01"));
  g_bytes_unref (out);
  xmlrpc_DECREF (reply);
  reply = xmlrpc_i8_new (&env, 1);
  xmlrpc_DECREF (reply);

  {
    g_autofree char *t = xapi_rpc_clean_text ("a\x01\xef\xbf\xbf\xff"
                                              "b\xf0\x9f\x98\x80");

    CU_ASSERT_STRING_EQUAL (t, "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                               "b\xf0\x9f\x98\x80");
  }
  /* failure parameters are cleaned, never refused */
  out = xapi_rpc_failure (desc);
  data = g_bytes_get_data (out, &len);
  CU_ASSERT_TRUE (g_utf8_validate_len (data, len, NULL));
  CU_ASSERT_PTR_NOT_NULL (g_strstr_len (data, (gssize)len, "CODE"));
  g_bytes_unref (out);
  xmlrpc_env_clean (&env);
}

/* Replies are xapi's bytes (research: ocaml-rpc's Xmlrpc.to_string), which
 * Xen Orchestra's parser needs: no blank between tags, not even after
 * the prolog; strings bare, "" as <value></value>; int64 as a string;
 * dateTime with xapi's Z. */
static void
test_xapi_bytes (void)
{
  static const char failure[]
      = "<?xml version=\"1.0\"?><methodResponse><params><param><value>"
        "<struct><member><name>Status</name><value>Failure</value></member>"
        "<member><name>ErrorDescription</name><value><array><data><value>"
        "SESSION_INVALID</value><value>OpaqueRef:x</value></data></array>"
        "</value></member></struct></value></param></params>"
        "</methodResponse>";
  static const char success[]
      = "<?xml version=\"1.0\"?><methodResponse><params><param><value>"
        "<struct><member><name>Status</name><value>Success</value></member>"
        "<member><name>Value</name><value><struct>"
        "<member><name>s</name><value>a&lt;&amp;&gt;&quot;'</value></member>"
        "<member><name>e</name><value></value></member>"
        "<member><name>i8</name><value>-9223372036854775808</value></member>"
        "<member><name>i4</name><value><i4>5</i4></value></member>"
        "<member><name>b</name><value><boolean>1</boolean></value></member>"
        "<member><name>d</name><value><double>60.1</double></value></member>"
        "<member><name>t</name><value><dateTime.iso8601>20261130T09:00:00Z"
        "</dateTime.iso8601></value></member>"
        "<member><name>a</name><value><array><data></data></array></value>"
        "</member>"
        "<member><name>m</name><value><struct></struct></value></member>"
        "<member><name>n</name><value><nil/></value></member>"
        "<member><name>b64</name><value><base64>AAE=</base64></value>"
        "</member>"
        "</struct></value></member></struct></value></param></params>"
        "</methodResponse>";
  const char *desc[] = { "SESSION_INVALID", "OpaqueRef:x", NULL };
  xmlrpc_env env;
  xmlrpc_value *reply, *value, *t;
  xmlrpc_datetime dt = { .Y = 2026, .M = 11, .D = 30, .h = 9 };
  GBytes *out = xapi_rpc_failure (desc);
  gsize len;
  const char *data = g_bytes_get_data (out, &len);

  CU_ASSERT_EQUAL (len, strlen (failure));
  CU_ASSERT_NSTRING_EQUAL (data, failure, len);
  g_bytes_unref (out);

  xmlrpc_env_init (&env);
  value = xmlrpc_build_value (&env,
                              "{s:s,s:s,s:I,s:i,s:b,s:d,s:t,s:(),s:{},"
                              "s:n,s:6}",
                              "s", "a<&>\"'", "e", "", "i8", INT64_MIN, "i4",
                              5, "b", 1, "d", 60.1, "t", (time_t)0, "a", "m",
                              "n", "b64", "\0\1", (size_t)2);
  CU_ASSERT_FALSE_FATAL (env.fault_occurred);
  /* the datetime as xmlrpc-c keeps it, to the second */
  t = xmlrpc_datetime_new (&env, dt);
  xmlrpc_struct_set_value (&env, value, "t", t);
  xmlrpc_DECREF (t);
  reply = xmlrpc_build_value (&env, "{s:s,s:V}", "Status", "Success", "Value",
                              value);
  CU_ASSERT_FALSE_FATAL (env.fault_occurred);
  out = xapi_rpc_encode (reply);
  data = g_bytes_get_data (out, &len);
  if (len != strlen (success) || memcmp (data, success, len) != 0)
    fprintf (stderr, "got:  %.*s\nwant: %s\n", (int)len, data, success);
  CU_ASSERT_EQUAL (len, strlen (success));
  CU_ASSERT_NSTRING_EQUAL (data, success, len);
  g_bytes_unref (out);
  xmlrpc_DECREF (reply);
  xmlrpc_DECREF (value);
  xmlrpc_env_clean (&env);
}

/* The override of xmlrpc-c's UTF-8 check: all of Unicode, nothing else. */
static void
test_utf8_check (void)
{
  static const struct
  {
    const char *s;
    bool ok;
  } cases[] = {
    { "", true },
    { "\xf0\x9f\x98\x80", true },
    { "\xf4\x8f\xbf\xbf", true },
    { "\xf4\x90\x80\x80", false }, /* > U+10FFFF */
    { "\xed\xa0\x80", false },     /* surrogate */
    { "\xc0\xaf", false },         /* overlong */
    { "\xf0\x9f\x98", false },     /* truncated */
    { "\xff", false },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    xmlrpc_env env;

    xmlrpc_env_init (&env);
    xmlrpc_validate_utf8 (&env, cases[i].s, strlen (cases[i].s));
    CU_ASSERT_EQUAL (!env.fault_occurred, cases[i].ok);
    xmlrpc_env_clean (&env);
  }
}

/* Responses, as our clients read them: one value, a fault, and the same
 * refusals as a call (xmlrpc-c's parser crashed on <i8>A</i8>). */
static void
test_responses (void)
{
  static const char ok[]
      = "<?xml version='1.0'?><methodResponse><params><param><value><struct>"
        "<member><name>Status</name><value>Success</value></member>"
        "<member><name>Value</name><value><string>\xf0\x9f\x98\x80"
        "</string></value></member></struct></value></param></params>"
        "</methodResponse>";
  static const char fault[]
      = "<methodResponse><fault><value><struct><member><name>faultCode"
        "</name><value><int>-501</int></value></member><member><name>"
        "faultString</name><value>no such method</value></member></struct>"
        "</value></fault></methodResponse>";
  const char *bad[] = {
    "<methodResponse><params><param><value><i8>A</i8></value></param>"
    "</params></methodResponse>",
    "<methodResponse><params></params></methodResponse>",
    "<methodResponse><params><param><value>1</value></param><param><value>"
    "2</value></param></params></methodResponse>",
    "<methodResponse></methodResponse>",
    "<methodCall><methodName>x</methodName></methodCall>",
    "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><methodResponse/>",
    "",
  };
  char *why = NULL;
  xmlrpc_value *v = xapi_response_value (ok, strlen (ok), &why);
  xmlrpc_env env;

  xmlrpc_env_init (&env);
  CU_ASSERT_FATAL (v != NULL && why == NULL);
  CU_ASSERT_EQUAL (xmlrpc_value_type (v), XMLRPC_TYPE_STRUCT);
  xmlrpc_DECREF (v);

  v = xapi_response_value (fault, strlen (fault), &why);
  CU_ASSERT (v == NULL);
  CU_ASSERT_STRING_EQUAL (why, "XML-RPC fault -501: no such method");
  g_free (why);

  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
    v = xapi_response_value (bad[i], strlen (bad[i]), &why);
    CU_ASSERT (v == NULL);
    CU_ASSERT (why != NULL && g_str_has_prefix (why, "bad XML-RPC reply: "));
    g_free (why);
  }
  xmlrpc_env_clean (&env);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "types", test_types },
    { "responses", test_responses },
    { "bad values", test_bad_values },
    { "malformed", test_malformed },
    { "entity bomb", test_entity_bomb },
    { "depth", test_depth },
    { "too many values", test_too_many_values },
    { "round trip", test_round_trip },
    { "process failures", test_process_failures },
    { "unencodable replies", test_unencodable },
    { "xapi's bytes", test_xapi_bytes },
    { "utf-8 check", test_utf8_check },
    { NULL, NULL },
  };

  (void)unit_path;
  return unit_main ("xmlrpc-decode", tests);
}
