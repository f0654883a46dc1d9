// SPDX-License-Identifier: GPL-2.0
/* Attack: clear CR0.WP on every CPU with a raw mov (bypassing the kernel's CR pinning) and
 * leave it clear until unload. */
#include <linux/module.h>
#include <linux/smp.h>
#include "attack_common.h"

static void wp_off(void *unused)
{
	hvi_attack_write_cr0_raw(hvi_attack_read_cr0() & ~X86_CR0_WP);
}

static void wp_on(void *unused)
{
	hvi_attack_write_cr0_raw(hvi_attack_read_cr0() | X86_CR0_WP);
}

static int __init attack_init(void)
{
	on_each_cpu(wp_off, NULL, 1);
	pr_info("hvi-attack: CR0.WP cleared (cr0=%lx)\n", hvi_attack_read_cr0());
	return 0;
}

static void __exit attack_exit(void)
{
	on_each_cpu(wp_on, NULL, 1);
	pr_info("hvi-attack: CR0.WP restored\n");
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: CR0.WP clear");
