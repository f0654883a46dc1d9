/*
 * Fuzz target: hostile guest memory for the Linux layer. The input is a flat memory image
 * mapped at a kernel address: kallsyms scanning runs over it as a kernel image, and the task
 * list (init_task at the start), the module list (head at +0x1000) and the maple tree of the
 * mm at +0x2000 are walked with fixed offsets. Every pointer read from it is attacker-chosen.
 */
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix.h"

#define BASE 0xffff888000000000ull
#define IMG_VA 0xffffffff9a200000ull /* where the synthetic corpus image (tests/unit/linux) lives  \
                                      */

struct flat {
    const uint8_t *data;
    size_t size;
};

static hvi_status flat_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
    const struct flat *f = ctx;
    if (gva < BASE || gva - BASE > f->size || len > f->size - (gva - BASE))
        return HVI_E_NOT_PRESENT;
    memcpy(buf, f->data + (gva - BASE), len);
    return HVI_OK;
}

/* The same bytes as a kernel image at IMG_VA for discovery (zero-padded to whole pages): read
 * through copies or viewed in place, the first half of the pages executable. */
static hvi_status img_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
    const struct flat *f = ctx;
    if (gva < IMG_VA || gva - IMG_VA > f->size || len > f->size - (gva - IMG_VA))
        return HVI_E_NOT_PRESENT;
    memcpy(buf, f->data + (gva - IMG_VA), len);
    return HVI_OK;
}

static hvi_status img_view(void *ctx, uint64_t gva, const uint8_t **page, uint32_t *flags)
{
    const struct flat *f = ctx;
    if (gva < IMG_VA || gva - IMG_VA >= f->size || (gva & 4095))
        return HVI_E_NOT_PRESENT;
    *page = f->data + (gva - IMG_VA);
    *flags = gva - IMG_VA < f->size / 2 ? LIX_VIEW_EXEC : 0;
    return HVI_OK;
}

static void discover(const uint8_t *data, size_t size)
{
    size_t padded = (size + 4095) & ~(size_t)4095;
    uint8_t *img = calloc(1, padded);
    if (!img)
        return;
    memcpy(img, data, size);
    struct flat f = {img, padded};
    for (int view = 0; view < 2; view++) {
        struct lix_mem m = {.read = img_read, .ctx = &f, .view = view ? img_view : NULL};
        struct lix_kernel k;
        const char *why = NULL;
        if (lix_discover(&k, &m, IMG_VA + 16, &why) == HVI_OK) {
            uint64_t a = 0;
            const char *n = NULL;
            (void)lix_kallsyms_lookup(&k.ks, "fn_0042", &a);
            (void)lix_kallsyms_find(&k.ks, k.init_task + 1, &n, &a);
            lix_kernel_free(&k);
        }
    }
    free(img);
}

static bool any_task(const struct lix_task *t, void *ctx)
{
    const struct lix_kernel *k = ctx;
    char path[128];
    (void)lix_task_exe(k, t, path, sizeof(path));
    return true;
}

static bool any_module(const struct lix_module *m, void *ctx)
{
    (void)m, (void)ctx;
    return true;
}

static bool any_vma(const struct lix_vma *v, void *ctx)
{
    const struct lix_kernel *k = ctx;
    char path[128];
    if (v->file)
        (void)lix_file_path(k, v->file, path, sizeof(path));
    return true;
}

static void walks(const uint8_t *data, size_t size)
{
    struct flat f = {data, size};
    struct lix_kernel k;
    memset(&k, 0, sizeof(k));
    k.mem.read = flat_read;
    k.mem.ctx = &f;
    struct lix_offsets *o = &k.off;
    o->task_tasks = 0x100, o->task_pid = 0x110, o->task_tgid = 0x114, o->task_real_parent = 0x118;
    o->task_mm = 0x120, o->task_cred = 0x128, o->task_comm = 0x130, o->task_thread_group = 0x140;
    o->mm_mt = 0, o->mt_root = 8, o->mm_exe_file = 0x60;
    o->vma_start = 0, o->vma_end = 8, o->vma_flags = 0x20, o->vma_pgoff = 0x28, o->vma_file = 0x30;
    o->file_path = 0x10, o->dentry_parent = 0x18, o->dentry_name = 0x20;
    o->cred_uid = 8, o->cred_gid = 12, o->cred_euid = 24, o->cred_egid = 28;
    o->mod_list = 8, o->mod_name = 0x18, o->mod_core_layout = 0x140, o->mod_name_len = 56;
    o->maple_node_size = 256, o->maple_range64_slots = 16, o->maple_arange64_slots = 10;
    o->maple_r64_pivot = 8, o->maple_r64_slot = 128, o->maple_ar64_pivot = 8,
    o->maple_ar64_slot = 80;
    o->qstr_len = 4, o->qstr_name = 8, o->path_dentry = 8;
    o->layout_size = 8, o->layout_text_size = 12, o->layout_ro_size = 16;
    k.have_offsets = true;
    k.init_task = BASE;
    k.modules = BASE + 0x1000;
    (void)lix_task_walk(&k, true, any_task, &k);
    (void)lix_module_walk(&k, any_module, NULL);
    (void)lix_vma_walk(&k, BASE + 0x2000, any_vma, &k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lix_kallsyms ks;
    const char *why = NULL;
    if (size >= 4096 && lix_kallsyms_parse(&ks, data, size, IMG_VA, &why) == HVI_OK) {
        uint64_t a = 0;
        const char *n = NULL;
        (void)lix_kallsyms_lookup(&ks, "init_task", &a);
        const struct lix_sym *syms = NULL;
        const char *names = NULL;
        if (lix_kallsyms_table(&ks, &syms, &names) == HVI_OK)
            (void)lix_kallsyms_find(&ks, syms[ks.count / 2].addr + 1, &n, &a);
        lix_kallsyms_free(&ks);
    }
    if (size >= 4096)
        discover(data, size);
    walks(data, size);
    return 0;
}
