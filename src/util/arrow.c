/* Apache Arrow IPC stream writer: column builders, a forward flatbuffer builder for the
 * Schema and RecordBatch metadata, and the stream framing (docs/design/arrow.md).
 *
 * Invariants: every column of a table holds one validity byte per row and its values buffer one
 * value per row (Utf8: one int64 end offset into its text); the table's stored bytes never pass
 * ARROW_MAX_TABLE_BYTES; no Utf8 cell is longer than batch_text_bytes_max, so every batch takes
 * at least one row and its int32 offsets never overflow.
 *
 * The flatbuffers are built front to back: a table's vtable is written just before the table
 * (so its soffset is positive), each table starts 8-aligned, and its offset fields are patched
 * once the child they point to has been written after it (uoffsets always point forward). */
#include "util/arrow.h"

#include <assert.h>
#include <string.h>

#include "util/assert.h"
#include "util/errors.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "Arrow bodies are written as stored");
static_assert(sizeof(double) == 8, "Float64 is an IEEE double");

enum {
    FB_MAX_FIELDS = 8,      /* vtable entries of the largest table written here */
    FB_MAX_INLINE = 64,     /* inline bytes of the largest table written here */
    META_VERSION_V5 = 4,    /* MetadataVersion.V5 */
    HEADER_SCHEMA = 1,      /* MessageHeader.Schema */
    HEADER_RECORD_BATCH = 3, /* MessageHeader.RecordBatch */
    TYPE_INT = 2,           /* Type union tags */
    TYPE_FLOATING_POINT = 3,
    TYPE_UTF8 = 5,
    TYPE_BOOL = 6,
    TYPE_TIMESTAMP = 10,
    PRECISION_DOUBLE = 2,
    TIME_UNIT_MICROSECOND = 2,
    CONTINUATION = -1, /* 0xFFFFFFFF before every message's metadata length */
};

/* ---- byte helpers ---- */

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

static void put_le(struct buf *b, uint64_t v, size_t size)
{
    uint8_t bytes[8];
    for (size_t i = 0; i < size; i++) {
        bytes[i] = (uint8_t)(v >> (8 * i));
    }
    buf_add(b, bytes, size);
}

static void put_zeros(struct buf *b, size_t n)
{
    static const uint8_t zeros[8];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        buf_add(b, zeros, k);
        n -= k;
    }
}

/* Pads b with zeros until len % align == rem. */
static void pad_to(struct buf *b, size_t align, size_t rem)
{
    while (b->len % align != rem) {
        buf_addc(b, 0);
    }
}

static void patch_u32(struct buf *b, size_t pos, uint32_t v)
{
    for (size_t i = 0; i < 4; i++) {
        b->ptr[pos + i] = (char)(uint8_t)(v >> (8 * i));
    }
}

/* ---- forward flatbuffer builder ---- */

/* The inline part of one table before it is written: fields in the order added. */
struct fbt {
    uint8_t data[FB_MAX_INLINE];  /* field bytes after the table's 4-byte soffset */
    size_t len;                   /* bytes of data used */
    uint16_t voff[FB_MAX_FIELDS]; /* offset of field id from the table start; 0 = absent */
    size_t nfields;               /* vtable entries: highest field id + 1 */
};

/* Adds field id as a little-endian scalar of size bytes (1, 2, 4 or 8), aligned to its size. */
static void fbt_scalar(struct fbt *t, size_t id, uint64_t v, size_t size)
{
    size_t at = align_up(4 + t->len, size);
    ASSERT(id < FB_MAX_FIELDS && at + size - 4 <= FB_MAX_INLINE);
    memset(t->data + t->len, 0, at - 4 - t->len);
    for (size_t i = 0; i < size; i++) {
        t->data[at - 4 + i] = (uint8_t)(v >> (8 * i));
    }
    t->len = at - 4 + size;
    t->voff[id] = (uint16_t)at;
    if (id + 1 > t->nfields) {
        t->nfields = id + 1;
    }
}

/* Writes the vtable, then the table 8-aligned after it. Returns the table's position. */
static size_t fb_table(struct buf *fb, const struct fbt *t)
{
    pad_to(fb, 2, 0);
    size_t vt = fb->len;
    put_le(fb, 4 + 2 * t->nfields, 2);
    put_le(fb, 4 + t->len, 2);
    for (size_t i = 0; i < t->nfields; i++) {
        put_le(fb, t->voff[i], 2);
    }
    pad_to(fb, 8, 0);
    size_t pos = fb->len;
    put_le(fb, (uint32_t)(pos - vt), 4);
    buf_add(fb, t->data, t->len);
    return pos;
}

/* Points the uoffset at slot to target (written later, so the offset is positive). */
static void fb_link(struct buf *fb, size_t slot, size_t target)
{
    ASSERT(target > slot);
    patch_u32(fb, slot, (uint32_t)(target - slot));
}

static size_t fb_field_slot(size_t table_pos, const struct fbt *t, size_t id)
{
    return table_pos + t->voff[id];
}

/* A vector of n uoffsets, to be linked one by one; returns the vector's position (its length
 * prefix); element i is at that + 4 + 4 * i. */
static size_t fb_offset_vector(struct buf *fb, size_t n)
{
    pad_to(fb, 4, 0);
    size_t pos = fb->len;
    put_le(fb, n, 4);
    put_zeros(fb, 4 * n);
    return pos;
}

/* A vector of n 16-byte structs of two int64 each (FieldNode, Buffer): elements 8-aligned. */
static size_t fb_pair_vector(struct buf *fb, const int64_t *pairs, size_t n)
{
    pad_to(fb, 8, 4);
    size_t pos = fb->len;
    put_le(fb, n, 4);
    for (size_t i = 0; i < 2 * n; i++) {
        put_le(fb, (uint64_t)pairs[i], 8);
    }
    return pos;
}

static size_t fb_string(struct buf *fb, const char *s, size_t n)
{
    pad_to(fb, 4, 0);
    size_t pos = fb->len;
    put_le(fb, n, 4);
    buf_add(fb, s, n);
    buf_addc(fb, 0);
    return pos;
}

/* Starts a message flatbuffer: the root uoffset, then the Message table. Returns the position
 * of the header slot, to be linked to the header table written next. */
static size_t fb_message(struct buf *fb, int header_type, int64_t body_len)
{
    put_le(fb, 0, 4); /* root offset, linked below */
    struct fbt m = {0};
    fbt_scalar(&m, 3, (uint64_t)body_len, 8);
    fbt_scalar(&m, 2, 0, 4);
    fbt_scalar(&m, 0, META_VERSION_V5, 2);
    fbt_scalar(&m, 1, (uint64_t)header_type, 1);
    size_t pos = fb_table(fb, &m);
    fb_link(fb, 0, pos);
    return fb_field_slot(pos, &m, 2);
}

/* Frames one message: continuation marker, metadata length (padded so the body starts
 * 8-aligned), the flatbuffer and its padding. The body follows, written by the caller. */
static void put_message(struct buf *out, const struct buf *fb)
{
    size_t meta_len = align_up(fb->len, 8);
    put_le(out, (uint32_t)CONTINUATION, 4);
    put_le(out, meta_len, 4);
    buf_add(out, fb->ptr, fb->len);
    put_zeros(out, meta_len - fb->len);
}

/* ---- types ---- */

enum arrow_type arrow_type_join(enum arrow_type seen, enum arrow_type value)
{
    if (value == ARROW_NULL || value == seen) {
        return seen;
    }
    if (seen == ARROW_NULL) {
        return value;
    }
    if ((seen == ARROW_INT64 && value == ARROW_FLOAT64) ||
        (seen == ARROW_FLOAT64 && value == ARROW_INT64)) {
        return ARROW_FLOAT64;
    }
    return ARROW_UTF8;
}

const char *arrow_type_name(enum arrow_type type)
{
    switch (type) {
    case ARROW_NULL: return "null";
    case ARROW_INT64: return "int64";
    case ARROW_FLOAT64: return "float64";
    case ARROW_BOOL: return "bool";
    case ARROW_UTF8: return "utf8";
    case ARROW_TIMESTAMP_US: return "timestamp_us";
    }
    return "unknown";
}

/* True when s[0..n) is UTF-8 (NUL bytes allowed: Arrow strings may hold them). */
static bool text_is_utf8(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (k == 0) {
            return false;
        }
        i += k;
    }
    return true;
}

/* ---- the table ---- */

int arrow_table_init(struct arrow_table *t, size_t ncols, const char *const *names,
                     const enum arrow_type *types)
{
    memset(t, 0, sizeof(*t));
    if (ncols == 0 || ncols > ARROW_MAX_COLUMNS) {
        return ERR(ERR_INVALID);
    }
    for (size_t i = 0; i < ncols; i++) {
        size_t n = strlen(names[i]);
        if (n > ARROW_MAX_NAME_BYTES || !text_is_utf8(names[i], n) ||
            (unsigned)types[i] > ARROW_TIMESTAMP_US) {
            return ERR(ERR_INVALID);
        }
    }
    t->cols = xcalloc(ncols, sizeof(*t->cols));
    t->ncols = ncols;
    t->batch_rows_max = ARROW_MAX_BATCH_ROWS;
    t->batch_text_bytes_max = ARROW_MAX_BATCH_TEXT_BYTES;
    for (size_t i = 0; i < ncols; i++) {
        struct arrow_column *c = &t->cols[i];
        c->name_len = strlen(names[i]);
        c->name = xstrndup(names[i], c->name_len);
        c->type = types[i] == ARROW_NULL ? ARROW_UTF8 : types[i];
        buf_init(&c->values);
        buf_init(&c->text);
        buf_init(&c->valid);
    }
    return 0;
}

void arrow_table_fini(struct arrow_table *t)
{
    for (size_t i = 0; i < t->ncols; i++) {
        free(t->cols[i].name);
        buf_fini(&t->cols[i].values);
        buf_fini(&t->cols[i].text);
        buf_fini(&t->cols[i].valid);
    }
    free(t->cols);
    memset(t, 0, sizeof(*t));
}

/* The column col when it exists and takes values of type (ARROW_NULL: any); else NULL. */
static struct arrow_column *column_for(struct arrow_table *t, size_t col, enum arrow_type type)
{
    if (col >= t->ncols) {
        return NULL;
    }
    struct arrow_column *c = &t->cols[col];
    if (type != ARROW_NULL && type != c->type) {
        return NULL;
    }
    return c;
}

static size_t value_size(enum arrow_type type)
{
    return type == ARROW_BOOL ? 1 : 8;
}

/* Appends one row: validity, value bytes (size of the column's value) and text. Returns 0 or
 * ERR_TOOBIG when the table would pass its byte limit. */
static int append_cell(struct arrow_table *t, struct arrow_column *c, bool is_valid,
                       const void *value, const char *text, size_t text_len)
{
    size_t vsize = value_size(c->type);
    size_t add = 1 + vsize + text_len;
    if (add > ARROW_MAX_TABLE_BYTES - t->bytes) {
        return ERR(ERR_TOOBIG);
    }
    t->bytes += add;
    buf_addc(&c->valid, is_valid ? 1 : 0);
    if (c->type == ARROW_UTF8) {
        buf_add(&c->text, text, text_len);
        int64_t end = (int64_t)c->text.len;
        buf_add(&c->values, &end, sizeof(end));
    } else {
        buf_add(&c->values, value, vsize);
    }
    c->count++;
    c->null_count += is_valid ? 0 : 1;
    return 0;
}

int arrow_table_add_null(struct arrow_table *t, size_t col)
{
    static const uint8_t zeros[8];
    struct arrow_column *c = column_for(t, col, ARROW_NULL);
    if (!c) {
        return ERR(ERR_INVALID);
    }
    return append_cell(t, c, false, zeros, "", 0);
}

int arrow_table_add_int64(struct arrow_table *t, size_t col, int64_t v)
{
    if (col < t->ncols && t->cols[col].type == ARROW_FLOAT64) {
        return arrow_table_add_float64(t, col, (double)v);
    }
    struct arrow_column *c = column_for(t, col, ARROW_INT64);
    if (!c) {
        return ERR(ERR_INVALID);
    }
    return append_cell(t, c, true, &v, NULL, 0);
}

int arrow_table_add_float64(struct arrow_table *t, size_t col, double v)
{
    struct arrow_column *c = column_for(t, col, ARROW_FLOAT64);
    if (!c) {
        return ERR(ERR_INVALID);
    }
    return append_cell(t, c, true, &v, NULL, 0);
}

int arrow_table_add_bool(struct arrow_table *t, size_t col, bool v)
{
    uint8_t byte = v ? 1 : 0;
    struct arrow_column *c = column_for(t, col, ARROW_BOOL);
    if (!c) {
        return ERR(ERR_INVALID);
    }
    return append_cell(t, c, true, &byte, NULL, 0);
}

int arrow_table_add_utf8(struct arrow_table *t, size_t col, const char *s, size_t len)
{
    struct arrow_column *c = column_for(t, col, ARROW_UTF8);
    if (!c || !text_is_utf8(s, len)) {
        return ERR(ERR_INVALID);
    }
    if (len > t->batch_text_bytes_max) {
        return ERR(ERR_TOOBIG);
    }
    return append_cell(t, c, true, NULL, s, len);
}

int arrow_table_add_timestamp_us(struct arrow_table *t, size_t col, int64_t us)
{
    struct arrow_column *c = column_for(t, col, ARROW_TIMESTAMP_US);
    if (!c) {
        return ERR(ERR_INVALID);
    }
    return append_cell(t, c, true, &us, NULL, 0);
}

int64_t arrow_table_rows(const struct arrow_table *t)
{
    for (size_t i = 1; i < t->ncols; i++) {
        if (t->cols[i].count != t->cols[0].count) {
            return ERR(ERR_INVALID);
        }
    }
    return t->ncols ? (int64_t)t->cols[0].count : 0;
}

/* ---- writing ---- */

/* Start of row r's text in a Utf8 column (the end of row r - 1's). */
static size_t text_start(const struct arrow_column *c, size_t r)
{
    int64_t end = 0;
    if (r > 0) {
        memcpy(&end, c->values.ptr + 8 * (r - 1), sizeof(end));
    }
    return (size_t)end;
}

/* End of the batch starting at row r0: at most batch_rows_max rows and batch_text_bytes_max
 * text bytes in any Utf8 column, and at least one row. */
static size_t batch_end(const struct arrow_table *t, size_t r0, size_t rows)
{
    size_t r1 = r0;
    while (r1 < rows && r1 - r0 < t->batch_rows_max) {
        for (size_t i = 0; i < t->ncols && r1 > r0; i++) {
            const struct arrow_column *c = &t->cols[i];
            if (c->type == ARROW_UTF8 &&
                text_start(c, r1 + 1) - text_start(c, r0) > t->batch_text_bytes_max) {
                return r1;
            }
        }
        r1++;
    }
    return r1;
}

static void put_field_type(struct buf *fb, size_t slot, enum arrow_type type)
{
    struct fbt ty = {0};
    switch (type) {
    case ARROW_INT64:
        fbt_scalar(&ty, 0, 64, 4);
        fbt_scalar(&ty, 1, 1, 1);
        break;
    case ARROW_FLOAT64:
        fbt_scalar(&ty, 0, PRECISION_DOUBLE, 2);
        break;
    case ARROW_TIMESTAMP_US:
        fbt_scalar(&ty, 1, 0, 4);
        fbt_scalar(&ty, 0, TIME_UNIT_MICROSECOND, 2);
        break;
    default: /* Utf8, Bool: tables without fields */
        break;
    }
    size_t pos = fb_table(fb, &ty);
    fb_link(fb, slot, pos);
    if (type == ARROW_TIMESTAMP_US) {
        fb_link(fb, fb_field_slot(pos, &ty, 1), fb_string(fb, "UTC", 3));
    }
}

static uint8_t type_tag(enum arrow_type type)
{
    switch (type) {
    case ARROW_INT64: return TYPE_INT;
    case ARROW_FLOAT64: return TYPE_FLOATING_POINT;
    case ARROW_BOOL: return TYPE_BOOL;
    case ARROW_TIMESTAMP_US: return TYPE_TIMESTAMP;
    default: return TYPE_UTF8;
    }
}

/* One Field: name, nullable, type (tag and table), children (an empty vector, which readers
 * require even for types without children). */
static void put_field(struct buf *fb, size_t slot, const struct arrow_column *c)
{
    struct fbt f = {0};
    fbt_scalar(&f, 0, 0, 4);
    fbt_scalar(&f, 3, 0, 4);
    fbt_scalar(&f, 5, 0, 4);
    fbt_scalar(&f, 1, 1, 1);
    fbt_scalar(&f, 2, type_tag(c->type), 1);
    size_t pos = fb_table(fb, &f);
    fb_link(fb, slot, pos);
    fb_link(fb, fb_field_slot(pos, &f, 0), fb_string(fb, c->name, c->name_len));
    put_field_type(fb, fb_field_slot(pos, &f, 3), c->type);
    fb_link(fb, fb_field_slot(pos, &f, 5), fb_offset_vector(fb, 0));
}

static void put_schema(const struct arrow_table *t, struct buf *out)
{
    struct buf fb;
    buf_init(&fb);
    size_t header_slot = fb_message(&fb, HEADER_SCHEMA, 0);
    struct fbt s = {0};
    fbt_scalar(&s, 1, 0, 4);
    size_t pos = fb_table(&fb, &s);
    fb_link(&fb, header_slot, pos);
    size_t vec = fb_offset_vector(&fb, t->ncols);
    fb_link(&fb, fb_field_slot(pos, &s, 1), vec);
    for (size_t i = 0; i < t->ncols; i++) {
        put_field(&fb, vec + 4 + 4 * i, &t->cols[i]);
    }
    put_message(out, &fb);
    buf_fini(&fb);
}

/* The body buffers of one batch, in schema pre-order: per column validity then its data
 * buffers (Utf8: offsets and text). Built before the metadata, which records their places. */
struct batch {
    size_t r0, rows;       /* first row and row count */
    int64_t *nodes;        /* per column (length, null_count) */
    int64_t *buffers;      /* per buffer (offset, length) in the body */
    size_t nbuffers;       /* buffers used */
    struct buf body;       /* the body bytes, every buffer padded to 8 */
};

/* Records body[at..len) as the next buffer and pads the body to 8. */
static void body_end(struct batch *bt, size_t at)
{
    bt->buffers[2 * bt->nbuffers] = (int64_t)at;
    bt->buffers[2 * bt->nbuffers + 1] = (int64_t)(bt->body.len - at);
    bt->nbuffers++;
    pad_to(&bt->body, 8, 0);
}

static void body_add(struct batch *bt, const void *p, size_t n)
{
    size_t at = bt->body.len;
    if (n > 0) {
        buf_add(&bt->body, p, n);
    }
    body_end(bt, at);
}

/* Appends a bitmap (LSB first) of the bytes flags[0..n) as one body buffer. */
static void body_add_bits(struct batch *bt, const char *flags, size_t n)
{
    size_t at = bt->body.len;
    put_zeros(&bt->body, (n + 7) / 8);
    uint8_t *bits = (uint8_t *)bt->body.ptr + at;
    for (size_t i = 0; i < n; i++) {
        bits[i / 8] |= (uint8_t)((flags[i] ? 1 : 0) << (i % 8));
    }
    body_end(bt, at);
}

static void batch_column(struct batch *bt, const struct arrow_column *c, size_t col)
{
    const char *valid = c->valid.ptr + bt->r0;
    size_t nulls = 0;
    for (size_t i = 0; i < bt->rows; i++) {
        nulls += valid[i] ? 0 : 1;
    }
    bt->nodes[2 * col] = (int64_t)bt->rows;
    bt->nodes[2 * col + 1] = (int64_t)nulls;
    if (nulls > 0) {
        body_add_bits(bt, valid, bt->rows);
    } else {
        body_add(bt, NULL, 0); /* no nulls: an empty validity buffer */
    }
    if (c->type == ARROW_BOOL) {
        body_add_bits(bt, c->values.ptr + bt->r0, bt->rows);
    } else if (c->type == ARROW_UTF8) {
        size_t base = text_start(c, bt->r0);
        size_t at = bt->body.len;
        for (size_t i = 0; i <= bt->rows; i++) {
            put_le(&bt->body, (uint32_t)(text_start(c, bt->r0 + i) - base), 4);
        }
        body_end(bt, at);
        body_add(bt, c->text.ptr + base, text_start(c, bt->r0 + bt->rows) - base);
    } else {
        body_add(bt, c->values.ptr + 8 * bt->r0, 8 * bt->rows);
    }
}

static void put_batch(const struct arrow_table *t, struct batch *bt, struct buf *out)
{
    bt->nbuffers = 0;
    buf_reset(&bt->body);
    for (size_t i = 0; i < t->ncols; i++) {
        batch_column(bt, &t->cols[i], i);
    }
    struct buf fb;
    buf_init(&fb);
    size_t header_slot = fb_message(&fb, HEADER_RECORD_BATCH, (int64_t)bt->body.len);
    struct fbt rb = {0};
    fbt_scalar(&rb, 0, bt->rows, 8);
    fbt_scalar(&rb, 1, 0, 4);
    fbt_scalar(&rb, 2, 0, 4);
    size_t pos = fb_table(&fb, &rb);
    fb_link(&fb, header_slot, pos);
    fb_link(&fb, fb_field_slot(pos, &rb, 1), fb_pair_vector(&fb, bt->nodes, t->ncols));
    fb_link(&fb, fb_field_slot(pos, &rb, 2), fb_pair_vector(&fb, bt->buffers, bt->nbuffers));
    put_message(out, &fb);
    buf_add(out, bt->body.ptr, bt->body.len);
    buf_fini(&fb);
}

int arrow_table_write(const struct arrow_table *t, struct buf *out)
{
    int64_t rows = arrow_table_rows(t);
    if (rows < 0 || t->ncols == 0 || t->batch_rows_max == 0) {
        return ERR(ERR_INVALID);
    }
    put_schema(t, out);
    struct batch bt = {0};
    bt.nodes = xcalloc(t->ncols, 2 * sizeof(int64_t));
    bt.buffers = xcalloc(t->ncols, 3 * 2 * sizeof(int64_t));
    buf_init(&bt.body);
    for (size_t r0 = 0; r0 < (size_t)rows;) {
        size_t r1 = batch_end(t, r0, (size_t)rows);
        bt.r0 = r0;
        bt.rows = r1 - r0;
        put_batch(t, &bt, out);
        r0 = r1;
    }
    buf_fini(&bt.body);
    free(bt.nodes);
    free(bt.buffers);
    put_le(out, (uint32_t)CONTINUATION, 4);
    put_le(out, 0, 4);
    return 0;
}
