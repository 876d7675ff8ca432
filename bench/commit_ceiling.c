/* In-process LMDB group-commit ceiling: how many single-event appends per second the store
 * can make durable on this disk, when K appends share one commit (K = 1, 8, 32, 64, 128),
 * without HTTP. Prints commits/s, events/s and commit latency p50/p99. Usage:
 * commit_ceiling [dir] [seconds-per-case]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "util/timeutil.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Completion counter shared with the writer thread. */
struct waiter {
    int pending;
};

static void on_done(struct append_req *r)
{
    struct waiter *w = r->arg;
    if (r->err) {
        fprintf(stderr, "append failed: %d\n", r->err);
        exit(1);
    }
    __atomic_sub_fetch(&w->pending, 1, __ATOMIC_RELEASE);
}

static void run_case(struct db *db, int k, double seconds)
{
    static const char data[] = "{\"n\":1,\"text\":\"hello world\"}";
    struct append_event *evs = calloc((size_t)k, sizeof(*evs));
    struct append_req *reqs = calloc((size_t)k, sizeof(*reqs));
    char (*names)[32] = calloc((size_t)k, 32);
    size_t cap = 1 << 20, nlat = 0;
    uint64_t *lat = malloc(cap * sizeof(*lat));
    uint64_t start = time_mono_ns(), events = 0, commits = 0;
    struct waiter w;
    while (time_mono_ns() - start < (uint64_t)(seconds * 1e9)) {
        w.pending = k;
        uint64_t t0 = time_mono_ns();
        for (int i = 0; i < k; i++) {
            snprintf(names[i], 32, getenv("ONE") ? "one" : "s-%d-%llu", i, (unsigned long long)(commits % 1000));
            evs[i] = (struct append_event){
                .type = {"bench.appended", 14}, .data = {data, sizeof data - 1},
                .metadata = {"{}", 2}, .tags = {"[]", 2}};
            reqs[i] = (struct append_req){.stream = {names[i], strlen(names[i])},
                                          .events = &evs[i], .count = 1, .done = on_done,
                                          .arg = &w};
            engine_append(db, &reqs[i]);
        }
        while (__atomic_load_n(&w.pending, __ATOMIC_ACQUIRE) > 0) {
        }
        if (nlat < cap) {
            lat[nlat++] = time_mono_ns() - t0;
        }
        events += (uint64_t)k;
        commits++;
    }
    double el = (double)(time_mono_ns() - start) / 1e9;
    qsort(lat, nlat, sizeof(*lat), cmp_u64);
    printf("  batch %4d: %8.0f events/s  %6.0f rounds/s  round p50 %.2f ms  p99 %.2f ms\n", k,
           (double)events / el, (double)commits / el, (double)lat[nlat / 2] / 1e6,
           (double)lat[nlat * 99 / 100] / 1e6);
    free(evs);
    free(reqs);
    free(names);
    free(lat);
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
    printf("LMDB group-commit ceiling (in process, durable commits, %s):\n", dir);
    int ks[] = {1, 8, 32, 64, 128};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        run_case(db, ks[i], seconds);
    }
    engine_db_release(db);
    engine_close(e);
    return 0;
}
