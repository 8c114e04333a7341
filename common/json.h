/* JSON string literals through json-glib, for the places that write a
 * JSON object by hand around numbers they format themselves (the mirror
 * filter's replies, the CLI's --json output), and documents json-glib's
 * generator writes (the daemon's JSON-RPC replies): what json-glib gets
 * wrong is fixed here, once.
 *
 * The result is always strict JSON (RFC 8259), whatever the bytes given:
 * bytes that are not UTF-8 become U+FFFD (a file name or an error
 * message may hold any bytes; a reader's parser would reject them), and
 * every control character is escaped.  Include it with json-glib's
 * CFLAGS; link json-glib. */
#ifndef VDM_JSON_H
#define VDM_JSON_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

/* OUT, text json-glib's generator wrote (taken), as strict JSON.  What
 * json-glib up to 1.6 gets wrong: it leaves U+001F unescaped in strings
 * (its test is < 0x1f), and it appends ".0" to every double it writes
 * without a '.', exponents too (1e+22.0).  Returns a new string (g_free
 * it). */
static inline char *
json_fix_generated (char *out)
{
  GString *fixed = g_string_sized_new (strlen (out));
  bool in_string = false;

  for (const char *p = out; *p; p++) {
    if (in_string && *p == '\\' && p[1]) {
      g_string_append_len (fixed, p++, 2);
      continue;
    }
    if (*p == '"')
      in_string = !in_string;
    if (in_string && *p == 0x1f) {
      g_string_append (fixed, "\\u001f");
      continue;
    }
    if (!in_string && (*p == 'e' || *p == 'E') && p > out
        && g_ascii_isdigit (p[-1])) {
      const char *q = p + 1;

      if (*q == '+' || *q == '-')
        q++;
      while (g_ascii_isdigit (*q))
        q++;
      g_string_append_len (fixed, p, q - p);
      if (q[0] == '.' && q[1] == '0')
        q += 2;
      p = q - 1;
      continue;
    }
    g_string_append_c (fixed, *p);
  }
  g_free (out);
  return g_string_free (fixed, FALSE);
}

/* S as a JSON string, quotes included, or "null" for NULL.  Returns a
 * new string (g_free it); never NULL (GLib aborts when out of memory). */
static inline char *
json_quote (const char *s)
{
  g_autofree char *valid = NULL;
  g_autoptr (JsonNode) node = NULL;

  if (s == NULL)
    return g_strdup ("null");
  valid = g_utf8_make_valid (s, -1);
  node = json_node_init_string (json_node_alloc (), valid);
  return json_fix_generated (json_to_string (node, FALSE));
}

/* Write json_quote (S) to F. */
static inline void
json_write_string (FILE *f, const char *s)
{
  g_autofree char *q = json_quote (s);

  fputs (q, f);
}

#endif /* VDM_JSON_H */
