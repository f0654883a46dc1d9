/* hvi simulator — the glue table: every member gated by fault injection and capabilities. */
#include <string.h>

#include "sim_internal.h"

#define GATE(sim, call)                                                                           \
    do {                                                                                          \
        hvi_status g_ = sim_gate((sim), (call));                                                  \
        if (g_ != HVI_OK)                                                                         \
            return g_;                                                                            \
    } while (0)

static hvi_status g_vcpu_count(void *ctx, uint32_t *out)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_VCPU_COUNT);
    if (!out)
        return HVI_E_INVAL;
    *out = s->nvcpus;
    return HVI_OK;
}

#define ALL_PARTS                                                                                 \
    (HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_SEG | HVI_REGS_SEGBASE |             \
     HVI_REGS_FSGS | HVI_REGS_DTR)

static hvi_status g_get_regs(void *ctx, uint32_t vcpu, uint32_t want, hvi_regs *out)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_GET_REGS);
    (void)want;
    if (!out || vcpu >= s->nvcpus)
        return HVI_E_INVAL;
    *out = s->cpu[vcpu].regs;
    out->valid = ALL_PARTS;
    if (!(s->caps & HVI_CAP_DTR)) {
        out->valid &= ~(uint32_t)HVI_REGS_DTR;
        out->idtr_base = out->gdtr_base = 0;
        out->idtr_limit = out->gdtr_limit = 0;
    }
    return HVI_OK;
}

static hvi_status g_set_regs(void *ctx, uint32_t vcpu, uint32_t parts, const hvi_regs *in)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_SET_REGS);
    if (!in || vcpu >= s->nvcpus)
        return HVI_E_INVAL;
    hvi_regs *r = &s->cpu[vcpu].regs;
    if (parts & HVI_REGS_GPR) {
        memcpy(r->gpr, in->gpr, sizeof(r->gpr));
        r->rip = in->rip;
        r->rflags = in->rflags;
    }
    if (parts & HVI_REGS_CR) {
        r->cr0 = in->cr0, r->cr2 = in->cr2, r->cr3 = in->cr3, r->cr4 = in->cr4, r->cr8 = in->cr8;
    }
    if (parts & HVI_REGS_EFER)
        r->efer = in->efer;
    for (int i = 0; i < HVI_SEG_COUNT; i++) {
        if (parts & HVI_REGS_SEG)
            r->seg[i].selector = in->seg[i].selector;
        if (parts & HVI_REGS_SEGBASE)
            r->seg[i] = in->seg[i];
    }
    if (parts & HVI_REGS_FSGS) {
        r->fs_base = in->fs_base, r->gs_base = in->gs_base;
        r->kernel_gs_base = in->kernel_gs_base;
    }
    if (parts & HVI_REGS_DTR) {
        r->idtr_base = in->idtr_base, r->idtr_limit = in->idtr_limit;
        r->gdtr_base = in->gdtr_base, r->gdtr_limit = in->gdtr_limit;
    }
    return HVI_OK;
}

static hvi_status g_get_msr(void *ctx, uint32_t vcpu, uint32_t msr, uint64_t *out)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_GET_MSR);
    return hvi_sim_get_msr(s, vcpu, msr, out);
}

static hvi_status g_set_msr(void *ctx, uint32_t vcpu, uint32_t msr, uint64_t value)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_SET_MSR);
    return hvi_sim_set_msr(s, vcpu, msr, value);
}

static hvi_status g_get_xcr0(void *ctx, uint32_t vcpu, uint64_t *out)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_GET_XCR0);
    if (!out || vcpu >= s->nvcpus)
        return HVI_E_INVAL;
    *out = s->cpu[vcpu].xcr0;
    return HVI_OK;
}

static hvi_status g_get_vec_reg(void *ctx, uint32_t vcpu, uint32_t index, uint8_t out[16])
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_GET_VEC_REG);
    if (!out || vcpu >= s->nvcpus || index >= 16)
        return HVI_E_INVAL;
    memcpy(out, s->cpu[vcpu].xmm[index], 16);
    return HVI_OK;
}

static hvi_status g_max_gpfn(void *ctx, uint64_t *out)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_MAX_GPFN);
    if (!out)
        return HVI_E_INVAL;
    *out = (hvi_sim_phys_limit(s) >> 12) - 1;
    return HVI_OK;
}

static hvi_status g_map_gpa(void *ctx, hvi_gpa gpa, void **out)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_MAP_GPA);
    if (!out || (gpa & 0xfff))
        return HVI_E_INVAL;
    uint64_t off = sim_ram_off(s, gpa);
    if (off == UINT64_MAX)
        return HVI_E_RANGE;
    *out = s->ram + off;
    s->maps_out++;
    return HVI_OK;
}

static hvi_status g_unmap_gpa(void *ctx, hvi_gpa gpa, void *ptr)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_UNMAP_GPA);
    uint64_t off = sim_ram_off(s, gpa & HVI_PAGE_MASK);
    if (off == UINT64_MAX || ptr != s->ram + off || s->maps_out <= 0)
        return HVI_E_INVAL;
    s->maps_out--;
    return HVI_OK;
}

static hvi_status g_set_ept(void *ctx, hvi_gpa gpa, uint32_t rights)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_SET_EPT);
    return hvi_sim_set_ept_rights(s, gpa, rights);
}

static hvi_status g_get_ept(void *ctx, hvi_gpa gpa, uint32_t *out)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_GET_EPT);
    if (!out)
        return HVI_E_INVAL;
    if (sim_ram_off(s, gpa) == UINT64_MAX)
        return HVI_E_RANGE;
    *out = hvi_sim_ept_rights(s, gpa);
    return HVI_OK;
}

static hvi_status g_enable_exit(void *ctx, uint32_t kind, uint32_t index, bool enable)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_ENABLE_EXIT);
    if (kind < HVI_EXIT_CR || kind > HVI_EXIT_XCR)
        return HVI_E_INVAL;
    for (uint32_t i = 0; i < s->nexits; i++) {
        if (s->exits[i].kind == kind && s->exits[i].index == index) {
            if (!enable)
                s->exits[i] = s->exits[--s->nexits];
            return HVI_OK;
        }
    }
    if (!enable)
        return HVI_OK;
    if (s->nexits >= SIM_MAX_EXITS)
        return HVI_E_LIMIT;
    s->exits[s->nexits].kind = kind;
    s->exits[s->nexits++].index = index;
    return HVI_OK;
}

static hvi_status g_set_breakpoint(void *ctx, hvi_gva gva, bool enable)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_SET_BREAKPOINT);
    for (uint32_t i = 0; i < s->nbp; i++) {
        if (s->bp[i] == gva) {
            if (!enable)
                s->bp[i] = s->bp[--s->nbp];
            return HVI_OK;
        }
    }
    if (!enable)
        return HVI_OK;
    if (s->nbp >= SIM_MAX_BP)
        return HVI_E_LIMIT;
    s->bp[s->nbp++] = gva;
    return HVI_OK;
}

static hvi_status g_set_watchpoint(void *ctx, hvi_gva gva, uint32_t len, uint32_t kind, bool enable)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_SET_WATCHPOINT);
    bool range = (s->caps & HVI_CAP_WATCH_RANGE) != 0;
    if (!len || len > (range ? HVI_WATCH_RANGE_MAX_LEN : HVI_PAGE_SIZE) || gva + len - 1 < gva ||
        kind < HVI_WATCH_WRITE || kind > HVI_WATCH_ACCESS)
        return HVI_E_INVAL;
    for (uint32_t i = 0; i < s->nwp; i++) {
        struct sim_wp *w = &s->wp[i];
        if (w->gva == gva && w->len == len && w->kind == kind) {
            if (!enable)
                *w = s->wp[--s->nwp];
            return HVI_OK;
        }
    }
    if (!enable)
        return HVI_OK;
    if (s->nwp >= (range ? HVI_WATCH_RANGE_MAX : SIM_MAX_WP))
        return HVI_E_LIMIT;
    s->wp[s->nwp].gva = gva;
    s->wp[s->nwp].len = len;
    s->wp[s->nwp++].kind = kind;
    return HVI_OK;
}

static hvi_status g_single_step(void *ctx, uint32_t vcpu, bool enable)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_SINGLE_STEP);
    if (vcpu >= s->nvcpus)
        return HVI_E_INVAL;
    s->cpu[vcpu].stepping = enable;
    return HVI_OK;
}

static hvi_status g_pause(void *ctx)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_PAUSE);
    s->paused = true;
    return HVI_OK;
}

static hvi_status g_resume(void *ctx)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_RESUME);
    s->paused = false;
    return HVI_OK;
}

static hvi_status g_inject(void *ctx, uint32_t vcpu, uint8_t vector, uint32_t error_code,
                           uint64_t cr2)
{
    hvi_sim *s = ctx;
    GATE(s, HVI_SIM_CALL_INJECT);
    if (vcpu >= s->nvcpus || vector > 31)
        return HVI_E_INVAL;
    struct sim_vcpu *c = &s->cpu[vcpu];
    if (c->exc_pending)
        return HVI_E_BUSY;
    c->exc_pending = true;
    c->exc_vector = vector;
    c->exc_error = error_code;
    c->exc_cr2 = cr2;
    return HVI_OK;
}

hvi_status hvi_sim_glue(hvi_sim *sim, hvi_glue *g)
{
    if (!sim || !g)
        return HVI_E_INVAL;
    uint64_t c = sim->caps;
    memset(g, 0, sizeof(*g));
    g->version = HVI_GLUE_VERSION;
    g->size = sizeof(*g);
    g->caps = c;
    g->ctx = sim;
    g->name = "sim";
    g->vcpu_count = g_vcpu_count;
    g->get_regs = g_get_regs;
    g->set_regs = (c & HVI_CAP_REGS_WRITE) ? g_set_regs : NULL;
    g->get_msr = (c & HVI_CAP_MSR_READ) ? g_get_msr : NULL;
    g->set_msr = (c & HVI_CAP_MSR_WRITE) ? g_set_msr : NULL;
    g->get_xcr0 = g_get_xcr0;
    g->max_gpfn = g_max_gpfn;
    g->map_gpa = g_map_gpa;
    g->unmap_gpa = g_unmap_gpa;
    g->set_ept_rights = (c & HVI_CAP_EPT) ? g_set_ept : NULL;
    g->get_ept_rights = (c & HVI_CAP_EPT) ? g_get_ept : NULL;
    g->enable_exit = (c & HVI_CAP_REG_EXITS) ? g_enable_exit : NULL;
    g->set_breakpoint = (c & HVI_CAP_BREAKPOINT) ? g_set_breakpoint : NULL;
    g->set_watchpoint = (c & HVI_CAP_WATCHPOINT) ? g_set_watchpoint : NULL;
    g->single_step = (c & HVI_CAP_SINGLE_STEP) ? g_single_step : NULL;
    g->pause = (c & HVI_CAP_PAUSE) ? g_pause : NULL;
    g->resume = (c & HVI_CAP_PAUSE) ? g_resume : NULL;
    g->inject_exception = (c & HVI_CAP_INJECT) ? g_inject : NULL;
    g->get_vec_reg = (c & HVI_CAP_VEC_REGS) ? g_get_vec_reg : NULL;
    return HVI_OK;
}
