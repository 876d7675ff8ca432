/* Error codes shared by every layer. Functions named as actions return 0 or one of these
 * (negative). ERR() records the origin in DEBUG builds. */
#ifndef UTIL_ERRORS_H
#define UTIL_ERRORS_H

enum {
    ERR_OK = 0,
    ERR_INVALID = -1,   /* bad input from a client or config */
    ERR_NOTFOUND = -2,  /* no such database, stream or event */
    ERR_EXISTS = -3,    /* already exists */
    ERR_CONFLICT = -4,  /* expected version or condition failed */
    ERR_IO = -5,        /* storage or OS I/O failed; nothing acknowledged */
    ERR_CORRUPT = -6,   /* stored bytes failed their checksum or hash chain */
    ERR_NOSPACE = -7,   /* storage full (map full or ENOSPC) */
    ERR_TOOBIG = -8,    /* a client-controlled size exceeded its limit */
    ERR_NOMEM = -9,     /* allocation failed */
    ERR_SHUTDOWN = -10, /* the server is stopping; request not taken */
    ERR_PROTOCOL = -11, /* malformed wire bytes */
    ERR_GONE = -12,     /* the database was deleted while in use */
    ERR_DELETED = -13,  /* the stream was hard-deleted (tombstone) */
    ERR_DENIED = -14,   /* refused by policy (e.g. a webhook URL to a private address) */
};

/* Returns a stable lower-case name for an error code ("conflict", "io_error", ...). */
const char *err_name(int err);

#ifdef DEBUG
void err_trace(int err, const char *file, int line);
#define ERR(e) (err_trace((e), __FILE__, __LINE__), (e))
#else
#define ERR(e) (e)
#endif

#endif
