/* `annals backup --to DIR [--server URL] [--key KEY]` (docs/api.md, "Backup and restore"):
 * fetches GET /v1/backup from a running server with libcurl and writes DIR as a complete data
 * directory (keys.json, dbs/<name>/...) plus BACKUP.json, the manifest. Everything goes into
 * DIR.partial first; only a stream that ended with its END frame, every file's SHA-256 checked
 * and the manifest matching what came, is synced and renamed to DIR. Anything else removes
 * DIR.partial and fails. Progress goes to stderr.
 *
 * Main thread; calls curl_global_init. */
#ifndef CLI_BACKUP_CMD_H
#define CLI_BACKUP_CMD_H

/* Runs the command; argv[0] is "backup". Returns the exit code: 0 success, 1 the backup
 * failed (the message says why), 2 a usage error (bad flags, DIR not empty). */
int cli_backup_main(int argc, char **argv);

#endif
