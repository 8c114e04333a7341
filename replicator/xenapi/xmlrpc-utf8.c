/* xmlrpc-c's UTF-8 check, for all of Unicode (xmlrpc-utf8.h). */
#include <string.h>

#include <glib.h>
#include <xmlrpc-c/base.h>
#include <xmlrpc-c/util.h>

#include "xmlrpc-utf8.h"

void
xmlrpc_validate_utf8 (xmlrpc_env *const envP, const char *const utf8Data,
                      size_t const utf8Len)
{
  const char *p = utf8Data, *end = utf8Data + utf8Len;

  /* NUL is a valid character here, as in xmlrpc-c's own check (strings
   * with NULs are refused elsewhere); GLib's check stops at it. */
  while (p < end) {
    const char *nul = memchr (p, '\0', (size_t)(end - p));
    const char *seg_end = nul ? nul : end;
    const char *bad = NULL;

    if (!g_utf8_validate_len (p, (gsize)(seg_end - p), &bad)) {
      xmlrpc_env_set_fault_formatted (
          envP, XMLRPC_INVALID_UTF8_ERROR,
          "%u-byte supposed UTF-8 string is not valid UTF-8 "
          "(at byte %u)",
          (unsigned)utf8Len, (unsigned)(bad - utf8Data));
      return;
    }
    p = nul ? nul + 1 : end;
  }
}

bool
xmlrpc_full_unicode (void)
{
  xmlrpc_env env;
  xmlrpc_value *v;
  bool ok;

  xmlrpc_env_init (&env);
  v = xmlrpc_string_new (&env, "\xf0\x9f\x98\x80"); /* U+1F600 */
  ok = !env.fault_occurred;
  if (ok)
    xmlrpc_DECREF (v);
  xmlrpc_env_clean (&env);
  return ok;
}
