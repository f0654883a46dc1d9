/*
 * e2e helper: the event-loop thread most real-guest tests run while the guest works.
 *
 * The thread serves the guest's exits (hvi_qemu_run, `tick_ms` at a time, 200 when 0) and
 * ticks the engine timer after each slice (protection checks, ring drains). The engine is not
 * thread-safe: the main thread calls the engine only between e2e_runner_stop() and the next
 * e2e_runner_start(). Include after harness.h (REQUIRE/CHECK_EQ_U64).
 */
#ifndef HVI_TEST_RUNNER_UTIL_H
#define HVI_TEST_RUNNER_UTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "hvi/hvi.h"
#include "hvi_qemu.h"

struct e2e_runner {
    hvi_qemu *q;
    hvi_engine *e;
    uint32_t tick_ms;
    pthread_t th;
    atomic_bool stop;
    atomic_uint ticks;
    bool on;
    hvi_status failed; /* first error of hvi_qemu_run other than a timeout */
};

static inline void *e2e_runner_loop(void *p)
{
    struct e2e_runner *r = p;
    while (!atomic_load(&r->stop)) {
        uint32_t n = 0;
        hvi_status st = hvi_qemu_run(r->q, r->e, r->tick_ms ? r->tick_ms : 200, 0, &n);
        if (st != HVI_OK && st != HVI_E_TIMEOUT) {
            r->failed = st;
            break;
        }
        (void)hvi_timer_tick(r->e);
        atomic_fetch_add(&r->ticks, 1);
    }
    return NULL;
}

static inline void e2e_runner_start(struct e2e_runner *r)
{
    atomic_store(&r->stop, false);
    r->on = pthread_create(&r->th, NULL, e2e_runner_loop, r) == 0;
    REQUIRE(r->on);
}

static inline void e2e_runner_stop(struct e2e_runner *r)
{
    if (!r->on)
        return;
    atomic_store(&r->stop, true);
    pthread_join(r->th, NULL);
    r->on = false;
    CHECK_EQ_U64(r->failed, HVI_OK);
}

#endif
