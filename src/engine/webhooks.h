/* Webhook subscriptions of a database: each delivers the events matching its filter, in order,
 * as HTTP POSTs to its URL, at least once, from a durable checkpoint. One delivery thread per
 * webhook: read the next batch after the checkpoint with its catch-up cursor
 * (engine/cursor.h; up to the format's batch size), POST it (retrying with exponential backoff
 * up to max_attempts), then move the checkpoint; a batch that keeps failing is parked and
 * delivery goes on. The POST itself, the address policy (no loopback, private, link-local or
 * other non-public address unless the operator allows the host, engine_config.webhook_allow;
 * no redirects; a time limit) and the signatures are the delivery module's
 * (delivery/delivery.h): native webhooks are signed with the Standard Webhooks scheme
 * (docs/api.md, "Webhooks"), one signature per valid secret during a rotation's grace period;
 * a format (struct webhook_format) chooses its own envelope and whether to sign.
 *
 * State (definitions with their secrets, checkpoints, parked batches, the delivery log) is in
 * the database directory's webhooks.json (mode 0600, engine/statefile.h). Any thread. */
#ifndef ENGINE_WEBHOOKS_H
#define ENGINE_WEBHOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

enum {
    WEBHOOKS_MAX = 20,              /* per database */
    WEBHOOK_URL_BYTES = 2048,       /* = DELIVERY_URL_BYTES */
    WEBHOOK_HEADERS_MAX = 10,       /* custom headers per webhook */
    WEBHOOK_HEADER_BYTES = 1024,    /* one "Name: value" */
    WEBHOOK_BATCH = 100,            /* events per delivery */
    WEBHOOK_LOG = 50,               /* deliveries kept in the log */
    WEBHOOK_PARKED_MAX = 1000,      /* parked batches kept (oldest dropped) */
    WEBHOOK_ATTEMPTS_MAX = 20,
    WEBHOOK_META_BYTES = 4096,      /* a webhook's meta object */
    WEBHOOK_SECRET_TEXT = 64,       /* a secret's text with its NUL (= DELIVERY_SECRET_TEXT) */
};

/* How a webhook's deliveries look, chosen by the API surface that made it (engine_config's
 * webhook_formats; NULL format: the native one: batches of up to WEBHOOK_BATCH events,
 * {"webhook","deliveryId","attempt","events"}, Standard Webhooks signatures). */
struct webhook_format {
    const char *name;          /* stored with the webhook */
    unsigned batch;            /* events per POST, 1..WEBHOOK_BATCH */
    bool sign;                 /* send the webhook-id/-timestamp/-signature headers */
    /* Appends one event's JSON. */
    void (*event)(struct buf *out, const struct event_rec *ev);
    /* Writes the POST body: events is the batch's event JSON, comma-separated. */
    void (*body)(struct buf *out, const char *database, const char *webhook,
                 struct slice events, uint32_t attempt);
    /* Optional (NULL: every event of the filter is delivered). Whether the webhook whose
     * meta object is meta (its JSON text; ptr NULL: none) delivers ev; the others of its
     * filter are passed over (the checkpoint moves past them). Pure: any thread. */
    bool (*want)(struct slice meta, const struct event_rec *ev);
    /* Optional: with sign false, a header that carries the hex HMAC-SHA256 of the body keyed
     * by the webhook's secret (DELIVERY_HMAC_HEX) instead of no signature. */
    const char *signature_header;
    /* The wait before each retry is the webhook's backoff_ms times this to the power of the
     * retries before it (0 or 2: doubling). */
    uint32_t backoff_factor;
};

struct webhook_def {
    char name[65];                  /* as subscription names (groups.h) */
    const char *url;                /* http:// or https://; NULL with record_only */
    const char *format;             /* a webhook_format's name, NULL = native */
    struct slice meta;              /* JSON object kept with it for its maker (ptr NULL:
                                       none), at most WEBHOOK_META_BYTES */
    bool record_only;               /* a definition only: nothing is delivered (a
                                       dialect's record of a subscription served otherwise) */
    struct slice filter;            /* JSON text ("" = every event) */
    const char *headers[WEBHOOK_HEADERS_MAX]; /* "Name: value" */
    size_t nheaders;
    uint32_t max_attempts;          /* attempts per batch before it is parked (default 5) */
    uint32_t backoff_ms;            /* wait before the 2nd attempt; doubles each time */
    uint64_t start;                 /* first position to deliver */
    const char *secret;             /* its signing secret (1..DELIVERY_SECRET_TEXT - 1 bytes,
                                       a format's signature_header schemes), NULL: made */
};

/* Creates a webhook and starts its delivery; secret_out (at least 64 bytes) gets its secret
 * ("whsec_" + base64 of 24 random bytes), shown once. The url must be http(s) with a host
 * whose every address may be reached (public, or allowed by the configuration). Returns 0,
 * ERR_EXISTS, ERR_TOOBIG, ERR_INVALID (filter or url; why says which), ERR_DENIED (a refused
 * address; why names it) or ERR_IO. */
int engine_webhook_create(struct db *db, const struct webhook_def *def, char *secret_out,
                          char *why, size_t why_len);
/* Whether url may be a webhook's of this server: http(s), every address its host resolves to
 * public or allowed by the operator (engine_config.webhook_allow). Returns 0, or ERR_INVALID /
 * ERR_DENIED with why. Resolves names: a worker's call. */
int engine_webhook_url_check(struct engine *e, const char *url, char *why, size_t why_len);

/* True when webhook name exists and signs with secret (its current one; compared in constant
 * time): a maker that keeps the secret elsewhere tells whether it changed without storing
 * anything derived from it. */
bool engine_webhook_signs_with(struct db *db, const char *name, const char *secret);
/* Stops and deletes. Returns 0, ERR_NOTFOUND or ERR_IO. */
int engine_webhook_delete(struct db *db, const char *name);
/* A new secret (to secret_out); the old one also signs for grace_s seconds. */
int engine_webhook_rotate(struct db *db, const char *name, uint32_t grace_s, char *secret_out);
/* Appends the JSON of every webhook (or the named one: the object alone), with its state and
 * (when with_log) its delivery log and parked batches, to out; "format", "meta" and
 * "recordOnly" only when set. Returns 0 or ERR_NOTFOUND. */
int engine_webhook_describe(struct db *db, const char *only, bool with_log, struct buf *out);


#endif
