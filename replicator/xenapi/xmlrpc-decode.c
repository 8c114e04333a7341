/* The XML-RPC request decoder (see xmlrpc-decode.h for what it accepts
 * and refuses).  GMarkup reads the XML: it expands only XML's five
 * predefined entities and character references, never a DTD, and checks
 * that the text is UTF-8.  The callbacks below follow XML-RPC's structure
 * with a stack of open elements, bounded by the depth limit, and build
 * the xmlrpc_value of every <value> as it closes. */

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include <glib.h>

#include "xmlrpc-decode.h"

enum kind
{
  K_CALL,   /* <methodCall> */
  K_NAME,   /* <methodName> */
  K_PARAMS, /* <params> */
  K_PARAM,  /* <param>, or a response's <fault> */
  K_VALUE,  /* <value> */
  K_SCALAR, /* <int>, <string>, ... inside a <value> */
  K_NIL,    /* <nil/> */
  K_STRUCT, /* <struct> */
  K_MEMBER, /* <member> */
  K_MNAME,  /* <name> of a member */
  K_ARRAY,  /* <array> */
  K_DATA,   /* <data> */
};

enum scalar
{
  S_INT,
  S_I8,
  S_BOOL,
  S_DOUBLE,
  S_DATETIME,
  S_BASE64,
  S_STRING,
};

static const struct
{
  const char *element;
  enum scalar type;
} scalars[] = {
  { "i4", S_INT },
  { "int", S_INT },
  { "i8", S_I8 },
  { "ex:i8", S_I8 },
  { "boolean", S_BOOL },
  { "double", S_DOUBLE },
  { "dateTime.iso8601", S_DATETIME },
  { "base64", S_BASE64 },
  { "string", S_STRING },
};

struct frame
{
  enum kind kind;
  enum scalar type; /* K_SCALAR */
  const char *what; /* K_SCALAR: the element's name, for errors */
  xmlrpc_value *v;  /* K_VALUE: its value once known; K_STRUCT/K_ARRAY:
                       the container (borrowed from the value); K_MEMBER:
                       the member's value */
  char *name;       /* K_MEMBER: its name */
  bool seen_name;   /* K_CALL, K_MEMBER */
  bool seen_params; /* K_CALL */
  bool seen_child;  /* K_VALUE: a typed child; K_PARAM: its value;
                       K_ARRAY: its data */
};

/* Error codes of our GError domain. */
enum
{
  E_MALFORMED,
  E_BAD_VALUE,
};

G_DEFINE_QUARK (xapi - xmlrpc - decode - error, decode_error)

struct ctx
{
  GArray *stack; /* struct frame */
  GString *text; /* the text of the innermost open element so far */
  int depth;     /* open <value>s */
  unsigned values;
  bool done;     /* </methodCall> (</methodResponse>) seen */
  bool response; /* decoding a <methodResponse> */
  xmlrpc_env env;
  struct xapi_decoded *out;
};

/* At most this many bytes of a bad value are quoted back. */
#define QUOTE_MAX 64

/* S, shortened to at most QUOTE_MAX bytes on a character boundary (S is
 * valid UTF-8 here: GMarkup checked it). */
static char *
quote (const char *s)
{
  const char *end = s;

  while (*end && end - s < QUOTE_MAX)
    end = g_utf8_next_char (end);
  if (*end == '\0')
    return g_strdup (s);
  return g_strdup_printf ("%.*s...", (int)(end - s), s);
}

static void
bad_value (struct ctx *c, GError **error, const char *expected,
           char *received /* taken */)
{
  if (c->out->expected == NULL) {
    c->out->expected = g_strdup (expected);
    c->out->received = received;
  }
  else
    g_free (received);
  g_set_error (error, decode_error_quark (), E_BAD_VALUE, "%s expected",
               expected);
}

static struct frame *
top (struct ctx *c)
{
  return c->stack->len
             ? &g_array_index (c->stack, struct frame, c->stack->len - 1)
             : NULL;
}

static void
frame_clear (struct frame *f)
{
  if (f->kind == K_VALUE || f->kind == K_MEMBER)
    g_clear_pointer (&f->v, xmlrpc_DECREF);
  g_clear_pointer (&f->name, g_free);
}

static bool
all_space (const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (!g_ascii_isspace (s[i]))
      return false;
  return true;
}

/* In valid UTF-8 the only characters XML refuses are C0 controls other
 * than tab, LF and CR, and U+FFFE, U+FFFF (EF BF BE, EF BF BF).  Blocks
 * without a byte below 0x20 or an 0xEF (most of them) are skipped by a
 * loop the compiler vectorizes. */
#define XML_BLOCK 1024

bool
xapi_xml_utf8_ok (const char *s, size_t len)
{
  const unsigned char *p = (const unsigned char *)s;

  for (size_t at = 0; at < len; at += XML_BLOCK) {
    size_t n = len - at < XML_BLOCK ? len - at : XML_BLOCK;
    unsigned char suspect = 0;

    for (size_t i = at; i < at + n; i++)
      suspect |= (unsigned char)((p[i] < 0x20) | (p[i] == 0xef));
    if (!suspect)
      continue;
    for (size_t i = at; i < at + n; i++) {
      if (p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
        return false;
      if (p[i] == 0xef && i + 2 < len && p[i + 1] == 0xbf
          && (p[i + 2] == 0xbe || p[i + 2] == 0xbf))
        return false;
    }
  }
  return true;
}

/* Are all characters of S (valid UTF-8) ones XML 1.0 allows?  If not,
 * *BADP is the first that is not. */
static bool
xml_chars (const char *s, size_t len, gunichar *badp)
{
  const char *end = s + len;

  if (xapi_xml_utf8_ok (s, len))
    return true;
  for (const char *p = s; p < end; p = g_utf8_next_char (p)) {
    gunichar u = g_utf8_get_char (p);

    if (!xapi_xml_char (u)) {
      *badp = u;
      break;
    }
  }
  return false;
}

/* The text of a scalar, without the blanks around it. */
static char *
trimmed (const char *s)
{
  return g_strstrip (g_strdup (s));
}

/* An optionally signed decimal integer in [MIN, MAX]. */
static bool
parse_int (const char *s, int64_t min, int64_t max, int64_t *out)
{
  bool neg = false;
  uint64_t v = 0, limit;

  if (*s == '-' || *s == '+')
    neg = *s++ == '-';
  if (*s == '\0')
    return false;
  limit = neg ? (uint64_t) - (min + 1) + 1 : (uint64_t)max;
  for (; *s; s++) {
    if (!g_ascii_isdigit (*s))
      return false;
    if (v > (limit - (uint64_t)(*s - '0')) / 10)
      return false;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return true;
}

/* [+-] digits [. digits] [e [+-] digits], with at least one digit before
 * the exponent, finite. */
static bool
parse_double (const char *s, double *out)
{
  const char *p = s;
  int digits = 0;
  char *end;

  if (*p == '-' || *p == '+')
    p++;
  while (g_ascii_isdigit (*p))
    p++, digits++;
  if (*p == '.')
    for (p++; g_ascii_isdigit (*p); p++)
      digits++;
  if (digits == 0)
    return false;
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '-' || *p == '+')
      p++;
    if (!g_ascii_isdigit (*p))
      return false;
    while (g_ascii_isdigit (*p))
      p++;
  }
  if (*p != '\0')
    return false;
  *out = g_ascii_strtod (s, &end);
  return *end == '\0' && isfinite (*out);
}

static bool
digits (const char *s, int n, unsigned *out)
{
  unsigned v = 0;

  for (int i = 0; i < n; i++) {
    if (!g_ascii_isdigit (s[i]))
      return false;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  *out = v;
  return true;
}

/* YYYYMMDDTHH:MM:SS or YYYY-MM-DDTHH:MM:SS, then optionally a fraction
 * of a second (.digits) and "Z"; a real date and time. */
static bool
parse_datetime (const char *s, xmlrpc_datetime *dt)
{
  static const unsigned mdays[]
      = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
  const char *p = s;
  bool leap;

  memset (dt, 0, sizeof *dt);
  if (!digits (p, 4, &dt->Y))
    return false;
  p += 4;
  if (*p == '-') {
    if (!digits (p + 1, 2, &dt->M) || p[3] != '-'
        || !digits (p + 4, 2, &dt->D))
      return false;
    p += 6;
  }
  else {
    if (!digits (p, 2, &dt->M) || !digits (p + 2, 2, &dt->D))
      return false;
    p += 4;
  }
  if (*p != 'T' || !digits (p + 1, 2, &dt->h) || p[3] != ':'
      || !digits (p + 4, 2, &dt->m) || p[6] != ':'
      || !digits (p + 7, 2, &dt->s))
    return false;
  p += 9;
  if (*p == '.') {
    unsigned scale = 100000;
    int n = 0;

    for (p++; g_ascii_isdigit (*p); p++, n++) {
      dt->u += (unsigned)(*p - '0') * scale;
      scale /= 10;
    }
    if (n == 0)
      return false;
  }
  if (*p == 'Z')
    p++;
  if (*p != '\0')
    return false;
  leap = (dt->Y % 4 == 0 && dt->Y % 100 != 0) || dt->Y % 400 == 0;
  if (dt->Y == 0 || dt->M < 1 || dt->M > 12 || dt->D < 1
      || dt->D > mdays[dt->M - 1] || (dt->M == 2 && dt->D == 29 && !leap)
      || dt->h > 23 || dt->m > 59 || dt->s > 59)
    return false;
  return true;
}

/* Strict base64: the alphabet, blanks anywhere, padded to a multiple of
 * four, "=" only at the end. */
static bool
parse_base64 (const char *s, GByteArray **out)
{
  g_autoptr (GString) clean = g_string_new (NULL);
  gsize len;
  guchar *data;

  for (const char *p = s; *p; p++) {
    if (g_ascii_isspace (*p))
      continue;
    if (!g_ascii_isalnum (*p) && *p != '+' && *p != '/' && *p != '=')
      return false;
    g_string_append_c (clean, *p);
  }
  if (clean->len % 4 != 0)
    return false;
  for (gsize i = 0; i < clean->len; i++)
    if (clean->str[i] == '='
        && !(i >= clean->len - 2
             && (i == clean->len - 1 || clean->str[clean->len - 1] == '=')))
      return false;
  if (clean->len == 0) {
    *out = g_byte_array_new ();
    return true;
  }
  data = g_base64_decode (clean->str, &len);
  *out = g_byte_array_new_take (data, len);
  return true;
}

/* The value of a scalar element from its text; NULL after bad_value. */
static xmlrpc_value *
scalar_value (struct ctx *c, struct frame *f, GError **error)
{
  g_autofree char *t = NULL;
  xmlrpc_value *v = NULL;
  int64_t i;
  double d;
  xmlrpc_datetime dt;
  g_autoptr (GByteArray) bytes = NULL;

  if (f->type != S_STRING)
    t = trimmed (c->text->str);
  switch (f->type) {
  case S_INT:
    if (parse_int (t, INT32_MIN, INT32_MAX, &i))
      v = xmlrpc_int_new (&c->env, (xmlrpc_int32)i);
    break;
  case S_I8:
    if (parse_int (t, INT64_MIN, INT64_MAX, &i))
      v = xmlrpc_i8_new (&c->env, i);
    break;
  case S_BOOL:
    if (strcmp (t, "0") == 0 || strcmp (t, "1") == 0)
      v = xmlrpc_bool_new (&c->env, t[0] == '1');
    break;
  case S_DOUBLE:
    if (parse_double (t, &d))
      v = xmlrpc_double_new (&c->env, d);
    break;
  case S_DATETIME:
    if (parse_datetime (t, &dt))
      v = xmlrpc_datetime_new (&c->env, dt);
    break;
  case S_BASE64:
    if (parse_base64 (t, &bytes))
      v = xmlrpc_base64_new (&c->env, bytes->len, bytes->data);
    break;
  case S_STRING:
    /* _cr: a CR here came from a character reference (line ends were
     * made LF before parsing), so it is kept. */
    v = xmlrpc_string_new_lp_cr (&c->env, c->text->len, c->text->str);
    break;
  }
  if (c->env.fault_occurred) {
    /* xmlrpc-c refused it (out of memory, or a string it cannot hold) */
    bad_value (c, error, f->what, g_strdup (c->env.fault_string));
    return NULL;
  }
  if (v == NULL)
    bad_value (c, error, f->what,
               quote (f->type == S_STRING ? c->text->str : t));
  return v;
}

static void malformed (GError **error, const char *fmt, ...)
    G_GNUC_PRINTF (2, 3);

static void
malformed (GError **error, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (error, decode_error_quark (), E_MALFORMED, msg);
}

static void
push (struct ctx *c, enum kind kind)
{
  struct frame f = { .kind = kind };

  g_array_append_val (c->stack, f);
  g_string_truncate (c->text, 0);
}

static void
on_start (GMarkupParseContext *pc, const char *name, const char **attr_names,
          const char **attr_values, gpointer user_data, GError **error)
{
  struct ctx *c = user_data;
  struct frame *f = top (c);

  if (f == NULL) {
    const char *root = c->response ? "methodResponse" : "methodCall";
    if (c->done || strcmp (name, root) != 0)
      malformed (error, "<%s> where <%s> was expected", name, root);
    else
      push (c, K_CALL);
    return;
  }
  switch (f->kind) {
  case K_CALL:
    if (c->response) {
      /* One <params> with one <param>, or one <fault> with its value:
       * either way one value, in out->params. */
      if (f->seen_params)
        malformed (error, "unexpected <%s> in <methodResponse>", name);
      else if (strcmp (name, "params") == 0) {
        f->seen_params = true;
        push (c, K_PARAMS);
      }
      else if (strcmp (name, "fault") == 0) {
        f->seen_params = true;
        c->out->fault = true;
        push (c, K_PARAM);
      }
      else
        malformed (error, "unexpected <%s> in <methodResponse>", name);
      return;
    }
    if (strcmp (name, "methodName") == 0 && !f->seen_name && !f->seen_params) {
      f->seen_name = true;
      push (c, K_NAME);
    }
    else if (strcmp (name, "params") == 0 && f->seen_name && !f->seen_params) {
      f->seen_params = true;
      push (c, K_PARAMS);
    }
    else
      malformed (error, "unexpected <%s> in <methodCall>", name);
    return;
  case K_PARAMS:
    if (strcmp (name, "param") == 0)
      push (c, K_PARAM);
    else
      malformed (error, "unexpected <%s> in <params>", name);
    return;
  case K_PARAM:
  case K_DATA:
  case K_MEMBER:
    if (strcmp (name, "value") == 0
        && (f->kind == K_DATA || (f->kind == K_PARAM && !f->seen_child)
            || (f->kind == K_MEMBER && f->seen_name && f->v == NULL))) {
      if (f->kind == K_PARAM)
        f->seen_child = true;
      if (c->depth + 1 > XAPI_DECODE_MAX_DEPTH) {
        bad_value (c, error,
                   "values nested at most " G_STRINGIFY (
                       XAPI_DECODE_MAX_DEPTH) " deep",
                   g_strdup ("deeper"));
        return;
      }
      if (c->values + 1 > XAPI_DECODE_MAX_VALUES) {
        bad_value (c, error,
                   "at most " G_STRINGIFY (XAPI_DECODE_MAX_VALUES) " values",
                   g_strdup ("more"));
        return;
      }
      c->depth++;
      c->values++;
      push (c, K_VALUE);
    }
    else if (f->kind == K_MEMBER && strcmp (name, "name") == 0
             && !f->seen_name) {
      f->seen_name = true;
      push (c, K_MNAME);
    }
    else
      malformed (error, "unexpected <%s>", name);
    return;
  case K_VALUE:
    if (f->seen_child || !all_space (c->text->str, c->text->len)) {
      malformed (error, "<%s> after other content in <value>", name);
      return;
    }
    f->seen_child = true;
    for (size_t i = 0; i < G_N_ELEMENTS (scalars); i++)
      if (strcmp (name, scalars[i].element) == 0) {
        push (c, K_SCALAR);
        top (c)->type = scalars[i].type;
        top (c)->what = scalars[i].element;
        return;
      }
    if (strcmp (name, "nil") == 0 || strcmp (name, "ex:nil") == 0) {
      xmlrpc_value *nil = xmlrpc_nil_new (&c->env);

      if (c->env.fault_occurred) {
        bad_value (c, error, "nil", g_strdup (c->env.fault_string));
        return;
      }
      f->v = nil;
      push (c, K_NIL);
    }
    else if (strcmp (name, "struct") == 0) {
      xmlrpc_value *st = xmlrpc_struct_new (&c->env);

      if (c->env.fault_occurred) {
        bad_value (c, error, "struct", g_strdup (c->env.fault_string));
        return;
      }
      f->v = st;
      push (c, K_STRUCT);
      top (c)->v = st;
    }
    else if (strcmp (name, "array") == 0) {
      xmlrpc_value *a = xmlrpc_array_new (&c->env);

      if (c->env.fault_occurred) {
        bad_value (c, error, "array", g_strdup (c->env.fault_string));
        return;
      }
      f->v = a;
      push (c, K_ARRAY);
      top (c)->v = a;
    }
    else
      malformed (error, "<%s> is not an XML-RPC type", name);
    return;
  case K_STRUCT:
    if (strcmp (name, "member") == 0)
      push (c, K_MEMBER);
    else
      malformed (error, "unexpected <%s> in <struct>", name);
    return;
  case K_ARRAY:
    if (strcmp (name, "data") == 0 && !f->seen_child) {
      f->seen_child = true;
      push (c, K_DATA);
    }
    else
      malformed (error, "unexpected <%s> in <array>", name);
    return;
  case K_NAME:
  case K_SCALAR:
  case K_NIL:
  case K_MNAME: malformed (error, "unexpected <%s> in text", name); return;
  }
}

/* Give the value V (taken) to the element that holds F's parent. */
static void
place_value (struct ctx *c, xmlrpc_value *v, GError **error)
{
  struct frame *p = top (c);

  switch (p->kind) {
  case K_PARAM:
    xmlrpc_array_append_item (&c->env, c->out->params, v);
    xmlrpc_DECREF (v);
    break;
  case K_DATA:
    /* the array is the value of the <array> below this <data> */
    xmlrpc_array_append_item (
        &c->env, g_array_index (c->stack, struct frame, c->stack->len - 2).v,
        v);
    xmlrpc_DECREF (v);
    break;
  case K_MEMBER: p->v = v; break;
  default: g_assert_not_reached ();
  }
  if (c->env.fault_occurred)
    bad_value (c, error, "value", g_strdup (c->env.fault_string));
}

static void
on_end (GMarkupParseContext *pc, const char *name, gpointer user_data,
        GError **error)
{
  struct ctx *c = user_data;
  struct frame f = *top (c);
  xmlrpc_value *v;

  /* GMarkup checked that NAME closes the open element. */
  g_array_set_size (c->stack, c->stack->len - 1);
  switch (f.kind) {
  case K_CALL:
    if (c->response && !f.seen_params)
      malformed (error, "no <params> or <fault> in <methodResponse>");
    else if (!c->response && !f.seen_name)
      malformed (error, "no <%s> in <methodCall>", "methodName");
    c->done = true;
    break;
  case K_NAME:
    g_free (c->out->method);
    c->out->method = g_strdup (c->text->str);
    break;
  case K_PARAMS: break;
  case K_PARAM:
    if (!f.seen_child)
      malformed (error, "no <%s> in <param>", "value");
    break;
  case K_VALUE:
    c->depth--;
    if (!f.seen_child) {
      /* untyped: a string */
      f.v = xmlrpc_string_new_lp_cr (&c->env, c->text->len, c->text->str);
      if (c->env.fault_occurred) {
        f.v = NULL;
        bad_value (c, error, "string", g_strdup (c->env.fault_string));
        break;
      }
    }
    if (f.v == NULL) { /* an xmlrpc-c error while building it */
      bad_value (c, error, "value", g_strdup ("nothing"));
      break;
    }
    place_value (c, g_steal_pointer (&f.v), error);
    break;
  case K_SCALAR:
    v = scalar_value (c, &f, error);
    if (v)
      top (c)->v = v;
    break;
  case K_NIL:
    if (!all_space (c->text->str, c->text->len))
      malformed (error, "text in <%s>", "nil");
    break;
  case K_STRUCT: break;
  case K_MEMBER:
    if (!f.seen_name || f.v == NULL) {
      malformed (error, "<member> without <%s>",
                 f.seen_name ? "value" : "name");
      break;
    }
    xmlrpc_struct_set_value (&c->env, top (c)->v, f.name, f.v);
    if (c->env.fault_occurred)
      bad_value (c, error, "member name", quote (f.name));
    break;
  case K_MNAME: top (c)->name = g_strdup (c->text->str); break;
  case K_ARRAY:
    if (!f.seen_child)
      malformed (error, "no <%s> in <array>", "data");
    break;
  case K_DATA: break;
  }
  frame_clear (&f);
  g_string_truncate (c->text, 0);
}

static void
on_text (GMarkupParseContext *pc, const char *text, gsize len,
         gpointer user_data, GError **error)
{
  struct ctx *c = user_data;
  struct frame *f = top (c);
  gunichar bad = 0;

  if (!xml_chars (text, len, &bad)) {
    bad_value (c, error, "characters XML allows",
               g_strdup_printf ("U+%04X", bad));
    return;
  }
  if (f == NULL || f->kind == K_CALL || f->kind == K_PARAMS
      || f->kind == K_PARAM || f->kind == K_STRUCT || f->kind == K_MEMBER
      || f->kind == K_ARRAY || f->kind == K_DATA || f->kind == K_NIL
      || (f->kind == K_VALUE && f->seen_child)) {
    if (!all_space (text, len))
      malformed (error, "text where an element was expected");
    return;
  }
  g_string_append_len (c->text, text, len);
}

/* Comments and processing instructions are skipped; a DTD (or anything
 * else GMarkup passes through) is refused. */
static void
on_passthrough (GMarkupParseContext *pc, const char *text, gsize len,
                gpointer user_data, GError **error)
{
  if ((len >= 4 && memcmp (text, "<!--", 4) == 0)
      || (len >= 2 && memcmp (text, "<?", 2) == 0))
    return;
  malformed (error, "%s are not accepted",
             len >= 9 && memcmp (text, "<!DOCTYPE", 9) == 0
                 ? "document type declarations"
                 : "markup declarations");
}

static const GMarkupParser parser = {
  .start_element = on_start,
  .end_element = on_end,
  .text = on_text,
  .passthrough = on_passthrough,
};

/* XML turns every CR LF and lone CR into LF before parsing (a CR wanted
 * in a string is sent as &#13;); GMarkup does not, so we do. */
static char *
normalize_newlines (const char *body, size_t len, size_t *outlen)
{
  char *out = g_malloc (len + 1), *q = out;

  for (size_t i = 0; i < len; i++) {
    if (body[i] == '\r') {
      *q++ = '\n';
      if (i + 1 < len && body[i + 1] == '\n')
        i++;
    }
    else
      *q++ = body[i];
  }
  *q = '\0';
  *outlen = (size_t)(q - out);
  return out;
}

static enum xapi_decode_status
decode (const char *body, size_t len, bool response, struct xapi_decoded *out)
{
  struct ctx c = { .out = out, .response = response };
  g_autofree char *copy = NULL;
  g_autoptr (GError) error = NULL;
  GMarkupParseContext *pc;
  enum xapi_decode_status status = XAPI_DECODE_OK;

  memset (out, 0, sizeof *out);
  if (body == NULL || len == 0) { /* an empty GByteArray has no data */
    body = "";
    len = 0;
  }
  if (len && memchr (body, '\r', len)) {
    copy = normalize_newlines (body, len, &len);
    body = copy;
  }
  xmlrpc_env_init (&c.env);
  c.stack = g_array_sized_new (FALSE, TRUE, sizeof (struct frame),
                               3 * XAPI_DECODE_MAX_DEPTH + 4);
  c.text = g_string_new (NULL);
  out->params = xmlrpc_array_new (&c.env);
  if (c.env.fault_occurred) {
    out->params = NULL;
    g_set_error (&error, decode_error_quark (), E_BAD_VALUE, "%s",
                 c.env.fault_string);
    out->expected = g_strdup ("params");
    out->received = g_strdup (c.env.fault_string);
  }
  else {
    pc = g_markup_parse_context_new (&parser, G_MARKUP_TREAT_CDATA_AS_TEXT, &c,
                                     NULL);
    if (g_markup_parse_context_parse (pc, body, (gssize)len, &error))
      g_markup_parse_context_end_parse (pc, &error);
    g_markup_parse_context_free (pc);
  }
  if (error == NULL && !c.done)
    g_set_error (&error, decode_error_quark (), E_MALFORMED, "no <%s>",
                 response ? "methodResponse" : "methodCall");
  else if (error == NULL && !response && out->method == NULL)
    g_set_error (&error, decode_error_quark (), E_MALFORMED,
                 "no <methodCall>");
  else if (error == NULL && response
           && xmlrpc_array_size (&c.env, out->params) != 1)
    g_set_error (&error, decode_error_quark (), E_MALFORMED,
                 "a <methodResponse> holds one value, not %d",
                 xmlrpc_array_size (&c.env, out->params));

  if (error && error->domain == decode_error_quark ()
      && error->code == E_BAD_VALUE)
    status = XAPI_DECODE_BAD_VALUE;
  else if (error && error->domain == G_MARKUP_ERROR
           && error->code == G_MARKUP_ERROR_BAD_UTF8) {
    status = XAPI_DECODE_BAD_VALUE;
    g_free (out->expected);
    g_free (out->received);
    out->expected = g_strdup ("UTF-8 text");
    out->received = g_strdup ("invalid UTF-8");
  }
  else if (error) {
    status = XAPI_DECODE_MALFORMED;
    out->message = g_utf8_make_valid (error->message, -1);
  }
  if (status != XAPI_DECODE_OK) {
    g_clear_pointer (&out->method, g_free);
    g_clear_pointer (&out->params, xmlrpc_DECREF);
  }
  for (guint i = 0; i < c.stack->len; i++)
    frame_clear (&g_array_index (c.stack, struct frame, i));
  g_array_unref (c.stack);
  g_string_free (c.text, TRUE);
  xmlrpc_env_clean (&c.env);
  return status;
}

enum xapi_decode_status
xapi_decode_call (const char *body, size_t len, struct xapi_decoded *out)
{
  return decode (body, len, false, out);
}

enum xapi_decode_status
xapi_decode_response (const char *body, size_t len, struct xapi_decoded *out)
{
  return decode (body, len, true, out);
}

/* A fault's struct: faultCode (an int) and faultString, as text. */
static char *
fault_text (xmlrpc_value *f)
{
  xmlrpc_env env;
  xmlrpc_value *code = NULL, *str = NULL;
  xmlrpc_int32 n = 0;
  const char *s = NULL;
  char *text;

  xmlrpc_env_init (&env);
  if (xmlrpc_value_type (f) == XMLRPC_TYPE_STRUCT) {
    xmlrpc_struct_find_value (&env, f, "faultCode", &code);
    if (!env.fault_occurred)
      xmlrpc_struct_find_value (&env, f, "faultString", &str);
  }
  if (code && xmlrpc_value_type (code) == XMLRPC_TYPE_INT)
    xmlrpc_read_int (&env, code, &n);
  if (str && xmlrpc_value_type (str) == XMLRPC_TYPE_STRING)
    xmlrpc_read_string (&env, str, &s);
  text = g_strdup_printf ("XML-RPC fault %d: %s", (int)n,
                          s ? s : "(no faultString)");
  free ((void *)s);
  if (code)
    xmlrpc_DECREF (code);
  if (str)
    xmlrpc_DECREF (str);
  xmlrpc_env_clean (&env);
  return text;
}

xmlrpc_value *
xapi_response_value (const char *body, size_t len, char **why)
{
  struct xapi_decoded d;
  xmlrpc_value *v = NULL;
  xmlrpc_env env;

  *why = NULL;
  switch (xapi_decode_response (body, len, &d)) {
  case XAPI_DECODE_OK:
    xmlrpc_env_init (&env);
    xmlrpc_array_read_item (&env, d.params, 0, &v);
    if (env.fault_occurred) {
      v = NULL;
      *why = g_strdup_printf ("bad XML-RPC reply: %s", env.fault_string);
    }
    else if (d.fault) {
      *why = fault_text (v);
      xmlrpc_DECREF (v);
      v = NULL;
    }
    xmlrpc_env_clean (&env);
    break;
  case XAPI_DECODE_MALFORMED:
    *why = g_strdup_printf ("bad XML-RPC reply: %s", d.message);
    break;
  case XAPI_DECODE_BAD_VALUE:
    *why = g_strdup_printf ("bad XML-RPC reply: expected %s, received %s",
                            d.expected, d.received);
    break;
  }
  xapi_decoded_clear (&d);
  return v;
}

void
xapi_decoded_clear (struct xapi_decoded *d)
{
  g_clear_pointer (&d->method, g_free);
  g_clear_pointer (&d->params, xmlrpc_DECREF);
  g_clear_pointer (&d->message, g_free);
  g_clear_pointer (&d->expected, g_free);
  g_clear_pointer (&d->received, g_free);
  d->fault = false;
}
