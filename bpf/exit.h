/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * A thread's and a process's end: the records user space drains from
 * exited_threads and exited_procs, and a process's latency kept across
 * the death of its leader in another thread's execve.
 */
#ifndef __SR_EXIT_H
#define __SR_EXIT_H

#include "maps.h"
#include <bpf/bpf_core_read.h>
#include "hist.h"
#include "thread_state.h"
#include "cache.h"

static __always_inline void emit_thread_exit(struct task_state *st,
					     struct task_struct *task,
					     __s32 tid)
{
	struct sr_thread_rec rec = {};
	struct sr_thread_key key = {};

	fill_thread_rec(&rec, st, task, tid);
	/* Keyed by tid and start: a tid reused before user space drained
	 * the first record is another thread. */
	key.tid = rec.tid;
	key.start_ns = rec.start_ns;
	if (bpf_map_update_elem(&exited_threads, &key, &rec, BPF_NOEXIST))
		__sync_fetch_and_add(&lost.exited_threads, 1);
}

/*
 * The process's latency at exit (it holds every thread's: each flushes
 * before it gets here).  Written when the group is dead, and again by
 * any thread whose exit comes later still: do_exit() decides group_dead
 * before the tracepoint, so another thread's may follow.
 */
static __always_inline void emit_proc_exit(struct task_struct *task,
					   bool group_dead)
{
	struct task_struct *leader = task->group_leader;
	struct sr_proc_rec *rec, *old;
	struct proc_state *ps;
	__u32 zero = 0, tgid = task->tgid;
	__u64 start = leader->start_time;

	ps = bpf_task_storage_get(&pstate, leader, 0, 0);
	if (!ps || !(group_dead || (ps->flags & T_EXITED)))
		return;
	ps->flags |= T_EXITED;
	old = bpf_map_lookup_elem(&exited_procs, &tgid);
	if (old) {
		if (old->start_ns != start) {
			/* A reused tgid, not yet drained. */
			__sync_fetch_and_add(&lost.exited_procs, 1);
			return;
		}
		bpf_probe_read_kernel(old->hist, sizeof(old->hist), ps->hist);
		return;
	}
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return;
	rec->kind = SR_REC_PROC;
	rec->tgid = tgid;
	rec->start_ns = start;
	bpf_probe_read_kernel_str(rec->comm, sizeof(rec->comm), leader->comm);
	bpf_probe_read_kernel(rec->hist, sizeof(rec->hist), ps->hist);
	if (bpf_map_update_elem(&exited_procs, &tgid, rec, BPF_ANY))
		__sync_fetch_and_add(&lost.exited_procs, 1);
}

/*
 * A leader that dies because another of its threads execs: de_thread()
 * will give that thread its place, and the process goes on.  Its
 * latency waits in the carry map, where the other threads' latency goes
 * meanwhile, and sr_exec hands it to the new leader.
 */
static __always_inline bool leader_dies_in_exec(struct task_struct *task)
{
	struct task_struct *ex;

	if (!bpf_core_field_exists(task->signal->group_exec_task))
		return false;
	ex = task->signal->group_exec_task;
	return ex && ex != task && task == task->group_leader;
}

static __always_inline void carry_out(struct task_struct *task)
{
	struct proc_state *ps = bpf_task_storage_get(&pstate, task, 0, 0);
	__u32 tgid = task->tgid;

	if (!ps || (ps->flags & T_EXITED))
		return;
	if (bpf_map_update_elem(&carry, &tgid, ps->hist, BPF_ANY)) {
		__sync_fetch_and_add(&lost.exited_procs, 1);
		return;
	}
	ps->flags |= P_MOVED | T_EXITED;	/* dumped no more */
}

struct carry_ctx {
	struct sc_hist_pair *from;
	struct proc_state *to;
};

static long carry_step(__u64 i, struct carry_ctx *m)
{
	__u32 p = i >= SR_HIST_BUCKETS, b = i - p * SR_HIST_BUCKETS;
	__s64 v;

	if (p >= SR_NR_LAT || !IN_RANGE(b, SR_HIST_BUCKETS))
		return 1;
	v = m->from->h[p].b[b];
	if (v) {
		mark_bucket(m->to->nz[p], b);
		__sync_fetch_and_add(&m->to->hist[p].b[b], v);
	}
	return 0;
}

static __always_inline void carry_in(struct task_struct *task)
{
	struct carry_ctx m;
	__u32 tgid = task->tgid;
	int p;

	m.from = bpf_map_lookup_elem(&carry, &tgid);
	if (!m.from)
		return;
	m.to = bpf_task_storage_get(&pstate, task, 0,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (m.to) {
		bpf_loop(SR_NR_LAT * SR_HIST_BUCKETS, carry_step, &m, 0);
		for (p = 0; p < SR_NR_LAT; p++)
			__sync_fetch_and_add(&m.to->hist[p].sum_ns,
					     m.from->h[p].sum_ns);
		m.to->seq++;
	} else {
		__sync_fetch_and_add(&lost.exited_procs, 1);
	}
	bpf_map_delete_elem(&carry, &tgid);
}

static __always_inline void task_exit(struct task_struct *task,
				      bool group_dead)
{
	struct task_state *st;
	struct live l;

	if (acquire(&l, task, NULL)) {
		/* Killed on the way out of a syscall: that return never
		 * happened.  Past it, it did. */
		if (!(l.st->flags & T_EXITED)) {
			if (in_exit_path(l.st, task))
				l.st->flags &= ~T_OPEN;
			else
				publish(&l, task);
		}
		set_stopped(l.st, false);
		/* The records below are read from storage: flush. */
		if (l.c) {
			flush(l.c, task);
			release(&l, task);
		}
		st = bpf_task_storage_get(&tstate, task, 0, 0);
		if (st && !(st->flags & T_EXITED)) {
			st->flags = (st->flags & ~T_OPEN) | T_EXITED;
			if (st->seq)
				emit_thread_exit(st, task, task->pid);
		}
	}
	if (leader_dies_in_exec(task)) {
		carry_out(task);
		return;
	}
	/* Also for a thread with no state: the last one out may have
	 * made no syscall we saw. */
	emit_proc_exit(task, group_dead);
}

#endif /* __SR_EXIT_H */
