/* `annals deql`: a shell for the DeQL dialect (deql_cmd.h).
 *
 * Input comes as chunks (a line of a terminal or file, or the whole -c text). A scanner that
 * knows DeQL's lexical rules (strings '...' with '' for a quote, identifiers "...", -- and
 * block comments, parentheses) finds the `;` that ends each statement; the statement, from its
 * first non-blank byte, goes to the server as a script of its own, so each answer belongs to one
 * statement and output follows input. Outside a terminal, definitions wait and go with the next
 * other statement (or the end of input), so that the server applies them together, as it would
 * the whole file. The server numbers lines from the start of what it got; an error's leading
 * "line N" is moved to the line of the file, the -c text or the statement typed.
 *
 *   reading --statement ends--> sending --2xx--> print results, reading
 *                                       --4xx/5xx--> ERROR; a file stops (exit 1), a terminal reads on
 *                                       --no connection--> a file stops (exit 2), a terminal reads on
 *   reading --EOF or \q--> the rest (if anything but blanks and comments) is sent; exit */
#include "cli/deql_cmd.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"

enum {
    SHELL_CELL_MAX_CHARS = 60,              /* a table cell longer than this is cut, with "…" */
    SHELL_STATEMENT_MAX_BYTES = 1 << 20,    /* one statement (the server's script limit) */
    SHELL_BATCH_MAX_BYTES = 256 << 10,      /* definitions sent together, about */
    SHELL_ANSWER_MAX_BYTES = 256 << 20,     /* one answer's body */
    SHELL_SESSION_MAX_BYTES = 64,           /* an X-DeQL-Session id */
    SHELL_CONNECT_TIMEOUT_S = 10,           /* to reach the server */
};

/* What running a statement came to; the exit code too. */
enum outcome { RUN_OK = 0, RUN_FAILED = 1, RUN_UNREACHABLE = 2 };

/* ---- the scanner: where a statement ends ---- */

enum scan_state { SCAN_CODE, SCAN_STRING, SCAN_IDENT, SCAN_LINE_COMMENT, SCAN_BLOCK_COMMENT };

enum { SCAN_WORD_MAX = 12 };

/* The lexical state between chunks of one statement. Zeroed: the start of a statement. */
struct scanner {
    enum scan_state state;
    int depth;        /* parentheses open (never below 0) */
    bool has_content; /* something besides blanks and comments (and ';') so far */
    /* the statement's first two words, to tell definitions (cut at SCAN_WORD_MAX - 1) */
    char words[2][SCAN_WORD_MAX];
    size_t nwords, wlen;
    bool in_word, words_done;
};

/* Notes byte c of code for the statement's first two words. */
static void scan_word(struct scanner *s, char c)
{
    bool is_word = isalpha((unsigned char)c) || c == '_';
    if (s->words_done || (!is_word && !s->in_word && isspace((unsigned char)c))) {
        return;
    }
    if (is_word) {
        if (s->wlen < SCAN_WORD_MAX - 1) {
            s->words[s->nwords][s->wlen++] = c;
        }
        s->in_word = true;
        return;
    }
    s->in_word = false;
    s->wlen = 0;
    s->words_done = !isspace((unsigned char)c) || ++s->nwords == 2;
}

/* True when the statement scanned is a definition (CREATE, ALTER, USE, APPLY; not CREATE
 * TABLE), which the server applies together with the definitions next to it. */
static bool scan_is_definition(const struct scanner *s)
{
    const char *w = s->words[0];
    if (!strcasecmp(w, "CREATE")) {
        return strcasecmp(s->words[1], "TABLE") != 0;
    }
    return !strcasecmp(w, "ALTER") || !strcasecmp(w, "USE") || !strcasecmp(w, "APPLY");
}

/* Scans t[*pos..n). Returns true with *pos just after the ';' that ends the statement, or false
 * with *pos = n when the statement goes on. */
static bool scan_statement(struct scanner *s, const char *t, size_t n, size_t *pos)
{
    for (size_t i = *pos; i < n; i++) {
        char c = t[i], next = i + 1 < n ? t[i + 1] : '\0';
        switch (s->state) {
        case SCAN_STRING:
            s->state = c == '\'' ? SCAN_CODE : s->state; /* '' reopens at once */
            break;
        case SCAN_IDENT:
            s->state = c == '"' ? SCAN_CODE : s->state;
            break;
        case SCAN_LINE_COMMENT:
            s->state = c == '\n' ? SCAN_CODE : s->state;
            break;
        case SCAN_BLOCK_COMMENT:
            if (c == '*' && next == '/') {
                s->state = SCAN_CODE;
                i++;
            }
            break;
        case SCAN_CODE:
            if ((c == '-' && next == '-') || (c == '/' && next == '*')) {
                scan_word(s, ' '); /* a comment ends a word */
                s->state = c == '-' ? SCAN_LINE_COMMENT : SCAN_BLOCK_COMMENT;
                i++;
                break;
            }
            scan_word(s, c);
            if (c == ';' && s->depth == 0) {
                *pos = i + 1;
                return true;
            }
            if (!isspace((unsigned char)c)) {
                s->has_content = true;
                s->state = c == '\'' ? SCAN_STRING : c == '"' ? SCAN_IDENT : SCAN_CODE;
                s->depth += c == '(' ? 1 : c == ')' && s->depth > 0 ? -1 : 0;
            }
            break;
        }
    }
    *pos = n;
    return false;
}

/* ---- one run of the shell ---- */

struct shell {
    char *endpoint;             /* <URL>/api/deql/run, owned */
    CURL *curl;                 /* owned */
    struct curl_slist *headers; /* owned */
    struct buf answer;          /* the last answer's body */
    bool answer_too_big;
    bool is_terminal;
    bool batches;               /* definitions wait for the next statement (not a terminal) */
    size_t ndefs;               /* definitions in text before the statement being read */
    /* the statement being read */
    struct buf text;            /* from its first non-blank byte */
    struct scanner sc;
    bool too_long;              /* text stopped growing at SHELL_STATEMENT_MAX_BYTES */
    int start_line, start_col;  /* where text begins in the input */
    int line, col;              /* where the next input byte is (1-based; col in bytes) */
};

static void advance(struct shell *sh, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            sh->line++;
            sh->col = 1;
        } else {
            sh->col++;
        }
    }
}

/* Adds p[0..n) of the input to the statement being read (its leading blanks skipped). */
static void append(struct shell *sh, const char *p, size_t n)
{
    size_t skip = 0;
    while (sh->text.len == 0 && skip < n && isspace((unsigned char)p[skip])) {
        skip++;
    }
    advance(sh, p, skip);
    if (skip == n) {
        return;
    }
    if (sh->text.len == 0) {
        sh->start_line = sh->line;
        sh->start_col = sh->col;
    }
    advance(sh, p + skip, n - skip);
    if (sh->text.len + (n - skip) > SHELL_STATEMENT_MAX_BYTES) {
        sh->too_long = true;
    } else {
        buf_add(&sh->text, p + skip, n - skip);
    }
}

static void reset_statement(struct shell *sh)
{
    buf_reset(&sh->text);
    sh->sc = (struct scanner){0};
    sh->too_long = false;
    sh->ndefs = 0;
}

/* ---- printing ---- */

/* Prints "ERROR: msg" on stderr, after what stdout holds. */
static void print_error(const char *msg)
{
    fflush(stdout);
    fprintf(stderr, "ERROR: %s\n", msg);
    fflush(stderr);
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        count += ((unsigned char)s[i] & 0xC0) != 0x80;
    }
    return count;
}

/* Cuts the text in b to SHELL_CELL_MAX_CHARS characters, the last one "…", when longer. */
static void cut_cell(struct buf *b)
{
    if (utf8_chars(b->ptr, b->len) <= SHELL_CELL_MAX_CHARS) {
        return;
    }
    size_t chars = 0, i = 0;
    for (; i < b->len; i++) {
        if (((unsigned char)b->ptr[i] & 0xC0) != 0x80 && ++chars == SHELL_CELL_MAX_CHARS) {
            break; /* i: the first byte of the character "…" replaces */
        }
    }
    b->len = i;
    buf_adds(b, "\xE2\x80\xA6");
}

/* A table cell as text: NULL, numbers as written, strings with control characters escaped. */
static void render_cell(const json_t *v, struct buf *out)
{
    buf_reset(out);
    if (json_is_null(v) || !v) {
        buf_adds(out, "NULL");
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        for (size_t i = 0, n = json_string_length(v); i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\n' || c == '\t' || c == '\r') {
                buf_adds(out, c == '\n' ? "\\n" : c == '\t' ? "\\t" : "\\r");
            } else if (c < 0x20 || c == 0x7F) {
                buf_printf(out, "\\x%02x", c);
            } else {
                buf_addc(out, (char)c);
            }
        }
    } else if (json_is_integer(v)) {
        buf_printf(out, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        buf_printf(out, "%.15g", json_real_value(v));
        if (!strpbrk(out->ptr, ".eni")) {
            buf_adds(out, ".0");
        }
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        buf_adds(out, s ? s : "?");
        free(s);
    }
    cut_cell(out);
}

static void print_rule(const size_t *width, size_t ncols)
{
    for (size_t k = 0; k < ncols; k++) {
        fputc('+', stdout);
        for (size_t i = 0; i < width[k] + 2; i++) {
            fputc('-', stdout);
        }
    }
    fputs("+\n", stdout);
}

static void print_row(char **cells, const bool *right, const size_t *width, size_t ncols)
{
    for (size_t k = 0; k < ncols; k++) {
        size_t pad = width[k] - utf8_chars(cells[k], strlen(cells[k]));
        printf("| %*s%s%*s ", right && right[k] ? (int)pad : 0, "", cells[k],
               right && right[k] ? 0 : (int)pad, "");
    }
    fputs("|\n", stdout);
}

/* A table result {"columns":[...],"rows":[[...]]}, boxed, then its row count. */
static void print_table(const json_t *t)
{
    const json_t *cols = json_object_get(t, "columns"), *rows = json_object_get(t, "rows");
    size_t ncols = json_array_size(cols), nrows = json_array_size(rows);
    if (ncols > 0) {
        char **cells = xcalloc((nrows + 1) * ncols, sizeof(*cells));
        bool *right = xcalloc((nrows + 1) * ncols, sizeof(*right));
        size_t *width = xcalloc(ncols, sizeof(*width));
        struct buf b;
        buf_init(&b);
        for (size_t r = 0; r <= nrows; r++) {
            const json_t *row = r ? json_array_get(rows, r - 1) : cols;
            for (size_t k = 0; k < ncols; k++) {
                const json_t *v = json_array_get(row, k);
                render_cell(v, &b);
                cells[r * ncols + k] = xstrndup(b.ptr, b.len);
                right[r * ncols + k] = r && json_is_number(v);
                size_t w = utf8_chars(b.ptr, b.len);
                width[k] = w > width[k] ? w : width[k];
            }
        }
        buf_fini(&b);
        print_rule(width, ncols);
        print_row(cells, NULL, width, ncols);
        print_rule(width, ncols);
        for (size_t r = 1; r <= nrows; r++) {
            print_row(cells + r * ncols, right + r * ncols, width, ncols);
        }
        if (nrows) {
            print_rule(width, ncols);
        }
        for (size_t i = 0; i < (nrows + 1) * ncols; i++) {
            free(cells[i]);
        }
        free(cells);
        free(right);
        free(width);
    }
    printf("%zu row%s\n", nrows, nrows == 1 ? "" : "s");
}

static const char *str_member(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static const char *plural(json_int_t n)
{
    return n == 1 ? "" : "s";
}

/* A status result: one line ("OK: ..."), and VALIDATE DEREG's problems below it. */
static void print_status(const json_t *r)
{
    const char *stmt = str_member(r, "statement"), *status = str_member(r, "status");
    const char *table = str_member(r, "table");
    json_int_t rows = json_integer_value(json_object_get(r, "rows"));
    const json_t *problems = json_object_get(r, "problems");
    stmt = stmt ? stmt : "statement";
    if (!strcmp(stmt, "definitions")) {
        json_int_t n = json_integer_value(json_object_get(r, "count"));
        printf("OK: %lld definition%s\n", (long long)n, plural(n));
    } else if (!strcmp(stmt, "VALIDATE DEREG")) {
        size_t n = json_array_size(problems);
        if (n) {
            printf("INVALID: %zu problem%s\n", n, plural((json_int_t)n));
        } else {
            printf("OK: DeReg is valid\n");
        }
        for (size_t i = 0; i < n; i++) {
            printf("  %s\n", json_string_value(json_array_get(problems, i)));
        }
    } else if (table && !strcmp(stmt, "DROP TABLE")) {
        printf("OK: dropped table %s\n", table);
    } else if (table) {
        printf("OK: table %s (%lld row%s", table, (long long)rows, plural(rows));
        const json_t *br = json_object_get(r, "branch_rows");
        if (br) {
            json_int_t n = json_integer_value(br);
            printf("; branches in %s__branches, %lld row%s", table, (long long)n, plural(n));
        }
        printf(")\n");
    } else {
        printf("%s: %s\n", status && strcmp(status, "ok") ? status : "OK", stmt);
    }
}

/* Writes msg with its leading "line N" (and, on line 1, ", column C") moved from the statement's
 * own numbering to the input's: the statement began at line0, col0. */
static void relocate(const char *msg, int line0, int col0, struct buf *out)
{
    char *end;
    long n = strncmp(msg, "line ", 5) ? 0 : strtol(msg + 5, &end, 10);
    if (n <= 0 || !isdigit((unsigned char)msg[5])) {
        buf_adds(out, msg);
        return;
    }
    buf_printf(out, "line %ld", n + line0 - 1);
    long c;
    if (n == 1 && !strncmp(end, ", column ", 9) && isdigit((unsigned char)end[9]) &&
        (c = strtol(end + 9, &end, 10)) > 0) {
        buf_printf(out, ", column %ld", c + col0 - 1);
    }
    buf_adds(out, end);
}

/* A rejection's details under its ERROR line: each branch with its guard, the state, the
 * command's values. */
static void print_rejection(const json_t *doc)
{
    const json_t *branches = json_object_get(doc, "branches");
    fflush(stdout);
    for (size_t i = 0; i < json_array_size(branches); i++) {
        const json_t *b = json_array_get(branches, i);
        const char *label = str_member(b, "label"), *guard = str_member(b, "guard");
        fprintf(stderr, "  branch %lld%s%s%s (%s) %s%s%s\n",
                (long long)json_integer_value(json_object_get(b, "branch_index")),
                label ? " \"" : "", label ? label : "", label ? "\"" : "",
                str_member(b, "branch_id") ? str_member(b, "branch_id") : "?",
                str_member(b, "status") ? str_member(b, "status") : "?",
                guard ? ": WHERE " : "", guard ? guard : "");
    }
    static const char *const parts[] = {"state", "values"};
    for (size_t i = 0; i < 2; i++) {
        char *s = json_dumps(json_object_get(doc, parts[i]), JSON_COMPACT | JSON_ENCODE_ANY);
        if (s) {
            fprintf(stderr, "  %s: %s\n", parts[i], s);
        }
        free(s);
    }
    fflush(stderr);
}

/* The server refused the statement (HTTP status st, body in sh->answer): ERROR and details. */
static void print_refusal(struct shell *sh, long st)
{
    json_t *doc = json_loadb(sh->answer.ptr, sh->answer.len, 0, NULL);
    const json_t *e = json_object_get(doc, "error");
    const char *msg = json_is_string(e) ? json_string_value(e) : str_member(e, "message");
    struct buf m;
    buf_init(&m);
    if (msg) {
        relocate(msg, sh->start_line, sh->start_col, &m);
    } else {
        buf_printf(&m, "HTTP %ld: %.300s", st, sh->answer.len ? sh->answer.ptr : "(no body)");
    }
    json_int_t done = json_integer_value(json_object_get(doc, "completed"));
    if (sh->ndefs && done >= (json_int_t)sh->ndefs) { /* they were applied before the failure */
        printf("OK: %zu definition%s\n", sh->ndefs, plural((json_int_t)sh->ndefs));
    }
    print_error(m.ptr);
    buf_fini(&m);
    const char *status = str_member(doc, "status");
    if (status && !strcmp(status, "rejected")) {
        print_rejection(doc);
    }
    json_decref(doc);
}

/* ---- the server ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct shell *sh = arg;
    if (sh->answer.len + size * n > SHELL_ANSWER_MAX_BYTES) {
        sh->answer_too_big = true;
        return 0;
    }
    buf_add(&sh->answer, p, size * n);
    return size * n;
}

/* Sends text[0..len) as a script and prints what came back. */
static enum outcome send_statement(struct shell *sh, const char *text, size_t len)
{
    json_t *s = json_stringn(text, len);
    if (!s) {
        print_error("the statement is not valid UTF-8 (or holds a NUL byte)");
        return RUN_FAILED;
    }
    json_t *req = json_pack("{s:o}", "deql", s);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    buf_reset(&sh->answer);
    sh->answer_too_big = false;
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(sh->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(sh->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(sh->curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cc = curl_easy_perform(sh->curl);
    curl_easy_setopt(sh->curl, CURLOPT_ERRORBUFFER, NULL);
    free(body);
    if (cc == CURLE_WRITE_ERROR && sh->answer_too_big) {
        print_error("the answer is larger than 256 MiB");
        return RUN_FAILED;
    }
    if (cc != CURLE_OK) {
        fflush(stdout);
        fprintf(stderr, "annals deql: cannot reach %s: %s\n", sh->endpoint,
                errbuf[0] ? errbuf : curl_easy_strerror(cc));
        return RUN_UNREACHABLE;
    }
    long st = 0;
    curl_easy_getinfo(sh->curl, CURLINFO_RESPONSE_CODE, &st);
    json_t *doc = st / 100 == 2 ? json_loadb(sh->answer.ptr, sh->answer.len, 0, NULL) : NULL;
    const json_t *results = json_object_get(doc, "results");
    if (!json_is_array(results)) {
        json_decref(doc);
        print_refusal(sh, st);
        return RUN_FAILED;
    }
    for (size_t i = 0; i < json_array_size(results); i++) {
        const json_t *r = json_array_get(results, i);
        if (json_is_array(json_object_get(r, "columns"))) {
            print_table(r);
        } else {
            print_status(r);
        }
    }
    fflush(stdout);
    json_decref(doc);
    return RUN_OK;
}

/* Sends the statement read so far, if it holds anything, and starts the next one. */
static enum outcome finish_statement(struct shell *sh)
{
    enum outcome o = RUN_OK;
    if (sh->too_long) {
        char m[160];
        snprintf(m, sizeof m, "line %d: the statement is longer than %d bytes", sh->start_line,
                 SHELL_STATEMENT_MAX_BYTES);
        print_error(m);
        o = RUN_FAILED;
    } else if (sh->sc.has_content || sh->ndefs) {
        o = send_statement(sh, sh->text.ptr, sh->text.len);
    }
    reset_statement(sh);
    return o;
}

/* Reads p[0..n) of the input, sending each statement it completes. Returns the first outcome
 * that was not RUN_OK when stop_on_failure (the rest is not read), else the worst one. */
static enum outcome feed(struct shell *sh, const char *p, size_t n, bool stop_on_failure)
{
    enum outcome worst = RUN_OK;
    size_t pos = 0;
    while (pos < n) {
        size_t from = pos;
        bool ended = scan_statement(&sh->sc, p, n, &pos);
        append(sh, p + from, pos - from);
        if (!ended) {
            break;
        }
        if (sh->batches && scan_is_definition(&sh->sc) && sh->text.len < SHELL_BATCH_MAX_BYTES) {
            sh->ndefs++; /* the text goes on with the next statement */
            sh->sc = (struct scanner){0};
            continue;
        }
        enum outcome o = finish_statement(sh);
        worst = o > worst ? o : worst;
        if (o != RUN_OK && stop_on_failure) {
            return o;
        }
    }
    return worst;
}

/* True when nothing but blanks and comments is pending. */
static bool between_statements(const struct shell *sh)
{
    return !sh->sc.has_content && sh->sc.state == SCAN_CODE;
}

/* Reads statements line by line from f (a terminal when sh->is_terminal: prompts, and failures
 * do not stop it). `\q` alone on a line between statements quits. */
static enum outcome read_lines(struct shell *sh, FILE *f)
{
    enum outcome worst = RUN_OK;
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (sh->is_terminal) {
            fputs(between_statements(sh) ? "deql> " : "   -> ", stdout);
            fflush(stdout);
        }
        ssize_t n = getline(&line, &cap, f);
        if (n < 0) {
            if (sh->is_terminal) {
                fputc('\n', stdout);
            }
            break;
        }
        size_t t = (size_t)n;
        while (t > 0 && isspace((unsigned char)line[t - 1])) {
            t--;
        }
        if (between_statements(sh) && t >= 2 &&
            !strncmp(line + t - 2, "\\q", 2) && strspn(line, " \t") == t - 2) {
            break;
        }
        if (sh->is_terminal && between_statements(sh)) {
            reset_statement(sh); /* a comment after the last ';' is dropped */
            sh->line = sh->col = 1; /* errors count lines from the statement's first */
        }
        enum outcome o = feed(sh, line, (size_t)n, !sh->is_terminal);
        worst = o > worst ? o : worst;
        if (o != RUN_OK && !sh->is_terminal) {
            free(line);
            return o;
        }
    }
    free(line);
    enum outcome o = finish_statement(sh);
    return o > worst ? o : worst;
}

/* ---- flags ---- */

struct args {
    const char *url, *key, *session, *file, *command;
    char session_buf[SHELL_SESSION_MAX_BYTES + 1];
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: annals deql [--url URL] [--key KEY] [--session ID] [-f FILE | -c STATEMENTS]\n\n"
            "A shell for the DeQL dialect of a running server. Reads statements (each ending with\n"
            "';') from a terminal (prompt 'deql> '; \\q or end of input quits), from FILE, from the\n"
            "-c text or from stdin when it is not a terminal, runs each on the server and prints\n"
            "tables, statuses ('OK: ...') and errors ('ERROR: ...', on stderr).\n\n"
            "flags:\n"
            "  --url URL       the DeQL mount (default http://127.0.0.1:7070/deql) [ANNALS_DEQL_URL]\n"
            "  --key KEY       an API key, sent as Authorization: Bearer [ANNALS_KEY]\n"
            "  --session ID    the session whose tables persist between statements\n"
            "                  (1 to 64 of A-Z a-z 0-9 _ . -; default a new one per run)\n"
            "  -f FILE         run the statements of FILE ('-': stdin), stop at the first failure\n"
            "  -c STATEMENTS   run these statements, stop at the first failure\n\n"
            "Cells longer than %d characters are cut, ending in \"\xE2\x80\xA6\"; NULL is printed as NULL.\n"
            "Exit status: 0 every statement succeeded, 1 one failed, 2 usage error or the server\n"
            "cannot be reached.\n",
            SHELL_CELL_MAX_CHARS);
}

static bool session_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= SHELL_SESSION_MAX_BYTES &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* Parses the flags into *a. Returns 0, 1 (help printed) or 2 (usage error, printed). */
static int parse_args(int argc, char **argv, struct args *a)
{
    a->url = env_or("ANNALS_DEQL_URL", "http://127.0.0.1:7070/deql");
    a->key = env_or("ANNALS_KEY", NULL);
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *eq = strchr(f, '=');
        size_t flen = eq && !strncmp(f, "--", 2) ? (size_t)(eq - f) : strlen(f);
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            return 1;
        }
        const char **dst = flen == 5 && !strncmp(f, "--url", 5)       ? &a->url
                           : flen == 5 && !strncmp(f, "--key", 5)     ? &a->key
                           : flen == 9 && !strncmp(f, "--session", 9) ? &a->session
                           : !strcmp(f, "-f")                         ? &a->file
                           : !strcmp(f, "-c")                         ? &a->command
                                                                      : NULL;
        const char *v = flen < strlen(f) ? f + flen + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!dst || !v) {
            fprintf(stderr, dst ? "annals deql: %s needs a value\n\n" : "annals deql: unknown flag '%s'\n\n", f);
            usage(stderr);
            return 2;
        }
        *dst = v;
    }
    if (a->file && a->command) {
        fputs("annals deql: -f and -c cannot be used together\n", stderr);
        return 2;
    }
    if (a->session && !session_ok(a->session)) {
        fputs("annals deql: --session is 1 to 64 of A-Z a-z 0-9 _ . -\n", stderr);
        return 2;
    }
    if (!a->session) {
        snprintf(a->session_buf, sizeof a->session_buf, "shell-%ld-%lld", (long)getpid(),
                 (long long)time(NULL));
        a->session = a->session_buf;
    }
    return 0;
}

/* ---- the command ---- */

static int shell_init(struct shell *sh, const struct args *a)
{
    size_t n = strlen(a->url);
    while (n > 0 && a->url[n - 1] == '/') {
        n--;
    }
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%.*s/api/deql/run", (int)n, a->url);
    sh->endpoint = buf_steal(&b, NULL);
    buf_init(&sh->answer);
    buf_init(&sh->text);
    sh->line = sh->col = 1;
    sh->curl = curl_easy_init();
    if (!sh->curl) {
        fputs("annals deql: cannot start libcurl\n", stderr);
        return 2;
    }
    char h[SHELL_SESSION_MAX_BYTES + 32];
    snprintf(h, sizeof h, "X-DeQL-Session: %s", a->session);
    sh->headers = curl_slist_append(NULL, "Accept: application/json");
    sh->headers = curl_slist_append(sh->headers, "Content-Type: application/json");
    sh->headers = curl_slist_append(sh->headers, "Expect:");
    sh->headers = curl_slist_append(sh->headers, h);
    if (a->key) {
        struct buf auth;
        buf_init(&auth);
        buf_printf(&auth, "Authorization: Bearer %s", a->key);
        sh->headers = curl_slist_append(sh->headers, auth.ptr);
        buf_fini(&auth);
    }
    curl_easy_setopt(sh->curl, CURLOPT_URL, sh->endpoint);
    curl_easy_setopt(sh->curl, CURLOPT_HTTPHEADER, sh->headers);
    curl_easy_setopt(sh->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(sh->curl, CURLOPT_WRITEDATA, sh);
    curl_easy_setopt(sh->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(sh->curl, CURLOPT_CONNECTTIMEOUT, (long)SHELL_CONNECT_TIMEOUT_S);
    curl_easy_setopt(sh->curl, CURLOPT_USERAGENT, "annals-deql");
    return 0;
}

static void shell_fini(struct shell *sh)
{
    curl_slist_free_all(sh->headers);
    if (sh->curl) {
        curl_easy_cleanup(sh->curl);
    }
    buf_fini(&sh->answer);
    buf_fini(&sh->text);
    free(sh->endpoint);
}

int cli_deql_main(int argc, char **argv)
{
    struct args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        return rc == 1 ? 0 : 2;
    }
    FILE *f = NULL;
    if (a.file) {
        f = strcmp(a.file, "-") ? fopen(a.file, "r") : stdin;
        if (!f) {
            fprintf(stderr, "annals deql: cannot open %s: %s\n", a.file, strerror(errno));
            return 2;
        }
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct shell sh = {0};
    rc = shell_init(&sh, &a);
    if (!rc && a.command) {
        sh.batches = true;
        rc = (int)feed(&sh, a.command, strlen(a.command), true);
        rc = rc ? rc : (int)finish_statement(&sh);
    } else if (!rc) {
        sh.is_terminal = !f && isatty(STDIN_FILENO);
        sh.batches = !sh.is_terminal;
        if (sh.is_terminal) {
            fprintf(stderr, "annals deql: %s, session %s; end statements with ';', \\q quits\n",
                    sh.endpoint, a.session);
        }
        rc = (int)read_lines(&sh, f ? f : stdin);
    }
    if (f && f != stdin) {
        fclose(f);
    }
    shell_fini(&sh);
    curl_global_cleanup();
    return rc;
}
