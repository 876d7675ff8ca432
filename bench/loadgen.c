/* HTTP/1.1 load generator for the benchmarks: a fixed number of keep-alive connections, one
 * request in flight on each (as wrk), for a fixed time; prints throughput, latency percentiles
 * and the count of each status. It exists because wrk runs a Lua function per request: with
 * client and server on the same 2 cores, wrk's own CPU (about a third of the machine at 30k
 * appends/s) is taken from the server it measures. This tool builds each request with one
 * snprintf-like expansion and reads each answer with one recv in the common case.
 *
 * usage: loadgen [-c CONNS] [-t THREADS] [-d SECONDS] [-X METHOD] [-H 'Name: value']...
 *                [-b BODY] [-m MOD] http://127.0.0.1:PORT/path
 *
 * The path, body and header values may hold tokens, expanded per request:
 *   {p}  a prefix unique to the thread and the run ("<thread>-<random hex>")
 *   {n}  the thread's request counter (1, 2, ...)
 *   {m}  the counter modulo MOD (-m, default 10000)
 * A request whose {m} repeats goes to the same name as an earlier one; with MOD larger than a
 * thread's connections, no two requests in flight on a thread share a name (as the wrk scripts).
 *
 * Prints (one line each; bench/run.sh parses them):
 *   loadgen: requests=N seconds=S rps=R p50_ms=A p90_ms=B p99_ms=C max_ms=D statuses=201:N errors=E
 *   loadgen: first non-2xx: STATUS BODY...   (only if there was one)
 * Answers must carry Content-Length (Annals' do, except streams, which this tool does not read).
 * Latency runs from the request's send to the last byte of its answer. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    MAX_HEADERS = 16,
    MAX_REQUEST_BYTES = 1 << 20,
    READ_BUF_BYTES = 64 * 1024,
    HIST_SUB = 128,      /* sub-buckets per power of two: under 1 % error */
    HIST_POW = 40,       /* up to 2^40 ns (18 minutes) */
    MAX_STATUS = 600,
    FIRST_ERROR_BYTES = 300,
};

struct hist {
    uint64_t count[HIST_POW * HIST_SUB];
    uint64_t total;
    uint64_t max_ns;
};

struct conn {
    int fd;
    char *req;       /* the request being sent */
    size_t req_len, req_off;
    int64_t sent_ns;
    char head[16384]; /* the answer's head until complete */
    size_t head_len;
    bool in_body;
    size_t body_left;
    int status;
    char *err_body; /* a non-2xx body being collected (first error only) */
    size_t err_len;
};

struct worker {
    pthread_t thread;
    int nconns;
    char prefix[32];
    uint64_t counter;
    struct hist hist;
    uint64_t statuses[MAX_STATUS];
    uint64_t done;
    uint64_t errors;
    char first_error[FIRST_ERROR_BYTES + 16];
    bool collecting_error;
};

static struct {
    struct sockaddr_in addr;
    char host[80];
    const char *method;
    const char *path;
    const char *body;
    const char *headers[MAX_HEADERS];
    int nheaders;
    unsigned mod;
    int64_t end_ns;
    bool templated;
    char *fixed_req; /* the request when nothing is templated */
    size_t fixed_len;
} cfg = {.method = "GET", .mod = 10000};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void hist_add(struct hist *h, uint64_t ns)
{
    unsigned idx;
    if (ns < HIST_SUB) {
        idx = (unsigned)ns;
    } else {
        unsigned p = 63 - (unsigned)__builtin_clzll(ns); /* ns in [2^p, 2^(p+1)) */
        unsigned shift = p - 7;                           /* HIST_SUB = 2^7 */
        idx = (p - 6) * HIST_SUB + (unsigned)((ns >> shift) - HIST_SUB);
        if (idx >= HIST_POW * HIST_SUB) {
            idx = HIST_POW * HIST_SUB - 1;
        }
    }
    h->count[idx]++;
    h->total++;
    if (ns > h->max_ns) {
        h->max_ns = ns;
    }
}

/* The upper bound (ns) of bucket idx. */
static uint64_t hist_bound(unsigned idx)
{
    if (idx < HIST_SUB) {
        return idx;
    }
    unsigned p = idx / HIST_SUB + 6, sub = idx % HIST_SUB;
    return ((uint64_t)(HIST_SUB + sub + 1) << (p - 7)) - 1;
}

static double hist_pct_ms(const struct hist *h, double pct)
{
    if (h->total == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)((double)h->total * pct / 100.0 + 0.5), seen = 0;
    if (want == 0) {
        want = 1;
    }
    for (unsigned i = 0; i < HIST_POW * HIST_SUB; i++) {
        seen += h->count[i];
        if (seen >= want) {
            uint64_t b = hist_bound(i);
            return (double)(b < h->max_ns ? b : h->max_ns) / 1e6;
        }
    }
    return (double)h->max_ns / 1e6;
}

/* Appends src to out (cap bytes) with {p}, {n} and {m} expanded; returns the new length. */
static size_t expand(char *out, size_t len, size_t cap, const char *src, const struct worker *w)
{
    for (const char *s = src; *s && len < cap; s++) {
        if (s[0] == '{' && s[1] && s[2] == '}' && strchr("pnm", s[1])) {
            int k;
            if (s[1] == 'p') {
                k = snprintf(out + len, cap - len, "%s", w->prefix);
            } else if (s[1] == 'n') {
                k = snprintf(out + len, cap - len, "%llu", (unsigned long long)w->counter);
            } else {
                k = snprintf(out + len, cap - len, "%llu", (unsigned long long)(w->counter % cfg.mod));
            }
            len += (k > 0) ? (size_t)k : 0;
            s += 2;
        } else {
            out[len++] = *s;
        }
    }
    return len < cap ? len : cap;
}

static bool has_token(const char *s)
{
    for (; s && *s; s++) {
        if (s[0] == '{' && s[1] && s[2] == '}' && strchr("pnm", s[1])) {
            return true;
        }
    }
    return false;
}

/* Formats the next request into r (MAX_REQUEST_BYTES); returns its length. */
static size_t format_request(struct worker *w, char *r)
{
    static __thread char body[MAX_REQUEST_BYTES];
    w->counter++;
    size_t blen = cfg.body ? expand(body, 0, sizeof body, cfg.body, w) : 0;
    size_t cap = MAX_REQUEST_BYTES, len;
    len = (size_t)snprintf(r, cap, "%s ", cfg.method);
    len = expand(r, len, cap, cfg.path, w);
    len += (size_t)snprintf(r + len, cap - len, " HTTP/1.1\r\nHost: %s\r\n", cfg.host);
    for (int i = 0; i < cfg.nheaders; i++) {
        len = expand(r, len, cap, cfg.headers[i], w);
        len += (size_t)snprintf(r + len, cap - len, "\r\n");
    }
    if (cfg.body) {
        len += (size_t)snprintf(r + len, cap - len, "Content-Length: %zu\r\n", blen);
    }
    len += (size_t)snprintf(r + len, cap - len, "\r\n");
    if (len + blen > cap) {
        fprintf(stderr, "loadgen: request over %d bytes\n", MAX_REQUEST_BYTES);
        exit(2);
    }
    memcpy(r + len, body, blen);
    return len + blen;
}

/* Makes c's next request: the fixed one, or a new expansion of the templates. */
static void build_request(struct worker *w, struct conn *c)
{
    if (cfg.templated) {
        c->req_len = format_request(w, c->req);
    } else {
        c->req = cfg.fixed_req;
        c->req_len = cfg.fixed_len;
    }
    c->req_off = 0;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("loadgen: socket");
        exit(2);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&cfg.addr, sizeof cfg.addr) != 0) {
        perror("loadgen: connect");
        exit(2);
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void watch(int ep, struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) != 0) {
        perror("loadgen: epoll_ctl");
        exit(2);
    }
}

/* Sends what is left of c's request; returns false on a connection error. */
static bool send_more(int ep, struct conn *c)
{
    while (c->req_off < c->req_len) {
        ssize_t n = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->req_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            watch(ep, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            return true;
        }
        return false;
    }
    return true;
}

static bool start_request(struct worker *w, int ep, struct conn *c)
{
    build_request(w, c);
    c->head_len = 0;
    c->in_body = false;
    c->sent_ns = now_ns();
    return send_more(ep, c);
}

/* Parses a complete head: status and Content-Length; returns false if unusable. */
static bool parse_head(struct conn *c, size_t head_bytes)
{
    if (head_bytes < 12 || strncmp(c->head, "HTTP/1.", 7) != 0) {
        return false;
    }
    c->status = atoi(c->head + 9);
    c->body_left = 0;
    bool has_len = false;
    for (char *line = memchr(c->head, '\n', head_bytes); line && line < c->head + head_bytes;
         line = memchr(line, '\n', (size_t)(c->head + head_bytes - line))) {
        line++;
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            c->body_left = strtoull(line + 15, NULL, 10);
            has_len = true;
        }
    }
    return has_len && c->status > 0 && c->status < MAX_STATUS;
}

/* Records the finished answer on c and sends the next request (if time is left). */
static bool finish_answer(struct worker *w, int ep, struct conn *c)
{
    int64_t t = now_ns();
    if (t <= cfg.end_ns) {
        hist_add(&w->hist, (uint64_t)(t - c->sent_ns));
        w->statuses[c->status]++;
        w->done++;
    }
    w->collecting_error = false;
    if (t > cfg.end_ns) {
        return true;
    }
    return start_request(w, ep, c);
}

/* Consumes n received bytes at p; returns false on a protocol or connection error. */
static bool take_bytes(struct worker *w, int ep, struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        if (!c->in_body) {
            size_t room = sizeof c->head - 1 - c->head_len;
            size_t k = n < room ? n : room;
            memcpy(c->head + c->head_len, p, k);
            c->head_len += k;
            c->head[c->head_len] = '\0';
            char *end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
            if (!end) {
                if (k == room) {
                    return false;
                }
                return true;
            }
            size_t head_bytes = (size_t)(end + 4 - c->head);
            if (!parse_head(c, head_bytes)) {
                return false;
            }
            /* Bytes past the head that were copied belong to the body. */
            size_t extra = c->head_len - head_bytes;
            size_t used = k - extra;
            p += used;
            n -= used;
            c->in_body = true;
            if ((c->status < 200 || c->status >= 300) && w->first_error[0] == '\0') {
                w->collecting_error = true;
                snprintf(w->first_error, sizeof w->first_error, "%d ", c->status);
            }
        }
        size_t k = n < c->body_left ? n : c->body_left;
        if (w->collecting_error) {
            size_t have = strlen(w->first_error);
            for (size_t i = 0; i < k && have < FIRST_ERROR_BYTES; i++) {
                w->first_error[have++] = (p[i] == '\n' || p[i] == '\r') ? ' ' : p[i];
            }
            w->first_error[have] = '\0';
        }
        c->body_left -= k;
        p += k;
        n -= k;
        if (c->body_left == 0) {
            if (n > 0) {
                return false; /* bytes nobody asked for: one request in flight */
            }
            return finish_answer(w, ep, c);
        }
    }
    return true;
}

/* Replaces a failed connection with a new one and sends the next request on it. */
static void redial(struct worker *w, int ep, struct conn *c)
{
    w->errors++;
    w->collecting_error = false;
    close(c->fd);
    c->fd = dial();
    watch(ep, c, EPOLLIN, EPOLL_CTL_ADD);
    if (now_ns() < cfg.end_ns && !start_request(w, ep, c)) {
        redial(w, ep, c);
    }
}

static void on_ready(struct worker *w, int ep, struct conn *c, uint32_t events)
{
    static __thread char buf[READ_BUF_BYTES];
    if ((events & EPOLLOUT) && c->req_off < c->req_len) {
        if (!send_more(ep, c)) {
            redial(w, ep, c);
            return;
        }
        if (c->req_off == c->req_len) {
            watch(ep, c, EPOLLIN, EPOLL_CTL_MOD);
        }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        return;
    }
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
    }
    if (n <= 0 || !take_bytes(w, ep, c, buf, (size_t)n)) {
        redial(w, ep, c);
    }
}

static pthread_barrier_t connected, start_line;

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    int ep = epoll_create1(0);
    struct conn *conns = calloc((size_t)w->nconns, sizeof(*conns));
    if (ep < 0 || !conns) {
        perror("loadgen");
        exit(2);
    }
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &conns[i];
        c->req = cfg.templated ? malloc(MAX_REQUEST_BYTES) : NULL;
        c->fd = dial();
        watch(ep, c, EPOLLIN, EPOLL_CTL_ADD);
    }
    pthread_barrier_wait(&connected);
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < w->nconns; i++) {
        if (!start_request(w, ep, &conns[i])) {
            redial(w, ep, &conns[i]);
        }
    }
    struct epoll_event evs[256];
    while (now_ns() < cfg.end_ns) {
        int n = epoll_wait(ep, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            on_ready(w, ep, evs[i].data.ptr, evs[i].events);
        }
    }
    for (int i = 0; i < w->nconns; i++) {
        close(conns[i].fd);
        if (cfg.templated) {
            free(conns[i].req); /* otherwise it is the shared fixed request */
        }
    }
    free(conns);
    close(ep);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen [-c CONNS] [-t THREADS] [-d SECONDS] [-X METHOD] "
                    "[-H 'Name: value']... [-b BODY] [-m MOD] http://127.0.0.1:PORT/path\n"
                    "  tokens in path, body, header values: {p} thread prefix, {n} counter, "
                    "{m} counter mod MOD\n");
    exit(2);
}

static void parse_url(const char *url)
{
    char ip[64];
    unsigned port;
    int off = 0;
    if (sscanf(url, "http://%63[0-9.]:%u%n", ip, &port, &off) != 2 || port == 0 || port > 65535 ||
        url[off] != '/') {
        fprintf(stderr, "loadgen: the URL must be http://IPV4:PORT/path\n");
        exit(2);
    }
    cfg.addr.sin_family = AF_INET;
    cfg.addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &cfg.addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad address %s\n", ip);
        exit(2);
    }
    snprintf(cfg.host, sizeof cfg.host, "%s:%u", ip, port);
    cfg.path = url + off;
}

static void print_summary(struct worker *ws, int nthreads, double seconds)
{
    static struct hist all;
    uint64_t statuses[MAX_STATUS] = {0}, done = 0, errors = 0;
    const char *first = NULL;
    for (int t = 0; t < nthreads; t++) {
        for (unsigned i = 0; i < HIST_POW * HIST_SUB; i++) {
            all.count[i] += ws[t].hist.count[i];
        }
        all.total += ws[t].hist.total;
        all.max_ns = ws[t].hist.max_ns > all.max_ns ? ws[t].hist.max_ns : all.max_ns;
        for (int s = 0; s < MAX_STATUS; s++) {
            statuses[s] += ws[t].statuses[s];
        }
        done += ws[t].done;
        errors += ws[t].errors;
        if (!first && ws[t].first_error[0]) {
            first = ws[t].first_error;
        }
    }
    printf("loadgen: requests=%llu seconds=%.2f rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f "
           "max_ms=%.2f statuses=",
           (unsigned long long)done, seconds, (double)done / seconds, hist_pct_ms(&all, 50),
           hist_pct_ms(&all, 90), hist_pct_ms(&all, 99), (double)all.max_ns / 1e6);
    const char *sep = "";
    for (int s = 0; s < MAX_STATUS; s++) {
        if (statuses[s]) {
            printf("%s%d:%llu", sep, s, (unsigned long long)statuses[s]);
            sep = ",";
        }
    }
    printf(" errors=%llu\n", (unsigned long long)errors);
    if (first) {
        printf("loadgen: first non-2xx: %s\n", first);
    }
}

int main(int argc, char **argv)
{
    int conns = 64, nthreads = 2, opt;
    double seconds = 10;
    while ((opt = getopt(argc, argv, "c:t:d:X:H:b:m:")) != -1) {
        switch (opt) {
        case 'c': conns = atoi(optarg); break;
        case 't': nthreads = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'X': cfg.method = optarg; break;
        case 'b': cfg.body = optarg; break;
        case 'm': cfg.mod = (unsigned)atoi(optarg); break;
        case 'H':
            if (cfg.nheaders == MAX_HEADERS) {
                usage();
            }
            cfg.headers[cfg.nheaders++] = optarg;
            break;
        default: usage();
        }
    }
    if (optind != argc - 1 || conns < 1 || nthreads < 1 || nthreads > conns || seconds <= 0 ||
        cfg.mod == 0) {
        usage();
    }
    parse_url(argv[optind]);
    cfg.templated = has_token(cfg.path) || has_token(cfg.body);
    for (int i = 0; i < cfg.nheaders; i++) {
        cfg.templated |= has_token(cfg.headers[i]);
    }
    struct worker *ws = calloc((size_t)nthreads, sizeof(*ws));
    srandom((unsigned)(now_ns() ^ getpid()));
    for (int t = 0; t < nthreads; t++) {
        ws[t].nconns = conns / nthreads + (t < conns % nthreads);
        snprintf(ws[t].prefix, sizeof ws[t].prefix, "%d-%06lx", t + 1, random() & 0xffffff);
    }
    if (!cfg.templated) {
        cfg.fixed_req = malloc(MAX_REQUEST_BYTES);
        cfg.fixed_len = format_request(&ws[0], cfg.fixed_req);
    }
    pthread_barrier_init(&connected, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&start_line, NULL, (unsigned)nthreads + 1);
    for (int t = 0; t < nthreads; t++) {
        pthread_create(&ws[t].thread, NULL, run_worker, &ws[t]);
    }
    pthread_barrier_wait(&connected); /* every connection is open: the clock starts */
    cfg.end_ns = now_ns() + (int64_t)(seconds * 1e9);
    pthread_barrier_wait(&start_line);
    for (int t = 0; t < nthreads; t++) {
        pthread_join(ws[t].thread, NULL);
    }
    print_summary(ws, nthreads, seconds);
    return 0;
}
