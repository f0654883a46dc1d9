/*
 * hvi QEMU backend — a QMP client (private header). JSON through json-c. Lines longer than
 * HVI_QMP_MAX_LINE, non-JSON lines, or replies with neither "return" nor "error" give
 * HVI_E_FORMAT; a closed socket HVI_E_CLOSED; silence HVI_E_TIMEOUT. Asynchronous events are
 * skipped: the ones queued since the last command are dropped before a command is sent, and
 * those arriving before its reply are skipped within the timeout (a STOP and a RESUME come
 * with every breakpoint stop, thousands in a busy session).
 */
#ifndef HVI_QEMU_QMP_H
#define HVI_QEMU_QMP_H

#include <stddef.h>
#include <stdint.h>

#include "hvi/glue.h"
#include "hvi/status.h"

#define HVI_QMP_MAX_LINE (1u << 20)

typedef struct hvi_qmp hvi_qmp;

/* Connect to a unix socket, read the greeting, negotiate capabilities. */
hvi_status hvi_qmp_connect(const char *path, int timeout_ms, hvi_qmp **out);
hvi_status hvi_qmp_from_fd(int fd, int timeout_ms, hvi_qmp **out);
void hvi_qmp_close(hvi_qmp *q);

/* Execute `cmd` (optional JSON `args` text, may be NULL). On success *ret (may be NULL) gets a
 * malloc'd JSON text of the "return" member. An "error" reply gives HVI_E_BACKEND, with the
 * error description in hvi_qmp_error(). */
hvi_status hvi_qmp_exec(hvi_qmp *q, const char *cmd, const char *args, char **ret);
const char *hvi_qmp_error(const hvi_qmp *q);

/* query-status: the "status" string ("running", "paused", "debug", "shutdown", ...). */
hvi_status hvi_qmp_status(hvi_qmp *q, char *buf, size_t len);
/* human-monitor-command text for one CPU (cpu_index < 0: default); *out malloc'd. */
hvi_status hvi_qmp_hmp(hvi_qmp *q, const char *cmdline, int cpu_index, char **out);
/* Parse "info registers" text: IDT/GDT base and limit, segment bases/limits/ar, CR0-4, EFER. */
hvi_status hvi_qmp_parse_info_registers(const char *text, hvi_regs *out);

#endif
