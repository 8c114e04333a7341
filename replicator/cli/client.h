/* The server commands of the vdimotion CLI (sr, vdi, vm, task): a XenAPI
 * client of vdimotiond (or xapi).
 *
 * Design: the client itself (calls, values, TLS, sessions, tasks) is
 * replicator/xenapi's (xapi-client.h, xapi-value.h); here is what only
 * the command does with it: its options and environment, the login, the
 * lookup of objects by uuid or name, the progress bar of a task or a
 * transfer, and the printing of records (--json).  Errors are returned up
 * as GErrors (XAPI_CLIENT_ERROR) and the command prints them once:
 * "vdimotion: CODE param1 param2..." for a XenAPI failure.
 *
 * Parts, one file each:
 *   client.c          options → a logged-in client; lookups
 *   client-print.c    records as JSON (--json), in order
 *   client-task.c     waiting on an asynchronous task, with progress and
 *                     Ctrl-C
 *   client-transfer.c import_raw_vdi / export_raw_vdi over HTTP
 *   client-command.c  the options and subcommand tables of the server
 *                     commands (sr, vdi, vm, task)
 */
#ifndef VDM_CLI_CLIENT_H
#define VDM_CLI_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "cli.h"
#include "xapi-client.h"
#include "xapi-value.h"

#define CLIENT_REF_PREFIX "OpaqueRef:"
#define CLIENT_NULL_REF "OpaqueRef:NULL"

/* ---- Printing values (client-print.c) -------------------------------- */

/* Write V to F as JSON (XenAPI's string ints stay strings). */
void xv_print_json (FILE *f, const struct xv *v);

/* The member indexes of RECORDS (a get_all_records answer) in the order
 * of their FIELD, then uuid; RECORDS->n of them (caller frees). */
size_t *xv_sort_records (const struct xv *records, const char *field);

/* --json output on stdout: an object's members, one call each.  FIRST
 * starts true; json_end closes the object (and makes FIRST true again).
 * json_key writes the key only, for a value the caller writes. */
void json_str (bool *first, const char *key, const char *v);
void json_u64 (bool *first, const char *key, uint64_t v);
void json_double (bool *first, const char *key, double v);
void json_bool (bool *first, const char *key, bool v);
void json_value (bool *first, const char *key, const struct xv *v);
void json_key (bool *first, const char *key);
void json_end (bool *first);

/* ---- Sessions and lookups (client.c) --------------------------------- */

struct client_options
{
  const char *server;        /* URL; or $VDIMOTION_SERVER */
  const char *user;          /* or $VDIMOTION_USER, else "root" */
  const char *password_file; /* first line; or $VDIMOTION_PASSWORD */
  const char *ca_file;       /* for https://; or $VDIMOTION_CA_FILE */
  bool json;
  int progress; /* PROGRESS_AUTO, _ON, _OFF */
};
extern struct client_options client_opts;

/* Log in to the server of OPTS.  NULL and *ERR on failure. */
struct xapi_client *client_connect (const struct client_options *opts,
                                    GError **err);
/* Log out (errors ignored: the work is done) and free. */
void client_close (struct xapi_client *c);

/* Find an object of class CLS ("SR", "VDI", "VM") by uuid or name label:
 * its ref (caller frees) and, if RECORD, its record.  A name label that
 * matches several objects is an error, as is one that matches none
 * (UUID_INVALID CLS NAME). */
char *client_lookup (struct xapi_client *c, const char *cls, const char *name,
                     struct xv **record, GError **err);

/* Print the uuid of REF, an object of class CLS just made, as the last
 * line of stdout (a {"uuid": ...} object with --json), for scripts. */
int client_print_new_uuid (struct xapi_client *c, const char *cls,
                           const char *ref, GError **err);

/* "OpaqueRef:abc" -> "abc": XenAPI refs of vdimotiond carry the uuid. */
const char *client_ref_uuid (const char *ref);

/* ---- Tasks (client-task.c) ------------------------------------------ */

/* How a command waits on its task: the names of its work in the
 * messages of a Ctrl-C ("the migration"; "the VM has moved", said when
 * the task ended in success all the same), the bar's scale in bytes, and
 * STATUS, if not NULL, the text drawn after the bar each time it is
 * drawn (caller frees; NULL for none), from the task's record or the
 * command's own calls. */
typedef char *client_task_status_fn (struct xapi_client *c, const char *task,
                                     void *opaque);
struct client_task_wait
{
  const char *what, *done;
  uint64_t total;
  client_task_status_fn *status;
  void *opaque;
};

/* Catch SIGINT for client_task_wait: call it before the Async.* call, so
 * no Ctrl-C leaves a task running unseen.  A SIGINT that is ignored (a
 * shell's background job) stays ignored; a second Ctrl-C ends the
 * command at once. */
void client_catch_interrupt (void);

/* Wait for TASK to end (xapi_client_task_wait, polling every 200 ms)
 * with a progress bar (client_opts.progress) and HOW's status text.  A
 * Ctrl-C (after client_catch_interrupt) cancels the task (task.cancel)
 * and the wait goes on until the task has ended.  Returns the task's
 * result, its XML entities decoded (caller frees), or NULL and *ERR for a failed or cancelled task
 * (its error_info as a XenAPI failure; "interrupted: WHAT is cancelled:
 * ..." after a Ctrl-C). */
char *client_task_wait (struct xapi_client *c, const char *task,
                        const struct client_task_wait *how, GError **err);
/* The result of TASK (task.get_result) as client_task_wait gives it:
 * for a task that failed or was cancelled but has a result all the same
 * (an evacuation's report); "" for none.  Caller frees; NULL and *ERR if
 * the call failed. */
char *client_task_result (struct xapi_client *c, const char *task,
                          GError **err);

/* ---- Bulk data (client-transfer.c) ---------------------------------- */

/* PUT the disk image PATH, of FORMAT (enum vdisk_format, or
 * VDISK_FORMAT_PROBE), into VDI (a ref): a VHD without a parent as-is
 * (format=vhd), anything else as raw bytes read through libvdisk
 * (format=raw). */
int client_import_vdi (struct xapi_client *c, const char *vdi,
                       const char *path, int format, int progress_mode,
                       GError **err);
/* GET VDI into PATH: format=vhd if PATH ends in ".vhd", else raw. */
int client_export_vdi (struct xapi_client *c, const char *vdi, uint64_t size,
                       const char *path, int progress_mode, GError **err);

/* ---- Server commands (client-command.c) ----------------------------- */

/* The options a subcommand takes besides the client ones. */
#define CLIENT_OPT_NAME 1u   /* --name N */
#define CLIENT_OPT_LIVE 2u   /* --live */
#define CLIENT_OPT_DISK 4u   /* --disk VDI, repeatable */
#define CLIENT_OPT_FORMAT 8u /* -f FMT: a local image's format */
/* vm migrate's: --to URL (required), --to-user U, --to-password-file F,
 * --sr SR, --map VDI=SR and --option KEY=VALUE (repeatable), --offline
 * (with --live, not both). */
#define CLIENT_OPT_MIGRATE 16u
/* sr evacuate's: --to SR[,SR...] (required), --parallel N (1 to 64),
 * --dry-run, --order size|name, --exclude VDI (repeatable). */
#define CLIENT_OPT_EVACUATE 32u

struct client_args
{
  int argc; /* positional arguments after the subcommand */
  char **argv;
  const char *name;
  bool live;
  const char **disks; /* n_disks of them */
  size_t n_disks;
  int format; /* -f, or VDISK_FORMAT_PROBE */
  /* CLIENT_OPT_MIGRATE: the destination and its login (NULL: the
   * source's), its SR; "VDI=SR" and "KEY=VALUE" words, each with an '='
   * after a non-empty key. */
  const char *to, *to_user, *to_password_file, *sr;
  bool offline;
  const char **maps; /* n_maps of them */
  size_t n_maps;
  const char **options; /* n_options of them */
  size_t n_options;
  /* CLIENT_OPT_EVACUATE (--to above): the words as given, checked. */
  const char *parallel, *order;
  bool dry_run;
  const char **excludes; /* n_excludes of them */
  size_t n_excludes;
};

struct client_subcommand
{
  const char *name;
  const char *synopsis; /* after "vdimotion GROUP NAME " */
  int min_args, max_args;
  unsigned options; /* CLIENT_OPT_* */
  int (*run) (struct xapi_client *c, const struct client_args *a,
              GError **err);
};

/* Run GROUP's subcommand named by argv[1] (table ends with a NULL
 * name): options, login, run, logout; errors printed, exit code
 * returned. */
int client_run_group (const struct command *group,
                      const struct client_subcommand *subs, int argc,
                      char **argv);

/* Parse one client option at ARGV[0] (before the command name, as
 * "vdimotion --server URL sr list").  Returns the number of words used,
 * 0 if ARGV[0] is not a client option, -1 for a missing value. */
int client_global_option (int argc, char **argv);

/* "--server URL ..." lines of the usage. */
void client_usage_options (FILE *f);

#endif /* VDM_CLI_CLIENT_H */
