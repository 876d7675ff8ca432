/* sql: the SQL engine over a real engine in a temporary directory: an events table with its
 * fields as columns, the stream_id pushdown and the read set, an $Agg view with LAST, LAST and
 * FIRST, one snapshot per session, sensitive fields, every lock-down, every limit, paging over
 * many events, and the Arrow and JSON renderings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"
#include "engine/engine.h"
#include "sql/sql.h"
#include "util/errors.h"
#include "util/limits.h"
#include "util/timeutil.h"

/* ---- an engine with a few events ---- */

struct fixture {
    char dir[128];
    struct engine *e;
    struct db *db;
    struct sql_conn *c;
    struct sql_limits lim;
};

#define TAGS "[\"deql:Employee\"]"

/* Appends n events of type `type` with data `data` to stream, carrying the Employee tag. */
static void append_n(struct db *db, const char *stream, const char *type, const char *data,
                     size_t n)
{
    struct append_event *evs = calloc(n, sizeof(*evs));
    for (size_t i = 0; i < n; i++) {
        evs[i] = (struct append_event){.type = {type, strlen(type)},
                                       .data = {data, strlen(data)}, .metadata = {"{}", 2},
                                       .tags = {TAGS, sizeof TAGS - 1}, .has_time = true,
                                       .time_us = 1700000000000000 + (int64_t)i};
    }
    struct append_part part = {.stream = {stream, strlen(stream)}, .events = evs, .count = n};
    struct append_req r = {.parts = &part, .nparts = 1};
    ASSERT_EQ(engine_append_wait(db, &r), 0);
    ASSERT_EQ(r.err, 0);
    free(evs);
}

static void append_one(struct db *db, const char *stream, const char *data)
{
    append_n(db, stream, "Hired", data, 1);
}

static const struct sql_field FIELDS[] = {
    {"name", "TEXT", false},     {"salary", "INTEGER", false}, {"rate", "REAL", false},
    {"active", "BOOLEAN", false}, {"hired", "TIMESTAMP", false}, {"skills", "TEXT", false},
    {"ssn", "TEXT", true},
};
static const struct sql_events_def EMPLOYEE = {
    .table = "Employee$Events", .stream_type = "Employee", .tag = "deql:Employee",
    .stream_prefix = "Employee-", .fields = FIELDS, .nfields = sizeof FIELDS / sizeof FIELDS[0],
};
static const char AGG[] = "SELECT stream_id AS aggregate_id, LAST(name, event_id) AS name, "
                          "LAST(salary, event_id) AS salary FROM DeReg.\"Employee$Events\" "
                          "GROUP BY stream_id";

/* Opens the engine and a sealed connection (limits from fx->lim, set by the caller or the
 * defaults) with Employee$Events and Employee$Agg; appends the base events when with_events:
 * 1 Employee-1 (Ann), 2 Employee-2 (Bob), 3 Other-1 (tagged, other prefix), 4 Employee-1
 * (Ann's raise). */
static void fixture_open(struct fixture *fx, bool with_events)
{
    snprintf(fx->dir, sizeof fx->dir, "/tmp/annals-sql-%d", (int)getpid());
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
    CHECK(system(cmd) == 0);
    struct engine_config ecfg = {.data_dir = fx->dir};
    ecfg.limits = (struct limits){.body_bytes = LIMIT_DEFAULT_BODY_BYTES,
                                  .batch_events = LIMIT_DEFAULT_BATCH_EVENTS,
                                  .event_bytes = LIMIT_DEFAULT_EVENT_BYTES,
                                  .map_bytes = 1ull << 30,
                                  .idem_ttl_s = LIMIT_DEFAULT_IDEM_TTL_S};
    ASSERT_EQ(engine_open(&ecfg, &fx->e), 0);
    ASSERT_EQ(engine_db_acquire(fx->e, "default", 7, &fx->db), 0);
    if (with_events) {
        append_one(fx->db, "Employee-1",
                   "{\"name\":\"Ann\",\"salary\":100,\"rate\":1.5,\"active\":true,"
                   "\"hired\":\"2024-01-02T03:04:05.000006Z\",\"skills\":[\"c\",\"sql\"],"
                   "\"ssn\":\"111\"}");
        append_one(fx->db, "Employee-2", "{\"name\":\"Bob\",\"salary\":90,\"active\":false,"
                                         "\"ssn\":\"222\"}");
        append_one(fx->db, "Other-1", "{\"name\":\"Zed\"}");
        append_one(fx->db, "Employee-1", "{\"salary\":120}");
    }
    if (!fx->lim.rows) {
        sql_limits_default(&fx->lim);
    }
    struct sql_error err = {{0}};
    ASSERT_EQ(sql_open(&fx->lim, &fx->c, &err), 0);
    if (sql_define_events(fx->c, &EMPLOYEE, &err)) {
        fprintf(stderr, "  table: %s\n", err.msg);
        exit(1);
    }
    if (sql_define_view(fx->c, "Employee$Agg", AGG, &err)) {
        fprintf(stderr, "  view: %s\n", err.msg);
        exit(1);
    }
    sql_seal(fx->c);
}

static void fixture_close(struct fixture *fx)
{
    sql_close(fx->c);
    engine_db_release(fx->db);
    engine_stop(fx->e);
    engine_close(fx->e);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
    CHECK(system(cmd) == 0);
}

/* Runs sql (which must succeed) with binds and returns its JSON text (malloc'd). */
static char *run_binds(struct sql_conn *c, const char *sql, const struct sql_bind *binds,
                       size_t nbinds)
{
    struct sql_result r;
    struct sql_error err = {{0}};
    int rc = sql_query(c, sql, strlen(sql), binds, nbinds, &r, &err);
    if (rc) {
        fprintf(stderr, "  %s: %d %s\n", sql, rc, err.msg);
        exit(1);
    }
    struct buf b;
    buf_init(&b);
    sql_result_json(&r, &b);
    sql_result_fini(&r);
    return buf_steal(&b, NULL);
}

static char *run(struct sql_conn *c, const char *sql)
{
    return run_binds(c, sql, NULL, 0);
}

#define ASSERT_SQL(c, sql, want)                                                            \
    do {                                                                                    \
        char *got_ = run((c), (sql));                                                       \
        ASSERT_STR(got_, (want));                                                           \
        free(got_);                                                                         \
    } while (0)

/* Runs sql, which must fail with rc and a message containing `has`. */
static void refuse(struct sql_conn *c, const char *sql, int rc, const char *has)
{
    struct sql_result r;
    struct sql_error err = {{0}};
    int got = sql_query(c, sql, strlen(sql), NULL, 0, &r, &err);
    if (got != rc || !strstr(err.msg, has)) {
        fprintf(stderr, "  %s: got %d \"%s\", want %d \"%s\"\n", sql, got, err.msg, rc, has);
        exit(1);
    }
    ASSERT_EQ(r.nrows, 0);
    sql_result_fini(&r);
}

/* The read set is one read: of stream (NULL: the whole tag). */
static void check_one_read(const struct sql_conn *c, const char *stream)
{
    size_t n;
    const struct sql_read *reads = sql_reads(c, &n);
    ASSERT_EQ(n, 1);
    ASSERT_STR(reads[0].tag, "deql:Employee");
    ASSERT_EQ(reads[0].whole, stream == NULL);
    if (stream) {
        ASSERT_STR(reads[0].stream, stream);
    }
}

static void begin(struct fixture *fx, bool reveal)
{
    uint64_t snap;
    sql_begin(fx->c, fx->db, 0, reveal, &snap);
    ASSERT_EQ(snap, engine_db_head(fx->db));
}

/* ---- reading ---- */

TEST(sql_reads_every_event_with_fields_as_columns)
{
    struct fixture fx = {0};
    fixture_open(&fx, true);
    begin(&fx, false);
    ASSERT_SQL(fx.c,
               "SELECT event_id, stream_type, stream_id, seq, event_type, occurred_at, name, "
               "salary, rate, active, hired, skills FROM DeReg.\"Employee$Events\"",
               "{\"columns\":[\"event_id\",\"stream_type\",\"stream_id\",\"seq\",\"event_type\","
               "\"occurred_at\",\"name\",\"salary\",\"rate\",\"active\",\"hired\",\"skills\"],"
               "\"rows\":[[1,\"Employee\",\"1\",1,\"Hired\",\"2023-11-14T22:13:20.000000Z\","
               "\"Ann\",100,1.5,1,\"2024-01-02T03:04:05.000006Z\",\"[\\\"c\\\",\\\"sql\\\"]\"],"
               "[2,\"Employee\",\"2\",1,\"Hired\",\"2023-11-14T22:13:20.000000Z\",\"Bob\",90,"
               "null,0,null,null],[4,\"Employee\",\"1\",2,\"Hired\","
               "\"2023-11-14T22:13:20.000000Z\",null,120,null,null,null,null]]}");
    check_one_read(fx.c, NULL);
    sql_end(fx.c);
    fixture_close(&fx);
}

TEST(sql_stream_id_pushdown_reads_one_stream)
{
    struct fixture fx = {0};
    fixture_open(&fx, true);
    begin(&fx, false);
    ASSERT_SQL(fx.c, "SELECT event_id, salary FROM DeReg.\"Employee$Events\" "
                     "WHERE stream_id = '1'",
               "{\"columns\":[\"event_id\",\"salary\"],\"rows\":[[1,100],[4,120]]}");
    /* an integer compares as text, as SQL says */
    ASSERT_SQL(fx.c, "SELECT count(*) FROM DeReg.\"Employee$Events\" WHERE stream_id = 2",
               "{\"columns\":[\"count(*)\"],\"rows\":[[1]]}");
    ASSERT_SQL(fx.c, "SELECT count(*) FROM DeReg.\"Employee$Events\" WHERE stream_id = 'none'",
               "{\"columns\":[\"count(*)\"],\"rows\":[[0]]}");
    size_t n;
    const struct sql_read *reads = sql_reads(fx.c, &n);
    ASSERT_EQ(n, 3);
    CHECK(!reads[0].whole);
    ASSERT_STR(reads[0].stream, "Employee-1");
    ASSERT_STR(reads[1].stream, "Employee-2");
    ASSERT_STR(reads[2].stream, "Employee-none");
    /* the same stream again is not a new read; a whole scan replaces the stream reads */
    free(run(fx.c, "SELECT 1 FROM DeReg.\"Employee$Events\" WHERE stream_id = '1'"));
    sql_reads(fx.c, &n);
    ASSERT_EQ(n, 3);
    free(run(fx.c, "SELECT 1 FROM DeReg.\"Employee$Events\""));
    check_one_read(fx.c, NULL);
    sql_end(fx.c);
    fixture_close(&fx);
}

TEST(sql_read_set_collapses_past_its_maximum)
{
    struct fixture fx = {0};
    fixture_open(&fx, true);
    begin(&fx, false);
    for (int i = 0; i < SQL_MAX_READS + 1; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT 1 FROM DeReg.\"Employee$Events\" WHERE stream_id = "
                                  "'s%d'", i);
        free(run(fx.c, sql));
    }
    check_one_read(fx.c, NULL);
    sql_end(fx.c);
    fixture_close(&fx);
}

TEST(sql_agg_view_with_last_and_a_pushed_down_id)
{
    struct fixture fx = {0};
    fixture_open(&fx, true);
    begin(&fx, false);
    ASSERT_SQL(fx.c, "SELECT * FROM DeReg.\"Employee$Agg\" ORDER BY aggregate_id",
               "{\"columns\":[\"aggregate_id\",\"name\",\"salary\"],\"rows\":"
               "[[\"1\",\"Ann\",120],[\"2\",\"Bob\",90]]}");
    sql_end(fx.c);
    begin(&fx, false);
    struct sql_bind id = {"id", {.type = SQL_TEXT, .s = "1", .len = 1}};
    char *got = run_binds(fx.c, "SELECT name, salary FROM DeReg.\"Employee$Agg\" "
                                "WHERE aggregate_id = :id", &id, 1);
    ASSERT_STR(got, "{\"columns\":[\"name\",\"salary\"],\"rows\":[[\"Ann\",120]]}");
    free(got);
    check_one_read(fx.c, "Employee-1");
    /* a parameter the binds do not give is NULL; binds the SQL does not name are ignored */
    struct sql_bind other = {"other", {.type = SQL_INT, .i = 7}};
    got = run_binds(fx.c, "SELECT :id IS NULL, :n", &other, 1);
    ASSERT_STR(got, "{\"columns\":[\":id IS NULL\",\":n\"],\"rows\":[[1,null]]}");
    free(got);
    sql_end(fx.c);
    fixture_close(&fx);
}

TEST(sql_last_and_first)
{
    struct fixture fx = {0};
    fixture_open(&fx, false);
    /* input order: (x, p) = (a, 3), (NULL, 9), (b, 1), (c, 2) */
    static const char ROWS[] = "(SELECT 'a' AS x, 3 AS p UNION ALL SELECT NULL, 9 "
                               "UNION ALL SELECT 'b', 1 UNION ALL SELECT 'c', 2)";
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT LAST(x), FIRST(x), LAST(x, p), FIRST(x, p) FROM %s",
             ROWS);
    ASSERT_SQL(fx.c, sql, "{\"columns\":[\"LAST(x)\",\"FIRST(x)\",\"LAST(x, p)\","
                          "\"FIRST(x, p)\"],\"rows\":[[\"c\",\"a\",\"a\",\"b\"]]}");
    snprintf(sql, sizeof sql, "SELECT LAST(x), FIRST(x, p) FROM %s WHERE x IS NULL", ROWS);
    ASSERT_SQL(fx.c, sql, "{\"columns\":[\"LAST(x)\",\"FIRST(x, p)\"],\"rows\":[[null,null]]}");
    ASSERT_SQL(fx.c, "SELECT LAST(x, p) FROM (SELECT 1.5 AS x, 'b' AS p UNION ALL "
                     "SELECT 2, 'a' UNION ALL SELECT 3, 10)",
               "{\"columns\":[\"LAST(x, p)\"],\"rows\":[[1.5]]}");
    fixture_close(&fx);
}

TEST(sql_session_sees_one_snapshot)
{
    struct fixture fx = {0};
    fixture_open(&fx, true);
    uint64_t snap;
    sql_begin(fx.c, fx.db, 0, false, &snap);
    ASSERT_EQ(snap, 4);
    append_one(fx.db, "Employee-3", "{\"name\":\"Cy\"}");
    static const char COUNT[] = "SELECT count(*) FROM DeReg.\"Employee$Events\"";
    ASSERT_SQL(fx.c, COUNT, "{\"columns\":[\"count(*)\"],\"rows\":[[3]]}");
    ASSERT_SQL(fx.c, "SELECT count(*) FROM DeReg.\"Employee$Events\" WHERE stream_id = '3'",
               "{\"columns\":[\"count(*)\"],\"rows\":[[0]]}");
    sql_end(fx.c);
    sql_begin(fx.c, fx.db, 2, false, &snap);
    ASSERT_EQ(snap, 2);
    ASSERT_SQL(fx.c, COUNT, "{\"columns\":[\"count(*)\"],\"rows\":[[2]]}");
    sql_end(fx.c);
    sql_begin(fx.c, fx.db, 0, false, &snap);
    ASSERT_EQ(snap, 5);
    ASSERT_SQL(fx.c, COUNT, "{\"columns\":[\"count(*)\"],\"rows\":[[4]]}");
    sql_end(fx.c);
    fixture_close(&fx);
}

TEST(sql_sensitive_fields_hidden_unless_revealed)
{
    struct fixture fx = {0};
    fixture_open(&fx, true);
    static const char SQL[] = "SELECT ssn, data FROM DeReg.\"Employee$Events\" "
                              "WHERE stream_id = '2'";
    begin(&fx, false);
    ASSERT_SQL(fx.c, SQL, "{\"columns\":[\"ssn\",\"data\"],\"rows\":[[null,"
                          "\"{\\\"name\\\":\\\"Bob\\\",\\\"salary\\\":90,\\\"active\\\":false}\"]]}");
    sql_end(fx.c);
    begin(&fx, true);
    ASSERT_SQL(fx.c, SQL, "{\"columns\":[\"ssn\",\"data\"],\"rows\":[[\"222\","
                          "\"{\\\"name\\\":\\\"Bob\\\",\\\"salary\\\":90,\\\"active\\\":false,"
                          "\\\"ssn\\\":\\\"222\\\"}\"]]}");
    sql_end(fx.c);
    fixture_close(&fx);
}

TEST(sql_events_tables_need_a_session)
{
    struct fixture fx = {0};
    fixture_open(&fx, true);
    refuse(fx.c, "SELECT * FROM DeReg.\"Employee$Events\"", ERR_INVALID, "no session");
    ASSERT_SQL(fx.c, "SELECT 1 + 1", "{\"columns\":[\"1 + 1\"],\"rows\":[[2]]}");
    fixture_close(&fx);
}

/* ---- lock-down ---- */

TEST(sql_lockdown_refuses_everything_but_reads)
{
    struct fixture fx = {0};
    fixture_open(&fx, true);
    begin(&fx, false);
    static const char *const DENIED[] = {
        "INSERT INTO DeReg.\"Employee$Events\"(event_id) VALUES (1)",
        "DELETE FROM DeReg.\"Employee$Events\"",
        "CREATE TABLE t(x)",
        "CREATE TEMP TABLE t(x)",
        "CREATE VIEW v AS SELECT 1",
        "DROP VIEW DeReg.\"Employee$Agg\"",
        "DROP TABLE DeReg.\"Employee$Events\"",
        "ATTACH ':memory:' AS x",
        "ATTACH '/tmp/annals-sql-attack.db' AS x",
        "DETACH DeReg",
        "PRAGMA user_version = 1",
        "PRAGMA writable_schema = ON",
        "PRAGMA table_info('Employee$Events')",
        "SELECT load_extension('x')",
        "SELECT load_extension('/lib/x.so', 'init')",
        "BEGIN",
        "VACUUM",
        "ANALYZE",
        "CREATE VIRTUAL TABLE DeReg.x USING annals_events(0)",
    };
    for (size_t i = 0; i < sizeof DENIED / sizeof DENIED[0]; i++) {
        refuse(fx.c, DENIED[i], ERR_DENIED, "");
    }
    refuse(fx.c, "SELECT 1; SELECT 2", ERR_INVALID, "one statement");
    refuse(fx.c, "SELECT 1; DROP VIEW DeReg.\"Employee$Agg\"", ERR_INVALID, "one statement");
    refuse(fx.c, "   -- nothing\n", ERR_INVALID, "no statement");
    refuse(fx.c, "SELEC 1", ERR_INVALID, "syntax");
    refuse(fx.c, "SELECT * FROM nope", ERR_INVALID, "no such table");
    refuse(fx.c, "SELECT readfile('/etc/passwd')", ERR_INVALID, "no such function");
    ASSERT_SQL(fx.c, "SELECT 1; -- fine\n /* also */ ", "{\"columns\":[\"1\"],\"rows\":[[1]]}");
    /* definitions after sealing */
    struct sql_error err;
    ASSERT_EQ(sql_define_events(fx.c, &EMPLOYEE, &err), ERR_INVALID);
    ASSERT_EQ(sql_define_view(fx.c, "v", "SELECT 1", &err), ERR_INVALID);
    /* the events are still there */
    ASSERT_SQL(fx.c, "SELECT count(*) FROM DeReg.\"Employee$Events\"",
               "{\"columns\":[\"count(*)\"],\"rows\":[[3]]}");
    sql_end(fx.c);
    fixture_close(&fx);
}

TEST(sql_definitions_are_checked)
{
    struct sql_limits lim;
    sql_limits_default(&lim);
    struct sql_conn *c;
    struct sql_error err;
    ASSERT_EQ(sql_open(&lim, &c, &err), 0);
    ASSERT_EQ(sql_define_events(c, &EMPLOYEE, &err), 0);
    ASSERT_EQ(sql_define_events(c, &EMPLOYEE, &err), ERR_INVALID); /* duplicate */
    struct sql_field bad[] = {{"seq", "INTEGER", false}};
    struct sql_events_def d = EMPLOYEE;
    d.table = "Bad";
    d.fields = bad;
    d.nfields = 1;
    ASSERT_EQ(sql_define_events(c, &d, &err), ERR_INVALID); /* a base column's name */
    bad[0] = (struct sql_field){"x", "BLOB", false};
    ASSERT_EQ(sql_define_events(c, &d, &err), ERR_INVALID); /* an unknown type */
    /* a quoted name with quotes in it */
    struct sql_field odd[] = {{"a \"b\"", "TEXT", false}};
    d = (struct sql_events_def){.table = "Odd\"Name", .stream_type = "Odd", .tag = "t",
                                .stream_prefix = "", .fields = odd, .nfields = 1};
    ASSERT_EQ(sql_define_events(c, &d, &err), 0);
    ASSERT_EQ(sql_define_view(c, "v", "SELECT 1; DROP TABLE DeReg.\"Odd\"\"Name\"", &err),
              ERR_INVALID);
    ASSERT_EQ(sql_define_view(c, "v", "SELECT nope FROM nowhere", &err), ERR_INVALID);
    CHECK(strstr(err.msg, "no such table") != NULL);
    ASSERT_EQ(sql_define_view(c, "v", "SELECT \"a \"\"b\"\"\" FROM DeReg.\"Odd\"\"Name\"",
                              &err), 0);
    sql_seal(c);
    struct sql_result r;
    static const char SQL[] = "SELECT * FROM DeReg.v";
    ASSERT_EQ(sql_query(c, SQL, sizeof SQL - 1, NULL, 0, &r, &err), ERR_INVALID);
    CHECK(strstr(err.msg, "no session") != NULL);
    sql_close(c);
    sql_close(NULL);
}

/* ---- limits ---- */

TEST(sql_runaway_recursion_stopped_by_the_step_budget)
{
    struct fixture fx = {0};
    sql_limits_default(&fx.lim);
    fx.lim.steps = 1000;
    fixture_open(&fx, false);
    refuse(fx.c, "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) "
                 "SELECT count(*) FROM r", ERR_TOOBIG, "(sql steps)");
    /* the budget is per query */
    ASSERT_SQL(fx.c, "SELECT 2", "{\"columns\":[\"2\"],\"rows\":[[2]]}");
    fixture_close(&fx);
}

TEST(sql_result_limits)
{
    struct fixture fx = {0};
    sql_limits_default(&fx.lim);
    fx.lim.rows = 5;
    fx.lim.result_bytes = 2000;
    fixture_open(&fx, false);
    static const char TEN[] = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r "
                              "WHERE x < %d) SELECT %s FROM r";
    char sql[256];
    snprintf(sql, sizeof sql, TEN, 5, "x");
    free(run(fx.c, sql));
    snprintf(sql, sizeof sql, TEN, 6, "x");
    refuse(fx.c, sql, ERR_TOOBIG, "(result rows)");
    snprintf(sql, sizeof sql, TEN, 2, "printf('%.*c', 1000, 'x')");
    refuse(fx.c, sql, ERR_TOOBIG, "(result bytes)");
    fixture_close(&fx);
}

TEST(sql_value_and_statement_length_limits)
{
    struct fixture fx = {0};
    sql_limits_default(&fx.lim);
    fx.lim.value_bytes = 1000;
    fx.lim.sql_bytes = 200;
    fixture_open(&fx, false); /* (the view is longer than 200 bytes: definitions may be) */
    free(run(fx.c, "SELECT length(printf('%.*c', 1000, 'x'))"));
    refuse(fx.c, "SELECT replace(printf('%.*c', 600, 'x'), 'x', 'yy')", ERR_TOOBIG,
           "(value bytes)");
    refuse(fx.c, "SELECT zeroblob(5000)", ERR_TOOBIG, "(value bytes)");
    char sql[256];
    memset(sql, ' ', sizeof sql);
    memcpy(sql, "SELECT 1", 8);
    sql[sizeof sql - 1] = '\0';
    refuse(fx.c, sql, ERR_TOOBIG, "(sql bytes)");
    fixture_close(&fx);
}

TEST(sql_scanned_events_limit)
{
    struct fixture fx = {0};
    sql_limits_default(&fx.lim);
    fx.lim.scan_events = 3;
    fixture_open(&fx, true); /* 4 tagged events */
    begin(&fx, false);
    refuse(fx.c, "SELECT count(*) FROM DeReg.\"Employee$Events\"", ERR_TOOBIG,
           "(scanned events)");
    /* per query: one stream of 2 events fits */
    ASSERT_SQL(fx.c, "SELECT count(*) FROM DeReg.\"Employee$Events\" WHERE stream_id = '1'",
               "{\"columns\":[\"count(*)\"],\"rows\":[[2]]}");
    sql_end(fx.c);
    fixture_close(&fx);
}

TEST(sql_expression_depth_and_compound_limits)
{
    struct fixture fx = {0};
    sql_limits_default(&fx.lim);
    fx.lim.expr_depth = 10;
    fx.lim.compound_select = 3;
    fixture_open(&fx, false);
    refuse(fx.c, "SELECT 1+1+1+1+1+1+1+1+1+1+1+1+1", ERR_INVALID, "maximum depth");
    refuse(fx.c, "SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4", ERR_INVALID,
           "too many terms");
    fixture_close(&fx);
}

/* ---- many events: pages, and what 1-argument LAST does in a GROUP BY ---- */

TEST(sql_pages_over_many_events)
{
    struct fixture fx = {0};
    fixture_open(&fx, false);
    /* 3 streams interleaved in batches: 1500 events of Employee-a, -b, -c */
    for (int round = 0; round < 5; round++) {
        append_n(fx.db, "Employee-a", "T", "{\"salary\":1}", 100);
        append_n(fx.db, "Employee-b", "T", "{\"salary\":2}", 100);
        append_n(fx.db, "Employee-c", "T", "{\"salary\":3}", 100);
    }
    begin(&fx, false);
    uint64_t t0 = time_mono_ns();
    ASSERT_SQL(fx.c, "SELECT count(*), sum(event_id), sum(salary) FROM "
                     "DeReg.\"Employee$Events\"",
               "{\"columns\":[\"count(*)\",\"sum(event_id)\",\"sum(salary)\"],"
               "\"rows\":[[1500,1125750,3000]]}");
    uint64_t t1 = time_mono_ns();
    ASSERT_SQL(fx.c, "SELECT count(*), max(seq) FROM DeReg.\"Employee$Events\" "
                     "WHERE stream_id = 'b'",
               "{\"columns\":[\"count(*)\",\"max(seq)\"],\"rows\":[[500,500]]}");
    /* LAST with the position is right whatever the order; report what 1-argument LAST does */
    ASSERT_SQL(fx.c, "SELECT stream_id, LAST(seq, event_id), FIRST(seq, event_id) FROM "
                     "DeReg.\"Employee$Events\" GROUP BY stream_id",
               "{\"columns\":[\"stream_id\",\"LAST(seq, event_id)\",\"FIRST(seq, event_id)\"],"
               "\"rows\":[[\"a\",500,1],[\"b\",500,1],[\"c\",500,1]]}");
    char *one = run(fx.c, "SELECT stream_id, LAST(seq), FIRST(seq) FROM "
                          "DeReg.\"Employee$Events\" GROUP BY stream_id");
    printf("  (1500 events scanned in %.2f ms; 1-argument LAST/FIRST by group: %s)\n",
           (double)(t1 - t0) / 1e6, one);
    free(one);
    sql_end(fx.c);
    fixture_close(&fx);
}

/* ---- renderings ---- */

TEST(sql_result_json_text)
{
    struct fixture fx = {0};
    fixture_open(&fx, false);
    ASSERT_SQL(fx.c, "SELECT 1 AS \"i\", 0.1 AS r, 2.0 AS w, 'a\"b\\' || char(10) || char(1) "
                     "AS s, NULL AS n, 1e999 AS inf, x'41' AS blob",
               "{\"columns\":[\"i\",\"r\",\"w\",\"s\",\"n\",\"inf\",\"blob\"],"
               "\"rows\":[[1,0.1,2.0,\"a\\\"b\\\\\\n\\u0001\",null,null,\"A\"]]}");
    ASSERT_SQL(fx.c, "SELECT 1 AS a WHERE 0", "{\"columns\":[\"a\"],\"rows\":[]}");
    fixture_close(&fx);
}

TEST(sql_result_arrow_types_and_bytes)
{
    struct fixture fx = {0};
    fixture_open(&fx, true);
    begin(&fx, false);
    static const char SQL[] = "SELECT event_id, occurred_at, hired, active, rate, name, "
                              "salary * 1.5 AS mixed, CASE WHEN seq = 1 THEN 1 ELSE 'x' END "
                              "AS text_mix, NULL AS nil FROM DeReg.\"Employee$Events\"";
    struct sql_result r;
    struct sql_error err;
    int rc = sql_query(fx.c, SQL, sizeof SQL - 1, NULL, 0, &r, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(r.nrows, 3);
    static const char *const WANT[] = {"int64", "timestamp_us", "timestamp_us", "bool",
                                       "float64", "utf8", "float64", "utf8", "utf8"};
    ASSERT_EQ(r.ncols, 9);
    for (size_t k = 0; k < r.ncols; k++) {
        ASSERT_STR(sql_result_arrow_type(&r, k), WANT[k]);
    }
    ASSERT_STR(r.decls[1], "TIMESTAMP");
    struct buf b;
    buf_init(&b);
    ASSERT_EQ(sql_result_arrow(&r, &b), 0);
    CHECK(b.len > 8 && !memcmp(b.ptr, "\xff\xff\xff\xff", 4));
    CHECK(!memcmp(b.ptr + b.len - 8, "\xff\xff\xff\xff\0\0\0\0", 8));
    sql_result_fini(&r);
    sql_result_fini(&r); /* harmless */
    /* zero rows: a schema and the end marker */
    static const char NONE[] = "SELECT event_id, name FROM DeReg.\"Employee$Events\" WHERE 0";
    ASSERT_EQ(sql_query(fx.c, NONE, sizeof NONE - 1, NULL, 0, &r, &err), 0);
    buf_reset(&b);
    ASSERT_EQ(sql_result_arrow(&r, &b), 0);
    CHECK(b.len > 8 && !memcmp(b.ptr, "\xff\xff\xff\xff", 4));
    sql_result_fini(&r);
    /* a declared type the values do not fit falls back to inference */
    static const char NOT_TS[] = "SELECT hired, active FROM DeReg.\"Employee$Events\" "
                                 "UNION ALL SELECT 'soon', 7";
    ASSERT_EQ(sql_query(fx.c, NOT_TS, sizeof NOT_TS - 1, NULL, 0, &r, &err), 0);
    ASSERT_STR(sql_result_arrow_type(&r, 0), "utf8");
    ASSERT_STR(sql_result_arrow_type(&r, 1), "int64");
    sql_result_fini(&r);
    /* no columns: nothing to write */
    struct sql_result empty = {0};
    ASSERT_EQ(sql_result_arrow(&empty, &b), ERR_INVALID);
    buf_fini(&b);
    sql_end(fx.c);
    fixture_close(&fx);
}

TEST(sql_quote_ident_doubles_quotes)
{
    struct buf b;
    buf_init(&b);
    sql_quote_ident("a\"b$c", &b);
    ASSERT_STR(b.ptr, "\"a\"\"b$c\"");
    buf_fini(&b);
}

TEST(sql_heap_and_program_size_limits)
{
    struct fixture fx = {0};
    sql_limits_default(&fx.lim);
    fx.lim.heap_bytes = 8 * 1024 * 1024; /* (process-wide: this test's process only) */
    fx.lim.vdbe_ops = 60;
    fixture_open(&fx, false);
    refuse(fx.c, "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r "
                 "WHERE x < 1000000) SELECT count(DISTINCT randomblob(64)) FROM r",
           ERR_TOOBIG, "(heap)");
    refuse(fx.c, "SELECT 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,"
                 "27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,"
                 "52,53,54,55,56,57,58,59,60,61,62,63,64", ERR_TOOBIG, "(vdbe ops, heap)");
    ASSERT_SQL(fx.c, "SELECT 1", "{\"columns\":[\"1\"],\"rows\":[[1]]}");
    fixture_close(&fx);
}

/* ---- statements kept between queries, and loaded tables ---- */

TEST(sql_cached_statements_run_again_with_new_binds_and_data)
{
    struct fixture fx = {0};
    sql_limits_default(&fx.lim);
    fx.lim.steps = 1000;
    fixture_open(&fx, true);
    begin(&fx, false);
    static const char q[] = "SELECT name FROM DeReg.\"Employee$Agg\" WHERE aggregate_id = :id";
    struct sql_bind b1 = {"id", {.type = SQL_TEXT, .s = "1", .len = 1}};
    struct sql_bind b2 = {"id", {.type = SQL_TEXT, .s = "2", .len = 1}};
    for (int i = 0; i < 3; i++) { /* the same text: the kept statement, with each run's binds */
        char *one = run_binds(fx.c, q, &b1, 1);
        char *two = run_binds(fx.c, q, &b2, 1);
        ASSERT_STR(one, "{\"columns\":[\"name\"],\"rows\":[[\"Ann\"]]}");
        ASSERT_STR(two, "{\"columns\":[\"name\"],\"rows\":[[\"Bob\"]]}");
        free(one);
        free(two);
    }
    sql_end(fx.c);
    /* a later session sees later events through the kept statement */
    append_one(fx.db, "Employee-2", "{\"name\":\"Bobby\"}");
    begin(&fx, false);
    char *two = run_binds(fx.c, q, &b2, 1);
    ASSERT_STR(two, "{\"columns\":[\"name\"],\"rows\":[[\"Bobby\"]]}");
    free(two);
    /* a kept statement stopped by a budget is stopped again, and others still run */
    static const char loop[] = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) "
                               "SELECT count(*) FROM r";
    refuse(fx.c, loop, ERR_TOOBIG, "(sql steps)");
    refuse(fx.c, loop, ERR_TOOBIG, "(sql steps)");
    two = run_binds(fx.c, q, &b2, 1);
    ASSERT_STR(two, "{\"columns\":[\"name\"],\"rows\":[[\"Bobby\"]]}");
    free(two);
    fixture_close(&fx);
}

TEST(sql_loaded_tables_are_read_by_name_and_dropped)
{
    struct fixture fx = {0};
    fixture_open(&fx, false);
    static const char *const names[] = {"k", "v"};
    struct sql_result t;
    sql_result_init(&t, 2, names);
    struct sql_value row[2] = {{.type = SQL_TEXT, .s = "a", .len = 1}, {.type = SQL_INT, .i = 1}};
    sql_result_add_row(&t, row);
    struct sql_error err = {{0}};
    ASSERT_EQ(sql_load_table(fx.c, "t", &t, &err), 0);
    ASSERT_SQL(fx.c, "SELECT k, v FROM t", "{\"columns\":[\"k\",\"v\"],\"rows\":[[\"a\",1]]}");
    /* still read-only for queries */
    refuse(fx.c, "INSERT INTO t VALUES ('b', 2)", ERR_DENIED, "");
    /* loaded again with other rows: the kept statement reads them */
    row[1].i = 2;
    sql_result_add_row(&t, row);
    ASSERT_EQ(sql_load_table(fx.c, "t", &t, &err), 0);
    ASSERT_SQL(fx.c, "SELECT k, v FROM t",
               "{\"columns\":[\"k\",\"v\"],\"rows\":[[\"a\",1],[\"a\",2]]}");
    sql_drop_loaded(fx.c);
    refuse(fx.c, "SELECT k, v FROM t", ERR_INVALID, "no such table");
    sql_result_fini(&t);
    fixture_close(&fx);
}

TEST(sql_pages_of_large_events_are_cut_by_bytes)
{
    struct fixture fx = {0};
    fixture_open(&fx, false);
    /* 24 events of ~900 KB: more than one page of EV_PAGE_BYTES (8 MiB) in a scan and in a
     * stream read; every one is read once */
    size_t big = 900 * 1000;
    char *data = malloc(big + 32);
    strcpy(data, "{\"name\":\"");
    memset(data + 9, 'x', big);
    strcpy(data + 9 + big, "\",\"salary\":1}");
    for (int i = 0; i < 24; i++) {
        append_one(fx.db, "Employee-big", data);
    }
    free(data);
    begin(&fx, false);
    ASSERT_SQL(fx.c, "SELECT COUNT(*), SUM(salary), MIN(event_id), MAX(event_id) FROM "
                     "DeReg.\"Employee$Events\"",
               "{\"columns\":[\"COUNT(*)\",\"SUM(salary)\",\"MIN(event_id)\",\"MAX(event_id)\"],"
               "\"rows\":[[24,24,1,24]]}");
    ASSERT_SQL(fx.c, "SELECT COUNT(*), MIN(seq), MAX(seq) FROM DeReg.\"Employee$Events\" "
                     "WHERE stream_id = 'big'",
               "{\"columns\":[\"COUNT(*)\",\"MIN(seq)\",\"MAX(seq)\"],\"rows\":[[24,1,24]]}");
    fixture_close(&fx);
}

TEST(sql_group_by_stream_reads_stream_after_stream)
{
    struct fixture fx = {0};
    fixture_open(&fx, false);
    /* three streams written interleaved: grouped by stream_id, each group's rows come in seq
     * order, so the one-argument LAST and FIRST are each stream's newest and oldest */
    for (int i = 1; i <= 300; i++) {
        char data[64], stream[32];
        snprintf(data, sizeof data, "{\"salary\":%d}", i);
        snprintf(stream, sizeof stream, "Employee-%c", "bca"[i % 3]);
        append_one(fx.db, stream, data);
    }
    append_one(fx.db, "Other-z", "{\"salary\":1000}"); /* tagged, another prefix: not a row */
    begin(&fx, false);
    ASSERT_SQL(fx.c, "SELECT stream_id, LAST(salary), FIRST(salary), COUNT(*) FROM "
                     "DeReg.\"Employee$Events\" GROUP BY stream_id",
               "{\"columns\":[\"stream_id\",\"LAST(salary)\",\"FIRST(salary)\",\"COUNT(*)\"],"
               "\"rows\":[[\"a\",299,2,100],[\"b\",300,3,100],[\"c\",298,1,100]]}");
    ASSERT_SQL(fx.c, "SELECT stream_id, seq FROM DeReg.\"Employee$Events\" WHERE seq > 99 "
                     "ORDER BY stream_id",
               "{\"columns\":[\"stream_id\",\"seq\"],\"rows\":[[\"a\",100],[\"b\",100],"
               "[\"c\",100]]}");
    check_one_read(fx.c, NULL);
    /* no sort: the table delivers the groups */
    char *plan = run(fx.c, "EXPLAIN QUERY PLAN SELECT stream_id, LAST(salary) FROM "
                           "DeReg.\"Employee$Events\" GROUP BY stream_id");
    CHECK(strstr(plan, "VIRTUAL TABLE INDEX 2:") && !strstr(plan, "TEMP B-TREE"));
    free(plan);
    fixture_close(&fx);
}
