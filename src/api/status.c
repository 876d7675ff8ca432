/* What the server says about itself: the index page (GET /), liveness (GET /health), the
 * detailed health of storage and each database (GET /health/detailed), the Prometheus
 * metrics (GET /metrics: request counters from api/metrics.c, per-database families, gauges)
 * and the observation of every answer (api_observe). A key for one database sees only that
 * database in each of them. */
#include "api/native_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/metrics.h"
#include "http/server.h"
#include "logic/logic.h"
#include "logic/projection.h"
#include "ops/live.h"
#include "ops/out.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/timeutil.h"

/* Seconds since the server started. */
static double uptime_s(const struct gate_call *c)
{
    return (double)(time_now_us() - api_of(c)->started_us) / 1e6;
}

/* ---- the index and health ---- */

/* GET /: what this is and where to read on: a short page for browsers, else JSON. */
void api_root(struct gate_call *c)
{
    const char *accept = http_req_header(c->req, "Accept");
    struct buf b;
    buf_init(&b);
    if (accept && strstr(accept, "text/html")) {
        buf_printf(&b, "<!doctype html><html><head><meta charset=\"utf-8\"><title>Annals</title>"
                   "</head><body><h1>Annals %s</h1><p>A self-hosted event-sourcing database "
                   "server.</p><ul><li><a href=\"/v1/openapi.json\">The API as an OpenAPI "
                   "document</a></li><li><a href=\"/health\">Health</a></li><li>The manual: "
                   "docs/api.md in the source tree</li></ul></body></html>\n",
                   api_of(c)->version);
        http_respond(c->req, 200, &b, "text/html; charset=utf-8");
        return;
    }
    buf_printf(&b, "{\"name\":\"annals\",\"version\":\"%s\",\"openapi\":\"/v1/openapi.json\","
               "\"health\":\"/health\",\"docs\":\"docs/api.md in the source tree\"}",
               api_of(c)->version);
    out_json(c->req, 200, &b);
}

void api_health(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"status\":\"ok\",\"version\":\"%s\"}", api_of(c)->version);
    out_json(c->req, 200, &b);
}

static int db_health(struct gate_call *c, const char *name, struct buf *b, bool first)
{
    struct db *db;
    if (engine_db_acquire(api_of(c)->engine, name, strlen(name), &db) != 0) {
        return 0; /* deleted meanwhile */
    }
    struct db_info in;
    int rc = engine_db_info(db, &in);
    engine_db_release(db);
    buf_adds(b, first ? "{\"name\":" : ",{\"name\":");
    buf_add_json_str(b, name, strlen(name));
    buf_printf(b, ",\"status\":\"%s\",\"head\":%llu,\"indexed\":%llu,\"queueDepth\":%llu}",
               rc ? "failing" : "ok", (unsigned long long)in.head,
               (unsigned long long)in.indexed, (unsigned long long)in.queue_depth);
    return rc;
}

void api_health_detailed(struct gate_call *c)
{
    size_t n;
    char **names = engine_db_names(api_of(c)->engine, &n);
    struct buf dbs;
    buf_init(&dbs);
    bool failing = false;
    for (size_t i = 0, shown = 0; i < n; i++) {
        if (!api_key_sees_db(c, names[i])) {
            continue;
        }
        failing |= db_health(c, names[i], &dbs, shown++ == 0) != 0;
    }
    engine_names_free(names, n);
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"status\":\"%s\",\"version\":\"%s\",\"uptimeSeconds\":%.3f,"
               "\"subscribers\":%u,\"auth\":%s,\"databases\":[%.*s]}",
               failing ? "degraded" : "ok", api_of(c)->version, uptime_s(c),
               live_count(api_of(c)->live),
               __atomic_load_n(&c->gate->auth_required, __ATOMIC_ACQUIRE) ? "true" : "false",
               (int)dbs.len, dbs.ptr ? dbs.ptr : "");
    buf_fini(&dbs);
    out_json(c->req, 200, &b);
}

/* ---- metrics ---- */

/* The per-database metric families: name, type, help. */
static const struct {
    const char *name, *type, *help;
} DB_METRICS[] = {
    {"annals_appends_total", "counter",
     "Acknowledged append requests since start (appends/commits is the group-commit factor)."},
    {"annals_commits_total", "counter", "Durable write commits (one log fdatasync each)."},
    {"annals_events", "gauge", "Events stored (the head position)."},
    {"annals_streams", "gauge", "Streams."},
    {"annals_fsyncs_total", "counter", "Event-log fsyncs since start."},
    {"annals_fsync_seconds_total", "counter", "Time spent in event-log fsyncs."},
    {"annals_commit_seconds_total", "counter", "Time spent in durable commits."},
    {"annals_bytes_on_disk", "gauge", "Bytes of the database's index file."},
    {"annals_index_lag_events", "gauge", "Events not indexed yet."},
    {"annals_writer_queue_depth", "gauge", "Appends queued for the writer."},
    {"annals_index_commits_total", "counter", "Index transactions since start."},
    {"annals_compactions_total", "counter", "Compactions that rewrote the log since start."},
    {"annals_compaction_reclaimed_bytes_total", "counter",
     "Log bytes reclaimed by compactions since start."},
};
enum { NDB_METRICS = sizeof DB_METRICS / sizeof DB_METRICS[0] };

/* One database's values, in DB_METRICS order. Returns false when it is gone. */
static bool db_metric_values(struct gate_call *c, const char *name, double v[NDB_METRICS])
{
    struct db *db;
    struct db_info in;
    struct compact_status cs;
    if (engine_db_acquire(api_of(c)->engine, name, strlen(name), &db) != 0) {
        return false;
    }
    int rc = engine_db_info(db, &in);
    engine_compact_status(db, &cs);
    engine_db_release(db);
    double vals[NDB_METRICS] = {
        (double)in.appends, (double)in.commits, (double)in.head, (double)in.streams,
        (double)in.syncs, (double)in.sync_ns / 1e9, (double)in.commit_ns / 1e9,
        (double)in.file_bytes, (double)(in.head - in.indexed), (double)in.queue_depth,
        (double)in.index_commits, (double)cs.runs, (double)cs.reclaimed_bytes};
    memcpy(v, vals, sizeof vals);
    return rc == 0;
}

/* Appends every per-database family once (HELP, TYPE, then one series per database). */
static void db_metrics(struct gate_call *c, struct buf *b)
{
    size_t n;
    char **names = engine_db_names(api_of(c)->engine, &n);
    double(*vals)[NDB_METRICS] = xcalloc(n ? n : 1, sizeof(*vals));
    bool *shown = xcalloc(n ? n : 1, sizeof(*shown));
    for (size_t i = 0; i < n; i++) {
        shown[i] = api_key_sees_db(c, names[i]) && db_metric_values(c, names[i], vals[i]);
    }
    for (size_t m = 0; m < NDB_METRICS; m++) {
        buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", DB_METRICS[m].name, DB_METRICS[m].help,
                   DB_METRICS[m].name, DB_METRICS[m].type);
        for (size_t i = 0; i < n; i++) {
            if (shown[i]) {
                buf_printf(b, "%s{database=\"%s\"} %.17g\n", DB_METRICS[m].name, names[i],
                           vals[i][m]);
            }
        }
    }
    free(shown);
    free(vals);
    engine_names_free(names, n);
}

/* One series of a component family. */
struct comp_series {
    char db[LIMIT_DB_NAME_BYTES + 1];
    char name[COMP_NAME_BYTES + 1];
    const char *kind;
    double v[4]; /* calls, errors, seconds, projection lag (-1: not a projection) */
};

/* The components of every database the caller may see, with their counters. */
static struct comp_series *comp_series_of(struct gate_call *c, size_t *out_n)
{
    size_t n, count = 0, cap = 16;
    char **names = engine_db_names(api_of(c)->engine, &n);
    struct comp_series *all = xcalloc(cap, sizeof(*all));
    for (size_t i = 0; i < n; i++) {
        struct db *db;
        struct comp_set *set;
        if (!api_key_sees_db(c, names[i]) ||
            engine_db_acquire(api_of(c)->engine, names[i], strlen(names[i]), &db) != 0) {
            continue;
        }
        if (logic_set(api_of(c)->logic, db, &set) == 0) {
            for (size_t k = 0; k < set->count; k++) {
                if (count == cap) {
                    cap *= 2;
                    all = xrealloc(all, cap * sizeof(*all));
                }
                struct comp_series *cs = &all[count++];
                const struct comp_def *d = &set->defs[k];
                snprintf(cs->db, sizeof cs->db, "%s", names[i]);
                snprintf(cs->name, sizeof cs->name, "%s", d->name);
                cs->kind = comp_kind_name(d->kind);
                struct logic_stats st;
                logic_component_stats(api_of(c)->logic, db, d->name, &st, NULL);
                struct proj_info pi;
                bool proj = d->kind == COMP_PROJECTION &&
                            proj_info(logic_projections(api_of(c)->logic), db, d->name, &pi) == 0;
                double lag = proj ? (double)(pi.head + 1 > pi.position ? pi.head + 1 - pi.position
                                                                       : 0) : -1;
                double v[4] = {(double)st.calls, (double)st.errors, st.busy_ns / 1e9, lag};
                memcpy(cs->v, v, sizeof v);
            }
            comp_set_unref(set);
        }
        engine_db_release(db);
    }
    engine_names_free(names, n);
    *out_n = count;
    return all;
}

/* Appends the per-component families (user code). */
static void comp_metrics(struct gate_call *c, struct buf *b)
{
    static const struct { const char *name, *type, *help; } F[] = {
        {"annals_component_calls_total", "counter",
         "Uses of a component's loaded code (reducer states, views, decisions)."},
        {"annals_component_errors_total", "counter", "... in which its code failed."},
        {"annals_component_seconds_total", "counter", "Time spent in its code."},
        {"annals_projection_lag_events", "gauge", "Positions a projection has not applied."},
    };
    size_t n;
    struct comp_series *all = comp_series_of(c, &n);
    for (size_t f = 0; f < 4; f++) {
        buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", F[f].name, F[f].help, F[f].name,
                   F[f].type);
        for (size_t i = 0; i < n; i++) {
            if (all[i].v[f] >= 0) {
                buf_printf(b, "%s{database=\"%s\",component=\"%s\",kind=\"%s\"} %.17g\n",
                           F[f].name, all[i].db, all[i].name, all[i].kind, all[i].v[f]);
            }
        }
    }
    free(all);
}

void api_metrics_get(struct gate_call *c)
{
    size_t nroutes = gate_route_count(c->gate);
    nroutes = nroutes < METRICS_ROUTES ? nroutes : METRICS_ROUTES;
    char(*text)[112] = xcalloc(nroutes ? nroutes : 1, sizeof(*text));
    const char **labels = xcalloc(nroutes ? nroutes : 1, sizeof(*labels));
    for (size_t i = 0; i < nroutes; i++) {
        gate_route_label(c->gate, (int)i, text[i], sizeof text[i]);
        labels[i] = text[i];
    }
    struct buf b;
    buf_init(&b);
    metrics_render_requests(api_of(c)->metrics, labels, (int)nroutes, &b);
    free(labels);
    free(text);
    db_metrics(c, &b);
    comp_metrics(c, &b);
    struct http_server *srv = __atomic_load_n(&api_of(c)->srv, __ATOMIC_ACQUIRE);
    buf_printf(&b, "# HELP annals_open_connections Open client connections.\n"
                   "# TYPE annals_open_connections gauge\n"
                   "annals_open_connections %u\n"
                   "# HELP annals_subscribers Live subscribers (SSE, WebSocket).\n"
                   "# TYPE annals_subscribers gauge\n"
                   "annals_subscribers %u\n"
                   "# HELP annals_uptime_seconds Seconds since the server started.\n"
                   "# TYPE annals_uptime_seconds gauge\n"
                   "annals_uptime_seconds %.3f\n",
               srv ? http_server_connections(srv) : 0, live_count(api_of(c)->live),
               uptime_s(c));
    http_respond(c->req, 200, &b, "text/plain; version=0.0.4; charset=utf-8");
}

void api_observe(void *arg, struct http_req *req, int tag, unsigned status, uint64_t ns)
{
    struct api *api = arg;
    metrics_observe(api->metrics, tag, status, ns);
    enum log_level lvl = status >= 500 ? LOG_WARN : LOG_DEBUG;
    if (log_enabled(lvl) && !req) {
        log_request(lvl, "", "", "", 0, status, 0); /* framing or limit errors of the HTTP layer */
    } else if (log_enabled(lvl)) {
        struct slice path = http_req_path(req);
        log_request(lvl, http_req_request_id(req), http_req_method(req), path.ptr, path.len,
                    status, (double)ns / 1e6);
    }
}
