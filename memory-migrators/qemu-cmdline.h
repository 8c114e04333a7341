/* The destination QEMU's command line, made from the source's (for
 * vdimotion-mm-qemu; the rules are in vdimotion-mm-qemu(1)). */

#ifndef VDM_QEMU_CMDLINE_H
#define VDM_QEMU_CMDLINE_H

#include <glib.h>

#include "migrator.h"

struct qemu_cmdline_paths
{
  const char *qmp_socket;  /* the source's, vm.other_config["qmp-socket"] */
  const char *dst_qmp;     /* the destination's new one */
  const char *dst_pidfile; /* replaces the argument of -pidfile */
};

/* From SRC_ARGV (the source QEMU's, argv[0] first): every disk's
 * source_socket becomes its destination_socket, the QMP socket becomes
 * P->dst_qmp, -pidfile's file becomes P->dst_pidfile, -daemonize and
 * -incoming go, and "-S -incoming defer" is added.  Fails, naming it, if
 * a disk's or the QMP socket is not on the command line: a destination
 * QEMU still using a source disk would write where nobody reads. */
char **qemu_cmdline_for_destination (char *const *src_argv,
                                     const struct mm_description *d,
                                     const struct qemu_cmdline_paths *p,
                                     GError **err);

/* Replace every occurrence of the path FROM in ARG that stands as a whole
 * (between option punctuation: = , : ? & " ' or the ends), also in
 * QEMU's comma-doubled spelling, by TO.  Returns the new string and sets
 * *COUNT to the number of replacements. */
char *qemu_cmdline_replace_path (const char *arg, const char *from,
                                 const char *to, unsigned *count);

#endif /* VDM_QEMU_CMDLINE_H */
