"""The package's layers, as ARCHITECTURE.md draws them.

Each package may import only the ones below it; only kernel/ talks to
libbpf through ctypes.  Read from the source (ast), so a lazy import
inside a function counts as much as one at the top.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "sysretstat")

# What each package may import besides itself and errors.py.
ALLOWED = {
    "kernel": {"native"},
    "model": {"kernel.abi"},
    "record": {"model", "kernel.abi"},
    "render": {"model"},
    "top": {"model", "render"},
    "source": {"kernel", "model", "ticker"},
    "serve": {"model", "render", "source", "ticker"},
    "penalty": {"kernel", "native", "model"},
}


def modules():
    for root, _, files in os.walk(PKG):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, PKG)[:-3].replace(os.sep, ".")
                yield rel, ast.parse(open(path).read(), path)


def _is_package(name):
    return name.split(".")[0] == "sysretstat" and os.path.isdir(
        os.path.join(ROOT, *name.split(".")))


def imports(tree):
    """(module imported, line) for every import in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                yield "." * node.level + node.module, node.lineno
            elif _is_package(node.module):
                # from sysretstat.kernel import abi: the module is abi.
                for a in node.names:
                    yield node.module + "." + a.name, node.lineno
            else:
                yield node.module, node.lineno


def test_only_the_kernel_package_imports_ctypes():
    bad = ["%s:%d" % (mod, line) for mod, tree in modules()
           for name, line in imports(tree)
           if name.split(".")[0] == "ctypes" and not mod.startswith("kernel.")]
    assert bad == []


def test_no_relative_imports():
    # Absolute imports name the layer they reach into.
    bad = ["%s:%d" % (mod, line) for mod, tree in modules()
           for name, line in imports(tree) if name.startswith(".")]
    assert bad == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
    allowed = ALLOWED[package] | {package, "errors", "__version__"}
    bad = []
    for mod, tree in modules():
        if mod.split(".")[0] != package:
            continue
        for name, line in imports(tree):
            if not name.startswith("sysretstat."):
                continue
            target = name[len("sysretstat."):]
            if not any(target == a or target.startswith(a + ".")
                       for a in allowed):
                bad.append("%s:%d imports %s" % (mod, line, target))
    assert bad == []


def test_commands_are_imported_only_by_the_cli():
    bad = ["%s:%d" % (mod, line) for mod, tree in modules()
           for name, line in imports(tree)
           if name.startswith("sysretstat.commands")
           and not mod.startswith("commands.") and mod != "__main__"]
    assert bad == []
