/* The components deployed to a database, read from its ENGINE_LOGIC_STREAM
 * (logic/component.h). Each event of that stream is a deploy ("ComponentDeployed", data: the
 * component's stored form) or a removal ("ComponentRemoved", data: {"name"}); the set in force
 * is the newest deploy of each name not removed since.
 *
 * A struct comp_set is an immutable snapshot of that set, shared by reference: readers keep it
 * while they use it, a newer deploy makes a new set. Any thread. */
#ifndef LOGIC_REGISTRY_H
#define LOGIC_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "logic/component.h"

#define COMP_EVENT_DEPLOYED "ComponentDeployed"
#define COMP_EVENT_REMOVED "ComponentRemoved"

enum {
    COMP_MAX_PER_DB = 1000, /* names ever deployed to one database */
};

struct comp_seen {
    char name[COMP_NAME_BYTES + 1];
    uint64_t version;
};

struct comp_set {
    struct comp_def *defs;  /* count, sorted by name */
    size_t count;
    uint64_t stream_version; /* the version of ENGINE_LOGIC_STREAM it was read at */
    int64_t stream_updated_us; /* ... and that version's commit time */
    struct comp_seen *seen; /* nseen: every name ever deployed, with its newest version */
    size_t nseen;
    int refs;               /* atomic */
};

/* Reads the set in force from db (one snapshot of the stream). Returns 0 and a set with one
 * reference, or ERR_CORRUPT (an event of the stream is not a valid deploy or removal) /
 * ERR_IO. */
int comp_set_read(struct db *db, struct comp_set **out);
void comp_set_ref(struct comp_set *set);
/* Drops a reference (NULL is allowed); the last one frees the set. */
void comp_set_unref(struct comp_set *set);

/* The component called name, or NULL. Borrowed from set. */
const struct comp_def *comp_set_find(const struct comp_set *set, const char *name);
/* The reducer bound to stream's category, or NULL. Borrowed from set. */
const struct comp_def *comp_set_reducer_for(const struct comp_set *set, struct slice stream);
/* The reducer bound to category, or NULL. Borrowed from set. */
const struct comp_def *comp_set_reducer_of(const struct comp_set *set, struct slice category);

/* The version the next deploy of name gets: one more than the newest deploy of that name in
 * the stream, removed or not (so versions are never reused). */
uint64_t comp_set_next_version(const struct comp_set *set, const char *name);

/* The set after one more event of the logic stream, made from old without reading it: the
 * deploy of deployed (its version and deployed_us set), or the removal of removed. One
 * reference for the caller. */
struct comp_set *comp_set_next(const struct comp_set *old, const struct comp_def *deployed,
                               const char *removed, int64_t updated_us);

/* One event of an atomic batch for the logic stream: the deploy of def, or (def NULL) the
 * removal of the component called removed. */
struct comp_change {
    struct comp_def *def;  /* borrowed; its version set by the caller; deployed_us set by
                              comp_deploy_many on success */
    const char *removed;   /* borrowed; with def NULL: the name removed */
};

/* The set after the n (>= 1) events of changes, in order (comp_set_next for each; the
 * stream's version moves by n). One reference for the caller. old is borrowed. */
struct comp_set *comp_set_apply(const struct comp_set *old, const struct comp_change *changes,
                                size_t n, int64_t updated_us);

/* Appends a deploy of def (its version set by the caller, from comp_set_next_version) to db's
 * logic stream if the stream is still at version at (the set the caller read), and waits for
 * the commit (def->deployed_us gets its time). Returns 0 once durable, ERR_CONFLICT (another deploy or removal came first: read
 * the set again), ERR_TOOBIG (larger than the database's event limit) or ERR_*. Blocks: worker
 * threads only. */
int comp_deploy(struct db *db, struct comp_def *def, uint64_t at);
/* The same for the removal of name. */
int comp_remove(struct db *db, const char *name, uint64_t at);
/* Appends the n events of changes (n >= 1, each def's version set by the caller) to db's
 * logic stream in one append, hence one commit: all or none, if the stream is still at
 * version at. Waits for the commit; every def gets its time as deployed_us, and so does
 * *out_us (may be NULL). Returns 0 once
 * durable, ERR_CONFLICT (the stream moved: read the set again), ERR_TOOBIG (one event larger
 * than the database's event limit, or more events than it takes in one append) or ERR_*.
 * Nothing is written on failure. Blocks: worker threads only. */
int comp_deploy_many(struct db *db, struct comp_change *changes, size_t n, uint64_t at,
                     int64_t *out_us);

#endif
