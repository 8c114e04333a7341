/* get_all_records_where's expressions (xapi-shim/where.h): xapi's
 * grammar and precedences, lazy field reads, and hostile input that must
 * give xapi's error, never a crash. */
#include <glib.h>

#include "unit.h"
#include "where.h"

/* An object with two fields: name__label = "vm one", power_state =
 * "Running"; counts the fields read. */
static int reads;

static char *
field (const char *name, void *opaque)
{
  reads++;
  if (strcmp (name, "name__label") == 0)
    return g_strdup ("vm one");
  if (strcmp (name, "power_state") == 0)
    return g_strdup ("Running");
  return NULL;
}

/* 1 match, 0 no match, -1 missing field, -2 parse error. */
static int
eval (const char *text)
{
  g_autofree char *why = NULL;
  g_autofree char *missing = NULL;
  struct xapi_where *w = xapi_where_parse (text, &why);
  int r;

  if (w == NULL) {
    CU_ASSERT (why != NULL);
    return -2;
  }
  r = xapi_where_eval (w, field, NULL, &missing);
  CU_ASSERT ((r == -1) == (missing != NULL));
  xapi_where_free (w);
  return r;
}

static char *
why_of (const char *text)
{
  char *why = NULL;

  CU_ASSERT (xapi_where_parse (text, &why) == NULL);
  return why;
}

static void
test_equations (void)
{
  CU_ASSERT_EQUAL (eval ("field \"name__label\" = \"vm one\""), 1);
  CU_ASSERT_EQUAL (eval ("field \"name__label\"=\"vm two\""), 0);
  CU_ASSERT_EQUAL (eval ("\"vm one\" = field \"name__label\""), 1);
  CU_ASSERT_EQUAL (eval ("\"a\" = \"a\""), 1);
  CU_ASSERT_EQUAL (eval ("\"\" = \"\""), 1);
  CU_ASSERT_EQUAL (eval ("\t\nfield\"power_state\"\n=\t\"Running\" "), 1);
  /* A literal holds anything but '"', backslashes included. */
  CU_ASSERT_EQUAL (eval ("\"a\\\\\" = \"a\\\\\""), 1);
}

static void
test_constants_and_operators (void)
{
  CU_ASSERT_EQUAL (eval ("true"), 1);
  CU_ASSERT_EQUAL (eval ("false"), 0);
  CU_ASSERT_EQUAL (eval ("not false"), 1);
  CU_ASSERT_EQUAL (eval ("true and false"), 0);
  CU_ASSERT_EQUAL (eval ("false or true"), 1);
  CU_ASSERT_EQUAL (eval ("(true)"), 1);
  CU_ASSERT_EQUAL (eval ("((false or (true)))"), 1);
  /* Keywords need no blank after them, as xapi's lexer reads them. */
  CU_ASSERT_EQUAL (eval ("nottrue"), 0);
  CU_ASSERT_EQUAL (eval ("trueandfalse"), 0);
}

static void
test_precedence (void)
{
  /* and/or: one level, grouped to the left. */
  CU_ASSERT_EQUAL (eval ("true or true and false"), 0);
  CU_ASSERT_EQUAL (eval ("false and false or true"), 1);
  /* not takes the rest: "not A and B" is "not (A and B)". */
  CU_ASSERT_EQUAL (eval ("not true and false"), 1);
  CU_ASSERT_EQUAL (eval ("(not true) and false"), 0);
  CU_ASSERT_EQUAL (eval ("false or not false and false"), 1);
}

static void
test_fields_are_read_lazily (void)
{
  reads = 0;
  CU_ASSERT_EQUAL (eval ("false and field \"nope\" = \"x\""), 0);
  CU_ASSERT_EQUAL (eval ("true or field \"nope\" = \"x\""), 1);
  CU_ASSERT_EQUAL (reads, 0);
  CU_ASSERT_EQUAL (eval ("field \"nope\" = \"x\""), -1);
  CU_ASSERT_EQUAL (eval ("not field \"nope\" = \"x\""), -1);
  CU_ASSERT_EQUAL (eval ("true and field \"nope\" = \"x\""), -1);
}

static void
test_bad_expressions (void)
{
  static const char *const parse_errors[]
      = { "",          "   ",       "field",      "field \"a\"",
          "\"a\" =",   "= \"a\"",   "\"a\" \"b\"", "true true",
          "(true",     "true)",     "()",          "not",
          "true and",  "or true",   "field field \"a\" = \"b\"",
          "field \"a\" = field", "true = true" };
  static const char *const lex_errors[]
      = { "x",          "TRUE",       "True",    "\"unterminated",
          "true && false", "field 'a' = 'b'", "true\r", "fiel \"a\" = \"b\"",
          "\"a\" == \"a\"", "\"a\" = \"a\" !" };

  for (size_t i = 0; i < G_N_ELEMENTS (parse_errors); i++) {
    g_autofree char *why = why_of (parse_errors[i]);

    CU_ASSERT_STRING_EQUAL (why, "Parsing.Parse_error");
  }
  for (size_t i = 0; i < G_N_ELEMENTS (lex_errors); i++) {
    g_autofree char *why = why_of (lex_errors[i]);

    if (why && strcmp (why, "Failure(\"lexing: empty token\")") != 0
        && strcmp (why, "Parsing.Parse_error") != 0)
      CU_FAIL (lex_errors[i]);
  }
  {
    g_autofree char *why = why_of ("x");

    CU_ASSERT_STRING_EQUAL (why, "Failure(\"lexing: empty token\")");
  }
}

/* Deep nesting and long chains are refused, not a stack overflow. */
static void
test_hostile_sizes (void)
{
  const size_t n = 100000;
  GString *s = g_string_new (NULL);
  g_autofree char *why = NULL;
  struct xapi_where *w;

  for (size_t i = 0; i < n; i++)
    g_string_append_c (s, '(');
  g_string_append (s, "true");
  for (size_t i = 0; i < n; i++)
    g_string_append_c (s, ')');
  why = why_of (s->str);
  CU_ASSERT_STRING_EQUAL (why, "expression nested too deep");
  g_clear_pointer (&why, g_free);

  g_string_truncate (s, 0);
  for (size_t i = 0; i < n; i++)
    g_string_append (s, "not ");
  g_string_append (s, "true");
  why = why_of (s->str);
  CU_ASSERT_STRING_EQUAL (why, "expression nested too deep");
  g_clear_pointer (&why, g_free);

  g_string_assign (s, "true");
  for (size_t i = 0; i < n; i++)
    g_string_append (s, " and true");
  why = why_of (s->str);
  CU_ASSERT_STRING_EQUAL (why, "expression nested too deep");
  g_clear_pointer (&why, g_free);

  /* Up to the limit it works. */
  g_string_assign (s, "true");
  for (size_t i = 0; i < XAPI_WHERE_MAX_DEPTH / 4; i++)
    g_string_append (s, " and not false");
  w = xapi_where_parse (s->str, &why);
  CU_ASSERT_FATAL (w != NULL);
  CU_ASSERT_EQUAL (xapi_where_eval (w, field, NULL, NULL), 1);
  xapi_where_free (w);
  g_string_free (s, TRUE);
}

/* Random bytes and random token soups: an answer or an error, always. */
static void
test_random_input (void)
{
  static const char *const toks[]
      = { "true", "false", "not", "and", "or", "(", ")", "=", "field",
          "\"name__label\"", "\"vm one\"", "\"", " ", "x" };
  uint64_t seed = 42;

  for (int round = 0; round < 20000; round++) {
    GString *s = g_string_new (NULL);
    int len = unit_rnd (&seed) % 24;
    g_autofree char *why = NULL;
    g_autofree char *missing = NULL;
    struct xapi_where *w;

    for (int i = 0; i < len; i++) {
      if (round % 2)
        g_string_append_c (s, 1 + unit_rnd (&seed) % 255);
      else
        g_string_append (s, toks[unit_rnd (&seed) % G_N_ELEMENTS (toks)]);
    }
    w = xapi_where_parse (s->str, &why);
    CU_ASSERT ((w == NULL) == (why != NULL));
    if (w) {
      int r = xapi_where_eval (w, field, NULL, &missing);

      CU_ASSERT (r >= -1 && r <= 1);
      xapi_where_free (w);
    }
    g_string_free (s, TRUE);
  }
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "equations", test_equations },
    { "constants and operators", test_constants_and_operators },
    { "precedence as xapi's grammar", test_precedence },
    { "fields are read lazily", test_fields_are_read_lazily },
    { "bad expressions give xapi's reasons", test_bad_expressions },
    { "hostile sizes", test_hostile_sizes },
    { "random input", test_random_input },
    { NULL },
  };
  return unit_main ("xapi-where", tests);
}
