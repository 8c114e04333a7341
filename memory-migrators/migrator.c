/* The memory migrators' shared half: reading the description, writing the
 * protocol's lines (migrator.h, vdimotion-memory-migrator(7)). */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrator.h"

G_DEFINE_QUARK (vdimotion - memory - migrator - error, mm_error)

/* A path to a member for error messages: "disks[2].vdi". */
static void G_GNUC_PRINTF (3, 4)
    member_error (GError **err, const char *where, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *what = NULL;

  va_start (ap, fmt);
  what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (err, MM_ERROR, 0, "description: %s: %s", where, what);
}

/* JSON type names as a reader of the man page knows them. */
static const char *
node_kind (JsonNode *n)
{
  if (JSON_NODE_HOLDS_NULL (n))
    return "null";
  if (JSON_NODE_HOLDS_OBJECT (n))
    return "an object";
  if (JSON_NODE_HOLDS_ARRAY (n))
    return "an array";
  switch (json_node_get_value_type (n) == G_TYPE_STRING    ? 's'
          : json_node_get_value_type (n) == G_TYPE_BOOLEAN ? 'b'
                                                           : 'n') {
  case 's': return "a string";
  case 'b': return "a boolean";
  default: return "a number";
  }
}

/* The member NAME of OBJ (reached by PARENT, "" at the top) as a node of
 * the wanted type; NULL with an error naming it if missing or mistyped. */
static JsonNode *
member (JsonObject *obj, const char *parent, const char *name,
        JsonNodeType type, GType value_type, const char *wanted, GError **err)
{
  g_autofree char *where
      = *parent ? g_strdup_printf ("%s.%s", parent, name) : g_strdup (name);
  JsonNode *n = json_object_get_member (obj, name);

  if (n == NULL) {
    member_error (err, where, "missing");
    return NULL;
  }
  if (JSON_NODE_TYPE (n) != type
      || (type == JSON_NODE_VALUE && json_node_get_value_type (n) != value_type
          && !(value_type == G_TYPE_INT64
               && json_node_get_value_type (n) == G_TYPE_DOUBLE))) {
    member_error (err, where, "must be %s, not %s", wanted, node_kind (n));
    return NULL;
  }
  return n;
}

static const char *
string_member (JsonObject *obj, const char *parent, const char *name,
               GError **err)
{
  JsonNode *n = member (obj, parent, name, JSON_NODE_VALUE, G_TYPE_STRING,
                        "a string", err);
  const char *s;
  g_autofree char *where = NULL;

  if (n == NULL)
    return NULL;
  s = json_node_get_string (n);
  if (*s == '\0') {
    where
        = *parent ? g_strdup_printf ("%s.%s", parent, name) : g_strdup (name);
    member_error (err, where, "must not be empty");
    return NULL;
  }
  return s;
}

/* vm.name_label: any text, the empty string included. */
static const char *
label_member (JsonObject *vm, GError **err)
{
  JsonNode *n = member (vm, "vm", "name_label", JSON_NODE_VALUE, G_TYPE_STRING,
                        "a string", err);
  return n ? json_node_get_string (n) : NULL;
}

static JsonObject *
object_member (JsonObject *obj, const char *parent, const char *name,
               GError **err)
{
  JsonNode *n = member (obj, parent, name, JSON_NODE_OBJECT, G_TYPE_INVALID,
                        "an object", err);
  return n ? json_node_get_object (n) : NULL;
}

/* A socket path: absolute, because the daemon and the migrator do not
 * share a working directory by contract. */
static const char *
socket_member (JsonObject *obj, const char *parent, const char *name,
               GError **err)
{
  const char *s = string_member (obj, parent, name, err);

  if (s && s[0] != '/') {
    g_autofree char *where = g_strdup_printf ("%s.%s", parent, name);
    member_error (err, where, "must be an absolute path, not \"%s\"", s);
    return NULL;
  }
  return s;
}

static bool
parse_disk (JsonNode *n, size_t i, struct mm_disk *disk, GError **err)
{
  g_autofree char *where = g_strdup_printf ("disks[%zu]", i);
  JsonObject *o;
  JsonNode *size;

  if (!JSON_NODE_HOLDS_OBJECT (n)) {
    member_error (err, where, "must be an object, not %s", node_kind (n));
    return false;
  }
  o = json_node_get_object (n);
  if (!(disk->userdevice = string_member (o, where, "userdevice", err))
      || !(disk->vdi = string_member (o, where, "vdi", err)))
    return false;
  size = member (o, where, "virtual_size", JSON_NODE_VALUE, G_TYPE_INT64,
                 "an integer", err);
  if (size == NULL)
    return false;
  if (json_node_get_value_type (size) != G_TYPE_INT64
      || json_node_get_int (size) < 0) {
    g_autofree char *w = g_strdup_printf ("%s.virtual_size", where);
    member_error (err, w, "must be an integer >= 0");
    return false;
  }
  disk->virtual_size = json_node_get_int (size);
  if (!(disk->source_socket = socket_member (o, where, "source_socket", err))
      || !(disk->destination_socket
           = socket_member (o, where, "destination_socket", err)))
    return false;
  return true;
}

/* Every string member of vm.other_config: the migrators look keys up as
 * strings, and a number there would be a daemon bug worth naming. */
static bool
check_other_config (JsonObject *oc, GError **err)
{
  g_autoptr (GList) names = json_object_get_members (oc);

  for (GList *l = names; l; l = l->next) {
    JsonNode *v = json_object_get_member (oc, l->data);
    if (!JSON_NODE_HOLDS_VALUE (v)
        || json_node_get_value_type (v) != G_TYPE_STRING) {
      g_autofree char *w
          = g_strdup_printf ("vm.other_config.%s", (char *)l->data);
      member_error (err, w, "must be a string, not %s", node_kind (v));
      return false;
    }
  }
  return true;
}

static bool
parse_top (struct mm_description *d, GError **err)
{
  JsonObject *top, *vm, *src, *dst;
  JsonNode *disks, *live, *opts;
  JsonArray *arr;

  if (!JSON_NODE_HOLDS_OBJECT (d->root)) {
    g_set_error (err, MM_ERROR, 0,
                 "description: must be a JSON object, not %s",
                 node_kind (d->root));
    return false;
  }
  top = json_node_get_object (d->root);

  if (!(vm = object_member (top, "", "vm", err))
      || !(d->vm_uuid = string_member (vm, "vm", "uuid", err))
      || !(d->vm_name_label = label_member (vm, err))
      || !(d->vm_other_config = object_member (vm, "vm", "other_config", err))
      || !check_other_config (d->vm_other_config, err))
    return false;

  if (!(src = object_member (top, "", "source", err))
      || !(d->source_host = string_member (src, "source", "host", err))
      || !(d->source_url = string_member (src, "source", "url", err)))
    return false;

  if (!(dst = object_member (top, "", "destination", err))
      || !(d->destination_host
           = string_member (dst, "destination", "host", err))
      || !(d->destination_url = string_member (dst, "destination", "url", err))
      || !(d->destination_run_dir
           = socket_member (dst, "destination", "run_dir", err)))
    return false;

  if (!(disks = member (top, "", "disks", JSON_NODE_ARRAY, G_TYPE_INVALID,
                        "an array", err)))
    return false;
  arr = json_node_get_array (disks);
  d->n_disks = json_array_get_length (arr);
  d->disks = g_new0 (struct mm_disk, d->n_disks ? d->n_disks : 1);
  for (size_t i = 0; i < d->n_disks; i++)
    if (!parse_disk (json_array_get_element (arr, i), i, &d->disks[i], err))
      return false;

  if (!(live = member (top, "", "live", JSON_NODE_VALUE, G_TYPE_BOOLEAN,
                       "a boolean", err)))
    return false;
  d->live = json_node_get_boolean (live);

  /* "options" is the caller's map and may be left out. */
  opts = json_object_get_member (top, "options");
  if (opts == NULL || JSON_NODE_HOLDS_NULL (opts)) {
    JsonNode *empty
        = json_node_init_object (json_node_alloc (), json_object_new ());
    json_object_set_member (top, "options", empty);
    json_object_unref (json_node_get_object (empty));
    opts = empty;
  }
  else if (!(opts = member (top, "", "options", JSON_NODE_OBJECT,
                            G_TYPE_INVALID, "an object", err)))
    return false;
  d->options = json_node_get_object (opts);
  return true;
}

struct mm_description *
mm_description_parse (const char *text, size_t len, GError **err)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (mm_description) d = g_new0 (struct mm_description, 1);
  g_autoptr (GError) perr = NULL;

  if (len == 0) {
    g_set_error (err, MM_ERROR, 0, "description: empty (nothing on stdin)");
    return NULL;
  }
  if (!json_parser_load_from_data (parser, text, len, &perr)) {
    g_set_error (err, MM_ERROR, 0, "description: not valid JSON: %s",
                 perr->message);
    return NULL;
  }
  d->root = json_parser_steal_root (parser);
  if (d->root == NULL) {
    g_set_error (err, MM_ERROR, 0, "description: empty JSON document");
    return NULL;
  }
  if (!parse_top (d, err))
    return NULL;
  return g_steal_pointer (&d);
}

struct mm_description *
mm_description_read_stdin (GError **err)
{
  g_autoptr (GString) buf = g_string_new (NULL);
  char chunk[65536];

  for (;;) {
    ssize_t r = read (STDIN_FILENO, chunk, sizeof chunk);
    if (r == 0)
      break;
    if (r < 0) {
      if (errno == EINTR)
        continue;
      g_set_error (err, MM_ERROR, 0, "description: reading stdin: %s",
                   g_strerror (errno));
      return NULL;
    }
    g_string_append_len (buf, chunk, r);
  }
  return mm_description_parse (buf->str, buf->len, err);
}

void
mm_description_free (struct mm_description *d)
{
  if (d == NULL)
    return;
  if (d->root)
    json_node_unref (d->root);
  g_free (d->disks);
  g_free (d);
}

const char *
mm_other_config (const struct mm_description *d, const char *key)
{
  JsonNode *n = json_object_get_member (d->vm_other_config, key);
  return n ? json_node_get_string (n) : NULL;
}

bool
mm_option_number (const struct mm_description *d, const char *key, double def,
                  double *out, GError **err)
{
  JsonNode *n = json_object_get_member (d->options, key);
  double v;

  *out = def;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return true;
  if (JSON_NODE_HOLDS_VALUE (n)
      && json_node_get_value_type (n) == G_TYPE_STRING) {
    const char *s = json_node_get_string (n);
    char *end;
    errno = 0;
    v = g_ascii_strtod (s, &end);
    if (errno || end == s || *end != '\0')
      v = -1;
  }
  else if (JSON_NODE_HOLDS_VALUE (n)
           && (json_node_get_value_type (n) == G_TYPE_INT64
               || json_node_get_value_type (n) == G_TYPE_DOUBLE))
    v = json_node_get_double (n);
  else
    v = -1;
  if (!(v > 0) || !isfinite (v)) {
    g_set_error (err, MM_ERROR, 0,
                 "description: options.%s: must be a number > 0", key);
    return false;
  }
  *out = v;
  return true;
}

void
mm_progress (double fraction)
{
  if (fraction < 0)
    fraction = 0;
  if (fraction > 1)
    fraction = 1;
  printf ("progress %.3f\n", fraction);
  fflush (stdout);
}

/* One line each: a newline in TEXT would start a line the daemon reads as
 * something else, so it becomes a space. */
static void
print_line (FILE *f, const char *prefix, const char *text)
{
  g_autofree char *one = g_strdup (text);
  g_strdelimit (one, "\r\n", ' ');
  fprintf (f, "%s%s\n", prefix, one);
  fflush (f);
}

void
mm_message (const char *fmt, ...)
{
  va_list ap;
  g_autofree char *text = NULL;

  va_start (ap, fmt);
  text = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  print_line (stdout, "message ", text);
}

void
mm_result (const char *key, ...)
{
  va_list ap;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  va_start (ap, key);
  for (const char *k = key; k; k = va_arg (ap, const char *)) {
    json_builder_set_member_name (b, k);
    json_builder_add_string_value (b, va_arg (ap, const char *));
  }
  va_end (ap);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, NULL);
  printf ("result %s\n", text);
  fflush (stdout);
}

void
mm_fail (const char *fmt, ...)
{
  va_list ap;
  g_autofree char *text = NULL;
  g_autofree char *prefix
      = g_strdup_printf ("%s: ", g_get_prgname () ? g_get_prgname () : "mm");

  va_start (ap, fmt);
  text = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  print_line (stderr, prefix, text);
}

int
mm_parse_args (int argc, char **argv, const char *summary)
{
  g_autofree char *base = g_path_get_basename (argv[0]);

  g_set_prgname (base);
  if (argc == 2
      && (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0)) {
    printf ("Usage: %s < DESCRIPTION.json\n%s\n"
            "The protocol is vdimotion-memory-migrator(7).\n",
            g_get_prgname (), summary);
    return 0;
  }
  if (argc == 2 && strcmp (argv[1], "--version") == 0) {
    printf ("%s %s\n", g_get_prgname (), PACKAGE_VERSION);
    return 0;
  }
  if (argc > 1) {
    fprintf (stderr,
             "%s: takes no arguments (the description comes on stdin)\n"
             "Try '%s --help'.\n",
             g_get_prgname (), g_get_prgname ());
    return MM_EXIT_USAGE;
  }
  return -1;
}
