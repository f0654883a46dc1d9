// SPDX-License-Identifier: GPL-2.0
/* Attack: overwrite MSR LSTAR on every CPU with the module's trampoline, which jumps on to the
 * original entry (so the guest keeps working); the original is restored on unload. Works with
 * page-table isolation off (the default CPU model of the tests). */
#include <linux/module.h>
#include <linux/smp.h>
#include <asm/msr.h>
#include "attack_common.h"

unsigned long hvi_attack_orig_lstar;
void hvi_attack_lstar_tramp(void);
asm(".text\n"
    ".globl hvi_attack_lstar_tramp\n"
    "hvi_attack_lstar_tramp:\n"
    "	jmp *hvi_attack_orig_lstar(%rip)\n"
    "	int3\n");

static void set_lstar(void *v)
{
	wrmsrl(MSR_LSTAR, (unsigned long)v);
}

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
