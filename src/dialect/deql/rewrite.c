/* INSPECT PROJECTION's source: a projection's SQL rewritten so that it reads a given table of
 * events instead of the live ones. Every reference DeReg."<A>$Events" (quoted or bare, any
 * case of DeReg) becomes a subquery of the source's events of aggregate A, and every
 * DeReg."<A>$Agg" the $Agg view computed over that subquery. Text inside strings and comments
 * is left as it is. Pure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dialect/deql/dq_int.h"

static bool ident_char(char ch)
{
    return ch == '_' || ch == '$' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9');
}

static bool has_col(const struct dq_source *s, const char *name)
{
    for (size_t i = 0; i < s->ncols; i++) {
        if (!strcmp(s->cols[i], name)) {
            return true;
        }
    }
    return false;
}

/* The payload columns of agg (malloc'd, *n of them). */
static struct deql_column *agg_columns(const struct deql_reg *reg, const char *agg, size_t *n)
{
    *n = deql_reg_agg_columns(reg, agg, NULL, 0);
    struct deql_column *cols = xcalloc(*n ? *n : 1, sizeof(*cols));
    deql_reg_agg_columns(reg, agg, cols, *n);
    return cols;
}

/* The events of aggregate agg in the source, with a column per payload field. */
static void events_sql(const struct deql_reg *reg, const char *agg, const struct dq_source *s,
                       struct buf *out)
{
    size_t n;
    struct deql_column *cols = agg_columns(reg, agg, &n);
    buf_adds(out, "(SELECT *");
    for (size_t i = 0; i < n; i++) {
        if (!has_col(s, cols[i].name) && has_col(s, "data")) {
            buf_adds(out, ", json_extract(data, ");
            struct buf path;
            buf_init(&path);
            buf_adds(&path, "$.\"");
            buf_adds(&path, cols[i].name);
            buf_adds(&path, "\"");
            buf_addc(out, '\'');
            buf_add(out, path.ptr, path.len);
            buf_adds(out, "') AS ");
            sql_quote_ident(cols[i].name, out);
            buf_fini(&path);
        }
    }
    buf_printf(out, " FROM %s WHERE 1", s->table);
    if (has_col(s, "stream_type")) {
        buf_printf(out, " AND stream_type = '%s'", agg); /* agg is an identifier */
    }
    if (s->has_offset && has_col(s, "event_id")) {
        buf_printf(out, " AND event_id > %llu", (unsigned long long)s->offset);
    }
    buf_addc(out, ')');
    free(cols);
}

/* The $Agg view of agg over the source's events. */
static void agg_sql(const struct deql_reg *reg, const char *agg, const struct dq_source *s,
                    struct buf *out)
{
    size_t n;
    struct deql_column *cols = agg_columns(reg, agg, &n);
    buf_adds(out, "(SELECT stream_id AS aggregate_id");
    for (size_t i = 0; i < n; i++) {
        buf_adds(out, ", LAST(");
        sql_quote_ident(cols[i].name, out);
        buf_adds(out, has_col(s, "event_id") ? ", event_id) AS " : ") AS ");
        sql_quote_ident(cols[i].name, out);
    }
    buf_adds(out, " FROM ");
    events_sql(reg, agg, s, out);
    buf_adds(out, " GROUP BY stream_id)");
    free(cols);
}

/* At sql[*i] a table name after "DeReg.": its unquoted text into name; *i past it. */
static bool read_name(const char *sql, size_t len, size_t *i, char *name, size_t cap)
{
    size_t k = 0, p = *i;
    if (p < len && sql[p] == '"') {
        for (p++; p < len; p++) {
            if (sql[p] == '"' && p + 1 < len && sql[p + 1] == '"') {
                p++;
            } else if (sql[p] == '"') {
                break;
            }
            if (k + 1 < cap) {
                name[k++] = sql[p];
            }
        }
        if (p >= len) {
            return false;
        }
        p++;
    } else {
        while (p < len && ident_char(sql[p])) {
            if (k + 1 < cap) {
                name[k++] = sql[p];
            }
            p++;
        }
    }
    name[k] = 0;
    *i = p;
    return k > 0;
}

/* Replaces the reference DeReg.<name> when name is an aggregate's $Events or $Agg. */
static bool replace(const struct deql_reg *reg, const char *name, const struct dq_source *s,
                    struct buf *out)
{
    const char *dollar = strrchr(name, '$');
    if (!dollar) {
        return false;
    }
    char agg[DEQL_NAME_MAX + 1];
    size_t n = (size_t)(dollar - name);
    if (n == 0 || n > DEQL_NAME_MAX) {
        return false;
    }
    memcpy(agg, name, n);
    agg[n] = 0;
    if (!deql_reg_find(reg, DEQL_OBJ_AGGREGATE, agg)) {
        return false;
    }
    if (!strcmp(dollar, "$Events")) {
        events_sql(reg, agg, s, out);
    } else if (!strcmp(dollar, "$Agg")) {
        agg_sql(reg, agg, s, out);
    } else {
        return false;
    }
    return true;
}

/* Copies a string, quoted name or comment starting at sql[*i] to out; false when none. */
static bool copy_opaque(const char *sql, size_t len, size_t *i, struct buf *out)
{
    size_t p = *i;
    char ch = sql[p];
    if (ch == '\'' || ch == '"') {
        for (p++; p < len; p++) {
            if (sql[p] == ch && p + 1 < len && sql[p + 1] == ch) {
                p++; /* a doubled quote */
            } else if (sql[p] == ch) {
                break;
            }
        }
        p = p < len ? p + 1 : len;
    } else if (ch == '-' && p + 1 < len && sql[p + 1] == '-') {
        while (p < len && sql[p] != '\n') {
            p++;
        }
    } else if (ch == '/' && p + 1 < len && sql[p + 1] == '*') {
        const char *e = strstr(sql + p + 2, "*/");
        p = e ? (size_t)(e - sql) + 2 : len;
    } else {
        return false;
    }
    buf_add(out, sql + *i, p - *i);
    *i = p;
    return true;
}

static bool blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* The length of a schema name DeReg at sql[i] (bare, or quoted "DeReg"; any case), or 0. */
static size_t dereg_at(const char *sql, size_t len, size_t i)
{
    bool word_start = i == 0 || !ident_char(sql[i - 1]);
    if (word_start && len - i > 5 && !strncasecmp(sql + i, "DeReg", 5) &&
        !ident_char(sql[i + 5])) {
        return 5;
    }
    if (len - i > 7 && sql[i] == '"' && !strncasecmp(sql + i + 1, "DeReg", 5) &&
        sql[i + 6] == '"') {
        return 7;
    }
    return 0;
}

/* Words that may follow a table where no alias is given. */
static bool clause_word(const char *w, size_t n)
{
    static const char *const WORDS[] = {"WHERE", "GROUP", "ORDER", "JOIN", "ON", "LIMIT",
                                        "UNION", "INNER", "LEFT", "RIGHT", "FULL", "CROSS",
                                        "NATURAL", "HAVING", "WINDOW", "USING", "EXCEPT",
                                        "INTERSECT", "OFFSET", "INDEXED", "NOT"};
    for (size_t i = 0; i < sizeof WORDS / sizeof WORDS[0]; i++) {
        if (strlen(WORDS[i]) == n && !strncasecmp(WORDS[i], w, n)) {
            return true;
        }
    }
    return false;
}

/* True when the reference ending at sql[q] is followed by an alias (AS, or a name that is no
 * clause word); *column when it is followed by '.' (schema.table.column: not a table). */
static bool has_alias(const char *sql, size_t len, size_t q, bool *column)
{
    while (q < len && blank(sql[q])) {
        q++;
    }
    *column = q < len && sql[q] == '.';
    if (q >= len || !(ident_char(sql[q]) || sql[q] == '"')) {
        return false;
    }
    if (sql[q] == '"') {
        return true;
    }
    size_t e = q;
    while (e < len && ident_char(sql[e])) {
        e++;
    }
    return !clause_word(sql + q, e - q);
}

void dq_rewrite_sources(const struct deql_reg *reg, const char *sql, const struct dq_source *s,
                        struct buf *out)
{
    size_t len = strlen(sql);
    for (size_t i = 0; i < len;) {
        size_t schema = dereg_at(sql, len, i);
        if (!schema && copy_opaque(sql, len, &i, out)) {
            continue;
        }
        if (schema) {
            size_t p = i + schema;
            while (p < len && blank(sql[p])) {
                p++;
            }
            char name[2 * DEQL_NAME_MAX];
            size_t q = p + 1;
            while (q < len && blank(sql[q])) {
                q++;
            }
            bool column = false;
            bool alias = p < len && sql[p] == '.' && read_name(sql, len, &q, name, sizeof name) &&
                         has_alias(sql, len, q, &column);
            if (p < len && sql[p] == '.' && !column && replace(reg, name, s, out)) {
                if (!alias) { /* keep the table's name for columns qualified by it */
                    buf_adds(out, " AS ");
                    sql_quote_ident(name, out);
                }
                i = q;
                continue;
            }
            buf_add(out, sql + i, schema); /* not one of ours: as written */
            i += schema;
            continue;
        }
        buf_addc(out, sql[i++]);
    }
}
