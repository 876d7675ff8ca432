/* SSE fan-out benchmark: N subscribers on one database's live log receive a steady append
 * load; reports delivery latency from commit (each event's "recorded" time, stamped by the
 * writer before its fdatasync) to receipt, and whether every subscriber got every event.
 *
 * usage: sse_fanout PORT SUBSCRIBERS EVENTS_PER_SECOND SECONDS
 *
 * One thread appends single events at the given rate over one keep-alive connection; the main
 * thread reads every subscriber with epoll. Client and server share the machine's clock, so
 * latency = receipt time - recorded time. Prints one line:
 *   sse-fanout: subscribers=N appended=A expected=E received=R missing=M p50_ms= p99_ms= max_ms= */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct sub {
    int fd;
    char *buf;
    size_t len, cap;
    bool head_done;
    bool caught_up;
    uint64_t received;
};

static uint16_t port;
static volatile bool stop_appending;
static uint64_t appended;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        exit(2);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            perror("send");
            exit(2);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Reads one HTTP answer with a Content-Length on fd (the appender's keep-alive connection). */
static int read_answer(int fd)
{
    char b[4096];
    size_t len = 0;
    for (;;) {
        ssize_t r = recv(fd, b + len, sizeof b - 1 - len, 0);
        if (r <= 0) {
            return -1;
        }
        len += (size_t)r;
        b[len] = '\0';
        char *end = strstr(b, "\r\n\r\n");
        char *cl = strcasestr(b, "Content-Length:");
        if (end && cl && len >= (size_t)(end + 4 - b) + strtoul(cl + 15, NULL, 10)) {
            return atoi(b + 9);
        }
    }
}

static void *appender(void *arg)
{
    double rate = *(double *)arg;
    int fd = dial();
    int64_t start = now_us();
    for (uint64_t i = 0; !stop_appending; i++) {
        int64_t due = start + (int64_t)((double)i * 1e6 / rate);
        int64_t wait = due - now_us();
        if (wait > 0) {
            usleep((useconds_t)wait);
        }
        char body[128], req[512];
        int bn = snprintf(body, sizeof body, "{\"events\":[{\"type\":\"bench.fanout\",\"data\":{\"i\":%llu}}]}",
                          (unsigned long long)i);
        int rn = snprintf(req, sizeof req,
                          "POST /v1/databases/default/streams/fanout-%llu/events HTTP/1.1\r\n"
                          "Host: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                          (unsigned long long)(i % 100), bn, body);
        send_all(fd, req, (size_t)rn);
        if (read_answer(fd) != 201) {
            fprintf(stderr, "sse_fanout: an append failed\n");
            exit(2);
        }
        __atomic_add_fetch(&appended, 1, __ATOMIC_RELAXED);
    }
    close(fd);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* "recorded":"2026-11-28T23:05:09.820803Z" in a message -> microseconds since the epoch. */
static bool recorded_us(const char *msg, int64_t *out)
{
    const char *p = strstr(msg, "\"recorded\":\"");
    struct tm tm = {0};
    int us = 0;
    if (!p || sscanf(p + 12, "%4d-%2d-%2dT%2d:%2d:%2d.%6d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &us) != 7) {
        return false;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm) * 1000000 + us;
    return true;
}

static int64_t *lat;
static size_t nlat, caplat;
static bool measuring;

/* Consumes the complete messages in s->buf. */
static void take_messages(struct sub *s)
{
    size_t off = 0;
    if (!s->head_done) {
        char *end = memmem(s->buf, s->len, "\r\n\r\n", 4);
        if (!end) {
            return;
        }
        if (strncmp(s->buf, "HTTP/1.1 200", 12) != 0) {
            fprintf(stderr, "sse_fanout: subscription refused: %.60s\n", s->buf);
            exit(2);
        }
        s->head_done = true;
        off = (size_t)(end + 4 - s->buf);
    }
    for (;;) {
        char *end = memmem(s->buf + off, s->len - off, "\n\n", 2);
        if (!end) {
            break;
        }
        *end = '\0';
        const char *msg = s->buf + off;
        if (strncmp(msg, "event: caught_up", 16) == 0) {
            s->caught_up = true;
        } else if (strncmp(msg, "id: ", 4) == 0) {
            int64_t rec;
            s->received++;
            if (measuring && recorded_us(msg, &rec)) {
                if (nlat == caplat) {
                    caplat = caplat ? caplat * 2 : 1 << 20;
                    lat = realloc(lat, caplat * sizeof(*lat));
                }
                lat[nlat++] = now_us() - rec;
            }
        }
        off = (size_t)(end + 2 - s->buf);
    }
    memmove(s->buf, s->buf + off, s->len - off);
    s->len -= off;
}

static void pump(int ep, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        struct sub *s = evs[i].data.ptr;
        for (;;) {
            if (s->cap - s->len < 65536) {
                s->cap = s->cap * 2 + 65536;
                s->buf = realloc(s->buf, s->cap);
            }
            ssize_t r = recv(s->fd, s->buf + s->len, s->cap - s->len - 1, MSG_DONTWAIT);
            if (r > 0) {
                s->len += (size_t)r;
                continue;
            }
            if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                fprintf(stderr, "sse_fanout: a subscription closed\n");
                exit(2);
            }
            break;
        }
        take_messages(s);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: sse_fanout PORT SUBSCRIBERS EVENTS_PER_SECOND SECONDS\n");
        return 2;
    }
    port = (uint16_t)atoi(argv[1]);
    int nsubs = atoi(argv[2]);
    double rate = atof(argv[3]);
    int seconds = atoi(argv[4]);
    struct rlimit rl = {(rlim_t)nsubs + 64, (rlim_t)nsubs + 64};
    setrlimit(RLIMIT_NOFILE, &rl);
    int ep = epoll_create1(0);
    struct sub *subs = calloc((size_t)nsubs, sizeof(*subs));
    static const char GET[] = "GET /v1/databases/default/events/live?from=latest HTTP/1.1\r\n"
                              "Host: localhost\r\nAccept: text/event-stream\r\n\r\n";
    for (int i = 0; i < nsubs; i++) {
        subs[i].fd = dial();
        send_all(subs[i].fd, GET, sizeof GET - 1);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &subs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev);
    }
    int64_t deadline = now_us() + 60 * 1000000ll;
    for (int ready = 0; ready < nsubs && now_us() < deadline;) {
        pump(ep, 100);
        ready = 0;
        for (int i = 0; i < nsubs; i++) {
            ready += subs[i].caught_up;
        }
    }
    measuring = true;
    pthread_t t;
    pthread_create(&t, NULL, appender, &rate);
    int64_t end = now_us() + (int64_t)seconds * 1000000;
    while (now_us() < end) {
        pump(ep, 50);
    }
    stop_appending = true;
    pthread_join(t, NULL);
    uint64_t total = __atomic_load_n(&appended, __ATOMIC_RELAXED);
    uint64_t expected = total * (uint64_t)nsubs, received = 0;
    int64_t drain_end = now_us() + 10 * 1000000ll;
    for (;;) {
        received = 0;
        for (int i = 0; i < nsubs; i++) {
            received += subs[i].received;
        }
        if (received >= expected || now_us() > drain_end) {
            break;
        }
        pump(ep, 50);
    }
    qsort(lat, nlat, sizeof(*lat), cmp_i64);
    double p50 = nlat ? (double)lat[nlat / 2] / 1000.0 : 0;
    double p99 = nlat ? (double)lat[(size_t)((double)nlat * 0.99)] / 1000.0 : 0;
    double mx = nlat ? (double)lat[nlat - 1] / 1000.0 : 0;
    printf("sse-fanout: subscribers=%d appended=%llu expected=%llu received=%llu missing=%llu "
           "p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
           nsubs, (unsigned long long)total, (unsigned long long)expected,
           (unsigned long long)received,
           (unsigned long long)(expected > received ? expected - received : 0), p50, p99, mx);
    return 0;
}
