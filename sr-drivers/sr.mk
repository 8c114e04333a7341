# SR drivers (sr.h): the generic part and the `file` SR.  A library of
# its own so that users of libvdisk alone (the nbdkit plugin, the mirror
# filter) need not link SQLite.  Link it before libvdisk:
#   LDADD = sr-drivers/libsr.la sr-drivers/libvdisk.la
# The changed-block log (cbt-log.h): plain C with GLib, no SQLite, so
# that the mirror filter, which marks it, links it too.
noinst_LTLIBRARIES += sr-drivers/libcbtlog.la
sr_drivers_libcbtlog_la_SOURCES = sr-drivers/cbt-log.h sr-drivers/cbt-log.c
sr_drivers_libcbtlog_la_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS)
sr_drivers_libcbtlog_la_LIBADD = $(GLIB_LIBS) -lpthread

noinst_LTLIBRARIES += sr-drivers/libsr.la
sr_drivers_libsr_la_SOURCES = \
	sr-drivers/sr.h \
	sr-drivers/sr.c \
	sr-drivers/sr-file.c
sr_drivers_libsr_la_CFLAGS = $(AM_CFLAGS) $(SQLITE_CFLAGS) $(GLIB_CFLAGS)
sr_drivers_libsr_la_LIBADD = sr-drivers/libcbtlog.la $(SQLITE_LIBS) \
	$(GLIB_LIBS)

# The file SR's on-disk layout: a file format users meet.
man_MANS += man/vdimotion-sr.5
EXTRA_DIST += man/vdimotion-sr.pod

man/vdimotion-sr.5: man/vdimotion-sr.pod
	$(AM_V_GEN)$(MKDIR_P) man && $(POD2MAN) --section=5 \
	  --center="vdimotion" --release="$(PACKAGE_STRING)" \
	  --name=vdimotion-sr $< > $@.tmp && mv $@.tmp $@

check_PROGRAMS += tests/unit/test-sr-file
TESTS += tests/unit/test-sr-file
tests_unit_test_sr_file_SOURCES = tests/unit/test-sr-file.c tests/unit/unit.h
tests_unit_test_sr_file_CPPFLAGS = $(AM_CPPFLAGS) $(CUNIT_CFLAGS) \
	$(SQLITE_CFLAGS) $(GLIB_CFLAGS)
tests_unit_test_sr_file_LDADD = sr-drivers/libsr.la sr-drivers/libvdisk.la \
	$(SQLITE_LIBS) $(GLIB_LIBS) $(CUNIT_LIBS) -lpthread

check_PROGRAMS += tests/unit/test-cbt-log
TESTS += tests/unit/test-cbt-log
tests_unit_test_cbt_log_SOURCES = tests/unit/test-cbt-log.c tests/unit/unit.h
tests_unit_test_cbt_log_CPPFLAGS = $(AM_CPPFLAGS) $(CUNIT_CFLAGS) \
	-I$(top_srcdir)/sr-drivers
tests_unit_test_cbt_log_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS)
tests_unit_test_cbt_log_LDADD = sr-drivers/libcbtlog.la $(GLIB_LIBS) \
	$(CUNIT_LIBS) -lpthread

# Enables, disables and rotates changed-block logs for the shell tests.
check_PROGRAMS += tests/cbtlog-tool
tests_cbtlog_tool_SOURCES = tests/cbtlog-tool.c
tests_cbtlog_tool_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS)
tests_cbtlog_tool_LDADD = sr-drivers/libcbtlog.la $(GLIB_LIBS)
