/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * User space's filters (-p, --cgroup, --comm): which tasks get state at
 * all, so that a filtered run keeps nothing for the rest of the host.
 */
#ifndef __SR_FILTER_H
#define __SR_FILTER_H

#include "maps.h"

/* Values of filter_tgids: the processes user space selected. */
#define FILTER_SELECTED 1	/* -p PID: the process and its threads */
#define FILTER_FOLLOW 2		/* -- COMMAND: and every process it forks */

/* A thread's filter state (task_state.filter), decided once: from
 * filter_tgids for a selected process, inherited at fork for its
 * descendants, so that a tree of any size is followed with no table of
 * its pids. */
#define F_KNOWN		0x01
#define F_IN		0x02
#define F_FOLLOW	0x04

/* The filter state of a process by user space's selection. */
static __always_inline __u8 selection(__u32 tgid)
{
	__u8 *sel = bpf_map_lookup_elem(&filter_tgids, &tgid);

	if (!sel)
		return F_KNOWN;
	return F_KNOWN | F_IN | (*sel == FILTER_FOLLOW ? F_FOLLOW : 0);
}

/* The filters other than the pid filter, which a task can change (its
 * cgroup and its name): tested at every event. */
static __always_inline bool other_filters_out(struct task_struct *task)
{
	int i;

	if (cfg.cgroup_id &&
	    bpf_get_current_ancestor_cgroup_id(cfg.cgroup_level) != cfg.cgroup_id)
		return true;
	if (cfg.comm[0]) {
		for (i = 0; i < SR_COMM_LEN; i++) {
			if (task->comm[i] != cfg.comm[i])
				return true;
			if (!cfg.comm[i])
				break;
		}
	}
	return false;
}

/* Filters run in the context of the task itself (sys_enter/exit);
 * all that are set must match.  The pid filter's answer is cached. */
static __always_inline bool filtered_out(struct task_state *st,
					 struct task_struct *task)
{
	if (cfg.filter) {
		if (!(st->filter & F_KNOWN))
			st->filter = selection(task->tgid);
		if (!(st->filter & F_IN))
			return true;
	}
	return other_filters_out(task);
}

/* Whether a task with no state yet is one the filters select: state is
 * created only for those, so that a filtered run keeps (and dumps)
 * nothing for the rest of the host. */
static __always_inline bool selected_new(struct task_struct *task)
{
	if (cfg.filter && !(selection(task->tgid) & F_IN))
		return false;
	return !other_filters_out(task);
}

#endif /* __SR_FILTER_H */
