/* DeQL parser: a script (the DeQL language of the "DeReg" seed) in, one struct per statement
 * out. Pure: no I/O, no clock, no global state; the only allocation is the result's arena.
 * SQL fragments (STATE AS, guards, projection bodies, WHERE, values) are not parsed as SQL:
 * they are kept as spans (offset, length) into the caller's script text, `:field` binds
 * untouched. docs/dialects/deql.md ("Language") lists what is accepted. Any thread; a result
 * belongs to the thread that uses it. */
#ifndef DIALECT_DEQL_PARSE_H
#define DIALECT_DEQL_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every size a script controls. Exceeding one fails with ERR_TOOBIG and names the limit. */
enum {
    DEQL_MAX_SCRIPT_BYTES = 1024 * 1024, /* whole script text */
    DEQL_MAX_STATEMENTS = 1024,          /* non-empty statements in one script */
    DEQL_MAX_FIELDS = 256,               /* items in one list: fields, assignments, options */
    DEQL_MAX_IDENT_BYTES = 128,          /* one identifier (a quoted one after unquoting) */
    DEQL_MAX_PAREN_DEPTH = 64,           /* nesting of parentheses */
    DEQL_MAX_BRANCHES = 64,              /* UNION ALL branches of one decision */
    DEQL_MAX_EMITS = 64,                 /* SELECT EVENT items in one branch */
    DEQL_MAX_TYPE_BYTES = 160,           /* a field type's canonical text, DECIMAL(12,2) */
};

enum { DEQL_ERROR_EXPECTED_BYTES = 96, DEQL_ERROR_MSG_BYTES = 160 };

/* Where and why a parse failed. line and column are 1-based and point at the first byte of
 * the offending token (columns count bytes); at the end of a statement they point at its ';'
 * or at the end of the script. expected names what the grammar wanted there ("')'",
 * "field type", "EMIT AS"); msg is a full sentence. Both NUL-terminated, possibly empty. */
struct deql_error {
    int line;                                /* 1-based line of the offending token */
    int column;                              /* 1-based byte column of the offending token */
    char expected[DEQL_ERROR_EXPECTED_BYTES]; /* what was expected there, or "" */
    char msg[DEQL_ERROR_MSG_BYTES];          /* what went wrong */
};

/* A piece of the script text: text[off .. off+len). len 0 means absent. */
struct deql_span {
    uint32_t off; /* byte offset into the script */
    uint32_t len; /* bytes */
};

enum deql_stmt_kind {
    DEQL_CREATE_AGGREGATE,
    DEQL_CREATE_COMMAND,
    DEQL_CREATE_EVENT,
    DEQL_CREATE_DECISION,
    DEQL_CREATE_PROJECTION,
    DEQL_CREATE_TEMPLATE,
    DEQL_CREATE_EVENTSTORE,
    DEQL_CREATE_TABLE,
    DEQL_USE_TEMPLATE, /* USE TEMPLATE or APPLY TEMPLATE */
    DEQL_ALTER,
    DEQL_EXECUTE,
    DEQL_INSPECT_DECISION,
    DEQL_INSPECT_PROJECTION,
    DEQL_DROP_TABLE,
    DEQL_VALIDATE_DEREG,
    DEQL_QUERY, /* SELECT or WITH, kept as text */
};

/* The kind of object an ALTER names. */
enum deql_object {
    DEQL_OBJ_AGGREGATE,
    DEQL_OBJ_COMMAND,
    DEQL_OBJ_EVENT,
    DEQL_OBJ_DECISION,
    DEQL_OBJ_PROJECTION,
    DEQL_OBJ_TEMPLATE,
    DEQL_OBJ_EVENTSTORE,
};

/* A declared field: `name TYPE [KEY] [SENSITIVE] [VOLATILE]`. */
struct deql_field {
    char *name;        /* identifier as written (unquoted), arena-owned */
    char *type;        /* canonical type, upper-cased, no spaces: "DECIMAL(12,2)"; NULL for a
                          template parameter declared without a type */
    bool is_key;       /* KEY marker */
    bool is_sensitive; /* SENSITIVE: stored, never shown */
    bool is_volatile;  /* VOLATILE: returned, never persisted */
};

/* `field := <expr>`: in SELECT EVENT and EXECUTE. */
struct deql_assign {
    char *field;           /* arena-owned */
    struct deql_span expr; /* the expression text, never empty */
};

/* `key = <value>`: in EVENTSTORE WITH (...) and USE TEMPLATE ... WITH (...). */
struct deql_option {
    char *key;              /* dotted key as written: "durable.type"; arena-owned */
    struct deql_span value; /* value text: a literal or a parenthesized list, never empty */
};

/* `SELECT EVENT Name (assignments)` */
struct deql_emit {
    char *event;                 /* event type, arena-owned */
    struct deql_assign *assigns; /* arena-owned array */
    size_t assign_count;
};

/* One branch of EMIT AS: `[BRANCH label] emit {, emit} [WHERE guard]`; branches are joined by
 * UNION ALL. */
struct deql_branch {
    char *label;            /* BRANCH label, or NULL */
    struct deql_emit *emits; /* arena-owned array, emit_count >= 1 */
    size_t emit_count;
    struct deql_span guard; /* WHERE text without the keyword; len 0: no guard */
    struct deql_span text;  /* the whole branch text (for naming branches) */
};

/* A table name, `name` or `schema.name` (DeReg."P"). */
struct deql_qname {
    char *schema; /* NULL when unqualified; arena-owned */
    char *name;   /* arena-owned; NULL when absent */
};

/* One statement. Which members are set depends on kind (docs/dialects/deql.md has the table);
 * the others are zero. Strings are NUL-terminated and owned by the script's arena. */
struct deql_stmt {
    enum deql_stmt_kind kind;
    int line;              /* 1-based position of the statement's first token */
    int column;
    struct deql_span text; /* the statement without its ';' */
    bool or_replace;       /* CREATE OR REPLACE */
    char *name;            /* the object declared, altered, executed or inspected */
    struct deql_qname table; /* CREATE TABLE / DROP TABLE target */
    bool if_exists;        /* DROP TABLE IF EXISTS */
    struct deql_field *fields; /* AGGREGATE, COMMAND, EVENT, TEMPLATE params, ALTER ... ADD */
    size_t field_count;
    struct deql_option *options; /* EVENTSTORE, USE TEMPLATE */
    size_t option_count;
    struct deql_assign *assigns; /* EXECUTE */
    size_t assign_count;
    /* PROJECTION query, TEMPLATE body (inside its parentheses), CREATE TABLE query (from
     * VALUES/SELECT/WITH), QUERY text, ALTER text after the name (when not ADD) */
    struct deql_span body;
    bool is_values;            /* CREATE TABLE ... AS VALUES */
    enum deql_object object;   /* ALTER: what is altered */
    bool is_add;               /* ALTER ... ADD fields */
    struct {
        char *aggregate;        /* FOR */
        char *command;          /* ON COMMAND */
        struct deql_span state; /* STATE AS query (outer parentheses removed); len 0: none */
        struct deql_branch *branches;
        size_t branch_count;    /* >= 1 */
    } decision;
    struct {
        struct deql_qname from;  /* FROM table */
        struct deql_qname into;  /* INTO table */
        bool has_offset;
        uint64_t offset;         /* OFFSET n */
        struct deql_span where;  /* WHERE text without the keyword; len 0: none */
        bool has_limit;
        uint64_t limit;          /* LIMIT m */
    } inspect;
};

struct deql_arena;

/* A parsed script. Spans point into the caller's text, which it must keep to read them. */
struct deql_script {
    struct deql_stmt *stmts; /* arena-owned array in script order */
    size_t count;
    struct deql_arena *arena; /* owns every string and array above */
};

/* One statement found by deql_split. */
struct deql_piece {
    struct deql_span text; /* from its first token to before its ';' */
    int line;              /* 1-based position of its first token */
    int column;
};

/* Splits text[0..len) into statements at ';' outside strings ('...' with '' escapes), quoted
 * identifiers ("..."), comments (-- to end of line, block comments) and parentheses. Empty
 * statements (only blanks and comments) are skipped. Writes up to cap pieces to out and the
 * number found to *out_count. Returns 0; ERR_INVALID (unterminated string, identifier or
 * comment, unbalanced parenthesis, NUL byte); ERR_TOOBIG (more than DEQL_MAX_SCRIPT_BYTES,
 * more than min(cap, DEQL_MAX_STATEMENTS) statements, parentheses deeper than
 * DEQL_MAX_PAREN_DEPTH). *err is filled on failure. */
int deql_split(const char *text, size_t len, struct deql_piece *out, size_t cap,
               size_t *out_count, struct deql_error *err);

/* Parses a whole script. On success *out is a new script (transferred: free it with
 * deql_script_free) and 0 is returned. Returns ERR_INVALID (syntax; *err names the position
 * and what was expected) or ERR_TOOBIG (a DEQL_MAX_* limit; *err names it); then *out is NULL
 * and nothing is allocated. text is borrowed for the call; spans index it. */
int deql_parse(const char *text, size_t len, struct deql_script **out, struct deql_error *err);

/* Frees a script and everything it owns. NULL does nothing. */
void deql_script_free(struct deql_script *s);

/* "CREATE DECISION", "EXECUTE", ...: a static string for each kind. */
const char *deql_stmt_kind_name(enum deql_stmt_kind kind);

#endif
