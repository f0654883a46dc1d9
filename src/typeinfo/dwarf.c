/* hvi typeinfo — DWARF through libdw: one pass over the compile units indexes the top-level
 * struct/union/enum/subprogram DIEs by name; lookups then read members of the first complete
 * definition. */
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <gelf.h>
#include <libelf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "typeinfo/typeinfo.h"

#define DW_MAX_DEPTH 8
#define DW_MAX_ENTRIES (1u << 24)
#define DW_MAX_VISITS (1u << 20) /* members looked at per lookup */

struct dw_entry {
    const char *name; /* NULL for an anonymous enum */
    Dwarf_Off off;
    int tag;
};

struct dw_impl {
    int fd;
    Dwarf *dbg;
    struct dw_entry *e;
    size_t n, cap;
};

static hvi_status dw_add(struct dw_impl *d, const char *name, Dwarf_Off off, int tag)
{
    if (d->n == d->cap) {
        if (d->cap >= DW_MAX_ENTRIES)
            return HVI_E_LIMIT;
        size_t nc = d->cap ? d->cap * 2 : 1024;
        struct dw_entry *ne = realloc(d->e, nc * sizeof(*ne));
        if (!ne)
            return HVI_E_NOMEM;
        d->e = ne;
        d->cap = nc;
    }
    d->e[d->n++] = (struct dw_entry){name, off, tag};
    return HVI_OK;
}

static hvi_status dw_index_cu(struct dw_impl *d, Dwarf_Die *cu)
{
    Dwarf_Die c;
    if (dwarf_child(cu, &c) != 0)
        return HVI_OK;
    do {
        int tag = dwarf_tag(&c);
        if (tag != DW_TAG_structure_type && tag != DW_TAG_union_type &&
            tag != DW_TAG_enumeration_type && tag != DW_TAG_subprogram)
            continue;
        if (dwarf_hasattr(&c, DW_AT_declaration))
            continue;
        const char *name = dwarf_diename(&c);
        if (!name && tag != DW_TAG_enumeration_type)
            continue;
        hvi_status st = dw_add(d, name, dwarf_dieoffset(&c), tag);
        if (st != HVI_OK)
            return st;
    } while (dwarf_siblingof(&c, &c) == 0);
    return HVI_OK;
}

static hvi_status dw_find(struct dw_impl *d, const char *name, bool aggregate, Dwarf_Die *out)
{
    for (size_t i = 0; i < d->n; i++) {
        bool agg = d->e[i].tag == DW_TAG_structure_type || d->e[i].tag == DW_TAG_union_type;
        if (agg != aggregate || !d->e[i].name || strcmp(d->e[i].name, name))
            continue;
        if (!dwarf_offdie(d->dbg, d->e[i].off, out))
            return HVI_E_FORMAT;
        return HVI_OK;
    }
    return HVI_E_NOT_FOUND;
}

static hvi_status d_struct_size(void *impl, const char *name, uint32_t *size)
{
    Dwarf_Die die;
    hvi_status st = dw_find(impl, name, true, &die);
    if (st != HVI_OK)
        return st;
    Dwarf_Word sz;
    if (dwarf_aggregate_size(&die, &sz) != 0 || sz > UINT32_MAX)
        return HVI_E_FORMAT;
    *size = (uint32_t)sz;
    return HVI_OK;
}

struct dhit {
    uint64_t bit_off;
    uint32_t bit_size;
    Dwarf_Die type;
    bool has_type;
};

static hvi_status member_bits(Dwarf_Die *m, uint64_t *bits, uint32_t *bit_size)
{
    Dwarf_Attribute a;
    Dwarf_Word v = 0;
    int bs = dwarf_bitsize(m);
    *bit_size = bs > 0 ? (uint32_t)bs : 0;
    if (dwarf_attr(m, DW_AT_data_bit_offset, &a)) {
        if (dwarf_formudata(&a, &v) != 0)
            return HVI_E_FORMAT;
        *bits = v;
        return HVI_OK;
    }
    if (dwarf_attr(m, DW_AT_data_member_location, &a) && dwarf_formudata(&a, &v) != 0)
        return HVI_E_FORMAT; /* location expressions are not used for C structs */
    if (v > UINT64_MAX / 8)
        return HVI_E_FORMAT;
    *bits = v * 8;
    int bo = dwarf_bitoffset(m), by = dwarf_bytesize(m);
    if (bs > 0 && bo >= 0 && by > 0 && bo + bs <= by * 8) /* DWARF 2/3 big-endian numbering */
        *bits += (uint64_t)(by * 8 - bo - bs);
    return HVI_OK;
}

static bool peeled_type(Dwarf_Die *die, Dwarf_Die *out)
{
    Dwarf_Attribute a;
    Dwarf_Die t;
    if (!dwarf_attr_integrate(die, DW_AT_type, &a) || !dwarf_formref_die(&a, &t))
        return false;
    return dwarf_peel_type(&t, out) == 0;
}

static hvi_status dfind_in(Dwarf_Die *agg, const char *name, uint64_t base, int depth,
                           struct dhit *h, uint32_t *visits)
{
    if (depth > DW_MAX_DEPTH)
        return HVI_E_LIMIT;
    int tag = dwarf_tag(agg);
    if (tag != DW_TAG_structure_type && tag != DW_TAG_union_type)
        return HVI_E_NOT_FOUND;
    Dwarf_Die m;
    if (dwarf_child(agg, &m) != 0)
        return HVI_E_NOT_FOUND;
    do {
        if (++*visits > DW_MAX_VISITS)
            return HVI_E_LIMIT;
        if (dwarf_tag(&m) != DW_TAG_member)
            continue;
        uint64_t bits;
        uint32_t bsize;
        if (member_bits(&m, &bits, &bsize) != HVI_OK)
            return HVI_E_FORMAT;
        const char *mn = dwarf_diename(&m);
        if (mn) {
            if (strcmp(mn, name))
                continue;
            h->bit_off = base + bits;
            h->bit_size = bsize;
            h->has_type = peeled_type(&m, &h->type);
            return HVI_OK;
        }
        Dwarf_Die t;
        if (peeled_type(&m, &t)) {
            hvi_status st = dfind_in(&t, name, base + bits, depth + 1, h, visits);
            if (st == HVI_OK || st == HVI_E_LIMIT)
                return st;
        }
    } while (dwarf_siblingof(&m, &m) == 0);
    return HVI_E_NOT_FOUND;
}

static hvi_status d_member(void *impl, const char *name, const char *path, uint64_t *bit_off,
                           uint32_t *bit_size, uint32_t *byte_size)
{
    struct dhit h;
    memset(&h, 0, sizeof(h));
    hvi_status st = dw_find(impl, name, true, &h.type);
    if (st != HVI_OK)
        return st;
    h.has_type = true;
    uint32_t visits = 0;
    char comp[64];
    const char *p = path;
    for (int depth = 0; *p; depth++) {
        size_t n = strcspn(p, ".");
        if (n == 0 || n >= sizeof(comp) || depth >= DW_MAX_DEPTH)
            return HVI_E_INVAL;
        memcpy(comp, p, n);
        comp[n] = 0;
        p += n + (p[n] == '.');
        if (!h.has_type)
            return HVI_E_NOT_FOUND;
        Dwarf_Die agg = h.type;
        st = dfind_in(&agg, comp, h.bit_off, 0, &h, &visits);
        if (st != HVI_OK)
            return st;
    }
    *bit_off = h.bit_off;
    *bit_size = h.bit_size;
    if (byte_size) {
        Dwarf_Word sz = 0;
        *byte_size = h.has_type && dwarf_aggregate_size(&h.type, &sz) == 0 && sz <= UINT32_MAX
                         ? (uint32_t)sz
                         : 0;
    }
    return HVI_OK;
}

static hvi_status d_enum_value(void *impl, const char *enumerator, int64_t *val)
{
    struct dw_impl *d = impl;
    for (size_t i = 0; i < d->n; i++) {
        Dwarf_Die t, c;
        if (d->e[i].tag != DW_TAG_enumeration_type || !dwarf_offdie(d->dbg, d->e[i].off, &t) ||
            dwarf_child(&t, &c) != 0)
            continue;
        do {
            const char *n = dwarf_diename(&c);
            Dwarf_Attribute a;
            Dwarf_Sword sv;
            if (dwarf_tag(&c) != DW_TAG_enumerator || !n || strcmp(n, enumerator))
                continue;
            if (!dwarf_attr(&c, DW_AT_const_value, &a) || dwarf_formsdata(&a, &sv) != 0)
                return HVI_E_FORMAT;
            *val = sv;
            return HVI_OK;
        } while (dwarf_siblingof(&c, &c) == 0);
    }
    return HVI_E_NOT_FOUND;
}

static hvi_status d_func_exists(void *impl, const char *name)
{
    struct dw_impl *d = impl;
    for (size_t i = 0; i < d->n; i++)
        if (d->e[i].tag == DW_TAG_subprogram && d->e[i].name && !strcmp(d->e[i].name, name))
            return HVI_OK;
    return HVI_E_NOT_FOUND;
}

static hvi_status d_func_param(void *impl, const char *func, const char *param)
{
    struct dw_impl *d = impl;
    for (size_t i = 0; i < d->n; i++) {
        Dwarf_Die f, c;
        if (d->e[i].tag != DW_TAG_subprogram || !d->e[i].name || strcmp(d->e[i].name, func) ||
            !dwarf_offdie(d->dbg, d->e[i].off, &f))
            continue;
        if (dwarf_child(&f, &c) != 0)
            continue; /* this definition lists no parameters; try another CU's */
        do {
            const char *n = dwarf_diename(&c);
            if (dwarf_tag(&c) == DW_TAG_formal_parameter && n && !strcmp(n, param))
                return HVI_OK;
        } while (dwarf_siblingof(&c, &c) == 0);
    }
    return HVI_E_NOT_FOUND;
}

static void d_destroy(void *impl)
{
    struct dw_impl *d = impl;
    if (!d)
        return;
    if (d->dbg)
        dwarf_end(d->dbg);
    if (d->fd >= 0)
        close(d->fd);
    free(d->e);
    free(d);
}

static const struct hvi_ti_ops dwarf_ops = {"dwarf", d_struct_size, d_member, d_enum_value,
                                            d_func_exists, d_func_param, d_destroy};

static void dw_banner(Dwarf *dbg, char *out, size_t out_len)
{
    Elf *elf = dwarf_getelf(dbg);
    size_t shstrndx;
    if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0)
        return;
    for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        const char *name;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS ||
            !(name = elf_strptr(elf, shstrndx, sh.sh_name)) || strcmp(name, ".rodata"))
            continue;
        Elf_Data *data = elf_getdata(scn, NULL);
        if (data && data->d_buf &&
            hvi_typeinfo_find_banner(data->d_buf, data->d_size, out, out_len) != HVI_OK)
            out[0] = 0;
        return;
    }
}

static hvi_status dw_index(struct dw_impl *d)
{
    Dwarf_Off off = 0, next;
    size_t hsize;
    while (dwarf_nextcu(d->dbg, off, &next, &hsize, NULL, NULL, NULL) == 0) {
        Dwarf_Die cu;
        if (dwarf_offdie(d->dbg, off + hsize, &cu)) {
            hvi_status st = dw_index_cu(d, &cu);
            if (st != HVI_OK)
                return st;
        }
        if (next <= off)
            return HVI_E_FORMAT;
        off = next;
    }
    return d->n ? HVI_OK : HVI_E_NOT_FOUND;
}

hvi_status hvi_typeinfo_open_dwarf(const char *path, struct hvi_typeinfo **out, char *err,
                                   size_t err_len)
{
    if (!path || !out)
        return HVI_E_INVAL;
    struct dw_impl *d = calloc(1, sizeof(*d));
    if (!d)
        return HVI_E_NOMEM;
    d->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (d->fd < 0) {
        hvi_ti_err(err, err_len, "%s: %s", path, strerror(errno));
        d_destroy(d);
        return HVI_E_IO;
    }
    d->dbg = dwarf_begin(d->fd, DWARF_C_READ);
    if (!d->dbg) {
        hvi_ti_err(err, err_len, "%s: no usable DWARF (%s)", path, dwarf_errmsg(-1));
        d_destroy(d);
        return HVI_E_FORMAT;
    }
    hvi_status st = dw_index(d);
    if (st != HVI_OK) {
        hvi_ti_err(err, err_len, "%s: DWARF holds no struct/enum/function definitions (%s)", path,
                   hvi_strstatus(st));
        d_destroy(d);
        return st == HVI_E_NOT_FOUND ? HVI_E_FORMAT : st;
    }
    /* The banner lives in .rodata of the same ELF (read through libelf, not the whole file). */
    char banner[256] = "";
    dw_banner(d->dbg, banner, sizeof(banner));
    st = hvi_ti_new(&dwarf_ops, d, banner, out);
    if (st != HVI_OK)
        d_destroy(d);
    return st;
}
