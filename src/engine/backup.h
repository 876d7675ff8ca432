/* Online backups of a running engine (docs/design/backup.md): every open database and the API
 * keys file, as a backup stream (backup/frame.h) handed to a sink frame by frame, while appends,
 * reads and compactions go on. Knows nothing of HTTP: the caller moves the frames.
 *
 * Threads: engine_backup runs on the calling thread, which it blocks for the whole backup
 * (run it between engine_job_begin and engine_job_end, so the engine does not stop under it). */
#ifndef ENGINE_BACKUP_H
#define ENGINE_BACKUP_H

#include <stdbool.h>

#include "backup/frame.h"
#include "engine/engine.h"

/* Writes a backup of e through sink: HEADER; keys.json (when the data directory has one);
 * per database, in name order, DB_BEGIN, its groups.json and webhooks.json (when present),
 * its index (data.mdb), its log up to the durable head after the index copy, and DB_END with
 * the database's summary (name, position, headHash, logGeneration, files); then MANIFEST
 * (every summary, the server version, the times) and END. Each database is pinned against
 * log generation switches while it is copied (a compaction waits). A database created
 * during the backup is not in it; one deleted before its turn is left out. version is the
 * server's version text (borrowed). sink may block (a bounded buffer); its error stops the
 * backup at once. Returns 0 (END was sent), the sink's error, ERR_SHUTDOWN (the engine began
 * to stop), ERR_IO or ERR_CORRUPT (the stream is then incomplete: no END). */
int engine_backup(struct engine *e, const char *version, backup_sink_fn *sink, void *arg);

/* True once engine_stop has begun: a sink waiting for room should give up (ERR_SHUTDOWN), since
 * engine_stop waits for the backup's job. Any thread. */
bool engine_backup_stopping(struct engine *e);

#endif
