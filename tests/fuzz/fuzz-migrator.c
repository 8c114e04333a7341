/* libFuzzer target: the memory migrators' description parser
 * (memory-migrators/migrator.c, mm_description_parse), which reads the
 * JSON vdimotiond writes on a migrator's stdin.  A description it accepts
 * must hold what migrator.h promises: every string there and not empty
 * (vm.name_label may be), the socket paths absolute, the sizes >= 0; and
 * the lookups the migrators make afterwards must not crash either.  An
 * error must come with a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrator.h"

static void
need (bool ok, const char *what)
{
  if (!ok) {
    fprintf (stderr, "fuzz: accepted a description with %s\n", what);
    abort ();
  }
}

static bool
nonempty (const char *s)
{
  return s && *s;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (mm_description) d
      = mm_description_parse ((const char *)data, size, &err);
  double v;

  if (!d) {
    need (err && err->message && *err->message, "no error message");
    return 0;
  }
  need (nonempty (d->vm_uuid), "no vm.uuid");
  need (d->vm_name_label != NULL, "no vm.name_label");
  need (nonempty (d->source_host) && nonempty (d->source_url), "no source");
  need (nonempty (d->destination_host) && nonempty (d->destination_url),
        "no destination");
  need (d->destination_run_dir && d->destination_run_dir[0] == '/',
        "a relative run_dir");
  need (d->vm_other_config && d->options, "no other_config or options");
  for (size_t i = 0; i < d->n_disks; i++) {
    const struct mm_disk *k = &d->disks[i];
    need (nonempty (k->userdevice) && nonempty (k->vdi), "an unnamed disk");
    need (k->virtual_size >= 0, "a negative size");
    need (k->source_socket && k->source_socket[0] == '/'
              && k->destination_socket && k->destination_socket[0] == '/',
          "a relative socket");
  }
  /* What vdimotion-mm-qemu and -none look up. */
  mm_other_config (d, "qmp-socket");
  mm_other_config (d, "");
  g_clear_error (&err);
  if (!mm_option_number (d, "mm-max-bandwidth", 0, &v, &err))
    need (err != NULL, "an option error without a message");
  g_clear_error (&err);
  if (!mm_option_number (d, "mm-timeout", 600, &v, &err))
    need (err != NULL, "an option error without a message");
  return 0;
}
