/* vdimotion-mm-qemu's destination command line: every spelling of a disk
 * or QMP socket is rewritten, a near-miss path is not, and a disk the
 * command line does not use is an error rather than a silent miss. */
#include "unit.h"
#include "qemu-cmdline.h"

static const char *
sub (const char *arg, const char *from, const char *to, unsigned *n)
{
  static char buf[512];
  char *r = qemu_cmdline_replace_path (arg, from, to, n);
  snprintf (buf, sizeof buf, "%s", r);
  g_free (r);
  return buf;
}

static void
test_replace_spellings (void)
{
  unsigned n;
  CU_ASSERT_STRING_EQUAL (sub ("file=nbd+unix:///?socket=/r/s.sock,format=raw",
                               "/r/s.sock", "/r/d.sock", &n),
                          "file=nbd+unix:///?socket=/r/d.sock,format=raw");
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_STRING_EQUAL (sub ("file=nbd:unix:/r/s.sock:exportname=x",
                               "/r/s.sock", "/r/d.sock", &n),
                          "file=nbd:unix:/r/d.sock:exportname=x");
  CU_ASSERT_STRING_EQUAL (
      sub ("{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":"
           "\"/r/s.sock\"}}",
           "/r/s.sock", "/r/d.sock", &n),
      "{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":"
      "\"/r/d.sock\"}}");
  CU_ASSERT_STRING_EQUAL (
      sub ("unix:/r/vm.qmp,server=on,wait=off", "/r/vm.qmp", "/n/vm.qmp", &n),
      "unix:/n/vm.qmp,server=on,wait=off");
  /* A path that only starts like the socket's is another file. */
  CU_ASSERT_STRING_EQUAL (
      sub ("path=/r/s.sock2", "/r/s.sock", "/r/d.sock", &n),
      "path=/r/s.sock2");
  CU_ASSERT_EQUAL (n, 0);
  CU_ASSERT_STRING_EQUAL (
      sub ("path=/x/r/s.sock", "/r/s.sock", "/r/d.sock", &n),
      "path=/x/r/s.sock");
  CU_ASSERT_EQUAL (n, 0);
  /* QemuOpts doubles a comma inside a value. */
  CU_ASSERT_STRING_EQUAL (sub ("socket,id=m,path=/r/a,,b.qmp,server=on",
                               "/r/a,b.qmp", "/n/c,d.qmp", &n),
                          "socket,id=m,path=/n/c,,d.qmp,server=on");
  CU_ASSERT_EQUAL (n, 1);
}

static struct mm_description *
description (const char *src_sock)
{
  char text[1024];
  GError *err = NULL;
  struct mm_description *d;
  snprintf (text, sizeof text,
            "{\"vm\": {\"uuid\": \"u\", \"name_label\": \"\", "
            "\"other_config\": {\"qmp-socket\": \"/r/vm.qmp\"}},"
            "\"source\": {\"host\": \"a\", \"url\": \"https://a\"},"
            "\"destination\": {\"host\": \"b\", \"url\": \"https://b\","
            " \"run_dir\": \"/n\"},"
            "\"disks\": [{\"userdevice\": \"0\", \"vdi\": \"v\","
            " \"virtual_size\": 512, \"source_socket\": \"%s\","
            " \"destination_socket\": \"/n/d.sock\"}], \"live\": true}",
            src_sock);
  d = mm_description_parse (text, strlen (text), &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (d);
  return d;
}

static const struct qemu_cmdline_paths paths = {
  .qmp_socket = "/r/vm.qmp",
  .dst_qmp = "/n/u.qmp",
  .dst_pidfile = "/n/u.pid",
};

static void
test_destination_argv (void)
{
  char *src[] = { "qemu-system-x86_64",
                  "-daemonize",
                  "-name",
                  "vm1",
                  "--pidfile",
                  "/r/vm.pid",
                  "-incoming",
                  "defer",
                  "-drive",
                  "file=nbd+unix:///?socket=/r/s.sock,if=virtio",
                  "-qmp",
                  "unix:/r/vm.qmp,server=on,wait=off",
                  NULL };
  const char *want[] = { "qemu-system-x86_64",
                         "-name",
                         "vm1",
                         "--pidfile",
                         "/n/u.pid",
                         "-drive",
                         "file=nbd+unix:///?socket=/n/d.sock,if=virtio",
                         "-qmp",
                         "unix:/n/u.qmp,server=on,wait=off",
                         "-S",
                         "-incoming",
                         "defer",
                         NULL };
  struct mm_description *d = description ("/r/s.sock");
  GError *err = NULL;
  char **argv = qemu_cmdline_for_destination (src, d, &paths, &err);

  CU_ASSERT_PTR_NOT_NULL_FATAL (argv);
  CU_ASSERT_EQUAL (g_strv_length (argv), g_strv_length ((char **)want));
  for (size_t i = 0; want[i] && argv[i]; i++)
    CU_ASSERT_STRING_EQUAL (argv[i], want[i]);
  g_strfreev (argv);
  mm_description_free (d);
}

static void
test_unused_disk_socket_refused (void)
{
  char *src[] = { "qemu",
                  "-drive",
                  "file=nbd:unix:/r/other.sock",
                  "-qmp",
                  "unix:/r/vm.qmp,server=on",
                  NULL };
  struct mm_description *d = description ("/r/s.sock");
  GError *err = NULL;

  CU_ASSERT_PTR_NULL (qemu_cmdline_for_destination (src, d, &paths, &err));
  CU_ASSERT_PTR_NOT_NULL_FATAL (err);
  CU_ASSERT_PTR_NOT_NULL (strstr (err->message, "disk 0 (VDI v)"));
  g_error_free (err);
  mm_description_free (d);
}

static void
test_missing_qmp_refused (void)
{
  char *src[] = { "qemu", "-drive", "file=nbd:unix:/r/s.sock", NULL };
  struct mm_description *d = description ("/r/s.sock");
  GError *err = NULL;

  CU_ASSERT_PTR_NULL (qemu_cmdline_for_destination (src, d, &paths, &err));
  CU_ASSERT_PTR_NOT_NULL_FATAL (err);
  CU_ASSERT_PTR_NOT_NULL (strstr (err->message, "QMP socket /r/vm.qmp"));
  g_error_free (err);
  mm_description_free (d);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "replace_spellings", test_replace_spellings },
    { "destination_argv", test_destination_argv },
    { "unused_disk_socket_refused", test_unused_disk_socket_refused },
    { "missing_qmp_refused", test_missing_qmp_refused },
    { NULL, NULL },
  };
  (void)unit_path; /* no scratch files here */
  return unit_main ("mm-qemu-cmdline", tests);
}
