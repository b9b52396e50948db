/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The state the programs keep: the private types, the flags in them, and
 * the maps and globals that hold them.  Every other header works on
 * these, so they come first and in one place.  The types here are free
 * to change (user space sees only the sysret.h types they embed); the
 * names, types and sizes of the maps and globals are not: user space
 * finds and sizes them by name.
 */
#ifndef __SR_MAPS_H
#define __SR_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sysret.h"

/* Thread state flags. */
#define T_IN_SYSCALL	0x01	/* sys_enter seen, sys_exit not yet */
#define T_NEW		0x02	/* forked; its first return is ahead */
#define T_OPEN		0x04	/* last return held: not yet counted */
#define T_STOPPED	0x08	/* ptrace-stopped on that return's way out */
#define T_EXITED	0x10
#define T_RESTARTING	0x20	/* the kernel will move RIP back to re-run it */
#define T_PROC		0x40	/* its process's state exists */
#define T_FAST32	0x80	/* the last return was a compat fast syscall's */

/* proc_state flags (T_EXITED too). */
#define P_MOVED		0x20	/* latency handed to the carry map */

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
	/* For the open return's reason detail: the last signal whose
	 * frame was built on its way out, and who ptrace-stopped it there
	 * (read when it stopped: the tracer may detach before it runs). */
	__u32 sig;
	__u32 pad2;
	char tracer[SR_COMM_LEN];
};

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

/* A CPU's cache of its running thread's state (see sr_live_head in
 * sysret.h: user space reads this value as struct sr_live). */
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

/* Where a thread's state is while a hook runs: this CPU's cache (held
 * busy until release()), or its task storage. */
struct live {
	struct task_state *st;
	struct run_cache *c;
	__u32 cpu;
};

const volatile struct sr_config cfg SEC(".rodata.cfg") = {};

/* One copy for every CPU: only atomic adds keep its counts whole. */
struct sr_lost lost = {};
/* Per syscall slot: sys_enter times 1 in 2^shift of the slot's calls
 * (0: every call); user space chooses the shifts each interval.  A
 * section of its own: written while the programs run. */
__u8 sample_shift[SR_NR_SLOTS] SEC(".data.sample") = {};
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

/* One slot per syscall (sysret.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SR_NR_SLOTS);
	__type(key, __u32);
	__type(value, struct sr_slot);
} syscalls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sr_hist_index);
} hist_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sr_slots_seen);
} slots_seen SEC(".maps");

struct sc_hist_pair {
	struct sr_hist h[SR_NR_LAT];
};

/* Shared by CPUs (see struct sr_hist_index). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 512);	/* resized from cfg.sc_hists */
	__type(key, __u32);
	__type(value, struct sc_hist_pair);
} sc_hist SEC(".maps");

/* Each CPU's latency, all syscalls together (the per-CPU view). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sc_hist_pair);
} cpu_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} filter_tgids SEC(".maps");

/* Reason detail counts (struct sr_detail_key).  Only returns of the
 * reasons that have one get here: signals, restarts, tracer edits and
 * fork children, a few per thread; no preallocation. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct sr_detail_key);
	__type(value, __u64);
} details SEC(".maps");

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

#endif /* __SR_MAPS_H */
