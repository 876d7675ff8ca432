/* The engine's event contract (engine/canon.c). engine_append takes only canonical events and
 * checks every request against this contract itself, whoever built it:
 *
 * - a part's stream is a name (1..LIMIT_STREAM_NAME_BYTES of UTF-8 without control characters,
 *   not "." or "..") that does not start with '$' (the engine's own names), except
 *   ENGINE_DCB_STREAM and ENGINE_LOGIC_STREAM; each part has at least one event;
 * - a stream may appear in several parts (its events are appended in request order, the later
 *   parts continuing its versions) only if none of those parts expects a version (expect.kind
 *   is EXPECT_ANY in each): the refusal names a part that carries one, leaf
 *   "expectedVersion";
 * - an event's type is a name up to LIMIT_TYPE_BYTES; data is minified JSON text; metadata a
 *   minified JSON object ("{}" when none); subject empty or a name up to LIMIT_SUBJECT_BYTES;
 *   tags a canonical array ("[]" when none: each tag a name up to LIMIT_TAG_BYTES written with
 *   only \" and \\ escaped, at most LIMIT_TAGS; without commas when the request asks,
 *   APPEND_TAGS_NO_COMMA); no event id appears twice in one request.
 *
 * engine_events_parse makes canonical events from the native event objects
 * ({"type","data","metadata"?,"id"?,"tags"?,"time"?,"subject"?}), which every API surface
 * and user code's command handlers produce. Pure functions; any thread. */
#ifndef ENGINE_CANON_H
#define ENGINE_CANON_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/engine.h"

/* True when s[0..n) is valid UTF-8 without control characters, 1..max bytes. */
bool engine_name_ok(const char *s, size_t n, size_t max);
/* True for a stream name: engine_name_ok up to LIMIT_STREAM_NAME_BYTES, not "." or ".." (no
 * URL can carry them: clients collapse them). Reserved names ('$') are readable. */
bool engine_stream_name_ok(const char *s, size_t n);
/* ... and a stream clients may write: engine_stream_name_ok and not starting with '$'. */
bool engine_stream_writable(const char *s, size_t n);

/* Canonical events made from a JSON array's event objects. Owns its storage. */
struct engine_events {
    struct append_event *events; /* count entries; slices point into text */
    size_t count;
    struct buf text;             /* type, minified data and metadata, tags, subject */
};

/* Parses the first n items of arr (a valid JSON array span) as event objects, with flags
 * (APPEND_TAGS_NO_COMMA). Data, metadata and tags keep their exact text (numbers, key order,
 * duplicate keys, escapes), minified; tags are written canonical. Returns 0, or ERR_INVALID
 * with *f naming the event, its member and what is wrong (nothing to free then). */
int engine_events_parse(struct slice arr, size_t n, unsigned flags, struct engine_events *out,
                        struct append_fault *f);
void engine_events_fini(struct engine_events *evs);

/* Checks req (parts and events, not conditions) against the contract above. Returns 0, or
 * ERR_INVALID with *f set. engine_append runs it on every request it did not make itself. */
int engine_append_check(const struct append_req *req, struct append_fault *f);

#endif
