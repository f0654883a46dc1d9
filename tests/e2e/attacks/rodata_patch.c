// SPDX-License-Identifier: GPL-2.0
/* Attack: change `len` bytes (XOR 0xff) of a read-only kernel object in .rodata, with CR0.WP
 * cleared; restored on unload. The default target is the enable_mask of sysrq_crash_op (the
 * sysrq-c key's const descriptor), used only when the sysrq key table is consulted. The module
 * refuses a target outside __start_rodata..__end_rodata. Reading
 * /sys/module/hvi_rodata_patch/parameters/state prints the bytes there now and whether they
 * are the original or the patched ones (guest-side evidence for the tests). */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include "attack_common.h"

#define MAX_LEN 16

static char *target = "sysrq_crash_op";
module_param(target, charp, 0444);
static int offset = 24;
module_param(offset, int, 0444);
static int len = 4;
module_param(len, int, 0444);
static unsigned char *where;
static unsigned char saved[MAX_LEN], patch[MAX_LEN];

static int state_get(char *buf, const struct kernel_param *kp)
{
	unsigned char now[MAX_LEN];
	int n = 0, i;

	if (!where)
		return scnprintf(buf, PAGE_SIZE, "none\n");
	memcpy(now, where, len);
	n += scnprintf(buf + n, PAGE_SIZE - n, "%s+%d at %px now ", target, offset, where);
	for (i = 0; i < len; i++)
		n += scnprintf(buf + n, PAGE_SIZE - n, "%02x", now[i]);
	n += scnprintf(buf + n, PAGE_SIZE - n, " %s\n",
		       !memcmp(now, saved, len) ? "original" :
		       !memcmp(now, patch, len) ? "patched" : "other");
	return n;
}

static const struct kernel_param_ops state_ops = { .get = state_get };
module_param_cb(state, &state_ops, NULL, 0444);

static int __init attack_init(void)
{
	unsigned long start = hvi_attack_lookup("__start_rodata");
	unsigned long end = hvi_attack_lookup("__end_rodata");
	unsigned char *p;
	int i;

	if (offset < 0 || offset > 4096 || len < 1 || len > MAX_LEN)
		return -EINVAL;
	p = (unsigned char *)hvi_attack_lookup(target);
	if (!p || !start || !end)
		return -ENOENT;
	p += offset;
	if ((unsigned long)p < start || (unsigned long)p + len > end) {
		pr_err("hvi-attack: %s+%d (%px) is not in .rodata\n", target, offset, p);
		return -EINVAL;
	}
	memcpy(saved, p, len);
	for (i = 0; i < len; i++)
		patch[i] = saved[i] ^ 0xff;
	hvi_attack_poke_ro(p, patch, len);
	where = p;
	pr_info("hvi-attack: rodata %s+%d (%px) %*phN -> %*phN\n", target, offset, p, len, saved,
		len, patch);
	return 0;
}

static void __exit attack_exit(void)
{
	if (where)
		hvi_attack_poke_ro(where, saved, len);
	pr_info("hvi-attack: rodata restored\n");
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: kernel rodata patch");
