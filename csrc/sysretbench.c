// SPDX-License-Identifier: GPL-2.0
/*
 * sysretbench - time syscall round trips that return with SYSRET and with
 * IRET on this machine, for `sysretstat bench`.
 *
 *   usage: sysretbench [-c CPU] [-r ROUNDS] [-b BATCH] [-w WARMUP]
 *                      [-V VARIANT,...] [-l]
 *
 * Every variant but getpid is the same syscall, rt_sigreturn, issued on a
 * frame built once from a real signal frame.  Only what the kernel's
 * SYSRET guard tests (arch/x86/entry/syscall_64.c, do_syscall_64) differs
 * between them: the "sysret" frame passes every check, each other frame
 * fails exactly one, so the difference in round-trip time is the price of
 * leaving through IRET.  getpid is the usual reference point
 * (`perf bench syscall basic`).
 *
 * The program pins itself to one CPU, warms every variant up, then runs
 * ROUNDS rounds; each round times one batch of BATCH calls of every
 * variant, in an order rotated by one per round.  A batch is timed with
 * the thread's CPU clock, which stops while the thread is preempted (the
 * usual noise on a shared machine), and with CLOCK_MONOTONIC.
 * Output, one record per line, fields separated by single spaces:
 *
 *   sysretbench 1 cpu CPU rounds R batch B
 *   variant NAME SYSCALL_NR EXPECTED_PATH EXPECTED_REASON EXTRA
 *   sample ROUND NAME CPU_NS_PER_CALL WALL_NS_PER_CALL
 *   count NAME CALLS HANDLER_RUNS
 *
 * EXTRA is "-" or a word naming work a variant does on top of the return
 * (fault, signal delivery, far jump).  CALLS counts the syscalls of that
 * variant issued in total, warm-up included, so that a tracer running
 * around this program can check that each took the intended path;
 * HANDLER_RUNS counts signal handler runs (each adds one rt_sigreturn
 * that returns with SYSRET).  Set-up adds one more SYSRET rt_sigreturn
 * (capturing the template frame) and makes no getpid call.  Errors go to stderr, exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <asm/ldt.h>

#define USER32_CS	0x23
#define LDT_SS		0x07	/* LDT entry 0, RPL 3 */
#define EFL_CF		0x00001UL
#define EFL_TF		0x00100UL
#define EFL_RF		0x10000UL
/* Bits rt_sigreturn takes from the frame (asm/sighandling.h). */
#define FIX_EFLAGS	0x50dd5UL
/* Non-canonical with 4- and 5-level paging, >= TASK_SIZE_MAX. */
#define BAD_RIP		0x8000000000000000UL
#define FP_XSTATE_MAGIC1 0x46505853U
#define FPSTATE_MAX	(64 * 1024)

/*
 * The asm below stores the caller's RSP into the frame by offset, so the
 * offset is pinned here against glibc's ucontext_t (kernel layout).
 */
#define FRAME_RSP_OFF	160
_Static_assert(offsetof(ucontext_t, uc_mcontext.gregs[REG_RSP]) ==
	       FRAME_RSP_OFF, "ucontext_t layout");

/* Saved stack pointer; every resume path reloads RSP from here. */
__attribute__((used, visibility("hidden"))) unsigned long g_rsp;

void sr_sigreturn(ucontext_t *frame);
void sr_resume(void);
long sr_getpid(void);

/*
 * sr_sigreturn(frame): rt_sigreturn reads its ucontext at the user RSP,
 * so point RSP at the frame and enter the syscall.  The frame's RIP is
 * sr_resume (or a detour that ends there), which reloads the real stack
 * and unwinds.  Callee-saved registers live on the real stack, so nothing
 * depends on the register values the frame restores, nor on the upper
 * register halves after the compat-mode detour.
 */
__asm__(
	".text\n"
	".globl sr_sigreturn\n"
	".type sr_sigreturn,@function\n"
	"sr_sigreturn:\n"
	"	push %rbx\n"
	"	push %rbp\n"
	"	push %r12\n"
	"	push %r13\n"
	"	push %r14\n"
	"	push %r15\n"
	"	mov %rsp, g_rsp(%rip)\n"
	"	mov %rsp, 160(%rdi)\n"
	"	mov %rdi, %rsp\n"
	"	mov $15, %eax\n"		/* __NR_rt_sigreturn */
	"	syscall\n"
	"	ud2\n"
	".globl sr_resume\n"
	"sr_resume:\n"
	"	mov g_rsp(%rip), %rsp\n"
	"	pop %r15\n"
	"	pop %r14\n"
	"	pop %r13\n"
	"	pop %r12\n"
	"	pop %rbp\n"
	"	pop %rbx\n"
	"	ret\n"
	".size sr_sigreturn, .-sr_sigreturn\n"
	".globl sr_getpid\n"
	".type sr_getpid,@function\n"
	"sr_getpid:\n"
	"	mov $39, %eax\n"		/* __NR_getpid */
	"	syscall\n"
	"	ret\n"
	".size sr_getpid, .-sr_getpid\n");

enum { V_GETPID, V_SYSRET, V_RCX, V_R11, V_CS, V_SS, V_RIP, V_RF, V_TF, NV };

static const struct variant {
	const char *name;
	int nr;
	const char *path, *reason, *extra;
} variants[NV] = {
	[V_GETPID] = { "getpid", 39, "sysret", "-", "-" },
	[V_SYSRET] = { "sysret", 15, "sysret", "-", "-" },
	[V_RCX] = { "rcx_ne_rip", 15, "iret", "rcx_ne_rip", "-" },
	[V_R11] = { "r11_ne_rflags", 15, "iret", "r11_ne_rflags", "-" },
	[V_CS] = { "cs_not_user", 15, "iret", "cs_not_user", "far_jump" },
	[V_SS] = { "ss_not_user", 15, "iret", "ss_not_user", "-" },
	[V_RIP] = { "rip_noncanonical", 15, "iret", "rip_noncanonical",
		    "fault_signal" },
	[V_RF] = { "rflags_rf", 15, "iret", "rflags_rf", "-" },
	[V_TF] = { "rflags_tf", 15, "iret", "rflags_tf", "trap_signal" },
};

static ucontext_t g_frames[NV];
static unsigned char *g_fpstate;	/* 64-byte aligned copy */
static unsigned char *g_low_code;
static ucontext_t g_tpl;
static volatile int g_captured;
static volatile long g_segv_runs, g_trap_runs;
static unsigned long g_flags_fixed;	/* RFLAGS bits rt_sigreturn keeps */

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fputs("sysretbench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static inline unsigned long read_rflags(void)
{
	unsigned long f;

	__asm__ volatile("pushfq; popq %0" : "=r"(f));
	return f;
}

/* The R11 value equal to RFLAGS after rt_sigreturn restores `saved`. */
static unsigned long flags_after(unsigned long saved)
{
	return g_flags_fixed | (saved & FIX_EFLAGS);
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL))
		die("sigaction(%d): %s", sig, strerror(errno));
}

/* Keep the kernel's own frame (and FPU state) as the template. */
static void on_capture(int sig, siginfo_t *si, void *ctxv)
{
	ucontext_t *uc = ctxv;
	unsigned char *fp = (unsigned char *)uc->uc_mcontext.fpregs;
	uint32_t sw[2];
	size_t size = 512;

	(void)sig;
	(void)si;
	g_tpl = *uc;
	if (fp) {
		/* fx_sw_bytes (magic1, extended_size) at offset 464. */
		memcpy(sw, fp + 464, sizeof(sw));
		if (sw[0] == FP_XSTATE_MAGIC1 && sw[1] > size)
			size = sw[1];
		if (size > FPSTATE_MAX)
			return;
		memcpy(g_fpstate, fp, size);
	}
	g_captured = fp ? 1 : 2;
}

/*
 * rip_noncanonical: IRET faults (#GP), the kernel sends SIGSEGV.  Resume
 * at sr_resume through a frame that passes the guard.
 */
static void on_segv(int sig, siginfo_t *si, void *ctxv)
{
	greg_t *g = ((ucontext_t *)ctxv)->uc_mcontext.gregs;

	(void)si;
	if ((unsigned long)g[REG_RIP] != BAD_RIP) {
		static const char msg[] = "sysretbench: unexpected SIGSEGV\n";

		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(1);
		signal(sig, SIG_DFL);
		return;
	}
	g_segv_runs++;
	g[REG_RIP] = g[REG_RCX] = (greg_t)(uintptr_t)sr_resume;
	g[REG_R11] = flags_after(g[REG_EFL]);
}

/* rflags_tf: the single-step trap after one instruction; clear TF. */
static void on_trap(int sig, siginfo_t *si, void *ctxv)
{
	greg_t *g = ((ucontext_t *)ctxv)->uc_mcontext.gregs;

	(void)sig;
	(void)si;
	g_trap_runs++;
	g[REG_EFL] &= ~(EFL_TF | EFL_RF);
	g[REG_RCX] = g[REG_RIP];
	g[REG_R11] = flags_after(g[REG_EFL]);
}

/*
 * cs_not_user lands in compat mode in a page below 4 GiB; the stub there
 * far-jumps back to 64-bit code, which jumps to sr_resume:
 *   +0 (32-bit)  ljmp $0x33, $+8
 *   +8 (64-bit)  movabs $sr_resume, %rax ; jmp *%rax
 */
static void setup_low_code(void)
{
	unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	uint64_t target = (uint64_t)(uintptr_t)sr_resume;
	uint16_t sel = 0x33;
	uint32_t land;
	unsigned char *q;

	if (p == MAP_FAILED)
		die("mmap(MAP_32BIT): %s", strerror(errno));
	land = (uint32_t)(uintptr_t)(p + 8);
	q = p;
	*q++ = 0xea;
	memcpy(q, &land, 4);
	q += 4;
	memcpy(q, &sel, 2);
	q += 2;
	*q++ = 0x90;
	*q++ = 0x48;
	*q++ = 0xb8;
	memcpy(q, &target, 8);
	q += 8;
	*q++ = 0xff;
	*q++ = 0xe0;
	if (mprotect(p, 4096, PROT_READ | PROT_EXEC))
		die("mprotect: %s", strerror(errno));
	g_low_code = p;
}

/* ss_not_user needs a valid DPL-3 data segment that is not __USER_DS. */
static void setup_ldt(void)
{
	struct user_desc d;

	memset(&d, 0, sizeof(d));
	d.entry_number = 0;
	d.limit = 0xfffff;
	d.seg_32bit = 1;
	d.limit_in_pages = 1;
	d.useable = 1;
	if (syscall(SYS_modify_ldt, 1, &d, sizeof(d)) != 0)
		die("modify_ldt: %s", strerror(errno));
}

static void build_frames(void)
{
	unsigned long resume = (unsigned long)(uintptr_t)sr_resume;

	g_fpstate = aligned_alloc(64, FPSTATE_MAX);
	if (!g_fpstate)
		die("out of memory");
	install(SIGUSR1, on_capture);
	/* tkill, not tgkill: no getpid here, so getpid counts stay exact. */
	if (syscall(SYS_tkill, gettid(), SIGUSR1))
		die("tkill: %s", strerror(errno));
	if (g_captured != 1)
		die("could not capture a signal frame with FPU state");
	signal(SIGUSR1, SIG_DFL);
	g_flags_fixed = read_rflags() & ~FIX_EFLAGS & ~(EFL_TF | EFL_RF);

	for (int v = V_SYSRET; v < NV; v++) {
		ucontext_t *f = &g_frames[v];
		greg_t *g = f->uc_mcontext.gregs;

		*f = g_tpl;
		f->uc_mcontext.fpregs = (fpregset_t)g_fpstate;
		/* A frame that passes every check; then break one. */
		g[REG_RIP] = resume;
		g[REG_EFL] = g_flags_fixed;
		switch (v) {
		case V_CS:
			g[REG_RIP] = (greg_t)(uintptr_t)g_low_code;
			g[REG_CSGSFS] = (g[REG_CSGSFS] & ~0xffffL) | USER32_CS;
			break;
		case V_SS:
			g[REG_CSGSFS] = (g[REG_CSGSFS] & ~(0xffffL << 48)) |
					((greg_t)LDT_SS << 48);
			break;
		case V_RIP:
			g[REG_RIP] = (greg_t)BAD_RIP;
			break;
		case V_RF:
			g[REG_EFL] |= EFL_RF;
			break;
		case V_TF:
			g[REG_EFL] |= EFL_TF;
			break;
		}
		g[REG_RCX] = g[REG_RIP] + (v == V_RCX);
		g[REG_R11] = flags_after(g[REG_EFL]) ^ (v == V_R11 ? EFL_CF : 0);
	}
}

static long g_calls[NV];

static void run(int v, long n)
{
	ucontext_t *f = &g_frames[v];

	g_calls[v] += n;
	if (v == V_GETPID) {
		for (long i = 0; i < n; i++)
			sr_getpid();
		return;
	}
	for (long i = 0; i < n; i++)
		sr_sigreturn(f);
}

static double clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int variant_index(const char *name)
{
	for (int v = 0; v < NV; v++)
		if (strcmp(variants[v].name, name) == 0)
			return v;
	return -1;
}

static void usage(void)
{
	fputs("usage: sysretbench [-c CPU] [-r ROUNDS] [-b BATCH] "
	      "[-w WARMUP] [-V VARIANT,...] [-l]\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	int cpu = -1, rounds = 50, warm = 3, list = 0, nsel = 0, sel[NV];
	long batch = 1000;
	double *samples, *wall;
	cpu_set_t set;
	int opt;

	while ((opt = getopt(argc, argv, "c:r:b:w:V:l")) != -1) {
		switch (opt) {
		case 'c':
			cpu = atoi(optarg);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'b':
			batch = atol(optarg);
			break;
		case 'w':
			warm = atoi(optarg);
			break;
		case 'V':
			for (char *tok = strtok(optarg, ","); tok;
			     tok = strtok(NULL, ",")) {
				int v = variant_index(tok);

				if (v < 0)
					die("unknown variant %s", tok);
				if (nsel < NV)
					sel[nsel++] = v;
			}
			break;
		case 'l':
			list = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || rounds < 1 || batch < 1 || warm < 0)
		usage();
	if (!nsel)
		for (int v = 0; v < NV; v++)
			sel[nsel++] = v;

	if (list) {
		for (int v = 0; v < NV; v++)
			printf("variant %s %d %s %s %s\n", variants[v].name,
			       variants[v].nr, variants[v].path,
			       variants[v].reason, variants[v].extra);
		return 0;
	}

	if (cpu < 0)
		cpu = sched_getcpu();
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("cannot pin to CPU %d: %s", cpu, strerror(errno));

	setup_low_code();
	setup_ldt();
	build_frames();
	install(SIGSEGV, on_segv);
	install(SIGTRAP, on_trap);

	samples = calloc((size_t)rounds * NV, sizeof(*samples));
	wall = calloc((size_t)rounds * NV, sizeof(*wall));
	if (!samples || !wall)
		die("out of memory");

	/* Warm caches, branch predictors and the CPU's clock first. */
	for (int w = 0; w < warm; w++)
		for (int k = 0; k < nsel; k++)
			run(sel[k], batch);

	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < nsel; k++) {
			int v = sel[(k + r) % nsel];
			double c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
			double t0 = clock_ns(CLOCK_MONOTONIC);

			run(v, batch);
			wall[r * NV + v] = (clock_ns(CLOCK_MONOTONIC) - t0) / batch;
			samples[r * NV + v] =
				(clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / batch;
		}
	}

	printf("sysretbench 1 cpu %d rounds %d batch %ld\n", cpu, rounds,
	       batch);
	for (int k = 0; k < nsel; k++) {
		const struct variant *d = &variants[sel[k]];

		printf("variant %s %d %s %s %s\n", d->name, d->nr, d->path,
		       d->reason, d->extra);
	}
	for (int r = 0; r < rounds; r++)
		for (int k = 0; k < nsel; k++)
			printf("sample %d %s %.3f %.3f\n", r,
			       variants[sel[k]].name, samples[r * NV + sel[k]],
			       wall[r * NV + sel[k]]);
	for (int k = 0; k < nsel; k++) {
		int v = sel[k];
		long h = v == V_RIP ? g_segv_runs : v == V_TF ? g_trap_runs : 0;

		if ((v == V_RIP || v == V_TF) && h != g_calls[v])
			die("%s: %ld calls but the signal handler ran %ld times",
			    variants[v].name, g_calls[v], h);
		printf("count %s %ld %ld\n", variants[v].name, g_calls[v], h);
	}
	return 0;
}
