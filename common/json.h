/* JSON string literals through json-glib, for the places that write a
 * JSON object by hand around numbers they format themselves (the mirror
 * filter's replies, the CLI's --json output): json-glib's generator
 * escapes, and what it gets wrong is fixed here, once.
 *
 * The result is always strict JSON (RFC 8259), whatever the bytes given:
 * bytes that are not UTF-8 become U+FFFD (a file name or an error
 * message may hold any bytes; a reader's parser would reject them), and
 * every control character is escaped.  Include it with json-glib's
 * CFLAGS; link json-glib. */
#ifndef VDM_JSON_H
#define VDM_JSON_H

#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

/* S as a JSON string, quotes included, or "null" for NULL.  Returns a
 * new string (g_free it); never NULL (GLib aborts when out of memory). */
static inline char *
json_quote (const char *s)
{
  g_autofree char *valid = NULL;
  g_autoptr (JsonNode) node = NULL;
  g_autofree char *out = NULL;
  GString *fixed;

  if (s == NULL)
    return g_strdup ("null");
  valid = g_utf8_make_valid (s, -1);
  node = json_node_init_string (json_node_alloc (), valid);
  out = json_to_string (node, FALSE);
  /* json-glib up to 1.6 leaves U+001F unescaped (its test is < 0x1f);
   * inside the literal that byte can only be the character itself. */
  if (strchr (out, 0x1f) == NULL)
    return g_steal_pointer (&out);
  fixed = g_string_new (NULL);
  for (const char *p = out; *p; p++) {
    if (*p == 0x1f)
      g_string_append (fixed, "\\u001f");
    else
      g_string_append_c (fixed, *p);
  }
  return g_string_free (fixed, FALSE);
}

/* Write json_quote (S) to F. */
static inline void
json_write_string (FILE *f, const char *s)
{
  g_autofree char *q = json_quote (s);

  fputs (q, f);
}

#endif /* VDM_JSON_H */
