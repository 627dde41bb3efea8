"""Copies the top-level recipes/, devices/, calibration/ and teachers/ folders into the wheel.

They live at the top of the repo (where people look for them) but an installed edgecv must find
them without a checkout, so the build puts a copy under edgecv/_shipped/.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("recipes", "devices", "calibration", "teachers")


class BuildWithShippedData(build_py):
    def run(self):
        super().run()
        root = Path(__file__).parent
        target = Path(self.build_lib) / "edgecv" / "_shipped"
        for name in SHIPPED:
            src = root / name
            if src.is_dir():
                shutil.copytree(src, target / name, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithShippedData})
