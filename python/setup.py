"""pip install ./python (from a ropescale checkout): builds the `ropescale` extension from the
library's headers with pybind11's setup helpers. Needs a C++17 compiler, Eigen 3 and
nlohmann/json headers (EIGEN3_INCLUDE_DIR overrides /usr/include/eigen3), numpy and pybind11.
Without a package index, install with --no-build-isolation so the installed setuptools and
pybind11 are used."""
import os
import pathlib

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

here = pathlib.Path(__file__).resolve().parent
include = here.parent / "include"
if not (include / "ropescale" / "rotary.hpp").exists():
    raise SystemExit(f"ropescale headers not found at {include}: install from a ropescale checkout")

eigen = os.environ.get("EIGEN3_INCLUDE_DIR", "/usr/include/eigen3")
version = {}
for line in (include / "ropescale" / "config.hpp").read_text().splitlines():
    for part in ("MAJOR", "MINOR", "PATCH"):
        if line.startswith(f"#define ROPESCALE_VERSION_{part} "):
            version[part] = line.split()[-1]

ext = Pybind11Extension(
    "ropescale._ropescale",
    sorted(str(p.relative_to(here)) for p in (here / "src").glob("*.cpp")),
    include_dirs=[str(include), eigen, str(here / "src")],
    cxx_std=17,
)

setup(
    name="ropescale",
    version=f"{version['MAJOR']}.{version['MINOR']}.{version['PATCH']}",
    description="Rotary position embedding tables, kernels and the LongRoPE2 factor search",
    packages=["ropescale"],
    package_data={"ropescale": ["__init__.pyi", "py.typed"]},
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    install_requires=["numpy"],
    python_requires=">=3.8",
    zip_safe=False,
)
