/* A tiny unit-test harness: TEST(name) registers a test; main() runs each registered test in
 * its own forked process with a 10 s alarm, prints "PASS name" or "FAIL name", and a final
 * "N passed, M failed" line. ASSERT_EQ prints both sides. Usage: <binary> [substring]. */
#ifndef TESTS_UNIT_H
#define TESTS_UNIT_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void unit_fn(void);

struct unit_test {
    const char *name;
    unit_fn *fn;
};

static struct unit_test unit_tests[256];
static int unit_count;

#define TEST(tname)                                                                         \
    static void test_##tname(void);                                                         \
    __attribute__((constructor)) static void register_##tname(void)                        \
    {                                                                                       \
        unit_tests[unit_count].name = #tname;                                               \
        unit_tests[unit_count++].fn = test_##tname;                                         \
    }                                                                                       \
    static void test_##tname(void)

#define CHECK(x)                                                                            \
    do {                                                                                    \
        if (!(x)) {                                                                         \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #x);        \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

#define ASSERT_EQ(a, b)                                                                     \
    do {                                                                                    \
        long long va_ = (long long)(a), vb_ = (long long)(b);                               \
        if (va_ != vb_) {                                                                   \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                      \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

#define ASSERT_STR(a, b)                                                                    \
    do {                                                                                    \
        const char *sa_ = (a), *sb_ = (b);                                                  \
        if (strcmp(sa_, sb_) != 0) {                                                        \
            fprintf(stderr, "  %s:%d: %s == %s failed:\n    \"%s\"\n    \"%s\"\n", __FILE__, \
                    __LINE__, #a, #b, sa_, sb_);                                            \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (int i = 0; i < unit_count; i++) {
        if (argc > 1 && !strstr(unit_tests[i].name, argv[1])) {
            continue;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);
            unit_tests[i].fn();
            exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        printf("%s %s%s\n", ok ? "PASS" : "FAIL", unit_tests[i].name,
               ok ? "" : (WIFSIGNALED(status) ? " (crashed or timed out)" : ""));
        ok ? passed++ : failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
