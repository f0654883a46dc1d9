/* hvi guest/linux — activation inside the engine: the kernel entry from the IDT at its fixed
 * Linux address, else LSTAR (when the backend reads MSRs) or the IDTR; discovery, CAMI entry
 * selection by version, offsets. */
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix.h"
#include "hvi/linux.h"
#include "hvi/mem.h"

struct hvi_lix_state {
    struct lix_kernel k;
    bool active;
    char offsets_path[512]; /* interim offsets file (hvi_linux_set_offsets_file), "" if none */
};

static hvi_status eng_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
    return hvi_gva_read(ctx, 0, gva, buf, len);
}

static hvi_status eng_read_as(void *ctx, uint64_t cr3, uint64_t gva, void *buf, size_t len)
{
    return hvi_gva_read(ctx, cr3, gva, buf, len);
}

/* A kernel page in place: a full walk (for NX and the page size), then the GPA cache. The
 * reference is dropped at once: the frame stays mapped until the cache evicts it, which only a
 * later access can do, so the pointer lives until the next call into the reader. */
static hvi_status eng_view(void *ctx, uint64_t gva, const uint8_t **page, uint32_t *flags)
{
    hvi_translation t;
    void *p = NULL;
    hvi_status st = hvi_gva_translate(ctx, 0, gva & HVI_PAGE_MASK, &t);
    if (st == HVI_OK)
        st = hvi_gpa_cache_find_and_add(ctx, t.gpa, &p);
    if (st != HVI_OK)
        return st;
    (void)hvi_gpa_cache_release(ctx, t.gpa);
    *page = p;
    *flags = (t.nx ? 0 : LIX_VIEW_EXEC) | (t.page_size >= (2u << 20) ? LIX_VIEW_LARGE : 0);
    return HVI_OK;
}

struct lix_mem lix_mem_from_engine(hvi_engine *e)
{
    struct lix_mem m = {.read = eng_read, .read_as = eng_read_as, .ctx = e, .view = eng_view};
    return m;
}

static void lix_cleanup(hvi_engine *e, void *ctx)
{
    (void)ctx;
    if (!e->lix)
        return;
    lix_kernel_free(&e->lix->k);
    free(e->lix);
    e->lix = NULL;
}

static hvi_status lix_state(hvi_engine *e)
{
    if (e->lix)
        return HVI_OK;
    e->lix = calloc(1, sizeof(*e->lix));
    if (!e->lix)
        return HVI_E_NOMEM;
    hvi_status st = hvi_engine_on_free(e, lix_cleanup, NULL);
    if (st != HVI_OK) {
        free(e->lix);
        e->lix = NULL;
    }
    return st;
}

hvi_status hvi_linux_set_offsets_file(hvi_engine *e, const char *path)
{
    if (!e || !path || strlen(path) >= sizeof(e->lix->offsets_path))
        return HVI_E_INVAL;
    hvi_status st = lix_state(e);
    if (st == HVI_OK)
        hvi_strlcpy(e->lix->offsets_path, path, sizeof(e->lix->offsets_path));
    return st;
}

const char *lix_offsets_path(hvi_engine *e)
{
    return e && e->lix && e->lix->offsets_path[0] ? e->lix->offsets_path : NULL;
}

struct lix_kernel *lix_get(hvi_engine *e)
{
    return e && e->lix && e->lix->active ? &e->lix->k : NULL;
}

/* A kernel code address: LSTAR when readable, else the first usable IDT gate. */
static hvi_status kernel_entry(hvi_engine *e, const struct lix_mem *mem, uint64_t *entry)
{
    if ((e->glue.caps & HVI_CAP_MSR_READ) && e->glue.get_msr &&
        e->glue.get_msr(e->glue.ctx, 0, HVI_MSR_LSTAR, entry) == HVI_OK && lix_is_kptr(*entry))
        return HVI_OK;
    if (!(e->glue.caps & HVI_CAP_DTR))
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "Linux discovery needs LSTAR or the IDTR; backend %s gives neither",
                        e->glue.name ? e->glue.name : "?");
    hvi_regs r;
    memset(&r, 0, sizeof(r));
    hvi_status st = e->glue.get_regs(e->glue.ctx, 0, HVI_REGS_DTR, &r);
    if (st != HVI_OK || !(r.valid & HVI_REGS_DTR))
        return hvi_fail(e, HVI_E_BACKEND, "reading the IDTR of vCPU 0 failed");
    for (uint32_t v = 0; v < 32 && 16u * v + 15 <= r.idtr_limit; v++)
        if (lix_idt_handler(mem, r.idtr_base, v, entry) == HVI_OK)
            return HVI_OK;
    return hvi_fail(e, HVI_E_NOT_FOUND, "no usable gate in the IDT at 0x%llx",
                    (unsigned long long)r.idtr_base);
}

/* Linux (4.15 and later) loads the IDTR with the read-only IDT mapping of the CPU entry area,
 * at a fixed address, 0xfffffe0000000000 (the same with 4- and 5-level paging: the layout below
 * the top 2.5 TB is identical in both). A gate read there costs no round trip to the backend (on
 * QEMU the IDTR costs two); a wrong guess only costs a failed discovery, after which LSTAR or
 * the IDTR is asked for as before. */
static bool fixed_idt_entry(const struct lix_mem *mem, uint64_t *entry)
{
    for (uint32_t v = 0; v < 32; v++)
        if (lix_idt_handler(mem, 0xfffffe0000000000ull, v, entry) == HVI_OK)
            return true;
    return false;
}

/* hvi_new_guest takes the kernel CR3 from vCPU 0 at attach. When the guest ran a user process
 * (or a kernel thread borrowing its mm) then, that is the process's page-table root: its kernel
 * half is shared, but the root page is freed with the process and reused, and every later
 * kernel read through it fails or reads garbage (seen on the real guest: protection failing
 * mid-run). Once kallsyms is known the engine switches to the kernel's own root, init_top_pgt
 * (init_mm.pgd), after checking that it maps the kernel image the same way. */
static void use_kernel_root(hvi_engine *e, struct lix_kernel *k)
{
    uint64_t va = 0, old = hvi_mem_kernel_cr3(e);
    hvi_gpa root = 0, a = 0, b = 0;
    hvi_paging_mode mode = hvi_mem_paging_mode(e);
    if (lix_kallsyms_lookup(&k->ks, "init_top_pgt", &va) != HVI_OK ||
        hvi_gva_to_gpa(e, 0, va, &root) != HVI_OK || (root & 0xfff) || root == old ||
        hvi_gva_to_gpa(e, 0, k->image_start, &a) != HVI_OK ||
        hvi_mem_set_context(e, mode, root) != HVI_OK)
        return;
    if (hvi_gva_to_gpa(e, 0, k->image_start, &b) != HVI_OK || a != b) {
        (void)hvi_mem_set_context(e, mode, old);
        return;
    }
    hvi_log(e, HVI_LOG_DEBUG, "linux: kernel CR3 0x%llx (vCPU 0 at attach) -> init_top_pgt 0x%llx",
            (unsigned long long)old, (unsigned long long)root);
}

hvi_status lix_activate(hvi_engine *e)
{
    if (!e)
        return HVI_E_INVAL;
    if (lix_get(e))
        return HVI_E_STATE;
    hvi_status st = lix_state(e);
    if (st != HVI_OK)
        return st;
    struct lix_mem mem = lix_mem_from_engine(e);
    uint64_t entry = 0;
    struct lix_kernel *k = &e->lix->k;
    const char *why = "";
    st = HVI_E_NOT_FOUND;
    if (fixed_idt_entry(&mem, &entry))
        st = lix_discover(k, &mem, entry, &why);
    if (st != HVI_OK) {
        if ((st = kernel_entry(e, &mem, &entry)) != HVI_OK)
            return st;
        st = lix_discover(k, &mem, entry, &why);
    }
    if (st != HVI_OK)
        return hvi_fail(e, st, "no Linux kernel found from 0x%llx: %s", (unsigned long long)entry,
                        why);
    hvi_strlcpy(e->guest.os_version, k->release, sizeof(e->guest.os_version));
    e->guest.os = HVI_OS_LINUX;
    e->lix->active = true;
    use_kernel_root(e, k);
    hvi_log(e, HVI_LOG_INFO, "Linux %s at 0x%llx (slide 0x%llx), %u symbols", k->release,
            (unsigned long long)k->image_start, (unsigned long long)k->slide, k->ks.count);
    st = lix_select_offsets(e, k);
    k->have_offsets = st == HVI_OK;
    return st;
}
