/* Token buckets (ratelimit.h) in a strmap under one mutex. A bucket's tokens are computed
 * lazily: refilled from its last use to now at its rate, never above its burst. */
#include "gate/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "util/buf.h"
#include "util/strmap.h"

struct bucket {
    double tokens;
    double burst;    /* capacity when last used */
    double rate;     /* refill per second when last used */
    uint64_t at_ns;  /* when tokens was computed */
};

struct ratelimiter {
    pthread_mutex_t mu;
    struct strmap buckets; /* who -> struct bucket */
};

struct ratelimiter *rl_new(void)
{
    struct ratelimiter *rl = xcalloc(1, sizeof(*rl));
    pthread_mutex_init(&rl->mu, NULL);
    strmap_init(&rl->buckets, sizeof(struct bucket));
    return rl;
}

void rl_free(struct ratelimiter *rl)
{
    if (!rl) {
        return;
    }
    strmap_fini(&rl->buckets);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static double refill(const struct bucket *b, uint64_t now_ns)
{
    double t = b->tokens + b->rate * (double)(now_ns - b->at_ns) / 1e9;
    return t < b->burst ? t : b->burst;
}

/* Drops the buckets that are full again (their clients have been idle). */
static void drop_idle(struct ratelimiter *rl, uint64_t now_ns)
{
    struct strmap keep;
    strmap_init(&keep, sizeof(struct bucket));
    size_t it = 0;
    const char *key;
    size_t klen;
    void *val;
    while (strmap_next(&rl->buckets, &it, &key, &klen, &val)) {
        const struct bucket *b = val;
        if (refill(b, now_ns) < b->burst) {
            *(struct bucket *)strmap_put(&keep, key, klen, NULL) = *b;
        }
    }
    strmap_fini(&rl->buckets);
    rl->buckets = keep;
}

void rl_take(struct ratelimiter *rl, const char *who, size_t n, double rate, double burst,
             uint64_t now_ns, struct rl_result *out)
{
    pthread_mutex_lock(&rl->mu);
    if (rl->buckets.count >= RATELIMIT_BUCKETS_MAX) {
        drop_idle(rl, now_ns);
    }
    bool is_new;
    struct bucket *b = strmap_put(&rl->buckets, who, n, &is_new);
    if (is_new) {
        *b = (struct bucket){.tokens = burst, .burst = burst, .rate = rate, .at_ns = now_ns};
    }
    b->tokens = refill(b, now_ns);
    b->at_ns = now_ns;
    b->rate = rate;
    b->burst = burst;
    if (b->tokens > burst) {
        b->tokens = burst;
    }
    out->limited = b->tokens < 1.0;
    if (!out->limited) {
        b->tokens -= 1.0;
    }
    out->limit = (unsigned)ceil(rate);
    out->remaining = (unsigned)floor(b->tokens);
    out->reset_s = (unsigned)ceil((burst - b->tokens) / rate);
    out->retry_after_s = out->limited ? (unsigned)ceil((1.0 - b->tokens) / rate) : 0;
    if (out->limited && out->retry_after_s < 1) {
        out->retry_after_s = 1;
    }
    pthread_mutex_unlock(&rl->mu);
}

void rl_give(struct ratelimiter *rl, const char *who, size_t n, uint64_t now_ns)
{
    pthread_mutex_lock(&rl->mu);
    struct bucket *b = strmap_get(&rl->buckets, who, n);
    if (b) {
        b->tokens = refill(b, now_ns) + 1.0;
        b->at_ns = now_ns;
        if (b->tokens > b->burst) {
            b->tokens = b->burst;
        }
    }
    pthread_mutex_unlock(&rl->mu);
}
