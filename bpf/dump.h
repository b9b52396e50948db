/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The task iterator's process record (sr_dump): only the buckets in use.
 */
#ifndef __SR_DUMP_H
#define __SR_DUMP_H

#include "maps.h"
#include "hist.h"

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

#endif /* __SR_DUMP_H */
