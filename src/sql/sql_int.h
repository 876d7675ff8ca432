/* Internals shared by the SQL engine's files: the connection (sql.c) and the events virtual
 * table (events.c). Nothing outside src/sql includes this. */
#ifndef SQL_SQL_INT_H
#define SQL_SQL_INT_H

#include <sqlite3.h>

#include "sql/sql.h"

/* An events table's definition, deep-copied from struct sql_events_def: every string owned. */
struct events_def {
    char *table;
    char *stream_type;
    char *tag;
    char *prefix;
    size_t prefix_len;
    struct sql_field *fields;  /* nfields; name and decl owned */
    size_t nfields;
    bool has_sensitive;        /* some field is sensitive */
};

enum { SQL_STMT_CACHE = 32 }; /* prepared statements kept per connection */

/* A prepared statement kept for its text (a decision's STATE AS runs with every command). */
struct cached_stmt {
    char *sql;            /* owned copy of the text it was prepared from */
    size_t len;
    sqlite3_stmt *st;     /* NULL: an empty slot */
    uint64_t used;        /* when last used (the connection's counter): the oldest goes */
};

/* Why the running statement was stopped by us rather than by SQLite (checked first when a
 * statement fails, since SQLite then only says SQLITE_INTERRUPT or SQLITE_ERROR). */
struct sql_conn {
    sqlite3 *db;                  /* the connection, owned */
    struct sql_limits lim;        /* copied at sql_open */
    bool sealed;                  /* sql_seal was called: only reads are authorized */
    bool defining;                /* one of our own definitions runs (before sealing) */
    bool loading;                 /* one of our own statements on loaded tables runs */
    struct cached_stmt cache[SQL_STMT_CACHE]; /* sql_query's statements, by text */
    uint64_t cache_clock;
    char **loaded;                /* names of the tables sql_load_table made (nloaded) */
    size_t nloaded;
    struct events_def **defs;     /* ndefs owned definitions; a table's module argument is its
                                     index here, so a vtab never parses strings */
    size_t ndefs;
    /* The session (sql_begin .. sql_end). */
    struct db *edb;               /* borrowed; NULL outside a session */
    uint64_t snapshot;            /* every scan reads as of this position */
    bool reveal;                  /* sensitive fields are shown */
    struct sql_read reads[SQL_MAX_READS]; /* the read set since sql_begin, deduplicated */
    size_t nreads;
    /* The running sql_query. */
    uint64_t ticks;               /* progress-handler calls so far */
    bool out_of_steps;            /* the progress handler stopped it */
    bool denied;                  /* the authorizer refused something while preparing it */
    size_t scanned;               /* events the virtual tables read */
    int vt_err;                   /* an error a virtual table saw (0: none) */
    char vt_msg[sizeof(((struct sql_error *)0)->msg)]; /* and its text */
};

/* Registers the annals_events module on c's connection (pAux = c). Returns a SQLite code. */
int sql_events_register(struct sql_conn *c);
/* Records err and its text as the running statement's failure (the first one wins); returns
 * SQLITE_ERROR for the caller to hand SQLite. */
int sql_conn_fail(struct sql_conn *c, int err, const char *msg);

#endif
