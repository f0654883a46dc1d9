/* hvi core — status names. */
#include "hvi/status.h"

const char *hvi_strstatus(hvi_status st)
{
    switch (st) {
    case HVI_OK: return "ok";
    case HVI_E_INVAL: return "invalid argument";
    case HVI_E_NOMEM: return "out of memory";
    case HVI_E_NOT_PRESENT: return "guest page not present";
    case HVI_E_FORMAT: return "malformed input";
    case HVI_E_UNSUPPORTED: return "not supported";
    case HVI_E_BACKEND: return "backend (glue) call failed";
    case HVI_E_NOT_FOUND: return "not found";
    case HVI_E_EXISTS: return "already exists";
    case HVI_E_RANGE: return "address or size out of range";
    case HVI_E_LIMIT: return "limit reached";
    case HVI_E_VERSION: return "version mismatch";
    case HVI_E_TIMEOUT: return "timed out";
    case HVI_E_IO: return "I/O error";
    case HVI_E_STATE: return "wrong state";
    case HVI_E_BUSY: return "busy, try again";
    case HVI_E_INTEGRITY: return "integrity check failed";
    case HVI_E_DECODE: return "instruction decode failed";
    case HVI_E_CLOSED: return "peer closed the connection";
    case HVI_E_DENIED: return "denied";
    case HVI_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}
