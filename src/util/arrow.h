/* Apache Arrow IPC stream writer (application/vnd.apache.arrow.stream), hand-written because
 * Debian has no Arrow C library. A table is built column by column in memory (a buffered,
 * bounded result), then written as one Schema message, RecordBatch messages and the end of
 * stream marker. Pure: no I/O, the bytes are appended to a struct buf. Format notes in
 * docs/design/arrow.md. Single owner, single thread.
 *
 * Usage:
 *     enum arrow_type seen = ARROW_NULL;           // per column, over the buffered values
 *     seen = arrow_type_join(seen, ARROW_INT64);   // ... once per value
 *     struct arrow_table t;
 *     arrow_table_init(&t, 2, names, types);       // ARROW_NULL columns become Utf8
 *     arrow_table_add_int64(&t, 0, 42);            // cells of column 0, in row order
 *     arrow_table_add_null(&t, 1);
 *     arrow_table_write(&t, &out);
 *     arrow_table_fini(&t);
 */
#ifndef UTIL_ARROW_H
#define UTIL_ARROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Column types. ARROW_NULL is no type: "only nulls seen so far" for arrow_type_join. */
enum arrow_type {
    ARROW_NULL = 0,
    ARROW_INT64,        /* Int(64, signed) */
    ARROW_FLOAT64,      /* FloatingPoint(DOUBLE) */
    ARROW_BOOL,         /* Bool, bit-packed */
    ARROW_UTF8,         /* Utf8: int32 offsets, valid UTF-8 (NUL bytes allowed) */
    ARROW_TIMESTAMP_US, /* Timestamp(MICROSECOND, "UTC"): int64 microseconds since the epoch */
};

enum {
    ARROW_MAX_COLUMNS = 1024,     /* columns of one table */
    ARROW_MAX_NAME_BYTES = 1024,  /* bytes of a column name */
    ARROW_MAX_BATCH_ROWS = 65536, /* rows of one RecordBatch (default of batch_rows_max) */
    /* text bytes of one Utf8 column in one RecordBatch (default of batch_text_bytes_max); far
     * below INT32_MAX, so the int32 offsets never overflow. A longer cell is refused. */
    ARROW_MAX_BATCH_TEXT_BYTES = 64 * 1024 * 1024,
};
/* Bytes a table may hold (values, text, validity), summed over its columns. */
#define ARROW_MAX_TABLE_BYTES ((size_t)1 << 30)

/* One column while it is being filled: every field owned by the table. */
struct arrow_column {
    char *name;            /* owned copy, UTF-8 */
    size_t name_len;       /* bytes of name */
    enum arrow_type type;  /* never ARROW_NULL */
    struct buf values;     /* per row: int64, double, one byte for Bool, or for Utf8 the int64
                            * end offset of the row's text in `text` */
    struct buf text;       /* Utf8 only: the text of every row, back to back */
    struct buf valid;      /* per row one byte: 1 = a value, 0 = null */
    size_t count;          /* rows appended */
    size_t null_count;     /* of them null */
};

struct arrow_table {
    struct arrow_column *cols; /* owned array of ncols */
    size_t ncols;              /* columns, 1..ARROW_MAX_COLUMNS */
    size_t bytes;              /* stored bytes, at most ARROW_MAX_TABLE_BYTES */
    size_t batch_rows_max;     /* rows per RecordBatch; ARROW_MAX_BATCH_ROWS after init */
    size_t batch_text_bytes_max; /* Utf8 bytes per column per batch; may be lowered (tests) */
};

/* The type a column takes after values of types `seen` (a previous result, ARROW_NULL at first)
 * and `value` (ARROW_NULL for a null). Rules: nulls change nothing; equal types stay; Int64 and
 * Float64 give Float64; any other mix gives Utf8 (text and anything is text; the caller then
 * renders the non-text values as text). A column of only nulls stays ARROW_NULL, which
 * arrow_table_init writes as Utf8 (every reader knows it; the Null type is less supported). */
enum arrow_type arrow_type_join(enum arrow_type seen, enum arrow_type value);

/* Readable name of a type ("int64", "float64", "bool", "utf8", "timestamp_us", "null"). */
const char *arrow_type_name(enum arrow_type type);

/* Starts an empty table of ncols columns; names[i] (borrowed, NUL-terminated UTF-8, copied) and
 * types[i] (ARROW_NULL means Utf8). Returns 0, or ERR_INVALID (ncols 0 or above
 * ARROW_MAX_COLUMNS, a name too long or not UTF-8, an unknown type); on error *t needs no fini
 * but arrow_table_fini on it is harmless. */
int arrow_table_init(struct arrow_table *t, size_t ncols, const char *const *names,
                     const enum arrow_type *types);
/* Frees everything the table owns; harmless on a zeroed table. */
void arrow_table_fini(struct arrow_table *t);

/* Cell appenders: append the next row's value to column col. Each returns 0, ERR_INVALID (col
 * out of range, a value of another type: only an Int64 value into a Float64 column is converted;
 * text that is not UTF-8) or ERR_TOOBIG (the table would exceed ARROW_MAX_TABLE_BYTES, a text
 * longer than batch_text_bytes_max). On error the column is unchanged. */
int arrow_table_add_null(struct arrow_table *t, size_t col);
int arrow_table_add_int64(struct arrow_table *t, size_t col, int64_t v);
int arrow_table_add_float64(struct arrow_table *t, size_t col, double v);
int arrow_table_add_bool(struct arrow_table *t, size_t col, bool v);
/* s[0..len) borrowed and copied. */
int arrow_table_add_utf8(struct arrow_table *t, size_t col, const char *s, size_t len);
int arrow_table_add_timestamp_us(struct arrow_table *t, size_t col, int64_t us);

/* Rows of the table: the count of every column. ERR_INVALID when columns differ in length. */
int64_t arrow_table_rows(const struct arrow_table *t);

/* Appends the whole IPC stream to out: the Schema message; the rows in RecordBatch messages of
 * at most batch_rows_max rows and batch_text_bytes_max text bytes per Utf8 column (none for 0
 * rows); then the end of stream marker FFFFFFFF 00000000. Returns 0 or ERR_INVALID (columns of
 * different lengths; out unchanged). The table is unchanged and may be written again. */
int arrow_table_write(const struct arrow_table *t, struct buf *out);

#endif
