/* File helpers shared by the backup and restore commands (cli/backup_cmd.c, cli/restore_cmd.c):
 * durable writes, directory syncs, removal of a tree the command made itself. Main thread. */
#ifndef CLI_COMMON_H
#define CLI_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes p[0..n) to fd whole. Returns 0 or ERR_IO (errno says why). */
int cli_write_all(int fd, const void *p, size_t n);
/* fsyncs directory path (its new and renamed entries survive a power cut). 0 or ERR_IO. */
int cli_fsync_dir(const char *path);
/* fsyncs the directory that holds path. 0 or ERR_IO. */
int cli_fsync_parent(const char *path);
/* True when path is a directory with no entries; false when it is not a directory, does not
 * exist (errno ENOENT) or holds something. */
bool cli_dir_is_empty(const char *path);
/* Removes path and everything under it (not following symbolic links). Best effort: returns
 * 0 or ERR_IO when something stayed. Only for trees the command made itself. */
int cli_remove_tree(const char *path);
/* Formats a byte count for people ("512 B", "12.3 MiB") into out (>= 32 bytes). */
void cli_format_bytes(uint64_t n, char *out, size_t cap);

#endif
