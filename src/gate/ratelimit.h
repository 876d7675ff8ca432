/* Token-bucket rate limits: one bucket per name the caller chooses (the gate's: a client, an
 * API key or an address when no key is used, and its database; or an address alone). A bucket
 * holds up to `burst` tokens and refills at `rate` per second; each request takes one.
 * Thread-safe. Idle full buckets are dropped when there are many. */
#ifndef GATE_RATELIMIT_H
#define GATE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { RATELIMIT_BUCKETS_MAX = 100000 }; /* buckets kept before idle ones are dropped */

struct ratelimiter;

/* What a request may know of its bucket (the X-RateLimit-* headers). */
struct rl_result {
    bool limited;          /* no token: answer 429 */
    unsigned limit;        /* the rate, requests per second */
    unsigned remaining;    /* whole tokens left */
    unsigned reset_s;      /* seconds until the bucket is full again */
    unsigned retry_after_s; /* when limited: seconds until one token is back (>= 1) */
};

struct ratelimiter *rl_new(void);
void rl_free(struct ratelimiter *rl);
/* Takes one token from bucket `who` (n bytes) with this rate and burst (both > 0). */
void rl_take(struct ratelimiter *rl, const char *who, size_t n, double rate, double burst,
             uint64_t now_ns, struct rl_result *out);
/* Gives back the token a request took from bucket `who` (n bytes) when another limit refused
 * that request after all (never above the bucket's burst; nothing when the bucket is gone). */
void rl_give(struct ratelimiter *rl, const char *who, size_t n, uint64_t now_ns);

#endif
