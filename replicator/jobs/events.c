/* The change log (events.h): a ring of entries under a lock, and one
 * watch called from an idle source of the main context.
 *
 * The ring holds the entries first_id .. next_id - 1 (at most capacity
 * of them); entry ID sits at ring[ID % capacity].  The idle source is
 * made by the first entry after the watch last ran (pending), so a
 * burst of changes costs one call of the watch.
 */

#include <string.h>

#include "events.h"

#define DEFAULT_CAPACITY 16384

struct events
{
  GMutex lock;
  struct event *ring;
  size_t capacity;
  int64_t first_id; /* the oldest entry kept */
  int64_t next_id;  /* the id of the next entry */
  void (*watch) (void *opaque);
  void *watch_opaque;
  GSource *pending; /* the idle source calling the watch, or NULL */
};

struct events *
events_new (size_t capacity)
{
  struct events *ev = g_new0 (struct events, 1);

  g_mutex_init (&ev->lock);
  ev->capacity = capacity ? capacity : DEFAULT_CAPACITY;
  ev->ring = g_new0 (struct event, ev->capacity);
  ev->first_id = ev->next_id = g_get_real_time ();
  return ev;
}

void
events_free (struct events *ev)
{
  if (ev == NULL)
    return;
  events_watch (ev, NULL, NULL);
  g_mutex_clear (&ev->lock);
  g_free (ev->ring);
  g_free (ev);
}

const char *
events_op_name (enum event_op op)
{
  switch (op) {
  case EVENT_ADD:
    return "add";
  case EVENT_MOD:
    return "mod";
  case EVENT_DEL:
    return "del";
  }
  g_assert_not_reached ();
}

/* The watch's idle source (main context). */
static gboolean
call_watch (gpointer user_data)
{
  struct events *ev = user_data;
  void (*fn) (void *opaque);
  void *opaque;

  g_mutex_lock (&ev->lock);
  g_clear_pointer (&ev->pending, g_source_unref);
  fn = ev->watch;
  opaque = ev->watch_opaque;
  g_mutex_unlock (&ev->lock);
  /* Taking the watch back happens in this thread too, so FN is still
   * the watch here. */
  if (fn)
    fn (opaque);
  return G_SOURCE_REMOVE;
}

int64_t
events_add (struct events *ev, const char *cls, enum event_op op,
            const char *uuid)
{
  struct event *e;
  int64_t id;

  if (ev == NULL)
    return 0;
  if (strlen (uuid) > EVENT_UUID_MAX) {
    g_critical ("events: %s %s: not a uuid", cls, uuid);
    return events_last (ev);
  }
  g_mutex_lock (&ev->lock);
  id = ev->next_id++;
  if (ev->next_id - ev->first_id > (int64_t)ev->capacity)
    ev->first_id++;
  e = &ev->ring[id % (int64_t)ev->capacity];
  e->id = id;
  e->time = g_get_real_time () / G_USEC_PER_SEC;
  e->cls = cls;
  e->op = op;
  strcpy (e->uuid, uuid);
  if (ev->watch && ev->pending == NULL) {
    ev->pending = g_idle_source_new ();
    /* Not below the calls being served: a busy daemon still wakes its
     * waiters. */
    g_source_set_priority (ev->pending, G_PRIORITY_DEFAULT);
    g_source_set_callback (ev->pending, call_watch, ev, NULL);
    g_source_attach (ev->pending, NULL);
  }
  g_mutex_unlock (&ev->lock);
  return id;
}

int64_t
events_last (struct events *ev)
{
  int64_t last;

  g_mutex_lock (&ev->lock);
  last = ev->next_id - 1;
  g_mutex_unlock (&ev->lock);
  return last;
}

bool
events_read (struct events *ev, int64_t since, GArray *out, int64_t *last)
{
  bool ok;

  g_mutex_lock (&ev->lock);
  *last = ev->next_id - 1;
  ok = since >= ev->first_id - 1 && since < ev->next_id;
  for (int64_t id = since + 1; ok && id < ev->next_id; id++)
    g_array_append_vals (out, &ev->ring[id % (int64_t)ev->capacity], 1);
  g_mutex_unlock (&ev->lock);
  return ok;
}

void
events_watch (struct events *ev, void (*fn) (void *opaque), void *opaque)
{
  g_mutex_lock (&ev->lock);
  g_assert (fn == NULL || ev->watch == NULL);
  ev->watch = fn;
  ev->watch_opaque = opaque;
  if (fn == NULL && ev->pending) {
    g_source_destroy (ev->pending);
    g_clear_pointer (&ev->pending, g_source_unref);
  }
  g_mutex_unlock (&ev->lock);
}
