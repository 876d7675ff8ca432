/* The store and the engine's write path on a real LMDB directory: group commit, expected
 * versions, persistence across reopen, verify detecting damage. */
#include <stdio.h>
#include <string.h>

#include "engine/engine.h"
#include "store/store.h"
#include "unit.h"
#include "util/errors.h"

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
    struct append_req r = {.stream = {stream, strlen(stream)}, .events = &ev, .count = 1,
                           .expect = ex, .done = on_done, .arg = &f};
    CHECK(engine_append(db, &r) == 0);
    while (!__atomic_load_n(&f.n, __ATOMIC_ACQUIRE)) {
        usleep(100);
    }
    if (pos) {
        *pos = r.first_position;
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
    ASSERT_EQ(engine_read_stream(db, (struct slice){"a", 1}, 1, false, 10, count_event, &n, &s),
              0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(s.version, 1);
    ASSERT_EQ(append_one(db, "a", (struct expect){EXPECT_VERSION, 1}, &pos), 0);
    ASSERT_EQ(pos, 3);
    engine_db_release(db);
    engine_close(e);
    char sdir[300];
    snprintf(sdir, sizeof sdir, "%s/dbs/default", dir);
    struct store *st;
    ASSERT_EQ(store_open(sdir, LIM.map_bytes, false, &st), 0);
    struct store_verify_report rep;
    ASSERT_EQ(store_verify(st, &rep), 0);
    ASSERT_EQ(rep.events_checked, 3);
    store_close(st);
}

TEST(database_create_delete)
{
    char dir[256];
    fresh_dir(dir, sizeof dir);
    struct engine_config cfg = {.data_dir = dir, .limits = LIM};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    ASSERT_EQ(engine_db_create(e, "two", 3), 0);
    ASSERT_EQ(engine_db_create(e, "two", 3), ERR_EXISTS);
    ASSERT_EQ(engine_db_create(e, "Two", 3), ERR_INVALID);
    ASSERT_EQ(engine_db_create(e, "-x", 2), ERR_INVALID);
    size_t count;
    char **names = engine_db_names(e, &count);
    ASSERT_EQ(count, 2);
    ASSERT_STR(names[0], "default");
    ASSERT_STR(names[1], "two");
    engine_names_free(names, count);
    ASSERT_EQ(engine_db_delete(e, "two", 3), 0);
    ASSERT_EQ(engine_db_delete(e, "two", 3), ERR_NOTFOUND);
    char path[300];
    snprintf(path, sizeof path, "%s/dbs/two", dir);
    CHECK(access(path, F_OK) != 0);
    engine_close(e);
}
