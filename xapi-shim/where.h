/* xapi's expression language of <class>.get_all_records_where (where.c).
 *
 *   expr  := value "=" value | expr "and" expr | expr "or" expr
 *          | "not" expr | "true" | "false" | "(" expr ")"
 *   value := "\"" literal "\"" | "field" "\"" name "\""
 *
 * As xapi's parser has it (xen-api ocaml/database/db_filter_lex.mll,
 * db_filter_parse.mly): blanks are space, tab and newline; a literal
 * holds any character but '"' (there are no escapes); keywords are lower
 * case and need no blank after them; "and" and "or" have the same
 * precedence and group to the left; "not" takes everything after it
 * ("not A and B" is "not (A and B)").  An equation compares the text of
 * both sides.
 *
 * Plain C and GLib, so that the unit test and the fuzz target take it
 * alone.
 */
#ifndef XAPI_WHERE_H
#define XAPI_WHERE_H

#include <stdbool.h>

/* Nesting deeper than this is refused (it bounds the recursion of parse
 * and evaluation, whatever a client sends). */
#define XAPI_WHERE_MAX_DEPTH 1000

struct xapi_where;

/* Parse TEXT.  NULL if it is not an expression, with *WHY (g_free) the
 * reason as xapi words it: "Parsing.Parse_error" for a bad sequence,
 * "Failure(\"lexing: empty token\")" for a character that starts no
 * token; "expression nested too deep" past XAPI_WHERE_MAX_DEPTH. */
struct xapi_where *xapi_where_parse (const char *text, char **why);
void xapi_where_free (struct xapi_where *w);

/* The text of field NAME of the object being tested (g_free'd by the
 * caller), or NULL if the object has no such field. */
typedef char *xapi_where_field_fn (const char *name, void *opaque);

/* Does the object that FIELD reads match W?  1 yes, 0 no; -1 if the
 * expression reads a field the object does not have, with *MISSING
 * (g_free) its name.  Fields are read only as far as the answer needs
 * them ("false and field \"x\" = \"\"" reads nothing), as in xapi. */
int xapi_where_eval (const struct xapi_where *w, xapi_where_field_fn *field,
                     void *opaque, char **missing);

#endif /* XAPI_WHERE_H */
