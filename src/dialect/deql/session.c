/* Inspection sessions: the tables a client makes with CREATE TABLE ... AS and
 * INSPECT, and its recorded inspections (meta_inspections), kept in memory per
 * database and session name. A session is named by the X-DeQL-Session header
 * ("default" without it); it lives until it has been unused for
 * DEQL_SESSION_IDLE_S seconds, and at most DEQL_SESSIONS_MAX are kept (making
 * another drops the idlest). Nothing of a session is durable: a restart empties
 * them (docs/dialects/deql.md, "Sessions"). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dialect/deql/dq_int.h"
#include "util/errors.h"
#include "util/timeutil.h"

struct stable {
    char *name;
    struct sql_result rows;
};

struct inspection {
    char *name, *kind, *input, *output, *full_sql;
};

struct session {
    char key[24 + DEQL_SESSION_ID_MAX + 2]; /* "<db id>/<name>" */
    uint64_t used_ns;
    struct stable tables[DEQL_SESSION_TABLES_MAX];
    size_t ntables;
    struct inspection *insp;
    size_t ninsp;
};

struct deql_sessions {
    pthread_mutex_t mu;
    struct session *s[DEQL_SESSIONS_MAX];
    size_t n;
};

enum { INSPECTIONS_MAX = 1024 }; /* recorded per session (the oldest go first) */

struct deql_sessions *dq_sessions_new(void)
{
    struct deql_sessions *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void insp_free(struct inspection *i)
{
    free(i->name);
    free(i->kind);
    free(i->input);
    free(i->output);
    free(i->full_sql);
}

static void session_free(struct session *s)
{
    for (size_t i = 0; i < s->ntables; i++) {
        free(s->tables[i].name);
        sql_result_fini(&s->tables[i].rows);
    }
    for (size_t i = 0; i < s->ninsp; i++) {
        insp_free(&s->insp[i]);
    }
    free(s->insp);
    free(s);
}

void dq_sessions_free(struct deql_sessions *s)
{
    if (!s) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        session_free(s->s[i]);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

bool dq_session_of(struct gate_call *c, char out[DEQL_SESSION_ID_MAX + 1])
{
    const char *h = http_req_header(c->req, "X-DeQL-Session");
    if (!h) {
        snprintf(out, DEQL_SESSION_ID_MAX + 1, "default");
        return true;
    }
    size_t n = strlen(h);
    bool ok = n > 0 && n <= DEQL_SESSION_ID_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char ch = h[i];
        ok = ch == '_' || ch == '-' || ch == '.' || (ch >= '0' && ch <= '9') ||
             (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
    }
    if (!ok) {
        struct gate_error e = {.kind = 400,
                               .message = "X-DeQL-Session is 1 to 64 of A-Z a-z 0-9 _ . -"};
        gate_fail(c, &e);
        return false;
    }
    memcpy(out, h, n + 1);
    return true;
}

/* Drops sessions idle too long (under mu). */
static void expire(struct deql_sessions *ss, uint64_t now)
{
    for (size_t i = 0; i < ss->n;) {
        if (now - ss->s[i]->used_ns > (uint64_t)DEQL_SESSION_IDLE_S * 1000000000ull) {
            session_free(ss->s[i]);
            ss->s[i] = ss->s[--ss->n];
        } else {
            i++;
        }
    }
}

/* The session of (db_id, name), made when make (under mu); NULL when absent. */
static struct session *find(struct deql_sessions *ss, uint64_t db_id, const char *name, bool make)
{
    uint64_t now = time_mono_ns();
    expire(ss, now);
    char key[sizeof((struct session *)0)->key];
    snprintf(key, sizeof key, "%llu/%s", (unsigned long long)db_id, name);
    for (size_t i = 0; i < ss->n; i++) {
        if (!strcmp(ss->s[i]->key, key)) {
            ss->s[i]->used_ns = now;
            return ss->s[i];
        }
    }
    if (!make) {
        return NULL;
    }
    if (ss->n == DEQL_SESSIONS_MAX) {
        size_t idlest = 0;
        for (size_t i = 1; i < ss->n; i++) {
            if (ss->s[i]->used_ns < ss->s[idlest]->used_ns) {
                idlest = i;
            }
        }
        session_free(ss->s[idlest]);
        ss->s[idlest] = ss->s[--ss->n];
    }
    struct session *s = xcalloc(1, sizeof(*s));
    memcpy(s->key, key, sizeof key);
    s->used_ns = now;
    ss->s[ss->n++] = s;
    return s;
}

static struct stable *table_of(struct session *s, const char *name)
{
    for (size_t i = 0; s && i < s->ntables; i++) {
        if (!strcmp(s->tables[i].name, name)) {
            return &s->tables[i];
        }
    }
    return NULL;
}

bool dq_table_name_ok(const char *name)
{
    return dq_ident_ok(name) && strncasecmp(name, "sqlite_", 7) != 0;
}

/* True when no two columns of res have names SQLite would take as one (case folded). */
static bool columns_distinct(const struct sql_result *res)
{
    for (size_t i = 0; i < res->ncols; i++) {
        for (size_t k = i + 1; k < res->ncols; k++) {
            if (!strcasecmp(res->names[i], res->names[k])) {
                return false;
            }
        }
    }
    return res->ncols > 0;
}

int dq_session_put(struct deql_ctx *x, uint64_t db_id, const char *session, const char *name,
                   const struct sql_result *res)
{
    if (!dq_table_name_ok(name) || !columns_distinct(res)) {
        return ERR_INVALID;
    }
    struct sql_result copy;
    sql_result_copy(&copy, res);
    pthread_mutex_lock(&x->sessions->mu);
    struct session *s = find(x->sessions, db_id, session, true);
    struct stable *t = table_of(s, name);
    size_t bytes = copy.bytes;
    for (size_t i = 0; i < s->ntables; i++) {
        bytes += &s->tables[i] == t ? 0 : s->tables[i].rows.bytes;
    }
    int rc = 0;
    if (bytes > DEQL_SESSION_BYTES_MAX) {
        rc = ERR_TOOBIG;
    } else if (t) {
        sql_result_fini(&t->rows);
        t->rows = copy;
    } else if (s->ntables == DEQL_SESSION_TABLES_MAX) {
        rc = ERR_TOOBIG;
    } else {
        s->tables[s->ntables++] = (struct stable){strdup(name), copy};
    }
    pthread_mutex_unlock(&x->sessions->mu);
    if (rc) {
        sql_result_fini(&copy);
    }
    return rc;
}

int dq_session_get(struct deql_ctx *x, uint64_t db_id, const char *session, const char *name,
                   struct sql_result *out)
{
    pthread_mutex_lock(&x->sessions->mu);
    struct stable *t = table_of(find(x->sessions, db_id, session, false), name);
    if (t) {
        sql_result_copy(out, &t->rows);
    }
    pthread_mutex_unlock(&x->sessions->mu);
    return t ? 0 : ERR_NOTFOUND;
}

int dq_session_drop(struct deql_ctx *x, uint64_t db_id, const char *session, const char *name)
{
    pthread_mutex_lock(&x->sessions->mu);
    struct session *s = find(x->sessions, db_id, session, false);
    struct stable *t = table_of(s, name);
    if (t) {
        free(t->name);
        sql_result_fini(&t->rows);
        *t = s->tables[--s->ntables];
    }
    pthread_mutex_unlock(&x->sessions->mu);
    return t ? 0 : ERR_NOTFOUND;
}

void dq_session_record(struct deql_ctx *x, uint64_t db_id, const char *session, const char *name,
                       const char *kind, const char *input, const char *output,
                       const char *full_sql)
{
    pthread_mutex_lock(&x->sessions->mu);
    struct session *s = find(x->sessions, db_id, session, true);
    if (s->ninsp == INSPECTIONS_MAX) {
        insp_free(&s->insp[0]);
        memmove(s->insp, s->insp + 1, (s->ninsp - 1) * sizeof(*s->insp));
        s->ninsp--;
    }
    s->insp = xrealloc(s->insp, (s->ninsp + 1) * sizeof(*s->insp));
    s->insp[s->ninsp++] = (struct inspection){strdup(name), strdup(kind), strdup(input),
                                              strdup(output), strdup(full_sql)};
    pthread_mutex_unlock(&x->sessions->mu);
}

void dq_session_inspections(struct deql_ctx *x, uint64_t db_id, const char *session,
                            const char *name, struct sql_result *out)
{
    static const char *const cols[] = {"name", "kind", "input_table", "output_table", "full_sql"};
    sql_result_init(out, 5, cols);
    pthread_mutex_lock(&x->sessions->mu);
    struct session *s = find(x->sessions, db_id, session, false);
    for (size_t i = 0; s && i < s->ninsp; i++) {
        const struct inspection *in = &s->insp[i];
        if (name && strcmp(in->name, name) != 0) {
            continue;
        }
        const char *v[5] = {in->name, in->kind, in->input, in->output, in->full_sql};
        struct sql_value row[5];
        for (int k = 0; k < 5; k++) {
            row[k] = (struct sql_value){.type = SQL_TEXT, .s = v[k], .len = strlen(v[k])};
        }
        sql_result_add_row(out, row);
    }
    pthread_mutex_unlock(&x->sessions->mu);
}

int dq_session_load(struct deql_ctx *x, uint64_t db_id, const char *session,
                    struct sql_conn *sc, struct sql_error *err)
{
    sql_drop_loaded(sc);
    pthread_mutex_lock(&x->sessions->mu);
    struct session *s = find(x->sessions, db_id, session, false);
    size_t n = s ? s->ntables : 0;
    struct stable *copy = xcalloc(n ? n : 1, sizeof(*copy));
    for (size_t i = 0; i < n; i++) {
        copy[i].name = strdup(s->tables[i].name);
        sql_result_copy(&copy[i].rows, &s->tables[i].rows);
    }
    pthread_mutex_unlock(&x->sessions->mu);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rc && copy[i].rows.ncols) {
            rc = sql_load_table(sc, copy[i].name, &copy[i].rows, err);
        }
        free(copy[i].name);
        sql_result_fini(&copy[i].rows);
    }
    free(copy);
    return rc;
}
