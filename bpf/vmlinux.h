/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The few kernel types sysretstat reads, written by hand.
 *
 * Why hand-written: the machines have BTF but no kernel headers, and a
 * full `bpftool btf dump` header is 135k lines that would pin the build
 * to one kernel.  CO-RE relocates every field below by name against the
 * running kernel's BTF at load time, so only names, sizes and
 * signedness must match; order and omitted fields do not matter.
 *
 * The guard must be __VMLINUX_H__: bpf_tracing.h picks the kernel's
 * pt_regs field names only when it is defined.
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;
typedef __s32 s32;
typedef int pid_t;
typedef _Bool bool;
#define true 1
#define false 0
/* bpf_helper_defs.h prototypes name these even where unused. */
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LRU_PERCPU_HASH = 10,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
	BPF_F_NO_PREALLOC = 1,
};

enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct pt_regs {
	unsigned long r11;
	unsigned long ax;
	unsigned long cx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	union {
		u16 cs;
		u64 csx;
	};
	unsigned long flags;
	unsigned long sp;
	union {
		u16 ss;
		u64 ssx;
	};
};

struct thread_info {
	unsigned long flags;
	unsigned long syscall_work;
	u32 status;
};

struct vdso_image {
	long sym_int80_landing_pad;
};

typedef struct {
	void *vdso;
	const struct vdso_image *vdso_image;
} mm_context_t;

struct mm_struct {
	mm_context_t context;
};

typedef struct {
	int counter;
} atomic_t;

typedef struct {
	unsigned long sig[1];	/* _NSIG / 64 on x86-64 */
} sigset_t;

struct sigpending {
	sigset_t signal;
};

struct signal_struct {
	atomic_t live;
	struct sigpending shared_pending;
	struct task_struct *group_exec_task;
};

struct callback_head;

struct kernfs_node {
	u64 id;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

struct task_struct {
	struct thread_info thread_info;
	unsigned int __state;
	unsigned int ptrace;
	struct mm_struct *mm;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *parent;
	struct task_struct *group_leader;
	struct signal_struct *signal;
	unsigned long ptrace_message;
	struct kernel_siginfo *last_siginfo;
	u64 start_time;
	char comm[16];
	sigset_t blocked;
	struct sigpending pending;
	unsigned long jobctl;
	struct callback_head *task_works;
	struct css_set *cgroups;
};

typedef void (*__sighandler_t)(int);

struct sigaction {
	__sighandler_t sa_handler;
	unsigned long sa_flags;
};

struct k_sigaction {
	struct sigaction sa;
};

struct kernel_siginfo {
	int si_signo;
	int si_errno;
	int si_code;
};
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	u64 session_id;
	u64 seq_num;
};

struct linux_binprm;

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
};

#pragma clang attribute pop

#endif /* __VMLINUX_H__ */
