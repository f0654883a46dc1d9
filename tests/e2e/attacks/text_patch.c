// SPDX-License-Identifier: GPL-2.0
/* Attack: change one byte of kernel text (inside a function that is not called during the
 * tests, `target=` selects it) with CR0.WP cleared; restored on unload. */
#include <linux/module.h>
#include "attack_common.h"

static char *target = "sysrq_handle_crash";
module_param(target, charp, 0444);
static int offset = 8;
module_param(offset, int, 0444);
static unsigned char *where;
static unsigned char saved;

static int __init attack_init(void)
{
	unsigned char patch;

	if (offset < 0 || offset > 64)
		return -EINVAL;
	where = (unsigned char *)hvi_attack_lookup(target);
	if (!where)
		return -ENOENT;
	where += offset;
	saved = *where;
	patch = saved ^ 0xff;
	hvi_attack_poke_ro(where, &patch, 1);
	pr_info("hvi-attack: text %s+%d (%px) %02x -> %02x\n", target, offset, where, saved,
		patch);
	return 0;
}

static void __exit attack_exit(void)
{
	if (where)
		hvi_attack_poke_ro(where, &saved, 1);
	pr_info("hvi-attack: text restored\n");
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: kernel text patch");
