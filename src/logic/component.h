/* Components: user code deployed to a database (docs/design/logic.md, "Components").
 *
 * A component has a name, a kind (reducer, projection, view, command handler, or document:
 * a JSON text kept like code and never run), a language, its source and its binding: a stream category for a reducer, a filter (the query filter
 * JSON of the native API) for a projection or a view. Each deploy of a name gets the next
 * version. Deploys and removals are kept as events of the database's ENGINE_LOGIC_STREAM, so
 * they are durable, ordered and in every backup; the registry is rebuilt from that stream.
 *
 * This file holds the pure parts: the definition, its JSON forms and what each kind needs.
 * Any thread. */
#ifndef LOGIC_COMPONENT_H
#define LOGIC_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "delivery/delivery.h"
#include "logic/runtime.h"
#include "util/buf.h"

enum comp_kind {
    COMP_REDUCER = 1,   /* reduce(state, event) over the streams of a category */
    COMP_PROJECTION,    /* key(event), apply(state, event) over a filter of the log */
    COMP_VIEW,          /* evolve(state, event, params) over a filter, at read time */
    COMP_COMMAND,       /* decide(command, ctx) */
    COMP_DOCUMENT,      /* not code: a surface's versioned configuration document (a j17
                           spec), language LOGIC_LANG_JSON, its source a JSON text; kept and
                           versioned like code, never loaded or run */
};

enum {
    COMP_NAME_BYTES = 64,                 /* a component's name: [A-Za-z0-9_.-], from a letter */
    COMP_SOURCE_BYTES = 1000 * 1000,      /* its source (it is stored as one event) */
    COMP_FILTER_BYTES = 16 * 1024,        /* its filter's JSON text */
    COMP_WEBHOOK_BYTES = 16 * 1024,       /* a projection's webhook member's JSON text */
    COMP_WEBHOOK_HEADERS = 10,            /* ... its own headers */
    COMP_WEBHOOK_ATTEMPTS_MAX = 20,       /* ... attempts per delivery (default 5) */
    COMP_WEBHOOK_BACKOFF_MAX_MS = 3600 * 1000, /* ... first retry's wait (default 1000) */
    COMP_FORMAT_NAME_BYTES = 32,          /* an event format's name: [a-z0-9_-]{1,32} */
    COMP_META_BYTES = 4096,               /* the meta member's minified JSON text */
};

struct comp_def {
    char name[COMP_NAME_BYTES + 1];
    enum comp_kind kind;
    enum logic_lang lang;
    char *source;          /* owned, NUL-terminated (source_len bytes) */
    size_t source_len;
    char *category;        /* reducers: owned; NULL for other kinds */
    char *filter;          /* projections and views: owned minified JSON, NULL = every event */
    char *webhook;         /* projections: owned minified JSON of the webhook member, NULL =
                              none (comp_webhook_parse reads it) */
    char *event_format;    /* owned: the name of the event format its code sees events in and
                              returns them in (logic_config.event_formats), NULL = native */
    char *meta;            /* owned minified JSON object kept with the definition for the API
                              surface that deployed it (a dialect's description, content
                              type, ...), at most COMP_META_BYTES; NULL = none */
    uint64_t version;      /* 1 for the first deploy of the name */
    int64_t deployed_us;   /* when that deploy committed */
};

/* "reducer", "projection", "view", "command", "document"; 0 when unknown. */
enum comp_kind comp_kind_parse(const char *s);
const char *comp_kind_name(enum comp_kind kind);

/* The entry points a kind must define, NULL-terminated (a document: none, an empty list). */
const char *const *comp_entries(enum comp_kind kind);

/* True for a valid component name. */
bool comp_name_ok(const char *s, size_t n);

/* Why a definition was refused: the member and a message. */
struct comp_error {
    char field[32];
    char message[192];
};

/* Reads a deploy body {"kind", "language", "source", "category"?, "filter"?, "webhook"?,
 * "eventFormat"?, "meta"?} (valid JSON text) for name into *out (version 0, deployed_us 0:
 * set by the registry). The filter is kept as minified text and only checked to be an object
 * here; the caller parses it. A webhook (projections only) is checked whole
 * (comp_webhook_parse). eventFormat is only checked to be a format name here (whether such a
 * format exists is the deploy's check); meta must be an object of at most COMP_META_BYTES
 * minified. Returns 0, or ERR_INVALID / ERR_TOOBIG with *err filled (nothing to free then). */
int comp_parse(const char *name, struct slice body, struct comp_def *out,
               struct comp_error *err);

/* Appends the stored form of def, {"name","kind","language","version","source",
 * "category"?, "filter"?, "webhook"?, "eventFormat"?, "meta"?}, the data of its deploy
 * event. */
void comp_to_json(const struct comp_def *def, struct buf *out);
/* Reads a stored form back (version included). Returns 0 or ERR_CORRUPT. */
int comp_from_json(struct slice text, struct comp_def *out);

/* The category of a stream: its name up to the first '-', '_', ':' or '/' (the whole name when
 * it has none), as the native API's `categories` filter takes it. */
struct slice comp_category_of(struct slice stream);

/* A deep copy of src into *out. */
void comp_def_copy(struct comp_def *out, const struct comp_def *src);
void comp_def_fini(struct comp_def *def);

/* A projection's webhook: its changes are POSTed to url (docs/api.md, "Projection webhooks"),
 * signed with the database's shared projection secret, or with its own when isolate. */
struct comp_webhook {
    char url[DELIVERY_URL_BYTES + 1];
    char headers[COMP_WEBHOOK_HEADERS][DELIVERY_HEADER_BYTES + 1]; /* "Name: value" */
    size_t nheaders;
    uint32_t max_attempts;   /* per batch before it is parked, 1..COMP_WEBHOOK_ATTEMPTS_MAX */
    uint32_t backoff_ms;     /* wait before the second attempt; doubles after each */
    bool isolate;            /* its own signing secret */
};

/* Reads a webhook member {"url", "headers"?: {name: value}, "maxAttempts"?, "backoffMs"?,
 * "isolateSecret"?} (valid JSON) into *out: the url must be http(s) and at most
 * DELIVERY_URL_BYTES (whether its host may be reached is checked at deploy); headers as
 * delivery_header_ok takes them. Returns 0 or ERR_INVALID with *err ("webhook.<member>"). */
int comp_webhook_parse(struct slice json, struct comp_webhook *out, struct comp_error *err);

#endif
