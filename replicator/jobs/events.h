/* The change log: which XenAPI object changed, and how, numbered.
 *
 * Design
 * - One entry per change of an object's record: its class (as XenAPI
 *   spells it, "VM", "task"), the operation (add, mod, del), its uuid,
 *   when, and an id.  Entries hold no record: a reader renders the
 *   object as it is when it reads, and a deleted object's last record is
 *   the reader's to keep (the XenAPI face does: xapi-shim/class-event.c).
 * - Fed where records change, in whatever thread: the state database's
 *   writes of VMs, VBDs, tasks and sessions (state.c, so a task's
 *   progress is logged as often as it is written: once a second), the
 *   SRs' VDI changes (a watch on each SR, host.c), VDI claims (a VDI's
 *   current_operations, host.c), and event.inject.
 * - Ids grow by one per entry.  The first id of a run is the time the
 *   log was made, in microseconds since the epoch, so an id from a
 *   previous run of the daemon is older than anything this run kept,
 *   and a reader holding one is told it lost events rather than
 *   mistaking it for one of this run.
 * - Bounded: the last `capacity` entries are kept (a ring).  A reader
 *   whose position fell out of it, or who names an id this log never
 *   gave, is told it lost events (events_read false) and starts over.
 * - One watch, called in the main context once after a batch of
 *   entries (from an idle source), is how a reader learns that there
 *   is something new without polling or a thread of its own.
 * - Threads: events_add, events_last and events_read from any thread;
 *   events_watch and events_free in the main context (the watch's
 *   thread).
 */
#ifndef VDM_EVENTS_H
#define VDM_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

/* The classes the brain logs changes of, as XenAPI spells them. */
#define EVENT_CLASS_SESSION "session"
#define EVENT_CLASS_SR "SR"
#define EVENT_CLASS_VDI "VDI"
#define EVENT_CLASS_VM "VM"
#define EVENT_CLASS_VBD "VBD"
#define EVENT_CLASS_TASK "task"

enum event_op
{
  EVENT_ADD,
  EVENT_MOD,
  EVENT_DEL,
};

#define EVENT_UUID_MAX 36 /* a uuid's length */

/* One entry. */
struct event
{
  int64_t id;
  int64_t time;    /* unix time (seconds) of the change */
  const char *cls; /* a string constant (static storage) */
  enum event_op op;
  char uuid[EVENT_UUID_MAX + 1];
};

struct events;

/* A log keeping the last CAPACITY entries (0: a default of 16384). */
struct events *events_new (size_t capacity);
/* Also takes back the watch. */
void events_free (struct events *ev);

/* Log that object UUID of class CLS (a string constant, kept as is)
 * was added, modified or deleted.  Returns the entry's id.  UUID longer
 * than EVENT_UUID_MAX is a bug (logged, nothing added, returns the last
 * id).  EV NULL: nothing (a host without a log, in unit tests). */
int64_t events_add (struct events *ev, const char *cls, enum event_op op,
                    const char *uuid);
/* The id of the last entry (the first id less one while there is
 * none). */
int64_t events_last (struct events *ev);
/* Append the entries after id SINCE to OUT (a GArray of struct event),
 * oldest first, and set *LAST to the id of the last one there is (SINCE
 * itself if none).  False, with nothing appended and *LAST set, if
 * entries after SINCE were forgotten or SINCE is an id this log never
 * gave. */
bool events_read (struct events *ev, int64_t since, GArray *out,
                  int64_t *last);
/* Call FN (OPAQUE) in the main context after entries were added (once
 * per batch); FN NULL takes the watch back (a call pending is
 * dropped).  One watch at a time. */
void events_watch (struct events *ev, void (*fn) (void *opaque),
                   void *opaque);

/* "add", "mod", "del": XenAPI's names of the operations. */
const char *events_op_name (enum event_op op);

#endif /* VDM_EVENTS_H */
