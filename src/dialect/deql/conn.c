/* The SQL connection of a worker thread, built for one registry: for every
 * aggregate its events table DeReg."<A>$Events" and its state view
 * DeReg."<A>$Agg", then every projection as the view DeReg."<P>". A thread
 * keeps one connection and builds it again when a job brings another registry
 * (a new version, or another database). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/deql/dq_int.h"
#include "util/errors.h"

/* A thread's connection and what it was built for; closed when the thread ends.
 */
struct tconn {
    struct sql_conn *conn;
    uint64_t version, db_id;
};
static pthread_key_t conn_key;
static pthread_once_t conn_once = PTHREAD_ONCE_INIT;

static void tconn_free(void *p)
{
    struct tconn *t = p;
    sql_close(t->conn);
    free(t);
}

static void conn_key_make(void)
{
    pthread_key_create(&conn_key, tconn_free);
}

static struct tconn *tconn_get(void)
{
    pthread_once(&conn_once, conn_key_make);
    struct tconn *t = pthread_getspecific(conn_key);
    if (!t) {
        t = xcalloc(1, sizeof(*t));
        pthread_setspecific(conn_key, t);
    }
    return t;
}

bool dq_ident_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DEQL_NAME_MAX || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9'))) {
            return false;
        }
    }
    return true;
}

bool dq_stream_name(const char *agg, const char *id, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s-%s", agg, id);
    return n > 0 && (size_t)n < cap;
}

void dq_agg_tag(const char *agg, char *out, size_t cap)
{
    snprintf(out, cap, "deql:%s", agg);
}

/* The $Agg view of agg: the newest non-null value of every column per stream.
 */
static void agg_view_sql(const char *agg, const struct deql_column *cols, size_t n, struct buf *out)
{
    buf_adds(out, "SELECT stream_id AS aggregate_id");
    for (size_t i = 0; i < n; i++) {
        buf_adds(out, ", LAST(");
        sql_quote_ident(cols[i].name, out);
        buf_adds(out, ", event_id) AS ");
        sql_quote_ident(cols[i].name, out);
    }
    buf_adds(out, " FROM DeReg.");
    struct buf t;
    buf_init(&t);
    buf_printf(&t, "%s$Events", agg);
    sql_quote_ident(t.ptr, out);
    buf_fini(&t);
    buf_adds(out, " GROUP BY stream_id");
}

/* Defines agg's $Events table and $Agg view on c. */
static int define_aggregate(struct sql_conn *c, const struct deql_reg *reg, const char *agg,
                            struct sql_error *err)
{
    size_t n = deql_reg_agg_columns(reg, agg, NULL, 0);
    struct deql_column *cols = xcalloc(n ? n : 1, sizeof(*cols));
    deql_reg_agg_columns(reg, agg, cols, n);
    struct sql_field *fields = xcalloc(n ? n : 1, sizeof(*fields));
    for (size_t i = 0; i < n; i++) {
        fields[i] = (struct sql_field){cols[i].name, cols[i].sql_decl, cols[i].sensitive};
    }
    char table[DEQL_NAME_MAX + 16], tag[DEQL_NAME_MAX + 16], prefix[DEQL_NAME_MAX + 4];
    snprintf(table, sizeof table, "%s$Events", agg);
    dq_agg_tag(agg, tag, sizeof tag);
    snprintf(prefix, sizeof prefix, "%s-", agg);
    struct sql_events_def def = {table, agg, tag, prefix, fields, n};
    int rc = sql_define_events(c, &def, err);
    if (!rc) {
        struct buf sql;
        buf_init(&sql);
        agg_view_sql(agg, cols, n, &sql);
        char view[DEQL_NAME_MAX + 16];
        snprintf(view, sizeof view, "%s$Agg", agg);
        rc = sql_define_view(c, view, sql.ptr, err);
        buf_fini(&sql);
    }
    free(fields);
    free(cols);
    return rc;
}

static int build(struct deql_ctx *x, const struct deql_reg *reg, struct sql_conn **out,
                 struct sql_error *err)
{
    struct sql_conn *c = NULL;
    int rc = sql_open(&x->sql, &c, err);
    if (rc) {
        return rc;
    }
    size_t n;
    const struct deql_obj *const *aggs = deql_reg_list(reg, DEQL_OBJ_AGGREGATE, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        rc = define_aggregate(c, reg, aggs[i]->name, err);
    }
    const struct deql_obj *const *projs = deql_reg_list(reg, DEQL_OBJ_PROJECTION, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        rc = sql_define_view(c, projs[i]->name, projs[i]->body, err);
        if (rc) {
            char m[sizeof err->msg + DEQL_NAME_MAX + 16];
            int w = snprintf(m, sizeof m, "projection %s: %s", projs[i]->name, err->msg);
            size_t k = w < 0 ? 0 : (size_t)w < sizeof err->msg ? (size_t)w : sizeof err->msg - 1;
            memcpy(err->msg, m, k);
            err->msg[k] = 0;
        }
    }
    if (rc) {
        sql_close(c);
        return rc;
    }
    sql_seal(c);
    *out = c;
    return 0;
}

int dq_conn_check(struct deql_ctx *x, const struct deql_reg *reg, struct sql_error *err)
{
    struct sql_conn *c = NULL;
    int rc = build(x, reg, &c, err);
    sql_close(c);
    return rc;
}

struct sql_conn *dq_conn(struct deql_ctx *x, const struct dq_reg *r, struct sql_error *err)
{
    struct tconn *t = tconn_get();
    if (t->conn && t->version == r->version && t->db_id == r->db_id) {
        return t->conn;
    }
    dq_conn_drop();
    if (build(x, r->reg, &t->conn, err) != 0) {
        t->conn = NULL;
        return NULL;
    }
    t->version = r->version;
    t->db_id = r->db_id;
    return t->conn;
}

void dq_conn_drop(void)
{
    struct tconn *t = tconn_get();
    sql_close(t->conn);
    t->conn = NULL;
}
