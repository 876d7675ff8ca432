/* EvidentSource dialect: pure translators between EvidentSource's wire shapes and the native
 * ones (docs/dialects/evidentsource.md). Bytes in, bytes out: no I/O, no engine calls, so each
 * is unit-tested on its own (tests/unit/evidentsource_test.c).
 *
 * The mapping:
 *   - a database is an Annals database (names [a-z0-9][a-z0-9-]{0,62});
 *   - a CloudEvent is a native event of the stream named by its `source`, with its `type`, its
 *     `subject`, its `time` as the effective time and `data` as data; every attribute but
 *     `data` / `data_base64` is kept as sent under the metadata member "cloudevents" (so the
 *     event comes back exactly as sent, `time` string unchanged); `data_base64` is kept there
 *     too (data is then null);
 *   - its native id is derived from (source, id), a UUID version 8 made of SHA-256: sending the
 *     same CloudEvent again is acknowledged without writing it twice, and another event under
 *     a (source, id) already stored is refused (409);
 *   - a revision is the event's global position. */
#ifndef DIALECT_EVIDENTSOURCE_TRANSLATE_H
#define DIALECT_EVIDENTSOURCE_TRANSLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "gate/gate.h"
#include "model/event.h"
#include "ops/parse.h"
#include "util/buf.h"

/* The metadata member holding a CloudEvent's attributes. */
#define ES_CE_MEMBER "cloudevents"

enum {
    ES_EXT_NAME_BYTES = 20,  /* an extension attribute's name: [a-z0-9]{1,20} (CloudEvents) */
    ES_ID_BYTES = 1024,      /* a CloudEvent's id */
    ES_ATTR_BYTES = 4096,    /* any other string attribute but source (a stream name) */
};

/* EvidentSource's error envelope (a gate_error_fn): {"error":{"code","message","details"}}
 * with the codes NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, FAILED_PRECONDITION,
 * RESOURCE_EXHAUSTED, UNAUTHENTICATED, PERMISSION_DENIED, INTERNAL, UNAVAILABLE; details
 * {"field"?, "value"?, ...the native details}. */
unsigned es_error(const struct gate_error *e, struct buf *out);

/* The native id of the CloudEvent (source, id): UUID v8 from SHA-256("cloudevents\0" source
 * "\0" id). */
void es_event_id(struct slice source, struct slice id, uint8_t out[16]);

/* Translates one CloudEvent (a JSON object, valid JSON text) into a native event object
 * {"id","type","data","subject"?,"time"?,"metadata":{"cloudevents":{...}}} appended to native,
 * and its stream (the source; or the `stream` attribute when there is no source) into stream
 * (reset first). Checks: specversion "1.0"; id, source and type non-empty strings; subject,
 * datacontenttype, dataschema strings; time RFC 3339; not both data and data_base64 (a
 * string); extension names [a-z0-9]{1,20} with string, number or boolean values. Returns 0
 * or ERR_INVALID with *err filled (field "events[i].<attr>", i = index). */
int es_ce_to_native(struct slice ce, size_t index, struct buf *native, struct buf *stream,
                    struct parse_error *err);

/* Appends a stored event as a CloudEvent: the attributes kept as sent (or, for an event
 * appended otherwise, specversion "1.0", id = the native id, source = the stream, type,
 * subject, time = its effective time, datacontenttype "application/json"), then "data" (or
 * "data_base64"), "revision" (its position) and "recordedtime". */
void es_event(struct buf *out, const struct event_rec *ev);

/* Turns a selector into a native selector object (docs/api.md, "Querying the log": the
 * "selector" member of a query or condition), appended to out: the flat form {"stream" |
 * "source", "event_type", "subject"} (given attributes AND-ed) and the nested form
 * {"type":"and"|"or","selectors":[...]} / {"type":"equals"|"starts_with","attr":{...}} (attr
 * one of stream, source, event_type, subject). Returns 0 or ERR_INVALID with *err (field
 * prefix as given). */
int es_selector(struct slice sel, const char *field, struct buf *out, struct parse_error *err);

#endif
