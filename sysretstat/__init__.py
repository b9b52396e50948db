"""sysretstat: which syscall returns take SYSRET, which fall back to IRET,
why, and what each path costs.

Importing the package touches neither libbpf nor /sys: the kernel side
loads only when a collection starts.
"""

__version__ = "0.1.0"
