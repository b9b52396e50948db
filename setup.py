"""Build hook: compile the BPF programs and C helpers into the package,
and tag the wheel for the platform they were built for.

Metadata and data files live in setup.cfg; this file only adds the
compile step and the wheel tag.
"""
import os
import runpy

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:             # setuptools < 70.1: the wheel package's
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithObjects(build_py):
    def run(self):
        super().run()
        build = runpy.run_path(os.path.join(HERE, "tools",
                                            "build_objects.py"))["build"]
        if getattr(self, "editable_mode", False):
            build(os.path.join(HERE, "sysretstat"))
        else:
            build(os.path.join(self.build_lib, "sysretstat"))


class NativeDistribution(Distribution):
    """The package carries native code (bin/sysretbench, BPF objects):
    built into the platform library directory, a platform wheel."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """py3-none-linux_x86_64: any Python 3 (the Python code has no C
    extension, libbpf is loaded with ctypes), but only this platform, as
    the wheel carries an x86-64 ELF helper (bin/sysretbench) and BPF
    objects.  Not a manylinux tag: nobody audited it for one."""

    def get_tag(self):
        plat = super().get_tag()[2]
        return "py3", "none", plat


setup(distclass=NativeDistribution,
      cmdclass={"build_py": BuildPyWithObjects, "bdist_wheel": PlatformWheel})
