/* WebAssembly components in the worker (wasm.h). The check reads the binary format's header
 * and the sections it needs (types, imports, functions, exports) with bounds checked at
 * every read; the engine validates the rest when it compiles. The calls build the argument
 * array as text, pass it through jsw_wasm_invoke, and check and minify each result.
 *
 * Invariant: a keyed batch's states (key -> JSON text) exist only between a jsw_wasm_fold_keyed
 * that kept them and the next request (jsw_wasm_batch_drop), as the JavaScript Map does.
 */
#include "logic/jsworker/wasm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jsonx.h"
#include "json/validate.h"
#include "logic/jsworker/shim.h"
#include "util/errors.h"
#include "util/strmap.h"

enum {
    WASM_SEC_TYPE = 1,
    WASM_SEC_IMPORT = 2,
    WASM_SEC_FUNCTION = 3,
    WASM_SEC_MEMORY = 5,
    WASM_SEC_EXPORT = 7,
    WASM_EXPORT_FUNC = 0,
    WASM_EXPORT_MEMORY = 2,
    WASM_I32 = 0x7f,
    WASM_I64 = 0x7e,
    WASM_FUNC_TYPE = 0x60,
    WASM_LIMITS_MIN = 0,     /* a memory's limits: the minimum only */
    WASM_LIMITS_MIN_MAX = 1, /* ... the minimum and the maximum (others: shared, 64-bit) */
    WASM_PAGE_BYTES = 65536,
    WASM_MAX_TYPES = 100000, /* the engine's own limits: more is malformed anyway */
    WASM_MAX_FUNCS = 1000000,
    WASM_MAX_EXPORTS = 100000,
    WASM_MAX_PARAMS = 1000,
    WASM_MAX_RESULTS = 1000,
    WASM_GROWTH_SHARE = 16, /* a failing call within budget/16 of the budget is memory's */
};

/* ---- reading the binary format ----------------------------------------------------------- */

/* A cursor over bytes; is_bad once a read went past the end or met a malformed number. */
struct rd {
    const uint8_t *p;
    const uint8_t *end;
    const uint8_t *start; /* the module's first byte, for offsets in messages */
    bool is_bad;
};

static uint8_t rd_byte(struct rd *r)
{
    if (r->p >= r->end) {
        r->is_bad = true;
        return 0;
    }
    return *r->p++;
}

/* An unsigned LEB128 number of at most 32 bits. */
static uint32_t rd_u32(struct rd *r)
{
    uint32_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        uint8_t b = rd_byte(r);
        if (shift == 28 && (b & 0x70)) r->is_bad = true;
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80) || r->is_bad) return v;
    }
    r->is_bad = true;
    return 0;
}

/* A name (length, bytes): its bytes stay in the module. */
static struct slice rd_name(struct rd *r)
{
    uint32_t n = rd_u32(r);
    if (r->is_bad || n > (size_t)(r->end - r->p)) {
        r->is_bad = true;
        return (struct slice){"", 0};
    }
    struct slice s = {(const char *)r->p, n};
    r->p += n;
    return s;
}

/* What the check learns of a module. Types are kept as their place in the type section. */
struct wasm_info {
    struct rd type_sec;   /* the type section's contents (p NULL: none) */
    struct rd func_sec;   /* the function section's contents */
    struct rd export_sec; /* the export section's contents */
    struct rd memory_sec; /* the memory section's contents */
    const uint8_t *memory_sec_at; /* ... and where the section begins (its id) */
    uint32_t nimports;
    struct slice import_module, import_name; /* the first import */
};

static int fail(struct logic_error *err, enum logic_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct logic_error *err, enum logic_err_kind kind, const char *fmt, ...)
{
    va_list ap;
    memset(err, 0, sizeof *err);
    err->kind = kind;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

static int malformed(struct logic_error *err, const struct rd *r, const char *what)
{
    return fail(err, LOGIC_E_SYNTAX, "malformed WebAssembly module: %s (near byte %zu)", what,
                (size_t)(r->p - r->start));
}

/* Walks the sections, keeping those the check reads. */
static int read_sections(const uint8_t *bytes, size_t len, struct wasm_info *info,
                         struct logic_error *err)
{
    static const uint8_t header[8] = {0, 'a', 's', 'm', 1, 0, 0, 0};
    struct rd r = {bytes, bytes + len, bytes, false};
    if (len < 8 || memcmp(bytes, header, 4) != 0)
        return fail(err, LOGIC_E_SYNTAX, "not a WebAssembly module (no \\0asm header)");
    if (memcmp(bytes + 4, header + 4, 4) != 0)
        return fail(err, LOGIC_E_SYNTAX, "WebAssembly binary version %u is not supported (1 is)",
                    bytes[4] | bytes[5] << 8 | bytes[6] << 16 | (unsigned)bytes[7] << 24);
    r.p += 8;
    while (r.p < r.end) {
        const uint8_t *at = r.p;
        uint8_t id = rd_byte(&r);
        uint32_t size = rd_u32(&r);
        if (r.is_bad || size > (size_t)(r.end - r.p)) return malformed(err, &r, "a section");
        struct rd sec = {r.p, r.p + size, bytes, false};
        if (id == WASM_SEC_TYPE) info->type_sec = sec;
        else if (id == WASM_SEC_FUNCTION) info->func_sec = sec;
        else if (id == WASM_SEC_EXPORT) info->export_sec = sec;
        else if (id == WASM_SEC_MEMORY) {
            info->memory_sec = sec;
            info->memory_sec_at = at;
        }
        else if (id == WASM_SEC_IMPORT) {
            info->nimports = rd_u32(&sec);
            info->import_module = rd_name(&sec);
            info->import_name = rd_name(&sec);
            if (sec.is_bad) return malformed(err, &sec, "the import section");
        }
        r.p += size;
    }
    return 0;
}

/* Reads the type at index t into params and results (as valtype bytes, up to 4 each) and
 * their counts. */
static bool read_type(const struct wasm_info *info, uint32_t t, uint8_t *params, uint32_t *np,
                      uint8_t *results, uint32_t *nr)
{
    struct rd r = info->type_sec;
    if (!r.p) return false;
    uint32_t count = rd_u32(&r);
    if (r.is_bad || t >= count || count > WASM_MAX_TYPES) return false;
    for (uint32_t i = 0; i <= t; i++) {
        if (rd_byte(&r) != WASM_FUNC_TYPE) return false;
        uint8_t *into[2] = {params, results};
        uint32_t *counts[2] = {np, nr};
        for (int k = 0; k < 2; k++) {
            uint32_t n = rd_u32(&r);
            if (r.is_bad || n > (k ? WASM_MAX_RESULTS : WASM_MAX_PARAMS)) return false;
            for (uint32_t j = 0; j < n; j++) {
                uint8_t v = rd_byte(&r);
                if (i == t && j < 4) into[k][j] = v;
            }
            if (i == t) *counts[k] = n;
        }
        if (r.is_bad) return false;
    }
    return true;
}

/* The type index of function f (imports are refused, so functions are the section's). */
static bool read_func_type(const struct wasm_info *info, uint32_t f, uint32_t *type)
{
    struct rd r = info->func_sec;
    if (!r.p) return false;
    uint32_t count = rd_u32(&r);
    if (r.is_bad || f >= count || count > WASM_MAX_FUNCS) return false;
    for (uint32_t i = 0; i <= f; i++) *type = rd_u32(&r);
    return !r.is_bad;
}

/* Finds the export called name: its kind and index. */
static bool find_export(const struct wasm_info *info, struct slice name, uint8_t *kind,
                        uint32_t *index)
{
    struct rd r = info->export_sec;
    if (!r.p) return false;
    uint32_t count = rd_u32(&r);
    for (uint32_t i = 0; i < count && i < WASM_MAX_EXPORTS && !r.is_bad; i++) {
        struct slice s = rd_name(&r);
        *kind = rd_byte(&r);
        *index = rd_u32(&r);
        if (!r.is_bad && s.len == name.len && memcmp(s.ptr, name.ptr, s.len) == 0) return true;
    }
    return false;
}

/* Writes a signature as "(i32, i32) -> i64" into out. */
static void describe_type(const uint8_t *params, uint32_t np, const uint8_t *results,
                          uint32_t nr, char *out, size_t cap)
{
    static const char *const names[] = {"f64", "f32", "i64", "i32"}; /* 0x7c..0x7f */
    size_t len = 0;
    const uint8_t *v[2] = {params, results};
    uint32_t n[2] = {np, nr};
    for (int k = 0; k < 2; k++) {
        len += (size_t)snprintf(out + len, cap - len, "%s", k ? ") -> (" : "(");
        for (uint32_t j = 0; j < n[k] && len < cap; j++) {
            const char *t = j >= 4 ? "..." : (v[k][j] >= 0x7c && v[k][j] <= 0x7f)
                                                 ? names[v[k][j] - 0x7c] : "other";
            len += (size_t)snprintf(out + len, cap - len, "%s%s", j ? ", " : "", t);
            if (j >= 4) break;
        }
        if (len >= cap) return;
    }
    snprintf(out + len, cap - len, ")");
}

/* Checks that the function export name has the type params -> results (byte strings). */
static int check_func(const struct wasm_info *info, const char *name, const char *params,
                      const char *results, const char *want, struct logic_error *err)
{
    uint8_t kind = 0, p[4] = {0}, r[4] = {0};
    uint32_t index = 0, type = 0, np = 0, nr = 0;
    if (!find_export(info, (struct slice){name, strlen(name)}, &kind, &index) ||
        kind != WASM_EXPORT_FUNC)
        return fail(err, LOGIC_E_MISSING, "missing entry point: %s (the module exports no "
                    "function of that name)", name);
    if (!read_func_type(info, index, &type) || !read_type(info, type, p, &np, r, &nr))
        return fail(err, LOGIC_E_SYNTAX, "malformed WebAssembly module: the type of %s", name);
    if (np == strlen(params) && nr == strlen(results) && memcmp(p, params, np) == 0 &&
        memcmp(r, results, nr) == 0)
        return 0;
    char got[96];
    describe_type(p, np, r, nr, got, sizeof got);
    return fail(err, LOGIC_E_MISSING, "%s must be %s, not %s (the ABI of jsworker.md)", name,
                want, got);
}

int jsw_wasm_check(const uint8_t *bytes, size_t len, const struct slice *entries, size_t n,
                   struct logic_error *err)
{
    static const char i32[] = {(char)WASM_I32, 0}, i32_i32[] = {(char)WASM_I32, (char)WASM_I32, 0},
                      i64[] = {(char)WASM_I64, 0};
    struct wasm_info info;
    memset(&info, 0, sizeof info);
    int rc = read_sections(bytes, len, &info, err);
    if (rc < 0) return rc;
    if (info.nimports > 0)
        return fail(err, LOGIC_E_FORBIDDEN, "the module imports %.*s.%.*s%s: a WebAssembly "
                    "component imports nothing (no host access)", (int)info.import_module.len,
                    info.import_module.ptr, (int)info.import_name.len, info.import_name.ptr,
                    info.nimports > 1 ? " and more" : "");
    uint8_t kind = 0;
    uint32_t index = 0;
    if (!find_export(&info, (struct slice){"memory", 6}, &kind, &index) ||
        kind != WASM_EXPORT_MEMORY)
        return fail(err, LOGIC_E_MISSING, "missing entry point: memory (the module must export "
                    "its memory as \"memory\")");
    if ((rc = check_func(&info, "alloc", i32, i32, "(i32) -> (i32)", err)) < 0) return rc;
    if (find_export(&info, (struct slice){"dealloc", 7}, &kind, &index) &&
        (rc = check_func(&info, "dealloc", i32_i32, "", "(i32, i32) -> ()", err)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        char name[128];
        if (entries[i].len == 0 || entries[i].len >= sizeof name)
            return fail(err, LOGIC_E_INVALID, "bad entry point name");
        memcpy(name, entries[i].ptr, entries[i].len);
        name[entries[i].len] = 0;
        if ((rc = check_func(&info, name, i32_i32, i64, "(i32, i32) -> (i64)", err)) < 0)
            return rc;
    }
    return 0;
}

static void put_u32(struct buf *out, uint32_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        buf_addc(out, (char)(v ? b | 0x80 : b));
    } while (v);
}

int jsw_wasm_cap_memory(const uint8_t *bytes, size_t len, size_t mem_bytes, struct buf *out,
                        size_t *out_max_bytes, struct logic_error *err)
{
    struct wasm_info info;
    memset(&info, 0, sizeof info);
    int rc = read_sections(bytes, len, &info, err);
    if (rc < 0) return rc;
    struct rd r = info.memory_sec;
    if (!r.p)
        return fail(err, LOGIC_E_MISSING, "missing entry point: memory (the module defines no "
                    "memory)");
    uint32_t count = rd_u32(&r);
    uint8_t flags = rd_byte(&r);
    uint32_t min = rd_u32(&r);
    uint32_t max = flags == WASM_LIMITS_MIN_MAX ? rd_u32(&r) : UINT32_MAX;
    if (r.is_bad || r.p != r.end) return malformed(err, &r, "the memory section");
    if (count != 1 || flags > WASM_LIMITS_MIN_MAX)
        return fail(err, LOGIC_E_SYNTAX, "the module must define one memory, neither shared "
                    "nor 64-bit");
    uint64_t cap = mem_bytes / WASM_PAGE_BYTES;
    if (min > cap)
        return fail(err, LOGIC_E_MEMORY, "memory_limit: the module's memory starts at %llu "
                    "bytes, over its budget of %zu", (unsigned long long)min * WASM_PAGE_BYTES,
                    mem_bytes);
    if (max > cap) max = (uint32_t)cap;
    *out_max_bytes = (size_t)max * WASM_PAGE_BYTES;
    struct buf sec;
    buf_init(&sec);
    buf_addc(&sec, 1);
    buf_addc(&sec, WASM_LIMITS_MIN_MAX);
    put_u32(&sec, min);
    put_u32(&sec, max);
    buf_reset(out);
    buf_add(out, bytes, (size_t)(info.memory_sec_at - bytes));
    buf_addc(out, WASM_SEC_MEMORY);
    put_u32(out, (uint32_t)sec.len);
    buf_add(out, sec.ptr, sec.len);
    buf_add(out, r.end, (size_t)(bytes + len - r.end));
    buf_fini(&sec);
    return 0;
}

/* ---- text that grows without aborting ---------------------------------------------------- */

/* A byte string the worker builds; growth that malloc refuses fails the call with
 * LOGIC_E_MEMORY instead of aborting the worker. Zeroed: empty. */
struct text {
    char *p;
    size_t len;
    size_t cap;
    size_t limit; /* 0: no limit */
    bool is_over; /* a write was refused by the limit (else by malloc) */
};

static bool text_add(struct text *t, const char *p, size_t n)
{
    if (t->limit && n > t->limit - t->len) {
        t->is_over = true;
        return false;
    }
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n) cap *= 2;
        char *grown = realloc(t->p, cap);
        if (!grown) return false;
        t->p = grown;
        t->cap = cap;
    }
    if (n) memcpy(t->p + t->len, p, n);
    t->len += n;
    return true;
}

static bool on_text(void *arg, const char *p, size_t n)
{
    return text_add(arg, p, n);
}

static void text_free(struct text *t)
{
    free(t->p);
    *t = (struct text){0};
}

/* ---- calls ------------------------------------------------------------------------------- */

struct jsw_wasm {
    struct jsw_module *m; /* the engine's instance */
    size_t budget;        /* the memory the module may reach: its memory's maximum, bytes */
    struct text args;     /* the argument array being passed */
    struct text result;   /* one call's raw result */
    struct text state;    /* a fold's state */
    struct strmap states; /* a keyed batch: key -> struct text (JSON) */
    bool has_states;      /* ... kept for a continuing frame */
    bool needs_reset;     /* a call failed while the module ran: a new instance before the
                             next call (jsw_wasm_reset) */
};

struct jsw_wasm *jsw_wasm_load(struct jsw_engine *e, const char *name, const uint8_t *bytes,
                               size_t len, const struct slice *entries, size_t n,
                               size_t mem_bytes, struct logic_error *err)
{
    struct buf capped;
    size_t max_bytes = 0;
    buf_init(&capped);
    if (jsw_wasm_check(bytes, len, entries, n, err) < 0 ||
        jsw_wasm_cap_memory(bytes, len, mem_bytes, &capped, &max_bytes, err) < 0) {
        buf_fini(&capped);
        return NULL;
    }
    struct jsw_module *m = jsw_wasm_new(e, name, (const uint8_t *)capped.ptr, capped.len, err);
    buf_fini(&capped);
    if (!m) return NULL;
    struct jsw_wasm *c = calloc(1, sizeof *c);
    if (!c) {
        jsw_module_free(m);
        fail(err, LOGIC_E_MEMORY, "memory_limit: out of memory");
        return NULL;
    }
    c->m = m;
    c->budget = max_bytes;
    strmap_init(&c->states, sizeof(struct text));
    return c;
}

void jsw_wasm_batch_drop(struct jsw_wasm *c)
{
    const char *k;
    size_t klen;
    void *v;
    if (!c->has_states) return;
    for (size_t pos = 0; strmap_next(&c->states, &pos, &k, &klen, &v);) text_free(v);
    strmap_clear(&c->states);
    c->has_states = false;
}

void jsw_wasm_free(struct jsw_wasm *c)
{
    if (!c) return;
    jsw_wasm_batch_drop(c);
    strmap_fini(&c->states);
    text_free(&c->args);
    text_free(&c->result);
    text_free(&c->state);
    jsw_module_free(c->m);
    free(c);
}

/* After a failed call. A failure while the module ran (a trap, the CPU budget, memory) leaves
 * its instance in an unknown state: the next call gets a new one. A trap when the memory
 * holds more than 15/16 of its maximum is memory's (a memory.grow was likely refused). */
static int classify(struct jsw_wasm *c, int rc, struct logic_error *err)
{
    if (rc == 0) return rc;
    if (err->kind == LOGIC_E_RUNTIME || err->kind == LOGIC_E_CPU || err->kind == LOGIC_E_MEMORY)
        c->needs_reset = true;
    if (err->kind != LOGIC_E_RUNTIME || !c->budget) return rc;
    size_t used = jsw_wasm_memory_bytes(c->m);
    if (used + c->budget / WASM_GROWTH_SHARE < c->budget) return rc;
    char was[sizeof err->message];
    snprintf(was, sizeof was, "%s", err->message);
    return fail(err, LOGIC_E_MEMORY, "memory_limit: the module's memory reached %zu of its "
                "maximum of %zu bytes (%s)", used, c->budget, was);
}

/* Calls entry with the argument array in c->args; on success *out is the result, checked
 * and without insignificant whitespace, appended to dst (reset first unless append). */
static int invoke(struct jsw_wasm *c, const char *entry, size_t limit, struct text *dst,
                  bool append, struct logic_error *err)
{
    struct jsonv_error je;
    c->result.len = 0;
    c->result.limit = limit;
    c->result.is_over = false;
    int rc = jsw_wasm_invoke(c->m, entry, c->args.p, c->args.len, on_text, &c->result, err);
    /* on_text refused the result without reaching the limit: malloc did */
    if (rc < 0 && err->kind == LOGIC_E_OUTPUT && !c->result.is_over &&
        strstr(err->message, "output_limit"))
        return fail(err, LOGIC_E_MEMORY, "memory_limit: out of memory for the result");
    if (rc < 0) return classify(c, rc, err);
    if (jsonv_validate(c->result.p ? c->result.p : "", c->result.len, LOGIC_MAX_JSON_DEPTH,
                       &je) < 0)
        return fail(err, LOGIC_E_OUTPUT, "the result of %s is not JSON: %s at byte %zu", entry,
                    je.msg, je.offset);
    struct buf min;
    buf_init(&min);
    jsonx_minify((struct slice){c->result.p, c->result.len}, &min);
    if (!append) dst->len = 0;
    bool ok = text_add(dst, min.ptr ? min.ptr : "", min.len);
    buf_fini(&min);
    return ok ? 0 : fail(err, dst->is_over ? LOGIC_E_OUTPUT : LOGIC_E_MEMORY, "%s",
                         dst->is_over ? "output_limit: the results exceed the output budget"
                                      : "memory_limit: out of memory for the result");
}

/* Builds the argument array [a0, a1, a2] (NULL pointers left out) in c->args. */
static int build_args(struct jsw_wasm *c, const struct slice *a, size_t n,
                      struct logic_error *err)
{
    bool ok = true;
    c->args.len = 0;
    ok = text_add(&c->args, "[", 1);
    for (size_t i = 0; i < n && ok; i++) {
        if (i) ok = text_add(&c->args, ",", 1);
        ok = ok && text_add(&c->args, a[i].ptr, a[i].len);
    }
    ok = ok && text_add(&c->args, "]", 1);
    return ok ? 0 : fail(err, LOGIC_E_MEMORY, "memory_limit: out of memory for the arguments");
}

/* Checks one JSON argument as the JavaScript path's JSON.parse would. */
static int check_arg(struct slice a, struct logic_error *err)
{
    struct jsonv_error je;
    if (jsonv_validate(a.ptr, a.len, LOGIC_MAX_JSON_DEPTH, &je) == 0) return 0;
    return fail(err, LOGIC_E_INVALID, "an argument is not JSON: %s at byte %zu", je.msg,
                je.offset);
}

/* Writes t to w; false when w refuses (the output budget). */
static int emit(const struct text *t, jsw_write_fn *w, void *w_arg, struct logic_error *err)
{
    if (w(w_arg, t->p ? t->p : "", t->len)) return 0;
    return fail(err, LOGIC_E_OUTPUT, "output_limit: the result exceeds the output budget");
}

/* LOGIC_E_MISSING unless entry is one of the module's function exports; first a new instance
 * when the last call left the old one in an unknown state. */
static int check_entry(struct jsw_wasm *c, const char *entry, struct logic_error *err)
{
    if (c->needs_reset) {
        if (jsw_wasm_reset(c->m, err) < 0) return ERR_INVALID;
        c->needs_reset = false;
    }
    if (jsw_module_has(c->m, entry)) return 0;
    return fail(err, LOGIC_E_MISSING, "missing entry point: %s", entry);
}

int jsw_wasm_call(struct jsw_wasm *c, const char *entry, const struct slice *args, size_t nargs,
                  size_t limit, jsw_write_fn *w, void *w_arg, struct logic_error *err)
{
    int rc = check_entry(c, entry, err);
    for (size_t i = 0; i < nargs && rc == 0; i++) rc = check_arg(args[i], err);
    if (rc == 0) rc = build_args(c, args, nargs, err);
    if (rc == 0) rc = invoke(c, entry, limit, &c->state, false, err);
    return rc ? rc : emit(&c->state, w, w_arg, err);
}

int jsw_wasm_fold(struct jsw_wasm *c, const char *entry, struct slice state,
                  const struct slice *events, size_t n, const struct slice *extra, size_t limit,
                  jsw_write_fn *w, void *w_arg, size_t *failed_at, struct logic_error *err)
{
    *failed_at = n; /* no event's failure */
    int rc = check_entry(c, entry, err);
    if (rc == 0) rc = check_arg(state, err);
    if (rc == 0 && extra) rc = check_arg(*extra, err);
    c->state.len = 0;
    c->state.limit = 0;
    if (rc == 0 && !text_add(&c->state, state.ptr, state.len))
        rc = fail(err, LOGIC_E_MEMORY, "memory_limit: out of memory for the state");
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct slice a[3] = {{c->state.p, c->state.len}, events[i], extra ? *extra : events[i]};
        *failed_at = i;
        rc = check_arg(events[i], err);
        if (rc == 0) rc = build_args(c, a, extra ? 3 : 2, err);
        if (rc == 0) rc = invoke(c, entry, limit, &c->state, false, err);
    }
    if (rc < 0) return rc;
    *failed_at = n;
    return emit(&c->state, w, w_arg, err);
}

/* Writes item i of a batch: a comma before all but the first. */
static int emit_item(size_t i, const struct text *t, jsw_write_fn *w, void *w_arg,
                     struct logic_error *err)
{
    if ((i > 0 && !w(w_arg, ",", 1)) || !w(w_arg, t->p ? t->p : "", t->len))
        return fail(err, LOGIC_E_OUTPUT, "output_limit: the results exceed the output budget");
    return 0;
}

int jsw_wasm_map(struct jsw_wasm *c, const char *entry, const struct slice *events, size_t n,
                 size_t limit, jsw_write_fn *w, void *w_arg, size_t *failed_at,
                 struct logic_error *err)
{
    *failed_at = n;
    int rc = check_entry(c, entry, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        *failed_at = i;
        rc = check_arg(events[i], err);
        if (rc == 0) rc = build_args(c, &events[i], 1, err);
        if (rc == 0) rc = invoke(c, entry, limit, &c->state, false, err);
        if (rc == 0) rc = emit_item(i, &c->state, w, w_arg, err);
    }
    if (rc == 0) *failed_at = n;
    return rc;
}

/* Fills the batch's states from the JSON object states (members as their text). */
static int begin_keyed(struct jsw_wasm *c, const struct slice *states, struct logic_error *err)
{
    struct jsonv_error je;
    if (!states) {
        if (c->has_states) return 0;
        return fail(err, LOGIC_E_INVALID, "no keyed batch to continue");
    }
    jsw_wasm_batch_drop(c);
    if (jsonv_validate(states->ptr, states->len, LOGIC_MAX_JSON_DEPTH + 1, &je) < 0 ||
        jsonx_kind(*states) != '{')
        return fail(err, LOGIC_E_INVALID, "states: not a JSON object");
    c->has_states = true;
    struct buf key;
    struct slice raw, val;
    int rc = 0;
    buf_init(&key);
    for (size_t pos = 0; rc == 0 && jsonx_next_member(*states, &pos, &raw, &val);) {
        if (jsonx_string(raw, &key) < 0) {
            rc = fail(err, LOGIC_E_INVALID, "states: a key is not UTF-8");
            break;
        }
        struct text *t = strmap_put(&c->states, key.ptr ? key.ptr : "", key.len, NULL);
        t->len = 0;
        if (!text_add(t, val.ptr, val.len))
            rc = fail(err, LOGIC_E_MEMORY, "memory_limit: out of memory for the states");
    }
    buf_fini(&key);
    return rc;
}

static int fold_keyed(struct jsw_wasm *c, const char *entry, const struct slice *states,
                      const struct slice *keys, const struct slice *events, size_t n,
                      size_t limit, jsw_write_fn *w, void *w_arg, size_t *failed_at,
                      struct logic_error *err)
{
    *failed_at = n;
    int rc = check_entry(c, entry, err);
    if (rc == 0) rc = begin_keyed(c, states, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        *failed_at = i;
        struct text *t = strmap_put(&c->states, keys[i].ptr ? keys[i].ptr : "", keys[i].len,
                                    NULL);
        struct slice a[2] = {{t->len ? t->p : "null", t->len ? t->len : 4}, events[i]};
        rc = check_arg(events[i], err);
        if (rc == 0) rc = build_args(c, a, 2, err);
        if (rc == 0) rc = invoke(c, entry, limit, t, false, err);
        if (rc == 0) rc = emit_item(i, t, w, w_arg, err);
    }
    if (rc == 0) *failed_at = n;
    return rc;
}

int jsw_wasm_fold_keyed(struct jsw_wasm *c, const char *entry, const struct slice *states,
                        const struct slice *keys, const struct slice *events, size_t n,
                        bool keep, size_t limit, jsw_write_fn *w, void *w_arg,
                        size_t *failed_at, struct logic_error *err)
{
    int rc = fold_keyed(c, entry, states, keys, events, n, limit, w, w_arg, failed_at, err);
    if (rc < 0 || !keep) jsw_wasm_batch_drop(c);
    return rc;
}
