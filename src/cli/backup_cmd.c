/* `annals backup`: the client side of an online backup (backup_cmd.h).
 *
 * libcurl hands the answer's bytes to on_body; they are decoded frame by frame
 * (backup_frame_decode), checked in order by a backup_reader (which also checks each file's
 * size and SHA-256 and the END frame's totals) and written under DIR.partial as they come:
 * a file per FILE .. FILE_END, synced and closed at its end. The MANIFEST is kept; at END it
 * must list exactly the files that came. Only then is it written as BACKUP.json, the
 * directories synced and DIR.partial renamed to DIR. Any failure removes DIR.partial.
 *
 *   receiving --END, manifest matches--> finishing --rename--> done (exit 0)
 *   receiving --error frame, bad frame, checksum, HTTP error, connection lost, no END--> failed:
 *   DIR.partial removed (exit 1) */
#include "cli/backup_cmd.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/frame.h"
#include "cli/common.h"
#include "util/errors.h"
#include "util/timeutil.h"

enum {
    ERR_BODY_MAX = 64 * 1024, /* bytes of a refusal's body kept for its message */
    PROGRESS_MS = 500,        /* the byte counter is printed at most this often */
    CONNECT_TIMEOUT_S = 10,   /* to reach the server */
    STALL_TIMEOUT_S = 120,    /* no byte for this long fails (servers send keepalives) */
};

/* A file received whole: what the manifest must list. */
struct got_file {
    char path[LIMIT_BACKUP_PATH_BYTES + 1];
    uint64_t bytes;
    char sha[2 * HASH_SHA256_LEN + 1];
};

/* One run of the command. */
struct client {
    const char *dir;           /* --to */
    const char *url;           /* the server's base URL */
    char partial[4096];        /* DIR.partial: where everything goes first */
    CURL *curl;                /* owned */
    long status;               /* the answer's HTTP status (0 until known) */
    struct buf in;             /* received bytes not yet decoded, from in_off */
    size_t in_off;
    struct buf err_body;       /* a refusal's body (at most ERR_BODY_MAX) */
    struct backup_reader rd;   /* the stream's checker */
    int fd;                    /* the file being written, -1 between files */
    char path[LIMIT_BACKUP_PATH_BYTES + 1]; /* its relative path */
    struct buf manifest;       /* the MANIFEST frame's text */
    struct got_file *files;    /* files received whole */
    size_t nfiles, cap;
    char why[700];             /* the first failure, "" while none */
    uint64_t received;         /* answer bytes so far */
    uint64_t started_ms, shown_ms; /* for the byte counter */
    uint64_t db_bytes;         /* rd.bytes when the current database began */
    size_t ndbs;               /* databases received */
};

/* Records the first failure. Returns ERR_IO, for `return fail(...)`. */
__attribute__((format(printf, 2, 3))) static int fail(struct client *c, const char *fmt, ...)
{
    if (!c->why[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->why, sizeof c->why, fmt, ap);
        va_end(ap);
    }
    return ERR_IO;
}

static uint64_t now_ms(void)
{
    return time_mono_ns() / 1000000;
}

/* ---- files ---- */

/* Creates the directories above rel (under partial). */
static int make_parents(struct client *c, const char *rel)
{
    char p[4400];
    int n = snprintf(p, sizeof p, "%s/%s", c->partial, rel);
    for (int i = (int)strlen(c->partial) + 1; i < n; i++) {
        if (p[i] != '/') {
            continue;
        }
        p[i] = '\0';
        if (mkdir(p, 0750) != 0 && errno != EEXIST) {
            return fail(c, "cannot create %s: %s", p, strerror(errno));
        }
        p[i] = '/';
    }
    return 0;
}

static int open_file(struct client *c, const struct backup_frame *f)
{
    snprintf(c->path, sizeof c->path, "%.*s", (int)f->path.len, f->path.ptr);
    if (make_parents(c, c->path)) {
        return ERR_IO;
    }
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", c->partial, c->path);
    c->fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (c->fd < 0) {
        return fail(c, "cannot create %s: %s", p, strerror(errno));
    }
    return fchmod(c->fd, f->mode) == 0 ? 0 : fail(c, "cannot set the mode of %s", p);
}

static int close_file(struct client *c, const struct backup_frame *f)
{
    int rc = fsync(c->fd) == 0 ? 0 : fail(c, "cannot sync %s: %s", c->path, strerror(errno));
    close(c->fd);
    c->fd = -1;
    if (c->nfiles == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->files = xrealloc(c->files, c->cap * sizeof(*c->files));
    }
    struct got_file *g = &c->files[c->nfiles++];
    snprintf(g->path, sizeof g->path, "%s", c->path);
    g->bytes = f->size;
    hash_hex(f->sha256, HASH_SHA256_LEN, g->sha);
    return rc;
}

/* ---- frames ---- */

/* The server's ERROR frame: it stopped the backup. */
static int server_error(struct client *c, const struct backup_frame *f)
{
    json_t *o = json_loadb(f->payload.ptr, f->payload.len, 0, NULL);
    const char *code = json_string_value(json_object_get(o, "code"));
    const char *msg = json_string_value(json_object_get(o, "message"));
    fail(c, "the server stopped the backup: %s: %s", code ? code : "error",
         msg ? msg : "(no message)");
    json_decref(o);
    return ERR_IO;
}

static void db_done(struct client *c, const struct backup_frame *f)
{
    json_t *o = json_loadb(f->payload.ptr, f->payload.len, 0, NULL);
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *hash = json_string_value(json_object_get(o, "headHash"));
    char size[32];
    cli_format_bytes(c->rd.bytes - c->db_bytes, size, sizeof size);
    fprintf(stderr, "annals backup: database %s: done, position %lld, %s (head hash %.16s...)\n",
            name ? name : "?", (long long)json_integer_value(json_object_get(o, "position")),
            size, hash ? hash : "?");
    c->ndbs++;
    json_decref(o);
}

static int take_frame(struct client *c, const struct backup_frame *f)
{
    if (f->type == BACKUP_ERROR) {
        return server_error(c, f);
    }
    int rc = backup_reader_next(&c->rd, f);
    if (rc == ERR_CORRUPT && f->type == BACKUP_FILE_END) {
        return fail(c, "checksum mismatch: %s is not what the server sent (size or SHA-256)",
                    c->path);
    }
    if (rc) {
        return fail(c, rc == ERR_CORRUPT ? "the end frame's totals do not match what came"
                                         : "the server sent a malformed backup stream");
    }
    switch (f->type) {
    case BACKUP_FILE: return open_file(c, f);
    case BACKUP_DATA:
        return cli_write_all(c->fd, f->payload.ptr, f->payload.len) == 0
                   ? 0 : fail(c, "cannot write %s: %s", c->path, strerror(errno));
    case BACKUP_FILE_END: return close_file(c, f);
    case BACKUP_DB_BEGIN:
        c->db_bytes = c->rd.bytes;
        fprintf(stderr, "annals backup: database %.*s: started\n", (int)f->payload.len,
                f->payload.ptr);
        return 0;
    case BACKUP_DB_END: db_done(c, f); return 0;
    case BACKUP_MANIFEST: buf_add(&c->manifest, f->payload.ptr, f->payload.len); return 0;
    }
    return 0;
}

/* Decodes and takes every whole frame received. */
static int take_frames(struct client *c)
{
    for (;;) {
        struct backup_frame f;
        ssize_t n = backup_frame_decode((const uint8_t *)c->in.ptr + c->in_off,
                                        c->in.len - c->in_off, &f);
        if (n == BACKUP_INCOMPLETE) {
            break;
        }
        if (n < 0) {
            return fail(c, "the server sent a malformed backup stream (a bad frame)");
        }
        int rc = take_frame(c, &f);
        c->in_off += (size_t)n;
        if (rc) {
            return rc;
        }
    }
    if (c->in_off == c->in.len) {
        buf_reset(&c->in);
        c->in_off = 0;
    } else if (c->in_off > (1u << 20)) {
        memmove(c->in.ptr, c->in.ptr + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
    return 0;
}

/* ---- the transfer ---- */

/* The first bytes of the answer: is it a backup? */
static int look_at_answer(struct client *c)
{
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
    const char *type = NULL;
    curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &type);
    if (c->status == 200 && (!type || strncmp(type, "application/vnd.annals.backup", 29))) {
        return fail(c, "%s did not answer with a backup (Content-Type: %s)", c->url,
                    type ? type : "none");
    }
    return 0;
}

static void show_progress(struct client *c, bool force)
{
    uint64_t t = now_ms();
    if (!force && t - c->shown_ms < PROGRESS_MS) {
        return;
    }
    c->shown_ms = t;
    char size[32];
    cli_format_bytes(c->received, size, sizeof size);
    double secs = (double)(t - c->started_ms) / 1000.0;
    fprintf(stderr, "annals backup: %s received (%.1f s)\n", size, secs);
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct client *c = arg;
    size_t n = size * nmemb;
    if (!c->status && look_at_answer(c)) {
        return 0; /* stops the transfer */
    }
    if (c->status != 200) {
        size_t keep = c->err_body.len + n <= ERR_BODY_MAX ? n : 0;
        buf_add(&c->err_body, p, keep);
        return n;
    }
    c->received += n;
    buf_add(&c->in, p, n);
    int rc = take_frames(c);
    show_progress(c, false);
    return rc ? 0 : n;
}

/* The message of a refusal: HTTP status and the server's error JSON. */
static int refused(struct client *c)
{
    json_t *o = json_loadb(c->err_body.ptr ? c->err_body.ptr : "", c->err_body.len, 0, NULL);
    json_t *e = json_object_get(o, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    fail(c, "the server answered HTTP %ld: %s: %s", c->status, code ? code : "(no error code)",
         msg ? msg : "(no message)");
    json_decref(o);
    return ERR_IO;
}

/* Fetches the backup into partial. Returns 0 when the stream ended with END. */
static int fetch(struct client *c, const char *key)
{
    char url[4200], errbuf[CURL_ERROR_SIZE] = "", auth[600];
    snprintf(url, sizeof url, "%s/v1/backup", c->url);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/vnd.annals.backup");
    if (key && *key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT_S);
    curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, (long)STALL_TIMEOUT_S);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "annals-backup");
    CURLcode cc = curl_easy_perform(c->curl);
    curl_slist_free_all(hdrs);
    if (!c->status) { /* no body came: the status, if any, is known now */
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
    }
    if (c->why[0]) {
        return ERR_IO;
    }
    if (cc != CURLE_OK && !c->status) {
        return fail(c, "cannot reach the server at %s: %s", c->url,
                    errbuf[0] ? errbuf : curl_easy_strerror(cc));
    }
    if (c->status != 200) {
        return refused(c);
    }
    if (cc != CURLE_OK) {
        return fail(c, "the backup stream was cut off: %s",
                    errbuf[0] ? errbuf : curl_easy_strerror(cc));
    }
    return backup_reader_done(&c->rd)
               ? 0 : fail(c, "the backup stream was cut off before its end frame (the server "
                             "stopped or the connection broke)");
}

/* ---- finishing ---- */

/* True when the manifest's file list (items of arr) is among what came; counts them. */
static bool files_listed(struct client *c, json_t *arr, size_t *count)
{
    size_t i;
    json_t *f;
    json_array_foreach(arr, i, f) {
        const char *path = json_string_value(json_object_get(f, "path"));
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        json_int_t bytes = json_integer_value(json_object_get(f, "bytes"));
        bool found = false;
        for (size_t k = 0; path && sha && k < c->nfiles && !found; k++) {
            found = !strcmp(c->files[k].path, path) && !strcmp(c->files[k].sha, sha) &&
                    (uint64_t)bytes == c->files[k].bytes;
        }
        if (!found) {
            return false;
        }
        (*count)++;
    }
    return json_is_array(arr);
}

/* The manifest must be this format and list exactly the files that came. */
static int check_manifest(struct client *c)
{
    json_t *m = json_loadb(c->manifest.ptr ? c->manifest.ptr : "", c->manifest.len, 0, NULL);
    size_t listed = 0, i;
    json_t *db;
    bool ok = json_integer_value(json_object_get(m, "format")) == BACKUP_FORMAT_VERSION &&
              files_listed(c, json_object_get(m, "files"), &listed);
    json_t *dbs = json_object_get(m, "databases");
    ok = ok && json_is_array(dbs);
    json_array_foreach(dbs, i, db) {
        ok = ok && files_listed(c, json_object_get(db, "files"), &listed);
    }
    json_decref(m);
    return ok && listed == c->nfiles ? 0 : fail(c, "the manifest does not list the files "
                                                   "that came");
}

/* Writes BACKUP.json, syncs every directory and renames partial to dir. */
static int finish(struct client *c)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/BACKUP.json", c->partial);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    int rc = fd >= 0 ? 0 : fail(c, "cannot create %s: %s", p, strerror(errno));
    if (!rc) rc = cli_write_all(fd, c->manifest.ptr, c->manifest.len);
    if (!rc) rc = cli_write_all(fd, "\n", 1);
    if (!rc && fsync(fd) != 0) rc = ERR_IO;
    if (fd >= 0) {
        close(fd);
    }
    for (size_t i = 0; !rc && i < c->nfiles; i++) {
        snprintf(p, sizeof p, "%s/%s", c->partial, c->files[i].path);
        rc = cli_fsync_parent(p); /* dbs/<name>/ and the top; dbs/ below */
    }
    snprintf(p, sizeof p, "%s/dbs", c->partial);
    if (!rc && access(p, F_OK) == 0) rc = cli_fsync_dir(p);
    if (!rc) rc = cli_fsync_dir(c->partial);
    if (rc) {
        return fail(c, "cannot write or sync %s: %s", c->partial, strerror(errno));
    }
    if (rename(c->partial, c->dir) != 0) {
        return fail(c, "cannot rename %s to %s: %s", c->partial, c->dir, strerror(errno));
    }
    return cli_fsync_parent(c->dir) == 0 ? 0 : fail(c, "cannot sync the directory of %s",
                                                    c->dir);
}

/* ---- the command ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: annals backup --to DIR [--server URL] [--key KEY]\n\n"
               "Copies a consistent snapshot of every database of a running server (its log up\n"
               "to a committed position, its index, subscriptions, webhooks) and the API keys\n"
               "into DIR, a new data directory, without stopping writes. DIR must not exist or\n"
               "be empty; it appears only once the backup is complete and checked (BACKUP.json\n"
               "describes it). Restore it with 'annals restore --from DIR --data DEST'.\n\n"
               "  --to DIR      where the backup goes\n"
               "  --server URL  the server (default http://127.0.0.1:7070) [ANNALS_SERVER]\n"
               "  --key KEY     an admin API key for all databases [ANNALS_KEY]\n\n"
               "Exit status: 0 done, 1 the backup failed, 2 usage error.\n");
}

/* Parses the flags into *to, *url, *key. Returns 0, 1 (help printed) or 2 (usage error). */
static int parse_args(int argc, char **argv, const char **to, const char **url,
                      const char **key)
{
    *to = NULL;
    *url = getenv("ANNALS_SERVER") && *getenv("ANNALS_SERVER") ? getenv("ANNALS_SERVER")
                                                                : "http://127.0.0.1:7070";
    *key = getenv("ANNALS_KEY");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--to") ? to : !strcmp(a, "--server") ? url
                           : !strcmp(a, "--key") ? key : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "annals backup: unknown argument or missing value: %s\n\n", a);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!*to || !**to) {
        fprintf(stderr, "annals backup: --to DIR is required\n\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* DIR must be new or empty, DIR.partial must not exist; then DIR.partial is made. Returns 0,
 * 1 or 2 (the exit code). */
static int prepare(struct client *c)
{
    struct stat sb;
    if (stat(c->dir, &sb) == 0 && !cli_dir_is_empty(c->dir)) {
        fprintf(stderr, "annals backup: %s exists and is not an empty directory\n", c->dir);
        return 2;
    }
    snprintf(c->partial, sizeof c->partial, "%s.partial", c->dir);
    if (lstat(c->partial, &sb) == 0) {
        fprintf(stderr, "annals backup: %s exists: an earlier backup was interrupted; remove it "
                        "first\n", c->partial);
        return 2;
    }
    if (mkdir(c->partial, 0750) != 0) {
        fprintf(stderr, "annals backup: cannot create %s: %s\n", c->partial, strerror(errno));
        return 1;
    }
    return 0;
}

static void client_fini(struct client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    curl_easy_cleanup(c->curl);
    backup_reader_fini(&c->rd);
    buf_fini(&c->in);
    buf_fini(&c->err_body);
    buf_fini(&c->manifest);
    free(c->files);
}

int cli_backup_main(int argc, char **argv)
{
    struct client c = {.fd = -1};
    const char *key;
    int rc = parse_args(argc, argv, &c.dir, &c.url, &key);
    if (rc) {
        return rc == 1 ? 0 : 2;
    }
    char url[2048];
    snprintf(url, sizeof url, "%s", c.url);
    for (size_t n = strlen(url); n > 0 && url[n - 1] == '/'; n--) {
        url[n - 1] = '\0';
    }
    c.url = url;
    rc = prepare(&c);
    if (rc) {
        return rc;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c.curl = curl_easy_init();
    backup_reader_init(&c.rd);
    buf_init(&c.in);
    buf_init(&c.err_body);
    buf_init(&c.manifest);
    c.started_ms = c.shown_ms = now_ms();
    fprintf(stderr, "annals backup: fetching %s/v1/backup into %s\n", c.url, c.dir);
    rc = c.curl ? fetch(&c, key) : fail(&c, "cannot start libcurl");
    if (!rc) rc = check_manifest(&c);
    if (!rc) rc = finish(&c);
    if (rc) {
        if (c.fd >= 0) {
            close(c.fd);
            c.fd = -1;
        }
        cli_remove_tree(c.partial);
        fprintf(stderr, "annals backup: FAILED: %s; nothing was kept\n", c.why);
    } else {
        char size[32];
        cli_format_bytes(c.rd.bytes, size, sizeof size);
        show_progress(&c, true);
        printf("backup complete: %zu databases, %llu files, %s in %s (BACKUP.json describes "
               "it)\n", c.ndbs, (unsigned long long)c.nfiles, size, c.dir);
    }
    client_fini(&c);
    curl_global_cleanup();
    return rc ? 1 : 0;
}
