/* Test-only LD_PRELOAD interposer (test_webhooks): getaddrinfo of a host name ending in
 * ".slow.test" takes SLOW_DNS_SECONDS (default 2) and then fails as an unknown name, like a
 * resolver that times out; every other name goes to the real getaddrinfo. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int gai_fn(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static const char SLOW[] = ".slow.test";
    size_t n = node ? strlen(node) : 0;
    if (n >= sizeof SLOW - 1 && strcmp(node + n - (sizeof SLOW - 1), SLOW) == 0) {
        const char *secs = getenv("SLOW_DNS_SECONDS");
        sleep(secs ? (unsigned)atoi(secs) : 2);
        return EAI_NONAME;
    }
    gai_fn *real;
    *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
    return real ? real(node, service, hints, res) : EAI_FAIL;
}
