/* Members of a JSON object being built with json-glib's JsonBuilder, one
 * call each (the member's name, then its value), for the parts that
 * write documents of their own through json-glib: a backup point's
 * manifest (replicator/backup/manifest.c), an evacuation's plan, state
 * and report (replicator/jobs/evacuate.c).  Each is the pair of
 * json-glib calls it replaces, nothing more: what the generator then
 * gets wrong is json.h's to fix (json_fix_generated).
 *
 * Call them between json_builder_begin_object and
 * json_builder_end_object.  NAME is copied by json-glib; so are string
 * values.  Include it with json-glib's CFLAGS; link json-glib. */
#ifndef VDM_JSON_BUILDER_H
#define VDM_JSON_BUILDER_H

#include <stdbool.h>
#include <stdint.h>

#include <json-glib/json-glib.h>

/* NAME: V as a JSON string, or null when V is NULL. */
static inline void
json_add_string_member (JsonBuilder *b, const char *name, const char *v)
{
  json_builder_set_member_name (b, name);
  if (v)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

/* NAME: V as a JSON integer.  json-glib holds integers as gint64: a
 * uint64_t above INT64_MAX is written negative (sizes and byte counts
 * never are that large). */
static inline void
json_add_int_member (JsonBuilder *b, const char *name, int64_t v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, v);
}

/* NAME: true or false. */
static inline void
json_add_bool_member (JsonBuilder *b, const char *name, bool v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_boolean_value (b, v);
}

#endif /* VDM_JSON_BUILDER_H */
