// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * sysretstat: classify every return from a syscall to user mode as
 * SYSRET, IRET (with its reason) or ERETU, and time each path.
 *
 * A return is counted at raw_syscalls:sys_exit with a provisional
 * verdict from the registers as they are then.  Until the thread enters
 * the kernel again, later events may still change the registers the
 * kernel's guard will test (signal frame, restart, ptrace exit stop,
 * rseq fixup) or end the thread before it returns; each of those moves
 * the already counted return to its final outcome.  Counting eagerly
 * keeps every view live; corrections are rare, so their cost is not.
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
#define SIGTRAP		5
#define PTRACE_EVENTMSG_SYSCALL_EXIT 2

/* Thread state flags. */
#define T_IN_SYSCALL	0x01	/* sys_enter seen, sys_exit not yet */
#define T_NEW		0x02	/* forked; its first return is ahead */
#define T_OPEN		0x04	/* last return can still be corrected */
#define T_COMPAT_RESTART 0x08	/* next entry re-executes the vDSO int $0x80 */
#define T_EXITED	0x10
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
	__type(key, __u32);
	__type(value, struct sr_thread_rec);
} exited_threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sr_proc_rec);
} exited_procs SEC(".maps");

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

/* The filter state of a process by user space's selection. */
static __always_inline __u8 selection(__u32 tgid)
{
	__u8 *sel = bpf_map_lookup_elem(&filter_tgids, &tgid);

	if (!sel)
		return F_KNOWN;
	return F_KNOWN | F_IN | (*sel == FILTER_FOLLOW ? F_FOLLOW : 0);
}

/* Filters run in the context of the task itself (sys_enter/exit);
 * all that are set must match.  Only the pid filter is cached: a task
 * can change its cgroup and its name. */
static __always_inline bool filtered_out(struct task_state *st,
					 struct task_struct *task)
{
	int i;

	if (cfg.filter) {
		if (!(st->filter & F_KNOWN))
			st->filter = selection(task->tgid);
		if (!(st->filter & F_IN))
			return true;
	}
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

/* Where a thread's state is while a hook runs: this CPU's cache (held
 * busy until release()), or its task storage. */
struct live {
	struct task_state *st;
	struct run_cache *c;
	__u32 cpu;
};

/* Load a thread's state from storage into this CPU's cache.  Counts
 * start at zero there: the cache keeps what is added until the flush. */
static __always_inline struct task_state *claim(struct run_cache *c,
						struct task_struct *task,
						bool create)
{
	struct task_state *st;

	st = bpf_task_storage_get(&tstate, task, 0,
				  create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	if (!st)
		return NULL;
	c->st = *st;
	__builtin_memset(&c->st.counts, 0, sizeof(c->st.counts));
	c->h.owner = (__u64)task;
	c->h.tid = task->pid;
	c->h.tgid = task->tgid;
	c->h.start_ns = task->start_time;
	c->h.leader_start_ns = task->group_leader->start_time;
	bpf_probe_read_kernel_str(c->h.comm, sizeof(c->h.comm), task->comm);
	return &c->st;
}

static __always_inline bool acquire(struct live *l, struct task_struct *task,
				    bool create)
{
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
			l->st = claim(c, task, create);
			if (l->st) {
				l->c = c;
				return true;
			}
		} else {
			/* Every owner is flushed when switched out: this
			 * should not happen.  Its deltas stay for user space. */
			__sync_fetch_and_add(&lost.cache, 1);

		}
		c->h.busy = 0;
	}
	l->st = bpf_task_storage_get(&tstate, task, 0,
				     create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
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
	}
	return 0;
}

/* Move the cached state of `task` (the cache's owner) to its storage. */
static __always_inline void flush(struct run_cache *c, struct task_struct *task)
{
	struct task_state *st;
	struct proc_state *ps;
	struct sr_counts sum;
	__u32 dumped, p, w;
	__u64 used;
	int i;

	st = bpf_task_storage_get(&tstate, task, 0, 0);
	if (st) {
		for (i = 0; i < SR_NR_OUTCOMES; i++)
			sum.n[i] = st->counts.n[i] + c->st.counts.n[i];
		dumped = st->dumped_seq;
		*st = c->st;
		st->counts = sum;
		st->dumped_seq = dumped;
		st->seq++;
	}
	used = 0;
	for (w = 0; w < SR_NZ_WORDS; w++)
		used |= (&c->h.ph_nz[0][0])[w];
	ps = NULL;
	if (used || c->h.ph[0].sum_ns || c->h.ph[1].sum_ns)
		ps = proc_of(task, true);
	if (used) {
		struct fold_ctx f = { .c = c, .ps = ps };

		c->walk = (struct bits_walk){};
		bpf_loop(SR_NZ_STEPS, fold_step, &f, 0);
	}
	for (p = 0; p < SR_NR_LAT; p++) {
		if (ps && c->h.ph[p].sum_ns)
			__sync_fetch_and_add(&ps->hist[p].sum_ns, c->h.ph[p].sum_ns);
		c->h.ph[p].sum_ns = 0;
	}
	/* After buckets and sums: a dump that missed them dumps again. */
	if (ps)
		ps->seq++;
	c->h.owner = 0;
}

/* Add (delta = 1) or remove (-1) one latency sample on path `path`. */
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
						  __u32 slot, __u8 o,
						  __s64 delta)
{
	struct sr_slot *sl;

	if (o >= SR_NR_OUTCOMES)
		return NULL;
	sl = bpf_map_lookup_elem(&syscalls, &slot);
	if (sl) {
		if (!sl->seen)
			mark_seen(sl, slot);
		sl->c.n[o] += delta;
	}
	st->counts.n[o] += delta;
	st->seq++;
	return sl;
}

/*
 * Move the thread's last return to outcome `to`; `to` ==
 * SR_NR_OUTCOMES removes it (the thread died before returning).
 */
static __always_inline void recount(struct live *l,
				    struct task_struct *task, __u8 to)
{
	struct task_state *st = l->st;
	__u8 from = st->last_outcome;
	__u32 slot = st->last_slot;
	__u32 bucket = st->last_bucket;
	struct sr_slot *sl;

	if (from == to || from >= SR_NR_OUTCOMES)
		return;
	sl = counts_add(st, slot, from, -1);
	if (to < SR_NR_OUTCOMES)
		counts_add(st, slot, to, 1);
	if (bucket != NO_BUCKET && sl) {
		if (to >= SR_NR_OUTCOMES) {
			hist_add(l, task, sl, lat_path(from), bucket,
				 st->last_lat, -1, false);
		} else if (lat_path(from) != lat_path(to)) {
			hist_add(l, task, sl, lat_path(from), bucket,
				 st->last_lat, -1, false);
			hist_add(l, task, sl, lat_path(to), bucket,
				 st->last_lat, 1, false);
		}
	}
	st->last_outcome = to;
}

/* Raise the last return to event outcome `to` if it outranks it. */
static __always_inline void promote(struct live *l,
				    struct task_struct *task, __u8 to)
{
	if (rank(to) > rank(l->st->last_outcome))
		recount(l, task, to);
}

/*
 * Is `task` still on the way out of the syscall whose return we
 * counted?  Interrupt and exception frames have orig_ax == -1, a new
 * syscall has its own number and return address; only rt_sigreturn
 * (orig_ax == -1 too) leaves a window, at the first user instruction.
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

/*
 * A traced task is switched back in.  If it sits in a syscall-exit stop
 * of the return we counted, its tracer has resumed it and can no longer
 * touch its registers (PTRACE_SINGLESTEP has put TF in them already):
 * run the guard again on them.  Seen from the tracee, this needs no
 * tracer pid (any pid namespace, any tracer ABI); untraced tasks pay
 * one field test per context switch.
 */
static __always_inline void ptrace_resumed(struct task_struct *tracee)
{
	struct kernel_siginfo *info;
	struct task_state *st;
	struct pt_regs *regs;
	struct live l;
	int code;
	__u8 o;

	/* Not running, so flushed: its state is in storage. */
	st = bpf_task_storage_get(&tstate, tracee, 0, 0);
	if (!st || !(st->flags & T_OPEN))
		return;
	l.st = st;
	l.c = NULL;
	/* A syscall-exit stop: message 2, and the stop's siginfo code
	 * SIGTRAP(|0x80) with no PTRACE_EVENT in bits 8-15 (event stops can
	 * carry 2 as their message too).  Both are cleared by the tracee
	 * once it runs again; exit_code is no help: the tracer's waitpid()
	 * has cleared it. */
	info = tracee->last_siginfo;
	if (!info || tracee->ptrace_message != PTRACE_EVENTMSG_SYSCALL_EXIT)
		return;
	code = info->si_code;
	if ((code & 0xff00) || (code & 0x7f) != SIGTRAP)
		return;
	regs = (struct pt_regs *)bpf_task_pt_regs(tracee);
	if (!regs || regs->orig_ax != st->last_orig_ax)
		return;
	/* Only a return the guard would pass, or one a tracer already
	 * changed, is the tracer's doing. */
	if (st->last_outcome == SR_O_SYSRET || st->last_outcome == SR_O_PTRACE) {
		o = (st->flags & T_FAST32) ? guard32(regs, st->enter_ip)
					   : guard64(regs, false);
		recount(&l, tracee, o == SR_O_SYSRET ? SR_O_SYSRET : SR_O_PTRACE);
	}
	/* Later events compare against the registers as the tracer left
	 * them (it may have changed the return value, say). */
	st->last_ip = regs->ip;
	st->last_sp = regs->sp;
	st->last_ax = regs->ax;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sr_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	__u32 zero = 0;
	struct run_cache *c = bpf_map_lookup_elem(&run_cache, &zero);

	if (c) {
		c->h.switches++;
		/* Busy: prev was preempted inside one of our programs and
		 * will resume here (programs run with migration disabled):
		 * its state stays, and others use storage meanwhile. */
		if (c->h.owner == (__u64)prev && !c->h.busy)
			flush(c, prev);

	}
	if (next->ptrace)
		ptrace_resumed(next);
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
	if (!acquire(&l, task, true)) {
		__sync_fetch_and_add(&lost.storage, 1);
		return 0;
	}
	st = l.st;
	if (filtered_out(st, task))
		goto out;
	if (task->thread_info.status & TS_COMPAT) {
		__u64 pad = landing_pad(task);

		/* The vDSO's int $0x80 returns to the landing pad too:
		 * after a restart of a fast syscall, that is what runs. */
		if (regs->ip == pad && pad && !(st->flags & T_COMPAT_RESTART))
			kind = K_FAST32;
		else
			kind = K_INT80;
		st->enter_ip = pad;
	} else if (x32_nr(regs->orig_ax)) {
		kind = K_X32;
	} else {
		kind = K_X64;
	}
	st->enter_kind = kind;
	st->enter_nr = id;
	st->enter_ts = bpf_ktime_get_ns();
	st->flags = (st->flags & ~(T_OPEN | T_COMPAT_RESTART)) | T_IN_SYSCALL;
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
	__u32 slot, bucket = NO_BUCKET;
	struct sr_slot *sl;
	struct live l;

	if (task->tgid == cfg.self_tgid)
		return 0;
	if (!acquire(&l, task, true)) {
		__sync_fetch_and_add(&lost.storage, 1);
		return 0;
	}
	st = l.st;
	if (filtered_out(st, task))
		goto out;
	flags = st->flags;
	if (flags & T_IN_SYSCALL) {
		kind = st->enter_kind;
		nr = st->enter_nr;
		landing = st->enter_ip;
		if (cfg.latency)
			lat = bpf_ktime_get_ns() - st->enter_ts;
	} else {
		/* No entry seen: a new task, or attached mid-syscall. */
		nr = (__s64)regs->orig_ax;
		landing = 0;
		if (task->thread_info.status & TS_COMPAT) {
			landing = landing_pad(task);
			kind = (regs->ip == landing &&
				!(flags & T_COMPAT_RESTART)) ? K_FAST32 : K_INT80;
		} else {
			kind = x32_nr(regs->orig_ax) ? K_X32 : K_X64;
		}
	}

	if (cfg.fred)
		o = SR_O_ERETU;
	else if (flags & T_NEW)
		o = SR_O_FORK_CHILD;	/* ret_from_fork always IRETs */
	else if (cfg.xen_pv)
		o = SR_O_XEN_PV;
	else if (kind == K_INT80)
		o = SR_O_INT80;
	else if (restart_code(ret) && (long)regs->orig_ax != -1 &&
		 ((flags & T_IN_SYSCALL) || !cfg.latency || !st->seq))
		/* Unless a handler runs (then: signal), the kernel moves
		 * RIP back over the syscall instruction; RCX is untouched.
		 * Only a syscall body returns ERESTART*: a call seccomp
		 * answered with errno 512-516 never ran (no sys_enter) and
		 * is not restarted.  A thread's first return may come from
		 * a syscall entered before tracing began: one that ran.
		 * Counts-only mode sees no entries: it cannot tell. */
		o = SR_O_RESTART;
	else if (kind == K_FAST32)
		o = guard32(regs, landing);
	else
		o = guard64(regs, false);

	flags &= ~(T_IN_SYSCALL | T_NEW | T_COMPAT_RESTART | T_FAST32);
	if (o == SR_O_RESTART && kind == K_FAST32)
		flags |= T_COMPAT_RESTART;
	if (kind == K_FAST32)
		flags |= T_FAST32;
	st->enter_ip = landing;

	slot = syscall_slot(kind, nr);
	sl = counts_add(st, slot, o, 1);
	if (lat >= 0 && sl) {
		bucket = hist_bucket(lat);
		hist_add(&l, task, sl, lat_path(o), bucket, lat, 1, true);
	}

	st->last_outcome = o;
	st->last_slot = slot;
	st->last_bucket = bucket;
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

/* A signal handler frame is being built: for the syscall return we
 * counted, if the thread is still on its way out. */
SEC("tp_btf/signal_deliver")
int BPF_PROG(sr_signal_deliver, int sig, struct kernel_siginfo *info,
	     struct k_sigaction *ka)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct live l;

	/* SIG_DFL (0) and SIG_IGN (1) build no frame. */
	if ((unsigned long)ka->sa.sa_handler <= 1)
		return 0;
	if (!acquire(&l, task, false))
		return 0;
	if (in_exit_path(l.st, task))
		promote(&l, task, SR_O_SIGNAL);
	release(&l, task);
	return 0;
}

SEC("tp_btf/rseq_ip_fixup")
int BPF_PROG(sr_rseq_ip_fixup, unsigned long regs_ip, unsigned long start_ip,
	     unsigned long post_commit_offset, unsigned long abort_ip)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct live l;

	if (!acquire(&l, task, false))
		return 0;
	if (in_exit_path(l.st, task))
		promote(&l, task, SR_O_RSEQ);
	release(&l, task);
	return 0;
}

/*
 * A fault from user mode: the thread is back in the kernel, so its last
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

	if (!acquire(&l, task, false))
		return 0;
	l.st->flags &= ~T_OPEN;
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
		if (acquire(&l, parent, false)) {
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
			filter = F_KNOWN;
	}
	st = bpf_task_storage_get(&tstate, child, 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st) {
		__sync_fetch_and_add(&lost.storage, 1);
		return 0;
	}
	st->flags = T_NEW;
	st->filter = filter;
	return 0;
}

static __always_inline void emit_thread_exit(struct task_state *st,
					     struct task_struct *task)
{
	struct sr_thread_rec rec = {}, *old;
	__u32 tid = task->pid;
	int i;

	rec.kind = SR_REC_THREAD;
	rec.tid = tid;
	rec.tgid = task->tgid;
	rec.start_ns = task->start_time;
	rec.leader_start_ns = task->group_leader->start_time;
	bpf_probe_read_kernel_str(rec.comm, sizeof(rec.comm), task->comm);
	rec.counts = st->counts;
	if (bpf_map_update_elem(&exited_threads, &tid, &rec, BPF_NOEXIST) == 0)
		return;
	/* The tid was reused before user space drained the first record:
	 * keep the counts, if not the name. */
	old = bpf_map_lookup_elem(&exited_threads, &tid);
	if (!old) {
		__sync_fetch_and_add(&lost.exited_threads, 1);
		return;
	}
	for (i = 0; i < SR_NR_OUTCOMES; i++)
		old->counts.n[i] += rec.counts.n[i];
}

static __always_inline void emit_proc_exit(struct task_struct *task)
{
	struct task_struct *leader = task->group_leader;
	struct proc_state *ps;
	struct sr_proc_rec *rec;
	__u32 zero = 0, tgid = task->tgid;

	ps = bpf_task_storage_get(&pstate, leader, 0, 0);
	if (!ps)
		return;
	ps->flags |= T_EXITED;
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return;
	rec->kind = SR_REC_PROC;
	rec->tgid = tgid;
	rec->start_ns = leader->start_time;
	bpf_probe_read_kernel_str(rec->comm, sizeof(rec->comm), leader->comm);
	bpf_probe_read_kernel(rec->hist, sizeof(rec->hist), ps->hist);
	if (bpf_map_update_elem(&exited_procs, &tgid, rec, BPF_NOEXIST))
		__sync_fetch_and_add(&lost.exited_procs, 1);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sr_exit, struct task_struct *task)
{
	struct task_state *st;
	/* do_exit() drops signal->live before this tracepoint; reading it
	 * works on kernels whose tracepoint has no group_dead argument. */
	bool group_dead = task->signal->live.counter == 0;
	struct live l;

	if (!acquire(&l, task, false))
		return 0;
	/* Killed on the way out of a syscall: that return never happened. */
	if (!(l.st->flags & T_EXITED) && in_exit_path(l.st, task))
		recount(&l, task, SR_NR_OUTCOMES);
	/* The records below are read from storage: flush the cache. */
	if (l.c) {
		flush(l.c, task);
		release(&l, task);
	}
	st = bpf_task_storage_get(&tstate, task, 0, 0);
	if (!st || (st->flags & T_EXITED))
		return 0;
	st->flags = (st->flags & ~T_OPEN) | T_EXITED;
	if (st->seq)
		emit_thread_exit(st, task);
	if (group_dead)
		emit_proc_exit(task);
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
		rec.start_ns = task->start_time;
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
