/* hvi guest/linux — a process's VMAs through the 6.x maple tree (mm_struct.mm_mt).
 *
 * The root pointer has bit 1 set and bit 0 clear ((p & 3) == 2, p > 4096), child pointers in
 * internal nodes have both clear (checked on the real 6.1 guest); the node
 * type is (p >> 3) & 0xf (1 maple_leaf_64, 2 maple_range_64, 3 maple_arange_64) and the node is
 * at p & ~0xff. range/leaf nodes hold 15 pivots then 16 slots, arange nodes 9 pivots then 10
 * slots (then gaps); counts and offsets come from lix_offsets (CAMI). Slot i covers [min_i, pivot_i] with min_0 = the node's min and
 * min_{i+1} = pivot_i + 1; the last slot, and a slot whose pivot is zero (after slot 0), ends at
 * the node's max. Leaves hold vm_area_struct pointers, which must lie inside their slot's range. */
#include <string.h>

#include "guest/linux/lix.h"

#define MT_LEAF64 1u
#define MT_RANGE64 2u
#define MT_ARANGE64 3u
#define MT_NODE_MAX 256u

struct vwalk {
    const struct lix_kernel *k;
    lix_vma_cb cb;
    void *ctx;
    uint32_t vmas, nodes;
    bool stop;
};

static bool is_node(uint64_t p) { return (p & 3) == 2 && p > 4096; }
/* A child slot of an internal node holds the plain encoded node (bits 0-1 clear, bit 2 the
 * "NULL below" hint); only ma_root carries the xa_mk_node tag 2. Both are accepted below the
 * root (tests build children with the tag). */
static bool is_child(uint64_t p) { return ((p & 3) == 2 || (p & 3) == 0) && p > 4096; }

static hvi_status leaf_entry(struct vwalk *w, uint64_t vma, uint64_t lo, uint64_t hi)
{
    const struct lix_offsets *o = &w->k->off;
    struct lix_vma v = {.addr = vma};
    hvi_status st;
    if (!lix_is_kptr(vma))
        return HVI_E_FORMAT;
    if ((st = lix_read_u64(w->k, vma + o->vma_start, &v.start)) != HVI_OK ||
        (st = lix_read_u64(w->k, vma + o->vma_end, &v.end)) != HVI_OK ||
        (st = lix_read_u64(w->k, vma + o->vma_flags, &v.flags)) != HVI_OK ||
        (st = lix_read_u64(w->k, vma + o->vma_pgoff, &v.pgoff)) != HVI_OK ||
        (st = lix_read_u64(w->k, vma + o->vma_file, &v.file)) != HVI_OK)
        return st;
    if (v.end <= v.start || v.start < lo || v.end - 1 > hi)
        return HVI_E_FORMAT;
    if (++w->vmas > LIX_MAX_VMAS)
        return HVI_E_LIMIT;
    if (!w->cb(&v, w->ctx))
        w->stop = true;
    return HVI_OK;
}

static hvi_status walk_node(struct vwalk *w, uint64_t enc, uint64_t min, uint64_t max,
                            uint32_t depth)
{
    if (depth >= LIX_MAX_MAPLE_DEPTH)
        return HVI_E_LIMIT;
    if (++w->nodes > LIX_MAX_VMAS)
        return HVI_E_LIMIT;
    uint32_t type = (uint32_t)(enc >> 3) & 0xf;
    uint64_t node = enc & ~(uint64_t)0xff;
    const struct lix_offsets *o = &w->k->off;
    bool ar = type == MT_ARANGE64;
    uint32_t slots = ar ? o->maple_arange64_slots : o->maple_range64_slots;
    uint32_t pv = ar ? o->maple_ar64_pivot : o->maple_r64_pivot;
    uint32_t sl = ar ? o->maple_ar64_slot : o->maple_r64_slot;
    if (!(depth ? is_child(enc) : is_node(enc)) || !lix_is_kptr(node) || type < MT_LEAF64 ||
        type > MT_ARANGE64)
        return HVI_E_FORMAT;
    /* lix_offsets_fill() checked these; a hand-made offsets struct is checked here */
    if (slots < 2 || o->maple_node_size > MT_NODE_MAX || ((pv | sl) & 7) ||
        pv + 8u * (slots - 1u) > o->maple_node_size || sl + 8u * slots > o->maple_node_size)
        return HVI_E_FORMAT;
    uint64_t n[MT_NODE_MAX / 8];
    hvi_status st = lix_read(w->k, node, n, o->maple_node_size);
    if (st != HVI_OK)
        return st;
    const uint64_t *piv = n + pv / 8, *slot = n + sl / 8;
    uint64_t lo = min;
    for (uint32_t i = 0; i < slots && !w->stop; i++) {
        uint64_t hi = i < slots - 1 ? piv[i] : max;
        if (i > 0 && hi == 0)
            hi = max; /* a zero pivot after slot 0: this slot runs to the node's max */
        if (hi < lo || hi > max)
            return HVI_E_FORMAT;
        if (slot[i]) {
            st = type == MT_LEAF64 ? leaf_entry(w, slot[i], lo, hi)
                                   : walk_node(w, slot[i], lo, hi, depth + 1);
            if (st != HVI_OK)
                return st;
        } else if (type != MT_LEAF64) {
            return HVI_E_FORMAT;
        }
        if (hi == max)
            break;
        lo = hi + 1;
    }
    return HVI_OK;
}

hvi_status lix_vma_walk(const struct lix_kernel *k, uint64_t mm, lix_vma_cb cb, void *ctx)
{
    if (!k || !cb || !lix_is_kptr(mm))
        return HVI_E_INVAL;
    if (!k->have_offsets)
        return HVI_E_STATE;
    uint64_t root = 0;
    hvi_status st = lix_read_u64(k, mm + k->off.mm_mt + k->off.mt_root, &root);
    if (st != HVI_OK)
        return st;
    if (root == 0)
        return HVI_OK;
    if (!is_node(root))
        return HVI_E_FORMAT;
    struct vwalk w = {.k = k, .cb = cb, .ctx = ctx};
    return walk_node(&w, root, 0, UINT64_MAX, 0);
}
