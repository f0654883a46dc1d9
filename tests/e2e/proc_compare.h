/*
 * e2e helper: comparing the engine's process view with the guest's own (`ps`, /proc).
 */
#ifndef HVI_TEST_PROC_COMPARE_H
#define HVI_TEST_PROC_COMPARE_H

#include <stdbool.h>
#include <string.h>

#include "hvi/linux.h"

/* The console's own short-lived helpers, absent from one side or the other. */
static inline bool transient(const char *comm)
{
    return !strcmp(comm, "hvi-ps") || !strcmp(comm, "cat") || !strncmp(comm, "kworker/", 8);
}

/* The engine's comm (task_struct.comm, at most 15 characters) against the guest's name, which
 * may be longer. */
static inline bool comm_eq(const char *hvi, const char *proc)
{
    size_t n = strlen(hvi);
    return !strcmp(hvi, proc) || (n == 15 && !strncmp(hvi, proc, n));
}

static inline const hvi_linux_process *find_pid(const hvi_linux_process *p, size_t n, int32_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (p[i].pid == pid)
            return &p[i];
    return NULL;
}

#endif
