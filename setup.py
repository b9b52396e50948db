"""Build hook: compile the BPF programs and C helpers into the package.

Metadata lives in setup.cfg; this file only adds the compile step.
"""
import os
import runpy

from setuptools import setup
from setuptools.command.build_py import build_py

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


setup(cmdclass={"build_py": BuildPyWithObjects})
