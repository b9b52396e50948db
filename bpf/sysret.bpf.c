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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

/* Thread state flags. */
#define T_IN_SYSCALL	0x01	/* sys_enter seen, sys_exit not yet */
#define T_NEW		0x02	/* forked; its first return is ahead */
#define T_OPEN		0x04	/* last return held: not yet counted */
#define T_STOPPED	0x08	/* ptrace-stopped on that return's way out */
#define T_EXITED	0x10
#define T_RESTARTING	0x20	/* the kernel will move RIP back to re-run it */
#define T_PROC		0x40	/* its process's state exists */

/* proc_state flags (T_EXITED too). */
#define P_MOVED		0x20	/* latency handed to the carry map */
#define T_FAST32	0x80	/* the last return was a compat fast syscall's */

/* How the syscall in flight entered the kernel. */
enum entry_kind { K_X64, K_X32, K_INT80, K_FAST32 };

#define NO_BUCKET 0xffff

/*
 * An index the verifier of older kernels (6.1) can follow.  Having
 * checked a value once, the compiler may index with another copy of it
 * (spilled to the stack and reloaded) that 6.1's verifier knows no bound
 * for.  barrier_var() hides what the compiler knows, so the check is
 * made on the very register the access then uses.
 */
#define IN_RANGE(v, n) ({ barrier_var(v); (v) < (n); })

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

struct task_state {
	/* First: the cache (struct run_cache) overlays sr_live on it. */
	struct sr_counts counts;
	__u64 enter_ts;
	__u64 enter_ip;		/* compat: the vDSO landing pad at entry */
	/* The registers of the last return, to tell its exit path apart. */
	__u64 last_ip;
	__u64 last_sp;
	__u64 last_ax;
	__u64 last_orig_ax;
	__s64 last_lat;
	__s32 enter_nr;
	__u32 seq;		/* bumped per return: dump only what changed */
	__u32 dumped_seq;
	__u16 last_slot;
	__u16 last_bucket;
	__u8 flags;
	__u8 enter_kind;
	__u8 last_outcome;
	__u8 filter;		/* F_* */
	__u8 base_outcome;	/* last_outcome as sys_exit decided it */
	__u8 pad[7];
	/* The thread's own start: with its tid, its identity for user
	 * space.  de_thread() gives an exec'ing thread the leader's tid and
	 * start_time, which would make it the old leader's double. */
	__u64 start_ns;
};

/* A CPU's cache of its running thread's state (see sysret.h). */
/*
 * A walk over the set bits of both paths' bitmaps (SR_NR_LAT *
 * SR_HIST_WORDS words, read as one array), one step per bpf_loop
 * iteration, so that it is verified once however many bits are set:
 * a step loads the next word or takes the lowest bit left of it.
 * The walk's state lives in map memory, not on the stack: the verifier
 * then sees unknown bounded values rather than constants that make
 * every step a new state to explore (seconds of load time).
 */
#define SR_NZ_WORDS (SR_NR_LAT * SR_HIST_WORDS)
#define SR_NZ_STEPS (SR_NZ_WORDS + SR_NR_LAT * SR_HIST_BUCKETS)

struct bits_walk {
	__u64 bits;	/* what is left of word cur */
	__u32 next;	/* the word to load next */
	__u32 cur;
	__u32 p;	/* cur's path and word in it (no division: the
			 * verifier bounds neither quotient nor remainder) */
	__u32 w;
};

struct run_cache {
	struct sr_live_head h;
	struct task_state st;
	struct bits_walk walk;	/* flush() */
};

_Static_assert(__builtin_offsetof(struct run_cache, st) +
	       __builtin_offsetof(struct task_state, counts) ==
	       __builtin_offsetof(struct sr_live, counts),
	       "run_cache must start like struct sr_live");

struct proc_state {
	__u32 seq;
	__u32 dumped_seq;
	__u32 flags;
	__u32 pad;
	/* The buckets of hist ever used (atomic OR; never cleared): a dump
	 * copies those, not all 321. */
	__u64 nz[SR_NR_LAT][SR_HIST_WORDS];
	struct sr_hist hist[SR_NR_LAT];
};

const volatile struct sr_config cfg SEC(".rodata.cfg") = {};

struct sr_lost lost = {};
/* Tasks marked T_STOPPED: while none are, a switch-in costs one load.
 * A section of its own: user space reads .bss as struct sr_lost. */
__s64 stopped_on_exit SEC(".data.stops") = 0;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} tstate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct proc_state);
} pstate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct run_cache);
} run_cache SEC(".maps");

/* One slot per syscall (sysret.h); the last key is this CPU's
 * histogram allocator: its hidx is the number of indexes handed out. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SR_NR_SLOTS + 1);
	__type(key, __u32);
	__type(value, struct sr_slot);
} syscalls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sr_slots_seen);
} slots_seen SEC(".maps");

struct sc_hist_pair {
	struct sr_hist h[SR_NR_LAT];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 512);	/* resized from cfg.sc_hists */
	__type(key, __u32);
	__type(value, struct sc_hist_pair);
} sc_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} filter_tgids SEC(".maps");

/* Exit-time records, drained (read and deleted) by user space every
 * interval.  Not preallocated: room for bursts of exits (16,384
 * processes per interval) costs memory only while it is used. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct sr_thread_key);
	__type(value, struct sr_thread_rec);
} exited_threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sr_proc_rec);
} exited_procs SEC(".maps");

/* A process's latency while its leader is dead and the thread that
 * execs has not yet taken its place (see sr_exec), by tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct sc_hist_pair);
} carry SEC(".maps");

/* Scratch space for a process record, too big for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sr_proc_rec);
} scratch SEC(".maps");

/* A process dump record: header, then at most every bucket of both. */
struct proc_dump_buf {
	struct sr_proc_dump h;
	__s64 b[SR_NR_LAT * SR_HIST_BUCKETS];
	/* The walk (see struct bits_walk) and the counts in b so far. */
	struct bits_walk walk;
	__u32 fill;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proc_dump_buf);
} dump_buf SEC(".maps");


static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r, shift;

	r = (v > 0xFFFFFFFFULL) << 5; v >>= r;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u32 hist_bucket(__u64 v)
{
	__u32 msb;

	if (v < 8)
		return v;
	if (v >= (1ULL << SR_HIST_MAX_POW))
		return SR_HIST_BUCKETS - 1;
	msb = log2_u64(v);
	return 8 + (msb - 3) * 8 + ((v >> (msb - 3)) & 7);
}

static __always_inline int lat_path(__u8 outcome)
{
	return outcome >= SR_O_FIRST_IRET ? SR_LAT_IRET : SR_LAT_FAST;
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

static __always_inline __u32 syscall_slot(__u8 kind, __s64 nr)
{
	switch (kind) {
	case K_X64:
		return (nr >= 0 && nr < SR_SLOTS_X64 - 1) ? nr : SR_SLOTS_X64 - 1;
	case K_X32:
		nr &= ~X32_SYSCALL_BIT;
		return SR_SLOTS_X64 + SR_SLOTS_I386 +
		       ((nr >= 0 && nr < SR_SLOTS_X32 - 1) ? nr : SR_SLOTS_X32 - 1);
	default:
		return SR_SLOTS_X64 +
		       ((nr >= 0 && nr < SR_SLOTS_I386 - 1) ? nr : SR_SLOTS_I386 - 1);
	}
}

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

/* This CPU's histograms of a syscall slot, allocated on first use.
 * Per-CPU data, and programs do not nest on one CPU: no atomics. */
static __always_inline struct sc_hist_pair *sc_hist_for(struct sr_slot *sl)
{
	__u32 key = SR_NR_SLOTS, d;
	struct sr_slot *alloc;

	d = sl->hidx;
	if (!d) {
		alloc = bpf_map_lookup_elem(&syscalls, &key);
		if (!alloc)
			return NULL;
		if (alloc->hidx >= cfg.sc_hists) {
			lost.syscall_hists++;
			return NULL;
		}
		d = ++alloc->hidx;
		sl->hidx = d;
	}
	key = d - 1;
	return bpf_map_lookup_elem(&sc_hist, &key);
}

static __always_inline struct proc_state *proc_of(struct task_struct *task,
						  bool create)
{
	return bpf_task_storage_get(&pstate, task->group_leader, 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* Where a process's latency goes once its leader died in another
 * thread's execve (see sr_exec), until that thread takes it. */
static __always_inline struct sc_hist_pair *carry_of(struct task_struct *task)
{
	__u32 tgid = task->tgid;

	return bpf_map_lookup_elem(&carry, &tgid);
}

/* A thread's identity start (see task_state.start_ns). */
static __always_inline __u64 own_start(struct task_state *st,
				       struct task_struct *task)
{
	return st->start_ns ? st->start_ns : task->start_time;
}

/* Where a thread's state is while a hook runs: this CPU's cache (held
 * busy until release()), or its task storage. */
struct live {
	struct task_state *st;
	struct run_cache *c;
	__u32 cpu;
};

/* Load a thread's state from storage into this CPU's cache.  Counts
 * start at zero there: the cache keeps what is added until the flush. */
static __always_inline void claim(struct run_cache *c, struct task_state *st,
				  struct task_struct *task)
{
	c->st = *st;
	__builtin_memset(&c->st.counts, 0, sizeof(c->st.counts));
	c->h.owner = (__u64)task;
	c->h.tid = task->pid;
	c->h.tgid = task->tgid;
	c->h.start_ns = own_start(st, task);
	c->h.leader_start_ns = task->group_leader->start_time;
	bpf_probe_read_kernel_str(c->h.comm, sizeof(c->h.comm), task->comm);
}

/* Find the thread's state and hold it.  create: NULL to use only
 * existing state, else where to count a failed creation. */
static __always_inline bool acquire(struct live *l, struct task_struct *task,
				    __u64 *create)
{
	struct task_state *st;
	__u32 zero = 0;
	struct run_cache *c;

	/* The CPU first: a program moved to another CPU after this reads
	 * a CPU number that differs at release(), whatever cache it got. */
	l->cpu = bpf_get_smp_processor_id();
	c = bpf_map_lookup_elem(&run_cache, &zero);
	l->c = NULL;
	/* Held by a program preempted while using it: go to storage. */
	if (c && __sync_val_compare_and_swap(&c->h.busy, 0, 1) == 0) {
		if (c->h.owner == (__u64)task) {
			l->c = c;
			l->st = &c->st;
			return true;
		}
		if (!c->h.owner) {
			st = state_of(task, create != NULL, create);
			if (st) {
				claim(c, st, task);
				l->c = c;
				l->st = &c->st;
				return true;
			}
			c->h.busy = 0;
			return false;
		} else {
			/* Every owner is flushed when switched out: this
			 * should not happen.  Its deltas stay for user space. */
			__sync_fetch_and_add(&lost.cache, 1);

		}
		c->h.busy = 0;
	}
	l->st = state_of(task, create != NULL, create);
	return l->st != NULL;
}

static __always_inline void flush(struct run_cache *c,
				  struct task_struct *task);

/*
 * A program preempted while holding a cache may resume on another CPU
 * (syscall tracepoints can fault, so they run preemptible): the cache
 * it holds is then not its CPU's, and no switch-out there would flush
 * it.  Flush it here, while still holding it.
 */
static __always_inline void release(struct live *l, struct task_struct *task)
{
	if (!l->c)
		return;
	if (bpf_get_smp_processor_id() != l->cpu) {
		__sync_fetch_and_add(&lost.migrated, 1);
		flush(l->c, task);
	}
	l->c->h.busy = 0;
}

/* Mark bucket b used in a bitmap shared by CPUs: atomic, but only the
 * first time (a plain load finds it set every other time). */
static __always_inline void mark_bucket(__u64 *nz, __u32 b)
{
	__u64 bit;

	if (!IN_RANGE(b, SR_HIST_BUCKETS))
		return;
	bit = 1ULL << (b % 64);
	if (!(nz[b / 64] & bit))
		__sync_fetch_and_or(&nz[b / 64], bit);
}

enum { WALK_DONE, WALK_WORD, WALK_BIT };

static __always_inline int walk_step(struct bits_walk *bw, __u64 *words,
				     __u32 *p, __u32 *b)
{
	__u64 low;

	if (!bw->bits) {
		if (bw->next >= SR_NZ_WORDS)
			return WALK_DONE;
		if (bw->next) {
			if (++bw->w == SR_HIST_WORDS) {
				bw->w = 0;
				bw->p++;
			}
		}
		bw->cur = bw->next++;
		bw->bits = words[bw->cur];
		return WALK_WORD;
	}
	low = bw->bits & -bw->bits;
	bw->bits ^= low;
	*p = bw->p;
	*b = bw->w * 64 + log2_u64(low);
	return WALK_BIT;
}

struct fold_ctx {
	struct run_cache *c;
	struct proc_state *ps;	/* NULL: no storage, the counts are lost */
	struct sc_hist_pair *carry;	/* or, with ps NULL, there */
};

/* One step of moving the cached buckets to the process's histograms. */
static long fold_step(__u64 i, struct fold_ctx *f)
{
	__u64 *words = &f->c->h.ph_nz[0][0];
	__u32 p, b, cur;
	__s64 v;

	switch (walk_step(&f->c->walk, words, &p, &b)) {
	case WALK_DONE:
		return 1;
	case WALK_WORD:
		cur = f->c->walk.cur;
		if (cur < SR_NZ_WORDS)
			words[cur] = 0;
		return 0;
	}
	if (p >= SR_NR_LAT || b >= SR_HIST_BUCKETS)
		return 0;
	v = f->c->h.ph[p].b[b];
	f->c->h.ph[p].b[b] = 0;
	if (v && f->ps) {
		/* The bit first: a dump that sees the count sees its bucket
		 * (see sr_dump). */
		mark_bucket(f->ps->nz[p], b);
		__sync_fetch_and_add(&f->ps->hist[p].b[b], v);
	} else if (v && f->carry) {
		__sync_fetch_and_add(&f->carry->h[p].b[b], v);
	}
	return 0;
}

/* Move the cached state of `task` (the cache's owner) to its storage. */
static __always_inline void flush(struct run_cache *c, struct task_struct *task)
{
	struct task_state *st;
	struct sc_hist_pair *cp;
	struct proc_state *ps;
	struct sr_counts sum;
	__u32 dumped, p, w;
	__u64 used;
	int i;

	/* Already flushed (release() after an explicit flush). */
	if (c->h.owner != (__u64)task)
		return;
	st = bpf_task_storage_get(&tstate, task, 0, 0);
	if (st) {
		for (i = 0; i < SR_NR_OUTCOMES; i++)
			sum.n[i] = st->counts.n[i] + c->st.counts.n[i];
		dumped = st->dumped_seq;
		*st = c->st;
		st->counts = sum;
		/* c->st.seq moved on if anything was counted: only then
		 * is the thread dumped again. */
		st->dumped_seq = dumped;
	} else {
		/* Storage went away under the cache (it should not): the
		 * thread's returns are still in the per-CPU totals, shown
		 * as unattributed; say how many. */
		__s64 n = 0;

		for (i = 0; i < SR_NR_OUTCOMES; i++)
			n += c->st.counts.n[i];
		if (n > 0)
			__sync_fetch_and_add(&lost.storage, n);
	}
	used = 0;
	for (w = 0; w < SR_NZ_WORDS; w++)
		used |= (&c->h.ph_nz[0][0])[w];
	ps = NULL;
	cp = NULL;
	if (used || c->h.ph[0].sum_ns || c->h.ph[1].sum_ns) {
		ps = proc_of(task, true);
		if (ps && (ps->flags & P_MOVED)) {
			cp = carry_of(task);
			ps = NULL;
		}
	}
	if ((used || c->h.ph[0].sum_ns || c->h.ph[1].sum_ns) && !ps && !cp)
		__sync_fetch_and_add(&lost.proc_hists, 1);
	if (used) {
		struct fold_ctx f = { .c = c, .ps = ps, .carry = cp };

		c->walk = (struct bits_walk){};
		bpf_loop(SR_NZ_STEPS, fold_step, &f, 0);
	}
	for (p = 0; p < SR_NR_LAT; p++) {
		if (ps && c->h.ph[p].sum_ns)
			__sync_fetch_and_add(&ps->hist[p].sum_ns, c->h.ph[p].sum_ns);
		else if (cp && c->h.ph[p].sum_ns)
			__sync_fetch_and_add(&cp->h[p].sum_ns, c->h.ph[p].sum_ns);
		c->h.ph[p].sum_ns = 0;
	}
	/* After buckets and sums: a dump that missed them dumps again. */
	if (ps)
		ps->seq++;
	c->h.owner = 0;
}

/* Add one latency sample on path `path` (delta is always 1 now that
 * returns are counted once final; kept as the atomics' operand). */
static __always_inline void hist_add(struct live *l, struct task_struct *task,
				     struct sr_slot *sl, int path,
				     __u32 bucket, __s64 lat, __s64 delta,
				     bool create)
{
	struct sc_hist_pair *sh;
	struct proc_state *ps;
	struct run_cache *c = l->c;

	if (!IN_RANGE(bucket, SR_HIST_BUCKETS) || path >= SR_NR_LAT || path < 0)
		return;
	sh = sc_hist_for(sl);
	if (sh) {
		sh->h[path].b[bucket] += delta;
		sh->h[path].sum_ns += delta * lat;
	}
	if (c) {
		/* Per-CPU: no atomics; the flush folds it into the process. */
		c->h.ph[path].b[bucket] += delta;
		c->h.ph[path].sum_ns += delta * lat;
		c->h.ph_nz[path][bucket / 64] |= 1ULL << (bucket % 64);
		return;
	}
	ps = proc_of(task, create);
	if (ps && (ps->flags & P_MOVED)) {
		sh = carry_of(task);
		if (sh) {
			__sync_fetch_and_add(&sh->h[path].b[bucket], delta);
			__sync_fetch_and_add(&sh->h[path].sum_ns, delta * lat);
		}
		return;
	}
	if (ps) {
		/* Threads of one process share it: atomics. */
		mark_bucket(ps->nz[path], bucket);
		__sync_fetch_and_add(&ps->hist[path].b[bucket], delta);
		__sync_fetch_and_add(&ps->hist[path].sum_ns, delta * lat);
		ps->seq++;
	}
}

/* Announce a slot's first return on this CPU (see sr_slots_seen). */
static __always_inline void mark_seen(struct sr_slot *sl, __u32 slot)
{
	struct sr_slots_seen *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&slots_seen, &zero);
	if (!s || slot >= SR_NR_SLOTS)
		return;
	__sync_fetch_and_or(&s->w[slot / 64], 1ULL << (slot % 64));
	sl->seen = 1;
}

/* Count outcome o of slot `slot`; returns the slot for the histograms. */
static __always_inline struct sr_slot *counts_add(struct task_state *st,
						  __u32 slot, __u8 o)
{
	struct sr_slot *sl;
	__u32 i = o;

	if (i >= SR_NR_OUTCOMES)
		return NULL;
	sl = bpf_map_lookup_elem(&syscalls, &slot);
	/* Checked again at each use: 6.1's verifier loses the bound of a
	 * value reloaded after a helper call (see IN_RANGE). */
	if (sl) {
		if (!sl->seen)
			mark_seen(sl, slot);
		if (IN_RANGE(i, SR_NR_OUTCOMES))
			sl->c.n[i] += 1;
	}
	if (IN_RANGE(i, SR_NR_OUTCOMES))
		st->counts.n[i] += 1;
	st->seq++;
	return sl;
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
	if (st->last_bucket != NO_BUCKET && sl)
		hist_add(l, task, sl, lat_path(o), st->last_bucket,
			 st->last_lat, 1, true);
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
	if (!in_exit_path(st, task))
		publish(l, task);
	else if (task->__state & TASK_TRACED)
		set_stopped(st, true);
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
	st->last_ip = regs->ip;
	st->last_sp = regs->sp;
	st->last_ax = regs->ax;
	st->last_orig_ax = regs->orig_ax;
}

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

SEC("tp_btf/sys_enter")
int BPF_PROG(sr_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_state *st;
	struct live l;
	__u8 kind;

	if (task->tgid == cfg.self_tgid)
		return 0;
	if (!acquire(&l, task, &lost.entries))
		return 0;
	st = l.st;
	if (filtered_out(st, task)) {
		publish(&l, task);
		goto out;
	}
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
out:
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

	if (task->tgid == cfg.self_tgid)
		return 0;
	if (!acquire(&l, task, &lost.storage))
		return 0;
	st = l.st;
	if (filtered_out(st, task)) {
		publish(&l, task);
		goto out;
	}
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
	st->last_ip = regs->ip;
	st->last_sp = regs->sp;
	st->last_ax = regs->ax;
	st->last_orig_ax = regs->orig_ax;
	st->flags = flags | T_OPEN;
out:
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
		/* The frame decides, and rt_sigreturn puts RIP back. */
		promote(l.st, SR_O_SIGNAL);
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

static __always_inline void emit_thread_exit(struct task_state *st,
					     struct task_struct *task,
					     __s32 tid)
{
	struct sr_thread_rec rec = {};
	struct sr_thread_key key = {};

	rec.kind = SR_REC_THREAD;
	rec.tid = tid;
	rec.tgid = task->tgid;
	rec.start_ns = own_start(st, task);
	rec.leader_start_ns = task->group_leader->start_time;
	bpf_probe_read_kernel_str(rec.comm, sizeof(rec.comm), task->comm);
	rec.counts = st->counts;
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

struct emit_ctx {
	struct proc_state *ps;
	struct proc_dump_buf *buf;
};

/* One step of copying the process's buckets in use into its record. */
static long emit_step(__u64 i, struct emit_ctx *e)
{
	__u64 *words = &e->ps->nz[0][0];
	__u32 p, b, cur, off = e->buf->fill;

	switch (walk_step(&e->buf->walk, words, &p, &b)) {
	case WALK_DONE:
		return 1;
	case WALK_WORD:
		/* The record's bitmap is the word the walk goes by. */
		cur = e->buf->walk.cur;
		if (cur < SR_NZ_WORDS)
			(&e->buf->h.nz[0][0])[cur] = e->buf->walk.bits;
		return 0;
	}
	if (p >= SR_NR_LAT || b >= SR_HIST_BUCKETS ||
	    off >= SR_NR_LAT * SR_HIST_BUCKETS)
		return 1;
	e->buf->b[off] = e->ps->hist[p].b[b];
	e->buf->h.n[p]++;
	e->buf->fill = off + 1;
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
		rec.kind = SR_REC_THREAD;
		rec.tid = task->pid;
		rec.tgid = task->tgid;
		rec.start_ns = own_start(st, task);
		rec.leader_start_ns = task->group_leader->start_time;
		bpf_probe_read_kernel_str(rec.comm, sizeof(rec.comm), task->comm);
		rec.counts = st->counts;
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
