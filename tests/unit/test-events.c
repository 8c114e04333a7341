/* replicator/jobs/events.c: the change log (numbered entries, a bounded
 * ring, readers told when they lost entries, one watch per batch, from
 * any thread), and the state database's writes feeding it (state.c). */
#include <glib.h>

#include "events.h"
#include "state.h"
#include "unit.h"

static const char U1[] = "11111111-1111-4111-8111-111111111111";
static const char U2[] = "22222222-2222-4222-8222-222222222222";
static const char U3[] = "33333333-3333-4333-8333-333333333333";

static void
test_numbered (void)
{
  struct events *ev = events_new (0);
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (struct event));
  int64_t start = events_last (ev), last;
  const struct event *e;

  /* The first id of a run is its start time in microseconds. */
  CU_ASSERT (start > 1500000000LL * G_USEC_PER_SEC);
  CU_ASSERT_EQUAL (events_add (ev, EVENT_CLASS_VM, EVENT_ADD, U1), start + 1);
  CU_ASSERT_EQUAL (events_add (ev, EVENT_CLASS_VDI, EVENT_MOD, U2),
                   start + 2);
  CU_ASSERT_EQUAL (events_add (ev, EVENT_CLASS_VM, EVENT_DEL, U1), start + 3);
  CU_ASSERT_EQUAL (events_last (ev), start + 3);
  CU_ASSERT (events_read (ev, start, out, &last));
  CU_ASSERT_EQUAL (last, start + 3);
  CU_ASSERT_EQUAL (out->len, 3);
  e = &g_array_index (out, struct event, 1);
  CU_ASSERT_EQUAL (e->id, start + 2);
  CU_ASSERT_STRING_EQUAL (e->cls, "VDI");
  CU_ASSERT_EQUAL (e->op, EVENT_MOD);
  CU_ASSERT_STRING_EQUAL (e->uuid, U2);
  CU_ASSERT (e->time > 1500000000);
  CU_ASSERT_STRING_EQUAL (events_op_name (EVENT_DEL), "del");
  /* From the last entry: nothing, and that is no loss. */
  g_array_set_size (out, 0);
  CU_ASSERT (events_read (ev, last, out, &last));
  CU_ASSERT_EQUAL (out->len, 0);
  events_free (ev);
}

static void
test_bounded (void)
{
  struct events *ev = events_new (4);
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (struct event));
  int64_t start = events_last (ev), last;

  for (int i = 0; i < 6; i++)
    events_add (ev, EVENT_CLASS_TASK, EVENT_MOD, U3);
  /* Entries start+1 and start+2 are gone: a reader before them lost
   * some, a reader after them did not. */
  CU_ASSERT_FALSE (events_read (ev, start, out, &last));
  CU_ASSERT_FALSE (events_read (ev, start + 1, out, &last));
  CU_ASSERT_EQUAL (out->len, 0);
  CU_ASSERT_EQUAL (last, start + 6);
  CU_ASSERT (events_read (ev, start + 2, out, &last));
  CU_ASSERT_EQUAL (out->len, 4);
  CU_ASSERT_EQUAL (g_array_index (out, struct event, 0).id, start + 3);
  /* An id this log never gave (a previous run's, or one from the
   * future): lost too. */
  CU_ASSERT_FALSE (events_read (ev, start + 7, out, &last));
  CU_ASSERT_FALSE (events_read (ev, 12345, out, &last));
  /* Not a uuid: refused, nothing logged. */
  CU_ASSERT_EQUAL (events_add (ev, EVENT_CLASS_VM, EVENT_ADD,
                               "0123456789012345678901234567890123456789"),
                   start + 6);
  events_free (ev);
}

static int watch_calls;

static void
on_watch (void *opaque)
{
  g_assert (g_main_context_is_owner (NULL));
  watch_calls++;
}

static gpointer
adder (gpointer p)
{
  for (int i = 0; i < 250; i++)
    events_add (p, EVENT_CLASS_VDI, EVENT_MOD, U2);
  return NULL;
}

static void
test_threads_and_watch (void)
{
  struct events *ev = events_new (0);
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (struct event));
  int64_t start = events_last (ev), last;
  GThread *t[4];

  g_main_context_acquire (NULL);
  watch_calls = 0;
  events_watch (ev, on_watch, NULL);
  for (int i = 0; i < 4; i++)
    t[i] = g_thread_new ("adder", adder, ev);
  for (int i = 0; i < 4; i++)
    g_thread_join (t[i]);
  /* Every entry once, numbered without a gap. */
  CU_ASSERT (events_read (ev, start, out, &last));
  CU_ASSERT_EQUAL (out->len, 1000);
  for (guint i = 0; i < out->len; i++)
    CU_ASSERT_EQUAL (g_array_index (out, struct event, i).id,
                     start + 1 + i);
  /* One call of the watch for the whole batch, in the main context. */
  CU_ASSERT_EQUAL (watch_calls, 0);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  CU_ASSERT_EQUAL (watch_calls, 1);
  /* Taken back: a call pending is dropped. */
  events_add (ev, EVENT_CLASS_VDI, EVENT_DEL, U2);
  events_watch (ev, NULL, NULL);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  CU_ASSERT_EQUAL (watch_calls, 1);
  g_main_context_release (NULL);
  events_free (ev);
}

/* The state's writes of XenAPI records are logged, once they changed a
 * row. */
static void
test_state_writes (void)
{
  struct events *ev = events_new (0);
  g_autoptr (GError) error = NULL;
  struct state *st;
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (struct event));
  int64_t start = events_last (ev), last;
  struct state_vm vm = { .uuid = (char *)U1, .power_state = "Halted" };
  struct state_vbd vbd = { .uuid = (char *)U3, .vm = (char *)U1,
                           .vdi = (char *)U2, .userdevice = "0" };
  struct state_task t = { .uuid = (char *)U2, .status = "pending" };
  static const struct
  {
    const char *cls;
    enum event_op op;
    const char *uuid;
  } want[] = {
    { "VM", EVENT_ADD, U1 },    { "VM", EVENT_MOD, U1 },
    { "VBD", EVENT_ADD, U3 },   { "VM", EVENT_MOD, U1 },
    { "VDI", EVENT_MOD, U2 },   { "VBD", EVENT_DEL, U3 },
    { "VM", EVENT_MOD, U1 },    { "VDI", EVENT_MOD, U2 },
    { "VM", EVENT_DEL, U1 },    { "task", EVENT_ADD, U2 },
    { "task", EVENT_MOD, U2 },  { "task", EVENT_MOD, U2 },
    { "task", EVENT_DEL, U2 },  { "session", EVENT_ADD, U3 },
    { "session", EVENT_DEL, U3 },
  };

  st = state_open (unit_dir, &error);
  CU_ASSERT_PTR_NOT_NULL_FATAL (st);
  state_set_events (st, ev);
  CU_ASSERT_EQUAL (state_vm_add (st, &vm), 0);
  CU_ASSERT_EQUAL (state_vm_set_power_state (st, U1, "Running"), 0);
  /* No such VM: nothing changed, nothing logged. */
  CU_ASSERT_EQUAL (state_vm_set_power_state (st, U2, "Running"), 0);
  CU_ASSERT_EQUAL (state_vbd_add (st, &vbd), 0);
  CU_ASSERT_EQUAL (state_vbd_remove (st, U3), 0);
  CU_ASSERT_EQUAL (state_vm_remove (st, U1), 0);
  CU_ASSERT_EQUAL (state_task_add (st, &t), 0);
  CU_ASSERT_EQUAL (state_task_set_progress (st, U2, 0.5), 0);
  CU_ASSERT_EQUAL (state_task_finish (st, U2, "success", NULL, NULL), 0);
  /* Over: its status stays, nothing logged. */
  CU_ASSERT_EQUAL (state_task_set_status (st, U2, "cancelling"), 0);
  CU_ASSERT_EQUAL (state_task_remove (st, U2), 0);
  CU_ASSERT_EQUAL (state_session_add (st, "OpaqueRef:" "33333333-3333-4333-"
                                          "8333-333333333333", "root"), 0);
  CU_ASSERT_EQUAL (state_session_remove (st, "OpaqueRef:" "33333333-3333-"
                                             "4333-8333-333333333333"), 0);
  CU_ASSERT (events_read (ev, start, out, &last));
  CU_ASSERT_EQUAL_FATAL (out->len, G_N_ELEMENTS (want));
  for (size_t i = 0; i < G_N_ELEMENTS (want); i++) {
    const struct event *e = &g_array_index (out, struct event, i);

    CU_ASSERT_STRING_EQUAL (e->cls, want[i].cls);
    CU_ASSERT_EQUAL (e->op, want[i].op);
    CU_ASSERT_STRING_EQUAL (e->uuid, want[i].uuid);
  }
  state_close (st);
  events_free (ev);
}

int
main (void)
{
  static const struct unit_test tests[] = {
    { "numbered entries", test_numbered },
    { "bounded, lost entries", test_bounded },
    { "threads and the watch", test_threads_and_watch },
    { "state writes logged", test_state_writes },
    { NULL },
  };
  return unit_main ("change log", tests);
}
