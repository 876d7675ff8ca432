/* Request metrics of the native API, rendered in the Prometheus text format (GET /metrics):
 * answers by route and status, latency histograms by route. Lock-free counters updated from
 * any thread. */
#ifndef API_METRICS_H
#define API_METRICS_H

#include <stdint.h>

#include "util/buf.h"

enum { METRICS_ROUTES = 256 }; /* routes counted, over every mount (tag = route index; other
                                 tags = "none"); main checks the gate has no more */

struct api_metrics;

struct api_metrics *metrics_new(void);
void metrics_free(struct api_metrics *m);
/* Counts one answer of route tag (any thread). */
void metrics_observe(struct api_metrics *m, int tag, unsigned status, uint64_t ns);
/* Appends the request metrics; labels[i] is route i's label text (e.g. `GET /v1/...`), n
 * routes. */
void metrics_render_requests(const struct api_metrics *m, const char *const *labels, int n,
                             struct buf *out);

#endif
