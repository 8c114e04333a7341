/* The memory migrators' shared half (DESIGN.md, migration flow): the
 * description vdimotiond writes on their stdin and the lines they write
 * back on stdout.  The protocol is vdimotion-memory-migrator(7); every
 * migrator (vdimotion-mm-none, vdimotion-mm-qemu) reads its description
 * and reports through these functions only, so they all speak it alike. */

#ifndef VDM_MIGRATOR_H
#define VDM_MIGRATOR_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

/* One disk of the VM: it is mirrored, in sync, and reachable through two
 * NBD Unix sockets, the source's (the VM uses it now) and the
 * destination's (the moved VM must use it). */
struct mm_disk
{
  const char *userdevice;
  const char *vdi;
  int64_t virtual_size;
  const char *source_socket;
  const char *destination_socket;
};

/* The whole description.  Strings point into the parsed JSON, which the
 * description owns. */
struct mm_description
{
  JsonNode *root;
  const char *vm_uuid;
  const char *vm_name_label;
  JsonObject *vm_other_config; /* string members only */
  const char *source_host;
  const char *source_url;
  const char *destination_host;
  const char *destination_url;
  const char *destination_run_dir;
  struct mm_disk *disks;
  size_t n_disks;
  bool live;
  JsonObject *options; /* the migrate call's options; empty if absent */
};

/* Parse and check TEXT (LEN bytes) as a description.  Every member the
 * protocol names must be there with its type, except "options"; unknown
 * members are ignored.  Errors name the member ("disks[1].vdi: missing"). */
struct mm_description *mm_description_parse (const char *text, size_t len,
                                             GError **err);

/* Read all of stdin (the daemon closes it after the description) and
 * parse it. */
struct mm_description *mm_description_read_stdin (GError **err);

void mm_description_free (struct mm_description *d);
typedef struct mm_description mm_description;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (mm_description, mm_description_free)

/* vm.other_config[KEY], or NULL. */
const char *mm_other_config (const struct mm_description *d, const char *key);

/* options[KEY] as a number (seconds, bytes/s): the daemon's options map
 * holds strings ("600"), a hand-written description may hold a number.
 * Gives DEF if absent; fails if present and not a positive number. */
bool mm_option_number (const struct mm_description *d, const char *key,
                       double def, double *out, GError **err);

/* The lines of the protocol, on stdout, flushed at once so the daemon
 * sees them as they happen. */
void mm_progress (double fraction);
void mm_message (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
/* "result" followed by the JSON object of KEY, VALUE string pairs ending
 * with NULL.  At most once, just before exiting 0. */
void mm_result (const char *key, ...) G_GNUC_NULL_TERMINATED;

/* The reason of a failure: one line on stderr, "PROGRAM: TEXT", which the
 * daemon puts into the task's error.  Must be the last stderr line. */
void mm_fail (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

/* Exit codes: 0 moved, 1 not moved (the source is untouched), 2 usage. */
enum
{
  MM_EXIT_MOVED = 0,
  MM_EXIT_FAILED = 1,
  MM_EXIT_USAGE = 2
};

/* Handles --help / --version and refuses any other argument (the daemon
 * passes none).  Returns -1 to continue, or the exit code. */
int mm_parse_args (int argc, char **argv, const char *summary);

#define MM_ERROR (mm_error_quark ())
GQuark mm_error_quark (void);

#endif /* VDM_MIGRATOR_H */
