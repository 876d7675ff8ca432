/* The aggregate types the Hapnd dialect has seen: an aggregate's type is its first event's and
 * never changes, so once read it is kept in memory and later appends need no read of the
 * aggregate (reading one under a heavy append load costs a scan of the log's unindexed tail).
 * Keyed by database (its id: a database made again under a name is another) and aggregate id;
 * at most HD_TYPES_MAX, forgotten all at once when full. Any thread. Internal to the dialect. */
#ifndef DIALECT_HAPND_TYPES_H
#define DIALECT_HAPND_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "util/buf.h"

enum { HD_TYPES_MAX = 65536 };

struct hd_types;

struct hd_types *hd_types_new(void);
void hd_types_free(struct hd_types *t);
/* Copies the type kept for aggregate id of the database db_id (engine_db_id) into type
 * (HAPND_TYPE_BYTES + 1); false when none is kept. */
bool hd_types_get(struct hd_types *t, uint64_t db_id, struct slice id, char *type);
/* Keeps type for aggregate id of the database db_id (an aggregate that has events). */
void hd_types_put(struct hd_types *t, uint64_t db_id, struct slice id, const char *type);

#endif
