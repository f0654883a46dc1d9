/* A synthetic 6.1-like kernel image for tests: banner and kallsyms tables (offsets,
 * relative_base, num_syms, names, markers, token_table, token_index). */
#ifndef TEST_LIX_SYNTH_KERNEL_H
#define TEST_LIX_SYNTH_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMG_VA 0xffffffff9a200000ull /* a KASLR-like slide */
#define IMG_LEN 0x40000u
#define NSYMS 600u
#define KS_AT 0x8000u

#define SYM_DUP_A 400u /* two local symbols share the name "dup_name" */
#define SYM_DUP_B 450u

/* Symbols: 0 "_text" (T), 1 "init_task" (D), 2 "modules" (D), SYM_DUP_A and SYM_DUP_B
 * "dup_name" (t), others "fn_NNNN" (t). */
uint64_t sym_addr(unsigned i);
/* Fill img[IMG_LEN]; returns the token_index offset. */
size_t build_image(uint8_t *img);
/* The same with the tables from image offset ks_at (8-aligned), and with a
 * kallsyms_seqs_of_names table between the markers and the token table when `seqs`. */
size_t build_image_opts(uint8_t *img, size_t ks_at, bool seqs);
size_t al8(size_t v);
void put32(uint8_t *p, uint32_t v);

#endif
