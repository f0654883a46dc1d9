/* A process's VA space (the VAD tree), its threads, its user-mode parameters (PEB through its own
 * CR3) and the current process of a vCPU (KPCR at GS base), on the simulated guest of every x64
 * corpus build; the same walks under hostile trees, lists and pointers; alerts from the Windows
 * protections name the process of the writing vCPU. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "win_fixture.h"

static const struct {
    uint32_t build;
    bool kpti;
} builds[] = {{7600, false}, {7601, false}, {7601, true}, {7602, true}, {17763, true}};

static void check_vads(struct wf *f, uint32_t i)
{
    hvi_windows_vad *v = NULL;
    size_t n = 99;
    CHECK_OK(hvi_windows_vads(f->e, f->w.pid[i], &v, &n));
    CHECK_EQ_U64(n, f->w.nvad[i]);
    for (size_t k = 0; k < n && k < HVI_SIM_WIN_VADS; k++) {
        CHECK_EQ_U64(v[k].node, f->w.vad_node[i][k]);
        CHECK_EQ_U64(v[k].start, f->w.vad_start[i][k]);
        CHECK_EQ_U64(v[k].end, f->w.vad_end[i][k]);
        CHECK_EQ_U64(v[k].type, f->w.vad_type[i][k]);
        CHECK_EQ_U64(v[k].protection, f->w.vad_prot[i][k]);
        CHECK(!v[k].no_change);
        CHECK_STR(v[k].file, f->w.vad_file[i][k]); /* image VADs named, the others "" */
    }
    if (n == HVI_SIM_WIN_VADS) {
        CHECK_EQ_U64(v[2].depth, 0); /* the root */
        CHECK_EQ_U64(v[1].depth, 2);
    }
    hvi_windows_free(v);
}

HVI_TEST(vads_threads_and_params_equal_what_was_built_on_every_build)
{
    for (size_t b = 0; b < sizeof(builds) / sizeof(builds[0]); b++) {
        struct wf f;
        hvi_sim_win_config c = {.build = builds[b].build, .kpti = builds[b].kpti, .processes = 4};
        REQUIRE(wf_build(&f, &c) == HVI_OK);
        REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
        for (uint32_t i = 1; i < f.w.nproc; i++) {
            check_vads(&f, i);
            hvi_windows_thread *t = NULL;
            size_t n = 0;
            CHECK_OK(hvi_windows_threads(f.e, f.w.pid[i], &t, &n));
            CHECK_EQ_U64(n, HVI_SIM_WIN_THREADS);
            for (size_t k = 0; k < n && k < HVI_SIM_WIN_THREADS; k++) {
                CHECK_EQ_U64(t[k].ethread, f.w.ethread[i][k]);
                CHECK_EQ_U64(t[k].tid, f.w.tid[i][k]);
                CHECK_EQ_U64(t[k].process, f.w.eprocess[i]);
                CHECK(!t[k].foreign);
                CHECK_EQ_U64(t[k].teb, f.w.teb[i][k]);
                CHECK_EQ_U64(t[k].start_address, f.w.thread_start[i][k]);
                CHECK_EQ_U64(t[k].state, 5);
            }
            hvi_windows_free(t);
            hvi_windows_process_params pp;
            CHECK_OK(hvi_windows_process_params_get(f.e, f.w.pid[i], &pp));
            CHECK_EQ_U64(pp.peb, f.w.peb[i]);
            CHECK_EQ_U64(pp.params, f.w.params[i]);
            CHECK_STR(pp.image_path, f.w.image_path[i]);
            CHECK_STR(pp.command_line, f.w.command_line[i]);
            CHECK(!pp.truncated);
            hvi_windows_module *m = NULL;
            CHECK_OK(hvi_windows_user_modules(f.e, f.w.pid[i], &m, &n));
            CHECK_EQ_U64(n, f.w.numod[i]);
            for (size_t k = 0; k < n && k < 2; k++) {
                CHECK_EQ_U64(m[k].entry, f.w.umod_entry[i][k]);
                CHECK_EQ_U64(m[k].base, f.w.umod_base[i][k]);
                CHECK_EQ_U64(m[k].size, f.w.umod_size[i][k]);
                CHECK_STR(m[k].name, f.w.umod_name[i][k]);
                CHECK_STR(m[k].path, f.w.umod_path[i][k]);
            }
            hvi_windows_free(m);
        }
        wf_free(&f);
    }
}

HVI_TEST(high_vpn_bytes_are_used_on_17763)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    REQUIRE(f.w.v_vpn_size == 4 && f.w.off_v_start_hi != 0);
    /* the image VADs lie above 2^44: their VPNs do not fit 32 bits */
    CHECK(f.w.vad_start[1][3] >> 44 != 0);
    hvi_windows_vad *v = NULL;
    size_t n = 0;
    CHECK_OK(hvi_windows_vads(f.e, f.w.pid[1], &v, &n));
    REQUIRE(n == HVI_SIM_WIN_VADS);
    CHECK_EQ_U64(v[3].start, f.w.vad_start[1][3]);
    CHECK_EQ_U64(v[4].end, f.w.vad_end[1][4]);
    CHECK_STR(hvi_windows_vad_type_name(v[4].type), "image");
    CHECK_STR(hvi_windows_protection_name(v[4].protection), "EXECUTE_WRITECOPY");
    CHECK_STR(hvi_windows_protection_name(v[0].protection), "READWRITE");
    hvi_windows_free(v);
    wf_free(&f);
}

HVI_TEST(system_has_no_vads_no_peb_one_thread_and_unknown_pids_are_refused)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 7601, .kpti = false, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    hvi_windows_vad *v = NULL;
    size_t n = 7;
    CHECK_OK(hvi_windows_vads(f.e, 4, &v, &n));
    CHECK_EQ_U64(n, 0);
    CHECK(v == NULL);
    hvi_windows_thread *t = NULL;
    CHECK_OK(hvi_windows_threads(f.e, 4, &t, &n));
    REQUIRE(n == 1);
    CHECK_EQ_U64(t[0].tid, 8);
    CHECK_EQ_U64(t[0].teb, 0);
    hvi_windows_free(t);
    hvi_windows_process_params pp;
    CHECK_STATUS(hvi_windows_process_params_get(f.e, 4, &pp), HVI_E_NOT_FOUND);
    CHECK_STATUS(hvi_windows_vads(f.e, 0x7777, &v, &n), HVI_E_NOT_FOUND);
    CHECK_STATUS(hvi_windows_threads(f.e, 0x7777, &t, &n), HVI_E_NOT_FOUND);
    CHECK_STATUS(hvi_windows_vads(NULL, 4, &v, &n), HVI_E_INVAL);
    wf_free(&f);
}

HVI_TEST(user_memory_is_read_through_the_process_cr3)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 2};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    uint8_t b;
    /* the PEB is not mapped in the kernel's address space, only in the process's */
    CHECK(hvi_gva_read(f.e, 0, f.w.peb[1], &b, 1) != HVI_OK);
    hvi_windows_process_params pp;
    CHECK_OK(hvi_windows_process_params_get(f.e, f.w.pid[2], &pp));
    CHECK_STR(pp.image_path, f.w.image_path[2]);
    CHECK(strcmp(f.w.image_path[1], f.w.image_path[2]) != 0);
    wf_free(&f);
}

static void poke64(struct wf *f, uint64_t va, uint64_t v)
{
    CHECK_OK(hvi_sim_win_poke(f->sim, &f->w, va, &v, 8));
}

/* VADs of process 1 after one corruption: the status, then the original bytes back. */
static void vad_case(struct wf *f, uint64_t va, uint64_t value, hvi_status want)
{
    uint64_t old = 0;
    hvi_gpa gpa = 0;
    REQUIRE(hvi_sim_translate(f->sim, f->w.cr3, HVI_PAGING_4LVL, va, &gpa) == HVI_OK);
    REQUIRE(hvi_sim_phys_read(f->sim, gpa, &old, 8) == HVI_OK);
    poke64(f, va, value);
    hvi_windows_vad *v = NULL;
    size_t n = 0;
    CHECK_STATUS(hvi_windows_vads(f->e, f->w.pid[1], &v, &n), want);
    CHECK(v == NULL || want == HVI_OK);
    hvi_windows_free(v);
    poke64(f, va, old);
    CHECK_OK(hvi_windows_vads(f->e, f->w.pid[1], &v, &n));
    CHECK_EQ_U64(n, HVI_SIM_WIN_VADS);
    hvi_windows_free(v);
}

HVI_TEST(hostile_vad_trees_stop_with_a_reason)
{
    for (int b = 0; b < 2; b++) {
        struct wf f;
        hvi_sim_win_config c = {.build = b ? 17763 : 7601, .kpti = b != 0, .processes = 1};
        REQUIRE(wf_build(&f, &c) == HVI_OK);
        REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
        const uint64_t *nd = f.w.vad_node[1];
        uint32_t L = f.w.off_v_left, R = f.w.off_v_right;
        vad_case(&f, nd[1] + R, nd[2], HVI_E_FORMAT);         /* a leaf pointing back at the root */
        vad_case(&f, nd[4] + R, nd[4], HVI_E_FORMAT);         /* a node its own child */
        vad_case(&f, nd[3] + L, nd[1], HVI_E_FORMAT);         /* a node shared by two parents */
        vad_case(&f, nd[0] + L, 0x41414141ull, HVI_E_FORMAT); /* not a kernel pointer */
        vad_case(&f, nd[0] + L, nd[1] + 4, HVI_E_FORMAT);     /* misaligned */
        vad_case(&f, nd[0] + L, nd[0] + 0x2000, HVI_E_NOT_PRESENT); /* the guard gap */
        /* VPNs out of order: node 0 claims the root's pages */
        uint64_t vpn = f.w.vad_start[1][2] >> 12;
        vad_case(&f, nd[0] + f.w.off_v_start, f.w.v_vpn_size == 8 ? vpn : (uint32_t)vpn,
                 HVI_E_FORMAT);
        /* the root pointer of EPROCESS.VadRoot */
        uint64_t root_at = f.w.eprocess[1] + f.w.off_vadroot + (f.w.vad_avl_table ? R : 0);
        vad_case(&f, root_at, 0x00007ff612340000ull, HVI_E_FORMAT);
        hvi_windows_vad *v = NULL;
        size_t n = 0;
        CHECK_STATUS(hvi_windows_vads(f.e, f.w.pid[1], &v, &n), HVI_OK);
        hvi_windows_free(v);
        wf_free(&f);
    }
}

/* Image VAD names: the EX_FAST_REF's count bits are masked off; a hostile chain to the
 * FILE_OBJECT leaves the name empty and the walk goes on. */
HVI_TEST(image_vads_are_named_by_their_file_object)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 7601, .kpti = false, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    hvi_windows_vad *v = NULL;
    size_t n = 0;
    CHECK_OK(hvi_windows_vads(f.e, f.w.pid[1], &v, &n));
    REQUIRE(n == HVI_SIM_WIN_VADS);
    CHECK_STR(v[4].file, "\\Windows\\System32\\ntdll.dll");
    CHECK_STR(v[3].file, "\\Windows\\System32\\smss.exe");
    CHECK_STR(v[2].file, "");
    hvi_windows_free(v);
    uint64_t sub_at = f.w.vad_node[1][4] + f.w.off_v_subsection, sub = 0;
    hvi_gpa gpa = 0;
    REQUIRE(hvi_sim_translate(f.sim, f.w.cr3, HVI_PAGING_4LVL, sub_at, &gpa) == HVI_OK);
    REQUIRE(hvi_sim_phys_read(f.sim, gpa, &sub, 8) == HVI_OK);
    uint64_t ctl = 0, fo = 0;
    REQUIRE(hvi_sim_translate(f.sim, f.w.cr3, HVI_PAGING_4LVL, sub, &gpa) == HVI_OK);
    REQUIRE(hvi_sim_phys_read(f.sim, gpa + f.w.off_sub_ctlarea, &ctl, 8) == HVI_OK);
    REQUIRE(hvi_sim_translate(f.sim, f.w.cr3, HVI_PAGING_4LVL, ctl, &gpa) == HVI_OK);
    REQUIRE(hvi_sim_phys_read(f.sim, gpa + f.w.off_ctl_file, &fo, 8) == HVI_OK);
    CHECK_EQ_U64(fo & 0xf, 3); /* a reference count in the pointer's low bits */
    const uint64_t bad[] = {0x4141414141414141ull, 0, f.w.vad_node[1][0] + 0x3000};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        poke64(&f, sub_at, bad[k]);
        CHECK_OK(hvi_windows_vads(f.e, f.w.pid[1], &v, &n));
        CHECK_EQ_U64(n, HVI_SIM_WIN_VADS);
        if (n == HVI_SIM_WIN_VADS) {
            CHECK_STR(v[4].file, "");
            CHECK_STR(v[3].file, "\\Windows\\System32\\smss.exe");
        }
        hvi_windows_free(v);
    }
    poke64(&f, sub_at, sub);
    uint16_t odd = 9;
    CHECK_OK(hvi_sim_win_poke(f.sim, &f.w, (fo & ~0xfull) + f.w.off_fo_name_len, &odd, 2));
    CHECK_OK(hvi_windows_vads(f.e, f.w.pid[1], &v, &n));
    if (n == HVI_SIM_WIN_VADS)
        CHECK_STR(v[4].file, "");
    hvi_windows_free(v);
    wf_free(&f);
}

HVI_TEST(a_vad_chain_deeper_than_64_is_refused)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    uint64_t pool = 0;
    REQUIRE(hvi_sim_win_pool(f.sim, &f.w, 3, &pool) == HVI_OK);
    /* 70 nodes, each the right child of the previous, in address order: a valid BST that is
     * not balanced at all */
    for (uint32_t k = 0; k < 70; k++) {
        uint8_t n[0x80];
        memset(n, 0, sizeof(n));
        uint64_t right = k + 1 < 70 ? pool + (k + 1) * 0x80ull : 0;
        uint32_t vpn = 0x100 + 0x10 * k;
        memcpy(n + f.w.off_v_right, &right, 8);
        memcpy(n + f.w.off_v_start, &vpn, 4);
        memcpy(n + f.w.off_v_end, &vpn, 4);
        REQUIRE(hvi_sim_win_poke(f.sim, &f.w, pool + k * 0x80ull, n, sizeof(n)) == HVI_OK);
    }
    poke64(&f, f.w.eprocess[1] + f.w.off_vadroot, pool);
    hvi_windows_vad *v = NULL;
    size_t n = 0;
    CHECK_STATUS(hvi_windows_vads(f.e, f.w.pid[1], &v, &n), HVI_E_LIMIT);
    CHECK(strstr(hvi_last_error(f.e), "deeper") != NULL);
    /* the same chain cut at 60 nodes is walked whole */
    poke64(&f, pool + 59 * 0x80ull + f.w.off_v_right, 0);
    CHECK_OK(hvi_windows_vads(f.e, f.w.pid[1], &v, &n));
    CHECK_EQ_U64(n, 60);
    if (n == 60)
        CHECK_EQ_U64(v[59].start, (0x100ull + 0x10 * 59) << 12);
    hvi_windows_free(v);
    wf_free(&f);
}

#define BIG_TREE 65537u
#define BIG_STRIDE 0x40u

/* Nodes lo..hi of a sorted array as a balanced tree rooted at the middle; returns the root. */
static uint64_t big_subtree(uint8_t *mem, uint64_t base, const hvi_sim_win *w, uint32_t lo,
                            uint32_t hi, uint64_t *rightmost_parent)
{
    if (lo > hi || hi == UINT32_MAX)
        return 0;
    uint32_t mid = lo + (hi - lo) / 2;
    uint8_t *n = mem + (size_t)mid * BIG_STRIDE;
    uint64_t l = mid > lo ? big_subtree(mem, base, w, lo, mid - 1, NULL) : 0;
    uint64_t r = big_subtree(mem, base, w, mid + 1, hi, rightmost_parent);
    if (rightmost_parent && mid + 1 == hi)
        *rightmost_parent = base + (uint64_t)mid * BIG_STRIDE;
    uint32_t vpn = 0x100 + 2 * mid;
    memcpy(n + w->off_v_left, &l, 8);
    memcpy(n + w->off_v_right, &r, 8);
    memcpy(n + w->off_v_start, &vpn, 4);
    memcpy(n + w->off_v_end, &vpn, 4);
    return base + (uint64_t)mid * BIG_STRIDE;
}

HVI_TEST(a_vad_tree_of_more_than_65536_nodes_is_refused)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    REQUIRE(f.w.off_v_flags + 4 <= BIG_STRIDE);
    size_t bytes = (size_t)BIG_TREE * BIG_STRIDE;
    uint32_t pages = (uint32_t)((bytes + 4095) / 4096);
    uint64_t pool = 0, parent = 0;
    REQUIRE(hvi_sim_win_pool(f.sim, &f.w, pages, &pool) == HVI_OK);
    uint8_t *mem = calloc(1, (size_t)pages * 4096);
    REQUIRE(mem != NULL);
    uint64_t root = big_subtree(mem, pool, &f.w, 0, BIG_TREE - 1, &parent);
    REQUIRE(hvi_sim_win_poke(f.sim, &f.w, pool, mem, (size_t)pages * 4096) == HVI_OK);
    free(mem);
    poke64(&f, f.w.eprocess[1] + f.w.off_vadroot, root);
    hvi_windows_vad *v = NULL;
    size_t n = 0;
    CHECK_STATUS(hvi_windows_vads(f.e, f.w.pid[1], &v, &n), HVI_E_LIMIT);
    CHECK(strstr(hvi_last_error(f.e), "more than 65536 nodes") != NULL);
    /* without its last node (the rightmost leaf) the tree is within budget and walked whole */
    REQUIRE(parent != 0);
    poke64(&f, parent + f.w.off_v_right, 0);
    CHECK_OK(hvi_windows_vads(f.e, f.w.pid[1], &v, &n));
    CHECK_EQ_U64(n, BIG_TREE - 1);
    if (n == BIG_TREE - 1) {
        CHECK_EQ_U64(v[0].start, 0x100ull << 12);
        CHECK_EQ_U64(v[n - 1].start, (0x100ull + 2 * (n - 1)) << 12);
    }
    hvi_windows_free(v);
    wf_free(&f);
}

HVI_TEST(hostile_thread_lists_and_foreign_threads)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 7601, .kpti = true, .processes = 2};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    hvi_windows_thread *t = NULL;
    size_t n = 0;
    uint64_t l0 = f.w.ethread[1][0] + f.w.off_t_list, l1 = f.w.ethread[1][1] + f.w.off_t_list;
    /* a thread of process 2 on process 1's list is reported as foreign */
    poke64(&f, f.w.ethread[1][1] + f.w.off_t_process, f.w.eprocess[2]);
    CHECK_OK(hvi_windows_threads(f.e, f.w.pid[1], &t, &n));
    REQUIRE(n == 2);
    CHECK(!t[0].foreign);
    CHECK(t[1].foreign);
    hvi_windows_free(t);
    /* a loop that skips the head: the second thread's Flink back to itself */
    poke64(&f, l1, l1);
    CHECK_STATUS(hvi_windows_threads(f.e, f.w.pid[1], &t, &n), HVI_E_FORMAT);
    poke64(&f, l1, l0); /* Flink to the first one, whose Blink is the head: caught */
    CHECK_STATUS(hvi_windows_threads(f.e, f.w.pid[1], &t, &n), HVI_E_FORMAT);
    poke64(&f, l1, 0x4242424242424242ull);
    CHECK_STATUS(hvi_windows_threads(f.e, f.w.pid[1], &t, &n), HVI_E_FORMAT);
    CHECK(strstr(hvi_last_error(f.e), "thread list") != NULL);
    wf_free(&f);
}

static void poke_user(struct wf *f, uint32_t i, uint32_t off, const void *d, size_t len)
{
    CHECK_OK(hvi_sim_phys_write(f->sim, f->w.peb_gpa[i] + off, d, len));
}

HVI_TEST(hostile_peb_and_parameters)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    hvi_windows_process_params pp;
    uint32_t pid = f.w.pid[1];
    uint64_t kptr = f.w.eprocess[1], good = f.w.params[1];
    poke_user(&f, 1, 0x20, &kptr, 8); /* ProcessParameters in the kernel */
    CHECK_STATUS(hvi_windows_process_params_get(f.e, pid, &pp), HVI_E_FORMAT);
    uint64_t absent = f.w.peb[1] + 0x10000;
    poke_user(&f, 1, 0x20, &absent, 8); /* an unmapped page */
    CHECK_STATUS(hvi_windows_process_params_get(f.e, pid, &pp), HVI_E_NOT_PRESENT);
    poke_user(&f, 1, 0x20, &good, 8);
    /* the command line's buffer points into the kernel: left empty, the image path still read */
    poke_user(&f, 1, 0x800 + 0x78, &kptr, 8);
    CHECK_OK(hvi_windows_process_params_get(f.e, pid, &pp));
    CHECK_STR(pp.command_line, "");
    CHECK_STR(pp.image_path, f.w.image_path[1]);
    /* an odd length is refused; a huge one is cut at 1023 characters and flagged */
    uint16_t odd = 7, huge = 0xfffe;
    poke_user(&f, 1, 0x800 + 0x60, &odd, 2);
    CHECK_OK(hvi_windows_process_params_get(f.e, pid, &pp));
    CHECK_STR(pp.image_path, "");
    poke_user(&f, 1, 0x800 + 0x60, &huge, 2);
    CHECK_OK(hvi_windows_process_params_get(f.e, pid, &pp));
    CHECK(pp.truncated);
    CHECK(strlen(pp.image_path) < sizeof(pp.image_path));
    /* a PEB pointer in the kernel half */
    poke64(&f, f.w.eprocess[1] + f.w.off_peb, kptr);
    CHECK_STATUS(hvi_windows_process_params_get(f.e, pid, &pp), HVI_E_FORMAT);
    wf_free(&f);
}

/* The PEB loader list: links are user pointers with Blinks back; a loop, a kernel pointer, an
 * unmapped Ldr are refused; no Ldr yet is an empty list. */
HVI_TEST(hostile_user_module_lists)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    hvi_windows_module *m = NULL;
    size_t n = 0;
    uint32_t pid = f.w.pid[1];
    uint64_t second = f.w.umod_entry[1][1], first = f.w.umod_entry[1][0];
    uint64_t kptr = f.w.eprocess[1], unmapped = f.w.peb[1] + 0x20000, zero = 0;
    poke_user(&f, 1, 0x300, &second, 8); /* ntdll's Flink to itself: its Blink is the exe */
    CHECK_STATUS(hvi_windows_user_modules(f.e, pid, &m, &n), HVI_E_FORMAT);
    poke_user(&f, 1, 0x300, &kptr, 8);
    CHECK_STATUS(hvi_windows_user_modules(f.e, pid, &m, &n), HVI_E_FORMAT);
    CHECK(strstr(hvi_last_error(f.e), "module list of pid") != NULL);
    poke_user(&f, 1, 0x300, &first, 8); /* back to the exe, whose Blink is the head */
    CHECK_STATUS(hvi_windows_user_modules(f.e, pid, &m, &n), HVI_E_FORMAT);
    uint64_t head = f.w.peb[1] + 0x110;
    poke_user(&f, 1, 0x300, &head, 8);
    CHECK_OK(hvi_windows_user_modules(f.e, pid, &m, &n));
    CHECK_EQ_U64(n, 2);
    hvi_windows_free(m);
    poke_user(&f, 1, 0x18, &unmapped, 8);
    CHECK_STATUS(hvi_windows_user_modules(f.e, pid, &m, &n), HVI_E_NOT_PRESENT);
    poke_user(&f, 1, 0x18, &kptr, 8);
    CHECK_STATUS(hvi_windows_user_modules(f.e, pid, &m, &n), HVI_E_FORMAT);
    poke_user(&f, 1, 0x18, &zero, 8);
    CHECK_OK(hvi_windows_user_modules(f.e, pid, &m, &n));
    CHECK_EQ_U64(n, 0);
    CHECK_STATUS(hvi_windows_user_modules(f.e, 4, &m, &n), HVI_E_NOT_FOUND); /* System */
    wf_free(&f);
}

/* Parameters not yet normalized (Flags bit 0 clear): the buffers are offsets from the
 * structure. */
HVI_TEST(parameters_not_yet_normalized_hold_offsets)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 7601, .kpti = false, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    hvi_windows_process_params pp;
    uint32_t pid = f.w.pid[1], zero = 0;
    /* the builder's strings lie at params + 0x200 and + 0x300 */
    uint64_t img = 0x200, cmd = 0x300;
    poke_user(&f, 1, 0x800 + 0x08, &zero, 4);
    poke_user(&f, 1, 0x800 + 0x68, &img, 8);
    poke_user(&f, 1, 0x800 + 0x78, &cmd, 8);
    CHECK_OK(hvi_windows_process_params_get(f.e, pid, &pp));
    CHECK_STR(pp.image_path, f.w.image_path[1]);
    CHECK_STR(pp.command_line, f.w.command_line[1]);
    /* an "offset" that is an address is refused, the other string still read */
    uint64_t abs_img = f.w.params[1] + 0x200;
    poke_user(&f, 1, 0x800 + 0x68, &abs_img, 8);
    CHECK_OK(hvi_windows_process_params_get(f.e, pid, &pp));
    CHECK_STR(pp.image_path, "");
    CHECK_STR(pp.command_line, f.w.command_line[1]);
    wf_free(&f);
}

HVI_TEST(current_process_from_the_kpcr_and_alerts_carry_it)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 3, .drivers = 2};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_KM_SYSCALL_TABLE, true) == HVI_OK);
    hvi_windows_process p;
    uint64_t th = 0;
    CHECK_OK(hvi_windows_current_process(f.e, 0, &p, &th));
    CHECK_EQ_U64(p.pid, 4);
    CHECK_EQ_U64(th, f.w.ethread[0][0]);
    /* explorer-like process 3's second thread runs on vCPU 0 and writes the SSDT */
    REQUIRE(hvi_sim_win_set_current(f.sim, &f.w, 0, f.w.ethread[3][1]) == HVI_OK);
    CHECK_OK(hvi_windows_current_process(f.e, 0, &p, &th));
    CHECK_EQ_U64(p.pid, f.w.pid[3]);
    CHECK_STR(p.name, f.w.name[3]);
    CHECK_EQ_U64(th, f.w.ethread[3][1]);
    hvi_event_reply rep;
    CHECK_OK(wf_write(&f, f.w.ssdt + 8, 0x1234, 4, f.w.drv_base[2] + 0x40, &rep));
    const hvi_alert *a = wf_last(&f, HVI_ALERT_EPT_WRITE);
    REQUIRE(a != NULL);
    CHECK_EQ_U64((uint64_t)a->pid, f.w.pid[3]);
    CHECK_STR(a->comm, f.w.name[3]);
    /* vCPU 1 still runs System */
    CHECK_OK(hvi_windows_current_process(f.e, 1, &p, NULL));
    CHECK_EQ_U64(p.pid, 4);
    /* in user mode GS base is the TEB and KERNEL_GS_BASE the KPCR */
    hvi_regs *r = hvi_sim_vcpu_regs(f.sim, 0);
    r->kernel_gs_base = r->gs_base;
    r->gs_base = f.w.teb[3][1];
    CHECK_OK(hvi_windows_current_process(f.e, 0, &p, NULL));
    CHECK_EQ_U64(p.pid, f.w.pid[3]);
    /* no KPCR anywhere: refused, and the alert says so with pid -1 */
    r->kernel_gs_base = 0x4141414141414141ull;
    CHECK_STATUS(hvi_windows_current_process(f.e, 0, &p, NULL), HVI_E_FORMAT);
    CHECK_OK(wf_write(&f, f.w.ssdt + 8, 0x1234, 4, f.w.drv_base[2] + 0x40, &rep));
    a = wf_last(&f, HVI_ALERT_EPT_WRITE);
    REQUIRE(a != NULL);
    CHECK_EQ_U64((uint64_t)(int64_t)a->pid, (uint64_t)(int64_t)-1);
    CHECK_STR(a->comm, "");
    /* a KPCR whose Self is wrong is not taken; a hostile CurrentThread is refused */
    r->gs_base = f.w.kpcr[0];
    poke64(&f, f.w.kpcr[0] + 0x18, f.w.kpcr[1]);
    CHECK_STATUS(hvi_windows_current_process(f.e, 0, &p, NULL), HVI_E_FORMAT);
    poke64(&f, f.w.kpcr[0] + 0x18, f.w.kpcr[0]);
    REQUIRE(hvi_sim_win_set_current(f.sim, &f.w, 0, 0x7ff600001000ull) == HVI_OK);
    CHECK_STATUS(hvi_windows_current_process(f.e, 0, &p, NULL), HVI_E_FORMAT);
    REQUIRE(hvi_sim_win_set_current(f.sim, &f.w, 0, f.w.eprocess[1]) == HVI_OK); /* not a thread */
    hvi_status st = hvi_windows_current_process(f.e, 0, &p, NULL);
    CHECK(st != HVI_OK || p.pid != f.w.pid[1]);
    wf_free(&f);
}

/* The LSTAR protection shares the owner resolution: its alert names the process on the vCPU that
 * wrote the MSR (here vCPU 1, not vCPU 0). */
HVI_TEST(msr_alert_names_the_process_of_the_writing_vcpu)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 7601, .kpti = true, .processes = 3};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_KM_MSR, true) == HVI_OK);
    REQUIRE(hvi_sim_win_set_current(f.sim, &f.w, 1, f.w.ethread[2][0]) == HVI_OK);
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_msr_write(f.sim, 1, HVI_MSR_LSTAR, 0xffffa08000400000ull, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    const hvi_alert *a = wf_last(&f, HVI_ALERT_MSR);
    REQUIRE(a != NULL);
    CHECK_EQ_U64(a->vcpu, 1);
    CHECK_EQ_U64((uint64_t)a->pid, f.w.pid[2]);
    CHECK_STR(a->comm, f.w.name[2]);
    CHECK_OK(hvi_sim_msr_write(f.sim, 0, HVI_MSR_LSTAR, 0xffffa08000400000ull, &rep));
    a = wf_last(&f, HVI_ALERT_MSR);
    REQUIRE(a != NULL);
    CHECK_EQ_U64((uint64_t)a->pid, 4); /* vCPU 0 runs System's thread */
    wf_free(&f);
}

HVI_TEST_MAIN()
