// SPDX-License-Identifier: GPL-2.0
/* Attack: overwrite MSR LSTAR on every CPU with the module's trampoline, which counts the
 * system calls it sees and jumps on to the original entry (so the guest keeps working); the
 * original is restored on unload. Works with page-table isolation off (the default CPU model
 * of the tests). With sysenter=1, MSR SYSENTER_EIP (the 32-bit sysenter entry) is overwritten
 * instead, with a trampoline of its own. Reading /sys/module/hvi_lstar/parameters/state prints
 * the attacked MSR of the reader's CPU ("hooked", "original" or "other") and the trampoline's
 * count (guest-side evidence for the tests). */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/smp.h>
#include <asm/msr.h>
#include "attack_common.h"

static int sysenter;
module_param(sysenter, int, 0444);

unsigned long hvi_attack_orig_lstar;
unsigned long hvi_attack_tramp_hits;
void hvi_attack_lstar_tramp(void);
void hvi_attack_sysenter_tramp(void);
asm(".text\n"
    ".globl hvi_attack_lstar_tramp\n"
    "hvi_attack_lstar_tramp:\n"
    "	lock incq hvi_attack_tramp_hits(%rip)\n"
    "	jmp *hvi_attack_orig_lstar(%rip)\n"
    "	int3\n"
    ".globl hvi_attack_sysenter_tramp\n"
    "hvi_attack_sysenter_tramp:\n"
    "	lock incq hvi_attack_tramp_hits(%rip)\n"
    "	jmp *hvi_attack_orig_lstar(%rip)\n"
    "	int3\n");

static unsigned int attacked_msr(void)
{
	return sysenter ? MSR_IA32_SYSENTER_EIP : MSR_LSTAR;
}

static unsigned long tramp(void)
{
	return sysenter ? (unsigned long)hvi_attack_sysenter_tramp :
			  (unsigned long)hvi_attack_lstar_tramp;
}

static void set_msr(void *v)
{
	wrmsrl(attacked_msr(), (unsigned long)v);
}

static int state_get(char *buf, const struct kernel_param *kp)
{
	unsigned long v;

	rdmsrl(attacked_msr(), v);
	return scnprintf(buf, PAGE_SIZE, "cpu %d %s %lx %s hits %lu\n", raw_smp_processor_id(),
			 sysenter ? "sysenter_eip" : "lstar", v,
			 v == tramp() ? "hooked" : v == hvi_attack_orig_lstar ? "original" : "other",
			 READ_ONCE(hvi_attack_tramp_hits));
}

static const struct kernel_param_ops state_ops = { .get = state_get };
module_param_cb(state, &state_ops, NULL, 0444);

static int __init attack_init(void)
{
	rdmsrl(attacked_msr(), hvi_attack_orig_lstar);
	on_each_cpu(set_msr, (void *)tramp(), 1);
	pr_info("hvi-attack: MSR %x %lx -> %lx\n", attacked_msr(), hvi_attack_orig_lstar, tramp());
	return 0;
}

static void __exit attack_exit(void)
{
	on_each_cpu(set_msr, (void *)hvi_attack_orig_lstar, 1);
	pr_info("hvi-attack: MSR %x restored\n", attacked_msr());
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: MSR LSTAR / SYSENTER_EIP overwrite");
