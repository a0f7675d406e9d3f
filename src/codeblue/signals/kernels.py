"""The vitals monitor's compiled tick kernels (`_kernels.c`), when they were built, else numpy.

`pip install` builds the C extension when a C compiler and the Python headers are present (hatch_build.py);
without them the package installs all the same and the tick runs its numpy implementations, which give the
same verdicts (the compiled CUSUM and Chernoff screen use the C library's `log`, which may differ from numpy's
in the last bit). `CODEBLUE_KERNELS=0` in the environment selects numpy even when the kernels are built.

    codeblue.signals.kernels.status()   # "compiled" or why not
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from codeblue.signals.indicators import DEN_IDX, INDICATORS, NC, NUM_IDX
from codeblue.signals.windows import FINE_N

#: Test windows the compiled screen takes at most (more: the numpy path).
MAX_WINDOWS = 16


class Kernels(Protocol):
    def close_block(self, fine: Any, fine_ids: Any, bnum: Any, bden: Any, learn_b: Any, cusum: Any, hold: Any,
                    n: int, first: int, close_to: int, decay: float, memory_events: float, cusum_ratio: float,
                    min_baseline: float, /) -> None: ...

    def screen(self, fine: Any, fine_ids: Any, bnum: Any, bden: Any, firing: Any, hold: Any, cusum: Any,
               last_b: Any, n: int, eval_b: int, windows: tuple[int, ...], ratios: Any, min_count: float,
               chernoff: float, cusum_h: float, X: Any, N: Any, P0: Any, /
               ) -> tuple[list[tuple[int, int, int, int, int, float]], list[tuple[int, int]]]: ...

    def binom_sf_below(self, x: int, n: int, p: float, limit: float, /) -> float: ...

    def setup_lines(self, decode: Any, errors: tuple[type[BaseException], ...], object_or_null: Any,
                    versions_key: Any, empty: tuple[tuple[str, str], ...], acc_type: type, fine_s: float, bits: tuple[int, ...], wire_type: type, /
                    ) -> None: ...

    def decode_line(self, raw: bytes, /) -> tuple[Any, tuple[tuple[str, str], ...]] | None: ...

    def setup_scan(self, max_workflow: int, /) -> None: ...

    def scan(self, raw: bytes, /) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]] | None: ...

    def feed(self, raw: bytes, accs: dict[Any, Any], complaints: list[Any], next_tick: float, /
             ) -> float | int | tuple[Any, tuple[tuple[str, str], ...]] | None: ...

    def count(self, accs: dict[Any, Any], complaints: list[Any], event: Any, key: tuple[tuple[str, str], ...], /
              ) -> None: ...

    def flush(self, acc: dict[Any, Any], routes: dict[Any, Any], route: Any, fine_s: float,
              columns: tuple[int, int, int, int], bit_lat: int, bit_rage: int, /) -> tuple[Any, Any, Any, Any]: ...

    def scatter(self, fine: Any, fine_ids: Any, coarse: Any, coarse_ids: Any, last_b: Any, cap: int, coarse_n: int,
                per_coarse: int, rows: list[int], bs: list[int], ks: list[int], counts: list[list[int]], /
                ) -> None: ...


def _load() -> tuple[Kernels | None, str]:
    if os.environ.get("CODEBLUE_KERNELS", "1") == "0":
        return None, "disabled by CODEBLUE_KERNELS=0"
    try:
        from codeblue.signals import _kernels  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        return None, f"not built ({exc}); the numpy implementations run"
    try:
        _kernels.setup(FINE_N, NC, NUM_IDX, DEN_IDX, [not ind.percentile for ind in INDICATORS])
    except ValueError as exc:  # a module built for another layout than indicators.py now has
        return None, f"built, but refused this layout ({exc}); the numpy implementations run"
    mod: Kernels = _kernels
    return mod, "compiled"


_BUILT, _STATUS = _load()
_active: Kernels | None = _BUILT


def loaded() -> Kernels | None:
    """The compiled kernels when they are built and in use, else None (numpy)."""
    return _active


def built() -> bool:
    return _BUILT is not None


def status() -> str:
    return "compiled" if _active is not None else ("built, not in use" if _BUILT is not None else _STATUS)


@contextmanager
def using(compiled: bool) -> Iterator[None]:
    """Run the tick on the compiled kernels (True, when built) or on numpy (False) inside the block: for the
    differential tests and benchmarks that compare the two."""
    global _active
    before = _active
    _active = _BUILT if compiled else None
    try:
        yield
    finally:
        _active = before


_LINES_READY = False


def line_path() -> Kernels | None:
    """The compiled kernels with replay's line path set up (`feed`, `count`), or None (the Python path)."""
    global _LINES_READY
    k = _active
    if k is None:
        return None
    if not _LINES_READY:
        import msgspec

        from codeblue.signals import decode, events, indicators, pipeline, windows

        k.setup_lines(decode._decode, (msgspec.DecodeError, ValueError, RecursionError), decode._object_or_null,
                      decode.versions_key, decode._EMPTY, pipeline._Acc, windows.FINE_S,
                      (indicators.BIT_ERR, indicators.BIT_REF, indicators.BIT_GFAIL, indicators.BIT_TOOL,
                       indicators.BIT_WRONG, indicators.BIT_COMPL), decode.WireEvent)
        k.setup_scan(events.MAX_WORKFLOW)
        _LINES_READY = True
    return k
