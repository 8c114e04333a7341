/* Unit tests of the JSON-RPC codec (jsonrpc.h, rpc.h): a call of each
 * version decodes to the dispatcher's parameters with xapi's types; the
 * replies are xapi's bytes (1.0 and 2.0, success and failure, the id
 * echoed as it came); what is not a JSON-RPC call is 400 at once, however
 * deep or long; values XenAPI cannot take are XMLRPC_UNMARSHAL_FAILURE
 * with the call's id; /json's sniffing answers each protocol in kind. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <xmlrpc-c/base.h>

#include "jsonrpc.h"
#include "rpc.h"
#include "unit.h"
#include "xmlrpc-decode.h"
#include "xmlrpc-utf8.h"

/* The parameters the last call gave the dispatcher. */
static xmlrpc_value *last_params;
static char *last_method;
/* What the dispatcher answers: a wrapped reply (a new reference each
 * time), or NULL for {Status: Success, Value: the parameters}. */
static xmlrpc_value *answer;

static xmlrpc_value *
dispatch (void *opaque, xmlrpc_env *env, const char *method,
          xmlrpc_value *params)
{
  g_free (last_method);
  last_method = g_strdup (method);
  if (last_params)
    xmlrpc_DECREF (last_params);
  xmlrpc_INCREF (params);
  last_params = params;
  if (answer) {
    xmlrpc_INCREF (answer);
    return answer;
  }
  return xmlrpc_build_value (env, "{s:s,s:V}", "Status", "Success", "Value",
                             params);
}

static void
set_answer (xmlrpc_value *v)
{
  if (answer)
    xmlrpc_DECREF (answer);
  answer = v;
}

/* The reply to BODY, as a string; *STATUS and *CTYPE say how it goes. */
static char *
call_with (const struct xapi_rpc_codec *codec, const char *body,
           unsigned *status, const char **ctype)
{
  gsize len;
  GBytes *out = xapi_rpc_process_with (codec, body, strlen (body), dispatch,
                                       NULL, status, ctype);
  const char *data = g_bytes_get_data (out, &len);
  char *s = g_strndup (data, len);

  g_bytes_unref (out);
  return s;
}

/* BODY's reply, which must be 200 application/json and equal WANT. */
static void
expect_reply (const char *body, const char *want)
{
  unsigned status;
  const char *ctype;
  g_autofree char *got = call_with (&xapi_rpc_json, body, &status, &ctype);

  if (strcmp (got, want) != 0)
    fprintf (stderr, "%s\n got:  %s\n want: %s\n", body, got, want);
  CU_ASSERT_EQUAL (status, 200);
  CU_ASSERT_STRING_EQUAL (ctype, "application/json");
  CU_ASSERT_STRING_EQUAL (got, want);
}

static void
expect_malformed (const char *body)
{
  unsigned status;
  const char *ctype;
  g_autofree char *got = call_with (&xapi_rpc_json, body, &status, &ctype);

  if (status != 400)
    fprintf (stderr, "%.80s: %u %s\n", body, status, got);
  CU_ASSERT_EQUAL (status, 400);
  CU_ASSERT_STRING_EQUAL (ctype, "text/plain");
  CU_ASSERT (g_str_has_prefix (got, "malformed JSON-RPC request: "));
}

/* Parameter I of the last call. */
static xmlrpc_value *
param (int i)
{
  xmlrpc_env env;
  xmlrpc_value *v;

  xmlrpc_env_init (&env);
  v = xmlrpc_array_get_item (&env, last_params, i);
  CU_ASSERT_FALSE_FATAL (env.fault_occurred);
  xmlrpc_env_clean (&env);
  return v;
}

static void
test_types_in (void)
{
  xmlrpc_env env;
  xmlrpc_int64 i8;
  double d;
  xmlrpc_bool b;
  const char *s;
  xmlrpc_value *m;

  CU_ASSERT_TRUE (xmlrpc_full_unicode ()); /* links its override in */
  set_answer (NULL);
  expect_reply (
      "{\"jsonrpc\":\"2.0\",\"method\":\"VM.x\",\"id\":3,\"params\":"
      "[\"OpaqueRef:a\",9223372036854775807,60.1,true,null,[],{\"k\":\"v\"},"
      "\"20261130T09:00:00Z\",\"\xf0\x9f\x98\x80\"]}",
      "{\"jsonrpc\":\"2.0\",\"result\":[\"OpaqueRef:a\",9223372036854775807,"
      "60.100000000000001,true,null,[],{\"k\":\"v\"},\"20261130T09:00:00Z\","
      "\"\xf0\x9f\x98\x80\"],\"id\":3}");
  CU_ASSERT_STRING_EQUAL (last_method, "VM.x");
  xmlrpc_env_init (&env);
  CU_ASSERT_EQUAL (xmlrpc_array_size (&env, last_params), 9);
  CU_ASSERT_EQUAL (xmlrpc_value_type (param (0)), XMLRPC_TYPE_STRING);
  CU_ASSERT_EQUAL (xmlrpc_value_type (param (1)), XMLRPC_TYPE_I8);
  xmlrpc_read_i8 (&env, param (1), &i8);
  CU_ASSERT_EQUAL (i8, INT64_MAX);
  xmlrpc_read_double (&env, param (2), &d);
  CU_ASSERT_EQUAL (d, 60.1);
  xmlrpc_read_bool (&env, param (3), &b);
  CU_ASSERT_TRUE (b);
  CU_ASSERT_EQUAL (xmlrpc_value_type (param (4)), XMLRPC_TYPE_NIL);
  CU_ASSERT_EQUAL (xmlrpc_value_type (param (5)), XMLRPC_TYPE_ARRAY);
  CU_ASSERT_EQUAL (xmlrpc_value_type (param (6)), XMLRPC_TYPE_STRUCT);
  xmlrpc_struct_find_value (&env, param (6), "k", &m);
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  xmlrpc_read_string (&env, m, &s);
  CU_ASSERT_STRING_EQUAL (s, "v");
  free ((void *)s);
  xmlrpc_DECREF (m);
  CU_ASSERT_FALSE (env.fault_occurred);
  xmlrpc_env_clean (&env);

  /* 2.0: params an object (one struct), or none */
  expect_reply ("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":\"a\","
                "\"params\":{\"x\":1}}",
                "{\"jsonrpc\":\"2.0\",\"result\":[{\"x\":1}],\"id\":\"a\"}");
  expect_reply ("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":-1}",
                "{\"jsonrpc\":\"2.0\",\"result\":[],\"id\":-1}");
  expect_reply ("{\"params\":null,\"jsonrpc\":\"2.0\",\"method\":\"m\","
                "\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"result\":[],\"id\":1}");
}

static void
test_types_out (void)
{
  xmlrpc_env env;
  xmlrpc_datetime dt = { .Y = 2026, .M = 11, .D = 30, .h = 9, .m = 1, .s = 2 };
  xmlrpc_value *value, *t;

  xmlrpc_env_init (&env);
  value = xmlrpc_build_value (
      &env, "{s:s,s:I,s:i,s:d,s:d,s:d,s:b,s:6,s:n,s:s}", "s", "a\"\\\x1f\x01",
      "i8", INT64_MIN, "i4", 5, "d", 0.5, "one", 1.0, "exp", -5e-36, "b", 0,
      "b64", "\0\1", (size_t)2, "n", "e", "");
  t = xmlrpc_datetime_new (&env, dt);
  xmlrpc_struct_set_value (&env, value, "t", t);
  xmlrpc_DECREF (t);
  set_answer (xmlrpc_build_value (&env, "{s:s,s:V}", "Status", "Success",
                                  "Value", value));
  CU_ASSERT_FALSE_FATAL (env.fault_occurred);
  expect_reply (
      "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}",
      "{\"jsonrpc\":\"2.0\",\"result\":{\"s\":\"a\\\"\\\\\\u001f"
      "\\u0001\",\"i8\":-9223372036854775808,\"i4\":5,\"d\":0.5,"
      "\"one\":1.0,\"exp\":-5e-36,\"b\":false,\"b64\":\"AAE=\",\"n\":null,"
      "\"e\":\"\",\"t\":\"20261130T09:01:02Z\"},\"id\":1}");
  /* 1.0 */
  expect_reply (
      "{\"method\":\"m\",\"id\":\"x\",\"params\":[]}",
      "{\"result\":{\"s\":\"a\\\"\\\\\\u001f\\u0001\","
      "\"i8\":-9223372036854775808,\"i4\":5,\"d\":0.5,\"one\":1.0,"
      "\"exp\":-5e-36,\"b\":false,\"b64\":\"AAE=\",\"n\":null,\"e\":\"\","
      "\"t\":\"20261130T09:01:02Z\"},\"error\":null,\"id\":\"x\"}");
  xmlrpc_DECREF (value);

  /* A value without the wrapper (system.listMethods) is the result. */
  set_answer (xmlrpc_build_value (&env, "(ss)", "VM.start", "pool.get_all"));
  expect_reply ("{\"jsonrpc\":\"2.0\",\"method\":\"system.listMethods\","
                "\"id\":0,\"params\":[]}",
                "{\"jsonrpc\":\"2.0\",\"result\":[\"VM.start\","
                "\"pool.get_all\"],\"id\":0}");
  /* A Success without a Value is xapi's void, "". */
  set_answer (xmlrpc_build_value (&env, "{s:s}", "Status", "Success"));
  expect_reply ("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":0}",
                "{\"jsonrpc\":\"2.0\",\"result\":\"\",\"id\":0}");
  xmlrpc_env_clean (&env);
}

static void
test_failures (void)
{
  xmlrpc_env env;
  unsigned status;
  const char *ctype;
  g_autofree char *got = NULL;

  xmlrpc_env_init (&env);
  set_answer (xmlrpc_build_value (&env, "{s:s,s:(ss)}", "Status", "Failure",
                                  "ErrorDescription", "SESSION_INVALID",
                                  "OpaqueRef:x"));
  expect_reply ("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":7,"
                "\"params\":[\"s\"]}",
                "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1,\"message\":"
                "\"SESSION_INVALID\",\"data\":[\"OpaqueRef:x\"]},\"id\":7}");
  expect_reply ("{\"method\":\"m\",\"id\":7,\"params\":[\"s\"]}",
                "{\"result\":null,\"error\":[\"SESSION_INVALID\","
                "\"OpaqueRef:x\"],\"id\":7}");

  /* A reply JSON cannot carry is INTERNAL_ERROR. */
  set_answer (xmlrpc_build_value (&env, "{s:s,s:d}", "Status", "Success",
                                  "Value", INFINITY));
  got = call_with (&xapi_rpc_json,
                   "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}", &status,
                   &ctype);
  CU_ASSERT (g_str_has_prefix (got, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":"
                                    "1,\"message\":\"INTERNAL_ERROR\""));
  CU_ASSERT_EQUAL (status, 200);
  /* And a failure's parameters are cleaned, never refused. */
  set_answer (xmlrpc_build_value (&env, "{s:s,s:(ss)}", "Status", "Failure",
                                  "ErrorDescription", "CODE", "a\x01"));
  expect_reply ("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}",
                "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1,\"message\":"
                "\"CODE\",\"data\":[\"a\xef\xbf\xbd\"]},\"id\":1}");
  set_answer (NULL);
  xmlrpc_env_clean (&env);
}

/* Values XenAPI cannot take: the failure the same value gets over
 * XML-RPC, answered with the call's id and version. */
static void
test_bad_values (void)
{
  static const struct
  {
    const char *params, *expected;
  } cases[] = {
    { "[9223372036854775808]", "a 64-bit integer" },
    { "[-9223372036854775809]", "a 64-bit integer" },
    { "[1e400]", "a finite number" },
    { "[\"a\\u0000b\"]", "characters XML allows" },
    { "[\"\\u0001\"]", "characters XML allows" },
    { "[\"\\uffff\"]", "characters XML allows" },
    { "[{\"\\u0002\":1}]", "characters XML allows" },
  };

  set_answer (NULL);
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *body = g_strdup_printf (
        "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":\"q\",\"params\":%s}",
        cases[i].params);
    unsigned status;
    const char *ctype;
    g_autofree char *got = call_with (&xapi_rpc_json, body, &status, &ctype);
    g_autofree char *want = g_strdup_printf (
        "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1,\"message\":"
        "\"XMLRPC_UNMARSHAL_FAILURE\",\"data\":[\"%s\",",
        cases[i].expected);

    if (!g_str_has_prefix (got, want))
      fprintf (stderr, "%s: %s\n", body, got);
    CU_ASSERT_EQUAL (status, 200);
    CU_ASSERT (g_str_has_prefix (got, want));
    CU_ASSERT (g_str_has_suffix (got, "]},\"id\":\"q\"}"));
  }
  /* A bad method name too. */
  {
    unsigned status;
    const char *ctype;
    g_autofree char *got = call_with (
        &xapi_rpc_json, "{\"method\":\"\\u0007\",\"id\":1,\"params\":[]}",
        &status, &ctype);

    CU_ASSERT_EQUAL (status, 200);
    CU_ASSERT (g_str_has_prefix (
        got, "{\"result\":null,\"error\":[\"XMLRPC_UNMARSHAL_FAILURE\""));
  }
}

/* A string of N copies of OPEN, then N of CLOSE. */
static char *
nested (size_t n, const char *open, const char *mid, const char *close)
{
  GString *s = g_string_new (
      "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"params\":[");

  for (size_t i = 0; i < n; i++)
    g_string_append (s, open);
  g_string_append (s, mid);
  for (size_t i = 0; i < n; i++)
    g_string_append (s, close);
  g_string_append (s, "]}");
  return g_string_free (s, FALSE);
}

static void
test_limits (void)
{
  g_autofree char *ok = nested (XAPI_DECODE_MAX_DEPTH - 1, "[", "1", "]");
  g_autofree char *deep = nested (XAPI_DECODE_MAX_DEPTH, "{\"a\":", "1", "}");
  g_autofree char *bomb = nested (1000000, "[", "", "]");
  GString *many = g_string_new (
      "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"params\":[0");
  unsigned status;
  const char *ctype;
  g_autofree char *got = NULL;

  set_answer (NULL);
  /* 64 deep is fine */
  g_free (call_with (&xapi_rpc_json, ok, &status, &ctype));
  CU_ASSERT_EQUAL (status, 200);
  CU_ASSERT_PTR_NOT_NULL (last_params);
  /* 65 deep: refused (parsed: the failure has the id) */
  got = call_with (&xapi_rpc_json, deep, &status, &ctype);
  CU_ASSERT_EQUAL (status, 200);
  CU_ASSERT_PTR_NOT_NULL (strstr (got, "values nested at most 64 deep"));
  /* a million deep: refused before json-glib recurses */
  expect_malformed (bomb);
  for (int i = 0; i < XAPI_DECODE_MAX_VALUES + 20; i++)
    g_string_append (many, ",0");
  g_string_append (many, "]}");
  expect_malformed (many->str);
  g_string_free (many, TRUE);
}

static void
test_malformed (void)
{
  static const char *const bodies[] = {
    "",
    "   ",
    "x",
    "[]",
    "\"a\"",
    "{}",
    "{\"method\":\"m\",\"id\":1}", /* 1.0 without params */
    "{\"method\":\"m\",\"id\":1,\"params\":{}}",
    "{\"jsonrpc\":\"1.0\",\"method\":\"m\",\"id\":1,\"params\":[]}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":[]}", /* no id */
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":null}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1.5}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":[1]}",
    "{\"jsonrpc\":\"2.0\",\"method\":1,\"id\":1}",
    "{\"jsonrpc\":\"2.0\",\"id\":1}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"params\":3}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":0x10}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":01}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":'a'}",
    "/* c */{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1} x",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"params\":[-]}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"params\":[1.]}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"params\":[tru]}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"params\":[\"\\ud800\"]}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"params\":[\"\xff\"]}",
  };

  for (size_t i = 0; i < G_N_ELEMENTS (bodies); i++)
    expect_malformed (bodies[i]);
  /* not NUL-terminated, NUL inside */
  {
    unsigned status;
    const char *ctype;
    GBytes *out = xapi_rpc_process_with (
        &xapi_rpc_json, "{\"method\":\"m\",\"id\":1,\"params\":[]}\0x", 35,
        dispatch, NULL, &status, &ctype);

    CU_ASSERT_EQUAL (status, 400);
    g_bytes_unref (out);
    out = xapi_rpc_process_with (&xapi_rpc_json, NULL, 0, dispatch, NULL,
                                 &status, &ctype);
    CU_ASSERT_EQUAL (status, 400);
    g_bytes_unref (out);
  }
}

/* /json: each protocol by its first byte, answered in kind. */
static void
test_sniff (void)
{
  unsigned status;
  const char *ctype;
  g_autofree char *x = NULL;
  g_autofree char *j = NULL;
  g_autofree char *bad = NULL;

  set_answer (NULL);
  x = call_with (&xapi_rpc_sniff,
                 "\n <?xml version='1.0'?><methodCall><methodName>m"
                 "</methodName><params><param><value>a</value></param>"
                 "</params></methodCall>",
                 &status, &ctype);
  CU_ASSERT_EQUAL (status, 200);
  CU_ASSERT_STRING_EQUAL (ctype, "text/xml");
  CU_ASSERT_STRING_EQUAL (
      x, "<?xml version=\"1.0\"?><methodResponse><params><param><value>"
         "<struct><member><name>Status</name><value>Success</value></member>"
         "<member><name>Value</name><value><array><data><value>a</value>"
         "</data></array></value></member></struct></value></param>"
         "</params></methodResponse>");
  j = call_with (&xapi_rpc_sniff,
                 " {\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,"
                 "\"params\":[\"a\"]}",
                 &status, &ctype);
  CU_ASSERT_EQUAL (status, 200);
  CU_ASSERT_STRING_EQUAL (ctype, "application/json");
  CU_ASSERT_STRING_EQUAL (j, "{\"jsonrpc\":\"2.0\",\"result\":[\"a\"],"
                             "\"id\":1}");
  bad = call_with (&xapi_rpc_sniff, "hello", &status, &ctype);
  CU_ASSERT_EQUAL (status, 400);
  CU_ASSERT (g_str_has_prefix (bad, "malformed XML-RPC request"));
}

/* The mapping alone, both ways. */
static void
test_mapping (void)
{
  g_autoptr (JsonNode) n = json_from_string ("{\"a\":[1,2.5,\"x\"]}", NULL);
  size_t values = 0;
  char *expected = NULL, *received = NULL;
  xmlrpc_value *v = xapi_json_to_value (n, 1, &values, &expected, &received);
  char *why = NULL;
  g_autoptr (JsonNode) back = NULL;
  g_autofree char *text = NULL;

  CU_ASSERT_PTR_NOT_NULL_FATAL (v);
  CU_ASSERT_EQUAL (values, 5);
  back = xapi_value_to_json (v, &why);
  CU_ASSERT_PTR_NOT_NULL_FATAL (back);
  text = json_to_string (back, FALSE);
  CU_ASSERT_STRING_EQUAL (text, "{\"a\":[1,2.5,\"x\"]}");
  xmlrpc_DECREF (v);

  values = XAPI_DECODE_MAX_VALUES - 1;
  v = xapi_json_to_value (n, 1, &values, &expected, &received);
  CU_ASSERT_PTR_NULL (v);
  CU_ASSERT_STRING_EQUAL (received, "more");
  g_free (expected);
  g_free (received);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "types in", test_types_in },
    { "types out", test_types_out },
    { "failures", test_failures },
    { "bad values", test_bad_values },
    { "limits", test_limits },
    { "malformed", test_malformed },
    { "sniff", test_sniff },
    { "mapping", test_mapping },
    { NULL, NULL },
  };
  int rc;

  (void)unit_path;
  rc = unit_main ("jsonrpc", tests);
  set_answer (NULL);
  if (last_params)
    xmlrpc_DECREF (last_params);
  g_free (last_method);
  return rc;
}
