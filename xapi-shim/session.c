/* The session class: logging in with a user of the auth file and out.
 *
 * The auth file has one "user:HASH" line per user, HASH a crypt(3) hash
 * (vdimotiond --hash-password prints one).  Without an auth file nobody
 * can log in.  Sessions are durable (state.h): a client keeps its session
 * across a restart of the daemon, as xapi's clients expect of a pool
 * master restart. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "password.h"
#include "xapi.h"

int
xapi_load_auth_file (struct xapi_daemon *d, const char *path, GError **error)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  if (!g_file_get_contents (path, &text, NULL, error))
    return -1;
  lines = g_strsplit (text, "\n", -1);
  for (size_t i = 0; lines[i]; i++) {
    char *line = g_strstrip (lines[i]);
    char *colon;

    if (*line == '\0' || *line == '#')
      continue;
    colon = strchr (line, ':');
    if (colon == NULL || colon == line || colon[1] == '\0') {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "%s:%zu: expected user:HASH", path, i + 1);
      return -1;
    }
    *colon = '\0';
    g_hash_table_replace (d->users, g_strdup (line), g_strdup (colon + 1));
  }
  return 0;
}

bool
xapi_session_valid (struct xapi_daemon *d, const char *ref)
{
  return g_hash_table_contains (d->sessions, ref);
}

bool
xapi_password_ok (struct xapi_daemon *d, const char *user, const char *pw)
{
  const char *hash = g_hash_table_lookup (d->users, user);

  return hash != NULL && password_matches (pw, hash);
}

bool
xapi_login_method (const char *method)
{
  if (g_ascii_strncasecmp (method, "Async.", 6) == 0)
    method += 6;
  return g_ascii_strncasecmp (method, "session.", 8) == 0
         && strcmp (method + 8, "login_with_password") == 0;
}

bool
xapi_login_precheck (struct xapi_daemon *d, const char *method,
                     xmlrpc_value *params, struct xapi_login_check *check)
{
  xmlrpc_env env;
  xmlrpc_value *u = NULL, *p = NULL;
  const char *user = NULL, *pw = NULL;

  memset (check, 0, sizeof *check);
  if (!xapi_login_method (method))
    return false;
  xmlrpc_env_init (&env);
  if (xmlrpc_array_size (&env, params) >= 2) {
    xmlrpc_array_read_item (&env, params, 0, &u);
    if (!env.fault_occurred)
      xmlrpc_array_read_item (&env, params, 1, &p);
    if (!env.fault_occurred && xmlrpc_value_type (u) == XMLRPC_TYPE_STRING
        && xmlrpc_value_type (p) == XMLRPC_TYPE_STRING) {
      xmlrpc_read_string (&env, u, &user);
      if (!env.fault_occurred)
        xmlrpc_read_string (&env, p, &pw);
    }
  }
  if (!env.fault_occurred && user && pw) {
    check->user = g_strdup (user);
    check->password = g_strdup (pw);
    check->ok = xapi_password_ok (d, user, pw);
  }
  if (u)
    xmlrpc_DECREF (u);
  if (p)
    xmlrpc_DECREF (p);
  free ((void *)user);
  free ((void *)pw);
  xmlrpc_env_clean (&env);
  return check->user != NULL;
}

void
xapi_login_check_clear (struct xapi_login_check *check)
{
  if (check->password)
    memset (check->password, 0, strlen (check->password));
  g_clear_pointer (&check->user, g_free);
  g_clear_pointer (&check->password, g_free);
}

static xmlrpc_value *
login_with_password (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *user = xapi_read_string (c, args[0], "uname");
  g_autofree char *pw = user ? xapi_read_string (c, args[1], "pwd") : NULL;
  g_autofree char *uuid = NULL;
  char *ref;

  /* args[2] (version) and args[3] (originator) are accepted and unused,
   * as xapi does. */
  if (pw == NULL)
    return NULL;
  if (c->login && strcmp (c->login->user, user) == 0
              && strcmp (c->login->password, pw) == 0
          ? !c->login->ok
          : !xapi_password_ok (c->d, user, pw)) {
    g_message ("session.login_with_password: %s: authentication failed", user);
    xapi_fail (c, "SESSION_AUTHENTICATION_FAILED", user,
               "Authentication failure", NULL);
    return NULL;
  }
  uuid = g_uuid_string_random ();
  ref = g_strconcat (XAPI_REF_PREFIX, uuid, NULL);
  if (g_queue_get_length (&c->d->session_order) >= XAPI_MAX_SESSIONS) {
    char *oldest = g_queue_pop_head (&c->d->session_order);

    g_message ("session limit reached: %s ends", oldest);
    /* Ended in memory whatever the record: one left behind is only
     * loaded again at a restart, and then ends the same way. */
    if (state_session_remove (c->d->host->state, oldest) == -1)
      g_warning ("session %s: cannot remove its record", oldest);
    nbd_exports_end_session (c->d->nbd, oldest); /* before it is freed */
    g_hash_table_remove (c->d->sessions, oldest);
  }
  if (state_session_add (c->d->host->state, ref, user) == -1) {
    g_free (ref);
    xapi_fail (c, "INTERNAL_ERROR", "cannot record the session", NULL);
    return NULL;
  }
  g_hash_table_insert (c->d->sessions, ref, g_strdup (user));
  g_queue_push_tail (&c->d->session_order, ref);
  return xapi_string (c, ref);
}

static xmlrpc_value *
logout (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *s = xapi_read_string (c, args[0], "session_id");
  gpointer key;

  if (s == NULL)
    return NULL;
  if (g_hash_table_lookup_extended (c->d->sessions, s, &key, NULL)) {
    if (state_session_remove (c->d->host->state, s) == -1) {
      /* Still valid after a restart otherwise: say so, keep it. */
      xapi_fail (c, "INTERNAL_ERROR", "cannot remove the session's record",
                 NULL);
      return NULL;
    }
    g_queue_remove (&c->d->session_order, key);
    g_hash_table_remove (c->d->sessions, s);
    nbd_exports_end_session (c->d->nbd, s);
  }
  return xapi_void (c);
}

static void
load_one (const char *ref, const char *user, void *opaque)
{
  struct xapi_daemon *d = opaque;
  char *key = g_strdup (ref);

  if (g_hash_table_contains (d->sessions, ref)) {
    g_free (key);
    return;
  }
  g_hash_table_insert (d->sessions, key, g_strdup (user));
  g_queue_push_tail (&d->session_order, key);
}

void
xapi_load_sessions (struct xapi_daemon *d)
{
  state_session_foreach (d->host->state, load_one, d);
  if (g_hash_table_size (d->sessions))
    g_message ("%u sessions restored", g_hash_table_size (d->sessions));
}

static xmlrpc_value *
get_this_host (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return xapi_ref (c, c->d->host->uuid);
}

static const struct xapi_method methods[] = {
  { "login_with_password", 2, 4, true, login_with_password },
  { "logout", 1, 1, false, logout },
  { "get_this_host", 2, 2, false, get_this_host },
  { NULL },
};

const struct xapi_class xapi_class_session = {
  .name = "session",
  .methods = methods,
};

int
xapi_hash_password (void)
{
  char line[1024], why[256];
  g_autofree char *hash = NULL;

  if (!password_read_line (stdin, line, sizeof line)) {
    fprintf (stderr, "vdimotiond: --hash-password: no password on stdin\n");
    return 1;
  }
  hash = password_hash (line, why, sizeof why);
  explicit_bzero (line, sizeof line);
  if (hash == NULL) {
    fprintf (stderr, "vdimotiond: --hash-password: %s\n", why);
    return 1;
  }
  printf ("%s\n", hash);
  if (fflush (stdout) == EOF || ferror (stdout)) {
    perror ("vdimotiond: --hash-password: stdout");
    return 1;
  }
  return 0;
}
