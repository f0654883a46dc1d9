/* Helpers shared by the CAMI tests. */
#ifndef CAMI_TEST_UTIL_H
#define CAMI_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "hvi/cami.h"

#define CAMI_REF_DIR HVI_SHARED_DIR "/reference/hvmi-cami"

/* Read a whole file (malloc'd); NULL when missing. */
void *ct_read(const char *path, size_t *len);
/* The reference corpus present? Prints a clear failure message when not. */
int ct_have_reference(void);
/* Compile the reference sources; NULL on failure (message printed). */
void *ct_build_corpus(size_t *len);
/* Write `text` to a fresh temporary file; returns its path (static buffer per slot 0..3). */
const char *ct_tmpfile(int slot, const char *text);
/* Build one YAML text; returns the status and fills msg. */
hvi_status ct_build_text(const char *text, void **out, size_t *len, char *msg, size_t msg_len);

#endif
