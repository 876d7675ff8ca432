/* A local HTTP receiver for the delivery tests: a thread that accepts connections on
 * 127.0.0.1 (an ephemeral port), keeps each request whole (head and body, NUL-terminated) and
 * answers each with the next status of the list it was given (200 once the list is used up),
 * then closes the connection. One request per connection, as delivery_post sends them. */
#ifndef TESTS_RECEIVER_H
#define TESTS_RECEIVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum { RCV_MAX = 64, RCV_REQUEST_BYTES = 64 * 1024 };

struct rcv {
    int fd;                /* the listening socket */
    int port;
    pthread_t thread;
    pthread_mutex_t mu;    /* guards req and n */
    char *req[RCV_MAX];    /* owned: the requests received, oldest first */
    size_t n;
    const int *statuses;   /* borrowed: the answers, in order */
    size_t nstatuses;
};

/* The value of header name of request req into out (NULL when it has none; the first one). */
static inline const char *rcv_header(const char *req, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *end = strstr(req, "\r\n\r\n");
    for (const char *p = strstr(req, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n + strspn(p + 3 + n, " ");
            size_t len = (size_t)(strstr(v, "\r\n") - v);
            snprintf(out, cap, "%.*s", (int)len, v);
            return out;
        }
    }
    return NULL;
}

/* How many times request req carries header name. */
static inline int rcv_header_count(const char *req, const char *name)
{
    size_t n = strlen(name);
    const char *end = strstr(req, "\r\n\r\n");
    int count = 0;
    for (const char *p = strstr(req, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        count += strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':';
    }
    return count;
}

/* Request req's body. */
static inline const char *rcv_body(const char *req)
{
    const char *end = strstr(req, "\r\n\r\n");
    return end ? end + 4 : "";
}

/* Reads one whole request from fd (its head, then Content-Length bytes). NULL on failure. */
static inline char *rcv_read(int fd)
{
    char *b = malloc(RCV_REQUEST_BYTES + 1);
    size_t len = 0, want = 0;
    while (len < RCV_REQUEST_BYTES) {
        ssize_t got = read(fd, b + len, RCV_REQUEST_BYTES - len);
        if (got <= 0) {
            break;
        }
        len += (size_t)got;
        b[len] = '\0';
        const char *end = strstr(b, "\r\n\r\n");
        char cl[32];
        if (end && !want) {
            want = (size_t)(end + 4 - b) +
                   (rcv_header(b, "Content-Length", cl, sizeof cl) ? strtoul(cl, NULL, 10) : 0);
        }
        if (want && len >= want) {
            return b;
        }
    }
    free(b);
    return NULL;
}

static inline void *rcv_main(void *arg)
{
    struct rcv *r = arg;
    for (;;) {
        int c = accept(r->fd, NULL, NULL);
        if (c < 0) {
            return NULL; /* rcv_stop shut the socket down */
        }
        char *req = rcv_read(c);
        int status = 200;
        pthread_mutex_lock(&r->mu);
        if (req && r->n < RCV_MAX) {
            status = r->n < r->nstatuses ? r->statuses[r->n] : 200;
            r->req[r->n++] = req;
            req = NULL;
        }
        pthread_mutex_unlock(&r->mu);
        free(req);
        char answer[128];
        int len = snprintf(answer, sizeof answer, "HTTP/1.1 %d X\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n", status);
        if (write(c, answer, (size_t)len) != len) {
            /* the client went away: nothing to tell */
        }
        close(c);
    }
}

/* Starts r, answering the requests with statuses[0..n) first. */
static inline void rcv_start(struct rcv *r, const int *statuses, size_t n)
{
    memset(r, 0, sizeof(*r));
    r->statuses = statuses;
    r->nstatuses = n;
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (r->fd < 0 || bind(r->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(r->fd, 16) != 0 || getsockname(r->fd, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "  receiver: no socket\n");
        exit(1);
    }
    r->port = ntohs(a.sin_port);
    pthread_mutex_init(&r->mu, NULL);
    pthread_create(&r->thread, NULL, rcv_main, r);
}

/* Waits up to timeout_ms for n requests; true when they came. */
static inline bool rcv_wait(struct rcv *r, size_t n, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        pthread_mutex_lock(&r->mu);
        bool enough = r->n >= n;
        pthread_mutex_unlock(&r->mu);
        if (enough || waited >= timeout_ms) {
            return enough;
        }
        usleep(10 * 1000);
    }
}

/* Stops the thread and frees the requests kept. */
static inline void rcv_stop(struct rcv *r)
{
    shutdown(r->fd, SHUT_RDWR);
    pthread_join(r->thread, NULL);
    close(r->fd);
    for (size_t i = 0; i < r->n; i++) {
        free(r->req[i]);
    }
    pthread_mutex_destroy(&r->mu);
}

#endif
