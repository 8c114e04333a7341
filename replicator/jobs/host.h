/* The host: what vdimotiond's brain works on, apart from any wire form.
 *
 * Design: one `struct host` per daemon holds the SRs it serves, its
 * durable state (state.h), its job manager (jobs.h), where its nbdkit
 * processes live (nbdkit.h) and how migrations reach it.  The XenAPI
 * face (xapi-shim/) turns calls into calls of these functions; nothing
 * here knows XML-RPC, HTTP or sessions.
 *
 * Objects are named by uuid.  A XenAPI ref of vdimotiond is
 * "OpaqueRef:<uuid>" (HOST_REF_PREFIX), so refs survive restarts and an
 * SR moved to another host keeps its VDIs' refs; the brain writes refs
 * only into a task's error_info, which XenAPI defines as strings.
 *
 * Threads: the SR list is fixed after start; the VDI claims are under a
 * lock; state.h and events.h are safe from any thread.  Everything else of the host is
 * read-only once the daemon serves.
 */
#ifndef VDM_HOST_H
#define VDM_HOST_H

#include <stdbool.h>

#include <glib.h>

#include "sr.h"
#include "state.h"

#define HOST_REF_PREFIX "OpaqueRef:"

/* One SR given with --sr NAME=PATH or [sr:NAME]. */
struct host_sr
{
  char *name; /* the SR's name_label */
  struct sr *sr;
};

struct events;
struct jobs;

struct host
{
  char *uuid;
  char *name_label;
  char *network_uuid;
  char *pool_uuid; /* the pool of one this host is the master of */
  char *state_dir;
  char *run_dir;       /* <state-dir>/run: nbdkit sockets and pid files */
  struct state *state; /* VMs, VBDs, tasks, jobs, migrations */
  struct jobs *jobs;   /* the storage operations (jobs.h) */
  /* The log of changes of the records XenAPI shows (events.h), fed by
   * the state's writes, the SRs' watches and VDI claims. */
  struct events *events;
  /* How disks are served (nbdkit.h). */
  char *nbdkit;        /* the nbdkit program */
  char *vdi_plugin;    /* path of nbdkit-vdi-plugin.so */
  char *mirror_filter; /* path of nbdkit-mirror-filter.so */
  /* Migration (migrate.c, migrate-receive.c). */
  char *migration_url;   /* how sources reach this daemon */
  char *cert_sha256;     /* of the HTTPS certificate, or NULL */
  char *nbd_address;     /* where migration NBD exports listen */
  char *memory_migrator; /* the command handing a VM over */
  GPtrArray *srs;        /* struct host_sr *, owned */
  /* VDIs with an operation running (VDI record "current_operations"):
   * uuid → operation name, under vdi_ops_lock (jobs run in threads). */
  GMutex vdi_ops_lock;
  GHashTable *vdi_ops;
  int lock_fd; /* the flock on <state-dir>/lock, or -1 */
};

/* How to open a host (vdimotiond.conf(5) says what each means). */
struct host_config
{
  const char *state_dir;
  const char *const *srs; /* "NAME=PATH", NULL-terminated; file SRs */
  const char *name_label;
  const char *nbdkit, *vdi_plugin, *mirror_filter, *memory_migrator;
  int lock_wait_seconds; /* for a previous daemon's locks to go */
};

/* Open the host: its state directory (created if need be, 0700) locked
 * for this process alone (flock on <state-dir>/lock; a start right after
 * a kill waits up to lock_wait_seconds for the old process to go), its
 * host, network and pool uuids (made once, kept there), <state-dir>/run,
 * the state database and the SRs (each waited for the same way), both
 * logging their changes into h->events.  No jobs yet: the caller makes
 * h->jobs (jobs_new) once it is ready to recover
 * them.  NULL with *ERROR (naming the file or SR). */
struct host *host_open (const struct host_config *cfg, GError **error);

/* An empty host (no SRs, no state, no lock: for tests; an empty change
 * log, h->events, fed by nothing yet); free with
 * host_free, which also stops its jobs, closes its SRs and state and
 * drops its lock. */
struct host *host_new (void);
void host_free (struct host *h);

/* The SR with uuid UUID, or NULL. */
struct host_sr *host_find_sr (struct host *h, const char *uuid);
/* The record of VDI UUID (sr_vdi_free it) and the SR holding it (*SRP,
 * if SRP); NULL if no SR has it (SR-internal images included: the
 * caller checks ->managed where that matters). */
struct sr_vdi *host_find_vdi (struct host *h, const char *uuid,
                              struct host_sr **srp);
/* The path of V's image file in S (g_free it). */
char *host_vdi_path (const struct host_sr *s, const struct sr_vdi *v);

/* A moved VDI knows what it was: its other_config[HOST_MOVED_FROM] is
 * the uuids of the VDIs it was before a move (VDI.pool_migrate, an SR
 * evacuation, a cross-host VM.migrate), comma-separated, newest first,
 * at most HOST_MOVED_FROM_MAX.  `vdimotion backup create` follows them
 * to continue the disk's chain in a repository. */
#define HOST_MOVED_FROM "vdimotion-moved-from"
#define HOST_MOVED_FROM_MAX 16
/* The value of HOST_MOVED_FROM for the VDI a move makes of the VDI
 * UUID whose own value is WAS (NULL or "": never moved): UUID, then
 * WAS, cut to HOST_MOVED_FROM_MAX uuids.  g_free. */
char *host_moved_from (const char *uuid, const char *was);

/* Claim VDI UUID for operation OP ("copy", "import", ...), so that no
 * other operation starts on it: false if it already has one.  Release
 * when done.  host_vdi_operation: the operation VDI UUID has now (a new
 * string), or NULL. */
bool host_vdi_claim (struct host *h, const char *uuid, const char *op);
void host_vdi_release (struct host *h, const char *uuid);
char *host_vdi_operation (struct host *h, const char *uuid);

/* Is VDI UUID served to a running VM (a VBD with a disk server)? */
bool host_vdi_attached (struct host *h, const char *vdi_uuid);

/* "OpaqueRef:<uuid>" (g_free it). */
char *host_ref (const char *uuid);

/* A failure a XenAPI client tells apart: its error_info, XenAPI's error
 * code then the code's parameters (strings; refs as host_ref writes
 * them), NULL-terminated.  Functions of the brain that fail so return -1
 * (or NULL) and set *ERR to a new array (g_strfreev) when ERR is not
 * NULL.  The codes are xapi's (its datamodel's Api_errors). */
void host_err_set (char ***err, const char *code, ...) G_GNUC_NULL_TERMINATED;

/* The XenAPI error for the SR layer's last failure (sr_get_errno,
 * sr_get_error) on object REF of class CLS during OP (the method, for
 * VDI_IN_USE): HANDLE_INVALID, UUID_INVALID, VDI_IN_USE, VDI_READ_ONLY,
 * SR_FULL, SR_OPERATION_NOT_SUPPORTED, else INTERNAL_ERROR. */
void host_err_sr (char ***err, const char *cls, const char *ref,
                  const char *op);

/* Claim VDI UUID for OP as host_vdi_claim does; on failure *ERR is
 * OTHER_OPERATION_IN_PROGRESS VDI <ref> <the operation it has>. */
int host_vdi_claim_or_fail (struct host *h, const char *uuid, const char *op,
                            char ***err);

/* A VM's other_config as kept in state.h (GVariant text of an a{ss}):
 * from text (NULL or unreadable: empty) to a table of strings, never
 * NULL; and back. */
GHashTable *host_oc_parse (const char *text);
char *host_oc_print (GHashTable *oc);

#endif /* VDM_HOST_H */
