/* hvi guest/linux — a bounded visited set: walks of guest lists stop on a repeated node. */
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix.h"

hvi_status lix_seen_init(struct lix_seen *s, size_t max_items)
{
    if (!s || max_items == 0 || max_items > (1u << 24))
        return HVI_E_INVAL;
    size_t cap = 16;
    while (cap < max_items * 2)
        cap *= 2;
    s->slots = calloc(cap, sizeof(uint64_t));
    if (!s->slots)
        return HVI_E_NOMEM;
    s->cap = cap;
    s->count = 0;
    return HVI_OK;
}

hvi_status lix_seen_add(struct lix_seen *s, uint64_t v)
{
    if (!s || !s->slots || v == 0)
        return HVI_E_INVAL;
    if (s->count * 2 >= s->cap)
        return HVI_E_LIMIT;
    size_t i = (size_t)((v * 0x9E3779B97F4A7C15ull) >> 20) & (s->cap - 1);
    while (s->slots[i]) {
        if (s->slots[i] == v)
            return HVI_E_EXISTS;
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = v;
    s->count++;
    return HVI_OK;
}

void lix_seen_free(struct lix_seen *s)
{
    if (!s)
        return;
    free(s->slots);
    memset(s, 0, sizeof(*s));
}
