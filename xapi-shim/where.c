/* get_all_records_where's expressions (where.h): a lexer, a recursive
 * descent parser into a tree, and its evaluation over one object.
 *
 * The grammar is xapi's yacc grammar, whose precedences make "not" the
 * weakest operator: after "not" comes a whole expression, and a chain of
 * "and"/"or" is folded to the left as it is read.  Each node knows its
 * depth, so that neither parsing nor evaluating ever recurses deeper
 * than XAPI_WHERE_MAX_DEPTH, however long a chain a client sends. */

#include <string.h>

#include <glib.h>

#include "where.h"

enum node_kind
{
  NODE_TRUE,
  NODE_FALSE,
  NODE_NOT,
  NODE_AND,
  NODE_OR,
  NODE_EQ,
};

/* One side of an equation: a literal, or the field it names. */
struct side
{
  bool field;
  char *text;
};

struct xapi_where
{
  enum node_kind kind;
  int depth;
  struct xapi_where *a, *b; /* NOT: a; AND, OR: a and b */
  struct side l, r;         /* EQ */
};

enum token
{
  TOK_EOF,
  TOK_EQ,
  TOK_TRUE,
  TOK_FALSE,
  TOK_LPAREN,
  TOK_RPAREN,
  TOK_FIELD,
  TOK_AND,
  TOK_OR,
  TOK_NOT,
  TOK_STRING,
  TOK_BAD, /* no token starts here */
};

struct parser
{
  const char *p;
  enum token tok;
  char *text; /* of TOK_STRING */
  const char *why;
};

static const struct
{
  const char *word;
  enum token tok;
} keywords[] = {
  { "true", TOK_TRUE }, { "false", TOK_FALSE }, { "field", TOK_FIELD },
  { "and", TOK_AND },   { "or", TOK_OR },       { "not", TOK_NOT },
};

static void
next (struct parser *ps)
{
  const char *p = ps->p;

  g_clear_pointer (&ps->text, g_free);
  while (*p == ' ' || *p == '\t' || *p == '\n')
    p++;
  ps->p = p + 1;
  switch (*p) {
  case '\0': ps->p = p; ps->tok = TOK_EOF; return;
  case '=': ps->tok = TOK_EQ; return;
  case '(': ps->tok = TOK_LPAREN; return;
  case ')': ps->tok = TOK_RPAREN; return;
  case '"': {
    const char *end = strchr (p + 1, '"');

    if (end == NULL)
      break;
    ps->text = g_strndup (p + 1, end - (p + 1));
    ps->p = end + 1;
    ps->tok = TOK_STRING;
    return;
  }
  }
  for (size_t i = 0; i < G_N_ELEMENTS (keywords); i++)
    if (strncmp (p, keywords[i].word, strlen (keywords[i].word)) == 0) {
      ps->p = p + strlen (keywords[i].word);
      ps->tok = keywords[i].tok;
      return;
    }
  ps->p = p;
  ps->tok = TOK_BAD;
}

void
xapi_where_free (struct xapi_where *w)
{
  if (w == NULL)
    return;
  xapi_where_free (w->a);
  xapi_where_free (w->b);
  g_free (w->l.text);
  g_free (w->r.text);
  g_free (w);
}

/* Stop at the first error: its reason is kept, the tree is dropped. */
static struct xapi_where *
fail (struct parser *ps, const char *why)
{
  if (ps->why == NULL)
    ps->why = ps->tok == TOK_BAD ? "Failure(\"lexing: empty token\")" : why;
  return NULL;
}

static struct xapi_where *
node (struct parser *ps, enum node_kind kind, struct xapi_where *a,
      struct xapi_where *b)
{
  struct xapi_where *w = g_new0 (struct xapi_where, 1);

  w->kind = kind;
  w->a = a;
  w->b = b;
  w->depth = 1 + MAX (a ? a->depth : 0, b ? b->depth : 0);
  if (w->depth > XAPI_WHERE_MAX_DEPTH) {
    xapi_where_free (w);
    return fail (ps, "expression nested too deep");
  }
  return w;
}

static bool
side (struct parser *ps, struct side *s)
{
  if (ps->tok == TOK_FIELD) {
    s->field = true;
    next (ps);
  }
  if (ps->tok != TOK_STRING)
    return false;
  s->text = g_steal_pointer (&ps->text);
  next (ps);
  return true;
}

static struct xapi_where *expr (struct parser *ps, int level);

/* An operand of "and"/"or": one of the alternatives but the chain. */
static struct xapi_where *
operand (struct parser *ps, int level)
{
  struct xapi_where *w;

  if (level > XAPI_WHERE_MAX_DEPTH)
    return fail (ps, "expression nested too deep");
  switch (ps->tok) {
  case TOK_TRUE: next (ps); return node (ps, NODE_TRUE, NULL, NULL);
  case TOK_FALSE: next (ps); return node (ps, NODE_FALSE, NULL, NULL);
  case TOK_NOT:
    next (ps);
    w = expr (ps, level + 1);
    return w ? node (ps, NODE_NOT, w, NULL) : NULL;
  case TOK_LPAREN:
    next (ps);
    w = expr (ps, level + 1);
    if (w && ps->tok != TOK_RPAREN) {
      xapi_where_free (w);
      return fail (ps, "Parsing.Parse_error");
    }
    next (ps);
    return w;
  default:
    w = node (ps, NODE_EQ, NULL, NULL);
    if (w && side (ps, &w->l) && ps->tok == TOK_EQ) {
      next (ps);
      if (side (ps, &w->r))
        return w;
    }
    xapi_where_free (w);
    return fail (ps, "Parsing.Parse_error");
  }
}

static struct xapi_where *
expr (struct parser *ps, int level)
{
  struct xapi_where *w = operand (ps, level);

  while (w && (ps->tok == TOK_AND || ps->tok == TOK_OR)) {
    enum node_kind k = ps->tok == TOK_AND ? NODE_AND : NODE_OR;
    struct xapi_where *b;

    next (ps);
    if ((b = operand (ps, level)) == NULL) {
      xapi_where_free (w);
      return NULL;
    }
    if ((w = node (ps, k, w, b)) == NULL)
      return NULL; /* node freed both halves */
  }
  return w;
}

struct xapi_where *
xapi_where_parse (const char *text, char **why)
{
  struct parser ps = { .p = text };
  struct xapi_where *w;

  next (&ps);
  w = expr (&ps, 0);
  if (w && ps.tok != TOK_EOF) {
    xapi_where_free (w);
    w = fail (&ps, "Parsing.Parse_error");
  }
  g_free (ps.text);
  if (w == NULL && why)
    *why = g_strdup (ps.why ? ps.why : "Parsing.Parse_error");
  return w;
}

/* The text of one side; NULL (with *MISSING) for a field not there. */
static char *
side_text (const struct side *s, xapi_where_field_fn *field, void *opaque,
           char **missing)
{
  char *t;

  if (!s->field)
    return g_strdup (s->text);
  if ((t = field (s->text, opaque)) == NULL)
    *missing = g_strdup (s->text);
  return t;
}

int
xapi_where_eval (const struct xapi_where *w, xapi_where_field_fn *field,
                 void *opaque, char **missing)
{
  int a;

  switch (w->kind) {
  case NODE_TRUE: return 1;
  case NODE_FALSE: return 0;
  case NODE_NOT:
    a = xapi_where_eval (w->a, field, opaque, missing);
    return a < 0 ? a : !a;
  case NODE_AND:
    a = xapi_where_eval (w->a, field, opaque, missing);
    return a != 1 ? a : xapi_where_eval (w->b, field, opaque, missing);
  case NODE_OR:
    a = xapi_where_eval (w->a, field, opaque, missing);
    return a != 0 ? a : xapi_where_eval (w->b, field, opaque, missing);
  case NODE_EQ: {
    g_autofree char *l = side_text (&w->l, field, opaque, missing);
    g_autofree char *r = l ? side_text (&w->r, field, opaque, missing) : NULL;

    if (r == NULL)
      return -1;
    return strcmp (l, r) == 0;
  }
  }
  g_assert_not_reached ();
}
