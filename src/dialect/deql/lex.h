/* DeQL lexer (internal to dialect/deql): tokens of a script with their positions, and the
 * error helper the parser shares. Pure; no allocation. */
#ifndef DIALECT_DEQL_LEX_H
#define DIALECT_DEQL_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dialect/deql/parse.h"

enum deql_tok_type {
    TOK_EOF,    /* end of the statement or script */
    TOK_IDENT,  /* unquoted identifier or keyword: [A-Za-z_][A-Za-z0-9_$]* */
    TOK_QIDENT, /* "quoted identifier" ("" inside stands for ") */
    TOK_STRING, /* 'string' ('' inside stands for ') */
    TOK_NUMBER, /* 12, 12.5, 1e3 */
    TOK_PARAM,  /* :name */
    TOK_ASSIGN, /* := */
    TOK_PUNCT,  /* any other single byte (or ::), ch holds the first byte */
};

struct deql_tok {
    enum deql_tok_type type;
    char ch;       /* TOK_PUNCT: its byte */
    uint32_t off;  /* first byte in the script */
    uint32_t len;  /* bytes, quotes included */
    int line;      /* 1-based */
    int column;    /* 1-based, bytes */
};

/* A cursor over text[pos..end). Copy the struct to look ahead. */
struct deql_lexer {
    const char *text; /* whole script, borrowed */
    uint32_t pos;     /* next byte to read */
    uint32_t end;     /* stop here (a statement's end) */
    int line;         /* position of text[pos] */
    int column;
};

void deql_lex_init(struct deql_lexer *lx, const char *text, uint32_t start, uint32_t end,
                   int line, int column);

/* Reads the next token into *t. Returns 0 or ERR_INVALID (unterminated string, identifier or
 * comment; NUL byte) with *err filled. At the end, returns TOK_EOF positioned there. */
int deql_lex_next(struct deql_lexer *lx, struct deql_tok *t, struct deql_error *err);

/* Whether t is the unquoted keyword kw (upper-case ASCII), compared case-insensitively. */
bool deql_tok_is(const struct deql_tok *t, const char *text, const char *kw);

/* Fills *err at t's position and returns rc. */
int deql_fail(struct deql_error *err, int rc, int line, int column, const char *expected,
              const char *msg);

#endif
