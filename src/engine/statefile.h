/* A state file of an engine feature: one JSON document in a database's directory holding
 * everything the feature keeps outside the store (groups.json for consumer groups,
 * webhooks.json for webhooks), always replaced whole.
 *
 * Saving renders the whole state and replaces the file atomically and durably
 * (fs_write_atomic: write <name>.tmp, fsync, rename, fsync the directory), so a crash leaves
 * the old or the new document, never a mix. Two habits every feature shares:
 *   - undo on a failed save: a change whose save failed is undone in memory by the caller,
 *     who then calls statefile_save_undone, which writes the file again without it (the
 *     failed save may have renamed the new file into place before its directory's fsync
 *     failed, and a restart must not bring back what the client was told failed);
 *   - save soon: frequent small changes (checkpoints) are written at most every soon_ms, and
 *     the feature saves what is left when it closes.
 *
 * Threads: a statefile has no lock of its own; its feature calls it under the feature's lock
 * (so that file order is change order), from any thread. */
#ifndef ENGINE_STATEFILE_H
#define ENGINE_STATEFILE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Renders the feature's whole state as a new JSON document (returned, owned by the caller);
 * runs under the feature's lock, just before each write. */
typedef json_t *statefile_render_fn(void *arg);
/* Called per item of the document's array member when loading. 0 or ERR_CORRUPT. */
typedef int statefile_item_fn(void *arg, json_t *item);

struct statefile {
    const char *dir;              /* borrowed: the database's directory */
    const char *name;             /* the file name in dir (static text) */
    const char *owner;            /* borrowed: the database's name, for log lines */
    mode_t mode;                  /* permission bits of the file */
    uint32_t soon_ms;             /* statefile_save_soon writes at most this often */
    statefile_render_fn *render;  /* the document */
    void *arg;                    /* render's argument */
    int64_t soon_saved_ms;        /* monotonic time of the last statefile_save_soon write
                                     (0: none yet; other writes do not count, so the first
                                     change after a definition's save is written at once) */
};

/* Sets sf up; all pointers are borrowed and must outlive it. No I/O. */
void statefile_init(struct statefile *sf, const char *dir, const char *name, const char *owner,
                    mode_t mode, uint32_t soon_ms, statefile_render_fn *render, void *arg);

/* Renders and writes the document now. Returns 0 or ERR_IO (logged; the file holds the old
 * or, see statefile_save_undone, possibly the new document). */
int statefile_save(struct statefile *sf);

/* After a failed save whose change the caller has undone in memory: writes the document
 * again, without the change. Best effort (the disk is failing): a failure is logged. */
void statefile_save_undone(struct statefile *sf);

/* Writes the document when soon_ms have passed since its last write (for changes that may
 * wait, such as checkpoints: nothing writes a skipped change later by itself, so the caller
 * keeps track of what is unsaved, writes it with its next change, and saves what is left when
 * it closes). Returns true when it wrote (successfully or not). */
bool statefile_save_soon(struct statefile *sf);

/* Reads <dir>/<name>, a JSON object whose member is an array, calling fn(arg, item) per item
 * in order. A missing file is an empty state (0, fn never called). Returns 0 or ERR_CORRUPT
 * (the file does not parse, member is no array, or fn refused an item; logged naming owner).
 * Any thread; no lock needed before the feature is running. */
int statefile_load(const char *dir, const char *name, const char *member, const char *owner,
                   statefile_item_fn *fn, void *arg);

/* Removes <dir>/<name> and a leftover <dir>/<name>.tmp (a deleted database's files). */
void statefile_remove(const char *dir, const char *name);

#endif
