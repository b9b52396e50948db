"""The outcome vocabulary: every way a return can go, and one line per
IRET reason on what typically causes it (report, top, man).

The names and their order are the kernel contract's (bpf/sysret.h's
enum sr_outcome, mirrored by kernel/abi.py); outputs read them from here.
"""

from sysretstat.kernel.abi import (FIRST_IRET, O_ERETU, O_SYSRET, OUTCOMES,
                                   REASONS)

__all__ = ["OUTCOMES", "REASONS", "FIRST_IRET", "O_SYSRET", "O_ERETU",
           "EXPLAIN", "time_lost_ns"]

EXPLAIN = {
    "xen_pv": "Xen PV guest: the kernel never uses SYSRET",
    "rcx_ne_rip": "RCX != RIP: execve's new image, rt_sigreturn to an "
                  "interrupted context, a register-rewriting syscall",
    "r11_ne_rflags": "R11 != RFLAGS: rt_sigreturn of a frame whose R11 "
                     "differs from its flags",
    "cs_not_user": "CS not the 64-bit user code segment: return to 32-bit "
                   "or LDT code (rt_sigreturn, ptrace)",
    "ss_not_user": "SS not the user data segment: an LDT stack segment "
                   "(rt_sigreturn with UC_STRICT_RESTORE_SS)",
    "rip_noncanonical": "RIP at or above TASK_SIZE_MAX: SYSRET would fault "
                        "in kernel mode",
    "rflags_rf": "RF set in RFLAGS (SYSRET cannot restore it): rt_sigreturn "
                 "from a debug-trap handler",
    "rflags_tf": "TF set in RFLAGS: single-stepping (debugger, "
                 "PTRACE_SINGLESTEP)",
    "fork_child": "first return of a new task (fork, clone, kernel_execve) "
                  "through ret_from_fork",
    "signal": "a signal handler frame was built on the way out",
    "restart": "the syscall was interrupted and will be restarted (RIP "
               "moved back)",
    "ptrace": "a tracer changed the registers at a syscall-exit stop",
    "rseq": "an rseq critical section was aborted (RIP moved to its abort "
            "handler)",
    "int80": "32-bit int $0x80 entry: always returns with IRET",
    "compat_guard": "32-bit fast syscall whose return fails the SYSRETL "
                    "check (e.g. execve, sigreturn)",
}


def time_lost_ns(reasons, penalty):
    """Estimated ns lost to IRET for {reason: count} at `penalty` (a
    calibration: penalty_ns(reason) and mean_penalty_ns): each count
    times its reason's penalty, the mean where the reason has none."""
    mean = getattr(penalty, "mean_penalty_ns", None) or 0.0
    total = 0.0
    for reason, n in reasons.items():
        p = penalty.penalty_ns(reason)
        total += n * (p if p is not None else mean)
    return total

