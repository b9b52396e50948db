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
#include <sys/auxv.h>
#include <unistd.h>

#ifndef __i386__
#error "compat32.c must be built with -m32"
#endif

#define NR32_EXECVE	11
#define NR32_GETPPID	64

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
		"usage: compat32 int80 N | compat32 fast N | "
		"compat32 exec PROGRAM [ARG...] | compat32 entry\n";

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
