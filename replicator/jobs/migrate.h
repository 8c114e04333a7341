/* The source side of a cross-host migration (migrate.c): a job of kind
 * "vm-migrate" (jobs.h), and the check VM.assert_can_migrate makes.
 *
 * Errors are XenAPI's (host_err_set): HANDLE_INVALID,
 * MIGRATION_TOKEN_INVALID, VM_BAD_POWER_STATE, OTHER_OPERATION_IN_PROGRESS,
 * VDI_MISSING, VM_MIGRATE_FAILED, or the destination's own refusal.
 */
#ifndef VDM_MIGRATE_H
#define VDM_MIGRATE_H

#include <stdbool.h>

#include <glib.h>

#include "host.h"

/* A migration as a client asks for it (borrowed for the call). */
struct host_vm_migrate
{
  const char *vm;       /* the VM's uuid */
  bool live;            /* keep it running (a halted VM is copied) */
  GHashTable *token;    /* the destination's token: string → string */
  GHashTable *vdi_map;  /* VDI uuid → destination SR uuid, or NULL */
  GHashTable *options;  /* string → string, or NULL ("keep-source",
                           "dest-img-format", ...; vdimotiond(8)) */
};

/* Queue the migration as a job: its VDIs are claimed until it ends.
 * NAME_LABEL names its task.  The task's uuid (g_free), or NULL with
 * *ERR. */
char *host_vm_migrate_submit (struct host *h, const struct host_vm_migrate *p,
                              const char *name_label, char ***err);

/* The checks of the migration's first step, made now (the destination
 * is asked with the token, which is not spent).  -1 with *ERR. */
int host_vm_migrate_check (struct host *h, const struct host_vm_migrate *p,
                           char ***err);

#endif /* VDM_MIGRATE_H */
