/* vdimotion command line: one file per command (cmd-NAME.c), each a
 * `struct command` in the table of vdimotion.c.  Local commands work on
 * image files; the server commands (sr, vdi, vm, task) are XenAPI
 * clients, built on client.h. */
#ifndef VDM_CLI_H
#define VDM_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, as qemu-img and nbdkit use them. */
#define EXIT_OK 0
#define EXIT_ERROR 1
#define EXIT_USAGE 2

struct command
{
  const char *name;
  const char *synopsis; /* one line, after "vdimotion NAME " */
  int (*run) (int argc, char **argv);
};

extern const struct command cmd_info, cmd_map, cmd_create, cmd_compare,
    cmd_copy, cmd_mirror;
/* Commands that talk to a vdimotiond (or xapi) server: client.h. */
extern const struct command cmd_sr, cmd_vdi, cmd_vm, cmd_task;
extern const struct command cmd_hash_password;
extern const struct command cmd_backup;

/* Print "vdimotion NAME: message" to stderr. */
void cli_error (const char *cmd, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
/* Print the command's usage line; returns EXIT_USAGE. */
int cli_usage (const struct command *c);

struct vdisk;
/* A format name as qemu-img's -f/-F/-O take it ("raw", "vhd" or "vpc",
 * "qcow2") -> enum vdisk_format; -1 after saying what is wrong. */
int cli_parse_format (const char *cmd, const char *name);
/* Open image PATH with its chain as FORMAT (VDISK_FORMAT_PROBE when the
 * user gave none: then guessed layers are warned about on stderr, as
 * qemu-img does).  NULL after printing libvdisk's error. */
struct vdisk *cli_open_image (const char *cmd, const char *path,
                              unsigned flags, int format);

/* "10G", "512K", "4096" -> bytes (K/M/G/T are powers of 1024). */
int cli_parse_size (const char *s, uint64_t *out);
/* 1536 -> "1.5 KiB" into BUF. */
const char *cli_human_size (uint64_t n, char *buf, size_t len);
/* Write S to F as a JSON string, quotes included: json_write_string
 * (common/json.h), under the name the commands know. */
void cli_json_string (FILE *f, const char *s);

/* A progress bar on stderr for long work, drawn only when enabled
 * (--progress, or a terminal by default) and at most 10 times a second. */
struct progress
{
  bool enabled;
  uint64_t total;
  double start, last_draw;
};
void progress_init (struct progress *p, int mode, uint64_t total);
void progress_update (struct progress *p, uint64_t done);
void progress_finish (struct progress *p);
/* mode values for progress_init. */
#define PROGRESS_AUTO 0
#define PROGRESS_ON 1
#define PROGRESS_OFF 2

#endif /* VDM_CLI_H */
