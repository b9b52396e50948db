// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * sysretstat: classify every return from a syscall to user mode as
 * SYSRET, IRET (with its reason) or ERETU, and time each path.
 *
 * A return gets a provisional verdict at raw_syscalls:sys_exit from the
 * registers as they are then, and is held open, not counted: until the
 * thread is back in user mode, later events may still change the
 * registers the kernel's guard tests (signal frame, restart, a tracer at
 * any stop, rseq fixup) or end the thread before it returns.  Each of
 * those changes the open verdict.  The return is counted (published)
 * once it is behind the thread: at its next syscall or user page fault,
 * or when it is switched out or exits outside that exit path.  Counts
 * are therefore only ever added, never corrected, on the CPU that ran
 * the return: no count, bucket or sum can go down or negative.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sysret.h"
#include "maps.h"
#include "guard.h"
#include "filter.h"
#include "hist.h"
#include "counts.h"
#include "thread_state.h"
#include "cache.h"
#include "exit.h"
#include "dump.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sched_switch")
int BPF_PROG(sr_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	__u32 zero = 0;
	struct run_cache *c = bpf_map_lookup_elem(&run_cache, &zero);
	struct live l = {};

	if (c && c->h.owner == (__u64)prev) {
		/* Busy: prev was preempted inside one of our programs and
		 * will resume here (programs run with migration disabled):
		 * its state stays, and others use storage meanwhile. */
		if (!c->h.busy) {
			l.st = &c->st;
			l.c = c;
			switched_out(&l, prev);
			flush(c, prev);
		}
	} else {
		l.st = bpf_task_storage_get(&tstate, prev, 0, 0);
		if (l.st && (l.st->flags & T_OPEN))
			switched_out(&l, prev);
	}
	if (stopped_on_exit > 0)
		resumed(next);
	return 0;
}

/* The start of both syscall hooks: hold the calling thread's state,
 * creating it for a selected thread (a failure counted in *lost_ctr).
 * False when the hook has nothing more to do: the tool's own threads,
 * no state, or a thread the filters leave out, whose open return is
 * still published before its state is released. */
static __always_inline bool syscall_hook_begin(struct live *l,
					       struct task_struct *task,
					       __u64 *lost_ctr)
{
	if (task->tgid == cfg.self_tgid)
		return false;
	if (!acquire(l, task, lost_ctr))
		return false;
	if (filtered_out(l->st, task)) {
		publish(l, task);
		release(l, task);
		return false;
	}
	return true;
}

/*
 * Whether sys_enter times this call (sample_shift).  Decided from the
 * syscall's number and ABI before any state is touched: a call not
 * timed costs a few loads here, and sys_exit classifies and counts it
 * as it does in counts-only mode.  The choice is random, so that no
 * workload's rhythm can line up with it.
 */
static __always_inline bool timed(struct task_struct *task,
				  struct pt_regs *regs, long id)
{
	__u8 kind = K_X64;
	__u32 slot, shift;

	if (task->thread_info.status & TS_COMPAT)
		kind = K_INT80;		/* any i386 entry: the same slot */
	else if (x32_nr(regs->orig_ax))
		kind = K_X32;
	slot = syscall_slot(kind, id);
	if (!IN_RANGE(slot, SR_NR_SLOTS))
		return true;
	shift = sample_shift[slot] & 31;
	return !shift || !(bpf_get_prandom_u32() & ((1U << shift) - 1));
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sr_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_state *st;
	struct live l;
	__u8 kind;

	if (!timed(task, regs, id))
		return 0;
	if (!syscall_hook_begin(&l, task, &lost.entries))
		return 0;
	st = l.st;
	if (task->thread_info.status & TS_COMPAT) {
		__u64 pad = landing_pad(task);

		kind = compat_entry(st, regs, pad);
		st->enter_ip = pad;
	} else if (x32_nr(regs->orig_ax)) {
		kind = K_X32;
	} else {
		kind = K_X64;
	}
	publish(&l, task);
	st->enter_kind = kind;
	st->enter_nr = id;
	st->enter_ts = bpf_ktime_get_ns();
	st->flags |= T_IN_SYSCALL;
	release(&l, task);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sr_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_state *st;
	__u8 kind, o, flags;
	__s64 nr, lat = -1;
	__u64 landing;
	bool restarting;
	struct live l;

	if (!syscall_hook_begin(&l, task, &lost.storage))
		return 0;
	st = l.st;
	flags = st->flags;
	if (flags & T_IN_SYSCALL) {
		kind = st->enter_kind;
		nr = st->enter_nr;
		landing = st->enter_ip;
		if (cfg.latency)
			lat = bpf_ktime_get_ns() - st->enter_ts;
	} else {
		/* No entry seen: counts-only mode, a new task, a syscall
		 * skipped before sys_enter (seccomp, PTRACE_SYSEMU), or
		 * attached mid-syscall. */
		nr = (__s64)regs->orig_ax;
		landing = 0;
		if (task->thread_info.status & TS_COMPAT) {
			landing = landing_pad(task);
			kind = compat_entry(st, regs, landing);
		} else {
			kind = x32_nr(regs->orig_ax) ? K_X32 : K_X64;
		}
	}
	/* A return still open is behind the thread: it made this call. */
	publish(&l, task);
	restarting = will_restart(task, regs);

	if (cfg.fred)
		o = SR_O_ERETU;
	else if (flags & T_NEW)
		o = SR_O_FORK_CHILD;	/* ret_from_fork always IRETs */
	else if (cfg.xen_pv)
		o = SR_O_XEN_PV;
	else if (kind == K_INT80)
		o = SR_O_INT80;
	else if (restarting)
		/* Unless a handler runs (then: signal), the kernel moves
		 * RIP back over the syscall instruction; RCX is untouched. */
		o = SR_O_RESTART;
	else if (kind == K_FAST32)
		o = guard32(regs, landing);
	else
		o = guard64(regs, false);

	flags &= ~(T_IN_SYSCALL | T_NEW | T_FAST32 | T_RESTARTING);
	if (kind == K_FAST32)
		flags |= T_FAST32;
	if (restarting)
		flags |= T_RESTARTING;
	st->enter_ip = landing;
	st->last_outcome = o;
	st->base_outcome = o;
	st->last_slot = syscall_slot(kind, nr);
	st->last_bucket = lat >= 0 ? hist_bucket(lat) : NO_BUCKET;
	st->last_lat = lat;
	remember_regs(st, regs);
	st->flags = flags | T_OPEN;
	release(&l, task);
	return 0;
}

/*
 * A signal is delivered.  A handler's frame built on the open return's
 * way out makes it a signal IRET.  Delivered anywhere else, it finds
 * that return behind the thread, and resumes it elsewhere than where
 * that return left RIP.
 */
SEC("tp_btf/signal_deliver")
int BPF_PROG(sr_signal_deliver, int sig, struct kernel_siginfo *info,
	     struct k_sigaction *ka)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct live l;

	/* SIG_DFL (0) and SIG_IGN (1) build no frame. */
	if ((unsigned long)ka->sa.sa_handler <= 1)
		return 0;
	if (!acquire(&l, task, NULL))
		return 0;
	if (in_exit_path(l.st, task)) {
		/* The frame decides, and rt_sigreturn puts RIP back.  The
		 * last frame built is the one the return enters. */
		promote(l.st, SR_O_SIGNAL);
		l.st->sig = sig;
		l.st->flags &= ~T_RESTARTING;
	} else {
		publish(&l, task);
		l.st->last_ip = 0;
	}
	release(&l, task);
	return 0;
}

/*
 * A fault from user mode that raises a signal (#UD, #GP, #DE...): the
 * thread is back in the kernel, past its open return.  Its frame
 * (orig_ax -1, RIP not advanced) looks exactly like the way out of an
 * rt_sigreturn that ended on that instruction: without this, the
 * fault's signal frame would be charged to the sigreturn.  Page faults
 * have their own tracepoint; an int3 has advanced RIP.
 */
SEC("tp_btf/signal_generate")
int BPF_PROG(sr_signal_generate, int sig, struct kernel_siginfo *info,
	     struct task_struct *task, int group, int result)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct live l;
	int code;

	/* A fault signal the kernel raises on the task itself: si_code
	 * > 0 (ILL_*, FPE_*, SEGV_*, BUS_*, or SI_KERNEL for #GP).  info
	 * may be SEND_SIG_NOINFO or SEND_SIG_PRIV (0, 1): read, not
	 * dereferenced. */
	if (task != cur || (unsigned long)info < 4096)
		return 0;
	if (bpf_core_read(&code, sizeof(code), &info->si_code) || code <= 0)
		return 0;
	if (sig != 4 && sig != 7 && sig != 8 && sig != 11)
		return 0;	/* SIGILL, SIGBUS, SIGFPE, SIGSEGV */
	if (!acquire(&l, cur, NULL))
		return 0;
	publish(&l, cur);
	release(&l, cur);
	return 0;
}

SEC("tp_btf/rseq_ip_fixup")
int BPF_PROG(sr_rseq_ip_fixup, unsigned long regs_ip, unsigned long start_ip,
	     unsigned long post_commit_offset, unsigned long abort_ip)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct live l;

	if (!acquire(&l, task, NULL))
		return 0;
	if (in_exit_path(l.st, task))
		promote(l.st, SR_O_RSEQ);
	else
		publish(&l, task);
	release(&l, task);
	return 0;
}

/*
 * A fault from user mode: the thread is back in the kernel, so its open
 * return is behind it.  After an rt_sigreturn that passes the guard, a
 * fault at the first instruction (a jump to an unmapped page) has the
 * very registers of the way out; without this its SIGSEGV frame would
 * be taken for one built on the sigreturn's return.
 */
SEC("tp_btf/page_fault_user")
int BPF_PROG(sr_page_fault_user, unsigned long address, struct pt_regs *regs,
	     unsigned long error_code)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct live l;

	if (!acquire(&l, task, NULL))
		return 0;
	publish(&l, task);
	release(&l, task);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sr_fork, struct task_struct *parent, struct task_struct *child)
{
	struct task_state *st;
	__u8 filter = 0;
	struct live l;

	if (cfg.filter) {
		/* The parent's filter state (it is current here), or its
		 * selection if it has made no syscall yet. */
		if (acquire(&l, parent, NULL)) {
			filter = l.st->filter;
			release(&l, parent);
		}
		if (!(filter & F_KNOWN))
			filter = selection(parent->tgid);
		if (!(filter & F_IN))
			return 0;
		/* A thread shares its process's selection; a new process
		 * is traced only under a followed one (record -- COMMAND),
		 * not for -p PID. */
		if (child->tgid != parent->tgid && !(filter & F_FOLLOW))
			return 0;
	}
	if (other_filters_out(child))
		return 0;
	st = bpf_task_storage_get(&tstate, child, 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st) {
		__sync_fetch_and_add(&lost.storage, 1);
		return 0;
	}
	st->flags = T_NEW;
	st->filter = filter;
	st->start_ns = child->start_time;
	return 0;
}

/* Kernels before 6.16 pass no group_dead: do_exit() has dropped
 * signal->live before the tracepoint, so read that. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(sr_exit, struct task_struct *task)
{
	task_exit(task, task->signal->live.counter == 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sr_exit_gd, struct task_struct *task, bool group_dead)
{
	task_exit(task, group_dead);
	return 0;
}

/*
 * A thread that was not the leader has exec'd: de_thread() gave it the
 * leader's tid.  Its life under the old tid ends here (an exit record);
 * it goes on from zero under the new one, so neither is counted twice.
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(sr_exec, struct task_struct *p, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct task_state *st;
	struct live l;

	if (old_pid == p->pid)
		return 0;
	carry_in(p);
	if (!acquire(&l, p, NULL))
		return 0;
	if (l.c)
		flush(l.c, p);
	release(&l, p);
	st = bpf_task_storage_get(&tstate, p, 0, 0);
	if (!st)
		return 0;
	if (st->seq)
		emit_thread_exit(st, p, old_pid);
	__builtin_memset(&st->counts, 0, sizeof(st->counts));
	st->flags &= ~T_PROC;		/* it leads a process of its own now */
	st->seq++;
	return 0;
}

/* Dump what changed since the last dump: live threads and processes. */
SEC("iter/task")
int sr_dump(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct sr_thread_rec rec = {};
	struct emit_ctx e = {};
	struct proc_dump_buf *buf;
	struct task_state *st;
	struct proc_state *ps;
	__u32 zero = 0, p, off, len;

	if (!task)
		return 0;
	st = bpf_task_storage_get(&tstate, task, 0, 0);
	if (st && !(st->flags & T_EXITED) && st->seq != st->dumped_seq) {
		st->dumped_seq = st->seq;
		fill_thread_rec(&rec, st, task, task->pid);
		bpf_seq_write(seq, &rec, sizeof(rec));
	}
	if (task->pid != task->tgid)
		return 0;
	ps = bpf_task_storage_get(&pstate, task, 0, 0);
	if (!ps || (ps->flags & T_EXITED) || ps->seq == ps->dumped_seq)
		return 0;
	ps->dumped_seq = ps->seq;
	buf = bpf_map_lookup_elem(&dump_buf, &zero);
	if (!buf)
		return 0;
	buf->h.kind = SR_REC_PROC;
	buf->h.tgid = task->tgid;
	buf->h.start_ns = task->start_time;
	bpf_probe_read_kernel_str(buf->h.comm, sizeof(buf->h.comm), task->comm);
	/* Only the buckets in use, found from the bitmaps: a few of 321
	 * for most processes, so a dump of thousands stays small.  Each
	 * word is read once, into the record, then walked; flush() marks
	 * a bucket before it adds to it and bumps seq after, so a bucket
	 * this dump misses is in the next. */
	for (p = 0; p < SR_NR_LAT; p++) {
		buf->h.sum_ns[p] = ps->hist[p].sum_ns;
		buf->h.n[p] = 0;
	}
	buf->fill = 0;
	buf->walk = (struct bits_walk){};
	e.ps = ps;
	e.buf = buf;
	bpf_loop(SR_NZ_STEPS, emit_step, &e, 0);
	off = buf->fill;
	len = sizeof(buf->h) + off * sizeof(__s64);
	if (len > sizeof(*buf))
		return 0;
	bpf_seq_write(seq, buf, len);
	return 0;
}
