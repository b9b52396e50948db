/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * A thread's state between its events: finding or creating it, its
 * identity for user space, the open return's verdict as later events
 * change it, and publishing that return once it is behind the thread.
 */
#ifndef __SR_THREAD_STATE_H
#define __SR_THREAD_STATE_H

#include "maps.h"
#include <bpf/bpf_core_read.h>
#include "guard.h"
#include "filter.h"
#include "hist.h"
#include "counts.h"

/* A thread's identity start (see task_state.start_ns). */
static __always_inline __u64 own_start(struct task_state *st,
				       struct task_struct *task)
{
	return st->start_ns ? st->start_ns : task->start_time;
}

/*
 * Name a thread the way user space keys it: tid with its own start (a
 * tid is reused), tgid with its leader's start (a process's name), and
 * comm.  The cache head and the thread record hold these at different
 * offsets (both layouts are sysret.h's), hence one pointer per field.
 */
static __always_inline void thread_identity(struct task_state *st,
					    struct task_struct *task,
					    __s32 tid, __s32 *tid_to,
					    __s32 *tgid_to, __u64 *start_to,
					    __u64 *leader_start_to,
					    char *comm_to)
{
	*tid_to = tid;
	*tgid_to = task->tgid;
	*start_to = own_start(st, task);
	*leader_start_to = task->group_leader->start_time;
	bpf_probe_read_kernel_str(comm_to, SR_COMM_LEN, task->comm);
}

/* A thread's record under `tid` (its old tid after an exec, see
 * sr_exec), for the exit map and for the task dump alike. */
static __always_inline void fill_thread_rec(struct sr_thread_rec *rec,
					    struct task_state *st,
					    struct task_struct *task,
					    __s32 tid)
{
	rec->kind = SR_REC_THREAD;
	thread_identity(st, task, tid, &rec->tid, &rec->tgid, &rec->start_ns,
			&rec->leader_start_ns, rec->comm);
	rec->counts = st->counts;
	rec->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

/*
 * Count the detail of a published return whose reason has one (see
 * struct sr_detail_key).  A hash update only for those: signals,
 * restarts, tracer edits and fork children, not the common returns.
 */
static __always_inline void detail_add(struct task_state *st,
				       struct task_struct *task, __u32 slot,
				       __u8 o)
{
	struct sr_detail_key k = {};
	__u64 one = 1, *n;

	switch (o) {
	case SR_O_SIGNAL:
		k.code = st->sig;
		break;
	case SR_O_RESTART:
		/* The -ERESTART* code the syscall left (int: compat). */
		k.code = -(__s32)st->last_ax;
		break;
	case SR_O_PTRACE:
		__builtin_memcpy(k.tracer, st->tracer, SR_COMM_LEN);
		break;
	case SR_O_FORK_CHILD:
		k.code = task->pid == task->tgid ? SR_FORK_PROCESS
						 : SR_FORK_THREAD;
		break;
	default:
		return;
	}
	k.tid = task->pid;
	k.tgid = task->tgid;
	k.start_ns = own_start(st, task);
	k.leader_start_ns = task->group_leader->start_time;
	k.cpu = bpf_get_smp_processor_id();
	k.slot = slot;
	k.outcome = o;
	n = bpf_map_lookup_elem(&details, &k);
	if (!n) {
		/* First of its kind; another CPU may add it meanwhile. */
		if (!bpf_map_update_elem(&details, &k, &one, BPF_NOEXIST))
			return;
		n = bpf_map_lookup_elem(&details, &k);
		if (!n) {
			__sync_fetch_and_add(&lost.details, 1);
			return;
		}
	}
	__sync_fetch_and_add(n, 1);
}

/* The registers that tell the open return's exit path apart (see
 * in_exit_path()), as the last event that decided its verdict saw them. */
static __always_inline void remember_regs(struct task_state *st,
					  struct pt_regs *regs)
{
	st->last_ip = regs->ip;
	st->last_sp = regs->sp;
	st->last_ax = regs->ax;
	st->last_orig_ax = regs->orig_ax;
}

/* A task's state; created (if `create`) only for a selected task.
 * A creation that fails (memory pressure) is counted in *lost_ctr. */
static __always_inline struct task_state *state_of(struct task_struct *task,
						   bool create,
						   __u64 *lost_ctr)
{
	struct task_state *st = bpf_task_storage_get(&tstate, task, 0, 0);

	if (st || !create || !selected_new(task))
		return st;
	st = bpf_task_storage_get(&tstate, task, 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st && lost_ctr)
		__sync_fetch_and_add(lost_ctr, 1);
	if (st && !st->start_ns)
		st->start_ns = task->start_time;
	return st;
}

/*
 * Which event may replace which outcome.  A return that would take
 * SYSRET falls to IRET when an event rewrites its registers; a later,
 * more decisive event (a signal frame over a restart) replaces an
 * earlier one.  Outcomes fixed by the syscall itself are final: the
 * path chosen before any register is looked at (fork child, Xen PV,
 * int $0x80, FRED), and a guard failure on the registers the syscall
 * body left (spec: rt_sigreturn, execve... keep their condition).
 * That also keeps a fault on the IRET itself, whose frame is the
 * same as an rt_sigreturn's, from being taken for a signal frame.
 */
static __always_inline int rank(__u8 o)
{
	switch (o) {
	case SR_O_SYSRET:	return 0;
	case SR_O_PTRACE:	return 2;
	case SR_O_RESTART:	return 3;
	case SR_O_RSEQ:		return 4;
	case SR_O_SIGNAL:	return 5;
	default:		return 9;
	}
}

/* Raise the open return to event outcome `to` if it outranks it. */
static __always_inline void promote(struct task_state *st, __u8 to)
{
	if (rank(to) > rank(st->last_outcome))
		st->last_outcome = to;
}

/* Outcomes decided before any register is looked at (see rank()). */
static __always_inline bool fixed_outcome(__u8 o)
{
	return o == SR_O_FORK_CHILD || o == SR_O_XEN_PV || o == SR_O_INT80 ||
	       o == SR_O_ERETU;
}

/*
 * Is `task` still on the way out of its open return?  Interrupt and
 * exception frames have orig_ax == -1, a new syscall has its own number,
 * return address and ax (-ENOSYS at entry); only rt_sigreturn (orig_ax
 * == -1 too) leaves a window, at the first user instruction.
 */
static __always_inline bool in_exit_path(struct task_state *st,
					 struct task_struct *task)
{
	struct pt_regs *regs;

	if (!(st->flags & T_OPEN))
		return false;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return false;
	return regs->orig_ax == st->last_orig_ax && regs->ip == st->last_ip &&
	       regs->sp == st->last_sp && regs->ax == st->last_ax;
}

/* stopped_on_exit counts the T_STOPPED tasks, so that sr_switch looks
 * for a resumed one only while there are any: change both together. */
static __always_inline void set_stopped(struct task_state *st, bool on)
{
	if (!!(st->flags & T_STOPPED) == on)
		return;
	if (on) {
		st->flags |= T_STOPPED;
		__sync_fetch_and_add(&stopped_on_exit, 1);
	} else {
		st->flags &= ~T_STOPPED;
		__sync_fetch_and_add(&stopped_on_exit, -1);
	}
}

/*
 * Count the thread's open return: it is behind the thread now, and its
 * verdict final.  This runs on the CPU the thread returned on (it has
 * not been switched out since, or the switch published it).
 */
static __always_inline void publish(struct live *l, struct task_struct *task)
{
	struct task_state *st = l->st;
	struct sr_slot *sl;
	__u8 o = st->last_outcome;

	if (!(st->flags & T_OPEN))
		return;
	/* Restarted: the thread resumed 2 bytes back, on the syscall
	 * instruction (a compat one: the vDSO's int $0x80, compat_entry). */
	if (st->flags & T_RESTARTING)
		st->last_ip -= 2;
	st->flags &= ~(T_OPEN | T_RESTARTING);
	/* A thread's first return makes sure its process has somewhere to
	 * keep latency: created later, at an exit (a leader killed by
	 * de_thread() that never left the CPU), it can fail. */
	if (!(st->flags & T_PROC) && st->last_bucket != NO_BUCKET &&
	    proc_of(task, true))
		st->flags |= T_PROC;
	sl = counts_add(st, st->last_slot, o);
	if (o >= SR_O_FORK_CHILD && o <= SR_O_PTRACE)
		detail_add(st, task, st->last_slot, o);
	if (st->last_bucket != NO_BUCKET && sl)
		hist_add(l, task, st->last_slot, lat_path(o), st->last_bucket,
			 st->last_lat, 1, true);
}

/*
 * A thread leaves the CPU.  Its open return is published if the thread
 * is past it (preempted in user mode, or blocked in a later syscall that
 * ptrace or seccomp stopped before sys_enter).  If it is stopped by
 * ptrace on that return's way out, its tracer may now rewrite the
 * registers the guard will test: mark it, to look again when it runs.
 */
static __always_inline void switched_out(struct live *l,
					 struct task_struct *task)
{
	struct task_state *st = l->st;

	if (!(st->flags & T_OPEN))
		return;
	if (!in_exit_path(st, task)) {
		publish(l, task);
	} else if (task->__state & TASK_TRACED) {
		/* Stopped, it is its tracer's child (ptrace re-parents). */
		bpf_probe_read_kernel_str(st->tracer, sizeof(st->tracer),
					  task->parent->comm);
		set_stopped(st, true);
	}
}

/*
 * A thread that was ptrace-stopped on its open return's way out runs
 * again: whoever stopped it (a tracer that may since have detached, at
 * a syscall-exit, signal-delivery or group stop) can no longer touch its
 * registers.  Decide the verdict again from them, as the kernel will.
 * An edit that makes the guard fail is the tracer's doing (ptrace);
 * PTRACE_SINGLESTEP sets TF.  A signal frame already built stays.
 */
static __always_inline void resumed(struct task_struct *task)
{
	struct task_state *st;
	struct pt_regs *regs;
	__u8 o, now;

	/* Not running, so flushed: its state is in storage. */
	st = bpf_task_storage_get(&tstate, task, 0, 0);
	if (!st || !(st->flags & T_STOPPED))
		return;
	set_stopped(st, false);
	if (!(st->flags & T_OPEN))
		return;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return;
	o = st->last_outcome;
	if (o != SR_O_SIGNAL && o != SR_O_RSEQ) {
		if (will_restart(task, regs))
			st->flags |= T_RESTARTING;
		else
			st->flags &= ~T_RESTARTING;
	}
	if (!fixed_outcome(o) && o != SR_O_SIGNAL && o != SR_O_RSEQ) {
		now = regs_verdict(st, task, regs);
		if (now != st->base_outcome && now != SR_O_SYSRET &&
		    now != SR_O_RESTART)
			now = SR_O_PTRACE;
		st->last_outcome = now;
	}
	/* Later events compare against the registers as the tracer left
	 * them (a new return value, RIP moved back over the syscall). */
	remember_regs(st, regs);
}

#endif /* __SR_THREAD_STATE_H */
