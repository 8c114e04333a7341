/* The destination side of a cross-host migration (migrate-receive.c):
 * tokens, and the five steps a source drives with one (check, prepare,
 * keepalive, commit, abort).  The XenAPI face reads the calls' arguments
 * into these structs and writes the answers; the wire names of the
 * token's members and of the disks' fields are in vdimotiond(8).
 *
 * Errors are XenAPI's (host_err_set): MIGRATION_TOKEN_INVALID (with the
 * reason), VDI_INCOMPATIBLE_TYPE, HANDLE_INVALID, SR_FULL, SR errors,
 * INTERNAL_ERROR.
 */
#ifndef VDM_MIGRATE_RECEIVE_H
#define VDM_MIGRATE_RECEIVE_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "host.h"

/* A token lives at most this long (seconds) before prepare. */
#define HOST_MIGRATION_TOKEN_LIFETIME (10 * 60)

/* Issue a token for a migration into SR (the default destination),
 * valid LIFETIME seconds (1 to HOST_MIGRATION_TOKEN_LIFETIME).  The
 * token is a table of strings (keys: url, host, migration, secret,
 * expires, sr, nbd-address, nbd-tls, tls-cert-sha256 if the host has a
 * certificate); g_hash_table_unref it.  NULL with *ERR. */
GHashTable *host_migration_issue (struct host *h, struct host_sr *sr,
                                  guint64 lifetime, char ***err);

/* The members of a token a source presents (borrowed strings; NULL when
 * absent). */
struct host_migration_token
{
  const char *migration;
  const char *secret;
  const char *host;
};

/* One disk the source wants to send: its userdevice, virtual size and
 * bytes allocated at the source (bytes), image format name, and the SR
 * uuid to put it in (NULL or "": the token's). */
struct host_migration_disk
{
  char *userdevice;
  uint64_t virtual_size;
  uint64_t physical_utilisation;
  char *format;
  char *sr;
};

/* One prepared disk: the new VDI's uuid, the TLS-PSK NBD URI the source
 * mirrors or copies into, and the Unix socket of its disk server. */
struct host_migration_export
{
  char *userdevice;
  char *vdi;
  char *uri;
  char *socket;
};
void host_migration_export_free (struct host_migration_export *e);

/* The VM the source hands over at commit. */
struct host_migration_vm
{
  const char *name_label;
  const char *name_description;
  const char *power_state; /* "Halted": its disks are not served here */
  GHashTable *other_config; /* string → string, or NULL */
  GHashTable *read_only;    /* the userdevices attached "RO", or NULL */
  /* userdevice → GBytes: the source's changed-block log of that disk
   * (cbt_log_export), merged into the new VDI's (sr_vdi_cbt_merge), or
   * NULL. */
  GHashTable *cbt_logs;
  /* userdevice → string: what that disk was (the new VDI's
   * other_config[HOST_MOVED_FROM], host.h), or NULL. */
  GHashTable *moved_from;
  /* userdevice → string, each or NULL: the snapshot that disk's log
   * counts from (uuid, name label, snapshot_time in unix seconds),
   * recorded here without data (sr_vdi_create_cbt_metadata) so that
   * VDI.list_changed_blocks from it resolves. */
  GHashTable *cbt_predecessor, *cbt_predecessor_name, *cbt_predecessor_time;
};

/* The token checked as the step about to run will: PREPARED false for
 * check and prepare (issued, unexpired, unspent), true for keepalive,
 * commit and abort (prepared).  For a face that reads a call's other
 * arguments only once the token passed, as xapi answers.  The
 * migration's default SR uuid (g_free), or NULL with *ERR. */
char *host_migration_token_check (struct host *h,
                                  const struct host_migration_token *tok,
                                  bool prepared, char ***err);
/* One disk checked as check and prepare will: its format known, its SR
 * (DEFAULT_SR when it names none) on this host.  -1 with *ERR. */
int host_migration_disk_check (struct host *h, const char *default_sr,
                               const struct host_migration_disk *d,
                               char ***err);

/* The steps.  Each checks the token first (a token is refused when
 * expired before prepare, spent twice, shown to another host, or wrong).
 * check and prepare also check DISKS against the SRs (formats, free
 * space).  prepare spends the token and returns the exports
 * (struct host_migration_export *; g_ptr_array_unref); commit returns
 * the new VM's uuid (g_free).  0 / non-NULL, or -1 / NULL with *ERR. */
int host_migration_check (struct host *h,
                          const struct host_migration_token *tok,
                          const struct host_migration_disk *disks,
                          size_t n_disks, char ***err);
GPtrArray *host_migration_prepare (struct host *h,
                                   const struct host_migration_token *tok,
                                   const struct host_migration_disk *disks,
                                   size_t n_disks, char ***err);
int host_migration_keepalive (struct host *h,
                              const struct host_migration_token *tok,
                              char ***err);
int host_migration_abort (struct host *h,
                          const struct host_migration_token *tok,
                          char ***err);
/* The source's mirrors are all in sync and the VM is about to move:
 * each disk of USERDEVICES (N of them) gets an empty changed-block log
 * (sr_vdi_enable_cbt), which its disk server, serving it as a VM's disk,
 * is told to mark (host_cbt_open_on) before this returns.  From now on every write that reaches
 * the disk here is a guest's (no more sync copies), so these marks and
 * the source's log, merged at commit, are every block written since the
 * source's last snapshot, and no more.  0, or -1 with *ERR. */
int host_migration_cbt_arm (struct host *h,
                            const struct host_migration_token *tok,
                            const char *const *userdevices, size_t n,
                            char ***err);
char *host_migration_commit (struct host *h,
                             const struct host_migration_token *tok,
                             const struct host_migration_vm *vm, char ***err);

/* Abort prepared migrations whose source went quiet (AT_START: all of
 * them, since a restart lost track); forget old ones. */
void host_migrations_expire (struct host *h, bool at_start);

/* The NBD pre-shared key (hex) both sides derive from a token's secret
 * (g_free), and a PSK file for nbdkit / libnbd holding it in the run dir,
 * named NAME.psk: its path (g_free), or NULL with *ERROR. */
char *host_migration_psk (const char *secret);
char *host_migration_write_psk (struct host *h, const char *name,
                                const char *secret, GError **error);

#endif /* VDM_MIGRATE_RECEIVE_H */
