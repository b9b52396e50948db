/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The kernel/user contract of sysretstat: every constant and structure
 * that crosses the boundary.  sysretstat/kernel/abi.py mirrors this file,
 * and tests/test_abi.py checks the mirror against the object's BTF.
 * Fixed-width types only: the layout must not depend on the compiler.
 */
#ifndef __SYSRET_H
#define __SYSRET_H

#define SR_COMM_LEN 16

/*
 * One outcome per return: SYSRET, ERETU, or IRET with its reason.
 * Counting outcomes (not paths and reasons separately) makes the spec's
 * invariants hold by construction: paths.iret == sum(reasons).
 */
enum sr_outcome {
	SR_O_SYSRET = 0,
	SR_O_ERETU,
	SR_O_XEN_PV,			/* first IRET reason */
	SR_O_RCX_NE_RIP,
	SR_O_R11_NE_RFLAGS,
	SR_O_CS_NOT_USER,
	SR_O_SS_NOT_USER,
	SR_O_RIP_NONCANONICAL,
	SR_O_RFLAGS_RF,
	SR_O_RFLAGS_TF,
	SR_O_FORK_CHILD,
	SR_O_SIGNAL,
	SR_O_RESTART,
	SR_O_PTRACE,
	SR_O_RSEQ,
	SR_O_INT80,
	SR_O_COMPAT_GUARD,
	SR_NR_OUTCOMES,
};
#define SR_O_FIRST_IRET SR_O_XEN_PV

/* Syscall ABI of an entry. */
enum sr_abi {
	SR_ABI_X64 = 0,
	SR_ABI_I386 = 1,
	SR_ABI_X32 = 2,
	SR_NR_ABIS,
};

/*
 * Per-syscall slots: [0,512) x86-64, [512,1024) i386, [1024,1600) x32
 * (x32's own calls are numbered 512 to 547).  The last slot of each
 * range holds returns whose number is unknown (-1, e.g. a return seen
 * without its entry after rt_sigreturn) or out of range.
 */
#define SR_SLOTS_X64 512
#define SR_SLOTS_I386 512
#define SR_SLOTS_X32 576
#define SR_NR_SLOTS (SR_SLOTS_X64 + SR_SLOTS_I386 + SR_SLOTS_X32)

/*
 * Latency histograms, log-linear: values below 8 ns have a bucket each;
 * above, each power of two [2^k, 2^(k+1)) is split into 8 equal
 * sub-buckets, up to 2^42 ns (73 min); the last bucket holds the rest.
 * A percentile read from a bucket is within 12.5% of the truth.
 */
#define SR_HIST_SUB_BITS 3
#define SR_HIST_MAX_POW 42
#define SR_HIST_BUCKETS (8 + (SR_HIST_MAX_POW - 3) * 8 + 1)

/* Bitmaps of a histogram's buckets: bit i set when bucket i may be
 * non-zero, so that copies visit the few buckets used, not all 321. */
#define SR_HIST_WORDS ((SR_HIST_BUCKETS + 63) / 64)

/* Latency paths: SYSRET (or ERETU on FRED kernels) and IRET. */
#define SR_LAT_FAST 0
#define SR_LAT_IRET 1
#define SR_NR_LAT 2

struct sr_counts {
	/* Signed for user space's deltas; the kernel only adds. */
	__s64 n[SR_NR_OUTCOMES];
};

/*
 * Value of the per-CPU `syscalls` table, the one place returns are
 * counted per syscall and CPU; totals and the per-CPU view are its sums.
 * Per CPU, so that counting takes no atomic; it is the one per-CPU
 * table whose size follows the syscall table (latency is shared, see
 * sr_hist_index).
 */
struct sr_slot {
	struct sr_counts c;
	__u32 seen;	/* this CPU has set the slot's bit in slots_seen */
	__u32 pad;
};

/*
 * Value of the one-entry `hist_index` array.  A syscall's latency
 * histograms are one entry of `sc_hist`, shared by all CPUs (atomic
 * adds; with hot syscalls sampled, few), handed out on the slot's first
 * sample: idx[slot] is 1 + its entry (0: none yet), next the number
 * handed out.  Memory then follows the syscalls that run, not the CPU
 * count; each CPU's own latency is the per-CPU `cpu_hist`.
 */
struct sr_hist_index {
	__u32 next;
	__u32 idx[SR_NR_SLOTS];
};

/*
 * Value of the one-entry `slots_seen` array: bit s is set once slot s
 * has been counted on any CPU, so that user space reads the few dozen
 * slots a host uses rather than all of them on every CPU.  A slot's bit
 * is set before its first return is counted anywhere.
 */
struct sr_slots_seen {
	__u64 w[SR_NR_SLOTS / 64];
};

struct sr_hist {
	__s64 sum_ns;
	__s64 b[SR_HIST_BUCKETS];
};

/*
 * A CPU's cache of the thread running on it (map run_cache): the state
 * of the thread that owns it, claimed at the thread's first hook after
 * it was switched in and flushed to task storage when it is switched
 * out, so that a syscall touches only per-CPU arrays.  User space reads
 * owner identity, the latency deltas ph and the count deltas, which
 * storage does not have yet.  busy is held (cmpxchg) by a program using
 * the cache: one preempted there keeps others, and the flush, away.
 */
struct sr_live_head {
	__u64 owner;		/* task_struct address; 0: none */
	__s32 tid;
	__s32 tgid;
	__u64 start_ns;
	__u64 leader_start_ns;
	char comm[SR_COMM_LEN];
	struct sr_hist ph[SR_NR_LAT];	/* process latency, not yet flushed */
	__u64 ph_nz[SR_NR_LAT][SR_HIST_WORDS];	/* buckets of ph used */
	__u32 busy;
	__u32 pad;
	/* Not written (nothing reads it): kept so that the layout, which
	 * sysretstat/kernel/abi.py mirrors, stays as it is. */
	__u64 switches;
};

struct sr_live {
	struct sr_live_head h;
	struct sr_counts counts;	/* the thread's returns, not yet flushed */
};

/* Configuration, set by user space before load (.rodata.cfg). */
struct sr_config {
	__u64 task_size_max;	/* first address the SYSRET guard refuses */
	__u32 self_tgid;	/* the collector's own process, never counted */
	__u32 sc_hists;		/* entries of the per-syscall histogram table */
	__u8 fred;		/* every return is ERETU */
	__u8 xen_pv;		/* every return is IRET */
	__u8 pre_6_7;		/* guard is the old canonical-address test */
	__u8 la57;		/* 5-level paging (57-bit addresses) */
	__u8 latency;		/* sys_enter attached: histograms kept */
	__u8 filter;		/* only tasks whose tgid is in filter_tgids */
	__u8 follow_forks;	/* unused: filter_tgids values say (2 = follow) */
	__u8 cgroup_level;	/* depth of cgroup_id below the cgroup2 root */
	__u64 cgroup_id;	/* only tasks in this cgroup v2 subtree (0: all) */
	char comm[SR_COMM_LEN];	/* only tasks of this name ("": all) */
};

/* Counters of what could not be kept, in .bss. */
struct sr_lost {
	__u64 exited_threads;	/* drain map full at a thread's exit */
	__u64 exited_procs;	/* drain map full at a process's exit */
	__u64 storage;		/* returns without task storage (memory) */
	__u64 syscall_hists;	/* samples without room in sc_hist */
	__u64 entries;		/* syscall entries without task storage:
				 * those calls are counted, not timed */
	__u64 cache;		/* a CPU cache found owned but not flushed */
	__u64 migrated;		/* programs that ended on another CPU (counted, not lost) */
	__u64 proc_hists;	/* flushes of latency without process storage */
	__u64 details;		/* returns whose reason detail had no room */
};

/*
 * Records the task iterator writes, and the exit-time records user
 * space drains from exited_threads / exited_procs.  A dump is a stream
 * of records, each starting with its kind.
 */
enum sr_rec_kind {
	SR_REC_THREAD = 1,
	SR_REC_PROC = 2,
};

/* Key of exited_threads: a tid with its start, as a tid is reused. */
struct sr_thread_key {
	__s32 tid;
	__u32 pad;
	__u64 start_ns;
};

struct sr_thread_rec {
	__u32 kind;
	__s32 tid;
	__s32 tgid;
	__u32 pad;
	__u64 start_ns;		/* with tid, tells a reused tid apart */
	__u64 leader_start_ns;	/* with tgid, names the process */
	char comm[SR_COMM_LEN];
	struct sr_counts counts;
	__u64 cgroup_id;	/* its cgroup v2 (kernfs id: the directory's inode) */
};

/*
 * What a return of an IRET reason was, where the reason says more: the
 * key of the `details` map, whose value counts returns (__u64).  One
 * entry per thread, syscall slot, CPU, reason and detail, so that user
 * space can sum them into every table; it deletes a thread's entries
 * once it has drained the thread's exit record (the last return of a
 * thread is published before that record is written).
 */
#define SR_FORK_PROCESS 1
#define SR_FORK_THREAD 2

struct sr_detail_key {
	__s32 tid;
	__s32 tgid;
	__u64 start_ns;		/* as in sr_thread_rec */
	__u64 leader_start_ns;
	__u32 cpu;
	__u16 slot;
	__u8 outcome;
	__u8 pad;
	__u32 code;		/* signal: its number; restart: the errno
				 * (512 ERESTARTSYS...); fork_child: SR_FORK_* */
	__u32 pad2;
	char tracer[SR_COMM_LEN];	/* ptrace: the tracer's comm */
};

/* A process at exit (exited_procs): its latency, dense. */
struct sr_proc_rec {
	__u32 kind;
	__s32 tgid;
	__u64 start_ns;
	char comm[SR_COMM_LEN];
	/* Counts are the sum of the process's threads; this holds latency. */
	struct sr_hist hist[SR_NR_LAT];
};

/*
 * A live process in a task dump: the same, but each histogram as the
 * bitmap of its buckets in use and their counts only.  The header is
 * followed by n[0] then n[1] __s64 counts, of the buckets whose bits
 * are set in nz[0] and nz[1], in increasing bucket order.
 */
struct sr_proc_dump {
	__u32 kind;
	__s32 tgid;
	__u64 start_ns;
	char comm[SR_COMM_LEN];
	__s64 sum_ns[SR_NR_LAT];
	__u64 nz[SR_NR_LAT][SR_HIST_WORDS];
	__u16 n[SR_NR_LAT];
	__u32 pad;
};

#endif /* __SYSRET_H */
