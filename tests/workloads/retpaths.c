// SPDX-License-Identifier: GPL-2.0
/*
 * retpaths - 64-bit workloads whose syscall return paths are known by
 * construction, for testing sysretstat.
 *
 *   usage: retpaths SCENARIO N
 *
 * Every scenario runs N iterations (N >= 0), prints exactly one line
 * "ok SCENARIO N" (the rseq scenario appends " aborted=K") with write(2)
 * and exits 0.  Any unexpected result prints a message on stderr and exits 1.
 *
 * The kernel (arch/x86/entry/syscall_64.c, do_syscall_64) returns to user
 * space with SYSRET only if, in this order,
 *   RCX == RIP, R11 == RFLAGS, CS == 0x33, SS == 0x2b,
 *   RIP < TASK_SIZE_MAX (0x7ffffffff000 with 4-level paging),
 *   RFLAGS has neither RF nor TF;
 * otherwise it uses IRET.  The scenarios below make each of these checks
 * fail on purpose (mostly by editing a signal frame before rt_sigreturn),
 * or go through the other paths that rewrite the user registers on the way
 * out (signal delivery, syscall restart, fork child, exec, ptrace, rseq).
 *
 * To keep the syscall stream predictable the workloads issue the syscalls
 * under test with the "syscall" instruction directly (inline asm), never
 * through stdio, and fork with a raw clone(SIGCHLD) so the child runs no
 * libc fork handlers.  See README.md for the expected counts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <asm/ldt.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

/* Selectors from arch/x86/include/asm/segment.h (64-bit kernel). */
#define USER_CS		0x33	/* __USER_CS: 64-bit user code */
#define USER32_CS	0x23	/* __USER32_CS: 32-bit (compat) user code */
#define USER_DS		0x2b	/* __USER_DS: user data / stack */
#define LDT_SS		0x07	/* LDT entry 0, TI=1 (LDT), RPL=3 */

#define EFL_CF		0x00001UL
#define EFL_TF		0x00100UL
#define EFL_RF		0x10000UL
/*
 * FIX_EFLAGS from arch/x86/include/asm/sighandling.h: the only RFLAGS bits
 * rt_sigreturn takes from the signal frame (AC OF DF TF SF ZF AF PF CF RF).
 * All other bits keep the value they had when rt_sigreturn was entered.
 */
#define FIX_EFLAGS	0x50dd5UL

/* From <asm/ucontext.h>, which cannot be included next to <ucontext.h>. */
#define UC_STRICT_RESTORE_SS	0x4UL

/*
 * A canonical-looking nowhere: bit 63 set, bit 56/47 clear, so it is
 * non-canonical with both 4- and 5-level paging and >= TASK_SIZE_MAX.
 */
#define BAD_RIP		0x8000000000000000UL

#define ERESTARTSYS_	512	/* include/linux/errno.h, kernel-internal */

/*
 * TASK_SIZE_MAX, the first address of the last page below the top of
 * the user half: (1 << 47) - 4096, or (1 << 56) - 4096 with 5-level
 * paging.  Canonical, so the <= 6.6 guard (a canonical test) lets SYSRET
 * return there; the >= 6.7 guard (RIP < TASK_SIZE_MAX) sends it to IRET.
 * Never mapped, so either way the first fetch there faults.
 */
#define TOP_RIP_4LVL	0x00007ffffffff000UL
#define TOP_RIP_5LVL	0x00fffffffffff000UL

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static const char *g_scenario = "?";

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	char buf[512];
	int len = snprintf(buf, sizeof(buf), "retpaths %s: ", g_scenario);
	va_list ap;

	va_start(ap, fmt);
	len += vsnprintf(buf + len, sizeof(buf) - len, fmt, ap);
	va_end(ap);
	if (len > (int)sizeof(buf) - 2)
		len = sizeof(buf) - 2;
	buf[len++] = '\n';
	if (write(2, buf, len) < 0) {
		/* nothing more we can do */
	}
	_exit(1);
}

/* The single line of output on success, written with one write(2). */
#include "procwait.h"

static int report_ok(const char *name, long n, const char *extra)
{
	char buf[128];
	int len = snprintf(buf, sizeof(buf), "ok %s %ld%s\n", name, n,
			   extra ? extra : "");

	if (write(1, buf, len) != len)
		die("write of the result line failed");
	return 0;
}

/*
 * Raw syscall through the "syscall" instruction.  The CPU overwrites RCX
 * (return RIP) and R11 (RFLAGS) and the kernel may rewrite both, so they
 * are clobbered.  Unused arguments are passed as 0.
 */
static inline long rsys(long nr, long a1, long a2, long a3, long a4, long a5)
{
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

#define sys0(nr)		rsys((nr), 0, 0, 0, 0, 0)
#define sys1(nr, a)		rsys((nr), (long)(a), 0, 0, 0, 0)
#define sys2(nr, a, b)		rsys((nr), (long)(a), (long)(b), 0, 0, 0)
#define sys3(nr, a, b, c)	rsys((nr), (long)(a), (long)(b), (long)(c), 0, 0)

static void __attribute__((noreturn)) raw_exit(int code)
{
	for (;;)
		sys1(__NR_exit_group, code);
}

/*
 * fork() as a bare clone(SIGCHLD): the child's only extra return is its
 * first return from clone (nr 56); glibc's fork() would add
 * set_robust_list and atfork work in the child.  The child must only use
 * raw syscalls afterwards (glibc's cached thread id is the parent's).
 */
static pid_t raw_fork(void)
{
	long r = rsys(__NR_clone, SIGCHLD, 0, 0, 0, 0);

	if (r < 0)
		die("clone: %s", strerror((int)-r));
	return (pid_t)r;
}

/* wait4 on a specific child, insisting on a clean exit(0). */
static void reap_ok(pid_t pid, const char *what)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		die("waitpid(%s): %s", what, strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("%s did not exit(0): status 0x%x", what, st);
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = SA_SIGINFO | flags;   /* glibc adds SA_RESTORER */
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL))
		die("sigaction(%d): %s", sig, strerror(errno));
}

/* ------------------------------------------------------------------ */
/* sysret: the plain fast path                                          */
/* ------------------------------------------------------------------ */

static int run_sysret(long n)
{
	for (long i = 0; i < n; i++) {
		long r = sys0(__NR_getppid);

		if (r <= 0)
			die("getppid returned %ld", r);
	}
	return report_ok("sysret", n, NULL);
}

/*
 * seccomp_errno: an unprivileged seccomp filter makes getppid fail with
 * errno 512, ERESTARTSYS's number, without running it.  The kernel
 * restarts a syscall only from arch_do_signal_or_restart(), with a signal
 * pending; none is, so every one returns -512 to here, by SYSRET.
 */
static int run_seccomp_errno(long n)
{
	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 512),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = sizeof(insns) / sizeof(insns[0]), .filter = insns,
	};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		die("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		die("PR_SET_SECCOMP: %s", strerror(errno));
	for (long i = 0; i < n; i++) {
		long r = sys0(__NR_getppid);

		if (r != -512)
			die("getppid returned %ld, wanted -512", r);
	}
	return report_ok("seccomp_errno", n, NULL);
}

/*
 * nosys: syscall number -1, which no ABI has: -ENOSYS, by SYSRET.  The
 * kernel sees orig_ax == -1, which has the x32 bit set among all others;
 * it is not an x32 call.
 */
static int run_nosys(long n)
{
	for (long i = 0; i < n; i++) {
		long r = sys0(-1);

		if (r != -ENOSYS)
			die("syscall(-1) returned %ld", r);
	}
	return report_ok("nosys", n, NULL);
}

/* ------------------------------------------------------------------ */
/* Signal-frame scenarios                                               */
/* ------------------------------------------------------------------ */

/* Which single guard the SIGUSR1 handler breaks in the frame it returns to. */
enum edit {
	E_NONE,		/* signal: leave the frame as the kernel built it */
	E_RCX,		/* rcx_ne_rip */
	E_R11,		/* r11_ne_rflags */
	E_CS,		/* cs_not_user */
	E_SS,		/* ss_not_user */
	E_RIP,		/* rip_noncanonical */
	E_TOP,		/* rip_top_page: RIP = TASK_SIZE_MAX */
	E_RF,		/* rflags_rf */
	E_TF,		/* rflags_tf */
};

static volatile enum edit g_edit;
static pid_t g_pid, g_tid;
static sigjmp_buf g_jmp;

static volatile long g_usr1_count, g_trap_count, g_segv_count, g_cs_count;
static volatile unsigned long g_usr1_rip;	/* RIP saved in the SIGUSR1 frame */
static volatile unsigned long g_set_rcx, g_set_r11;
static volatile unsigned long g_trap_rip, g_segv_rip;
static unsigned long g_top_rip;	/* E_TOP: TASK_SIZE_MAX of this kernel */

/* 32-bit trampoline page for cs_not_user (below 4 GiB). */
static unsigned char *g_low_code;
/* Fresh stack for the 64-bit code that the trampoline lands on. */
static unsigned char g_recover_stack[16384] __attribute__((aligned(16)));

static inline unsigned long read_rflags(void)
{
	unsigned long f;

	__asm__ volatile("pushfq; popq %0" : "=r"(f));
	return f;
}

/*
 * The RFLAGS value regs->flags will hold after rt_sigreturn restores a frame
 * whose saved flags are 'saved': FIX_EFLAGS bits from the frame, the other
 * bits (IF, bit 1, ...) as they are at the rt_sigreturn syscall, which are
 * the same as here in the handler.  R11 must equal exactly this for the
 * R11 == RFLAGS guard to pass.
 */
static unsigned long flags_after_sigreturn(unsigned long saved)
{
	return (read_rflags() & ~FIX_EFLAGS) | (saved & FIX_EFLAGS);
}

/* gregs[REG_CSGSFS] packs cs | gs << 16 | fs << 32 | ss << 48. */
static void frame_set_cs(greg_t *g, unsigned long sel)
{
	g[REG_CSGSFS] = (g[REG_CSGSFS] & ~0xffffUL) | sel;
}

static void frame_set_ss(greg_t *g, unsigned long sel)
{
	g[REG_CSGSFS] = (g[REG_CSGSFS] & ~(0xffffUL << 48)) | (sel << 48);
}

static void on_usr1(int sig, siginfo_t *si, void *ctxv)
{
	ucontext_t *uc = ctxv;
	greg_t *g = uc->uc_mcontext.gregs;

	(void)sig;
	(void)si;
	g_usr1_count++;
	g_usr1_rip = g[REG_RIP];
	if (g_edit == E_NONE)
		return;	/* untouched frame: RCX==RIP, R11==RFLAGS as saved */

	/*
	 * Start from a frame that passes every guard, then break exactly one,
	 * keeping all the guards that the kernel checks earlier satisfied.
	 */
	g[REG_RCX] = g[REG_RIP];
	switch (g_edit) {
	case E_RCX:
		g[REG_RCX] = g[REG_RIP] + 1;
		break;
	case E_CS:
		/* Resume in compat mode at the 32-bit trampoline. */
		g[REG_RIP] = g[REG_RCX] = (greg_t)(uintptr_t)g_low_code;
		frame_set_cs(g, USER32_CS);
		break;
	case E_SS:
		/*
		 * A valid, DPL-3 LDT data segment.  UC_STRICT_RESTORE_SS makes
		 * sigreturn keep it as is (without it the kernel would also
		 * keep it, since it is valid, but this states the intent).
		 */
		frame_set_ss(g, LDT_SS);
		uc->uc_flags |= UC_STRICT_RESTORE_SS;
		break;
	case E_RIP:
		g[REG_RIP] = g[REG_RCX] = (greg_t)BAD_RIP;
		break;
	case E_TOP:
		g[REG_RIP] = g[REG_RCX] = (greg_t)g_top_rip;
		break;
	case E_RF:
		g[REG_EFL] |= EFL_RF;
		break;
	case E_TF:
		g[REG_EFL] |= EFL_TF;
		break;
	default:
		break;
	}
	g[REG_R11] = flags_after_sigreturn(g[REG_EFL]);
	if (g_edit == E_R11)
		g[REG_R11] ^= EFL_CF;	/* differs from RFLAGS in one bit */
	g_set_rcx = g[REG_RCX];
	g_set_r11 = g[REG_R11];
}

/*
 * rflags_tf: IRET restored TF, the CPU ran one instruction (the "nop"
 * after the tgkill syscall) and raised #DB.  Clear TF (and RF) and make
 * this handler's own rt_sigreturn eligible for SYSRET.
 */
static void on_trap(int sig, siginfo_t *si, void *ctxv)
{
	ucontext_t *uc = ctxv;
	greg_t *g = uc->uc_mcontext.gregs;

	(void)sig;
	(void)si;
	g_trap_count++;
	g_trap_rip = g[REG_RIP];
	g[REG_EFL] &= ~(EFL_TF | EFL_RF);
	g[REG_RCX] = g[REG_RIP];
	g[REG_R11] = flags_after_sigreturn(g[REG_EFL]);
}

/*
 * rip_noncanonical: IRET to a non-canonical RIP faults (#GP), which the
 * kernel turns into a user-mode SIGSEGV.  Leave with siglongjmp; the
 * handler is SA_NODEFER and the jmp_buf saves no mask, so no syscall is
 * needed to get back (no rt_sigreturn, no rt_sigprocmask).
 */
static void on_segv(int sig, siginfo_t *si, void *ctxv)
{
	ucontext_t *uc = ctxv;

	(void)si;
	if (g_edit != E_RIP && g_edit != E_TOP)
		die("unexpected signal %d at rip 0x%llx", sig,
		    (unsigned long long)uc->uc_mcontext.gregs[REG_RIP]);
	g_segv_count++;
	g_segv_rip = uc->uc_mcontext.gregs[REG_RIP];
	siglongjmp(g_jmp, 1);
}

/* cs_not_user: the 32-bit trampoline jumps back to 64-bit code here. */
static void __attribute__((noreturn, used)) cs_recover(void)
{
	g_cs_count++;
	siglongjmp(g_jmp, 1);
}

/*
 * Build the trampoline in a page below 4 GiB (a far jump in compat mode
 * only has a 32-bit offset):
 *
 *   +0  (32-bit code)  ljmp $0x33, $+8        ; EA imm32 imm16
 *   +8  (64-bit code)  movabs $stack_top-8, %rsp
 *                      movabs $cs_recover, %rax
 *                      jmp *%rax
 *
 * The compat-mode code touches neither the stack nor DS (which is the null
 * selector here).  The 64-bit code reloads RSP because the upper halves of
 * registers are not architecturally preserved across the mode switches.
 */
static void setup_low_code(void)
{
	unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	uint64_t stack = (uint64_t)(uintptr_t)(g_recover_stack +
					       sizeof(g_recover_stack)) - 8;
	uint64_t target = (uint64_t)(uintptr_t)&cs_recover;
	uint32_t land;
	uint16_t sel = USER_CS;
	unsigned char *q;

	if (p == MAP_FAILED)
		die("mmap(MAP_32BIT): %s", strerror(errno));
	if ((uintptr_t)p + 4096 > 0x100000000UL)
		die("MAP_32BIT page at %p is not below 4 GiB", (void *)p);
	land = (uint32_t)(uintptr_t)(p + 8);

	q = p;
	*q++ = 0xea;				/* ljmp ptr16:32 */
	memcpy(q, &land, 4);	q += 4;
	memcpy(q, &sel, 2);	q += 2;
	*q++ = 0x90;				/* pad to +8 */

	*q++ = 0x48; *q++ = 0xbc;		/* movabs $imm64, %rsp */
	memcpy(q, &stack, 8);	q += 8;
	*q++ = 0x48; *q++ = 0xb8;		/* movabs $imm64, %rax */
	memcpy(q, &target, 8);	q += 8;
	*q++ = 0xff; *q++ = 0xe0;		/* jmp *%rax */

	if (mprotect(p, 4096, PROT_READ | PROT_EXEC))
		die("mprotect: %s", strerror(errno));
	g_low_code = p;
}

/* ss_not_user: LDT entry 0 = flat 32-bit read/write data, DPL 3. */
static void setup_ldt(void)
{
	struct user_desc d;
	long r;

	memset(&d, 0, sizeof(d));
	d.entry_number = 0;
	d.base_addr = 0;
	d.limit = 0xfffff;
	d.seg_32bit = 1;
	d.contents = 0;			/* data, expand-up */
	d.read_exec_only = 0;		/* writable */
	d.limit_in_pages = 1;
	d.seg_not_present = 0;
	d.useable = 1;
	r = sys3(__NR_modify_ldt, 1, &d, sizeof(d));
	if (r != 0)
		die("modify_ldt: %s", strerror((int)-r));
}

struct after_raise {
	long ret;
	unsigned long rcx, r11, ss;
};

/*
 * Send SIGUSR1 to this thread with a raw tgkill and record RCX, R11 and SS
 * as they are right after the syscall.  The "nop" is the one instruction
 * that runs before the single-step trap in the rflags_tf scenario.
 */
static inline __attribute__((always_inline)) void
raise_usr1(struct after_raise *o)
{
	register unsigned long r11 __asm__("r11");
	unsigned long rcx, ss;
	long ret;

	__asm__ volatile("syscall\n\t"
			 "nop\n\t"
			 "mov %%ss, %k[ss]"
			 : "=a"(ret), "=c"(rcx), "=r"(r11), [ss] "=&r"(ss)
			 : "0"((long)__NR_tgkill), "D"((long)g_pid),
			   "S"((long)g_tid), "d"((long)SIGUSR1)
			 : "memory");
	o->ret = ret;
	o->rcx = rcx;
	o->r11 = r11;
	o->ss = ss & 0xffff;
}


/* 5-level paging in use: the kernel clears the la57 flag otherwise. */
static int la57(void)
{
	static char buf[1 << 16];
	char *flags;

	if (read_small("/proc/cpuinfo", buf, sizeof(buf)) < 0)
		die("cannot read /proc/cpuinfo");
	flags = strstr(buf, "\nflags");
	if (!flags)
		die("no flags line in /proc/cpuinfo");
	*strchrnul(flags + 1, '\n') = '\0';
	return strstr(flags, " la57") != NULL;
}

/* One iteration of a scenario that leaves through siglongjmp. */
static void __attribute__((noinline)) jmp_iteration(void)
{
	struct after_raise a;

	if (sigsetjmp(g_jmp, 0) == 0) {
		raise_usr1(&a);
		die("rt_sigreturn came back to the tgkill call site");
	}
}

static int run_sigframe(const char *name, enum edit e, long n)
{
	struct after_raise a;

	g_pid = getpid();
	g_tid = gettid();
	g_edit = e;
	install(SIGUSR1, on_usr1, 0);
	if (e == E_TF)
		install(SIGTRAP, on_trap, 0);
	if (e == E_TOP)
		g_top_rip = la57() ? TOP_RIP_5LVL : TOP_RIP_4LVL;
	if (e == E_RIP || e == E_TOP) {
		install(SIGSEGV, on_segv, SA_NODEFER);
		install(SIGBUS, on_segv, SA_NODEFER);
	}
	if (e == E_CS)
		setup_low_code();
	if (e == E_SS)
		setup_ldt();

	for (long i = 0; i < n; i++) {
		if (e == E_RIP || e == E_TOP || e == E_CS) {
			jmp_iteration();
			continue;
		}
		raise_usr1(&a);
		if (a.ret != 0)
			die("tgkill returned %ld", a.ret);
		switch (e) {
		case E_RCX:
			if (a.rcx != g_set_rcx)
				die("rcx 0x%lx, frame had 0x%lx", a.rcx,
				    (unsigned long)g_set_rcx);
			break;
		case E_R11:
			if (a.r11 != g_set_r11)
				die("r11 0x%lx, frame had 0x%lx", a.r11,
				    (unsigned long)g_set_r11);
			break;
		case E_SS:
			if (a.ss != LDT_SS)
				die("ss is 0x%lx after sigreturn, wanted 0x%x",
				    a.ss, LDT_SS);
			break;
		case E_TF:
			if (g_trap_rip != g_usr1_rip + 1)
				die("single-step trap at 0x%lx, expected 0x%lx",
				    (unsigned long)g_trap_rip,
				    (unsigned long)g_usr1_rip + 1);
			break;
		default:
			break;
		}
	}

	if (g_usr1_count != n)
		die("SIGUSR1 handler ran %ld times", (long)g_usr1_count);
	if (e == E_TF && g_trap_count != n)
		die("SIGTRAP handler ran %ld times", (long)g_trap_count);
	if ((e == E_RIP || e == E_TOP) && g_segv_count != n)
		die("SIGSEGV handler ran %ld times", (long)g_segv_count);
	if (e == E_RIP && n && g_segv_rip != BAD_RIP)
		die("SIGSEGV at rip 0x%lx", (unsigned long)g_segv_rip);
	if (e == E_TOP && n && g_segv_rip != g_top_rip)
		die("SIGSEGV at rip 0x%lx, wanted 0x%lx",
		    (unsigned long)g_segv_rip, g_top_rip);
	if (e == E_CS && g_cs_count != n)
		die("32-bit trampoline came back %ld times", (long)g_cs_count);
	return report_ok(name, n, NULL);
}

/* ------------------------------------------------------------------ */
/* restart: read(2) interrupted by SIGSTOP/SIGCONT, no handler          */
/* ------------------------------------------------------------------ */

/* Read a small /proc file into buf (NUL-terminated); returns length or -1. */
/* The read of a child blocked on the pipe (syscall 0). */
static void wait_blocked_in_read(pid_t pid)
{
	wait_blocked_in_pipe_read(pid, __NR_read);
}

static int run_restart(long n)
{
	int fds[2], st;
	pid_t pid;

	if (pipe(fds))
		die("pipe: %s", strerror(errno));
	pid = raw_fork();
	if (pid == 0) {
		char c;
		long r;

		sys1(__NR_close, fds[1]);	/* EOF if the parent dies */
		r = sys3(__NR_read, fds[0], &c, 1);
		raw_exit(r == 1 && c == 'x' ? 0 : 2);
	}
	close(fds[0]);

	for (long i = 0; i < n; i++) {
		wait_blocked_in_read(pid);
		if (kill(pid, SIGSTOP))
			die("kill(SIGSTOP): %s", strerror(errno));
		if (waitpid(pid, &st, WUNTRACED) != pid || !WIFSTOPPED(st) ||
		    WSTOPSIG(st) != SIGSTOP)
			die("child did not stop (status 0x%x)", st);
		if (kill(pid, SIGCONT))
			die("kill(SIGCONT): %s", strerror(errno));
		if (waitpid(pid, &st, WCONTINUED) != pid || !WIFCONTINUED(st))
			die("child did not continue (status 0x%x)", st);
	}
	/* Let the last restarted read go back to sleep, then satisfy it. */
	wait_blocked_in_read(pid);
	if (write(fds[1], "x", 1) != 1)
		die("write to pipe: %s", strerror(errno));
	reap_ok(pid, "reader child");
	close(fds[1]);
	return report_ok("restart", n, NULL);
}

/* ------------------------------------------------------------------ */
/* fork: first return of a fresh child                                  */
/* ------------------------------------------------------------------ */

static int run_fork(long n)
{
	for (long i = 0; i < n; i++) {
		pid_t pid = raw_fork();

		if (pid == 0)
			raw_exit(0);
		reap_ok(pid, "fork child");
	}
	return report_ok("fork", n, NULL);
}

/* ------------------------------------------------------------------ */
/* exec: return from execve into a new image (RCX = 0)                  */
/* ------------------------------------------------------------------ */

extern char **environ;

/*
 * "exec N" execs its own executable N times in a chain; image k (1-based) is
 * started as "retpaths exec_done N k" and the last one prints "ok exec N".
 * "exec_done N" (no k) is the final image, as if k == N.
 */
static int exec_step(const char *argv0, long n, long k)
{
	char nbuf[32], kbuf[32];
	char *argv[] = { (char *)argv0, "exec_done", nbuf, kbuf, NULL };

	char self[4096];
	ssize_t len;

	if (k > n)
		return report_ok("exec", n, NULL);
	snprintf(nbuf, sizeof(nbuf), "%ld", n);
	snprintf(kbuf, sizeof(kbuf), "%ld", k);
	/*
	 * Exec the real path rather than "/proc/self/exe" so the new image
	 * keeps the command name "retpaths" (comm comes from the path).
	 */
	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len <= 0)
		die("readlink(/proc/self/exe): %s", strerror(errno));
	self[len] = '\0';
	execve(self, argv, environ);
	die("execve(%s): %s", self, strerror(errno));
}

/* ------------------------------------------------------------------ */
/* ptrace: tracer rewrites RCX at the syscall-exit stop of getppid      */
/* ------------------------------------------------------------------ */

static long peek_user(pid_t pid, size_t off)
{
	long v;

	errno = 0;
	v = ptrace(PTRACE_PEEKUSER, pid, (void *)off, NULL);
	if (v == -1 && errno)
		die("PTRACE_PEEKUSER(%zu): %s", off, strerror(errno));
	return v;
}

/* ------------------------------------------------------------------ */
/* Tracer edits at each stop kind, with and without a detach after     */
/* ------------------------------------------------------------------ */

#define UREG(r) offsetof(struct user, regs.r)

static void poke_user(pid_t pid, size_t off, long v)
{
	if (ptrace(PTRACE_POKEUSER, pid, (void *)off, (void *)v))
		die("PTRACE_POKEUSER(%zu): %s", off, strerror(errno));
}

static int g_pipe[2];

/* Tracee bodies: raw syscalls only. */
static void body_getppid(long n)
{
	for (long i = 0; i < n; i++)
		sys0(__NR_getppid);
}

static void body_tgkill(long n)
{
	long pid = sys0(__NR_getpid), tid = sys0(__NR_gettid);

	for (long i = 0; i < n; i++)
		sys3(__NR_tgkill, pid, tid, SIGUSR2);
}

static void body_read_eintr(long n)
{
	char c;

	sys1(__NR_close, g_pipe[1]);
	for (long i = 0; i < n; i++)
		if (sys3(__NR_read, g_pipe[0], &c, 1) != -EINTR)
			raw_exit(2);
}

/* A child that traces itself (TRACEME), stops, then runs body(n). */
static pid_t start_tracee(void (*body)(long), long n)
{
	int st;
	pid_t pid = raw_fork();

	if (pid == 0) {
		if (sys0(__NR_ptrace) != 0)	/* PTRACE_TRACEME == 0 */
			raw_exit(3);
		sys2(__NR_kill, sys0(__NR_getpid), SIGSTOP);
		body(n);
		raw_exit(0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFSTOPPED(st) ||
	    WSTOPSIG(st) != SIGSTOP)
		die("tracee did not stop (status 0x%x)", st);
	if (ptrace(PTRACE_SETOPTIONS, pid, NULL,
		   (void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL)))
		die("PTRACE_SETOPTIONS: %s", strerror(errno));
	return pid;
}

/* Wait for the tracee's next stop; 0 once it exited (with status 0). */
static int wait_tracee(pid_t pid, int *st)
{
	if (waitpid(pid, st, 0) != pid)
		die("waitpid(tracee): %s", strerror(errno));
	if (WIFEXITED(*st)) {
		if (WEXITSTATUS(*st) != 0)
			die("tracee exit status %d", WEXITSTATUS(*st));
		return 0;
	}
	if (WIFSIGNALED(*st))
		die("tracee killed by signal %d", WTERMSIG(*st));
	if (!WIFSTOPPED(*st))
		die("odd wait status 0x%x", *st);
	return 1;
}

/* Resume with `req`, wait for the next stop; 0 once the tracee exited. */
static int step_tracee(pid_t pid, int req, int sig, int *st)
{
	if (ptrace(req, pid, NULL, (void *)(long)sig))
		die("ptrace(%d): %s", req, strerror(errno));
	return wait_tracee(pid, st);
}

static int syscall_stop(pid_t pid, int st, struct __ptrace_syscall_info *info)
{
	if (WSTOPSIG(st) != (SIGTRAP | 0x80))
		return 0;
	memset(info, 0, sizeof(*info));
	if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, (void *)sizeof(*info),
		   info) <= 0)
		die("PTRACE_GET_SYSCALL_INFO: %s", strerror(errno));
	return 1;
}

/* Break RCX == RIP for the return the tracee is stopped on. */
static void break_rcx(pid_t pid)
{
	poke_user(pid, UREG(rcx), peek_user(pid, UREG(rip)) + 1);
}

/*
 * ptrace_detach: N tracees, each stopped at its getppid's syscall-exit
 * stop, where the tracer breaks RCX == RIP and detaches: the tracee
 * returns untraced, by IRET.
 * ptrace_origax: the tracer also sets orig_rax to -1, as gdb does to
 * keep the kernel from restarting a call it redirects.
 */
enum exit_edit { EDIT_RCX, EDIT_DETACH, EDIT_ORIGAX };

static int run_ptrace_exit_edit(const char *name, long n, enum exit_edit how)
{
	int detach = how == EDIT_DETACH;
	long edited = 0;
	int st, sig;
	struct __ptrace_syscall_info info;

	for (long t = 0; t < (detach ? n : 1); t++) {
		pid_t pid = start_tracee(body_getppid, detach ? 1 : n);

		sig = 0;	/* the initial SIGSTOP, suppressed */
		while (step_tracee(pid, PTRACE_SYSCALL, sig, &st)) {
			sig = 0;
			if (!syscall_stop(pid, st, &info)) {
				sig = WSTOPSIG(st);
				continue;
			}
			if (info.op != PTRACE_SYSCALL_INFO_EXIT ||
			    peek_user(pid, UREG(orig_rax)) != __NR_getppid)
				continue;
			break_rcx(pid);
			edited++;
			if (detach) {
				if (ptrace(PTRACE_DETACH, pid, NULL, NULL))
					die("PTRACE_DETACH: %s", strerror(errno));
				reap_ok(pid, "detached tracee");
				break;
			}
			if (how == EDIT_ORIGAX)
				poke_user(pid, UREG(orig_rax), -1);
		}
	}
	if (edited != n)
		die("edited %ld returns, expected %ld", edited, n);
	return report_ok(name, n, NULL);
}

/*
 * ptrace_sigstop: the tracee sends itself SIGUSR2 with tgkill; at the
 * signal-delivery stop on that return's way out the tracer breaks
 * RCX == RIP and suppresses the signal.
 */
static int run_ptrace_sigstop(long n)
{
	long edited = 0;
	int st, sig = 0;
	pid_t pid = start_tracee(body_tgkill, n);

	while (step_tracee(pid, PTRACE_CONT, sig, &st)) {
		sig = 0;
		if (WSTOPSIG(st) != SIGUSR2) {
			sig = WSTOPSIG(st) == SIGSTOP ? 0 : WSTOPSIG(st);
			continue;
		}
		break_rcx(pid);
		edited++;
	}
	if (edited != n)
		die("edited %ld returns, expected %ld", edited, n);
	return report_ok("ptrace_sigstop", n, NULL);
}

/*
 * ptrace_eintr: the tracee blocks in read on a pipe; a SIGWINCH (no
 * handler: only a traced task is woken by it) makes read return
 * -ERESTARTSYS; at the syscall-exit stop the tracer turns it into
 * -EINTR and then suppresses the signal.  The kernel restarts nothing:
 * read returns -EINTR by SYSRET.
 */
static int run_ptrace_eintr(long n)
{
	long edited = 0;
	int st, sig = 0, kick = 0;
	pid_t pid;
	struct __ptrace_syscall_info info;

	if (pipe(g_pipe))
		die("pipe: %s", strerror(errno));
	pid = start_tracee(body_read_eintr, n);
	close(g_pipe[0]);
	for (;;) {
		if (ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(long)sig))
			die("PTRACE_SYSCALL: %s", strerror(errno));
		sig = 0;
		if (kick) {
			wait_blocked_in_read(pid);
			if (kill(pid, SIGWINCH))
				die("kill(SIGWINCH): %s", strerror(errno));
			kick = 0;
		}
		if (!wait_tracee(pid, &st))
			break;
		if (!syscall_stop(pid, st, &info))
			continue;	/* SIGWINCH: suppressed */
		if (info.op == PTRACE_SYSCALL_INFO_ENTRY &&
		    info.entry.nr == __NR_read)
			kick = 1;
		if (info.op == PTRACE_SYSCALL_INFO_EXIT &&
		    peek_user(pid, UREG(orig_rax)) == __NR_read) {
			if (info.exit.rval != -ERESTARTSYS_)
				die("read returned %lld, not -ERESTARTSYS",
				    (long long)info.exit.rval);
			poke_user(pid, UREG(rax), -EINTR);
			edited++;
		}
	}
	close(g_pipe[1]);
	if (edited != n)
		die("edited %ld returns, expected %ld", edited, n);
	return report_ok("ptrace_eintr", n, NULL);
}

/*
 * ptrace_groupstop: the tracee (PTRACE_SEIZE) sends itself SIGSTOP with
 * tgkill; the tracer lets the stop happen and, at the group stop
 * (PTRACE_EVENT_STOP) on that return's way out, breaks RCX == RIP.
 */
static void body_sigstop(long n)
{
	long pid = sys0(__NR_getpid), tid = sys0(__NR_gettid);

	for (long i = 0; i < n; i++)
		sys3(__NR_tgkill, pid, tid, SIGSTOP);
}

static int run_ptrace_groupstop(long n)
{
	long edited = 0;
	int st, sig;
	pid_t pid = raw_fork();

	if (pid == 0) {
		/* Wait for the tracer's SIGCONT after it seized us. */
		sys2(__NR_kill, sys0(__NR_getpid), SIGSTOP);
		body_sigstop(n);
		raw_exit(0);
	}
	if (waitpid(pid, &st, WUNTRACED) != pid || !WIFSTOPPED(st))
		die("child did not stop (status 0x%x)", st);
	if (ptrace(PTRACE_SEIZE, pid, NULL,
		   (void *)(long)(PTRACE_O_EXITKILL)))
		die("PTRACE_SEIZE: %s", strerror(errno));
	if (kill(pid, SIGCONT))
		die("kill(SIGCONT): %s", strerror(errno));
	sig = 0;
	while (wait_tracee(pid, &st)) {
		if ((st >> 16) == PTRACE_EVENT_STOP) {
			/* A group stop (or the SEIZE's first stop). */
			if (WSTOPSIG(st) == SIGSTOP && edited < n &&
			    peek_user(pid, UREG(orig_rax)) == __NR_tgkill) {
				break_rcx(pid);
				edited++;
			}
			sig = 0;
		} else {
			/* A signal-delivery stop: let SIGSTOP stop it,
			 * suppress the SIGCONT. */
			sig = WSTOPSIG(st) == SIGSTOP ? SIGSTOP : 0;
		}
		if (ptrace(PTRACE_CONT, pid, NULL, (void *)(long)sig))
			die("PTRACE_CONT: %s", strerror(errno));
	}
	if (edited != n)
		die("edited %ld returns, expected %ld", edited, n);
	return report_ok("ptrace_groupstop", n, NULL);
}

/*
 * ptrace_step: at each getppid's syscall-exit stop the tracer resumes
 * with PTRACE_SINGLESTEP: TF is set in the return's RFLAGS, so it takes
 * IRET; the trap after one instruction is passed over.
 */
static int run_ptrace_step(long n)
{
	long stepped = 0;
	int st, sig = 0, req = PTRACE_SYSCALL;
	pid_t pid;
	struct __ptrace_syscall_info info;

	pid = start_tracee(body_getppid, n);
	while (step_tracee(pid, req, sig, &st)) {
		sig = 0;
		req = PTRACE_SYSCALL;
		if (!syscall_stop(pid, st, &info)) {
			/* The single-step trap: swallowed. */
			sig = WSTOPSIG(st) == SIGTRAP || WSTOPSIG(st) == SIGSTOP ?
			      0 : WSTOPSIG(st);
			continue;
		}
		if (info.op != PTRACE_SYSCALL_INFO_EXIT ||
		    peek_user(pid, UREG(orig_rax)) != __NR_getppid)
			continue;
		req = PTRACE_SINGLESTEP;
		stepped++;
	}
	if (stepped != n)
		die("stepped %ld returns, expected %ld", stepped, n);
	return report_ok("ptrace_step", n, NULL);
}

/*
 * ptrace_migrate: as ptrace, and each getppid enters on CPU 0 and, once
 * the tracer has broken RCX at its exit stop, returns on CPU 1: the
 * return is counted where it ran, never as a correction on another CPU.
 */
static void pin(pid_t pid, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(pid, sizeof(set), &set))
		die("sched_setaffinity(%d): %s", cpu, strerror(errno));
}

static int run_ptrace_migrate(long n)
{
	long edited = 0;
	int st, sig = 0;
	pid_t pid;
	struct __ptrace_syscall_info info;

	pid = start_tracee(body_getppid, n);
	while (step_tracee(pid, PTRACE_SYSCALL, sig, &st)) {
		sig = 0;
		if (!syscall_stop(pid, st, &info)) {
			sig = WSTOPSIG(st);
			continue;
		}
		if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
			pin(pid, 0);
			continue;
		}
		if (peek_user(pid, UREG(orig_rax)) != __NR_getppid)
			continue;
		break_rcx(pid);
		pin(pid, 1);
		edited++;
	}
	if (edited != n)
		die("edited %ld returns, expected %ld", edited, n);
	return report_ok("ptrace_migrate", n, NULL);
}

/* ------------------------------------------------------------------ */
/* threads: processes of 8 busy threads that end with exit_group        */
/* ------------------------------------------------------------------ */

#define THREADS 8

static int g_started;

static void *spin_thread(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&g_started, 1, __ATOMIC_SEQ_CST);
	for (;;)
		sys0(__NR_getppid);
	return NULL;
}

/*
 * N children (glibc fork: clone), each starting THREADS threads (clone3)
 * that call getppid without end; once all run, the main thread calls
 * exit_group, and the threads die wherever they are: do_exit() runs on
 * all of them at once.
 */
static int run_threads(long n)
{
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0) {
			pthread_t t;

			for (int k = 0; k < THREADS; k++)
				if (pthread_create(&t, NULL, spin_thread, NULL))
					_exit(2);
			while (__atomic_load_n(&g_started, __ATOMIC_SEQ_CST) <
			       THREADS)
				sys0(__NR_sched_yield);
			raw_exit(0);
		}
		reap_ok(pid, "threaded child");
	}
	return report_ok("threads", n, NULL);
}

/* ------------------------------------------------------------------ */
/* exec_thread: execve from a thread that is not the leader            */
/* ------------------------------------------------------------------ */

static char g_self[4096];

static void *exec_thread(void *arg)
{
	char *argv[] = { g_self, "sysret", "1", NULL };

	(void)arg;
	for (int i = 0; i < 3; i++)
		sys0(__NR_getppid);
	execve(g_self, argv, environ);
	_exit(4);
}

/*
 * N children (glibc fork), each with a second thread that makes three
 * getppid calls and execs "retpaths sysret 1": de_thread() kills the
 * leader and gives the thread its pid.  The new image prints
 * "ok sysret 1".
 */
static int run_exec_thread(long n)
{
	ssize_t len = readlink("/proc/self/exe", g_self, sizeof(g_self) - 1);

	if (len <= 0)
		die("readlink(/proc/self/exe): %s", strerror(errno));
	g_self[len] = '\0';
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0) {
			pthread_t t;

			if (pthread_create(&t, NULL, exec_thread, NULL))
				_exit(2);
			for (;;)
				sys0(__NR_getppid);
		}
		reap_ok(pid, "exec_thread child");
	}
	return report_ok("exec_thread", n, NULL);
}

/* ------------------------------------------------------------------ */
/* rseq: sched_yield inside a critical section, abort on the way out    */
/* ------------------------------------------------------------------ */

/*
 * int rseq_yield_once(uint64_t *rseq_cs_field)
 *
 * Arms the critical section [rseq_yield_start, rseq_yield_post), which is
 * the "syscall" instruction plus the "nop" that the syscall returns to, and
 * calls sched_yield (nr 24) from inside it.  If this thread was preempted
 * (switched out) during the yield, rseq_ip_fixup() on the way back to user
 * space finds the return RIP inside the section and moves it to
 * rseq_yield_abort.
 *
 * Returns 0: no abort; 1: aborted after sched_yield ran (RAX holds its
 * return value 0) - the case we want; 2: aborted before the syscall
 * instruction executed (RAX still holds 24), i.e. by an interrupt, in
 * which case no sched_yield was issued and the caller retries.
 *
 * The four bytes before the abort label must be the signature the rseq
 * area was registered with (RSEQ_SIG, 0x53053053 on x86); they are placed
 * as the operand of a ud1 so that the sequence is a valid instruction.
 */
int rseq_yield_once(uint64_t *rseq_cs_field);
__asm__(
	"	.pushsection .text\n"
	"	.globl rseq_yield_once\n"
	"	.hidden rseq_yield_once\n"
	"	.type rseq_yield_once, @function\n"
	"	.p2align 4\n"
	"rseq_yield_once:\n"
	"	leaq rseq_yield_cs(%rip), %rax\n"
	"	movq %rax, (%rdi)\n"		/* arm: rseq->rseq_cs = &cs */
	"	movl $24, %eax\n"		/* __NR_sched_yield */
	"rseq_yield_start:\n"
	"	syscall\n"
	"	nop\n"				/* the syscall returns here */
	"rseq_yield_post:\n"
	"	movq $0, (%rdi)\n"		/* disarm */
	"	xorl %eax, %eax\n"
	"	ret\n"
	"	.byte 0x0f, 0xb9, 0x3d\n"
	"	.long 0x53053053\n"		/* RSEQ_SIG */
	"rseq_yield_abort:\n"
	"	movq $0, (%rdi)\n"		/* the kernel cleared it too */
	"	cmpq $24, %rax\n"
	"	movl $1, %eax\n"
	"	jne 1f\n"
	"	movl $2, %eax\n"
	"1:	ret\n"
	"	.size rseq_yield_once, . - rseq_yield_once\n"
	"	.popsection\n"
	"	.pushsection .data\n"
	"	.p2align 5\n"			/* struct rseq_cs is 32-byte aligned */
	"rseq_yield_cs:\n"
	"	.long 0\n"			/* version */
	"	.long 0\n"			/* flags */
	"	.quad rseq_yield_start\n"	/* start_ip */
	"	.quad rseq_yield_post - rseq_yield_start\n" /* post_commit_offset */
	"	.quad rseq_yield_abort\n"	/* abort_ip */
	"	.popsection\n");

static __thread struct rseq g_own_rseq __attribute__((aligned(32)));

/* Address of this thread's rseq->rseq_cs, registering rseq if glibc did not. */
static uint64_t *rseq_cs_field(void)
{
	/*
	 * glibc registers an area by default; __rseq_size is its active size
	 * (20 in this glibc, 0 if registration is disabled or failed).
	 */
	if (__rseq_size >= offsetof(struct rseq, rseq_cs) + 8)
		return (uint64_t *)((char *)__builtin_thread_pointer() +
				    __rseq_offset +
				    offsetof(struct rseq, rseq_cs));

	/* e.g. GLIBC_TUNABLES=glibc.pthread.rseq=0: register our own. */
	long r = rsys(__NR_rseq, (long)&g_own_rseq, sizeof(g_own_rseq), 0,
		      RSEQ_SIG, 0);

	if (r != 0)
		die("rseq registration: %s", strerror((int)-r));
	return (uint64_t *)&g_own_rseq.rseq_cs;
}

static int run_rseq(long n)
{
	uint64_t *cs = rseq_cs_field();
	struct sched_param sp = { .sched_priority = 1 };
	cpu_set_t set;
	long aborted = 0, early = 0;
	pid_t parent = getpid(), sib;
	int cpu = sched_getcpu();
	char extra[48];

	if (cpu < 0)
		die("sched_getcpu: %s", strerror(errno));
	/*
	 * sched_yield only switches (and so only sets the rseq preempt
	 * event) if another task is runnable on this CPU.  Pin ourselves and
	 * a sibling that does nothing but yield to one CPU.  With both in
	 * SCHED_FIFO at the same priority, sched_yield moves the caller to
	 * the tail of the run queue, so every yield switches to the sibling,
	 * whose own yield switches straight back: each iteration aborts.
	 * Without SCHED_FIFO (no permission) it is likely but not certain.
	 */
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity: %s", strerror(errno));
	(void)sched_setscheduler(0, SCHED_FIFO, &sp);	/* best effort */

	sib = raw_fork();
	if (sib == 0) {
		sys2(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL);
		if (sys0(__NR_getppid) != parent)
			raw_exit(0);
		for (;;)
			sys0(__NR_sched_yield);
	}

	for (long i = 0; i < n; i++) {
		int r = rseq_yield_once(cs);

		if (r == 2) {		/* aborted before the syscall: redo */
			if (++early > 1000)
				die("critical section keeps aborting early");
			i--;
			continue;
		}
		aborted += r;
	}

	if (kill(sib, SIGKILL))
		die("kill(sibling): %s", strerror(errno));
	if (waitpid(sib, NULL, 0) != sib)
		die("waitpid(sibling): %s", strerror(errno));
	snprintf(extra, sizeof(extra), " aborted=%ld", aborted);
	return report_ok("rseq", n, extra);
}

/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* async_signal: a signal delivered on an interrupt return             */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t g_async_hits;

static void on_async(int sig, siginfo_t *si, void *ctx)
{
	(void)sig; (void)si; (void)ctx;
	g_async_hits++;
}

/*
 * Each iteration: getppid (SYSRET), then write to a pipe that wakes a
 * child, then spin in user space without syscalls.  The child sleeps
 * 2 ms and sends SIGUSR2, so the signal arrives while the parent spins
 * and is delivered on the return from an interrupt, not from a syscall:
 * no syscall return may be charged with it.  The handler's rt_sigreturn
 * goes back to the interrupted loop (IRET, RCX != RIP).
 */
static int run_async_signal(long n)
{
	int fds[2];
	pid_t parent = getpid(), child;

	install(SIGUSR2, on_async, 0);
	if (pipe(fds))
		die("pipe: %s", strerror(errno));
	child = raw_fork();
	if (child == 0) {
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		char c;

		for (long i = 0; i < n; i++) {
			if (sys3(__NR_read, fds[0], &c, 1) != 1)
				raw_exit(2);
			sys2(__NR_nanosleep, &ts, NULL);
			sys2(__NR_kill, parent, SIGUSR2);
		}
		raw_exit(0);
	}
	for (long i = 0; i < n; i++) {
		sig_atomic_t before = g_async_hits;
		unsigned long spins = 0;

		if (sys0(__NR_getppid) <= 0)
			die("getppid failed");
		if (sys3(__NR_write, fds[1], "x", 1) != 1)
			die("write to pipe failed");
		while (g_async_hits == before)
			if (++spins > 20000000000UL)
				die("signal %ld never arrived", i);
	}
	reap_ok(child, "async_signal child");
	return report_ok("async_signal", n, NULL);
}

/* churn: background load for other tests; N short sleeps and getppids,
 * so that CPUs switch tasks often (exercises the per-CPU state cache). */
static int run_churn(long n)
{
	struct timespec ts = { 0, 100 * 1000 };

	for (long i = 0; i < n; i++) {
		sys2(__NR_nanosleep, &ts, NULL);
		sys0(__NR_getppid);
	}
	return report_ok("churn", n, NULL);
}

static long parse_n(const char *s)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || n < 0)
		die("bad iteration count '%s'", s);
	return n;
}

static const struct {
	const char *name;
	enum edit edit;
} sigframe_scenarios[] = {
	{ "signal",		E_NONE },
	{ "rcx_ne_rip",		E_RCX },
	{ "r11_ne_rflags",	E_R11 },
	{ "cs_not_user",	E_CS },
	{ "ss_not_user",	E_SS },
	{ "rip_noncanonical",	E_RIP },
	{ "rip_top_page",	E_TOP },
	{ "rflags_rf",		E_RF },
	{ "rflags_tf",		E_TF },
};

/* ------------------------------------------------------------------ */
/* sigurg: Go-style preemption signals, from two threads                 */
/* ------------------------------------------------------------------ */

static volatile long g_urg_count, g_alrm_count;

static void on_urg(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	__atomic_fetch_add(sig == SIGURG ? &g_urg_count : &g_alrm_count, 1,
			   __ATOMIC_RELAXED);
}

/* Each thread signals itself: SIGURG every iteration (as Go's runtime
 * preempts), SIGALRM every fourth; each handler frame is built on the
 * way out of that tgkill. */
static void *sigurg_loop(void *arg)
{
	long n = (long)arg, tid = gettid(), pid = getpid();

	for (long i = 0; i < n; i++) {
		if (rsys(__NR_tgkill, pid, tid, SIGURG, 0, 0))
			die("tgkill(SIGURG) failed");
		if (i % 4 == 0 && rsys(__NR_tgkill, pid, tid, SIGALRM, 0, 0))
			die("tgkill(SIGALRM) failed");
	}
	return NULL;
}

static int run_sigurg(long n)
{
	pthread_t t;

	install(SIGURG, on_urg, 0);
	install(SIGALRM, on_urg, 0);
	if (pthread_create(&t, NULL, sigurg_loop, (void *)n))
		die("pthread_create failed");
	sigurg_loop((void *)n);
	if (pthread_join(t, NULL))
		die("pthread_join failed");
	if (g_urg_count != 2 * n || g_alrm_count != 2 * ((n + 3) / 4))
		die("handlers ran %ld SIGURG, %ld SIGALRM", (long)g_urg_count,
		    (long)g_alrm_count);
	return report_ok("sigurg", n, NULL);
}

static void usage(void)
{
	static const char msg[] =
		"usage: retpaths SCENARIO N\n"
		"scenarios: sysret signal rcx_ne_rip r11_ne_rflags cs_not_user\n"
		"           ss_not_user rip_noncanonical rip_top_page rflags_rf\n"
		"           rflags_tf\n"
		"           restart fork exec ptrace rseq async_signal churn\n"
		"           seccomp_errno nosys ptrace_detach ptrace_origax\n"
		"           ptrace_sigstop ptrace_eintr ptrace_migrate threads\n"
		"           exec_thread ptrace_groupstop ptrace_step sigurg\n";

	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* ignore */
	}
	_exit(1);
}

int main(int argc, char **argv)
{
	long n;

	if (argc < 3)
		usage();
	g_scenario = argv[1];
	n = parse_n(argv[2]);

	if (!strcmp(argv[1], "sysret"))
		return run_sysret(n);
	for (size_t i = 0; i < sizeof(sigframe_scenarios) /
				sizeof(sigframe_scenarios[0]); i++)
		if (!strcmp(argv[1], sigframe_scenarios[i].name))
			return run_sigframe(sigframe_scenarios[i].name,
					    sigframe_scenarios[i].edit, n);
	if (!strcmp(argv[1], "seccomp_errno"))
		return run_seccomp_errno(n);
	if (!strcmp(argv[1], "nosys"))
		return run_nosys(n);
	if (!strcmp(argv[1], "restart"))
		return run_restart(n);
	if (!strcmp(argv[1], "fork"))
		return run_fork(n);
	if (!strcmp(argv[1], "exec"))
		return exec_step(argv[0], n, 1);
	if (!strcmp(argv[1], "exec_done"))
		return exec_step(argv[0], n,
				 argc > 3 ? parse_n(argv[3]) + 1 : n + 1);
	if (!strcmp(argv[1], "ptrace"))
		return run_ptrace_exit_edit("ptrace", n, EDIT_RCX);
	if (!strcmp(argv[1], "ptrace_detach"))
		return run_ptrace_exit_edit("ptrace_detach", n, EDIT_DETACH);
	if (!strcmp(argv[1], "ptrace_origax"))
		return run_ptrace_exit_edit("ptrace_origax", n, EDIT_ORIGAX);
	if (!strcmp(argv[1], "ptrace_sigstop"))
		return run_ptrace_sigstop(n);
	if (!strcmp(argv[1], "ptrace_eintr"))
		return run_ptrace_eintr(n);
	if (!strcmp(argv[1], "ptrace_migrate"))
		return run_ptrace_migrate(n);
	if (!strcmp(argv[1], "ptrace_groupstop"))
		return run_ptrace_groupstop(n);
	if (!strcmp(argv[1], "ptrace_step"))
		return run_ptrace_step(n);
	if (!strcmp(argv[1], "threads"))
		return run_threads(n);
	if (!strcmp(argv[1], "exec_thread"))
		return run_exec_thread(n);
	if (!strcmp(argv[1], "rseq"))
		return run_rseq(n);
	if (!strcmp(argv[1], "async_signal"))
		return run_async_signal(n);
	if (!strcmp(argv[1], "churn"))
		return run_churn(n);
	if (!strcmp(argv[1], "sigurg"))
		return run_sigurg(n);
	usage();
}
