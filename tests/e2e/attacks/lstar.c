// SPDX-License-Identifier: GPL-2.0
/* Attack: overwrite MSR LSTAR on every CPU with the module's trampoline, which counts the
 * system calls it sees and jumps on to the original entry (so the guest keeps working); the
 * original is restored on unload. Works with page-table isolation off (the default CPU model
 * of the tests). Reading /sys/module/hvi_lstar/parameters/state prints LSTAR of the reader's
 * CPU ("hooked", "original" or "other") and the trampoline's count (guest-side evidence). */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/smp.h>
#include <asm/msr.h>
#include "attack_common.h"

unsigned long hvi_attack_orig_lstar;
unsigned long hvi_attack_tramp_hits;
void hvi_attack_lstar_tramp(void);
asm(".text\n"
    ".globl hvi_attack_lstar_tramp\n"
    "hvi_attack_lstar_tramp:\n"
    "	lock incq hvi_attack_tramp_hits(%rip)\n"
    "	jmp *hvi_attack_orig_lstar(%rip)\n"
    "	int3\n");

static void set_lstar(void *v)
{
	wrmsrl(MSR_LSTAR, (unsigned long)v);
}

static int state_get(char *buf, const struct kernel_param *kp)
{
	unsigned long v;

	rdmsrl(MSR_LSTAR, v);
	return scnprintf(buf, PAGE_SIZE, "cpu %d lstar %lx %s hits %lu\n", raw_smp_processor_id(),
			 v,
			 v == (unsigned long)hvi_attack_lstar_tramp ? "hooked" :
			 v == hvi_attack_orig_lstar ? "original" : "other",
			 READ_ONCE(hvi_attack_tramp_hits));
}

static const struct kernel_param_ops state_ops = { .get = state_get };
module_param_cb(state, &state_ops, NULL, 0444);

static int __init attack_init(void)
{
	rdmsrl(MSR_LSTAR, hvi_attack_orig_lstar);
	on_each_cpu(set_lstar, (void *)hvi_attack_lstar_tramp, 1);
	pr_info("hvi-attack: LSTAR %lx -> %px\n", hvi_attack_orig_lstar, hvi_attack_lstar_tramp);
	return 0;
}

static void __exit attack_exit(void)
{
	on_each_cpu(set_lstar, (void *)hvi_attack_orig_lstar, 1);
	pr_info("hvi-attack: LSTAR restored\n");
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: MSR LSTAR overwrite");
