/* The copy journal: which windows of a copy are done, durably, so a copy
 * killed at any point resumes instead of starting over.
 *
 * The file holds a header naming the copy (source, destination, sizes)
 * and two bitmaps over the windows: "started" (set, and synced, before the
 * first byte of a window is written) and "done" (set only after the
 * destination has flushed the window).  On resume, done windows are
 * skipped; started-but-not-done windows are redone without assuming the
 * destination reads zero there; untouched windows are copied as fresh. */
#ifndef VDM_COPY_JOURNAL_H
#define VDM_COPY_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

struct journal;

/* Open PATH for the copy IDENTITY over NWINDOWS windows: creates it, or
 * loads it if it exists (*RESUMED = true).  A journal of another copy is
 * refused with a message in *ERR. */
struct journal *journal_open (const char *path, const char *identity,
                              uint64_t nwindows, bool *resumed, char **err);
bool journal_is_done (struct journal *j, uint64_t w);
bool journal_was_started (struct journal *j, uint64_t w);
/* Set and sync the bits.  Return -1 with *ERR on I/O errors. */
int journal_mark_started (struct journal *j, uint64_t w, char **err);
int journal_mark_done (struct journal *j, const uint64_t *ws, size_t n,
                       char **err);
/* Close; with REMOVE the file is deleted (the copy finished). */
void journal_close (struct journal *j, bool remove);

#endif /* VDM_COPY_JOURNAL_H */
