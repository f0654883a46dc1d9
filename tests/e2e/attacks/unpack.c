// SPDX-License-Identifier: GPL-2.0
/* Attack: "unpack" code into kernel memory and run it, with exported symbols only (6.1 exports
 * neither set_memory_x, module_alloc, vmalloc_exec nor a way to pass PAGE_KERNEL_EXEC to
 * __vmalloc): vmalloc() a page (mapped NX), write x86-64 code into it, find its PTE with
 * lookup_address() (EXPORT_SYMBOL_GPL) and clear _PAGE_NX in place, then call it. No TLB flush
 * is needed: the page was never fetched from, and a stale NX entry would only cause a spurious
 * fault that the kernel resolves by re-walking (spurious_kernel_fault). The page is made NX
 * again and freed on unload. */
#include <linux/module.h>
#include <linux/vmalloc.h>
#include <linux/string.h>
#include <asm/pgtable.h>

static void *buf;
static pte_t *ptep;

/* not __init, and not a tail call: the vmalloc caller recorded in the vm_struct is inside the
 * module's core text, which stays mapped after init */
static noinline void hvi_unpack_alloc(void)
{
	buf = vmalloc(PAGE_SIZE);
	barrier();
}

static int __init attack_init(void)
{
	static const u8 code[] = { 0xb8, 0x2a, 0x00, 0x00, 0x00, /* mov $42, %eax */
				   0xc3 };                       /* ret */
	unsigned int level;
	int (*fn)(void);

	hvi_unpack_alloc();
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
	fn = (int (*)(void))buf;
	pr_info("hvi-attack: unpacked code at %px returned %d\n", buf, fn());
	return 0;
}

static void __exit attack_exit(void)
{
	set_pte(ptep, pte_set_flags(*ptep, _PAGE_NX));
	vfree(buf);
	pr_info("hvi-attack: unpacked page freed\n");
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: code written to vmalloc memory, NX cleared, executed");
