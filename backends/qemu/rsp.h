/*
 * hvi QEMU backend — a client of the GDB remote serial protocol (private header).
 *
 * One packet in flight at a time (all-stop mode, no no-ack mode). Every read has a deadline;
 * a closed socket gives HVI_E_CLOSED, a malformed or badly-checksummed packet (after three
 * retransmission requests) HVI_E_FORMAT, silence HVI_E_TIMEOUT.
 */
#ifndef HVI_QEMU_RSP_H
#define HVI_QEMU_RSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/status.h"

#define HVI_RSP_MAX_PACKET (1u << 20)

typedef struct hvi_rsp hvi_rsp;

/* Connect to host:port (numeric IPv4) within timeout_ms. */
hvi_status hvi_rsp_connect(const char *host, uint16_t port, int timeout_ms, hvi_rsp **out);
/* Wrap an already connected socket (tests). Takes ownership of fd. */
hvi_status hvi_rsp_from_fd(int fd, int timeout_ms, hvi_rsp **out);
void hvi_rsp_close(hvi_rsp *r);
int hvi_rsp_fd(const hvi_rsp *r);
void hvi_rsp_set_timeout(hvi_rsp *r, int timeout_ms);

/* Send one packet (payload without $ # checksum) and wait for its '+'. */
hvi_status hvi_rsp_send(hvi_rsp *r, const char *payload);
/* Receive one packet within timeout_ms (< 0: the session timeout). *out is NUL-terminated,
 * decoded (escapes and run-length), owned by r until the next call; *len its length. */
hvi_status hvi_rsp_recv(hvi_rsp *r, int timeout_ms, const char **out, size_t *len);
/* send + recv; an "Exx" reply gives HVI_E_BACKEND, an empty reply HVI_E_UNSUPPORTED. */
hvi_status hvi_rsp_cmd(hvi_rsp *r, const char *payload, const char **out, size_t *len);
/* Send the out-of-band interrupt byte (0x03). */
hvi_status hvi_rsp_interrupt(hvi_rsp *r);
/* True when bytes are waiting to be read (waits up to timeout_ms). */
hvi_status hvi_rsp_wait_readable(hvi_rsp *r, int timeout_ms);

/* Helpers: little-endian hex <-> integer. Return false on a malformed string. */
bool hvi_rsp_hex_le(const char *hex, size_t nbytes, uint64_t *out);
void hvi_rsp_put_hex_le(char *dst, uint64_t v, size_t nbytes);

#endif
