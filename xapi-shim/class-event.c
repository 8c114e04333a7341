/* The event class: xapi's event API over the brain's change log
 * (replicator/jobs/events.h).
 *
 * Design
 * - The brain logs (class, operation, uuid) for every change of a record
 *   XenAPI shows, numbered; this file turns entries into XenAPI events:
 *   {id, timestamp, class (lower-case, "vm"), operation (add, mod, del),
 *   ref, snapshot (the object's record, as its get_record answers)}.
 *   Only classes served with records have events; the others' entries
 *   (sessions, here) only wake the calls that wait.
 * - Subscriptions are xapi's: "*" (everything), a class in any letter
 *   case ("vm"), or one object ("vm/OpaqueRef:...").
 * - event.from (classes, token, timeout) → {events, valid_ref_counts,
 *   token}.  A token is "<id>,<0>" (20 digits each, as xapi writes it;
 *   xapi's second number counts messages, which this daemon has none
 *   of): the last entry the answer covers.  The token "" (or id 0)
 *   answers every object of the classes as an add.  Otherwise the
 *   entries after the token are coalesced as xapi does: one event per
 *   object, its state now: add if it was created since, del if it was
 *   deleted (nothing if both), else mod; an add or mod of an object
 *   gone by the time it is rendered is left out (its del comes next).
 *   With nothing to say, the call waits until something of its classes
 *   changes or its timeout passes, and then answers
 *   {events: [], valid_ref_counts, token: the last id}.  A token older
 *   than the log keeps, or not from this run of the daemon, fails with
 *   EVENTS_LOST (the client starts over from "").  valid_ref_counts
 *   counts the objects of every class with records, keyed in lower
 *   case, as int32 (xapi's types).
 * - event.register / unregister / next: a session's registration is its
 *   subscriptions and its position in the log (the last entry at its
 *   first register).  next answers every matching entry since the
 *   position, oldest first and not coalesced, with id (the entry's),
 *   timestamp (its time, as xapi's string_of_float writes it) and the
 *   snapshot; it waits while there is none.  A del's snapshot is the
 *   object's last record: while any session is registered, this file
 *   renders each object at the first registration and again at every
 *   add or mod logged of it (once per batch), and keeps that record
 *   until every registration has passed the object's del.  next without
 *   register: SESSION_NOT_REGISTERED; position fallen out of the log:
 *   EVENTS_LOST (and the position moves to the end).
 * - event.inject (class, ref) logs a mod of the object and answers the
 *   token just before it; event.get_current_id the log's last id.
 * - A call that waits is a deferral (struct xapi_deferral, xapi.h): no
 *   thread, its HTTP message paused.  At every batch of entries
 *   (events_watch, in the main context) each waiting call looks at the
 *   entries it has not seen yet; an event.from also wakes at its
 *   deadline (a timeout source).  A call whose session ended (logout,
 *   or the oldest of too many) answers SESSION_INVALID, and the
 *   session's registration goes.  At daemon stop http.c cancels the
 *   waiting calls (they go from the list and lose their timer) before
 *   xapi_events_free.  Async.event.from / Async.event.next answer at
 *   once with what there is.
 */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "xapi.h"

/* Timeouts beyond this wake the call earlier: an empty answer is one
 * the client must be ready for anyway. */
#define MAX_TIMEOUT_SECONDS (24 * 3600)

struct sub
{
  char *cls; /* lower-case; NULL: every class ("*") */
  char *ref; /* one object, or NULL */
};

struct registration
{
  GPtrArray *subs; /* struct sub * */
  int64_t pos;     /* the last entry answered */
};

/* An object's last record, kept while sessions are registered. */
struct last_record
{
  xmlrpc_value *rec;
  int64_t deleted; /* the id of its del, 0 while it lives */
};

struct xapi_events
{
  struct xapi_daemon *d;
  struct events *log;      /* the brain's: d->host->events */
  GHashTable *registered;  /* session ref → struct registration * */
  GPtrArray *waiting;      /* struct wait *: calls waiting */
  GHashTable *last;        /* "<class>/<uuid>" (lower-case class) →
                              struct last_record *, while registered */
  int64_t seen;            /* the last entry `last` was updated for */
};

/* One waiting event.from or event.next. */
struct wait
{
  struct xapi_deferral df;
  struct xapi_events *e;
  char *session;
  bool next;         /* event.next, else event.from */
  GPtrArray *subs;   /* event.from's (struct sub *) */
  int64_t scanned;   /* event.from: the token's id, or past it the last
                        entry seen to hold nothing for this call */
  double timeout;    /* event.from, seconds */
  xmlrpc_value *answer; /* event.from's, made by wait_check */
  guint timer;       /* event.from's deadline, a source id, or 0 */
  bool in_list;      /* in e->waiting */
};

static void
sub_free (gpointer p)
{
  struct sub *s = p;

  g_free (s->cls);
  g_free (s->ref);
  g_free (s);
}

static void
registration_free (gpointer p)
{
  struct registration *r = p;

  g_ptr_array_unref (r->subs);
  g_free (r);
}

static void
last_record_free (gpointer p)
{
  struct last_record *l = p;

  if (l->rec)
    xmlrpc_DECREF (l->rec);
  g_free (l);
}

/* Subscriptions. */

/* xapi's Subscription.of_string: "*", "class" or "class/ref". */
static struct sub *
sub_parse (const char *text)
{
  struct sub *s = g_new0 (struct sub, 1);
  const char *slash = strchr (text, '/');

  if (strcmp (text, "*") == 0)
    return s;
  s->cls = g_ascii_strdown (text, slash ? slash - text : -1);
  if (slash)
    s->ref = g_strdup (slash + 1);
  return s;
}

static bool
sub_equal (const struct sub *a, const struct sub *b)
{
  return g_strcmp0 (a->cls, b->cls) == 0 && g_strcmp0 (a->ref, b->ref) == 0;
}

/* The subscriptions of argument V (a string set); NULL after
 * FIELD_TYPE_ERROR. */
static GPtrArray *
read_subs (struct xapi_call *c, xmlrpc_value *v)
{
  g_autoptr (GPtrArray) subs = g_ptr_array_new_with_free_func (sub_free);
  int n;

  if (xmlrpc_value_type (v) != XMLRPC_TYPE_ARRAY) {
    xapi_fail (c, "FIELD_TYPE_ERROR", "classes", NULL);
    return NULL;
  }
  n = xmlrpc_array_size (c->env, v);
  for (int i = 0; i < n && !xapi_failed (c); i++) {
    g_autoptr (xmlrpc_value) item = NULL;
    g_autofree char *text = NULL;

    xmlrpc_array_read_item (c->env, v, i, &item);
    if (item && (text = xapi_read_string (c, item, "classes")))
      g_ptr_array_add (subs, sub_parse (text));
  }
  return xapi_failed (c) ? NULL : g_steal_pointer (&subs);
}

/* Does any of SUBS select object UUID of class CLS? */
static bool
subs_match (GPtrArray *subs, const char *cls, const char *uuid)
{
  for (guint i = 0; i < subs->len; i++) {
    const struct sub *s = subs->pdata[i];

    if (s->cls == NULL)
      return true;
    if (g_ascii_strcasecmp (s->cls, cls) != 0)
      continue;
    if (s->ref == NULL
        || (g_str_has_prefix (s->ref, XAPI_REF_PREFIX)
            && strcmp (s->ref + strlen (XAPI_REF_PREFIX), uuid) == 0))
      return true;
  }
  return false;
}

/* Rendering. */

/* The class an entry shows as, or NULL if it has no events (no
 * records). */
static const struct xapi_class *
entry_class (const char *cls)
{
  const struct xapi_class *x = xapi_class_by_name (cls);

  return x && x->get_record ? x : NULL;
}

/* A failure of a record that went meanwhile is not the call's. */
static void
forget_failure (struct xapi_call *c)
{
  g_clear_pointer (&c->error, g_ptr_array_unref);
  if (c->env->fault_occurred) {
    xmlrpc_env_clean (c->env);
    xmlrpc_env_init (c->env);
  }
}

/* The record of object UUID of CLS, or NULL if it is gone. */
static xmlrpc_value *
render (struct xapi_call *c, const struct xapi_class *cls, const char *uuid)
{
  g_autofree char *ref = g_strconcat (XAPI_REF_PREFIX, uuid, NULL);
  xmlrpc_value *rec = xapi_class_record (c, cls, ref);

  if (rec == NULL)
    forget_failure (c);
  return rec;
}

/* An event as xapi writes it.  SNAPSHOT is borrowed (NULL: none). */
static xmlrpc_value *
event_value (struct xapi_call *c, int64_t id, const char *timestamp,
             const char *cls, enum event_op op, const char *uuid,
             xmlrpc_value *snapshot)
{
  xmlrpc_value *ev = xmlrpc_struct_new (c->env);
  g_autofree char *lc = g_ascii_strdown (cls, -1);
  char num[32];

  /* A string, as in xapi, whatever the wire form of an int. */
  snprintf (num, sizeof num, "%" PRId64, id);
  xapi_set (c, ev, "id", xapi_string (c, num));
  xapi_set (c, ev, "timestamp", xapi_string (c, timestamp));
  xapi_set (c, ev, "class", xapi_string (c, lc));
  xapi_set (c, ev, "operation", xapi_string (c, events_op_name (op)));
  xapi_set (c, ev, "ref", xapi_ref (c, uuid));
  if (snapshot) {
    xmlrpc_INCREF (snapshot);
    xapi_set (c, ev, "snapshot", snapshot);
  }
  return ev;
}

static char *
token_text (int64_t id)
{
  return g_strdup_printf ("%020" PRId64 ",%020d", id, 0);
}

/* xapi's Token.of_string: "" or "<id>,<messages>"; false after
 * EVENT_FROM_TOKEN_PARSE_FAILURE. */
static bool
token_parse (struct xapi_call *c, const char *token, int64_t *id)
{
  g_auto (GStrv) parts = g_strsplit (token, ",", -1);
  gint64 a, b;

  *id = 0;
  if (*token == '\0')
    return true;
  if (g_strv_length (parts) == 2
      && g_ascii_string_to_signed (parts[0], 10, G_MININT64, G_MAXINT64, &a,
                                   NULL)
      && g_ascii_string_to_signed (parts[1], 10, G_MININT64, G_MAXINT64, &b,
                                   NULL)) {
    *id = a;
    return true;
  }
  xapi_fail (c, "EVENT_FROM_TOKEN_PARSE_FAILURE", token, NULL);
  return false;
}

/* valid_ref_counts: the number of objects of every class with records. */
static xmlrpc_value *
ref_counts (struct xapi_call *c)
{
  size_t n;
  const struct xapi_class *const *all = xapi_classes (&n);
  xmlrpc_value *st = xmlrpc_struct_new (c->env);

  for (size_t i = 0; i < n; i++) {
    g_autoptr (GPtrArray) refs = g_ptr_array_new_with_free_func (g_free);
    g_autofree char *lc = NULL;

    if (all[i]->list == NULL)
      continue;
    if (!all[i]->list (c, refs)) {
      forget_failure (c);
      continue;
    }
    lc = g_ascii_strdown (all[i]->name, -1);
    xapi_set (c, st, lc, xmlrpc_int_new (c->env, (int)refs->len));
  }
  return st;
}

/* event.from. */

/* One object's changes since a token, coalesced. */
struct change
{
  const struct xapi_class *cls;
  const char *logged_cls; /* as the log spells it */
  char uuid[EVENT_UUID_MAX + 1];
  int64_t id; /* its last entry */
  bool added, deleted;
  enum event_op first;
};

static gint
change_cmp (gconstpointer a, gconstpointer b)
{
  const struct change *x = a, *y = b;

  return x->id < y->id ? -1 : x->id > y->id;
}

/* The changes SUBS select among ENTRIES, one per object, into OUT
 * (struct change), in the order of their last entries: xapi's rule (see
 * the top of the file) is applied by from_events. */
static void
coalesce (GArray *entries, GPtrArray *subs, GArray *out)
{
  g_autoptr (GHashTable) index
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (guint i = 0; i < entries->len; i++) {
    const struct event *en = &g_array_index (entries, struct event, i);
    const struct xapi_class *cls = entry_class (en->cls);
    g_autofree char *key = NULL;
    gpointer at;
    struct change *ch;

    if (cls == NULL || !subs_match (subs, en->cls, en->uuid))
      continue;
    key = g_strconcat (cls->name, "/", en->uuid, NULL);
    if (g_hash_table_lookup_extended (index, key, NULL, &at))
      ch = &g_array_index (out, struct change, GPOINTER_TO_UINT (at));
    else {
      struct change fresh = { .cls = cls, .logged_cls = en->cls,
                              .first = en->op };

      strcpy (fresh.uuid, en->uuid);
      g_array_append_val (out, fresh);
      g_hash_table_insert (index, g_steal_pointer (&key),
                           GUINT_TO_POINTER (out->len - 1));
      ch = &g_array_index (out, struct change, out->len - 1);
    }
    ch->id = en->id;
    ch->added |= en->op == EVENT_ADD;
    /* Gone until made again (a late mod of a gone object changes
     * nothing). */
    ch->deleted = en->op == EVENT_DEL || (ch->deleted && en->op != EVENT_ADD);
  }
  g_array_sort (out, change_cmp);
}

/* The changes for SUBS after entry SINCE (and *LAST, the last entry);
 * false if some were forgotten (or SINCE is not of this run). */
static bool
collect (struct xapi_events *e, GPtrArray *subs, int64_t since,
         GArray *changes, int64_t *last)
{
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (struct event));

  if (!events_read (e->log, since, entries, last))
    return false;
  coalesce (entries, subs, changes);
  return true;
}

/* Does a change leave an event? (an object both made and gone since the
 * token leaves none) */
static bool
change_shows (const struct change *ch)
{
  return !(ch->deleted && ch->first == EVENT_ADD);
}

/* The events of CHANGES into array EVENTS. */
static void
from_events (struct xapi_call *c, GArray *changes, xmlrpc_value *events)
{
  for (guint i = 0; i < changes->len; i++) {
    const struct change *ch = &g_array_index (changes, struct change, i);
    g_autoptr (xmlrpc_value) snap = NULL;

    if (!change_shows (ch))
      continue;
    if (ch->deleted) {
      xapi_append (c, events,
                   event_value (c, ch->id, "0.0", ch->logged_cls, EVENT_DEL,
                                ch->uuid, NULL));
      continue;
    }
    snap = render (c, ch->cls, ch->uuid);
    if (snap)
      xapi_append (c, events,
                   event_value (c, ch->id, "0.0", ch->logged_cls,
                                ch->added ? EVENT_ADD : EVENT_MOD, ch->uuid,
                                snap));
  }
}

/* Call FN (C, CLS, UUID, REC, OPAQUE) for every object SUBS select
 * (NULL: all) of every class with records, REC its record (borrowed). */
typedef void object_fn (struct xapi_call *c, const struct xapi_class *cls,
                        const char *uuid, xmlrpc_value *rec, void *opaque);

static void
for_each_object (struct xapi_call *c, GPtrArray *subs, object_fn *fn,
                 void *opaque)
{
  size_t n;
  const struct xapi_class *const *all = xapi_classes (&n);

  for (size_t i = 0; i < n; i++) {
    g_autoptr (GPtrArray) refs = g_ptr_array_new_with_free_func (g_free);

    if (all[i]->list == NULL || all[i]->get_record == NULL)
      continue;
    if (!all[i]->list (c, refs)) {
      forget_failure (c);
      continue;
    }
    for (guint j = 0; j < refs->len; j++) {
      const char *uuid = xapi_ref_uuid (refs->pdata[j]);
      g_autoptr (xmlrpc_value) rec = NULL;

      if (uuid && (subs == NULL || subs_match (subs, all[i]->name, uuid))
          && (rec = render (c, all[i], uuid)))
        fn (c, all[i], uuid, rec, opaque);
    }
  }
}

/* The token "": every object as an add. */
struct everything
{
  int64_t last;
  xmlrpc_value *events;
};

static void
add_event (struct xapi_call *c, const struct xapi_class *cls,
           const char *uuid, xmlrpc_value *rec, void *opaque)
{
  struct everything *ev = opaque;

  xapi_append (c, ev->events,
               event_value (c, ev->last, "0.0", cls->name, EVENT_ADD, uuid,
                            rec));
}

/* Every object SUBS select, as adds, into array EVENTS (the token "");
 * false if there is none. */
static bool
from_everything (struct xapi_call *c, GPtrArray *subs, int64_t last,
                 xmlrpc_value *events)
{
  struct everything ev = { last, events };

  for_each_object (c, subs, add_event, &ev);
  return xmlrpc_array_size (c->env, events) > 0;
}

/* event.from's answer. */
static xmlrpc_value *
from_value (struct xapi_call *c, xmlrpc_value *events, int64_t last)
{
  xmlrpc_value *r = xmlrpc_struct_new (c->env);
  g_autofree char *token = token_text (last);

  xapi_set (c, r, "events", events);
  xapi_set (c, r, "valid_ref_counts", ref_counts (c));
  xapi_set (c, r, "token", xapi_string (c, token));
  return r;
}

/* What event.from answers now after entry SINCE: the value, or NULL
 * with *LAST when there is no event yet and WAIT, or NULL after
 * EVENTS_LOST. */
static xmlrpc_value *
from_now (struct xapi_call *c, GPtrArray *subs, int64_t since, bool wait,
          int64_t *last)
{
  struct xapi_events *e = c->d->events;
  g_autoptr (GArray) changes = g_array_new (FALSE, FALSE, sizeof (struct change));
  xmlrpc_value *events;

  if (!collect (e, subs, since, changes, last)) {
    xapi_fail (c, "EVENTS_LOST", NULL);
    return NULL;
  }
  events = xmlrpc_array_new (c->env);
  from_events (c, changes, events);
  if (wait && !xapi_failed (c) && xmlrpc_array_size (c->env, events) == 0) {
    xmlrpc_DECREF (events);
    return NULL;
  }
  return from_value (c, events, *last);
}

/* event.next. */

/* The key of an object's last record. */
static char *
last_key (const char *cls, const char *uuid)
{
  g_autofree char *lc = g_ascii_strdown (cls, -1);

  return g_strconcat (lc, "/", uuid, NULL);
}

/* The last records (see the top of the file): bring them up to the
 * log's last entry. */
static void
last_records_update (struct xapi_events *e)
{
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (struct event));
  g_autoptr (GHashTable) latest = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  struct xapi_call c = { .d = e->d, .method = "event.next" };
  xmlrpc_env env;
  GHashTableIter it;
  gpointer k, v;
  int64_t last, min_pos = G_MAXINT64;

  if (g_hash_table_size (e->registered) == 0) {
    g_hash_table_remove_all (e->last);
    e->seen = events_last (e->log);
    return;
  }
  /* Entries forgotten: their registrations are told EVENTS_LOST. */
  events_read (e->log, e->seen, entries, &last);
  e->seen = last;
  /* The latest entry of each object (one rendering per batch), and the
   * del of an object gone (a del not followed by an add: a late mod
   * after it changes nothing). */
  for (guint i = 0; i < entries->len; i++) {
    struct event *en = &g_array_index (entries, struct event, i);
    struct event *before;
    char *key;

    if (entry_class (en->cls) == NULL)
      continue;
    key = last_key (en->cls, en->uuid);
    before = g_hash_table_lookup (latest, key);
    if (before && before->op == EVENT_DEL && en->op == EVENT_MOD)
      en = before;
    g_ptr_array_add (keys, key);
    g_hash_table_insert (latest, key, en);
  }
  xmlrpc_env_init (&env);
  c.env = &env;
  g_hash_table_iter_init (&it, latest);
  while (g_hash_table_iter_next (&it, &k, &v)) {
    const struct event *en = v;
    struct last_record *l = g_hash_table_lookup (e->last, k);
    xmlrpc_value *rec;

    if (en->op == EVENT_DEL) {
      if (l)
        l->deleted = en->id;
      continue;
    }
    if ((rec = render (&c, entry_class (en->cls), en->uuid)) == NULL)
      continue; /* gone already: its del follows */
    l = g_new0 (struct last_record, 1);
    l->rec = rec;
    g_hash_table_replace (e->last, g_strdup (k), l);
  }
  xmlrpc_env_clean (&env);
  /* Records of deleted objects every registration is past. */
  g_hash_table_iter_init (&it, e->registered);
  while (g_hash_table_iter_next (&it, NULL, &v))
    min_pos = MIN (min_pos, ((struct registration *)v)->pos);
  g_hash_table_iter_init (&it, e->last);
  while (g_hash_table_iter_next (&it, NULL, &v)) {
    struct last_record *l = v;

    if (l->deleted && l->deleted <= min_pos)
      g_hash_table_iter_remove (&it);
  }
}

static void
keep_record (struct xapi_call *c, const struct xapi_class *cls,
             const char *uuid, xmlrpc_value *rec, void *opaque)
{
  struct xapi_events *e = opaque;
  struct last_record *l = g_new0 (struct last_record, 1);

  xmlrpc_INCREF (rec);
  l->rec = rec;
  g_hash_table_replace (e->last, last_key (cls->name, uuid), l);
}

/* At the first registration: every object's record. */
static void
last_records_fill (struct xapi_call *c, struct xapi_events *e)
{
  e->seen = events_last (e->log);
  for_each_object (c, NULL, keep_record, e);
}

/* What event.next answers now for SESSION: its events, or NULL when
 * there is none and WAIT, or NULL after SESSION_NOT_REGISTERED or
 * EVENTS_LOST. */
static xmlrpc_value *
next_now (struct xapi_call *c, const char *session, bool wait)
{
  struct xapi_events *e = c->d->events;
  struct registration *r = g_hash_table_lookup (e->registered, session);
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (struct event));
  xmlrpc_value *events;
  int64_t last;
  bool any = false;

  if (r == NULL) {
    xapi_fail (c, "SESSION_NOT_REGISTERED", session, NULL);
    return NULL;
  }
  last_records_update (e); /* before the position moves past a del */
  if (!events_read (e->log, r->pos, entries, &last)) {
    r->pos = last;
    xapi_fail (c, "EVENTS_LOST", NULL);
    return NULL;
  }
  for (guint i = 0; i < entries->len && !any; i++) {
    const struct event *en = &g_array_index (entries, struct event, i);

    any = entry_class (en->cls) && subs_match (r->subs, en->cls, en->uuid);
  }
  if (!any && wait) {
    r->pos = last;
    return NULL;
  }
  events = xmlrpc_array_new (c->env);
  for (guint i = 0; i < entries->len; i++) {
    const struct event *en = &g_array_index (entries, struct event, i);
    const struct xapi_class *cls = entry_class (en->cls);
    g_autofree char *key = NULL;
    g_autofree char *ts = NULL;
    g_autoptr (xmlrpc_value) fresh = NULL;
    struct last_record *l;

    if (cls == NULL || !subs_match (r->subs, en->cls, en->uuid))
      continue;
    key = last_key (en->cls, en->uuid);
    l = g_hash_table_lookup (e->last, key);
    if (l && l->deleted && l->deleted < en->id && en->op == EVENT_MOD)
      continue; /* a late mod of a gone object changes nothing */
    if (l == NULL && en->op != EVENT_DEL
        && (fresh = render (c, cls, en->uuid)) == NULL)
      continue; /* gone since: its del follows */
    /* xapi's string_of_float of a whole number of seconds: "1700000000." */
    ts = g_strdup_printf ("%" PRId64 ".", en->time);
    xapi_append (c, events,
                 event_value (c, en->id, ts, en->cls, en->op, en->uuid,
                              l ? l->rec : fresh));
  }
  r->pos = last;
  return events;
}

/* Calls that wait (see the top of the file). */

static void
wait_unlist (struct wait *w)
{
  if (w->in_list) {
    g_ptr_array_remove_fast (w->e->waiting, w);
    w->in_list = false;
  }
  if (w->timer) {
    g_source_remove (w->timer);
    w->timer = 0;
  }
}

/* W can be answered: the waiter answers it at once (and may free W). */
static void
wait_ready (struct wait *w)
{
  wait_unlist (w);
  xapi_deferral_ready (&w->df);
}

static gboolean
wait_deadline (gpointer p)
{
  struct wait *w = p;

  w->timer = 0;
  wait_ready (w);
  return G_SOURCE_REMOVE;
}

/* Has event.from W something to answer now?  Its answer then (or its
 * failure, made again by wait_answer). */
static bool
wait_check_from (struct wait *w)
{
  struct xapi_call c = { .d = w->e->d, .method = w->df.method };
  xmlrpc_env env;
  int64_t last;
  bool failed;

  xmlrpc_env_init (&env);
  c.env = &env;
  w->answer = from_now (&c, w->subs, w->scanned, true, &last);
  failed = xapi_failed (&c);
  if (c.error)
    g_ptr_array_unref (c.error);
  xmlrpc_env_clean (&env);
  if (w->answer == NULL && !failed)
    w->scanned = last;
  return w->answer || failed;
}

/* Has W something to answer now?  (Its position moves past entries
 * that hold nothing for it, so each entry is looked at once.) */
static bool
wait_check (struct wait *w)
{
  struct xapi_events *e = w->e;
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (struct event));
  struct registration *r;
  int64_t last;

  if (!xapi_session_valid (e->d, w->session))
    return true;
  if (!w->next)
    return wait_check_from (w);
  r = g_hash_table_lookup (e->registered, w->session);
  if (r == NULL || !events_read (e->log, r->pos, entries, &last))
    return true;
  for (guint i = 0; i < entries->len; i++) {
    const struct event *en = &g_array_index (entries, struct event, i);

    if (entry_class (en->cls) && subs_match (r->subs, en->cls, en->uuid))
      return true;
  }
  r->pos = last;
  return false;
}

static void
wait_start (struct xapi_deferral *df)
{
  struct wait *w = (struct wait *)df;

  g_ptr_array_add (w->e->waiting, w);
  w->in_list = true;
  if (!w->next)
    w->timer = g_timeout_add_full (
        G_PRIORITY_DEFAULT,
        (guint)ceil (MIN (w->timeout, MAX_TIMEOUT_SECONDS) * 1000),
        wait_deadline, w, NULL);
}

static bool
wait_cancel (struct xapi_deferral *df)
{
  wait_unlist ((struct wait *)df);
  return true; /* everything here runs in the main context */
}

static xmlrpc_value *
wait_answer (struct xapi_deferral *df, struct xapi_call *c)
{
  struct wait *w = (struct wait *)df;
  int64_t last;

  if (!xapi_session_valid (c->d, w->session)) {
    xapi_fail (c, "SESSION_INVALID", w->session, NULL);
    return NULL;
  }
  if (w->next)
    return next_now (c, w->session, false);
  if (w->answer)
    return g_steal_pointer (&w->answer);
  return from_now (c, w->subs, w->scanned, false, &last);
}

static void
wait_clear (struct xapi_deferral *df)
{
  struct wait *w = (struct wait *)df;

  wait_unlist (w);
  g_free (w->session);
  if (w->subs)
    g_ptr_array_unref (w->subs);
  if (w->answer)
    xmlrpc_DECREF (w->answer);
}

static const struct xapi_deferral_ops wait_ops = {
  .start = wait_start,
  .cancel = wait_cancel,
  .answer = wait_answer,
  .clear = wait_clear,
};

static struct wait *
wait_new (struct xapi_call *c, const char *session, bool next)
{
  struct wait *w = xapi_defer (c, &wait_ops, sizeof *w);

  w->e = c->d->events;
  w->session = g_strdup (session);
  w->next = next;
  return w;
}

/* The log has new entries (events_watch, the main context). */
static void
on_changes (void *opaque)
{
  struct xapi_events *e = opaque;
  g_autoptr (GPtrArray) calls = NULL;
  GHashTableIter it;
  gpointer k;

  g_hash_table_iter_init (&it, e->registered);
  while (g_hash_table_iter_next (&it, &k, NULL))
    if (!xapi_session_valid (e->d, k))
      g_hash_table_iter_remove (&it);
  last_records_update (e);
  /* A copy: answering a call takes it off the list. */
  calls = g_ptr_array_copy (e->waiting, NULL, NULL);
  for (guint i = 0; i < calls->len; i++) {
    struct wait *w = calls->pdata[i];

    if (wait_check (w))
      wait_ready (w);
  }
}

/* Methods. */

static bool
read_timeout (struct xapi_call *c, xmlrpc_value *v, double *out)
{
  g_autofree char *s = NULL;
  char *end;

  switch (xmlrpc_value_type (v)) {
  case XMLRPC_TYPE_DOUBLE:
    xmlrpc_read_double (c->env, v, out);
    break;
  case XMLRPC_TYPE_INT: {
    int i = 0;

    xmlrpc_read_int (c->env, v, &i);
    *out = i;
    break;
  }
  case XMLRPC_TYPE_I8: {
    xmlrpc_int64 i = 0;

    xmlrpc_read_i8 (c->env, v, &i);
    *out = (double)i;
    break;
  }
  case XMLRPC_TYPE_STRING: /* as xapi takes a float */
    if ((s = xapi_read_string (c, v, "timeout")) == NULL)
      return false;
    *out = g_ascii_strtod (s, &end);
    if (*s == '\0' || *end != '\0')
      goto bad;
    break;
  default:
    goto bad;
  }
  if (c->env->fault_occurred)
    return false;
  if (!isnan (*out))
    return true;
bad:
  xapi_fail (c, "FIELD_TYPE_ERROR", "timeout", NULL);
  return false;
}

/* The session a call was made in (checked by the dispatcher). */
static char *
session_of (struct xapi_call *c, xmlrpc_value *const *args)
{
  return xapi_read_string (c, args[0], "session_id");
}

/* The registration of SESSION, made if need be (as xapi makes it for
 * unregister too). */
static struct registration *
registration_of (struct xapi_call *c, const char *session)
{
  struct xapi_events *e = c->d->events;
  struct registration *r = g_hash_table_lookup (e->registered, session);

  if (r)
    return r;
  if (g_hash_table_size (e->registered) == 0)
    last_records_fill (c, e);
  r = g_new0 (struct registration, 1);
  r->subs = g_ptr_array_new_with_free_func (sub_free);
  r->pos = events_last (e->log);
  g_hash_table_insert (e->registered, g_strdup (session), r);
  return r;
}

/* register (ADD) or unregister the subscriptions of argument 1. */
static xmlrpc_value *
change_registration (struct xapi_call *c, xmlrpc_value *const *args,
                     bool add)
{
  g_autofree char *session = session_of (c, args);
  g_autoptr (GPtrArray) subs = session ? read_subs (c, args[1]) : NULL;
  struct registration *r;

  if (subs == NULL)
    return NULL;
  r = registration_of (c, session);
  if (add) {
    g_ptr_array_set_free_func (subs, NULL); /* they go to r */
    for (guint i = 0; i < subs->len; i++)
      g_ptr_array_add (r->subs, subs->pdata[i]);
  }
  for (guint i = r->subs->len; !add && i-- > 0;)
    for (guint j = 0; j < subs->len; j++)
      if (sub_equal (r->subs->pdata[i], subs->pdata[j])) {
        g_ptr_array_remove_index (r->subs, i);
        break;
      }
  return xapi_void (c);
}

static xmlrpc_value *
event_register (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return change_registration (c, args, true);
}

static xmlrpc_value *
event_unregister (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  return change_registration (c, args, false);
}

static xmlrpc_value *
event_next (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *session = session_of (c, args);
  xmlrpc_value *events;

  if (session == NULL)
    return NULL;
  events = next_now (c, session, !c->async);
  if (events == NULL && !xapi_failed (c))
    wait_new (c, session, true);
  return events;
}

static xmlrpc_value *
event_from (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *session = session_of (c, args);
  g_autoptr (GPtrArray) subs = session ? read_subs (c, args[1]) : NULL;
  g_autofree char *token = subs ? xapi_read_string (c, args[2], "token")
                                : NULL;
  double timeout;
  int64_t since, last;
  bool wait;
  xmlrpc_value *r;
  struct wait *w;

  if (token == NULL || !read_timeout (c, args[3], &timeout)
      || !token_parse (c, token, &since))
    return NULL;
  wait = !c->async && timeout > 0;
  if (since <= 0) {
    /* Everything there is, then what comes after. */
    xmlrpc_value *events = xmlrpc_array_new (c->env);

    last = events_last (c->d->events->log);
    if (from_everything (c, subs, last, events) || !wait)
      return from_value (c, events, last);
    xmlrpc_DECREF (events);
    since = last;
  }
  r = from_now (c, subs, since, wait, &last);
  if (r || xapi_failed (c))
    return r;
  w = wait_new (c, session, false);
  w->subs = g_steal_pointer (&subs);
  w->scanned = last;
  w->timeout = timeout;
  return NULL;
}

static xmlrpc_value *
event_get_current_id (struct xapi_call *c, xmlrpc_value *const *args,
                      int nargs)
{
  return xapi_int64 (c, events_last (c->d->events->log));
}

/* inject(class, ref): a mod of the object, and the token just before
 * it, from which event.from answers it at once. */
static xmlrpc_value *
event_inject (struct xapi_call *c, xmlrpc_value *const *args, int nargs)
{
  g_autofree char *name = xapi_read_string (c, args[1], "class");
  g_autofree char *ref = name ? xapi_read_string (c, args[2], "ref") : NULL;
  g_autofree char *token = NULL;
  g_autoptr (xmlrpc_value) rec = NULL;
  const struct xapi_class *cls;
  const char *uuid;

  if (ref == NULL)
    return NULL;
  cls = entry_class (name);
  uuid = xapi_ref_uuid (ref);
  if (cls == NULL || uuid == NULL || (rec = render (c, cls, uuid)) == NULL) {
    xapi_fail (c, "HANDLE_INVALID", name, ref, NULL);
    return NULL;
  }
  token = token_text (
      events_add (c->d->host->events, cls->name, EVENT_MOD, uuid) - 1);
  return xapi_string (c, token);
}

static const struct xapi_method methods[] = {
  { "register", 2, 2, false, event_register },
  { "unregister", 2, 2, false, event_unregister },
  { "next", 1, 1, false, event_next },
  { "from", 4, 4, false, event_from },
  { "get_current_id", 1, 1, false, event_get_current_id },
  { "inject", 3, 3, false, event_inject },
  { NULL },
};

const struct xapi_class xapi_class_event = {
  .name = "event",
  .methods = methods,
};

struct xapi_events *
xapi_events_new (struct xapi_daemon *d)
{
  struct xapi_events *e = g_new0 (struct xapi_events, 1);

  e->d = d;
  e->log = d->host->events;
  e->registered = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         registration_free);
  e->waiting = g_ptr_array_new ();
  e->last = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                   last_record_free);
  e->seen = events_last (e->log);
  events_watch (e->log, on_changes, e);
  return e;
}

void
xapi_events_free (struct xapi_events *e)
{
  if (e == NULL)
    return;
  events_watch (e->log, NULL, NULL);
  /* http.c cancelled every waiting call before. */
  g_assert (e->waiting->len == 0);
  g_ptr_array_unref (e->waiting);
  g_hash_table_unref (e->registered);
  g_hash_table_unref (e->last);
  g_free (e);
}
