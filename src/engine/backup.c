/* Online backups (backup.h; docs/design/backup.md, "Consistency").
 *
 * Per database, in this order, each step keeping what the restored copy will claim no later
 * than its position P:
 *   1. pin the store: no compaction switches the log generation until step 6;
 *   2. copy groups.json and webhooks.json: their checkpoints are at most the head now <= P;
 *   3. copy the index with its own read transaction: consistent at an indexed position I;
 *   4. take the durable head P >= I, the end of its batch and the generation in force;
 *   5. copy the log file's bytes [0, that end): below the published end, a generation's bytes
 *      never change, and the pin keeps the file;
 *   6. unpin; the summary names P and its hash.
 * The API keys file is copied first (as it is: it is replaced whole, atomically). */
#include "engine/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine_int.h"
#include "store/snapshot.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

enum { FILE_CHUNK = 256 * 1024 }; /* bytes read per step from a state file */

/* One backup being written. */
struct bk {
    struct engine *e;          /* borrowed */
    struct backup_writer w;    /* the stream */
    struct buf files;          /* JSON array items of the files of the current part */
    struct buf dbs;            /* JSON array items: each database's summary */
    size_t ndbs;               /* summaries in dbs */
};

bool engine_backup_stopping(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    bool stopping = e->stopping;
    pthread_mutex_unlock(&e->mu);
    return stopping;
}

static int to_writer(void *arg, const void *p, size_t n)
{
    return backup_writer_data(arg, p, n);
}

/* Ends the open file and lists it (path, bytes, sha256) in b->files. */
static int end_file(struct bk *b, const char *path)
{
    int rc = backup_writer_file_end(&b->w);
    if (rc) {
        return rc;
    }
    char hex[2 * HASH_SHA256_LEN + 1];
    hash_hex(b->w.file_sha, HASH_SHA256_LEN, hex);
    buf_adds(&b->files, b->files.len ? ",{\"path\":" : "{\"path\":");
    buf_add_json_str(&b->files, path, strlen(path));
    buf_printf(&b->files, ",\"bytes\":%llu,\"sha256\":\"%s\"}",
               (unsigned long long)b->w.file_bytes, hex);
    return 0;
}

/* Copies the file at disk_path (when it exists) as path, with its permission bits. State
 * files are replaced whole by a rename, so the open file is one whole version. */
static int copy_file(struct bk *b, const char *disk_path, const char *path)
{
    int fd = open(disk_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 0;
        }
        log_error("backup: cannot open %s: %s", disk_path, strerror(errno));
        return ERR(ERR_IO);
    }
    struct stat sb;
    int rc = fstat(fd, &sb) == 0 ? 0 : ERR(ERR_IO);
    if (!rc) rc = backup_writer_file(&b->w, path, (uint32_t)(sb.st_mode & 0777));
    uint8_t *buf = rc ? NULL : xmalloc(FILE_CHUNK);
    while (!rc) {
        ssize_t n = read(fd, buf, FILE_CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n < 0 ? ERR(ERR_IO) : 0;
            break;
        }
        rc = backup_writer_data(&b->w, buf, (size_t)n);
    }
    free(buf);
    close(fd);
    return rc ? rc : b->w.in_file ? end_file(b, path) : 0;
}

/* Steps 2 to 5 of one database (pinned by the caller); *pt gets the snapshot's point. */
static int copy_db(struct bk *b, struct db *db, struct store_snapshot_point *pt)
{
    static const char *const STATE[] = {"groups.json", "webhooks.json"};
    char disk[4200], path[LIMIT_BACKUP_PATH_BYTES + 1];
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof STATE / sizeof STATE[0]; i++) {
        snprintf(disk, sizeof disk, "%s/%s", db->dir, STATE[i]);
        snprintf(path, sizeof path, "dbs/%s/%s", db->name, STATE[i]);
        rc = copy_file(b, disk, path);
    }
    snprintf(path, sizeof path, "dbs/%s/data.mdb", db->name);
    uint64_t index_bytes;
    if (!rc) rc = backup_writer_file(&b->w, path, 0640);
    if (!rc) rc = store_snapshot_index(db->st, to_writer, &b->w, &index_bytes);
    if (!rc) rc = end_file(b, path);
    if (!rc) rc = store_snapshot_point(db->st, pt);
    char name[64];
    store_log_name(pt->generation, name, sizeof name);
    snprintf(path, sizeof path, "dbs/%s/%s", db->name, name);
    if (!rc) rc = backup_writer_file(&b->w, path, 0640);
    if (!rc) rc = store_snapshot_log(db->st, pt, to_writer, &b->w);
    return rc ? rc : end_file(b, path);
}

/* Backs one database up: DB_BEGIN, its files, DB_END with its summary (kept for the
 * manifest). */
static int backup_db(struct bk *b, struct db *db)
{
    int64_t t0 = time_now_us();
    buf_reset(&b->files);
    int rc = backup_writer_text(&b->w, BACKUP_DB_BEGIN, db->name, strlen(db->name));
    if (rc) {
        return rc;
    }
    struct store_snapshot_point pt = {0};
    store_pin(db->st);
    rc = copy_db(b, db, &pt);
    store_unpin(db->st);
    if (rc) {
        return rc;
    }
    char hex[2 * HASH_SHA256_LEN + 1], at[TIME_RFC3339_LEN];
    hash_hex(pt.hash, HASH_SHA256_LEN, hex);
    time_format(t0, at);
    struct buf s;
    buf_init(&s);
    buf_adds(&s, "{\"name\":");
    buf_add_json_str(&s, db->name, strlen(db->name));
    buf_printf(&s, ",\"position\":%llu,\"headHash\":\"%s\",\"logGeneration\":%llu,"
               "\"logBytes\":%llu,\"startedAt\":\"%s\",\"files\":[%.*s]}",
               (unsigned long long)pt.position, hex, (unsigned long long)pt.generation,
               (unsigned long long)pt.log_end, at, (int)b->files.len,
               b->files.ptr ? b->files.ptr : "");
    rc = backup_writer_text(&b->w, BACKUP_DB_END, s.ptr, s.len);
    buf_adds(&b->dbs, b->ndbs++ ? "," : "");
    buf_add(&b->dbs, s.ptr, s.len);
    buf_fini(&s);
    log_info("backup: database %s at position %llu (log generation %llu, %llu log bytes)",
             db->name, (unsigned long long)pt.position, (unsigned long long)pt.generation,
             (unsigned long long)pt.log_end);
    return rc;
}

/* Every open database, in name order. */
static int backup_dbs(struct bk *b)
{
    size_t n;
    char **names = engine_db_names(b->e, &n);
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        struct db *db;
        if (engine_backup_stopping(b->e)) {
            rc = ERR_SHUTDOWN;
        } else if (engine_db_acquire(b->e, names[i], strlen(names[i]), &db) == 0) {
            rc = backup_db(b, db);
            engine_db_release(db);
        } /* else deleted since the list was made: not in the backup */
    }
    engine_names_free(names, n);
    return rc;
}

/* The MANIFEST: what the backup holds (BACKUP.json). keys holds the top-level files' items. */
static int send_manifest(struct bk *b, const char *version, int64_t started_us,
                         const struct buf *keys)
{
    char t0[TIME_RFC3339_LEN], t1[TIME_RFC3339_LEN];
    time_format(started_us, t0);
    time_format(time_now_us(), t1);
    struct buf m;
    buf_init(&m);
    buf_printf(&m, "{\"format\":%d,\"serverVersion\":", BACKUP_FORMAT_VERSION);
    buf_add_json_str(&m, version, strlen(version));
    buf_printf(&m, ",\"startedAt\":\"%s\",\"finishedAt\":\"%s\",\"files\":[%.*s],"
               "\"databases\":[%.*s],\"totals\":{\"files\":%llu,\"bytes\":%llu}}",
               t0, t1, (int)keys->len, keys->ptr ? keys->ptr : "", (int)b->dbs.len,
               b->dbs.ptr ? b->dbs.ptr : "", (unsigned long long)b->w.files,
               (unsigned long long)b->w.bytes);
    int rc = m.len <= LIMIT_BACKUP_JSON_BYTES ? backup_writer_text(&b->w, BACKUP_MANIFEST,
                                                                   m.ptr, m.len)
                                              : ERR(ERR_TOOBIG);
    buf_fini(&m);
    return rc;
}

int engine_backup(struct engine *e, const char *version, backup_sink_fn *sink, void *arg)
{
    int64_t t0 = time_now_us();
    struct bk b = {.e = e};
    backup_writer_init(&b.w, sink, arg);
    buf_init(&b.files);
    buf_init(&b.dbs);
    struct buf keys;
    buf_init(&keys);
    char disk[4200];
    snprintf(disk, sizeof disk, "%s/keys.json", e->data_dir);
    int rc = backup_writer_header(&b.w);
    if (!rc) rc = copy_file(&b, disk, "keys.json");
    if (b.files.len) {
        buf_add(&keys, b.files.ptr, b.files.len);
    }
    if (!rc) rc = backup_dbs(&b);
    if (!rc) rc = send_manifest(&b, version, t0, &keys);
    if (!rc) rc = backup_writer_end(&b.w);
    if (rc) {
        log_warn("backup failed after %llu files: %s", (unsigned long long)b.w.files,
                 err_name(rc));
    } else {
        log_info("backup done: %zu databases, %llu files, %llu bytes in %.3f s", b.ndbs,
                 (unsigned long long)b.w.files, (unsigned long long)b.w.bytes,
                 (double)(time_now_us() - t0) / 1e6);
    }
    buf_fini(&keys);
    buf_fini(&b.dbs);
    buf_fini(&b.files);
    backup_writer_fini(&b.w);
    return rc;
}
