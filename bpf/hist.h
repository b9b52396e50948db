/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Latency histograms (log-linear, see sysret.h): the bucket of a value,
 * the walk over a histogram's bitmap of buckets in use, and adding a
 * sample to the syscall's and the process's histograms.
 */
#ifndef __SR_HIST_H
#define __SR_HIST_H

#include "maps.h"

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

/* One step of the walk struct bits_walk describes (maps.h). */
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

/* The histograms of a syscall slot (shared by CPUs), handed out on
 * first use (struct sr_hist_index).  Two CPUs may hand out an entry to
 * one slot at once: the loser's entry stays unused, which costs one
 * entry, never a sample. */
static __always_inline struct sc_hist_pair *sc_hist_for(__u32 slot)
{
	struct sr_hist_index *hi;
	__u32 zero = 0, d, n, old;

	hi = bpf_map_lookup_elem(&hist_index, &zero);
	if (!hi || !IN_RANGE(slot, SR_NR_SLOTS))
		return NULL;
	d = hi->idx[slot];
	if (!d) {
		n = __sync_fetch_and_add(&hi->next, 1) + 1;
		if (n > cfg.sc_hists) {
			__sync_fetch_and_add(&lost.syscall_hists, 1);
			return NULL;
		}
		if (!IN_RANGE(slot, SR_NR_SLOTS))
			return NULL;
		old = __sync_val_compare_and_swap(&hi->idx[slot], 0, n);
		d = old ? old : n;
	}
	zero = d - 1;
	return bpf_map_lookup_elem(&sc_hist, &zero);
}

/* A process's state lives with its leader, where every thread finds it. */
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

/* Add one latency sample on path `path` (delta is always 1 now that
 * returns are counted once final; kept as the atomics' operand). */
static __always_inline void hist_add(struct live *l, struct task_struct *task,
				     __u32 slot, int path,
				     __u32 bucket, __s64 lat, __s64 delta,
				     bool create)
{
	struct sc_hist_pair *sh;
	struct proc_state *ps;
	struct run_cache *c = l->c;
	__u32 zero = 0;

	if (!IN_RANGE(bucket, SR_HIST_BUCKETS) || path >= SR_NR_LAT || path < 0)
		return;
	sh = sc_hist_for(slot);
	if (sh && IN_RANGE(bucket, SR_HIST_BUCKETS)) {
		__sync_fetch_and_add(&sh->h[path].b[bucket], delta);
		__sync_fetch_and_add(&sh->h[path].sum_ns, delta * lat);
	}
	/* Per-CPU, and programs do not nest on a CPU: no atomics. */
	sh = bpf_map_lookup_elem(&cpu_hist, &zero);
	if (sh && IN_RANGE(bucket, SR_HIST_BUCKETS)) {
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

#endif /* __SR_HIST_H */
