#include "synth_mem.h"

#include <stdlib.h>
#include <string.h>

void synth_init(struct synth_mem *m)
{
    memset(m, 0, sizeof(*m));
}

void synth_free(struct synth_mem *m)
{
    for (size_t i = 0; i < m->count; i++)
        free(m->page[i]);
    free(m->page);
    free(m->va);
    memset(m, 0, sizeof(*m));
}

static uint8_t *find(const struct synth_mem *m, uint64_t va)
{
    for (size_t i = 0; i < m->count; i++)
        if (m->va[i] == (va & HVI_PAGE_MASK))
            return m->page[i];
    return NULL;
}

static uint8_t *get(struct synth_mem *m, uint64_t va)
{
    uint8_t *p = find(m, va);
    if (p)
        return p;
    if (m->count == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->va = realloc(m->va, m->cap * sizeof(*m->va));
        m->page = realloc(m->page, m->cap * sizeof(*m->page));
        if (!m->va || !m->page)
            abort(); /* test-only allocator */
    }
    p = calloc(1, HVI_PAGE_SIZE);
    if (!p)
        abort();
    m->va[m->count] = va & HVI_PAGE_MASK;
    m->page[m->count++] = p;
    return p;
}

void synth_map(struct synth_mem *m, uint64_t va, size_t len)
{
    for (uint64_t p = va & HVI_PAGE_MASK; p < va + len; p += HVI_PAGE_SIZE)
        get(m, p);
}

void synth_write(struct synth_mem *m, uint64_t va, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    for (size_t i = 0; i < len;) {
        uint8_t *p = get(m, va + i);
        size_t o = (va + i) & (HVI_PAGE_SIZE - 1), n = HVI_PAGE_SIZE - o;
        if (n > len - i)
            n = len - i;
        memcpy(p + o, b + i, n);
        i += n;
    }
}

void synth_w64(struct synth_mem *m, uint64_t va, uint64_t v)
{
    synth_write(m, va, &v, 8);
}
void synth_w32(struct synth_mem *m, uint64_t va, uint32_t v)
{
    synth_write(m, va, &v, 4);
}

hvi_status synth_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
    struct synth_mem *m = ctx;
    uint8_t *b = buf;
    m->reads++;
    for (size_t i = 0; i < len;) {
        const uint8_t *p = find(m, gva + i);
        if (!p)
            return HVI_E_NOT_PRESENT;
        size_t o = (gva + i) & (HVI_PAGE_SIZE - 1), n = HVI_PAGE_SIZE - o;
        if (n > len - i)
            n = len - i;
        memcpy(b + i, p + o, n);
        i += n;
    }
    return HVI_OK;
}

struct lix_mem synth_reader(struct synth_mem *m)
{
    struct lix_mem r = {.read = synth_read, .read_as = NULL, .ctx = m};
    return r;
}

hvi_status synth_view(void *ctx, uint64_t gva, const uint8_t **page, uint32_t *flags)
{
    struct synth_mem *m = ctx;
    const uint8_t *p = find(m, gva);
    m->views++;
    if (!p)
        return HVI_E_NOT_PRESENT;
    *page = p;
    *flags = gva >= m->exec_lo && gva < m->exec_hi ? LIX_VIEW_EXEC | m->exec_large : 0;
    return HVI_OK;
}

struct lix_mem synth_reader_view(struct synth_mem *m)
{
    struct lix_mem r = synth_reader(m);
    r.view = synth_view;
    return r;
}
