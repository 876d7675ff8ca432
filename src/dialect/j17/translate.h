/* j17 dialect: pure translators between j17's wire shapes and the native ones
 * (docs/dialects/j17.md). Bytes in, bytes out: no I/O, no engine calls, so each is
 * unit-tested on its own (tests/unit/j17_test.c).
 *
 * The mapping:
 *   - an aggregate "<type>/<id>" is the native stream "<type>:<id>" (j17's own key);
 *   - a j17 event is a native event: its event type is the native type, data the data, and
 *     metadata j17's metadata object ({"actor", "target"?, ...}) as written;
 *   - a stream id "<ms>-<seq>" is the event's commit time in milliseconds and its version
 *     less one (seq counts the aggregate's events from 0, so ids are unique and increasing
 *     per aggregate; reads take seq alone). */
#ifndef DIALECT_J17_TRANSLATE_H
#define DIALECT_J17_TRANSLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gate/gate.h"
#include "model/event.h"
#include "util/buf.h"

enum {
    J17_STREAM_ID_BYTES = 48,  /* "<ms>-<seq>" with its NUL */
    J17_READ_DEFAULT = 100,    /* events of GET .../events without count */
};

/* j17's error envelope (a gate_error_fn): {"ok":false,"error":"<text>","path"?} (path: the
 * offending input, from e->field), with native kinds mapped to j17's statuses (415 -> 400). */
unsigned j17_error(const struct gate_error *e, struct buf *out);

/* The stream id of the event of version (from 1) committed at recorded_us, into out
 * (J17_STREAM_ID_BYTES). */
void j17_stream_id(int64_t recorded_us, uint64_t version, char *out);
/* The version a stream id names ("<ms>-<seq>": seq + 1). False when text is no stream id. */
bool j17_stream_id_version(const char *text, uint64_t *version);

/* A write's metadata, checked: actor (required) and target (optional) objects of
 * {"type","id"}, previous_length, skip_occ, and any other members kept as sent. */
struct j17_meta {
    json_t *stored;          /* owned: the metadata object to store (without previous_length
                                and skip_occ; actor and target ids canonical) */
    bool has_previous;
    uint64_t previous_length;
    bool skip_occ;
};

/* A problem with a request body: the member ("metadata.actor.type") and why. */
struct j17_fault {
    unsigned kind;           /* GK_INVALID, GK_NOT_FOUND, GK_TOO_LARGE */
    char path[128];
    char msg[192];
};

/* Reads the members of metadata (a JSON object, or NULL: absent) other than the ids'
 * checks, which need the spec: actor required with string type and id, target optional,
 * previous_length a whole number, skip_occ a boolean; timestamp, stream_id, implied_by and
 * saga are the server's (refused). Returns 0 or ERR_INVALID with *f. */
int j17_meta_read(const json_t *metadata, struct j17_meta *out, struct j17_fault *f);
void j17_meta_fini(struct j17_meta *m);

/* Appends the event ev as GET .../events shows it: {"stream_id","key","type","data",
 * "metadata"} with metadata.timestamp (Unix seconds). */
void j17_event_json(struct buf *out, const struct event_rec *ev);

/* Appends what Tick handlers see of ev (the logic event format): {"type","key","id","data",
 * "metadata"} with metadata.timestamp and metadata.stream_id. */
void j17_event_render(struct buf *out, const struct event_rec *ev);

/* The answer of a write from the native answer of its append (docs/api.md, "Atomic appends
 * across streams"): the stream ids of the first count events of the first part (the
 * aggregate's own events, laid out first), and implied_count when implied > 0. batch: the
 * batch shape {"ok","stream_ids","count"} else {"ok","stream_id"}. Returns 0 or
 * ERR_CORRUPT (not such an answer). */
int j17_write_answer(struct slice native, size_t count, size_t implied, bool batch,
                     struct buf *out);

#endif
