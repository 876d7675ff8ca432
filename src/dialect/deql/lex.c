/* DeQL lexer and statement splitter. Invariants: a token never crosses lx->end; line and
 * column always describe text[pos]; strings, quoted identifiers and comments are consumed
 * whole, so a ';' or parenthesis inside them is never seen as punctuation. */
#include "dialect/deql/lex.h"

#include <stdio.h>
#include <string.h>

#include "util/errors.h"

int deql_fail(struct deql_error *err, int rc, int line, int column, const char *expected,
              const char *msg)
{
    err->line = line;
    err->column = column;
    snprintf(err->expected, sizeof err->expected, "%s", expected ? expected : "");
    snprintf(err->msg, sizeof err->msg, "%s", msg ? msg : "");
    return rc;
}

void deql_lex_init(struct deql_lexer *lx, const char *text, uint32_t start, uint32_t end,
                   int line, int column)
{
    lx->text = text;
    lx->pos = start;
    lx->end = end;
    lx->line = line;
    lx->column = column;
}

static void advance(struct deql_lexer *lx)
{
    if (lx->text[lx->pos] == '\n') {
        lx->line++;
        lx->column = 1;
    } else {
        lx->column++;
    }
    lx->pos++;
}

static bool is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_char(char c)
{
    return is_ident_start(c) || is_digit(c) || c == '$';
}

static char peek_at(const struct deql_lexer *lx, uint32_t k)
{
    return lx->pos + k < lx->end ? lx->text[lx->pos + k] : '\0';
}

/* Skips blanks and comments. Returns 0 or ERR_INVALID for an unterminated block comment. */
static int skip_blank(struct deql_lexer *lx, struct deql_error *err)
{
    while (lx->pos < lx->end) {
        char c = lx->text[lx->pos];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') {
            advance(lx);
        } else if (c == '-' && peek_at(lx, 1) == '-') {
            while (lx->pos < lx->end && lx->text[lx->pos] != '\n') {
                advance(lx);
            }
        } else if (c == '/' && peek_at(lx, 1) == '*') {
            int line = lx->line, column = lx->column;
            advance(lx);
            advance(lx);
            while (lx->pos < lx->end && !(lx->text[lx->pos] == '*' && peek_at(lx, 1) == '/')) {
                advance(lx);
            }
            if (lx->pos >= lx->end) {
                return deql_fail(err, ERR_INVALID, line, column, "'*/'",
                                 "unterminated block comment");
            }
            advance(lx);
            advance(lx);
        } else {
            return 0;
        }
    }
    return 0;
}

/* Consumes a quoted run closed by q, where qq stands for q. */
static int lex_quoted(struct deql_lexer *lx, char q, struct deql_error *err, int line,
                      int column)
{
    advance(lx);
    for (;;) {
        if (lx->pos >= lx->end) {
            return deql_fail(err, ERR_INVALID, line, column, q == '\'' ? "closing '" : "closing \"",
                             q == '\'' ? "unterminated string" : "unterminated quoted identifier");
        }
        if (lx->text[lx->pos] == '\0') {
            return deql_fail(err, ERR_INVALID, lx->line, lx->column, "", "NUL byte in script");
        }
        if (lx->text[lx->pos] == q) {
            advance(lx);
            if (peek_at(lx, 0) != q) {
                return 0;
            }
        }
        advance(lx);
    }
}

static void lex_number(struct deql_lexer *lx)
{
    while (is_digit(peek_at(lx, 0))) {
        advance(lx);
    }
    if (peek_at(lx, 0) == '.' && is_digit(peek_at(lx, 1))) {
        advance(lx);
        while (is_digit(peek_at(lx, 0))) {
            advance(lx);
        }
    }
    char e = peek_at(lx, 0);
    if (e == 'e' || e == 'E') {
        uint32_t k = (peek_at(lx, 1) == '+' || peek_at(lx, 1) == '-') ? 2 : 1;
        if (is_digit(peek_at(lx, k))) {
            while (k--) {
                advance(lx);
            }
            while (is_digit(peek_at(lx, 0))) {
                advance(lx);
            }
        }
    }
}

int deql_lex_next(struct deql_lexer *lx, struct deql_tok *t, struct deql_error *err)
{
    int rc = skip_blank(lx, err);
    if (rc < 0) return rc;
    memset(t, 0, sizeof(*t));
    t->off = lx->pos;
    t->line = lx->line;
    t->column = lx->column;
    if (lx->pos >= lx->end) {
        t->type = TOK_EOF;
        return 0;
    }
    char c = lx->text[lx->pos];
    if (c == '\0') {
        return deql_fail(err, ERR_INVALID, t->line, t->column, "", "NUL byte in script");
    }
    if (c == '\'' || c == '"') {
        rc = lex_quoted(lx, c, err, t->line, t->column);
        if (rc < 0) return rc;
        t->type = c == '\'' ? TOK_STRING : TOK_QIDENT;
    } else if (is_ident_start(c)) {
        while (is_ident_char(peek_at(lx, 0))) {
            advance(lx);
        }
        t->type = TOK_IDENT;
    } else if (is_digit(c)) {
        lex_number(lx);
        t->type = TOK_NUMBER;
    } else if (c == ':' && peek_at(lx, 1) == '=') {
        advance(lx);
        advance(lx);
        t->type = TOK_ASSIGN;
    } else if (c == ':' && is_ident_start(peek_at(lx, 1))) {
        advance(lx);
        while (is_ident_char(peek_at(lx, 0))) {
            advance(lx);
        }
        t->type = TOK_PARAM;
    } else {
        advance(lx);
        if (c == ':' && peek_at(lx, 0) == ':') {
            advance(lx);
        }
        t->type = TOK_PUNCT;
        t->ch = c;
    }
    t->len = lx->pos - t->off;
    return 0;
}

bool deql_tok_is(const struct deql_tok *t, const char *text, const char *kw)
{
    if (t->type != TOK_IDENT || strlen(kw) != t->len) {
        return false;
    }
    for (uint32_t i = 0; i < t->len; i++) {
        char c = text[t->off + i];
        if (c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        if (c != kw[i]) {
            return false;
        }
    }
    return true;
}

/* Tracks one statement's parentheses. Returns 0, or an error for ')' without '(' or depth
 * beyond DEQL_MAX_PAREN_DEPTH. */
static int track_paren(const struct deql_tok *t, int *depth, struct deql_error *err)
{
    if (t->type != TOK_PUNCT) return 0;
    if (t->ch == '(') {
        if (++*depth > DEQL_MAX_PAREN_DEPTH) {
            return deql_fail(err, ERR_TOOBIG, t->line, t->column, "",
                             "parentheses nested deeper than DEQL_MAX_PAREN_DEPTH (64)");
        }
    } else if (t->ch == ')') {
        if (--*depth < 0) {
            return deql_fail(err, ERR_INVALID, t->line, t->column, "';' or end of statement",
                             "')' without a matching '('");
        }
    }
    return 0;
}

/* Records the statement that ends before the token `end`, if it has a token. */
static int close_piece(const struct deql_tok *first, const struct deql_tok *last, bool has,
                       struct deql_piece *out, size_t cap, size_t *n, struct deql_error *err)
{
    if (!has) return 0;
    size_t max = cap < DEQL_MAX_STATEMENTS ? cap : DEQL_MAX_STATEMENTS;
    if (*n >= max) {
        return deql_fail(err, ERR_TOOBIG, first->line, first->column, "",
                         "more statements than DEQL_MAX_STATEMENTS (1024)");
    }
    out[*n].text.off = first->off;
    out[*n].text.len = last->off + last->len - first->off;
    out[*n].line = first->line;
    out[*n].column = first->column;
    ++*n;
    return 0;
}

int deql_split(const char *text, size_t len, struct deql_piece *out, size_t cap,
               size_t *out_count, struct deql_error *err)
{
    *out_count = 0;
    if (len > DEQL_MAX_SCRIPT_BYTES) {
        return deql_fail(err, ERR_TOOBIG, 1, 1, "",
                         "script longer than DEQL_MAX_SCRIPT_BYTES (1 MiB)");
    }
    struct deql_lexer lx;
    deql_lex_init(&lx, text, 0, (uint32_t)len, 1, 1);
    struct deql_tok t, first = {0}, last = {0};
    struct deql_tok open_at = {0};
    bool has = false;
    int depth = 0;
    for (;;) {
        int rc = deql_lex_next(&lx, &t, err);
        if (rc < 0) return rc;
        if (t.type == TOK_EOF || (t.type == TOK_PUNCT && t.ch == ';' && depth == 0)) {
            if (depth > 0) {
                char msg[96];
                snprintf(msg, sizeof msg, "'(' at line %d column %d is never closed",
                         open_at.line, open_at.column);
                return deql_fail(err, ERR_INVALID, t.line, t.column, "')'", msg);
            }
            rc = close_piece(&first, &last, has, out, cap, out_count, err);
            if (rc < 0 || t.type == TOK_EOF) return rc;
            has = false;
            continue;
        }
        if (depth == 0 && t.type == TOK_PUNCT && t.ch == '(') {
            open_at = t;
        }
        rc = track_paren(&t, &depth, err);
        if (rc < 0) return rc;
        if (!has) first = t;
        has = true;
        last = t;
    }
}
