// SPDX-License-Identifier: GPL-2.0
/* Attack: change one byte (XOR 0xff) of the 64-bit vDSO's code in kernel memory — the image
 * every process maps (vdso_image_64.data, found through kallsyms; __ro_after_init, so written
 * with CR0.WP cleared); restored on unload. The byte is `offset` bytes into the vDSO function
 * `func` (looked up in the image's own ELF dynamic symbol table; default
 * __vdso_sgx_enter_enclave, which nothing calls without SGX). Reading
 * /sys/module/hvi_vdso_patch/parameters/state prints the byte there now and whether it is the
 * original or the patched one (guest-side evidence for the tests). */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/elf.h>
#include <linux/string.h>
#include <asm/vdso.h>
#include "attack_common.h"

static char *func = "__vdso_sgx_enter_enclave";
module_param(func, charp, 0444);
static int offset = 4;
module_param(offset, int, 0444);
static unsigned char *where;
static unsigned long image_off;
static unsigned char saved, patch;

static int state_get(char *buf, const struct kernel_param *kp)
{
	unsigned char now;

	if (!where)
		return scnprintf(buf, PAGE_SIZE, "none\n");
	now = READ_ONCE(*where);
	return scnprintf(buf, PAGE_SIZE, "vdso+0x%lx (%s+%d) at %px now %02x %s\n", image_off, func,
			 offset, where, now,
			 now == saved ? "original" : now == patch ? "patched" : "other");
}

static const struct kernel_param_ops state_ops = { .get = state_get };
module_param_cb(state, &state_ops, NULL, 0444);

/* The image is linked at 0: addresses in it are offsets. 0 if not found or out of bounds. */
static unsigned long vdso_sym(const unsigned char *img, unsigned long size, const char *name,
			      unsigned long *sym_size)
{
	const Elf64_Ehdr *eh = (const void *)img;
	const Elf64_Dyn *dyn = NULL;
	unsigned long symtab = 0, strtab = 0, strsz = 0, hash = 0, nsyms, i, ndyn = 0;
	const Elf64_Phdr *ph;

	if (size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
	    eh->e_phoff > size || eh->e_phnum > 64 ||
	    eh->e_phoff + (unsigned long)eh->e_phnum * sizeof(*ph) > size)
		return 0;
	ph = (const void *)(img + eh->e_phoff);
	for (i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_DYNAMIC && ph[i].p_offset < size &&
		    ph[i].p_filesz <= size - ph[i].p_offset) {
			dyn = (const void *)(img + ph[i].p_offset);
			ndyn = ph[i].p_filesz / sizeof(*dyn);
		}
	for (i = 0; dyn && i < ndyn && dyn[i].d_tag != DT_NULL; i++) {
		if (dyn[i].d_tag == DT_SYMTAB)
			symtab = dyn[i].d_un.d_ptr;
		else if (dyn[i].d_tag == DT_STRTAB)
			strtab = dyn[i].d_un.d_ptr;
		else if (dyn[i].d_tag == DT_STRSZ)
			strsz = dyn[i].d_un.d_val;
		else if (dyn[i].d_tag == DT_HASH)
			hash = dyn[i].d_un.d_ptr;
	}
	if (!symtab || !strtab || !hash || hash + 8 > size || strtab > size ||
	    strsz > size - strtab)
		return 0;
	nsyms = ((const u32 *)(img + hash))[1];
	if (symtab > size || nsyms > (size - symtab) / sizeof(Elf64_Sym))
		return 0;
	for (i = 0; i < nsyms; i++) {
		const Elf64_Sym *s = (const void *)(img + symtab + i * sizeof(Elf64_Sym));

		if (s->st_name >= strsz || ELF64_ST_TYPE(s->st_info) != STT_FUNC)
			continue;
		if (strnlen((const char *)img + strtab + s->st_name, strsz - s->st_name) ==
			    strsz - s->st_name ||
		    strcmp((const char *)img + strtab + s->st_name, name))
			continue;
		if (s->st_value >= size || s->st_size > size - s->st_value)
			return 0;
		*sym_size = s->st_size;
		return s->st_value;
	}
	return 0;
}

static int __init attack_init(void)
{
	const struct vdso_image *vi = (const void *)hvi_attack_lookup("vdso_image_64");
	unsigned long off, fsize = 0;

	if (!vi || !vi->data || !vi->size)
		return -ENOENT;
	off = vdso_sym(vi->data, vi->size, func, &fsize);
	if (!off || offset < 0 || (unsigned long)offset >= fsize) {
		pr_err("hvi-attack: vDSO function %s not found (or offset %d past its %lu bytes)\n",
		       func, offset, fsize);
		return -ENOENT;
	}
	image_off = off + offset;
	where = (unsigned char *)vi->data + image_off;
	saved = *where;
	patch = saved ^ 0xff;
	hvi_attack_poke_ro(where, &patch, 1);
	pr_info("hvi-attack: vdso %s+%d (image+0x%lx, %px) %02x -> %02x\n", func, offset,
		image_off, where, saved, patch);
	return 0;
}

static void __exit attack_exit(void)
{
	if (where)
		hvi_attack_poke_ro(where, &saved, 1);
	pr_info("hvi-attack: vdso restored\n");
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: vDSO image patch");
