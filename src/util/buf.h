/* Growable byte buffer and helpers to write JSON text into it. Single owner, single thread. */
#ifndef UTIL_BUF_H
#define UTIL_BUF_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

struct buf {
    char *ptr;  /* owned heap storage, NUL-terminated after ptr[len] when cap > 0 */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
};

/* Borrowed view of bytes; never owns. */
struct slice {
    const char *ptr;
    size_t len;
};

void buf_init(struct buf *b);
void buf_fini(struct buf *b);
void buf_reset(struct buf *b);
/* Ensures room for n more bytes (plus a terminating NUL). Aborts on OOM (xmalloc policy). */
void buf_reserve(struct buf *b, size_t n);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_add_u64(struct buf *b, uint64_t v);
void buf_add_i64(struct buf *b, int64_t v);
/* Appends s[0..n) as a quoted, escaped JSON string. UTF-8 sequences are copied as they are;
 * a byte that is not part of one (text from user code, say) becomes \ufffd, so the result is
 * always valid JSON. */
void buf_add_json_str(struct buf *b, const char *s, size_t n);
/* Length of the valid UTF-8 sequence at s (its lead byte >= 0x80; n bytes readable): 2 to 4,
 * or 0 when it is not one (strict: no overlong forms, no surrogates, nothing past U+10FFFF). */
size_t utf8_seq_len(const unsigned char *s, size_t n);
/* True when s[0..n) is UTF-8 text without NUL bytes (what a source file must be). */
bool utf8_text_ok(const char *s, size_t n);
/* Transfers the storage to the caller (malloc'd, NUL-terminated) and resets b. */
char *buf_steal(struct buf *b, size_t *out_len);

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrndup(const char *s, size_t n);

#endif
