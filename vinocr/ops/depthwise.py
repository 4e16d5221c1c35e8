"""Fast depthwise convolution on CPU: a Paddle custom C++ operator, built on first use.

Paddle's CPU depthwise convolution (forward and backward) is a naive single-threaded loop and
takes most of a PP-OCRv4 training step. ``vinocr_dwconv`` (``depthwise_conv.cc`` +
``depthwise_conv.h``) computes the same thing -- groups == in_channels == out_channels,
float32, NCHW, odd square kernels up to 15, strides 1 or 2 per axis, zero padding up to K-1 --
with OpenMP threads and 8-float vectors, forward and backward (grad input, weight and bias).

Build. The first call of :func:`fast_depthwise_available` (or anything that needs the op)
compiles the sources with the system C++ compiler through ``paddle.utils.cpp_extension.load``
into ``$VINOCR_CACHE_DIR/ops/`` (default ``~/.cache/vinocr/ops``), one folder per build key:
a hash of the sources, the compiler flags, the Paddle version and the Python version. Later
processes load the cached library. Flags: ``-O3 -fopenmp``, plus ``-mavx2 -mfma`` when the CPU
reports both (read at run time, part of the key); never ``-march=native`` unless asked for
with ``VINOCR_OPS_CXXFLAGS`` (extra flags, also part of the key). Concurrent processes (data
parallel ranks) serialise on a lock file and build once.

Fallback. Without a compiler, on a build or load error, or with ``VINOCR_DISABLE_FAST_OPS=1``,
:func:`depthwise_conv2d` uses ``paddle.nn.functional.conv2d`` (a build failure warns once per
process; the build log is kept in the cache folder). Non-CPU tensors, other dtypes, other
geometries and static-graph mode (``paddle.jit.to_static``/export) always use Paddle's conv.

Threads. Each call passes its thread count to OpenMP (``num_threads``; the process-wide
OpenMP setting that Paddle's own kernels use is left alone). The count is, in order:
:func:`set_num_threads`; ``VINOCR_NUM_THREADS``; ``OMP_NUM_THREADS`` when above 1 (Paddle
forces it to 1 at import when it is unset, so 1 carries no intent); otherwise the CPU cores
this process may use divided by the data-parallel processes on this machine
(``PADDLE_LOCAL_SIZE``, which ``paddle.distributed.launch`` sets). Set ``VINOCR_NUM_THREADS=1``
to keep the op single-threaded.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, List, Optional, Sequence, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

logger = logging.getLogger(__name__)

OP_NAME = "vinocr_dwconv"
_HERE = Path(__file__).resolve().parent
#: Sources of the operator; all of them enter the build key.
SOURCES: List[Path] = [_HERE / "depthwise_conv.cc", _HERE / "depthwise_conv.h"]
KMAX = 15

_lock = threading.Lock()
_state: dict = {"module": None, "tried": False, "error": None, "warned": False,
                "threads": None, "build_seconds": None, "build_dir": None}

IntPair = Union[int, Sequence[int]]


# ------------------------------------------------------------------------------------ threads
def set_num_threads(n: Optional[int]) -> None:
    """Threads for the fast op in this process (``None``: back to the automatic choice)."""
    if n is not None and int(n) < 1:
        raise ValueError(f"set_num_threads: expected >= 1, got {n}")
    _state["threads"] = None if n is None else int(n)


def _env_int(name: str) -> Optional[int]:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value >= 1 else None


def get_num_threads() -> int:
    """The OpenMP thread count each fast depthwise call uses (see the module docstring)."""
    if _state["threads"] is not None:
        return _state["threads"]
    explicit = _env_int("VINOCR_NUM_THREADS")
    if explicit:
        return explicit
    omp = _env_int("OMP_NUM_THREADS")
    if omp and omp > 1:
        return omp
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else (os.cpu_count() or 1))
    local = _env_int("PADDLE_LOCAL_SIZE") or 1
    return max(1, cores // local)


# -------------------------------------------------------------------------------------- build
def _cpu_flags() -> set:
    """CPU feature flags from /proc/cpuinfo (empty where unavailable: no ISA flags then)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def compiler_flags() -> List[str]:
    """The C++ flags of the build: portable by default, AVX2/FMA only if this CPU has both."""
    flags = ["-O3", "-fopenmp", "-Wno-psabi"]
    cpu = _cpu_flags()
    if {"avx2", "fma"} <= cpu:
        flags += ["-mavx2", "-mfma"]
    flags += os.environ.get("VINOCR_OPS_CXXFLAGS", "").split()
    return flags


def _find_compiler() -> Optional[str]:
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx.split()[0])
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def build_key(flags: Sequence[str]) -> str:
    h = hashlib.sha256()
    for src in SOURCES:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    h.update(" ".join(flags).encode())
    h.update(f"paddle {paddle.__version__} {getattr(paddle.version, 'commit', '')}".encode())
    h.update(f"python {sys.version_info[:2]} {sys.platform}".encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("VINOCR_CACHE_DIR", Path.home() / ".cache" / "vinocr")) / "ops"


@contextlib.contextmanager
def _redirect_fds(log_path: Path):
    """Send this process's stdout/stderr (and its children's) to ``log_path`` for the build:
    Paddle's builder prints and the compiler writes to the inherited descriptors."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "ab") as log:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with contextlib.redirect_stdout(sys.__stdout__ or sys.stdout):
                yield
        finally:
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextlib.contextmanager
def _file_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: no inter-process lock
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_paddle_extension_logger():
    """Paddle's extension loader logs "using custom operator only" at INFO to stderr."""
    ext_logger = logging.getLogger("utils.cpp_extension")
    was = ext_logger.disabled
    ext_logger.disabled = True
    try:
        yield
    finally:
        ext_logger.disabled = was


def _import_built(name: str, build_dir: Path) -> ModuleType:
    """Load an already-built library without re-running the (slow) build step."""
    with warnings.catch_warnings():  # "No ccache found" at import: irrelevant here
        warnings.filterwarnings("ignore", message="No ccache")
        from paddle.utils.cpp_extension import extension_utils

    with _quiet_paddle_extension_logger():
        return extension_utils._import_module_from_library(name, str(build_dir / name), False)


def _build_and_load() -> ModuleType:
    if os.environ.get("VINOCR_DISABLE_FAST_OPS", "").strip() not in ("", "0"):
        raise _Disabled("VINOCR_DISABLE_FAST_OPS is set")
    flags = compiler_flags()
    key = build_key(flags)
    name = f"{OP_NAME}_{key}"
    build_dir = cache_root() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    _state["build_dir"] = build_dir
    marker = build_dir / "BUILD_OK"
    with _file_lock(build_dir / ".lock"):
        if marker.exists():
            try:
                return _import_built(name, build_dir)
            except Exception as exc:  # stale or foreign build: rebuild below
                logger.info("cached %s did not load (%s); rebuilding", name, exc)
                marker.unlink()
        compiler = _find_compiler()
        if compiler is None:
            raise RuntimeError("no C++ compiler found (looked for $CXX, c++, g++, clang++)")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No ccache")
            from paddle.utils.cpp_extension import load

        log_path = build_dir / "build.log"
        log_path.write_text(f"compiler {compiler}\nflags {' '.join(flags)}\n", encoding="utf-8")
        logger.info("building %s with %s %s (once; cached in %s)", OP_NAME, compiler,
                    " ".join(flags), build_dir)
        start = time.perf_counter()
        with _redirect_fds(log_path), _quiet_paddle_extension_logger():
            module = load(name=name, sources=[str(s) for s in SOURCES if s.suffix == ".cc"],
                          extra_cxx_cflags=list(flags), extra_ldflags=["-fopenmp"],
                          extra_include_paths=[str(_HERE)], build_directory=str(build_dir),
                          verbose=False)
        _state["build_seconds"] = time.perf_counter() - start
        marker.write_text(f"{time.ctime()} {_state['build_seconds']:.1f}s\n", encoding="utf-8")
        logger.info("built %s in %.1f s", OP_NAME, _state["build_seconds"])
        return module


class _Disabled(RuntimeError):
    pass


def _log_tail(build_dir: Optional[Path], lines: int = 15) -> str:
    if build_dir is None or not (build_dir / "build.log").exists():
        return ""
    text = (build_dir / "build.log").read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _module() -> Optional[ModuleType]:
    if _state["tried"]:
        return _state["module"]
    with _lock:
        if _state["tried"]:
            return _state["module"]
        try:
            _state["module"] = _build_and_load()
        except _Disabled as exc:
            _state["error"] = str(exc)
            logger.info("fast depthwise conv disabled: %s", exc)
        except Exception as exc:  # any failure -> Paddle's conv, never a crash
            _state["error"] = f"{type(exc).__name__}: {exc}"
            tail = _log_tail(_state["build_dir"])
            logger.debug("fast depthwise build log tail:\n%s", tail)
            if not _state["warned"]:
                _state["warned"] = True
                where = f" (log: {_state['build_dir'] / 'build.log'})" if tail else ""
                warnings.warn(f"vinocr: the fast depthwise convolution op could not be built "
                              f"or loaded ({_state['error']}){where}; using Paddle's conv2d "
                              f"instead (slower on CPU).", RuntimeWarning, stacklevel=3)
        _state["tried"] = True
        return _state["module"]


def fast_depthwise_available() -> bool:
    """True when the custom op is built and loaded (builds it on the first call)."""
    return _module() is not None


def build_info() -> dict:
    """Where and how the op was built (for logs and benchmarks)."""
    flags = compiler_flags()
    return {"available": _state["module"] is not None, "error": _state["error"],
            "flags": flags, "cache_dir": str(_state["build_dir"] or cache_root()),
            "build_seconds": _state["build_seconds"], "threads": get_num_threads()}


def _reset_for_tests() -> None:
    """Forget the load state (the registered op stays registered in this process)."""
    _state.update(module=None, tried=False, error=None, warned=False, build_dir=None)


# ----------------------------------------------------------------------------------- the op
def _pair(value: Any) -> Optional[Tuple[int, int]]:
    if isinstance(value, int):
        return value, value
    try:
        items = [int(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(items) == 1:
        return items[0], items[0]
    if len(items) == 2:
        return items[0], items[1]
    if len(items) == 4 and items[0] == items[1] and items[2] == items[3]:
        return items[0], items[2]  # [top, bottom, left, right], symmetric
    return None


def _fast_geometry(x: paddle.Tensor, weight: paddle.Tensor, stride: Any, padding: Any
                   ) -> Optional[Tuple[int, int, int, int]]:
    """(sh, sw, ph, pw) when the custom op handles this call, else None."""
    if not paddle.in_dynamic_mode():
        return None
    if x.ndim != 4 or weight.ndim != 4 or x.dtype != paddle.float32 \
            or weight.dtype != paddle.float32 or not x.place.is_cpu_place():
        return None
    c, one, kh, kw = weight.shape
    if one != 1 or kh != kw or kh % 2 == 0 or kh > KMAX or x.shape[1] != c:
        return None
    st, pad = _pair(stride), (None if isinstance(padding, str) else _pair(padding))
    if st is None or pad is None or any(s not in (1, 2) for s in st) \
            or any(p < 0 or p >= kh for p in pad):
        return None
    if x.shape[2] + 2 * pad[0] < kh or x.shape[3] + 2 * pad[1] < kh:
        return None
    return st[0], st[1], pad[0], pad[1]


@paddle.jit.not_to_static
def depthwise_conv2d(x: paddle.Tensor, weight: paddle.Tensor,
                     bias: Optional[paddle.Tensor] = None, stride: IntPair = 1,
                     padding: Union[IntPair, str] = 0) -> paddle.Tensor:
    """Depthwise conv (``weight`` [C, 1, K, K], groups = C) with zero padding, NCHW.

    Uses the custom op when it is available and handles the call (CPU, float32, odd K <= 15,
    strides in {1, 2}, symmetric padding in [0, K-1], dynamic mode); otherwise
    ``F.conv2d(..., groups=C)``. Differentiable either way.
    """
    geo = _fast_geometry(x, weight, stride, padding)
    module = _module() if geo is not None else None
    if module is None:
        return F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=weight.shape[0])
    if bias is None:
        bias = paddle.zeros([weight.shape[0]], dtype="float32")
    sh, sw, ph, pw = geo
    return getattr(module, OP_NAME)(x, weight, bias, sh, sw, ph, pw, get_num_threads())


# --------------------------------------------------------------------------- model switching
_FAST_CLASSES: dict = {}


def _fast_forward(self, x: paddle.Tensor) -> paddle.Tensor:
    return depthwise_conv2d(x, self.weight, self.bias, self._stride, self._padding)


def _fast_class(cls: type) -> type:
    if cls not in _FAST_CLASSES:
        _FAST_CLASSES[cls] = type(f"FastDepthwise{cls.__name__}", (cls,),
                                  {"forward": _fast_forward, "_vinocr_base_class": cls,
                                   "__doc__": f"{cls.__name__} running vinocr's fast "
                                              f"depthwise op (see vinocr.ops.depthwise)."})
    return _FAST_CLASSES[cls]


def is_depthwise_conv(layer: nn.Layer) -> bool:
    """An ``nn.Conv2D`` the fast op can run: groups == in == out channels, odd square kernel,
    dilation 1, zero padding mode, NCHW."""
    if not isinstance(layer, nn.Conv2D):
        return False
    k = list(layer._kernel_size)
    return (layer._groups == layer._in_channels == layer._out_channels
            and len(k) == 2 and k[0] == k[1] and k[0] % 2 == 1 and k[0] <= KMAX
            and list(layer._dilation) == [1, 1] and layer._padding_mode == "zeros"
            and layer._data_format == "NCHW"
            and _pair(layer._stride) is not None
            and all(s in (1, 2) for s in _pair(layer._stride))
            and not isinstance(layer._padding, str)
            and _pair(layer._padding) is not None)


def use_fast_depthwise(model: nn.Layer, enabled: bool = True) -> int:
    """Switch the depthwise convs of ``model`` to the fast op (``enabled=False``: back).

    Each qualifying ``nn.Conv2D`` (see :func:`is_depthwise_conv`; in vinocr's PP-OCRv4 these
    are ``LearnableRepLayer.reparam_conv`` in deploy form, ``conv_kxk[i].conv`` and
    ``conv_1x1.conv`` of the depthwise layers in training form) gets a subclass whose ``forward`` calls :func:`depthwise_conv2d`; parameters,
    names and ``state_dict`` keys do not change. Returns how many layers were switched; 0 when
    the op is unavailable (no compiler, build failure, disabled) or the model is not on the CPU.
    Layers created later (e.g. by ``LearnableRepLayer.rep()``) are not switched: call again.
    Static graphs (``paddle.jit.to_static``, export) trace Paddle's conv2d, so exported models
    never contain the custom op.
    """
    layers = [layer for layer in model.sublayers(include_self=True)]
    if not enabled:
        count = 0
        for layer in layers:
            base = type(layer).__dict__.get("_vinocr_base_class")
            if base is not None:
                layer.__class__ = base
                count += 1
        return count
    targets = [layer for layer in layers if is_depthwise_conv(layer)
               and "_vinocr_base_class" not in type(layer).__dict__]
    if not targets:
        return 0
    if not all(layer.weight.place.is_cpu_place() for layer in targets):
        logger.info("use_fast_depthwise: model not on the CPU; keeping Paddle's conv")
        return 0
    if not fast_depthwise_available():
        return 0
    for layer in targets:
        layer.__class__ = _fast_class(type(layer))
    return len(targets)
