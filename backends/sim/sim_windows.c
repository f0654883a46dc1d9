/* hvi simulator — the synthetic Windows x64 guest (see hvi_sim_windows.h). Layouts are the PE
 * format's and, for kernel structures, the selected CAMI entry's offsets. */
#include <stdio.h>
#include <string.h>

#include "hvi_sim_windows.h"

#define KBASE 0xfffff80002a00000ull
#define HAL_BASE 0xfffff80002800000ull
#define DRV_BASE 0xfffff80004000000ull
#define IDT_VA 0xfffff80001a00000ull
#define STACK_VA 0xfffff80001c00000ull
#define POOL_VA 0xffffa08000000000ull
#define PEB_VA 0x000000e0c0000000ull
#define TEB_VA 0x000000e0d0000000ull
#define EXE_VA 0x00007ff600000000ull
#define NTDLL_VA 0x00007ffab0000000ull
#define THREAD_SIZE 0x800u /* two ETHREADs per pool page */
#define VAD_SIZE 0x80u
/* the PEB page: RTL_USER_PROCESS_PARAMETERS at +0x800, its strings at +0xa00 and +0xb00 */
#define PEB_PARAMS 0x800u
#define PEB_IMAGE 0xa00u
#define PEB_CMDLINE 0xb00u

/* image layout (RVAs) */
#define RVA_TEXT 0x1000u  /* 3 pages */
#define RVA_KVAS 0x4000u  /* 1 page, kpti only */
#define RVA_PAGE 0x5000u  /* 3 pages */
#define RVA_RDATA 0x8000u /* 1 page */
#define RVA_DATA 0x9000u  /* 1 page */
#define IMAGE_SIZE 0xA000u
#define OFF_SYSCALL 0x100u /* KiSystemCall64 in .text */
#define OFF_REPEAT 0x200u  /* KiSystemServiceRepeat */
#define OFF_RETADDR 0x300u
#define OFF_ISR 0x400u
#define OFF_KIST 0x1000u /* KiServiceTable in .text */
#define SSDT_COUNT 0x1c0u
/* .data variables */
#define D_BUILD 0x0u
#define D_SYSPROC 0x8u
#define D_MODLIST 0x10u
#define D_PROCHEAD 0x20u
#define D_SDT 0x40u
#define D_SDT_SHADOW 0x80u
#define D_HAL 0x100u

#define PTE_W HVI_SIM_PTE_W
#define PTE_NX HVI_SIM_PTE_NX

static void put16(uint8_t *b, uint32_t off, uint16_t v)
{
    memcpy(b + off, &v, 2);
}
static void put32(uint8_t *b, uint32_t off, uint32_t v)
{
    memcpy(b + off, &v, 4);
}
static void put64(uint8_t *b, uint32_t off, uint64_t v)
{
    memcpy(b + off, &v, 8);
}

hvi_status hvi_sim_win_poke(hvi_sim *sim, const hvi_sim_win *w, uint64_t va, const void *data,
                            size_t len)
{
    const uint8_t *p = data;
    while (len) {
        size_t chunk = 4096 - (size_t)(va & 4095);
        if (chunk > len)
            chunk = len;
        hvi_gpa gpa = 0;
        hvi_status st = hvi_sim_translate(sim, w->cr3, HVI_PAGING_4LVL, va, &gpa);
        if (st == HVI_OK)
            st = hvi_sim_phys_write(sim, gpa, p, chunk);
        if (st != HVI_OK)
            return st;
        va += chunk, p += chunk, len -= chunk;
    }
    return HVI_OK;
}

static hvi_status map_pages(hvi_sim *sim, uint64_t cr3, uint64_t va, uint32_t pages, uint64_t flags)
{
    hvi_gpa gpa = 0;
    hvi_status st = hvi_sim_alloc_frames(sim, pages, 4096, &gpa);
    for (uint32_t i = 0; st == HVI_OK && i < pages; i++)
        st = hvi_sim_map(sim, cr3, HVI_PAGING_4LVL, va + i * 4096ull, gpa + i * 4096ull, 4096,
                         flags);
    return st;
}

static hvi_status pool_alloc(hvi_sim *sim, hvi_sim_win *w, uint32_t pages, uint64_t *va)
{
    hvi_status st = map_pages(sim, w->cr3, w->pool_next, pages, PTE_W | PTE_NX);
    if (st == HVI_OK) {
        *va = w->pool_next;
        w->pool_next += (uint64_t)pages * 4096 + 4096; /* a guard gap between objects */
    }
    return st;
}

struct sec_def {
    const char *name;
    uint32_t rva, size, ch;
    uint64_t flags;
};

static void pe_headers(uint8_t *h, const struct sec_def *secs, uint32_t nsec, uint32_t exp_rva,
                       uint32_t exp_size)
{
    memset(h, 0, 4096);
    h[0] = 'M', h[1] = 'Z';
    put32(h, 0x3c, 0x100);
    uint32_t nt = 0x100;
    put32(h, nt, 0x00004550);
    put16(h, nt + 4, 0x8664); /* Machine */
    put16(h, nt + 6, (uint16_t)nsec);
    put32(h, nt + 8, 0x5b9c8d2a); /* TimeDateStamp */
    put16(h, nt + 20, 0xf0);      /* SizeOfOptionalHeader */
    put16(h, nt + 22, 0x22);      /* EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE */
    uint32_t oh = nt + 24;
    put16(h, oh, 0x20b);
    put32(h, oh + 16, RVA_TEXT);       /* AddressOfEntryPoint */
    put64(h, oh + 24, 0x140000000ull); /* ImageBase (preferred) */
    put32(h, oh + 32, 0x1000);
    put32(h, oh + 36, 0x200);
    put16(h, oh + 40, 10); /* OS version 10.0 */
    put32(h, oh + 56, IMAGE_SIZE);
    put32(h, oh + 60, 0x1000);
    put16(h, oh + 68, 1);   /* Subsystem native */
    put32(h, oh + 108, 16); /* NumberOfRvaAndSizes */
    put32(h, oh + 112, exp_rva);
    put32(h, oh + 116, exp_size);
    uint32_t st = oh + 0xf0;
    for (uint32_t i = 0; i < nsec; i++) {
        uint8_t *s = h + st + i * 40;
        memcpy(s, secs[i].name, strlen(secs[i].name));
        put32(s, 8, secs[i].size);
        put32(s, 12, secs[i].rva);
        put32(s, 16, secs[i].size);
        put32(s, 20, secs[i].rva);
        put32(s, 36, secs[i].ch);
    }
}

/* Export directory at .rdata+0 with sorted names; returns its size. */
static uint32_t exports(uint8_t *rd, uint32_t base_rva)
{
    static const struct {
        const char *n;
        uint32_t rva;
    } ex[] = {
        {"HalDispatchTable", RVA_DATA + D_HAL},
        {"KeBugCheckEx", RVA_TEXT + OFF_ISR + 0x40},
        {"NtBuildNumber", RVA_DATA + D_BUILD},
        {"PsInitialSystemProcess", RVA_DATA + D_SYSPROC},
        {"PsLoadedModuleList", RVA_DATA + D_MODLIST},
        {"ZwClose", RVA_TEXT + OFF_ISR + 0x80},
    };
    const uint32_t n = sizeof(ex) / sizeof(ex[0]);
    uint32_t funcs = 0x40, names = funcs + 4 * n, ords = names + 4 * n, str = ords + 2 * n + 2;
    memset(rd, 0, 0x28);
    put32(rd, 16, 1);
    put32(rd, 20, n);
    put32(rd, 24, n);
    put32(rd, 28, base_rva + funcs);
    put32(rd, 32, base_rva + names);
    put32(rd, 36, base_rva + ords);
    put32(rd, 12, base_rva + str);
    memcpy(rd + str, "ntoskrnl.exe", 13);
    str += 13;
    for (uint32_t i = 0; i < n; i++) {
        put32(rd, funcs + 4 * i, ex[i].rva);
        put32(rd, names + 4 * i, base_rva + str);
        put16(rd, ords + 2 * i, (uint16_t)i);
        size_t l = strlen(ex[i].n) + 1;
        memcpy(rd + str, ex[i].n, l);
        str += (uint32_t)l;
    }
    return str;
}

/* Write pattern p at buf (wildcards become varying bytes); returns the length written. */
static uint32_t put_pattern(uint8_t *buf, const hvi_cami_pattern *p, uint8_t seed)
{
    for (uint32_t i = 0; i < p->len; i++)
        buf[i] = p->items[i] == HVI_CAMI_WILDCARD ? (uint8_t)(seed + 7 * i) : (uint8_t)p->items[i];
    return p->len;
}

static uint64_t place_function(const hvi_cami_win_entry *ent, const char *name, uint8_t *page,
                               uint32_t off, uint64_t va)
{
    const hvi_cami_win_function *f = hvi_cami_win_function_find(ent, hvi_cami_name_hash(name));
    if (!f || f->pattern_count == 0 || f->patterns[0].len == 0)
        return 0;
    const hvi_cami_pattern *p = &f->patterns[0];
    /* a decoy first: the pattern with its last literal byte changed must not be taken */
    uint32_t n = put_pattern(page + off, p, 0x31);
    for (uint32_t i = n; i-- > 0;)
        if (p->items[i] != HVI_CAMI_WILDCARD) {
            page[off + i] ^= 0xff;
            break;
        }
    uint32_t real = off + 0x100;
    put_pattern(page + real, p, 0x55);
    return va + real;
}

static void utf16(uint8_t *dst, const char *s)
{
    for (size_t i = 0; s[i]; i++)
        dst[2 * i] = (uint8_t)s[i], dst[2 * i + 1] = 0;
}

/* A KLDR_DATA_TABLE_ENTRY with its two UTF-16 names, in a pool page of its own (not linked). */
static hvi_status make_ldr(hvi_sim *sim, hvi_sim_win *w, const char *name, const char *dir,
                           uint64_t base, uint32_t size, uint64_t *out)
{
    uint64_t va = 0;
    if (strlen(name) > 60 || strlen(dir) > 30)
        return HVI_E_INVAL;
    hvi_status st = pool_alloc(sim, w, 1, &va);
    if (st != HVI_OK)
        return st;
    uint8_t e[4096];
    memset(e, 0, sizeof(e));
    char full[96];
    size_t dl = strlen(dir), nl = strlen(name);
    memcpy(full, dir, dl);
    memcpy(full + dl, name, nl + 1);
    put64(e, w->off_ldr_base, base);
    put64(e, w->off_ldr_base + 8, base + 0x1000); /* EntryPoint */
    put32(e, w->off_ldr_size, size);
    put16(e, w->off_ldr_fullname, (uint16_t)(2 * strlen(full)));
    put16(e, w->off_ldr_fullname + 2, (uint16_t)(2 * strlen(full) + 2));
    put64(e, w->off_ldr_fullname + 8, va + 0x200);
    put16(e, w->off_ldr_basename, (uint16_t)(2 * nl));
    put16(e, w->off_ldr_basename + 2, (uint16_t)(2 * nl + 2));
    put64(e, w->off_ldr_basename + 8, va + 0x200 + 2 * dl);
    utf16(e + 0x200, full);
    if ((st = hvi_sim_win_poke(sim, w, va, e, sizeof(e))) != HVI_OK)
        return st;
    *out = va;
    return HVI_OK;
}

hvi_status hvi_sim_win_new_ldr(hvi_sim *sim, hvi_sim_win *w, const char *name, uint64_t base,
                               uint32_t size, uint64_t *out)
{
    if (!sim || !w || !name || !out)
        return HVI_E_INVAL;
    return make_ldr(sim, w, name, "\\SystemRoot\\System32\\drivers\\", base, size, out);
}

static hvi_status add_driver(hvi_sim *sim, hvi_sim_win *w, const char *name, const char *dir,
                             uint64_t base, uint32_t size)
{
    uint64_t va = 0;
    size_t nl = strlen(name);
    hvi_status st = make_ldr(sim, w, name, dir, base, size, &va);
    if (st != HVI_OK)
        return st;
    uint32_t i = w->ndrv++;
    w->ldr[i] = va;
    w->drv_base[i] = base;
    w->drv_size[i] = size;
    snprintf(w->drv_name[i], sizeof(w->drv_name[i]), "%.*s", (int)(nl < 31 ? nl : 31), name);
    return HVI_OK;
}

/* Link `nodes` (LIST_ENTRY addresses) behind `head`, in order. */
static hvi_status link_list(hvi_sim *sim, const hvi_sim_win *w, uint64_t head,
                            const uint64_t *nodes, uint32_t n)
{
    hvi_status st = HVI_OK;
    for (uint32_t i = 0; st == HVI_OK && i <= n; i++) {
        uint64_t cur = i == 0 ? head : nodes[i - 1];
        uint64_t next = i == n ? head : nodes[i];
        uint64_t prev = i == 0 ? (n ? nodes[n - 1] : head) : (i == 1 ? head : nodes[i - 2]);
        uint64_t le[2] = {next, prev};
        st = hvi_sim_win_poke(sim, w, cur, le, sizeof(le));
    }
    return st;
}

hvi_status hvi_sim_win_new_eprocess(hvi_sim *sim, hvi_sim_win *w, const char *name, uint32_t pid,
                                    uint32_t ppid, uint64_t *out)
{
    if (!sim || !w || !name || !out)
        return HVI_E_INVAL;
    uint64_t va = 0, cr3 = 0;
    hvi_status st = pool_alloc(sim, w, 1, &va);
    if (st == HVI_OK)
        st = hvi_sim_pt_new(sim, HVI_PAGING_4LVL, &cr3);
    if (st != HVI_OK)
        return st;
    /* the new address space shares the kernel half of the kernel's PML4 */
    uint8_t half[2048];
    if ((st = hvi_sim_phys_read(sim, w->cr3 + 2048, half, sizeof(half))) != HVI_OK ||
        (st = hvi_sim_phys_write(sim, cr3 + 2048, half, sizeof(half))) != HVI_OK)
        return st;
    uint8_t e[4096];
    memset(e, 0, sizeof(e));
    put64(e, w->off_id, pid);
    put64(e, w->off_ppid, ppid);
    size_t nl = strlen(name);
    memcpy(e + w->off_name, name, nl < 15 ? nl : 15);
    put64(e, w->off_cr3, pid == 4 ? w->cr3 : cr3);
    put64(e, w->off_peb, pid == 4 ? 0 : PEB_VA + pid * 0x1000ull);
    put32(e, w->off_flags, 0x40000);               /* HasAddressSpace */
    put64(e, w->off_threads, va + w->off_threads); /* no threads yet: the head points to itself */
    put64(e, w->off_threads + 8, va + w->off_threads);
    if ((st = hvi_sim_win_poke(sim, w, va, e, sizeof(e))) != HVI_OK)
        return st;
    *out = va;
    return HVI_OK;
}

static uint32_t km(const hvi_cami_win_entry *c, unsigned g, unsigned f)
{
    uint32_t v = 0;
    (void)hvi_cami_win_km_field(c, g, f, &v);
    return v;
}

static hvi_status offsets(const hvi_cami_win_entry *c, hvi_sim_win *w)
{
    w->off_list = km(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_LISTENTRY);
    w->off_id = km(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_ID);
    w->off_ppid = km(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_PARENTPID);
    w->off_name = km(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_NAME);
    w->off_cr3 = km(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_CR3);
    w->off_peb = km(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_PEB);
    w->off_flags = km(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_FLAGS);
    uint32_t b = 0, s = 0, n = 0;
    (void)hvi_cami_win_um_field(c, HVI_WIN_UM_DLL, HVI_WIN_UM_DLL_BASEOFFSETINMODULE64, &b);
    (void)hvi_cami_win_um_field(c, HVI_WIN_UM_DLL, HVI_WIN_UM_DLL_SIZEOFFSETINMODULE64, &s);
    (void)hvi_cami_win_um_field(c, HVI_WIN_UM_DLL, HVI_WIN_UM_DLL_NAMEOFFSETINMODULE64, &n);
    w->off_ldr_base = b ? b : 0x30;
    w->off_ldr_size = s ? s : 0x40;
    w->off_ldr_fullname = n ? n : 0x48;
    w->off_ldr_basename = w->off_ldr_fullname + 0x10;
    w->off_vadroot = km(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_VADROOT);
    w->off_threads = km(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_THREADLISTHEAD);
    w->off_t_process = km(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_PROCESS);
    w->off_t_list = km(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_THREADLISTENTRY);
    w->off_t_teb = km(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_TEB);
    w->off_t_id = km(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_ID);
    w->off_t_start = km(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_WIN32STARTADDRESS);
    w->off_t_state = km(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_STATE);
    w->off_pcr_thread = km(c, HVI_WIN_KM_PCR, HVI_WIN_KM_PCR_CURRENTTHREAD);
    w->off_pcr_prcb = km(c, HVI_WIN_KM_PCR, HVI_WIN_KM_PCR_PRCB);
    w->off_v_parent = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_PARENT);
    w->off_v_left = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_LEFT);
    w->off_v_right = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_RIGHT);
    w->off_v_start = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_STARTINGVPN);
    w->off_v_start_hi = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_STARTINGVPNHIGH);
    w->off_v_end = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_ENDINGVPN);
    w->off_v_end_hi = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_ENDINGVPNHIGH);
    w->off_v_flags = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_FLAGS);
    w->v_flags_size = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_FLAGSSIZE);
    w->v_vpn_size = km(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_VPNSIZE);
    w->vf_type_shift = km(c, HVI_WIN_KM_VADFLAGS, HVI_WIN_KM_VADFLAGS_TYPESHIFT);
    w->vf_prot_shift = km(c, HVI_WIN_KM_VADFLAGS, HVI_WIN_KM_VADFLAGS_PROTECTIONSHIFT);
    w->vad_avl_table = c->build < 9600;
    w->off_v_subsection = km(c, HVI_WIN_KM_VADLONG, HVI_WIN_KM_VADLONG_SUBSECTION);
    w->off_sub_ctlarea = km(c, HVI_WIN_KM_UNGROUPED, HVI_WIN_KM_UNGROUPED_SUBSECTIONCTLAREA);
    w->off_ctl_file = km(c, HVI_WIN_KM_UNGROUPED, HVI_WIN_KM_UNGROUPED_CTLAREAFILE);
    w->off_fo_name_len = km(c, HVI_WIN_KM_FILEOBJECT, HVI_WIN_KM_FILEOBJECT_NAMELENGTH);
    w->off_fo_name_buf = km(c, HVI_WIN_KM_FILEOBJECT, HVI_WIN_KM_FILEOBJECT_NAMEBUFFER);
    if (w->off_v_subsection + 8 > VAD_SIZE || w->off_sub_ctlarea + 8 > 0x40 ||
        w->off_ctl_file + 8 > 0xc0 || w->off_fo_name_len + 2 > 0x80 ||
        w->off_fo_name_buf + 8 > 0x80)
        return HVI_E_FORMAT;
    if (w->off_t_start + 8 > THREAD_SIZE || w->off_t_list + 16 > THREAD_SIZE ||
        w->off_t_id + 8 > THREAD_SIZE || w->off_t_teb + 8 > THREAD_SIZE ||
        w->off_t_process + 8 > THREAD_SIZE || w->off_v_flags + 8 > VAD_SIZE ||
        w->off_vadroot + 0x18 > 4096 || w->off_threads + 16 > 4096 ||
        w->off_pcr_thread + 8 > 4096 || (w->v_vpn_size != 4 && w->v_vpn_size != 8) ||
        (w->v_flags_size != 4 && w->v_flags_size != 8))
        return HVI_E_FORMAT;
    uint32_t hi[] = {w->off_list + 16, w->off_id + 8,  w->off_ppid + 8, w->off_name + 15,
                     w->off_cr3 + 8,   w->off_peb + 8, w->off_flags + 4};
    for (size_t i = 0; i < sizeof(hi) / sizeof(hi[0]); i++)
        if (hi[i] > 4096)
            return HVI_E_FORMAT;
    return w->off_list && w->off_id && w->off_name ? HVI_OK : HVI_E_FORMAT;
}

static const char *const proc_names[] = {"smss.exe",     "csrss.exe",   "wininit.exe",
                                         "services.exe", "lsass.exe",   "svchost.exe",
                                         "winlogon.exe", "explorer.exe"};
static const char *const drv_names[] = {"kd.dll",   "CI.dll",   "ndis.sys",   "tcpip.sys",
                                        "disk.sys", "ntfs.sys", "volmgr.sys", "acpi.sys"};

static void text_section(uint8_t *t, uint64_t text_va, uint64_t sdt, uint64_t shadow)
{
    memset(t, 0xcc, 0x3000);
    static const uint8_t entry[] = {
        0x0f, 0x01, 0xf8,                                     /* swapgs */
        0x65, 0x48, 0x89, 0x24, 0x25, 0x10, 0x00, 0x00, 0x00, /* mov gs:[10h], rsp */
        0x65, 0x48, 0x8b, 0x24, 0x25, 0xa8, 0x01, 0x00, 0x00, /* mov rsp, gs:[1A8h] */
        0x6a, 0x2b,                                           /* push 2Bh */
    };
    memcpy(t + OFF_SYSCALL, entry, sizeof(entry));
    uint32_t j = OFF_SYSCALL + (uint32_t)sizeof(entry);
    t[j] = 0xe9;
    put32(t, j + 1, (uint32_t)(OFF_REPEAT - (j + 5)));
    /* KiSystemServiceRepeat: lea r10, [KeServiceDescriptorTable]; lea r11, [...Shadow] */
    uint32_t r = OFF_REPEAT;
    t[r] = 0x4c, t[r + 1] = 0x8d, t[r + 2] = 0x15;
    put32(t, r + 3, (uint32_t)(int32_t)(int64_t)(sdt - (text_va + r + 7)));
    t[r + 7] = 0x4c, t[r + 8] = 0x8d, t[r + 9] = 0x1d;
    put32(t, r + 10, (uint32_t)(int32_t)(int64_t)(shadow - (text_va + r + 14)));
    static const uint8_t tail[] = {0xf7, 0x43, 0x78, 0x80, 0x00, 0x00, 0x00, 0xc3};
    memcpy(t + r + 14, tail, sizeof(tail));
    t[OFF_RETADDR] = 0x90, t[OFF_RETADDR + 1] = 0xc3;
    for (uint32_t i = 0; i < SSDT_COUNT; i++) /* (routine - KiServiceTable) << 4 | stack args */
        put32(t, OFF_KIST + 4 * i,
              (uint32_t)((int32_t)(OFF_ISR + 0x10 * (i % 64) - OFF_KIST) * 16) | (i % 4));
}

static hvi_status build_image(hvi_sim *sim, const hvi_cami_win_entry *ent,
                              const hvi_sim_win_config *cfg, hvi_sim_win *w, uint8_t *buf)
{
    struct sec_def secs[5];
    uint32_t n = 0;
    secs[n++] = (struct sec_def){".text", RVA_TEXT, 0x3000, 0x60000020, 0};
    if (cfg->kpti)
        secs[n++] = (struct sec_def){"KVASCODE", RVA_KVAS, 0x1000, 0x60000020, 0};
    secs[n++] = (struct sec_def){"PAGE", RVA_PAGE, 0x3000, 0x60000020, 0};
    secs[n++] = (struct sec_def){".rdata", RVA_RDATA, 0x1000, 0x40000040, PTE_NX};
    secs[n++] = (struct sec_def){".data", RVA_DATA, 0x1000, 0xc0000040, PTE_W | PTE_NX};
    hvi_status st = map_pages(sim, w->cr3, KBASE, 1, PTE_NX);
    for (uint32_t i = 0; st == HVI_OK && i < n; i++)
        st = map_pages(sim, w->cr3, KBASE + secs[i].rva, secs[i].size / 4096, secs[i].flags);
    if (st != HVI_OK)
        return st;
    w->kernel_base = KBASE;
    w->image_size = IMAGE_SIZE;
    w->text = KBASE + RVA_TEXT;
    w->page_section = KBASE + RVA_PAGE;
    w->sdt = KBASE + RVA_DATA + D_SDT;
    w->ssdt = w->text + OFF_KIST;
    w->ssdt_count = SSDT_COUNT;
    w->hal_dispatch = KBASE + RVA_DATA + D_HAL;
    w->ps_active_head = KBASE + RVA_DATA + D_PROCHEAD;
    w->ps_loaded_list = KBASE + RVA_DATA + D_MODLIST;
    w->return_address = w->text + OFF_RETADDR;
    text_section(buf, w->text, w->sdt, KBASE + RVA_DATA + D_SDT_SHADOW);
    if (!(cfg->flags & HVI_SIM_WIN_NO_PATTERNS))
        w->mi_process_loader_entry =
            place_function(ent, "MiProcessLoaderEntry", buf, 0x2000, w->text);
    if ((st = hvi_sim_win_poke(sim, w, w->text, buf, 0x3000)) != HVI_OK)
        return st;
    w->lstar = w->text + OFF_SYSCALL;
    if (cfg->kpti) {
        static const uint8_t shadow[] = {0x0f, 0x01, 0xf8, 0x65, 0x48, 0x89, 0x24, 0x25,
                                         0x10, 0x90, 0x00, 0x00, 0x65, 0x48, 0x8b, 0x24,
                                         0x25, 0x00, 0x90, 0x00, 0x00, 0x0f, 0x20, 0xdc};
        memset(buf, 0xcc, 0x1000);
        memcpy(buf, shadow, sizeof(shadow));
        w->lstar = KBASE + RVA_KVAS;
        if ((st = hvi_sim_win_poke(sim, w, w->lstar, buf, 0x1000)) != HVI_OK)
            return st;
    }
    memset(buf, 0xcc, 0x3000);
    if (!(cfg->flags & HVI_SIM_WIN_NO_PATTERNS)) {
        w->psp_insert_process = place_function(ent, "PspInsertProcess", buf, 0, w->page_section);
        w->mm_clean_process =
            place_function(ent, "MmCleanProcessAddressSpace", buf, 0x1000, w->page_section);
        w->mi_unload_system_image =
            place_function(ent, "MiUnloadSystemImage", buf, 0x2000, w->page_section);
    }
    if ((st = hvi_sim_win_poke(sim, w, w->page_section, buf, 0x3000)) != HVI_OK)
        return st;
    memset(buf, 0, 0x1000);
    uint32_t exp_size = exports(buf, RVA_RDATA);
    if ((st = hvi_sim_win_poke(sim, w, KBASE + RVA_RDATA, buf, 0x1000)) != HVI_OK)
        return st;
    pe_headers(buf, secs, n, RVA_RDATA, exp_size);
    return hvi_sim_win_poke(sim, w, KBASE, buf, 0x1000);
}

static hvi_status build_data(hvi_sim *sim, const hvi_sim_win_config *cfg, hvi_sim_win *w)
{
    uint8_t d[0x200];
    memset(d, 0, sizeof(d));
    put32(d, D_BUILD, 0xF0000000u | (cfg->build_override ? cfg->build_override : cfg->build));
    put64(d, D_SYSPROC, w->eprocess[0]);
    put64(d, D_SDT, w->ssdt);
    put32(d, D_SDT + 0x10, w->ssdt_count);
    put64(d, D_SDT + 0x18, w->ssdt + 4ull * w->ssdt_count);
    memcpy(d + D_SDT_SHADOW, d + D_SDT, 0x20);
    put32(d, D_HAL, 4); /* HAL_DISPATCH_TABLE version */
    for (uint32_t i = 1; i < 16; i++)
        put64(d, D_HAL + 8 * i, HAL_BASE + 0x1000 + 0x40ull * i);
    return hvi_sim_win_poke(sim, w, KBASE + RVA_DATA, d, sizeof(d));
}

/* One MMVAD_SHORT of process i (node k) with its children, parent, VPNs and flags. */
static void put_vad(const hvi_sim_win *w, uint8_t *b, uint32_t i, uint32_t k, uint64_t parent,
                    uint64_t left, uint64_t right)
{
    uint8_t *n = b + k * VAD_SIZE;
    uint64_t s = w->vad_start[i][k] >> 12, e = w->vad_end[i][k] >> 12;
    put64(n, w->off_v_parent, parent);
    put64(n, w->off_v_left, left);
    put64(n, w->off_v_right, right);
    if (w->v_vpn_size == 8) {
        put64(n, w->off_v_start, s);
        put64(n, w->off_v_end, e);
    } else {
        put32(n, w->off_v_start, (uint32_t)s);
        put32(n, w->off_v_end, (uint32_t)e);
        if (w->off_v_start_hi)
            n[w->off_v_start_hi] = (uint8_t)(s >> 32);
        if (w->off_v_end_hi)
            n[w->off_v_end_hi] = (uint8_t)(e >> 32);
    }
    uint64_t f = (uint64_t)w->vad_type[i][k] << w->vf_type_shift | (uint64_t)w->vad_prot[i][k]
                                                                       << w->vf_prot_shift;
    if (w->v_flags_size == 8)
        put64(n, w->off_v_flags, f);
    else
        put32(n, w->off_v_flags, (uint32_t)f);
}

/* PEB.Ldr (0x18) -> PEB_LDR_DATA (+0x100; InLoadOrderModuleList at +0x10) -> two
 * LDR_DATA_TABLE_ENTRYs (+0x200, +0x300; the exe and ntdll, at their image VADs) with the CAMI um
 * Dll offsets, names at +0xc00.. (full) and +0xc80.. (base), in the PEB page b. */
static void put_loader(hvi_sim_win *w, uint8_t *b, uint32_t i, uint64_t peb)
{
    uint64_t head = peb + 0x110, node[2] = {peb + 0x200, peb + 0x300};
    put64(b, 0x18, peb + 0x100);
    put64(b, 0x110, node[0]);
    put64(b, 0x118, node[1]);
    for (uint32_t k = 0; k < 2; k++) {
        uint8_t *en = b + 0x200 + 0x100 * k;
        const char *base = k == 0 ? w->name[i] : "ntdll.dll";
        char full[64];
        snprintf(full, sizeof(full), "C:\\Windows\\System32\\%.16s", base);
        put64(en, 0, k == 0 ? node[1] : head);
        put64(en, 8, k == 0 ? head : node[0]);
        w->umod_entry[i][k] = node[k];
        w->umod_base[i][k] = w->vad_start[i][3 + k];
        w->umod_size[i][k] = (uint32_t)(w->vad_end[i][3 + k] - w->vad_start[i][3 + k] + 1);
        memcpy(w->umod_path[i][k], full, sizeof(full));
        snprintf(w->umod_name[i][k], sizeof(w->umod_name[i][k]), "%.16s", base);
        put64(en, w->off_ldr_base, w->umod_base[i][k]);
        put32(en, w->off_ldr_size, w->umod_size[i][k]);
        uint32_t fo = 0xc00 + 0x100 * k, bo = fo + 0x80;
        size_t fl = strlen(full), bl = strlen(w->umod_name[i][k]);
        put16(en, w->off_ldr_fullname, (uint16_t)(2 * fl));
        put16(en, w->off_ldr_fullname + 2, (uint16_t)(2 * fl + 2));
        put64(en, w->off_ldr_fullname + 8, peb + fo);
        put16(en, w->off_ldr_basename, (uint16_t)(2 * bl));
        put16(en, w->off_ldr_basename + 2, (uint16_t)(2 * bl + 2));
        put64(en, w->off_ldr_basename + 8, peb + bo);
        utf16(b + fo, full);
        utf16(b + bo, w->umod_name[i][k]);
    }
    w->numod[i] = 2;
}

/* Process i's VADs (a 5-node tree: root 2; 0 left with right child 1; 3 right with right child
 * 4), threads and, in its own address space, PEB and process parameters. */
static hvi_status populate(hvi_sim *sim, hvi_sim_win *w, uint32_t i)
{
    uint64_t pool = 0, ep = w->eprocess[i], cr3 = 0, pid = w->pid[i];
    hvi_status st = pool_alloc(sim, w, 2, &pool);
    if (st != HVI_OK)
        return st;
    uint8_t b[4096];
    /* threads: page 2 of the allocation */
    memset(b, 0, sizeof(b));
    uint32_t nt = i == 0 ? 1 : HVI_SIM_WIN_THREADS;
    uint64_t nodes[HVI_SIM_WIN_THREADS];
    for (uint32_t k = 0; k < nt; k++) {
        uint8_t *t = b + k * THREAD_SIZE;
        uint64_t th = pool + 4096 + k * THREAD_SIZE;
        w->ethread[i][k] = th;
        w->tid[i][k] = i == 0 ? 8 : (uint32_t)(0x2000 + 8 * pid + 4 * k);
        w->teb[i][k] = i == 0 ? 0 : TEB_VA + pid * 0x2000 + k * 0x1000ull;
        w->thread_start[i][k] =
            i == 0 ? KBASE + RVA_TEXT + OFF_ISR : EXE_VA + pid * 0x100000 + 0x1000 + 0x100 * k;
        put64(t, w->off_t_id - 8, pid); /* Cid.UniqueProcess */
        put64(t, w->off_t_id, w->tid[i][k]);
        put64(t, w->off_t_process, ep);
        put64(t, w->off_t_teb, w->teb[i][k]);
        put64(t, w->off_t_start, w->thread_start[i][k]);
        t[w->off_t_state] = 5; /* Waiting */
        nodes[k] = th + w->off_t_list;
    }
    w->nthread[i] = nt;
    if ((st = hvi_sim_win_poke(sim, w, pool + 4096, b, sizeof(b))) != HVI_OK ||
        (st = link_list(sim, w, ep + w->off_threads, nodes, nt)) != HVI_OK || i == 0)
        return st;
    /* VADs: page 1 */
    uint64_t peb = PEB_VA + pid * 0x1000, exe = EXE_VA + pid * 0x100000;
    const uint64_t range[HVI_SIM_WIN_VADS][2] = {{0x1e0000, 0x1effff},
                                                 {0x500000, 0x5fffff},
                                                 {peb, peb + 0xfff},
                                                 {exe, exe + 0x2ffff},
                                                 {NTDLL_VA, NTDLL_VA + 0x1fffff}};
    for (uint32_t k = 0; k < HVI_SIM_WIN_VADS; k++) {
        w->vad_node[i][k] = pool + k * VAD_SIZE;
        w->vad_start[i][k] = range[k][0];
        w->vad_end[i][k] = range[k][1];
        w->vad_type[i][k] = k >= 3 ? 2 : 0; /* image map / private */
        w->vad_prot[i][k] = k >= 3 ? 7 : 4; /* EXECUTE_WRITECOPY / READWRITE */
    }
    w->nvad[i] = HVI_SIM_WIN_VADS;
    const uint64_t *v = w->vad_node[i];
    uint64_t table = ep + w->off_vadroot;
    memset(b, 0, sizeof(b));
    put_vad(w, b, i, 2, w->vad_avl_table ? table : 0, v[0], v[3]);
    put_vad(w, b, i, 0, v[2], 0, v[1]);
    put_vad(w, b, i, 1, v[0], 0, 0);
    put_vad(w, b, i, 3, v[2], 0, v[4]);
    put_vad(w, b, i, 4, v[3], 0, 0);
    /* the image VADs are MMVADs: Subsection -> SUBSECTION (+0x400 / +0x600 of the page) ->
     * CONTROL_AREA (+0x40) -> FILE_OBJECT (+0x100, through an EX_FAST_REF with refcount 3) ->
     * FileName (+0x180) */
    for (uint32_t k = 3; k < HVI_SIM_WIN_VADS; k++) {
        uint32_t sub = 0x400 + 0x200 * (k - 3), ctl = sub + 0x40, fo = sub + 0x100;
        char name[48];
        snprintf(name, sizeof(name), "\\Windows\\System32\\%.16s",
                 k == 3 ? w->name[i] : "ntdll.dll");
        memcpy(w->vad_file[i][k], name, sizeof(name));
        put64(b + k * VAD_SIZE, w->off_v_subsection, pool + sub);
        put64(b + sub, w->off_sub_ctlarea, pool + ctl);
        put64(b + ctl, w->off_ctl_file, (pool + fo) | 3);
        put16(b + fo, w->off_fo_name_len, (uint16_t)(2 * strlen(name)));
        put16(b + fo, w->off_fo_name_len + 2, (uint16_t)(2 * strlen(name) + 2));
        put64(b + fo, w->off_fo_name_buf, pool + sub + 0x180);
        utf16(b + sub + 0x180, name);
    }
    if ((st = hvi_sim_win_poke(sim, w, pool, b, sizeof(b))) != HVI_OK ||
        (st = hvi_sim_win_poke(sim, w, table + (w->vad_avl_table ? w->off_v_right : 0), &v[2],
                               8)) != HVI_OK)
        return st;
    /* user memory through the process's own page tables */
    hvi_gpa gpa = 0;
    if ((st = hvi_sim_translate(sim, w->cr3, HVI_PAGING_4LVL, ep + w->off_cr3, &gpa)) != HVI_OK ||
        (st = hvi_sim_phys_read(sim, gpa, &cr3, 8)) != HVI_OK)
        return st;
    if ((st = hvi_sim_alloc_frames(sim, 1, 4096, &gpa)) != HVI_OK ||
        (st = hvi_sim_map(sim, cr3, HVI_PAGING_4LVL, peb, gpa, 4096,
                          HVI_SIM_PTE_U | PTE_W | PTE_NX)) != HVI_OK)
        return st;
    w->peb[i] = peb;
    w->peb_gpa[i] = gpa;
    w->params[i] = peb + PEB_PARAMS;
    char name[16], path[64], cmd[96];
    memcpy(name, w->name[i], sizeof(name));
    snprintf(path, sizeof(path), "C:\\Windows\\System32\\%s", name);
    snprintf(cmd, sizeof(cmd), "\"%s\" -sim %u", path, (unsigned)pid);
    memcpy(w->image_path[i], path, sizeof(path));
    memcpy(w->command_line[i], cmd, sizeof(cmd));
    memset(b, 0, sizeof(b));
    put64(b, 0x20, peb + PEB_PARAMS); /* PEB.ProcessParameters */
    put32(b, PEB_PARAMS + 8, 1);      /* Flags: RTL_USER_PROC_PARAMS_NORMALIZED */
    size_t il = strlen(w->image_path[i]), cl = strlen(w->command_line[i]);
    put16(b, PEB_PARAMS + 0x60, (uint16_t)(2 * il));
    put16(b, PEB_PARAMS + 0x62, (uint16_t)(2 * il + 2));
    put64(b, PEB_PARAMS + 0x68, peb + PEB_IMAGE);
    put16(b, PEB_PARAMS + 0x70, (uint16_t)(2 * cl));
    put16(b, PEB_PARAMS + 0x72, (uint16_t)(2 * cl + 2));
    put64(b, PEB_PARAMS + 0x78, peb + PEB_CMDLINE);
    utf16(b + PEB_IMAGE, w->image_path[i]);
    utf16(b + PEB_CMDLINE, w->command_line[i]);
    put_loader(w, b, i, peb);
    return hvi_sim_phys_write(sim, gpa, b, sizeof(b));
}

static hvi_status build_lists(hvi_sim *sim, const hvi_sim_win_config *cfg, hvi_sim_win *w)
{
    uint64_t nodes[HVI_SIM_WIN_MAX + 2];
    hvi_status st = HVI_OK;
    for (uint32_t i = 0; st == HVI_OK && i <= cfg->processes; i++) {
        char name[16];
        uint32_t pid = i == 0 ? 4 : 0x100 + 4 * i, ppid = i == 0   ? 0
                                                          : i == 1 ? 4
                                                                   : 0x100 + 4 * (i / 2);
        if (i == 0)
            memcpy(name, "System", 7);
        else if (i <= 8)
            memcpy(name, proc_names[i - 1], strlen(proc_names[i - 1]) + 1);
        else
            memcpy(name, "worker", 7), name[6] = (char)('a' + i % 26), name[7] = 0;
        st = hvi_sim_win_new_eprocess(sim, w, name, pid, ppid, &w->eprocess[i]);
        w->pid[i] = pid;
        w->ppid[i] = ppid;
        memcpy(w->name[i], name, sizeof(name));
        if (st == HVI_OK)
            st = populate(sim, w, i);
        nodes[i] = w->eprocess[i] + w->off_list;
    }
    w->nproc = cfg->processes + 1;
    if (st == HVI_OK)
        st = link_list(sim, w, w->ps_active_head, nodes, w->nproc);
    if (st == HVI_OK)
        st = add_driver(sim, w, "ntoskrnl.exe", "\\SystemRoot\\system32\\", KBASE, IMAGE_SIZE);
    if (st == HVI_OK)
        st = add_driver(sim, w, "hal.dll", "\\SystemRoot\\system32\\", HAL_BASE, 0x60000);
    for (uint32_t i = 0; st == HVI_OK && i < cfg->drivers; i++) {
        char name[24];
        if (i < 8)
            memcpy(name, drv_names[i], strlen(drv_names[i]) + 1);
        else
            memcpy(name, "drvX.sys", 9), name[3] = (char)('a' + i % 26);
        st = add_driver(sim, w, name, "\\SystemRoot\\System32\\drivers\\",
                        DRV_BASE + 0x100000ull * i, 0x20000);
    }
    for (uint32_t i = 0; st == HVI_OK && i < w->ndrv; i++)
        nodes[i] = w->ldr[i];
    if (st == HVI_OK)
        st = link_list(sim, w, w->ps_loaded_list, nodes, w->ndrv);
    return st;
}

static hvi_status build_cpu(hvi_sim *sim, const hvi_sim_win_config *cfg, hvi_sim_win *w)
{
    hvi_status st = map_pages(sim, w->cr3, IDT_VA, 1, PTE_W | PTE_NX);
    if (st == HVI_OK)
        st = map_pages(sim, w->cr3, STACK_VA, 4, PTE_W | PTE_NX);
    if (st != HVI_OK)
        return st;
    uint8_t idt[4096];
    uint64_t h = w->text + OFF_ISR;
    for (uint32_t v = 0; v < 256; v++) {
        uint8_t *g = idt + 16 * v;
        memset(g, 0, 16);
        put16(g, 0, (uint16_t)h);
        put16(g, 2, 0x10);
        g[5] = 0x8e;
        put16(g, 6, (uint16_t)(h >> 16));
        put32(g, 8, (uint32_t)(h >> 32));
    }
    if ((st = hvi_sim_win_poke(sim, w, IDT_VA, idt, sizeof(idt))) != HVI_OK)
        return st;
    w->idt = IDT_VA;
    w->stack_top = STACK_VA + 0x4000 - 0x200;
    /* a KPCR per vCPU: Self (0x18), CurrentPrcb (Pcr.Prcb) -> the KPRCB at 0x180, and
     * CurrentThread (Pcr.CurrentThread) -> System's thread */
    for (uint32_t v = 0; st == HVI_OK && v < hvi_sim_vcpu_count(sim) && v < HVI_SIM_WIN_VCPUS;
         v++) {
        uint64_t pcr = 0;
        if ((st = pool_alloc(sim, w, 2, &pcr)) != HVI_OK)
            return st;
        uint8_t k[0x200];
        memset(k, 0, sizeof(k));
        put64(k, 0x18, pcr);
        put64(k, w->off_pcr_prcb, pcr + 0x180);
        if ((st = hvi_sim_win_poke(sim, w, pcr, k, sizeof(k))) != HVI_OK ||
            (st = hvi_sim_win_poke(sim, w, pcr + w->off_pcr_thread, &w->ethread[0][0], 8)) !=
                HVI_OK)
            return st;
        w->kpcr[v] = pcr;
        hvi_regs *r = hvi_sim_vcpu_regs(sim, v);
        if (r)
            r->gs_base = pcr;
    }
    for (uint32_t v = 0; st == HVI_OK && v < hvi_sim_vcpu_count(sim); v++) {
        st = hvi_sim_set_paging(sim, v, HVI_PAGING_4LVL, w->cr3);
        if (st == HVI_OK)
            st = hvi_sim_set_msr(sim, v, HVI_MSR_LSTAR,
                                 (cfg->flags & HVI_SIM_WIN_NO_LSTAR) ? 0 : w->lstar);
        hvi_regs *r = hvi_sim_vcpu_regs(sim, v);
        if (r) {
            r->idtr_base = IDT_VA;
            r->idtr_limit = 0xfff;
            r->rip = w->lstar;
            r->gpr[HVI_RSP] = w->stack_top;
            r->seg[HVI_CS].selector = 0x10;
        }
    }
    return st;
}

hvi_status hvi_sim_win_build(hvi_sim *sim, const hvi_cami *cami, const hvi_sim_win_config *cfg,
                             hvi_sim_win *out)
{
    if (!sim || !cami || !cfg || !out || cfg->processes > HVI_SIM_WIN_MAX ||
        cfg->drivers > HVI_SIM_WIN_MAX)
        return HVI_E_INVAL;
    const hvi_cami_win_entry *ent = NULL;
    hvi_status st = hvi_cami_win_select(cami, cfg->build, cfg->kpti, true, &ent);
    if (st != HVI_OK)
        return st;
    memset(out, 0, sizeof(*out));
    out->pool_next = POOL_VA;
    if ((st = offsets(ent, out)) != HVI_OK ||
        (st = hvi_sim_pt_new(sim, HVI_PAGING_4LVL, &out->cr3)) != HVI_OK)
        return st;
    static uint8_t buf[0x3000]; /* not thread-safe, as the simulator */
    if ((st = build_image(sim, ent, cfg, out, buf)) != HVI_OK ||
        (st = build_lists(sim, cfg, out)) != HVI_OK || (st = build_data(sim, cfg, out)) != HVI_OK)
        return st;
    /* build_data wrote the .data page after the list heads were linked: link again */
    uint64_t nodes[HVI_SIM_WIN_MAX + 2];
    for (uint32_t i = 0; i < out->nproc; i++)
        nodes[i] = out->eprocess[i] + out->off_list;
    if ((st = link_list(sim, out, out->ps_active_head, nodes, out->nproc)) != HVI_OK ||
        (st = link_list(sim, out, out->ps_loaded_list, out->ldr, out->ndrv)) != HVI_OK)
        return st;
    return build_cpu(sim, cfg, out);
}

hvi_status hvi_sim_win_pool(hvi_sim *sim, hvi_sim_win *w, uint32_t pages, uint64_t *va)
{
    if (!sim || !w || !va || !pages || pages > 4096)
        return HVI_E_INVAL;
    return pool_alloc(sim, w, pages, va);
}

hvi_status hvi_sim_win_set_current(hvi_sim *sim, const hvi_sim_win *w, uint32_t vcpu,
                                   uint64_t ethread)
{
    if (!sim || !w || vcpu >= HVI_SIM_WIN_VCPUS || !w->kpcr[vcpu])
        return HVI_E_INVAL;
    return hvi_sim_win_poke(sim, w, w->kpcr[vcpu] + w->off_pcr_thread, &ethread, 8);
}

hvi_status hvi_sim_win_call(hvi_sim *sim, hvi_sim_win *w, uint64_t fn, const uint64_t *args,
                            uint32_t nargs, hvi_event_reply *reply)
{
    if (!sim || !w || (nargs && !args) || nargs > 12)
        return HVI_E_INVAL;
    hvi_regs *r = hvi_sim_vcpu_regs(sim, 0);
    if (!r)
        return HVI_E_INVAL;
    static const int gpr[4] = {HVI_RCX, HVI_RDX, HVI_R8, HVI_R9};
    uint64_t rsp = (w->stack_top - 8 * 16) & ~0xfull, slots[16];
    memset(slots, 0, sizeof(slots));
    slots[0] = w->return_address;
    for (uint32_t i = 0; i < nargs; i++) {
        if (i < 4)
            r->gpr[gpr[i]] = args[i];
        else
            slots[i + 1] = args[i];
    }
    rsp -= 8; /* at entry RSP is 8 off 16-byte alignment (the call pushed the return address) */
    hvi_status st = hvi_sim_win_poke(sim, w, rsp, slots, sizeof(slots));
    if (st != HVI_OK)
        return st;
    r->gpr[HVI_RSP] = rsp;
    return hvi_sim_guest_exec(sim, 0, fn, reply);
}
