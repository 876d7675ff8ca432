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
#include "api/keys_api.h"
#include "ops/live.h"
#include "ops/out.h"
#include "api/metrics.h"
#include "util/assert.h"
#include "api/native.h"
#include "dialect/deltabase/deltabase.h"
#include "dialect/deql/deql.h"
#include "dialect/deltabase/translate.h"
#include "dialect/evidentsource/evidentsource.h"
#include "dialect/evidentsource/format.h"
#include "dialect/hapnd/format.h"
#include "dialect/hapnd/hapnd.h"
#include "dialect/j17/j17.h"
#include "dialect/j17/spec.h"
#include "gate/gate.h"
#include "gate/ratelimit.h"
#include "auth/keys.h"
#include "cli/backup_cmd.h"
#include "cli/deql_cmd.h"
#include "cli/restore_cmd.h"
#include "engine/engine.h"
#include "http/server.h"
#include "logic/command.h"
#include "logic/logic.h"
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
    const char *allowed_hosts; /* --allowed-hosts */
    const char *dialects;      /* --dialect: NAME=off|PREFIX,... */
    const char *dialect_listen; /* --dialect-listen: NAME=HOST:PORT,... */
    const char *dialect_rate;  /* --dialect-rate: NAME=N,... */
    struct logic_limits logic_limits; /* --logic-cpu-ms, --logic-memory-bytes, --logic-output-bytes */
    unsigned command_tries;   /* --logic-command-tries */
    uint64_t j17_schedule_min_ms; /* --j17-schedule-min-ms (0: j17's) */
    bool deql_readonly;       /* --deql-readonly */
    unsigned deql_workers;    /* --deql-workers */
    uint64_t deql_steps;      /* --deql-sql-steps (0: the default) */
};

/* The API surfaces besides the native one, and where they are mounted by default. */
static const struct {
    const char *name;
    const struct gate_mount *mount;
    const char *prefix;
    const char *family; /* another name whose --dialect-rate applies too, or NULL */
} DIALECTS[] = {
    {"deltabase", &deltabase_mount, "/deltabase", NULL},
    {"evidentsource", &evidentsource_mount, "/evidentsource", NULL},
    {"hapnd", &hapnd_mount, "/hapnd", NULL},
    {"j17", &j17_mount_prod, "/j17", NULL},
    {"j17-staging", &j17_mount_staging, "/j17-staging", "j17"},
    {"j17-test", &j17_mount_test, "/j17-test", "j17"},
    {"deql", &deql_mount, "/deql", NULL},
};
enum { NDIALECTS = sizeof DIALECTS / sizeof DIALECTS[0] };

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
    {"--allowed-hosts", "ANNALS_ALLOWED_HOSTS", "LIST",
     "host names requests may be addressed to (comma-separated, or *; default: loopback names without API keys, any with keys)"},
    {"--dialect", "ANNALS_DIALECT", "NAME=MODE",
     "mount a dialect elsewhere or not at all: deltabase=/path or deltabase=off, comma-separated (default: each under /NAME)"},
    {"--dialect-listen", "ANNALS_DIALECT_LISTEN", "NAME=ADDR",
     "also serve a dialect at the root of its own address, e.g. deltabase=127.0.0.1:8787 (comma-separated)"},
    {"--dialect-rate", "ANNALS_DIALECT_RATE", "NAME=N",
     "a dialect's default rate limit in its own unit (deltabase: requests per minute per key, default 1000; j17: per minute per key, default 500, with 2000 per address; 0 = none)"},
    {"--logic-cpu-ms", "ANNALS_LOGIC_CPU_MS", "N",
     "CPU time one call of user code may take (default 1000)"},
    {"--logic-memory-bytes", "ANNALS_LOGIC_MEMORY_BYTES", "N",
     "memory one component's code may hold (default 67108864)"},
    {"--logic-output-bytes", "ANNALS_LOGIC_OUTPUT_BYTES", "N",
     "largest JSON result of one call of user code (default 1048576)"},
    {"--logic-command-tries", "ANNALS_LOGIC_COMMAND_TRIES", "N",
     "decisions a command handler may run when what it read changed (default 5, at most 100)"},
    {"--j17-schedule-min-ms", "ANNALS_J17_SCHEDULE_MIN_MS", "N",
     "least delay of a j17 scheduled implication (default 300000, j17's 5 minutes; lower it to test)"},
    {"--deql-readonly", "ANNALS_DEQL_READONLY", "BOOL",
     "serve the DeQL dialect read-only: definitions, EXECUTE and other writes answer 403 (default false)"},
    {"--deql-workers", "ANNALS_DEQL_WORKERS", "N", "threads running DeQL's SQL (default 8: a command waits for its commit on its thread)"},
    {"--deql-sql-steps", "ANNALS_DEQL_SQL_STEPS", "N",
     "progress ticks (1000 SQLite instructions each) one DeQL query may take (default 100000)"},
};
enum { NFLAGS = sizeof FLAGS / sizeof FLAGS[0] };

static void usage(FILE *f)
{
    fprintf(f, "annals %s: a self-hosted event-sourcing database server\n\n"
               "usage: annals <command> [flags]\n\n"
               "commands:\n"
               "  serve     run the server (zero configuration: ./data, 127.0.0.1:7070, auth off until a key exists)\n"
               "  verify    check every database's checksums, hash chain and indexes (server stopped;\n"
               "            see verify --help)\n"
               "  keys      create, list, revoke and rotate API keys (server stopped; see keys --help)\n"
               "  backup    copy every database of a running server into a new directory (see backup --help)\n"
               "  restore   bring a backup back as a data directory, checked (see restore --help)\n"
               "  deql      a shell for the DeQL dialect of a running server (see deql --help)\n"
               "  version   print the version\n"
               "  help      this text; 'annals serve --help' lists the flags\n",
            ANNALS_VERSION);
}

/* The flags of annals verify (indexes into FLAGS); serve takes all of them. */
static const int VERIFY_FLAGS[] = {0, 9};

static bool takes_flag(bool verify, int idx)
{
    for (size_t i = 0; verify && i < sizeof VERIFY_FLAGS / sizeof VERIFY_FLAGS[0]; i++) {
        if (VERIFY_FLAGS[i] == idx) {
            return true;
        }
    }
    return !verify;
}

static void usage_flags(FILE *f, bool verify)
{
    if (verify) {
        fprintf(f, "usage: annals verify [--data DIR] [--max-db-bytes N]\n\n"
                   "Checks every database of a stopped server's data directory: record "
                   "checksums,\nthe hash chain, positions and the stream index.\n\n"
                   "exit status: 0 every database is intact; 1 a database is damaged (the "
                   "first\ndamaged position is printed) or cannot be opened; 2 usage error, no "
                   "databases,\nor the directory is in use by a running server.\n\nflags "
                   "(each also read from its environment variable; flags win):\n");
    } else {
        fprintf(f, "usage: annals serve [flags]\n\nflags (each also read from its environment "
                   "variable; flags win):\n");
    }
    for (int i = 0; i < NFLAGS; i++) {
        if (takes_flag(verify, i)) {
            fprintf(f, "  %-20s %-10s %s [%s]\n", FLAGS[i].name, FLAGS[i].arg, FLAGS[i].help,
                    FLAGS[i].env);
        }
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

/* Splits "HOST:PORT" (HOST may be "[v6]"; "localhost" is 127.0.0.1). */
static int split_listen(const char *v, char *host, size_t cap, uint16_t *out_port)
{
    const char *colon = strrchr(v, ':');
    uint64_t port;
    if (!colon || (size_t)(colon - v) >= cap || colon == v ||
        parse_size(colon + 1, 0, 65535, &port)) {
        return ERR_INVALID;
    }
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, cap, "127.0.0.1");
    }
    *out_port = (uint16_t)port;
    return 0;
}

static int parse_listen(struct options *o, const char *v)
{
    return split_listen(v, o->host, sizeof o->host, &o->port);
}

/* The value of NAME in a "NAME=VALUE,..." list into out, or false. */
static bool dialect_value(const char *list, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len > n && !strncmp(p, name, n) && p[n] == '=' && len - n - 1 < cap) {
            memcpy(out, p + n + 1, len - n - 1);
            out[len - n - 1] = '\0';
            return true;
        }
        p += len + (comma ? 1 : 0);
    }
    return false;
}

/* Checks a --dialect (listen false: off or a /prefix) or --dialect-listen (HOST:PORT) list. */
static int dialect_setting_ok(const char *list, bool listen)
{
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char v[80];
        int known = -1;
        for (int i = 0; eq && i < NDIALECTS; i++) {
            known = (size_t)(eq - p) == strlen(DIALECTS[i].name) &&
                            !strncmp(p, DIALECTS[i].name, (size_t)(eq - p)) ? i : known;
        }
        if (known < 0 || !dialect_value(p, DIALECTS[known].name, v, sizeof v)) {
            return ERR_INVALID;
        }
        uint64_t n;
        bool ok = listen ? strrchr(v, ':') != NULL
                         : !strcmp(v, "off") || (v[0] == '/' && v[1] && !strchr(v + 1, '/') &&
                                                 strlen(v) < 64) ||
                               !parse_size(v, 0, LIMIT_RATE_MAX, &n);
        if (!ok) {
            return ERR_INVALID;
        }
        p += len + (comma ? 1 : 0);
    }
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
    case 24: o->allowed_hosts = v; return 0;
    case 25: o->dialects = v; return dialect_setting_ok(v, false);
    case 26: o->dialect_listen = v; return dialect_setting_ok(v, true);
    case 27: o->dialect_rate = v; return dialect_setting_ok(v, false);
    case 28: if (parse_size(v, 1, 600000, &n)) return ERR_INVALID; o->logic_limits.cpu_ms = (uint32_t)n; return 0;
    case 29: if (parse_size(v, 1 << 20, 1ull << 36, &n)) return ERR_INVALID; o->logic_limits.mem_bytes = n; return 0;
    case 30: if (parse_size(v, 1024, 1ull << 30, &n)) return ERR_INVALID; o->logic_limits.output_bytes = n; return 0;
    case 31: if (parse_size(v, 1, COMMAND_TRIES_MAX, &n)) return ERR_INVALID; o->command_tries = (unsigned)n; return 0;
    case 32: if (parse_size(v, 1, J17_SCHEDULE_MIN_MS, &n)) return ERR_INVALID; o->j17_schedule_min_ms = n; return 0;
    case 33:
        if (strcmp(v, "true") && strcmp(v, "false")) return ERR_INVALID;
        o->deql_readonly = !strcmp(v, "true");
        return 0;
    case 34: if (parse_size(v, 1, 64, &n)) return ERR_INVALID; o->deql_workers = (unsigned)n; return 0;
    case 35: if (parse_size(v, 1, 1ull << 40, &n)) return ERR_INVALID; o->deql_steps = n; return 0;
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
    logic_limits_default(&o->logic_limits);
    o->live = (struct live_config){.heartbeat_s = 15, .max_lag = 100000};
}

/* Applies environment variables, then flags (those of cmd: serve or verify). Returns 0, 1
 * (help printed) or ERR_INVALID (the message names the flag). */
static int parse_options(struct options *o, const char *cmd, int argc, char **argv)
{
    bool verify = !strcmp(cmd, "verify");
    defaults(o);
    for (int i = 0; i < NFLAGS; i++) {
        const char *v = getenv(FLAGS[i].env);
        if (takes_flag(verify, i) && v && *v && set_option(o, i, v)) {
            fprintf(stderr, "annals: bad value for %s: %s\n", FLAGS[i].env, v);
            return ERR_INVALID;
        }
    }
    for (int a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            usage_flags(stdout, verify);
            return 1;
        }
        const char *flag = argv[a], *eq = strchr(flag, '=');
        size_t nlen = eq ? (size_t)(eq - flag) : strlen(flag);
        int idx = -1;
        for (int i = 0; i < NFLAGS; i++) {
            if (strlen(FLAGS[i].name) == nlen && !strncmp(FLAGS[i].name, flag, nlen)) {
                idx = takes_flag(verify, i) ? i : -1;
            }
        }
        if (idx < 0) {
            fprintf(stderr, "annals %s: unknown flag %.*s (see annals %s --help)\n", cmd,
                    (int)nlen, flag, cmd);
            return ERR_INVALID;
        }
        const char *v = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!v) {
            fprintf(stderr, "annals %s: %s needs a value (%s)\n", cmd, FLAGS[idx].name,
                    FLAGS[idx].arg);
            return ERR_INVALID;
        }
        if (set_option(o, idx, v)) {
            fprintf(stderr, "annals %s: bad value for %s: %s\n", cmd, FLAGS[idx].name, v);
            return ERR_INVALID;
        }
    }
    log_set_level(o->level);
    return 0;
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

/* Logs the start, waits for SIGINT/SIGTERM, logs it. */
static void serve_until_signal(const struct options *o, struct api *api,
                               struct http_server *srv, const sigset_t *sigs)
{
    if (api->gate->auth_required) {
        size_t active = keyring_active(api->gate->keys, time_now_us()), known;
        free(keyring_list(api->gate->keys, &known));
        log_info("authentication is on: %zu active API keys (%zu on file)", active, known);
    } else {
        log_warn("authentication is OFF (development mode, loopback, no API keys): any client "
                 "on %s can read and write; creating a key turns it on",
                 o->host);
    }
    bool v6 = strchr(o->host, ':') && o->host[0] != '[';
    log_info("annals %s listening on %s%s%s:%u (%s), data in %s, %u I/O threads",
             ANNALS_VERSION, v6 ? "[" : "", o->host, v6 ? "]" : "", http_server_port(srv),
             o->tls_cert ? "HTTPS" : "HTTP", o->data_dir, o->threads);
    __atomic_store_n(&api->srv, srv, __ATOMIC_RELEASE);
    int sig = wait_for_signal(sigs);
    log_info("received signal %d", sig);
}

/* Refuses a start that would serve an open address without keys (logged). Reads the keys
 * on file without creating anything. Returns 0 or 1. */
static int check_keys(const struct options *o, bool *out_known)
{
    struct keyring *keys;
    int rc = keyring_open(o->data_dir, &keys);
    if (rc) {
        log_error("cannot read the API keys in %s/keys.json: %s", o->data_dir, err_name(rc));
        return 1;
    }
    size_t active = keyring_active(keys, time_now_us()), known;
    free(keyring_list(keys, &known));
    keyring_close(keys);
    *out_known = known > 0;
    if (!is_loopback(o->host) && active == 0) {
        log_error("refusing to listen on %s without API keys: anyone could read and write. "
                  "Stop here, create a key with 'annals keys create --scope admin --data %s', "
                  "then start again (or listen on 127.0.0.1 for development)",
                  o->host, o->data_dir);
        return 1;
    }
    return 0;
}

/* Serves until SIGINT/SIGTERM. A start refused for its configuration (no keys on an open
 * address, the port in use, a bad certificate) creates nothing on disk: those are checked
 * before the data directory is opened. */
/* Everything a running server holds. */
struct serving {
    struct gate gate;
    struct api api;
    struct dlb_ctx dlb;
    struct es_ctx es;
    struct hapnd_ctx hapnd;
    struct j17_ctx j17;                      /* one for the three environments' mounts */
    struct deql_ctx deql;
    struct http_server *srv;                 /* the main listener */
    struct http_server *ports[NDIALECTS];    /* --dialect-listen listeners */
    struct gate_port port_of[NDIALECTS];
    struct logic_env *logic_env;             /* the user-code runtimes */
};

/* Mounts the native API at the root and every dialect not turned off. */
static void mount_surfaces(const struct options *o, struct serving *sv)
{
    gate_mount(&sv->gate, &api_native_mount, "", &sv->api);
    void *ctx[NDIALECTS] = {&sv->dlb, &sv->es, &sv->hapnd, &sv->j17, &sv->j17, &sv->j17,
                            &sv->deql};
    for (int i = 0; i < NDIALECTS; i++) {
        char prefix[80], addr[96];
        if (!o->dialects || !dialect_value(o->dialects, DIALECTS[i].name, prefix, sizeof prefix)) {
            snprintf(prefix, sizeof prefix, "%s", DIALECTS[i].prefix);
        }
        bool own_port = o->dialect_listen &&
                        dialect_value(o->dialect_listen, DIALECTS[i].name, addr, sizeof addr);
        if (strcmp(prefix, "off") != 0) {
            gate_mount(&sv->gate, DIALECTS[i].mount, prefix, ctx[i]);
        } else if (own_port) { /* off the main listener, on its own port only */
            gate_mount(&sv->gate, DIALECTS[i].mount, NULL, ctx[i]);
        }
        char rate[24];
        uint64_t n;
        if (o->dialect_rate &&
            (dialect_value(o->dialect_rate, DIALECTS[i].name, rate, sizeof rate) ||
             (DIALECTS[i].family && /* "j17=N" sets the staging and test mounts too */
              dialect_value(o->dialect_rate, DIALECTS[i].family, rate, sizeof rate))) &&
            !parse_size(rate, 0, LIMIT_RATE_MAX, &n)) {
            gate_set_rate(&sv->gate, DIALECTS[i].mount, (uint32_t)n);
            if (n == 0) { /* off: the per-address limit too */
                gate_set_ip_rate(&sv->gate, DIALECTS[i].mount, 0);
            }
        }
    }
}

/* Binds each --dialect-listen address (refusing open ones without keys). Returns 0 or 1. */
static int bind_dialect_ports(const struct options *o, struct serving *sv, bool keys)
{
    for (int i = 0; i < NDIALECTS && o->dialect_listen; i++) {
        char addr[96], host[64];
        uint16_t port;
        if (!dialect_value(o->dialect_listen, DIALECTS[i].name, addr, sizeof addr)) {
            continue;
        }
        if (split_listen(addr, host, sizeof host, &port) != 0) {
            log_error("--dialect-listen %s=%s is not HOST:PORT", DIALECTS[i].name, addr);
            return 1;
        }
        if (!keys && !is_loopback(host)) {
            log_error("refusing to serve the %s dialect on %s without API keys",
                      DIALECTS[i].name, host);
            return 1;
        }
        sv->port_of[i] = (struct gate_port){&sv->gate, DIALECTS[i].mount};
        struct http_config hc = {.host = host, .port = port, .threads = 1,
                                 .limits = o->limits, .handler = gate_handle_port,
                                 .handler_arg = &sv->port_of[i], .observe = api_observe,
                                 .observe_arg = &sv->api, .error_body = gate_http_error_port,
                                 .error_arg = &sv->port_of[i],
                                 .body_limit = gate_body_limit_port,
                                 .body_limit_arg = &sv->port_of[i], .tls_cert = o->tls_cert,
                                 .tls_key = o->tls_key};
        if (http_server_bind(&hc, &sv->ports[i])) {
            return 1;
        }
        bool v6 = strchr(host, ':') && host[0] != '[';
        log_info("%s dialect listening on %s%s%s:%u", DIALECTS[i].name, v6 ? "[" : "", host,
                 v6 ? "]" : "", http_server_port(sv->ports[i]));
    }
    return 0;
}

/* Binds the listeners. A start refused for its configuration (no keys on an open address,
 * a port in use, a bad certificate) creates nothing on disk: this runs before the data
 * directory is opened. Returns 0 or 1. */
static int bind_listeners(const struct options *o, struct serving *sv, bool keys)
{
    struct http_config hc = {.host = o->host, .port = o->port, .threads = o->threads,
                             .limits = o->limits, .handler = gate_handle,
                             .handler_arg = &sv->gate, .observe = api_observe,
                             .observe_arg = &sv->api, .error_body = gate_http_error,
                             .error_arg = &sv->gate, .body_limit = gate_body_limit,
                             .body_limit_arg = &sv->gate, .tls_cert = o->tls_cert,
                             .tls_key = o->tls_key};
    return http_server_bind(&hc, &sv->srv) || bind_dialect_ports(o, sv, keys) ? 1 : 0;
}

static void stop_listeners(struct serving *sv)
{
    for (int i = 0; i < NDIALECTS; i++) {
        http_server_stop(sv->ports[i]);
        sv->ports[i] = NULL;
    }
    http_server_stop(sv->srv);
    sv->srv = NULL;
}

/* The JavaScript worker beside this binary (annals-jsworker), or NULL when there is none. */
static const char *js_worker_path(char *buf, size_t n)
{
    ssize_t len = readlink("/proc/self/exe", buf, n - 32);
    if (len <= 0) {
        return NULL;
    }
    buf[len] = '\0';
    char *slash = strrchr(buf, '/');
    snprintf(slash ? slash + 1 : buf, 32, "annals-jsworker");
    return access(buf, X_OK) == 0 ? buf : NULL;
}

/* Starts the user-code runtimes and the logic layer. Returns 0 or 1 (logged). */
static int open_logic(const struct options *o, struct serving *sv)
{
    static char worker[4096];
    struct logic_env_config lc = {.js_worker_path = js_worker_path(worker, sizeof worker)};
    int rc = logic_env_new(&lc, &sv->logic_env);
    static const struct logic_event_format *const formats[] = {&es_cloudevents_format,
                                                                  &hapnd_format, &j17_format,
                                                                  NULL};
    struct logic_config cfg = {.engine = sv->api.engine, .env = sv->logic_env,
                               .limits = o->logic_limits, .format_event = out_event,
                               .event_formats = formats,
                               .parse_filter = groups_parse_filter,
                               .command_tries = o->command_tries,
                               .webhook_allow = o->webhook_allow};
    if (!rc) rc = logic_new(&cfg, &sv->api.logic);
    if (rc) {
        log_error("cannot start the user-code runtimes: %s", err_name(rc));
        logic_env_free(sv->logic_env);
        sv->logic_env = NULL;
        return 1;
    }
    return 0;
}

/* Opens the data directory and the keys. Returns 0 or 1 (logged). */
static int open_data(const struct options *o, struct serving *sv)
{
    static const struct webhook_format *const formats[] = {&dlb_webhook_format,
                                                           &j17_webhook_format, NULL};
    struct engine_config ec = {.data_dir = o->data_dir, .limits = o->limits,
                               .parse_filter = groups_parse_filter, .format_event = out_event,
                               .webhook_allow = o->webhook_allow, .webhook_formats = formats};
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread: webhooks post with libcurl */
    int rc = engine_open(&ec, &sv->api.engine);
    if (rc) {
        log_error("cannot open data directory %s: %s", o->data_dir, err_name(rc));
        return 1;
    }
    sv->gate.engine = sv->api.engine;
    if (open_logic(o, sv)) {
        engine_close(sv->api.engine);
        return 1;
    }
    rc = keyring_open(o->data_dir, &sv->gate.keys); /* again, now the directory is ours */
    if (rc) {
        log_error("cannot read the API keys in %s/keys.json: %s", o->data_dir, err_name(rc));
        engine_close(sv->api.engine);
        return 1;
    }
    return 0;
}

static int run_listeners(struct serving *sv)
{
    int rc = http_server_run(sv->srv);
    for (int i = 0; !rc && i < NDIALECTS; i++) {
        rc = sv->ports[i] ? http_server_run(sv->ports[i]) : 0;
    }
    return rc;
}

/* Stops taking connections, lets queued commits finish and be answered (up to 5 s for the
 * answers to leave), then closes the listeners and the stores. */
static void shutdown_gracefully(struct serving *sv)
{
    log_info("shutting down: no new connections; finishing in-flight commits");
    struct http_server *all[NDIALECTS + 1] = {sv->srv};
    memcpy(all + 1, sv->ports, sizeof sv->ports);
    for (int i = 0; i <= NDIALECTS; i++) {
        if (all[i]) {
            http_server_quiesce(all[i]);
        }
    }
    deql_ctx_stop(&sv->deql); /* its queued jobs run and answer while appends work */
    engine_stop(sv->api.engine);
    j17_timers_stop(&sv->j17); /* its thread ends with its current job */
    logic_stop(sv->api.logic); /* answers the reads waiting on projections while we can */
    uint64_t deadline = time_mono_ns() + 5000000000ull;
    for (int i = 0; i <= NDIALECTS; i++) {
        while (all[i] && http_server_inflight(all[i]) > 0 && time_mono_ns() < deadline) {
            usleep(10000);
        }
    }
    stop_listeners(sv);
    logic_free(sv->api.logic); /* after engine_stop: no job runs user code any more */
    logic_env_free(sv->logic_env);
    engine_close(sv->api.engine);
    log_info("stopped");
}

static int cmd_serve(const struct options *o)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread inherits this; main waits */
    signal(SIGPIPE, SIG_IGN);
    bool known_keys;
    if (!o->tls_cert != !o->tls_key) {
        log_error("--tls-cert and --tls-key go together");
        return 1;
    }
    if (check_keys(o, &known_keys)) {
        return 1;
    }
    static struct serving sv; /* large; lives until the process ends */
    /* any key on file (even expired or revoked ones) keeps auth on: revoking every key must
       not open the server */
    sv.gate = (struct gate){.cors_origins = o->cors, .allowed_hosts = o->allowed_hosts,
                            .rate_limit = o->rate_limit, .rate_burst = o->rate_burst,
                            .auth_required = known_keys || !is_loopback(o->host)};
    sv.api = (struct api){.gate = &sv.gate, .limits = o->limits, .version = ANNALS_VERSION,
                          .started_us = time_now_us()};
    sv.dlb = (struct dlb_ctx){.limits = o->limits};
    sv.es = (struct es_ctx){.limits = o->limits, .version = ANNALS_VERSION,
                            .started_us = sv.api.started_us};
    sv.hapnd = (struct hapnd_ctx){.limits = o->limits, .started_us = sv.api.started_us};
    hapnd_ctx_init(&sv.hapnd);
    sv.j17 = (struct j17_ctx){.limits = o->limits, .schedule_min_ms = o->j17_schedule_min_ms};
    j17_ctx_init(&sv.j17);
    sv.deql = (struct deql_ctx){.limits = o->limits, .version = ANNALS_VERSION,
                                .readonly = o->deql_readonly, .workers = o->deql_workers};
    sql_limits_default(&sv.deql.sql);
    if (o->deql_steps) {
        sv.deql.sql.steps = o->deql_steps;
    }
    if (deql_ctx_init(&sv.deql)) {
        log_error("cannot start the DeQL workers");
        hapnd_ctx_fini(&sv.hapnd);
        j17_ctx_fini(&sv.j17);
        return 1;
    }
    mount_surfaces(o, &sv);
    ASSERT(gate_route_count(&sv.gate) <= METRICS_ROUTES); /* every route has its counters */
    if (bind_listeners(o, &sv, known_keys) || open_data(o, &sv)) {
        stop_listeners(&sv);
        hapnd_ctx_fini(&sv.hapnd);
        j17_ctx_fini(&sv.j17);
        deql_ctx_fini(&sv.deql);
        return 1;
    }
    sv.api.metrics = metrics_new();
    sv.gate.limiter = rl_new();
    sv.api.live = live_registry_new(&o->live);
    sv.dlb.live = sv.api.live;
    sv.es.live = sv.api.live;
    sv.es.logic = sv.api.logic;
    sv.hapnd.live = sv.api.live;
    sv.hapnd.logic = sv.api.logic;
    sv.j17.logic = sv.api.logic;
    sv.deql.logic = sv.api.logic;
    sv.j17.engine = sv.api.engine;
    int rc = j17_timers_start(&sv.j17);
    if (rc) {
        log_error("cannot start the j17 timer thread: %s", err_name(rc));
    }
    rc = rc ? rc : run_listeners(&sv);
    if (!rc) {
        serve_until_signal(o, &sv.api, sv.srv, &sigs);
    }
    shutdown_gracefully(&sv);
    keyring_close(sv.gate.keys);
    metrics_free(sv.api.metrics);
    rl_free(sv.gate.limiter);
    live_registry_free(sv.api.live);
    hapnd_ctx_fini(&sv.hapnd);
    j17_ctx_fini(&sv.j17);
    deql_ctx_fini(&sv.deql);
    return rc ? 1 : 0;
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
    uint64_t grace_s, rate;
    bool json;
};

static void keys_usage(FILE *f)
{
    fprintf(f, "usage: annals keys create --scope read|write|admin [--database NAME] [--name LABEL]\n"
               "                          [--not-after RFC3339] [--rate-limit PER_SECOND] [--data DIR]\n"
               "       annals keys list [--json] [--data DIR]\n"
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
        uint64_t *num = !strcmp(f, "--grace") ? &a->grace_s
                        : !strcmp(f, "--rate-limit") ? &a->rate : NULL;
        if ((dst || num) && i + 1 == argc) {
            fprintf(stderr, "annals keys: %s needs a value\n", f);
            return ERR_INVALID;
        }
        if (dst) {
            *dst = argv[++i];
        } else if (num) {
            uint64_t max = num == &a->rate ? LIMIT_RATE_MAX : 30 * 86400;
            if (parse_size(argv[++i], 0, max, num)) {
                fprintf(stderr, "annals keys: %s takes a whole number from 0 to %llu\n", f,
                        (unsigned long long)max);
                return ERR_INVALID;
            }
        } else if (!strcmp(f, "--json")) {
            a->json = true;
        } else if (f[0] != '-' && !a->id) {
            a->id = f;
        } else {
            fprintf(stderr, "annals keys: unknown argument %s (see annals keys --help)\n", f);
            return ERR_INVALID;
        }
    }
    return 0;
}

/* True when database name exists in data_dir (or will: "default" in a directory never
 * served). */
static bool database_exists(const char *data_dir, const char *name)
{
    char path[4400];
    struct stat sb;
    snprintf(path, sizeof path, "%s/dbs", data_dir);
    if (stat(path, &sb) != 0) {
        return !strcmp(name, "default");
    }
    snprintf(path, sizeof path, "%s/dbs/%s/data.mdb", data_dir, name);
    return stat(path, &sb) == 0;
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

static int keys_list_print(struct keyring *kr, bool json)
{
    size_t n;
    struct api_key *all = keyring_list(kr, &n);
    if (json) {
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "{\"keys\":[");
        for (size_t i = 0; i < n; i++) {
            buf_adds(&b, i ? "," : "");
            keys_api_key_json(&b, &all[i], time_now_us());
        }
        buf_adds(&b, "]}");
        printf("%s\n", b.ptr);
        buf_fini(&b);
    } else if (n == 0) {
        printf("no API keys (authentication is off until one exists; create one with "
               "annals keys create --scope admin)\n");
    }
    for (size_t i = 0; !json && i < n; i++) {
        print_key(&all[i]);
    }
    free(all);
    return 0;
}

/* Checks the arguments of keys create; prints why and returns 2 when they are wrong. */
static int keys_create_check(const struct keys_args *a, enum key_scope *scope, int64_t *t)
{
    if (key_scope_parse(a->scope, scope)) {
        fprintf(stderr, "annals keys create: --scope is read, write or admin\n");
        return 2;
    }
    if (a->database && (!engine_db_name_ok(a->database, strlen(a->database)) ||
                        !database_exists(a->data_dir, a->database))) {
        fprintf(stderr, "annals keys create: no database %s in %s\n", a->database, a->data_dir);
        return 2;
    }
    if (a->not_after && time_parse(a->not_after, strlen(a->not_after), t)) {
        fprintf(stderr, "annals keys create: --not-after is an RFC 3339 time\n");
        return 2;
    }
    if (a->not_after && *t <= time_now_us()) {
        fprintf(stderr, "annals keys create: --not-after %s is in the past\n", a->not_after);
        return 2;
    }
    return 0;
}

static int keys_run(const char *sub, struct keyring *kr, const struct keys_args *a)
{
    char text[KEY_TEXT_MAX];
    struct api_key k;
    int64_t t = 0;
    if (!strcmp(sub, "list")) {
        return keys_list_print(kr, a->json);
    }
    if (!strcmp(sub, "create")) {
        enum key_scope scope;
        int bad = keys_create_check(a, &scope, &t);
        if (bad) {
            return bad;
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
        int rc = keyring_rotate(kr, a->id, time_now_us() + (int64_t)a->grace_s * 1000000, text,
                                &k);
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
    if (!strcmp(cmd, "deql")) {
        return cli_deql_main(argc - 1, argv + 1);
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
    int rc = parse_options(&o, cmd, argc, argv);
    if (rc) {
        return rc > 0 ? 0 : 2;
    }
    return !strcmp(cmd, "serve") ? cmd_serve(&o) : cmd_verify(&o);
}
