/* A client of the mirror filter's control socket (the line protocol of
 * nbdkit-mirror-filter(1)): one command line out, one JSON reply line
 * back.  Used by `vdimotion mirror` and by vdimotiond's live moves. */
#ifndef VDM_MIRROR_CONTROL_CLIENT_H
#define VDM_MIRROR_CONTROL_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

/* Send LINE (ending in '\n') to the control socket PATH and return the
 * reply line (malloc'd, without its newline), waiting at most
 * TIMEOUT_SECONDS.  NULL on failure with a message in *ERR (malloc'd). */
char *mirror_control_call (const char *path, const char *line,
                           int timeout_seconds, char **err);

/* The replies are flat JSON objects.  Member KEY of reply J as a string
 * (malloc'd; a JSON string unescaped, a number/true/false/null as written),
 * or NULL if absent. */
char *mirror_reply_get (const char *j, const char *key);
/* Member KEY as an unsigned integer; false if absent or not one. */
bool mirror_reply_get_u64 (const char *j, const char *key, uint64_t *out);

#endif /* VDM_MIRROR_CONTROL_CLIENT_H */
