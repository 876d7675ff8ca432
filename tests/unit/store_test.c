/* The store and the engine's write path on a real LMDB directory: group commit, expected
 * versions, persistence across reopen, verify detecting damage. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <sys/stat.h>

#include <lmdb.h>

#include "engine/engine.h"
#include "query/filter.h"
#include "store/log.h"
#include "store/snapshot.h"
#include "store/store.h"
#include "unit.h"
#include "util/errors.h"
#include "util/timeutil.h"

static void fresh_dir(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/annals-unit-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static const struct limits LIM = {.body_bytes = 1 << 20, .batch_events = 100,
                                  .event_bytes = 1 << 16, .map_bytes = 64 << 20};

struct done_flag {
    int n;
};

static void on_done(struct append_req *r)
{
    __atomic_add_fetch(&((struct done_flag *)r->arg)->n, 1, __ATOMIC_RELEASE);
}

static int append_one(struct db *db, const char *stream, struct expect ex, uint64_t *pos)
{
    struct append_event ev = {.type = {"T", 1}, .data = {"{\"k\":1}", 7},
                              .metadata = {"{}", 2}, .tags = {"[]", 2}};
    struct done_flag f = {0};
    struct append_part part = {.stream = {stream, strlen(stream)}, .events = &ev, .count = 1,
                               .expect = ex};
    struct append_req r = {.parts = &part, .nparts = 1, .done = on_done, .arg = &f};
    CHECK(engine_append(db, &r) == 0);
    while (!__atomic_load_n(&f.n, __ATOMIC_ACQUIRE)) {
        usleep(100);
    }
    if (pos) {
        *pos = ev.position;
    }
    return r.err;
}

static int count_event(void *arg, const struct event_rec *ev)
{
    (void)ev;
    (*(int *)arg)++;
    return 0;
}

TEST(append_read_reopen_verify)
{
    char dir[256];
    fresh_dir(dir, sizeof dir);
    struct engine_config cfg = {.data_dir = dir, .limits = LIM};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct expect any = {EXPECT_ANY, 0};
    struct expect v0 = {EXPECT_VERSION, 0};
    uint64_t pos = 0;
    ASSERT_EQ(append_one(db, "a", v0, &pos), 0);
    ASSERT_EQ(pos, 1);
    ASSERT_EQ(append_one(db, "a", v0, NULL), ERR_CONFLICT);
    ASSERT_EQ(append_one(db, "b", any, &pos), 0);
    ASSERT_EQ(pos, 2);
    engine_db_release(db);
    engine_close(e);
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct stream_rec s;
    int n = 0;
    ASSERT_EQ(engine_read_stream(db, (struct slice){"a", 1}, NULL, 1, false, 10, count_event, &n, &s, NULL),
              0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(s.version, 1);
    ASSERT_EQ(append_one(db, "a", (struct expect){EXPECT_VERSION, 1}, &pos), 0);
    ASSERT_EQ(pos, 3);
    engine_db_release(db);
    engine_close(e);
    char sdir[300];
    snprintf(sdir, sizeof sdir, "%s/dbs/default", dir);
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(sdir, LIM.map_bytes, &rep), 0);
    ASSERT_EQ(rep.events_checked, 3);
}

/* ---- one append naming a stream in several parts ---- */

/* Three parts, streams a, b, a, one event each (event i's data is i). */
struct aba {
    struct append_event ev[3];
    struct append_part parts[3];
    struct append_req req;
    struct done_flag done;
};

static void aba_init(struct aba *x)
{
    static const char *const streams[] = {"a", "b", "a"};
    static const char *const data[] = {"0", "1", "2"};
    memset(x, 0, sizeof(*x));
    for (size_t i = 0; i < 3; i++) {
        x->ev[i] = (struct append_event){.type = {"T", 1}, .data = {data[i], 1},
                                         .metadata = {"{}", 2}, .tags = {"[]", 2}};
        x->parts[i] = (struct append_part){.stream = {streams[i], 1}, .events = &x->ev[i],
                                           .count = 1};
    }
    x->req = (struct append_req){.parts = x->parts, .nparts = 3, .done = on_done,
                                 .arg = &x->done};
}

static void wait_done(struct done_flag *f, int n)
{
    while (__atomic_load_n(&f->n, __ATOMIC_ACQUIRE) < n) {
        usleep(100);
    }
}

/* Queues x, waits for it and returns its err. */
static int aba_append(struct db *db, struct aba *x)
{
    ASSERT_EQ(engine_append(db, &x->req), 0);
    wait_done(&x->done, 1);
    return x->req.err;
}

/* What a read of a stream saw: positions and data of its events in order. */
struct a_read {
    int n;
    uint64_t pos[4];
    uint64_t version[4];
    char data[4];
};

static int take_a(void *arg, const struct event_rec *ev)
{
    struct a_read *s = arg;
    CHECK(s->n < 4 && ev->data.len == 1);
    s->pos[s->n] = ev->position;
    s->version[s->n] = ev->version;
    s->data[s->n++] = ev->data.ptr[0];
    return 0;
}

/* Stream a begins with events "0" (version 1, position p + 1) and "2" (version 2, p + 3). */
static void check_stream_a(struct db *db, uint64_t p)
{
    struct a_read seen = {0};
    struct stream_rec s;
    ASSERT_EQ(engine_read_stream(db, (struct slice){"a", 1}, NULL, 1, false, 2, take_a, &seen,
                                 &s, NULL), 0);
    ASSERT_EQ(seen.n, 2);
    ASSERT_EQ(s.first_pos, p + 1);
    ASSERT_EQ(seen.pos[0], p + 1);
    ASSERT_EQ(seen.pos[1], p + 3);
    ASSERT_EQ(seen.version[0], 1);
    ASSERT_EQ(seen.version[1], 2);
    CHECK(seen.data[0] == '0' && seen.data[1] == '2');
}

TEST(a_stream_repeated_in_parts_gets_positions_in_request_order)
{
    char dir[256];
    fresh_dir(dir, sizeof dir);
    struct engine_config cfg = {.data_dir = dir, .limits = LIM};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    uint64_t p = 0;
    ASSERT_EQ(append_one(db, "x", (struct expect){EXPECT_ANY, 0}, &p), 0);
    struct aba x;
    aba_init(&x);
    ASSERT_EQ(aba_append(db, &x), 0);
    for (size_t i = 0; i < 3; i++) {
        ASSERT_EQ(x.ev[i].position, p + 1 + i);
    }
    ASSERT_EQ(x.ev[0].version, 1);
    ASSERT_EQ(x.ev[1].version, 1);
    ASSERT_EQ(x.ev[2].version, 2);
    ASSERT_EQ(x.parts[2].actual_version, 1); /* a as part 0 left it */
    check_stream_a(db, p);
    ASSERT_EQ(append_one(db, "a", (struct expect){EXPECT_VERSION, 2}, NULL), 0); /* a is at 2 */
    engine_db_release(db);
    engine_close(e);
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    check_stream_a(db, p);
    struct stream_rec s;
    ASSERT_EQ(engine_stream_info(db, (struct slice){"a", 1}, NULL, &s), 0);
    ASSERT_EQ(s.version, 3);
    ASSERT_EQ(engine_stream_info(db, (struct slice){"b", 1}, NULL, &s), 0);
    ASSERT_EQ(s.version, 1);
    ASSERT_EQ(s.first_pos, p + 2);
    engine_db_release(db);
    engine_close(e);
    char sdir[300];
    snprintf(sdir, sizeof sdir, "%s/dbs/default", dir);
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(sdir, LIM.map_bytes, &rep), 0);
    ASSERT_EQ(rep.events_checked, 5);
}

TEST(a_stream_repeated_in_parts_in_one_batch_and_as_a_duplicate)
{
    char dir[256];
    fresh_dir(dir, sizeof dir);
    struct engine_config cfg = {.data_dir = dir, .limits = LIM};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct aba x, y;
    aba_init(&x);
    aba_init(&y);
    for (size_t i = 0; i < 3; i++) { /* client ids: a retry is a duplicate */
        x.ev[i].has_id = true;
        memset(x.ev[i].id, 0x40 + (int)i, sizeof x.ev[i].id);
    }
    y.parts[0].stream = y.parts[2].stream = (struct slice){"b", 1}; /* b, b, b */
    y.req.arg = x.req.arg = &x.done;
    ASSERT_EQ(engine_append(db, &x.req), 0); /* likely one batch: y sees x's states there */
    ASSERT_EQ(engine_append(db, &y.req), 0);
    wait_done(&x.done, 2);
    ASSERT_EQ(x.req.err, 0);
    ASSERT_EQ(y.req.err, 0);
    ASSERT_EQ(x.ev[2].version, 2);
    for (size_t i = 0; i < 3; i++) {
        ASSERT_EQ(y.ev[i].version, 2 + i);
        ASSERT_EQ(y.ev[i].position, 4 + i);
    }
    struct aba retry = x;
    retry.parts[0].events = &retry.ev[0];
    retry.parts[1].events = &retry.ev[1];
    retry.parts[2].events = &retry.ev[2];
    retry.req.parts = retry.parts;
    retry.req.arg = &retry.done;
    retry.done.n = 0;
    ASSERT_EQ(aba_append(db, &retry), 0);
    CHECK(retry.req.duplicate);
    for (size_t i = 0; i < 3; i++) {
        ASSERT_EQ(retry.ev[i].position, x.ev[i].position);
        ASSERT_EQ(retry.ev[i].version, x.ev[i].version);
    }
    ASSERT_EQ(engine_db_head(db), 6);
    check_stream_a(db, 0);
    engine_db_release(db);
    engine_close(e);
}

TEST(a_stream_repeated_in_parts_is_held_to_its_size_limit_as_a_whole)
{
    char dir[256];
    fresh_dir(dir, sizeof dir);
    struct engine_config cfg = {.data_dir = dir, .limits = LIM};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    struct aba x;
    aba_init(&x);
    uint64_t one = engine_event_bytes(x.parts[0].stream, &x.ev[0]);
    struct db_settings set = {.max_stream_bytes = 2 * one - 1}; /* a's parts fit one by one */
    ASSERT_EQ(engine_db_create(e, "small", 5, &set), 0);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "small", 5, &db), 0);
    ASSERT_EQ(aba_append(db, &x), ERR_CONFLICT);
    ASSERT_EQ(x.req.conflict, CONFLICT_TOO_LARGE);
    ASSERT_EQ(x.req.failed, 2);
    ASSERT_EQ(engine_db_head(db), 0); /* nothing written */
    set.max_stream_bytes = 2 * one;
    ASSERT_EQ(engine_db_set_settings(db, &set), 0);
    aba_init(&x);
    ASSERT_EQ(aba_append(db, &x), 0);
    ASSERT_EQ(engine_db_head(db), 3);
    aba_init(&x); /* a holds 2 * one bytes now: one more event in any part is too many */
    x.parts[0].stream = (struct slice){"c", 1};
    ASSERT_EQ(aba_append(db, &x), ERR_CONFLICT);
    ASSERT_EQ(x.req.conflict, CONFLICT_TOO_LARGE);
    ASSERT_EQ(x.req.failed, 2);
    engine_db_release(db);
    engine_close(e);
}

TEST(a_stream_repeated_with_an_expectation_is_refused)
{
    char dir[256];
    fresh_dir(dir, sizeof dir);
    struct engine_config cfg = {.data_dir = dir, .limits = LIM};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct aba x;
    aba_init(&x);
    x.parts[2].expect = (struct expect){EXPECT_VERSION, 1};
    ASSERT_EQ(engine_append(db, &x.req), ERR_INVALID);
    ASSERT_EQ(x.req.fault.part, 2);
    ASSERT_STR(x.req.fault.leaf, "expectedVersion");
    ASSERT_EQ(engine_db_head(db), 0);
    engine_db_release(db);
    engine_close(e);
}

static void on_deleted(void *arg, int err)
{
    *(int *)arg = err;
}

TEST(database_delete_waits_for_last_reference)
{
    char dir[256];
    fresh_dir(dir, sizeof dir);
    struct engine_config cfg = {.data_dir = dir, .limits = LIM};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    ASSERT_EQ(engine_db_create(e, "held", 4, NULL), 0);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "held", 4, &db), 0);
    int deleted = -1;
    ASSERT_EQ(engine_db_delete(e, "held", 4, on_deleted, &deleted), 0);
    ASSERT_EQ(deleted, -1); /* still held */
    struct db *again;
    ASSERT_EQ(engine_db_acquire(e, "held", 4, &again), ERR_NOTFOUND);
    struct expect any = {EXPECT_ANY, 0};
    struct append_event ev = {.type = {"T", 1}, .data = {"1", 1}, .metadata = {"{}", 2},
                              .tags = {"[]", 2}};
    struct append_part part = {.stream = {"s", 1}, .events = &ev, .count = 1, .expect = any};
    struct append_req r = {.parts = &part, .nparts = 1};
    ASSERT_EQ(engine_append(db, &r), ERR_GONE);
    engine_db_release(db);
    ASSERT_EQ(deleted, 0);
    char path[300];
    snprintf(path, sizeof path, "%s/dbs/held", dir);
    CHECK(access(path, F_OK) != 0);
    engine_close(e);
}

TEST(database_create_delete)
{
    char dir[256];
    fresh_dir(dir, sizeof dir);
    struct engine_config cfg = {.data_dir = dir, .limits = LIM};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    ASSERT_EQ(engine_db_create(e, "two", 3, NULL), 0);
    ASSERT_EQ(engine_db_create(e, "two", 3, NULL), ERR_EXISTS);
    ASSERT_EQ(engine_db_create(e, "Two", 3, NULL), ERR_INVALID);
    ASSERT_EQ(engine_db_create(e, "-x", 2, NULL), ERR_INVALID);
    size_t count;
    char **names = engine_db_names(e, &count);
    ASSERT_EQ(count, 2);
    ASSERT_STR(names[0], "default");
    ASSERT_STR(names[1], "two");
    engine_names_free(names, count);
    int deleted = -1;
    ASSERT_EQ(engine_db_delete(e, "two", 3, on_deleted, &deleted), 0);
    ASSERT_EQ(deleted, 0); /* nothing held it: gone before returning */
    ASSERT_EQ(engine_db_delete(e, "two", 3, on_deleted, &deleted), ERR_NOTFOUND);
    char path[300];
    snprintf(path, sizeof path, "%s/dbs/two", dir);
    CHECK(access(path, F_OK) != 0);
    engine_close(e);
}

/* ---- the store directly: crash recovery of the unindexed tail ---- */

static void store_dir(char *dir, size_t n)
{
    fresh_dir(dir, n);
    CHECK(mkdir(dir, 0750) == 0);
}

/* Appends count single events to streams s0..s2 through the store API. */
static void store_fill(struct store *st, int count)
{
    for (int i = 0; i < count; i++) {
        struct store_head h;
        store_head(st, &h);
        char name[8];
        snprintf(name, sizeof name, "s%d", i % 3);
        struct stream_rec s;
        int rc = store_stream_state(st, NULL, (struct slice){name, 2}, &s);
        uint64_t version = rc == ERR_NOTFOUND ? 1 : s.version + 1;
        struct event_rec ev = {.position = h.position + 1, .version = version,
                               .stream = {name, 2}, .type = {"T", 1}, .data = {"1", 1},
                               .metadata = {"{}", 2}, .tags = {"[]", 2}};
        be64_put(ev.id, ev.position); /* event ids are unique per database */
        ASSERT_EQ(store_append(st, &ev, 1, NULL, 0), 0);
    }
}

/* Runs store_fill in a child that then is killed (no close, no final index commit). */
static void crash_after_fill(const char *dir, int count)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct store *st;
        if (store_open(dir, 64 << 20, true, (struct slice){NULL, 0}, &st) != 0) {
            _exit(3);
        }
        store_fill(st, count);
        raise(SIGKILL); /* a crash: no close, no final index commit, no exit handlers */
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static int collect(void *arg, const struct event_rec *ev)
{
    uint64_t *last = arg;
    CHECK(ev->position == *last + 1);
    *last = ev->position;
    return 0;
}

TEST(recovers_unindexed_tail_after_crash)
{
    char dir[256];
    store_dir(dir, sizeof dir);
    crash_after_fill(dir, 50);
    struct store *st;
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    struct store_reader *r;
    ASSERT_EQ(store_read_begin(st, &r), 0);
    ASSERT_EQ(store_reader_head(r), 50);
    uint64_t last = 0;
    ASSERT_EQ(store_scan_log(r, 1, false, 1000, collect, &last), 0);
    ASSERT_EQ(last, 50);
    struct stream_rec s;
    ASSERT_EQ(store_reader_stream(r, (struct slice){"s1", 2}, &s), 0);
    ASSERT_EQ(s.version, 17);
    store_read_end(r);
    store_fill(st, 10); /* versions continue after recovery */
    ASSERT_EQ(store_stream_state(st, NULL, (struct slice){"s1", 2}, &s), 0);
    ASSERT_EQ(s.version, 20);
    store_close(st);
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(dir, 64 << 20, &rep), 0);
    ASSERT_EQ(rep.events_checked, 60);
}

static void append_bytes(const char *dir, const void *p, size_t n, long at)
{
    char path[300];
    snprintf(path, sizeof path, "%s/events.log", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    CHECK(fseek(f, at, SEEK_SET) == 0);
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static long log_end_of(const char *dir)
{
    struct store_verify_report rep;
    (void)rep;
    char path[300];
    snprintf(path, sizeof path, "%s/events.log", dir);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    long off = 0;
    uint8_t h[8];
    while (fseek(f, off, SEEK_SET) == 0 && fread(h, 1, 8, f) == 8) {
        if (be32_get(h) != LOG_BATCH_MAGIC) {
            break;
        }
        off += LOG_BATCH_HEADER + (long)be32_get(h + 4);
    }
    fclose(f);
    return off;
}

TEST(torn_tail_is_wiped_and_corrupt_tail_refused)
{
    char dir[256];
    store_dir(dir, sizeof dir);
    crash_after_fill(dir, 20);
    long end = log_end_of(dir);
    uint8_t torn[] = {0xA1, 0x1A, 0x15, 0x03, 0, 0, 0, 200, 1, 2, 3, 4, 0, 0, 0, 1, 0, 0, 0, 116,
                      3, 9, 9}; /* a batch cut short: its CRC cannot match */
    append_bytes(dir, torn, sizeof torn, end);
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(dir, 64 << 20, &rep), 0);
    CHECK(rep.torn_tail);
    struct store *st;
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    store_fill(st, 5);
    store_close(st);
    ASSERT_EQ(store_verify(dir, 64 << 20, &rep), 0);
    ASSERT_EQ(rep.events_checked, 25);
    CHECK(!rep.torn_tail);

    /* Damage inside the unindexed part, with acknowledged events after it: refuse to open. */
    char dir2[300];
    snprintf(dir2, sizeof dir2, "%s-b", dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir %s", dir2, dir2);
    CHECK(system(cmd) == 0);
    crash_after_fill(dir2, 20);
    uint8_t x = 0x55;
    append_bytes(dir2, &x, 1, LOG_BATCH_HEADER + LOG_FRAME_HEADER + 110); /* first record */
    ASSERT_EQ(store_open(dir2, 64 << 20, false, (struct slice){NULL, 0}, &st), ERR_CORRUPT);
    ASSERT_EQ(store_verify(dir2, 64 << 20, &rep), ERR_CORRUPT);
    ASSERT_EQ(rep.first_bad, 1);
}

/* ---- idempotency records ---- */

/* Appends one event carrying the idempotency record key -> answer "A<key>", status 201. */
static void store_fill_idem(struct store *st, const char *key, int64_t created_us)
{
    struct store_head h;
    store_head(st, &h);
    struct stream_rec s;
    int rc = store_stream_state(st, NULL, (struct slice){"s", 1}, &s);
    struct event_rec ev = {.position = h.position + 1,
                           .version = rc == ERR_NOTFOUND ? 1 : s.version + 1,
                           .stream = {"s", 1}, .type = {"T", 1}, .data = {"1", 1},
                           .metadata = {"{}", 2}, .tags = {"[]", 2}};
    be64_put(ev.id, ev.position);
    char answer[64];
    snprintf(answer, sizeof answer, "A%s", key);
    struct idem_rec ir = {.key = {key, strlen(key)}, .status = 201, .created_us = created_us,
                          .answer = {answer, strlen(answer)}};
    memset(ir.hash, 7, sizeof ir.hash);
    ASSERT_EQ(store_append(st, &ev, 1, &ir, 1), 0);
}

/* Looks key up in a fresh view: 0 and the answer "A<key>", or the error. */
static int find_idem(struct store *st, const char *key, int64_t now_us)
{
    struct store_reader *r;
    ASSERT_EQ(store_read_begin(st, &r), 0);
    struct idem_rec ir;
    int rc = store_find_idem(st, r, (struct slice){key, strlen(key)}, now_us, &ir);
    if (rc == 0) {
        ASSERT_EQ(ir.status, 201);
        CHECK(ir.answer.len == strlen(key) + 1 && ir.answer.ptr[0] == 'A' &&
              memcmp(ir.answer.ptr + 1, key, strlen(key)) == 0);
        CHECK(ir.hash[0] == 7 && ir.hash[31] == 7);
    }
    store_read_end(r);
    return rc;
}

TEST(idempotency_records_survive_crash_and_index_and_expire)
{
    char dir[256];
    store_dir(dir, sizeof dir);
    int64_t t0 = time_now_us(); /* the index purges records older than the TTL */
    pid_t pid = fork();
    if (pid == 0) {
        struct store *st;
        if (store_open(dir, 64 << 20, true, (struct slice){NULL, 0}, &st) != 0) {
            _exit(3);
        }
        store_fill_idem(st, "k1", t0);
        store_fill_idem(st, "k2", t0 + 10);
        store_fill_idem(st, "k1", t0 + 20); /* the same key again (after it expired) */
        raise(SIGKILL);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));
    struct store *st;
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    int64_t day = 86400ll * 1000000;
    ASSERT_EQ(find_idem(st, "k1", t0 + 30), 0); /* recovered from the log (the tail) */
    ASSERT_EQ(find_idem(st, "k2", t0 + 30), 0);
    ASSERT_EQ(find_idem(st, "k3", t0 + 30), ERR_NOTFOUND);
    ASSERT_EQ(find_idem(st, "k2", t0 + 10 + day), ERR_NOTFOUND); /* expired (24 h) */
    store_close(st);
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    ASSERT_EQ(find_idem(st, "k1", t0 + 30), 0); /* from the index now */
    ASSERT_EQ(find_idem(st, "k1", t0 + 10 + day), 0); /* the newer k1 (t0 + 20) lives on */
    store_set_idem_ttl(st, 5);
    ASSERT_EQ(find_idem(st, "k1", t0 + 30), ERR_NOTFOUND);
    store_close(st);
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(dir, 64 << 20, &rep), 0);
    ASSERT_EQ(rep.events_checked, 3);
}

TEST(a_format_4_store_opens_and_is_upgraded)
{
    char dir[256];
    store_dir(dir, sizeof dir);
    struct store *st;
    ASSERT_EQ(store_open(dir, 64 << 20, true, (struct slice){NULL, 0}, &st), 0);
    store_fill(st, 5);
    store_close(st);
    /* make it what format 4 wrote: head format 4, no idempotency tables */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, idem, age;
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_set_maxdbs(env, 16), 0);
    ASSERT_EQ(mdb_env_open(env, dir, 0, 0640), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "idem", 0, &idem), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "idemage", 0, &age), 0);
    ASSERT_EQ(mdb_drop(txn, idem, 1), 0);
    ASSERT_EQ(mdb_drop(txn, age, 1), 0);
    MDB_val k = {4, "head"}, v;
    ASSERT_EQ(mdb_get(txn, meta, &k, &v), 0);
    struct head_rec h;
    ASSERT_EQ(codec_head_decode(v.mv_data, v.mv_size, &h), 0);
    h.format = 4;
    uint8_t enc[HEAD_REC_BYTES];
    v = (MDB_val){codec_head_encode(&h, enc), enc};
    ASSERT_EQ(mdb_put(txn, meta, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(dir, 64 << 20, &rep), 0); /* read-only, without the tables */
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    int64_t now = time_now_us();
    ASSERT_EQ(find_idem(st, "k", now), ERR_NOTFOUND);
    store_fill_idem(st, "k", now);
    store_close(st);
    ASSERT_EQ(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    ASSERT_EQ(mdb_get(txn, meta, &k, &v), 0);
    ASSERT_EQ(codec_head_decode(v.mv_data, v.mv_size, &h), 0);
    ASSERT_EQ(h.format, STORE_FORMAT_VERSION); /* rewritten by the index commit */
    mdb_txn_abort(txn);
    mdb_env_close(env);
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    ASSERT_EQ(find_idem(st, "k", now + 1), 0);
    store_close(st);
    ASSERT_EQ(store_verify(dir, 64 << 20, &rep), 0);
    ASSERT_EQ(rep.events_checked, 6);
}

/* ---- compaction ---- */

/* Appends count events of 200-byte data alternately to streams "gone" and "kept". */
static void store_fill_pairs(struct store *st, int count)
{
    char data[202];
    memset(data, 'x', sizeof data);
    data[0] = data[201] = '"';
    for (int i = 0; i < count; i++) {
        const char *name = i % 2 ? "kept" : "gone";
        struct store_head h;
        store_head(st, &h);
        struct stream_rec s;
        int rc = store_stream_state(st, NULL, (struct slice){name, 4}, &s);
        struct event_rec ev = {.position = h.position + 1,
                               .version = rc == ERR_NOTFOUND ? 1 : s.version + 1,
                               .stream = {name, 4}, .type = {"T", 1},
                               .data = {data, sizeof data}, .metadata = {"{}", 2},
                               .tags = {"[]", 2}};
        be64_put(ev.id, ev.position);
        ASSERT_EQ(store_append(st, &ev, 1, NULL, 0), 0);
    }
}

static bool always(void *arg)
{
    (void)arg;
    return true;
}

static bool keep_kept(void *arg, const struct event_rec *ev)
{
    (*(int *)arg)++;
    return ev->stream.len == 4 && memcmp(ev->stream.ptr, "kept", 4) == 0;
}

struct seen {
    bool redacted;
    size_t data_len;
};

static int look(void *arg, const struct event_rec *ev)
{
    struct seen *s = arg;
    s->redacted = ev->redacted;
    s->data_len = ev->data.len;
    return 0;
}

static bool file_exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

TEST(compaction_redacts_unkept_events_and_keeps_the_chain)
{
    char dir[256];
    store_dir(dir, sizeof dir);
    struct store *st;
    ASSERT_EQ(store_open(dir, 64 << 20, true, (struct slice){NULL, 0}, &st), 0);
    store_fill_pairs(st, 300);
    store_fill_idem(st, "indexed-key", time_now_us()); /* its aux frame goes, the index has it */
    store_close(st); /* indexes all 301 */
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    store_fill_pairs(st, 10);              /* unindexed: copied as they are */
    store_fill_idem(st, "tail-key", time_now_us());
    int asked = 0;
    struct store_compact_spec spec = {.keep = keep_kept, .arg = &asked, .dry_run = true};
    struct store_compact_result res;
    ASSERT_EQ(store_compact(st, &spec, &res), 0);
    ASSERT_EQ(res.redacted, 150);
    ASSERT_EQ(res.generation, 0);
    ASSERT_EQ(asked, 300); /* the keyed event is too small to redact: not asked */
    spec.dry_run = false;
    spec.cancelled = always; /* abandoned: nothing changes, the partial file goes */
    ASSERT_EQ(store_compact(st, &spec, &res), ERR_SHUTDOWN);
    ASSERT_EQ(res.generation, 0);
    CHECK(file_exists(dir, "events.log") && !file_exists(dir, "events.1.log"));
    spec.cancelled = NULL;
    ASSERT_EQ(store_compact(st, &spec, &res), 0);
    ASSERT_EQ(res.redacted, 150);
    ASSERT_EQ(res.examined, 301);
    ASSERT_EQ(res.generation, 1);
    CHECK(res.reclaimed_bytes > 150 * 150);
    ASSERT_EQ(res.log_before - res.log_after, res.reclaimed_bytes);
    CHECK(file_exists(dir, "events.1.log") && !file_exists(dir, "events.log"));

    struct store_reader *r;
    struct seen s = {0};
    ASSERT_EQ(store_read_begin(st, &r), 0);
    ASSERT_EQ(store_get_event(r, 1, look, &s), ERR_NOTFOUND); /* "gone" */
    ASSERT_EQ(store_get_record(r, 1, look, &s), 0);
    CHECK(s.redacted);
    ASSERT_EQ(store_get_event(r, 2, look, &s), 0); /* "kept" */
    CHECK(!s.redacted && s.data_len == 202);
    ASSERT_EQ(store_get_event(r, 310, look, &s), 0); /* the tail moved with the log */
    CHECK(!s.redacted && s.data_len == 202);
    int n = 0;
    ASSERT_EQ(store_scan_log(r, 1, false, 1000, count_event, &n), 0);
    ASSERT_EQ(n, 150 + 12); /* redacted records are skipped */
    store_read_end(r);
    ASSERT_EQ(find_idem(st, "tail-key", time_now_us()), 0);
    ASSERT_EQ(find_idem(st, "indexed-key", time_now_us()), 0);

    ASSERT_EQ(store_compact(st, &spec, &res), 0); /* nothing left to redact (the tail's */
    ASSERT_EQ(res.redacted, 0);                   /* idempotency record, once indexed, goes) */
    store_fill_pairs(st, 4); /* appends go on in the new generation */
    store_close(st);
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(dir, 64 << 20, &rep), 0);
    ASSERT_EQ(rep.events_checked, 316);
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    ASSERT_EQ(store_read_begin(st, &r), 0);
    ASSERT_EQ(store_reader_head(r), 316);
    ASSERT_EQ(store_get_event(r, 315, look, &s), 0);
    store_read_end(r);
    ASSERT_EQ(find_idem(st, "tail-key", time_now_us()), 0);
    ASSERT_EQ(find_idem(st, "indexed-key", time_now_us()), 0);
    store_close(st);
    /* an index that cannot be read next to a compacted log is damage, not an unfinished
     * creation: the store is refused and its log kept (it was once removed as "empty") */
    char path[512];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    ASSERT_EQ(truncate(path, 0), 0);
    CHECK(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st) != 0);
    CHECK(file_exists(dir, "events.1.log"));
}

TEST(an_interrupted_compaction_leaves_the_old_generation_in_force)
{
    char dir[256];
    store_dir(dir, sizeof dir);
    struct store *st;
    ASSERT_EQ(store_open(dir, 64 << 20, true, (struct slice){NULL, 0}, &st), 0);
    store_fill_pairs(st, 20);
    store_close(st);
    /* what a crash in the middle of a compaction leaves: a partial next generation */
    char path[512];
    snprintf(path, sizeof path, "%s/events.1.log", dir);
    FILE *f = fopen(path, "wb");
    ASSERT_EQ(fwrite("partial", 1, 7, f), 7);
    fclose(f);
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    CHECK(!file_exists(dir, "events.1.log"));
    struct store_reader *r;
    ASSERT_EQ(store_read_begin(st, &r), 0);
    ASSERT_EQ(store_reader_head(r), 20);
    store_read_end(r);
    store_close(st);
    ASSERT_EQ(store_remove_files(dir), 0); /* every generation's file goes */
    CHECK(access(dir, F_OK) != 0);
}

/* ---- queries over the unindexed tail: Bloom filters of its blocks skip what cannot match ---- */

enum { BLOOM_EVENTS = 4000 };

/* Event i of the Bloom test: stream s<i%7>, type t<i%5>, tags g<i%11> and u<i>, subject
 * j<i%4> on every third event. */
static void bloom_event(int i, uint64_t version, char *buf, struct event_rec *ev)
{
    char *stream = buf, *type = buf + 16, *tags = buf + 32, *subject = buf + 96;
    snprintf(stream, 16, "s%d", i % 7);
    snprintf(type, 16, "t%d", i % 5);
    snprintf(tags, 64, "[\"g%d\",\"u%d\"]", i % 11, i);
    snprintf(subject, 16, "j%d", i % 4);
    *ev = (struct event_rec){.position = (uint64_t)i + 1, .version = version,
                             .stream = {stream, strlen(stream)}, .type = {type, strlen(type)},
                             .data = {"1", 1}, .metadata = {"{}", 2},
                             .tags = {tags, strlen(tags)},
                             .subject = {subject, i % 3 == 0 ? strlen(subject) : 0}};
    be64_put(ev->id, ev->position);
}

/* Fills a new store with BLOOM_EVENTS events in batches of 100 (fast enough that the indexer,
 * which waits 200 ms, indexes little) in a child that is then killed: the events come back as
 * the unindexed tail when the store is opened again. */
static void bloom_fill_and_crash(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct store *st;
        if (store_open(dir, 64 << 20, true, (struct slice){NULL, 0}, &st) != 0) {
            _exit(3);
        }
        static char bufs[100][128];
        struct event_rec evs[100];
        uint64_t versions[7] = {0};
        for (int b = 0; b < BLOOM_EVENTS / 100; b++) {
            for (int k = 0; k < 100; k++) {
                int i = b * 100 + k;
                bloom_event(i, ++versions[i % 7], bufs[k], &evs[k]);
            }
            if (store_append(st, evs, 100, NULL, 0) != 0) {
                _exit(4);
            }
        }
        raise(SIGKILL);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

struct positions {
    uint64_t pos[BLOOM_EVENTS];
    size_t n;
};

static int take_pos(void *arg, const struct event_rec *ev)
{
    struct positions *ps = arg;
    ps->pos[ps->n++] = ev->position;
    return 0;
}

/* Adds an item of exact patterns to f: field/text pairs, each its own atom. */
static void add_exact_item(struct filter *f, int natoms, const enum filter_field *fields,
                           const char *const *texts)
{
    struct filter_item *it = filter_add_item(f);
    for (int a = 0; a < natoms; a++) {
        struct pattern p = {PAT_EXACT, {texts[a], strlen(texts[a])}};
        ASSERT_EQ(filter_add_atom(f, it, fields[a], &p, 1), 0);
    }
}

/* Runs f over the whole view both ways and checks the answer against filter_match applied to
 * every event; returns the candidates the forward query examined. */
static size_t check_query(struct store_reader *r, const struct filter *f)
{
    static struct positions all, fwd, bwd;
    all.n = fwd.n = bwd.n = 0;
    struct filter none;
    filter_init(&none);
    struct store_query q = {.filter = &none, .from = 1, .to = UINT64_MAX,
                            .limit = BLOOM_EVENTS, .budget = BLOOM_EVENTS};
    struct store_query_result res;
    ASSERT_EQ(store_query(r, &q, take_pos, &all, &res), 0);
    ASSERT_EQ(all.n, BLOOM_EVENTS);
    size_t want = 0;
    static uint64_t expect[BLOOM_EVENTS];
    for (int i = 0; i < BLOOM_EVENTS; i++) {
        char buf[128];
        struct event_rec ev;
        bloom_event(i, 1, buf, &ev);
        if (filter_match(f, &ev)) {
            expect[want++] = ev.position;
        }
    }
    q.filter = f;
    ASSERT_EQ(store_query(r, &q, take_pos, &fwd, &res), 0);
    size_t examined = res.examined;
    q.backward = true;
    q.from = UINT64_MAX;
    q.to = 1;
    ASSERT_EQ(store_query(r, &q, take_pos, &bwd, &res), 0);
    ASSERT_EQ(fwd.n, want);
    ASSERT_EQ(bwd.n, want);
    for (size_t k = 0; k < want; k++) {
        ASSERT_EQ(fwd.pos[k], expect[k]);
        ASSERT_EQ(bwd.pos[k], expect[want - 1 - k]);
    }
    filter_fini(&none);
    return examined;
}

TEST(tail_queries_skip_blocks_their_bloom_filters_rule_out)
{
    char dir[256];
    store_dir(dir, sizeof dir);
    bloom_fill_and_crash(dir);
    struct store *st;
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    struct store_reader *r;
    ASSERT_EQ(store_read_begin(st, &r), 0);
    ASSERT_EQ(store_reader_head(r), BLOOM_EVENTS);

    struct filter f;
    filter_init(&f); /* one event's unique tag: a block or two are read, not the tail */
    add_exact_item(&f, 1, (enum filter_field[]){FF_TAG}, (const char *[]){"u1234"});
    size_t examined = check_query(r, &f);
    CHECK(examined <= 3 * 256);
    filter_fini(&f);

    filter_init(&f); /* an item's atoms all count: a type every block has AND a rare tag */
    add_exact_item(&f, 2, (enum filter_field[]){FF_TYPE, FF_TAG}, (const char *[]){"t3", "u1233"});
    CHECK(check_query(r, &f) <= 3 * 256);
    filter_fini(&f);

    filter_init(&f); /* a tag no event carries: (almost) nothing is read */
    add_exact_item(&f, 1, (enum filter_field[]){FF_TAG}, (const char *[]){"nope"});
    CHECK(check_query(r, &f) <= 2 * 256);
    filter_fini(&f);

    filter_init(&f); /* type AND tag; or a stream; or a subject: every kind of term */
    add_exact_item(&f, 2, (enum filter_field[]){FF_TYPE, FF_TAG}, (const char *[]){"t3", "g7"});
    add_exact_item(&f, 1, (enum filter_field[]){FF_STREAM}, (const char *[]){"s2"});
    add_exact_item(&f, 1, (enum filter_field[]){FF_SUBJECT}, (const char *[]){"j1"});
    check_query(r, &f);
    filter_fini(&f);

    filter_init(&f); /* categories, and two patterns in one atom */
    struct filter_item *it = filter_add_item(&f);
    struct pattern two[2] = {{PAT_EXACT, {"u5", 2}}, {PAT_EXACT, {"u3999", 5}}};
    ASSERT_EQ(filter_add_atom(&f, it, FF_TAG, two, 2), 0);
    add_exact_item(&f, 1, (enum filter_field[]){FF_CATEGORY}, (const char *[]){"s4"});
    check_query(r, &f);
    filter_fini(&f);

    filter_init(&f); /* a prefix pattern: not testable by the filters, every event is read */
    it = filter_add_item(&f);
    struct pattern pre = {PAT_PREFIX, {"u12", 3}};
    ASSERT_EQ(filter_add_atom(&f, it, FF_TAG, &pre, 1), 0);
    size_t scanned = check_query(r, &f);
    filter_fini(&f);

    store_read_end(r);
    struct store_stats ss; /* indexed now >= indexed in the view the queries used */
    ASSERT_EQ(store_stats(st, &ss), 0);
    CHECK(ss.indexed + 1000 <= BLOOM_EVENTS); /* the queries above read the tail */
    CHECK(scanned >= BLOOM_EVENTS - ss.indexed);
    store_close(st);
}

/* ---- the indexer: many streams per transaction, rows carried across transactions ---- */

enum { IX_ROUNDS = 4, IX_PER_ROUND = 3000, IX_STREAMS = 700, IX_TOTAL = IX_ROUNDS * IX_PER_ROUND };

/* The stream of event i: round r writes streams 0..100+200r-1 in a scattered order, so each
 * index transaction holds new streams, streams indexed before, and several events of most. */
static int ix_stream(int i)
{
    int r = i / IX_PER_ROUND;
    return (int)(((long)i * 7919 + r * 13) % (100 + 200 * r));
}

/* Event i: stream ix<ix_stream(i)>, type t<i%3>, tags g<i%5> and u<i>. */
static void ix_event(int i, uint64_t version, char *buf, struct event_rec *ev)
{
    char *stream = buf, *type = buf + 16, *tags = buf + 32;
    snprintf(stream, 16, "ix%d", ix_stream(i));
    snprintf(type, 16, "t%d", i % 3);
    snprintf(tags, 64, "[\"g%d\",\"u%d\"]", i % 5, i);
    *ev = (struct event_rec){.position = (uint64_t)i + 1, .version = version,
                             .stream = {stream, strlen(stream)}, .type = {type, strlen(type)},
                             .data = {"{\"n\":1}", 7}, .metadata = {"{}", 2},
                             .tags = {tags, strlen(tags)}};
    be64_put(ev->id, ev->position);
}

/* Checks that a query for field = text over the whole store returns exactly the positions
 * of the events for which want(i) holds. */
struct ix_positions {
    uint64_t pos[IX_TOTAL];
    size_t n;
};

static int ix_take_pos(void *arg, const struct event_rec *ev)
{
    struct ix_positions *ps = arg;
    CHECK(ps->n < IX_TOTAL);
    ps->pos[ps->n++] = ev->position;
    return 0;
}

static void ix_check_query(struct store_reader *r, enum filter_field field, const char *text,
                           bool (*want)(int i))
{
    static struct ix_positions got;
    got.n = 0;
    struct filter f;
    filter_init(&f);
    add_exact_item(&f, 1, &field, &text);
    struct store_query q = {.filter = &f, .from = 1, .to = UINT64_MAX, .limit = IX_TOTAL,
                            .budget = IX_TOTAL};
    struct store_query_result res;
    ASSERT_EQ(store_query(r, &q, ix_take_pos, &got, &res), 0);
    size_t k = 0;
    for (int i = 0; i < IX_TOTAL; i++) {
        if (want(i)) {
            CHECK(k < got.n);
            ASSERT_EQ(got.pos[k], (uint64_t)i + 1);
            k++;
        }
    }
    ASSERT_EQ(got.n, k);
    CHECK(res.examined <= k + 1); /* the postings, not a scan */
    filter_fini(&f);
}

static bool ix_type1(int i)
{
    return i % 3 == 1;
}

static bool ix_tag4(int i)
{
    return i % 5 == 4;
}

static bool ix_unique(int i)
{
    return i == 4321;
}

struct ix_scan {
    int stream;
    int next; /* the event index to look for next */
};

static int ix_take(void *arg, const struct event_rec *ev)
{
    struct ix_scan *sc = arg;
    while (sc->next < IX_TOTAL && ix_stream(sc->next) != sc->stream) {
        sc->next++;
    }
    ASSERT_EQ(ev->position, (uint64_t)sc->next + 1);
    sc->next++;
    return 0;
}

TEST(index_transactions_keep_stream_rows_entries_and_postings)
{
    char dir[256];
    store_dir(dir, sizeof dir);
    static struct stream_rec want[IX_STREAMS];
    static uint64_t versions[IX_STREAMS];
    memset(want, 0, sizeof want);
    memset(versions, 0, sizeof versions);
    for (int round = 0; round < IX_ROUNDS; round++) {
        struct store *st;
        ASSERT_EQ(store_open(dir, 64 << 20, round == 0, (struct slice){NULL, 0}, &st), 0);
        static char bufs[50][128];
        struct event_rec evs[50];
        for (int b = 0; b < IX_PER_ROUND / 50; b++) {
            for (int k = 0; k < 50; k++) {
                int i = round * IX_PER_ROUND + b * 50 + k;
                ix_event(i, ++versions[ix_stream(i)], bufs[k], &evs[k]);
            }
            ASSERT_EQ(store_append(st, evs, 50, NULL, 0), 0);
        }
        /* the writer's own account of each stream, before the indexer's is read back */
        for (int s = 0; s < IX_STREAMS; s++) {
            char name[16];
            snprintf(name, sizeof name, "ix%d", s);
            int rc = store_stream_state(st, NULL, (struct slice){name, strlen(name)}, &want[s]);
            ASSERT_EQ(rc, versions[s] ? 0 : ERR_NOTFOUND);
        }
        store_close(st); /* indexes the rest: one more transaction */
    }
    struct store *st;
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    struct store_reader *r;
    ASSERT_EQ(store_read_begin(st, &r), 0);
    struct store_stats ss;
    ASSERT_EQ(store_stats(st, &ss), 0);
    ASSERT_EQ(ss.indexed, IX_TOTAL);
    ASSERT_EQ(ss.streams, IX_STREAMS);
    for (int s = 0; s < IX_STREAMS; s++) {
        char name[16];
        snprintf(name, sizeof name, "ix%d", s);
        struct slice n = {name, strlen(name)};
        struct stream_rec got;
        ASSERT_EQ(store_reader_stream(r, n, &got), 0);
        ASSERT_EQ(got.id, want[s].id);
        ASSERT_EQ(got.version, versions[s]);
        ASSERT_EQ(got.version, want[s].version);
        ASSERT_EQ(got.first_pos, want[s].first_pos);
        ASSERT_EQ(got.last_pos, want[s].last_pos);
        ASSERT_EQ(got.created_us, want[s].created_us);
        ASSERT_EQ(got.updated_us, want[s].updated_us);
        ASSERT_EQ(got.bytes, want[s].bytes);
        struct ix_scan sc = {.stream = s, .next = 0};
        ASSERT_EQ(store_scan_stream(r, n, &got, 1, 1, false, IX_TOTAL, ix_take, &sc), 0);
        while (sc.next < IX_TOTAL && ix_stream(sc.next) != s) {
            sc.next++;
        }
        ASSERT_EQ(sc.next, IX_TOTAL); /* every event of the stream was read */
    }
    ix_check_query(r, FF_TYPE, "t1", ix_type1);
    ix_check_query(r, FF_TAG, "g4", ix_tag4);
    ix_check_query(r, FF_TAG, "u4321", ix_unique); /* one of 12,000 terms of one posting */
    store_read_end(r);
    store_close(st);
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(dir, 64 << 20, &rep), 0);
    ASSERT_EQ(rep.events_checked, IX_TOTAL);
}

/* ---- snapshots for online backups (store/snapshot.h) ---- */

static int to_file(void *arg, const void *p, size_t n)
{
    return fwrite(p, 1, n, arg) == n ? 0 : ERR_IO;
}

/* A compaction on a thread of its own (it waits for pins). */
struct bg_compact {
    struct store *st;
    int kept_asked;
    int rc;
    bool done;
};

static void *compact_main(void *arg)
{
    struct bg_compact *b = arg;
    struct store_compact_spec spec = {.keep = keep_kept, .arg = &b->kept_asked};
    struct store_compact_result res;
    b->rc = store_compact(b->st, &spec, &res);
    __atomic_store_n(&b->done, true, __ATOMIC_RELEASE);
    return NULL;
}

/* Copies the pinned store's index and log into copy (a directory) and returns the point. */
static void snapshot_into(struct store *st, const char *copy, struct store_snapshot_point *pt)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data.mdb", copy);
    FILE *f = fopen(path, "wb");
    uint64_t index_bytes;
    ASSERT_EQ(store_snapshot_index(st, to_file, f, &index_bytes), 0);
    fclose(f);
    CHECK(index_bytes > 0);
    ASSERT_EQ(store_snapshot_point(st, pt), 0);
    char name[64];
    store_log_name(pt->generation, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", copy, name);
    f = fopen(path, "wb");
    ASSERT_EQ(store_snapshot_log(st, pt, to_file, f), 0);
    fclose(f);
}

TEST(a_snapshot_of_a_live_store_opens_whole_while_a_compaction_waits)
{
    char dir[256], copy[300];
    store_dir(dir, sizeof dir);
    snprintf(copy, sizeof copy, "%s-copy", dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir %s", copy, copy);
    CHECK(system(cmd) == 0);
    struct store *st;
    ASSERT_EQ(store_open(dir, 64 << 20, true, (struct slice){NULL, 0}, &st), 0);
    store_fill_pairs(st, 300);
    store_close(st); /* indexed */
    ASSERT_EQ(store_open(dir, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    store_fill_pairs(st, 10); /* the unindexed tail: in the copy's log, past its index */
    store_fill_idem(st, "tail-key", time_now_us());
    store_pin(st);
    struct bg_compact bg = {.st = st};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, compact_main, &bg), 0);
    usleep(300000);
    CHECK(!__atomic_load_n(&bg.done, __ATOMIC_ACQUIRE)); /* waits for the pin */
    struct store_snapshot_point pt;
    snapshot_into(st, copy, &pt);
    ASSERT_EQ(pt.position, 311);
    ASSERT_EQ(pt.generation, 0);
    store_fill_pairs(st, 5); /* after the point: not in the copy */
    store_unpin(st);
    pthread_join(t, NULL);
    ASSERT_EQ(bg.rc, 0);
    struct store_stats ss;
    ASSERT_EQ(store_stats(st, &ss), 0);
    ASSERT_EQ(ss.generation, 1); /* it ran once the pin was gone */
    /* a pinned store: a compaction that is cancelled meanwhile gives up */
    store_pin(st);
    struct store_compact_spec spec = {.keep = keep_kept, .arg = &bg.kept_asked,
                                      .cancelled = always};
    struct store_compact_result res;
    ASSERT_EQ(store_compact(st, &spec, &res), ERR_SHUTDOWN);
    store_unpin(st);
    store_close(st);

    char path[512];
    struct stat sb;
    snprintf(path, sizeof path, "%s/events.log", copy);
    ASSERT_EQ(stat(path, &sb), 0);
    ASSERT_EQ((uint64_t)sb.st_size, pt.log_end); /* ends at its last batch: no zeros */
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(copy, 64 << 20, &rep), 0);
    ASSERT_EQ(rep.last_position, 311);
    CHECK(memcmp(rep.last_hash, pt.hash, HASH_SHA256_LEN) == 0);
    ASSERT_EQ(store_open(copy, 64 << 20, false, (struct slice){NULL, 0}, &st), 0);
    ASSERT_EQ(find_idem(st, "tail-key", time_now_us()), 0);
    store_fill_pairs(st, 3); /* the short log grows from its end */
    store_close(st);
    ASSERT_EQ(store_verify(copy, 64 << 20, &rep), 0);
    ASSERT_EQ(rep.last_position, 314);
}
