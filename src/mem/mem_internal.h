/* hvi mem — private state of the memory layer. */
#ifndef HVI_MEM_INTERNAL_H
#define HVI_MEM_INTERNAL_H

#include "core/engine.h"

#define MEM_TC_BITS 12u /* translation cache: 4096 direct-mapped entries */
#define MEM_TC_SIZE (1u << MEM_TC_BITS)
#define MEM_GC_BITS 10u /* GPA cache: 1024 slots, linear probing over a bounded window */
#define MEM_GC_SIZE (1u << MEM_GC_BITS)
#define MEM_GC_PROBE 16u
#define MEM_MAX_ACCESS (64u << 20) /* largest single virtual/physical access */

struct mem_tc {
    uint64_t root;  /* table base of the CR3 */
    uint64_t vpn;   /* gva >> 12 */
    uint64_t gpa;   /* frame of the 4 KiB page | MEM_TC_* flags in the low bits */
    uint64_t gen;   /* valid when equal to the state's generation */
};
#define MEM_TC_W 1u
#define MEM_TC_U 2u
#define MEM_TC_NX 4u

struct mem_gc {
    hvi_gpa gpa;  /* frame address */
    uint8_t *ptr; /* mapping from the glue */
    uint32_t refs;
    bool used;
};

#define MEM_MEMO_SIZE 64u /* direct-mapped memo in front of the GPA cache (hot table frames) */

struct mem_memo {
    hvi_gpa gpa; /* frame + 1 (0 = empty) */
    uint8_t *ptr;
};

struct mem_map {
    struct mem_map *next;
    uint64_t cr3;
    hvi_gva gva;
    size_t len;
    uint8_t *copy; /* the caller's view */
    uint8_t *orig; /* contents at map time, to write back only what changed */
};

struct hvi_mem_state {
    uint64_t gen;
    uint64_t kroot; /* table base of the kernel CR3 (the cr3 == 0 fast path) */
    uint64_t kmix;  /* mem_tc_mix(kroot), precomputed for the fast path */
    struct mem_tc tc[MEM_TC_SIZE];
    struct mem_gc gc[MEM_GC_SIZE];
    struct mem_memo memo[MEM_MEMO_SIZE];
    uint32_t gc_used;
    uint64_t phys_limit; /* first GPA past the last frame; UINT64_MAX when unknown */
    struct mem_map *maps;
    uint64_t walks, tc_hits; /* statistics */
};

/* The layer state, created on first use (NULL when allocation fails). */
struct hvi_mem_state *mem_state(hvi_engine *e);

/* Borrow a pointer to the 4 KiB frame `page` (aligned). From the GPA cache when possible; else
 * a transient mapping that mem_frame_put() unmaps. */
hvi_status mem_frame_get(hvi_engine *e, hvi_gpa page, uint8_t **ptr, bool *transient);
void mem_frame_put(hvi_engine *e, hvi_gpa page, uint8_t *ptr, bool transient);

/* Resolve cr3 == 0 to the kernel CR3. */
uint64_t mem_cr3(const hvi_engine *e, uint64_t cr3);
/* Table base encoded in a CR3 value for the current mode. */
uint64_t mem_cr3_root(hvi_paging_mode mode, uint64_t cr3);

static inline uint64_t mem_tc_mix(uint64_t root)
{
    return (root >> 12) * 0x9E37u;
}

static inline struct mem_tc *mem_tc_slot(struct hvi_mem_state *m, uint64_t root, uint64_t vpn)
{
    return &m->tc[(vpn ^ mem_tc_mix(root)) & (MEM_TC_SIZE - 1)];
}

/* Translation with rights. `cached`: answer from the translation cache when possible (the
 * hvi_gva_to_gpa fast path); otherwise always walk the guest's tables (reads and writes do,
 * so they never use a translation the guest has since changed) and refresh the cache. */
hvi_status mem_xlate(hvi_engine *e, uint64_t cr3, hvi_gva gva, bool cached, hvi_gpa *gpa,
                     uint8_t *flags);

void mem_maps_free(hvi_engine *e, struct hvi_mem_state *m);

#endif
