/* Arrow IPC stream writer (src/util/arrow.c): framing, alignment, flatbuffer metadata read back
 * by a small reader written here, validity bitmaps, Utf8 offsets, batch splitting, errors.
 * With ARROW_DUMP_DIR set, each stream is also written to $ARROW_DUMP_DIR/<name>.arrows with
 * <name>.json (the expected schema and rows) for tests/integration/test_arrow_writer.py, which
 * decodes them with the apache-arrow npm package. */
#include <math.h>
#include <stdint.h>

#include "unit.h"
#include "util/arrow.h"
#include "util/buf.h"
#include "util/errors.h"

/* ---- a minimal flatbuffer and stream reader ---- */

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* Field id of a table, or NULL when absent. */
static const uint8_t *fb_field(const uint8_t *table, int id)
{
    const uint8_t *vt = table - (int32_t)rd32(table);
    uint16_t vlen = (uint16_t)(vt[0] | vt[1] << 8);
    if (4 + 2 * id >= vlen) {
        return NULL;
    }
    uint16_t off = (uint16_t)(vt[4 + 2 * id] | vt[5 + 2 * id] << 8);
    return off ? table + off : NULL;
}

static const uint8_t *fb_deref(const uint8_t *slot)
{
    CHECK(slot != NULL);
    return slot + rd32(slot);
}

/* What the reader found in one RecordBatch message. */
struct rbatch {
    int64_t length;        /* rows */
    uint32_t nnodes;       /* field nodes */
    const uint8_t *nodes;  /* (length, null_count) pairs */
    uint32_t nbuffers;     /* buffers */
    const uint8_t *bufs;   /* (offset, length) pairs */
    const uint8_t *body;   /* the body */
};

struct stream {
    uint32_t nfields;          /* schema fields */
    const uint8_t *fields;     /* the schema's fields vector (after its length) */
    struct rbatch batches[64]; /* record batches, in order */
    size_t nbatches;           /* of them used */
};

/* Walks a whole stream, checking framing and alignment, and fills *s. */
static void read_stream(const struct buf *b, struct stream *s)
{
    const uint8_t *base = (const uint8_t *)b->ptr;
    size_t pos = 0;
    memset(s, 0, sizeof(*s));
    for (int n = 0;; n++) {
        CHECK(pos + 8 <= b->len && pos % 8 == 0);
        ASSERT_EQ(rd32(base + pos), 0xFFFFFFFFu);
        uint32_t meta = rd32(base + pos + 4);
        if (meta == 0) {
            ASSERT_EQ(pos + 8, b->len); /* the end of stream marker is last */
            return;
        }
        ASSERT_EQ(meta % 8, 0);
        const uint8_t *fb = base + pos + 8;
        const uint8_t *msg = fb_deref(fb);
        CHECK(((msg - base) % 4) == 0);
        ASSERT_EQ(*(const int16_t *)fb_field(msg, 0), 4); /* V5 */
        uint8_t htype = *fb_field(msg, 1);
        const uint8_t *hdr = fb_deref(fb_field(msg, 2));
        const uint8_t *bl = fb_field(msg, 3);
        int64_t body_len = bl ? (int64_t)rd64(bl) : 0;
        ASSERT_EQ(body_len % 8, 0);
        const uint8_t *body = fb + meta;
        CHECK((size_t)(body - base) + (size_t)body_len <= b->len);
        if (n == 0) {
            ASSERT_EQ(htype, 1); /* Schema first */
            const uint8_t *v = fb_deref(fb_field(hdr, 1));
            s->nfields = rd32(v);
            s->fields = v + 4;
        } else {
            ASSERT_EQ(htype, 3);
            CHECK(s->nbatches < 64);
            struct rbatch *r = &s->batches[s->nbatches++];
            r->length = (int64_t)rd64(fb_field(hdr, 0));
            const uint8_t *nv = fb_deref(fb_field(hdr, 1));
            const uint8_t *bv = fb_deref(fb_field(hdr, 2));
            ASSERT_EQ((nv + 4 - base) % 8, 0); /* 16-byte structs 8-aligned */
            ASSERT_EQ((bv + 4 - base) % 8, 0);
            r->nnodes = rd32(nv);
            r->nodes = nv + 4;
            r->nbuffers = rd32(bv);
            r->bufs = bv + 4;
            r->body = body;
            for (uint32_t i = 0; i < r->nbuffers; i++) {
                int64_t off = (int64_t)rd64(r->bufs + 16 * i);
                int64_t len = (int64_t)rd64(r->bufs + 16 * i + 8);
                ASSERT_EQ(off % 8, 0);
                CHECK(off >= 0 && len >= 0 && off + len <= body_len);
            }
        }
        pos = (size_t)(body - base) + (size_t)body_len;
    }
}

static const uint8_t *rb_buffer(const struct rbatch *r, uint32_t i, int64_t *len)
{
    CHECK(i < r->nbuffers);
    *len = (int64_t)rd64(r->bufs + 16 * i + 8);
    return r->body + rd64(r->bufs + 16 * i);
}

/* Name and type tag of schema field i; checks the children vector is there and empty. */
static uint8_t schema_field(const struct stream *s, uint32_t i, char *name, size_t cap)
{
    CHECK(i < s->nfields);
    const uint8_t *f = fb_deref(s->fields + 4 * i);
    const uint8_t *str = fb_deref(fb_field(f, 0));
    uint32_t n = rd32(str);
    CHECK(n < cap);
    memcpy(name, str + 4, n);
    name[n] = 0;
    ASSERT_EQ(str[4 + n], 0);
    const uint8_t *children = fb_deref(fb_field(f, 5));
    ASSERT_EQ(rd32(children), 0);
    ASSERT_EQ(*fb_field(f, 1), 1); /* nullable */
    return *fb_field(f, 2);
}

/* ---- expected rows, and the dump for the independent reader ---- */

struct expect {
    struct arrow_table t; /* the table being built */
    struct buf rows;      /* JSON: the rows, as arrays of cells */
    size_t col;           /* next cell's column */
    size_t nrows;         /* complete rows */
};

static void exp_init(struct expect *e, size_t ncols, const char *const *names,
                     const enum arrow_type *types)
{
    memset(e, 0, sizeof(*e));
    ASSERT_EQ(arrow_table_init(&e->t, ncols, names, types), 0);
    buf_init(&e->rows);
}

static void exp_cell(struct expect *e, const char *json)
{
    if (e->col == 0) {
        buf_adds(&e->rows, e->nrows ? ",[" : "[");
    } else {
        buf_addc(&e->rows, ',');
    }
    buf_adds(&e->rows, json);
    if (++e->col == e->t.ncols) {
        buf_addc(&e->rows, ']');
        e->col = 0;
        e->nrows++;
    }
}

static void put_null(struct expect *e)
{
    ASSERT_EQ(arrow_table_add_null(&e->t, e->col), 0);
    exp_cell(e, "null");
}

/* Int64 and Timestamp values are expected as decimal strings (JSON numbers lose 64 bits). */
static void put_i64(struct expect *e, int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "\"%lld\"", (long long)v);
    ASSERT_EQ(arrow_table_add_int64(&e->t, e->col, v), 0);
    exp_cell(e, s);
}

/* An Int64 value into a Float64 column: converted, so expected as a number. */
static void put_i64_as_f64(struct expect *e, int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)v);
    ASSERT_EQ(arrow_table_add_int64(&e->t, e->col, v), 0);
    exp_cell(e, s);
}

static void put_f64(struct expect *e, double v)
{
    char s[40];
    snprintf(s, sizeof s, "%.17g", v);
    ASSERT_EQ(arrow_table_add_float64(&e->t, e->col, v), 0);
    exp_cell(e, s);
}

static void put_bool(struct expect *e, bool v)
{
    ASSERT_EQ(arrow_table_add_bool(&e->t, e->col, v), 0);
    exp_cell(e, v ? "true" : "false");
}

static void put_text(struct expect *e, const char *s, size_t n)
{
    struct buf j;
    buf_init(&j);
    buf_add_json_str(&j, s, n);
    ASSERT_EQ(arrow_table_add_utf8(&e->t, e->col, s, n), 0);
    exp_cell(e, j.ptr);
    buf_fini(&j);
}

static void put_ts(struct expect *e, int64_t us)
{
    char s[32];
    snprintf(s, sizeof s, "\"%lld\"", (long long)us);
    ASSERT_EQ(arrow_table_add_timestamp_us(&e->t, e->col, us), 0);
    exp_cell(e, s);
}

static void write_file(const char *dir, const char *name, const char *ext, const struct buf *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(b->ptr, 1, b->len, f) == b->len);
    CHECK(fclose(f) == 0);
}

/* Writes the table's stream into out, reads it back into *s and, with ARROW_DUMP_DIR set,
 * writes <name>.arrows and <name>.json: {"columns":[{"name","type"}],"rows":[...],
 * "batches":N}. */
static void exp_finish(struct expect *e, const char *name, struct buf *out, struct stream *s)
{
    ASSERT_EQ(e->col, 0);
    ASSERT_EQ(arrow_table_rows(&e->t), (int64_t)e->nrows);
    buf_init(out);
    ASSERT_EQ(arrow_table_write(&e->t, out), 0);
    read_stream(out, s);
    ASSERT_EQ(s->nfields, e->t.ncols);
    int64_t rows = 0;
    for (size_t i = 0; i < s->nbatches; i++) {
        ASSERT_EQ(s->batches[i].nnodes, e->t.ncols);
        rows += s->batches[i].length;
    }
    ASSERT_EQ(rows, (int64_t)e->nrows);
    const char *dir = getenv("ARROW_DUMP_DIR");
    if (dir && *dir) {
        struct buf j;
        buf_init(&j);
        buf_adds(&j, "{\"columns\":[");
        for (size_t i = 0; i < e->t.ncols; i++) {
            buf_adds(&j, i ? ",{\"name\":" : "{\"name\":");
            buf_add_json_str(&j, e->t.cols[i].name, e->t.cols[i].name_len);
            buf_printf(&j, ",\"type\":\"%s\"}", arrow_type_name(e->t.cols[i].type));
        }
        buf_printf(&j, "],\"rows\":[%s],\"batches\":%zu}\n", e->rows.ptr ? e->rows.ptr : "",
                   s->nbatches);
        write_file(dir, name, "arrows", out);
        write_file(dir, name, "json", &j);
        buf_fini(&j);
    }
}

static void exp_fini(struct expect *e, struct buf *out)
{
    arrow_table_fini(&e->t);
    buf_fini(&e->rows);
    buf_fini(out);
}

/* ---- tests ---- */

TEST(arrow_type_join_rules)
{
    ASSERT_EQ(arrow_type_join(ARROW_NULL, ARROW_NULL), ARROW_NULL);
    ASSERT_EQ(arrow_type_join(ARROW_NULL, ARROW_INT64), ARROW_INT64);
    ASSERT_EQ(arrow_type_join(ARROW_INT64, ARROW_NULL), ARROW_INT64);
    ASSERT_EQ(arrow_type_join(ARROW_INT64, ARROW_FLOAT64), ARROW_FLOAT64);
    ASSERT_EQ(arrow_type_join(ARROW_FLOAT64, ARROW_INT64), ARROW_FLOAT64);
    ASSERT_EQ(arrow_type_join(ARROW_FLOAT64, ARROW_UTF8), ARROW_UTF8);
    ASSERT_EQ(arrow_type_join(ARROW_UTF8, ARROW_BOOL), ARROW_UTF8);
    ASSERT_EQ(arrow_type_join(ARROW_BOOL, ARROW_INT64), ARROW_UTF8);
    ASSERT_EQ(arrow_type_join(ARROW_TIMESTAMP_US, ARROW_INT64), ARROW_UTF8);
    ASSERT_EQ(arrow_type_join(ARROW_BOOL, ARROW_BOOL), ARROW_BOOL);
}

TEST(arrow_empty_table_is_schema_and_end_marker)
{
    const char *names[] = {"id", "name", "at"};
    enum arrow_type types[] = {ARROW_INT64, ARROW_UTF8, ARROW_TIMESTAMP_US};
    struct expect e;
    struct buf out;
    struct stream s;
    exp_init(&e, 3, names, types);
    exp_finish(&e, "empty", &out, &s);
    ASSERT_EQ(s.nbatches, 0);
    ASSERT_EQ(out.len % 8, 0);
    CHECK(memcmp(out.ptr + out.len - 8, "\xff\xff\xff\xff\0\0\0\0", 8) == 0);
    char name[64];
    ASSERT_EQ(schema_field(&s, 0, name, sizeof name), 2); /* Int */
    ASSERT_STR(name, "id");
    ASSERT_EQ(schema_field(&s, 1, name, sizeof name), 5); /* Utf8 */
    ASSERT_EQ(schema_field(&s, 2, name, sizeof name), 10); /* Timestamp */
    ASSERT_STR(name, "at");
    exp_fini(&e, &out);
}

TEST(arrow_nulls_in_every_type)
{
    const char *names[] = {"i", "f", "b", "s", "t", "nothing"};
    enum arrow_type types[] = {ARROW_INT64, ARROW_FLOAT64, ARROW_BOOL, ARROW_UTF8,
                               ARROW_TIMESTAMP_US, ARROW_NULL};
    struct expect e;
    struct buf out;
    struct stream s;
    exp_init(&e, 6, names, types);
    for (int r = 0; r < 10; r++) {
        bool is_null = r % 3 == 1; /* rows 1, 4, 7 */
        if (is_null) {
            put_null(&e), put_null(&e), put_null(&e), put_null(&e), put_null(&e);
        } else {
            char txt[16];
            int n = snprintf(txt, sizeof txt, "r%d", r);
            put_i64(&e, r * 1000 - 3000);
            put_f64(&e, r / 4.0);
            put_bool(&e, r % 2 == 0);
            put_text(&e, txt, (size_t)n);
            put_ts(&e, 1700000000000000 + r);
        }
        put_null(&e);
    }
    exp_finish(&e, "nulls", &out, &s);
    ASSERT_EQ(s.nbatches, 1);
    const struct rbatch *r = &s.batches[0];
    ASSERT_EQ(r->length, 10);
    ASSERT_EQ(r->nbuffers, 2 + 2 + 2 + 3 + 2 + 3); /* validity + data, Utf8 has offsets */
    for (uint32_t c = 0; c < 5; c++) {
        ASSERT_EQ(rd64(r->nodes + 16 * c + 8), 3); /* null_count */
    }
    ASSERT_EQ(rd64(r->nodes + 16 * 5 + 8), 10);
    int64_t len;
    const uint8_t *v = rb_buffer(r, 0, &len); /* Int64 validity: rows 1, 4, 7 null */
    ASSERT_EQ(len, 2);
    ASSERT_EQ(v[0], 0x6d); /* 0b01101101 */
    ASSERT_EQ(v[1], 0x03);
    const uint8_t *bits = rb_buffer(r, 5, &len); /* Bool values: even rows true */
    ASSERT_EQ(len, 2);
    ASSERT_EQ(bits[0] & 0x6d, 0x45); /* rows 0, 2, 6 true; 3, 5 false (1, 4 null) */
    const uint8_t *off = rb_buffer(r, 7, &len); /* Utf8 offsets, offsets[0] included */
    ASSERT_EQ(len, 4 * 11);
    ASSERT_EQ(rd32(off), 0);
    ASSERT_EQ(rd32(off + 4), 2);
    ASSERT_EQ(rd32(off + 8), 2); /* the null row is empty */
    ASSERT_EQ(rd32(off + 40), 14);
    char name[64];
    ASSERT_EQ(schema_field(&s, 5, name, sizeof name), 5); /* all nulls: Utf8 */
    exp_fini(&e, &out);
}

TEST(arrow_no_nulls_empty_validity_and_edge_values)
{
    const char *names[] = {"i", "f", "b", "s", "t"};
    enum arrow_type types[] = {ARROW_INT64, ARROW_FLOAT64, ARROW_BOOL, ARROW_UTF8,
                               ARROW_TIMESTAMP_US};
    static const char *texts[] = {"", "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9d\x84\x9e", "a\"b\\c\n",
                                  "x"};
    const int64_t ints[] = {INT64_MIN, INT64_MAX, 0, -1};
    const double reals[] = {-0.5, 1e300, 0.1, -2.2250738585072014e-308};
    struct expect e;
    struct buf out;
    struct stream s;
    exp_init(&e, 5, names, types);
    for (int r = 0; r < 4; r++) {
        put_i64(&e, ints[r]);
        put_f64(&e, reals[r]);
        put_bool(&e, r == 1);
        put_text(&e, texts[r], strlen(texts[r]));
        put_ts(&e, r == 0 ? -1 : (int64_t)r * 86400000000);
    }
    exp_finish(&e, "plain", &out, &s);
    const struct rbatch *r = &s.batches[0];
    for (uint32_t i = 0; i < r->nbuffers; i++) {
        int64_t len;
        rb_buffer(r, i, &len);
        if (i == 0 || i == 2 || i == 4 || i == 6 || i == 9) {
            ASSERT_EQ(len, 0); /* no nulls: empty validity buffers */
        }
    }
    int64_t len;
    const uint8_t *d = rb_buffer(r, 1, &len);
    ASSERT_EQ(len, 32);
    ASSERT_EQ((int64_t)rd64(d), INT64_MIN);
    exp_fini(&e, &out);
}

TEST(arrow_text_with_nul_byte)
{
    const char *names[] = {"s"};
    enum arrow_type types[] = {ARROW_UTF8};
    struct expect e;
    struct buf out;
    struct stream s;
    exp_init(&e, 1, names, types);
    put_text(&e, "a\0b", 3);
    exp_finish(&e, "nulbyte", &out, &s);
    exp_fini(&e, &out);
}

TEST(arrow_many_rows_split_by_row_limit)
{
    const char *names[] = {"n", "s", "x"};
    enum arrow_type types[] = {ARROW_INT64, ARROW_UTF8, ARROW_FLOAT64};
    struct expect e;
    struct buf out;
    struct stream s;
    exp_init(&e, 3, names, types);
    size_t rows = 3 * ARROW_MAX_BATCH_ROWS + 1234;
    for (size_t i = 0; i < rows; i++) {
        char txt[32];
        int n = snprintf(txt, sizeof txt, "row %zu", i);
        put_i64(&e, (int64_t)i);
        if (i % 1000 == 999) {
            put_null(&e);
        } else {
            put_text(&e, txt, (size_t)n);
        }
        put_i64_as_f64(&e, (int64_t)i); /* an Int64 into a Float64 column is converted */
    }
    exp_finish(&e, "many", &out, &s);
    ASSERT_EQ(s.nbatches, 4);
    ASSERT_EQ(s.batches[0].length, ARROW_MAX_BATCH_ROWS);
    ASSERT_EQ(s.batches[3].length, 1234);
    int64_t len;
    const uint8_t *off = rb_buffer(&s.batches[1], 3, &len); /* each batch's offsets from 0 */
    ASSERT_EQ(rd32(off), 0);
    exp_fini(&e, &out);
}

TEST(arrow_split_by_text_bytes)
{
    const char *names[] = {"a", "b"};
    enum arrow_type types[] = {ARROW_UTF8, ARROW_UTF8};
    struct expect e;
    struct buf out;
    struct stream s;
    exp_init(&e, 2, names, types);
    e.t.batch_text_bytes_max = 10;
    for (int i = 0; i < 9; i++) {
        put_text(&e, "abcd", 4);
        put_text(&e, i == 4 ? "0123456789" : "z", i == 4 ? 10 : 1);
    }
    CHECK(arrow_table_add_utf8(&e.t, 0, "0123456789x", 11) == ERR_TOOBIG);
    exp_finish(&e, "textsplit", &out, &s);
    /* a: 2 rows of 4 bytes per batch; b's 10-byte cell stands alone */
    ASSERT_EQ(s.nbatches, 5);
    int64_t want[] = {2, 2, 1, 2, 2};
    for (size_t i = 0; i < 5; i++) {
        ASSERT_EQ(s.batches[i].length, want[i]);
    }
    for (size_t i = 0; i < s.nbatches; i++) {
        int64_t len;
        rb_buffer(&s.batches[i], 2, &len);
        CHECK(len <= 10);
        rb_buffer(&s.batches[i], 5, &len);
        CHECK(len <= 10);
    }
    exp_fini(&e, &out);
}

TEST(arrow_row_limit_setting)
{
    const char *names[] = {"b"};
    enum arrow_type types[] = {ARROW_BOOL};
    struct expect e;
    struct buf out;
    struct stream s;
    exp_init(&e, 1, names, types);
    e.t.batch_rows_max = 7;
    for (int i = 0; i < 20; i++) {
        if (i == 13) {
            put_null(&e);
        } else {
            put_bool(&e, i % 3 == 0);
        }
    }
    exp_finish(&e, "rowlimit", &out, &s);
    ASSERT_EQ(s.nbatches, 3);
    ASSERT_EQ(s.batches[2].length, 6);
    exp_fini(&e, &out);
}

TEST(arrow_refuses_bad_input)
{
    struct arrow_table t;
    const char *names[] = {"i", "f", "s"};
    enum arrow_type types[] = {ARROW_INT64, ARROW_FLOAT64, ARROW_UTF8};
    ASSERT_EQ(arrow_table_init(&t, 0, names, types), ERR_INVALID);
    arrow_table_fini(&t);
    const char *bad_name[] = {"\xff"};
    ASSERT_EQ(arrow_table_init(&t, 1, bad_name, types), ERR_INVALID);
    enum arrow_type bad_type[] = {(enum arrow_type)99};
    ASSERT_EQ(arrow_table_init(&t, 1, names, bad_type), ERR_INVALID);
    ASSERT_EQ(arrow_table_init(&t, 3, names, types), 0);
    ASSERT_EQ(arrow_table_add_int64(&t, 3, 1), ERR_INVALID);
    ASSERT_EQ(arrow_table_add_null(&t, 3), ERR_INVALID);
    ASSERT_EQ(arrow_table_add_utf8(&t, 0, "x", 1), ERR_INVALID);
    ASSERT_EQ(arrow_table_add_float64(&t, 0, 1.0), ERR_INVALID);
    ASSERT_EQ(arrow_table_add_bool(&t, 1, true), ERR_INVALID);
    ASSERT_EQ(arrow_table_add_utf8(&t, 2, "\xc3(", 2), ERR_INVALID);
    ASSERT_EQ(arrow_table_add_timestamp_us(&t, 2, 5), ERR_INVALID);
    ASSERT_EQ(arrow_table_add_int64(&t, 0, 1), 0);
    ASSERT_EQ(arrow_table_rows(&t), ERR_INVALID); /* columns of different lengths */
    struct buf out;
    buf_init(&out);
    ASSERT_EQ(arrow_table_write(&t, &out), ERR_INVALID);
    ASSERT_EQ(out.len, 0);
    ASSERT_EQ(arrow_table_add_int64(&t, 1, 2), 0); /* converted to 2.0 */
    ASSERT_EQ(arrow_table_add_null(&t, 2), 0);
    ASSERT_EQ(arrow_table_rows(&t), 1);
    ASSERT_EQ(arrow_table_write(&t, &out), 0);
    buf_fini(&out);
    arrow_table_fini(&t);
    arrow_table_fini(&t); /* harmless on a zeroed table */
}

TEST(arrow_write_is_repeatable)
{
    const char *names[] = {"t"};
    enum arrow_type types[] = {ARROW_TIMESTAMP_US};
    struct arrow_table t;
    ASSERT_EQ(arrow_table_init(&t, 1, names, types), 0);
    ASSERT_EQ(arrow_table_add_timestamp_us(&t, 0, 42), 0);
    struct buf a, b;
    buf_init(&a);
    buf_init(&b);
    ASSERT_EQ(arrow_table_write(&t, &a), 0);
    ASSERT_EQ(arrow_table_write(&t, &b), 0);
    ASSERT_EQ(a.len, b.len);
    CHECK(memcmp(a.ptr, b.ptr, a.len) == 0);
    buf_fini(&a);
    buf_fini(&b);
    arrow_table_fini(&t);
}
