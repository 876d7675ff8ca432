/* Hapnd uploads (uploads.h): multipart in, zip opened and files compiled on a worker. */
#include "dialect/hapnd/uploads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/derived.h"
#include "http/multipart.h"
#include "ops/out.h"
#include "util/errors.h"
#include "util/timeutil.h"
#include "util/uuid.h"

/* ---- records ---- */

json_t *hd_now(void)
{
    char when[HAPND_TIME_BYTES];
    hapnd_time(time_now_us(), when);
    return json_string(when);
}

int hd_record_get(struct db *db, const char *id, struct buf *out)
{
    struct derived_txn *t;
    int rc = derived_begin(db, false, &t);
    if (rc) {
        return rc;
    }
    struct slice v;
    rc = derived_get(t, HD_UPLOADS, (struct slice){id, strlen(id)}, &v);
    if (!rc) {
        buf_add(out, v.ptr, v.len);
    }
    derived_abort(t);
    return rc;
}

int hd_record_put(struct db *db, const char *id, json_t *record)
{
    char *text = json_dumps(record, JSON_COMPACT);
    if (!text) {
        return ERR_NOMEM;
    }
    struct derived_txn *t;
    int rc = derived_begin(db, true, &t);
    if (!rc) {
        rc = derived_put(t, HD_UPLOADS, (struct slice){id, strlen(id)},
                         (struct slice){text, strlen(text)});
        rc = rc ? (derived_abort(t), rc) : derived_commit(t);
    }
    free(text);
    return rc;
}

/* The keys of the oldest entries of the creation order to forget. */
struct prune {
    size_t count;                                  /* entries seen */
    size_t want;                                   /* how many to collect (0: count only) */
    size_t n;
    char keys[HD_PRUNE_BATCH][16 + HD_ID_BYTES + 1];
};

static int on_time(void *arg, struct slice key, struct slice val)
{
    struct prune *p = arg;
    (void)val;
    p->count++;
    if (p->n < p->want && key.len <= 16 + HD_ID_BYTES) {
        memcpy(p->keys[p->n], key.ptr, key.len);
        p->keys[p->n++][key.len] = '\0';
    }
    return p->want && p->n == p->want ? 1 : 0;
}

/* Forgets the oldest records of t past HD_UPLOADS_KEPT (at most HD_PRUNE_BATCH). */
static int prune(struct derived_txn *t)
{
    struct prune p = {0};
    struct slice none = {NULL, 0};
    int rc = derived_scan(t, HD_UPLOAD_TIMES, none, none, 0, on_time, &p);
    if (rc || p.count <= HD_UPLOADS_KEPT) {
        return rc;
    }
    size_t over = p.count - HD_UPLOADS_KEPT;
    p = (struct prune){.want = over < HD_PRUNE_BATCH ? over : HD_PRUNE_BATCH};
    rc = derived_scan(t, HD_UPLOAD_TIMES, none, none, p.want, on_time, &p);
    for (size_t i = 0; !rc && i < p.n; i++) { /* keys copied: the scan is over */
        const char *id = p.keys[i] + 16;
        rc = derived_del(t, HD_UPLOADS, (struct slice){id, strlen(id)});
        rc = rc ? rc : derived_del(t, HD_UPLOAD_TIMES, (struct slice){p.keys[i],
                                                                      strlen(p.keys[i])});
    }
    return rc;
}

int hd_record_create(struct db *db, const char *id, json_t *record)
{
    char *text = json_dumps(record, JSON_COMPACT);
    if (!text) {
        return ERR_NOMEM;
    }
    char key[16 + HD_ID_BYTES + 1];
    snprintf(key, sizeof key, "%016llx%s", (unsigned long long)time_now_us(), id);
    struct derived_txn *t;
    int rc = derived_begin(db, true, &t);
    if (!rc) {
        rc = derived_put(t, HD_UPLOADS, (struct slice){id, strlen(id)},
                         (struct slice){text, strlen(text)});
        rc = rc ? rc : derived_put(t, HD_UPLOAD_TIMES, (struct slice){key, strlen(key)},
                                   (struct slice){"", 0});
        rc = rc ? rc : prune(t);
        rc = rc ? (derived_abort(t), rc) : derived_commit(t);
    }
    free(text);
    return rc;
}

void hd_record_status(json_t *record, const char *run_now, struct buf *out)
{
    json_t *r = json_deep_copy(record);
    json_t *d = json_object_get(r, "discovered");
    size_t i;
    json_t *e;
    json_array_foreach(d, i, e) {
        json_object_del(e, "source");
        json_object_del(e, "language");
    }
    const char *status = json_string_value(json_object_get(r, "status"));
    const char *run = json_string_value(json_object_get(r, "run"));
    bool pending = status && strcmp(status, "compiled") && strcmp(status, "failed");
    if (pending && (!run || strcmp(run, run_now))) {
        json_object_set_new(r, "status", json_string("failed"));
        json_object_set_new(r, "compilationError",
                            json_string("compilation was cut short by a server restart; "
                                        "upload again"));
    }
    json_object_del(r, "run");
    json_object_del(r, "config");
    char *text = json_dumps(r, JSON_COMPACT);
    buf_adds(out, text ? text : "{}");
    free(text);
    json_decref(r);
}

/* ---- the request ---- */

void hd_upload_free(struct hd_upload *u)
{
    if (!u) {
        return;
    }
    engine_db_release(u->db);
    free(u->zip);
    json_decref(u->config);
    json_decref(u->record);
    free(u);
}

/* Reads the config part (a JSON object, wrapped {"notifications":{...}} or bare) into
 * u->config as the notifications object. False after answering 400. */
static bool read_config(struct gate_call *c, const struct multipart_part *p, struct hd_upload *u)
{
    json_error_t je;
    json_t *cfg = p->body.len <= HD_CONFIG_BYTES
                      ? json_loadb(p->body.ptr, p->body.len, JSON_REJECT_DUPLICATES, &je)
                      : NULL;
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        hd_fail(c, GK_INVALID, "INVALID_UPLOAD", "config must be a JSON object of at most "
                "16 KiB: {\"notifications\":{...}} or the notifications object itself");
        return false;
    }
    json_t *wrapped = json_object_get(cfg, "notifications");
    u->config = json_incref(json_is_object(wrapped) ? wrapped : cfg);
    json_decref(cfg);
    return true;
}

struct hd_upload *hd_upload_read(struct gate_call *c, bool projection)
{
    char boundary[MULTIPART_BOUNDARY_BYTES + 1];
    struct multipart_error me;
    if (multipart_boundary(http_req_header(c->req, "Content-Type"), boundary, &me) != 0) {
        hd_fail(c, GK_INVALID, "INVALID_UPLOAD", "send the upload as multipart/form-data with "
                "the zip in the field \"file\"");
        return NULL;
    }
    enum { PARTS = 8 };
    struct multipart_part parts[PARTS];
    size_t n = 0;
    struct multipart_limits lim = {.max_parts = PARTS};
    if (multipart_parse(http_req_body(c->req), boundary, &lim, parts, PARTS, &n, &me) != 0) {
        hd_fail(c, GK_INVALID, "INVALID_UPLOAD", me.message);
        return NULL;
    }
    const struct multipart_part *file = multipart_find(parts, n, "file");
    if (!file || file->body.len == 0) {
        hd_fail(c, GK_INVALID, "INVALID_UPLOAD", "the upload has no file: send the zip in the "
                "multipart field \"file\"");
        return NULL;
    }
    if (file->body.len > HD_UPLOAD_BYTES) {
        hd_fail(c, GK_INVALID, "FILE_TOO_LARGE", "the zip is larger than 5 MB");
        return NULL;
    }
    struct hd_upload *u = xcalloc(1, sizeof(*u));
    u->projection = projection;
    const struct multipart_part *cfg = projection ? multipart_find(parts, n, "config") : NULL;
    if (cfg && !read_config(c, cfg, u)) {
        hd_upload_free(u);
        return NULL;
    }
    u->req = c->req;
    u->lg = hd_ctx_of(c)->logic;
    u->run = hd_ctx_of(c)->run;
    u->zip = xmalloc(file->body.len);
    memcpy(u->zip, file->body.ptr, file->body.len);
    u->zip_len = file->body.len;
    return u;
}

/* ---- compiling ---- */

static enum logic_lang lang_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    if (!strcasecmp(dot, ".lua")) return LOGIC_LANG_LUA;
    if (!strcasecmp(dot, ".js") || !strcasecmp(dot, ".mjs")) return LOGIC_LANG_JAVASCRIPT;
    if (!strcasecmp(dot, ".ts")) return LOGIC_LANG_TYPESCRIPT;
    return 0;
}

/* The entry points each file is loaded with: Hapnd's, under the logic layer's names. */
/* Lua's goes before the file, on its first line (a file may end with a top-level return, and
 * its line numbers stay as they are; functions of the file's own with these names win). */
static const char SHIM_LUA[] =
    "function reduce(state, event) return apply(state, event) end "
    "function key(event) return resolveKey(event) end "
    "function __hapnd_describe() return {kind = kind, aggregateType = aggregateType, "
    "className = className, stateType = stateType, hasApply = type(apply) == 'function', "
    "hasResolveKey = type(resolveKey) == 'function'} end ";
static const char SHIM_JS[] =
    "\nexport function reduce(state, event) { return apply(state, event); }\n"
    "export function key(event) { return resolveKey(event); }\n"
    "export function __hapnd_describe() { return {"
    "kind: typeof kind === 'undefined' ? null : kind, "
    "aggregateType: typeof aggregateType === 'undefined' ? null : aggregateType, "
    "className: typeof className === 'undefined' ? null : className, "
    "stateType: typeof stateType === 'undefined' ? null : stateType, "
    "hasApply: typeof apply === 'function', "
    "hasResolveKey: typeof resolveKey === 'function'}; }\n";

static bool class_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HD_CLASS_BYTES) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-')) {
            return false;
        }
    }
    return true;
}

/* The string member name of d, or NULL. */
static const char *str_of(json_t *d, const char *name)
{
    json_t *v = json_object_get(d, name);
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

/* The aggregate type a reducer class names without saying: its name without a trailing
 * "Reducer", lower case ("OrderReducer" -> "order"). */
static void type_of_class(const char *cls, char *out, size_t cap)
{
    const char *dot = strrchr(cls, '.');
    const char *base = dot ? dot + 1 : cls;
    size_t n = strlen(base);
    if (n > 7 && !strcmp(base + n - 7, "Reducer")) {
        n -= 7;
    }
    n = n < cap - 1 ? n : cap - 1;
    for (size_t i = 0; i < n; i++) {
        out[i] = (char)(base[i] >= 'A' && base[i] <= 'Z' ? base[i] - 'A' + 'a' : base[i]);
    }
    out[n] = '\0';
}

/* The discovered entry of one loaded file from what its describe answered. NULL with why. */
static json_t *discovered_entry(json_t *d, const char *base, char *why, size_t cap)
{
    const char *cls = str_of(d, "className") ? str_of(d, "className") : base;
    const char *kind = str_of(d, "kind");
    bool proj = kind ? !strcmp(kind, "projection") : json_is_true(json_object_get(d, "hasResolveKey"));
    if (!class_ok(cls)) {
        snprintf(why, cap, "className \"%.60s\" must be 1 to 48 letters, digits, '_', '.' "
                 "or '-' (name the file so, or set className)", cls);
        return NULL;
    }
    if (kind && strcmp(kind, "reducer") && strcmp(kind, "projection")) {
        snprintf(why, cap, "kind is \"reducer\" or \"projection\", not \"%.40s\"", kind);
        return NULL;
    }
    if (!json_is_true(json_object_get(d, "hasApply"))) {
        snprintf(why, cap, "%s defines no apply(state, event)", cls);
        return NULL;
    }
    if (proj && !json_is_true(json_object_get(d, "hasResolveKey"))) {
        snprintf(why, cap, "projection %s defines no resolveKey(event)", cls);
        return NULL;
    }
    json_t *e = json_object();
    json_object_set_new(e, "className", json_string(cls));
    char state[HD_CLASS_BYTES + 8];
    snprintf(state, sizeof state, "%sState", cls);
    const char *st = str_of(d, "stateType");
    json_object_set_new(e, "stateTypeName", json_string(st ? st : state));
    json_object_set_new(e, "kind", json_string(proj ? "projection" : "reducer"));
    if (!proj) {
        char inferred[HAPND_TYPE_BYTES + 1];
        const char *t = str_of(d, "aggregateType");
        if (!t) {
            type_of_class(cls, inferred, sizeof inferred);
            t = inferred;
        }
        if (!hapnd_type_ok((struct slice){t, strlen(t)})) {
            snprintf(why, cap, "reducer %s: aggregateType \"%.60s\" must be 1 to %d letters, "
                     "digits, '_', '-' or '.'", cls, t, HAPND_TYPE_BYTES);
            json_decref(e);
            return NULL;
        }
        json_object_set_new(e, "aggregateType", json_string(t));
    }
    return e;
}

/* Loads one source file with the shim and asks it what it is; appends its entry to
 * discovered. Returns 0, or ERR_INVALID with the compilation error in why. */
static int compile_file(struct hd_upload *u, const struct zipread_file *f, enum logic_lang lang,
                        json_t *discovered, char *why, size_t cap)
{
    const char *slash = strrchr(f->name, '/');
    char base[ZIPREAD_NAME_BYTES + 1];
    snprintf(base, sizeof base, "%s", slash ? slash + 1 : f->name);
    char *dot = strrchr(base, '.');
    if (dot) {
        *dot = '\0';
    }
    struct buf src;
    buf_init(&src);
    if (lang == LOGIC_LANG_LUA) {
        buf_adds(&src, SHIM_LUA);
        buf_add(&src, f->data, f->len);
    } else {
        buf_add(&src, f->data, f->len);
        buf_adds(&src, SHIM_JS);
    }
    static const char *const ENTRIES[] = {"__hapnd_describe", NULL};
    struct logic_module *m = NULL;
    struct logic_error le = {0};
    int rc = logic_load(logic_runtimes(u->lg), lang, base, src.ptr, src.len, ENTRIES,
                        logic_budgets(u->lg), &m, &le);
    struct buf out;
    buf_init(&out);
    rc = rc ? rc : logic_call(m, "__hapnd_describe", NULL, 0, &out, &le);
    json_t *d = rc ? NULL : json_loadb(out.ptr, out.len, 0, NULL);
    json_t *e = d ? discovered_entry(d, base, why, cap) : NULL;
    if (rc && le.line) {
        snprintf(why, cap, "%.200s:%d:%d: %.500s", f->name, le.line, le.column, le.message);
    } else if (rc) {
        snprintf(why, cap, "%.200s: %.500s", f->name, le.message[0] ? le.message : err_name(rc));
    }
    if (e) {
        json_object_set_new(e, "language", json_string(logic_lang_name(lang)));
        json_object_set_new(e, "source", json_stringn(src.ptr, src.len));
        json_array_append_new(discovered, e);
    }
    rc = rc ? rc : e ? 0 : ERR_INVALID;
    json_decref(d);
    logic_unload(m);
    buf_fini(&out);
    buf_fini(&src);
    return rc;
}

/* Why the source files of z cannot be an upload (into why), or NULL. */
static const char *contents_problem(const struct zipread *z, char *why, size_t cap)
{
    size_t sources = 0, cs = 0, bytes = 0;
    for (size_t i = 0; i < z->count; i++) {
        const struct zipread_file *f = &z->files[i];
        const char *dot = strrchr(f->name, '.');
        cs += dot && !strcasecmp(dot, ".cs");
        if (!lang_of(f->name)) {
            continue;
        }
        sources++;
        bytes += f->len;
        if (f->len > HD_SOURCE_BYTES || !utf8_text_ok(f->data, f->len)) {
            snprintf(why, cap, "%.200s: a source file is UTF-8 text without NUL bytes, at most "
                     "512 KiB", f->name);
            return why;
        }
    }
    return cs ? "C# (.cs) cannot be compiled here: write each reducer or projection as a "
                ".lua, .js or .ts file (docs/dialects/hapnd.md)"
         : !sources ? "the zip holds no .lua, .js or .ts source file"
         : sources > HD_UPLOAD_FILES ? "the zip holds more than 64 source files"
         : bytes > HD_SOURCES_BYTES ? "the source files add up to more than 2 MiB" : NULL;
}

/* The source files of z (in u's language set), or an answer of 400 INVALID_CONTENTS. */
static bool check_contents(struct hd_upload *u, const struct zipread *z)
{
    char text[320];
    const char *why = contents_problem(z, text, sizeof text);
    if (why) {
        hd_fail_req(u->req, GK_INVALID, "INVALID_CONTENTS", why);
    }
    return why == NULL;
}

/* Replaces what is not UTF-8 in s (NUL-terminated) by '?': a compilation error quotes user
 * code, and a record holds only text. */
static void make_text(char *s)
{
    unsigned char *u = (unsigned char *)s;
    for (size_t i = 0; u[i]; i++) {
        size_t len = u[i] >= 0x80 ? utf8_seq_len(u + i, strlen(s + i)) : 1;
        if (!len) {
            u[i] = '?';
        } else {
            i += len - 1;
        }
    }
}

/* A className or aggregate type discovered twice in one upload: why, else NULL. */
static const char *duplicate(json_t *discovered, char *why, size_t cap)
{
    size_t n = json_array_size(discovered);
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(discovered, i);
        for (size_t j = i + 1; j < n; j++) {
            json_t *b = json_array_get(discovered, j);
            if (json_equal(json_object_get(a, "className"), json_object_get(b, "className"))) {
                snprintf(why, cap, "two classes are named %.60s",
                         json_string_value(json_object_get(a, "className")));
                return why;
            }
            json_t *ta = json_object_get(a, "aggregateType");
            if (ta && json_equal(ta, json_object_get(b, "aggregateType"))) {
                snprintf(why, cap, "two reducers are for aggregate type %.60s",
                         json_string_value(ta));
                return why;
            }
        }
    }
    return NULL;
}

/* Compiles every source file of z into the record's "discovered". Returns 0, or ERR_* with
 * the first file's compilation error in why. */
static int compile_all(struct hd_upload *u, const struct zipread *z, char *why, size_t cap)
{
    json_t *discovered = json_array();
    json_object_set_new(u->record, "discovered", discovered);
    int rc = 0;
    uint64_t deadline = time_mono_ns() + (uint64_t)HD_COMPILE_MS * 1000000;
    for (size_t i = 0; i < z->count && !rc; i++) {
        enum logic_lang lang = lang_of(z->files[i].name);
        if (lang && time_mono_ns() > deadline) {
            snprintf(why, cap, "loading the files took longer than %d s", HD_COMPILE_MS / 1000);
            rc = ERR_INVALID;
        }
        rc = rc ? rc : lang ? compile_file(u, &z->files[i], lang, discovered, why, cap) : 0;
    }
    if (!rc && duplicate(discovered, why, cap)) {
        rc = ERR_INVALID;
    }
    make_text(why);
    return rc;
}

/* Deploys what compiled (rc 0) and stores the outcome. */
static void finish(struct hd_upload *u, int rc, const char *why)
{
    if (!rc) {
        rc = u->deploy(u);
    }
    if (rc) {
        json_object_set_new(u->record, "status", json_string("failed"));
        if (!json_object_get(u->record, "compilationError")) {
            json_object_set_new(u->record, "compilationError", json_string(why));
        }
    } else {
        json_object_set_new(u->record, "status", json_string("compiled"));
    }
    json_object_set_new(u->record, "compiledAt", hd_now());
    if (hd_record_put(u->db, u->id, u->record) != 0) {
        /* too large to keep, or the store failed: keep that it failed, without the sources */
        json_t *small = json_pack("{s:O, s:O, s:s, s:O, s:O, s:s}", "id",
                                  json_object_get(u->record, "id"), "kind",
                                  json_object_get(u->record, "kind"), "status", "failed",
                                  "createdAt", json_object_get(u->record, "createdAt"),
                                  "compiledAt", json_object_get(u->record, "compiledAt"),
                                  "compilationError", "the upload could not be kept: upload "
                                  "fewer or smaller files");
        hd_record_put(u->db, u->id, small);
        json_decref(small);
    }
}

/* The record of a new upload, before it compiles. */
static json_t *pending_record(const struct hd_upload *u)
{
    json_t *r = json_object();
    json_object_set_new(r, "id", json_string(u->id));
    json_object_set_new(r, "kind", json_string(u->projection ? "projection" : "reducer"));
    json_object_set_new(r, "status", json_string(u->projection ? "compiling"
                                                               : "pending_compilation"));
    json_object_set_new(r, "createdAt", hd_now());
    json_object_set_new(r, "run", json_string(u->run));
    if (u->projection) {
        json_object_set_new(r, "type", json_string("compilation"));
        json_object_set_new(r, "uploadId", json_string(u->id));
        json_object_set_new(r, "projectionId", json_null());
    }
    if (u->config) {
        json_object_set(r, "config", u->config);
    }
    return r;
}

static void run_upload(void *arg, bool cancelled)
{
    struct hd_upload *u = arg;
    struct zipread z = {0};
    char why[256] = "";
    int rc = cancelled ? ERR_SHUTDOWN : zipread_open(u->zip, u->zip_len, &z, why, sizeof why);
    if (rc == ERR_SHUTDOWN) {
        hd_fail_req(u->req, GK_UNAVAILABLE, "SERVICE_UNAVAILABLE", "the server is stopping");
    } else if (rc) {
        hd_fail_req(u->req, GK_INVALID, "INVALID_ZIP", why[0] ? why : "not a zip archive");
    } else if (!check_contents(u, &z)) {
        /* answered */
    } else if (u->check && u->check(u, why, sizeof why) != 0) {
        hd_fail_req(u->req, GK_INVALID, "INVALID_UPLOAD", why);
    } else {
        u->record = pending_record(u);
        rc = hd_record_create(u->db, u->id, u->record);
        if (rc) {
            struct gate_error e;
            gate_engine_error(rc, &e);
            gate_fail_req(&hapnd_mount, u->req, &e);
        } else {
            /* compiled before the 202 (a projection's answer shows its webhook secret, which
               an isolated one keys by the class), deployed after it */
            char failure[768] = "";
            rc = compile_all(u, &z, failure, sizeof failure);
            struct buf b;
            buf_init(&b);
            u->answer(u, &b);
            out_json(u->req, 202, &b);
            finish(u, rc, failure); /* the request is gone */
        }
    }
    zipread_fini(&z);
    hd_upload_free(u);
}

void hd_upload_submit(struct gate_call *c, struct hd_upload *u)
{
    uint8_t id[UUID_LEN];
    uuid_v7(time_now_us(), id);
    if (u->projection) {
        uuid_format(id, u->id); /* Hapnd's uploadId: a plain UUID */
    } else {
        char hex[HAPND_ID_TEXT_BYTES + 1];
        hapnd_event_id(id, hex); /* "evt_" and 32 hex digits */
        snprintf(u->id, sizeof u->id, "red_%s", hex + 4);
    }
    u->db = c->db;
    c->db = NULL;
    http_defer(c->req);
    int rc = engine_submit(c->gate->engine, run_upload, u);
    if (rc) {
        struct gate_error e;
        gate_engine_error(rc, &e);
        if (rc == ERR_TOOBIG) {
            e = (struct gate_error){.kind = GK_UNAVAILABLE, .code = "SERVICE_UNAVAILABLE",
                                    .message = "too many requests wait for a worker"};
        }
        gate_fail_req(&hapnd_mount, u->req, &e);
        hd_upload_free(u);
    }
}
