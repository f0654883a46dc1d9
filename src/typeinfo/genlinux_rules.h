/* hvi typeinfo — the rule kinds of the Linux OS-support generator (genlinux.c). */
#ifndef HVI_TYPEINFO_GENLINUX_RULES_H
#define HVI_TYPEINFO_GENLINUX_RULES_H

#include <stdint.h>

enum gl_rule {
    GL_OFF,        /* byte offset of struct a, member path b */
    GL_BIT,        /* bit index (within its byte) of bitfield a.b */
    GL_SIZEOF,     /* sizeof(struct a) */
    GL_MEMBER_SIZE,/* byte size of the type of member a.b */
    GL_SLOTS,      /* element count of array member a.b of 8-byte elements */
    GL_HAS_MEMBER, /* 1 when struct a has member b, else 0 */
    GL_HAS_STRUCT, /* 1 when struct a is defined, else 0 */
    GL_HAS_PARAM,  /* 1 when function a has a parameter named b, else 0 */
    GL_ENUM,       /* value of enumerator a */
    GL_VER_FROM,   /* 1 when the kernel release is >= a ("major.minor"), else 0 */
    GL_CONST,      /* the documented constant v (reason in `why`) */
};

struct gl_field {
    const char *group;
    const char *field;
    enum gl_rule rule;
    const char *a, *b;
    uint32_t v;
    const char *why; /* emitted as a YAML comment for non-member rules */
};

struct gl_hook {
    const char *names[3]; /* candidates, first existing one wins */
    uint8_t handler;
    uint8_t skip_on_boot;
};

#endif
