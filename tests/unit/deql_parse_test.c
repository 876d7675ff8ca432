/* Unit tests for the DeQL parser (dialect/deql/parse.h): every statement kind of the DeQL
 * documentation's examples, error positions, statement splitting, identifiers and limits. */
#include "dialect/deql/parse.h"

#include "unit.h"
#include "util/buf.h"
#include "util/errors.h"

static const char *g_text;

/* Parses text (must succeed) and checks the statement count. */
static struct deql_script *parse_ok(const char *text, size_t count)
{
    struct deql_script *s;
    struct deql_error err;
    g_text = text;
    int rc = deql_parse(text, strlen(text), &s, &err);
    if (rc != 0) {
        fprintf(stderr, "  parse failed %d at %d:%d expected [%s]: %s\n", rc, err.line,
                err.column, err.expected, err.msg);
    }
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(s->count, count);
    return s;
}

/* Whether span equals want. */
static bool span_is(struct deql_span sp, const char *want)
{
    return strlen(want) == sp.len && memcmp(g_text + sp.off, want, sp.len) == 0;
}

static void parse_fails(const char *text, int rc_want, int line, int column,
                        const char *expected)
{
    struct deql_script *s = (void *)1;
    struct deql_error err;
    int rc = deql_parse(text, strlen(text), &s, &err);
    if (rc != rc_want || err.line != line || err.column != column ||
        (expected && strcmp(err.expected, expected) != 0)) {
        fprintf(stderr, "  %s\n  -> %d at %d:%d expected [%s]: %s\n", text, rc, err.line,
                err.column, err.expected, err.msg);
    }
    ASSERT_EQ(rc, rc_want);
    CHECK(s == NULL);
    ASSERT_EQ(err.line, line);
    ASSERT_EQ(err.column, column);
    if (expected) ASSERT_STR(err.expected, expected);
    CHECK(err.msg[0]);
}

TEST(aggregate_command_event)
{
    struct deql_script *s = parse_ok(
        "CREATE AGGREGATE Employee;\n"
        "CREATE OR REPLACE AGGREGATE W (wallet_id UUID KEY, balance DECIMAL(12, 2));\n"
        "CREATE COMMAND HireEmployee (\n  employee_id STRING,\n  name STRING,\n"
        "  password STRING SENSITIVE,\n  token string volatile\n);\n"
        "create event EmployeeHired (name STRING, grade STRING);\n"
        "CREATE EVENT Closed ();",
        5);
    struct deql_stmt *a = &s->stmts[0];
    ASSERT_EQ(a->kind, DEQL_CREATE_AGGREGATE);
    ASSERT_STR(a->name, "Employee");
    ASSERT_EQ(a->field_count, 0);
    CHECK(!a->or_replace);
    a = &s->stmts[1];
    CHECK(a->or_replace);
    ASSERT_EQ(a->field_count, 2);
    CHECK(a->fields[0].is_key);
    ASSERT_STR(a->fields[1].type, "DECIMAL(12,2)");
    struct deql_stmt *c = &s->stmts[2];
    ASSERT_EQ(c->kind, DEQL_CREATE_COMMAND);
    ASSERT_STR(c->name, "HireEmployee");
    ASSERT_EQ(c->field_count, 4);
    ASSERT_STR(c->fields[0].name, "employee_id");
    ASSERT_STR(c->fields[0].type, "STRING");
    CHECK(c->fields[2].is_sensitive && !c->fields[2].is_volatile);
    CHECK(c->fields[3].is_volatile && !c->fields[3].is_sensitive);
    ASSERT_STR(c->fields[3].type, "STRING");
    ASSERT_EQ(c->line, 3);
    ASSERT_EQ(c->column, 1);
    ASSERT_EQ(s->stmts[3].kind, DEQL_CREATE_EVENT);
    ASSERT_EQ(s->stmts[3].field_count, 2);
    ASSERT_EQ(s->stmts[4].field_count, 0);
    deql_script_free(s);
}

TEST(decision_with_state_and_guard)
{
    struct deql_script *s = parse_ok(
        "CREATE DECISION Promote\nFOR Employee\nON COMMAND PromoteEmployee\nSTATE AS\n"
        "  SELECT COALESCE(new_grade, grade) AS current_grade\n"
        "  FROM DeReg.\"Employee$Agg\"\n  WHERE aggregate_id = :employee_id\nEMIT AS\n"
        "  SELECT EVENT EmployeePromoted (\n    new_grade := :new_grade\n  )\n"
        "  WHERE :new_grade <> current_grade;",
        1);
    struct deql_stmt *d = &s->stmts[0];
    ASSERT_EQ(d->kind, DEQL_CREATE_DECISION);
    ASSERT_STR(d->name, "Promote");
    ASSERT_STR(d->decision.aggregate, "Employee");
    ASSERT_STR(d->decision.command, "PromoteEmployee");
    CHECK(span_is(d->decision.state, "SELECT COALESCE(new_grade, grade) AS current_grade\n"
                                     "  FROM DeReg.\"Employee$Agg\"\n"
                                     "  WHERE aggregate_id = :employee_id"));
    ASSERT_EQ(d->decision.branch_count, 1);
    struct deql_branch *b = &d->decision.branches[0];
    CHECK(b->label == NULL);
    ASSERT_EQ(b->emit_count, 1);
    ASSERT_STR(b->emits[0].event, "EmployeePromoted");
    ASSERT_EQ(b->emits[0].assign_count, 1);
    ASSERT_STR(b->emits[0].assigns[0].field, "new_grade");
    CHECK(span_is(b->emits[0].assigns[0].expr, ":new_grade"));
    CHECK(span_is(b->guard, ":new_grade <> current_grade"));
    deql_script_free(s);
}

TEST(decision_without_state_parenthesized_state_and_shorthand_as)
{
    struct deql_script *s = parse_ok(
        "CREATE DECISION Hire FOR Employee ON COMMAND HireEmployee EMIT AS\n"
        "  SELECT EVENT EmployeeHired (name := :name, grade := upper(:grade, 'a,b'));\n"
        "CREATE DECISION TopUp FOR W ON COMMAND TopUpW STATE AS (SELECT balance FROM "
        "DeReg.\"W$Agg\" WHERE aggregate_id = :wallet_id) AS SELECT EVENT ToppedUp "
        "(amount := :amount, balance_after := balance + :amount);",
        2);
    struct deql_stmt *d = &s->stmts[0];
    CHECK(d->decision.state.len == 0);
    struct deql_emit *e = &d->decision.branches[0].emits[0];
    ASSERT_EQ(e->assign_count, 2);
    CHECK(span_is(e->assigns[1].expr, "upper(:grade, 'a,b')"));
    CHECK(d->decision.branches[0].guard.len == 0);
    d = &s->stmts[1];
    CHECK(span_is(d->decision.state,
                  "SELECT balance FROM DeReg.\"W$Agg\" WHERE aggregate_id = :wallet_id"));
    CHECK(span_is(d->decision.branches[0].emits[0].assigns[1].expr, "balance + :amount"));
    deql_script_free(s);
}

TEST(decision_two_events_and_branches)
{
    struct deql_script *s = parse_ok(
        "CREATE DECISION TransferFunds FOR MainWallet ON COMMAND Transfer\n"
        "STATE AS SELECT src.balance AS source_balance FROM DeReg.\"MainWallet$Agg\" src\n"
        "EMIT AS\n"
        "  SELECT EVENT Debited (amount := :amount),\n"
        "  SELECT EVENT Credited (amount := :amount)\n"
        "  WHERE source_balance >= :amount;\n"
        "CREATE DECISION Fulfil FOR Warehouse ON COMMAND FulfillOrder\n"
        "STATE AS SELECT available_qty FROM DeReg.\"WarehouseStock\" WHERE id = :warehouse_id\n"
        "EMIT AS\n"
        "  BRANCH FullFill SELECT EVENT OrderFullyFilled (order_id := :order_id)\n"
        "    WHERE available_qty >= :requested_qty\n"
        "  UNION ALL\n"
        "  BRANCH Backorder SELECT EVENT OrderBackordered (order_id := :order_id)\n"
        "    WHERE available_qty IN (SELECT 0 UNION ALL SELECT -1)\n"
        "  union all SELECT EVENT Other ();",
        2);
    struct deql_stmt *d = &s->stmts[0];
    ASSERT_EQ(d->decision.branch_count, 1);
    ASSERT_EQ(d->decision.branches[0].emit_count, 2);
    ASSERT_STR(d->decision.branches[0].emits[1].event, "Credited");
    CHECK(span_is(d->decision.branches[0].guard, "source_balance >= :amount"));
    d = &s->stmts[1];
    ASSERT_EQ(d->decision.branch_count, 3);
    ASSERT_STR(d->decision.branches[0].label, "FullFill");
    CHECK(span_is(d->decision.branches[0].guard, "available_qty >= :requested_qty"));
    CHECK(span_is(d->decision.branches[0].text,
                  "BRANCH FullFill SELECT EVENT OrderFullyFilled (order_id := :order_id)\n"
                  "    WHERE available_qty >= :requested_qty"));
    ASSERT_STR(d->decision.branches[1].label, "Backorder");
    CHECK(span_is(d->decision.branches[1].guard,
                  "available_qty IN (SELECT 0 UNION ALL SELECT -1)"));
    CHECK(d->decision.branches[2].label == NULL);
    ASSERT_EQ(d->decision.branches[2].emits[0].assign_count, 0);
    deql_script_free(s);
}

TEST(projection_template_eventstore_use)
{
    struct deql_script *s = parse_ok(
        "CREATE PROJECTION NewHireReport AS\nSELECT stream_id, LAST(data.name) AS name\n"
        "FROM DeReg.\"Employee$Events\" WHERE event_type = 'EmployeeHired'\n"
        "GROUP BY stream_id;\n"
        "CREATE TEMPLATE EntityLifecycle (EntityName, Fields) AS (\n"
        "  CREATE AGGREGATE {{EntityName}};\n  CREATE EVENT {{EntityName}}Created ({{Fields}});\n"
        ");\n"
        "CREATE TEMPLATE wallet WITH (wallet_name STRING, currency STRING) AS (x);\n"
        "CREATE EVENTSTORE main WITH (durable.type = 'parquet', "
        "ordering.global = ('ingested_at','event_id'));\n"
        "USE TEMPLATE EntityLifecycle WITH (EntityName = 'Product', Fields = (name STRING));\n"
        "APPLY TEMPLATE wallet WITH (wallet_name = 'Main');",
        6);
    struct deql_stmt *p = &s->stmts[0];
    ASSERT_EQ(p->kind, DEQL_CREATE_PROJECTION);
    ASSERT_STR(p->name, "NewHireReport");
    CHECK(span_is(p->body, "SELECT stream_id, LAST(data.name) AS name\n"
                           "FROM DeReg.\"Employee$Events\" WHERE event_type = 'EmployeeHired'\n"
                           "GROUP BY stream_id"));
    struct deql_stmt *t = &s->stmts[1];
    ASSERT_EQ(t->kind, DEQL_CREATE_TEMPLATE);
    ASSERT_EQ(t->field_count, 2);
    ASSERT_STR(t->fields[1].name, "Fields");
    CHECK(t->fields[1].type == NULL);
    CHECK(span_is(t->body, "\n  CREATE AGGREGATE {{EntityName}};\n"
                           "  CREATE EVENT {{EntityName}}Created ({{Fields}});\n"));
    ASSERT_STR(s->stmts[2].fields[0].type, "STRING");
    struct deql_stmt *e = &s->stmts[3];
    ASSERT_EQ(e->kind, DEQL_CREATE_EVENTSTORE);
    ASSERT_EQ(e->option_count, 2);
    ASSERT_STR(e->options[0].key, "durable.type");
    CHECK(span_is(e->options[0].value, "'parquet'"));
    CHECK(span_is(e->options[1].value, "('ingested_at','event_id')"));
    ASSERT_EQ(s->stmts[4].kind, DEQL_USE_TEMPLATE);
    ASSERT_STR(s->stmts[4].name, "EntityLifecycle");
    CHECK(span_is(s->stmts[4].options[1].value, "(name STRING)"));
    ASSERT_EQ(s->stmts[5].kind, DEQL_USE_TEMPLATE);
    deql_script_free(s);
}

TEST(alter_execute_inspect_tables_validate_query)
{
    struct deql_script *s = parse_ok(
        "ALTER COMMAND HireEmployee ADD email STRING SENSITIVE;\n"
        "ALTER EVENT EmployeeHired ADD (email STRING, team STRING);\n"
        "ALTER DECISION Hire EMIT AS SELECT EVENT X ();\n"
        "EXECUTE Deposit(account_id := 'ACC-001', amount := 500.00);\n"
        "CREATE TABLE test_orders AS VALUES ('WH-1', 'ORD-4', 2), ('WH-1', 'ORD-5', 10);\n"
        "CREATE TABLE t2 AS SELECT * FROM x;\n"
        "INSPECT DECISION FulfillOrderDecision FROM test_orders INTO simulated;\n"
        "INSPECT PROJECTION P FROM DeReg.\"X$Events\" INTO DeReg.\"P\" OFFSET 10 "
        "WHERE event_type = 'A' LIMIT 5;\n"
        "INSPECT PROJECTION P FROM t INTO o;\n"
        "DROP TABLE test_orders;\nDROP TABLE IF EXISTS t2;\n"
        "VALIDATE DEREG;\n"
        "SELECT * FROM DeReg.\"NewHireReport\" ORDER BY employee_id;\n"
        "WITH a AS (SELECT 1) SELECT * FROM a",
        14);
    struct deql_stmt *a = &s->stmts[0];
    ASSERT_EQ(a->kind, DEQL_ALTER);
    ASSERT_EQ(a->object, DEQL_OBJ_COMMAND);
    CHECK(a->is_add);
    ASSERT_EQ(a->field_count, 1);
    CHECK(a->fields[0].is_sensitive);
    ASSERT_EQ(s->stmts[1].field_count, 2);
    ASSERT_EQ(s->stmts[1].object, DEQL_OBJ_EVENT);
    CHECK(!s->stmts[2].is_add);
    CHECK(span_is(s->stmts[2].body, "EMIT AS SELECT EVENT X ()"));
    struct deql_stmt *x = &s->stmts[3];
    ASSERT_EQ(x->kind, DEQL_EXECUTE);
    ASSERT_STR(x->name, "Deposit");
    ASSERT_EQ(x->assign_count, 2);
    ASSERT_STR(x->assigns[0].field, "account_id");
    CHECK(span_is(x->assigns[0].expr, "'ACC-001'"));
    CHECK(span_is(x->assigns[1].expr, "500.00"));
    ASSERT_EQ(s->stmts[4].kind, DEQL_CREATE_TABLE);
    CHECK(s->stmts[4].is_values);
    ASSERT_STR(s->stmts[4].table.name, "test_orders");
    CHECK(span_is(s->stmts[4].body, "VALUES ('WH-1', 'ORD-4', 2), ('WH-1', 'ORD-5', 10)"));
    CHECK(!s->stmts[5].is_values);
    struct deql_stmt *i = &s->stmts[6];
    ASSERT_EQ(i->kind, DEQL_INSPECT_DECISION);
    ASSERT_STR(i->name, "FulfillOrderDecision");
    ASSERT_STR(i->inspect.from.name, "test_orders");
    CHECK(i->inspect.from.schema == NULL);
    ASSERT_STR(i->inspect.into.name, "simulated");
    i = &s->stmts[7];
    ASSERT_EQ(i->kind, DEQL_INSPECT_PROJECTION);
    ASSERT_STR(i->inspect.from.schema, "DeReg");
    ASSERT_STR(i->inspect.from.name, "X$Events");
    ASSERT_STR(i->inspect.into.name, "P");
    CHECK(i->inspect.has_offset && i->inspect.offset == 10);
    CHECK(span_is(i->inspect.where, "event_type = 'A'"));
    CHECK(i->inspect.has_limit && i->inspect.limit == 5);
    CHECK(!s->stmts[8].inspect.has_offset && !s->stmts[8].inspect.has_limit);
    ASSERT_EQ(s->stmts[9].kind, DEQL_DROP_TABLE);
    CHECK(!s->stmts[9].if_exists);
    CHECK(s->stmts[10].if_exists);
    ASSERT_EQ(s->stmts[11].kind, DEQL_VALIDATE_DEREG);
    ASSERT_EQ(s->stmts[12].kind, DEQL_QUERY);
    CHECK(span_is(s->stmts[12].body,
                  "SELECT * FROM DeReg.\"NewHireReport\" ORDER BY employee_id"));
    CHECK(span_is(s->stmts[13].body, "WITH a AS (SELECT 1) SELECT * FROM a"));
    ASSERT_STR(deql_stmt_kind_name(s->stmts[13].kind), "QUERY");
    deql_script_free(s);
}

TEST(semicolons_in_strings_comments_and_empty_statements)
{
    struct deql_script *s = parse_ok(
        "-- a comment; not a statement\n"
        ";;  /* block; comment */ ;\n"
        "EXECUTE A(x := 'it''s; fine', y := \"col;umn\"); -- trailing; comment\n"
        "/* multi\n line; */ SELECT ';' -- ;\n;",
        2);
    CHECK(span_is(s->stmts[0].assigns[0].expr, "'it''s; fine'"));
    CHECK(span_is(s->stmts[0].assigns[1].expr, "\"col;umn\""));
    ASSERT_EQ(s->stmts[0].line, 3);
    ASSERT_EQ(s->stmts[1].line, 5);
    ASSERT_EQ(s->stmts[1].column, 11);
    CHECK(span_is(s->stmts[1].body, "SELECT ';'"));
    deql_script_free(s);
    s = parse_ok("  -- nothing\n/* at all */", 0);
    deql_script_free(s);
    struct deql_piece pieces[4];
    size_t n;
    struct deql_error err;
    const char *t = "a;b(';');c";
    ASSERT_EQ(deql_split(t, strlen(t), pieces, 4, &n, &err), 0);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(pieces[1].text.off, 2);
    ASSERT_EQ(pieces[1].text.len, 6);
}

TEST(identifiers_quoted_and_unquoted)
{
    struct deql_script *s = parse_ok(
        "CREATE COMMAND \"Hire \"\"Emp\"\"\" (\"first name\" STRING, _x1$ INT);\n"
        "CREATE AGGREGATE employee;",
        2);
    ASSERT_STR(s->stmts[0].name, "Hire \"Emp\"");
    ASSERT_STR(s->stmts[0].fields[0].name, "first name");
    ASSERT_STR(s->stmts[0].fields[1].name, "_x1$");
    ASSERT_STR(s->stmts[1].name, "employee");
    deql_script_free(s);
    parse_fails("CREATE AGGREGATE \"\";", ERR_INVALID, 1, 18, "aggregate name");
    parse_fails("CREATE AGGREGATE 'Emp';", ERR_INVALID, 1, 18, "aggregate name");
}

TEST(error_positions)
{
    parse_fails("CREATE AGGREGATE Employee;\nCREATE COMMAND Hire (\n  id UUID\n  name STRING);",
                ERR_INVALID, 4, 3, "',' or ')'");
    parse_fails("CREATE COMMAND Hire (id);", ERR_INVALID, 1, 24, "field type");
    parse_fails("CREATE WIDGET X;", ERR_INVALID, 1, 8, NULL);
    parse_fails("\n\n   FROB;", ERR_INVALID, 3, 4, NULL);
    parse_fails("CREATE DECISION D FOR A ON COMMAND C\n  SELECT EVENT E ();", ERR_INVALID, 2, 3,
                "STATE AS or EMIT AS");
    parse_fails("CREATE DECISION D FOR A ON COMMAND C EMIT AS SELECT EVENT E (x = 1);",
                ERR_INVALID, 1, 64, "':='");
    parse_fails("CREATE DECISION D FOR A ON COMMAND C STATE AS EMIT AS SELECT EVENT E ();",
                ERR_INVALID, 1, 47, "STATE AS query");
    parse_fails("EXECUTE Hire(id := 'x';", ERR_INVALID, 1, 24, "')'");
    parse_fails("EXECUTE Hire(id := 'x)", ERR_INVALID, 1, 20, "closing '");
    parse_fails("SELECT 1; /* open", ERR_INVALID, 1, 11, "'*/'");
    parse_fails("SELECT 1)", ERR_INVALID, 1, 9, NULL);
    parse_fails("INSPECT PROJECTION P FROM t INTO o LIMIT x;", ERR_INVALID, 1, 42,
                "LIMIT number");
    parse_fails("INSPECT DECISION D FROM t;", ERR_INVALID, 1, 26, "INTO");
    parse_fails("CREATE PROJECTION P AS DELETE FROM x;", ERR_INVALID, 1, 24, "SELECT or WITH");
    parse_fails("VALIDATE DEREG now;", ERR_INVALID, 1, 16, NULL);
    struct deql_script *s;
    struct deql_error err;
    ASSERT_EQ(deql_parse("SELECT 1;\0SELECT 2;", 19, &s, &err), ERR_INVALID);
    ASSERT_EQ(err.column, 10);
    CHECK(strstr(err.msg, "NUL"));
}

TEST(limits)
{
    /* identifier length */
    char buf[512];
    snprintf(buf, sizeof buf, "CREATE AGGREGATE %0*d;", DEQL_MAX_IDENT_BYTES + 1, 0);
    memset(buf + 17, 'a', DEQL_MAX_IDENT_BYTES + 1);
    parse_fails(buf, ERR_TOOBIG, 1, 18, NULL);
    snprintf(buf, sizeof buf, "CREATE AGGREGATE %0*d;", DEQL_MAX_IDENT_BYTES, 0);
    memset(buf + 17, 'a', DEQL_MAX_IDENT_BYTES);
    deql_script_free(parse_ok(buf, 1));
    /* parentheses */
    char deep[200] = "SELECT ";
    size_t n = strlen(deep);
    for (int i = 0; i < DEQL_MAX_PAREN_DEPTH + 1; i++) deep[n++] = '(';
    deep[n] = '\0';
    parse_fails(deep, ERR_TOOBIG, 1, 8 + DEQL_MAX_PAREN_DEPTH, NULL);
    /* fields */
    struct buf b;
    buf_init(&b);
    buf_add(&b, "CREATE EVENT E (", 16);
    for (int i = 0; i <= DEQL_MAX_FIELDS; i++) {
        char f[32];
        int k = snprintf(f, sizeof f, "%sf%d INT", i ? ", " : "", i);
        buf_add(&b, f, (size_t)k);
    }
    buf_add(&b, ");", 2);
    struct deql_script *s;
    struct deql_error err;
    ASSERT_EQ(deql_parse(b.ptr, b.len, &s, &err), ERR_TOOBIG);
    CHECK(strstr(err.msg, "DEQL_MAX_FIELDS"));
    buf_fini(&b);
    /* statements */
    buf_init(&b);
    for (int i = 0; i <= DEQL_MAX_STATEMENTS; i++) buf_add(&b, "VALIDATE DEREG;", 15);
    ASSERT_EQ(deql_parse(b.ptr, b.len, &s, &err), ERR_TOOBIG);
    CHECK(strstr(err.msg, "DEQL_MAX_STATEMENTS"));
    ASSERT_EQ(deql_parse(b.ptr, b.len - 15, &s, &err), 0);
    ASSERT_EQ(s->count, DEQL_MAX_STATEMENTS);
    deql_script_free(s);
    buf_fini(&b);
    /* script bytes */
    char *big = xmalloc(DEQL_MAX_SCRIPT_BYTES + 1);
    memset(big, ' ', DEQL_MAX_SCRIPT_BYTES + 1);
    ASSERT_EQ(deql_parse(big, DEQL_MAX_SCRIPT_BYTES + 1, &s, &err), ERR_TOOBIG);
    CHECK(strstr(err.msg, "DEQL_MAX_SCRIPT_BYTES"));
    ASSERT_EQ(deql_parse(big, DEQL_MAX_SCRIPT_BYTES, &s, &err), 0);
    deql_script_free(s);
    free(big);
    deql_script_free(NULL);
}
