/* Append requests of the native API: one stream (POST .../streams/{stream}/events) and several
 * streams or stream-less events with conditions (POST .../events). Each parses the body,
 * queues an engine append and answers once the commit holding the events is on disk (or with
 * the conflict or error). Wire format: docs/api.md. */
#ifndef OPS_APPEND_H
#define OPS_APPEND_H

#include "engine/engine.h"
#include "http/server.h"

struct gate_mount;
struct logic;

/* How an API surface answers the shared append operations. The request body is always in
 * the native shape (a dialect translates its own into it first). */
struct append_style {
    const struct gate_mount *mount; /* errors go out in its envelope */
    uint8_t idem_ns;                /* its idempotency keys' namespace (0: the native API's):
                                       the same key on two surfaces names two requests */
    /* Sends a success answer given in the native shape (status 201, or 200 for events
     * already stored; replayed: an idempotent replay, the stored native answer). NULL: send
     * it as it is. Any thread; native is the callee's to use, not to keep. */
    void (*answer)(struct http_req *req, unsigned status, struct buf *native, bool replayed,
                   const char *tag, void *arg);
    const char *tag;                /* passed to answer (what the surface needs of its request
                                       to answer it, e.g. Hapnd's aggregate type); copied */
    void *answer_arg;               /* passed to answer; borrowed (it must outlive the
                                       request: the surface's context) */
    unsigned flags;                 /* APPEND_* asked of the engine (APPEND_TAGS_NO_COMMA) */
    bool flat_events;               /* errors name an event by its index in the request,
                                       "events[k]", counting through the parts in order (a
                                       dialect whose request is one list of events that it
                                       splits into parts), not "appends[p].events[i]" */
    struct logic *return_state;     /* non-NULL: a single-stream append answers the stream's
                                       state too, from its reducer (logic/logic.h), as of
                                       the append's last event */
    const char *state_category;     /* with return_state: the reducer bound to this category
                                       (NULL: the stream's own category); copied */
};

/* Appends to stream (decoded, valid) of db what body (native shape; read before this
 * returns, so a translation may be freed then) asks. Takes over the reference on db. style
 * NULL: the native API's. The idempotency key hashes the request as sent. */
void append_stream(struct http_req *req, struct db *db, struct slice stream, struct slice body,
                   const struct limits *lim, const struct append_style *style);
/* Multi-stream / stream-less append with conditions (body as above). Takes over the
 * reference on db. */
void append_multi(struct http_req *req, struct db *db, struct slice body,
                  const struct limits *lim, const struct append_style *style);

/* What append_multi_wait did. */
struct append_outcome {
    int err;                        /* 0: committed; ERR_INVALID / ERR_TOOBIG: the body was
                                       refused (why); ERR_CONFLICT: a check failed (conflict,
                                       failed); other ERR_*: the engine's */
    enum append_conflict conflict;
    size_t failed;                  /* with ERR_CONFLICT: the part or condition (in the order
                                       of the body's condition, then its conditions) */
    int64_t recorded_us;            /* commit time */
    uint64_t position;              /* the last event's position */
    char why[192];
};

/* append_multi without a request: the server's own writes (a j17 timer firing). Parses body
 * (native shape) and appends it, waiting for the commit. Blocks: worker or background
 * threads only, never an I/O or writer thread. Returns out->err. */
int append_multi_wait(struct db *db, struct slice body, const struct limits *lim,
                      struct append_outcome *out);

/* Changes a stream's lifecycle settings (META_SET with meta, or a delete), answering 200 with
 * the settings, or 204, once durable. Takes over the reference on db. */
void append_meta_op(struct http_req *req, struct db *db, struct slice stream, enum meta_op op,
                    const struct stream_meta *meta);

#endif
