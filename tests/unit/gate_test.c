/* The gate's router without a server (gate/gate.h, its pure steps): mounts by prefix, routes by
 * method and segment count, decoded path parameters, dot segments, the database a request is
 * about, where keys may be presented, key scopes and bindings, declared query parameters, the
 * idempotency flags, and the error envelope of each mount. The route tables below are small
 * copies of the shapes of the native API (database in the path) and of a dialect (database
 * from the key, under a prefix). */
#include <string.h>

#include "gate/gate.h"
#include "unit.h"
#include "util/errors.h"

static struct slice S(const char *s)
{
    return (struct slice){s, strlen(s)};
}

static bool slice_is(struct slice s, const char *want)
{
    if (!s.ptr || s.len != strlen(want) || memcmp(s.ptr, want, s.len) != 0) {
        fprintf(stderr, "  got  %.*s%s\n  want %s\n", (int)s.len, s.ptr ? s.ptr : "",
                s.ptr ? "" : "(null)", want);
        return false;
    }
    return true;
}

static bool buf_is(const struct buf *b, const char *want)
{
    return slice_is((struct slice){b->ptr ? b->ptr : "", b->len}, want);
}

static void handler(struct gate_call *c)
{
    (void)c;
}

/* ---- a native-like surface: the database is the {db} segment ---- */

static const struct route_param P_READ[] = {
    {"limit", PARAM_LIMIT, "page size", NULL},
    {"types", PARAM_LIST, "event types", NULL},
    {"hard", PARAM_BOOLEAN, "hard delete", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_LIVE[] = {
    {"api_key", PARAM_STRING, "the key (EventSource sends no headers)", NULL},
    {"from", PARAM_FROM, "first position", NULL},
    {NULL, 0, NULL, NULL},
};

enum { N_ROOT, N_HEALTH, N_DB_GET, N_DB_PATCH, N_DB_DELETE, N_DB_CREATE, N_STREAM_READ,
       N_STREAM_APPEND, N_STREAM_DELETE, N_QUERY, N_LIVE, N_WHOAMI };

static const struct route NATIVE_ROUTES[] = {
    [N_ROOT] = {"GET", "", handler, 0, NEED_NONE, "root", "", NULL, NULL, NULL, 200},
    [N_HEALTH] = {"GET", "health", handler, 0, NEED_NONE, "health", "", NULL, NULL, NULL, 200},
    [N_DB_GET] = {"GET", "v1/databases/{db}", handler, ROUTE_DB, NEED_READ, "dbGet", "", NULL,
                  NULL, NULL, 200},
    [N_DB_PATCH] = {"PATCH", "v1/databases/{db}", handler, ROUTE_DB, NEED_ADMIN, "dbPatch", "",
                    NULL, NULL, NULL, 200},
    [N_DB_DELETE] = {"DELETE", "v1/databases/{db}", handler, 0, NEED_ADMIN, "dbDelete", "",
                     NULL, NULL, NULL, 204},
    [N_DB_CREATE] = {"POST", "v1/databases", handler, ROUTE_ALL_DBS, NEED_ADMIN, "dbCreate", "",
                     NULL, NULL, NULL, 201},
    [N_STREAM_READ] = {"GET", "v1/databases/{db}/streams/{stream}", handler, ROUTE_DB, NEED_READ,
                       "streamRead", "", P_READ, NULL, NULL, 200},
    [N_STREAM_APPEND] = {"POST", "v1/databases/{db}/streams/{stream}", handler,
                         ROUTE_DB | ROUTE_IDEMPOTENT, NEED_WRITE, "append", "", NULL, NULL,
                         NULL, 201},
    [N_STREAM_DELETE] = {"DELETE", "v1/databases/{db}/streams/{stream}", handler, ROUTE_DB,
                         NEED_WRITE, "streamDelete", "", P_READ, NULL, NULL, 204},
    [N_QUERY] = {"POST", "v1/databases/{db}/query", handler, ROUTE_DB | ROUTE_READ_BODY,
                 NEED_READ, "query", "", NULL, NULL, NULL, 200},
    [N_LIVE] = {"GET", "v1/databases/{db}/live", handler,
                ROUTE_DB | ROUTE_KEY_IN_QUERY | ROUTE_STREAMING, NEED_READ, "live", "", P_LIVE,
                NULL, NULL, 200},
    [N_WHOAMI] = {"GET", "v1/whoami", handler, ROUTE_DB, NEED_ANY, "whoami", "", NULL, NULL,
                  NULL, 200},
};

static const struct gate_mount NATIVE = {
    .name = "native",
    .routes = NATIVE_ROUTES,
    .nroutes = sizeof NATIVE_ROUTES / sizeof NATIVE_ROUTES[0],
    .key_from = GATE_KEY_BEARER | GATE_KEY_HEADER,
    .key_param = "api_key",
    .db_from = GATE_DB_PATH,
    .db_param = "db",
    .error = gate_native_error,
};

/* ---- a dialect-like surface: the database is the key's, else "default" ---- */

enum { D_STREAM_READ, D_LIVE };

static const struct route DIALECT_ROUTES[] = {
    [D_STREAM_READ] = {"GET", "streams/{db}", handler, ROUTE_DB, NEED_READ, "dRead", "", NULL,
                       NULL, NULL, 200},
    [D_LIVE] = {"GET", "streams/{db}/live", handler, ROUTE_DB | ROUTE_KEY_IN_QUERY, NEED_READ,
                "dLive", "", NULL, NULL, NULL, 200},
};

/* Its own envelope and statuses: a 404 is its 410, every code upper-cased. */
static unsigned dialect_error(const struct gate_error *e, struct buf *out)
{
    buf_adds(out, "{\"dialect\":{\"status\":");
    buf_add_u64(out, e->kind);
    buf_adds(out, ",\"code\":\"");
    for (const char *p = e->code; *p; p++) {
        buf_addc(out, *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p);
    }
    buf_adds(out, "\"}}");
    return e->kind == GK_NOT_FOUND ? 410 : e->kind;
}

static const struct gate_mount DIALECT = {
    .name = "dialect",
    .routes = DIALECT_ROUTES,
    .nroutes = sizeof DIALECT_ROUTES / sizeof DIALECT_ROUTES[0],
    .key_from = GATE_KEY_BEARER,
    .key_param = "apiKey",
    .db_from = GATE_DB_KEY,
    .db_param = "db", /* read only with GATE_DB_PATH: its {db} segments name no database */
    .default_db = "default",
    .error = dialect_error,
};

/* A mount whose routes are all under v2 of the dialect's prefix (a longer, overlapping one). */
static const struct route V2_ROUTES[] = {
    {"GET", "x", handler, 0, NEED_NONE, "v2x", "", NULL, NULL, NULL, 200},
};
static const struct gate_mount V2 = {
    .name = "v2",
    .routes = V2_ROUTES,
    .nroutes = 1,
    .db_from = GATE_DB_KEY,
    .error = gate_native_error,
};

/* The gates live in static storage: gate_mount allocates what lives as long as the gate. */
static struct gate G;

/* Mounts, in an order that is not the matching order: the root, a dialect under /dialect and
 * its /dialect/v2. */
static struct gate *full_gate(void)
{
    CHECK(gate_mount(&G, &NATIVE, "", NULL) == 0);
    CHECK(gate_mount(&G, &V2, "/dialect/v2", NULL) == 0);
    CHECK(gate_mount(&G, &DIALECT, "/dialect", NULL) == 0);
    return &G;
}

/* The mount path falls under (its descriptor, or NULL), with *rest after its prefix. */
static const struct gate_mount *mount_of(const struct gate *g, const char *path, struct slice *rest)
{
    int k = gate_find_mount(g, S(path), rest);
    return k < 0 ? NULL : g->mounts[k].desc;
}

/* A call on the listed mount of desc, as gate_handle starts it. */
static struct gate_call call_on(struct gate *g, const struct gate_mount *desc)
{
    for (size_t k = 0; k < g->nmounts; k++) {
        if (g->mounts[k].desc == desc && !g->mounts[k].unlisted) {
            return (struct gate_call){.gate = g, .mount = desc, .ctx = g->mounts[k].ctx,
                                      .route_segs = g->mounts[k].route_segs};
        }
    }
    CHECK(!"mounted");
    return (struct gate_call){0};
}

/* Matches method and path (after the mount's prefix) on desc's mount: gate_match's result,
 * with *c the call (its seg_heap freed by the caller with free()). */
static int match(const struct gate_mount *desc, const char *method, const char *rest,
                 struct gate_call *c, bool *known)
{
    *c = call_on(&G, desc);
    return gate_match(c, method, S(rest), known);
}

/* The route of native method path, or -1 for none (and then *known). */
static int native_route(const char *method, const char *path, bool *known)
{
    struct gate_call c;
    int rc = match(&NATIVE, method, path, &c, known);
    int i = c.route ? (int)(c.route - NATIVE_ROUTES) : -1;
    CHECK(rc == 0 ? i >= 0 : i == -1);
    free(c.seg_heap);
    return i;
}

/* ---- mounts ---- */

TEST(mount_longest_prefix_wins_at_a_segment_boundary)
{
    struct gate *g = full_gate();
    struct slice rest;
    CHECK(mount_of(g, "/dialect/v2/x", &rest) == &V2 && slice_is(rest, "/x"));
    CHECK(mount_of(g, "/dialect/v2", &rest) == &V2 && slice_is(rest, "/"));
    CHECK(mount_of(g, "/dialect/v2x", &rest) == &DIALECT && slice_is(rest, "/v2x"));
    CHECK(mount_of(g, "/dialect/v22/x", &rest) == &DIALECT && slice_is(rest, "/v22/x"));
    CHECK(mount_of(g, "/dialect/streams/a", &rest) == &DIALECT &&
          slice_is(rest, "/streams/a"));
    CHECK(mount_of(g, "/dialect", &rest) == &DIALECT && slice_is(rest, "/"));
    CHECK(mount_of(g, "/dialect/", &rest) == &DIALECT && slice_is(rest, "/"));
    /* a prefix ends at a segment boundary: /dialectx is the root's */
    CHECK(mount_of(g, "/dialectx/v2/x", &rest) == &NATIVE && slice_is(rest, "/dialectx/v2/x"));
    CHECK(mount_of(g, "/Dialect/v2/x", &rest) == &NATIVE);
    CHECK(mount_of(g, "/v1/databases", &rest) == &NATIVE && slice_is(rest, "/v1/databases"));
    CHECK(mount_of(g, "/", &rest) == &NATIVE && slice_is(rest, "/"));
    /* prefixes are kept longest first whatever the order they were mounted in */
    CHECK(strcmp(g->mounts[0].prefix, "/dialect/v2") == 0);
    CHECK(strcmp(g->mounts[1].prefix, "/dialect") == 0);
}

TEST(mount_without_a_root_finds_nothing_elsewhere_and_skips_unlisted_mounts)
{
    CHECK(gate_mount(&G, &DIALECT, NULL, NULL) == 0); /* its own port: prefix "" but unlisted */
    CHECK(gate_mount(&G, &V2, "/v2", NULL) == 0);
    struct slice rest;
    CHECK(mount_of(&G, "/streams/a", &rest) == NULL);
    CHECK(mount_of(&G, "/", &rest) == NULL);
    CHECK(mount_of(&G, "/v2/x", &rest) == &V2 && slice_is(rest, "/x"));
    char long_prefix[sizeof G.mounts[0].prefix + 1];
    memset(long_prefix, 'p', sizeof long_prefix - 1);
    long_prefix[0] = '/';
    long_prefix[sizeof long_prefix - 1] = '\0';
    ASSERT_EQ(gate_mount(&G, &V2, long_prefix, NULL), ERR_TOOBIG); /* no room for its NUL */
    long_prefix[sizeof long_prefix - 2] = '\0';
    ASSERT_EQ(gate_mount(&G, &V2, long_prefix, NULL), 0);
    CHECK(mount_of(&G, long_prefix, &rest) == &V2 && slice_is(rest, "/"));
}

/* ---- routes ---- */

TEST(route_by_method_and_segment_count)
{
    full_gate();
    bool known;
    ASSERT_EQ(native_route("GET", "/", &known), N_ROOT);
    ASSERT_EQ(native_route("GET", "/health", &known), N_HEALTH);
    ASSERT_EQ(native_route("HEAD", "/health", &known), N_HEALTH); /* HEAD is a GET's */
    ASSERT_EQ(native_route("GET", "/v1/databases/d1", &known), N_DB_GET);
    ASSERT_EQ(native_route("PATCH", "/v1/databases/d1", &known), N_DB_PATCH);
    ASSERT_EQ(native_route("DELETE", "/v1/databases/d1", &known), N_DB_DELETE);
    ASSERT_EQ(native_route("POST", "/v1/databases", &known), N_DB_CREATE);
    ASSERT_EQ(native_route("GET", "/v1/databases/d1/streams/s", &known), N_STREAM_READ);
    ASSERT_EQ(native_route("POST", "/v1/databases/d1/streams/s", &known), N_STREAM_APPEND);
    /* a {name} segment takes any one segment, even a literal of another route */
    ASSERT_EQ(native_route("GET", "/v1/databases/streams/streams/streams", &known),
              N_STREAM_READ);
    ASSERT_EQ(native_route("POST", "/v1/databases/query/query", &known), N_QUERY);
    /* the path exists for other methods: a 405 */
    ASSERT_EQ(native_route("PUT", "/v1/databases/d1", &known), -1);
    CHECK(known);
    ASSERT_EQ(native_route("post", "/v1/databases/d1/query", &known), -1);
    CHECK(known);
    ASSERT_EQ(native_route("HEAD", "/v1/databases", &known), -1);
    CHECK(known);
    /* no route of this many segments, or literals that differ: a 404 */
    ASSERT_EQ(native_route("GET", "/v1/databases/d1/streams", &known), -1);
    CHECK(!known);
    ASSERT_EQ(native_route("GET", "/v1/databases/d1/streams/s/x", &known), -1);
    CHECK(!known);
    ASSERT_EQ(native_route("GET", "/v1", &known), -1);
    CHECK(!known);
    ASSERT_EQ(native_route("GET", "/v1/Databases/d1", &known), -1);
    CHECK(!known);
    ASSERT_EQ(native_route("GET", "/health/", &known), -1); /* an empty segment: invalid */
    CHECK(!known);
}

TEST(route_match_results_and_too_many_segments)
{
    full_gate();
    struct gate_call c;
    bool known = true;
    ASSERT_EQ(match(&NATIVE, "GET", "/v1/nothing", &c, &known), ERR_NOTFOUND);
    CHECK(!known && c.route == NULL);
    ASSERT_EQ(match(&NATIVE, "GET", "/1/2/3/4/5/6/7/8/9/10", &c, &known), ERR_NOTFOUND);
    ASSERT_EQ(match(&NATIVE, "GET", "/1/2/3/4/5/6/7/8/9/10/11", &c, &known), ERR_NOTFOUND);
    CHECK(!known);
    ASSERT_EQ(match(&NATIVE, "GET", "", &c, &known), ERR_NOTFOUND); /* no leading '/' */
    ASSERT_EQ(match(&NATIVE, "GET", "health", &c, &known), ERR_NOTFOUND);
    ASSERT_EQ(match(&DIALECT, "GET", "/streams/d1/live", &c, &known), 0);
    CHECK(c.route == &DIALECT_ROUTES[D_LIVE]);
    ASSERT_EQ(c.nseg, 3);
}

TEST(route_405_lists_the_methods_of_the_path)
{
    full_gate();
    struct gate_call c;
    bool known;
    ASSERT_EQ(match(&NATIVE, "PUT", "/v1/databases/d1", &c, &known), ERR_NOTFOUND);
    CHECK(known);
    char allow[96];
    gate_allowed_methods(&c, allow, sizeof allow);
    ASSERT_STR(allow, "GET, PATCH, DELETE");
    gate_allowed_methods(&c, allow, 12); /* what does not fit is left out */
    ASSERT_STR(allow, "GET, PATCH");
    ASSERT_EQ(match(&NATIVE, "GET", "/v1/databases/d1/streams/s/x", &c, &known), ERR_NOTFOUND);
    gate_allowed_methods(&c, allow, sizeof allow);
    ASSERT_STR(allow, "");
}

/* ---- path parameters ---- */

TEST(path_params_by_name_are_percent_decoded)
{
    full_gate();
    struct gate_call c;
    bool known;
    ASSERT_EQ(match(&NATIVE, "GET", "/v1/databases/d%2D1/streams/a%2Fb%20c+d%25", &c, &known),
              0);
    CHECK(c.route == &NATIVE_ROUTES[N_STREAM_READ]);
    ASSERT_EQ(c.nseg, 5); /* %2F stays inside its segment */
    CHECK(slice_is(gate_param(&c, "db"), "d-1"));
    CHECK(slice_is(gate_param(&c, "stream"), "a/b c+d%"));
    ASSERT_STR(gate_param_str(&c, "stream"), "a/b c+d%");
    CHECK(gate_param(&c, "nope").ptr == NULL);
    CHECK(gate_param(&c, "stream}").ptr == NULL);
    CHECK(gate_param_str(&c, "databases") == NULL); /* a literal is no parameter */
    /* a long path decodes into the call's heap room */
    char path[600] = "/v1/databases/d1/streams/";
    size_t n = strlen(path);
    for (size_t i = 0; i < 180; i++, n += 3) {
        memcpy(path + n, "%41", 3);
    }
    path[n] = '\0';
    ASSERT_EQ(match(&NATIVE, "GET", path, &c, &known), 0);
    CHECK(c.seg_heap != NULL);
    struct slice s = gate_param(&c, "stream");
    ASSERT_EQ(s.len, 180);
    CHECK(s.ptr[0] == 'A' && s.ptr[179] == 'A' && s.ptr[180] == '\0');
    free(c.seg_heap);
}

TEST(path_params_without_a_route_are_absent)
{
    full_gate();
    struct gate_call c;
    bool known;
    ASSERT_EQ(match(&NATIVE, "PUT", "/v1/databases/d1", &c, &known), ERR_NOTFOUND);
    CHECK(gate_param(&c, "db").ptr == NULL);
}

TEST(path_dot_empty_and_bad_escape_segments_are_refused)
{
    full_gate();
    static const char *BAD[] = {
        "/v1/./d1",          "/v1/databases/..",  "/v1/%2e/d1",   "/v1/databases/%2E%2e",
        "/v1//d1",           "/v1/databases/d1/", "//",           "/v1/databases/%zz",
        "/v1/databases/%4",  "/v1/databases/%00", "/health/%2",   "/v1/databases/d1/streams/.",
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        struct gate_call c;
        bool known = true;
        int rc = match(&NATIVE, "GET", BAD[i], &c, &known);
        if (rc != ERR_INVALID) {
            fprintf(stderr, "  %s: %d\n", BAD[i], rc);
        }
        ASSERT_EQ(rc, ERR_INVALID);
        CHECK(!known && c.route == NULL);
    }
    /* dots that are not whole dot segments are names */
    bool known;
    ASSERT_EQ(native_route("GET", "/v1/databases/.../streams/.a", &known), N_STREAM_READ);
    ASSERT_EQ(native_route("GET", "/v1/databases/%2e%2e%2e", &known), N_DB_GET);
}

/* ---- which database ---- */

TEST(db_from_the_path_the_key_or_the_mount_default)
{
    full_gate();
    struct gate_call c;
    bool known;
    /* native: the {db} segment, whatever the key */
    ASSERT_EQ(match(&NATIVE, "GET", "/v1/databases/d%31", &c, &known), 0);
    CHECK(slice_is(gate_db_name(&c), "d1"));
    c.authed = true;
    strcpy(c.key.database, "k1");
    CHECK(slice_is(gate_db_name(&c), "d1"));
    /* a native route without {db}: the key's database; none without a bound key */
    ASSERT_EQ(match(&NATIVE, "GET", "/v1/whoami", &c, &known), 0);
    CHECK(gate_db_name(&c).ptr == NULL);
    c.authed = true;
    strcpy(c.key.database, "k1");
    CHECK(slice_is(gate_db_name(&c), "k1"));
    c.key.database[0] = '\0'; /* a key for every database */
    CHECK(gate_db_name(&c).ptr == NULL);
    /* the dialect: never its path (even a segment called {db}), the key's, else "default" */
    ASSERT_EQ(match(&DIALECT, "GET", "/streams/p1", &c, &known), 0);
    CHECK(slice_is(gate_db_name(&c), "default"));
    strcpy(c.key.database, "k2");
    CHECK(slice_is(gate_db_name(&c), "default")); /* not verified: not the caller's */
    c.authed = true;
    CHECK(slice_is(gate_db_name(&c), "k2"));
    c.key.database[0] = '\0';
    CHECK(slice_is(gate_db_name(&c), "default"));
}

/* ---- keys ---- */

static const char *presented(const struct gate_mount *m, int route, const char *query,
                             const char *authorization, const char *api_key, int *rc)
{
    const struct route *r = m == &NATIVE ? &NATIVE_ROUTES[route] : &DIALECT_ROUTES[route];
    struct gate_credentials cred = {query, authorization, api_key};
    const char *out = "unset";
    *rc = gate_presented_key(m, r, &cred, &out);
    return out;
}

TEST(key_in_query_only_on_routes_that_take_it)
{
    int rc;
    ASSERT_STR(presented(&NATIVE, N_LIVE, "k1", NULL, NULL, &rc), "k1");
    CHECK(presented(&NATIVE, N_STREAM_READ, "k1", NULL, NULL, &rc) == NULL);
    ASSERT_EQ(rc, 0);
    ASSERT_STR(presented(&DIALECT, D_LIVE, "k1", NULL, NULL, &rc), "k1");
    CHECK(presented(&DIALECT, D_STREAM_READ, "k1", NULL, NULL, &rc) == NULL);
    /* a mount without a key parameter takes none, even on such a route */
    struct gate_mount no_param = NATIVE;
    no_param.key_param = NULL;
    struct gate_credentials cred = {"k1", NULL, NULL};
    const char *out = "unset";
    ASSERT_EQ(gate_presented_key(&no_param, &NATIVE_ROUTES[N_LIVE], &cred, &out), 0);
    CHECK(out == NULL);
}

TEST(key_headers_the_mount_takes_and_conflicts)
{
    int rc;
    ASSERT_STR(presented(&NATIVE, N_STREAM_READ, NULL, "Bearer k2", NULL, &rc), "k2");
    ASSERT_STR(presented(&NATIVE, N_STREAM_READ, NULL, "bearer   k2", NULL, &rc), "k2");
    CHECK(presented(&NATIVE, N_STREAM_READ, NULL, "Basic k2", NULL, &rc) == NULL);
    ASSERT_STR(presented(&NATIVE, N_STREAM_READ, NULL, NULL, "k3", &rc), "k3");
    /* the dialect reads Authorization only */
    CHECK(presented(&DIALECT, D_STREAM_READ, NULL, NULL, "k3", &rc) == NULL);
    ASSERT_STR(presented(&DIALECT, D_STREAM_READ, NULL, "Bearer k2", "k3", &rc), "k2");
    ASSERT_EQ(rc, 0);
    /* one key presented several ways is one key; two different keys are refused */
    ASSERT_STR(presented(&NATIVE, N_LIVE, "k1", "Bearer k1", "k1", &rc), "k1");
    ASSERT_EQ(rc, 0);
    presented(&NATIVE, N_LIVE, "k1", "Bearer k2", NULL, &rc);
    ASSERT_EQ(rc, ERR_INVALID);
    presented(&NATIVE, N_STREAM_READ, NULL, "Bearer k2", "k3", &rc);
    ASSERT_EQ(rc, ERR_INVALID);
    presented(&NATIVE, N_LIVE, "k1", NULL, "k3", &rc);
    ASSERT_EQ(rc, ERR_INVALID);
    /* a key in the query of a route that does not take it conflicts with nothing */
    ASSERT_STR(presented(&NATIVE, N_STREAM_READ, "k1", "Bearer k2", NULL, &rc), "k2");
    ASSERT_EQ(rc, 0);
}

TEST(key_scope_database_binding_and_all_databases)
{
    struct api_key k = {.scope = SCOPE_READ};
    const struct route *read = &NATIVE_ROUTES[N_STREAM_READ];
    const struct route *write = &NATIVE_ROUTES[N_STREAM_APPEND];
    const struct route *admin = &NATIVE_ROUTES[N_DB_PATCH];
    const struct route *all = &NATIVE_ROUTES[N_DB_CREATE];
    const struct route *any = &NATIVE_ROUTES[N_WHOAMI];
    struct slice none = {NULL, 0};
    ASSERT_EQ(gate_key_refusal(&k, read, S("d1")), 0);
    ASSERT_EQ(gate_key_refusal(&k, any, none), 0);
    ASSERT_EQ(gate_key_refusal(&k, write, S("d1")), GK_FORBIDDEN);
    k.scope = SCOPE_WRITE;
    ASSERT_EQ(gate_key_refusal(&k, write, S("d1")), 0);
    ASSERT_EQ(gate_key_refusal(&k, admin, S("d1")), GK_FORBIDDEN);
    k.scope = SCOPE_ADMIN;
    ASSERT_EQ(gate_key_refusal(&k, admin, S("d1")), 0);
    ASSERT_EQ(gate_key_refusal(&k, all, none), 0);
    /* bound to d1: another database is not found (no existence leak); all-database routes
     * are forbidden */
    strcpy(k.database, "d1");
    ASSERT_EQ(gate_key_refusal(&k, admin, S("d1")), 0);
    ASSERT_EQ(gate_key_refusal(&k, admin, S("d2")), GK_NOT_FOUND);
    ASSERT_EQ(gate_key_refusal(&k, admin, S("d1x")), GK_NOT_FOUND);
    ASSERT_EQ(gate_key_refusal(&k, admin, S("d")), GK_NOT_FOUND);
    ASSERT_EQ(gate_key_refusal(&k, any, none), 0);
    ASSERT_EQ(gate_key_refusal(&k, all, none), GK_FORBIDDEN);
    k.scope = SCOPE_READ;
    ASSERT_EQ(gate_key_refusal(&k, write, S("d2")), GK_NOT_FOUND); /* before the scope */
}

/* ---- query parameters ---- */

/* gate_check_query's verdict on query for route as text: "ok", "unknown NAME" or "twice NAME". */
static const char *verdict(int route, const char *query)
{
    static char out[128];
    struct slice bad = {NULL, 0};
    bool twice = false;
    int rc = gate_check_query(&NATIVE_ROUTES[route], S(query), &bad, &twice);
    if (rc == 0) {
        return "ok";
    }
    CHECK(rc == ERR_INVALID && bad.ptr >= query && bad.ptr + bad.len <= query + strlen(query));
    snprintf(out, sizeof out, "%s %.*s", twice ? "twice" : "unknown", (int)bad.len, bad.ptr);
    return out;
}

TEST(query_params_must_be_declared)
{
    ASSERT_STR(verdict(N_STREAM_READ, ""), "ok");
    ASSERT_STR(verdict(N_STREAM_READ, "limit=5&types=a,b&hard"), "ok");
    ASSERT_STR(verdict(N_STREAM_READ, "&&limit=5&"), "ok");
    ASSERT_STR(verdict(N_STREAM_READ, "limit=5&bogus=1"), "unknown bogus");
    ASSERT_STR(verdict(N_STREAM_READ, "Limit=5"), "unknown Limit");
    ASSERT_STR(verdict(N_STREAM_READ, "lim%69t=5"), "unknown lim%69t"); /* names as sent */
    ASSERT_STR(verdict(N_STREAM_READ, "=5"), "unknown ");
    ASSERT_STR(verdict(N_HEALTH, "limit=5"), "unknown limit"); /* a route without any */
    ASSERT_STR(verdict(N_HEALTH, "&"), "ok");
    /* the key parameter only where the route declares it */
    ASSERT_STR(verdict(N_LIVE, "api_key=k&from=3"), "ok");
    ASSERT_STR(verdict(N_STREAM_READ, "api_key=k"), "unknown api_key");
}

TEST(query_params_of_an_open_route_are_the_handlers_once_each)
{
    static const struct route_param p_as_of[] = {
        {"asOf", PARAM_INTEGER, "", NULL},
        {NULL, 0, NULL, NULL},
    };
    static const struct route view = {"GET", "v1/databases/{db}/views/{name}", handler,
                                      ROUTE_DB | ROUTE_OPEN_QUERY, NEED_READ, "view", "",
                                      p_as_of, NULL, NULL, 200};
    struct slice bad = {NULL, 0};
    bool twice = false;
    ASSERT_EQ(gate_check_query(&view, S("asOf=3&region=eu&min=5"), &bad, &twice), 0);
    ASSERT_EQ(gate_check_query(&view, S("region=eu&region=us"), &bad, &twice), ERR_INVALID);
    CHECK(twice && bad.len == 6 && memcmp(bad.ptr, "region", 6) == 0);
    ASSERT_EQ(gate_check_query(&view, S("asOf=1&asOf=2"), &bad, &twice), ERR_INVALID);
    CHECK(twice);
}

TEST(query_params_given_twice_unless_a_list)
{
    ASSERT_STR(verdict(N_STREAM_READ, "limit=1&limit=2"), "twice limit");
    ASSERT_STR(verdict(N_STREAM_READ, "hard&types=a&hard=true"), "twice hard");
    ASSERT_STR(verdict(N_STREAM_READ, "types=a&types=b&types=c,d"), "ok");
    ASSERT_STR(verdict(N_LIVE, "api_key=a&api_key=a"), "twice api_key");
    /* the first offending parameter in order is the one named */
    ASSERT_STR(verdict(N_STREAM_READ, "bogus=1&limit=1&limit=2"), "unknown bogus");
    ASSERT_STR(verdict(N_STREAM_READ, "limit=1&bogus=1&limit=2"), "twice limit");
}

/* ---- flags read by the gate ---- */

TEST(idempotency_keys_on_kept_writes_body_reads_and_gets_only)
{
    CHECK(gate_takes_idempotency_key(&NATIVE_ROUTES[N_STREAM_APPEND])); /* ROUTE_IDEMPOTENT */
    CHECK(gate_takes_idempotency_key(&NATIVE_ROUTES[N_QUERY]));         /* ROUTE_READ_BODY */
    CHECK(gate_takes_idempotency_key(&NATIVE_ROUTES[N_STREAM_READ]));   /* GET */
    CHECK(!gate_takes_idempotency_key(&NATIVE_ROUTES[N_DB_CREATE]));
    CHECK(!gate_takes_idempotency_key(&NATIVE_ROUTES[N_STREAM_DELETE]));
    CHECK(!gate_takes_idempotency_key(&NATIVE_ROUTES[N_DB_PATCH]));
}

TEST(route_labels_and_tags_follow_the_mount_order)
{
    struct gate *g = full_gate();
    size_t n = NATIVE.nroutes, d = DIALECT.nroutes;
    ASSERT_EQ(gate_route_count(g), n + d + 1);
    char label[128];
    CHECK(gate_route_label(g, 0, label, sizeof label));
    ASSERT_STR(label, "GET /dialect/v2/x");
    CHECK(gate_route_label(g, 1 + D_LIVE, label, sizeof label));
    ASSERT_STR(label, "GET /dialect/streams/{db}/live");
    CHECK(gate_route_label(g, 1 + (int)d + N_ROOT, label, sizeof label));
    ASSERT_STR(label, "GET /");
    CHECK(gate_route_label(g, 1 + (int)d + N_STREAM_APPEND, label, sizeof label));
    ASSERT_STR(label, "POST /v1/databases/{db}/streams/{stream}");
    CHECK(!gate_route_label(g, (int)gate_route_count(g), label, sizeof label));
    CHECK(!gate_route_label(g, -1, label, sizeof label));
}

/* ---- error envelopes ---- */

TEST(error_envelope_of_the_mount_the_path_falls_under)
{
    struct gate *g = full_gate();
    struct buf b;
    buf_init(&b);
    gate_http_error(g, S("/dialect/streams/x"), 413, "body_too_large", "too big", &b);
    CHECK(buf_is(&b, "{\"dialect\":{\"status\":413,\"code\":\"BODY_TOO_LARGE\"}}"));
    buf_reset(&b);
    gate_http_error(g, S("/dialect/v2/x"), 408, "request_timeout", "late", &b);
    CHECK(buf_is(&b, "{\"error\":{\"code\":\"request_timeout\",\"message\":\"late\"}}"));
    buf_reset(&b);
    gate_http_error(g, S("/dialectx"), 400, "bad_request", "bad", &b);
    CHECK(buf_is(&b, "{\"error\":{\"code\":\"bad_request\",\"message\":\"bad\"}}"));
    /* no path yet (a malformed head): the root's */
    buf_reset(&b);
    gate_http_error(g, S(""), 400, "bad_request", "bad", &b);
    CHECK(buf_is(&b, "{\"error\":{\"code\":\"bad_request\",\"message\":\"bad\"}}"));
    /* a port of the dialect's own answers in its envelope whatever the path */
    struct gate_port port = {g, &DIALECT};
    buf_reset(&b);
    gate_http_error_port(&port, S("/v1/x"), 431, "header_too_large", "big", &b);
    CHECK(buf_is(&b, "{\"dialect\":{\"status\":431,\"code\":\"HEADER_TOO_LARGE\"}}"));
    buf_fini(&b);
}

TEST(error_envelope_without_a_root_mount_is_the_shortest_prefix_s)
{
    CHECK(gate_mount(&G, &V2, "/a/long", NULL) == 0);
    CHECK(gate_mount(&G, &DIALECT, "/d", NULL) == 0);
    struct buf b;
    buf_init(&b);
    gate_http_error(&G, S("/elsewhere"), 404, "not_found", "none", &b);
    CHECK(buf_is(&b, "{\"dialect\":{\"status\":404,\"code\":\"NOT_FOUND\"}}"));
    buf_fini(&b);
    /* and with no mount at all, the HTTP layer's default */
    static struct gate empty;
    buf_init(&b);
    gate_http_error(&empty, S("/x"), 503, "busy", "later", &b);
    CHECK(buf_is(&b, "{\"error\":{\"code\":\"busy\",\"message\":\"later\"}}"));
    buf_fini(&b);
}

TEST(error_envelope_for_no_path_is_never_an_own_port_mount_s)
{
    /* --dialect NAME=off with --dialect-listen: the dialect is mounted only on its port, at
       its root; a malformed request on the main listener answers in the native envelope */
    CHECK(gate_mount(&G, &NATIVE, "", NULL) == 0);
    CHECK(gate_mount(&G, &DIALECT, NULL, NULL) == 0);
    struct buf b;
    buf_init(&b);
    gate_http_error(&G, S(""), 400, "bad_request", "bad", &b);
    CHECK(buf_is(&b, "{\"error\":{\"code\":\"bad_request\",\"message\":\"bad\"}}"));
    buf_reset(&b);
    gate_http_error(&G, S("/v1/x"), 413, "body_too_large", "big", &b);
    CHECK(buf_is(&b, "{\"error\":{\"code\":\"body_too_large\",\"message\":\"big\"}}"));
    buf_fini(&b);
}

TEST(error_native_envelope_members)
{
    struct buf b;
    buf_init(&b);
    struct gate_error e = {.kind = GK_NOT_FOUND, .code = "stream_not_found",
                           .message = "no \"such\" stream", .field = "stream"};
    ASSERT_EQ(gate_native_error(&e, &b), 404);
    CHECK(buf_is(&b, "{\"error\":{\"code\":\"stream_not_found\",\"message\":\"no \\\"such\\\" "
                     "stream\",\"field\":\"stream\"}}"));
    static const uint64_t CONFLICTS[] = {3, 7};
    e = (struct gate_error){.kind = GK_CONFLICT, .code = "conflict", .message = "m",
                            .details = "\"offset\":3", .stream = S("s-1"),
                            .has_actual_version = true, .actual_version = 5,
                            .has_last_position = true, .last_position = 7,
                            .conflicts = CONFLICTS, .nconflicts = 2, .has_after = true};
    buf_reset(&b);
    ASSERT_EQ(gate_native_error(&e, &b), 409);
    CHECK(buf_is(&b, "{\"error\":{\"code\":\"conflict\",\"message\":\"m\",\"offset\":3,"
                     "\"stream\":\"s-1\",\"actualVersion\":5,\"lastPosition\":7,"
                     "\"conflictingPositions\":[3,7],\"after\":null}}"));
    e.after_given = true;
    e.after = 2;
    e.details = "";
    buf_reset(&b);
    gate_native_error(&e, &b);
    CHECK(buf_is(&b, "{\"error\":{\"code\":\"conflict\",\"message\":\"m\",\"stream\":\"s-1\","
                     "\"actualVersion\":5,\"lastPosition\":7,\"conflictingPositions\":[3,7],"
                     "\"after\":2}}"));
    buf_fini(&b);
}

TEST(error_of_the_engine_as_neutral_errors)
{
    struct gate_error e;
    gate_engine_error(ERR_NOTFOUND, &e);
    CHECK(e.kind == GK_NOT_FOUND && strcmp(e.code, "not_found") == 0);
    gate_engine_error(ERR_GONE, &e);
    CHECK(e.kind == GK_NOT_FOUND && strcmp(e.code, "database_not_found") == 0);
    gate_engine_error(ERR_DELETED, &e);
    CHECK(e.kind == GK_GONE && strcmp(e.field, "stream") == 0);
    gate_engine_error(ERR_NOSPACE, &e);
    ASSERT_EQ(e.kind, GK_STORAGE_FULL);
    gate_engine_error(ERR_SHUTDOWN, &e);
    ASSERT_EQ(e.kind, GK_UNAVAILABLE);
    gate_engine_error(ERR_IO, &e);
    CHECK(e.kind == GK_INTERNAL && strcmp(e.code, "storage_error") == 0);
}

/* ---- rate limits ---- */

/* A surface that tells its limits per minute, per key and per address, with a scope and no
 * Reset (j17's shape), beside the native-like mount (per second, no new fields). */
static const struct gate_mount MINUTE = {
    .name = "minute",
    .routes = V2_ROUTES,
    .nroutes = 1,
    .db_from = GATE_DB_KEY,
    .error = gate_native_error,
    .rate_window_s = 60,
    .default_rate = 500,
    .ip_rate = 2000,
    .rate_scope = "api-key",
    .rate_no_reset = true,
};

static int mount_k(const struct gate *g, const struct gate_mount *desc)
{
    for (size_t k = 0; k < g->nmounts; k++) {
        if (g->mounts[k].desc == desc) {
            return (int)k;
        }
    }
    CHECK(!"mounted");
    return -1;
}

/* The answer's headers as "Name: value\n" lines, in order. */
static const char *header_lines(const struct gate_rate_answer *a)
{
    static char out[512];
    out[0] = '\0';
    for (size_t i = 0; i < a->count; i++) {
        size_t n = strlen(out);
        snprintf(out + n, sizeof out - n, "%s: %s\n", a->headers[i].name, a->headers[i].value);
    }
    return out;
}

static bool near(double a, double b)
{
    return a - b < 1e-9 && b - a < 1e-9;
}

TEST(rate_plan_precedence_window_and_bursts)
{
    static struct gate g = {.rate_limit = 50, .rate_burst = 5};
    CHECK(gate_mount(&g, &NATIVE, "", NULL) == 0);
    CHECK(gate_mount(&g, &MINUTE, "/m", NULL) == 0);
    int kn = mount_k(&g, &NATIVE), km = mount_k(&g, &MINUTE);
    struct gate_rates r;
    /* native: the server's rate and --rate-burst; the database's setting, then the key's win */
    gate_rate_plan(&g, kn, NULL, 0, &r);
    CHECK(near(r.rate, 50) && near(r.burst, 5) && near(r.ip_rate, 0));
    gate_rate_plan(&g, kn, NULL, 30, &r);
    CHECK(near(r.rate, 30) && near(r.burst, 5));
    struct api_key key = {.rate_limit = 20};
    gate_rate_plan(&g, kn, &key, 30, &r);
    CHECK(near(r.rate, 20));
    g.rate_burst = 0; /* one second's worth */
    gate_rate_plan(&g, kn, NULL, 0, &r);
    CHECK(near(r.burst, 50));
    /* per minute: 500 per key with a whole minute's burst, 2000 per address */
    gate_rate_plan(&g, km, NULL, 0, &r);
    CHECK(near(r.rate, 500.0 / 60) && near(r.burst, 500));
    CHECK(near(r.ip_rate, 2000.0 / 60) && near(r.ip_burst, 2000));
    key.rate_limit = 0; /* a key without a rate of its own takes the mount's */
    gate_rate_plan(&g, km, &key, 0, &r);
    CHECK(near(r.rate, 500.0 / 60));
    /* the settings replace the descriptor's; 0 turns a limit off */
    gate_set_rate(&g, &MINUTE, 120);
    gate_set_ip_rate(&g, &MINUTE, 600);
    gate_rate_plan(&g, km, NULL, 0, &r);
    CHECK(near(r.rate, 2) && near(r.burst, 120) && near(r.ip_rate, 10) && near(r.ip_burst, 600));
    gate_set_ip_rate(&g, &MINUTE, 0);
    gate_rate_plan(&g, km, NULL, 0, &r);
    CHECK(near(r.ip_rate, 0) && near(r.rate, 2));
    gate_rate_plan(&g, kn, NULL, 0, &r); /* the other mount keeps its own */
    CHECK(near(r.rate, 50) && near(r.ip_rate, 0));
}

TEST(rate_answer_of_a_mount_without_the_new_fields_is_as_before)
{
    struct rl_result rr = {.limit = 50, .remaining = 3, .reset_s = 1};
    struct gate_bucket client = {&rr, 50}, none = {NULL, 0};
    struct gate_rate_answer a;
    gate_rate_answer(&NATIVE, true, &client, &none, &a);
    CHECK(!a.limited && !a.by_ip);
    ASSERT_STR(header_lines(&a),
               "X-RateLimit-Limit: 50\nX-RateLimit-Remaining: 3\nX-RateLimit-Reset: 1\n");
    rr = (struct rl_result){.limited = true, .limit = 50, .remaining = 0, .reset_s = 1,
                            .retry_after_s = 1};
    gate_rate_answer(&NATIVE, false, &client, &none, &a);
    CHECK(a.limited);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 50\nX-RateLimit-Remaining: 0\n"
                                 "X-RateLimit-Reset: 1\nRetry-After: 1\n");
    /* no bucket at all: no headers */
    gate_rate_answer(&NATIVE, false, &none, &none, &a);
    CHECK(!a.limited && a.count == 0);
}

TEST(rate_answer_per_minute_with_scope_and_without_reset)
{
    /* the key's bucket: 500/min, 499 left; the address's: 2000/min, 1999 left */
    struct rl_result key_rr = {.limit = 9, .remaining = 499, .reset_s = 1};
    struct rl_result ip_rr = {.limit = 34, .remaining = 1999, .reset_s = 1};
    struct gate_bucket client = {&key_rr, 500.0 / 60}, ip = {&ip_rr, 2000.0 / 60};
    struct gate_rate_answer a;
    gate_rate_answer(&MINUTE, true, &client, &ip, &a);
    CHECK(!a.limited && !a.by_ip);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 500\nX-RateLimit-Remaining: 499\n"
                                 "X-RateLimit-Scope: api-key\n");
    /* without a key the client's bucket is the address's own: scope ip */
    gate_rate_answer(&MINUTE, false, &client, &ip, &a);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 500\nX-RateLimit-Remaining: 499\n"
                                 "X-RateLimit-Scope: ip\n");
    /* the address's bucket has fewer left (other keys used it): it is told */
    ip_rr.remaining = 10;
    gate_rate_answer(&MINUTE, true, &client, &ip, &a);
    CHECK(a.by_ip);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 2000\nX-RateLimit-Remaining: 10\n"
                                 "X-RateLimit-Scope: ip\n");
    /* a tie tells the key's */
    ip_rr.remaining = 499;
    gate_rate_answer(&MINUTE, true, &client, &ip, &a);
    CHECK(!a.by_ip);
    /* the key's bucket refuses: 429 told in the key's terms */
    key_rr = (struct rl_result){.limited = true, .remaining = 0, .retry_after_s = 1};
    gate_rate_answer(&MINUTE, true, &client, &ip, &a);
    CHECK(a.limited && !a.by_ip);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 500\nX-RateLimit-Remaining: 0\n"
                                 "X-RateLimit-Scope: api-key\nRetry-After: 1\n");
    /* the address's refuses (the key's was not consulted): 429 with scope ip */
    ip_rr = (struct rl_result){.limited = true, .remaining = 0, .retry_after_s = 2};
    struct gate_bucket unasked = {NULL, 500.0 / 60};
    gate_rate_answer(&MINUTE, true, &unasked, &ip, &a);
    CHECK(a.limited && a.by_ip);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 2000\nX-RateLimit-Remaining: 0\n"
                                 "X-RateLimit-Scope: ip\nRetry-After: 2\n");
}

TEST(rate_buckets_hold_a_whole_minute_and_refill)
{
    struct ratelimiter *rl = rl_new();
    struct rl_result rr;
    uint64_t t = 1000000000ull;
    for (int i = 0; i < 500; i++) {
        rl_take(rl, "k", 1, 500.0 / 60, 500, t, &rr);
        CHECK(!rr.limited);
    }
    ASSERT_EQ(rr.remaining, 0);
    rl_take(rl, "k", 1, 500.0 / 60, 500, t, &rr);
    CHECK(rr.limited && rr.retry_after_s == 1);
    /* a given-back token is there again, never above the burst */
    rl_give(rl, "k", 1, t);
    rl_take(rl, "k", 1, 500.0 / 60, 500, t, &rr);
    CHECK(!rr.limited);
    rl_give(rl, "nobody", 6, t); /* no such bucket: nothing */
    /* a minute later the bucket is full again */
    t += 60ull * 1000000000ull;
    rl_take(rl, "k", 1, 500.0 / 60, 500, t, &rr);
    CHECK(!rr.limited && rr.remaining == 499);
    rl_give(rl, "k", 1, t);
    rl_give(rl, "k", 1, t);
    rl_take(rl, "k", 1, 500.0 / 60, 500, t, &rr);
    ASSERT_EQ(rr.remaining, 499);
    rl_free(rl);
}

/* One request of key id (NULL: none) from the address through gate_rate_check as rate_ok
 * names the buckets. */
static void one_request(struct ratelimiter *rl, const struct gate_rates *r, const char *id,
                        uint64_t now_ns, struct gate_rate_answer *a)
{
    char who[64];
    snprintf(who, sizeof who, "minute|%s%s|shop", id ? "key:" : "ip:", id ? id : "10.0.0.1");
    gate_rate_check(rl, &MINUTE, id != NULL, r, S(who), S("minute|addr:10.0.0.1"), now_ns, a);
}

TEST(rate_check_per_key_then_per_address)
{
    struct ratelimiter *rl = rl_new();
    struct gate_rates r = {.rate = 500.0 / 60, .burst = 500, .ip_rate = 2000.0 / 60,
                           .ip_burst = 2000};
    struct gate_rate_answer a;
    uint64_t t = 5000000000ull;
    /* key a: 500 in a minute, the 501st refused in the key's terms; refused requests take
       nothing from the address */
    for (int i = 0; i < 500; i++) {
        one_request(rl, &r, "a", t, &a);
        CHECK(!a.limited);
    }
    for (int i = 0; i < 50; i++) {
        one_request(rl, &r, "a", t, &a);
        CHECK(a.limited && !a.by_ip);
    }
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 500\nX-RateLimit-Remaining: 0\n"
                                 "X-RateLimit-Scope: api-key\nRetry-After: 1\n");
    /* keys b, c, d from the same address use up its 2000 (1500 left after a) */
    const char *keys[] = {"b", "c", "d"};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 500; i++) {
            one_request(rl, &r, keys[k], t, &a);
            CHECK(!a.limited);
        }
    }
    /* d's last answer: both buckets at 0 left, the key's told on the tie */
    CHECK(!a.by_ip);
    /* key e is fresh, but the address is spent: 429 with scope ip */
    one_request(rl, &r, "e", t, &a);
    CHECK(a.limited && a.by_ip);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 2000\nX-RateLimit-Remaining: 0\n"
                                 "X-RateLimit-Scope: ip\nRetry-After: 1\n");
    /* e's bucket was not touched: after the address refills a little, e has its 500 */
    t += 60ull * 1000000000ull;
    one_request(rl, &r, "e", t, &a);
    CHECK(!a.limited && !a.by_ip);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 500\nX-RateLimit-Remaining: 499\n"
                                 "X-RateLimit-Scope: api-key\n");
    /* without a key on a mount with an address limit: the address's bucket alone (the
     * per-key limit is a key's), scope ip */
    one_request(rl, &r, NULL, t, &a);
    CHECK(!a.limited && a.by_ip);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 2000\nX-RateLimit-Remaining: 1998\n"
                                 "X-RateLimit-Scope: ip\n");
    rl_free(rl);
}

TEST(rate_check_without_an_address_limit_is_the_client_bucket_alone)
{
    struct ratelimiter *rl = rl_new();
    struct gate_rates r = {.rate = 2, .burst = 2};
    struct gate_rate_answer a;
    for (int i = 0; i < 2; i++) {
        gate_rate_check(rl, &NATIVE, true, &r, S("native|key:x|db"), S("native|addr:1"), 0, &a);
        CHECK(!a.limited);
    }
    gate_rate_check(rl, &NATIVE, true, &r, S("native|key:x|db"), S("native|addr:1"), 0, &a);
    CHECK(a.limited);
    ASSERT_STR(header_lines(&a), "X-RateLimit-Limit: 2\nX-RateLimit-Remaining: 0\n"
                                 "X-RateLimit-Reset: 1\nRetry-After: 1\n");
    rl_free(rl);
}
