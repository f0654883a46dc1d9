/*
 * bench_hook OUT.json — engine time of the EPT write-violation path on the simulator:
 * hvi_handle_event() for a write to a hooked byte range (regs + decode + frame lookup + sub-range
 * match + write value + the hook callback, which allows), measured as the median of batch means.
 *   violation_cached_ns     the instruction's decode comes from the per-RIP cache
 *   violation_uncached_ns   every event has a new RIP (4096 distinct RIPs over 256 cache slots)
 *   violation_fetch_ns      no instruction bytes in the event: the engine translates RIP and
 *                           fetches the code from guest memory (cached decode)
 *   baseline_unhooked_ns    the same event on a frame without hooks (dispatch floor)
 * Ratios are against the baseline; the target is a median under 1000 ns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hvi/decode.h"
#include "hvi/hook.h"
#include "hvi/mem.h"
#include "hvi_sim.h"

#define BATCH 64
#define BATCHES 401

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t calls;
static uint32_t allow_cb(hvi_engine *e, hvi_hook *h, const hvi_hook_access *a, void *c)
{
    (void)e, (void)h, (void)a, (void)c;
    calls++;
    return HVI_ACTION_ALLOW;
}

/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t MOV[] = {0x48, 0x89, 0x58, 0x08};

struct bench {
    hvi_sim *sim;
    hvi_engine *e;
    hvi_regs *regs;
    hvi_gpa data, code;
    uint64_t cr3;
};

#define GVA_DATA 0xffffffff81000000ull
#define GVA_CODE 0xffffffff81100000ull

static int setup(struct bench *b)
{
    hvi_sim_config cfg = {.ram_size = 32u << 20, .vcpus = 1};
    hvi_glue g;
    if (hvi_sim_new(&cfg, &b->sim) || hvi_sim_pt_new(b->sim, HVI_PAGING_4LVL, &b->cr3) ||
        hvi_sim_set_paging(b->sim, 0, HVI_PAGING_4LVL, b->cr3) ||
        hvi_sim_alloc_frame(b->sim, &b->data) ||
        hvi_sim_map(b->sim, b->cr3, HVI_PAGING_4LVL, GVA_DATA, b->data, HVI_SIM_4K, HVI_SIM_PTE_W))
        return -1;
    for (int i = 0; i < 2; i++) {
        hvi_gpa c;
        if (hvi_sim_alloc_frame(b->sim, &c) ||
            hvi_sim_map(b->sim, b->cr3, HVI_PAGING_4LVL, GVA_CODE + (uint64_t)i * 4096, c,
                        HVI_SIM_4K, 0))
            return -1;
        for (int k = 0; k + 4 <= 4096; k += 4)
            hvi_sim_phys_write(b->sim, c + (uint64_t)k, MOV, 4);
    }
    if (hvi_sim_glue(b->sim, &g) || hvi_engine_new(&g, &b->e))
        return -1;
    hvi_sim_attach(b->sim, b->e);
    if (hvi_mem_set_context(b->e, HVI_PAGING_4LVL, b->cr3))
        return -1;
    b->regs = hvi_sim_vcpu_regs(b->sim, 0);
    b->regs->seg[HVI_CS].ar = 0xa09b;
    b->regs->gpr[HVI_RAX] = GVA_DATA + 0x100 - 8;
    b->regs->rip = GVA_CODE;
    return 0;
}

/* mode 0: cached bytes, 1: uncached (rotating RIP), 2: fetch from guest, 3: unhooked frame */
static double run(struct bench *b, int mode, hvi_gpa unhooked)
{
    static double means[BATCHES];
    hvi_event ev = {.size = sizeof(ev), .type = HVI_EV_EPT_VIOLATION, .vcpu = 0,
                    .access = HVI_EPT_W, .gpa = b->data + 0x100, .gva = GVA_DATA + 0x100,
                    .len = 8, .insn = MOV, .insn_len = sizeof(MOV)};
    if (mode == 2)
        ev.insn = NULL, ev.insn_len = 0;
    if (mode == 3)
        ev.gpa = unhooked;
    uint32_t rot = 0;
    for (int bt = 0; bt < BATCHES; bt++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < BATCH; i++) {
            hvi_event_reply rep;
            if (mode == 1)
                b->regs->rip = GVA_CODE + 4ull * (rot++ % 2048u);
            if (hvi_handle_event(b->e, &ev, &rep) != HVI_OK)
                return -1;
        }
        means[bt] = (double)(now_ns() - t0) / BATCH;
    }
    b->regs->rip = GVA_CODE;
    qsort(means, BATCHES, sizeof(means[0]), cmp_d);
    return means[BATCHES / 2];
}

int main(int argc, char **argv)
{
    const char *out = argc > 1 ? argv[1] : "bench_hook.json";
    struct bench b;
    memset(&b, 0, sizeof(b));
    if (setup(&b) != 0) {
        fprintf(stderr, "bench_hook: simulator setup failed\n");
        return 1;
    }
    hvi_hook *h;
    hvi_gpa spare;
    if (hvi_hook_gpa_add(b.e, b.data + 0xf8, 32, HVI_EPT_W, allow_cb, NULL, &h) ||
        hvi_sim_alloc_frame(b.sim, &spare)) {
        fprintf(stderr, "bench_hook: hook setup failed\n");
        return 1;
    }
    run(&b, 0, spare); /* warm-up */
    double base = run(&b, 3, spare);
    uint64_t h0, m0, h1, m1;
    double cached = run(&b, 0, spare);
    hvi_decode_cache_stats(b.e, &h0, &m0);
    double uncached = run(&b, 1, spare);
    hvi_decode_cache_stats(b.e, &h1, &m1);
    double fetch = run(&b, 2, spare);
    double miss_rate = (double)(m1 - m0) / (double)((h1 - h0) + (m1 - m0));
    uint64_t expect = 4ull * BATCHES * BATCH; /* warm-up + 3 hooked runs; the baseline calls none */
    FILE *f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, "bench_hook: cannot write %s\n", out);
        return 1;
    }
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"bench\":\"hook\",\"events_per_batch\":%d,\"batches\":%d,"
             "\"violation_cached_ns\":%.1f,\"violation_uncached_ns\":%.1f,"
             "\"violation_fetch_ns\":%.1f,\"baseline_unhooked_ns\":%.1f,"
             "\"cached_vs_baseline\":%.2f,\"uncached_vs_baseline\":%.2f,"
             "\"uncached_vs_cached\":%.2f,\"uncached_miss_rate\":%.3f,"
             "\"target_ns\":1000,\"cached_under_target\":%s,\"callbacks\":%llu}",
             BATCH, BATCHES, cached, uncached, fetch, base, cached / base, uncached / base,
             uncached / cached, miss_rate, cached < 1000.0 ? "true" : "false",
             (unsigned long long)calls);
    fprintf(f, "%s\n", json);
    fclose(f);
    printf("%s\n", json);
    hvi_hook_remove(b.e, h);
    hvi_sim_attach(b.sim, NULL);
    hvi_engine_free(b.e);
    hvi_sim_free(b.sim);
    if (calls != expect)
        fprintf(stderr, "bench_hook: %llu callbacks, expected %llu\n", (unsigned long long)calls,
                (unsigned long long)expect);
    return calls == expect ? 0 : 1;
}
