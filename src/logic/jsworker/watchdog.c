/* The request's CPU budget (watchdog.h). The thread sleeps on a monotonic-clock condition
 * variable for the budget still unspent (CPU time never runs faster than the wall clock, so
 * waking then is never late), reads the engine thread's CPU clock, and interrupts once the
 * budget is gone. Invariant: the engine is interrupted only while is_armed, under mu. */
#include "logic/jsworker/watchdog.h"

#include "logic/jsworker/shim.h"
#include "util/errors.h"

enum { NS_PER_MS = 1000000 };

static int64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleeps up to ns of wall time or until signalled. Called with mu held. */
static void nap(struct jsw_watchdog *wd, int64_t ns)
{
    int64_t until = clock_ns(CLOCK_MONOTONIC) + ns;
    struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
    pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
}

static void *watch(void *arg)
{
    struct jsw_watchdog *wd = arg;
    pthread_mutex_lock(&wd->mu);
    while (!wd->is_stopping) {
        if (!wd->is_armed) {
            pthread_cond_wait(&wd->cv, &wd->mu);
            continue;
        }
        int64_t left = wd->budget_ns - (clock_ns(wd->cpu_clock) - wd->start_ns);
        if (left > 0 && !wd->has_fired) {
            nap(wd, left);
            continue;
        }
        wd->has_fired = true;
        jsw_engine_interrupt(wd->engine);
        nap(wd, (int64_t)JSW_WATCHDOG_REPEAT_MS * NS_PER_MS);
    }
    pthread_mutex_unlock(&wd->mu);
    return NULL;
}

int jsw_watchdog_start(struct jsw_watchdog *wd, struct jsw_engine *engine)
{
    pthread_condattr_t attr;
    *wd = (struct jsw_watchdog){.engine = engine};
    if (pthread_getcpuclockid(pthread_self(), &wd->cpu_clock) != 0) return ERR_IO;
    pthread_mutex_init(&wd->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&wd->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&wd->thread, NULL, watch, wd) != 0) return ERR_IO;
    return 0;
}

void jsw_watchdog_arm(struct jsw_watchdog *wd, uint32_t cpu_ms)
{
    pthread_mutex_lock(&wd->mu);
    jsw_engine_rearm(wd->engine);
    wd->start_ns = clock_ns(wd->cpu_clock);
    wd->budget_ns = (int64_t)cpu_ms * NS_PER_MS;
    wd->is_armed = true;
    wd->has_fired = false;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
}

uint32_t jsw_watchdog_disarm(struct jsw_watchdog *wd)
{
    pthread_mutex_lock(&wd->mu);
    int64_t used = clock_ns(wd->cpu_clock) - wd->start_ns;
    wd->is_armed = false;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
    return (uint32_t)(used / 1000);
}

void jsw_watchdog_stop(struct jsw_watchdog *wd)
{
    pthread_mutex_lock(&wd->mu);
    wd->is_stopping = true;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
    pthread_join(wd->thread, NULL);
    pthread_mutex_destroy(&wd->mu);
    pthread_cond_destroy(&wd->cv);
}
