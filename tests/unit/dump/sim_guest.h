/* Tests: a simulator guest holding the synthetic 6.1-like kernel (tests/unit/linux), two
 * processes (pid 7 "sim_proc" uid 1000, pid 8 "sim_two") on init_task's list, an IDT whose
 * gate 0 points into kernel text, vCPU 0 in 4-level paging with a 64-bit CS, and an offsets
 * file (v->offsets) for hvi_linux_set_offsets_file / `hvi ... --offsets`. */
#ifndef TEST_DUMP_SIM_GUEST_H
#define TEST_DUMP_SIM_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi_sim.h"

struct simguest {
    hvi_sim *sim;
    uint64_t cr3;
    char offsets[64];
};

/* false on any failure (v->sim may need hvi_sim_free, v->offsets unlink). */
bool simguest_new(struct simguest *v);
/* An ELF core of the guest: all RAM in two PT_LOADs, vCPU 0's registers in the notes
 * (malloc'd, *len its size; NULL on failure). */
uint8_t *simguest_elf(struct simguest *v, size_t *len);

#endif
