// SPDX-License-Identifier: GPL-2.0
/* A program every verifier must reject: it indexes a 4-element map value
 * with an unbounded offset.  tests/test_verifier_errors.py loads it. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[4]);
} vals SEC(".maps");

SEC("tp_btf/sys_exit")
int BPF_PROG(sr_reject, struct pt_regs *regs, long ret)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&vals, &zero);

	if (!v)
		return 0;
	return v[ret & 0xff];
}
