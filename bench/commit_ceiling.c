/* In-process group-commit ceiling: T threads (1, 8, 32, 64, 128) each append single events in
 * a closed loop through the engine (no HTTP), so the writer batches whatever is queued, as it
 * does under real load. Prints events/s, events per commit, and append latency p50/p99.
 * Streams: each thread its own streams (default), or all one stream with ONE=1.
 * Usage: commit_ceiling [dir] [seconds-per-case]. */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "util/timeutil.h"

/* One appending thread. */
struct worker {
    struct db *db;        /* borrowed */
    int id;               /* thread index */
    uint64_t deadline;    /* monotonic ns */
    sem_t done;           /* posted by the writer */
    uint64_t *lat;        /* latencies, ns */
    size_t nlat, cap;     /* used, allocated */
    int err;              /* first error */
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void on_done(struct append_req *r)
{
    struct worker *w = r->arg;
    if (r->err && !w->err) {
        w->err = r->err;
    }
    sem_post(&w->done);
}

static void *worker_main(void *arg)
{
    static const char data[] = "{\"n\":1,\"text\":\"hello world\"}";
    struct worker *w = arg;
    char name[48];
    for (uint64_t i = 0; time_mono_ns() < w->deadline && !w->err; i++) {
        if (getenv("ONE")) {
            snprintf(name, sizeof name, "one");
        } else {
            snprintf(name, sizeof name, "t%d-%llu", w->id, (unsigned long long)(i % 16));
        }
        struct append_event ev = {.type = {"bench.appended", 14}, .data = {data, sizeof data - 1},
                                  .metadata = {"{}", 2}, .tags = {"[]", 2}};
        struct append_part part = {.stream = {name, strlen(name)}, .events = &ev, .count = 1};
        struct append_req r = {.parts = &part, .nparts = 1, .done = on_done, .arg = w};
        uint64_t t0 = time_mono_ns();
        if (engine_append(w->db, &r) != 0) {
            w->err = -1;
            break;
        }
        sem_wait(&w->done);
        if (w->nlat == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 4096;
            w->lat = realloc(w->lat, w->cap * sizeof(*w->lat));
        }
        w->lat[w->nlat++] = time_mono_ns() - t0;
    }
    return NULL;
}

static void run_case(struct db *db, int threads, double seconds)
{
    struct db_info before, after;
    engine_db_info(db, &before);
    struct worker *ws = calloc((size_t)threads, sizeof(*ws));
    pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
    uint64_t start = time_mono_ns();
    for (int i = 0; i < threads; i++) {
        ws[i] = (struct worker){.db = db, .id = i, .deadline = start + (uint64_t)(seconds * 1e9)};
        sem_init(&ws[i].done, 0, 0);
        pthread_create(&tids[i], NULL, worker_main, &ws[i]);
    }
    size_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        total += ws[i].nlat;
    }
    double el = (double)(time_mono_ns() - start) / 1e9;
    engine_db_info(db, &after);
    uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
    size_t k = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof(*all));
        k += ws[i].nlat;
        free(ws[i].lat);
        if (ws[i].err) {
            printf("  thread %d failed: %d\n", i, ws[i].err);
        }
    }
    qsort(all, total, sizeof(*all), cmp_u64);
    uint64_t commits = after.commits - before.commits;
    double commit_ms = commits ? (double)(after.commit_ns - before.commit_ns) / 1e6 / (double)commits : 0;
    printf("  %3d appenders: %8.0f events/s  %6.1f events/commit  commit %.2f ms  p50 %.2f ms  p99 %.2f ms\n",
           threads, (double)total / el, commits ? (double)total / (double)commits : 0.0, commit_ms,
           total ? (double)all[total / 2] / 1e6 : 0.0,
           total ? (double)all[total * 99 / 100] / 1e6 : 0.0);
    free(all);
    free(ws);
    free(tids);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/annals-ceiling";
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        return 1;
    }
    struct engine_config cfg = {
        .data_dir = dir,
        .limits = {.body_bytes = 1 << 22, .batch_events = 1000, .event_bytes = 1 << 20,
                   .map_bytes = 8ull << 30}};
    struct engine *e;
    struct db *db;
    if (engine_open(&cfg, &e) || engine_db_acquire(e, "default", 7, &db)) {
        fprintf(stderr, "cannot open %s\n", dir);
        return 1;
    }
    printf("group-commit ceiling, in process, durable commits (%s, %s):\n", dir,
           getenv("ONE") ? "one stream" : "16 streams per appender");
    int ts[] = {1, 8, 32, 64, 128};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        run_case(db, ts[i], seconds);
    }
    engine_db_release(db);
    engine_close(e);
    return 0;
}
