/* Every size a client controls has a named default limit here. Runtime values live in
 * struct limits (set from flags / environment), these are the defaults and hard caps. */
#ifndef UTIL_LIMITS_H
#define UTIL_LIMITS_H

#include <stddef.h>
#include <stdint.h>

enum {
    LIMIT_DEFAULT_BODY_BYTES = 4 * 1024 * 1024,   /* one request body */
    LIMIT_DEFAULT_BATCH_EVENTS = 1000,            /* events in one append */
    LIMIT_DEFAULT_EVENT_BYTES = 1024 * 1024,      /* one stored event record */
    LIMIT_DEFAULT_HEADER_BYTES = 16 * 1024,       /* request line + header section */
    LIMIT_DEFAULT_CONNECTIONS = 4096,             /* open client connections */
    LIMIT_DEFAULT_TIMEOUT_S = 60,                 /* idle connection timeout */
    LIMIT_DEFAULT_HEADER_TIMEOUT_S = 10,          /* whole request head */
    LIMIT_DEFAULT_BODY_TIMEOUT_S = 60,            /* whole request body */
    LIMIT_DEFAULT_CLIENT_CONNECTIONS = 1024,      /* open connections from one address */
    LIMIT_STREAM_NAME_BYTES = 256,                /* stream name */
    LIMIT_TYPE_BYTES = 256,                       /* event type */
    LIMIT_DB_NAME_BYTES = 63,                     /* database name */
    LIMIT_TAGS = 64,                              /* tags on one event */
    LIMIT_TAG_BYTES = 256,                        /* one tag */
    LIMIT_SUBJECT_BYTES = 256,                    /* an event's subject */
    LIMIT_APPEND_PARTS = 100,                     /* streams in one multi-stream append */
    LIMIT_APPEND_LOGIC_EVENTS = 4096,             /* deploys and removals of user code in one
                                                     append (one deploy of several components,
                                                     not bounded by --max-batch-events) */
    LIMIT_APPEND_CONDS = 16,                      /* conditions on one append */
    LIMIT_APPEND_CONDS_ALL = LIMIT_APPEND_CONDS + 1, /* ... and its DCB condition */
    LIMIT_MAX_AGE_S = 10 * 365 * 24 * 3600,       /* a stream's maxAge setting, seconds */
    LIMIT_RETENTION_DAYS = 36500,                 /* a database's retention setting */
    LIMIT_RATE_MAX = 10000000,                    /* a rate limit, requests per second */
    LIMIT_DESCRIPTION_BYTES = 1024,               /* a database's description */
    LIMIT_JSON_DEPTH = 64,                        /* nesting of a request body */
    LIMIT_READ_DEFAULT = 100,                     /* events per read page by default */
    LIMIT_READ_MAX = 1000,                        /* events per read page at most */
    LIMIT_DATABASES = 1000,                       /* open databases */
    LIMIT_IDEM_KEY_BYTES = 255,                   /* an Idempotency-Key header value */
    LIMIT_REGION_BYTES = 64,                      /* a database's region label */
    LIMIT_IDEM_STORED_KEY_BYTES = 256,            /* a stored key: an API surface's namespace
                                                     byte, then the client's key */
    LIMIT_DEFAULT_IDEM_TTL_S = 24 * 3600,         /* how long idempotency keys are kept */
    LIMIT_IDEM_TTL_MAX_S = 365 * 24 * 3600,       /* ... at most (a setting) */
    LIMIT_DEFAULT_COMPACT_INTERVAL_S = 3600,      /* databases look for space to reclaim */
    LIMIT_BACKUP_CHUNK_BYTES = 1 << 20,           /* payload of one data frame of a backup
                                                     stream (docs/design/backup.md) */
    LIMIT_BACKUP_PATH_BYTES = 255,                /* a file's relative path in a backup */
    LIMIT_BACKUP_JSON_BYTES = 4 << 20,            /* a backup's manifest, a database's
                                                     summary or an error, as JSON text */
    LIMIT_JPATH_BYTES = 256,                      /* one JSONPath text in a j17 spec */
    LIMIT_JPATH_SEGMENTS = 32,                    /* members and indexes in one JSONPath */
    LIMIT_TICK_HANDLER_BYTES = 256 * 1024,        /* one Tick handler, as JSON text */
    LIMIT_TICK_OPS = 256,                         /* operations in one handler, nested
                                                     if/then/else branches included */
    LIMIT_TICK_DEPTH = 8,                         /* nesting of if/then/else and of the
                                                     predicates and/or/not in one handler */
    LIMIT_TICK_VALUE_DEPTH = 16,                  /* nesting of a literal or template value */
    LIMIT_TICK_STEPS = 100000,                    /* work units one handler may spend on one
                                                     event (operations, values built, array
                                                     elements visited) */
    LIMIT_TICK_ARRAY_ITEMS = 10000,               /* elements in an array a handler grows */
    LIMIT_TICK_STATE_NODES = 1000000,             /* JSON values in one aggregate's state */
    LIMIT_TICK_STATE_DEPTH = 64,                  /* nesting of one aggregate's state */
};

/* The limits in force, as configured. */
struct limits {
    size_t body_bytes;    /* max request body */
    size_t batch_events;  /* max events per append */
    size_t event_bytes;   /* max encoded size of one event */
    size_t header_bytes;  /* max request head */
    unsigned connections; /* max open connections */
    unsigned timeout_s;   /* idle connection timeout */
    unsigned header_timeout_s; /* a request head must arrive whole within this (0 = none) */
    unsigned body_timeout_s;   /* a request body must arrive whole within this (0 = none) */
    unsigned client_connections; /* max open connections from one address (0 = no limit) */
    uint64_t map_bytes;   /* max size of one database's store */
    unsigned idem_ttl_s;  /* idempotency keys live this long unless a database says otherwise */
    unsigned compact_interval_s; /* how often a database checks for space to reclaim (0 =
                                    only when asked) */
};

#endif
