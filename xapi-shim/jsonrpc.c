/* The JSON-RPC codec (rpc.h's xapi_rpc_json) and XenAPI's JSON mapping
 * (jsonrpc.h), as xapi serves JSON-RPC at /jsonrpc (ocaml-rpc's
 * Jsonrpc, xapi's api_server.ml).
 *
 * A call: a JSON object with a string "method"; "jsonrpc": "2.0" makes it
 * JSON-RPC 2.0, no "jsonrpc" 1.0 (anything else is refused); an "id",
 * a number or a string (a notification, without one, is refused, as
 * xapi refuses it); "params": an array (1.0 and 2.0), or in 2.0 an
 * object (one struct parameter) or nothing.
 *
 * A reply, compact, its keys in this order, the id echoed as it came:
 *   1.0  {"result":VALUE,"error":null,"id":ID}
 *        {"result":null,"error":["CODE","param",...],"id":ID}
 *   2.0  {"jsonrpc":"2.0","result":VALUE,"id":ID}
 *        {"jsonrpc":"2.0","error":{"code":1,"message":"CODE",
 *         "data":["param",...]},"id":ID}
 * VALUE is the dispatcher's Value, without XML-RPC's {Status, Value}
 * wrapper.
 *
 * Bounds.  json-glib's parser recurses once per nesting level and keeps
 * the whole tree, and it is lenient (hexadecimal numbers, comments,
 * single quotes; integers past 64 bits silently wrap).  So a body is
 * scanned first, in one pass and constant stack: nothing but JSON's
 * tokens outside strings, numbers of JSON's form, at most
 * XAPI_DECODE_MAX_DEPTH levels below the call's own two and about
 * XAPI_DECODE_MAX_VALUES values.  A body past those bounds, or not JSON,
 * is answered 400 (text/plain) unread by json-glib, as the XML-RPC
 * decoder answers what is not XML-RPC.  Then the parameters are mapped
 * with the exact limits, and a value XenAPI cannot take (an integer past
 * 64 bits, a character XML cannot carry) is the failure
 * XMLRPC_UNMARSHAL_FAILURE(expected, received) that the same value gets
 * over XML-RPC. */

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <xmlrpc-c/base.h>

#include "json.h"
#include "jsonrpc.h"
#include "rpc.h"
#include "xmlrpc-decode.h"

/* The scan's bounds: the call's object and its params array are two
 * levels above a parameter; a few values more are the call's own. */
#define SCAN_MAX_DEPTH (XAPI_DECODE_MAX_DEPTH + 2)
#define SCAN_MAX_VALUES (XAPI_DECODE_MAX_VALUES + 16)

/* Received values are quoted up to this many bytes. */
#define QUOTE_MAX 64

/* Values we build nest no deeper than a call's plus the reply's
 * wrapping; deeper is a bug, refused rather than followed. */
#define ENCODE_MAX_DEPTH (2 * XAPI_DECODE_MAX_DEPTH + 8)

/* What is wrong with a body: MALFORMED (answered 400), or else the
 * first value XenAPI cannot take. */
struct problem
{
  char *malformed;
  char *expected, *received;
};

static void
problem_clear (struct problem *pb)
{
  g_clear_pointer (&pb->malformed, g_free);
  g_clear_pointer (&pb->expected, g_free);
  g_clear_pointer (&pb->received, g_free);
}

static bool malformed (struct problem *pb, const char *fmt, ...)
    G_GNUC_PRINTF (2, 3);

static bool
malformed (struct problem *pb, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_free (pb->malformed);
  pb->malformed = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  return false;
}

/* Note a bad value (the first one counts); RECEIVED is taken. */
static void
bad_value (struct problem *pb, const char *expected, char *received)
{
  if (pb->expected == NULL) {
    pb->expected = g_strdup (expected);
    pb->received = received;
  }
  else
    g_free (received);
}

/* At most QUOTE_MAX bytes of S (LEN bytes, ASCII), "..." if cut. */
static char *
quote (const char *s, size_t len)
{
  if (len <= QUOTE_MAX)
    return g_strndup (s, len);
  return g_strdup_printf ("%.*s...", QUOTE_MAX, s);
}

/* The scan (see the top of the file). */

/* A string's body from P (past its opening quote); the end of the
 * string, or NULL if it has none.  An escaped NUL is a bad value: XML
 * cannot carry it, and json-glib would silently cut the string there. */
static const char *
scan_string (const char *p, const char *end, struct problem *pb)
{
  while (p < end) {
    if (*p == '"')
      return p + 1;
    if (*p != '\\') {
      p++;
      continue;
    }
    if (end - p >= 6 && p[1] == 'u' && memcmp (p + 2, "0000", 4) == 0)
      bad_value (pb, "characters XML allows", g_strdup ("U+0000"));
    p += 2;
  }
  return NULL;
}

static size_t
span_digits (const char *p, const char *end)
{
  size_t n = 0;

  while (p + n < end && g_ascii_isdigit (p[n]))
    n++;
  return n;
}

/* A number at P: JSON's form -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 * and, for an integer, 64 bits; a fraction or exponent must give a
 * finite double.  Returns its end, or NULL if it is not of that form. */
static const char *
scan_number (const char *start, const char *end, struct problem *pb)
{
  const char *p = start;
  bool integer = true;
  size_t n;
  g_autofree char *text = NULL;

  if (*p == '-')
    p++;
  n = span_digits (p, end);
  if (n == 0 || (n > 1 && *p == '0'))
    return NULL;
  p += n;
  if (p < end && *p == '.') {
    integer = false;
    p++;
    if ((n = span_digits (p, end)) == 0)
      return NULL;
    p += n;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    integer = false;
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if ((n = span_digits (p, end)) == 0)
      return NULL;
    p += n;
  }
  text = g_strndup (start, (size_t)(p - start));
  if (integer) {
    gint64 v;

    if (!g_ascii_string_to_signed (text, 10, G_MININT64, G_MAXINT64, &v, NULL))
      bad_value (pb, "a 64-bit integer", quote (text, strlen (text)));
  }
  else if (!isfinite (g_ascii_strtod (text, NULL)))
    bad_value (pb, "a finite number", quote (text, strlen (text)));
  return p;
}

static const char *
scan_word (const char *p, const char *end)
{
  static const char *const words[] = { "true", "false", "null" };

  for (size_t i = 0; i < G_N_ELEMENTS (words); i++) {
    size_t n = strlen (words[i]);

    if ((size_t)(end - p) >= n && memcmp (p, words[i], n) == 0)
      return p + n;
  }
  return NULL;
}

/* Is BODY fit for json-glib?  False and PB->malformed if not; a bad value
 * found on the way is noted in PB too (the body is still parsed, for
 * the id that the failure must echo). */
static bool
scan (const char *body, size_t len, struct problem *pb)
{
  const char *p = body, *end = body + len;
  unsigned depth = 0;
  size_t values = 1;
  bool done = false; /* the one value is complete */

  while (p < end) {
    const char *next = NULL;
    bool blank = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';

    /* json-glib would parse a second value and keep it unowned (a leak
     * per request); xapi refuses "junk after the end" too. */
    if (done && !blank)
      return malformed (pb, "data after the JSON value at byte %zu",
                        (size_t)(p - body));
    switch (*p) {
    case ' ':
    case '\t':
    case '\n':
    case '\r':
    case ':': next = p + 1; break;
    case '[':
    case '{':
      if (++depth > SCAN_MAX_DEPTH)
        return malformed (pb, "values nested more than %d deep",
                          XAPI_DECODE_MAX_DEPTH);
      G_GNUC_FALLTHROUGH;
    case ',':
      if (++values > SCAN_MAX_VALUES)
        return malformed (pb, "more than %d values", XAPI_DECODE_MAX_VALUES);
      next = p + 1;
      break;
    case ']':
    case '}':
      if (depth == 0)
        return malformed (pb, "'%c' closes nothing", *p);
      depth--;
      next = p + 1;
      break;
    case '"':
      if ((next = scan_string (p + 1, end, pb)) == NULL)
        return malformed (pb, "a string without its end");
      break;
    case 't':
    case 'f':
    case 'n': next = scan_word (p, end); break;
    default:
      if (*p == '-' || g_ascii_isdigit (*p))
        next = scan_number (p, end, pb);
    }
    if (next == NULL)
      return malformed (pb, "not JSON at byte %zu", (size_t)(p - body));
    if (!blank && *p != ':' && *p != ',' && depth == 0)
      done = true;
    p = next;
  }
  return true;
}

/* A node holding A, taking it (json_node_init_array takes a reference of
 * its own). */
static JsonNode *
array_node (JsonArray *a)
{
  JsonNode *n = json_node_init_array (json_node_alloc (), a);

  json_array_unref (a);
  return n;
}

/* JSON → xmlrpc_value */

/* Is S (valid UTF-8) text XML can carry?  If not, a bad value. */
static bool
xml_text_ok (const char *s, struct problem *pb)
{
  size_t len = strlen (s);

  if (xapi_xml_utf8_ok (s, len))
    return true;
  for (const char *p = s; *p; p = g_utf8_next_char (p)) {
    gunichar u = g_utf8_get_char (p);

    if (!xapi_xml_char (u)) {
      bad_value (pb, "characters XML allows", g_strdup_printf ("U+%04X", u));
      break;
    }
  }
  return false;
}

static xmlrpc_value *to_value (xmlrpc_env *env, JsonNode *n, int depth,
                               size_t *values, struct problem *pb);

static xmlrpc_value *
object_value (xmlrpc_env *env, JsonObject *o, int depth, size_t *values,
              struct problem *pb)
{
  xmlrpc_value *st = xmlrpc_struct_new (env);
  GList *names;

  if (env->fault_occurred)
    return NULL;
  names = json_object_get_members (o); /* in the body's order */
  for (GList *l = names; l; l = l->next) {
    const char *name = l->data;
    xmlrpc_value *v;

    if (!xml_text_ok (name, pb))
      break;
    v = to_value (env, json_object_get_member (o, name), depth + 1, values,
                  pb);
    if (v == NULL)
      break;
    xmlrpc_struct_set_value (env, st, name, v);
    xmlrpc_DECREF (v);
    if (env->fault_occurred) {
      bad_value (pb, "member name", quote (name, strlen (name)));
      break;
    }
  }
  g_list_free (names);
  if (pb->expected) {
    xmlrpc_DECREF (st);
    return NULL;
  }
  return st;
}

static xmlrpc_value *
array_value (xmlrpc_env *env, JsonArray *a, int depth, size_t *values,
             struct problem *pb)
{
  xmlrpc_value *arr = xmlrpc_array_new (env);
  guint n = json_array_get_length (a);

  if (env->fault_occurred)
    return NULL;
  for (guint i = 0; i < n; i++) {
    xmlrpc_value *v
        = to_value (env, json_array_get_element (a, i), depth + 1, values, pb);

    if (v == NULL)
      break;
    xmlrpc_array_append_item (env, arr, v);
    xmlrpc_DECREF (v);
    if (env->fault_occurred) {
      bad_value (pb, "value", g_strdup (env->fault_string));
      break;
    }
  }
  if (pb->expected) {
    xmlrpc_DECREF (arr);
    return NULL;
  }
  return arr;
}

static xmlrpc_value *
scalar_value (xmlrpc_env *env, JsonNode *n, struct problem *pb)
{
  const char *s;
  double d;

  switch (json_node_get_value_type (n)) {
  case G_TYPE_INT64: return xmlrpc_i8_new (env, json_node_get_int (n));
  case G_TYPE_BOOLEAN: return xmlrpc_bool_new (env, json_node_get_boolean (n));
  case G_TYPE_DOUBLE:
    d = json_node_get_double (n);
    if (isfinite (d))
      return xmlrpc_double_new (env, d);
    bad_value (pb, "a finite number", g_strdup ("another"));
    return NULL;
  case G_TYPE_STRING:
    s = json_node_get_string (n);
    if (!xml_text_ok (s, pb))
      return NULL;
    return xmlrpc_string_new_lp_cr (env, strlen (s), s);
  default: bad_value (pb, "a JSON value", g_strdup ("another")); return NULL;
  }
}

static xmlrpc_value *
to_value (xmlrpc_env *env, JsonNode *n, int depth, size_t *values,
          struct problem *pb)
{
  xmlrpc_value *v = NULL;

  if (depth > XAPI_DECODE_MAX_DEPTH) {
    bad_value (
        pb,
        "values nested at most " G_STRINGIFY (XAPI_DECODE_MAX_DEPTH) " deep",
        g_strdup ("deeper"));
    return NULL;
  }
  if (++*values > XAPI_DECODE_MAX_VALUES) {
    bad_value (pb, "at most " G_STRINGIFY (XAPI_DECODE_MAX_VALUES) " values",
               g_strdup ("more"));
    return NULL;
  }
  switch (json_node_get_node_type (n)) {
  case JSON_NODE_OBJECT:
    return object_value (env, json_node_get_object (n), depth, values, pb);
  case JSON_NODE_ARRAY:
    return array_value (env, json_node_get_array (n), depth, values, pb);
  case JSON_NODE_NULL: v = xmlrpc_nil_new (env); break;
  case JSON_NODE_VALUE: v = scalar_value (env, n, pb); break;
  }
  if (env->fault_occurred) {
    bad_value (pb, "value", g_strdup (env->fault_string));
    return NULL;
  }
  return v;
}

xmlrpc_value *
xapi_json_to_value (JsonNode *node, int depth, size_t *values, char **expected,
                    char **received)
{
  struct problem pb = { 0 };
  xmlrpc_env env;
  xmlrpc_value *v;

  xmlrpc_env_init (&env);
  v = to_value (&env, node, depth, values, &pb);
  xmlrpc_env_clean (&env);
  if (v == NULL && pb.expected == NULL)
    bad_value (&pb, "value", g_strdup ("nothing"));
  *expected = g_steal_pointer (&pb.expected);
  *received = g_steal_pointer (&pb.received);
  problem_clear (&pb);
  return v;
}

/* xmlrpc_value → JSON */

static JsonNode *to_json (xmlrpc_env *env, xmlrpc_value *v, int depth,
                          char **why);

/* V's text, checked: valid UTF-8 without NUL (json-glib's strings end at
 * the first).  NULL and *WHY if not; free() the result. */
static const char *
json_text (xmlrpc_env *env, xmlrpc_value *v, char **why)
{
  const char *s = NULL;
  size_t len = 0;

  xmlrpc_read_string_lp (env, v, &len, &s);
  if (env->fault_occurred)
    return NULL;
  if (!g_utf8_validate_len (s, len, NULL) || memchr (s, 0, len)) {
    *why = g_strdup (memchr (s, 0, len) ? "the reply holds a NUL"
                                        : "the reply is not valid UTF-8");
    free ((void *)s);
    return NULL;
  }
  return s;
}

static JsonNode *
string_json (xmlrpc_env *env, xmlrpc_value *v, char **why)
{
  const char *s = json_text (env, v, why);
  JsonNode *n;

  if (s == NULL)
    return NULL;
  n = json_node_init_string (json_node_alloc (), s);
  free ((void *)s);
  return n;
}

static JsonNode *
array_json (xmlrpc_env *env, xmlrpc_value *v, int depth, char **why)
{
  int n = xmlrpc_array_size (env, v);
  JsonArray *a = json_array_sized_new (n > 0 ? (guint)n : 0);

  for (int i = 0; i < n && !env->fault_occurred; i++) {
    xmlrpc_value *item = NULL;
    JsonNode *j;

    item = xmlrpc_array_get_item (env, v, i); /* borrowed */
    if (env->fault_occurred
        || (j = to_json (env, item, depth + 1, why)) == NULL) {
      json_array_unref (a);
      return NULL;
    }
    json_array_add_element (a, j);
  }
  return array_node (a);
}

static JsonNode *
struct_json (xmlrpc_env *env, xmlrpc_value *v, int depth, char **why)
{
  int n = xmlrpc_struct_size (env, v);
  JsonObject *o = json_object_new ();
  JsonNode *node;

  for (int i = 0; i < n && !env->fault_occurred; i++) {
    xmlrpc_value *k = NULL, *m = NULL;
    const char *name = NULL;
    JsonNode *j = NULL;

    xmlrpc_struct_read_member (env, v, (unsigned)i, &k, &m);
    if (env->fault_occurred)
      break;
    name = json_text (env, k, why);
    if (name)
      j = to_json (env, m, depth + 1, why);
    xmlrpc_DECREF (k);
    xmlrpc_DECREF (m);
    if (j == NULL) {
      free ((void *)name);
      json_object_unref (o);
      return NULL;
    }
    json_object_set_member (o, name, j);
    free ((void *)name);
  }
  node = json_node_init_object (json_node_alloc (), o);
  json_object_unref (o);
  return node;
}

static JsonNode *
to_json (xmlrpc_env *env, xmlrpc_value *v, int depth, char **why)
{
  xmlrpc_int64 i8;
  xmlrpc_int32 i4;
  xmlrpc_bool b;
  double d;
  xmlrpc_datetime dt;
  const unsigned char *bytes = NULL;
  size_t len = 0;
  g_autofree char *text = NULL;

  if (depth > ENCODE_MAX_DEPTH) {
    *why = g_strdup ("the reply nests too deep");
    return NULL;
  }
  switch (xmlrpc_value_type (v)) {
  case XMLRPC_TYPE_STRING: return string_json (env, v, why);
  case XMLRPC_TYPE_ARRAY: return array_json (env, v, depth, why);
  case XMLRPC_TYPE_STRUCT: return struct_json (env, v, depth, why);
  case XMLRPC_TYPE_I8:
    xmlrpc_read_i8 (env, v, &i8);
    return json_node_init_int (json_node_alloc (), i8);
  case XMLRPC_TYPE_INT:
    xmlrpc_read_int (env, v, &i4);
    return json_node_init_int (json_node_alloc (), i4);
  case XMLRPC_TYPE_BOOL:
    xmlrpc_read_bool (env, v, &b);
    return json_node_init_boolean (json_node_alloc (), b);
  case XMLRPC_TYPE_DOUBLE:
    xmlrpc_read_double (env, v, &d);
    if (isfinite (d))
      return json_node_init_double (json_node_alloc (), d);
    *why = g_strdup ("the reply holds a number that is not finite");
    return NULL;
  case XMLRPC_TYPE_DATETIME:
    xmlrpc_read_datetime (env, v, &dt);
    text = g_strdup_printf (XAPI_RPC_DATETIME_FORMAT, dt.Y, dt.M, dt.D, dt.h,
                            dt.m, dt.s);
    return json_node_init_string (json_node_alloc (), text);
  case XMLRPC_TYPE_BASE64:
    xmlrpc_read_base64 (env, v, &len, &bytes);
    if (env->fault_occurred)
      return NULL;
    text = g_base64_encode (bytes, len);
    free ((void *)bytes);
    return json_node_init_string (json_node_alloc (), text);
  case XMLRPC_TYPE_NIL: return json_node_init_null (json_node_alloc ());
  default:
    *why = g_strdup ("the reply holds a value of a type XenAPI has not");
    return NULL;
  }
}

JsonNode *
xapi_value_to_json (xmlrpc_value *v, char **why)
{
  xmlrpc_env env;
  char *reason = NULL;
  JsonNode *n;

  xmlrpc_env_init (&env);
  n = to_json (&env, v, 0, &reason);
  if (env.fault_occurred) {
    g_clear_pointer (&n, json_node_unref);
    if (reason == NULL)
      reason = xapi_rpc_clean_text (env.fault_string);
  }
  xmlrpc_env_clean (&env);
  if (n == NULL)
    *why = reason ? reason : g_strdup ("cannot encode the reply");
  else
    g_free (reason);
  return n;
}

/* Replies */

/* The reply of FORM's call: RESULT or ERROR (taken; the other NULL). */
static GBytes *
reply_bytes (const struct xapi_rpc_form *form, JsonNode *result,
             JsonNode *error)
{
  g_autoptr (JsonObject) o = json_object_new ();
  g_autoptr (JsonNode) root = NULL;
  JsonNode *id = form->id ? json_from_string (form->id, NULL) : NULL;
  char *text;

  if (form->jsonrpc == 2) {
    json_object_set_string_member (o, "jsonrpc", "2.0");
    json_object_set_member (o, result ? "result" : "error",
                            result ? result : error);
  }
  else {
    json_object_set_member (o, "result",
                            result ? result
                                   : json_node_init_null (json_node_alloc ()));
    json_object_set_member (
        o, "error", error ? error : json_node_init_null (json_node_alloc ()));
  }
  json_object_set_member (o, "id",
                          id ? id : json_node_init_null (json_node_alloc ()));
  root = json_node_init_object (json_node_alloc (), o);
  text = json_fix_generated (json_to_string (root, FALSE));
  return g_bytes_new_take (text, strlen (text));
}

static JsonNode *
string_node (const char *s)
{
  g_autofree char *clean = xapi_rpc_clean_text (s);

  return json_node_init_string (json_node_alloc (), clean);
}

static GBytes *
json_failure (const struct xapi_rpc_form *form, const char *const *desc)
{
  JsonArray *data = json_array_new ();
  JsonObject *err;
  JsonNode *node;

  if (form->jsonrpc != 2) {
    for (size_t i = 0; desc[i]; i++)
      json_array_add_element (data, string_node (desc[i]));
    return reply_bytes (form, NULL, array_node (data));
  }
  for (size_t i = 1; desc[0] && desc[i]; i++)
    json_array_add_element (data, string_node (desc[i]));
  err = json_object_new ();
  json_object_set_int_member (err, "code", 1); /* xapi's, for every error */
  json_object_set_member (err, "message",
                          string_node (desc[0] ? desc[0] : "INTERNAL_ERROR"));
  json_object_set_array_member (err, "data", data);
  node = json_node_init_object (json_node_alloc (), err);
  json_object_unref (err);
  return reply_bytes (form, NULL, node);
}

/* DESC, a Failure's ErrorDescription, as a NULL-terminated vector; NULL
 * if it is not an array of strings. */
static char **
error_description (xmlrpc_env *env, xmlrpc_value *desc)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  int n;

  if (desc == NULL || xmlrpc_value_type (desc) != XMLRPC_TYPE_ARRAY)
    return NULL;
  n = xmlrpc_array_size (env, desc);
  for (int i = 0; i < n && !env->fault_occurred; i++) {
    xmlrpc_value *item = xmlrpc_array_get_item (env, desc, i); /* borrowed */
    const char *s = NULL;

    if (env->fault_occurred || xmlrpc_value_type (item) != XMLRPC_TYPE_STRING)
      return NULL;
    xmlrpc_read_string (env, item, &s);
    if (env->fault_occurred)
      return NULL;
    g_ptr_array_add (out, g_strdup (s));
    free ((void *)s);
  }
  if (env->fault_occurred)
    return NULL;
  g_ptr_array_add (out, NULL);
  return (char **)g_ptr_array_free (g_steal_pointer (&out), FALSE);
}

/* "Success", "Failure", or NULL: REPLY is not wrapped (the value of
 * system.listMethods is sent as it is, as xapi does). */
static char *
reply_status (xmlrpc_env *env, xmlrpc_value *reply)
{
  xmlrpc_value *st = NULL;
  const char *s = NULL;
  char *ret = NULL;

  if (xmlrpc_value_type (reply) != XMLRPC_TYPE_STRUCT)
    return NULL;
  xmlrpc_struct_find_value (env, reply, "Status", &st);
  if (st && !env->fault_occurred
      && xmlrpc_value_type (st) == XMLRPC_TYPE_STRING) {
    xmlrpc_read_string (env, st, &s);
    if (!env->fault_occurred) {
      ret = g_strdup (s);
      free ((void *)s);
    }
  }
  if (st)
    xmlrpc_DECREF (st);
  return ret;
}

static GBytes *
json_encode (const struct xapi_rpc_form *form, xmlrpc_value *reply)
{
  xmlrpc_env env;
  g_autofree char *status = NULL;
  g_auto (GStrv) desc = NULL;
  g_autofree char *why = NULL;
  g_autofree char *msg = NULL;
  xmlrpc_value *value = NULL;
  JsonNode *result = NULL;
  bool failed;

  xmlrpc_env_init (&env);
  status = reply_status (&env, reply);
  failed = status && strcmp (status, "Failure") == 0;
  if (status)
    xmlrpc_struct_find_value (&env, reply,
                              failed ? "ErrorDescription" : "Value", &value);
  else {
    xmlrpc_INCREF (reply);
    value = reply;
  }
  if (env.fault_occurred)
    why = xapi_rpc_clean_text (env.fault_string);
  else if (failed && (desc = error_description (&env, value)) == NULL)
    why = g_strdup ("a failure without its ErrorDescription");
  else if (!failed && value == NULL) /* xapi's void */
    result = json_node_init_string (json_node_alloc (), "");
  else if (!failed)
    result = xapi_value_to_json (value, &why);
  if (value)
    xmlrpc_DECREF (value);
  xmlrpc_env_clean (&env);
  if (desc)
    return json_failure (form, (const char *const *)desc);
  if (result)
    return reply_bytes (form, result, NULL);
  msg = g_strdup_printf ("cannot encode the reply: %s", why);
  g_message ("%s", msg);
  return json_failure (form,
                       (const char *const[]){ "INTERNAL_ERROR", msg, NULL });
}

/* Requests */

/* Read the call's envelope: FORM's version and id, its method and its
 * params (NULL: none).  False and PB->malformed if it is not a call. */
static bool
envelope (JsonNode *root, struct xapi_rpc_form *form, const char **method,
          JsonNode **params, struct problem *pb)
{
  JsonObject *o;
  JsonNode *n;

  if (root == NULL)
    return malformed (pb, "an empty body");
  if (!JSON_NODE_HOLDS_OBJECT (root))
    return malformed (pb, "not a JSON object");
  o = json_node_get_object (root);
  n = json_object_get_member (o, "jsonrpc");
  if (n == NULL)
    form->jsonrpc = 1;
  else if (json_node_get_value_type (n) == G_TYPE_STRING
           && strcmp (json_node_get_string (n), "2.0") == 0)
    form->jsonrpc = 2;
  else
    return malformed (pb, "\"jsonrpc\" is not \"2.0\"");
  n = json_object_get_member (o, "id");
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return malformed (pb, "no \"id\" (a notification): nothing would answer");
  if (json_node_get_value_type (n) != G_TYPE_INT64
      && json_node_get_value_type (n) != G_TYPE_STRING)
    return malformed (pb, "\"id\" is neither a number nor a string");
  form->id = json_fix_generated (json_to_string (n, FALSE));
  n = json_object_get_member (o, "method");
  if (n == NULL || json_node_get_value_type (n) != G_TYPE_STRING)
    return malformed (pb, "no \"method\" string");
  *method = json_node_get_string (n);
  if (!xml_text_ok (*method, pb))
    return true; /* a bad value, answered with the id */
  n = json_object_get_member (o, "params");
  *params = n && !JSON_NODE_HOLDS_NULL (n) ? n : NULL;
  if (form->jsonrpc == 1 && (n == NULL || !JSON_NODE_HOLDS_ARRAY (n)))
    return malformed (pb, "the \"params\" of a JSON-RPC 1.0 call are not an "
                          "array");
  if (*params && !JSON_NODE_HOLDS_ARRAY (n) && !JSON_NODE_HOLDS_OBJECT (n))
    return malformed (pb, "\"params\" are neither an array nor an object");
  return true;
}

/* The parameters: an array's items, or an object as one struct. */
static xmlrpc_value *
call_params (JsonNode *params, struct problem *pb)
{
  xmlrpc_env env;
  xmlrpc_value *arr;
  size_t values = 0;

  xmlrpc_env_init (&env);
  arr = xmlrpc_array_new (&env);
  if (env.fault_occurred) {
    bad_value (pb, "params", g_strdup (env.fault_string));
    xmlrpc_env_clean (&env);
    return NULL;
  }
  if (params && JSON_NODE_HOLDS_ARRAY (params)) {
    JsonArray *a = json_node_get_array (params);

    for (guint i = 0; i < json_array_get_length (a) && !pb->expected; i++) {
      xmlrpc_value *v
          = to_value (&env, json_array_get_element (a, i), 1, &values, pb);

      if (v) {
        xmlrpc_array_append_item (&env, arr, v);
        xmlrpc_DECREF (v);
      }
    }
  }
  else if (params) {
    xmlrpc_value *v = to_value (&env, params, 1, &values, pb);

    if (v) {
      xmlrpc_array_append_item (&env, arr, v);
      xmlrpc_DECREF (v);
    }
  }
  if (env.fault_occurred && pb->expected == NULL)
    bad_value (pb, "params", g_strdup (env.fault_string));
  xmlrpc_env_clean (&env);
  if (pb->expected) {
    xmlrpc_DECREF (arr);
    return NULL;
  }
  return arr;
}

static void
json_decode (const void *body, size_t len, struct xapi_rpc_request *rq,
             struct xapi_rpc_form *form)
{
  struct problem pb = { 0 };
  g_autoptr (JsonParser) parser = NULL;
  g_autoptr (GError) error = NULL;
  const char *method = NULL;
  JsonNode *params = NULL;

  memset (rq, 0, sizeof *rq);
  memset (form, 0, sizeof *form);
  form->codec = &xapi_rpc_json;
  form->jsonrpc = 2;
  if (body == NULL) { /* an empty GByteArray has no data */
    body = "";
    len = 0;
  }
  if (scan (body, len, &pb)) {
    parser = json_parser_new_immutable ();
    if (!json_parser_load_from_data (parser, body, (gssize)len, &error))
      malformed (&pb, "%s", error->message);
    else if (envelope (json_parser_get_root (parser), form, &method, &params,
                       &pb)
             && pb.expected == NULL)
      rq->params = call_params (params, &pb);
  }
  if (pb.malformed) {
    /* Not a JSON-RPC call: the client's error, answered 400 (there is
     * no id to answer with). */
    rq->status = 400;
    rq->content_type = "text/plain";
    rq->log = g_strdup_printf ("malformed JSON-RPC request: %s", pb.malformed);
    rq->answer = g_bytes_new_take (g_strconcat (rq->log, "\n", NULL),
                                   strlen (rq->log) + 1);
    g_clear_pointer (&form->id, g_free);
  }
  else if (pb.expected) {
    rq->status = 200;
    rq->content_type = xapi_rpc_json.content_type;
    rq->log = g_strdup_printf ("XMLRPC_UNMARSHAL_FAILURE: expected %s, "
                               "received %s",
                               pb.expected, pb.received);
    rq->answer = json_failure (
        form, (const char *const[]){ "XMLRPC_UNMARSHAL_FAILURE", pb.expected,
                                     pb.received, NULL });
  }
  else
    rq->method = g_strdup (method);
  problem_clear (&pb);
}

const struct xapi_rpc_codec xapi_rpc_json = {
  .name = "JSON-RPC",
  .content_type = "application/json",
  .decode = json_decode,
  .encode = json_encode,
  .failure = json_failure,
};
