/* hvi typeinfo — the backend-independent object and its queries. */
#include <stdlib.h>
#include <string.h>

#include "typeinfo/typeinfo.h"

struct hvi_typeinfo {
    const struct hvi_ti_ops *ops;
    void *impl;
    char banner[256];
};

hvi_status hvi_ti_new(const struct hvi_ti_ops *ops, void *impl, const char *banner,
                      struct hvi_typeinfo **out)
{
    struct hvi_typeinfo *ti = calloc(1, sizeof(*ti));
    if (!ti)
        return HVI_E_NOMEM;
    ti->ops = ops;
    ti->impl = impl;
    if (banner) {
        strncpy(ti->banner, banner, sizeof(ti->banner) - 1);
    }
    *out = ti;
    return HVI_OK;
}

void hvi_typeinfo_free(struct hvi_typeinfo *ti)
{
    if (!ti)
        return;
    ti->ops->destroy(ti->impl);
    free(ti);
}

const char *hvi_typeinfo_source(const struct hvi_typeinfo *ti)
{
    return ti ? ti->ops->name : "";
}

const char *hvi_typeinfo_banner(const struct hvi_typeinfo *ti)
{
    return ti ? ti->banner : "";
}

hvi_status hvi_typeinfo_struct_size(struct hvi_typeinfo *ti, const char *name, uint32_t *size)
{
    if (!ti || !name || !size)
        return HVI_E_INVAL;
    return ti->ops->struct_size(ti->impl, name, size);
}

hvi_status hvi_typeinfo_member(struct hvi_typeinfo *ti, const char *name, const char *path,
                               uint64_t *bit_off, uint32_t *bit_size, uint32_t *byte_size)
{
    if (!ti || !name || !path || !*path || !bit_off || !bit_size)
        return HVI_E_INVAL;
    size_t pl = strlen(path);
    if (path[0] == '.' || path[pl - 1] == '.' || strstr(path, ".."))
        return HVI_E_INVAL; /* an empty path component */
    return ti->ops->member(ti->impl, name, path, bit_off, bit_size, byte_size);
}

hvi_status hvi_typeinfo_offset(struct hvi_typeinfo *ti, const char *name, const char *path,
                               uint32_t *off)
{
    uint64_t bits;
    uint32_t bsize;
    if (!off)
        return HVI_E_INVAL;
    hvi_status st = hvi_typeinfo_member(ti, name, path, &bits, &bsize, NULL);
    if (st != HVI_OK)
        return st;
    if (bits / 8 > UINT32_MAX)
        return HVI_E_RANGE;
    *off = (uint32_t)(bits / 8);
    return HVI_OK;
}

hvi_status hvi_typeinfo_enum_value(struct hvi_typeinfo *ti, const char *enumerator, int64_t *val)
{
    if (!ti || !enumerator || !val)
        return HVI_E_INVAL;
    return ti->ops->enum_value(ti->impl, enumerator, val);
}

hvi_status hvi_typeinfo_func_exists(struct hvi_typeinfo *ti, const char *name)
{
    if (!ti || !name)
        return HVI_E_INVAL;
    return ti->ops->func_exists(ti->impl, name);
}

hvi_status hvi_typeinfo_func_param(struct hvi_typeinfo *ti, const char *func, const char *param)
{
    if (!ti || !func || !param)
        return HVI_E_INVAL;
    return ti->ops->func_param(ti->impl, func, param);
}
