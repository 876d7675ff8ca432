/* The backup stream format: frame decoding, the reader's grammar check and the writer.
 *
 * Reader states (backup_reader_next moves between them; any error moves to R_FAILED, which
 * refuses everything after):
 *
 *   R_START --HEADER--> R_TOP --FILE--> R_FILE --FILE_END--> R_TOP
 *   R_TOP --DB_BEGIN--> R_TOP (in a database) --DB_END--> R_TOP (outside)
 *   R_TOP --MANIFEST (outside a database)--> R_TAIL --END--> R_DONE
 *   any but R_START and R_DONE --ERROR--> R_FAILED;  KEEPALIVE changes nothing
 *
 * Invariant: sha is begun exactly while the state is R_FILE. */
#include "backup/frame.h"

#include <assert.h>
#include <string.h>

#include "util/errors.h"

static_assert(BACKUP_HEADER_PAYLOAD == BACKUP_MAGIC_LEN + 4, "HEADER payload layout");
static_assert(BACKUP_FILE_END_PAYLOAD == 8 + HASH_SHA256_LEN, "FILE_END payload layout");
static_assert(BACKUP_END_PAYLOAD == 16, "END payload layout");
static_assert(sizeof BACKUP_MAGIC - 1 == BACKUP_MAGIC_LEN, "magic length");
static_assert((long)BACKUP_WRITE_CHUNK <= (long)LIMIT_BACKUP_CHUNK_BYTES, "writer chunks within the limit");
static_assert(LIMIT_BACKUP_JSON_BYTES < UINT32_MAX, "payload lengths are u32");

enum { R_START, R_TOP, R_FILE, R_TAIL, R_DONE, R_FAILED };

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* ---- names and paths ---- */

bool backup_db_name_ok(const char *p, size_t n)
{
    if (n < 1 || n > LIMIT_DB_NAME_BYTES) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && c == '-'))) {
            return false;
        }
    }
    return true;
}

static bool segment_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

bool backup_path_ok(const char *p, size_t n)
{
    if (n < 1 || n > LIMIT_BACKUP_PATH_BYTES) {
        return false;
    }
    size_t seg_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '/') {
            if (seg_len == 0) {
                return false;
            }
            seg_len = 0;
            continue;
        }
        if (!segment_char_ok(p[i]) || (seg_len == 0 && p[i] == '.')) {
            return false; /* also ".", ".." and hidden names */
        }
        seg_len++;
    }
    return seg_len > 0;
}

/* ---- decoding ---- */

/* The payload lengths type t allows. False for an unknown type. */
static bool payload_range(uint8_t t, uint32_t *min, uint32_t *max)
{
    switch (t) {
    case BACKUP_HEADER: *min = *max = BACKUP_HEADER_PAYLOAD; return true;
    case BACKUP_FILE: *min = BACKUP_MODE_BYTES + 1;
                      *max = BACKUP_MODE_BYTES + LIMIT_BACKUP_PATH_BYTES; return true;
    case BACKUP_DATA: *min = 1; *max = LIMIT_BACKUP_CHUNK_BYTES; return true;
    case BACKUP_FILE_END: *min = *max = BACKUP_FILE_END_PAYLOAD; return true;
    case BACKUP_DB_BEGIN: *min = 1; *max = LIMIT_DB_NAME_BYTES; return true;
    case BACKUP_DB_END:
    case BACKUP_MANIFEST:
    case BACKUP_ERROR: *min = 2; *max = LIMIT_BACKUP_JSON_BYTES; return true;
    case BACKUP_KEEPALIVE: *min = *max = 0; return true;
    case BACKUP_END: *min = *max = BACKUP_END_PAYLOAD; return true;
    }
    return false;
}

/* Fills the fields of out that its type's payload holds. Returns 0 or ERR_PROTOCOL. */
static int decode_fields(struct backup_frame *out)
{
    const uint8_t *p = (const uint8_t *)out->payload.ptr;
    size_t n = out->payload.len;
    switch (out->type) {
    case BACKUP_HEADER:
        out->count = get32(p + BACKUP_MAGIC_LEN);
        return memcmp(p, BACKUP_MAGIC, BACKUP_MAGIC_LEN) == 0 ? 0 : ERR(ERR_PROTOCOL);
    case BACKUP_FILE:
        out->mode = get32(p);
        out->path = (struct slice){(const char *)p + BACKUP_MODE_BYTES, n - BACKUP_MODE_BYTES};
        return out->mode <= 0777 && backup_path_ok(out->path.ptr, out->path.len)
                   ? 0 : ERR(ERR_PROTOCOL);
    case BACKUP_FILE_END:
        out->size = get64(p);
        out->sha256 = p + 8;
        return 0;
    case BACKUP_DB_BEGIN:
        return backup_db_name_ok((const char *)p, n) ? 0 : ERR(ERR_PROTOCOL);
    case BACKUP_END:
        out->count = get64(p);
        out->size = get64(p + 8);
        return 0;
    }
    return 0;
}

ssize_t backup_frame_decode(const uint8_t *buf, size_t len, struct backup_frame *out)
{
    memset(out, 0, sizeof(*out));
    if (len < BACKUP_FRAME_HEADER) {
        return BACKUP_INCOMPLETE;
    }
    uint32_t n = get32(buf + 4), min, max;
    if (buf[1] || buf[2] || buf[3] || !payload_range(buf[0], &min, &max) || n < min ||
        n > max) {
        return ERR(ERR_PROTOCOL);
    }
    if (len - BACKUP_FRAME_HEADER < n) {
        return BACKUP_INCOMPLETE;
    }
    out->type = buf[0];
    out->payload = (struct slice){(const char *)buf + BACKUP_FRAME_HEADER, n};
    int rc = decode_fields(out);
    return rc ? rc : (ssize_t)(BACKUP_FRAME_HEADER + n);
}

void backup_frame_encode(struct buf *out, enum backup_frame_type type, const void *payload,
                         size_t n)
{
    uint8_t h[BACKUP_FRAME_HEADER] = {(uint8_t)type, 0, 0, 0};
    put32(h + 4, (uint32_t)n);
    buf_add(out, h, sizeof h);
    if (n) {
        buf_add(out, payload, n);
    }
}

/* ---- the reader ---- */

void backup_reader_init(struct backup_reader *r)
{
    memset(r, 0, sizeof(*r));
    r->state = R_START;
}

void backup_reader_fini(struct backup_reader *r)
{
    hash_sha256_drop(&r->sha);
}

bool backup_reader_done(const struct backup_reader *r)
{
    return r->state == R_DONE;
}

/* True when path belongs where the reader is: one segment outside a database, dbs/<db>/<one
 * segment> inside database db. */
static bool path_in_place(const struct backup_reader *r, struct slice path)
{
    size_t dl = strlen(r->db);
    if (!dl) {
        return memchr(path.ptr, '/', path.len) == NULL;
    }
    if (path.len <= 4 + dl + 1 || memcmp(path.ptr, "dbs/", 4) != 0 ||
        memcmp(path.ptr + 4, r->db, dl) != 0 || path.ptr[4 + dl] != '/') {
        return false;
    }
    return memchr(path.ptr + 5 + dl, '/', path.len - 5 - dl) == NULL;
}

/* A frame in state R_TOP. */
static int top_frame(struct backup_reader *r, const struct backup_frame *f)
{
    switch (f->type) {
    case BACKUP_FILE:
        if (!path_in_place(r, f->path)) {
            return ERR(ERR_PROTOCOL);
        }
        hash_sha256_begin(&r->sha);
        r->file_bytes = 0;
        r->state = R_FILE;
        return 0;
    case BACKUP_DB_BEGIN:
        if (r->db[0]) {
            return ERR(ERR_PROTOCOL);
        }
        memcpy(r->db, f->payload.ptr, f->payload.len);
        r->db[f->payload.len] = '\0';
        return 0;
    case BACKUP_DB_END:
        if (!r->db[0]) {
            return ERR(ERR_PROTOCOL);
        }
        r->db[0] = '\0';
        return 0;
    case BACKUP_MANIFEST:
        if (r->db[0]) {
            return ERR(ERR_PROTOCOL);
        }
        r->state = R_TAIL;
        return 0;
    }
    return ERR(ERR_PROTOCOL);
}

/* A frame in state R_FILE. */
static int file_frame(struct backup_reader *r, const struct backup_frame *f)
{
    if (f->type == BACKUP_DATA) {
        hash_sha256_add(&r->sha, f->payload.ptr, f->payload.len);
        r->file_bytes += f->payload.len;
        return 0;
    }
    if (f->type != BACKUP_FILE_END) {
        return ERR(ERR_PROTOCOL);
    }
    uint8_t sha[HASH_SHA256_LEN];
    hash_sha256_end(&r->sha, sha);
    if (f->size != r->file_bytes || memcmp(sha, f->sha256, HASH_SHA256_LEN) != 0) {
        return ERR(ERR_CORRUPT);
    }
    r->files++;
    r->bytes += r->file_bytes;
    r->state = R_TOP;
    return 0;
}

/* Moves the reader on by f, or returns the error that stops it. */
static int step(struct backup_reader *r, const struct backup_frame *f)
{
    if (r->state == R_START) {
        bool ok = f->type == BACKUP_HEADER && f->count == BACKUP_FORMAT_VERSION;
        r->state = ok ? R_TOP : r->state;
        return ok ? 0 : ERR(ERR_PROTOCOL);
    }
    if (r->state == R_DONE) {
        return ERR(ERR_PROTOCOL); /* nothing may follow END */
    }
    if (f->type == BACKUP_KEEPALIVE) {
        return 0;
    }
    if (f->type == BACKUP_ERROR) {
        return ERR(ERR_PROTOCOL); /* the caller reads the text; the stream is over */
    }
    if (r->state == R_FILE) {
        return file_frame(r, f);
    }
    if (r->state == R_TAIL) {
        if (f->type != BACKUP_END) {
            return ERR(ERR_PROTOCOL);
        }
        if (f->count != r->files || f->size != r->bytes) {
            return ERR(ERR_CORRUPT);
        }
        r->state = R_DONE;
        return 0;
    }
    return top_frame(r, f);
}

int backup_reader_next(struct backup_reader *r, const struct backup_frame *f)
{
    if (r->state == R_FAILED) {
        return ERR(ERR_PROTOCOL);
    }
    int rc = step(r, f);
    if (rc) {
        hash_sha256_drop(&r->sha);
        r->state = R_FAILED;
    }
    return rc;
}

/* ---- the writer ---- */

void backup_writer_init(struct backup_writer *w, backup_sink_fn *sink, void *arg)
{
    memset(w, 0, sizeof(*w));
    w->sink = sink;
    w->arg = arg;
    buf_init(&w->frame);
}

void backup_writer_fini(struct backup_writer *w)
{
    hash_sha256_drop(&w->sha);
    buf_fini(&w->frame);
}

/* Sends one frame of type with payload p[0..n). */
static int send_frame(struct backup_writer *w, enum backup_frame_type type, const void *p,
                      size_t n)
{
    buf_reset(&w->frame);
    backup_frame_encode(&w->frame, type, p, n);
    return w->sink(w->arg, (const uint8_t *)w->frame.ptr, w->frame.len);
}

int backup_writer_header(struct backup_writer *w)
{
    uint8_t p[BACKUP_HEADER_PAYLOAD];
    memcpy(p, BACKUP_MAGIC, BACKUP_MAGIC_LEN);
    put32(p + BACKUP_MAGIC_LEN, BACKUP_FORMAT_VERSION);
    return send_frame(w, BACKUP_HEADER, p, sizeof p);
}

int backup_writer_file(struct backup_writer *w, const char *path, uint32_t mode)
{
    size_t n = strlen(path);
    uint8_t p[BACKUP_MODE_BYTES + LIMIT_BACKUP_PATH_BYTES];
    if (w->in_file || !backup_path_ok(path, n) || mode > 0777) {
        return ERR(ERR_INVALID);
    }
    put32(p, mode);
    memcpy(p + BACKUP_MODE_BYTES, path, n);
    hash_sha256_begin(&w->sha);
    w->in_file = true;
    w->file_bytes = 0;
    return send_frame(w, BACKUP_FILE, p, BACKUP_MODE_BYTES + n);
}

int backup_writer_data(struct backup_writer *w, const void *p, size_t n)
{
    const uint8_t *b = p;
    int rc = w->in_file ? 0 : ERR(ERR_INVALID);
    while (!rc && n) {
        size_t k = n < BACKUP_WRITE_CHUNK ? n : BACKUP_WRITE_CHUNK;
        hash_sha256_add(&w->sha, b, k);
        w->file_bytes += k;
        rc = send_frame(w, BACKUP_DATA, b, k);
        b += k;
        n -= k;
    }
    return rc;
}

int backup_writer_file_end(struct backup_writer *w)
{
    if (!w->in_file) {
        return ERR(ERR_INVALID);
    }
    hash_sha256_end(&w->sha, w->file_sha);
    w->in_file = false;
    w->files++;
    w->bytes += w->file_bytes;
    uint8_t p[BACKUP_FILE_END_PAYLOAD];
    put64(p, w->file_bytes);
    memcpy(p + 8, w->file_sha, HASH_SHA256_LEN);
    return send_frame(w, BACKUP_FILE_END, p, sizeof p);
}

int backup_writer_text(struct backup_writer *w, enum backup_frame_type type, const char *text,
                       size_t n)
{
    uint32_t min, max;
    if (!payload_range((uint8_t)type, &min, &max) || n < min || n > max) {
        return ERR(ERR_INVALID);
    }
    return send_frame(w, type, text, n);
}

int backup_writer_end(struct backup_writer *w)
{
    uint8_t p[BACKUP_END_PAYLOAD];
    put64(p, w->files);
    put64(p + 8, w->bytes);
    return send_frame(w, BACKUP_END, p, sizeof p);
}
