// SPDX-License-Identifier: GPL-2.0
/*
 * diffgen - a seeded, randomized differential workload for sysretstat.
 *
 *   usage: diffgen SEED STEPS OUT.json [KINDS]
 *
 * From SEED a deterministic generator picks STEPS events that decide how
 * syscalls return to user mode (plain SYSRET returns, signal frames, edited
 * sigreturn frames, restarts, fork/vfork/clone children and threads, exec
 * from the leader and from another thread, ptrace edits, rseq aborts,
 * migrations, int $0x80 and 32-bit tasks) and, while it runs, counts its OWN
 * expected returns per (ABI, syscall number, outcome) and per CPU.  At the
 * end it writes them to OUT.json.  sysretstat, recording the same run, must
 * agree exactly (tests/test_differential.py).
 *
 * KINDS is "all" (the default) or a comma-separated list of event kinds
 * (see kind_name[]); a kind may be prefixed with '-' to remove it from all.
 *
 * How the expectation stays exact:
 *  - The program is freestanding (no libc): every syscall any of its tasks
 *    makes is one of ours, issued with the "syscall" instruction (or
 *    int $0x80 / the 32-bit vDSO in 32-bit code).
 *  - A return is counted by the task itself right AFTER it came back to
 *    user mode, in a MAP_SHARED memfd that every process, thread and exec'd
 *    image of the run maps.  A syscall that never returns (exit, a task
 *    killed by exec's de_thread) is thus never counted.  Syscalls whose
 *    number depends on timing (polling /proc for a task to block) are
 *    counted as they happen, so only the outcome of each must be known.
 *  - No task is killed between a return and its count: only while it
 *    sleeps in a syscall, spins after counting, or before its return
 *    reaches user mode (exec_preempt, selfkill: those returns never happen).
 *  - rt_sigreturn is counted by the signal handler, which knows the frame
 *    it leaves behind.  Restarts with no handler are counted by the task
 *    that made them happen (one SIGSTOP/SIGCONT cycle while the syscall
 *    sleeps = one restart).
 *  - Every task is pinned to one CPU (sched_setaffinity, inherited by
 *    children and threads, kept across exec), so the CPU of each return is
 *    known too; only the first image's execve and sched_getaffinity return
 *    before the first pin ("unpinned").
 *  - Where user space can check the path independently it does: after a
 *    64-bit return, RCX == RIP and R11 == RFLAGS (or exactly the edited
 *    values), SS after an LDT edit, the trap address after a TF edit, the
 *    frame a handler sees.  Any surprise exits 1 with a message on stderr.
 *
 * The kernel facts behind each outcome are in tests/workloads/README.md
 * (section "diffgen").  Build: see the Makefile (diffgen and diffgen32 are
 * both built from this file; the 32-bit image is the part under __i386__).
 */
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef int32_t s32;
typedef uint64_t u64;
typedef int64_t s64;

/* ------------------------------------------------------------------ */
/* Shared between the 64-bit and the 32-bit image                       */
/* ------------------------------------------------------------------ */

enum { ABI_X64, ABI_I386, N_ABI };
static __attribute__((unused)) const char *const abi_name[N_ABI] = { "x64", "i386" };

enum outcome {
	O_SYSRET, O_RCX, O_R11, O_CS, O_SS, O_RIP, O_RF, O_TF,
	O_FORK, O_SIGNAL, O_RESTART, O_PTRACE, O_RSEQ, O_INT80, O_COMPAT,
	N_OUT
};
static __attribute__((unused)) const char *const out_name[N_OUT] = {
	"sysret", "rcx_ne_rip", "r11_ne_rflags", "cs_not_user", "ss_not_user",
	"rip_noncanonical", "rflags_rf", "rflags_tf", "fork_child", "signal",
	"restart", "ptrace", "rseq", "int80", "compat_guard",
};

/* Event kinds: the unit the test enables, disables or marks xfail. */
enum kind {
	K_PLAIN, K_SIGNAL, K_FAULT, K_FAULT_SIGRETURN, K_RESTART_THREAD, K_RESTART_CHILD,
	K_FORK, K_VFORK, K_THREAD, K_EXEC, K_EXEC_THREAD, K_PTRACE, K_RSEQ,
	K_MIGRATE, K_COMPAT, K_INT80, K_SECCOMP, K_STOP, K_PARALLEL,
	K_ORPHAN, K_SELFKILL, K_EXEC_PREEMPT, N_KIND
};
static __attribute__((unused)) const char *const kind_name[N_KIND] = {
	"plain", "signal", "fault", "fault_sigreturn", "restart_thread",
	"restart_child",
	"fork", "vfork", "thread", "exec", "exec_thread", "ptrace", "rseq",
	"migrate", "compat", "int80", "seccomp", "stop", "parallel", "orphan",
	"selfkill", "exec_preempt",
};
static __attribute__((unused)) const u8 kind_weight[N_KIND] = {
	[K_PLAIN] = 40, [K_SIGNAL] = 14, [K_FAULT] = 4, [K_FAULT_SIGRETURN] = 2,
	[K_RESTART_THREAD] = 3, [K_RESTART_CHILD] = 4, [K_FORK] = 4,
	[K_VFORK] = 3, [K_THREAD] = 5, [K_EXEC] = 2, [K_EXEC_THREAD] = 2,
	[K_PTRACE] = 3, [K_RSEQ] = 2, [K_MIGRATE] = 5, [K_COMPAT] = 2,
	[K_INT80] = 3, [K_SECCOMP] = 2, [K_STOP] = 2, [K_PARALLEL] = 2,
	[K_ORPHAN] = 2, [K_SELFKILL] = 2, [K_EXEC_PREEMPT] = 1,
};

/* Variants, tallied for the report (what a seed actually exercised). */

/* Variant tallies: names printed in the JSON. */
enum var {
	V_SIG_TGKILL, V_SIG_KILL, V_SIG_UNBLOCK, V_SIG_NESTED, V_SIG_PENDING,
	V_EDIT0, /* + enum edit */
	V_FAULT0 = V_EDIT0 + 8, /* + enum fault */
	V_FAULT_AFTER_SIGNAL = V_FAULT0 + 6,
	V_RT_RESTART, V_RT_EINTR,
	V_RC_READ, V_RC_NANOSLEEP, V_RC_PAUSE, V_RC_CYCLES,
	V_RC_WAKE_WRITE, V_RC_WAKE_EINTR, V_RC_WAKE_RESTART,
	V_FORK_CLONE, V_FORK_FORK, V_FORK_CLONE3, V_FORK_EXEC,
	V_VFORK_VFORK, V_VFORK_CLONE, V_VFORK_EXEC,
	V_THREAD_CLONE, V_THREAD_CLONE3,
	V_EXEC_EXECVE, V_EXEC_EXECVEAT,
	V_EXEC_THREAD_SPIN, V_EXEC_THREAD_BLOCKED,
	V_PTRACE0, /* + enum pedit */
	V_RSEQ_ABORT_ = V_PTRACE0 + 5,
	V_RSEQ_ABORT = V_RSEQ_ABORT_, V_RSEQ_NOABORT, V_RSEQ_EARLY,
	V_MIGRATE,
	V_COMPAT_INT80, V_COMPAT_FAST, V_COMPAT_EXIT, V_COMPAT_EXEC_INT80,
	V_COMPAT_EXEC_FAST,
	V_INT80,
	V_THREAD_FIRST_SIGNAL, V_THREAD_FIRST_SIGNAL_LATE,
	V_PTRACE_SYSEMU,
	V_COMPAT_SIG_FAST, V_COMPAT_SIG_INT80,
	V_SECCOMP_ERRNO, V_SECCOMP_TRAP, V_SECCOMP_ERRNO512, V_SECCOMP_TRACE,
	V_SECCOMP_ALLOW,
	V_STOP_PLAIN, V_STOP_CONT_HANDLER,
	V_PAR_THREADS, V_PAR_SHARED_CPU, V_PAR_FORK,
	V_ORPHAN, V_EXEC_ENOENT, V_FINISH_THREAD,
	V_SELFKILL_KILL, V_SELFKILL_TERM, V_SELFKILL_THREAD,
	V_EXEC_PREEMPT, V_EXEC_PREEMPT_NORT,
	N_VARS
};
static __attribute__((unused)) const char *const var_name[N_VARS] = {
	[V_SIG_TGKILL] = "signal.tgkill", [V_SIG_KILL] = "signal.kill",
	[V_SIG_UNBLOCK] = "signal.unblock", [V_SIG_NESTED] = "signal.nested",
	[V_SIG_PENDING] = "signal.pending_at_sigreturn",
	[V_EDIT0 + 0] = "edit.none", [V_EDIT0 + 1] = "edit.rcx",
	[V_EDIT0 + 2] = "edit.r11", [V_EDIT0 + 3] = "edit.cs",
	[V_EDIT0 + 4] = "edit.ss", [V_EDIT0 + 5] = "edit.rip",
	[V_EDIT0 + 6] = "edit.rf", [V_EDIT0 + 7] = "edit.tf",
	[V_FAULT0 + 1] = "fault.ud2",
	[V_FAULT0 + 2] = "fault.int3", [V_FAULT0 + 3] = "fault.hlt",
	[V_FAULT0 + 4] = "fault.pagefault", [V_FAULT0 + 5] = "fault.div0",
	[V_FAULT_AFTER_SIGNAL] = "fault.after_sigreturn",
	[V_RT_RESTART] = "restart_thread.sa_restart",
	[V_RT_EINTR] = "restart_thread.eintr",
	[V_RC_READ] = "restart_child.read",
	[V_RC_NANOSLEEP] = "restart_child.nanosleep",
	[V_RC_PAUSE] = "restart_child.pause",
	[V_RC_CYCLES] = "restart_child.stop_cont_cycles",
	[V_RC_WAKE_WRITE] = "restart_child.wake_write",
	[V_RC_WAKE_EINTR] = "restart_child.wake_signal_eintr",
	[V_RC_WAKE_RESTART] = "restart_child.wake_signal_sa_restart",
	[V_FORK_CLONE] = "fork.clone", [V_FORK_FORK] = "fork.fork",
	[V_FORK_CLONE3] = "fork.clone3", [V_FORK_EXEC] = "fork.exec",
	[V_VFORK_VFORK] = "vfork.vfork", [V_VFORK_CLONE] = "vfork.clone_vm",
	[V_VFORK_EXEC] = "vfork.exec",
	[V_THREAD_CLONE] = "thread.clone", [V_THREAD_CLONE3] = "thread.clone3",
	[V_EXEC_EXECVE] = "exec.execve", [V_EXEC_EXECVEAT] = "exec.execveat",
	[V_EXEC_THREAD_SPIN] = "exec_thread.leader_spinning",
	[V_EXEC_THREAD_BLOCKED] = "exec_thread.leader_blocked_in_read",
	[V_PTRACE0 + 0] = "ptrace.untouched", [V_PTRACE0 + 1] = "ptrace.rcx",
	[V_PTRACE0 + 2] = "ptrace.r11",
	[V_PTRACE0 + 3] = "ptrace.setregs_unchanged",
	[V_PTRACE0 + 4] = "ptrace.rcx_poked_back",
	[V_RSEQ_ABORT] = "rseq.abort", [V_RSEQ_NOABORT] = "rseq.no_abort",
	[V_RSEQ_EARLY] = "rseq.abort_before_syscall",
	[V_MIGRATE] = "migrate",
	[V_COMPAT_INT80] = "compat.int80", [V_COMPAT_FAST] = "compat.fast",
	[V_COMPAT_EXIT] = "compat.exit",
	[V_COMPAT_EXEC_INT80] = "compat.exec64_int80",
	[V_COMPAT_EXEC_FAST] = "compat.exec64_fast",
	[V_INT80] = "int80_from_64bit",
	[V_THREAD_FIRST_SIGNAL] = "thread.signal_at_first_return",
	[V_THREAD_FIRST_SIGNAL_LATE] = "thread.signal_after_first_return",
	[V_PTRACE_SYSEMU] = "ptrace.sysemu",
	[V_COMPAT_SIG_FAST] = "compat.signal_fast",
	[V_COMPAT_SIG_INT80] = "compat.signal_int80",
	[V_SECCOMP_ERRNO] = "seccomp.errno", [V_SECCOMP_TRAP] = "seccomp.trap",
	[V_SECCOMP_ERRNO512] = "seccomp.errno512",
	[V_SECCOMP_TRACE] = "seccomp.trace_no_tracer",
	[V_SECCOMP_ALLOW] = "seccomp.allowed",
	[V_STOP_PLAIN] = "stop.self_stop",
	[V_STOP_CONT_HANDLER] = "stop.sigcont_handler",
	[V_PAR_THREADS] = "parallel.threads",
	[V_PAR_SHARED_CPU] = "parallel.threads_sharing_a_cpu",
	[V_PAR_FORK] = "parallel.fork_from_thread",
	[V_ORPHAN] = "orphan.grandchild", [V_EXEC_ENOENT] = "exec.enoent_first",
	[V_FINISH_THREAD] = "finish.exit_group_from_thread",
	[V_SELFKILL_KILL] = "selfkill.sigkill",
	[V_SELFKILL_TERM] = "selfkill.sigterm_default",
	[V_SELFKILL_THREAD] = "selfkill.other_thread_asleep",
	[V_EXEC_PREEMPT] = "exec_preempt.leader_write_never_returns",
	[V_EXEC_PREEMPT_NORT] = "exec_preempt.no_sched_fifo_fallback",
};

#define NR_SLOTS 512
#define N_CPU 64
#define SHM_MAGIC 0x64696667u
#define SHM_SIZE (256 * 1024)

struct shm {
	u32 magic;
	u32 rseq_stop;		/* rseq event: tells the yielding sibling to stop */
	u32 handled;		/* SIGUSR1 handlers run in other processes */
	u32 pad;
	u32 cnt[N_ABI][NR_SLOTS][N_OUT];
	u32 untimed[N_ABI][NR_SLOTS][2];	/* no sys_enter: [sysret, iret] */
	u32 cpu[N_CPU][N_OUT];
	u32 unpinned[N_OUT];
	u32 kinds[N_KIND];
	u32 vars[N_VARS];
};

static struct shm *g_shm;
static __attribute__((unused)) int g_cpu_main = -1;	/* CPU of the main stack's task, -1 = unpinned */

/* ------------------------------------------------------------------ */
/* Freestanding helpers                                                 */
/* ------------------------------------------------------------------ */

void *memset(void *d, int c, size_t n)
{
	volatile u8 *p = d;

	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	volatile u8 *p = d;
	const u8 *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

static size_t slen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

static __attribute__((unused)) int seq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static __attribute__((unused)) const char *sstr(const char *h, const char *n)
{
	size_t ln = slen(n);

	for (; *h; h++) {
		size_t i = 0;

		while (i < ln && h[i] == n[i])
			i++;
		if (i == ln)
			return h;
	}
	return 0;
}

/* A small append-only text buffer (no allocation). */
struct sb {
	char *p;
	size_t len, cap;
};

static void sb_put(struct sb *b, const char *s)
{
	while (*s && b->len + 1 < b->cap)
		b->p[b->len++] = *s++;
	b->p[b->len] = 0;
}

static void sb_u64(struct sb *b, u64 v, int base)
{
	char t[24];
	int i = 0;

	do {
		t[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (i && b->len + 1 < b->cap)
		b->p[b->len++] = t[--i];
	b->p[b->len] = 0;
}

static void sb_s64(struct sb *b, s64 v)
{
	if (v < 0) {
		sb_put(b, "-");
		sb_u64(b, (u64)-v, 10);
	} else {
		sb_u64(b, (u64)v, 10);
	}
}

static int parse_u64(const char *s, int base, u64 *out)
{
	u64 v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else
			return -1;
		if (d >= base)
			return -1;
		v = v * base + d;
	}
	*out = v;
	return 0;
}

/*
 * xorshift64*, seeded through splitmix64: the whole run follows from SEED.
 * A thread has its own state (seeded by its creator), so threads that run
 * at the same time do not share one.
 */
static u64 g_rng;
static u64 *rng_state(void);

static u64 rnd(void)
{
	u64 *st = rng_state(), x = *st;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*st = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static u32 below(u32 n)
{
	return n ? (u32)((rnd() >> 32) % n) : 0;
}

static __attribute__((unused)) void seed_rng(u64 seed)
{
	u64 z = seed + 0x9E3779B97F4A7C15ULL;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	z ^= z >> 31;
	g_rng = z ? z : 1;
}

static void add(u32 *p, u32 v)
{
	__atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

static void tally_var(int v)
{
	if (g_shm && v >= 0 && v < N_VARS)
		add(&g_shm->vars[v], 1);
}

static int cur_cpu(void);
static void die(const char *what, long a, long b);
static void count(int abi, int nr, int out);

/* A return whose syscall never passed sys_enter (seccomp, PTRACE_SYSEMU). */
static __attribute__((unused)) void count_untimed(int abi, int nr, int out)
{
	count(abi, nr, out);
	add(&g_shm->untimed[abi][nr][out == O_SYSRET ? 0 : 1], 1);
}

/*
 * One return, of syscall nr in ABI abi, that took outcome out.  A new
 * task's first return has no sys_enter, so no latency sample.
 */
static void count(int abi, int nr, int out)
{
	int cpu = cur_cpu();

	if (nr < 0 || nr >= NR_SLOTS)
		die("syscall number out of range", nr, out);
	add(&g_shm->cnt[abi][nr][out], 1);
	if (out == O_FORK)
		add(&g_shm->untimed[abi][nr][1], 1);
	if (cpu < 0)
		add(&g_shm->unpinned[out], 1);
	else
		add(&g_shm->cpu[cpu][out], 1);
}

/* ------------------------------------------------------------------ */
#ifdef __x86_64__
/* ------------------------------------------------------------------ */

/* x86-64 syscall numbers */
#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_mmap 9
#define NR_mprotect 10
#define NR_rt_sigaction 13
#define NR_rt_sigprocmask 14
#define NR_rt_sigreturn 15
#define NR_access 21
#define NR_sched_yield 24
#define NR_pause 34
#define NR_nanosleep 35
#define NR_getpid 39
#define NR_clone 56
#define NR_fork 57
#define NR_vfork 58
#define NR_execve 59
#define NR_exit 60
#define NR_wait4 61
#define NR_kill 62
#define NR_uname 63
#define NR_ftruncate 77
#define NR_getcwd 79
#define NR_readlink 89
#define NR_umask 95
#define NR_gettimeofday 96
#define NR_getrlimit 97
#define NR_sysinfo 99
#define NR_ptrace 101
#define NR_getuid 102
#define NR_getgid 104
#define NR_geteuid 107
#define NR_getegid 108
#define NR_getppid 110
#define NR_getpgrp 111
#define NR_getpgid 121
#define NR_getsid 124
#define NR_getpriority 140
#define NR_sched_setscheduler 144
#define NR_modify_ldt 154
#define NR_prctl 157
#define NR_gettid 186
#define NR_time 201
#define NR_futex 202
#define NR_sched_setaffinity 203
#define NR_sched_getaffinity 204
#define NR_restart_syscall 219
#define NR_clock_gettime 228
#define NR_exit_group 231
#define NR_tgkill 234
#define NR_openat 257
#define NR_pipe2 293
#define NR_seccomp 317
#define NR_getrandom 318
#define NR_memfd_create 319
#define NR_execveat 322
#define NR_rseq 334
#define NR_clone3 435
#define NR_unassigned 500	/* -ENOSYS, reported as sys_500 */

/* i386 numbers used through int $0x80 from 64-bit code */
#define NR32_getpid 20
#define NR32_getppid 64
#define NR32_gettid 224

#define SIGILL 4
#define SIGTRAP 5
#define SIGFPE 8
#define SIGUSR1 10
#define SIGSEGV 11
#define SIGUSR2 12
#define SIGCHLD 17
#define SIGCONT 18
#define SIGSTOP 19
#define SIGSYS 31

#define SA_SIGINFO 0x4UL
#define SA_RESTORER 0x04000000UL
#define SA_RESTART 0x10000000UL

#define EINTR 4
#define EAGAIN 11
#define ENOSYS 38

#define CLONE_VM 0x100UL
#define CLONE_FS 0x200UL
#define CLONE_FILES 0x400UL
#define CLONE_SIGHAND 0x800UL
#define CLONE_VFORK 0x4000UL
#define CLONE_THREAD 0x10000UL
#define CLONE_SYSVSEM 0x40000UL
#define CLONE_PARENT_SETTID 0x100000UL
#define CLONE_CHILD_CLEARTID 0x200000UL
#define THREAD_FLAGS (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | \
		      CLONE_THREAD | CLONE_SYSVSEM | CLONE_PARENT_SETTID | \
		      CLONE_CHILD_CLEARTID)

#define O_RDONLY 0
#define O_WRONLY 1
#define O_CREAT 0100
#define O_TRUNC 01000
#define O_CLOEXEC 02000000
#define AT_FDCWD (-100)

#define WUNTRACED 2
#define WCONTINUED 8

#define PTRACE_TRACEME 0
#define PTRACE_PEEKUSER 3
#define PTRACE_POKEUSER 6
#define PTRACE_GETREGS 12
#define PTRACE_SETREGS 13
#define PTRACE_SYSCALL 24
#define PTRACE_SYSEMU 31
#define PTRACE_SETOPTIONS 0x4200
#define PTRACE_GET_SYSCALL_INFO 0x420e
#define PTRACE_O_TRACESYSGOOD 1
#define PTRACE_O_EXITKILL 0x100000
/* offsets in struct user_regs_struct */
#define U_R11 48
#define U_RAX 80
#define U_RCX 88
#define U_ORIG_RAX 120
#define U_RIP 128
#define U_EFLAGS 144

/* ucontext: uc_flags 0, uc_link 8, uc_stack 16..40, uc_mcontext 40 */
#define UC_MCONTEXT 40
#define UC_STRICT_RESTORE_SS 0x4UL
enum {
	G_R8, G_R9, G_R10, G_R11, G_R12, G_R13, G_R14, G_R15, G_RDI, G_RSI,
	G_RBP, G_RBX, G_RDX, G_RAX, G_RCX, G_RSP, G_RIP, G_EFL, G_CSGSFS,
	N_GREGS_SAVED
};

/* Selectors and flags (arch/x86/include/asm/segment.h, processor-flags.h) */
#define USER32_CS 0x23
#define LDT_SS 0x07		/* LDT entry 0, RPL 3 */
#define EFL_CF 0x1UL
#define EFL_TF 0x100UL
#define EFL_RF 0x10000UL
#define FIX_EFLAGS 0x50dd5UL	/* what rt_sigreturn takes from the frame */
#define BAD_RIP 0x8000000000000000UL

#define SCHED_FIFO 1
#define RSEQ_SIG 0x53053053u

static long rsys(long nr, long a1, long a2, long a3, long a4, long a5,
		 long a6)
{
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10),
			   "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define S0(n) rsys((n), 0, 0, 0, 0, 0, 0)
#define S1(n, a) rsys((n), (long)(a), 0, 0, 0, 0, 0)
#define S2(n, a, b) rsys((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define S3(n, a, b, c) rsys((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define S4(n, a, b, c, d) \
	rsys((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define S5(n, a, b, c, d, e) \
	rsys((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)
#define S6(n, a, b, c, d, e, f) \
	rsys((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), \
	     (long)(f))

/* A syscall that returns normally (SYSRET), counted after it returned. */
static long C0(int n)
{
	long r = S0(n);

	count(ABI_X64, n, O_SYSRET);
	return r;
}
#define C1(n, a) (cnt_sysret(n, S1(n, a)))
#define C2(n, a, b) (cnt_sysret(n, S2(n, a, b)))
#define C3(n, a, b, c) (cnt_sysret(n, S3(n, a, b, c)))
#define C4(n, a, b, c, d) (cnt_sysret(n, S4(n, a, b, c, d)))
#define C5(n, a, b, c, d, e) (cnt_sysret(n, S5(n, a, b, c, d, e)))
#define C6(n, a, b, c, d, e, f) (cnt_sysret(n, S6(n, a, b, c, d, e, f)))

static long cnt_sysret(int n, long r)
{
	count(ABI_X64, n, O_SYSRET);
	return r;
}

static void __attribute__((noreturn)) exit_group(int code)
{
	for (;;)
		S1(NR_exit_group, code);
}

/* --- where am I: main stack or one of the thread stacks -------------- */

#define N_TSTACK 4
#define TSTACK_SIZE (64 * 1024)
static u8 g_tstack[N_TSTACK][TSTACK_SIZE] __attribute__((aligned(64)));

struct tctx {
	int used;
	int cpu;
	int tid;
	volatile int ctid;	/* kernel clears it at exit (CLONE_CHILD_CLEARTID) */
	int nr;			/* clone or clone3: the first return's syscall */
	u64 rng;
	void (*fn)(struct tctx *);
	long arg[8];
};
static struct tctx g_tctx[N_TSTACK];
static u8 *g_low_stack;		/* see setup_low_code() */
static struct tctx *g_low_owner;

static struct tctx *my_tctx(void)
{
	u8 *sp;

	__asm__ volatile("mov %%rsp, %0" : "=r"(sp));
	for (int i = 0; i < N_TSTACK; i++)
		if (sp >= g_tstack[i] && sp < g_tstack[i] + TSTACK_SIZE)
			return &g_tctx[i];
	if (g_low_stack && sp >= g_low_stack && sp < g_low_stack + 3 * 4096)
		return g_low_owner;	/* the SIGILL handler of an E_CS event */
	return 0;
}

static int cur_cpu(void)
{
	struct tctx *t = my_tctx();

	return t ? t->cpu : g_cpu_main;
}

static u64 *rng_state(void)
{
	struct tctx *t = my_tctx();

	return t ? &t->rng : &g_rng;
}

static void set_cur_cpu(int cpu)
{
	struct tctx *t = my_tctx();

	if (t)
		t->cpu = cpu;
	else
		g_cpu_main = cpu;
}

/* --- identity and error reporting ----------------------------------- */

static u64 g_seed;
static long g_step = -1;
static const char *g_what = "setup";
static int g_pid;		/* tgid of this process (image) */
static char g_self[512];	/* this executable */
static char g_self32[520];	/* the 32-bit image, g_self + "32" */

static void __attribute__((noreturn)) die(const char *what, long a, long b)
{
	char buf[512];
	struct sb s = { buf, 0, sizeof(buf) };

	sb_put(&s, "diffgen: seed ");
	sb_u64(&s, g_seed, 10);
	sb_put(&s, " step ");
	sb_s64(&s, g_step);
	sb_put(&s, " (");
	sb_put(&s, g_what);
	sb_put(&s, ") pid ");
	sb_s64(&s, S0(NR_gettid));
	sb_put(&s, ": ");
	sb_put(&s, what);
	sb_put(&s, " [");
	sb_s64(&s, a);
	sb_put(&s, " 0x");
	sb_u64(&s, (u64)b, 16);
	sb_put(&s, "]\n");
	S3(NR_write, 2, buf, s.len);
	exit_group(1);
}

#define CHECK(cond, msg, a, b) \
	do { if (!(cond)) die(msg, (long)(a), (long)(b)); } while (0)

/* --- checked syscalls: RCX/R11 as they are right after the return ---- */

struct after {
	long ax;
	u64 rcx, r11, lab, fl, ss;
};

/*
 * One syscall with up to four arguments, and what user space sees right
 * after it: RAX, RCX, R11, the return address (label 1), RFLAGS and SS.
 * The "nop" is the single instruction that runs before a TF trap.
 */
static inline __attribute__((always_inline)) void
xsys(long nr, long a1, long a2, long a3, long a4, struct after *o)
{
	register u64 r11 __asm__("r11");
	register long r10 __asm__("r10") = a4;
	u64 rcx, lab, fl, ss;
	long ax;

	__asm__ volatile("lea 1f(%%rip), %[lab]\n\t"
			 "syscall\n"
			 "1:\tnop\n\t"
			 "pushfq\n\t"
			 "popq %[fl]\n\t"
			 "mov %%ss, %k[ss]"
			 : "=a"(ax), "=c"(rcx), "=r"(r11), [lab] "=&r"(lab),
			   [fl] "=&r"(fl), [ss] "=&r"(ss), "+r"(r10)
			 : "0"(nr), "D"(a1), "S"(a2), "d"(a3)
			 : "memory", "cc");
	o->ax = ax;
	o->rcx = rcx;
	o->r11 = r11;
	o->lab = lab;
	o->fl = fl;
	o->ss = ss & 0xffff;
}

/* A plain return: user space sees RCX == RIP and R11 == RFLAGS. */
static void expect_plain(const struct after *a)
{
	CHECK(a->rcx == a->lab, "RCX is not the return address", a->rcx,
	      a->lab);
	CHECK(a->r11 == a->fl, "R11 is not RFLAGS", a->r11, a->fl);
}

static long xplain(int nr, long a1, long a2, long a3, long a4)
{
	struct after a;

	xsys(nr, a1, a2, a3, a4, &a);
	expect_plain(&a);
	count(ABI_X64, nr, O_SYSRET);
	return a.ax;
}

/* --- plain syscalls -------------------------------------------------- */

static const short plain_nrs[] = {
	NR_getppid, NR_getpid, NR_gettid, NR_getuid, NR_getgid, NR_geteuid,
	NR_getegid, NR_getpgrp, NR_getsid, NR_getpgid, NR_uname, NR_getcwd,
	NR_clock_gettime, NR_gettimeofday, NR_time, NR_sysinfo,
	NR_getpriority, NR_umask, NR_getrlimit, NR_sched_yield, NR_close,
	NR_read, NR_unassigned, NR_getrandom, NR_sched_getaffinity,
};
#define N_PLAIN ((int)(sizeof(plain_nrs) / sizeof(plain_nrs[0])))

static void plain_one(int nr)
{
	long r;
	u8 b[512] __attribute__((aligned(16)));

	switch (nr) {
	case NR_uname:
	case NR_sysinfo:
		r = xplain(nr, (long)b, 0, 0, 0);
		CHECK(r == 0, "uname/sysinfo failed", r, nr);
		break;
	case NR_getcwd:
		r = xplain(nr, (long)b, 256, 0, 0);
		break;
	case NR_clock_gettime:
		r = xplain(nr, 1, (long)b, 0, 0);
		CHECK(r == 0, "clock_gettime failed", r, 0);
		break;
	case NR_gettimeofday:
		r = xplain(nr, (long)b, 0, 0, 0);
		break;
	case NR_getrlimit:
		r = xplain(nr, 7, (long)b, 0, 0);
		break;
	case NR_getpriority:
		r = xplain(nr, 0, 0, 0, 0);
		break;
	case NR_umask:
		r = xplain(nr, 022, 0, 0, 0);
		break;
	case NR_close:
	case NR_read:
		r = xplain(nr, -1, (long)b, 1, 0);
		CHECK(r == -9, "close/read(-1) did not fail with EBADF", r, nr);
		break;
	case NR_unassigned:
		r = xplain(nr, 0, 0, 0, 0);
		CHECK(r == -ENOSYS, "unassigned syscall did not give ENOSYS",
		      r, nr);
		break;
	case NR_getrandom:
		r = xplain(nr, (long)b, 8, 1, 0);
		break;
	case NR_sched_getaffinity:
		r = xplain(nr, 0, 8, (long)b, 0);
		CHECK(r == 8, "sched_getaffinity", r, 0);
		CHECK(*(u64 *)b == 1ULL << cur_cpu(), "not pinned as expected",
		      cur_cpu(), *(u64 *)b);
		break;
	default:
		r = xplain(nr, 0, 0, 0, 0);
		CHECK(r >= 0, "plain syscall failed", r, nr);
		break;
	}
	(void)r;
}

static void plain_burst(int n)
{
	for (int i = 0; i < n; i++)
		plain_one(plain_nrs[below(N_PLAIN)]);
}

/* --- signal handling ------------------------------------------------- */

struct ksigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	u64 mask;
};

void sig_restorer(void);
__asm__(".pushsection .text\n"
	".globl sig_restorer\n"
	"sig_restorer:\n"
	"	movl $15, %eax\n"	/* rt_sigreturn */
	"	syscall\n"
	"	ud2\n"
	".popsection\n");

/* Blocking syscall with a known return address, for restart checks. */
long blk_syscall(long nr, long a1, long a2, long a3);
extern char blk_syscall_ret[];
__asm__(".pushsection .text\n"
	".globl blk_syscall\n"
	"blk_syscall:\n"
	"	movq %rdi, %rax\n"
	"	movq %rsi, %rdi\n"
	"	movq %rdx, %rsi\n"
	"	movq %rcx, %rdx\n"
	"	syscall\n"
	".globl blk_syscall_ret\n"
	"blk_syscall_ret:\n"
	"	ret\n"
	".popsection\n");

/*
 * A syscall immediately followed by a faulting instruction.  The handler of
 * the fault moves RIP to the matching _resume label.
 */
#define FAULT_STUB(name, insn) \
	"	.globl " #name "\n" \
	#name ":\n" \
	"	movq %rdi, %rax\n" \
	"	movq %rsi, %rdi\n" \
	"	movq %rdx, %rsi\n" \
	"	movq %rcx, %rdx\n" \
	"	syscall\n" \
	"	.globl " #name "_site\n" \
	#name "_site:\n" \
	"	" insn "\n" \
	"	.globl " #name "_resume\n" \
	#name "_resume:\n" \
	"	ret\n"
__asm__(".pushsection .text\n"
	FAULT_STUB(fault_ud2, "ud2")
	FAULT_STUB(fault_int3, "int3")
	FAULT_STUB(fault_hlt, "hlt")
	FAULT_STUB(fault_pf, "cmpb $0, 0x0")
	FAULT_STUB(fault_de, "divl fault_zero(%rip)")
	".popsection\n"
	".pushsection .rodata\n"
	".p2align 2\n"
	"fault_zero: .long 0\n"
	".popsection\n");
long fault_ud2(long, long, long, long);
long fault_int3(long, long, long, long);
long fault_hlt(long, long, long, long);
long fault_pf(long, long, long, long);
long fault_de(long, long, long, long);
extern char fault_ud2_site[], fault_ud2_resume[];
extern char fault_int3_site[], fault_int3_resume[];
extern char fault_hlt_site[], fault_hlt_resume[];
extern char fault_pf_site[], fault_pf_resume[];
extern char fault_de_site[], fault_de_resume[];

enum edit { E_NONE, E_RCX, E_R11, E_CS, E_SS, E_RIP, E_RF, E_TF, N_EDIT };
static const u8 edit_out[N_EDIT] = {
	O_SYSRET, O_RCX, O_R11, O_CS, O_SS, O_RIP, O_RF, O_TF
};

enum pmode { PM_SYNC, PM_RESTART_READ, PM_WAKE, PM_FIRST };
extern char thread_clone_ret[], thread_clone3_ret[];
enum fault { F_NONE, F_UD2, F_INT3, F_HLT, F_PF, F_DE, N_FAULT };

/* What the handlers are to do; written before each event. */
struct plan {
	int mode;
	int edit;
	int pending2;		/* handler raises a blocked SIGUSR2 */
	int nested2;		/* handler raises an unblocked SIGUSR2 */
	int in_nested;
	int pending_out;	/* outcome of the SIGUSR2 handler's sigreturn */
	int restart;		/* PM_RESTART_READ/PM_WAKE: SA_RESTART handler */
	int blk_nr;		/* the syscall the frame must show */
	int fault;		/* F_*: a fault follows the syscall */
	int tid;		/* the thread the event runs in */
	volatile long usr1_runs, usr2_runs, rec_runs, sys_runs, cont_runs;
	volatile int first_done, first_at_fork;
	volatile u64 usr1_rip, trap_rip, set_rcx, set_r11;
	u64 saved[N_GREGS_SAVED];
};
static struct plan g_plan;

/*
 * E_CS: a page below 4 GiB with "ud2", run in compat mode, and a stack
 * below 4 GiB for the SIGILL frame (leaving compat mode does not keep the
 * upper half of RSP).
 */
#define LOW_SIZE (4 * 4096)
static u8 *g_low_code;
static int g_ldt_ready;		/* E_SS: LDT entry 0 installed */

static inline u64 read_rflags(void)
{
	u64 f;

	__asm__ volatile("pushfq; popq %0" : "=r"(f));
	return f;
}

/* RFLAGS after rt_sigreturn restores a frame whose flags are 'saved'. */
static u64 flags_after_sigreturn(u64 saved)
{
	return (read_rflags() & ~FIX_EFLAGS) | (saved & FIX_EFLAGS);
}

static u64 *gregs(void *uc)
{
	return (u64 *)((u8 *)uc + UC_MCONTEXT);
}

static void frame_set_sel(u64 *g, int shift, u64 sel)
{
	g[G_CSGSFS] = (g[G_CSGSFS] & ~(0xffffUL << shift)) | (sel << shift);
}

/* Make the handler's sigreturn go back to RIP with RCX/R11 passing. */
static void frame_sysret_ready(u64 *g)
{
	g[G_EFL] &= ~(EFL_TF | EFL_RF);
	g[G_RCX] = g[G_RIP];
	g[G_R11] = flags_after_sigreturn(g[G_EFL]);
}

/*
 * The outcome of rt_sigreturn restoring frame g as it is: do_syscall_64's
 * checks in the kernel's order (4-level TASK_SIZE_MAX; user code here is
 * far below it either way).
 */
static int guard_outcome(u64 *g)
{
	u64 flags = flags_after_sigreturn(g[G_EFL]);

	if (g[G_RCX] != g[G_RIP])
		return O_RCX;
	if (g[G_R11] != flags)
		return O_R11;
	if ((g[G_CSGSFS] & 0xffff) != 0x33)
		return O_CS;
	if ((g[G_CSGSFS] >> 48) != 0x2b)
		return O_SS;
	if (g[G_RIP] >= 0x00007ffffffff000UL)
		return O_RIP;
	if (flags & EFL_RF)
		return O_RF;
	if (flags & EFL_TF)
		return O_TF;
	return O_SYSRET;
}

static void on_usr2(int sig, void *si, void *ucv)
{
	struct plan *p = &g_plan;

	(void)sig;
	(void)si;
	(void)ucv;
	p->usr2_runs++;
	if (p->in_nested) {
		/* Back into the SIGUSR1 handler, after its tgkill: RCX == RIP. */
		count(ABI_X64, NR_rt_sigreturn, O_SYSRET);
		return;
	}
	CHECK(p->pending2, "unexpected SIGUSR2", 0, 0);
	count(ABI_X64, NR_rt_sigreturn, p->pending_out);
}

static void on_usr1(int sig, void *si, void *ucv)
{
	struct plan *p = &g_plan;
	u64 *g = gregs(ucv);
	int out;

	(void)sig;
	(void)si;
	p->usr1_runs++;
	p->usr1_rip = g[G_RIP];

	if (p->mode == PM_RESTART_READ || p->mode == PM_WAKE) {
		u64 ret = (u64)blk_syscall_ret;

		if (p->restart) {
			/* SA_RESTART: the frame holds RIP-2, RCX still past it. */
			CHECK(g[G_RIP] == ret - 2, "restart frame RIP", g[G_RIP],
			      ret);
			CHECK(g[G_RCX] == ret, "restart frame RCX", g[G_RCX], ret);
			CHECK((long)g[G_RAX] == p->blk_nr, "restart frame RAX",
			      g[G_RAX], p->blk_nr);
			out = O_RCX;
		} else {
			CHECK(g[G_RIP] == ret, "EINTR frame RIP", g[G_RIP], ret);
			CHECK((long)g[G_RAX] == -EINTR, "EINTR frame RAX",
			      g[G_RAX], 0);
			CHECK(g[G_RCX] == ret, "EINTR frame RCX", g[G_RCX], ret);
			out = O_SYSRET;
		}
		count(ABI_X64, NR_rt_sigreturn, out);
		add(&g_shm->handled, 1);
		return;
	}

	if (p->mode == PM_FIRST) {
		/*
		 * Sent to a thread just created: delivered on its first return
		 * (RIP is clone's return address: that return stays fork_child)
		 * or, if it already ran, on an interrupt's return.
		 */
		p->first_at_fork = g[G_RIP] == (u64)thread_clone_ret ||
				   g[G_RIP] == (u64)thread_clone3_ret;
		count(ABI_X64, NR_rt_sigreturn, guard_outcome(g));
		__atomic_store_n(&p->first_done, 1, __ATOMIC_SEQ_CST);
		return;
	}
	CHECK(p->mode == PM_SYNC, "SIGUSR1 in an odd mode", p->mode, 0);
	CHECK(g[G_RCX] == g[G_RIP], "frame RCX != RIP at a syscall return",
	      g[G_RCX], g[G_RIP]);
	if (p->nested2) {
		struct after a;
		long before = p->usr2_runs;

		p->in_nested = 1;
		xsys(NR_tgkill, g_pid, p->tid, SIGUSR2, 0, &a);
		p->in_nested = 0;
		CHECK(a.ax == 0 && p->usr2_runs == before + 1, "nested SIGUSR2",
		      a.ax, p->usr2_runs);
		expect_plain(&a);
		count(ABI_X64, NR_tgkill, O_SIGNAL);
	}

	memcpy(p->saved, g, sizeof(p->saved));
	out = edit_out[p->edit];
	if (p->edit != E_NONE) {
		g[G_RCX] = g[G_RIP];
		switch (p->edit) {
		case E_RCX:
			g[G_RCX] = g[G_RIP] + 1;
			break;
		case E_CS:
			g[G_RIP] = g[G_RCX] = (u64)g_low_code;
			g[G_RSP] = (u64)g_low_code + LOW_SIZE - 64;
			frame_set_sel(g, 0, USER32_CS);
			break;
		case E_SS:
			frame_set_sel(g, 48, LDT_SS);
			*(u64 *)ucv |= UC_STRICT_RESTORE_SS;
			break;
		case E_RIP:
			g[G_RIP] = g[G_RCX] = BAD_RIP;
			break;
		case E_RF:
			g[G_EFL] |= EFL_RF;
			break;
		case E_TF:
			g[G_EFL] |= EFL_TF;
			break;
		default:
			break;
		}
		g[G_R11] = flags_after_sigreturn(g[G_EFL]);
		if (p->edit == E_R11)
			g[G_R11] ^= EFL_CF;
	}
	p->set_rcx = g[G_RCX];
	p->set_r11 = g[G_R11];

	if (p->pending2) {
		/*
		 * Block SIGUSR2 here and raise it: it stays pending until
		 * rt_sigreturn restores the interrupted mask, and is then
		 * delivered on rt_sigreturn's own way out.  That sigreturn
		 * keeps a guard failure its body left; otherwise the frame
		 * makes it "signal".  The SIGUSR2 handler's sigreturn then
		 * restores what this one restored: same guard outcome.
		 */
		u64 set = 1UL << (SIGUSR2 - 1);
		struct after a;

		xsys(NR_rt_sigprocmask, 0, (long)&set, 0, 8, &a);
		CHECK(a.ax == 0, "rt_sigprocmask", a.ax, 0);
		expect_plain(&a);
		count(ABI_X64, NR_rt_sigprocmask, O_SYSRET);
		xsys(NR_tgkill, g_pid, p->tid, SIGUSR2, 0, &a);
		CHECK(a.ax == 0, "tgkill(SIGUSR2)", a.ax, 0);
		expect_plain(&a);
		count(ABI_X64, NR_tgkill, O_SYSRET);
		p->pending_out = out;
		if (out == O_SYSRET)
			out = O_SIGNAL;
	}
	count(ABI_X64, NR_rt_sigreturn, out);
}

/* Restore the SIGUSR1 frame as it came (before the edit), RCX/R11 passing. */
static void recover_saved(u64 *g)
{
	memcpy(g, g_plan.saved, sizeof(g_plan.saved));
	frame_sysret_ready(g);
	g_plan.rec_runs++;
	count(ABI_X64, NR_rt_sigreturn, O_SYSRET);
}

/* A fault right after a syscall: continue at the stub's resume label. */
static int fault_recover(int sig, u64 *g)
{
	static const struct { int sig; char *site, *resume; int after; } f[] = {
		[F_UD2] = { SIGILL, fault_ud2_site, fault_ud2_resume, 0 },
		[F_INT3] = { SIGTRAP, fault_int3_site, fault_int3_resume, 1 },
		[F_HLT] = { SIGSEGV, fault_hlt_site, fault_hlt_resume, 0 },
		[F_PF] = { SIGSEGV, fault_pf_site, fault_pf_resume, 0 },
		[F_DE] = { SIGFPE, fault_de_site, fault_de_resume, 0 },
	};
	int k = g_plan.fault;
	u64 site;

	if (k == F_NONE)
		return 0;
	site = (u64)f[k].site;
	CHECK(sig == f[k].sig, "fault: wrong signal", sig, k);
	CHECK(g[G_RIP] == site + (f[k].after ? 1 : 0), "fault: wrong RIP",
	      g[G_RIP], site);
	/* The syscall before the fault came back with RCX == RIP. */
	CHECK(g[G_RCX] == site, "fault: RCX after the syscall", g[G_RCX], site);
	g[G_RIP] = (u64)f[k].resume;
	frame_sysret_ready(g);
	count(ABI_X64, NR_rt_sigreturn, O_SYSRET);
	g_plan.rec_runs++;
	return 1;
}

static void on_ill(int sig, void *si, void *ucv)
{
	u64 *g = gregs(ucv);

	(void)si;
	if (fault_recover(sig, g))
		return;
	CHECK(g_plan.edit == E_CS, "unexpected SIGILL", 0, g[G_RIP]);
	CHECK(g[G_RIP] == (u64)g_low_code, "SIGILL not at the 32-bit ud2",
	      g[G_RIP], (u64)g_low_code);
	CHECK((g[G_CSGSFS] & 0xffff) == USER32_CS, "SIGILL: CS", g[G_CSGSFS],
	      0);
	recover_saved(g);
}

static void on_fpe(int sig, void *si, void *ucv)
{
	u64 *g = gregs(ucv);

	(void)si;
	if (!fault_recover(sig, g))
		die("unexpected SIGFPE", 0, g[G_RIP]);
}

static void on_segv(int sig, void *si, void *ucv)
{
	u64 *g = gregs(ucv);

	(void)si;
	if (fault_recover(sig, g))
		return;
	CHECK(g_plan.edit == E_RIP, "unexpected SIGSEGV", 0, g[G_RIP]);
	CHECK(g[G_RIP] == BAD_RIP, "SIGSEGV not at the bad RIP", 0, g[G_RIP]);
	recover_saved(g);
}

static void on_trap(int sig, void *si, void *ucv)
{
	u64 *g = gregs(ucv);

	(void)si;
	if (fault_recover(sig, g))
		return;
	CHECK(g_plan.edit == E_TF, "unexpected SIGTRAP", 0, g[G_RIP]);
	g_plan.trap_rip = g[G_RIP];
	frame_sysret_ready(g);
	g_plan.rec_runs++;
	count(ABI_X64, NR_rt_sigreturn, O_SYSRET);
}

/* seccomp RET_TRAP: the syscall was rolled back (RAX = its number). */
static void on_sys(int sig, void *si, void *ucv)
{
	u64 *g = gregs(ucv);

	(void)sig;
	(void)si;
	CHECK(g[G_RCX] == g[G_RIP] && g[G_RAX] == NR_getgid, "SIGSYS frame",
	      g[G_RAX], g[G_RIP]);
	g_plan.sys_runs++;
	count(ABI_X64, NR_rt_sigreturn, O_SYSRET);
}

static void on_cont(int sig, void *si, void *ucv)
{
	u64 *g = gregs(ucv);

	(void)sig;
	(void)si;
	CHECK(g[G_RCX] == g[G_RIP], "SIGCONT frame", g[G_RCX], g[G_RIP]);
	g_plan.cont_runs++;
	count(ABI_X64, NR_rt_sigreturn, O_SYSRET);
}

static void install(int sig, void (*fn)(int, void *, void *), u64 flags)
{
	struct ksigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.handler = (void *)fn;
	sa.flags = SA_SIGINFO | SA_RESTORER | flags;
	sa.restorer = (void *)sig_restorer;
	CHECK(C4(NR_rt_sigaction, sig, &sa, 0, 8) == 0, "rt_sigaction", sig, 0);
}

static void install_all(void)
{
	install(SIGUSR1, on_usr1, 0);
	install(SIGUSR2, on_usr2, 0);
	install(SIGILL, on_ill, 0);
	install(SIGSEGV, on_segv, 0);
	install(SIGTRAP, on_trap, 0);
	install(SIGFPE, on_fpe, 0);
}

static void setup_low_code(void)
{
	u8 *p;

	if (g_low_code)
		return;
	p = (u8 *)C6(NR_mmap, 0, LOW_SIZE, 3, 0x22 | 0x40 /* MAP_32BIT */, -1,
		     0);
	CHECK((long)p > 0 && (u64)p + LOW_SIZE <= 0x100000000UL,
	      "mmap(MAP_32BIT)", (long)p, 0);
	p[0] = 0x0f;		/* ud2, run in compat mode */
	p[1] = 0x0b;
	CHECK(C3(NR_mprotect, p, 4096, 5) == 0, "mprotect", 0, 0);
	g_low_code = p;
	g_low_stack = p + 4096;
}

static void setup_ldt(void)
{
	u32 d[4] = { 0, 0, 0xfffff, 0x51 };	/* flat, 32-bit, pages, useable */

	if (g_ldt_ready)
		return;
	CHECK(C3(NR_modify_ldt, 1, d, sizeof(d)) == 0, "modify_ldt", 0, 0);
	g_ldt_ready = 1;
}

/* --- small task helpers ---------------------------------------------- */

static int my_tid(void)
{
	struct tctx *t = my_tctx();

	return t ? t->tid : g_pid;
}

static int wait_exit(int pid)
{
	int st = 0;
	long r = C4(NR_wait4, pid, &st, 0, 0);

	CHECK(r == pid, "wait4", r, pid);
	CHECK((st & 0x7f) == 0 && ((st >> 8) & 0xff) == 0,
	      "child did not exit(0)", pid, st);
	return st;
}

/* Read a small /proc file; each syscall counted. */
static int read_small(const char *path, char *buf, int size)
{
	long fd = C4(NR_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	long n;

	if (fd < 0)
		return -1;
	n = C3(NR_read, fd, buf, size - 1);
	C1(NR_close, fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return (int)n;
}

static void proc_path(char *out, int size, int pid, int tid, const char *f)
{
	struct sb b = { out, 0, (size_t)size };

	sb_put(&b, "/proc/");
	sb_u64(&b, pid, 10);
	sb_put(&b, "/task/");
	sb_u64(&b, tid, 10);
	sb_put(&b, "/");
	sb_put(&b, f);
}

/*
 * Wait until task tid of pid sleeps inside syscall nr in a function whose
 * name contains wchan.  A runnable task shows wchan "0", a stopped one
 * do_signal_stop, so this accepts only a task asleep in that syscall.
 * wchan "*" accepts any sleep but those two (restart_syscall of nanosleep
 * shows do_syscall_64: the restart function is called through a pointer).
 */
static int wchan_ok(const char *buf, const char *wchan)
{
	if (wchan[0] != '*')
		return sstr(buf, wchan) != 0;
	return !(buf[0] == '0' && (buf[1] == 0 || buf[1] == '\n')) &&
	       !sstr(buf, "signal_stop");
}

static void wait_blocked(int pid, int tid, const char *wchan, int nr)
{
	char p1[96], p2[96], buf[256], want[16];
	struct sb w = { want, 0, sizeof(want) };

	proc_path(p1, sizeof(p1), pid, tid, "wchan");
	proc_path(p2, sizeof(p2), pid, tid, "syscall");
	sb_u64(&w, nr, 10);
	sb_put(&w, " ");
	for (long tries = 0; tries < 2000000; tries++) {
		if (read_small(p1, buf, sizeof(buf)) > 0 && wchan_ok(buf, wchan) &&
		    read_small(p2, buf, sizeof(buf)) > 0 &&
		    sstr(buf, want) == buf)
			return;
		C0(NR_sched_yield);
	}
	die("task never blocked", tid, nr);
}

/* --- threads ---------------------------------------------------------- */

/*
 * long thread_clone(flags, stack_top, ptid, ctid, tctx)
 * clone() with a new stack; the child calls thread_entry(tctx) there.
 */
long thread_clone(unsigned long flags, void *top, int *ptid, volatile int *ctid,
		  struct tctx *t);
/* long thread_clone3(struct clone_args *, size, tctx) */
long thread_clone3(void *args, unsigned long size, struct tctx *t);
void thread_entry(struct tctx *t);
extern char thread_clone_ret[], thread_clone3_ret[];
__asm__(".pushsection .text\n"
	".globl thread_clone\n"
	"thread_clone:\n"
	"	subq $16, %rsi\n"
	"	movq %r8, (%rsi)\n"	/* tctx at the child's stack top */
	"	movq %rcx, %r10\n"
	"	xorl %r8d, %r8d\n"
	"	movl $56, %eax\n"
	"	syscall\n"
	".globl thread_clone_ret\n"
	"thread_clone_ret:\n"
	"	testq %rax, %rax\n"
	"	jz 1f\n"
	"	ret\n"
	"1:	movq (%rsp), %rdi\n"
	"	call thread_entry\n"
	"	ud2\n"
	".globl thread_clone3\n"
	"thread_clone3:\n"
	"	movl $435, %eax\n"
	"	syscall\n"
	".globl thread_clone3_ret\n"
	"thread_clone3_ret:\n"
	"	testq %rax, %rax\n"
	"	jz 1b\n"
	"	ret\n"
	".popsection\n");

/* vfork on the caller's stack; the child calls fn(arg) and never returns. */
long vfork_call(void (*fn)(long), long arg);
__asm__(".pushsection .text\n"
	".globl vfork_call\n"
	"vfork_call:\n"
	"	movl $58, %eax\n"
	"	syscall\n"
	"	testq %rax, %rax\n"
	"	jz 1f\n"
	"	ret\n"
	"1:	movq %rdi, %rax\n"
	"	movq %rsi, %rdi\n"
	"	subq $8, %rsp\n"
	"	call *%rax\n"
	"	ud2\n"
	".popsection\n");

struct clone_args {
	u64 flags, pidfd, child_tid, parent_tid, exit_signal, stack,
	    stack_size, tls, set_tid, set_tid_size, cgroup;
};

void __attribute__((noreturn, used)) thread_entry(struct tctx *t)
{
	count(ABI_X64, t->nr, O_FORK);
	t->fn(t);
	for (;;)
		S1(NR_exit, 0);	/* this thread only; clears ctid */
}

static struct tctx *tctx_get(void)
{
	for (int i = 0; i < N_TSTACK; i++)
		if (!g_tctx[i].used) {
			u64 seed = rnd() | 1;

			memset(&g_tctx[i], 0, sizeof(g_tctx[i]));
			g_tctx[i].used = 1;
			g_tctx[i].cpu = cur_cpu();
			g_tctx[i].rng = seed;
			return &g_tctx[i];
		}
	die("no free thread stack", 0, 0);
}

/* Start fn in a new thread (clone or clone3) on a free stack. */
static struct tctx *spawn(void (*fn)(struct tctx *), int use_clone3,
			  unsigned long flags, long a0, long a1, long a2, long a3)
{
	struct tctx *t = tctx_get();
	u8 *stack = g_tstack[t - g_tctx];
	u8 *top = stack + TSTACK_SIZE;
	long r;

	t->fn = fn;
	t->arg[0] = a0;
	t->arg[1] = a1;
	t->arg[2] = a2;
	t->arg[3] = a3;
	if (use_clone3) {
		struct clone_args ca;

		memset(&ca, 0, sizeof(ca));
		ca.flags = flags;
		ca.child_tid = (u64)&t->ctid;
		ca.parent_tid = (u64)&t->ctid;
		ca.exit_signal = (flags & CLONE_THREAD) ? 0 : SIGCHLD;
		/* the child starts with RSP = stack + stack_size */
		*(struct tctx **)(top - 16) = t;
		ca.stack = (u64)stack;
		ca.stack_size = TSTACK_SIZE - 16;
		t->nr = NR_clone3;
		r = thread_clone3(&ca, sizeof(ca), t);
		count(ABI_X64, NR_clone3, O_SYSRET);
	} else {
		t->nr = NR_clone;
		r = thread_clone(flags, top, (int *)&t->ctid, &t->ctid, t);
		count(ABI_X64, NR_clone, O_SYSRET);
	}
	CHECK(r > 0, "clone", r, flags);
	t->tid = (int)r;
	return t;
}

static void join(struct tctx *t)
{
	for (;;) {
		int v = t->ctid;

		if (v == 0)
			break;
		C6(NR_futex, &t->ctid, 0 /* FUTEX_WAIT */, v, 0, 0, 0);
	}
	t->used = 0;
}

/* --- the events ------------------------------------------------------- */

static u32 g_kinds;		/* enabled kinds, bit per enum kind */
static int g_ncpu;		/* CPUs we may use */
static int g_cpus[N_CPU];
static int g_single;		/* no other thread alive in this process */

/* sched_setaffinity to one CPU; the return comes on that CPU. */
static void pin_to(int cpu)
{
	u64 mask = 1ULL << cpu;
	long r = S3(NR_sched_setaffinity, 0, 8, &mask);

	CHECK(r == 0, "sched_setaffinity", r, cpu);
	set_cur_cpu(cpu);
	count(ABI_X64, NR_sched_setaffinity, O_SYSRET);
}

/* Another CPU than the current one (the same if there is only one). */
static int other_cpu(void)
{
	int cpu = g_cpus[below(g_ncpu)];

	if (g_ncpu > 1)
		while (cpu == cur_cpu())
			cpu = g_cpus[below(g_ncpu)];
	return cpu;
}

static void migrate_to(int cpu)
{
	pin_to(cpu);
	tally_var(V_MIGRATE);
}

static void migrate(void)
{
	migrate_to(other_cpu());
}

/*
 * A signal to this thread, delivered on the way out of the trigger syscall
 * (tgkill to self, kill to own process, or rt_sigprocmask unblocking it),
 * and a SIGUSR1 handler that edits the frame it returns to.
 */
static void ev_signal(int trigger, int edit, int pending2, int nested2)
{
	struct plan *p = &g_plan;
	struct after a;
	long runs = p->usr1_runs;
	int tid = my_tid(), nr;

	if (edit == E_CS) {
		setup_low_code();
		g_low_owner = my_tctx();
	}
	if (edit == E_SS)
		setup_ldt();
	p->mode = PM_SYNC;
	p->edit = edit;
	p->pending2 = pending2;
	p->nested2 = nested2;
	p->fault = F_NONE;
	p->tid = tid;
	p->rec_runs = 0;
	tally_var(V_SIG_TGKILL + trigger);
	tally_var(V_EDIT0 + edit);
	if (pending2)
		tally_var(V_SIG_PENDING);
	if (nested2)
		tally_var(V_SIG_NESTED);

	if (trigger == 2) {
		u64 set = 1UL << (SIGUSR1 - 1);

		CHECK(C4(NR_rt_sigprocmask, 0, &set, 0, 8) == 0, "block", 0, 0);
		xsys(NR_tgkill, g_pid, tid, SIGUSR1, 0, &a);
		CHECK(a.ax == 0 && p->usr1_runs == runs, "blocked tgkill", a.ax,
		      p->usr1_runs);
		expect_plain(&a);
		count(ABI_X64, NR_tgkill, O_SYSRET);
		nr = NR_rt_sigprocmask;
		xsys(nr, 1 /* SIG_UNBLOCK */, (long)&set, 0, 8, &a);
	} else if (trigger == 1) {
		nr = NR_kill;
		xsys(nr, g_pid, SIGUSR1, 0, 0, &a);
	} else {
		nr = NR_tgkill;
		xsys(nr, g_pid, tid, SIGUSR1, 0, &a);
	}
	CHECK(a.ax == 0, "trigger syscall failed", a.ax, nr);
	CHECK(p->usr1_runs == runs + 1, "SIGUSR1 handler did not run once",
	      p->usr1_runs - runs, nr);
	CHECK(p->usr1_rip == a.lab, "signal frame RIP", p->usr1_rip, a.lab);
	count(ABI_X64, nr, O_SIGNAL);

	switch (edit) {
	case E_RCX:
		CHECK(a.rcx == a.lab + 1, "edited RCX", a.rcx, a.lab);
		CHECK(a.r11 == a.fl, "R11 after RCX edit", a.r11, a.fl);
		break;
	case E_R11:
		CHECK(a.rcx == a.lab, "RCX after R11 edit", a.rcx, a.lab);
		CHECK(a.r11 == (a.fl ^ EFL_CF), "edited R11", a.r11, a.fl);
		break;
	case E_RF:
		/* pushfq never shows RF */
		CHECK(a.rcx == a.lab, "RCX after RF edit", a.rcx, a.lab);
		CHECK(a.r11 == (a.fl | EFL_RF), "R11 after RF edit", a.r11,
		      a.fl);
		break;
	case E_TF:
		CHECK(p->trap_rip == a.lab + 1, "TF trap address", p->trap_rip,
		      a.lab);
		CHECK(a.rcx == a.lab + 1, "RCX after TF trap", a.rcx, a.lab);
		CHECK(a.r11 == a.fl, "R11 after TF trap", a.r11, a.fl);
		CHECK(p->rec_runs == 1, "SIGTRAP handler runs", p->rec_runs, 0);
		break;
	case E_SS:
		CHECK(a.ss == LDT_SS, "SS after SS edit", a.ss, 0);
		expect_plain(&a);
		break;
	case E_CS:
	case E_RIP:
		CHECK(p->rec_runs == 1, "recovery handler runs", p->rec_runs,
		      edit);
		expect_plain(&a);
		break;
	default:
		expect_plain(&a);
		break;
	}
	if (pending2)
		CHECK(p->usr2_runs > 0, "pending SIGUSR2 never ran", 0, 0);
	p->pending2 = p->nested2 = 0;
	p->edit = E_NONE;
}

static void random_signal(int allow_kill)
{
	static const u8 trig[4] = { 0, 0, 2, 1 };	/* tgkill, unblock, kill */
	int trigger = trig[below(allow_kill ? 4 : 3)];
	int edit = below(N_EDIT);
	int pending2 = 0, nested2 = 0;

	if (edit == E_NONE || edit == E_RCX || edit == E_R11 || edit == E_RF ||
	    edit == E_SS)
		pending2 = below(3) == 0;
	nested2 = below(4) == 0;
	ev_signal(trigger, edit, pending2, nested2);
}

/* A syscall followed by a faulting instruction (or a sigreturn first). */
static void ev_fault(int kind, int after_signal)
{
	struct plan *p = &g_plan;
	long (*stub)(long, long, long, long) =
		kind == F_UD2 ? fault_ud2 : kind == F_INT3 ? fault_int3 :
		kind == F_HLT ? fault_hlt : kind == F_PF ? fault_pf : fault_de;
	long r, runs = p->usr1_runs;

	tally_var(V_FAULT0 + kind);
	p->rec_runs = 0;
	p->edit = E_NONE;
	p->pending2 = p->nested2 = 0;
	if (after_signal) {
		tally_var(V_FAULT_AFTER_SIGNAL);
		p->mode = PM_SYNC;
		p->tid = my_tid();
		p->fault = kind;
		r = stub(NR_tgkill, g_pid, p->tid, SIGUSR1);
		CHECK(r == 0 && p->usr1_runs == runs + 1, "tgkill+fault", r, 0);
		count(ABI_X64, NR_tgkill, O_SIGNAL);
	} else {
		p->fault = kind;
		r = stub(NR_getppid, 0, 0, 0);
		CHECK(r > 0, "getppid+fault", r, 0);
		count(ABI_X64, NR_getppid, O_SYSRET);
	}
	p->fault = F_NONE;
	CHECK(p->rec_runs == 1, "fault handler runs", p->rec_runs, kind);
}

/*
 * A fault right after a plain syscall (any of them), or right after a
 * sigreturn that took SYSRET: only a trap (int3, RIP moved on) or a page
 * fault there; #UD, #GP and #DE after a sigreturn are kind
 * fault_sigreturn.
 */
static void random_fault(void)
{
	static const u8 after_sigreturn[] = { F_INT3, F_PF };

	if (below(3) == 0)
		ev_fault(after_sigreturn[below(2)], 1);
	else
		ev_fault(1 + below(N_FAULT - 1), 0);
}

/* The helper of ev_restart_thread: signals the leader blocked in read. */
static void restart_helper(struct tctx *t)
{
	int leader = (int)t->arg[0], wfd = (int)t->arg[1];
	int sa_restart = (int)t->arg[2];
	long before = g_plan.usr1_runs;

	C0(NR_gettid);
	wait_blocked(g_pid, leader, "pipe_read", NR_read);
	CHECK(C3(NR_tgkill, g_pid, leader, SIGUSR1) == 0, "tgkill leader", 0,
	      0);
	if (sa_restart) {
		while (g_plan.usr1_runs == before)
			C0(NR_sched_yield);
		wait_blocked(g_pid, leader, "pipe_read", NR_read);
		CHECK(C3(NR_write, wfd, "x", 1) == 1, "write pipe", 0, 0);
	}
	if (t->arg[3] >= 0)	/* chosen by the driver: the RNG is its */
		migrate_to((int)t->arg[3]);
}

/*
 * read(2) on an empty pipe, interrupted by SIGUSR1 from a helper thread:
 * with SA_RESTART the kernel rewinds RIP and builds the frame (read:
 * signal; the frame's RIP is the syscall instruction, so that sigreturn
 * fails RCX == RIP); without it read returns EINTR (read: signal; the
 * sigreturn passes).
 */
static void ev_restart_thread(int sa_restart)
{
	struct plan *p = &g_plan;
	int fds[2];
	char c = 0;
	long r;
	struct tctx *h;

	tally_var(sa_restart ? V_RT_RESTART : V_RT_EINTR);
	install(SIGUSR1, on_usr1, sa_restart ? SA_RESTART : 0);
	CHECK(C2(NR_pipe2, fds, O_CLOEXEC) == 0, "pipe2", 0, 0);
	p->mode = PM_RESTART_READ;
	p->restart = sa_restart;
	p->blk_nr = NR_read;
	g_single = 0;
	{
		int c3 = below(2), mig = below(3) == 0 ? other_cpu() : -1;

		h = spawn(restart_helper, c3, THREAD_FLAGS, g_pid, fds[1],
			  sa_restart, mig);
	}
	r = blk_syscall(NR_read, fds[0], (long)&c, 1);
	if (sa_restart) {
		CHECK(r == 1 && c == 'x', "restarted read", r, c);
		count(ABI_X64, NR_read, O_SIGNAL);
		count(ABI_X64, NR_read, O_SYSRET);
	} else {
		CHECK(r == -EINTR, "interrupted read", r, 0);
		count(ABI_X64, NR_read, O_SIGNAL);
	}
	join(h);
	g_single = 1;
	C1(NR_close, fds[0]);
	C1(NR_close, fds[1]);
	p->mode = PM_SYNC;
	install(SIGUSR1, on_usr1, 0);
}

/*
 * A child blocks in read (ERESTARTSYS), nanosleep (ERESTART_RESTARTBLOCK)
 * or pause (ERESTARTNOHAND).  Each SIGSTOP/SIGCONT cycle while it sleeps
 * makes the kernel restart the call with no handler (one "restart" each;
 * nanosleep comes back as restart_syscall).  Then it is woken: by a byte
 * (read only), or by SIGUSR1, whose handler makes the call return EINTR
 * ("signal") or, for read with SA_RESTART, restarts it behind the frame.
 */
static void ev_restart_child(void)
{
	struct plan *p = &g_plan;
	static const char *const wchan[] = { "pipe_read", "nanosleep",
					     "sys_pause", "*" };
	static const int nrs[] = { NR_read, NR_nanosleep, NR_pause };
	int b = below(3), cycles = below(4), wake, fds[2] = { -1, -1 };
	int nr = nrs[b], pid;
	u64 ts[2] = { 1000000, 0 };
	char c = 0;

	wake = b == 0 ? below(3) : 1;	/* 0 write, 1 EINTR, 2 SA_RESTART */
	tally_var(V_RC_READ + b);
	tally_var(V_RC_WAKE_WRITE + wake);
	if (cycles)
		tally_var(V_RC_CYCLES);
	if (b == 0)
		CHECK(C2(NR_pipe2, fds, O_CLOEXEC) == 0, "pipe2", 0, 0);
	p->mode = PM_WAKE;
	p->restart = wake == 2;
	p->blk_nr = nr;
	__atomic_store_n(&g_shm->handled, 0, __ATOMIC_SEQ_CST);

	pid = (int)S2(NR_clone, SIGCHLD, 0);
	CHECK(pid >= 0, "clone", pid, 0);
	if (pid == 0) {
		long r;
		int last = nr;

		count(ABI_X64, NR_clone, O_FORK);
		install(SIGUSR1, on_usr1, wake == 2 ? SA_RESTART : 0);
		if (b == 0)
			r = blk_syscall(nr, fds[0], (long)&c, 1);
		else if (b == 1)
			r = blk_syscall(nr, (long)ts, 0, 0);
		else
			r = blk_syscall(nr, 0, 0, 0);
		if (b == 1 && cycles)
			last = NR_restart_syscall;
		if (wake == 0) {
			CHECK(r == 1 && c == 'x', "read woken by a byte", r, c);
			count(ABI_X64, last, O_SYSRET);
		} else if (wake == 1) {
			CHECK(r == -EINTR, "EINTR wake", r, nr);
			count(ABI_X64, last, O_SIGNAL);
		} else {
			CHECK(r == 1 && c == 'x', "restarted read", r, c);
			count(ABI_X64, last, O_SIGNAL);
			count(ABI_X64, last, O_SYSRET);
		}
		exit_group(0);
	}
	count(ABI_X64, NR_clone, O_SYSRET);

	for (int i = 0; i < cycles; i++) {
		int st = 0;

		wait_blocked(pid, pid, nr == NR_restart_syscall ? "*" : wchan[b],
			     nr);
		CHECK(C2(NR_kill, pid, SIGSTOP) == 0, "SIGSTOP", 0, 0);
		CHECK(C4(NR_wait4, pid, &st, WUNTRACED, 0) == pid &&
		      (st & 0xff) == 0x7f && ((st >> 8) & 0xff) == SIGSTOP,
		      "child did not stop", st, 0);
		CHECK(C2(NR_kill, pid, SIGCONT) == 0, "SIGCONT", 0, 0);
		CHECK(C4(NR_wait4, pid, &st, WCONTINUED, 0) == pid &&
		      st == 0xffff, "child did not continue", st, 0);
		/* the child's call, rewound with no handler: one restart */
		count(ABI_X64, nr, O_RESTART);
		if (b == 1)
			nr = NR_restart_syscall;
	}
	wait_blocked(pid, pid, nr == NR_restart_syscall ? "*" : wchan[b], nr);
	if (wake == 0) {
		CHECK(C3(NR_write, fds[1], "x", 1) == 1, "write", 0, 0);
	} else {
		CHECK(C2(NR_kill, pid, SIGUSR1) == 0, "kill SIGUSR1", 0, 0);
		if (wake == 2) {
			while (__atomic_load_n(&g_shm->handled,
					       __ATOMIC_SEQ_CST) == 0)
				C0(NR_sched_yield);
			wait_blocked(pid, pid, wchan[b], nr);
			CHECK(C3(NR_write, fds[1], "x", 1) == 1, "write", 0, 0);
		}
	}
	wait_exit(pid);
	if (b == 0) {
		C1(NR_close, fds[0]);
		C1(NR_close, fds[1]);
	}
	p->mode = PM_SYNC;
}

/* --- exec ------------------------------------------------------------- */

static int g_shm_fd, g_out_fd;
static long g_steps;

static char g_argbuf[16][40];

/* argv for an image that continues the driver at step 'next'. */
static void drv_argv(char **argv, long next, int cpu, int nr)
{
	static const char *tag = "@drv";
	u64 mask = 0;

	for (int i = 0; i < g_ncpu; i++)
		mask |= 1ULL << g_cpus[i];
	u64 v[9] = { (u64)g_shm_fd, (u64)g_out_fd, g_seed, (u64)g_steps,
		     (u64)next, g_rng, (u64)cpu, (u64)nr, mask };

	argv[0] = g_self;
	argv[1] = (char *)tag;
	for (int i = 0; i < 9; i++) {
		struct sb b = { g_argbuf[i], 0, sizeof(g_argbuf[i]) };

		sb_u64(&b, v[i], 16);
		argv[2 + i] = g_argbuf[i];
	}
	{
		struct sb b = { g_argbuf[9], 0, sizeof(g_argbuf[9]) };

		sb_u64(&b, g_kinds, 16);
		argv[11] = g_argbuf[9];
	}
	argv[12] = 0;
}

static char *g_noenv[] = { 0 };

static void __attribute__((noreturn)) ev_exec(long next)
{
	char *argv[13];
	int at = below(3) == 0;
	long r;

	tally_var(at ? V_EXEC_EXECVEAT : V_EXEC_EXECVE);
	drv_argv(argv, next, cur_cpu(), at ? NR_execveat : NR_execve);
	if (below(3) == 0) {
		/* a failed exec returns in the old image, by SYSRET */
		tally_var(V_EXEC_ENOENT);
		r = S3(NR_execve, "/nonexistent/diffgen", argv, g_noenv);
		CHECK(r == -2, "exec of a missing file", r, 0);
		count(ABI_X64, NR_execve, O_SYSRET);
	}
	if (at)
		r = S5(NR_execveat, AT_FDCWD, g_self, argv, g_noenv, 0);
	else
		r = S3(NR_execve, g_self, argv, g_noenv);
	die("exec failed", r, 0);
}

static long g_exec_next;
static int g_exec_pipe[2];
static volatile int g_leader_counted;	/* the leader counted clone's return */

static void exec_thread_body(struct tctx *t)
{
	char *argv[13];
	long r;

	C0(NR_gettid);
	if (t->arg[1])
		migrate();
	if (t->arg[0])	/* the leader sleeps in read: wait for it */
		wait_blocked(g_pid, g_pid, "pipe_read", NR_read);
	else		/* the leader spins, its clone return counted */
		while (!__atomic_load_n(&g_leader_counted, __ATOMIC_SEQ_CST))
			C0(NR_sched_yield);
	drv_argv(argv, g_exec_next, cur_cpu(), NR_execve);
	r = S3(NR_execve, g_self, argv, g_noenv);
	die("exec from a thread failed", r, 0);
}

/*
 * exec from a thread that is not the leader: de_thread() kills the leader
 * (spinning in user space, or asleep in a read that so never returns) and
 * the thread becomes the process, returning from execve as the leader.
 */
static void __attribute__((noreturn)) ev_exec_thread(long next)
{
	int blocked = below(2);
	struct tctx *t;

	tally_var(blocked ? V_EXEC_THREAD_BLOCKED : V_EXEC_THREAD_SPIN);
	g_exec_next = next;
	g_leader_counted = 0;
	if (blocked)
		CHECK(C2(NR_pipe2, g_exec_pipe, O_CLOEXEC) == 0, "pipe2", 0, 0);
	g_single = 0;
	{
		int c3 = below(2), mig = g_ncpu > 1 && below(2);

		t = spawn(exec_thread_body, c3, THREAD_FLAGS, blocked, mig, 0,
			  0);
	}
	(void)t;
	/*
	 * Not before: a thread that execs at once could kill the leader
	 * between its return from clone and the count of that return.
	 */
	__atomic_store_n(&g_leader_counted, 1, __ATOMIC_SEQ_CST);
	if (blocked) {
		char c;

		blk_syscall(NR_read, g_exec_pipe[0], (long)&c, 1);
		die("the leader's read returned", 0, 0);
	}
	for (;;)
		__asm__ volatile("pause" ::: "memory");
}

static volatile int g_exec_rt;

static void exec_preempt_body(struct tctx *t)
{
	char *argv[13], c;
	long r;

	C0(NR_gettid);
	r = blk_syscall(NR_read, (int)t->arg[0], (long)&c, 1);
	CHECK(r == 1, "read of the leader's byte", r, 0);
	count(ABI_X64, NR_read, O_SYSRET);
	if (!g_exec_rt)		/* the leader's write did return: counted? */
		while (!__atomic_load_n(&g_leader_counted, __ATOMIC_SEQ_CST))
			C0(NR_sched_yield);
	drv_argv(argv, g_exec_next, cur_cpu(), NR_execve);
	r = S3(NR_execve, g_self, argv, g_noenv);
	die("exec from a thread failed", r, 0);
}

/*
 * exec_preempt: a thread made SCHED_FIFO on the leader's CPU sleeps in
 * read; the leader writes it a byte.  The wakeup preempts the leader
 * before its write is back in user mode, the thread execs, and de_thread
 * kills the leader there: the write completed (sys_exit fired, 1 byte)
 * but never returns.  Without the right to SCHED_FIFO the write returns
 * and the thread waits until the leader counted it.
 */
static void __attribute__((noreturn)) ev_exec_preempt(long next)
{
	int fds[2], prio = 2, rt;
	struct tctx *t;

	g_exec_next = next;
	g_leader_counted = 0;
	g_exec_rt = 0;
	CHECK(C2(NR_pipe2, fds, O_CLOEXEC) == 0, "pipe2", 0, 0);
	g_single = 0;
	t = spawn(exec_preempt_body, below(2), THREAD_FLAGS, fds[0], 0, 0, 0);
	rt = C3(NR_sched_setscheduler, t->tid, SCHED_FIFO, &prio) == 0;
	tally_var(rt ? V_EXEC_PREEMPT : V_EXEC_PREEMPT_NORT);
	g_exec_rt = rt;
	wait_blocked(g_pid, t->tid, "pipe_read", NR_read);
	if (rt) {
		S3(NR_write, fds[1], "x", 1);
		die("the leader's write returned", 0, 0);
	}
	CHECK(xplain(NR_write, fds[1], (long)"x", 1, 0) == 1, "write", 0, 0);
	__atomic_store_n(&g_leader_counted, 1, __ATOMIC_SEQ_CST);
	for (;;)
		__asm__ volatile("pause" ::: "memory");
}

/* --- fork, vfork, threads ------------------------------------------------ */

/* An image that only counts its exec return and some plain syscalls. */
static void __attribute__((noreturn)) exec_child_image(int abi, int nr,
						       int out, int k)
{
	char *argv[10];
	char a[7][24];
	u64 v[7] = { (u64)g_shm_fd, (u64)cur_cpu(), (u64)abi, (u64)nr,
		     (u64)out, (u64)k, rnd() };
	long r;

	argv[0] = g_self;
	argv[1] = "@child";
	for (int i = 0; i < 7; i++) {
		struct sb b = { a[i], 0, sizeof(a[i]) };

		sb_u64(&b, v[i], 16);
		argv[2 + i] = a[i];
	}
	argv[9] = 0;
	r = S3(NR_execve, g_self, argv, g_noenv);
	die("exec child image", r, 0);
}

static void fork_child_body(int allow_signal)
{
	int k = below(24);

	plain_burst(k);
	if (allow_signal && below(3) == 0)
		random_signal(1);
	if (below(3) == 0)
		migrate();
	plain_burst(below(8));
	if (below(4) == 0) {
		tally_var(V_FORK_EXEC);
		exec_child_image(ABI_X64, NR_execve, O_RCX, below(16));
	}
	exit_group(0);
}

/* fork-like children that get their own copy of everything */
static void ev_fork(void)
{
	int v = below(3);
	long pid;

	tally_var(V_FORK_CLONE + v);
	if (v == 0) {
		pid = S2(NR_clone, SIGCHLD, 0);
		if (pid == 0) {
			count(ABI_X64, NR_clone, O_FORK);
			g_pid = (int)C0(NR_getpid);
			fork_child_body(1);
		}
		count(ABI_X64, NR_clone, O_SYSRET);
	} else if (v == 1) {
		pid = S0(NR_fork);
		if (pid == 0) {
			count(ABI_X64, NR_fork, O_FORK);
			g_pid = (int)C0(NR_getpid);
			fork_child_body(1);
		}
		count(ABI_X64, NR_fork, O_SYSRET);
	} else {
		struct clone_args ca;

		memset(&ca, 0, sizeof(ca));
		ca.exit_signal = SIGCHLD;
		pid = S2(NR_clone3, &ca, sizeof(ca));
		if (pid == 0) {
			count(ABI_X64, NR_clone3, O_FORK);
			g_pid = (int)C0(NR_getpid);
			fork_child_body(1);
		}
		count(ABI_X64, NR_clone3, O_SYSRET);
	}
	CHECK(pid > 0, "fork", pid, v);
	wait_exit((int)pid);
}

/* The vfork child: shares memory, so it only makes syscalls and leaves. */
static void vfork_body(long arg)
{
	int nr = (int)(arg & 0xffff), k = (int)((arg >> 16) & 0xff);
	int ex = (int)((arg >> 24) & 1), k2 = (int)((arg >> 32) & 0xff);

	if (nr)		/* 0: thread_entry counted the first return */
		count(ABI_X64, nr, O_FORK);
	for (int i = 0; i < k; i++)
		C0(NR_getppid);
	if (ex)
		exec_child_image(ABI_X64, NR_execve, O_RCX, k2);
	exit_group(0);
}

static void vfork_thread_body(struct tctx *t)
{
	long arg = t->arg[0];

	/* thread_entry counted the first return already */
	vfork_body(arg & ~0xffffL);
}

static void ev_vfork(void)
{
	int v = below(2), ex = below(2) == 0;
	long arg = ((long)below(8) << 16) | ((long)ex << 24) |
		   ((long)below(12) << 32);
	long pid;

	tally_var(V_VFORK_VFORK + v);
	if (ex)
		tally_var(V_VFORK_EXEC);
	if (v == 0) {
		pid = vfork_call(vfork_body, arg | NR_vfork);
		count(ABI_X64, NR_vfork, O_SYSRET);
	} else {
		/* clone(CLONE_VM|CLONE_VFORK) on a stack of its own */
		struct tctx *t = tctx_get();
		u8 *top = g_tstack[t - g_tctx] + TSTACK_SIZE;

		t->fn = vfork_thread_body;
		t->arg[0] = arg;
		t->nr = NR_clone;
		pid = thread_clone(CLONE_VM | CLONE_VFORK | SIGCHLD, top, 0, 0,
				   t);
		count(ABI_X64, NR_clone, O_SYSRET);
		t->used = 0;
	}
	CHECK(pid > 0, "vfork", pid, v);
	wait_exit((int)pid);
}

static void thread_body(struct tctx *t)
{
	t->tid = (int)C0(NR_gettid);
	plain_burst(below(32));
	if (below(2))
		random_signal(0);
	if (below(3) == 0)
		migrate();
	if (below(4) == 0)
		random_fault();
	plain_burst(below(8));
}

/* Waits (in user space) for the SIGUSR1 its creator sent at once. */
static void thread_first_body(struct tctx *t)
{
	while (!__atomic_load_n(&g_plan.first_done, __ATOMIC_SEQ_CST))
		__asm__ volatile("pause" ::: "memory");
	t->tid = (int)C0(NR_gettid);
	plain_burst(below(8));
}

static void ev_thread(void)
{
	int c3 = below(2), first = below(3) == 0;
	struct tctx *t;

	tally_var(c3 ? V_THREAD_CLONE3 : V_THREAD_CLONE);
	g_single = 0;
	if (first) {
		/*
		 * A signal for a thread that has not run yet: its first
		 * return builds the frame and stays fork_child.
		 */
		g_plan.mode = PM_FIRST;
		g_plan.first_done = 0;
		t = spawn(thread_first_body, c3, THREAD_FLAGS, 0, 0, 0, 0);
		CHECK(C3(NR_tgkill, g_pid, t->tid, SIGUSR1) == 0, "tgkill", 0, 0);
		join(t);
		tally_var(g_plan.first_at_fork ? V_THREAD_FIRST_SIGNAL :
			  V_THREAD_FIRST_SIGNAL_LATE);
		g_plan.mode = PM_SYNC;
	} else {
		t = spawn(thread_body, c3, THREAD_FLAGS, 0, 0, 0, 0);
		join(t);
	}
	g_single = 1;
}

/* --- ptrace ------------------------------------------------------------ */

enum pedit { P_NONE, P_RCX, P_R11, P_SAME, P_RESTORED, P_SYSEMU, N_PEDIT };
#define SYSEMU_RET 4242

static long pt(long req, long pid, long addr, long data)
{
	return C4(NR_ptrace, req, pid, addr, data);
}

/* The raw PTRACE_PEEKUSER stores the word at *data and returns 0. */
static long peek(long pid, long off)
{
	long v = 0;

	CHECK(pt(PTRACE_PEEKUSER, pid, off, (long)&v) == 0, "PEEKUSER", off, 0);
	return v;
}

/* Resume the tracee with req; the next syscall stop's op (1 entry, 2 exit),
 * or -1 once it exited(0). */
static int ptrace_next(int pid, long req)
{
	u8 info[88];
	int st = 0;

	CHECK(pt(req, pid, 0, 0) == 0, "ptrace resume", req, 0);
	CHECK(C4(NR_wait4, pid, &st, 0, 0) == pid, "wait4 tracee", 0, 0);
	if ((st & 0x7f) == 0) {
		CHECK(((st >> 8) & 0xff) == 0, "tracee exit status", st, 0);
		return -1;
	}
	CHECK((st & 0xff) == 0x7f && ((st >> 8) & 0xff) == (SIGTRAP | 0x80),
	      "tracee: not a syscall stop", st, 0);
	memset(info, 0, sizeof(info));
	CHECK(pt(PTRACE_GET_SYSCALL_INFO, pid, sizeof(info), (long)info) > 0,
	      "PTRACE_GET_SYSCALL_INFO", 0, 0);
	return info[0];
}

/*
 * A forked tracee makes m syscalls; its parent stops each at syscall exit
 * (PTRACE_SYSCALL) and edits the registers as planned: RCX or R11 changed
 * (the guard fails: ptrace), or rewritten to the same values (SETREGS
 * unchanged, RCX poked and poked back: SYSRET), or left alone.
 */
static void ev_ptrace(void)
{
	int m = 1 + below(12), pid, st = 0, exits = 0, emu_exit = 0;
	u8 plan[16];
	short nrs[16];

	for (int i = 0; i < m; i++) {
		plan[i] = below(N_PEDIT);
		nrs[i] = plain_nrs[below(10)];	/* argument-free ones */
		tally_var(plan[i] == P_SYSEMU ? V_PTRACE_SYSEMU :
			  V_PTRACE0 + plan[i]);
	}
	pid = (int)S2(NR_clone, SIGCHLD, 0);
	CHECK(pid >= 0, "clone", pid, 0);
	if (pid == 0) {
		count(ABI_X64, NR_clone, O_FORK);
		CHECK(C0(NR_ptrace) == 0, "PTRACE_TRACEME", 0, 0);
		C2(NR_kill, C0(NR_getpid), SIGSTOP);
		for (int i = 0; i < m; i++) {
			struct after a;

			xsys(nrs[i], 0, 0, 0, 0, &a);
			switch (plan[i]) {
			case P_RCX:
				CHECK(a.rcx == a.lab + 1, "tracer's RCX", a.rcx,
				      a.lab);
				CHECK(a.r11 == a.fl, "R11 (RCX edit)", a.r11,
				      a.fl);
				count(ABI_X64, nrs[i], O_PTRACE);
				break;
			case P_SYSEMU:
				/* skipped at its entry stop: no sys_enter */
				CHECK(a.ax == SYSEMU_RET, "emulated result",
				      a.ax, nrs[i]);
				expect_plain(&a);
				count_untimed(ABI_X64, nrs[i], O_SYSRET);
				break;
			case P_R11:
				CHECK(a.rcx == a.lab, "RCX (R11 edit)", a.rcx,
				      a.lab);
				CHECK(a.r11 == (a.fl ^ EFL_CF), "tracer's R11",
				      a.r11, a.fl);
				count(ABI_X64, nrs[i], O_PTRACE);
				break;
			default:
				expect_plain(&a);
				count(ABI_X64, nrs[i], O_SYSRET);
				break;
			}
		}
		exit_group(0);
	}
	count(ABI_X64, NR_clone, O_SYSRET);
	CHECK(C4(NR_wait4, pid, &st, 0, 0) == pid && (st & 0xff) == 0x7f &&
	      ((st >> 8) & 0xff) == SIGSTOP, "tracee did not stop", st, 0);
	CHECK(pt(PTRACE_SETOPTIONS, pid, 0,
		 PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL) == 0,
	      "PTRACE_SETOPTIONS", 0, 0);
	/*
	 * Before syscall i: PTRACE_SYSEMU (stop at its entry, skipped, RAX
	 * set by us) or PTRACE_SYSCALL (entry stop, then exit stop: edit).
	 * A PTRACE_SYSCALL after a SYSEMU stop first reports the emulated
	 * call's exit.
	 */
	for (;;) {
		int req = exits < m && plan[exits] == P_SYSEMU ? PTRACE_SYSEMU :
			  PTRACE_SYSCALL;
		int op = ptrace_next(pid, req);
		long o;

		if (op < 0)
			break;
		o = peek(pid, U_ORIG_RAX);
		if (op == 2 && emu_exit) {
			CHECK(o == nrs[exits - 1], "emulated call's exit", o, 0);
			emu_exit = 0;
			continue;
		}
		emu_exit = 0;
		CHECK(op == 1, "expected an entry stop", op, exits);
		if (exits == m) {
			CHECK(o == NR_exit_group, "last call", o, 0);
			continue;
		}
		CHECK(o == nrs[exits], "entry stop of another syscall", o,
		      (exits << 16) | nrs[exits]);
		if (req == PTRACE_SYSEMU) {
			CHECK(pt(PTRACE_POKEUSER, pid, U_RAX, SYSEMU_RET) == 0,
			      "POKEUSER rax", 0, 0);
			emu_exit = 1;
			exits++;
			continue;
		}
		op = ptrace_next(pid, PTRACE_SYSCALL);
		CHECK(op == 2, "expected an exit stop", op, exits);
		o = peek(pid, U_ORIG_RAX);
		CHECK(o == nrs[exits], "exit stop of another syscall", o,
		      (exits << 16) | nrs[exits]);
		switch (plan[exits]) {
		case P_RCX: {
			long rip = peek(pid, U_RIP);

			CHECK(pt(PTRACE_POKEUSER, pid, U_RCX, rip + 1) == 0,
			      "POKEUSER rcx", 0, 0);
			break;
		}
		case P_R11: {
			long fl = peek(pid, U_EFLAGS);

			CHECK(pt(PTRACE_POKEUSER, pid, U_R11, fl ^ EFL_CF) == 0,
			      "POKEUSER r11", 0, 0);
			break;
		}
		case P_SAME: {
			u64 regs[27];

			CHECK(pt(PTRACE_GETREGS, pid, 0, (long)regs) == 0,
			      "GETREGS", 0, 0);
			CHECK(pt(PTRACE_SETREGS, pid, 0, (long)regs) == 0,
			      "SETREGS", 0, 0);
			break;
		}
		case P_RESTORED: {
			long rcx = peek(pid, U_RCX);

			CHECK(pt(PTRACE_POKEUSER, pid, U_RCX, rcx + 8) == 0,
			      "POKEUSER rcx", 0, 0);
			CHECK(pt(PTRACE_POKEUSER, pid, U_RCX, rcx) == 0,
			      "POKEUSER rcx back", 0, 0);
			break;
		}
		default:
			break;
		}
		exits++;
	}
	CHECK(exits == m, "exit stops", exits, m);
}

/* --- concurrency -------------------------------------------------------- */

static void ev_int80(void);

/*
 * parallel: 2-4 threads at once, each pinned to a CPU the driver chose
 * (often two on one CPU: the traced threads preempt each other there),
 * with plain syscalls, migrations, int $0x80, and a forked child.
 */
static void parallel_body(struct tctx *t)
{
	int rounds = (int)t->arg[1];

	migrate_to((int)t->arg[0]);
	for (int i = 0; i < rounds; i++) {
		switch (below(8)) {
		case 0:
			migrate();
			break;
		case 1:
			ev_int80();
			break;
		case 2: {
			long pid = S2(NR_clone, SIGCHLD, 0);

			CHECK(pid >= 0, "clone", pid, 0);
			if (pid == 0) {
				count(ABI_X64, NR_clone, O_FORK);
				plain_burst(below(40));
				exit_group(0);
			}
			count(ABI_X64, NR_clone, O_SYSRET);
			tally_var(V_PAR_FORK);
			wait_exit((int)pid);
			break;
		}
		default:
			plain_burst(1 + below(100));
			break;
		}
	}
}

static void ev_parallel(void)
{
	int n = 2 + below(3), used = 0, shared = 0;
	struct tctx *t[N_TSTACK];

	g_single = 0;
	for (int i = 0; i < n; i++) {
		int cpu = g_cpus[below(g_ncpu)];

		shared |= used & (1 << cpu);
		used |= 1 << cpu;
		t[i] = spawn(parallel_body, below(2), THREAD_FLAGS, cpu,
			     1 + below(12), 0, 0);
	}
	for (int i = 0; i < n; i++)
		join(t[i]);
	g_single = 1;
	tally_var(V_PAR_THREADS);
	if (shared)
		tally_var(V_PAR_SHARED_CPU);
}

/*
 * orphan: a child forks a grandchild and exits at once; the grandchild,
 * reparented out of the driver's family, works on and exits.  The driver
 * learns it is gone from EOF on a pipe only the grandchild still holds.
 */
static void ev_orphan(void)
{
	int fds[2];
	long pid, n;
	char c;

	tally_var(V_ORPHAN);
	CHECK(C2(NR_pipe2, fds, O_CLOEXEC) == 0, "pipe2", 0, 0);
	pid = S2(NR_clone, SIGCHLD, 0);
	CHECK(pid >= 0, "clone", pid, 0);
	if (pid == 0) {
		long gc;

		count(ABI_X64, NR_clone, O_FORK);
		C1(NR_close, fds[0]);
		gc = S2(NR_clone, SIGCHLD, 0);
		CHECK(gc >= 0, "clone", gc, 0);
		if (gc == 0) {
			count(ABI_X64, NR_clone, O_FORK);
			g_pid = (int)C0(NR_getpid);
			plain_burst(below(40));
			if (below(2))
				random_signal(1);
			if (below(3) == 0)
				migrate();
			plain_burst(below(20));
			exit_group(0);	/* closes the last write end */
		}
		count(ABI_X64, NR_clone, O_SYSRET);
		exit_group(0);
	}
	count(ABI_X64, NR_clone, O_SYSRET);
	C1(NR_close, fds[1]);
	wait_exit((int)pid);
	while ((n = C3(NR_read, fds[0], &c, 1)) != 0)
		CHECK(n == 1, "read from the orphan's pipe", n, 0);
	C1(NR_close, fds[0]);
}

/*
 * selfkill: a child sends itself a fatal signal (SIGKILL, or SIGTERM with
 * its default action).  tgkill completes (sys_exit fires, with 0), but the
 * signal is acted on before the way out reaches user mode: no return.
 * Sometimes a second thread sleeps in read meanwhile; it dies too.
 */
static void selfkill_sleeper(struct tctx *t)
{
	int fd = (int)t->arg[0];
	char c;

	(void)t;
	C0(NR_gettid);
	blk_syscall(NR_read, fd, (long)&c, 1);
	die("the sleeper's read returned", 0, 0);
}

static void ev_selfkill(void)
{
	int sig = below(2) ? 9 : 15, th = below(3) == 0, st = 0;
	long pid;

	tally_var(sig == 9 ? V_SELFKILL_KILL : V_SELFKILL_TERM);
	if (th)
		tally_var(V_SELFKILL_THREAD);
	pid = S2(NR_clone, SIGCHLD, 0);
	CHECK(pid >= 0, "clone", pid, 0);
	if (pid == 0) {
		int tid;

		count(ABI_X64, NR_clone, O_FORK);
		g_pid = (int)C0(NR_getpid);
		plain_burst(below(10));
		if (th) {
			int fds[2];
			struct tctx *t;

			CHECK(C2(NR_pipe2, fds, O_CLOEXEC) == 0, "pipe2", 0, 0);
			g_single = 0;
			t = spawn(selfkill_sleeper, below(2), THREAD_FLAGS,
				  fds[0], 0, 0, 0);
			wait_blocked(g_pid, t->tid, "pipe_read", NR_read);
		}
		tid = g_pid;
		S3(NR_tgkill, g_pid, tid, sig);	/* never comes back */
		die("survived a fatal signal", sig, 0);
	}
	count(ABI_X64, NR_clone, O_SYSRET);
	CHECK(C4(NR_wait4, pid, &st, 0, 0) == pid && (st & 0x7f) == sig,
	      "child was not killed by its signal", st, sig);
}

/* --- seccomp and stops ---------------------------------------------------- */

struct sock_filter {
	u16 code;
	u8 jt, jf;
	u32 k;
};

#define BPF_LD_ABS 0x20
#define BPF_JEQ_K 0x15
#define BPF_RET_K 0x06
#define RET_ALLOW 0x7fff0000u
#define RET_ERRNO 0x00050000u
#define RET_TRAP 0x00030000u
#define RET_TRACE 0x7ff00000u

/*
 * A child installs a seccomp filter: getuid fails with EPERM, geteuid with
 * errno 512 (ERRESTARTSYS's number: no restart), getegid is RET_TRACE with
 * no tracer (-ENOSYS), all without running, so without sys_enter; getgid
 * is RET_TRAP: rolled back, SIGSYS frame on the way out (signal).
 */
static void ev_seccomp(void)
{
	static const struct sock_filter f[] = {
		{ BPF_LD_ABS, 0, 0, 4 },		/* arch */
		{ BPF_JEQ_K, 1, 0, 0xc000003e },	/* AUDIT_ARCH_X86_64 */
		{ BPF_RET_K, 0, 0, RET_ALLOW },
		{ BPF_LD_ABS, 0, 0, 0 },		/* nr */
		{ BPF_JEQ_K, 0, 1, NR_getuid },
		{ BPF_RET_K, 0, 0, RET_ERRNO | 1 },
		{ BPF_JEQ_K, 0, 1, NR_getgid },
		{ BPF_RET_K, 0, 0, RET_TRAP },
		{ BPF_JEQ_K, 0, 1, NR_geteuid },
		{ BPF_RET_K, 0, 0, RET_ERRNO | 512 },
		{ BPF_JEQ_K, 0, 1, NR_getegid },
		{ BPF_RET_K, 0, 0, RET_TRACE },
		{ BPF_RET_K, 0, 0, RET_ALLOW },
	};
	struct { u16 len; u8 pad[6]; const struct sock_filter *f; } prog = {
		sizeof(f) / sizeof(f[0]), { 0 }, f
	};
	static const short nrs[] = { NR_getuid, NR_getgid, NR_geteuid,
				     NR_getegid, NR_getppid };
	static const long want[] = { -1, NR_getgid, -512, -ENOSYS, 0 };
	int k = 1 + below(12);
	u8 pick[16];
	long pid;

	for (int i = 0; i < k; i++) {
		pick[i] = below(5);
		tally_var(V_SECCOMP_ERRNO + pick[i]);
	}
	pid = S2(NR_clone, SIGCHLD, 0);
	CHECK(pid >= 0, "clone", pid, 0);
	if (pid == 0) {
		count(ABI_X64, NR_clone, O_FORK);
		install(SIGSYS, on_sys, 0);
		CHECK(C5(NR_prctl, 38 /* NO_NEW_PRIVS */, 1, 0, 0, 0) == 0,
		      "PR_SET_NO_NEW_PRIVS", 0, 0);
		CHECK(C3(NR_seccomp, 1 /* SET_MODE_FILTER */, 0, &prog) == 0,
		      "seccomp", 0, 0);
		for (int i = 0; i < k; i++) {
			int nr = nrs[pick[i]];
			long runs = g_plan.sys_runs;
			struct after a;

			xsys(nr, 0, 0, 0, 0, &a);
			expect_plain(&a);
			if (nr == NR_getppid) {
				CHECK(a.ax > 0, "getppid", a.ax, 0);
				count(ABI_X64, nr, O_SYSRET);
				continue;
			}
			CHECK(a.ax == want[pick[i]], "seccomp result", a.ax, nr);
			if (nr == NR_getgid) {
				CHECK(g_plan.sys_runs == runs + 1, "SIGSYS", 0, 0);
				count_untimed(ABI_X64, nr, O_SIGNAL);
			} else {
				count_untimed(ABI_X64, nr, O_SYSRET);
			}
		}
		exit_group(0);
	}
	count(ABI_X64, NR_clone, O_SYSRET);
	wait_exit((int)pid);
}

/*
 * A child stops itself with kill(SIGSTOP) and its parent continues it:
 * the kill returns as it was (SYSRET), or, if the child handles SIGCONT,
 * with that handler's frame (signal).
 */
static void ev_stop(void)
{
	int h = below(2), st = 0;
	long pid;

	tally_var(h ? V_STOP_CONT_HANDLER : V_STOP_PLAIN);
	pid = S2(NR_clone, SIGCHLD, 0);
	CHECK(pid >= 0, "clone", pid, 0);
	if (pid == 0) {
		long runs = g_plan.cont_runs;
		struct after a;

		count(ABI_X64, NR_clone, O_FORK);
		if (h)
			install(SIGCONT, on_cont, 0);
		g_pid = (int)C0(NR_getpid);
		xsys(NR_kill, g_pid, SIGSTOP, 0, 0, &a);
		CHECK(a.ax == 0, "kill(self, SIGSTOP)", a.ax, 0);
		expect_plain(&a);
		CHECK(g_plan.cont_runs == runs + h, "SIGCONT handler", h, 0);
		count(ABI_X64, NR_kill, h ? O_SIGNAL : O_SYSRET);
		exit_group(0);
	}
	count(ABI_X64, NR_clone, O_SYSRET);
	CHECK(C4(NR_wait4, pid, &st, WUNTRACED, 0) == pid &&
	      (st & 0xff) == 0x7f && ((st >> 8) & 0xff) == SIGSTOP,
	      "child did not stop", st, 0);
	CHECK(C2(NR_kill, pid, SIGCONT) == 0, "SIGCONT", 0, 0);
	wait_exit((int)pid);
}

/* --- rseq ----------------------------------------------------------------- */

/*
 * int rseq_yield_once(u64 *rseq_cs): arm a critical section covering the
 * "syscall" instruction and the "nop" it returns to, and call sched_yield
 * inside it.  1: aborted after sched_yield ran (RAX 0), 2: aborted before
 * the syscall (RAX still 24, nothing issued), 0: no abort.
 */
int rseq_yield_once(u64 *rseq_cs_field);
__asm__(".pushsection .text\n"
	".globl rseq_yield_once\n"
	".p2align 4\n"
	"rseq_yield_once:\n"
	"	leaq rseq_yield_cs(%rip), %rax\n"
	"	movq %rax, (%rdi)\n"
	"	movl $24, %eax\n"
	"rseq_yield_start:\n"
	"	syscall\n"
	"	nop\n"
	"rseq_yield_post:\n"
	"	movq $0, (%rdi)\n"
	"	xorl %eax, %eax\n"
	"	ret\n"
	"	.byte 0x0f, 0xb9, 0x3d\n"
	"	.long 0x53053053\n"
	"rseq_yield_abort:\n"
	"	movq $0, (%rdi)\n"
	"	cmpq $24, %rax\n"
	"	movl $1, %eax\n"
	"	jne 1f\n"
	"	movl $2, %eax\n"
	"1:	ret\n"
	".popsection\n"
	".pushsection .data\n"
	".p2align 5\n"
	"rseq_yield_cs:\n"
	"	.long 0, 0\n"
	"	.quad rseq_yield_start\n"
	"	.quad rseq_yield_post - rseq_yield_start\n"
	"	.quad rseq_yield_abort\n"
	".popsection\n");

static struct {
	u32 cpu_id_start, cpu_id;
	u64 rseq_cs;
	u32 flags, node_id, mm_cid, pad;
} g_rseq __attribute__((aligned(32)));

/*
 * A child registers rseq, becomes SCHED_FIFO and forks a sibling that only
 * yields (same CPU, same priority): each sched_yield inside the critical
 * section switches away and back, and rseq moves RIP to the abort handler
 * on the way out ("rseq").  The sibling stops when told, no kill.
 */
static void ev_rseq(void)
{
	int m = 1 + below(16);
	long pid;

	__atomic_store_n(&g_shm->rseq_stop, 0, __ATOMIC_SEQ_CST);
	pid = S2(NR_clone, SIGCHLD, 0);
	CHECK(pid >= 0, "clone", pid, 0);
	if (pid == 0) {
		int sp = 1, early = 0;
		long sib;

		count(ABI_X64, NR_clone, O_FORK);
		CHECK(C4(NR_rseq, &g_rseq, 32, 0, RSEQ_SIG) == 0, "rseq", 0, 0);
		C3(NR_sched_setscheduler, 0, SCHED_FIFO, &sp);
		sib = S2(NR_clone, SIGCHLD, 0);
		if (sib == 0) {
			count(ABI_X64, NR_clone, O_FORK);
			while (!__atomic_load_n(&g_shm->rseq_stop,
						__ATOMIC_SEQ_CST))
				xplain(NR_sched_yield, 0, 0, 0, 0);
			exit_group(0);
		}
		count(ABI_X64, NR_clone, O_SYSRET);
		CHECK(sib > 0, "clone sibling", sib, 0);
		for (int i = 0; i < m; i++) {
			int r = rseq_yield_once(&g_rseq.rseq_cs);

			if (r == 2) {
				tally_var(V_RSEQ_EARLY);
				CHECK(++early < 1000, "rseq keeps aborting early",
				      0, 0);
				i--;
				continue;
			}
			tally_var(r ? V_RSEQ_ABORT : V_RSEQ_NOABORT);
			count(ABI_X64, NR_sched_yield, r ? O_RSEQ : O_SYSRET);
		}
		__atomic_store_n(&g_shm->rseq_stop, 1, __ATOMIC_SEQ_CST);
		wait_exit((int)sib);
		exit_group(0);
	}
	count(ABI_X64, NR_clone, O_SYSRET);
	wait_exit((int)pid);
}

/* --- 32-bit: int $0x80 from 64-bit code, and a 32-bit image --------------- */

static long int80_64(long nr)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "0"(nr)
			 : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

/* int $0x80 from a 64-bit task: an i386 syscall, always IRET. */
static void ev_int80(void)
{
	static const short n32[] = { NR32_getpid, NR32_getppid, NR32_gettid };
	int k = 1 + below(4);

	for (int i = 0; i < k; i++) {
		int nr = n32[below(3)];
		long r = int80_64(nr);

		CHECK(r > 0, "int $0x80 from 64-bit code", r, nr);
		count(ABI_I386, nr, O_INT80);
		tally_var(V_INT80);
	}
}

static int g_have32;

/*
 * A child execs the 32-bit image (64-bit execve: rcx_ne_rip), which makes
 * i386 syscalls through int $0x80 (int80) and the vDSO fast path (SYSRETL)
 * and then exits, or execs a 64-bit image again through int $0x80 (int80)
 * or the fast path (compat_guard: RIP is not the vDSO landing pad).
 */
static void ev_compat(void)
{
	int end = below(3);
	long pid;

	tally_var(V_COMPAT_EXIT + end);
	pid = S2(NR_clone, SIGCHLD, 0);
	CHECK(pid >= 0, "clone", pid, 0);
	if (pid == 0) {
		char a[7][24], *argv[9];
		u64 v[7] = { (u64)g_shm_fd, (u64)cur_cpu(), rnd(),
			     1 + below(24), (u64)end, below(12), 0 };
		long r;

		count(ABI_X64, NR_clone, O_FORK);
		argv[0] = g_self32;
		for (int i = 0; i < 6; i++) {
			struct sb b = { a[i], 0, sizeof(a[i]) };

			sb_u64(&b, v[i], 16);
			argv[1 + i] = a[i];
		}
		argv[7] = g_self;
		argv[8] = 0;
		r = S3(NR_execve, g_self32, argv, g_noenv);
		die("exec of the 32-bit image", r, 0);
	}
	count(ABI_X64, NR_clone, O_SYSRET);
	wait_exit((int)pid);
}

/* --- the driver ------------------------------------------------------------- */

static int pick_kind(void)
{
	u32 total = 0, r;

	for (int k = 0; k < N_KIND; k++)
		if (g_kinds & (1u << k))
			total += kind_weight[k];
	r = below(total);
	for (int k = 0; k < N_KIND; k++) {
		if (!(g_kinds & (1u << k)))
			continue;
		if (r < kind_weight[k])
			return k;
		r -= kind_weight[k];
	}
	return K_PLAIN;
}

static char g_json[1 << 18];

static void __attribute__((noreturn)) finish_write(void)
{
	struct sb b = { g_json, 0, sizeof(g_json) };
	struct shm *s = g_shm;
	u64 total = 0;
	int first;
	long r;

	g_what = "finish";
	/* The write below is the run's last return: count it first. */
	count(ABI_X64, NR_write, O_SYSRET);
	for (int a = 0; a < N_ABI; a++)
		for (int n = 0; n < NR_SLOTS; n++)
			for (int o = 0; o < N_OUT; o++)
				total += s->cnt[a][n][o];

	sb_put(&b, "{\"schema\": \"diffgen/1\", \"seed\": ");
	sb_u64(&b, g_seed, 10);
	sb_put(&b, ", \"steps\": ");
	sb_u64(&b, g_steps, 10);
	sb_put(&b, ", \"returns\": ");
	sb_u64(&b, total, 10);
	sb_put(&b, ",\n \"kinds_enabled\": [");
	first = 1;
	for (int k = 0; k < N_KIND; k++)
		if (g_kinds & (1u << k)) {
			sb_put(&b, first ? "\"" : ", \"");
			sb_put(&b, kind_name[k]);
			sb_put(&b, "\"");
			first = 0;
		}
	sb_put(&b, "],\n \"kinds\": {");
	first = 1;
	for (int k = 0; k < N_KIND; k++)
		if (s->kinds[k]) {
			sb_put(&b, first ? "\"" : ", \"");
			sb_put(&b, kind_name[k]);
			sb_put(&b, "\": ");
			sb_u64(&b, s->kinds[k], 10);
			first = 0;
		}
	sb_put(&b, "},\n \"variants_known\": [");
	first = 1;
	for (int v = 0; v < N_VARS; v++)
		if (var_name[v]) {
			sb_put(&b, first ? "\"" : ", \"");
			sb_put(&b, var_name[v]);
			sb_put(&b, "\"");
			first = 0;
		}
	sb_put(&b, "],\n \"variants\": {");
	first = 1;
	for (int v = 0; v < N_VARS; v++)
		if (s->vars[v] && var_name[v]) {
			sb_put(&b, first ? "\"" : ", \"");
			sb_put(&b, var_name[v]);
			sb_put(&b, "\": ");
			sb_u64(&b, s->vars[v], 10);
			first = 0;
		}
	sb_put(&b, "},\n \"syscalls\": [");
	first = 1;
	for (int a = 0; a < N_ABI; a++)
		for (int n = 0; n < NR_SLOTS; n++) {
			int any = 0;

			for (int o = 0; o < N_OUT; o++)
				any |= s->cnt[a][n][o] != 0;
			if (!any)
				continue;
			sb_put(&b, first ? "\n  {\"abi\": \"" : ",\n  {\"abi\": \"");
			first = 0;
			sb_put(&b, abi_name[a]);
			sb_put(&b, "\", \"nr\": ");
			sb_u64(&b, n, 10);
			sb_put(&b, ", \"outcomes\": {");
			for (int o = 0, f2 = 1; o < N_OUT; o++)
				if (s->cnt[a][n][o]) {
					sb_put(&b, f2 ? "\"" : ", \"");
					sb_put(&b, out_name[o]);
					sb_put(&b, "\": ");
					sb_u64(&b, s->cnt[a][n][o], 10);
					f2 = 0;
				}
			sb_put(&b, "}, \"untimed\": {\"sysret\": ");
			sb_u64(&b, s->untimed[a][n][0], 10);
			sb_put(&b, ", \"iret\": ");
			sb_u64(&b, s->untimed[a][n][1], 10);
			sb_put(&b, "}}");
		}
	sb_put(&b, "],\n \"cpus\": [");
	first = 1;
	for (int c = 0; c < N_CPU; c++) {
		int any = 0;

		for (int o = 0; o < N_OUT; o++)
			any |= s->cpu[c][o] != 0;
		if (!any)
			continue;
		sb_put(&b, first ? "\n  {\"cpu\": " : ",\n  {\"cpu\": ");
		first = 0;
		sb_u64(&b, c, 10);
		sb_put(&b, ", \"outcomes\": {");
		for (int o = 0, f2 = 1; o < N_OUT; o++)
			if (s->cpu[c][o]) {
				sb_put(&b, f2 ? "\"" : ", \"");
				sb_put(&b, out_name[o]);
				sb_put(&b, "\": ");
				sb_u64(&b, s->cpu[c][o], 10);
				f2 = 0;
			}
		sb_put(&b, "}}");
	}
	sb_put(&b, "],\n \"unpinned\": {");
	for (int o = 0, f2 = 1; o < N_OUT; o++)
		if (s->unpinned[o]) {
			sb_put(&b, f2 ? "\"" : ", \"");
			sb_put(&b, out_name[o]);
			sb_put(&b, "\": ");
			sb_u64(&b, s->unpinned[o], 10);
			f2 = 0;
		}
	sb_put(&b, "}}\n");
	CHECK(b.len + 2 < b.cap, "JSON buffer too small", b.len, 0);
	r = S3(NR_write, g_out_fd, g_json, b.len);
	CHECK(r == (long)b.len, "write of the JSON", r, b.len);
	exit_group(0);
}

static int g_finish_pipe[2];

static void finish_thread(struct tctx *t)
{
	(void)t;
	C0(NR_gettid);
	wait_blocked(g_pid, g_pid, "pipe_read", NR_read);
	tally_var(V_FINISH_THREAD);
	finish_write();
}

/*
 * Write the expectation and exit_group, from the leader, or from a thread
 * while the leader sleeps in a read that so never returns.
 */
static void __attribute__((noreturn)) finish(void)
{
	char c;

	g_step = g_steps;
	if (!below(2))
		finish_write();
	CHECK(C2(NR_pipe2, g_finish_pipe, O_CLOEXEC) == 0, "pipe2", 0, 0);
	g_single = 0;
	spawn(finish_thread, below(2), THREAD_FLAGS, 0, 0, 0, 0);
	blk_syscall(NR_read, g_finish_pipe[0], (long)&c, 1);
	die("the leader's read returned", 0, 0);
}

static void __attribute__((noreturn)) drive(long from)
{
	g_single = 1;
	for (long i = from; i < g_steps; i++) {
		int k = pick_kind();

		g_step = i;
		g_what = kind_name[k];
		add(&g_shm->kinds[k], 1);
		switch (k) {
		case K_PLAIN:
			plain_burst(1 + below(below(2) ? 40 : 200));
			break;
		case K_SIGNAL:
			random_signal(g_single);
			break;
		case K_FAULT:
			random_fault();
			break;
		case K_FAULT_SIGRETURN: {
			/* #UD, #GP, #DE at the first instruction after a
			 * sigreturn that took SYSRET */
			static const u8 f[] = { F_UD2, F_HLT, F_DE };

			ev_fault(f[below(3)], 1);
			break;
		}
		case K_RESTART_THREAD:
			ev_restart_thread(below(2));
			break;
		case K_RESTART_CHILD:
			ev_restart_child();
			break;
		case K_FORK:
			ev_fork();
			break;
		case K_VFORK:
			ev_vfork();
			break;
		case K_THREAD:
			ev_thread();
			break;
		case K_EXEC:
			ev_exec(i + 1);
		case K_EXEC_THREAD:
			ev_exec_thread(i + 1);
		case K_EXEC_PREEMPT:
			ev_exec_preempt(i + 1);
		case K_PTRACE:
			ev_ptrace();
			break;
		case K_RSEQ:
			ev_rseq();
			break;
		case K_MIGRATE:
			migrate();
			break;
		case K_COMPAT:
			ev_compat();
			break;
		case K_INT80:
			ev_int80();
			break;
		case K_SECCOMP:
			ev_seccomp();
			break;
		case K_STOP:
			ev_stop();
			break;
		case K_PARALLEL:
			ev_parallel();
			break;
		case K_ORPHAN:
			ev_orphan();
			break;
		case K_SELFKILL:
			ev_selfkill();
			break;
		}
	}
	finish();
}

static void map_shm(int fd)
{
	long p = S6(NR_mmap, 0, SHM_SIZE, 3, 1 /* MAP_SHARED */, fd, 0);

	CHECK(p > 0, "mmap of the counters", p, fd);
	g_shm = (struct shm *)p;
	CHECK(g_shm->magic == SHM_MAGIC, "counters: bad magic", 0, 0);
	count(ABI_X64, NR_mmap, O_SYSRET);
}

static int parse_kinds(const char *s, u32 *out)
{
	u32 all = (1u << N_KIND) - 1, plus = 0, minus = 0;

	if (seq(s, "all")) {
		*out = all;
		return 0;
	}
	while (*s) {
		char name[32];
		int neg = 0, n = 0, k;

		if (*s == '-') {
			neg = 1;
			s++;
		}
		while (*s && *s != ',' && n < 31)
			name[n++] = *s++;
		name[n] = 0;
		if (*s == ',')
			s++;
		for (k = 0; k < N_KIND && !seq(name, kind_name[k]); k++)
			;
		if (k == N_KIND)
			return -1;
		if (neg)
			minus |= 1u << k;
		else
			plus |= 1u << k;
	}
	*out = ((plus ? plus : all) & ~minus) | (1u << K_PLAIN);
	return 0;
}

static void __attribute__((noreturn)) usage(void)
{
	static const char msg[] =
		"usage: diffgen SEED STEPS OUT.json [KINDS]\n"
		"KINDS: all (default), or a comma list of kinds, or of -kinds to\n"
		"leave out: plain signal fault fault_sigreturn restart_thread\n"
		"restart_child fork vfork thread exec exec_thread ptrace rseq\n"
		"migrate compat int80 seccomp stop parallel orphan selfkill\n"
		"exec_preempt\n";

	S3(NR_write, 2, msg, sizeof(msg) - 1);
	exit_group(2);
}

static void common_image_setup(void)
{
	g_pid = (int)C0(NR_getpid);
	install_all();
	g_plan.mode = PM_SYNC;
}

static void find_cpus(void)
{
	u64 mask = 0;
	long r = C3(NR_sched_getaffinity, 0, 8, &mask);

	CHECK(r > 0, "sched_getaffinity", r, 0);
	g_ncpu = 0;
	for (int c = 0; c < 64 && c < N_CPU; c++)
		if (mask & (1ULL << c))
			g_cpus[g_ncpu++] = c;
	CHECK(g_ncpu > 0, "no CPU", 0, 0);
}

/* First image: diffgen SEED STEPS OUT [KINDS] */
static void __attribute__((noreturn)) main_first(int argc, char **argv)
{
	u64 seed, steps;
	long fd, r;
	const char *kinds = argc > 4 ? argv[4] : "all";

	if (argc < 4 || argc > 5 || parse_u64(argv[1], 10, &seed) ||
	    parse_u64(argv[2], 10, &steps))
		usage();
	g_seed = seed;
	g_steps = (long)steps;
	if (parse_kinds(kinds, &g_kinds))
		usage();
	seed_rng(seed);

	/* Counters first; the syscalls before them are counted after. */
	fd = S2(NR_memfd_create, "diffgen", 0);
	if (fd < 0)
		die("memfd_create", fd, 0);
	r = S2(NR_ftruncate, fd, SHM_SIZE);
	CHECK(r == 0, "ftruncate", r, 0);
	r = S6(NR_mmap, 0, SHM_SIZE, 3, 1, fd, 0);
	CHECK(r > 0, "mmap", r, 0);
	g_shm = (struct shm *)r;
	g_shm->magic = SHM_MAGIC;
	g_shm_fd = (int)fd;
	/* The launcher's execve of this image (RCX = 0 in a new image). */
	count(ABI_X64, NR_execve, O_RCX);
	count(ABI_X64, NR_memfd_create, O_SYSRET);
	count(ABI_X64, NR_ftruncate, O_SYSRET);
	count(ABI_X64, NR_mmap, O_SYSRET);

	g_out_fd = (int)C4(NR_openat, AT_FDCWD, argv[3],
			   O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(g_out_fd >= 0, "cannot open the output file", g_out_fd, 0);
	r = C3(NR_readlink, "/proc/self/exe", g_self, sizeof(g_self) - 4);
	CHECK(r > 0 && r < (long)sizeof(g_self) - 4, "readlink", r, 0);
	g_self[r] = 0;
	memcpy(g_self32, g_self, r);
	memcpy(g_self32 + r, "32", 3);
	find_cpus();
	pin_to(g_cpus[below(g_ncpu)]);	/* from here on every return is pinned */
	g_have32 = C2(NR_access, g_self32, 1 /* X_OK */) == 0;
	if (!g_have32)
		g_kinds &= ~(1u << K_COMPAT);
	common_image_setup();
	drive(0);
}

/* A driver image after exec: @drv SHMFD OUTFD SEED STEPS NEXT RNG CPU NR
 * CPUMASK KINDS */
static void __attribute__((noreturn)) main_drv(int argc, char **argv)
{
	u64 v[10], m = 0;
	long r;

	CHECK(argc == 12, "@drv arguments", argc, 0);
	for (int i = 0; i < 10; i++)
		CHECK(parse_u64(argv[2 + i], 16, &v[i]) == 0, "@drv argument",
		      i, 0);
	g_shm_fd = (int)v[0];
	g_out_fd = (int)v[1];
	g_seed = v[2];
	g_steps = (long)v[3];
	g_rng = v[5];
	g_cpu_main = (int)v[6];
	g_kinds = (u32)v[9];
	g_step = (long)v[4] - 1;
	g_what = "exec";
	map_shm(g_shm_fd);
	count(ABI_X64, (int)v[7], O_RCX);	/* the exec that started us */
	memcpy(g_self, argv[0], slen(argv[0]) + 1);
	memcpy(g_self32, g_self, slen(g_self));
	memcpy(g_self32 + slen(g_self), "32", 3);
	g_ncpu = 0;
	for (int c = 0; c < N_CPU; c++)
		if (v[8] & (1ULL << c))
			g_cpus[g_ncpu++] = c;
	r = C3(NR_sched_getaffinity, 0, 8, &m);
	CHECK(r > 0 && m == 1ULL << g_cpu_main, "exec lost the pinning",
	      g_cpu_main, m);
	{
		int prio = 0;	/* exec keeps SCHED_FIFO (exec_preempt) */

		CHECK(C3(NR_sched_setscheduler, 0, 0 /* SCHED_OTHER */,
			 &prio) == 0, "sched_setscheduler", 0, 0);
	}
	common_image_setup();
	drive((long)v[4]);
}

/* @child SHMFD CPU ABI NR OUT K RNG: count the exec, K plain, exit. */
static void __attribute__((noreturn)) main_child(int argc, char **argv)
{
	u64 v[7];

	CHECK(argc == 9, "@child arguments", argc, 0);
	for (int i = 0; i < 7; i++)
		CHECK(parse_u64(argv[2 + i], 16, &v[i]) == 0, "@child argument",
		      i, 0);
	g_what = "child image";
	g_cpu_main = (int)v[1];
	g_rng = v[6] ? v[6] : 1;
	map_shm((int)v[0]);
	count((int)v[2], (int)v[3], (int)v[4]);
	plain_burst((int)v[5]);
	exit_group(0);
}

void __attribute__((noreturn, used)) start_c(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);

	if (argc >= 2 && seq(argv[1], "@drv"))
		main_drv(argc, argv);
	if (argc >= 2 && seq(argv[1], "@child"))
		main_child(argc, argv);
	main_first(argc, argv);
}

__asm__(".pushsection .text\n"
	".globl _start\n"
	"_start:\n"
	"	xorl %ebp, %ebp\n"
	"	movq %rsp, %rdi\n"
	"	andq $-16, %rsp\n"
	"	call start_c\n"
	"	ud2\n"
	".popsection\n");

/* ------------------------------------------------------------------ */
#elif defined(__i386__)
/* ------------------------------------------------------------------ */

/*
 * diffgen32 SHMFD CPU RNG K END K2 DIFFGEN64
 * A 32-bit image, exec'd by a 64-bit diffgen child: counts its own exec
 * (a 64-bit execve: rcx_ne_rip), makes K i386 syscalls, each through
 * int $0x80 (int80) or the vDSO's __kernel_vsyscall (SYSRETL), then END:
 * 0 exit_group, 1 execve DIFFGEN64 through int $0x80, 2 through the vDSO.
 */
#define NR32_exit_group 252
#define NR32_execve 11
#define NR32_write 4
#define NR32_mmap2 192
#define NR32_getpid 20
#define NR32_getppid 64
#define NR32_gettid 224
#define NR32_getuid32 199
#define NR32_sched_yield 158
#define NR32_rt_sigreturn 173
#define NR32_rt_sigaction 174
#define NR32_tgkill 270
#define AT_SYSINFO 32

static int g_cpu32 = -1;

static u64 *rng_state(void)
{
	return &g_rng;
}

static int cur_cpu(void)
{
	return g_cpu32;
}

static long i80(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "0"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory");
	return ret;
}

static long i80_4(long nr, long a, long b, long c, long d)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "0"(nr), "b"(a), "c"(b), "d"(c), "S"(d)
			 : "memory");
	return ret;
}

static u32 g_vsys;

static long fast(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("call *%[v]"
			 : "=a"(ret)
			 : "0"(nr), "b"(a), "c"(b), "d"(c), [v] "m"(g_vsys)
			 : "memory", "cc");
	return ret;
}

void restore32(void);
__asm__(".pushsection .text\n"
	".globl restore32\n"
	"restore32:\n"
	"	movl $173, %eax\n"	/* rt_sigreturn, through int $0x80 */
	"	int $0x80\n"
	"	ud2\n"
	".popsection\n");

static volatile int g_usr1_32;

static void on_usr1_32(int sig, void *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	g_usr1_32++;
	count(ABI_I386, NR32_rt_sigreturn, O_INT80);
}

static void __attribute__((noreturn)) die(const char *what, long a, long b)
{
	char buf[256];
	struct sb s = { buf, 0, sizeof(buf) };

	sb_put(&s, "diffgen32: ");
	sb_put(&s, what);
	sb_put(&s, " [");
	sb_s64(&s, a);
	sb_put(&s, " ");
	sb_s64(&s, b);
	sb_put(&s, "]\n");
	i80(NR32_write, 2, (long)buf, (long)s.len);
	for (;;)
		i80(NR32_exit_group, 1, 0, 0);
}

void __attribute__((noreturn, used)) start_c32(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	u32 *aux;
	u64 v[6];
	long sig_pid = 0, sig_tid = 0;
	static const short nrs[] = { NR32_getpid, NR32_getppid, NR32_gettid,
				     NR32_getuid32, NR32_sched_yield };
	long r;

	while (*envp)
		envp++;
	for (aux = (u32 *)(envp + 1); aux[0]; aux += 2)
		if (aux[0] == AT_SYSINFO)
			g_vsys = aux[1];
	if (argc != 8 || !g_vsys)
		die("arguments or AT_SYSINFO", argc, g_vsys);
	for (int i = 0; i < 6; i++)
		if (parse_u64(argv[1 + i], 16, &v[i]))
			die("bad argument", i, 0);
	g_cpu32 = (int)v[1];
	g_rng = v[2] ? v[2] : 1;
	{
		long p;

		/* mmap2(0, size, RW, MAP_SHARED, fd, 0): six args, EBP = 0 */
		__asm__ volatile("push %%ebp\n\t"
				 "xorl %%ebp, %%ebp\n\t"
				 "int $0x80\n\t"
				 "pop %%ebp"
				 : "=a"(p)
				 : "0"(NR32_mmap2), "b"(0), "c"(SHM_SIZE),
				   "d"(3), "S"(1), "D"((long)v[0])
				 : "memory");
		if ((unsigned long)p > 0xfffff000UL)
			die("mmap2", p, 0);
		g_shm = (struct shm *)p;
	}
	count(ABI_I386, NR32_mmap2, O_INT80);
	count(ABI_X64, 59, O_RCX);	/* exec'd from 64-bit code */
	if (below(2)) {
		/*
		 * A handler (its sigreturn goes through int $0x80), and
		 * tgkill to self now and then: through int $0x80 that return
		 * stays int80; through the vDSO it would have taken SYSRETL
		 * and the frame makes it "signal".
		 */
		struct { u32 handler, flags, restorer, mask[2]; } sa = {
			(u32)on_usr1_32, 0x4 | 0x04000000, (u32)restore32,
			{ 0, 0 } };

		r = i80_4(NR32_rt_sigaction, 10, (long)&sa, 0, 8);
		if (r != 0)
			die("rt_sigaction", r, 0);
		count(ABI_I386, NR32_rt_sigaction, O_INT80);
		sig_pid = i80(NR32_getpid, 0, 0, 0);
		count(ABI_I386, NR32_getpid, O_INT80);
		sig_tid = i80(NR32_gettid, 0, 0, 0);
		count(ABI_I386, NR32_gettid, O_INT80);
	}
	for (u32 i = 0; i < (u32)v[3]; i++) {
		int nr = nrs[below(5)];

		if (sig_pid && below(4) == 0) {
			int before = g_usr1_32, f = below(2);

			r = f ? fast(NR32_tgkill, sig_pid, sig_tid, 10) :
				i80(NR32_tgkill, sig_pid, sig_tid, 10);
			if (r != 0 || g_usr1_32 != before + 1)
				die("32-bit tgkill", r, g_usr1_32 - before);
			count(ABI_I386, NR32_tgkill, f ? O_SIGNAL : O_INT80);
			tally_var(f ? V_COMPAT_SIG_FAST : V_COMPAT_SIG_INT80);
			continue;
		}
		if (below(2)) {
			r = i80(nr, 0, 0, 0);
			count(ABI_I386, nr, O_INT80);
			tally_var(V_COMPAT_INT80);
		} else {
			r = fast(nr, 0, 0, 0);
			count(ABI_I386, nr, O_SYSRET);
			tally_var(V_COMPAT_FAST);
		}
		if (r < 0)
			die("i386 syscall failed", nr, r);
	}
	if (v[4] == 0)
		for (;;)
			i80(NR32_exit_group, 0, 0, 0);
	{
		/* @child SHMFD CPU ABI NR OUT K RNG */
		static char a[7][24];
		char *cargv[10];
		u64 cv[7] = { v[0], v[1], ABI_I386, NR32_execve,
			      v[4] == 1 ? O_INT80 : O_COMPAT, v[5], rnd() };

		cargv[0] = argv[7];
		cargv[1] = "@child";
		for (int i = 0; i < 7; i++) {
			struct sb b = { a[i], 0, sizeof(a[i]) };

			sb_u64(&b, cv[i], 16);
			cargv[2 + i] = a[i];
		}
		cargv[9] = 0;
		if (v[4] == 1)
			r = i80(NR32_execve, (long)argv[7], (long)cargv, 0);
		else
			r = fast(NR32_execve, (long)argv[7], (long)cargv, 0);
		die("execve of the 64-bit image", r, 0);
	}
}

__asm__(".pushsection .text\n"
	".globl _start\n"
	"_start:\n"
	"	xorl %ebp, %ebp\n"
	"	movl %esp, %eax\n"
	"	andl $-16, %esp\n"
	"	subl $12, %esp\n"
	"	pushl %eax\n"
	"	call start_c32\n"
	"	ud2\n"
	".popsection\n");

#else
#error "diffgen: x86-64 or i386 only"
#endif
