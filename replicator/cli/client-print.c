/* XenAPI values (xapi-value.h) as the command prints them: as JSON for
 * --json, and the records of a list in a stable order. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

void
xv_print_json (FILE *f, const struct xv *v)
{
  switch (v->type) {
  case XV_NIL: fputs ("null", f); break;
  case XV_STRING: cli_json_string (f, v->s); break;
  case XV_INT: fprintf (f, "%" PRId64, v->i); break;
  case XV_BOOL: fputs (v->b ? "true" : "false", f); break;
  case XV_DOUBLE: fprintf (f, "%.17g", v->d); break;
  case XV_ARRAY:
    fputc ('[', f);
    for (size_t i = 0; i < v->n; i++) {
      if (i)
        fputs (", ", f);
      xv_print_json (f, v->items[i]);
    }
    fputc (']', f);
    break;
  case XV_STRUCT:
    fputc ('{', f);
    for (size_t i = 0; i < v->n; i++) {
      if (i)
        fputs (", ", f);
      cli_json_string (f, v->keys[i]);
      fputs (": ", f);
      xv_print_json (f, v->items[i]);
    }
    fputc ('}', f);
    break;
  }
}

static const char *sort_field;
static const struct xv *sort_records;

static int
compare_records (const void *a, const void *b)
{
  const struct xv *ra = sort_records->items[*(const size_t *)a];
  const struct xv *rb = sort_records->items[*(const size_t *)b];
  int r = strcmp (xv_str (ra, sort_field), xv_str (rb, sort_field));
  return r ? r : strcmp (xv_str (ra, "uuid"), xv_str (rb, "uuid"));
}

size_t *
xv_sort_records (const struct xv *records, const char *field)
{
  size_t n = records && records->type == XV_STRUCT ? records->n : 0;
  size_t *order = g_new (size_t, n + 1);

  for (size_t i = 0; i < n; i++)
    order[i] = i;
  sort_field = field;
  sort_records = records;
  qsort (order, n, sizeof *order, compare_records);
  return order;
}

static void
member (const char *key, bool *first)
{
  fputs (*first ? "{" : ", ", stdout);
  *first = false;
  cli_json_string (stdout, key);
  fputs (": ", stdout);
}

void
json_str (bool *first, const char *key, const char *v)
{
  member (key, first);
  cli_json_string (stdout, v ? v : "");
}

void
json_u64 (bool *first, const char *key, uint64_t v)
{
  member (key, first);
  printf ("%" PRIu64, v);
}

void
json_double (bool *first, const char *key, double v)
{
  member (key, first);
  printf ("%.6g", v);
}

void
json_bool (bool *first, const char *key, bool v)
{
  member (key, first);
  fputs (v ? "true" : "false", stdout);
}

void
json_value (bool *first, const char *key, const struct xv *v)
{
  member (key, first);
  if (v)
    xv_print_json (stdout, v);
  else
    fputs ("null", stdout);
}

void
json_key (bool *first, const char *key)
{
  member (key, first);
}

void
json_end (bool *first)
{
  fputs (*first ? "{}" : "}", stdout);
  *first = true;
}
