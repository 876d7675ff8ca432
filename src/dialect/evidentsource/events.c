/* EvidentSource events: appends with constraints, selector queries, reads by revision, pages
 * and the newer generation's /v1/events (JSON or Server-Sent Events). */
#include "dialect/evidentsource/es_int.h"

static void not_yet(struct gate_call *c)
{
    es_fail(c, GK_INTERNAL, "not_implemented", "not implemented yet", NULL);
}

void es_append(struct gate_call *c) { not_yet(c); }
void es_query(struct gate_call *c) { not_yet(c); }
void es_event_get(struct gate_call *c) { not_yet(c); }
void es_events_page(struct gate_call *c) { not_yet(c); }
void es_v1_events(struct gate_call *c) { not_yet(c); }
