/* `annals restore` (restore_cmd.h).
 *
 *   claim DEST (lock, emptiness) --> stage keys.json.restore and dbs/.restore-<name>, each file
 *   checked against the manifest --> verify every staged database (store_verify, then its last
 *   position and hash against the manifest) --> move the keys, then each database, into place
 *   any failure --> the staged files are removed; DEST holds what it held before */
#include "cli/restore_cmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/frame.h"
#include "cli/common.h"
#include "store/store.h"
#include "util/errors.h"
#include "util/fsutil.h"
#include "util/hash.h"

enum { COPY_CHUNK = 1 << 20 }; /* bytes read per copy step */

#define RESTORE_MAP_BYTES (64ull << 30) /* the server's default --max-db-bytes */

/* A database of the backup, staged under DEST. */
struct staged {
    char name[LIMIT_DB_NAME_BYTES + 1];
    char dir[4200];                    /* DEST/dbs/.restore-<name> */
    uint64_t position;                 /* the manifest's */
    char hash[2 * HASH_SHA256_LEN + 1];/* the manifest's headHash */
    uint64_t log_bytes;                /* its largest file, for the verify mapping */
};

/* One run of the command. */
struct restore {
    const char *from;        /* --from */
    const char *dest;        /* --data */
    json_t *manifest;        /* BACKUP.json, owned */
    int lock_fd;             /* DEST/LOCK, held (flock) until the end */
    char keys_tmp[4200];     /* DEST/keys.json.restore, "" when the backup has no keys */
    struct staged *dbs;      /* owned, ndbs entries */
    size_t ndbs;
};

/* ---- copying ---- */

/* Copies from/rel to dst (its permission bits too), syncing it, and checks its size and
 * SHA-256 against the manifest's entry f. Returns 0 or 1 (message printed). */
static int copy_checked(const char *from, const char *rel, const char *dst, json_t *f,
                        uint64_t *out_bytes)
{
    char src[4400];
    snprintf(src, sizeof src, "%s/%s", from, rel);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (in < 0 || fstat(in, &sb) != 0) {
        fprintf(stderr, "annals restore: cannot read %s: %s\n", src, strerror(errno));
        if (in >= 0) {
            close(in);
        }
        return 1;
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, sb.st_mode & 0777);
    struct hash_sha256_ctx sha = {0};
    hash_sha256_begin(&sha);
    uint8_t *buf = xmalloc(COPY_CHUNK);
    uint64_t total = 0;
    int rc = out < 0;
    while (!rc) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n < 0;
            break;
        }
        hash_sha256_add(&sha, buf, (size_t)n);
        total += (uint64_t)n;
        rc = cli_write_all(out, buf, (size_t)n) != 0;
    }
    rc = rc || fsync(out) != 0;
    if (rc) {
        fprintf(stderr, "annals restore: cannot copy %s to %s: %s\n", src, dst, strerror(errno));
    }
    free(buf);
    close(in);
    if (out >= 0) {
        close(out);
    }
    uint8_t digest[HASH_SHA256_LEN];
    char hex[2 * HASH_SHA256_LEN + 1];
    hash_sha256_end(&sha, digest);
    hash_hex(digest, HASH_SHA256_LEN, hex);
    const char *want = json_string_value(json_object_get(f, "sha256"));
    if (!rc && (!want || strcmp(want, hex) != 0 ||
                (uint64_t)json_integer_value(json_object_get(f, "bytes")) != total)) {
        fprintf(stderr, "annals restore: %s is not what BACKUP.json lists (size or SHA-256): "
                        "the backup is damaged\n", src);
        rc = 1;
    }
    *out_bytes = total;
    return rc;
}

/* Stages keys.json (when the backup lists it) as DEST/keys.json.restore. */
static int stage_keys(struct restore *r)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(r->manifest, "files"), i, f) {
        const char *path = json_string_value(json_object_get(f, "path"));
        if (!path || strcmp(path, "keys.json") != 0) {
            fprintf(stderr, "annals restore: BACKUP.json lists an unknown file %s\n",
                    path ? path : "(none)");
            return 1;
        }
        snprintf(r->keys_tmp, sizeof r->keys_tmp, "%s/keys.json.restore", r->dest);
        uint64_t bytes;
        if (copy_checked(r->from, path, r->keys_tmp, f, &bytes)) {
            return 1;
        }
    }
    return 0;
}

/* The file name of a manifest path of database name: dbs/<name>/<file>, else NULL. */
static const char *db_file_name(const char *path, const char *name)
{
    size_t nl = strlen(name);
    if (!path || !backup_path_ok(path, strlen(path)) || strncmp(path, "dbs/", 4) != 0 ||
        strncmp(path + 4, name, nl) != 0 || path[4 + nl] != '/' ||
        strchr(path + 5 + nl, '/') != NULL) {
        return NULL;
    }
    return path + 5 + nl;
}

/* Copies the files of database d (its manifest entry db) into its staging directory. */
static int stage_db(struct restore *r, struct staged *d, json_t *db)
{
    snprintf(d->dir, sizeof d->dir, "%s/dbs/.restore-%s", r->dest, d->name);
    cli_remove_tree(d->dir); /* what an interrupted restore left */
    if (mkdir(d->dir, 0750) != 0) {
        fprintf(stderr, "annals restore: cannot create %s: %s\n", d->dir, strerror(errno));
        return 1;
    }
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(db, "files"), i, f) {
        const char *path = json_string_value(json_object_get(f, "path"));
        const char *file = db_file_name(path, d->name);
        if (!file) {
            fprintf(stderr, "annals restore: BACKUP.json lists a bad path for database %s: "
                            "%s\n", d->name, path ? path : "(none)");
            return 1;
        }
        char dst[4400];
        snprintf(dst, sizeof dst, "%s/%s", d->dir, file);
        uint64_t bytes;
        if (copy_checked(r->from, path, dst, f, &bytes)) {
            return 1;
        }
        d->log_bytes = bytes > d->log_bytes ? bytes : d->log_bytes;
    }
    return cli_fsync_dir(d->dir) == 0 ? 0 : 1;
}

/* Stages every database of the manifest (r->dbs filled). */
static int stage_dbs(struct restore *r)
{
    json_t *dbs = json_object_get(r->manifest, "databases");
    r->dbs = xcalloc(json_array_size(dbs) + 1, sizeof(*r->dbs));
    char path[4200];
    snprintf(path, sizeof path, "%s/dbs", r->dest);
    if (mkdir(path, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "annals restore: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t i;
    json_t *db;
    json_array_foreach(dbs, i, db) {
        const char *name = json_string_value(json_object_get(db, "name"));
        const char *hash = json_string_value(json_object_get(db, "headHash"));
        if (!name || !backup_db_name_ok(name, strlen(name)) || !hash ||
            strlen(hash) != 2 * HASH_SHA256_LEN) {
            fprintf(stderr, "annals restore: BACKUP.json lists a bad database entry\n");
            return 1;
        }
        struct staged *d = &r->dbs[r->ndbs++];
        snprintf(d->name, sizeof d->name, "%s", name);
        snprintf(d->hash, sizeof d->hash, "%s", hash);
        d->position = (uint64_t)json_integer_value(json_object_get(db, "position"));
        if (stage_db(r, d, db)) {
            return 1;
        }
    }
    return 0;
}

/* ---- checking and moving into place ---- */

/* Checks a staged database as annals verify does, and that it ends where the manifest says.
 * Returns 0 or 1 (message printed). */
static int verify_staged(const struct staged *d, struct store_verify_report *rep)
{
    uint64_t map = RESTORE_MAP_BYTES;
    while (map < 2 * d->log_bytes) {
        map *= 2;
    }
    int rc = store_verify(d->dir, map, rep);
    if (rc) {
        printf("%s: DAMAGED at position %llu: %s (%llu events intact before it)\n", d->name,
               (unsigned long long)rep->first_bad, rep->problem ? rep->problem : err_name(rc),
               (unsigned long long)rep->events_checked);
        return 1;
    }
    char hex[2 * HASH_SHA256_LEN + 1];
    hash_hex(rep->last_hash, HASH_SHA256_LEN, hex);
    if (rep->last_position != d->position || (d->position && strcmp(hex, d->hash) != 0)) {
        printf("%s: does not end where BACKUP.json says (position %llu, expected %llu)\n",
               d->name, (unsigned long long)rep->last_position,
               (unsigned long long)d->position);
        return 1;
    }
    return 0;
}

/* Moves the keys, then every database, into place and syncs the directories. */
static int commit(struct restore *r)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/keys.json", r->dest);
    if (r->keys_tmp[0] && (rename(r->keys_tmp, path) != 0 || cli_fsync_dir(r->dest) != 0)) {
        fprintf(stderr, "annals restore: cannot move %s into place: %s\n", path,
                strerror(errno));
        return 1;
    }
    r->keys_tmp[0] = '\0';
    for (size_t i = 0; i < r->ndbs; i++) {
        snprintf(path, sizeof path, "%s/dbs/%s", r->dest, r->dbs[i].name);
        if (rename(r->dbs[i].dir, path) != 0) {
            fprintf(stderr, "annals restore: cannot move %s into place: %s\n", path,
                    strerror(errno));
            return 1;
        }
        r->dbs[i].dir[0] = '\0';
    }
    snprintf(path, sizeof path, "%s/dbs", r->dest);
    if (cli_fsync_dir(path) != 0) {
        return 1;
    }
    /* the databases are the backup's: a first start must not add "default" (engine.c) */
    static const char NOTE[] = "restored from a backup: its databases, no others\n";
    return fs_write_atomic(r->dest, "INITIALIZED", NOTE, sizeof NOTE - 1, 0640) == 0 ? 0 : 1;
}

/* Removes whatever is still staged. */
static void unstage(struct restore *r)
{
    if (r->keys_tmp[0]) {
        unlink(r->keys_tmp);
    }
    for (size_t i = 0; i < r->ndbs; i++) {
        if (r->dbs[i].dir[0]) {
            cli_remove_tree(r->dbs[i].dir);
        }
    }
}

/* ---- the command ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: annals restore --from DIR --data DEST\n\n"
               "Restores a backup made by 'annals backup' into DEST, a data directory that\n"
               "does not exist or holds no databases and no keys (no server may be running on\n"
               "it). Every file is checked against BACKUP.json, every database as 'annals\n"
               "verify' checks it; nothing is moved into place unless all pass. Then start\n"
               "'annals serve --data DEST'.\n\n"
               "Exit status: 0 restored, 1 the restore failed, 2 usage error.\n");
}

static int parse_args(int argc, char **argv, struct restore *r)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--from") ? &r->from : !strcmp(a, "--data") ? &r->dest
                                                                                  : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "annals restore: unknown argument or missing value: %s\n\n", a);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!r->from || !r->dest || !*r->from || !*r->dest) {
        fprintf(stderr, "annals restore: --from DIR and --data DEST are required\n\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* Reads FROM/BACKUP.json. Returns 0 or 2 (not a complete backup of this format). */
static int load_manifest(struct restore *r)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/BACKUP.json", r->from);
    json_error_t je;
    r->manifest = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    json_t *fmt = json_object_get(r->manifest, "format");
    if (!r->manifest || json_integer_value(fmt) != BACKUP_FORMAT_VERSION ||
        !json_is_array(json_object_get(r->manifest, "databases")) ||
        !json_is_array(json_object_get(r->manifest, "files"))) {
        fprintf(stderr, "annals restore: %s is not a complete backup (%s missing or not of "
                        "format %d)\n", r->from, path, BACKUP_FORMAT_VERSION);
        return 2;
    }
    return 0;
}

/* True when DEST/dbs holds a database directory (a name the server would open). */
static bool has_databases(const char *dest)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/dbs", dest);
    DIR *d = opendir(path);
    bool found = false;
    struct dirent *de;
    while (d && !found && (de = readdir(d)) != NULL) {
        found = backup_db_name_ok(de->d_name, strlen(de->d_name));
    }
    if (d) {
        closedir(d);
    }
    return found;
}

/* Creates DEST if needed, takes its lock, and checks it holds no databases and no keys.
 * Returns 0 or 2. */
static int claim_dest(struct restore *r)
{
    if (mkdir(r->dest, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "annals restore: cannot create %s: %s\n", r->dest, strerror(errno));
        return 2;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/LOCK", r->dest);
    r->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (r->lock_fd < 0 || flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "annals restore: %s is in use by a running server (or not writable); "
                        "stop it first\n", r->dest);
        return 2;
    }
    snprintf(path, sizeof path, "%s/keys.json", r->dest);
    if (access(path, F_OK) == 0 || has_databases(r->dest)) {
        fprintf(stderr, "annals restore: %s already holds databases or keys; restore into a "
                        "new or empty data directory\n", r->dest);
        return 2;
    }
    return 0;
}

/* Stages, checks and commits. Returns 0 or 1. */
static int run(struct restore *r)
{
    int rc = stage_keys(r);
    if (!rc) rc = stage_dbs(r);
    struct store_verify_report *reps = xcalloc(r->ndbs + 1, sizeof(*reps));
    for (size_t i = 0; !rc && i < r->ndbs; i++) {
        rc = verify_staged(&r->dbs[i], &reps[i]);
    }
    if (!rc) rc = commit(r);
    for (size_t i = 0; !rc && i < r->ndbs; i++) {
        printf("%s: restored, %llu events, position %llu, hash chain intact\n", r->dbs[i].name,
               (unsigned long long)reps[i].events_checked,
               (unsigned long long)r->dbs[i].position);
    }
    free(reps);
    if (rc) {
        unstage(r);
        fprintf(stderr, "annals restore: FAILED; %s is left as it was\n", r->dest);
    }
    return rc;
}

int cli_restore_main(int argc, char **argv)
{
    struct restore r = {.lock_fd = -1};
    int rc = parse_args(argc, argv, &r);
    if (rc) {
        return rc == 1 ? 0 : 2;
    }
    rc = load_manifest(&r);
    if (!rc) rc = claim_dest(&r);
    if (!rc) rc = run(&r);
    if (!rc) {
        printf("restored %zu databases into %s; start it with: annals serve --data %s\n",
               r.ndbs, r.dest, r.dest);
    }
    if (r.lock_fd >= 0) {
        close(r.lock_fd);
    }
    json_decref(r.manifest);
    free(r.dbs);
    return rc;
}
