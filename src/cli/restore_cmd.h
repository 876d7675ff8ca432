/* `annals restore --from DIR --data DEST` (docs/api.md, "Backup and restore"): brings a backup
 * made by `annals backup` back as the data directory DEST. DEST must not exist or hold no
 * databases and no keys, and no server may hold its lock. Every file is copied, checked
 * against the SHA-256 and size BACKUP.json lists and synced; each database is staged under
 * DEST/dbs/.restore-<name> (a name the server ignores), checked as `annals verify` checks
 * (records, hash chain, positions, indexes) and found to end at the position and head hash
 * the manifest names. Only when every database passed do the keys and the databases move into
 * place; otherwise the staged copies are removed and DEST is left as it was.
 *
 * Main thread. */
#ifndef CLI_RESTORE_CMD_H
#define CLI_RESTORE_CMD_H

/* Runs the command; argv[0] is "restore". Returns the exit code: 0 restored, 1 the restore
 * failed (a file not as the manifest says, a database failing its checks, an I/O error),
 * 2 a usage error (bad flags, no backup in DIR, DEST in use or not empty). */
int cli_restore_main(int argc, char **argv);

#endif
