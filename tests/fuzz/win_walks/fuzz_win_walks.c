/*
 * Fuzz target: hostile kernel pool under the Windows layer. A simulated Windows guest (build
 * 17763 kpti, System + 2 processes, ntoskrnl + hal + 2 drivers) is built once with an engine
 * attached (process and module events, block list on); each input overwrites the pool pages
 * holding the EPROCESS and KLDR_DATA_TABLE_ENTRY objects (their original bytes are restored
 * first), then the process and driver lists are walked, a writer RIP taken from the input is
 * resolved to a driver, an EPROCESS address from the input is read, and the four detours are hit
 * with arguments taken from the input. Pages 7.. of the input overwrite the user processes' VAD
 * nodes, threads and PEB pages and vCPU 0's KPCR, under the VAD, thread, parameter, user-module
 * (PEB loader list) and current-process walks (also on an EPROCESS address from the input). Any
 * crash, sanitizer report or hang is a bug. Without the reference CAMI file the target does nothing
 * (and says so).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/windows/win.h"
#include "hvi/windows.h"
#include "hvi_sim.h"
#include "hvi_sim_windows.h"

#define CAMI_BIN HVI_SHARED_DIR "/reference/hvmi-cami/intro_live_update.bin"
#define MAX_PAGES 16

static struct {
    bool tried, ok;
    hvi_sim *sim;
    hvi_engine *e;
    hvi_sim_win w;
    hvi_gpa page[MAX_PAGES];
    uint8_t orig[MAX_PAGES][4096];
    uint32_t npages;
} g;

static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    void *buf = NULL;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        buf = n > 0 ? malloc((size_t)n) : NULL;
        if (buf && (fseek(f, 0, SEEK_SET) != 0 || fread(buf, 1, (size_t)n, f) != (size_t)n)) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

static void add_gpa(hvi_gpa gpa)
{
    if (g.npages < MAX_PAGES && hvi_sim_phys_read(g.sim, gpa, g.orig[g.npages], 4096) == HVI_OK)
        g.page[g.npages++] = gpa;
}

static void add_page(uint64_t va)
{
    hvi_gpa gpa = 0;
    if (hvi_sim_translate(g.sim, g.w.cr3, HVI_PAGING_4LVL, va & ~0xfffull, &gpa) == HVI_OK)
        add_gpa(gpa);
}

static bool init(void)
{
    g.tried = true;
    size_t len = 0;
    void *buf = read_file(CAMI_BIN, &len);
    hvi_cami *c = NULL;
    hvi_glue glue;
    hvi_sim_config sc = {.ram_size = 16u << 20, .vcpus = 1};
    hvi_sim_win_config wc = {.build = 17763, .kpti = true, .processes = 2, .drivers = 2};
    bool ok = buf && hvi_cami_open(buf, len, &c, NULL, 0) == HVI_OK &&
              hvi_sim_new(&sc, &g.sim) == HVI_OK &&
              hvi_sim_win_build(g.sim, c, &wc, &g.w) == HVI_OK &&
              hvi_sim_glue(g.sim, &glue) == HVI_OK && hvi_engine_new(&glue, &g.e) == HVI_OK;
    if (ok) {
        hvi_set_log(g.e, NULL, HVI_LOG_ERROR, NULL);
        hvi_sim_attach(g.sim, g.e);
        hvi_guest_params p = {.size = sizeof(p),
                              .os_hint = HVI_OS_WINDOWS,
                              .options =
                                  HVI_OPT_EVENT_PROCESS | HVI_OPT_EVENT_MODULE | HVI_OPT_BLOCK_EXEC,
                              .support = buf,
                              .support_len = len};
        ok = hvi_new_guest(g.e, &p) == HVI_OK &&
             hvi_windows_block_process_add(g.e, "lsass.exe") == HVI_OK;
    }
    for (uint32_t i = 1; ok && i < g.w.nproc; i++) /* System's EPROCESS stays intact */
        add_page(g.w.eprocess[i]);
    for (uint32_t i = 0; ok && i < g.w.ndrv; i++)
        add_page(g.w.ldr[i]);
    /* after the first 6 pages (older seeds keep their meaning): the VAD and thread pages of the
     * two user processes, their PEB pages (user memory) and vCPU 0's KPCR */
    for (uint32_t i = 1; ok && i < g.w.nproc; i++) {
        add_page(g.w.vad_node[i][0]);
        add_page(g.w.ethread[i][0]);
    }
    for (uint32_t i = 1; ok && i < g.w.nproc; i++)
        add_gpa(g.w.peb_gpa[i]);
    if (ok)
        add_page(g.w.kpcr[0]);
    /* HVI_FUZZ_DUMP=file writes the original pages: the natural seed input */
    const char *dump = getenv("HVI_FUZZ_DUMP");
    FILE *df = ok && dump ? fopen(dump, "wb") : NULL;
    if (df) {
        fwrite(g.orig, 4096, g.npages, df);
        fclose(df);
        fprintf(stderr,
                "pages %u; vad nodes of pid %u at 0x%llx (page 6), offsets left 0x%x "
                "right 0x%x\n",
                g.npages, g.w.pid[1], (unsigned long long)g.w.vad_node[1][0], g.w.off_v_left,
                g.w.off_v_right);
    }
    hvi_cami_close(c);
    free(buf);
    return ok;
}

static uint64_t u64_at(const uint8_t *d, size_t size, size_t off)
{
    uint64_t v = 0;
    if (off + 8 <= size)
        memcpy(&v, d + off, 8);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool vad_cb(const hvi_windows_vad *v, void *ctx)
{
    (void)v, (void)ctx;
    return true;
}

static bool mod_cb(const hvi_windows_module *m, void *ctx)
{
    (void)m, (void)ctx;
    return true;
}

static bool thread_cb(const hvi_windows_thread *t, void *ctx)
{
    (void)t, (void)ctx;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g.tried) {
        g.ok = init();
        if (!g.ok)
            fprintf(stderr,
                    "fuzz_win_walks: no simulated Windows guest (reference CAMI file %s "
                    "missing or unusable): inputs are not exercised\n",
                    CAMI_BIN);
    }
    if (!g.ok)
        return 0;
    for (uint32_t i = 0; i < g.npages; i++) {
        uint8_t page[4096];
        memcpy(page, g.orig[i], sizeof(page));
        size_t off = (size_t)i * 4096;
        if (off < size)
            memcpy(page, data + off, size - off < 4096 ? size - off : 4096);
        (void)hvi_sim_phys_write(g.sim, g.page[i], page, sizeof(page));
        hvi_gpa_cache_invalidate(g.e, g.page[i]);
    }
    hvi_windows_process *p = NULL;
    hvi_windows_module *m = NULL;
    size_t n = 0;
    if (hvi_windows_list_processes(g.e, &p, &n) == HVI_OK)
        hvi_windows_free(p);
    if (hvi_windows_list_modules(g.e, &m, &n) == HVI_OK)
        hvi_windows_free(m);
    hvi_windows_module one;
    (void)win_module_at(g.e, u64_at(data, size, 0), &one);
    hvi_windows_process pr;
    (void)win_read_process(g.e, u64_at(data, size, 8), &pr);
    /* the detours with attacker-chosen arguments (and the hostile pool behind them) */
    uint64_t args[6] = {u64_at(data, size, 16), u64_at(data, size, 24), 0, 0,
                        u64_at(data, size, 32), u64_at(data, size, 40)};
    hvi_event_reply rep;
    (void)hvi_sim_win_call(g.sim, &g.w, g.w.psp_insert_process, args, 6, &rep);
    (void)hvi_sim_win_call(g.sim, &g.w, g.w.mm_clean_process, args, 1, &rep);
    args[1] = 1;
    (void)hvi_sim_win_call(g.sim, &g.w, g.w.mi_process_loader_entry, args, 2, &rep);
    (void)hvi_sim_win_call(g.sim, &g.w, g.w.mi_unload_system_image, args, 1, &rep);
    /* the VA space, threads, parameters and the current process */
    for (uint32_t i = 1; i < g.w.nproc; i++) {
        hvi_windows_vad *v = NULL;
        hvi_windows_thread *t = NULL;
        hvi_windows_process_params pp;
        if (hvi_windows_vads(g.e, g.w.pid[i], &v, &n) == HVI_OK)
            hvi_windows_free(v);
        if (hvi_windows_threads(g.e, g.w.pid[i], &t, &n) == HVI_OK)
            hvi_windows_free(t);
        (void)hvi_windows_process_params_get(g.e, g.w.pid[i], &pp);
        if (hvi_windows_user_modules(g.e, g.w.pid[i], &m, &n) == HVI_OK)
            hvi_windows_free(m);
    }
    (void)hvi_windows_current_process(g.e, 0, &pr, NULL);
    pr.eprocess = u64_at(data, size, 48);
    pr.cr3 = u64_at(data, size, 56);
    pr.peb = u64_at(data, size, 64);
    (void)win_walk_vads(g.e, &pr, vad_cb, NULL);
    (void)win_walk_threads(g.e, &pr, thread_cb, NULL);
    hvi_windows_process_params pp;
    (void)win_read_params(g.e, &pr, &pp);
    (void)win_walk_user_modules(g.e, &pr, mod_cb, NULL);
    return 0;
}
