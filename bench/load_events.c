/* Loads events into a data directory through the engine (no HTTP), for the query benchmark:
 * appends up to TOTAL events to the "default" database in 1000-event requests over 1000
 * streams of the category "load", every 10,000th event of type "bench.rare" (the rest
 * "bench.common", tagged with one of 16 tags). Continues from what the database holds, so a
 * second run grows it. Closing the engine indexes everything.
 * Usage: load_events DATA_DIR TOTAL. Prints events/s of the load and of the final indexing. */
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "util/timeutil.h"

enum { BATCH = 1000, STREAMS = 1000, RARE_EVERY = 10000, INFLIGHT = 8 };

struct slot {
    struct append_event evs[BATCH];
    struct append_part part;
    struct append_req req;
    char stream[32];
    sem_t done;
    int err;
};

static void on_done(struct append_req *r)
{
    struct slot *s = r->arg;
    s->err = r->err;
    sem_post(&s->done);
}

static const char *const TAGS[] = {"[\"k:0\"]", "[\"k:1\"]", "[\"k:2\"]", "[\"k:3\"]",
                                   "[\"k:4\"]", "[\"k:5\"]", "[\"k:6\"]", "[\"k:7\"]",
                                   "[\"k:8\"]", "[\"k:9\"]", "[\"k:a\"]", "[\"k:b\"]",
                                   "[\"k:c\"]", "[\"k:d\"]", "[\"k:e\"]", "[\"k:f\"]"};

static void fill(struct slot *s, uint64_t first_pos, uint64_t n)
{
    static const char data[] = "{\"n\":1,\"text\":\"hello world\"}";
    snprintf(s->stream, sizeof s->stream, "load-%llu",
             (unsigned long long)(first_pos / BATCH % STREAMS));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t pos = first_pos + i;
        bool rare = pos % RARE_EVERY == 0;
        s->evs[i] = (struct append_event){
            .type = rare ? (struct slice){"bench.rare", 10} : (struct slice){"bench.common", 12},
            .data = {data, sizeof data - 1},
            .metadata = {"{}", 2},
            .tags = {TAGS[pos % 16], 7}};
    }
    s->part = (struct append_part){.stream = {s->stream, strlen(s->stream)}, .events = s->evs,
                                   .count = n};
    s->req = (struct append_req){.parts = &s->part, .nparts = 1, .done = on_done, .arg = s};
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: load_events DATA_DIR TOTAL\n");
        return 1;
    }
    uint64_t total = strtoull(argv[2], NULL, 10);
    struct engine_config cfg = {
        .data_dir = argv[1],
        .limits = {.body_bytes = 1 << 22, .batch_events = BATCH, .event_bytes = 1 << 20,
                   .map_bytes = 64ull << 30}};
    struct engine *e;
    struct db *db;
    if (engine_open(&cfg, &e) || engine_db_acquire(e, "default", 7, &db)) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 1;
    }
    struct db_info info;
    engine_db_info(db, &info);
    uint64_t next = info.head + 1, start_head = info.head;
    static struct slot slots[INFLIGHT];
    for (int i = 0; i < INFLIGHT; i++) {
        sem_init(&slots[i].done, 0, 1);
    }
    uint64_t t0 = time_mono_ns();
    int rc = 0;
    for (int k = 0; next <= total && !rc; k = (k + 1) % INFLIGHT) {
        struct slot *s = &slots[k];
        sem_wait(&s->done);
        rc = s->err;
        uint64_t n = total - next + 1 < BATCH ? total - next + 1 : BATCH;
        fill(s, next, n);
        next += n;
        if (!rc && engine_append(db, &s->req) != 0) {
            rc = -1;
            sem_post(&s->done);
        }
    }
    for (int i = 0; i < INFLIGHT; i++) {
        sem_wait(&slots[i].done);
        rc = rc ? rc : slots[i].err;
    }
    double load_s = (double)(time_mono_ns() - t0) / 1e9;
    engine_db_info(db, &info);
    engine_db_release(db);
    uint64_t t1 = time_mono_ns();
    engine_close(e); /* indexes what is left */
    double close_s = (double)(time_mono_ns() - t1) / 1e9;
    uint64_t added = info.head - start_head;
    printf("loaded %llu events (head %llu) in %.1f s = %.0f events/s; final indexing %.1f s%s\n",
           (unsigned long long)added, (unsigned long long)info.head, load_s,
           load_s > 0 ? (double)added / load_s : 0.0, close_s, rc ? " (FAILED)" : "");
    return rc ? 1 : 0;
}
