/* A repository in a local directory (backup.h's backup_repo_ops).
 *
 * Every name that reaches a path here was checked by backup_name_is_safe
 * (the disk keys and point ids come from manifests and the command
 * line): a name cannot climb out of the repository.  What is published
 * is durable before it is visible: data fsync'd under a dot-name,
 * renamed, then the directory fsync'd. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "backup.h"
#include "full-io.h"

static int
sys_error (GError **err, int errnum, const char *what, const char *path)
{
  g_set_error (err, G_FILE_ERROR, g_file_error_from_errno (errnum),
               "%s %s: %s", what, path, g_strerror (errnum));
  return -1;
}

static int
check_names (const char *disk, const char *name, GError **err)
{
  const char *bad = disk && !backup_name_is_safe (disk) ? disk
                    : name && !backup_name_is_safe (name + (name[0] == '.'))
                        ? name
                        : NULL;
  if (bad) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "\"%s\" is not a plain name ([A-Za-z0-9._-])", bad);
    return -1;
  }
  return 0;
}

static char *
local_path (struct backup_repo *r, const char *disk, const char *name)
{
  return disk ? g_build_filename (r->dir, disk, name, NULL)
              : g_build_filename (r->dir, name, NULL);
}

static int
sync_dir (const char *dir, GError **err)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1 || fsync (fd) == -1) {
    int e = errno;
    if (fd >= 0)
      close (fd);
    return sys_error (err, e, "cannot sync the directory", dir);
  }
  close (fd);
  return 0;
}

static int
local_lock (struct backup_repo *r, bool exclusive, GError **err)
{
  g_autofree char *path = local_path (r, NULL, ".lock");
  if (r->lock_fd < 0)
    r->lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (r->lock_fd < 0)
    return sys_error (err, errno, "cannot open the lock", path);
  if (flock (r->lock_fd, exclusive ? LOCK_EX : LOCK_SH) == -1)
    return sys_error (err, errno, "cannot lock", path);
  return 0;
}

static int
by_name (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

/* Names in DIR, filtered by KEEP, sorted. */
static char **
list_dir (const char *dir, bool (*keep) (const char *name, const char *arg),
          const char *arg, GError **err)
{
  GError *e = NULL;
  g_autoptr (GDir) d = g_dir_open (dir, 0, &e);
  if (!d) {
    g_propagate_prefixed_error (err, e, "repository: ");
    return NULL;
  }
  GPtrArray *names = g_ptr_array_new ();
  const char *n;
  while ((n = g_dir_read_name (d)))
    if (keep (n, arg))
      g_ptr_array_add (names, g_strdup (n));
  g_ptr_array_sort (names, by_name);
  g_ptr_array_add (names, NULL);
  return (char **)g_ptr_array_free (names, false);
}

static bool
is_disk (const char *name, const char *dir)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  return backup_name_is_safe (name) && g_file_test (path, G_FILE_TEST_IS_DIR);
}

static char **
local_list_disks (struct backup_repo *r, GError **err)
{
  return list_dir (r->dir, is_disk, r->dir, err);
}

static bool
has_suffix (const char *name, const char *suffix)
{
  return backup_name_is_safe (name) && g_str_has_suffix (name, suffix);
}

static char **
local_list_names (struct backup_repo *r, const char *disk,
                  const char *suffix, GError **err)
{
  if (check_names (disk, NULL, err) == -1)
    return NULL;
  g_autofree char *dir = local_path (r, NULL, disk);
  if (!g_file_test (dir, G_FILE_TEST_EXISTS)) /* no point yet */
    return g_new0 (char *, 1);
  return list_dir (dir, has_suffix, suffix, err);
}

static char *
local_read (struct backup_repo *r, const char *disk, const char *name,
            size_t *len, GError **err)
{
  char *data;
  if (check_names (disk, name, err) == -1)
    return NULL;
  g_autofree char *path = local_path (r, disk, name);
  if (!g_file_get_contents (path, &data, len, err))
    return NULL;
  return data;
}

static int
local_publish (struct backup_repo *r, const char *disk, const char *name,
               const char *data, size_t len, GError **err)
{
  if (check_names (disk, name, err) == -1)
    return -1;
  g_autofree char *dir = local_path (r, NULL, disk);
  g_autofree char *tmpname = g_strdup_printf (".%s.tmp", name);
  g_autofree char *tmp = g_build_filename (dir, tmpname, NULL);
  g_autofree char *path = g_build_filename (dir, name, NULL);

  if (g_mkdir_with_parents (dir, 0755) == -1)
    return sys_error (err, errno, "cannot create", dir);
  int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd == -1)
    return sys_error (err, errno, "cannot create", tmp);
  if (full_write (fd, data, len) == -1 || fsync (fd) == -1) {
    int e = errno;
    close (fd);
    unlink (tmp);
    return sys_error (err, e, "cannot write", tmp);
  }
  close (fd);
  if (rename (tmp, path) == -1) {
    int e = errno;
    unlink (tmp);
    return sys_error (err, e, "cannot publish", path);
  }
  return sync_dir (dir, err);
}

static int
local_rename (struct backup_repo *r, const char *disk, const char *from,
              const char *to, GError **err)
{
  if (check_names (disk, from, err) == -1 || check_names (NULL, to, err) == -1)
    return -1;
  g_autofree char *dir = local_path (r, NULL, disk);
  g_autofree char *a = g_build_filename (dir, from, NULL);
  g_autofree char *b = g_build_filename (dir, to, NULL);
  if (rename (a, b) == -1)
    return sys_error (err, errno, "cannot rename", a);
  return sync_dir (dir, err);
}

static int
local_remove (struct backup_repo *r, const char *disk, const char *name,
              GError **err)
{
  if (check_names (disk, name, err) == -1)
    return -1;
  g_autofree char *dir = local_path (r, NULL, disk);
  g_autofree char *path = g_build_filename (dir, name, NULL);
  if (unlink (path) == -1 && errno != ENOENT)
    return sys_error (err, errno, "cannot remove", path);
  return sync_dir (dir, err);
}

static void
local_close (struct backup_repo *r)
{
  if (r->lock_fd >= 0)
    close (r->lock_fd);
}

static const struct backup_repo_ops local_ops = {
  .name = "local",
  .lock = local_lock,
  .list_disks = local_list_disks,
  .list_names = local_list_names,
  .read = local_read,
  .publish = local_publish,
  .rename = local_rename,
  .remove = local_remove,
  .path = local_path,
  .close = local_close,
};

struct backup_repo *
backup_repo_open (const char *location, bool create, GError **err)
{
  /* A remote repository is backup_repo_open_remote's (https:// only:
   * backups do not cross sites in the clear). */
  if (g_str_has_prefix (location, "https://")
      || g_str_has_prefix (location, "http://")) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_NOSYS,
                 "repository %s: a remote repository is reached over "
                 "https:// (vdimotiond --backup-repo)",
                 location);
    return NULL;
  }
  if (create && g_mkdir_with_parents (location, 0755) == -1) {
    sys_error (err, errno, "cannot create the repository", location);
    return NULL;
  }
  if (!g_file_test (location, G_FILE_TEST_IS_DIR)) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "repository %s: no such directory", location);
    return NULL;
  }
  struct backup_repo *r = g_new0 (struct backup_repo, 1);
  r->ops = &local_ops;
  r->location = g_strdup (location);
  r->dir = g_canonicalize_filename (location, NULL);
  r->lock_fd = -1;
  return r;
}

void
backup_repo_close (struct backup_repo *r)
{
  if (!r)
    return;
  r->ops->close (r);
  g_clear_pointer (&r->manifests, g_hash_table_unref);
  g_free (r->location);
  g_free (r->dir);
  g_free (r);
}
