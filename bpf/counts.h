/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Counting a published return: its syscall slot, and the per-CPU and
 * per-thread counts of its outcome.
 */
#ifndef __SR_COUNTS_H
#define __SR_COUNTS_H

#include "maps.h"
#include "guard.h"

/* Out-of-range numbers share their range's last slot, so that a count is
 * never dropped for want of one. */
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

#endif /* __SR_COUNTS_H */
