/*
 * hvi typeinfo — the kernel's own type information (BTF through libbpf, DWARF through libdw)
 * and the Linux OS-support generator built on it (`hvi cami gen-linux`).
 *
 * Inputs are hostile files: every size is checked, decompression is capped, libbpf/libdw
 * refusals become HVI_E_FORMAT with a message in the caller's error buffer.
 */
#ifndef HVI_TYPEINFO_H
#define HVI_TYPEINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hvi/status.h"

/* Largest decompressed kernel image accepted (a decompression bomb stops here). */
#define HVI_TI_MAX_IMAGE (512u * 1024u * 1024u)
#define HVI_TI_ERR_LEN 256

/* Input kinds recognised by hvi_typeinfo_classify(). */
enum hvi_ti_kind {
    HVI_TI_UNKNOWN = 0,
    HVI_TI_RAW_BTF,  /* starts with the BTF magic 0xeB9F */
    HVI_TI_ELF,      /* an ELF (vmlinux) */
    HVI_TI_BZIMAGE,  /* an x86 boot image (setup header "HdrS") */
};

enum hvi_ti_kind hvi_typeinfo_classify(const void *buf, size_t len);

/* Decompress the kernel ELF inside a bzImage (payload located by the setup header, else by a
 * gzip/xz/zstd/lzma magic scan). *elf is malloc'd. */
hvi_status hvi_typeinfo_extract_vmlinux(const void *buf, size_t len, void **elf, size_t *elf_len,
                                        char *err, size_t err_len);

/* Find a section by name in an in-memory ELF64 (little endian); *sec points into buf. */
hvi_status hvi_typeinfo_elf_section(const void *buf, size_t len, const char *name,
                                    const void **sec, size_t *sec_len);

/* The kernel release ("6.1.0-56-amd64") of a vmlinuz/bzImage, vmlinux ELF or any buffer
 * holding a "Linux version " banner. The bzImage's kernel_version string is used when present,
 * else the decompressed image's linux_banner. */
hvi_status hvi_typeinfo_release_from_buffer(const void *buf, size_t len, char *out, size_t out_len);
hvi_status hvi_typeinfo_kernel_release(const char *path, char *out, size_t out_len);
/* The banner text after "Linux version " (up to the newline) found in buf. */
hvi_status hvi_typeinfo_find_banner(const void *buf, size_t len, char *out, size_t out_len);

/* ---- type information ---- */
struct hvi_typeinfo;

/* Open BTF from a file: raw BTF, ELF with .BTF, or bzImage (decompressed). */
hvi_status hvi_typeinfo_open_btf(const char *path, struct hvi_typeinfo **out, char *err,
                                 size_t err_len);
/* Same from a buffer (copied as needed; the buffer may be freed afterwards). */
hvi_status hvi_typeinfo_open_btf_mem(const void *buf, size_t len, struct hvi_typeinfo **out,
                                     char *err, size_t err_len);
/* Open DWARF from an ELF file with .debug_info. */
hvi_status hvi_typeinfo_open_dwarf(const char *path, struct hvi_typeinfo **out, char *err,
                                   size_t err_len);
void hvi_typeinfo_free(struct hvi_typeinfo *ti);

/* "btf" or "dwarf". */
const char *hvi_typeinfo_source(const struct hvi_typeinfo *ti);
/* Banner text after "Linux version " if the input carried one, else "". */
const char *hvi_typeinfo_banner(const struct hvi_typeinfo *ti);

/* Size in bytes of `struct name`. HVI_E_NOT_FOUND if no complete definition exists. */
hvi_status hvi_typeinfo_struct_size(struct hvi_typeinfo *ti, const char *name, uint32_t *size);
/* Bit offset and bit size (0 when not a bitfield) of member `path` of `struct name`; `path`
 * may name nested members with '.' ("core_layout.base"); anonymous struct/union members are
 * searched through. The byte size of the member's type goes to *byte_size (may be NULL). */
hvi_status hvi_typeinfo_member(struct hvi_typeinfo *ti, const char *name, const char *path,
                               uint64_t *bit_off, uint32_t *bit_size, uint32_t *byte_size);
/* Byte offset of a non-bitfield member. */
hvi_status hvi_typeinfo_offset(struct hvi_typeinfo *ti, const char *name, const char *path,
                               uint32_t *off);
/* Value of an enumerator (any enum). */
hvi_status hvi_typeinfo_enum_value(struct hvi_typeinfo *ti, const char *enumerator, int64_t *val);

/* HVI_OK when a function of that name is described (BTF FUNC or DWARF subprogram). */
hvi_status hvi_typeinfo_func_exists(struct hvi_typeinfo *ti, const char *name);

/* HVI_OK when function `func` has a parameter named `param` (HVI_E_NOT_FOUND otherwise). */
hvi_status hvi_typeinfo_func_param(struct hvi_typeinfo *ti, const char *func, const char *param);

/* ---- the generator ---- */
struct hvi_genlinux_opts {
    const char *version_glob; /* NULL: derived from release */
    const char *version;      /* NULL: from the banner */
    bool quiet;               /* no warnings on stderr */
};

struct hvi_genlinux_stats {
    unsigned fields;   /* fields written */
    unsigned absent;   /* of which absent in this kernel (sentinel written) */
    unsigned hooks;
};

/* Written for a tags.yaml field that does not exist in the kernel. */
#define HVI_GENLINUX_ABSENT 0xFFFFFFFFu

hvi_status hvi_genlinux_write(struct hvi_typeinfo *ti, const struct hvi_genlinux_opts *opts,
                              FILE *out, struct hvi_genlinux_stats *stats, char *err,
                              size_t err_len);

/* Backend interface (internal). */
struct hvi_ti_ops {
    const char *name;
    hvi_status (*struct_size)(void *impl, const char *name, uint32_t *size);
    hvi_status (*member)(void *impl, const char *name, const char *path, uint64_t *bit_off,
                         uint32_t *bit_size, uint32_t *byte_size);
    hvi_status (*enum_value)(void *impl, const char *enumerator, int64_t *val);
    hvi_status (*func_exists)(void *impl, const char *name);
    hvi_status (*func_param)(void *impl, const char *func, const char *param);
    void (*destroy)(void *impl);
};

hvi_status hvi_ti_new(const struct hvi_ti_ops *ops, void *impl, const char *banner,
                      struct hvi_typeinfo **out);
void hvi_ti_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
hvi_status hvi_ti_read_file(const char *path, void **buf, size_t *len, char *err, size_t err_len);

#endif
