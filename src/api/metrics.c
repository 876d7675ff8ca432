#include "api/metrics.h"

#include <stdlib.h>
#include <string.h>

/* Status codes with their own counter; others are counted as "other". */
static const unsigned STATUSES[] = {200, 201, 204, 400, 401, 403, 404, 405, 409, 410, 413,
                                    415, 422, 429, 431, 500, 501, 503, 505, 507};
enum { NSTATUS = sizeof STATUSES / sizeof STATUSES[0] + 1 };

/* Latency bucket upper bounds, seconds (Prometheus `le`), then +Inf. */
static const double BOUNDS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
enum { NBUCKET = sizeof BOUNDS / sizeof BOUNDS[0] + 1 };

struct route_metrics {
    uint64_t status[NSTATUS];  /* answers by status */
    uint64_t bucket[NBUCKET];  /* answers by latency bucket (not cumulative) */
    uint64_t sum_ns;           /* total latency */
};

struct api_metrics {
    struct route_metrics r[METRICS_ROUTES + 1]; /* the last: requests without a route */
};

struct api_metrics *metrics_new(void)
{
    return xcalloc(1, sizeof(struct api_metrics));
}

void metrics_free(struct api_metrics *m)
{
    free(m);
}

void metrics_observe(struct api_metrics *m, int tag, unsigned status, uint64_t ns)
{
    struct route_metrics *r = &m->r[tag >= 0 && tag < METRICS_ROUTES ? tag : METRICS_ROUTES];
    size_t s = NSTATUS - 1;
    for (size_t i = 0; i < NSTATUS - 1; i++) {
        s = STATUSES[i] == status ? i : s;
    }
    size_t b = NBUCKET - 1;
    double secs = (double)ns / 1e9;
    for (size_t i = NBUCKET - 1; i-- > 0;) {
        b = secs <= BOUNDS[i] ? i : b;
    }
    __atomic_add_fetch(&r->status[s], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->bucket[b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->sum_ns, ns, __ATOMIC_RELAXED);
}

static void label(struct buf *out, const char *const *labels, int n, int i)
{
    buf_adds(out, "route=\"");
    buf_adds(out, i < n ? labels[i] : "none");
    buf_addc(out, '"');
}

void metrics_render_requests(const struct api_metrics *m, const char *const *labels, int n,
                             struct buf *out)
{
    buf_adds(out, "# HELP annals_http_requests_total HTTP answers by route and status.\n"
                  "# TYPE annals_http_requests_total counter\n");
    for (int i = 0; i <= METRICS_ROUTES; i++) {
        if (i >= n && i != METRICS_ROUTES) {
            continue;
        }
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t v = __atomic_load_n(&m->r[i].status[s], __ATOMIC_RELAXED);
            if (!v) {
                continue;
            }
            buf_adds(out, "annals_http_requests_total{");
            label(out, labels, n, i);
            if (s < NSTATUS - 1) {
                buf_printf(out, ",status=\"%u\"} %llu\n", STATUSES[s], (unsigned long long)v);
            } else {
                buf_printf(out, ",status=\"other\"} %llu\n", (unsigned long long)v);
            }
        }
    }
    buf_adds(out, "# HELP annals_http_request_duration_seconds Time from a request's head to "
                  "its answer.\n# TYPE annals_http_request_duration_seconds histogram\n");
    for (int i = 0; i <= METRICS_ROUTES; i++) {
        if (i >= n && i != METRICS_ROUTES) {
            continue;
        }
        uint64_t cum = 0;
        for (size_t b = 0; b < NBUCKET; b++) {
            cum += __atomic_load_n(&m->r[i].bucket[b], __ATOMIC_RELAXED);
        }
        if (!cum) {
            continue;
        }
        cum = 0;
        for (size_t b = 0; b < NBUCKET; b++) {
            cum += __atomic_load_n(&m->r[i].bucket[b], __ATOMIC_RELAXED);
            buf_adds(out, "annals_http_request_duration_seconds_bucket{");
            label(out, labels, n, i);
            if (b < NBUCKET - 1) {
                buf_printf(out, ",le=\"%g\"} %llu\n", BOUNDS[b], (unsigned long long)cum);
            } else {
                buf_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
            }
        }
        buf_adds(out, "annals_http_request_duration_seconds_sum{");
        label(out, labels, n, i);
        buf_printf(out, "} %.6f\n",
                   (double)__atomic_load_n(&m->r[i].sum_ns, __ATOMIC_RELAXED) / 1e9);
        buf_adds(out, "annals_http_request_duration_seconds_count{");
        label(out, labels, n, i);
        buf_printf(out, "} %llu\n", (unsigned long long)cum);
    }
}
