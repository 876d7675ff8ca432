/* DeQL parser: splits a script (lex.c), then parses each statement by recursive descent over
 * its tokens. Invariants: every token a statement parser reads lies inside that statement
 * (its lexer stops at the ';'); parentheses are balanced inside a statement (deql_split checked
 * them), so a span scan that counts depth always ends; every string and array lives in the
 * script's arena, freed in one call. */
#include "dialect/deql/parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/deql/lex.h"
#include "util/buf.h"
#include "util/errors.h"

/* ---- arena ---------------------------------------------------------------------------- */

struct arena_chunk {
    struct arena_chunk *next; /* older chunk */
    size_t used;              /* bytes handed out */
    size_t cap;               /* bytes in data */
    _Alignas(8) unsigned char data[];
};

struct deql_arena {
    struct arena_chunk *head; /* newest chunk, allocations come from here */
};

enum { ARENA_CHUNK_BYTES = 16 * 1024 };

static void *arena_alloc(struct deql_arena *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    struct arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK_BYTES ? n : ARENA_CHUNK_BYTES;
        c = xmalloc(sizeof(*c) + cap);
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

static char *arena_strndup(struct deql_arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Grows an arena array of elem-sized items to hold count+1 items; *cap doubles. */
static void *arena_grow(struct deql_arena *a, void *arr, size_t count, size_t *cap, size_t elem)
{
    if (count < *cap) return arr;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *n = arena_alloc(a, ncap * elem);
    if (count) memcpy(n, arr, count * elem);
    *cap = ncap;
    return n;
}

/* ---- parser state and token helpers ----------------------------------------------------- */

struct parser {
    const char *text;       /* the script, borrowed */
    struct deql_lexer lx;   /* positioned after cur */
    struct deql_tok cur;    /* current token */
    struct deql_tok prev;   /* last consumed token */
    struct deql_arena *arena;
    struct deql_error *err;
};

static int next(struct parser *p)
{
    p->prev = p->cur;
    return deql_lex_next(&p->lx, &p->cur, p->err);
}

/* The token after cur (k = 1) or the one after that (k = 2), without consuming. */
static int peek(struct parser *p, int k, struct deql_tok *t)
{
    struct deql_lexer lx = p->lx;
    int rc = 0;
    for (int i = 0; i < k && rc == 0; i++) {
        rc = deql_lex_next(&lx, t, p->err);
    }
    return rc;
}

static bool is_kw(const struct parser *p, const char *kw)
{
    return deql_tok_is(&p->cur, p->text, kw);
}

static bool is_punct(const struct parser *p, char ch)
{
    return p->cur.type == TOK_PUNCT && p->cur.ch == ch;
}

static int fail_at(struct parser *p, const char *expected)
{
    char msg[DEQL_ERROR_MSG_BYTES];
    if (p->cur.type == TOK_EOF) {
        snprintf(msg, sizeof msg, "expected %s at the end of the statement", expected);
    } else {
        int n = p->cur.len > 40 ? 40 : (int)p->cur.len;
        snprintf(msg, sizeof msg, "expected %s, found '%.*s'", expected, n,
                 p->text + p->cur.off);
    }
    return deql_fail(p->err, ERR_INVALID, p->cur.line, p->cur.column, expected, msg);
}

static int expect_kw(struct parser *p, const char *kw)
{
    if (!is_kw(p, kw)) return fail_at(p, kw);
    return next(p);
}

static int expect_punct(struct parser *p, char ch)
{
    if (!is_punct(p, ch)) {
        char want[8];
        snprintf(want, sizeof want, "'%c'", ch);
        return fail_at(p, want);
    }
    return next(p);
}

static int expect_end(struct parser *p)
{
    if (p->cur.type != TOK_EOF) return fail_at(p, "';' or end of script");
    return 0;
}

/* An identifier, unquoted (spelling kept) or "quoted" ("" unescaped), into the arena. */
static int parse_ident(struct parser *p, const char *what, char **out)
{
    const struct deql_tok *t = &p->cur;
    if (t->type != TOK_IDENT && t->type != TOK_QIDENT) return fail_at(p, what);
    char buf[DEQL_MAX_IDENT_BYTES + 1];
    size_t n = 0;
    if (t->type == TOK_IDENT) {
        if (t->len > DEQL_MAX_IDENT_BYTES) goto out_too_long;
        memcpy(buf, p->text + t->off, t->len);
        n = t->len;
    } else {
        for (uint32_t i = t->off + 1; i < t->off + t->len - 1; i++) {
            if (n >= DEQL_MAX_IDENT_BYTES) goto out_too_long;
            buf[n++] = p->text[i];
            if (p->text[i] == '"') i++;
        }
        if (n == 0) {
            return deql_fail(p->err, ERR_INVALID, t->line, t->column, what,
                             "empty quoted identifier");
        }
    }
    *out = arena_strndup(p->arena, buf, n);
    return next(p);
out_too_long:
    return deql_fail(p->err, ERR_TOOBIG, t->line, t->column, what,
                     "identifier longer than DEQL_MAX_IDENT_BYTES (128)");
}

static int parse_qname(struct parser *p, const char *what, struct deql_qname *out)
{
    char *first;
    int rc = parse_ident(p, what, &first);
    if (rc < 0) return rc;
    if (!is_punct(p, '.')) {
        out->name = first;
        return 0;
    }
    rc = next(p);
    if (rc < 0) return rc;
    out->schema = first;
    return parse_ident(p, "table name after '.'", &out->name);
}

static int check_count(struct parser *p, size_t count, size_t max, const char *what)
{
    if (count < max) return 0;
    char msg[DEQL_ERROR_MSG_BYTES];
    snprintf(msg, sizeof msg, "more %s than %s (%zu)", what,
             max == DEQL_MAX_FIELDS     ? "DEQL_MAX_FIELDS"
             : max == DEQL_MAX_BRANCHES ? "DEQL_MAX_BRANCHES"
                                        : "DEQL_MAX_EMITS",
             max);
    return deql_fail(p->err, ERR_TOOBIG, p->cur.line, p->cur.column, "", msg);
}

/* ---- spans ------------------------------------------------------------------------------ */

typedef bool stop_fn(struct parser *p);

/* Consumes tokens up to (not including) the first one at parenthesis depth 0 where stop says
 * so, a ')' that would close an outer group, or the end. The span covers what was consumed
 * (len 0 if nothing). *is_group (optional) tells whether the span is one parenthesized group. */
static int scan_span(struct parser *p, stop_fn *stop, struct deql_span *out, bool *is_group)
{
    int depth = 0;
    bool starts_group = is_punct(p, '(');
    uint32_t start = p->cur.off;
    uint32_t first_close = 0;
    out->off = start;
    out->len = 0;
    while (p->cur.type != TOK_EOF) {
        if (depth == 0 && (is_punct(p, ')') || stop(p))) break;
        if (is_punct(p, '(')) {
            depth++;
        } else if (is_punct(p, ')') && --depth == 0 && first_close == 0) {
            first_close = p->cur.off + p->cur.len;
        }
        int rc = next(p);
        if (rc < 0) return rc;
        out->len = p->prev.off + p->prev.len - start;
    }
    if (is_group) *is_group = starts_group && first_close == start + out->len;
    return 0;
}

static bool stop_never(struct parser *p)
{
    (void)p;
    return false;
}

static bool stop_comma(struct parser *p)
{
    return is_punct(p, ',');
}

/* ---- lists ------------------------------------------------------------------------------ */

/* `NAME [(n [, n])]`, canonical upper-case text without spaces. */
static int parse_type(struct parser *p, char **out)
{
    if (p->cur.type != TOK_IDENT) return fail_at(p, "field type");
    char buf[DEQL_MAX_TYPE_BYTES];
    size_t n = 0;
    if (p->cur.len > DEQL_MAX_IDENT_BYTES) return fail_at(p, "field type (too long)");
    for (uint32_t i = 0; i < p->cur.len; i++) {
        char c = p->text[p->cur.off + i];
        buf[n++] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    int rc = next(p);
    if (rc < 0 || !is_punct(p, '(')) goto out_done;
    buf[n++] = '(';
    for (int k = 0;; k++) {
        rc = next(p);
        if (rc < 0) return rc;
        if (k == 2 || p->cur.type != TOK_NUMBER || p->cur.len > 10) {
            return fail_at(p, "type parameter (up to two numbers)");
        }
        memcpy(buf + n, p->text + p->cur.off, p->cur.len);
        n += p->cur.len;
        rc = next(p);
        if (rc < 0) return rc;
        if (!is_punct(p, ',')) break;
        buf[n++] = ',';
    }
    buf[n++] = ')';
    rc = expect_punct(p, ')');
out_done:
    if (rc < 0) return rc;
    *out = arena_strndup(p->arena, buf, n);
    return 0;
}

/* `name TYPE {KEY|SENSITIVE|VOLATILE}`; the type is optional when types_optional. */
static int parse_field(struct parser *p, struct deql_field *f, bool types_optional)
{
    int rc = parse_ident(p, "field name", &f->name);
    if (rc < 0) return rc;
    if (!(types_optional && (is_punct(p, ',') || is_punct(p, ')')))) {
        rc = parse_type(p, &f->type);
        if (rc < 0) return rc;
    }
    for (;;) {
        bool *flag = is_kw(p, "KEY")         ? &f->is_key
                     : is_kw(p, "SENSITIVE") ? &f->is_sensitive
                     : is_kw(p, "VOLATILE")  ? &f->is_volatile
                                             : NULL;
        if (!flag) return 0;
        *flag = true;
        rc = next(p);
        if (rc < 0) return rc;
    }
}

/* `( field {, field} )`; allow_empty admits `()`. */
static int parse_fields(struct parser *p, struct deql_stmt *s, bool allow_empty,
                        bool types_optional)
{
    int rc = expect_punct(p, '(');
    if (rc < 0) return rc;
    if (allow_empty && is_punct(p, ')')) return next(p);
    size_t cap = 0;
    for (;;) {
        rc = check_count(p, s->field_count, DEQL_MAX_FIELDS, "fields");
        if (rc < 0) return rc;
        s->fields = arena_grow(p->arena, s->fields, s->field_count, &cap, sizeof(*s->fields));
        rc = parse_field(p, &s->fields[s->field_count++], types_optional);
        if (rc < 0) return rc;
        if (!is_punct(p, ',')) break;
        rc = next(p);
        if (rc < 0) return rc;
    }
    if (!is_punct(p, ')')) return fail_at(p, "',' or ')'");
    return next(p);
}

/* `( [field := expr {, field := expr}] )` */
static int parse_assigns(struct parser *p, struct deql_assign **arr, size_t *count)
{
    int rc = expect_punct(p, '(');
    if (rc < 0) return rc;
    if (is_punct(p, ')')) return next(p);
    size_t cap = 0;
    for (;;) {
        rc = check_count(p, *count, DEQL_MAX_FIELDS, "assignments");
        if (rc < 0) return rc;
        *arr = arena_grow(p->arena, *arr, *count, &cap, sizeof(**arr));
        struct deql_assign *a = &(*arr)[(*count)++];
        rc = parse_ident(p, "field name", &a->field);
        if (rc < 0) return rc;
        if (p->cur.type != TOK_ASSIGN) return fail_at(p, "':='");
        rc = next(p);
        if (rc < 0) return rc;
        rc = scan_span(p, stop_comma, &a->expr, NULL);
        if (rc < 0) return rc;
        if (a->expr.len == 0) return fail_at(p, "expression");
        if (!is_punct(p, ',')) break;
        rc = next(p);
        if (rc < 0) return rc;
    }
    return expect_punct(p, ')');
}

/* `dotted.key` into the arena. */
static int parse_option_key(struct parser *p, char **out)
{
    if (p->cur.type != TOK_IDENT) return fail_at(p, "option name");
    uint32_t start = p->cur.off;
    for (;;) {
        if (p->cur.type != TOK_IDENT) return fail_at(p, "option name after '.'");
        if (p->cur.off + p->cur.len - start > DEQL_MAX_IDENT_BYTES) {
            return deql_fail(p->err, ERR_TOOBIG, p->cur.line, p->cur.column, "option name",
                             "option name longer than DEQL_MAX_IDENT_BYTES (128)");
        }
        int rc = next(p);
        if (rc < 0) return rc;
        if (!is_punct(p, '.')) break;
        rc = next(p);
        if (rc < 0) return rc;
    }
    *out = arena_strndup(p->arena, p->text + start, p->prev.off + p->prev.len - start);
    return 0;
}

/* `WITH ( key = value {, key = value} )` */
static int parse_options(struct parser *p, struct deql_stmt *s)
{
    int rc = expect_kw(p, "WITH");
    if (rc < 0) return rc;
    rc = expect_punct(p, '(');
    if (rc < 0) return rc;
    size_t cap = 0;
    for (;;) {
        rc = check_count(p, s->option_count, DEQL_MAX_FIELDS, "options");
        if (rc < 0) return rc;
        s->options = arena_grow(p->arena, s->options, s->option_count, &cap,
                                sizeof(*s->options));
        struct deql_option *o = &s->options[s->option_count++];
        rc = parse_option_key(p, &o->key);
        if (rc < 0) return rc;
        rc = expect_punct(p, '=');
        if (rc < 0) return rc;
        rc = scan_span(p, stop_comma, &o->value, NULL);
        if (rc < 0) return rc;
        if (o->value.len == 0) return fail_at(p, "option value");
        if (!is_punct(p, ',')) break;
        rc = next(p);
        if (rc < 0) return rc;
    }
    rc = expect_punct(p, ')');
    if (rc < 0) return rc;
    return expect_end(p);
}

/* ---- statements ------------------------------------------------------------------------- */

/* Whether cur and the next token are the keywords a and b. */
static bool is_kw2(struct parser *p, const char *a, const char *b)
{
    struct deql_tok t;
    return is_kw(p, a) && peek(p, 1, &t) == 0 && deql_tok_is(&t, p->text, b);
}

/* The end of STATE AS: `EMIT AS`, or the shorthand `AS SELECT EVENT` / `AS BRANCH`. */
static bool stop_state(struct parser *p)
{
    struct deql_tok t;
    if (is_kw2(p, "EMIT", "AS")) return true;
    if (!is_kw(p, "AS") || peek(p, 1, &t) < 0) return false;
    if (deql_tok_is(&t, p->text, "BRANCH")) return true;
    return deql_tok_is(&t, p->text, "SELECT") && peek(p, 2, &t) == 0 &&
           deql_tok_is(&t, p->text, "EVENT");
}

static bool stop_union(struct parser *p)
{
    return is_kw2(p, "UNION", "ALL");
}

static bool stop_limit(struct parser *p)
{
    return is_kw(p, "LIMIT");
}

/* `SELECT EVENT Name (assignments)` */
static int parse_emit(struct parser *p, struct deql_emit *e)
{
    int rc = expect_kw(p, "SELECT");
    if (rc < 0) return rc;
    rc = expect_kw(p, "EVENT");
    if (rc < 0) return rc;
    rc = parse_ident(p, "event name", &e->event);
    if (rc < 0) return rc;
    return parse_assigns(p, &e->assigns, &e->assign_count);
}

/* `[BRANCH label] emit {, emit} [WHERE guard]` */
static int parse_branch(struct parser *p, struct deql_branch *b)
{
    uint32_t start = p->cur.off;
    int rc = 0;
    if (is_kw(p, "BRANCH")) {
        rc = next(p);
        if (rc < 0) return rc;
        rc = parse_ident(p, "branch label", &b->label);
        if (rc < 0) return rc;
    }
    size_t cap = 0;
    for (;;) {
        rc = check_count(p, b->emit_count, DEQL_MAX_EMITS, "SELECT EVENT items");
        if (rc < 0) return rc;
        b->emits = arena_grow(p->arena, b->emits, b->emit_count, &cap, sizeof(*b->emits));
        rc = parse_emit(p, &b->emits[b->emit_count++]);
        if (rc < 0) return rc;
        if (!is_punct(p, ',')) break;
        rc = next(p);
        if (rc < 0) return rc;
    }
    if (is_kw(p, "WHERE")) {
        rc = next(p);
        if (rc < 0) return rc;
        rc = scan_span(p, stop_union, &b->guard, NULL);
        if (rc < 0) return rc;
        if (b->guard.len == 0) return fail_at(p, "guard condition");
    }
    b->text.off = start;
    b->text.len = p->prev.off + p->prev.len - start;
    return 0;
}

static int parse_state(struct parser *p, struct deql_stmt *s)
{
    int rc = next(p); /* STATE */
    if (rc < 0) return rc;
    rc = expect_kw(p, "AS");
    if (rc < 0) return rc;
    bool is_group = false;
    rc = scan_span(p, stop_state, &s->decision.state, &is_group);
    if (rc < 0) return rc;
    if (is_group) {
        s->decision.state.off++;
        s->decision.state.len -= 2;
    }
    if (s->decision.state.len == 0) return fail_at(p, "STATE AS query");
    return 0;
}

/* `Name FOR Agg ON COMMAND Cmd [STATE AS q] (EMIT AS | AS) branch {UNION ALL branch}` */
static int parse_decision(struct parser *p, struct deql_stmt *s)
{
    int rc = parse_ident(p, "decision name", &s->name);
    if (rc < 0) return rc;
    rc = expect_kw(p, "FOR");
    if (rc < 0) return rc;
    rc = parse_ident(p, "aggregate name", &s->decision.aggregate);
    if (rc < 0) return rc;
    rc = expect_kw(p, "ON");
    if (rc < 0) return rc;
    rc = expect_kw(p, "COMMAND");
    if (rc < 0) return rc;
    rc = parse_ident(p, "command name", &s->decision.command);
    if (rc < 0) return rc;
    if (is_kw(p, "STATE")) {
        rc = parse_state(p, s);
        if (rc < 0) return rc;
    }
    if (is_kw(p, "EMIT")) {
        rc = next(p);
        if (rc < 0) return rc;
    } else if (!is_kw(p, "AS")) {
        return fail_at(p, s->decision.state.len ? "EMIT AS" : "STATE AS or EMIT AS");
    }
    rc = expect_kw(p, "AS");
    if (rc < 0) return rc;
    size_t cap = 0;
    for (;;) {
        rc = check_count(p, s->decision.branch_count, DEQL_MAX_BRANCHES, "branches");
        if (rc < 0) return rc;
        s->decision.branches = arena_grow(p->arena, s->decision.branches,
                                          s->decision.branch_count, &cap,
                                          sizeof(*s->decision.branches));
        rc = parse_branch(p, &s->decision.branches[s->decision.branch_count++]);
        if (rc < 0) return rc;
        if (!stop_union(p)) break;
        rc = next(p);
        if (rc < 0) return rc;
        rc = next(p);
        if (rc < 0) return rc;
    }
    if (p->cur.type != TOK_EOF) return fail_at(p, "WHERE, ',', UNION ALL or ';'");
    return 0;
}

/* The rest of the statement as a span; it must start with one of the given keywords. */
static int parse_query_body(struct parser *p, struct deql_span *out, const char *expected)
{
    if (!is_kw(p, "SELECT") && !is_kw(p, "WITH") && !is_kw(p, "VALUES")) {
        return fail_at(p, expected);
    }
    if (is_kw(p, "VALUES") && strcmp(expected, "SELECT or WITH") == 0) {
        return fail_at(p, expected);
    }
    int rc = scan_span(p, stop_never, out, NULL);
    if (rc < 0) return rc;
    return expect_end(p);
}

static int parse_template(struct parser *p, struct deql_stmt *s)
{
    int rc = parse_ident(p, "template name", &s->name);
    if (rc < 0) return rc;
    if (is_kw(p, "WITH")) {
        rc = next(p);
        if (rc < 0) return rc;
        rc = parse_fields(p, s, false, true);
    } else if (is_punct(p, '(')) {
        rc = parse_fields(p, s, true, true);
    } else {
        return fail_at(p, "'(' or WITH");
    }
    if (rc < 0) return rc;
    rc = expect_kw(p, "AS");
    if (rc < 0) return rc;
    if (!is_punct(p, '(')) return fail_at(p, "'(' (the template body is parenthesized)");
    bool is_group = false;
    rc = scan_span(p, stop_never, &s->body, &is_group);
    if (rc < 0) return rc;
    if (!is_group) return fail_at(p, "';' after the template body");
    s->body.off++;
    s->body.len -= 2;
    return 0;
}

static int parse_create_table(struct parser *p, struct deql_stmt *s)
{
    int rc = parse_qname(p, "table name", &s->table);
    if (rc < 0) return rc;
    rc = expect_kw(p, "AS");
    if (rc < 0) return rc;
    s->is_values = is_kw(p, "VALUES");
    return parse_query_body(p, &s->body, "VALUES, SELECT or WITH");
}

static const struct {
    const char *kw;
    enum deql_stmt_kind kind;
    enum deql_object object;
} CREATE_KINDS[] = {
    {"AGGREGATE", DEQL_CREATE_AGGREGATE, DEQL_OBJ_AGGREGATE},
    {"COMMAND", DEQL_CREATE_COMMAND, DEQL_OBJ_COMMAND},
    {"EVENT", DEQL_CREATE_EVENT, DEQL_OBJ_EVENT},
    {"DECISION", DEQL_CREATE_DECISION, DEQL_OBJ_DECISION},
    {"PROJECTION", DEQL_CREATE_PROJECTION, DEQL_OBJ_PROJECTION},
    {"TEMPLATE", DEQL_CREATE_TEMPLATE, DEQL_OBJ_TEMPLATE},
    {"EVENTSTORE", DEQL_CREATE_EVENTSTORE, DEQL_OBJ_EVENTSTORE},
};

enum { CREATE_KIND_COUNT = sizeof CREATE_KINDS / sizeof CREATE_KINDS[0] };

static int find_create_kind(struct parser *p)
{
    for (int i = 0; i < CREATE_KIND_COUNT; i++) {
        if (is_kw(p, CREATE_KINDS[i].kw)) return i;
    }
    return -1;
}

/* The body after `CREATE [OR REPLACE] <KIND>`. */
static int parse_create_body(struct parser *p, struct deql_stmt *s)
{
    int rc;
    const char *what = s->kind == DEQL_CREATE_AGGREGATE ? "aggregate name"
                       : s->kind == DEQL_CREATE_COMMAND ? "command name"
                       : s->kind == DEQL_CREATE_EVENT   ? "event name"
                                                        : "name";
    switch (s->kind) {
    case DEQL_CREATE_DECISION:
        return parse_decision(p, s);
    case DEQL_CREATE_TEMPLATE:
        return parse_template(p, s);
    default:
        break;
    }
    rc = parse_ident(p, what, &s->name);
    if (rc < 0) return rc;
    switch (s->kind) {
    case DEQL_CREATE_AGGREGATE:
        if (is_punct(p, '(')) rc = parse_fields(p, s, false, false);
        break;
    case DEQL_CREATE_COMMAND:
        rc = parse_fields(p, s, false, false);
        break;
    case DEQL_CREATE_EVENT:
        rc = parse_fields(p, s, true, false);
        break;
    case DEQL_CREATE_PROJECTION:
        rc = expect_kw(p, "AS");
        return rc < 0 ? rc : parse_query_body(p, &s->body, "SELECT or WITH");
    case DEQL_CREATE_EVENTSTORE:
        return parse_options(p, s);
    default:
        break;
    }
    return rc < 0 ? rc : expect_end(p);
}

static int parse_create(struct parser *p, struct deql_stmt *s)
{
    int rc = next(p);
    if (rc < 0) return rc;
    if (is_kw(p, "OR")) {
        rc = next(p);
        if (rc < 0) return rc;
        rc = expect_kw(p, "REPLACE");
        if (rc < 0) return rc;
        s->or_replace = true;
    }
    if (is_kw(p, "TABLE")) {
        s->kind = DEQL_CREATE_TABLE;
        rc = next(p);
        return rc < 0 ? rc : parse_create_table(p, s);
    }
    int k = find_create_kind(p);
    if (k < 0) {
        return fail_at(p, "AGGREGATE, COMMAND, EVENT, DECISION, PROJECTION, TEMPLATE, "
                          "EVENTSTORE or TABLE");
    }
    s->kind = CREATE_KINDS[k].kind;
    rc = next(p);
    return rc < 0 ? rc : parse_create_body(p, s);
}

/* `ALTER <KIND> name (ADD [COLUMN|FIELD] (fields | field) | <text>)` */
static int parse_alter(struct parser *p, struct deql_stmt *s)
{
    int rc = next(p);
    if (rc < 0) return rc;
    int k = find_create_kind(p);
    if (k < 0) {
        return fail_at(p, "AGGREGATE, COMMAND, EVENT, DECISION, PROJECTION, TEMPLATE or "
                          "EVENTSTORE");
    }
    s->object = CREATE_KINDS[k].object;
    rc = next(p);
    if (rc < 0) return rc;
    rc = parse_ident(p, "name", &s->name);
    if (rc < 0) return rc;
    if (!is_kw(p, "ADD")) {
        rc = scan_span(p, stop_never, &s->body, NULL);
        if (rc < 0) return rc;
        return s->body.len ? expect_end(p) : fail_at(p, "ADD or the altered definition");
    }
    s->is_add = true;
    rc = next(p);
    if (rc < 0) return rc;
    if (is_kw(p, "COLUMN") || is_kw(p, "FIELD")) {
        rc = next(p);
        if (rc < 0) return rc;
    }
    if (is_punct(p, '(')) {
        rc = parse_fields(p, s, false, false);
    } else {
        s->fields = arena_alloc(p->arena, sizeof(*s->fields));
        s->field_count = 1;
        rc = parse_field(p, &s->fields[0], false);
    }
    return rc < 0 ? rc : expect_end(p);
}

static int parse_uint(struct parser *p, const char *what, uint64_t *out)
{
    if (p->cur.type != TOK_NUMBER || p->cur.len > 18) return fail_at(p, what);
    uint64_t v = 0;
    for (uint32_t i = 0; i < p->cur.len; i++) {
        char c = p->text[p->cur.off + i];
        if (c < '0' || c > '9') return fail_at(p, what);
        v = v * 10 + (uint64_t)(c - '0');
    }
    *out = v;
    return next(p);
}

/* `FROM t INTO out`, then for projections `[OFFSET n] [WHERE guard] [LIMIT m]`. */
static int parse_inspect_tail(struct parser *p, struct deql_stmt *s)
{
    int rc = expect_kw(p, "FROM");
    if (rc < 0) return rc;
    rc = parse_qname(p, "input table", &s->inspect.from);
    if (rc < 0) return rc;
    rc = expect_kw(p, "INTO");
    if (rc < 0) return rc;
    rc = parse_qname(p, "output table", &s->inspect.into);
    if (rc < 0 || s->kind == DEQL_INSPECT_DECISION) return rc < 0 ? rc : expect_end(p);
    if (is_kw(p, "OFFSET")) {
        rc = next(p);
        if (rc < 0) return rc;
        s->inspect.has_offset = true;
        rc = parse_uint(p, "OFFSET number", &s->inspect.offset);
        if (rc < 0) return rc;
    }
    if (is_kw(p, "WHERE")) {
        rc = next(p);
        if (rc < 0) return rc;
        rc = scan_span(p, stop_limit, &s->inspect.where, NULL);
        if (rc < 0) return rc;
        if (s->inspect.where.len == 0) return fail_at(p, "WHERE condition");
    }
    if (is_kw(p, "LIMIT")) {
        rc = next(p);
        if (rc < 0) return rc;
        s->inspect.has_limit = true;
        rc = parse_uint(p, "LIMIT number", &s->inspect.limit);
        if (rc < 0) return rc;
    }
    if (p->cur.type != TOK_EOF) {
        return fail_at(p, s->inspect.has_limit ? "';'" : "OFFSET, WHERE, LIMIT or ';'");
    }
    return 0;
}

static int parse_inspect(struct parser *p, struct deql_stmt *s)
{
    int rc = next(p);
    if (rc < 0) return rc;
    if (is_kw(p, "DECISION")) {
        s->kind = DEQL_INSPECT_DECISION;
    } else if (is_kw(p, "PROJECTION")) {
        s->kind = DEQL_INSPECT_PROJECTION;
    } else {
        return fail_at(p, "DECISION or PROJECTION");
    }
    rc = next(p);
    if (rc < 0) return rc;
    rc = parse_ident(p, s->kind == DEQL_INSPECT_DECISION ? "decision name" : "projection name",
                     &s->name);
    return rc < 0 ? rc : parse_inspect_tail(p, s);
}

static int parse_execute(struct parser *p, struct deql_stmt *s)
{
    s->kind = DEQL_EXECUTE;
    int rc = next(p);
    if (rc < 0) return rc;
    rc = parse_ident(p, "command name", &s->name);
    if (rc < 0) return rc;
    rc = parse_assigns(p, &s->assigns, &s->assign_count);
    return rc < 0 ? rc : expect_end(p);
}

static int parse_drop(struct parser *p, struct deql_stmt *s)
{
    s->kind = DEQL_DROP_TABLE;
    int rc = next(p);
    if (rc < 0) return rc;
    rc = expect_kw(p, "TABLE");
    if (rc < 0) return rc;
    if (is_kw(p, "IF")) {
        rc = next(p);
        if (rc < 0) return rc;
        rc = expect_kw(p, "EXISTS");
        if (rc < 0) return rc;
        s->if_exists = true;
    }
    rc = parse_qname(p, "table name", &s->table);
    return rc < 0 ? rc : expect_end(p);
}

static int parse_use_template(struct parser *p, struct deql_stmt *s)
{
    s->kind = DEQL_USE_TEMPLATE;
    int rc = next(p);
    if (rc < 0) return rc;
    rc = expect_kw(p, "TEMPLATE");
    if (rc < 0) return rc;
    rc = parse_ident(p, "template name", &s->name);
    return rc < 0 ? rc : parse_options(p, s);
}

static int parse_stmt(struct parser *p, struct deql_stmt *s)
{
    int rc = next(p);
    if (rc < 0) return rc;
    if (is_kw(p, "CREATE")) return parse_create(p, s);
    if (is_kw(p, "ALTER")) {
        s->kind = DEQL_ALTER;
        return parse_alter(p, s);
    }
    if (is_kw(p, "EXECUTE")) return parse_execute(p, s);
    if (is_kw(p, "INSPECT")) return parse_inspect(p, s);
    if (is_kw(p, "DROP")) return parse_drop(p, s);
    if (is_kw(p, "USE") || is_kw(p, "APPLY")) return parse_use_template(p, s);
    if (is_kw(p, "VALIDATE")) {
        s->kind = DEQL_VALIDATE_DEREG;
        rc = next(p);
        if (rc < 0) return rc;
        rc = expect_kw(p, "DEREG");
        return rc < 0 ? rc : expect_end(p);
    }
    if (is_kw(p, "SELECT") || is_kw(p, "WITH")) {
        s->kind = DEQL_QUERY;
        s->body = s->text;
        return 0;
    }
    return fail_at(p, "CREATE, ALTER, EXECUTE, INSPECT, DROP, USE, APPLY, VALIDATE, SELECT or "
                      "WITH");
}

int deql_parse(const char *text, size_t len, struct deql_script **out, struct deql_error *err)
{
    *out = NULL;
    memset(err, 0, sizeof(*err));
    struct deql_piece *pieces = xcalloc(DEQL_MAX_STATEMENTS, sizeof(*pieces));
    size_t count = 0;
    int rc = deql_split(text, len, pieces, DEQL_MAX_STATEMENTS, &count, err);
    if (rc < 0) goto out_free_pieces;
    struct deql_script *s = xcalloc(1, sizeof(*s));
    s->arena = xcalloc(1, sizeof(*s->arena));
    s->stmts = arena_alloc(s->arena, (count ? count : 1) * sizeof(*s->stmts));
    struct parser p = {.text = text, .arena = s->arena, .err = err};
    for (size_t i = 0; i < count; i++) {
        struct deql_stmt *st = &s->stmts[i];
        st->text = pieces[i].text;
        st->line = pieces[i].line;
        st->column = pieces[i].column;
        deql_lex_init(&p.lx, text, st->text.off, st->text.off + st->text.len, st->line,
                      st->column);
        rc = parse_stmt(&p, st);
        if (rc < 0) goto out_free_script;
    }
    s->count = count;
    *out = s;
    free(pieces);
    return 0;
out_free_script:
    deql_script_free(s);
out_free_pieces:
    free(pieces);
    return rc;
}

void deql_script_free(struct deql_script *s)
{
    if (!s) return;
    struct arena_chunk *c = s->arena->head;
    while (c) {
        struct arena_chunk *older = c->next;
        free(c);
        c = older;
    }
    free(s->arena);
    free(s);
}

const char *deql_stmt_kind_name(enum deql_stmt_kind kind)
{
    static const char *const NAMES[] = {
        [DEQL_CREATE_AGGREGATE] = "CREATE AGGREGATE",
        [DEQL_CREATE_COMMAND] = "CREATE COMMAND",
        [DEQL_CREATE_EVENT] = "CREATE EVENT",
        [DEQL_CREATE_DECISION] = "CREATE DECISION",
        [DEQL_CREATE_PROJECTION] = "CREATE PROJECTION",
        [DEQL_CREATE_TEMPLATE] = "CREATE TEMPLATE",
        [DEQL_CREATE_EVENTSTORE] = "CREATE EVENTSTORE",
        [DEQL_CREATE_TABLE] = "CREATE TABLE",
        [DEQL_USE_TEMPLATE] = "USE TEMPLATE",
        [DEQL_ALTER] = "ALTER",
        [DEQL_EXECUTE] = "EXECUTE",
        [DEQL_INSPECT_DECISION] = "INSPECT DECISION",
        [DEQL_INSPECT_PROJECTION] = "INSPECT PROJECTION",
        [DEQL_DROP_TABLE] = "DROP TABLE",
        [DEQL_VALIDATE_DEREG] = "VALIDATE DEREG",
        [DEQL_QUERY] = "QUERY",
    };
    if ((unsigned)kind >= sizeof NAMES / sizeof NAMES[0]) return "?";
    return NAMES[kind];
}
