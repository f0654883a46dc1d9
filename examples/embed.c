/*
 * examples/embed.c — the smallest complete use of libhvi by an integrator.
 *
 * The hypervisor side here is hvi's own simulator (backends/sim), so the example runs anywhere;
 * a real integration fills an hvi_glue table with its hypervisor's calls instead (see
 * docs/integration.md). The steps are the same:
 *
 *   1. fill the glue table, create the engine (hvi_engine_new);
 *   2. set the alert sink (hvi_set_alert_callback) and tell the engine the guest is ready
 *      (hvi_new_guest, with CAMI support data when an OS layer should run);
 *   3. protect something (here: one kernel page against writes, in deny mode);
 *   4. forward every exit to hvi_handle_event and call hvi_timer_tick periodically;
 *   5. hvi_detach, then hvi_engine_free.
 *
 * CMake builds it as build/examples/hvi_example_embed and runs it as a test (label
 * integration). The simulator is not installed; an installed integration compiles its own glue
 * with `cc my_glue.c $(pkg-config --cflags --libs hvi)`.
 * Exit status 0 when the protected write was denied and reported.
 */
#include <stdio.h>
#include <string.h>

#include "hvi/alert.h"
#include "hvi/hvi.h"
#include "hvi/mem.h"
#include "hvi/protect.h"
#include "hvi_sim.h"

#define KERNEL_PAGE 0xffffffff81000000ull

static unsigned g_alerts;

static void on_alert(const hvi_alert *alert, void *user)
{
    (void)user;
    char line[2048];
    if (hvi_alert_to_json(alert, line, sizeof(line), NULL) == HVI_OK)
        printf("alert: %s\n", line);
    g_alerts++;
}

static int fail(const char *what, hvi_status st)
{
    fprintf(stderr, "embed: %s: %s\n", what, hvi_strstatus(st));
    return 1;
}

int main(void)
{
    /* The "hypervisor": one vCPU, 4-level paging, one kernel page. */
    hvi_sim_config cfg = {.ram_size = 4u << 20, .vcpus = 1};
    hvi_sim *sim;
    uint64_t cr3;
    hvi_gpa frame;
    hvi_status st = hvi_sim_new(&cfg, &sim);
    if (st != HVI_OK)
        return fail("simulator", st);
    if ((st = hvi_sim_pt_new(sim, HVI_PAGING_4LVL, &cr3)) != HVI_OK ||
        (st = hvi_sim_set_paging(sim, 0, HVI_PAGING_4LVL, cr3)) != HVI_OK ||
        (st = hvi_sim_alloc_frame(sim, &frame)) != HVI_OK ||
        (st = hvi_sim_map(sim, cr3, HVI_PAGING_4LVL, KERNEL_PAGE, frame, HVI_SIM_4K,
                          HVI_SIM_PTE_W)) != HVI_OK)
        return fail("guest setup", st);
    static const char code[] = "kernel code that must not change";
    hvi_sim_phys_write(sim, frame, code, sizeof(code));

    /* 1. The glue table and the engine. */
    hvi_glue glue;
    hvi_engine *e;
    if ((st = hvi_sim_glue(sim, &glue)) != HVI_OK || (st = hvi_engine_new(&glue, &e)) != HVI_OK)
        return fail("engine", st);
    hvi_sim_attach(sim, e); /* the simulator forwards its exits to hvi_handle_event */

    /* 2. Alerts, then the guest (memory-only: no CAMI support data, no OS layer). */
    hvi_set_alert_callback(e, on_alert, NULL);
    hvi_guest_params gp = {.size = sizeof(gp), .os_hint = HVI_OS_UNKNOWN};
    if ((st = hvi_new_guest(e, &gp)) != HVI_OK)
        return fail("hvi_new_guest", st);

    /* 3. Protect the page against writes. */
    hvi_protect_desc desc = {.object = "example-page", .alert_type = HVI_ALERT_EPT_WRITE};
    hvi_protect *p;
    if ((st = hvi_protect_memory(e, &desc, frame, KERNEL_PAGE, 4096, HVI_EPT_W, &p)) != HVI_OK)
        return fail("protect", st);

    /* 4. The guest writes the page with a real instruction: 48 89 18  mov [rax], rbx. */
    static const uint8_t mov[] = {0x48, 0x89, 0x18};
    hvi_regs *r = hvi_sim_vcpu_regs(sim, 0);
    r->rip = KERNEL_PAGE + 0x100; /* the writer (its bytes are passed with the event) */
    r->gpr[HVI_RAX] = KERNEL_PAGE;
    r->gpr[HVI_RBX] = 0x9090909090909090ull;
    uint64_t v = r->gpr[HVI_RBX];
    hvi_event_reply reply;
    if ((st = hvi_sim_guest_write(sim, 0, KERNEL_PAGE, &v, 8, mov, sizeof(mov), &reply)) != HVI_OK)
        return fail("guest write", st);
    hvi_timer_tick(e);

    char now[sizeof(code)];
    hvi_sim_phys_read(sim, frame, now, sizeof(now));
    int ok = reply.action == HVI_ACTION_DENY && g_alerts == 1 && !memcmp(now, code, sizeof(code));
    printf("write %s, %u alert(s), page %s\n", reply.action == HVI_ACTION_DENY ? "denied" : "allowed",
           g_alerts, memcmp(now, code, sizeof(code)) ? "CHANGED" : "intact");

    /* 5. Detach (every hook removed, rights restored) and free. */
    while ((st = hvi_detach(e)) == HVI_E_BUSY)
        hvi_timer_tick(e);
    hvi_engine_free(e);
    hvi_sim_free(sim);
    return ok ? 0 : 1;
}
