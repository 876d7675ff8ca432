/* Outbound HTTP deliveries: one POST of a body to a subscriber's URL, signed the way the
 * caller chooses, never to an address the operator did not allow. The transport under the
 * engine's webhooks (engine/webhooks.c keeps the subscriptions, cursors, batching, retries and
 * parking) and under projection webhooks (logic/proj_hooks.c); it knows nothing of events,
 * databases or API surfaces (a scheme's header names come from the request).
 *
 * Address policy (SSRF): a delivery never reaches a loopback, private, link-local, multicast
 * or otherwise non-public address, unless the operator's allow list names the URL's host or
 * the address ("*" allows any). The URL is checked when a subscription is made
 * (delivery_check_url: every address its host resolves to must pass), and again at every
 * connection (the name may resolve differently later: each address curl connects to is
 * checked, so a rebinding name cannot reach a private address). Redirects are never followed;
 * every attempt has a time limit.
 *
 * Signing schemes (the caller chooses per subscription):
 *   DELIVERY_UNSIGNED            no signature headers;
 *   DELIVERY_STANDARD_WEBHOOKS   Standard Webhooks: webhook-id, webhook-timestamp and
 *                                webhook-signature = "v1,<base64 HMAC-SHA256(key,
 *                                id.timestamp.body)>", one per secret (two during a
 *                                rotation's grace), space-separated; secrets are
 *                                "whsec_" + base64 of DELIVERY_SECRET_BYTES random bytes;
 *   DELIVERY_HMAC_HEX            one header, named by the request (signature_header), whose
 *                                value is "sha256=<lowercase hex HMAC-SHA256(key, body)>" with
 *                                the secret's whole text as the key (GitHub's and many
 *                                services' shape); during a rotation's grace the old secret's
 *                                signature follows, ", "-separated (an HTTP list). Nothing
 *                                else is added: a message id or attempt number, if the
 *                                receiver expects one, is one of the request's own headers.
 *
 * Threads: every function may be called from any thread, concurrently. delivery_check_url
 * resolves a host name and delivery_post waits for the network: call them from worker or
 * delivery threads, never from an I/O or writer thread. curl_global_init must have run before
 * any thread started (main does it). */
#ifndef DELIVERY_DELIVERY_H
#define DELIVERY_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum {
    DELIVERY_URL_BYTES = 2048,        /* a subscriber's URL */
    DELIVERY_TIMEOUT_S = 10,          /* one attempt, connect included */
    DELIVERY_CONNECT_TIMEOUT_S = 5,   /* its connect */
    DELIVERY_SECRET_BYTES = 24,       /* random bytes of a signing secret */
    DELIVERY_SECRET_TEXT = 64,        /* a secret's text with its NUL fits in this */
    DELIVERY_ERROR_BYTES = 160,       /* a failure's description */
    DELIVERY_BACKOFF_DOUBLINGS = 16,  /* the backoff stops doubling after this many */
    DELIVERY_BACKOFF_MAX_MS = 24 * 3600 * 1000, /* a scaled backoff's longest wait */
    DELIVERY_HEADER_BYTES = 1024,     /* a subscriber's own header, "Name: value" */
};

enum delivery_signing {
    DELIVERY_UNSIGNED,
    DELIVERY_STANDARD_WEBHOOKS,
    DELIVERY_HMAC_HEX,
};

/* One POST. Every pointer is borrowed for the call. */
struct delivery_request {
    const char *url;                 /* http:// or https:// */
    const char *allow;               /* the operator's allow list: hosts or addresses,
                                        comma-separated, "*" = any (NULL: none) */
    struct slice body;               /* sent as application/json */
    const char *const *headers;      /* nheaders more "Name: value" lines, sent as given */
    size_t nheaders;
    enum delivery_signing signing;
    const char *msg_id;              /* the message id the signature covers (the same for
                                        every attempt of one message); Standard Webhooks */
    const char *signature_header;    /* the name of the header that carries the signature:
                                        DELIVERY_HMAC_HEX (required there) */
    const char *secret;              /* signing secret; signed schemes only */
    const char *old_secret;          /* a second secret that also signs (a rotation's
                                        grace), or NULL */
    const bool *cancel;              /* NULL, or a flag (read atomically) that abandons the
                                        transfer once it is true (a stop must not wait out a
                                        slow receiver) */
};

/* What one POST came to: the caller's retry decisions use it. */
struct delivery_result {
    int status;                      /* the HTTP status, 0 when there was no answer */
    bool ok;                         /* a 2xx answer: delivered */
    bool retry;                      /* not delivered, and another attempt may succeed (every
                                        failure today, refused addresses included: a name may
                                        resolve elsewhere later) */
    char error[DELIVERY_ERROR_BYTES]; /* why it failed ("HTTP 503", a connection error); ""
                                        when ok */
};

/* Posts rq->body to rq->url once (no retry) and fills *out. A connection to an address the
 * policy refuses fails like a refused connection. Blocks for up to DELIVERY_TIMEOUT_S. */
void delivery_post(const struct delivery_request *rq, struct delivery_result *out);

/* The wait before the attempt after failed attempt number attempt (1-based): base_ms doubled
 * per attempt since the first, at most DELIVERY_BACKOFF_DOUBLINGS times. */
uint64_t delivery_backoff_ms(uint32_t base_ms, uint32_t attempt);
/* The same growing by factor (2..10; other values: 2) per attempt instead of doubling: base,
 * base * factor, base * factor^2, ..., capped at DELIVERY_BACKOFF_MAX_MS. */
uint64_t delivery_backoff_factor_ms(uint32_t base_ms, uint32_t factor, uint32_t attempt);

/* Checks a subscriber's URL: http(s), at most DELIVERY_URL_BYTES, with a host whose every
 * address the policy allows (its host is resolved, unless allow names it). Returns 0,
 * ERR_INVALID (not such a URL, or the host does not resolve) or ERR_DENIED (a refused
 * address); why (why_len bytes) says which. Resolves DNS: never on an I/O thread. */
int delivery_check_url(const char *allow, const char *url, char *why, size_t why_len);

/* True when allow names url's host (connections to it skip the address check). Pure. */
bool delivery_host_allowed(const char *allow, const char *url);

/* True for a header a subscriber may have sent with its deliveries: a token name that is not
 * one the server sets (Content-Type, the signature and attempt headers, hop-by-hop ones), a
 * value without line breaks, "Name: value" at most DELIVERY_HEADER_BYTES. Pure. */
bool delivery_header_ok(const char *name, const char *value);

/* A new signing secret into out (DELIVERY_SECRET_TEXT bytes). */
void delivery_secret_new(char out[DELIVERY_SECRET_TEXT]);

/* Appends " v1,<base64 HMAC-SHA256(key, msg)>" for secret ("whsec_" + base64 key) to out
 * (without the leading space when out is empty): one signature of the Standard Webhooks
 * scheme. Pure. */
void delivery_sign(struct buf *out, const char *secret, struct slice msg);

/* Appends ", sha256=<lowercase hex HMAC-SHA256(secret, msg)>" to out (without the leading
 * ", " when out is empty): one signature of the DELIVERY_HMAC_HEX scheme, keyed by the
 * secret's text as it is (all of it, "whsec_" included). Pure. */
void delivery_sign_hex(struct buf *out, const char *secret, struct slice msg);

#endif
