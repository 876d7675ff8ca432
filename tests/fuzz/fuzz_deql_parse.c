/* libFuzzer target: the DeQL parser (dialect/deql/parse.h). Input: a script. Property: no
 * crash, sanitizer report, leak or hang; a failure is ERR_INVALID or ERR_TOOBIG with a message,
 * a 1-based position inside the script (line within its line count) and *out NULL; on success
 * every span lies inside the script, every name is a non-empty string, every decision has a
 * branch with an event, and parsing again gives the same statement count; each statement's
 * own text, parsed alone, gives one statement of the same kind. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/deql/parse.h"
#include "util/errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_span(struct deql_span sp, size_t size)
{
    if ((size_t)sp.off + sp.len > size) abort();
}

static void check_name(const char *name)
{
    if (name && !name[0]) abort();
}

static void check_decision(const struct deql_stmt *st, size_t size)
{
    if (st->decision.branch_count == 0 || !st->decision.aggregate || !st->decision.command) {
        abort();
    }
    check_span(st->decision.state, size);
    for (size_t i = 0; i < st->decision.branch_count; i++) {
        const struct deql_branch *b = &st->decision.branches[i];
        if (b->emit_count == 0 || b->text.len == 0) abort();
        check_span(b->guard, size);
        check_span(b->text, size);
        for (size_t j = 0; j < b->emit_count; j++) {
            check_name(b->emits[j].event);
            for (size_t k = 0; k < b->emits[j].assign_count; k++) {
                if (b->emits[j].assigns[k].expr.len == 0) abort();
                check_span(b->emits[j].assigns[k].expr, size);
            }
        }
    }
}

static void check_stmt(const struct deql_stmt *st, size_t size)
{
    check_span(st->text, size);
    check_span(st->body, size);
    check_span(st->inspect.where, size);
    check_name(st->name);
    for (size_t i = 0; i < st->field_count; i++) {
        if (!st->fields[i].name) abort();
        check_name(st->fields[i].name);
    }
    for (size_t i = 0; i < st->option_count; i++) {
        if (st->options[i].value.len == 0) abort();
        check_span(st->options[i].value, size);
    }
    for (size_t i = 0; i < st->assign_count; i++) {
        check_span(st->assigns[i].expr, size);
    }
    if (st->kind == DEQL_CREATE_DECISION) check_decision(st, size);
    if (st->line < 1 || st->column < 1) abort();
}

static void check_alone(const char *text, const struct deql_stmt *st)
{
    struct deql_script *one;
    struct deql_error err;
    int rc = deql_parse(text + st->text.off, st->text.len, &one, &err);
    if (rc != 0 || one->count != 1 || one->stmts[0].kind != st->kind) abort();
    deql_script_free(one);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct deql_script *s = (void *)1;
    struct deql_error err;
    int rc = deql_parse(text, size, &s, &err);
    if (rc < 0) {
        if (s || (rc != ERR_INVALID && rc != ERR_TOOBIG) || !err.msg[0]) abort();
        size_t lines = 1;
        for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
        if (err.line < 1 || err.column < 1 || (size_t)err.line > lines) abort();
        return 0;
    }
    for (size_t i = 0; i < s->count; i++) {
        check_stmt(&s->stmts[i], size);
        check_alone(text, &s->stmts[i]);
    }
    struct deql_script *again;
    if (deql_parse(text, size, &again, &err) != 0 || again->count != s->count) abort();
    deql_script_free(again);
    deql_script_free(s);
    return 0;
}
