/* DeReg: the registry of one database's DeQL definitions (aggregates, commands, events,
 * decisions, projections, templates, event stores), built by applying parsed statements
 * (parse.h) in order. Pure: no I/O, no clock; the dialect keeps it durable by storing the
 * scripts it applied and applying them again after a restart, so applying the same scripts in
 * the same order must always give the same registry. docs/dialects/deql.md ("Registry") has
 * the rules. Single owner; readers may share a registry nobody changes.
 *
 * Every string below is owned by the registry (copied out of the script text). */
#ifndef DIALECT_DEQL_REGISTRY_H
#define DIALECT_DEQL_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dialect/deql/parse.h"
#include "util/arrow.h"
#include "util/buf.h"

enum {
    DEQL_REG_MAX_OBJECTS = 4096, /* objects of all kinds in one registry */
    DEQL_NAME_MAX = 128,         /* an object name: [A-Za-z_][A-Za-z0-9_]{0,127} */
    DEQL_BRANCH_ID_BYTES = 18,   /* "b_" + 16 hex digits */
};

/* `field := expr` of a SELECT EVENT. */
struct deql_reg_assign {
    char *field;
    char *expr; /* SQL expression text as written */
};

struct deql_reg_emit {
    char *event;
    struct deql_reg_assign *assigns;
    size_t nassigns;
};

struct deql_reg_branch {
    char *label;                       /* BRANCH label, or NULL */
    char id[DEQL_BRANCH_ID_BYTES + 1]; /* "b_" + 16 lower-case hex digits of the first 8 bytes
                                          of SHA-256 of the branch text with runs of blanks
                                          collapsed to one space: stable across restarts */
    char *guard;                       /* WHERE text, or NULL (always passes) */
    char *text;                        /* the whole branch text as written */
    struct deql_reg_emit *emits;       /* nemits >= 1 */
    size_t nemits;
};

/* One registered object. Which members are set depends on kind. */
struct deql_obj {
    enum deql_object kind;
    char *name;
    char *text;               /* its defining statement as written, without ';' (what export
                                 prints; after ALTER ... ADD: rewritten with the new fields) */
    struct deql_field *fields; /* AGGREGATE, COMMAND, EVENT fields; TEMPLATE parameters (each
                                  copied: name, type or NULL, markers) */
    size_t nfields;
    char *body;               /* PROJECTION: the query; TEMPLATE: the body inside its
                                 parentheses */
    char **option_keys;       /* EVENTSTORE options: "durable.type", ... */
    char **option_values;     /* their values' text as written, parallel to option_keys */
    size_t noptions;
    struct {                  /* DECISION */
        char *aggregate;
        char *command;
        char *state;          /* STATE AS query, or NULL */
        struct deql_reg_branch *branches;
        size_t nbranches;
    } dec;
    char *template_name;      /* made by USE TEMPLATE of this template (else NULL) */
    uint64_t seq;             /* registration order (replacing keeps the first's) */
};

/* A USE TEMPLATE: which template, with what, making which objects. */
struct deql_instance {
    char *template_name;
    char *params_json;        /* {"Param":"value as written",...} */
    char *text;               /* the USE TEMPLATE statement as written */
    char **objects;           /* "AGGREGATE Customer", ... made by it */
    size_t nobjects;
};

/* A payload column of an aggregate: see deql_reg_agg_columns. */
struct deql_column {
    const char *name;         /* borrowed from the registry */
    const char *type;         /* DeQL type ("INT", "DECIMAL(12,2)", "STRING", ...) of its first
                                 declaration, borrowed */
    const char *sql_decl;     /* deql_sql_decl(type) */
    bool sensitive;           /* some declaration marks it SENSITIVE */
};

struct deql_reg;

struct deql_reg *deql_reg_new(void);
void deql_reg_free(struct deql_reg *r);

/* Applies one statement of a script (text is that script, st one of its statements). Takes
 * CREATE AGGREGATE|COMMAND|EVENT|DECISION|PROJECTION|TEMPLATE|EVENTSTORE, ALTER ... ADD and
 * USE TEMPLATE (expanding its body: each `{{Param}}` replaced by the value, a quoted string's
 * content without its quotes; the expansion is parsed and each statement applied; an
 * expansion may not use a template). Rules:
 *   - names are [A-Za-z_][A-Za-z0-9_]{0,127} (else ERR_INVALID: a DeQL identifier that can be
 *     a stream name and a table name); kinds have separate namespaces;
 *   - CREATE of an existing name: ERR_EXISTS, unless OR REPLACE (then replaced in place);
 *   - a decision ON COMMAND C when another decision already handles C: ERR_EXISTS (every
 *     command has one decision);
 *   - within one object, field names are unique (ERR_INVALID); a command's key field is its
 *     first field (or the one marked KEY);
 *   - ALTER ... ADD of an unknown object: ERR_NOTFOUND; of an existing field: ERR_EXISTS;
 *     ALTER without ADD: ERR_INVALID (not supported);
 *   - blocks are order-independent: a decision may name an aggregate, command or events not
 *     registered yet (deql_reg_validate reports what is missing);
 *   - any other statement kind: ERR_INVALID;
 *   - DEQL_REG_MAX_OBJECTS objects: ERR_TOOBIG.
 * Also (docs/dialects/deql.md "Registry"): USE TEMPLATE of an unknown template: ERR_NOTFOUND;
 * a missing, unknown or repeated parameter, an unknown placeholder, an expansion that uses or
 * creates a template: ERR_INVALID; an expansion longer than DEQL_MAX_SCRIPT_BYTES: ERR_TOOBIG.
 * So that deql_reg_export always rebuilds the same registry, an object made by a template is
 * changed (OR REPLACE, ALTER) only by an expansion, an expansion ALTERs only objects made by a
 * template, and a template with instances is replaced only by the same parameters and body
 * (else ERR_INVALID). At most one field of an object is marked KEY (else ERR_INVALID).
 * Returns 0 or the error with err->msg (a sentence; line and column of st). On error the
 * registry is unchanged (a USE TEMPLATE is applied whole or not at all). */
int deql_reg_apply(struct deql_reg *r, const char *text, const struct deql_stmt *st,
                   struct deql_error *err);

/* Parses script[0..len) and applies every statement in order, all or nothing: returns 0 or
 * the first failure (err set; the registry unchanged). *applied (may be NULL) gets the number
 * of statements. */
int deql_reg_apply_script(struct deql_reg *r, const char *script, size_t len, size_t *applied,
                          struct deql_error *err);

/* Changes since creation: 0 for a new registry, +1 per successful apply (per statement:
 * deql_reg_apply_script adds the number of statements it applied). */
uint64_t deql_reg_generation(const struct deql_reg *r);

/* The object of kind named name, or NULL. */
const struct deql_obj *deql_reg_find(const struct deql_reg *r, enum deql_object kind,
                                     const char *name);
/* The decision handling command, or NULL. */
const struct deql_obj *deql_reg_decision_for(const struct deql_reg *r, const char *command);
/* Objects of kind, sorted by name: *n of them (the array is the registry's, valid until its
 * next change). */
const struct deql_obj *const *deql_reg_list(const struct deql_reg *r, enum deql_object kind,
                                            size_t *n);
/* USE TEMPLATE instances of template (NULL: all), in order. */
const struct deql_instance *const *deql_reg_instances(const struct deql_reg *r,
                                                      const char *template_name, size_t *n);
/* The index of a command's key field (the one marked KEY, else 0). */
size_t deql_reg_key_field(const struct deql_obj *command);

/* The payload columns of aggregate agg: the union of the fields of every event that a
 * decision FOR agg emits (as declared by CREATE EVENT; events not registered add nothing) and
 * of the aggregate's own declared fields, without VOLATILE ones (never stored), sorted by
 * name (byte order), each once. Writes up to cap columns to out; returns how many there are
 * (may exceed cap). */
size_t deql_reg_agg_columns(const struct deql_reg *r, const char *agg, struct deql_column *out,
                            size_t cap);

/* The SQLite declared type of a DeQL type: INT, INTEGER, BIGINT, SMALLINT -> "INTEGER";
 * DECIMAL(..), NUMERIC, FLOAT, DOUBLE, REAL -> "REAL"; BOOL, BOOLEAN -> "BOOLEAN"; TIMESTAMP,
 * DATETIME, DATE -> "TIMESTAMP"; anything else (STRING, TEXT, UUID, VARCHAR(n), NULL) ->
 * "TEXT". */
const char *deql_sql_decl(const char *deql_type);

/* Problems that keep the registry from working, one sentence per line appended to out (a
 * decision's aggregate, command or emitted event not registered; a SELECT EVENT assigning a
 * field its event does not declare; a template instance whose template is gone). Returns the
 * number of problems (0: valid). */
size_t deql_reg_validate(const struct deql_reg *r, struct buf *out);

/* Every definition as a script that rebuilds this registry: templates, then objects not made
 * by a template, then USE TEMPLATE statements, each in registration order, each statement's
 * text followed by ";\n". */
void deql_reg_export(const struct deql_reg *r, struct buf *out);

/* Counts per kind: out[kind] for every enum deql_object. */
void deql_reg_counts(const struct deql_reg *r, size_t out[DEQL_OBJ_EVENTSTORE + 1]);

/* The metadata table of GET /api/dereg/<group>[/<name>[/<sub>]] into *out (initialized by the
 * call; the caller finis it). group is the plural ("aggregates", "commands", "events",
 * "decisions", "projections", "templates", "eventstores", "inspections" is not the
 * registry's). name NULL: every object of the group, a row each, sorted by name; with name:
 * that object's row; with sub: its detail table ("fields" of aggregates, commands, events;
 * "emits" of decisions; "params" and "instances" of templates). Columns are listed in
 * docs/dialects/deql.md ("Metadata tables"); among them commands' fields: command_name,
 * field_name, field_type, is_key, ordinal; decisions: name, aggregate, command, has_guard,
 * emitted_events, guard_sql, state_as_sql; emits: decision_name, event_name.
 * Returns 0; ERR_NOTFOUND (unknown group or sub, unknown name: *what says "group", "name" or
 * "sub"; what may be NULL; *out is then zeroed, so arrow_table_fini on it is harmless);
 * ERR_TOOBIG (the table would pass ARROW_MAX_TABLE_BYTES; *out zeroed). Text that is not
 * UTF-8 is written with U+FFFD for each bad byte. Implemented in reg_tables.c. */
int deql_reg_table(const struct deql_reg *r, const char *group, const char *name,
                   const char *sub, struct arrow_table *out, const char **what);

#endif
