// SPDX-License-Identifier: GPL-2.0
/* Attack: replace one sys_call_table entry (__NR_getppid by default) with the module's own
 * function; the original is restored on unload. Note: since the BHI fixes, 6.1 stable
 * dispatches syscalls through a switch (x64_sys_call), so the patched entry is a real write
 * to the table but is no longer what the kernel calls. Reading
 * /sys/module/hvi_syscall_table/parameters/state prints the entry now and whether it is the
 * original or the module's function (guest-side evidence for the tests). */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/unistd.h>
#include "attack_common.h"

static int nr = __NR_getppid;
module_param(nr, int, 0444);
static unsigned long *table;
static unsigned long saved;

static long hvi_fake_syscall(const struct pt_regs *regs)
{
	return 0;
}

static int state_get(char *buf, const struct kernel_param *kp)
{
	unsigned long now;

	if (!table)
		return scnprintf(buf, PAGE_SIZE, "none\n");
	now = READ_ONCE(table[nr]);
	return scnprintf(buf, PAGE_SIZE, "sys_call_table[%d] at %px now %lx %s\n", nr,
			 &table[nr], now,
			 now == saved ? "original" :
			 now == (unsigned long)hvi_fake_syscall ? "patched" : "other");
}

static const struct kernel_param_ops state_ops = { .get = state_get };
module_param_cb(state, &state_ops, NULL, 0444);

static int __init attack_init(void)
{
	unsigned long fake = (unsigned long)hvi_fake_syscall;

	if (nr < 0 || nr >= 400)
		return -EINVAL;
	table = (unsigned long *)hvi_attack_lookup("sys_call_table");
	if (!table)
		return -ENOENT;
	saved = table[nr];
	hvi_attack_poke_ro(&table[nr], &fake, sizeof(fake));
	pr_info("hvi-attack: sys_call_table[%d] %lx -> %lx\n", nr, saved, fake);
	return 0;
}

static void __exit attack_exit(void)
{
	if (table)
		hvi_attack_poke_ro(&table[nr], &saved, sizeof(saved));
	pr_info("hvi-attack: sys_call_table[%d] restored\n", nr);
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: sys_call_table entry patch");
