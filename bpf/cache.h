/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The per-CPU cache of the running thread's state (map run_cache, see
 * struct sr_live_head): holding it for one program, and flushing it to
 * task storage when its thread leaves the CPU.
 */
#ifndef __SR_CACHE_H
#define __SR_CACHE_H

#include "maps.h"
#include "hist.h"
#include "thread_state.h"

/* Load a thread's state from storage into this CPU's cache.  Counts
 * start at zero there: the cache keeps what is added until the flush. */
static __always_inline void claim(struct run_cache *c, struct task_state *st,
				  struct task_struct *task)
{
	c->st = *st;
	__builtin_memset(&c->st.counts, 0, sizeof(c->st.counts));
	c->h.owner = (__u64)task;
	thread_identity(st, task, task->pid, &c->h.tid, &c->h.tgid,
			&c->h.start_ns, &c->h.leader_start_ns, c->h.comm);
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
	bool has_lat;
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
	has_lat = used || c->h.ph[0].sum_ns || c->h.ph[1].sum_ns;
	ps = NULL;
	cp = NULL;
	if (has_lat) {
		ps = proc_of(task, true);
		if (ps && (ps->flags & P_MOVED)) {
			cp = carry_of(task);
			ps = NULL;
		}
		if (!ps && !cp)
			__sync_fetch_and_add(&lost.proc_hists, 1);
	}
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

#endif /* __SR_CACHE_H */
