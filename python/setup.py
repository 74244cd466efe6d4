"""python/setup.py - copies the repository's proto/melbo.proto into the package when it is built
(wheel or sdist), so that an installed melbo reads the same protocol definition as the C code
(melbo/_proto.py parses it at import). Everything else is in pyproject.toml."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))


def proto_source():
    for p in (os.path.join(HERE, os.pardir, "proto", "melbo.proto"),  # the repository
              os.path.join(HERE, "melbo", "melbo.proto")):            # an sdist
        if os.path.isfile(p):
            return p
    raise SystemExit("melbo: proto/melbo.proto not found: build the package from the melbo "
                     "repository's python/ folder (pip install ./python)")


class BuildPy(build_py):
    def run(self):
        super().run()
        dst = os.path.join(self.build_lib, "melbo", "melbo.proto")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(proto_source(), dst)


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        shutil.copyfile(proto_source(), os.path.join(base_dir, "melbo", "melbo.proto"))


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
