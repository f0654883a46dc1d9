/*
 * hvi — status codes shared by every layer and by the glue interface.
 *
 * HVI_OK is 0; every failure is negative and specific. There are no
 * "success with a hint" codes: a function either did what it says or it
 * returns one of the failures below and leaves its outputs untouched.
 */
#ifndef HVI_STATUS_H
#define HVI_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hvi_status {
    HVI_OK = 0,
    HVI_E_INVAL = -1,           /* an argument is invalid (NULL, out of range, misaligned) */
    HVI_E_NOMEM = -2,           /* host memory allocation failed */
    HVI_E_NOT_PRESENT = -3,     /* a guest page or paging entry is not present (normal) */
    HVI_E_FORMAT = -4,          /* malformed input: YAML, CAMI binary, BTF, ELF, protocol reply */
    HVI_E_UNSUPPORTED = -5,     /* the operation or guest is not supported */
    HVI_E_BACKEND = -6,         /* a glue (hypervisor) call failed */
    HVI_E_NOT_FOUND = -7,       /* a looked-up object (symbol, entry, hook, field) does not exist */
    HVI_E_EXISTS = -8,          /* the object already exists */
    HVI_E_RANGE = -9,           /* an address or size is outside the allowed range */
    HVI_E_LIMIT = -10,          /* a bound was hit (walk length, string length, table size) */
    HVI_E_VERSION = -11,        /* version mismatch (glue table, CAMI file) */
    HVI_E_TIMEOUT = -12,        /* a wait ran out of time */
    HVI_E_IO = -13,             /* an operating-system I/O call failed (file, socket) */
    HVI_E_STATE = -14,          /* the object is in the wrong state for this call */
    HVI_E_BUSY = -15,           /* try again later (e.g. deferred detach still pending) */
    HVI_E_INTEGRITY = -16,      /* a checksum or integrity check failed */
    HVI_E_DECODE = -17,         /* an instruction could not be decoded */
    HVI_E_CLOSED = -18,         /* the peer (QEMU, socket) went away */
    HVI_E_DENIED = -19,         /* the operation was refused by policy */
    HVI_E_INTERNAL = -20,       /* an internal invariant failed (a bug in hvi) */
} hvi_status;

/* Number of distinct status values, for tables and tests. */
#define HVI_STATUS_COUNT 21

/*
 * hvi_strstatus - a short, static, human-readable name for a status.
 * Never returns NULL; unknown values give "unknown status".
 */
const char *hvi_strstatus(hvi_status st);

#ifdef __cplusplus
}
#endif

#endif /* HVI_STATUS_H */
