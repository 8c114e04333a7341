/* The destination QEMU's command line (qemu-cmdline.h).
 *
 * Socket paths are replaced wherever they stand in an argument rather
 * than by parsing each option: QEMU spells an NBD socket in several ways
 * (nbd+unix:///?socket=P, nbd:unix:P, server.path=P, JSON blockdevs) and
 * a QMP socket in several more (-qmp unix:P, -chardev socket,path=P); a
 * whole-path match between option punctuation catches them all, and a
 * disk whose socket is matched nowhere is an error, never a silent miss. */

#include <string.h>

#include "qemu-cmdline.h"

static bool
is_delim (char c)
{
  return c == '\0' || strchr ("=,:?&\"'", c) != NULL;
}

/* QemuOpts writes a comma inside a value as ",,". */
static char *
comma_doubled (const char *s)
{
  g_auto (GStrv) parts = g_strsplit (s, ",", -1);
  return g_strjoinv (",,", parts);
}

static char *
replace_one (const char *arg, const char *from, const char *to,
             unsigned *count)
{
  GString *out = g_string_new (NULL);
  size_t flen = strlen (from);
  const char *p = arg;

  for (;;) {
    const char *hit = strstr (p, from);
    while (hit
           && !((hit == arg || is_delim (hit[-1])) && is_delim (hit[flen])))
      hit = strstr (hit + 1, from);
    if (hit == NULL)
      break;
    g_string_append_len (out, p, hit - p);
    g_string_append (out, to);
    p = hit + flen;
    (*count)++;
  }
  g_string_append (out, p);
  return g_string_free (out, FALSE);
}

char *
qemu_cmdline_replace_path (const char *arg, const char *from, const char *to,
                           unsigned *count)
{
  g_autofree char *once = NULL;
  g_autofree char *from2 = NULL;
  g_autofree char *to2 = NULL;

  *count = 0;
  once = replace_one (arg, from, to, count);
  if (strchr (from, ',') == NULL && strchr (to, ',') == NULL)
    return g_steal_pointer (&once);
  from2 = comma_doubled (from);
  to2 = comma_doubled (to);
  return replace_one (once, from2, to2, count);
}

/* "-opt" and "--opt" are the same to QEMU. */
static bool
is_opt (const char *arg, const char *name)
{
  if (arg[0] != '-')
    return false;
  arg += arg[1] == '-' ? 2 : 1;
  return strcmp (arg, name) == 0;
}

char **
qemu_cmdline_for_destination (char *const *src_argv,
                              const struct mm_description *d,
                              const struct qemu_cmdline_paths *p, GError **err)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  g_autofree unsigned *disk_hits = g_new0 (unsigned, d->n_disks + 1);
  unsigned qmp_hits = 0;
  bool has_S = false;

  if (src_argv[0] == NULL) {
    g_set_error (err, MM_ERROR, 0, "source QEMU: empty command line");
    return NULL;
  }
  g_ptr_array_add (out, g_strdup (src_argv[0]));
  for (size_t i = 1; src_argv[i]; i++) {
    const char *a = src_argv[i];
    char *arg;
    unsigned n;

    if (is_opt (a, "daemonize"))
      continue; /* the migrator detaches it itself */
    if (is_opt (a, "incoming")) {
      /* A VM that came in by migration still carries its -incoming. */
      if (src_argv[i + 1])
        i++;
      continue;
    }
    if (is_opt (a, "pidfile") && src_argv[i + 1]) {
      /* The source holds a lock on its pid file. */
      g_ptr_array_add (out, g_strdup (a));
      g_ptr_array_add (out, g_strdup (p->dst_pidfile));
      i++;
      continue;
    }
    if (is_opt (a, "S"))
      has_S = true;

    arg = g_strdup (a);
    for (size_t k = 0; k < d->n_disks; k++) {
      char *next = qemu_cmdline_replace_path (
          arg, d->disks[k].source_socket, d->disks[k].destination_socket, &n);
      g_free (arg);
      arg = next;
      disk_hits[k] += n;
    }
    {
      char *next
          = qemu_cmdline_replace_path (arg, p->qmp_socket, p->dst_qmp, &n);
      g_free (arg);
      arg = next;
      qmp_hits += n;
    }
    g_ptr_array_add (out, arg);
  }

  for (size_t k = 0; k < d->n_disks; k++)
    if (disk_hits[k] == 0) {
      g_set_error (err, MM_ERROR, 0,
                   "disk %s (VDI %s): its source socket %s is not on the "
                   "source QEMU's command line",
                   d->disks[k].userdevice, d->disks[k].vdi,
                   d->disks[k].source_socket);
      return NULL;
    }
  if (qmp_hits == 0) {
    g_set_error (err, MM_ERROR, 0,
                 "the QMP socket %s is not on the source QEMU's command "
                 "line",
                 p->qmp_socket);
    return NULL;
  }

  /* Paused until vdimotion-mm-qemu decides, whatever the guest's state
   * was: it is resumed with "cont" only if the source was running. */
  if (!has_S)
    g_ptr_array_add (out, g_strdup ("-S"));
  g_ptr_array_add (out, g_strdup ("-incoming"));
  g_ptr_array_add (out, g_strdup ("defer"));
  g_ptr_array_add (out, NULL);
  return (char **)g_ptr_array_free (g_steal_pointer (&out), FALSE);
}
