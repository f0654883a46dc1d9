/*
 * hvi — Linux guest queries: what the engine sees of a Linux guest, read live from its memory.
 *
 * Valid after hvi_new_guest() found a Linux kernel. Every list is a malloc'd array of plain
 * structs that the caller releases with hvi_linux_free(). Each call walks guest memory afresh
 * (bounded; a corrupted structure gives HVI_E_FORMAT/HVI_E_LIMIT with hvi_last_error()).
 */
#ifndef HVI_LINUX_H
#define HVI_LINUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hvi_linux_info {
    char release[64];      /* "6.1.0-56-amd64" */
    char banner[256];      /* "Linux version ..." */
    uint32_t version;      /* major << 16 | minor << 8 | patch */
    uint64_t image_start;  /* _text */
    uint64_t image_end;
    uint64_t slide;        /* KASLR slide of the kernel text */
    uint32_t symbols;      /* kallsyms entries decoded */
    bool have_offsets;     /* a CAMI entry was selected: tasks/modules/maps are available */
} hvi_linux_info;

typedef struct hvi_linux_process {
    uint64_t task;         /* task_struct address */
    int32_t pid, tgid, ppid;
    uint32_t uid, gid, euid, egid;
    bool kernel_thread;    /* no mm */
    char comm[17];
    char exe[256];         /* "" for kernel threads or when unreadable */
    char cmdline[256];     /* arguments separated by spaces; "" when unavailable */
} hvi_linux_process;

typedef struct hvi_linux_module {
    uint64_t module;       /* struct module address */
    char name[57];
    uint32_t state;
    uint64_t base;         /* core layout */
    uint32_t size, text_size, ro_size;
} hvi_linux_module;

typedef struct hvi_linux_vma {
    uint64_t start, end;   /* [start, end) */
    uint64_t flags;        /* VM_READ 1, VM_WRITE 2, VM_EXEC 4, VM_SHARED 8, ... */
    uint64_t pgoff;
    char path[256];        /* backing file, "" for anonymous memory */
} hvi_linux_vma;

hvi_status hvi_linux_get_info(hvi_engine *engine, hvi_linux_info *out);
/* Processes (thread-group leaders) or, with threads, every thread; init_task is not listed. */
hvi_status hvi_linux_list_processes(hvi_engine *engine, bool threads, hvi_linux_process **out,
                                    size_t *count);
hvi_status hvi_linux_list_modules(hvi_engine *engine, hvi_linux_module **out, size_t *count);
/* Memory map of the process `pid`: HVI_E_NOT_FOUND for no such pid, an empty list for a
 * kernel thread. */
hvi_status hvi_linux_list_vmas(hvi_engine *engine, int32_t pid, hvi_linux_vma **out,
                               size_t *count);
/* kallsyms: name -> address, address -> name + offset. */
hvi_status hvi_linux_find_symbol(hvi_engine *engine, const char *name, uint64_t *addr);
hvi_status hvi_linux_symbolize(hvi_engine *engine, uint64_t addr, char *name, size_t len,
                               uint64_t *offset);
void hvi_linux_free(void *array);

/* Interim, for development until the CAMI layer selects entries: take the structure offsets from
 * a text file of "struct.field value" lines (scripts/lix-offsets makes one with pahole from the
 * kernel's BTF). Call before hvi_new_guest(). */
hvi_status hvi_linux_set_offsets_file(hvi_engine *engine, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* HVI_LINUX_H */
