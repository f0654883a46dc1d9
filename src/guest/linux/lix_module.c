/* hvi guest/linux — loaded modules from the `modules` list head (6.1: core_layout holds the
 * core base and sizes). Checked links, visited set, LIX_MAX_MODULES bound. */
#include <string.h>

#include "guest/linux/lix.h"

static hvi_status module_read(const struct lix_kernel *k, uint64_t mod, struct lix_module *m)
{
    const struct lix_offsets *o = &k->off;
    size_t nl = o->mod_name_len < sizeof(m->name) ? o->mod_name_len : sizeof(m->name) - 1;
    uint64_t lay = mod + o->mod_core_layout;
    memset(m, 0, sizeof(*m));
    m->addr = mod;
    hvi_status st;
    if ((st = lix_read(k, mod + o->mod_name, m->name, nl)) != HVI_OK ||
        (st = lix_read_u32(k, mod + o->mod_state, &m->state)) != HVI_OK ||
        (st = lix_read_u64(k, lay + o->layout_base, &m->core_base)) != HVI_OK ||
        (st = lix_read_u32(k, lay + o->layout_size, &m->core_size)) != HVI_OK ||
        (st = lix_read_u32(k, lay + o->layout_text_size, &m->core_text_size)) != HVI_OK ||
        (st = lix_read_u32(k, lay + o->layout_ro_size, &m->core_ro_size)) != HVI_OK)
        return st;
    m->name[nl] = 0;
    if (m->core_base && !lix_is_kptr(m->core_base))
        return HVI_E_FORMAT;
    return HVI_OK;
}

hvi_status lix_module_walk(const struct lix_kernel *k, lix_module_cb cb, void *ctx)
{
    if (!k || !cb)
        return HVI_E_INVAL;
    if (!k->have_offsets || !k->modules)
        return HVI_E_STATE;
    struct lix_seen seen;
    hvi_status st = lix_seen_init(&seen, LIX_MAX_MODULES);
    if (st != HVI_OK)
        return st;
    uint64_t head = k->modules, cur = head;
    st = HVI_E_LIMIT;
    for (uint32_t n = 0; n <= LIX_MAX_MODULES; n++) {
        uint64_t next = 0, back = 0;
        hvi_status s2 = lix_read_u64(k, cur, &next);
        if (s2 == HVI_OK && (!lix_is_kptr(next) || (next & 7)))
            s2 = HVI_E_FORMAT;
        if (s2 == HVI_OK && (s2 = lix_read_u64(k, next + 8, &back)) == HVI_OK && back != cur)
            s2 = HVI_E_FORMAT;
        if (s2 == HVI_OK && next == head) {
            st = HVI_OK;
            break;
        }
        if (s2 == HVI_OK && (s2 = lix_seen_add(&seen, next)) == HVI_E_EXISTS)
            s2 = HVI_E_FORMAT;
        struct lix_module m;
        if (s2 == HVI_OK)
            s2 = module_read(k, next - k->off.mod_list, &m);
        if (s2 != HVI_OK) {
            st = s2;
            break;
        }
        if (!cb(&m, ctx)) {
            st = HVI_OK;
            break;
        }
        cur = next;
    }
    lix_seen_free(&seen);
    return st;
}
