// SPDX-License-Identifier: GPL-2.0
/* Attack: change one byte (XOR 0xff) of ANOTHER loaded module's text, with CR0.WP cleared;
 * restored on unload. `target` names a function of that module (default crc7_be: load crc7.ko
 * first; nothing calls it in the tests), found through kallsyms (which searches module symbols
 * too); the module refuses an address that is not in some other module's text, and holds a
 * reference on the victim so it cannot be unloaded while patched. Reading
 * /sys/module/hvi_modtext_patch/parameters/state prints the byte there now and whether it is
 * the original or the patched one (guest-side evidence for the tests). */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include "attack_common.h"

static char *target = "crc7_be";
module_param(target, charp, 0444);
static int offset = 8;
module_param(offset, int, 0444);
static unsigned char *where;
static unsigned char saved, patch;
static struct module *victim;

typedef struct module *(*text_addr_fn)(unsigned long addr);

static int state_get(char *buf, const struct kernel_param *kp)
{
	unsigned char now;

	if (!where)
		return scnprintf(buf, PAGE_SIZE, "none\n");
	now = READ_ONCE(*where);
	return scnprintf(buf, PAGE_SIZE, "%s:%s+%d at %px now %02x %s\n", victim->name, target,
			 offset, where, now,
			 now == saved ? "original" : now == patch ? "patched" : "other");
}

static const struct kernel_param_ops state_ops = { .get = state_get };
module_param_cb(state, &state_ops, NULL, 0444);

static int __init attack_init(void)
{
	text_addr_fn text_mod = (text_addr_fn)hvi_attack_lookup("__module_text_address");
	unsigned char *p;
	struct module *m;

	if (offset < 0 || offset > 64 || !text_mod)
		return -EINVAL;
	p = (unsigned char *)hvi_attack_lookup(target);
	if (!p)
		return -ENOENT;
	p += offset;
	preempt_disable();
	m = text_mod((unsigned long)p);
	if (m && (m == THIS_MODULE || !try_module_get(m)))
		m = NULL;
	preempt_enable();
	if (!m) {
		pr_err("hvi-attack: %s+%d (%px) is not in another live module's text\n", target,
		       offset, p);
		return -EINVAL;
	}
	victim = m;
	saved = *p;
	patch = saved ^ 0xff;
	hvi_attack_poke_ro(p, &patch, 1);
	where = p;
	pr_info("hvi-attack: module text %s:%s+%d (%px) %02x -> %02x\n", m->name, target, offset,
		p, saved, patch);
	return 0;
}

static void __exit attack_exit(void)
{
	if (where)
		hvi_attack_poke_ro(where, &saved, 1);
	if (victim)
		module_put(victim);
	pr_info("hvi-attack: module text restored\n");
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: another module's text patch");
