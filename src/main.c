/* annals: command line, configuration, start-up and shutdown. The only module that wires the
 * layers together: engine (storage and write path), api (routes) and http (server). */
#include <curl/curl.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/groups_api.h"
#include "api/live.h"
#include "api/out.h"
#include "api/metrics.h"
#include "api/native.h"
#include "api/ratelimit.h"
#include "auth/keys.h"
#include "cli/backup_cmd.h"
#include "cli/restore_cmd.h"
#include "engine/engine.h"
#include "http/server.h"
#include "store/store.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

#define ANNALS_VERSION "0.1.0"

/* Everything the command line and environment can set. */
struct options {
    const char *data_dir;   /* --data */
    char host[64];          /* from --listen */
    uint16_t port;          /* from --listen */
    unsigned threads;       /* --threads */
    struct limits limits;   /* --max-* and --timeout */
    enum log_level level;   /* --log-level */
    const char *cors;       /* --cors-origins */
    const char *tls_cert;   /* --tls-cert */
    const char *tls_key;    /* --tls-key */
    uint32_t rate_limit;    /* --rate-limit */
    uint32_t rate_burst;    /* --rate-burst */
    struct live_config live; /* --live-heartbeat, --live-max-lag */
    const char *webhook_allow; /* --webhook-allow */
};

/* One flag: its name, environment variable, help text and where it goes. */
struct flag {
    const char *name;
    const char *env;
    const char *arg;
    const char *help;
};

static const struct flag FLAGS[] = {
    {"--data", "ANNALS_DATA", "DIR", "data directory (default ./data)"},
    {"--listen", "ANNALS_LISTEN", "HOST:PORT", "address to serve on (default 127.0.0.1:7070; port 0 = any)"},
    {"--threads", "ANNALS_THREADS", "N", "I/O threads (default: one per core)"},
    {"--max-body-bytes", "ANNALS_MAX_BODY_BYTES", "N", "largest request body (default 4194304)"},
    {"--max-batch-events", "ANNALS_MAX_BATCH_EVENTS", "N", "most events in one append (default 1000)"},
    {"--max-event-bytes", "ANNALS_MAX_EVENT_BYTES", "N", "largest stored event (default 1048576)"},
    {"--max-header-bytes", "ANNALS_MAX_HEADER_BYTES", "N", "largest request head (default 16384)"},
    {"--max-connections", "ANNALS_MAX_CONNECTIONS", "N", "most open connections (default 4096)"},
    {"--timeout", "ANNALS_TIMEOUT", "SECONDS", "idle connection timeout (default 60)"},
    {"--max-db-bytes", "ANNALS_MAX_DB_BYTES", "N", "largest size of one database (default 68719476736)"},
    {"--log-level", "ANNALS_LOG_LEVEL", "LEVEL", "debug, info, warn or error (default info)"},
    {"--rate-limit", "ANNALS_RATE_LIMIT", "N",
     "requests per second per client (API key, or address) and database; 0 = none (default)"},
    {"--rate-burst", "ANNALS_RATE_BURST", "N", "requests a client may make at once (default: one second's worth)"},
    {"--header-timeout", "ANNALS_HEADER_TIMEOUT", "SECONDS",
     "a request head must arrive whole within this (default 10; 0 = no limit)"},
    {"--body-timeout", "ANNALS_BODY_TIMEOUT", "SECONDS",
     "a request body must arrive whole within this (default 60; 0 = no limit)"},
    {"--max-client-connections", "ANNALS_MAX_CLIENT_CONNECTIONS", "N",
     "most open connections from one address (default 1024; 0 = no limit)"},
    {"--tls-cert", "ANNALS_TLS_CERT", "FILE", "serve HTTPS with this PEM certificate chain (with --tls-key)"},
    {"--tls-key", "ANNALS_TLS_KEY", "FILE", "the PEM private key of --tls-cert"},
    {"--cors-origins", "ANNALS_CORS_ORIGINS", "LIST",
     "browser origins allowed (comma-separated, or *; default: localhost pages in development mode, none otherwise)"},
    {"--idempotency-ttl", "ANNALS_IDEMPOTENCY_TTL", "SECONDS",
     "how long idempotency keys are kept, unless a database sets its own (default 86400)"},
    {"--live-heartbeat", "ANNALS_LIVE_HEARTBEAT", "SECONDS",
     "a live subscription with nothing to send sends a heartbeat this often (default 15)"},
    {"--live-max-lag", "ANNALS_LIVE_MAX_LAG", "EVENTS",
     "a live subscriber this far behind the head is disconnected (default 100000; 0 = never)"},
    {"--webhook-allow", "ANNALS_WEBHOOK_ALLOW", "LIST",
     "hosts or addresses webhooks may reach although loopback or private (comma-separated; default none)"},
    {"--compact-interval", "ANNALS_COMPACT_INTERVAL", "SECONDS",
     "how often each database checks whether compaction would reclaim enough of its log (default 3600; 0 = only on request)"},
};
enum { NFLAGS = sizeof FLAGS / sizeof FLAGS[0] };

static void usage(FILE *f)
{
    fprintf(f, "annals %s: a self-hosted event-sourcing database server\n\n"
               "usage: annals <command> [flags]\n\n"
               "commands:\n"
               "  serve     run the server (zero configuration: ./data, 127.0.0.1:7070, auth off until a key exists)\n"
               "  verify    check every database's checksums, hash chain and indexes (server stopped)\n"
               "  keys      create, list, revoke and rotate API keys (server stopped; see keys --help)\n"
               "  backup    copy every database of a running server into a new directory (see backup --help)\n"
               "  restore   bring a backup back as a data directory, checked (see restore --help)\n"
               "  version   print the version\n"
               "  help      this text; 'annals serve --help' lists the flags\n",
            ANNALS_VERSION);
}

static void usage_flags(FILE *f)
{
    fprintf(f, "usage: annals serve|verify [flags]\n\nflags (each also read from its environment "
               "variable; flags win):\n");
    for (int i = 0; i < NFLAGS; i++) {
        fprintf(f, "  %-20s %-10s %s [%s]\n", FLAGS[i].name, FLAGS[i].arg, FLAGS[i].help,
                FLAGS[i].env);
    }
}

static int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        return ERR_INVALID;
    }
    *out = v;
    return 0;
}

static int parse_listen(struct options *o, const char *v)
{
    const char *colon = strrchr(v, ':');
    uint64_t port;
    if (!colon || (size_t)(colon - v) >= sizeof o->host || colon == v ||
        parse_size(colon + 1, 0, 65535, &port)) {
        return ERR_INVALID;
    }
    memcpy(o->host, v, (size_t)(colon - v));
    o->host[colon - v] = '\0';
    if (strcmp(o->host, "localhost") == 0) {
        strcpy(o->host, "127.0.0.1");
    }
    o->port = (uint16_t)port;
    return 0;
}

static int set_option(struct options *o, int idx, const char *v)
{
    uint64_t n = 0;
    struct limits *l = &o->limits;
    switch (idx) {
    case 0: o->data_dir = v; return 0;
    case 1: return parse_listen(o, v);
    case 2: if (parse_size(v, 1, 256, &n)) return ERR_INVALID; o->threads = (unsigned)n; return 0;
    case 3: if (parse_size(v, 1024, 1ull << 30, &n)) return ERR_INVALID; l->body_bytes = n; return 0;
    case 4: if (parse_size(v, 1, 100000, &n)) return ERR_INVALID; l->batch_events = n; return 0;
    case 5: if (parse_size(v, 1024, 64ull << 20, &n)) return ERR_INVALID; l->event_bytes = n; return 0;
    case 6: if (parse_size(v, 1024, 1 << 20, &n)) return ERR_INVALID; l->header_bytes = n; return 0;
    case 7: if (parse_size(v, 1, 1000000, &n)) return ERR_INVALID; l->connections = (unsigned)n; return 0;
    case 8: if (parse_size(v, 1, 86400, &n)) return ERR_INVALID; l->timeout_s = (unsigned)n; return 0;
    case 9: if (parse_size(v, 1ull << 20, 1ull << 44, &n)) return ERR_INVALID; l->map_bytes = n; return 0;
    case 10: return log_parse_level(v, &o->level);
    case 11: if (parse_size(v, 0, LIMIT_RATE_MAX, &n)) return ERR_INVALID; o->rate_limit = (uint32_t)n; return 0;
    case 12: if (parse_size(v, 1, LIMIT_RATE_MAX, &n)) return ERR_INVALID; o->rate_burst = (uint32_t)n; return 0;
    case 13: if (parse_size(v, 0, 86400, &n)) return ERR_INVALID; l->header_timeout_s = (unsigned)n; return 0;
    case 14: if (parse_size(v, 0, 86400, &n)) return ERR_INVALID; l->body_timeout_s = (unsigned)n; return 0;
    case 15: if (parse_size(v, 0, 1000000, &n)) return ERR_INVALID; l->client_connections = (unsigned)n; return 0;
    case 16: o->tls_cert = v; return 0;
    case 17: o->tls_key = v; return 0;
    case 18: o->cors = v; return 0;
    case 19: if (parse_size(v, 1, LIMIT_IDEM_TTL_MAX_S, &n)) return ERR_INVALID; l->idem_ttl_s = (unsigned)n; return 0;
    case 20: if (parse_size(v, 1, 3600, &n)) return ERR_INVALID; o->live.heartbeat_s = (unsigned)n; return 0;
    case 21: if (parse_size(v, 0, 1ull << 40, &n)) return ERR_INVALID; o->live.max_lag = n; return 0;
    case 22: o->webhook_allow = v; return 0;
    case 23: if (parse_size(v, 0, 30 * 86400, &n)) return ERR_INVALID; l->compact_interval_s = (unsigned)n; return 0;
    }
    return ERR_INVALID;
}

static void defaults(struct options *o)
{
    memset(o, 0, sizeof(*o));
    o->data_dir = "./data";
    strcpy(o->host, "127.0.0.1");
    o->port = 7070;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = cores > 0 ? (unsigned)cores : 2;
    o->limits = (struct limits){
        .body_bytes = LIMIT_DEFAULT_BODY_BYTES,
        .batch_events = LIMIT_DEFAULT_BATCH_EVENTS,
        .event_bytes = LIMIT_DEFAULT_EVENT_BYTES,
        .header_bytes = LIMIT_DEFAULT_HEADER_BYTES,
        .connections = LIMIT_DEFAULT_CONNECTIONS,
        .timeout_s = LIMIT_DEFAULT_TIMEOUT_S,
        .header_timeout_s = LIMIT_DEFAULT_HEADER_TIMEOUT_S,
        .body_timeout_s = LIMIT_DEFAULT_BODY_TIMEOUT_S,
        .client_connections = LIMIT_DEFAULT_CLIENT_CONNECTIONS,
        .map_bytes = 64ull << 30,
        .idem_ttl_s = LIMIT_DEFAULT_IDEM_TTL_S,
        .compact_interval_s = LIMIT_DEFAULT_COMPACT_INTERVAL_S,
    };
    o->level = LOG_INFO;
    o->live = (struct live_config){.heartbeat_s = 15, .max_lag = 100000};
}

/* Applies environment variables, then flags. Returns 0, 1 (help printed) or ERR_INVALID. */
static int parse_options(struct options *o, int argc, char **argv)
{
    defaults(o);
    for (int i = 0; i < NFLAGS; i++) {
        const char *v = getenv(FLAGS[i].env);
        if (v && *v && set_option(o, i, v)) {
            fprintf(stderr, "annals: bad value for %s: %s\n", FLAGS[i].env, v);
            return ERR_INVALID;
        }
    }
    for (int a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            usage_flags(stdout);
            return 1;
        }
        const char *eq = strchr(argv[a], '=');
        size_t nlen = eq ? (size_t)(eq - argv[a]) : strlen(argv[a]);
        int idx = -1;
        for (int i = 0; i < NFLAGS; i++) {
            if (strlen(FLAGS[i].name) == nlen && !strncmp(FLAGS[i].name, argv[a], nlen)) {
                idx = i;
            }
        }
        const char *v = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (idx < 0 || !v) {
            fprintf(stderr, "annals: unknown flag or missing value: %s (see --help)\n", argv[a]);
            return ERR_INVALID;
        }
        if (set_option(o, idx, v)) {
            fprintf(stderr, "annals: bad value for %s: %s\n", FLAGS[idx].name, v);
            return ERR_INVALID;
        }
    }
    log_set_level(o->level);
    return 0;
}

static void shutdown_gracefully(struct http_server *srv, struct engine *e)
{
    log_info("shutting down: no new connections; finishing in-flight commits");
    http_server_quiesce(srv);
    engine_stop(e);
    uint64_t deadline = time_mono_ns() + 5000000000ull;
    while (http_server_inflight(srv) > 0 && time_mono_ns() < deadline) {
        usleep(10000);
    }
    http_server_stop(srv);
    engine_close(e);
    log_info("stopped");
}

/* Hands the allocator's free memory back to the kernel: tcmalloc's call when the binary runs
 * on it, else (sanitizer builds, glibc's allocator) malloc_trim. Looked up at run time: a weak
 * reference would not do, since in a PIE an undefined weak function's address is not NULL. */
static void release_free_memory(void)
{
    static void (*tc_release)(void);
    static bool looked_up;
    if (!looked_up) {
        *(void **)&tc_release = dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory");
        looked_up = true;
    }
    if (tc_release) {
        tc_release();
    } else {
        malloc_trim(0);
    }
}

/* Waits for one of sigs. Every HOUSEKEEPING_S seconds meanwhile, hands the allocator's free
 * memory back to the kernel: memory freed by the requests of a burst otherwise stays
 * resident in the allocator's caches. */
static int wait_for_signal(const sigset_t *sigs)
{
    enum { HOUSEKEEPING_S = 10 };
    for (;;) {
        struct timespec ts = {.tv_sec = HOUSEKEEPING_S};
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig > 0) {
            return sig;
        }
        release_free_memory();
    }
}

/* True for 127.0.0.0/8 and ::1 (clients on this machine only). */
static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "[::1]") == 0;
}

static int cmd_serve(const struct options *o)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread inherits this; main waits */
    signal(SIGPIPE, SIG_IGN);
    struct engine_config ec = {.data_dir = o->data_dir, .limits = o->limits,
                               .parse_filter = groups_parse_filter, .format_event = out_event,
                               .webhook_allow = o->webhook_allow};
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread: webhooks post with libcurl */
    struct engine *e;
    int rc = engine_open(&ec, &e);
    if (rc) {
        log_error("cannot open data directory %s: %s", o->data_dir, err_name(rc));
        return 1;
    }
    struct keyring *keys;
    rc = keyring_open(o->data_dir, &keys);
    if (rc) {
        log_error("cannot read the API keys in %s/keys.json: %s", o->data_dir, err_name(rc));
        engine_close(e);
        return 1;
    }
    bool loopback = is_loopback(o->host);
    size_t active = keyring_active(keys, time_now_us()), known;
    free(keyring_list(keys, &known));
    if (!loopback && active == 0) {
        log_error("refusing to listen on %s without API keys: anyone could read and write. "
                  "Stop here, create a key with 'annals keys create --scope admin --data %s', "
                  "then start again (or listen on 127.0.0.1 for development)",
                  o->host, o->data_dir);
        keyring_close(keys);
        engine_close(e);
        return 1;
    }
    /* any key on file (even expired or revoked ones) keeps auth on: revoking every key must not
     * open the server */
    struct api api = {.engine = e, .keys = keys, .auth_required = known > 0 || !loopback,
                      .limits = o->limits, .version = ANNALS_VERSION,
                      .started_us = time_now_us(), .cors_origins = o->cors,
                      .metrics = metrics_new(), .limiter = rl_new(),
                      .rate_limit = o->rate_limit, .rate_burst = o->rate_burst,
                      .live = live_registry_new(&o->live)};
    struct http_config hc = {.host = o->host, .port = o->port, .threads = o->threads,
                             .limits = o->limits, .handler = api_handle, .handler_arg = &api,
                             .observe = api_observe, .observe_arg = &api,
                             .tls_cert = o->tls_cert, .tls_key = o->tls_key};
    if (!o->tls_cert != !o->tls_key) {
        log_error("--tls-cert and --tls-key go together");
        keyring_close(keys);
        engine_close(e);
        return 1;
    }
    struct http_server *srv;
    if (http_server_start(&hc, &srv)) {
        engine_close(e);
        return 1;
    }
    if (api.auth_required) {
        log_info("authentication is on: %zu active API keys (%zu on file)", active, known);
    } else {
        log_warn("authentication is OFF (development mode, loopback, no API keys): any client "
                 "on %s can read and write; creating a key turns it on",
                 o->host);
    }
    log_info("annals %s listening on %s:%u (%s), data in %s, %u I/O threads", ANNALS_VERSION,
             o->host, http_server_port(srv), o->tls_cert ? "HTTPS" : "HTTP", o->data_dir,
             o->threads);
    __atomic_store_n(&api.srv, srv, __ATOMIC_RELEASE);
    int sig = wait_for_signal(&sigs);
    log_info("received signal %d", sig);
    shutdown_gracefully(srv, e);
    keyring_close(keys);
    metrics_free(api.metrics);
    rl_free(api.limiter);
    live_registry_free(api.live);
    return 0;
}

static int verify_one(const char *dbs, const char *name, uint64_t map_bytes)
{
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/%s", dbs, name);
    struct store_verify_report rep;
    int rc = store_verify(dir, map_bytes, &rep);
    if (rc == ERR_NOTFOUND) {
        return 0;
    }
    if (rc && !rep.problem) {
        printf("%s: cannot open: %s\n", name, err_name(rc));
        return 1;
    }
    if (rc) {
        printf("%s: DAMAGED at position %llu: %s (%llu events intact before it)\n", name,
               (unsigned long long)rep.first_bad, rep.problem ? rep.problem : err_name(rc),
               (unsigned long long)rep.events_checked);
    } else {
        printf("%s: ok, %llu events, hash chain intact%s\n", name,
               (unsigned long long)rep.events_checked,
               rep.torn_tail ? " (a torn, unacknowledged last write follows; the server "
                               "discards it at start)"
                             : "");
    }
    return rc ? 1 : 0;
}

static int cmd_verify(const struct options *o)
{
    char lock[4096];
    snprintf(lock, sizeof lock, "%s/LOCK", o->data_dir);
    int lfd = open(lock, O_RDONLY | O_CLOEXEC);
    if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "annals: %s is in use by a running server; stop it first\n", o->data_dir);
        close(lfd);
        return 2;
    }
    char dbs[4096];
    snprintf(dbs, sizeof dbs, "%s/dbs", o->data_dir);
    DIR *d = opendir(dbs);
    if (!d) {
        fprintf(stderr, "annals: no databases under %s\n", o->data_dir);
        if (lfd >= 0) {
            close(lfd);
        }
        return 2;
    }
    int bad = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (engine_db_name_ok(de->d_name, strlen(de->d_name))) {
            bad += verify_one(dbs, de->d_name, o->limits.map_bytes);
        }
    }
    closedir(d);
    if (lfd >= 0) {
        close(lfd);
    }
    return bad ? 1 : 0;
}

/* ---- annals keys ---- */

struct keys_args {
    const char *data_dir, *scope, *database, *name, *not_after, *at, *id;
    long grace_s, rate;
};

static void keys_usage(FILE *f)
{
    fprintf(f, "usage: annals keys create --scope read|write|admin [--database NAME] [--name LABEL]\n"
               "                          [--not-after RFC3339] [--rate-limit PER_SECOND] [--data DIR]\n"
               "       annals keys list [--data DIR]\n"
               "       annals keys revoke ID [--at RFC3339] [--data DIR]\n"
               "       annals keys rotate ID [--grace SECONDS] [--data DIR]\n"
               "Works on a stopped server's data directory (use the /v1/keys API on a running one).\n"
               "A new key is printed once; only its hash is stored.\n");
}

static int keys_parse(int argc, char **argv, struct keys_args *a)
{
    memset(a, 0, sizeof(*a));
    a->data_dir = getenv("ANNALS_DATA") && *getenv("ANNALS_DATA") ? getenv("ANNALS_DATA")
                                                                  : "./data";
    for (int i = 3; i < argc; i++) {
        const char *f = argv[i];
        const char **dst = !strcmp(f, "--data")        ? &a->data_dir
                           : !strcmp(f, "--scope")     ? &a->scope
                           : !strcmp(f, "--database")  ? &a->database
                           : !strcmp(f, "--name")      ? &a->name
                           : !strcmp(f, "--not-after") ? &a->not_after
                           : !strcmp(f, "--at")        ? &a->at
                                                       : NULL;
        if (dst && i + 1 < argc) {
            *dst = argv[++i];
        } else if (!strcmp(f, "--grace") && i + 1 < argc) {
            a->grace_s = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(f, "--rate-limit") && i + 1 < argc) {
            a->rate = strtol(argv[++i], NULL, 10);
        } else if (f[0] != '-' && !a->id) {
            a->id = f;
        } else {
            fprintf(stderr, "annals keys: unknown argument %s\n", f);
            return ERR_INVALID;
        }
    }
    return 0;
}

static void print_key(const struct api_key *k)
{
    char created[40], until[40] = "-";
    time_format(k->created_us, created);
    if (k->not_after_us) {
        time_format(k->not_after_us, until);
    }
    printf("%s  %-5s  %-20s  %-20s  created %s  until %s\n", k->id, key_scope_name(k->scope),
           k->database[0] ? k->database : "(all databases)", k->name[0] ? k->name : "-", created,
           until);
}

static int keys_run(const char *sub, struct keyring *kr, const struct keys_args *a)
{
    char text[KEY_TEXT_MAX];
    struct api_key k;
    int64_t t = 0;
    if (!strcmp(sub, "list")) {
        size_t n;
        struct api_key *all = keyring_list(kr, &n);
        for (size_t i = 0; i < n; i++) {
            print_key(&all[i]);
        }
        free(all);
        return 0;
    }
    if (!strcmp(sub, "create")) {
        enum key_scope scope;
        if (key_scope_parse(a->scope, &scope) || a->rate < 0 || a->rate > LIMIT_RATE_MAX ||
            (a->database && !engine_db_name_ok(a->database, strlen(a->database))) ||
            (a->not_after && time_parse(a->not_after, strlen(a->not_after), &t))) {
            keys_usage(stderr);
            return 2;
        }
        int rc = keyring_create(kr, scope, a->database, a->name, t, (uint32_t)a->rate, text, &k);
        if (!rc) {
            printf("%s\n", text);
            fprintf(stderr, "created key %s (%s); the key above is shown only this once\n", k.id,
                    key_scope_name(k.scope));
        }
        return rc ? 1 : 0;
    }
    if (!a->id) {
        keys_usage(stderr);
        return 2;
    }
    if (!strcmp(sub, "revoke")) {
        t = time_now_us();
        if (a->at && time_parse(a->at, strlen(a->at), &t)) {
            keys_usage(stderr);
            return 2;
        }
        int rc = keyring_revoke(kr, a->id, t);
        if (rc == ERR_NOTFOUND) {
            fprintf(stderr, "annals keys: no key %s\n", a->id);
        }
        return rc ? 1 : 0;
    }
    if (!strcmp(sub, "rotate")) {
        int rc = keyring_rotate(kr, a->id, time_now_us() + a->grace_s * 1000000, text, &k);
        if (rc == ERR_NOTFOUND) {
            fprintf(stderr, "annals keys: no key %s\n", a->id);
        } else if (!rc) {
            printf("%s\n", text);
            fprintf(stderr, "new key %s replaces %s; the key above is shown only this once\n",
                    k.id, a->id);
        }
        return rc ? 1 : 0;
    }
    keys_usage(stderr);
    return 2;
}

static int cmd_keys(int argc, char **argv)
{
    const char *sub = argc > 2 ? argv[2] : "";
    struct keys_args a;
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !*sub) {
        keys_usage(*sub ? stdout : stderr);
        return *sub ? 0 : 2;
    }
    if (keys_parse(argc, argv, &a)) {
        return 2;
    }
    if (mkdir(a.data_dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "annals keys: cannot create %s: %s\n", a.data_dir, strerror(errno));
        return 1;
    }
    char lock[4096];
    snprintf(lock, sizeof lock, "%s/LOCK", a.data_dir);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "annals keys: %s is in use by a running server; use its /v1/keys API\n",
                a.data_dir);
        if (lfd >= 0) {
            close(lfd);
        }
        return 1;
    }
    struct keyring *kr;
    int rc = keyring_open(a.data_dir, &kr);
    if (rc) {
        fprintf(stderr, "annals keys: cannot read %s/keys.json: %s\n", a.data_dir, err_name(rc));
        close(lfd);
        return 1;
    }
    rc = keys_run(sub, kr, &a);
    keyring_close(kr);
    close(lfd);
    return rc;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "help";
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("annals %s\n", ANNALS_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "keys")) {
        return cmd_keys(argc, argv);
    }
    if (!strcmp(cmd, "backup") || !strcmp(cmd, "restore")) {
        return !strcmp(cmd, "backup") ? cli_backup_main(argc - 1, argv + 1)
                                      : cli_restore_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "serve") && strcmp(cmd, "verify")) {
        fprintf(stderr, "annals: unknown command '%s'\n\n", cmd);
        usage(stderr);
        return 2;
    }
    struct options o;
    int rc = parse_options(&o, argc, argv);
    if (rc) {
        return rc > 0 ? 0 : 2;
    }
    return !strcmp(cmd, "serve") ? cmd_serve(&o) : cmd_verify(&o);
}
