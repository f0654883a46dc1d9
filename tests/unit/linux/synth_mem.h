/* Sparse synthetic guest memory for Linux-layer tests: pages exist only where mapped. */
#ifndef TEST_LIX_SYNTH_MEM_H
#define TEST_LIX_SYNTH_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "guest/linux/lix.h"

struct synth_mem {
    uint64_t *va;
    uint8_t **page;
    size_t count, cap;
    uint64_t reads, views;
    uint64_t exec_lo, exec_hi; /* the view reports [exec_lo, exec_hi) executable */
    uint32_t exec_large;       /* ... with LIX_VIEW_LARGE when set to it */
};

void synth_init(struct synth_mem *m);
void synth_free(struct synth_mem *m);
/* Map zero pages covering [va, va+len). */
void synth_map(struct synth_mem *m, uint64_t va, size_t len);
/* Write (mapping pages as needed). */
void synth_write(struct synth_mem *m, uint64_t va, const void *buf, size_t len);
void synth_w64(struct synth_mem *m, uint64_t va, uint64_t v);
void synth_w32(struct synth_mem *m, uint64_t va, uint32_t v);
/* The reader for struct lix_mem (HVI_E_NOT_PRESENT outside mapped pages). */
hvi_status synth_read(void *ctx, uint64_t gva, void *buf, size_t len);
struct lix_mem synth_reader(struct synth_mem *m);
/* In place (lix_mem.view): the page's own storage. */
hvi_status synth_view(void *ctx, uint64_t gva, const uint8_t **page, uint32_t *flags);
struct lix_mem synth_reader_view(struct synth_mem *m);

#endif
