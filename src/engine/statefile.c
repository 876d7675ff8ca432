/* State files of engine features (statefile.h). The write itself is util/fsutil.h's
 * fs_write_atomic; this module adds rendering, the undo and the debounce, and the load. */
#include "engine/statefile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/errors.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/timeutil.h"

static int64_t now_ms(void)
{
    return (int64_t)(time_mono_ns() / 1000000);
}

void statefile_init(struct statefile *sf, const char *dir, const char *name, const char *owner,
                    mode_t mode, uint32_t soon_ms, statefile_render_fn *render, void *arg)
{
    *sf = (struct statefile){.dir = dir, .name = name, .owner = owner, .mode = mode,
                             .soon_ms = soon_ms, .render = render, .arg = arg};
}

int statefile_save(struct statefile *sf)
{
    json_t *root = sf->render(sf->arg);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    int rc = text ? fs_write_atomic(sf->dir, sf->name, text, strlen(text), sf->mode)
                  : ERR(ERR_IO);
    if (rc) {
        log_error("database %s: cannot write %s: %s", sf->owner, sf->name,
                  text ? strerror(errno) : "its state does not render");
    }
    free(text);
    return rc;
}

void statefile_save_undone(struct statefile *sf)
{
    if (statefile_save(sf) != 0) {
        log_error("database %s: %s may still hold a change that failed", sf->owner, sf->name);
    }
}

bool statefile_save_soon(struct statefile *sf)
{
    int64_t now = now_ms();
    if (now - sf->soon_saved_ms < (int64_t)sf->soon_ms) {
        return false;
    }
    sf->soon_saved_ms = now;
    statefile_save(sf);
    return true;
}

int statefile_load(const char *dir, const char *name, const char *member, const char *owner,
                   statefile_item_fn *fn, void *arg)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, F_OK) != 0) {
        return 0;
    }
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    json_t *arr = root ? json_object_get(root, member) : NULL;
    int rc = json_is_array(arr) ? 0 : ERR(ERR_CORRUPT);
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o) {
        if (!rc) rc = fn(arg, o);
    }
    json_decref(root);
    if (rc) {
        log_error("database %s: %s is damaged", owner, path);
    }
    return rc;
}

void statefile_remove(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s.tmp", dir, name);
    unlink(path);
}
