/* GET /v1/backup (docs/api.md, "Backup and restore"): answers with a backup stream of every
 * database (application/vnd.annals.backup; format in backup/frame.h), made by engine_backup on
 * a thread of its own (an engine job) into a bounded buffer that the connection's stream pump
 * drains. Neither the whole backup nor any file of it is ever held in memory or on disk: the
 * producer waits while the buffer is full. A client that goes away (or times out) stops the
 * producer, which releases its database and pins; a server that begins to stop ends the stream
 * with an ERROR frame. Knows nothing of files: the engine makes the bytes. */
#ifndef API_BACKUP_API_H
#define API_BACKUP_API_H

#include "engine/engine.h"
#include "http/server.h"

#define BACKUP_CONTENT_TYPE "application/vnd.annals.backup"

enum {
    BACKUP_API_BUFFER_BYTES = 1 << 20, /* frames the producer may queue ahead of the
                                          connection (one frame may go past it) */
    BACKUP_API_WAIT_MS = 200,          /* a producer waiting for room checks for a stop */
    BACKUP_API_KEEPALIVE_S = 10,       /* a stream idle this long gets a KEEPALIVE frame */
};

/* Answers req (on its I/O thread, during the handler) with the backup stream of engine e;
 * version is the server's version text (static). The caller has checked the caller's key.
 * Answers 503 shutting_down instead when the engine is stopping. */
void backup_api_start(struct http_req *req, struct engine *e, const char *version);

#endif
