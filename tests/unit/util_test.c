/* util: buffers and JSON string escaping, CRC-32C, SHA-256, UUIDs, RFC 3339 time, the worker
 * pool. */
#include <pthread.h>
#include <string.h>

#include "unit.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/hash.h"
#include "util/idmap.h"
#include "util/timeutil.h"
#include "util/uuid.h"
#include "util/workq.h"

TEST(json_string_escaping)
{
    struct buf b;
    buf_init(&b);
    buf_add_json_str(&b, "a\"b\\c\n\x01\xc3\xa9", 9);
    ASSERT_STR(b.ptr, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"");
    buf_reset(&b);
    /* bytes that are not UTF-8 (a lone continuation, a cut sequence, an overlong form, a
       surrogate) become U+FFFD: the text stays valid JSON */
    buf_add_json_str(&b, "x\xff\x80y\xe2\x82z\xc0\xafw\xed\xa0\x80\xf0\x9f\x98\x80", 17);
    ASSERT_STR(b.ptr, "\"x\\ufffd\\ufffdy\\ufffd\\ufffdz\\ufffd\\ufffdw\\ufffd\\ufffd\\ufffd"
                      "\xf0\x9f\x98\x80\"");
    buf_reset(&b);
    buf_add_u64(&b, 18446744073709551615ull);
    buf_addc(&b, ' ');
    buf_add_i64(&b, -9223372036854775807ll - 1);
    ASSERT_STR(b.ptr, "18446744073709551615 -9223372036854775808");
    buf_fini(&b);
}

TEST(crc32c_known_vectors)
{
    /* RFC 3720 B.4: 32 bytes of zeros -> 0x8a9136aa; "123456789" -> 0xe3069283. */
    uint8_t zeros[32] = {0};
    ASSERT_EQ(hash_crc32c(0, zeros, 32), 0x8a9136aa);
    ASSERT_EQ(hash_crc32c(0, "123456789", 9), 0xe3069283);
    uint32_t part = hash_crc32c(0, "1234", 4);
    ASSERT_EQ(hash_crc32c(part, "56789", 5), 0xe3069283);
}

TEST(sha256_known_vector)
{
    struct hash_part p[2] = {{"a", 1}, {"bc", 2}};
    uint8_t out[32];
    hash_sha256(p, 2, out);
    char hex[65];
    hash_hex(out, 32, hex);
    ASSERT_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(uuid_parse_format_and_v7)
{
    uint8_t u[16];
    ASSERT_EQ(uuid_parse("0192F3A0-1b2c-7d4e-8f90-a1b2c3d4e5f6", 36, u), 0);
    char s[37];
    uuid_format(u, s);
    ASSERT_STR(s, "0192f3a0-1b2c-7d4e-8f90-a1b2c3d4e5f6");
    ASSERT_EQ(uuid_parse("0192f3a0-1b2c-7d4e-8f90-a1b2c3d4e5f", 35, u), ERR_INVALID);
    ASSERT_EQ(uuid_parse("0192f3a0x1b2c-7d4e-8f90-a1b2c3d4e5f6", 36, u), ERR_INVALID);
    ASSERT_EQ(uuid_parse("0192f3a0-1b2c-7d4e-8f90-a1b2c3d4e5g6", 36, u), ERR_INVALID);
    uint8_t a[16], b[16];
    uuid_v7(1700000000000000, a);
    uuid_v7(1700000000001000, b);
    ASSERT_EQ(a[6] >> 4, 7);
    ASSERT_EQ(a[8] >> 6, 2);
    CHECK(memcmp(a, b, 6) < 0);
}

TEST(time_format_and_parse)
{
    char s[TIME_RFC3339_LEN];
    time_format(0, s);
    ASSERT_STR(s, "1970-01-01T00:00:00.000000Z");
    time_format(1700000000123456, s);
    ASSERT_STR(s, "2023-11-14T22:13:20.123456Z");
    int64_t us;
    ASSERT_EQ(time_parse("2023-11-14T22:13:20.123456Z", 27, &us), 0);
    ASSERT_EQ(us, 1700000000123456);
    ASSERT_EQ(time_parse("2023-11-14T23:13:20+01:00", 25, &us), 0);
    ASSERT_EQ(us, 1700000000000000);
    ASSERT_EQ(time_parse("2024-02-29T00:00:00Z", 20, &us), 0);
    ASSERT_EQ(time_parse("2023-02-29T00:00:00Z", 20, &us), ERR_INVALID);
    ASSERT_EQ(time_parse("2023-11-14 22:13", 16, &us), ERR_INVALID);
    ASSERT_EQ(time_parse("2023-11-14T22:13:20", 19, &us), ERR_INVALID);
    ASSERT_EQ(time_parse("2023-13-14T22:13:20Z", 20, &us), ERR_INVALID);
    ASSERT_EQ(time_parse("2023-11-14T22:13:20.Z", 21, &us), ERR_INVALID);
    time_format(-1, s);
    ASSERT_STR(s, "1969-12-31T23:59:59.999999Z");
}

TEST(uuid_v7_is_monotonic_per_thread)
{
    uint8_t prev[UUID_LEN] = {0}, cur[UUID_LEN];
    int64_t t = 1700000000000000;
    for (int i = 0; i < 10000; i++) {
        uuid_v7(t + (i % 3 == 0 ? 1000 : 0) * (i / 3000), cur); /* same ms, and steps */
        CHECK(memcmp(prev, cur, UUID_LEN) < 0);
        CHECK((cur[6] >> 4) == 7 && (cur[8] >> 6) == 2);
        memcpy(prev, cur, UUID_LEN);
    }
    uuid_v7(t - 5000000, cur); /* the clock went back: still after the last one */
    CHECK(memcmp(prev, cur, UUID_LEN) < 0);
}

TEST(idmap_put_get_keep_above)
{
    struct idmap m;
    idmap_init(&m);
    uint8_t id[16] = {0};
    for (uint64_t i = 1; i <= 5000; i++) {
        memcpy(id + 8, &i, sizeof i); /* ids alike but for their low bytes */
        idmap_put(&m, id, i);
    }
    ASSERT_EQ(m.count, 5000);
    uint64_t k = 1234;
    memcpy(id + 8, &k, sizeof k);
    ASSERT_EQ(idmap_get(&m, id), 1234);
    idmap_put(&m, id, 99999); /* replace */
    ASSERT_EQ(idmap_get(&m, id), 99999);
    ASSERT_EQ(m.count, 5000);
    idmap_keep_above(&m, 4000);
    ASSERT_EQ(m.count, 1001); /* 4001..5000 and the replaced one */
    ASSERT_EQ(idmap_get(&m, id), 99999);
    k = 17;
    memcpy(id + 8, &k, sizeof k);
    ASSERT_EQ(idmap_get(&m, id), 0);
    idmap_fini(&m);
}

TEST(deadline_carries_into_seconds)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct timespec d = time_deadline_ms(2500);
    CHECK(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    double dt = (double)(d.tv_sec - now.tv_sec) + (double)(d.tv_nsec - now.tv_nsec) / 1e9;
    CHECK(dt >= 2.49 && dt < 2.6);
    d = time_deadline_ms(3600000ull << 16); /* a long webhook backoff does not overflow */
    CHECK(d.tv_sec - now.tv_sec >= (time_t)(3600ull << 16) - 1);
}

/* ---- the worker pool ---- */

/* What the jobs of one test saw. */
struct wq_probe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gate_open;          /* jobs that wait at the gate may go on */
    unsigned runs[64];       /* how often each job ran */
    unsigned cancelled;      /* jobs run with cancelled true */
    unsigned started;        /* gated jobs that began */
    pthread_t submitter;     /* the thread that submitted (jobs must not run on it) */
    bool on_submitter;       /* some job ran on the submitting thread */
};

struct wq_job {
    struct wq_probe *p;
    unsigned id;
    bool gated;              /* waits for gate_open */
};

static void wq_probe_init(struct wq_probe *p)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->submitter = pthread_self();
}

static void wq_run(void *arg, bool cancelled)
{
    struct wq_job *j = arg;
    struct wq_probe *p = j->p;
    pthread_mutex_lock(&p->mu);
    p->on_submitter |= pthread_equal(pthread_self(), p->submitter) != 0;
    if (j->gated && !cancelled) {
        p->started++;
        pthread_cond_broadcast(&p->cv);
        while (!p->gate_open) {
            pthread_cond_wait(&p->cv, &p->mu);
        }
    }
    p->runs[j->id]++;
    p->cancelled += cancelled;
    pthread_mutex_unlock(&p->mu);
}

/* Waits until n gated jobs began. */
static void wq_wait_started(struct wq_probe *p, unsigned n)
{
    pthread_mutex_lock(&p->mu);
    while (p->started < n) {
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
}

static void wq_open_gate(struct wq_probe *p)
{
    pthread_mutex_lock(&p->mu);
    p->gate_open = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

TEST(workq_runs_every_job_once_on_its_threads)
{
    struct wq_probe p;
    wq_probe_init(&p);
    struct wq_job jobs[64];
    struct workq *q;
    ASSERT_EQ(workq_new("test-work", 3, 64, &q), 0);
    for (unsigned i = 0; i < 64; i++) {
        jobs[i] = (struct wq_job){&p, i, false};
        ASSERT_EQ(workq_submit(q, wq_run, &jobs[i]), 0);
    }
    workq_stop(q, WORKQ_DRAIN);
    for (unsigned i = 0; i < 64; i++) {
        ASSERT_EQ(p.runs[i], 1);
    }
    ASSERT_EQ(p.cancelled, 0);
    CHECK(!p.on_submitter);
    ASSERT_EQ(workq_submit(q, wq_run, &jobs[0]), ERR_SHUTDOWN); /* refused: never runs */
    workq_stop(q, WORKQ_CANCEL); /* idempotent */
    workq_free(q);
    ASSERT_EQ(p.runs[0], 1);
    ASSERT_EQ(workq_new("x", 0, 4, &q), ERR_INVALID);
    ASSERT_EQ(workq_new("x", 1, 0, &q), ERR_INVALID);
    workq_free(NULL);
}

/* Opens the gate once the pool refuses jobs (workq_stop has begun); the probe jobs it got in
 * before that are counted in probes. */
struct wq_opener {
    struct workq *q;
    struct wq_probe *p;
    struct wq_job probes[32];
    unsigned nprobes;
};

static void *wq_open_when_stopping(void *arg)
{
    struct wq_opener *o = arg;
    for (;;) {
        struct wq_job *j = &o->probes[o->nprobes];
        *j = (struct wq_job){o->p, 10 + o->nprobes, false};
        int rc = workq_submit(o->q, wq_run, j);
        if (rc == ERR_SHUTDOWN) {
            break;
        }
        o->nprobes += rc == 0;
        CHECK(o->nprobes < 32);
        usleep(2000);
    }
    wq_open_gate(o->p);
    return NULL;
}

/* One thread held by a gated job and 4 more queued when the pool stops: a drain runs them, a
 * cancel tells them they are cancelled; the running one finishes normally either way. */
static void wq_stop_with_queued(enum workq_stop_mode mode)
{
    struct wq_probe p;
    wq_probe_init(&p);
    struct wq_job jobs[5];
    struct workq *q;
    ASSERT_EQ(workq_new("test-work", 1, 64, &q), 0);
    for (unsigned i = 0; i < 5; i++) {
        jobs[i] = (struct wq_job){&p, i, i == 0};
        ASSERT_EQ(workq_submit(q, wq_run, &jobs[i]), 0);
    }
    wq_wait_started(&p, 1);
    ASSERT_EQ(workq_queued(q), 4);
    struct wq_opener o = {.q = q, .p = &p};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, wq_open_when_stopping, &o), 0);
    workq_stop(q, mode); /* waits for the gated job, which waits for the opener */
    pthread_join(t, NULL);
    for (unsigned i = 0; i < 5; i++) {
        ASSERT_EQ(p.runs[i], 1);
    }
    for (unsigned i = 0; i < o.nprobes; i++) {
        ASSERT_EQ(p.runs[10 + i], 1);
    }
    ASSERT_EQ(p.cancelled, mode == WORKQ_CANCEL ? 4 + o.nprobes : 0);
    ASSERT_EQ(workq_queued(q), 0);
    workq_free(q);
}

TEST(workq_shutdown_drains_or_cancels_queued_jobs)
{
    wq_stop_with_queued(WORKQ_DRAIN);
    wq_stop_with_queued(WORKQ_CANCEL);
}

TEST(workq_refuses_jobs_when_full)
{
    struct wq_probe p;
    wq_probe_init(&p);
    struct wq_job jobs[4];
    struct workq *q;
    ASSERT_EQ(workq_new("test-work", 1, 2, &q), 0);
    jobs[0] = (struct wq_job){&p, 0, true};
    ASSERT_EQ(workq_submit(q, wq_run, &jobs[0]), 0);
    wq_wait_started(&p, 1); /* the thread is busy: the next two wait in the queue */
    for (unsigned i = 1; i < 4; i++) {
        jobs[i] = (struct wq_job){&p, i, false};
    }
    ASSERT_EQ(workq_submit(q, wq_run, &jobs[1]), 0);
    ASSERT_EQ(workq_submit(q, wq_run, &jobs[2]), 0);
    ASSERT_EQ(workq_submit(q, wq_run, &jobs[3]), ERR_TOOBIG);
    wq_open_gate(&p);
    workq_free(q);
    ASSERT_EQ(p.runs[0] + p.runs[1] + p.runs[2], 3);
    ASSERT_EQ(p.runs[3], 0); /* refused: never ran */
}
