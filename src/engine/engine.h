/* The engine: the set of databases, the append pipeline (one group-commit writer thread per
 * database) and reads. Knows nothing of HTTP.
 *
 * Threads: engine functions may be called from any thread unless noted. An append's done
 * callback runs on the database's writer thread. */
#ifndef ENGINE_ENGINE_H
#define ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/expect.h"
#include "model/event.h"
#include "util/buf.h"
#include "util/limits.h"
#include "util/workq.h"

struct engine;
struct db;
struct webhook_format;

struct filter;
struct event_rec;
/* Appends the JSON object of an event (webhook bodies carry events as reads show them). */
typedef void engine_event_json_fn(struct buf *out, const struct event_rec *ev);
/* Parses a filter's JSON text (durable subscriptions keep theirs as text). 0 or ERR_INVALID. */
typedef int engine_filter_parse_fn(struct slice text, struct filter *out);

struct engine_config {
    const char *data_dir;  /* borrowed; must outlive the engine */
    struct limits limits;  /* copied */
    engine_filter_parse_fn *parse_filter; /* NULL: subscriptions take only empty filters */
    engine_event_json_fn *format_event;   /* an event's JSON in webhook bodies */
    const char *webhook_allow; /* hosts or addresses webhooks may reach though private,
                                  comma-separated ("*" = any; borrowed) */
    const struct webhook_format *const *webhook_formats; /* the API surfaces' webhook
                                  envelopes (engine/webhooks.h), NULL-ended; borrowed */
    unsigned workers;      /* threads of the engine's worker pool (0 = ENGINE_WORKERS) */
};

enum {
    ENGINE_WORKERS = 2,          /* worker threads by default (engine_submit) */
    ENGINE_WORK_QUEUE = 1024,    /* jobs waiting for a worker at most */
};

/* Locks data_dir (one process per data directory), opens every database under it (creating
 * data_dir when missing, and the "default" database at the data directory's first start only,
 * recorded in <data>/INITIALIZED: once deleted it stays deleted) and starts their writers.
 * Returns 0,
 * ERR_EXISTS (another process holds the directory), ERR_IO, ERR_CORRUPT or ERR_INVALID. */
int engine_open(const struct engine_config *cfg, struct engine **out);
/* Stops taking appends (they fail with ERR_SHUTDOWN), runs the jobs queued on the worker pool
 * and waits for them and for the background jobs, lets every writer commit and answer what is
 * queued, and joins the writers. Reads keep working. Idempotent. */
void engine_stop(struct engine *e);
/* Runs fn(arg, cancelled) on the engine's worker pool (util/workq.h; docs/design/
 * architecture.md, "Threads"): short work that must not run on an I/O or writer thread, such
 * as a webhook creation, which resolves a host name and syncs a state file. The job may use
 * the engine (databases it holds a reference on, appends: the writers run until every queued
 * job has run) and answer a deferred request with http_respond. engine_stop runs every job
 * queued before it, so cancelled is false for engine jobs today; a job still treats
 * cancelled true as "release what you hold and answer 503". Returns 0 (fn runs exactly once,
 * on a worker thread), ERR_TOOBIG (ENGINE_WORK_QUEUE jobs are waiting: answer 503) or
 * ERR_SHUTDOWN (engine_stop has begun); fn never runs on error. Any thread. */
int engine_submit(struct engine *e, workq_fn *fn, void *arg);
/* Background jobs: long work that uses the engine from a thread of its own and must end
 * before the engine stops (a backup stream, which may last as long as its client reads: it
 * would hold a worker for that long). begin returns false once engine_stop has begun (then do
 * not start the job); end is called once per true. */
bool engine_job_begin(struct engine *e);
void engine_job_end(struct engine *e);
/* Stops taking appends, lets each writer commit and answer what is queued, then closes every
 * store. No database may be acquired any more. NULL is a no-op. */
void engine_close(struct engine *e);

/* Settings of a database, given when it is created (DeltaBase's event store settings) and
 * changed with engine_db_set_settings. */
struct db_settings {
    char description[LIMIT_DESCRIPTION_BYTES + 1]; /* free text, "" when none */
    uint64_t retention_days;   /* events recorded longer ago are hidden (0 = keep all) */
    uint64_t max_stream_bytes; /* appends that would make a stream larger are refused (0 = no
                                  limit); a stream's size is the sum of its stored records */
    uint32_t rate_limit;       /* requests per second per client on this database (0 = the
                                  server's default) */
    char region[LIMIT_REGION_BYTES + 1]; /* a placement label a client gave ("" = none); Annals
                                             keeps and shows it, nothing more */
    int64_t updated_us;        /* when the settings last changed (0 = at creation) */
    uint64_t idem_ttl_s;       /* idempotency keys live this long (0 = the server's default,
                                  limits.idem_ttl_s) */
};

/* True when name matches [a-z0-9][a-z0-9-]{0,62}. */
bool engine_db_name_ok(const char *name, size_t len);
/* Creates a database (settings NULL: the defaults). Returns 0, ERR_INVALID (bad name), ERR_EXISTS, ERR_TOOBIG (too many
 * databases), ERR_NOSPACE or ERR_IO. */
int engine_db_create(struct engine *e, const char *name, size_t len,
                     const struct db_settings *settings);
/* The database's settings. */
void engine_db_settings(struct db *db, struct db_settings *out);
/* Replaces the database's description and settings: durable before it returns, then in
 * force at once for reads (retention), the writer's checks (maximum stream size), rate
 * limits and idempotency keys (TTL); a compaction planned under the old retention gives up.
 * Returns 0, ERR_IO or ERR_NOSPACE. Any thread but the database's own. */
int engine_db_set_settings(struct db *db, const struct db_settings *s);
/* Its rate_limit setting alone (cheap: for every request). */
uint32_t engine_db_rate_limit(const struct db *db);
/* Called once a deleted database's files are gone; err is 0 or ERR_IO. */
typedef void engine_deleted_fn(void *arg, int err);
/* Deletes a database: takes it out of the registry at once (later lookups fail), answers its
 * queued appends, and when the last request using it lets go, removes its files and calls
 * done, on the thread that let go (possibly this one, before returning). Never waits for
 * other requests. Returns 0 (done will run once) or ERR_NOTFOUND (done never runs). */
int engine_db_delete(struct engine *e, const char *name, size_t len, engine_deleted_fn *done,
                     void *arg);
/* Takes a reference on a database. Returns 0 or ERR_NOTFOUND. Release with engine_db_release. */
int engine_db_acquire(struct engine *e, const char *name, size_t len, struct db **out);
void engine_db_release(struct db *db);
/* Sorted names of all databases: a malloc'd array of malloc'd strings, *out_count entries.
 * Free with engine_names_free. */
char **engine_db_names(struct engine *e, size_t *out_count);
void engine_names_free(char **names, size_t count);
const char *engine_db_name(const struct db *db);
/* An id no other database opened by this process has had (a database deleted and made again
 * under its name gets a new one). */
uint64_t engine_db_id(const struct db *db);
/* A counter of db's lifecycle changes (stream settings, deletions, retention) since this
 * process opened it: what reads show changed otherwise than by appends when it moved. */
uint64_t engine_db_lifecycle_changes(struct db *db);
/* The engine db belongs to. */
struct engine *engine_db_engine(const struct db *db);

/* Statistics of a database. */
struct db_info {
    uint64_t streams;        /* streams created */
    uint64_t events;         /* events stored */
    uint64_t head;           /* newest position (0 = empty) */
    uint8_t head_hash[32];   /* chain hash at head */
    uint64_t file_bytes;     /* data file size */
    uint64_t used_bytes;     /* bytes of pages in use */
    int64_t created_us;      /* database creation time */
    int64_t oldest_us;       /* recorded time of position 1 (0 when empty) */
    int64_t newest_us;       /* recorded time of the head (0 when empty) */
    uint64_t commits;        /* write transactions committed since start */
    uint64_t appends;        /* append requests acknowledged since start */
    uint64_t commit_ns;      /* time spent in durable commits since start */
    uint64_t indexed;        /* newest position the index covers (the rest is in the tail) */
    uint64_t syncs;          /* event log syncs since start */
    uint64_t sync_ns;        /* time spent in them */
    uint64_t index_commits;  /* index transactions since start (one sync each) */
    uint64_t index_ns;       /* time spent indexing */
    uint64_t queue_depth;    /* appends waiting for the writer now */
    uint64_t idem_keys;      /* idempotency keys in the index (expired ones until purged) */
};
int engine_db_info(struct db *db, struct db_info *out);

/* Compaction of a database's log (docs/design/storage.md, "Compaction"). */
struct compact_status {
    bool running;              /* a compaction (or its check) runs now */
    bool asked;                /* one was requested and has not started yet */
    uint64_t runs;             /* compactions that rewrote the log since start */
    uint64_t checks;           /* looks for reclaimable space since start (runs included) */
    uint64_t generation;       /* the log file's generation */
    uint64_t reclaimed_bytes;  /* log bytes reclaimed since start */
    uint64_t redacted_events;  /* records redacted since start */
    int64_t last_us;           /* when the last check or run ended (0 = none yet) */
    int last_err;              /* its outcome: 0 or ERR_* */
    uint64_t last_redacted;    /* records it redacted (or found redactable, when it only
                                  checked) */
    uint64_t last_reclaimed;   /* bytes it reclaimed (or found reclaimable) */
    uint64_t last_log_before;  /* log bytes in use before it */
    uint64_t last_log_after;   /* ... and after */
    bool last_rewrote;         /* it rewrote the log */
};
/* Asks db's compactor to compact now, whatever there is to reclaim; returns at once. */
void engine_compact_request(struct db *db);
void engine_compact_status(struct db *db, struct compact_status *out);

/* One event to append. Slices are borrowed from the caller until the append completes. */
struct append_event {
    uint8_t id[16];          /* event id; filled by the engine when !has_id */
    bool has_id;             /* client gave the id */
    bool has_time;           /* client gave an effective time */
    int64_t time_us;         /* effective time when has_time */
    struct slice type;       /* event type, 1..LIMIT_TYPE_BYTES */
    struct slice data;       /* minified JSON value */
    struct slice metadata;   /* minified JSON object ("{}" when none) */
    struct slice tags;       /* canonical JSON array of strings ("[]" when none) */
    struct slice subject;    /* subject, empty when none */
    uint64_t position;       /* result: its position */
    uint64_t version;        /* result: its version in the stream */
    uint8_t hash[32];        /* result: its chain hash, once written (not for duplicates) */
};

/* The events of one stream in an append, with their expected version. */
struct append_part {
    struct slice stream;           /* stream name */
    struct append_event *events;   /* count events */
    size_t count;                  /* >= 1 */
    struct expect expect;          /* expected version */
    uint64_t actual_version;       /* result: the version the check saw (the stream as the
                                      earlier parts of the request leave it) */
};

enum { APPEND_CONFLICTS_MAX = 16 }; /* conflicting positions reported per condition */

/* A condition over the database (query/filter.h): with L the position of the newest event
 * matching filter (0 when none), require min <= L (has_min) and L <= max (has_max). DCB's
 * failIfEventsMatch with `after` is max = after. */
struct append_cond {
    const struct filter *filter;   /* borrowed */
    bool has_min, has_max;
    uint64_t min, max;
    uint64_t last_position;        /* result: L */
    uint64_t conflicts[APPEND_CONFLICTS_MAX]; /* result: matching positions > max, ascending */
    size_t nconflicts;
};

/* Why an append was refused with ERR_CONFLICT. */
enum append_conflict {
    CONFLICT_VERSION,      /* parts[failed].expect */
    CONFLICT_CONDITION,    /* conds[failed] */
    CONFLICT_DUPLICATE_ID, /* event index failed (over all parts, in order): stored with other
                              content, or the request mixes stored and new ids */
    CONFLICT_DELETED,      /* parts[failed]'s stream (or the op's target) is hard-deleted */
    CONFLICT_NO_STREAM,    /* a soft delete of a stream that does not exist */
    CONFLICT_TOO_LARGE,    /* parts[failed] would grow past the database's max stream size */
    CONFLICT_TOO_BROAD,    /* conds[failed] could not be decided within its examination budget
                              (its filter is not narrowed by an index) */
    CONFLICT_IDEM_MISMATCH, /* the idempotency key was used by a request with another hash */
};

/* Lifecycle settings of a stream (the newest event of its "$$<name>" metadata stream). */
struct stream_meta {
    bool tombstone;            /* hard-deleted: reads and writes answer 410 */
    uint64_t truncate_before;  /* versions below are hidden (0 = none) */
    uint64_t max_count;        /* only the newest max_count versions are visible (0 = all) */
    uint64_t max_age_us;       /* only events recorded within this age are visible (0 = all) */
};

/* A stream lifecycle operation carried by an append request (see struct append_req). */
enum meta_op {
    META_NONE,        /* a normal append */
    META_SET,         /* replace the stream's settings with append_req.meta */
    META_SOFT_DELETE, /* hide every event so far (the stream can be written again) */
    META_HARD_DELETE, /* tombstone: reads and writes answer ERR_DELETED from now on */
};

struct append_req;
typedef void append_done_fn(struct append_req *req);

/* Flags of an append request (and of engine_events_parse). */
enum {
    APPEND_TAGS_NO_COMMA = 1u << 0, /* no tag may hold a comma (an API surface forbids them) */
};

/* What is wrong with a request engine_append refused with ERR_INVALID (engine/canon.h). The
 * API surface names the place in its own request shape. */
struct append_fault {
    const char *code;   /* "invalid_event", "invalid_name" or "invalid_request"; static */
    size_t part;        /* the part */
    bool has_event;     /* the fault is in event `event` of that part (else in the part) */
    size_t event;
    char leaf[64];      /* the member: "type", "tags", "stream", ... ("" = the whole event) */
    char message[160];
};

/* An append request: parts committed together, all or nothing, if every expected version and
 * condition holds. Events get consecutive positions in request order. A stream may appear in
 * several parts when none of them expects a version (engine/canon.h): each part continues the
 * stream's versions where the earlier parts left them. Owned by the caller; valid until done
 * runs. */
/* The stream that holds stream-less (DCB) events: they are found by their types and tags.
 * Names starting with '$' are the engine's; callers use this name, never spell it. */
#define ENGINE_DCB_STREAM "$dcb"
/* The stream that holds a database's deployed user code (logic/component.h): one event per
 * deploy or removal. Written only by the logic layer. */
#define ENGINE_LOGIC_STREAM "$logic"

struct append_req {
    struct append_part *parts;     /* nparts >= 1, in the order their events are laid out */
    size_t nparts;
    struct append_cond *conds;     /* nconds conditions, may be 0 */
    size_t nconds;
    unsigned flags;                /* APPEND_* */
    append_done_fn *done;          /* called exactly once when engine_append returned 0 */
    void *arg;                     /* caller's context for done */
    /* Lifecycle operations (op != META_NONE): the caller gives no parts, only target; the
     * engine makes the one part itself (the stream's metadata stream and one settings event,
     * whose data the writer fills in from meta_text, buf_init'd by the caller, who frees it). */
    enum meta_op op;
    struct slice target;           /* the stream whose settings change (engine_append copies
                                      it, and points target at its copy) */
    struct stream_meta meta;       /* META_SET: the new settings; result: the settings stored */
    struct buf meta_text;          /* the event's data, written by the writer */
    /* Results, valid in done: */
    int err;                       /* 0, ERR_CONFLICT, ERR_NOSPACE, ERR_IO, ERR_GONE, ... */
    enum append_conflict conflict; /* with ERR_CONFLICT: which check */
    size_t failed;                 /* with ERR_CONFLICT: index of the part, condition or event */
    bool duplicate;                /* every event was already stored: nothing written, results
                                      are the stored positions and versions */
    bool dup_in_batch;             /* (engine) some of them only earlier in the same batch */
    int64_t recorded_us;           /* commit time (of the original, for duplicates) */
    /* Idempotency (optional, idem_key.len > 0): the writer looks the key up first. Stored (and
     * not expired) with the same idem_hash: nothing is done, replayed is set and answer_status
     * and answer hold the stored answer. With another hash: ERR_CONFLICT,
     * CONFLICT_IDEM_MISMATCH. Else the request runs; when it writes events, render runs on the
     * writer thread once they are laid out (positions, versions, recorded_us set) and before
     * the write, and must fill answer_status and answer: that answer is stored with the
     * events, in the same durable write. A request that writes nothing stores no key. */
    struct slice idem_key;         /* borrowed; 1..LIMIT_IDEM_STORED_KEY_BYTES when used */
    uint8_t idem_hash[32];         /* SHA-256 of what the request asks */
    void (*render)(struct append_req *req);
    bool replayed;                 /* result: the stored answer is in answer */
    uint16_t answer_status;        /* HTTP status of the answer */
    struct buf answer;             /* its body (buf_init'd and freed by the caller) */
    struct append_fault fault;     /* result: why engine_append returned ERR_INVALID */
    struct append_req *next;       /* queue link, engine-owned while queued */
    /* engine-owned: a lifecycle operation's part */
    struct append_part meta_part;
    struct append_event meta_event;
    char meta_stream[2 + LIMIT_STREAM_NAME_BYTES + 1];
};

/* Bytes the stored record of ev in stream would take (compare with limits.event_bytes). */
size_t engine_event_bytes(struct slice stream, const struct append_event *ev);

/* Queues req for the database's writer. Makes a lifecycle operation's part, or checks the
 * request against the event contract (engine/canon.h), then validates sizes (events in all
 * parts at most limits.batch_events, each event at most limits.event_bytes). Returns 0 (done
 * will run once, on the writer thread, after the commit that holds the events has returned,
 * or with req->err set), or ERR_TOOBIG / ERR_INVALID (req->fault says why; or a lifecycle
 * operation without a valid target) / ERR_SHUTDOWN / ERR_GONE (done never runs). */
int engine_append(struct db *db, struct append_req *req);

/* engine_append that waits: sets req->done and req->arg itself, queues req and blocks until
 * its commit has returned. Returns engine_append's refusal, or 0 with req->err (and the
 * results) set. Blocks: worker threads only, never an I/O or writer thread. */
int engine_append_wait(struct db *db, struct append_req *req);

/* Called per event read. ev borrows storage: valid only during the call. 0 = go on, 1 = stop. */
typedef int engine_event_fn(void *arg, const struct event_rec *ev);

/* A point in time to read at (both may be given; the earlier wins). */
struct as_of {
    bool has_pos;     /* see the database as of position pos */
    uint64_t pos;
    bool has_time;    /* ... as of the newest position recorded at or before time_us */
    int64_t time_us;
};

/* True when events of db leave reads as time passes: the database has a retention period, or
 * some stream a maxAge. */
bool engine_db_ages_out(struct db *db);
/* False for the streams the database's retention does not apply to (ENGINE_LOGIC_STREAM: the
 * deployed code is kept however old; compaction keeps it too). */
bool engine_retained(struct slice stream);
/* The lifecycle settings of stream (zeros and false when it has none). */
bool engine_stream_settings(struct db *db, struct slice stream, struct stream_meta *out);
/* Looks a stream up as of at (NULL = now). Returns 0, ERR_NOTFOUND, ERR_CORRUPT or ERR_IO. */
int engine_stream_info(struct db *db, struct slice stream, const struct as_of *at,
                       struct stream_rec *out);
/* Reads up to limit events of a stream from version from (inclusive), forward or backward, in
 * one snapshot, as of at (NULL = now); *out_stream gets the stream row of that view and
 * *out_first_visible (may be NULL) its oldest visible version (lifecycle settings). Returns 0,
 * ERR_NOTFOUND, ERR_CORRUPT or ERR_IO. */
int engine_read_stream(struct db *db, struct slice stream, const struct as_of *at,
                       uint64_t from, bool backward, size_t limit, engine_event_fn *fn,
                       void *arg, struct stream_rec *out_stream, uint64_t *out_first_visible);

/* A filtered read of the log (query/filter.h). */
struct engine_query {
    const struct filter *filter;    /* borrowed */
    bool has_from, has_to;          /* position range, inclusive, in the direction of travel */
    uint64_t from, to;              /* (defaults: the whole view) */
    bool backward;                  /* newest first */
    size_t limit;                   /* events per page */
    size_t budget;                  /* candidates examined per page at most */
    bool has_recorded_from, has_recorded_to; /* recorded-time range, inclusive */
    int64_t recorded_from_us, recorded_to_us;
    struct as_of at;                /* point in time */
};

struct engine_query_result {
    uint64_t head;       /* newest position of the view */
    uint64_t next;       /* where the next page starts; 0 = no more */
    size_t delivered;    /* events passed to fn */
    size_t examined;     /* candidates checked */
};

/* Runs q on one snapshot, calling fn per matching event in order. Returns 0, ERR_CORRUPT or
 * ERR_IO. */
int engine_query(struct db *db, const struct engine_query *q, engine_event_fn *fn, void *arg,
                 struct engine_query_result *out);

/* Called per listed stream: 0 = go on, 1 = stop. */
typedef int engine_stream_fn(void *arg, struct slice name, const struct stream_rec *s);
/* Lists streams whose names start with prefix and sort after `after` (after.ptr NULL: from
 * the first), in byte order, as of at (NULL = now). */
int engine_list_streams(struct db *db, struct slice prefix, struct slice after,
                        const struct as_of *at, engine_stream_fn *fn, void *arg);

/* Reads one event by position. Returns 0, ERR_NOTFOUND, ERR_CORRUPT or ERR_IO. */
int engine_read_event(struct db *db, uint64_t position, engine_event_fn *fn, void *arg);

/* The newest durable position of db (0 = empty); cheap (an atomic load). */
uint64_t engine_db_head(struct db *db);

/* ---- live fan-out: being told of commits ---- */

struct engine_watch;
/* Called on the writer thread after every commit that wrote events (gone false), and once
 * when the database is deleted (gone true; no call follows). It must be quick and must not
 * call into the engine: it is meant to wake whoever reads the new events. */
typedef void engine_commit_fn(void *arg, bool gone);
/* Registers fn for db's commits. Returns 0, or ERR_GONE when db is deleted already. */
int engine_watch(struct db *db, engine_commit_fn *fn, void *arg, struct engine_watch **out);
/* Unregisters; on return fn is not running and will not run again. NULL is a no-op. */
void engine_unwatch(struct engine_watch *w);

#endif
