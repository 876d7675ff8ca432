/* EvidentSource state views and state changes: publishing (multipart), listing, reading a
 * view's state, processing commands, and the newer generation's components and commands. */
#include "dialect/evidentsource/es_int.h"

static void not_yet(struct gate_call *c)
{
    es_fail(c, GK_INTERNAL, "not_implemented", "not implemented yet", NULL);
}

void es_component_names(struct gate_call *c, struct db *db, bool changes, struct buf *out)
{
    (void)c;
    (void)db;
    (void)changes;
    buf_adds(out, "[]");
}

void es_views_list(struct gate_call *c) { not_yet(c); }
void es_view_get(struct gate_call *c) { not_yet(c); }
void es_view_delete(struct gate_call *c) { not_yet(c); }
void es_changes_list(struct gate_call *c) { not_yet(c); }
void es_change_process(struct gate_call *c) { not_yet(c); }
void es_view_publish(struct gate_call *c) { not_yet(c); }
void es_change_publish(struct gate_call *c) { not_yet(c); }
void es_v1_view_get(struct gate_call *c) { not_yet(c); }
void es_v1_command(struct gate_call *c) { not_yet(c); }
void es_v1_components(struct gate_call *c) { not_yet(c); }
void es_v1_component_add(struct gate_call *c) { not_yet(c); }
