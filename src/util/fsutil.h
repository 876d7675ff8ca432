/* Small durable-file helpers. */
#ifndef UTIL_FSUTIL_H
#define UTIL_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Replaces dir/name with data[0..n) atomically and durably: writes dir/name.tmp (mode), fsyncs
 * it, renames it over dir/name and fsyncs dir. A crash leaves the old or the new contents.
 * Returns 0 or ERR_IO (errno says why; the old file is untouched). */
int fs_write_atomic(const char *dir, const char *name, const void *data, size_t n, mode_t mode);

#endif
