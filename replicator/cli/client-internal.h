/* What the client's own files share (client.h is the public side). */
#ifndef VDM_CLI_CLIENT_INTERNAL_H
#define VDM_CLI_CLIENT_INTERNAL_H

#include <libsoup/soup.h>
#include <xmlrpc-c/base.h>

#include "client.h"

struct client
{
  char *url;     /* as given, e.g. "http://127.0.0.1:4430" */
  char *session; /* "OpaqueRef:..." once logged in */
  SoupSession *soup;
};

/* X as an owned tree, or NULL with ENV's fault set. */
struct xv *xv_from_xmlrpc (xmlrpc_env *env, xmlrpc_value *x);

/* The URI of PATH_AND_QUERY ("/import_raw_vdi?...") on C's server. */
char *client_uri (struct client *c, const char *path_and_query);

/* Make a GError naming C's URL out of a libsoup / GIO error. */
void client_set_connect_error (struct client *c, GError **err,
                               const GError *cause);

#endif /* VDM_CLI_CLIENT_INTERNAL_H */
