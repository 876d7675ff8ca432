/* Unit tests for INSPECT PROJECTION's rewrite (dialect/deql/rewrite.c): which references are
 * replaced (an aggregate's $Events and $Agg, quoted or bare, any case of DeReg), what is left
 * (strings, comments, other tables, unknown aggregates), and the subqueries' shape (stream
 * type and offset filters, fields from `data` when the source lacks their columns). */
#include "dialect/deql/dq_int.h"

#include "unit.h"
#include "util/buf.h"

static struct deql_reg *reg(void)
{
    struct deql_reg *r = deql_reg_new();
    static const char script[] =
        "CREATE AGGREGATE Acct; CREATE COMMAND Dep (id STRING, n INT);"
        "CREATE EVENT Deposited (n INT);"
        "CREATE DECISION D FOR Acct ON COMMAND Dep EMIT AS SELECT EVENT Deposited (n := :n);";
    struct deql_error e;
    CHECK(deql_reg_apply_script(r, script, sizeof script - 1, NULL, &e) == 0);
    return r;
}

static char *rewrite(const struct deql_reg *r, const char *sql, const struct dq_source *s)
{
    struct buf b;
    buf_init(&b);
    dq_rewrite_sources(r, sql, s, &b);
    return buf_steal(&b, NULL);
}

static const char *const EVENT_COLS[] = {"event_id", "stream_type", "stream_id", "data"};

TEST(events_reference_becomes_a_subquery)
{
    struct deql_reg *r = reg();
    struct dq_source s = {"temp.\"t\"", EVENT_COLS, 4, true, 7};
    char *out = rewrite(r, "SELECT SUM(n) FROM DeReg.\"Acct$Events\" GROUP BY stream_id", &s);
    ASSERT_STR(out, "SELECT SUM(n) FROM (SELECT *, json_extract(data, '$.\"n\"') AS \"n\" "
                    "FROM temp.\"t\" WHERE 1 AND stream_type = 'Acct' AND event_id > 7) "
                    "AS \"Acct$Events\" GROUP BY stream_id");
    free(out);
    deql_reg_free(r);
}

TEST(agg_reference_becomes_the_view_over_the_source)
{
    struct deql_reg *r = reg();
    static const char *const cols[] = {"event_id", "stream_id", "n"};
    struct dq_source s = {"DeReg.\"Acct$Events\"", cols, 3, false, 0};
    char *out = rewrite(r, "select * from dereg . Acct$Agg", &s);
    ASSERT_STR(out, "select * from (SELECT stream_id AS aggregate_id, LAST(\"n\", event_id) AS "
                    "\"n\" FROM (SELECT * FROM DeReg.\"Acct$Events\" WHERE 1) GROUP BY "
                    "stream_id) AS \"Acct$Agg\"");
    free(out);
    deql_reg_free(r);
}

TEST(strings_comments_and_other_tables_stay)
{
    struct deql_reg *r = reg();
    struct dq_source s = {"t", EVENT_COLS, 4, false, 0};
    static const char *const same[] = {
        "SELECT 'DeReg.\"Acct$Events\"' -- DeReg.\"Acct$Events\"\n",
        "SELECT 1 /* DeReg.Acct$Agg */ FROM DeReg.\"Other$Events\"",
        "SELECT * FROM DeReg.\"Acct$Other\", XDeReg.\"Acct$Events\"",
        "SELECT \"DeReg\"\"x\" FROM y",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        char *out = rewrite(r, same[i], &s);
        ASSERT_STR(out, same[i]);
        free(out);
    }
    deql_reg_free(r);
}

TEST(quoted_schema_aliases_and_column_references)
{
    struct deql_reg *r = reg();
    static const char *const cols[] = {"event_id", "n"};
    struct dq_source s = {"src", cols, 2, false, 0};
    /* a quoted schema, an alias kept as written */
    char *out = rewrite(r, "SELECT e.n FROM \"dereg\".\"Acct$Events\" e WHERE e.n > 1", &s);
    ASSERT_STR(out, "SELECT e.n FROM (SELECT * FROM src WHERE 1) e WHERE e.n > 1");
    free(out);
    out = rewrite(r, "SELECT 1 FROM DeReg.Acct$Events AS x", &s);
    ASSERT_STR(out, "SELECT 1 FROM (SELECT * FROM src WHERE 1) AS x");
    free(out);
    /* schema.table.column is a column, not a table */
    static const char col[] = "SELECT DeReg.\"Acct$Events\".n FROM DeReg.\"Acct$Events\"";
    out = rewrite(r, col, &s);
    ASSERT_STR(out, "SELECT DeReg.\"Acct$Events\".n FROM (SELECT * FROM src WHERE 1) AS "
                    "\"Acct$Events\"");
    free(out);
    /* a quoted name that is not DeReg is copied as a name */
    out = rewrite(r, "SELECT \"DeRegs\".x FROM y", &s);
    ASSERT_STR(out, "SELECT \"DeRegs\".x FROM y");
    free(out);
    deql_reg_free(r);
}
