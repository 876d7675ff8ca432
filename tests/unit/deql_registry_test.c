/* Unit tests for DeReg (dialect/deql/registry.h): every statement kind applied, replacement
 * and conflicts, names, ALTER ... ADD, templates, branch ids, aggregate columns, validation,
 * export round trips, the metadata tables, the generation counter, all-or-nothing scripts. */
#include "dialect/deql/registry.h"

#include "unit.h"
#include "util/buf.h"
#include "util/errors.h"

static const char *const base_script =
    "CREATE AGGREGATE Employee (employee_id STRING KEY, note STRING VOLATILE);\n"
    "CREATE COMMAND HireEmployee (name STRING, employee_id STRING KEY, password STRING "
    "SENSITIVE);\n"
    "CREATE COMMAND Promote (employee_id STRING, grade INT);\n"
    "CREATE EVENT EmployeeHired (name STRING, grade INT, password STRING SENSITIVE);\n"
    "CREATE EVENT Promoted (grade INT, since TIMESTAMP, token STRING VOLATILE);\n"
    "CREATE DECISION Hire FOR Employee ON COMMAND HireEmployee\n"
    "  STATE AS (SELECT COUNT(*) AS n FROM DeReg.\"Employee$Events\" WHERE stream_id = "
    ":employee_id)\n"
    "  EMIT AS BRANCH fresh SELECT EVENT EmployeeHired (name := :name, grade := 1) WHERE n = 0\n"
    "  UNION ALL BRANCH again SELECT EVENT EmployeeHired (name := :name), "
    "SELECT EVENT Promoted (grade := 2) WHERE n > 0;\n"
    "CREATE DECISION DoPromote FOR Employee ON COMMAND Promote EMIT AS SELECT EVENT Promoted "
    "(grade := :grade);\n"
    "CREATE PROJECTION Headcount AS SELECT COUNT(*) FROM DeReg.\"Employee$Events\";\n"
    "CREATE EVENTSTORE Main WITH (durable.type = 'parquet', wal.fsync = true);\n";

static const char *const tmpl_script =
    "CREATE TEMPLATE Entity (Name, Kind) AS (\n"
    "  CREATE AGGREGATE {{Name}} (id STRING KEY, kind STRING);\n"
    "  CREATE COMMAND Create{{ Name }} (id STRING, label STRING);\n"
    "  CREATE EVENT {{Name}}Created (label STRING);\n"
    "  CREATE DECISION Make{{Name}} FOR {{Name}} ON COMMAND Create{{Name}}\n"
    "    EMIT AS SELECT EVENT {{Name}}Created (label := '{{Kind}}')\n"
    ");\n";

static struct deql_reg *reg_with(const char *script)
{
    struct deql_reg *r = deql_reg_new();
    struct deql_error err;
    size_t n = 0;
    int rc = deql_reg_apply_script(r, script, strlen(script), &n, &err);
    if (rc != 0) fprintf(stderr, "  apply failed %d at %d:%d: %s\n", rc, err.line, err.column, err.msg);
    ASSERT_EQ(rc, 0);
    return r;
}

/* Applies script to r, expecting rc; returns err's message (static). */
static const char *apply_expect(struct deql_reg *r, const char *script, int rc_want)
{
    static struct deql_error err;
    memset(&err, 0, sizeof err);
    int rc = deql_reg_apply_script(r, script, strlen(script), NULL, &err);
    if (rc != rc_want) fprintf(stderr, "  %s\n  -> %d: %s\n", script, rc, err.msg);
    ASSERT_EQ(rc, rc_want);
    if (rc < 0) CHECK(err.msg[0] && err.line >= 1);
    return err.msg;
}

/* A statement and the result applying it must give. */
struct apply_case {
    const char *script;
    int rc;
};

static void apply_cases(struct deql_reg *r, const struct apply_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) apply_expect(r, cases[i].script, cases[i].rc);
}

/* The base script, the Entity template used for Customer, then extra. */
static struct deql_reg *full_reg(const char *extra)
{
    struct buf script;
    buf_init(&script);
    buf_adds(&script, base_script);
    buf_adds(&script, tmpl_script);
    buf_adds(&script, "USE TEMPLATE Entity WITH (Name = 'Customer', Kind = 'vip');\n");
    buf_adds(&script, extra);
    struct deql_reg *r = reg_with(script.ptr);
    buf_fini(&script);
    return r;
}

static char *export_of(const struct deql_reg *r)
{
    struct buf b;
    buf_init(&b);
    deql_reg_export(r, &b);
    buf_addc(&b, '\0');
    return buf_steal(&b, NULL);
}

TEST(every_statement_kind)
{
    struct deql_reg *r = reg_with(base_script);
    size_t counts[DEQL_OBJ_EVENTSTORE + 1];
    deql_reg_counts(r, counts);
    ASSERT_EQ(counts[DEQL_OBJ_AGGREGATE], 1);
    ASSERT_EQ(counts[DEQL_OBJ_COMMAND], 2);
    ASSERT_EQ(counts[DEQL_OBJ_EVENT], 2);
    ASSERT_EQ(counts[DEQL_OBJ_DECISION], 2);
    ASSERT_EQ(counts[DEQL_OBJ_PROJECTION], 1);
    ASSERT_EQ(counts[DEQL_OBJ_TEMPLATE], 0);
    ASSERT_EQ(counts[DEQL_OBJ_EVENTSTORE], 1);
    const struct deql_obj *c = deql_reg_find(r, DEQL_OBJ_COMMAND, "HireEmployee");
    CHECK(c && c->nfields == 3);
    ASSERT_EQ(deql_reg_key_field(c), 1);
    ASSERT_EQ(deql_reg_key_field(deql_reg_find(r, DEQL_OBJ_COMMAND, "Promote")), 0);
    CHECK(!deql_reg_find(r, DEQL_OBJ_AGGREGATE, "HireEmployee"));
    const struct deql_obj *d = deql_reg_decision_for(r, "HireEmployee");
    CHECK(d);
    ASSERT_STR(d->name, "Hire");
    ASSERT_STR(d->dec.aggregate, "Employee");
    CHECK(strstr(d->dec.state, "COUNT(*)") == d->dec.state + 7);
    ASSERT_EQ(d->dec.nbranches, 2);
    ASSERT_STR(d->dec.branches[0].label, "fresh");
    ASSERT_STR(d->dec.branches[0].guard, "n = 0");
    ASSERT_EQ(d->dec.branches[1].nemits, 2);
    ASSERT_STR(d->dec.branches[1].emits[1].assigns[0].expr, "2");
    ASSERT_STR(d->dec.branches[0].emits[0].assigns[0].expr, ":name");
    const struct deql_obj *p = deql_reg_find(r, DEQL_OBJ_PROJECTION, "Headcount");
    ASSERT_STR(p->body, "SELECT COUNT(*) FROM DeReg.\"Employee$Events\"");
    const struct deql_obj *es = deql_reg_find(r, DEQL_OBJ_EVENTSTORE, "Main");
    ASSERT_EQ(es->noptions, 2);
    ASSERT_STR(es->option_keys[0], "durable.type");
    ASSERT_STR(es->option_values[0], "'parquet'");
    ASSERT_STR(es->text, "CREATE EVENTSTORE Main WITH (durable.type = 'parquet', wal.fsync = true)");
    size_t n;
    const struct deql_obj *const *evs = deql_reg_list(r, DEQL_OBJ_EVENT, &n);
    ASSERT_EQ(n, 2);
    ASSERT_STR(evs[0]->name, "EmployeeHired");
    ASSERT_STR(evs[1]->name, "Promoted");
    CHECK(evs[0]->seq < evs[1]->seq);
    CHECK(!deql_reg_decision_for(r, "Nope"));
    deql_reg_free(r);
}

TEST(non_definitions_refused)
{
    static const struct apply_case cases[] = {
        {"EXECUTE Foo(a := 1)", ERR_INVALID},
        {"SELECT 1", ERR_INVALID},
        {"CREATE TABLE t AS VALUES (1)", ERR_INVALID},
        {"VALIDATE DEREG", ERR_INVALID},
        {"USE TEMPLATE Nope WITH (A = 1)", ERR_NOTFOUND},
    };
    struct deql_reg *r = deql_reg_new();
    apply_cases(r, cases, sizeof cases / sizeof cases[0]);
    ASSERT_EQ(deql_reg_generation(r), 0);
    deql_reg_free(r);
}

TEST(or_replace_and_exists)
{
    struct deql_reg *r = reg_with("CREATE EVENT A (x INT); CREATE EVENT B (y INT);");
    uint64_t seq = deql_reg_find(r, DEQL_OBJ_EVENT, "A")->seq;
    apply_expect(r, "CREATE EVENT A (z INT)", ERR_EXISTS);
    apply_expect(r, "CREATE OR REPLACE EVENT A (z INT, w INT)", 0);
    const struct deql_obj *a = deql_reg_find(r, DEQL_OBJ_EVENT, "A");
    ASSERT_EQ(a->nfields, 2);
    ASSERT_EQ(a->seq, seq);
    apply_expect(r, "CREATE AGGREGATE A", 0); /* kinds have separate namespaces */
    apply_expect(r, "CREATE COMMAND A (x INT)", 0);
    apply_expect(r, "CREATE EVENT a ()", 0); /* names are case-sensitive */
    char *ex = export_of(r);
    ASSERT_STR(ex, "CREATE OR REPLACE EVENT A (z INT, w INT);\nCREATE EVENT B (y INT);\n"
                   "CREATE AGGREGATE A;\nCREATE COMMAND A (x INT);\nCREATE EVENT a ();\n");
    free(ex);
    deql_reg_free(r);
}

TEST(one_decision_per_command)
{
    struct deql_reg *r = reg_with("CREATE DECISION D1 FOR A ON COMMAND C EMIT AS SELECT EVENT E ();");
    const char *msg = apply_expect(
        r, "CREATE DECISION D2 FOR A ON COMMAND C EMIT AS SELECT EVENT E ()", ERR_EXISTS);
    CHECK(strstr(msg, "D1"));
    apply_expect(r, "CREATE OR REPLACE DECISION D2 FOR A ON COMMAND C EMIT AS SELECT EVENT E ()",
                 ERR_EXISTS);
    apply_expect(r, "CREATE OR REPLACE DECISION D1 FOR B ON COMMAND C EMIT AS SELECT EVENT F ()",
                 0);
    ASSERT_STR(deql_reg_decision_for(r, "C")->dec.aggregate, "B");
    apply_expect(r, "CREATE DECISION D2 FOR A ON COMMAND C2 EMIT AS SELECT EVENT E ()", 0);
    apply_expect(r, "CREATE OR REPLACE DECISION D2 FOR A ON COMMAND C EMIT AS SELECT EVENT E ()",
                 ERR_EXISTS);
    deql_reg_free(r);
}

TEST(invalid_names)
{
    static const struct apply_case cases[] = {
        {"CREATE EVENT \"a-b\" (x INT)", ERR_INVALID},
        {"CREATE EVENT \"1a\" (x INT)", ERR_INVALID},
        {"CREATE EVENT a$b (x INT)", ERR_INVALID},
        {"CREATE EVENT E (\"bad name\" INT)", ERR_INVALID},
        {"CREATE EVENT E (x INT, x STRING)", ERR_INVALID},
        {"CREATE COMMAND C (x INT KEY, y INT KEY)", ERR_INVALID},
        {"CREATE DECISION D FOR \"A b\" ON COMMAND C EMIT AS SELECT EVENT E ()", ERR_INVALID},
        {"CREATE EVENTSTORE S WITH (a.b = 1, a.b = 2)", ERR_INVALID},
    };
    struct deql_reg *r = deql_reg_new();
    apply_cases(r, cases, sizeof cases / sizeof cases[0]);
    char name[DEQL_NAME_MAX + 32];
    memset(name, 'n', DEQL_NAME_MAX - 1);
    strcpy(name + DEQL_NAME_MAX - 1, " ()");
    char stmt[DEQL_NAME_MAX + 64];
    snprintf(stmt, sizeof stmt, "CREATE EVENT %s", name);
    apply_expect(r, stmt, 0); /* 127 characters */
    ASSERT_EQ(deql_reg_generation(r), 1);
    deql_reg_free(r);
}

TEST(alter_add)
{
    struct deql_reg *r = reg_with("CREATE COMMAND C (a STRING);\nCREATE AGGREGATE G;\n"
                                  "CREATE EVENT E ();");
    uint64_t seq = deql_reg_find(r, DEQL_OBJ_COMMAND, "C")->seq;
    apply_expect(r, "ALTER COMMAND C ADD b INT KEY", 0);
    apply_expect(r, "ALTER COMMAND C ADD COLUMN (c DECIMAL(12, 2) SENSITIVE, d STRING VOLATILE)",
                 0);
    const struct deql_obj *c = deql_reg_find(r, DEQL_OBJ_COMMAND, "C");
    ASSERT_EQ(c->nfields, 4);
    ASSERT_EQ(c->seq, seq);
    ASSERT_EQ(deql_reg_key_field(c), 1);
    ASSERT_STR(c->text,
               "CREATE COMMAND C (a STRING, b INT KEY, c DECIMAL(12,2) SENSITIVE, d STRING VOLATILE)");
    apply_expect(r, "ALTER AGGREGATE G ADD id UUID", 0);
    ASSERT_STR(deql_reg_find(r, DEQL_OBJ_AGGREGATE, "G")->text, "CREATE AGGREGATE G (id UUID)");
    apply_expect(r, "ALTER EVENT E ADD x INT", 0);
    apply_expect(r, "ALTER COMMAND C ADD a INT", ERR_EXISTS);
    apply_expect(r, "ALTER COMMAND C ADD (e INT, e INT)", ERR_INVALID);
    apply_expect(r, "ALTER COMMAND C ADD e INT KEY", ERR_INVALID); /* a second KEY */
    apply_expect(r, "ALTER COMMAND Nope ADD e INT", ERR_NOTFOUND);
    apply_expect(r, "ALTER EVENT C ADD e INT", ERR_NOTFOUND); /* C is a command */
    apply_expect(r, "ALTER COMMAND C RENAME TO D", ERR_INVALID);
    apply_expect(r, "ALTER DECISION X ADD a INT", ERR_INVALID);
    ASSERT_EQ(deql_reg_generation(r), 7);
    deql_reg_free(r);
}

TEST(template_expansion)
{
    struct deql_reg *r = reg_with(tmpl_script);
    /* a quoted value's content, '' read as ': here it lands inside a string literal */
    apply_expect(r, "USE TEMPLATE Entity WITH (Name = 'Customer', Kind = 'It''''s')", 0);
    apply_expect(r, "APPLY TEMPLATE Entity WITH (Kind = plain, Name = Order_)", 0);
    const struct deql_obj *a = deql_reg_find(r, DEQL_OBJ_AGGREGATE, "Customer");
    CHECK(a);
    ASSERT_STR(a->template_name, "Entity");
    CHECK(deql_reg_find(r, DEQL_OBJ_COMMAND, "CreateCustomer"));
    const struct deql_obj *d = deql_reg_decision_for(r, "CreateOrder_");
    CHECK(d);
    ASSERT_STR(d->dec.branches[0].emits[0].assigns[0].expr, "'plain'");
    d = deql_reg_decision_for(r, "CreateCustomer");
    ASSERT_STR(d->dec.branches[0].emits[0].assigns[0].expr, "'It''s'");
    size_t n;
    const struct deql_instance *const *in = deql_reg_instances(r, "Entity", &n);
    ASSERT_EQ(n, 2);
    ASSERT_STR(in[0]->params_json, "{\"Name\":\"'Customer'\",\"Kind\":\"'It''''s'\"}");
    ASSERT_EQ(in[0]->nobjects, 4);
    ASSERT_STR(in[0]->objects[0], "AGGREGATE Customer");
    ASSERT_STR(in[0]->objects[3], "DECISION MakeCustomer");
    ASSERT_STR(in[1]->text, "APPLY TEMPLATE Entity WITH (Kind = plain, Name = Order_)");
    deql_reg_instances(r, "Other", &n);
    ASSERT_EQ(n, 0);
    deql_reg_instances(r, NULL, &n);
    ASSERT_EQ(n, 2);
    deql_reg_free(r);
}

TEST(template_errors_all_or_nothing)
{
    struct deql_reg *r = reg_with(tmpl_script);
    apply_expect(r, "CREATE EVENT CustomerCreated (label STRING)", 0);
    uint64_t gen = deql_reg_generation(r);
    apply_expect(r, "USE TEMPLATE Entity WITH (Name = 'X')", ERR_INVALID);           /* missing */
    apply_expect(r, "USE TEMPLATE Entity WITH (Name = X, Kind = 1, More = 2)", ERR_INVALID);
    apply_expect(r, "USE TEMPLATE Entity WITH (Name = X, Kind = 1, Name = Y)", ERR_INVALID);
    /* the third statement of the expansion collides: nothing of it stays */
    const char *msg = apply_expect(r, "USE TEMPLATE Entity WITH (Name = Customer, Kind = k)",
                                   ERR_EXISTS);
    CHECK(strstr(msg, "Entity"));
    CHECK(!deql_reg_find(r, DEQL_OBJ_AGGREGATE, "Customer"));
    CHECK(!deql_reg_find(r, DEQL_OBJ_COMMAND, "CreateCustomer"));
    size_t n;
    deql_reg_instances(r, NULL, &n);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(deql_reg_generation(r), gen);
    /* a value that breaks the expansion's syntax */
    apply_expect(r, "USE TEMPLATE Entity WITH (Name = 'a (', Kind = k)", ERR_INVALID);
    apply_expect(r, "CREATE TEMPLATE Bad (A) AS (CREATE EVENT {{B}} ())", ERR_INVALID);
    apply_expect(r, "CREATE TEMPLATE Bad (A) AS (CREATE EVENT {{A-}} ())", ERR_INVALID);
    apply_expect(r, "CREATE TEMPLATE Nest (A) AS (USE TEMPLATE Entity WITH (Name = {{A}}, Kind = 1))",
                 0);
    CHECK(strstr(apply_expect(r, "USE TEMPLATE Nest WITH (A = Z)", ERR_INVALID), "cannot use"));
    apply_expect(r, "CREATE TEMPLATE Bad2 (A) AS (CREATE TEMPLATE I{{A}} (B) AS (SELECT 1))", 0);
    CHECK(strstr(apply_expect(r, "USE TEMPLATE Bad2 WITH (A = x)", ERR_INVALID), "cannot create"));
    deql_reg_free(r);
}

TEST(template_ownership_rules)
{
    struct deql_reg *r = reg_with(tmpl_script);
    apply_expect(r, "USE TEMPLATE Entity WITH (Name = C1, Kind = k)", 0);
    /* a template-made object changes only through templates */
    apply_expect(r, "CREATE OR REPLACE AGGREGATE C1", ERR_INVALID);
    apply_expect(r, "ALTER EVENT C1Created ADD x INT", ERR_INVALID);
    /* a template with instances keeps its body */
    apply_expect(r, "CREATE OR REPLACE TEMPLATE Entity (Name, Kind) AS (CREATE EVENT {{Name}}X ())",
                 ERR_INVALID);
    apply_expect(r, tmpl_script, ERR_EXISTS);
    char *again = malloc(strlen(tmpl_script) + 16);
    sprintf(again, "CREATE OR REPLACE%s", tmpl_script + strlen("CREATE"));
    apply_expect(r, again, 0); /* the same parameters and body */
    free(again);
    deql_reg_free(r);
}

TEST(branch_id_stable)
{
    struct deql_reg *r = reg_with(
        "CREATE DECISION D1 FOR A ON COMMAND C1 EMIT AS SELECT EVENT E (x := 1) WHERE a = 1;\n"
        "CREATE DECISION D2 FOR A ON COMMAND C2 EMIT AS SELECT   EVENT\n\tE (x := 1)\n WHERE a = "
        "1;\n"
        "CREATE DECISION D3 FOR A ON COMMAND C3 EMIT AS SELECT EVENT E (x := 2) WHERE a = 1;");
    const char *id1 = deql_reg_find(r, DEQL_OBJ_DECISION, "D1")->dec.branches[0].id;
    const char *id2 = deql_reg_find(r, DEQL_OBJ_DECISION, "D2")->dec.branches[0].id;
    const char *id3 = deql_reg_find(r, DEQL_OBJ_DECISION, "D3")->dec.branches[0].id;
    ASSERT_EQ(strlen(id1), DEQL_BRANCH_ID_BYTES);
    CHECK(strncmp(id1, "b_", 2) == 0);
    for (int i = 2; i < DEQL_BRANCH_ID_BYTES; i++) CHECK(strchr("0123456789abcdef", id1[i]));
    ASSERT_STR(id1, id2);
    CHECK(strcmp(id1, id3) != 0);
    /* pinned: SHA-256("SELECT EVENT E (x := 1) WHERE a = 1"), first 8 bytes */
    ASSERT_STR(id1, "b_a1cda366d645bbb3");
    deql_reg_free(r);
}

TEST(agg_columns)
{
    struct deql_reg *r = reg_with(base_script);
    struct deql_column cols[16];
    size_t n = deql_reg_agg_columns(r, "Employee", cols, 16);
    /* employee_id (aggregate), grade, name, password, since; note and token are VOLATILE */
    ASSERT_EQ(n, 5);
    ASSERT_STR(cols[0].name, "employee_id");
    ASSERT_STR(cols[1].name, "grade");
    ASSERT_STR(cols[1].type, "INT");
    ASSERT_STR(cols[1].sql_decl, "INTEGER");
    ASSERT_STR(cols[2].name, "name");
    ASSERT_STR(cols[3].name, "password");
    CHECK(cols[3].sensitive && !cols[2].sensitive);
    ASSERT_STR(cols[4].name, "since");
    ASSERT_STR(cols[4].sql_decl, "TIMESTAMP");
    ASSERT_EQ(deql_reg_agg_columns(r, "Employee", cols, 2), 5);
    ASSERT_STR(cols[1].name, "grade");
    ASSERT_EQ(deql_reg_agg_columns(r, "Nobody", cols, 16), 0);
    ASSERT_STR(deql_sql_decl("DECIMAL(12,2)"), "REAL");
    ASSERT_STR(deql_sql_decl("bigint"), "INTEGER");
    ASSERT_STR(deql_sql_decl("BOOLEAN"), "BOOLEAN");
    ASSERT_STR(deql_sql_decl("DATE"), "TIMESTAMP");
    ASSERT_STR(deql_sql_decl("VARCHAR(20)"), "TEXT");
    ASSERT_STR(deql_sql_decl("INTERVAL"), "TEXT");
    ASSERT_STR(deql_sql_decl(NULL), "TEXT");
    deql_reg_free(r);
}

TEST(validate_messages)
{
    struct deql_reg *r = reg_with(base_script);
    struct buf b;
    buf_init(&b);
    ASSERT_EQ(deql_reg_validate(r, &b), 0);
    ASSERT_EQ(b.len, 0);
    apply_expect(r, "CREATE DECISION X FOR Nope ON COMMAND Missing EMIT AS SELECT EVENT Gone (), "
                    "SELECT EVENT Gone () UNION ALL SELECT EVENT Promoted (grade := 1, bogus := 2)",
                 0);
    ASSERT_EQ(deql_reg_validate(r, &b), 4);
    ASSERT_STR(b.ptr, "Decision X: aggregate Nope is not registered.\n"
                      "Decision X: command Missing is not registered.\n"
                      "Decision X: event Gone is not registered.\n"
                      "Decision X: SELECT EVENT Promoted assigns field bogus, which event "
                      "Promoted does not declare.\n");
    buf_fini(&b);
    deql_reg_free(r);
}

TEST(export_round_trip)
{
    struct deql_reg *r = full_reg("ALTER COMMAND Promote ADD reason STRING;\n"
                                  "CREATE OR REPLACE EVENT Promoted (grade INT, since TIMESTAMP);\n"
                                  "CREATE TEMPLATE Later (N) AS (CREATE EVENT {{N}} ());\n"
                                  "USE TEMPLATE Later WITH (N = Ev1);\n");
    char *ex1 = export_of(r);
    CHECK(strstr(ex1, "CREATE TEMPLATE Later") < strstr(ex1, "CREATE AGGREGATE Employee"));
    CHECK(!strstr(ex1, "CREATE AGGREGATE Customer"));
    CHECK(strstr(ex1, "CREATE COMMAND Promote (employee_id STRING, grade INT, reason STRING);\n"));
    struct deql_reg *r2 = reg_with(ex1);
    char *ex2 = export_of(r2);
    ASSERT_STR(ex1, ex2);
    size_t c1[DEQL_OBJ_EVENTSTORE + 1], c2[DEQL_OBJ_EVENTSTORE + 1];
    deql_reg_counts(r, c1);
    deql_reg_counts(r2, c2);
    CHECK(memcmp(c1, c2, sizeof c1) == 0);
    ASSERT_EQ(c2[DEQL_OBJ_EVENT], 4);
    CHECK(deql_reg_find(r2, DEQL_OBJ_EVENT, "Ev1"));
    free(ex1);
    free(ex2);
    deql_reg_free(r);
    deql_reg_free(r2);
}

/* Text of row `row` of column col (a Utf8 column), or NULL for a null. */
static const char *cell_text(const struct arrow_table *t, size_t col, size_t row)
{
    static char out[4096];
    const struct arrow_column *c = &t->cols[col];
    if (!c->valid.ptr[row]) return NULL;
    const int64_t *ends = (const int64_t *)c->values.ptr;
    int64_t start = row ? ends[row - 1] : 0;
    snprintf(out, sizeof out, "%.*s", (int)(ends[row] - start), c->text.ptr + start);
    return out;
}

static int64_t cell_i64(const struct arrow_table *t, size_t col, size_t row)
{
    return ((const int64_t *)t->cols[col].values.ptr)[row];
}

static bool cell_bool(const struct arrow_table *t, size_t col, size_t row)
{
    return t->cols[col].values.ptr[row] != 0;
}

/* Fills t (must succeed) and checks its shape. */
static void table_ok(const struct deql_reg *r, const char *g, const char *name, const char *sub,
                     struct arrow_table *t, size_t ncols, int64_t rows)
{
    const char *what = "x";
    int rc = deql_reg_table(r, g, name, sub, t, &what);
    if (rc != 0) fprintf(stderr, "  %s/%s/%s -> %d (%s)\n", g, name, sub, rc, what);
    ASSERT_EQ(rc, 0);
    CHECK(what == NULL);
    ASSERT_EQ(t->ncols, ncols);
    ASSERT_EQ(arrow_table_rows(t), rows);
}

TEST(tables_groups)
{
    struct deql_reg *r = full_reg("");
    struct arrow_table t;
    table_ok(r, "aggregates", NULL, NULL, &t, 5, 2);
    ASSERT_STR(cell_text(&t, 0, 0), "Customer");
    ASSERT_STR(cell_text(&t, 4, 0), "Entity");
    ASSERT_STR(cell_text(&t, 0, 1), "Employee");
    ASSERT_EQ(cell_i64(&t, 1, 1), 2);
    ASSERT_EQ(cell_i64(&t, 2, 1), 2);
    CHECK(cell_text(&t, 4, 1) == NULL);
    arrow_table_fini(&t);
    table_ok(r, "commands", "HireEmployee", NULL, &t, 6, 1);
    ASSERT_STR(t.cols[2].name, "key_field");
    ASSERT_STR(cell_text(&t, 1, 0), "Employee");
    ASSERT_STR(cell_text(&t, 2, 0), "employee_id");
    ASSERT_EQ(cell_i64(&t, 3, 0), 3);
    arrow_table_fini(&t);
    table_ok(r, "events", NULL, NULL, &t, 4, 3);
    arrow_table_fini(&t);
    table_ok(r, "decisions", "Hire", NULL, &t, 10, 1);
    ASSERT_STR(t.cols[4].name, "emitted_events");
    CHECK(cell_bool(&t, 3, 0));
    ASSERT_STR(cell_text(&t, 4, 0), "EmployeeHired,Promoted");
    ASSERT_STR(cell_text(&t, 5, 0), "(n = 0) OR (n > 0)");
    CHECK(strncmp(cell_text(&t, 6, 0), "SELECT COUNT(*)", 15) == 0);
    ASSERT_EQ(cell_i64(&t, 7, 0), 2);
    arrow_table_fini(&t);
    table_ok(r, "decisions", "DoPromote", NULL, &t, 10, 1);
    CHECK(!cell_bool(&t, 3, 0));
    CHECK(cell_text(&t, 5, 0) == NULL && cell_text(&t, 6, 0) == NULL);
    arrow_table_fini(&t);
    table_ok(r, "projections", NULL, NULL, &t, 4, 1);
    ASSERT_STR(cell_text(&t, 1, 0), "SELECT COUNT(*) FROM DeReg.\"Employee$Events\"");
    arrow_table_fini(&t);
    table_ok(r, "templates", NULL, NULL, &t, 4, 1);
    ASSERT_STR(cell_text(&t, 1, 0), "Name,Kind");
    ASSERT_EQ(cell_i64(&t, 2, 0), 1);
    arrow_table_fini(&t);
    table_ok(r, "eventstores", "Main", NULL, &t, 5, 1);
    ASSERT_STR(cell_text(&t, 1, 0), "{\"durable.type\":\"'parquet'\",\"wal.fsync\":\"true\"}");
    arrow_table_fini(&t);
    struct deql_reg *empty = deql_reg_new();
    table_ok(empty, "projections", NULL, NULL, &t, 4, 0);
    struct buf ipc;
    buf_init(&ipc);
    ASSERT_EQ(arrow_table_write(&t, &ipc), 0);
    buf_fini(&ipc);
    arrow_table_fini(&t);
    deql_reg_free(empty);
    deql_reg_free(r);
}

TEST(tables_subs_and_errors)
{
    struct deql_reg *r = full_reg("");
    struct arrow_table t;
    table_ok(r, "commands", "HireEmployee", "fields", &t, 7, 3);
    ASSERT_STR(t.cols[0].name, "command_name");
    ASSERT_STR(cell_text(&t, 1, 1), "employee_id");
    ASSERT_STR(cell_text(&t, 2, 1), "STRING");
    CHECK(cell_bool(&t, 3, 1) && !cell_bool(&t, 3, 0));
    CHECK(cell_bool(&t, 4, 2));
    ASSERT_EQ(cell_i64(&t, 6, 2), 3);
    arrow_table_fini(&t);
    table_ok(r, "aggregates", "Employee", "fields", &t, 7, 2);
    CHECK(cell_bool(&t, 5, 1));
    arrow_table_fini(&t);
    table_ok(r, "events", "Promoted", "fields", &t, 7, 3);
    arrow_table_fini(&t);
    table_ok(r, "decisions", "Hire", "emits", &t, 7, 3);
    ASSERT_STR(t.cols[5].name, "event_name");
    ASSERT_STR(cell_text(&t, 5, 2), "Promoted");
    ASSERT_EQ(cell_i64(&t, 1, 2), 2);
    ASSERT_STR(cell_text(&t, 3, 0), "fresh");
    ASSERT_STR(cell_text(&t, 4, 0), "n = 0");
    ASSERT_STR(cell_text(&t, 6, 0), "name := :name, grade := 1");
    ASSERT_EQ(strlen(cell_text(&t, 2, 0)), DEQL_BRANCH_ID_BYTES);
    arrow_table_fini(&t);
    table_ok(r, "templates", "Entity", "params", &t, 4, 2);
    ASSERT_STR(cell_text(&t, 1, 1), "Kind");
    CHECK(cell_text(&t, 2, 1) == NULL);
    arrow_table_fini(&t);
    table_ok(r, "templates", "Entity", "instances", &t, 5, 1);
    ASSERT_STR(cell_text(&t, 4, 0),
               "AGGREGATE Customer,COMMAND CreateCustomer,EVENT CustomerCreated,"
               "DECISION MakeCustomer");
    arrow_table_fini(&t);
    const char *what = NULL;
    ASSERT_EQ(deql_reg_table(r, "inspections", NULL, NULL, &t, &what), ERR_NOTFOUND);
    ASSERT_STR(what, "group");
    ASSERT_EQ(deql_reg_table(r, "commands", "Nope", NULL, &t, &what), ERR_NOTFOUND);
    ASSERT_STR(what, "name");
    ASSERT_EQ(deql_reg_table(r, "commands", "Promote", "emits", &t, &what), ERR_NOTFOUND);
    ASSERT_STR(what, "sub");
    ASSERT_EQ(deql_reg_table(r, "projections", "Headcount", "fields", &t, &what), ERR_NOTFOUND);
    ASSERT_STR(what, "sub");
    arrow_table_fini(&t);
    deql_reg_free(r);
}

TEST(generation_and_script_all_or_nothing)
{
    struct deql_reg *r = deql_reg_new();
    ASSERT_EQ(deql_reg_generation(r), 0);
    struct deql_error err;
    size_t applied = 99;
    const char *s = "CREATE EVENT A (); CREATE EVENT B ();";
    ASSERT_EQ(deql_reg_apply_script(r, s, strlen(s), &applied, &err), 0);
    ASSERT_EQ(applied, 2);
    ASSERT_EQ(deql_reg_generation(r), 2);
    s = "CREATE EVENT C (); CREATE OR REPLACE EVENT A (x INT);\nCREATE EVENT B ();";
    ASSERT_EQ(deql_reg_apply_script(r, s, strlen(s), &applied, &err), ERR_EXISTS);
    ASSERT_EQ(applied, 0);
    ASSERT_EQ(err.line, 2);
    ASSERT_EQ(err.column, 1);
    ASSERT_EQ(deql_reg_generation(r), 2);
    CHECK(!deql_reg_find(r, DEQL_OBJ_EVENT, "C"));
    ASSERT_EQ(deql_reg_find(r, DEQL_OBJ_EVENT, "A")->nfields, 0);
    s = "CREATE EVENT (";
    ASSERT_EQ(deql_reg_apply_script(r, s, strlen(s), &applied, &err), ERR_INVALID);
    /* one statement through deql_reg_apply */
    struct deql_script *sc;
    s = "CREATE EVENT D (y INT)";
    ASSERT_EQ(deql_parse(s, strlen(s), &sc, &err), 0);
    ASSERT_EQ(deql_reg_apply(r, s, &sc->stmts[0], &err), 0);
    ASSERT_EQ(deql_reg_apply(r, s, &sc->stmts[0], &err), ERR_EXISTS);
    deql_script_free(sc);
    ASSERT_EQ(deql_reg_generation(r), 3);
    ASSERT_STR(deql_reg_find(r, DEQL_OBJ_EVENT, "D")->fields[0].name, "y");
    char *ex = export_of(r);
    ASSERT_STR(ex, "CREATE EVENT A ();\nCREATE EVENT B ();\nCREATE EVENT D (y INT);\n");
    free(ex);
    deql_reg_free(r);
}

TEST(object_limit)
{
    struct deql_reg *r = deql_reg_new();
    struct buf s;
    buf_init(&s);
    for (int i = 0; i < DEQL_REG_MAX_OBJECTS; i++) {
        buf_printf(&s, "CREATE EVENT E%d ();", i);
        if ((i + 1) % 1000 == 0 || i + 1 == DEQL_REG_MAX_OBJECTS) {
            apply_expect(r, s.ptr, 0);
            buf_reset(&s);
        }
    }
    apply_expect(r, "CREATE AGGREGATE One", ERR_TOOBIG);
    apply_expect(r, "CREATE OR REPLACE EVENT E7 (x INT)", 0);
    buf_fini(&s);
    deql_reg_free(r);
}
