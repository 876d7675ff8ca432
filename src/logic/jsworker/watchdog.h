/* The CPU budget of one request: a thread that watches the engine thread's CPU clock and
 * interrupts the engine (jsw_engine_interrupt) once the budget is spent, again every
 * JSW_WATCHDOG_REPEAT_MS until the request ends, so code that swallows one interrupt (a
 * finally block, a promise job) meets the next.
 *
 *   IDLE --jsw_watchdog_arm--> ARMED --(budget spent)--> FIRED
 *   ARMED, FIRED --jsw_watchdog_disarm--> IDLE;  any --jsw_watchdog_stop--> gone
 */
#ifndef LOGIC_JSWORKER_WATCHDOG_H
#define LOGIC_JSWORKER_WATCHDOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct jsw_engine;

enum { JSW_WATCHDOG_REPEAT_MS = 5 };

struct jsw_watchdog {
    pthread_t thread;          /* the watching thread */
    pthread_mutex_t mu;        /* guards every field below */
    pthread_cond_t cv;         /* wakes the thread on arm, disarm and stop */
    clockid_t cpu_clock;       /* the engine thread's CPU-time clock */
    struct jsw_engine *engine; /* borrowed: what to interrupt */
    int64_t start_ns;          /* engine thread CPU time when armed */
    int64_t budget_ns;         /* CPU time the request may use */
    bool is_armed;             /* a request runs */
    bool has_fired;            /* its budget is spent and the engine was interrupted */
    bool is_stopping;          /* the thread should end */
};

/* Starts the thread watching the calling thread (the engine's). Returns 0 or ERR_IO. */
int jsw_watchdog_start(struct jsw_watchdog *wd, struct jsw_engine *engine);
/* Rearms the engine and starts a budget of cpu_ms. Engine thread. */
void jsw_watchdog_arm(struct jsw_watchdog *wd, uint32_t cpu_ms);
/* Ends the budget; returns the CPU time used since jsw_watchdog_arm, in microseconds. No
 * interrupt is requested after it returns. Engine thread. */
uint32_t jsw_watchdog_disarm(struct jsw_watchdog *wd);
/* Ends the thread. */
void jsw_watchdog_stop(struct jsw_watchdog *wd);

#endif
