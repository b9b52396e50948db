/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * How the kernel leaves a syscall, read from the registers alone: the
 * way the call came in, the SYSRET guards and whether a restart is due.
 * Kept apart because it follows kernel source (the file and function
 * each test is read from) rather than sysretstat's own bookkeeping.
 */
#ifndef __SR_GUARD_H
#define __SR_GUARD_H

#include "maps.h"

/* x86-64 selectors and flags (arch/x86/include/asm/segment.h, processor-flags.h) */
#define USER_CS		0x33
#define USER32_CS	0x23
#define USER_DS		0x2b
#define EFLAGS_TF	0x100UL
#define EFLAGS_RF	0x10000UL
#define EFLAGS_VM	0x20000UL
#define TS_COMPAT	0x0002
#define X32_SYSCALL_BIT	0x40000000UL
#define TASK_TRACED	0x0008	/* __TASK_TRACED: stopped by ptrace */
/* JOBCTL_STOP_PENDING, _TRAP_STOP, _TRAP_NOTIFY, _TRAP_FREEZE: a stop is
 * due, and with it arch_do_signal_or_restart() (include/linux/sched/jobctl.h) */
#define JOBCTL_PENDING_MASK ((1UL << 17) | (1UL << 19) | (1UL << 20) | (1UL << 23))

/* do_syscall_64()'s SYSRET guard, in the kernel's order. */
static __always_inline __u8 guard64(struct pt_regs *regs, bool force_tf)
{
	__u64 ip = regs->ip, flags = regs->flags;

	if (cfg.pre_6_7) {
		/* <= 6.6 (entry_64.S): RCX, canonical, CS, R11, RF|TF, SS. */
		int shift = cfg.la57 ? 7 : 16;

		if (regs->cx != ip)
			return SR_O_RCX_NE_RIP;
		if ((__u64)(((__s64)(ip << shift)) >> shift) != ip)
			return SR_O_RIP_NONCANONICAL;
		if (regs->cs != USER_CS)
			return SR_O_CS_NOT_USER;
		if (regs->r11 != flags)
			return SR_O_R11_NE_RFLAGS;
		if (flags & EFLAGS_RF)
			return SR_O_RFLAGS_RF;
		if ((flags & EFLAGS_TF) || force_tf)
			return SR_O_RFLAGS_TF;
		if (regs->ss != USER_DS)
			return SR_O_SS_NOT_USER;
		return SR_O_SYSRET;
	}
	if (regs->cx != ip)
		return SR_O_RCX_NE_RIP;
	if (regs->r11 != flags)
		return SR_O_R11_NE_RFLAGS;
	if (regs->cs != USER_CS)
		return SR_O_CS_NOT_USER;
	if (regs->ss != USER_DS)
		return SR_O_SS_NOT_USER;
	if (ip >= cfg.task_size_max)
		return SR_O_RIP_NONCANONICAL;
	if (flags & EFLAGS_RF)
		return SR_O_RFLAGS_RF;
	if ((flags & EFLAGS_TF) || force_tf)
		return SR_O_RFLAGS_TF;
	return SR_O_SYSRET;
}

/* do_fast_syscall_32()'s SYSRETL predicate. */
static __always_inline __u8 guard32(struct pt_regs *regs, __u64 landing)
{
	if (regs->ip != landing)
		return SR_O_COMPAT_GUARD;
	if (regs->cs != USER32_CS || regs->ss != USER_DS)
		return SR_O_COMPAT_GUARD;
	if (regs->flags & (EFLAGS_RF | EFLAGS_TF | EFLAGS_VM))
		return SR_O_COMPAT_GUARD;
	return SR_O_SYSRET;
}

static __always_inline __u64 landing_pad(struct task_struct *task)
{
	struct mm_struct *mm = task->mm;
	const struct vdso_image *img;

	if (!mm)
		return 0;
	img = mm->context.vdso_image;
	if (!img)
		return 0;
	return (__u64)mm->context.vdso + img->sym_int80_landing_pad;
}

/* An x32 syscall number: the x32 bit set in a valid number.  -1 (no
 * syscall: syscall(-1), a call a tracer skipped, after rt_sigreturn) has
 * every bit set, and is not x32. */
static __always_inline bool x32_nr(__u64 orig_ax)
{
	return (__s64)orig_ax >= 0 && (orig_ax & X32_SYSCALL_BIT);
}

static __always_inline bool restart_code(long ret)
{
	/* -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK */
	return ret == -512 || ret == -513 || ret == -514 || ret == -516;
}

/*
 * Will the kernel run arch_do_signal_or_restart() before this return?
 * It does when TIF_SIGPENDING or TIF_NOTIFY_SIGNAL is set, whose bit
 * numbers differ between kernels; read what sets them instead: a signal
 * pending and not blocked, a stop or freeze due, or task work queued.
 */
static __always_inline bool signal_work(struct task_struct *task)
{
	__u64 blocked = task->blocked.sig[0];

	if (task->pending.signal.sig[0] & ~blocked)
		return true;
	if (task->signal->shared_pending.signal.sig[0] & ~blocked)
		return true;
	if (task->jobctl & JOBCTL_PENDING_MASK)
		return true;
	return task->task_works != NULL;
}

/*
 * The kernel restarts a syscall from its registers alone: orig_ax names
 * a syscall and ax holds an ERESTART code when arch_do_signal_or_restart()
 * runs (with no handler; a handler makes it a signal frame).  A value
 * that merely looks like one (a seccomp filter's errno 512-516, a
 * tracer's edit) with no signal work ahead is returned as it is.
 */
static __always_inline bool will_restart(struct task_struct *task,
					 struct pt_regs *regs)
{
	long err = regs->ax;

	if ((long)regs->orig_ax == -1)
		return false;
	if (task->thread_info.status & TS_COMPAT)
		err = (int)err;		/* syscall_get_error() */
	return restart_code(err) && signal_work(task);
}

/* The registers' verdict: a restart, or the guard's. */
static __always_inline __u8 regs_verdict(struct task_state *st,
					 struct task_struct *task,
					 struct pt_regs *regs)
{
	if (will_restart(task, regs))
		return SR_O_RESTART;
	if (st->flags & T_FAST32)
		return guard32(regs, st->enter_ip);
	return guard64(regs, false);
}

/*
 * How a compat task entered: the vDSO's int $0x80, just before its
 * landing pad, returns to the pad as SYSENTER/SYSCALL do.  The int $0x80
 * runs where a fast syscall is re-executed: after a restart with no
 * handler (the open return), or when a return left RIP on it (a
 * sigreturn after an SA_RESTART handler, a tracer's rewind).
 */
static __always_inline __u8 compat_entry(struct task_state *st,
					 struct pt_regs *regs, __u64 pad)
{
	if (!pad || regs->ip != pad)
		return K_INT80;
	if ((st->flags & (T_OPEN | T_RESTARTING)) ==
	    (T_OPEN | T_RESTARTING))
		return K_INT80;
	/* Published already (an interrupt before the re-run): publish()
	 * moved last_ip back as the kernel did. */
	if (st->last_ip == pad - 2)
		return K_INT80;
	return K_FAST32;
}

#endif /* __SR_GUARD_H */
