"""Build hook: compile the vitals monitor's tick kernels (src/codeblue/signals/_kernels.c) into the package.

The extension is optional. Without a C compiler or the Python headers the build warns and the package stays pure
Python: the tick then runs its numpy implementations (`codeblue.signals.kernels.status()` says which is in use).
For an editable install the module is built in place, beside its source, as `build_ext --inplace` does.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_NAME = "codeblue.signals._kernels"
_SOURCE = os.path.join("src", "codeblue", "signals", "_kernels.c")


class KernelsBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("CODEBLUE_BUILD_KERNELS", "1") == "0":
            return
        try:
            built = self._compile()
        except Exception as exc:  # no compiler, no headers: a pure-Python package, numpy at run time
            print(f"codeblue: the compiled tick kernels were not built ({exc}); the numpy implementations will run",
                  file=sys.stderr)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # (an editable install imports from src/, where the module now is)
            build_data["force_include"][built] = os.path.relpath(built, os.path.join(self.root, "src"))

    def _compile(self) -> str:
        from setuptools import Distribution, Extension

        ext = Extension(
            _NAME,
            sources=[_SOURCE],
            # The numpy code's arithmetic, operation by operation: no fused multiply-add, no fast-math.
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math", "-std=c99"],
        )
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            dist = Distribution({"name": "codeblue-kernels", "ext_modules": [ext], "package_dir": {"": "src"}})
            cmd: Any = dist.get_command_obj("build_ext")
            cmd.inplace = True
            with tempfile.TemporaryDirectory() as tmp:
                cmd.build_temp = tmp
                cmd.ensure_finalized()
                cmd.run()
            return str(os.path.abspath(cmd.get_ext_fullpath(_NAME)))
        finally:
            os.chdir(cwd)
