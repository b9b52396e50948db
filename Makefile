# sysretstat: `make top` installs what is missing and runs the live view;
# `make test` installs what is missing and runs the test suite.
# Both are idempotent: what is already there is not installed again.
#
# Python packages never go into the system Python (Debian 12 and Ubuntu
# 23.04+ refuse that, PEP 668): `make install` puts sysretstat in its own
# virtual environment, $(VENV), and links the command into $(BINDIR);
# `make test` runs pytest from the repository's .venv.  Both are created
# with $(PYTHON) -m venv (Debian: the python3-venv package, installed here).

PYTHON ?= python3
PIP_FLAGS = -q --disable-pip-version-check
# Build and run: clang + libbpf headers compile the BPF side; libbpf1 is
# what the tool loads; python3-venv creates the virtual environments.
# Tests add: gcc-multilib (32-bit workloads), tmux (top's screen tests),
# bpftool (checks nothing stays attached), prometheus (daemon integration
# test, promtool for the alert rules), systemd (systemd-analyze verify of
# the unit), and for the kernel matrix's guests (tools/vmtest.py): qemu,
# a kernel image (Debian's is 6.1 LTS; Ubuntu names the package
# differently), busybox for the guest's initramfs, virtme-ng to boot them.
APT_RUN = clang llvm libbpf-dev libbpf1 gcc make python3-venv
APT_TEST = gcc-multilib tmux bpftool prometheus systemd qemu-system-x86 \
	"linux-image-amd64|linux-image-generic" busybox-static
PY_RUN = click psutil tabulate setuptools wheel
# What the unit tests import; the rest of the suite adds virtme-ng.
PY_UNIT = pytest hypothesis matplotlib
PY_TEST = $(PY_UNIT) virtme-ng

# Where `make install` puts things.  The systemd unit runs
# /usr/local/bin/sysretstat: keep BINDIR in step with it.
PREFIX ?= /opt/sysretstat
VENV ?= $(PREFIX)/venv
BINDIR ?= /usr/local/bin
SHAREDIR ?= /usr/local/share
MANDIR ?= $(SHAREDIR)/man/man8
# The test environment (gitignored), and its interpreter.
TEST_VENV ?= .venv
VENV_PY = $(TEST_VENV)/bin/python

# Completions as the wheel installs them (setup.py), and where each
# shell looks under $(SHAREDIR).
COMPLETIONS = bash-completion/completions/sysretstat \
	zsh/site-functions/_sysretstat \
	fish/vendor_completions.d/sysretstat.fish

.PHONY: all deps test-deps objects install uninstall top test test-unit \
	test-kernel test-kernels bench clean

all: objects

deps:
	@$(PYTHON) tools/ensure_deps.py --apt $(APT_RUN)

test-deps: deps
	@$(PYTHON) tools/ensure_deps.py --apt $(APT_TEST) \
		--venv $(TEST_VENV) --py $(PY_RUN) $(PY_TEST)

objects: deps
	@$(PYTHON) tools/build_objects.py sysretstat

install: deps
	@$(PYTHON) tools/ensure_deps.py --venv $(VENV) --py setuptools wheel
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) --no-build-isolation .
	@mkdir -p $(BINDIR) $(MANDIR)
	ln -sfn $(abspath $(VENV))/bin/sysretstat $(BINDIR)/sysretstat
	@for f in $(abspath $(VENV))/share/man/man8/*.8; do \
		ln -sfn $$f $(MANDIR)/; done
	@for c in $(COMPLETIONS); do mkdir -p $(SHAREDIR)/$$(dirname $$c) && \
		ln -sfn $(abspath $(VENV))/share/$$c $(SHAREDIR)/$$c; done
	@echo "installed $(BINDIR)/sysretstat -> $(VENV)"

uninstall:
	rm -f $(BINDIR)/sysretstat $(addprefix $(SHAREDIR)/,$(COMPLETIONS))
	rm -f $(addprefix $(MANDIR)/,$(notdir $(wildcard man/*.8)))
	rm -rf $(VENV)

top: install
	$(BINDIR)/sysretstat top

# The suite here, and guest A (6.1) booted for its quick subset.
test: test-deps objects
	$(VENV_PY) -m pytest -q -m "not matrix" tests

# The Python side alone: no root, no apt, no clang, no BPF object.
# Only .venv is made (when missing) and given the Python packages, with
# $(PYTHON) -m venv and pip, so any user who can write to the checkout
# can run it.  Tests that load BPF programs, boot guests or run the
# kernel matrix are deselected, not skipped.
test-unit:
	@$(PYTHON) tools/ensure_deps.py --venv $(TEST_VENV) \
		--py $(PY_RUN) $(PY_UNIT)
	$(VENV_PY) -m pytest -q -m "not bpf and not guest and not matrix" tests

test-kernel: test-deps objects
	$(VENV_PY) -m pytest -q -m bpf tests

# The whole kernel matrix (qemu + virtme-ng): every column (6.1 with
# 4-level paging on an AMD model, 5-level, 4-level on an Intel model),
# each with every classification test.
test-kernels: test-deps objects
	$(VENV_PY) -m pytest -q -m matrix tests/test_kernels.py

bench: install
	$(BINDIR)/sysretstat bench

clean:
	rm -rf build dist *.egg-info sysretstat/bpf sysretstat/bin
	find . -name __pycache__ -prune -exec rm -rf {} +
