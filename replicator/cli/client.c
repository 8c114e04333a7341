/* The command's side of the XenAPI client (client.h): its options and
 * environment turned into a logged-in client, and lookups of objects by
 * uuid or name. */
#include <stdlib.h>
#include <string.h>

#include "client.h"

struct client_options client_opts = { .progress = PROGRESS_AUTO };

const char *
client_ref_uuid (const char *ref)
{
  return g_str_has_prefix (ref, CLIENT_REF_PREFIX)
             ? ref + strlen (CLIENT_REF_PREFIX)
             : ref;
}

/* The password: the first line of FILE, or $VDIMOTION_PASSWORD, or "". */
static char *
read_password (const char *file, GError **err)
{
  g_autofree char *text = NULL;
  const char *env = getenv ("VDIMOTION_PASSWORD");
  size_t len;

  if (file == NULL)
    return g_strdup (env ? env : "");
  if (!g_file_get_contents (file, &text, &len, err))
    return NULL;
  char *pw = g_strndup (text, strcspn (text, "\r\n"));
  explicit_bzero (text, len);
  return pw;
}

struct xapi_client *
client_connect (const struct client_options *opts, GError **err)
{
  const char *server
      = opts->server ? opts->server : getenv ("VDIMOTION_SERVER");
  const char *user = opts->user ? opts->user : getenv ("VDIMOTION_USER");
  const char *ca_file
      = opts->ca_file ? opts->ca_file : getenv ("VDIMOTION_CA_FILE");
  g_autofree char *password = NULL;
  struct xapi_client *c;
  bool ok;

  /* Names may hold any character. */
  if (!xapi_client_full_unicode ())
    fprintf (stderr, "vdimotion: warning: xmlrpc-c refuses characters "
                     "outside the Basic Multilingual Plane here\n");
  if (server == NULL || *server == '\0') {
    g_set_error_literal (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                         "no server: give --server URL or set "
                         "VDIMOTION_SERVER");
    return NULL;
  }
  if (user == NULL || *user == '\0')
    user = "root";
  password = read_password (opts->password_file, err);
  if (password == NULL)
    return NULL;
  c = xapi_client_new (
      &(struct xapi_client_config){ .url = server,
                                    .ca_file = ca_file,
                                    .timeout_seconds = 600,
                                    .user_agent
                                    = "vdimotion/" PACKAGE_VERSION },
      err);
  ok = c && xapi_client_login (c, user, password, "vdimotion", err);
  explicit_bzero (password, strlen (password));
  if (!ok) {
    xapi_client_free (c);
    return NULL;
  }
  return c;
}

void
client_close (struct xapi_client *c)
{
  g_autoptr (GError) err = NULL;

  if (c == NULL)
    return;
  xapi_client_logout (c, &err);
  xapi_client_free (c);
}

/* Looks like a uuid: 36 characters of hex digits and dashes. */
static bool
is_uuid (const char *s)
{
  if (strlen (s) != 36)
    return false;
  for (; *s; s++)
    if (!g_ascii_isxdigit (*s) && *s != '-')
      return false;
  return true;
}

char *
client_lookup (struct xapi_client *c, const char *cls, const char *name,
               struct xv **record, GError **err)
{
  g_autofree char *method = NULL;
  g_autofree char *ref = NULL;
  g_autoptr (xv) refs = NULL;

  if (is_uuid (name) || g_str_has_prefix (name, CLIENT_REF_PREFIX)) {
    g_autoptr (GError) e = NULL;
    g_autoptr (xv) v = NULL;
    if (g_str_has_prefix (name, CLIENT_REF_PREFIX)) {
      method = g_strconcat (cls, ".get_uuid", NULL);
      v = xapi_client_call (c, &e, method, xv_new_string (name), NULL);
      if (v)
        ref = g_strdup (name);
    }
    else {
      method = g_strconcat (cls, ".get_by_uuid", NULL);
      v = xapi_client_call (c, &e, method, xv_new_string (name), NULL);
      if (v && v->type == XV_STRING)
        ref = g_strdup (v->s);
    }
    g_clear_pointer (&method, g_free);
    if (e && e->code != XAPI_CLIENT_ERROR_FAILURE) {
      g_propagate_error (err, g_steal_pointer (&e));
      return NULL;
    }
  }
  if (ref == NULL) {
    method = g_strconcat (cls, ".get_by_name_label", NULL);
    refs = xapi_client_call (c, err, method, xv_new_string (name), NULL);
    if (refs == NULL)
      return NULL;
    if (refs->type != XV_ARRAY || refs->n == 0) {
      xapi_client_set_failure (
          err, (const char *const[]){ "UUID_INVALID", cls, name, NULL });
      return NULL;
    }
    if (refs->n > 1) {
      g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_LOCAL,
                   "%s \"%s\": %zu objects have this name: give a uuid", cls,
                   name, refs->n);
      return NULL;
    }
    if (refs->items[0]->type != XV_STRING) {
      g_set_error (err, XAPI_CLIENT_ERROR, XAPI_CLIENT_ERROR_PROTOCOL,
                   "%s: %s: a ref is not a string", xapi_client_url (c),
                   method);
      return NULL;
    }
    ref = g_strdup (refs->items[0]->s);
  }
  if (record) {
    g_autofree char *get = g_strconcat (cls, ".get_record", NULL);
    *record = xapi_client_call (c, err, get, xv_new_string (ref), NULL);
    if (*record == NULL)
      return NULL;
  }
  return g_steal_pointer (&ref);
}

int
client_print_new_uuid (struct xapi_client *c, const char *cls, const char *ref,
                       GError **err)
{
  g_autofree char *method = g_strconcat (cls, ".get_uuid", NULL);
  g_autoptr (xv) uuid
      = xapi_client_call (c, err, method, xv_new_string (ref), NULL);
  bool first = true;

  if (uuid == NULL || uuid->type != XV_STRING)
    return EXIT_ERROR;
  if (client_opts.json) {
    json_str (&first, "uuid", uuid->s);
    json_end (&first);
    printf ("\n");
  }
  else
    printf ("%s\n", uuid->s);
  return EXIT_OK;
}
