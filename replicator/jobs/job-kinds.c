/* The kinds of job vdimotiond runs (jobs.h): one line each. */

#include <stddef.h>

#include "jobs.h"

const struct job_kind *const job_kinds[] = {
  &job_kind_vdi_copy,
  &job_kind_vdi_migrate,
  &job_kind_vm_migrate,
  &job_kind_sr_evacuate,
  NULL,
};
