/* store/kv: the derived-state store (tables, transactions, ordered scans, drops, reopen). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/kv.h"
#include "unit.h"
#include "util/errors.h"

static struct slice S(const char *s)
{
    return (struct slice){s, strlen(s)};
}

static void fresh_dir(char *dir, size_t n, const char *name)
{
    snprintf(dir, n, "/tmp/annals-kv-%d-%s", (int)getpid(), name);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

struct seen {
    char keys[512];
    size_t count;
};

static int on_entry(void *arg, struct slice key, struct slice val)
{
    struct seen *s = arg;
    size_t n = strlen(s->keys);
    snprintf(s->keys + n, sizeof s->keys - n, "%s%.*s=%.*s", s->count++ ? "," : "",
             (int)key.len, key.ptr, (int)val.len, val.ptr);
    return 0;
}

static struct seen scan(struct kv *kv, const char *table, const char *prefix, const char *after,
                        size_t limit)
{
    struct seen s = {{0}, 0};
    struct kv_txn *t;
    CHECK(kv_begin(kv, false, &t) == 0);
    CHECK(kv_scan(t, table, S(prefix), S(after), limit, on_entry, &s) == 0);
    kv_abort(t);
    return s;
}

TEST(tables_are_separate_and_commits_survive_reopen)
{
    char dir[128];
    fresh_dir(dir, sizeof dir, "a");
    struct kv *kv;
    ASSERT_EQ(kv_open(dir, 64 << 20, &kv), 0);
    struct kv_txn *t;
    ASSERT_EQ(kv_begin(kv, true, &t), 0);
    ASSERT_EQ(kv_put(t, "p1", S("order-2"), S("b")), 0);
    ASSERT_EQ(kv_put(t, "p1", S("order-1"), S("a")), 0);
    ASSERT_EQ(kv_put(t, "p1", S("user-1"), S("u")), 0);
    ASSERT_EQ(kv_put(t, "p10", S("order-1"), S("other table")), 0);
    ASSERT_EQ(kv_put(t, "p", S("x"), S("short table")), 0);
    ASSERT_EQ(kv_commit(t), 0);
    /* an aborted transaction leaves nothing */
    ASSERT_EQ(kv_begin(kv, true, &t), 0);
    ASSERT_EQ(kv_put(t, "p1", S("order-3"), S("c")), 0);
    kv_abort(t);
    kv_close(kv);
    ASSERT_EQ(kv_open(dir, 64 << 20, &kv), 0);
    struct seen s = scan(kv, "p1", "", "", 0);
    ASSERT_STR(s.keys, "order-1=a,order-2=b,user-1=u");
    struct kv_txn *rt; /* empty slices without a pointer (as callers pass "none") */
    ASSERT_EQ(kv_begin(kv, false, &rt), 0);
    struct seen none = {{0}, 0};
    ASSERT_EQ(kv_scan(rt, "p1", (struct slice){NULL, 0}, (struct slice){NULL, 0}, 0, on_entry,
                      &none), 0);
    ASSERT_STR(none.keys, "order-1=a,order-2=b,user-1=u");
    kv_abort(rt);
    s = scan(kv, "p1", "order-", "", 0);
    ASSERT_STR(s.keys, "order-1=a,order-2=b");
    s = scan(kv, "p1", "", "order-1", 0);
    ASSERT_STR(s.keys, "order-2=b,user-1=u");
    s = scan(kv, "p1", "", "", 1);
    ASSERT_STR(s.keys, "order-1=a");
    s = scan(kv, "p1", "order-", "a", 0); /* after sorts before the prefix: from its start */
    ASSERT_STR(s.keys, "order-1=a,order-2=b");
    s = scan(kv, "p1", "order-", "zzz", 0);
    ASSERT_STR(s.keys, "");
    ASSERT_EQ(kv_begin(kv, false, &t), 0);
    struct slice v;
    ASSERT_EQ(kv_get(t, "p10", S("order-1"), &v), 0);
    CHECK(v.len == 11 && memcmp(v.ptr, "other table", 11) == 0);
    ASSERT_EQ(kv_get(t, "p1", S("order-3"), &v), ERR_NOTFOUND);
    ASSERT_EQ(kv_put(t, "p1", S("k"), S("v")), ERR_INVALID); /* read-only */
    kv_abort(t);
    kv_close(kv);
}

TEST(drop_delete_and_bounds)
{
    char dir[128];
    fresh_dir(dir, sizeof dir, "b");
    struct kv *kv;
    ASSERT_EQ(kv_open(dir, 64 << 20, &kv), 0);
    struct kv_txn *t;
    ASSERT_EQ(kv_begin(kv, true, &t), 0);
    char key[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "k%05d", i);
        ASSERT_EQ(kv_put(t, "big", S(key), S("v")), 0);
    }
    ASSERT_EQ(kv_put(t, "keep", S("k"), S("v")), 0);
    ASSERT_EQ(kv_put(t, "bigger", S("k"), S("v")), 0);
    ASSERT_EQ(kv_commit(t), 0);
    ASSERT_EQ(kv_begin(kv, true, &t), 0);
    ASSERT_EQ(kv_drop(t, "big"), 0);
    ASSERT_EQ(kv_del(t, "keep", S("absent")), 0);
    ASSERT_EQ(kv_commit(t), 0);
    CHECK(scan(kv, "big", "", "", 0).count == 0);
    CHECK(scan(kv, "keep", "", "", 0).count == 1);
    CHECK(scan(kv, "bigger", "", "", 0).count == 1);
    ASSERT_EQ(kv_begin(kv, true, &t), 0);
    ASSERT_EQ(kv_del(t, "keep", S("k")), 0);
    char longkey[KV_KEY_BYTES + 2];
    memset(longkey, 'x', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    ASSERT_EQ(kv_put(t, "t", S(longkey), S("v")), ERR_INVALID);
    ASSERT_EQ(kv_put(t, "t", S(""), S("v")), ERR_INVALID);
    ASSERT_EQ(kv_put(t, "", S("k"), S("v")), ERR_INVALID);
    longkey[KV_KEY_BYTES] = '\0'; /* the longest key */
    ASSERT_EQ(kv_put(t, "t", S(longkey), S("v")), 0);
    ASSERT_EQ(kv_commit(t), 0);
    CHECK(scan(kv, "keep", "", "", 0).count == 0);
    kv_close(kv);
}
