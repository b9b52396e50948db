# sysretstat: `make top` installs what is missing and runs the live view;
# `make test` installs what is missing and runs the test suite.
# Both are idempotent: what is already there is not installed again.

PYTHON ?= python3
PIP = $(PYTHON) -m pip install -q --disable-pip-version-check
# Build and run: clang + libbpf headers compile the BPF side; libbpf1 is
# what the tool loads.  Tests add: gcc-multilib (32-bit workloads), tmux
# (top's screen tests), bpftool (checks nothing stays attached),
# prometheus (daemon integration test), and the kernel matrix's guests
# (tools/vmtest.py): qemu, Debian's 6.1 LTS kernel, busybox for the
# guest's initramfs, virtme-ng to boot them.
APT_RUN = clang llvm libbpf-dev libbpf1 gcc make
APT_TEST = gcc-multilib tmux bpftool prometheus qemu-system-x86 \
	linux-image-amd64 busybox-static
PY_RUN = click psutil tabulate setuptools wheel
PY_TEST = pytest hypothesis matplotlib virtme_ng

.PHONY: all deps test-deps objects install top test test-unit test-kernel \
	test-kernels bench clean

all: objects

deps:
	@$(PYTHON) tools/ensure_deps.py --apt $(APT_RUN) --py $(PY_RUN)

test-deps: deps
	@$(PYTHON) tools/ensure_deps.py --apt $(APT_TEST) --py $(PY_TEST)

objects: deps
	@$(PYTHON) tools/build_objects.py sysretstat

MANDIR ?= /usr/local/share/man/man8

install: deps
	$(PIP) --no-build-isolation .
	@mkdir -p $(MANDIR) && cp man/*.8 $(MANDIR)/

top: install
	sysretstat top

# The suite here, and guest A (6.1) booted for its quick subset.
test: test-deps objects
	$(PYTHON) -m pytest -q -m "not matrix" tests

# The whole kernel matrix: every column (6.1: 4-level AMD, 5-level,
# 4-level Intel), each with every classification test.
test-kernels: test-deps objects
	$(PYTHON) -m pytest -q -m matrix tests/test_kernels.py

test-unit: objects
	$(PYTHON) -m pytest -q -m "not bpf" tests

test-kernel: test-deps objects
	$(PYTHON) -m pytest -q -m bpf tests

bench: install
	sysretstat bench

clean:
	rm -rf build dist *.egg-info sysretstat/bpf sysretstat/bin
	find . -name __pycache__ -prune -exec rm -rf {} +
