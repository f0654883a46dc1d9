/* guest/windows — a process's VA space: the VAD tree under EPROCESS.VadRoot (MMVAD_SHORT nodes,
 * layout from the CAMI VadShort/VadFlags groups of the selected entry).
 *
 * The tree is hostile memory. It is walked in order, top-down, with the address interval each
 * subtree may occupy: a node must lie inside the interval its ancestors leave it, so a node
 * reached twice (a cycle, or two parents sharing a child) breaks the order at once and stops the
 * walk with HVI_E_FORMAT. Depth (64) and node count (65536) are bounded as well. */
#include <string.h>

#include "core/engine.h"
#include "guest/windows/win.h"

static uint32_t kmf(const hvi_cami_win_entry *c, unsigned g, unsigned f, bool *ok)
{
    uint32_t v = 0;
    if (hvi_cami_win_km_field(c, g, f, &v) != HVI_OK)
        *ok = false;
    return v;
}

/* Thread, Pcr and VAD offsets. A group the entry lacks leaves its key offsets 0, and the walks
 * that need it answer HVI_E_UNSUPPORTED. Before build 9600 (Windows 8.1) EPROCESS.VadRoot is an
 * MM_AVL_TABLE whose BalancedRoot sentinel keeps the real root in its RightChild; from 9600 on it
 * is an RTL_AVL_TREE, one pointer to the root. */
void win_load_va_offsets(struct win_state *w)
{
    const hvi_cami_win_entry *c = w->cami;
    struct win_offsets *o = &w->off;
    bool ok = true;
    o->p_vadroot = kmf(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_VADROOT, &ok);
    o->p_threads = kmf(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_THREADLISTHEAD, &ok);
    o->t_process = kmf(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_PROCESS, &ok);
    o->t_list = kmf(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_THREADLISTENTRY, &ok);
    o->t_teb = kmf(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_TEB, &ok);
    o->t_id = kmf(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_ID, &ok);
    o->t_start = kmf(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_WIN32STARTADDRESS, &ok);
    o->t_state = kmf(c, HVI_WIN_KM_THREAD, HVI_WIN_KM_THREAD_STATE, &ok);
    o->pcr_thread = kmf(c, HVI_WIN_KM_PCR, HVI_WIN_KM_PCR_CURRENTTHREAD, &ok);
    o->pcr_prcb = kmf(c, HVI_WIN_KM_PCR, HVI_WIN_KM_PCR_PRCB, &ok);
    ok = true;
    o->v_left = kmf(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_LEFT, &ok);
    o->v_right = kmf(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_RIGHT, &ok);
    o->v_start = kmf(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_STARTINGVPN, &ok);
    o->v_start_hi = kmf(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_STARTINGVPNHIGH, &ok);
    o->v_end = kmf(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_ENDINGVPN, &ok);
    o->v_end_hi = kmf(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_ENDINGVPNHIGH, &ok);
    o->v_flags = kmf(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_FLAGS, &ok);
    o->v_flags_size = kmf(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_FLAGSSIZE, &ok);
    o->v_vpn_size = kmf(c, HVI_WIN_KM_VADSHORT, HVI_WIN_KM_VADSHORT_VPNSIZE, &ok);
    o->vf_type_shift = kmf(c, HVI_WIN_KM_VADFLAGS, HVI_WIN_KM_VADFLAGS_TYPESHIFT, &ok);
    o->vf_type_mask = kmf(c, HVI_WIN_KM_VADFLAGS, HVI_WIN_KM_VADFLAGS_TYPEMASK, &ok);
    o->vf_prot_shift = kmf(c, HVI_WIN_KM_VADFLAGS, HVI_WIN_KM_VADFLAGS_PROTECTIONSHIFT, &ok);
    o->vf_prot_mask = kmf(c, HVI_WIN_KM_VADFLAGS, HVI_WIN_KM_VADFLAGS_PROTECTIONMASK, &ok);
    o->vf_nochange = kmf(c, HVI_WIN_KM_VADFLAGS, HVI_WIN_KM_VADFLAGS_NOCHANGEBIT, &ok);
    bool sizes = (o->v_vpn_size == 4 || o->v_vpn_size == 8) &&
                 (o->v_flags_size == 4 || o->v_flags_size == 8);
    if (!ok || !sizes || o->v_left == o->v_right || o->vf_type_shift > 63 ||
        o->vf_prot_shift > 63 || o->vf_nochange > 63)
        o->p_vadroot = 0; /* no usable VAD layout */
    o->vad_avl_table = w->build < 9600;
    ok = true;
    o->v_subsection = kmf(c, HVI_WIN_KM_VADLONG, HVI_WIN_KM_VADLONG_SUBSECTION, &ok);
    o->sub_ctlarea = kmf(c, HVI_WIN_KM_UNGROUPED, HVI_WIN_KM_UNGROUPED_SUBSECTIONCTLAREA, &ok);
    o->ctl_file = kmf(c, HVI_WIN_KM_UNGROUPED, HVI_WIN_KM_UNGROUPED_CTLAREAFILE, &ok);
    o->fo_name_len = kmf(c, HVI_WIN_KM_FILEOBJECT, HVI_WIN_KM_FILEOBJECT_NAMELENGTH, &ok);
    o->fo_name_buf = kmf(c, HVI_WIN_KM_FILEOBJECT, HVI_WIN_KM_FILEOBJECT_NAMEBUFFER, &ok);
    if (!ok || !o->ctl_file || !o->fo_name_buf)
        o->v_subsection = 0;
}

#define VAD_TYPE_IMAGE 2u /* MI_VAD_TYPE VadImageMap */

/* The file an image VAD maps: MMVAD.Subsection -> SUBSECTION.ControlArea -> CONTROL_AREA
 * .FilePointer, an EX_FAST_REF whose low 4 bits are a reference count on x64 -> FILE_OBJECT
 * .FileName. Each pointer must be a kernel pointer; anything else leaves the name empty. */
static void vad_file(hvi_engine *e, const struct win_offsets *o, hvi_windows_vad *v)
{
    uint64_t sub = 0, ctl = 0, fo = 0, buf = 0;
    uint16_t len = 0;
    if (!o->v_subsection || v->type != VAD_TYPE_IMAGE ||
        win_read_u64(e, v->node + o->v_subsection, &sub) != HVI_OK || !win_is_kptr(sub) ||
        win_read_u64(e, sub + o->sub_ctlarea, &ctl) != HVI_OK || !win_is_kptr(ctl) ||
        win_read_u64(e, ctl + o->ctl_file, &fo) != HVI_OK || !win_is_kptr(fo & ~0xfull) ||
        hvi_gva_read(e, 0, (fo & ~0xfull) + o->fo_name_len, &len, 2) != HVI_OK ||
        win_read_u64(e, (fo & ~0xfull) + o->fo_name_buf, &buf) != HVI_OK || (len & 1) || !len ||
        !win_is_kptr(buf))
        return;
    size_t chars = len / 2u, got = 0;
    if (chars > 255) {
        chars = 255;
        v->file_truncated = true;
    }
    hvi_status st = hvi_gva_read_wstr(e, 0, buf, chars, v->file, sizeof(v->file), &got);
    if (st != HVI_OK && st != HVI_E_LIMIT)
        v->file[0] = 0;
    else if (got + 1 >= sizeof(v->file))
        v->file_truncated = true;
}

struct find_pid {
    uint32_t pid;
    hvi_windows_process p;
    bool hit;
};

static bool find_pid_cb(const hvi_windows_process *p, void *ctx)
{
    struct find_pid *f = ctx;
    if (p->pid != f->pid)
        return true;
    f->p = *p;
    f->hit = true;
    return false;
}

hvi_status win_find_pid(hvi_engine *e, uint32_t pid, hvi_windows_process *out)
{
    struct find_pid f = {.pid = pid};
    hvi_status st = win_walk_processes(e, find_pid_cb, &f);
    if (st != HVI_OK)
        return st;
    if (!f.hit)
        return hvi_fail(e, HVI_E_NOT_FOUND, "no process with pid %u", pid);
    *out = f.p;
    return HVI_OK;
}

struct vad_walk {
    hvi_engine *e;
    const struct win_offsets *o;
    win_vad_cb cb;
    void *ctx;
    uint32_t nodes;
    bool stop;
};

static uint64_t le(const uint8_t *b, uint32_t off, uint32_t size)
{
    uint64_t v = 0;
    memcpy(&v, b + off, size); /* little-endian guest, little-endian host */
    return v;
}

/* One MMVAD_SHORT: pointers, VPNs (plus the high bytes where the build has them), flags. */
static hvi_status read_vad(struct vad_walk *vw, uint64_t node, uint32_t depth, hvi_windows_vad *v,
                           uint64_t *left, uint64_t *right)
{
    const struct win_offsets *o = vw->o;
    uint8_t b[160];
    uint32_t need = 0, ends[] = {o->v_left + 8,
                                 o->v_right + 8,
                                 o->v_start + o->v_vpn_size,
                                 o->v_end + o->v_vpn_size,
                                 o->v_start_hi + 1,
                                 o->v_end_hi + 1,
                                 o->v_flags + o->v_flags_size};
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
        need = ends[i] > need ? ends[i] : need;
    if (need > sizeof(b))
        return HVI_E_UNSUPPORTED;
    hvi_status st = hvi_gva_read(vw->e, 0, node, b, need);
    if (st != HVI_OK)
        return st;
    memset(v, 0, sizeof(*v));
    uint64_t s = le(b, o->v_start, o->v_vpn_size), en = le(b, o->v_end, o->v_vpn_size);
    if (o->v_vpn_size == 4 && o->v_start_hi)
        s |= (uint64_t)b[o->v_start_hi] << 32;
    if (o->v_vpn_size == 4 && o->v_end_hi)
        en |= (uint64_t)b[o->v_end_hi] << 32;
    v->node = node;
    v->start = s; /* VPNs for now; the caller shifts them once the order is checked */
    v->end = en;
    v->flags = le(b, o->v_flags, o->v_flags_size);
    v->type = (uint32_t)((v->flags >> o->vf_type_shift) & o->vf_type_mask);
    v->protection = (uint32_t)((v->flags >> o->vf_prot_shift) & o->vf_prot_mask);
    v->no_change = ((v->flags >> o->vf_nochange) & 1) != 0;
    v->depth = depth;
    *left = le(b, o->v_left, 8);
    *right = le(b, o->v_right, 8);
    return HVI_OK;
}

static bool bad_child(uint64_t p)
{
    return p && (!win_is_kptr(p) || (p & 7));
}

/* In-order walk of the subtree at node, whose VPNs must lie in [lo, hi]. */
static hvi_status walk(struct vad_walk *vw, uint64_t node, uint64_t lo, uint64_t hi, uint32_t depth)
{
    hvi_engine *e = vw->e;
    if (depth >= WIN_MAX_VAD_DEPTH)
        return hvi_fail(e, HVI_E_LIMIT, "VAD tree deeper than %u at 0x%llx", WIN_MAX_VAD_DEPTH,
                        (unsigned long long)node);
    if (++vw->nodes > WIN_MAX_VADS)
        return hvi_fail(e, HVI_E_LIMIT, "VAD tree has more than %u nodes", WIN_MAX_VADS);
    hvi_windows_vad v;
    uint64_t l = 0, r = 0;
    hvi_status st = read_vad(vw, node, depth, &v, &l, &r);
    if (st != HVI_OK)
        return hvi_fail(e, st, "VAD at 0x%llx unreadable (%s)", (unsigned long long)node,
                        hvi_strstatus(st));
    if (v.start > v.end || v.start < lo || v.end > hi || v.end > (UINT64_MAX >> 12))
        return hvi_fail(e, HVI_E_FORMAT,
                        "VAD at 0x%llx [vpn 0x%llx-0x%llx] out of order (allowed 0x%llx-0x%llx): "
                        "a cycle, a shared node or a corrupted tree",
                        (unsigned long long)node, (unsigned long long)v.start,
                        (unsigned long long)v.end, (unsigned long long)lo, (unsigned long long)hi);
    if (bad_child(l) || bad_child(r) || (l && v.start == 0))
        return hvi_fail(e, HVI_E_FORMAT, "VAD at 0x%llx has a bad child (0x%llx, 0x%llx)",
                        (unsigned long long)node, (unsigned long long)l, (unsigned long long)r);
    if (l && (st = walk(vw, l, lo, v.start - 1, depth + 1)) != HVI_OK)
        return st;
    if (vw->stop)
        return HVI_OK;
    uint64_t s = v.start, en = v.end;
    v.start = s << 12;
    v.end = (en << 12) | 0xfff;
    vad_file(e, vw->o, &v);
    if (!vw->cb(&v, vw->ctx)) {
        vw->stop = true;
        return HVI_OK;
    }
    if (r && en == (UINT64_MAX >> 12))
        return hvi_fail(e, HVI_E_FORMAT, "VAD at 0x%llx ends the VA space but has a right child",
                        (unsigned long long)node);
    return r ? walk(vw, r, en + 1, hi, depth + 1) : HVI_OK;
}

hvi_status win_walk_vads(hvi_engine *e, const hvi_windows_process *p, win_vad_cb cb, void *ctx)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    const struct win_offsets *o = &w->off;
    if (!o->p_vadroot)
        return hvi_fail(e, HVI_E_UNSUPPORTED, "the CAMI entry of build %u has no VAD layout",
                        w->build);
    uint64_t at = p->eprocess + o->p_vadroot + (o->vad_avl_table ? o->v_right : 0), root = 0;
    hvi_status st = win_read_u64(e, at, &root);
    if (st != HVI_OK)
        return hvi_fail(e, st, "VadRoot of pid %u at 0x%llx unreadable", p->pid,
                        (unsigned long long)at);
    if (!root)
        return HVI_OK;
    if (bad_child(root))
        return hvi_fail(e, HVI_E_FORMAT, "VadRoot of pid %u is not a kernel pointer (0x%llx)",
                        p->pid, (unsigned long long)root);
    struct vad_walk vw = {.e = e, .o = o, .cb = cb, .ctx = ctx};
    return walk(&vw, root, 0, UINT64_MAX >> 12, 0);
}

const char *hvi_windows_protection_name(uint32_t protection)
{
    static const char *const n[8] = {"NOACCESS",          "READONLY",         "EXECUTE",
                                     "EXECUTE_READ",      "READWRITE",        "WRITECOPY",
                                     "EXECUTE_READWRITE", "EXECUTE_WRITECOPY"};
    return n[protection & 7];
}

const char *hvi_windows_vad_type_name(uint32_t type)
{
    static const char *const n[8] = {
        "private",     "physical",    "image",           "awe",
        "write-watch", "large-pages", "rotate-physical", "large-page-section"};
    return type < 8 ? n[type] : "?";
}
