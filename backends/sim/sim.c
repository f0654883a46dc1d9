/* hvi simulator — RAM, frames, vCPUs, MSRs, fault injection. */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

#define CR0_PE (1ull << 0)
#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)

hvi_status hvi_sim_new(const hvi_sim_config *cfg, hvi_sim **out)
{
    if (!out)
        return HVI_E_INVAL;
    *out = NULL;
    hvi_sim_config c = {0};
    if (cfg)
        c = *cfg;
    if (!c.ram_size)
        c.ram_size = 16ull << 20;
    if (!c.vcpus)
        c.vcpus = 1;
    if ((c.ram_size & 0xfff) || c.ram_size < (64u << 10) || c.ram_size > (4ull << 30) ||
        c.vcpus > SIM_MAX_VCPUS || (c.hole_start & 0xfff) || (c.hole_size & 0xfff) ||
        (c.hole_size && (!c.hole_start || c.hole_start > c.ram_size)) ||
        c.hole_size > (1ull << 40))
        return HVI_E_INVAL;
    hvi_sim *s = calloc(1, sizeof(*s));
    if (!s)
        return HVI_E_NOMEM;
    s->ram = calloc(1, (size_t)c.ram_size);
    s->ept = malloc((size_t)(c.ram_size >> 12));
    s->cpu = calloc(c.vcpus, sizeof(*s->cpu));
    if (!s->ram || !s->ept || !s->cpu) {
        hvi_sim_free(s);
        return HVI_E_NOMEM;
    }
    memset(s->ept, HVI_EPT_RWX, (size_t)(c.ram_size >> 12));
    s->ram_size = c.ram_size;
    s->hole_start = c.hole_size ? c.hole_start : 0;
    s->hole_size = c.hole_size;
    s->nvcpus = c.vcpus;
    s->caps = HVI_SIM_CAPS_ALL;
    s->next_frame = c.ram_size > (2u << 20) ? (1u << 20) : 0x1000;
    *out = s;
    return HVI_OK;
}

void hvi_sim_free(hvi_sim *sim)
{
    if (!sim)
        return;
    free(sim->ram);
    free(sim->ept);
    free(sim->cpu);
    free(sim);
}

void hvi_sim_set_caps(hvi_sim *sim, uint64_t caps)
{
    if (sim)
        sim->caps = caps & HVI_SIM_CAPS_ALL;
}

uint64_t hvi_sim_caps(const hvi_sim *sim)
{
    return sim ? sim->caps : 0;
}

void hvi_sim_attach(hvi_sim *sim, hvi_engine *engine)
{
    if (sim)
        sim->engine = engine;
}

uint64_t hvi_sim_ram_size(const hvi_sim *sim)
{
    return sim ? sim->ram_size : 0;
}

uint64_t hvi_sim_phys_limit(const hvi_sim *sim)
{
    return sim ? sim->ram_size + sim->hole_size : 0;
}

uint64_t sim_ram_off(const hvi_sim *sim, hvi_gpa gpa)
{
    if (sim->hole_size && gpa >= sim->hole_start) {
        if (gpa - sim->hole_start < sim->hole_size)
            return UINT64_MAX;
        gpa -= sim->hole_size;
    }
    return gpa < sim->ram_size ? gpa : UINT64_MAX;
}

/* Copy between RAM and buf, frame by frame (the hole may split a range). */
static hvi_status phys_copy(hvi_sim *sim, hvi_gpa gpa, void *buf, size_t len, bool write)
{
    if (!sim || (!buf && len))
        return HVI_E_INVAL;
    if (len > sim->ram_size || gpa > UINT64_MAX - len)
        return HVI_E_RANGE;
    for (size_t done = 0; done < len;) {
        uint64_t off = sim_ram_off(sim, gpa + done);
        if (off == UINT64_MAX)
            return HVI_E_RANGE;
        size_t n = HVI_PAGE_SIZE - (size_t)((gpa + done) & 0xfff);
        if (n > len - done)
            n = len - done;
        if (write)
            memcpy(sim->ram + off, (const uint8_t *)buf + done, n);
        else
            memcpy((uint8_t *)buf + done, sim->ram + off, n);
        done += n;
    }
    return HVI_OK;
}

hvi_status hvi_sim_phys_read(hvi_sim *sim, hvi_gpa gpa, void *buf, size_t len)
{
    return phys_copy(sim, gpa, buf, len, false);
}

hvi_status hvi_sim_phys_write(hvi_sim *sim, hvi_gpa gpa, const void *buf, size_t len)
{
    return phys_copy(sim, gpa, (void *)(uintptr_t)buf, len, true);
}

void *hvi_sim_phys_ptr(hvi_sim *sim, hvi_gpa gpa)
{
    if (!sim)
        return NULL;
    uint64_t off = sim_ram_off(sim, gpa);
    return off == UINT64_MAX ? NULL : sim->ram + off;
}

hvi_status hvi_sim_alloc_frames(hvi_sim *sim, uint64_t count, uint64_t align, hvi_gpa *out)
{
    if (!sim || !out || !count || align < HVI_PAGE_SIZE || align > (1ull << 30) ||
        (align & (align - 1)))
        return HVI_E_INVAL;
    uint64_t limit = hvi_sim_phys_limit(sim);
    for (int tries = 0; tries < 2; tries++) {
        uint64_t start = (sim->next_frame + align - 1) & ~(align - 1);
        if (start >= limit || count > (limit - start) >> 12)
            return HVI_E_NOMEM;
        uint64_t end = start + (count << 12);
        if (sim->hole_size && start < sim->hole_start + sim->hole_size && end > sim->hole_start) {
            sim->next_frame = sim->hole_start + sim->hole_size; /* skip the hole, try again */
            continue;
        }
        for (uint64_t g = start; g < end; g += HVI_PAGE_SIZE)
            memset(sim->ram + sim_ram_off(sim, g), 0, HVI_PAGE_SIZE);
        sim->next_frame = end;
        *out = start;
        return HVI_OK;
    }
    return HVI_E_NOMEM;
}

hvi_status hvi_sim_alloc_frame(hvi_sim *sim, hvi_gpa *out)
{
    return hvi_sim_alloc_frames(sim, 1, HVI_PAGE_SIZE, out);
}

uint32_t hvi_sim_vcpu_count(const hvi_sim *sim)
{
    return sim ? sim->nvcpus : 0;
}

hvi_regs *hvi_sim_vcpu_regs(hvi_sim *sim, uint32_t vcpu)
{
    return sim && vcpu < sim->nvcpus ? &sim->cpu[vcpu].regs : NULL;
}

hvi_status hvi_sim_set_paging(hvi_sim *sim, uint32_t vcpu, hvi_paging_mode mode, uint64_t cr3)
{
    hvi_regs *r = hvi_sim_vcpu_regs(sim, vcpu);
    if (!r || mode > HVI_PAGING_5LVL)
        return HVI_E_INVAL;
    r->cr0 = CR0_PE | (mode == HVI_PAGING_NONE ? 0 : CR0_PG);
    r->cr4 &= ~(CR4_PSE | CR4_PAE | CR4_LA57);
    r->efer &= ~(EFER_LME | EFER_LMA | EFER_NXE);
    if (mode == HVI_PAGING_32)
        r->cr4 |= CR4_PSE;
    if (mode >= HVI_PAGING_PAE) {
        r->cr4 |= CR4_PAE;
        r->efer |= EFER_NXE;
    }
    if (mode >= HVI_PAGING_4LVL)
        r->efer |= EFER_LME | EFER_LMA;
    if (mode == HVI_PAGING_5LVL)
        r->cr4 |= CR4_LA57;
    r->cr3 = cr3;
    return HVI_OK;
}

hvi_paging_mode hvi_sim_vcpu_paging(hvi_sim *sim, uint32_t vcpu)
{
    hvi_regs *r = hvi_sim_vcpu_regs(sim, vcpu);
    return r ? hvi_paging_mode_from_regs(r->cr0, r->cr4, r->efer) : HVI_PAGING_NONE;
}

static uint64_t *msr_alias(struct sim_vcpu *c, uint32_t msr)
{
    switch (msr) {
    case HVI_MSR_EFER: return &c->regs.efer;
    case HVI_MSR_FS_BASE: return &c->regs.fs_base;
    case HVI_MSR_GS_BASE: return &c->regs.gs_base;
    case HVI_MSR_KERNEL_GS_BASE: return &c->regs.kernel_gs_base;
    default: return NULL;
    }
}

hvi_status hvi_sim_set_msr(hvi_sim *sim, uint32_t vcpu, uint32_t msr, uint64_t value)
{
    if (!sim || vcpu >= sim->nvcpus)
        return HVI_E_INVAL;
    struct sim_vcpu *c = &sim->cpu[vcpu];
    uint64_t *alias = msr_alias(c, msr);
    if (alias) {
        *alias = value;
        return HVI_OK;
    }
    for (uint32_t i = 0; i < c->nmsrs; i++) {
        if (c->msrs[i].msr == msr) {
            c->msrs[i].value = value;
            return HVI_OK;
        }
    }
    if (c->nmsrs >= SIM_MAX_MSRS)
        return HVI_E_LIMIT;
    c->msrs[c->nmsrs].msr = msr;
    c->msrs[c->nmsrs++].value = value;
    return HVI_OK;
}

hvi_status hvi_sim_get_msr(hvi_sim *sim, uint32_t vcpu, uint32_t msr, uint64_t *out)
{
    if (!sim || vcpu >= sim->nvcpus || !out)
        return HVI_E_INVAL;
    struct sim_vcpu *c = &sim->cpu[vcpu];
    uint64_t *alias = msr_alias(c, msr);
    *out = alias ? *alias : 0;
    for (uint32_t i = 0; !alias && i < c->nmsrs; i++)
        if (c->msrs[i].msr == msr)
            *out = c->msrs[i].value;
    return HVI_OK;
}

hvi_status hvi_sim_set_xcr0(hvi_sim *sim, uint32_t vcpu, uint64_t value)
{
    if (!sim || vcpu >= sim->nvcpus)
        return HVI_E_INVAL;
    sim->cpu[vcpu].xcr0 = value;
    return HVI_OK;
}

hvi_status hvi_sim_set_xmm(hvi_sim *sim, uint32_t vcpu, uint32_t index, const uint8_t value[16])
{
    if (!sim || vcpu >= sim->nvcpus || index >= 16 || !value)
        return HVI_E_INVAL;
    memcpy(sim->cpu[vcpu].xmm[index], value, 16);
    return HVI_OK;
}

uint32_t hvi_sim_ept_rights(hvi_sim *sim, hvi_gpa gpa)
{
    uint64_t off = sim ? sim_ram_off(sim, gpa) : UINT64_MAX;
    return off == UINT64_MAX ? 0 : sim->ept[off >> 12];
}

hvi_status hvi_sim_set_ept_rights(hvi_sim *sim, hvi_gpa gpa, uint32_t rights)
{
    if (!sim || rights > HVI_EPT_RWX)
        return HVI_E_INVAL;
    uint64_t off = sim_ram_off(sim, gpa);
    if (off == UINT64_MAX)
        return HVI_E_RANGE;
    sim->ept[off >> 12] = (uint8_t)rights;
    return HVI_OK;
}

uint64_t hvi_sim_restricted_frames(const hvi_sim *sim)
{
    uint64_t n = 0;
    for (uint64_t i = 0; sim && i < sim->ram_size >> 12; i++)
        n += sim->ept[i] != HVI_EPT_RWX;
    return n;
}

bool hvi_sim_breakpoint_at(const hvi_sim *sim, hvi_gva gva)
{
    for (uint32_t i = 0; sim && i < sim->nbp; i++)
        if (sim->bp[i] == gva)
            return true;
    return false;
}

uint32_t hvi_sim_breakpoint_count(const hvi_sim *sim)
{
    return sim ? sim->nbp : 0;
}

uint32_t hvi_sim_watchpoint_count(const hvi_sim *sim)
{
    return sim ? sim->nwp : 0;
}

bool hvi_sim_exit_enabled(const hvi_sim *sim, uint32_t kind, uint32_t index)
{
    for (uint32_t i = 0; sim && i < sim->nexits; i++)
        if (sim->exits[i].kind == kind && sim->exits[i].index == index)
            return true;
    return false;
}

bool hvi_sim_single_step_enabled(const hvi_sim *sim, uint32_t vcpu)
{
    return sim && vcpu < sim->nvcpus && sim->cpu[vcpu].stepping;
}

bool hvi_sim_paused(const hvi_sim *sim)
{
    return sim && sim->paused;
}

bool hvi_sim_pending_exception(const hvi_sim *sim, uint32_t vcpu, uint8_t *vector,
                               uint32_t *error_code, uint64_t *cr2)
{
    if (!sim || vcpu >= sim->nvcpus || !sim->cpu[vcpu].exc_pending)
        return false;
    const struct sim_vcpu *c = &sim->cpu[vcpu];
    if (vector)
        *vector = c->exc_vector;
    if (error_code)
        *error_code = c->exc_error;
    if (cr2)
        *cr2 = c->exc_cr2;
    return true;
}

void hvi_sim_clear_exception(hvi_sim *sim, uint32_t vcpu)
{
    if (sim && vcpu < sim->nvcpus)
        sim->cpu[vcpu].exc_pending = false;
}

hvi_status hvi_sim_fail_call(hvi_sim *sim, uint32_t call, uint32_t after_n_successes,
                             hvi_status st)
{
    if (!sim || call >= HVI_SIM_CALL_COUNT || st > 0)
        return HVI_E_INVAL;
    sim->fail[call].armed = st != HVI_OK;
    sim->fail[call].left = after_n_successes;
    sim->fail[call].st = st;
    return HVI_OK;
}

hvi_status sim_gate(hvi_sim *sim, uint32_t call)
{
    sim->calls[call]++;
    struct sim_fail *f = &sim->fail[call];
    if (!f->armed)
        return HVI_OK;
    if (f->left) {
        f->left--;
        return HVI_OK;
    }
    return f->st;
}

uint64_t hvi_sim_call_count(const hvi_sim *sim, uint32_t call)
{
    return sim && call < HVI_SIM_CALL_COUNT ? sim->calls[call] : 0;
}

int64_t hvi_sim_outstanding_maps(const hvi_sim *sim)
{
    return sim ? sim->maps_out : 0;
}

uint64_t hvi_sim_event_count(const hvi_sim *sim, uint32_t type)
{
    return sim && type < HVI_EV_TYPE_MAX ? sim->events[type] : 0;
}
