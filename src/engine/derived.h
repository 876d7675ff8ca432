/* A database's derived-state store (store/kv.h): state computed from its log by user code,
 * owned by the database (opened at first use, closed with it, deleted with it, never in a
 * backup). The calls are store/kv.h's, for the layers above the engine; the contracts there
 * hold (one writer at a time, values valid until the transaction ends). */
#ifndef ENGINE_DERIVED_H
#define ENGINE_DERIVED_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/engine.h"

struct derived_txn;

enum {
    DERIVED_TABLE_BYTES = 96, /* a table's name (store/kv.h KV_TABLE_BYTES) */
    DERIVED_KEY_BYTES = 384,  /* a key (KV_KEY_BYTES) */
};

/* Begins a transaction on db's derived store, opening it at first use. Returns 0, ERR_GONE
 * (the database was deleted) or ERR_*. */
int derived_begin(struct db *db, bool write, struct derived_txn **out);
int derived_commit(struct derived_txn *t);
void derived_abort(struct derived_txn *t);
int derived_get(struct derived_txn *t, const char *table, struct slice key, struct slice *val);
int derived_put(struct derived_txn *t, const char *table, struct slice key, struct slice val);
int derived_del(struct derived_txn *t, const char *table, struct slice key);
int derived_drop(struct derived_txn *t, const char *table);
typedef int derived_entry_fn(void *arg, struct slice key, struct slice val);
int derived_scan(struct derived_txn *t, const char *table, struct slice prefix,
                 struct slice after, size_t limit, derived_entry_fn *fn, void *arg);

#endif
