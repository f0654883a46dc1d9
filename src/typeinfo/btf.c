/* hvi typeinfo — BTF through libbpf: raw BTF blobs, ELF .BTF sections, bzImages. */
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "typeinfo/typeinfo.h"

#define TI_MAX_DEPTH 8 /* nesting of anonymous members and path components */
#define TI_MAX_VISITS (1u << 20) /* members looked at per lookup (hostile DAGs of anonymous types) */

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level;
    (void)fmt;
    (void)ap;
    return 0;
}

static hvi_status struct_id(struct btf *btf, const char *name, __s32 *id)
{
    __s32 r = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);
    if (r < 0)
        r = btf__find_by_name_kind(btf, name, BTF_KIND_UNION);
    if (r <= 0)
        return HVI_E_NOT_FOUND;
    *id = r;
    return HVI_OK;
}

static hvi_status b_struct_size(void *impl, const char *name, uint32_t *size)
{
    struct btf *btf = impl;
    __s32 id;
    hvi_status st = struct_id(btf, name, &id);
    if (st != HVI_OK)
        return st;
    const struct btf_type *t = btf__type_by_id(btf, (__u32)id);
    if (!t)
        return HVI_E_FORMAT;
    *size = t->size;
    return HVI_OK;
}

struct hit {
    uint64_t bit_off;
    uint32_t bit_size;
    __u32 type;
};

/* Find `name` among the members of struct/union `id` (through anonymous members). */
static hvi_status find_in(struct btf *btf, __u32 id, const char *name, uint64_t base, int depth,
                          struct hit *h, uint32_t *visits)
{
    if (depth > TI_MAX_DEPTH)
        return HVI_E_LIMIT;
    const struct btf_type *t = btf__type_by_id(btf, id);
    if (!t || !(btf_is_struct(t) || btf_is_union(t)))
        return HVI_E_NOT_FOUND;
    const struct btf_member *m = btf_members(t);
    for (__u16 i = 0; i < btf_vlen(t); i++) {
        if (++*visits > TI_MAX_VISITS)
            return HVI_E_LIMIT;
        const char *mn = btf__name_by_offset(btf, m[i].name_off);
        uint64_t off = base + btf_member_bit_offset(t, i);
        if (mn && *mn) {
            if (strcmp(mn, name))
                continue;
            h->bit_off = off;
            h->bit_size = btf_member_bitfield_size(t, i);
            h->type = m[i].type;
            return HVI_OK;
        }
        __s32 rt = btf__resolve_type(btf, m[i].type);
        if (rt <= 0)
            continue;
        hvi_status st = find_in(btf, (__u32)rt, name, off, depth + 1, h, visits);
        if (st == HVI_OK || st == HVI_E_LIMIT)
            return st;
    }
    return HVI_E_NOT_FOUND;
}

static hvi_status b_member(void *impl, const char *name, const char *path, uint64_t *bit_off,
                           uint32_t *bit_size, uint32_t *byte_size)
{
    struct btf *btf = impl;
    __s32 id;
    hvi_status st = struct_id(btf, name, &id);
    if (st != HVI_OK)
        return st;
    struct hit h = {0, 0, (__u32)id};
    uint64_t base = 0;
    uint32_t visits = 0;
    char comp[64];
    const char *p = path;
    for (int depth = 0; *p; depth++) {
        size_t n = strcspn(p, ".");
        if (n == 0 || n >= sizeof(comp) || depth >= TI_MAX_DEPTH)
            return HVI_E_INVAL;
        memcpy(comp, p, n);
        comp[n] = 0;
        p += n + (p[n] == '.');
        __s32 rt = btf__resolve_type(btf, h.type);
        if (rt <= 0)
            return HVI_E_NOT_FOUND;
        st = find_in(btf, (__u32)rt, comp, base, 0, &h, &visits);
        if (st != HVI_OK)
            return st;
        base = h.bit_off;
    }
    *bit_off = h.bit_off;
    *bit_size = h.bit_size;
    if (byte_size) {
        __s64 sz = btf__resolve_size(btf, h.type);
        *byte_size = sz < 0 || sz > UINT32_MAX ? 0 : (uint32_t)sz;
    }
    return HVI_OK;
}

static hvi_status b_enum_value(void *impl, const char *enumerator, int64_t *val)
{
    struct btf *btf = impl;
    __u32 n = btf__type_cnt(btf);
    for (__u32 id = 1; id < n; id++) {
        const struct btf_type *t = btf__type_by_id(btf, id);
        if (!t || !btf_is_enum(t))
            continue;
        const struct btf_enum *e = btf_enum(t);
        for (__u16 i = 0; i < btf_vlen(t); i++) {
            const char *en = btf__name_by_offset(btf, e[i].name_off);
            if (en && !strcmp(en, enumerator)) {
                *val = e[i].val;
                return HVI_OK;
            }
        }
    }
    return HVI_E_NOT_FOUND;
}

static hvi_status b_func_exists(void *impl, const char *name)
{
    return btf__find_by_name_kind(impl, name, BTF_KIND_FUNC) > 0 ? HVI_OK : HVI_E_NOT_FOUND;
}

static hvi_status b_func_param(void *impl, const char *func, const char *param)
{
    struct btf *btf = impl;
    __s32 id = btf__find_by_name_kind(btf, func, BTF_KIND_FUNC);
    if (id <= 0)
        return HVI_E_NOT_FOUND;
    const struct btf_type *f = btf__type_by_id(btf, (__u32)id);
    const struct btf_type *proto = f ? btf__type_by_id(btf, f->type) : NULL;
    if (!proto || !btf_is_func_proto(proto))
        return HVI_E_FORMAT;
    const struct btf_param *p = btf_params(proto);
    for (__u16 i = 0; i < btf_vlen(proto); i++) {
        const char *n = btf__name_by_offset(btf, p[i].name_off);
        if (n && !strcmp(n, param))
            return HVI_OK;
    }
    return HVI_E_NOT_FOUND;
}

static void b_destroy(void *impl)
{
    btf__free(impl);
}

static const struct hvi_ti_ops btf_ops = {"btf",           b_struct_size, b_member,
                                          b_enum_value,    b_func_exists, b_func_param,
                                          b_destroy};

static hvi_status open_raw(const void *blob, size_t len, const char *banner,
                           struct hvi_typeinfo **out, char *err, size_t err_len)
{
    if (len < 24 || len > UINT32_MAX) {
        hvi_ti_err(err, err_len, "BTF: blob of %zu bytes is too short or too long", len);
        return HVI_E_FORMAT;
    }
    libbpf_set_print(quiet_print);
    errno = 0;
    struct btf *btf = btf__new(blob, (__u32)len);
    if (!btf || libbpf_get_error(btf)) {
        int e = errno;
        hvi_ti_err(err, err_len, "BTF: libbpf rejected the data (%s)", strerror(e ? e : EINVAL));
        return HVI_E_FORMAT;
    }
    hvi_status st = hvi_ti_new(&btf_ops, btf, banner, out);
    if (st != HVI_OK)
        btf__free(btf);
    return st;
}

static hvi_status open_elf(const void *buf, size_t len, struct hvi_typeinfo **out, char *err,
                           size_t err_len)
{
    const void *sec = NULL;
    size_t sec_len = 0;
    hvi_status st = hvi_typeinfo_elf_section(buf, len, ".BTF", &sec, &sec_len);
    if (st == HVI_E_NOT_FOUND) {
        hvi_ti_err(err, err_len, "ELF has no .BTF section (kernel built without "
                                 "CONFIG_DEBUG_INFO_BTF?); try --dwarf");
        return st;
    }
    if (st != HVI_OK) {
        hvi_ti_err(err, err_len, "ELF: malformed section headers");
        return st;
    }
    char banner[256] = "";
    const void *ro = NULL;
    size_t ro_len = 0;
    if (hvi_typeinfo_elf_section(buf, len, ".rodata", &ro, &ro_len) != HVI_OK ||
        hvi_typeinfo_find_banner(ro, ro_len, banner, sizeof(banner)) != HVI_OK)
        banner[0] = 0;
    return open_raw(sec, sec_len, banner, out, err, err_len);
}

hvi_status hvi_typeinfo_open_btf_mem(const void *buf, size_t len, struct hvi_typeinfo **out,
                                     char *err, size_t err_len)
{
    if (!buf || !out)
        return HVI_E_INVAL;
    switch (hvi_typeinfo_classify(buf, len)) {
    case HVI_TI_RAW_BTF:
        return open_raw(buf, len, "", out, err, err_len);
    case HVI_TI_ELF:
        return open_elf(buf, len, out, err, err_len);
    case HVI_TI_BZIMAGE: {
        void *elf = NULL;
        size_t elf_len = 0;
        hvi_status st = hvi_typeinfo_extract_vmlinux(buf, len, &elf, &elf_len, err, err_len);
        if (st != HVI_OK)
            return st;
        st = open_elf(elf, elf_len, out, err, err_len);
        free(elf);
        return st;
    }
    default:
        hvi_ti_err(err, err_len, "input is neither raw BTF, an ELF nor a bzImage");
        return HVI_E_FORMAT;
    }
}

hvi_status hvi_typeinfo_open_btf(const char *path, struct hvi_typeinfo **out, char *err,
                                 size_t err_len)
{
    void *buf = NULL;
    size_t len = 0;
    if (!path || !out)
        return HVI_E_INVAL;
    hvi_status st = hvi_ti_read_file(path, &buf, &len, err, err_len);
    if (st != HVI_OK)
        return st;
    st = hvi_typeinfo_open_btf_mem(buf, len, out, err, err_len);
    free(buf);
    return st;
}
