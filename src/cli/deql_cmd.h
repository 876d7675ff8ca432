/* `annals deql [--url URL] [--key KEY] [--session ID] [-f FILE | -c STATEMENTS]`
 * (docs/dialects/deql.md, "Shell"): a shell for the DeQL dialect of a running server. Reads
 * statements from a terminal (prompt `deql> `, continuation `   -> ` until a `;` ends one outside
 * strings, quoted identifiers, comments and parentheses), from FILE, from the -c text or from
 * stdin when it is not a terminal, sends each statement to POST <URL>/api/deql/run with libcurl
 * (Accept: application/json, X-DeQL-Session: ID so that session tables persist between
 * statements) and prints what the server answered: tables boxed, statuses on one line, errors as
 * `ERROR: ...` on stderr (a rejection with its branches, state and values on following lines).
 *
 * Main thread; calls curl_global_init. */
#ifndef CLI_DEQL_CMD_H
#define CLI_DEQL_CMD_H

/* Runs the command; argv[0] is "deql". Returns the exit code: 0 every statement succeeded,
 * 1 one failed (a file or -c text stops at the first failure; a terminal goes on), 2 a usage
 * error (bad flags, FILE unreadable) or the server could not be reached. */
int cli_deql_main(int argc, char **argv);

#endif
