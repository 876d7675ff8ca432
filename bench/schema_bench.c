/* JSON Schema validation throughput (json/schema.h): a typical j17 event schema (an object
 * with 5 typed properties, required, a format email, an enum) against a 1 KB instance,
 * validated in a loop on one thread with a warmed result (no allocation per validation), and
 * on T threads sharing the compiled schema. Prints validations/s and MB/s.
 * Usage: schema_bench [seconds-per-case] [threads]. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json/schema.h"

static const char SCHEMA[] =
    "{\"type\":\"object\","
    "\"required\":[\"email\",\"name\",\"plan\"],"
    "\"properties\":{"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":200},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"plan\":{\"enum\":[\"free\",\"pro\",\"enterprise\"]},"
    "\"notes\":{\"type\":\"string\",\"maxLength\":4000}},"
    "\"additionalProperties\":false}";

/* One validating thread. */
struct worker {
    const struct schema *s; /* shared, read-only */
    const char *inst;       /* instance text */
    size_t len;             /* its bytes */
    double seconds;         /* how long to run */
    unsigned long count;    /* validations done */
    int bad;                /* unexpected results */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    struct schema_result r;
    schema_result_init(&r);
    double end = now_s() + w->seconds;
    while (now_s() < end) {
        for (int i = 0; i < 1000; i++) {
            w->bad += schema_validate(w->s, w->inst, w->len, &r) != 0;
        }
        w->count += 1000;
    }
    schema_result_fini(&r);
    return NULL;
}

static double run_case(const struct schema *s, const char *inst, size_t len, double secs,
                       int threads)
{
    pthread_t t[64];
    struct worker w[64];
    unsigned long total = 0;
    double start = now_s();
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){s, inst, len, secs, 0, 0};
        pthread_create(&t[i], NULL, run, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += w[i].count;
        if (w[i].bad) {
            fprintf(stderr, "unexpected validation failures\n");
            exit(1);
        }
    }
    return (double)total / (now_s() - start);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 3.0;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    char notes[1024];
    memset(notes, 'x', sizeof notes);
    int nlen = 941; /* makes the instance 1,024 bytes */
    char inst[2048];
    int len = snprintf(inst, sizeof inst,
                       "{\"email\":\"jane.doe@example.com\",\"name\":\"Jane Doe\",\"age\":42,"
                       "\"plan\":\"pro\",\"notes\":\"%.*s\"}", nlen, notes);
    struct schema *s;
    struct schema_error err;
    if (schema_compile(SCHEMA, strlen(SCHEMA), &s, &err) < 0) {
        fprintf(stderr, "compile: %s\n", err.msg);
        return 1;
    }
    double one = run_case(s, inst, (size_t)len, secs, 1);
    printf("instance %d bytes, 1 thread: %.0f validations/s (%.1f MB/s, %.2f us each)\n", len,
           one, one * len / 1e6, 1e6 / one);
    double many = run_case(s, inst, (size_t)len, secs, threads);
    printf("instance %d bytes, %d threads: %.0f validations/s\n", len, threads, many);
    schema_free(s);
    return 0;
}
