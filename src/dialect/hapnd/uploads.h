/* Hapnd uploads (docs/dialects/hapnd.md, "Uploads"): a zip of Lua, JavaScript or TypeScript
 * files, each one reducer or projection, read and compiled on a worker thread after a 202.
 *
 * Each upload has a record in the tenant database's derived store (table HD_UPLOADS, key its
 * id): {"id","kind","status","createdAt","compiledAt"?,"compilationError"?,"discovered":[
 * {"className","stateTypeName","kind","aggregateType"?,"language","source"}],"projectionId"?,
 * "config"?,"run"}; "source" is the file's code with the dialect's shim (translate.h) and
 * "run" the server run that compiles it (a record still compiling under another run was cut
 * short by a restart). Internal to the dialect. */
#ifndef DIALECT_HAPND_UPLOADS_H
#define DIALECT_HAPND_UPLOADS_H

#include <jansson.h>
#include <stdbool.h>

#include "dialect/hapnd/hd_int.h"
#include "logic/logic.h"
#include "util/zipread.h"

#define HD_UPLOADS "hpu"      /* the derived table of upload records */
#define HD_UPLOAD_TIMES "hpt" /* ... and of their creation order: 16 hex digits of the time
                                 it was made, then the id -> "" */

enum {
    HD_UPLOAD_BYTES = 5 * 1000 * 1000, /* a zip (Hapnd's limit: 5 MB) */
    HD_UPLOAD_FILES = 64,              /* source files in one zip */
    HD_SOURCE_BYTES = 512 * 1024,      /* one source file (it is deployed as one event) */
    HD_SOURCES_BYTES = 2 * 1024 * 1024, /* all of an upload's source files (they are kept in
                                          its record) */
    HD_COMPILE_MS = 10 * 1000,         /* loading an upload's files, at most (past it, the
                                          upload fails: a top level that runs long) */
    HD_CLASS_BYTES = 48,               /* a className (it names components) */
    HD_CONFIG_BYTES = 16 * 1024,       /* a projection upload's config part */
    HD_ID_BYTES = 48,                  /* an upload's id: "red_" or a UUID, ... */
    HD_UPLOADS_KEPT = 256,             /* upload records kept per tenant: a new one past
                                          this forgets the oldest (its deployed reducers and
                                          projections stay; it can no longer be bound) */
    HD_PRUNE_BATCH = 16,               /* records forgotten per new upload at most */
};

/* One upload between the request and its compilation (owned by the worker job). */
struct hd_upload {
    struct http_req *req;           /* until answered (202 or an error) */
    struct logic *lg;
    const char *run;                /* this server run (struct hapnd_ctx) */
    struct db *db;                  /* the job's reference */
    bool projection;                /* else reducers */
    char id[HD_ID_BYTES + 1];
    char *zip;                      /* owned: the file part's bytes */
    size_t zip_len;
    json_t *config;                 /* owned: a projection's notifications config, or NULL */
    json_t *record;                 /* owned: what is stored */
    /* called on the worker before anything is compiled (NULL: nothing to check): 0, or
       ERR_* with why (the upload is refused: 400 INVALID_UPLOAD) */
    int (*check)(struct hd_upload *u, char *why, size_t cap);
    /* called on the worker once every file compiled (discovered holds them), to deploy them;
       fills the record's bindings; returns 0 or sets compilationError and returns ERR_* */
    int (*deploy)(struct hd_upload *u);
    /* adds the members of the 202 answer past {"<idname>": id, "status"...} */
    void (*answer)(struct hd_upload *u, struct buf *out);
};

/* I/O thread: reads the multipart body of c (part "file": the zip; part "config" into
 * *config for projections, config NULL for reducers), checking what needs no worker: 400
 * INVALID_UPLOAD (not multipart, no file part) and FILE_TOO_LARGE. Returns the upload (its
 * zip copied) or NULL after answering. */
struct hd_upload *hd_upload_read(struct gate_call *c, bool projection);
/* Hands u to a worker: it opens the zip (400 INVALID_ZIP, INVALID_CONTENTS), stores the
 * pending record, answers 202, then compiles each file and calls u->deploy. Takes over
 * c->db. */
void hd_upload_submit(struct gate_call *c, struct hd_upload *u);
void hd_upload_free(struct hd_upload *u);

/* The stored record of upload id (JSON text into out). Returns 0, ERR_NOTFOUND or ERR_*. */
int hd_record_get(struct db *db, const char *id, struct buf *out);
/* Stores record (JSON) under id. Worker. Returns 0 or ERR_*. */
int hd_record_put(struct db *db, const char *id, json_t *record);
/* Stores the record of a new upload id and its place in the creation order, forgetting the
 * oldest records past HD_UPLOADS_KEPT, in one transaction. Worker. Returns 0 or ERR_*. */
int hd_record_create(struct db *db, const char *id, json_t *record);

/* The status view of a stored record: without the sources; a record compiling under an
 * earlier server run reads "failed" (cut short by a restart). */
void hd_record_status(json_t *record, const char *run, struct buf *out);

/* "now" as Hapnd writes times, as a JSON string. */
json_t *hd_now(void);

#endif
