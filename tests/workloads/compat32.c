// SPDX-License-Identifier: GPL-2.0
/*
 * compat32 - 32-bit (ia32 compat) workloads for testing sysretstat.
 *
 *   usage: compat32 int80 N
 *          compat32 fast N
 *          compat32 exec PROGRAM [ARG...]
 *
 * int80  N  getppid (i386 nr 64) with "int $0x80".  That entry always
 *           leaves through IRET (reason int80).
 * fast   N  getppid through the vDSO fast path: "call *%gs:0x10", i.e.
 *           __kernel_vsyscall, which enters with SYSCALL (AMD) or SYSENTER
 *           (Intel).  do_fast_syscall_32() allows SYSRETL when RIP is the
 *           vDSO landing pad, CS/SS are the compat user selectors and
 *           RF/TF/VM are clear, which holds for a plain getppid.
 * exec      execve (i386 nr 11) of PROGRAM through the same fast path.
 *           PROGRAM should be a 64-bit executable: the new image's RIP is
 *           its entry point, not the vDSO landing pad, so the fast-path
 *           predicate fails and the return is IRET (reason compat_guard).
 *           compat32 prints nothing itself on success; PROGRAM's output and
 *           exit status are the result.  Use e.g. "/bin/true", or
 *           "retpaths exec_done 1", which prints "ok exec 1".
 * restart N       a child blocks in readv (nr 145) on a pipe through the
 *                 fast path; SIGSTOP/SIGCONT interrupts it N times.  The
 *                 kernel restarts it by moving RIP back 2 bytes onto the
 *                 vDSO's int $0x80: the first return is a restart, and the
 *                 re-runs enter (and leave) by int $0x80.
 * restart_sa N    the same with a SIGUSR1 handler (SA_RESTART) that calls
 *                 getppid and write through the fast path: the first readv
 *                 return gets the signal frame; rt_sigreturn (int $0x80 in
 *                 glibc's restorer) goes back to the int $0x80, so every
 *                 re-run is int80.  The handler's own calls are fast.
 * restart_eintr N the handler without SA_RESTART: readv returns -EINTR and
 *                 the child calls it again through the fast path.
 * rewind N        a traced child makes N fast getppid calls; at each one's
 *                 syscall-exit stop its tracer moves EIP back 2 bytes (onto
 *                 the vDSO's int $0x80) and EAX back to the number, as a
 *                 debugger re-running a call does: that return fails the
 *                 SYSRETL predicate (the tracer's doing: ptrace), and the
 *                 re-run enters and leaves by int $0x80.
 * entry     prints "entry sysenter", "entry syscall" or "entry int80": the
 *           instruction __kernel_vsyscall enters the kernel with, as the
 *           kernel patched it for this CPU (SYSENTER on Intel, SYSCALL on
 *           AMD).  Read from the vDSO's code, independently of any tracer.
 *
 * int80 and fast print "ok SCENARIO N" with one write(2) and exit 0; any
 * unexpected failure prints a message on stderr and exits 1.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <sys/auxv.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef __i386__
#error "compat32.c must be built with -m32"
#endif

#define NR32_WRITE	4
#define NR32_EXECVE	11
#define NR32_GETPPID	64
#define NR32_READV	145

extern char **environ;

static const char *g_scenario = "?";

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	char buf[512];
	int len = snprintf(buf, sizeof(buf), "compat32 %s: ", g_scenario);
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

#include "procwait.h"

static int report_ok(const char *name, long n)
{
	char buf[64];
	int len = snprintf(buf, sizeof(buf), "ok %s %ld\n", name, n);

	if (write(1, buf, len) != len)
		die("write of the result line failed");
	return 0;
}

/* Syscall through the legacy software interrupt: always returns via IRET. */
static inline long int80_0(long nr)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "0"(nr) : "memory");
	return ret;
}

/*
 * Syscall through the vDSO entry point that glibc keeps in the TCB
 * (tcbhead_t.sysinfo at %gs:0x10, copied from AT_SYSINFO).
 * __kernel_vsyscall preserves every register but EAX.
 */
static inline long fast3(long nr, long a1, long a2, long a3)
{
	long ret;

	__asm__ volatile("call *%%gs:0x10"
			 : "=a"(ret)
			 : "0"(nr), "b"(a1), "c"(a2), "d"(a3)
			 : "memory", "cc");
	return ret;
}

/* Make sure %gs:0x10 really is __kernel_vsyscall before calling it. */
static void check_vsyscall_slot(void)
{
	unsigned long slot, at = getauxval(AT_SYSINFO);

	__asm__ volatile("movl %%gs:0x10, %0" : "=r"(slot));
	if (at == 0)
		die("no AT_SYSINFO in the aux vector");
	if (slot != at)
		die("%%gs:0x10 is 0x%lx, AT_SYSINFO is 0x%lx", slot, at);
}

/*
 * The fast entry __kernel_vsyscall uses: its alternatives are patched at
 * boot to "sysenter" (0f 34) or "syscall" (0f 05) ahead of the fallback
 * "int $0x80" (cd 80), or left as no-ops.  The first of them in its code
 * tells.
 */
static const char *vdso_entry(void)
{
	const unsigned char *p = (const unsigned char *)getauxval(AT_SYSINFO);

	if (!p)
		die("no AT_SYSINFO in the aux vector");
	for (int i = 0; i < 64; i++) {
		if (p[i] == 0x0f && p[i + 1] == 0x34)
			return "sysenter";
		if (p[i] == 0x0f && p[i + 1] == 0x05)
			return "syscall";
		if (p[i] == 0xcd && p[i + 1] == 0x80)
			return "int80";
	}
	die("no entry instruction in __kernel_vsyscall");
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Fast syscalls interrupted by a signal                               */
/* ------------------------------------------------------------------ */

static int g_data[2], g_ack[2];

static void on_usr1(int sig)
{
	char c = 'a';

	(void)sig;
	fast3(NR32_GETPPID, 0, 0, 0);
	fast3(NR32_WRITE, g_ack[1], (long)&c, 1);
}

static void __attribute__((noreturn)) reader(void)
{
	char c;
	struct iovec iov = { &c, 1 };

	check_vsyscall_slot();
	for (;;) {
		long r = fast3(NR32_READV, g_data[0], (long)&iov, 1);

		if (r == 1)
			_exit(c == 'x' ? 0 : 2);
		if (r != -EINTR)
			_exit(3);
	}
}

/* Until the child sleeps in the pipe read of its readv. */
static void wait_blocked_in_readv(pid_t pid)
{
	wait_blocked_in_pipe_read(pid, NR32_READV);
}

/* mode 0: SIGSTOP/SIGCONT; 1: handler, SA_RESTART; 2: handler. */
static int run_restart(const char *name, long n, int mode)
{
	struct sigaction sa;
	int st;
	pid_t pid;
	char c;

	if (pipe(g_data) || pipe(g_ack))
		die("pipe: %s", strerror(errno));
	if (mode) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_usr1;
		sa.sa_flags = mode == 1 ? SA_RESTART : 0;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGUSR1, &sa, NULL))
			die("sigaction: %s", strerror(errno));
	}
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(g_data[1]);
		close(g_ack[0]);
		reader();
	}
	close(g_data[0]);
	close(g_ack[1]);
	for (long i = 0; i < n; i++) {
		wait_blocked_in_readv(pid);
		if (mode) {
			if (kill(pid, SIGUSR1))
				die("kill: %s", strerror(errno));
			if (read(g_ack[0], &c, 1) != 1)
				die("no word from the handler");
			continue;
		}
		if (kill(pid, SIGSTOP) || waitpid(pid, &st, WUNTRACED) != pid ||
		    !WIFSTOPPED(st))
			die("child did not stop");
		if (kill(pid, SIGCONT) ||
		    waitpid(pid, &st, WCONTINUED) != pid || !WIFCONTINUED(st))
			die("child did not continue");
	}
	wait_blocked_in_readv(pid);
	if (write(g_data[1], "x", 1) != 1)
		die("write: %s", strerror(errno));
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		die("reader did not exit(0): status 0x%x", st);
	return report_ok(name, n);
}

static int run_rewind(long n)
{
	struct __ptrace_syscall_info info;
	struct user_regs_struct regs;
	long rewound = 0, calls = 0;
	int st, sig = 0;
	pid_t pid = fork();

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		check_vsyscall_slot();
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
			_exit(3);
		raise(SIGSTOP);
		for (long i = 0; i < n; i++)
			if (fast3(NR32_GETPPID, 0, 0, 0) <= 0)
				_exit(2);
		_exit(0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFSTOPPED(st))
		die("tracee did not stop (status 0x%x)", st);
	if (ptrace(PTRACE_SETOPTIONS, pid, NULL,
		   (void *)(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL)))
		die("PTRACE_SETOPTIONS: %s", strerror(errno));
	for (;;) {
		if (ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(long)sig))
			die("PTRACE_SYSCALL: %s", strerror(errno));
		sig = 0;
		if (waitpid(pid, &st, 0) != pid)
			die("waitpid: %s", strerror(errno));
		if (WIFEXITED(st)) {
			if (WEXITSTATUS(st))
				die("tracee exit status %d", WEXITSTATUS(st));
			break;
		}
		if (!WIFSTOPPED(st))
			die("odd wait status 0x%x", st);
		if (WSTOPSIG(st) != (SIGTRAP | 0x80)) {
			sig = WSTOPSIG(st) == SIGSTOP ? 0 : WSTOPSIG(st);
			continue;
		}
		memset(&info, 0, sizeof(info));
		if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, (void *)sizeof(info),
			   &info) <= 0)
			die("PTRACE_GET_SYSCALL_INFO: %s", strerror(errno));
		if (info.op != PTRACE_SYSCALL_INFO_EXIT)
			continue;
		if (ptrace(PTRACE_GETREGS, pid, NULL, &regs))
			die("PTRACE_GETREGS: %s", strerror(errno));
		if (regs.orig_eax != NR32_GETPPID)
			continue;
		/* Odd calls are the originals, even ones their re-runs. */
		if (calls++ % 2)
			continue;
		regs.eip -= 2;
		regs.eax = regs.orig_eax;
		if (ptrace(PTRACE_SETREGS, pid, NULL, &regs))
			die("PTRACE_SETREGS: %s", strerror(errno));
		rewound++;
	}
	if (rewound != n || calls != 2 * n)
		die("rewound %ld of %ld calls, expected %ld of %ld", rewound,
		    calls, n, 2 * n);
	return report_ok("rewind", n);
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

static void usage(void)
{
	static const char msg[] =
		"usage: compat32 int80|fast|restart|restart_sa|restart_eintr|rewind N"
		" | compat32 exec PROGRAM [ARG...] | compat32 entry\n";

	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* ignore */
	}
	_exit(1);
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "entry")) {
		printf("entry %s\n", vdso_entry());
		return 0;
	}
	if (argc < 3)
		usage();
	g_scenario = argv[1];

	if (!strcmp(argv[1], "int80")) {
		long n = parse_n(argv[2]);

		for (long i = 0; i < n; i++) {
			long r = int80_0(NR32_GETPPID);

			if (r <= 0)
				die("getppid returned %ld", r);
		}
		return report_ok("int80", n);
	}

	if (!strcmp(argv[1], "fast")) {
		long n = parse_n(argv[2]);

		check_vsyscall_slot();
		for (long i = 0; i < n; i++) {
			long r = fast3(NR32_GETPPID, 0, 0, 0);

			if (r <= 0)
				die("getppid returned %ld", r);
		}
		return report_ok("fast", n);
	}

	if (!strcmp(argv[1], "restart"))
		return run_restart("restart", parse_n(argv[2]), 0);
	if (!strcmp(argv[1], "rewind"))
		return run_rewind(parse_n(argv[2]));
	if (!strcmp(argv[1], "restart_sa"))
		return run_restart("restart_sa", parse_n(argv[2]), 1);
	if (!strcmp(argv[1], "restart_eintr"))
		return run_restart("restart_eintr", parse_n(argv[2]), 2);

	if (!strcmp(argv[1], "exec")) {
		long r;

		check_vsyscall_slot();
		/* argv[2..] becomes the new program's argv. */
		r = fast3(NR32_EXECVE, (long)argv[2], (long)&argv[2],
			  (long)environ);
		die("execve(%s): %s", argv[2], strerror((int)-r));
	}

	usage();
}
