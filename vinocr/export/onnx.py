"""ONNX export of a Paddle inference directory, and a parity check against the Paddle predictor.

:func:`export_onnx` converts ``inference.json`` + ``inference.pdiparams`` (written by
:func:`vinocr.export.inference.export_inference`) into ``inference.onnx`` beside them with
paddle2onnx's Python API. The input keeps a dynamic batch and a dynamic width (``[N, 3, 48, W]``), the
output is ``[N, W / 8, C]`` softmax probabilities. paddle2onnx's optional post-export optimisers are
disabled (``optimize_tool='None'``): the default, polygraphy, sets ``POLYGRAPHY_AUTOINSTALL_DEPS`` and
may try to pip-install packages, i.e. reach the network. With ``inference.yml`` in the same directory,
stock paddleocr loads it with ``engine='onnxruntime'``; when that ``inference.yml`` records the
export's file hashes (:mod:`vinocr.export.manifest`), the ONNX file is added to the record.

:func:`check_onnx_parity` runs the same inputs through onnxruntime and the Paddle predictor and
returns the largest absolute difference of the output probabilities.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator, List, Sequence, Union

import numpy as np

from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

ONNX_FILENAME = "inference.onnx"

ArrayOrArrays = Union[np.ndarray, Sequence[np.ndarray]]


def _paddle_files(model_dir: Path) -> tuple:
    json_path, params = model_dir / "inference.json", model_dir / "inference.pdiparams"
    if not json_path.is_file() or not params.is_file():
        raise VinocrError(f"{model_dir}: not an exported model (needs inference.json and "
                          "inference.pdiparams)")
    return json_path, params


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send file-descriptor-level stdout to stderr (paddle2onnx's C++ code prints progress lines)."""
    try:
        stdout_fd, stderr_fd = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real file descriptors (e.g. notebooks)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(stdout_fd)
    try:
        os.dup2(stderr_fd, stdout_fd)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, stdout_fd)
        os.close(saved)


def _prune_dead_code(path: Path) -> int:
    """Remove nodes whose outputs nothing reads and initializers nothing reads.

    paddle2onnx leaves a few unused constants; onnxruntime warns about each of them on every load
    (also inside paddleocr). ONNX operators have no side effects, so dropping them is exact.
    Graphs with sub-graphs (control flow) are left untouched. Returns how many items were removed.
    """
    try:
        import onnx
    except ImportError:  # paddle2onnx depends on onnx, but the clean-up is optional anyway
        return 0
    model = onnx.load(str(path))
    graph = model.graph
    if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in graph.node for attr in node.attribute):
        return 0
    removed = 0
    while True:
        used = {name for node in graph.node for name in node.input}
        used.update(out.name for out in graph.output)
        dead = [n for n in graph.node if not any(o in used for o in n.output if o)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
        removed += len(dead)
    used = {name for node in graph.node for name in node.input}
    used.update(out.name for out in graph.output)
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    unused_names = {init.name for init in unused}
    for value in [v for v in graph.input if v.name in unused_names]:
        graph.input.remove(value)
    removed += len(unused)
    if removed:
        onnx.save(model, str(path))
    return removed


def _check_dynamic_input(path: Path) -> None:
    """Raise if the exported input does not keep dynamic batch and width dimensions."""
    try:
        import onnx
    except ImportError:
        return
    model = onnx.load(str(path), load_external_data=False)
    inits = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise VinocrError(f"{path}: expected one graph input, got {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    fixed = [i for i in (0, 3) if len(dims) == 4 and dims[i].HasField("dim_value")
             and dims[i].dim_value > 0]
    if len(dims) != 4 or fixed:
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        raise VinocrError(f"{path}: input {inputs[0].name!r} has shape {shape}; batch and width "
                          "must be dynamic (re-export the Paddle model with a None batch/width)")


def export_onnx(model_dir: Union[str, Path], onnx_path: Union[str, Path, None] = None,
                opset: int = 11) -> Path:
    """Convert an exported Paddle inference directory to ONNX, without any network access.

    Args:
        model_dir: directory holding ``inference.json`` and ``inference.pdiparams``.
        onnx_path: output file; default ``model_dir / 'inference.onnx'`` (the name paddleocr's
            ``engine='onnxruntime'`` looks for, next to ``inference.yml``).
        opset: ONNX opset to target (paddle2onnx raises it only if an operator needs a newer one).

    Returns:
        The path of the written ONNX file.
    """
    d = Path(model_dir)
    json_path, params = _paddle_files(d)
    out = Path(onnx_path) if onnx_path is not None else d / ONNX_FILENAME
    if opset < 7:
        raise VinocrError(f"opset {opset}: paddle2onnx needs an ONNX opset of at least 7")
    try:
        import paddle2onnx
    except ImportError as e:
        raise VinocrError(f"ONNX export needs paddle2onnx ({e}); install it with "
                          "'pip install paddle2onnx'") from e
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        try:
            # paddle2onnx logs conversion errors itself and then fails on an unbound result, so
            # any exception here means "conversion failed"; the file check below catches the rest.
            with _stdout_to_stderr():
                paddle2onnx.export(str(json_path), str(params), save_file=str(tmp),
                                   opset_version=int(opset), auto_upgrade_opset=True,
                                   enable_onnx_checker=True, optimize_tool="None")
        except Exception as e:  # noqa: BLE001 - paddle2onnx raises arbitrary types
            reason = " ".join(str(e).split()) or type(e).__name__
            raise VinocrError(f"{d}: paddle2onnx failed to convert the model ({reason})") from e
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise VinocrError(f"{d}: paddle2onnx wrote no ONNX model (see its log above)")
        removed = _prune_dead_code(tmp)
        if removed:
            logger.debug("removed %d unused nodes / initializers from %s", removed, out.name)
        _check_dynamic_input(tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    if out.parent.resolve() == d.resolve():
        from vinocr.export.manifest import add_record

        add_record(d, out.name)
    logger.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out


def _as_batches(inputs: ArrayOrArrays) -> List[np.ndarray]:
    if isinstance(inputs, np.ndarray):
        batches = [inputs]
    else:
        batches = [np.asarray(x) for x in inputs]
    if not batches:
        raise VinocrError("check_onnx_parity: no inputs given")
    for x in batches:
        if x.ndim != 4 or x.shape[1] != 3:
            raise VinocrError(f"check_onnx_parity: inputs must be [N, 3, H, W] arrays, got shape "
                              f"{x.shape}")
    return [np.ascontiguousarray(x, dtype=np.float32) for x in batches]


def onnx_session(onnx_path: Union[str, Path], threads: int = 1):
    """An onnxruntime CPU session for ``onnx_path`` (quiet: warnings are not logged).

    One inter-op thread: the graph is a chain, so a second pool only adds wake-ups. An unreadable
    file raises :class:`VinocrError` naming it.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise VinocrError(f"running ONNX models needs onnxruntime ({e}); install it with "
                          "'pip install onnxruntime'") from e
    p = Path(onnx_path)
    if not p.is_file():
        raise VinocrError(f"{p}: no such ONNX model (run export_onnx first)")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: paddle2onnx leaves harmless graph warnings
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(p), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        lines = str(exc).strip().splitlines()
        raise VinocrError(f"{p}: onnxruntime cannot load it: "
                          f"{lines[0] if lines else type(exc).__name__}") from None


def check_onnx_parity(model_dir: Union[str, Path], inputs: ArrayOrArrays, atol: float = 1e-4,
                      onnx_path: Union[str, Path, None] = None, mkldnn: bool = True) -> float:
    """Max absolute difference between onnxruntime and the Paddle predictor on ``inputs``.

    Args:
        model_dir: exported directory (``inference.json`` / ``.pdiparams``, and the ONNX file).
        inputs: one ``[N, 3, H, W]`` float32 batch or a list of them (e.g. several widths).
        atol: largest acceptable difference; above it a :class:`VinocrError` is raised.
        onnx_path: the ONNX file; default ``model_dir / 'inference.onnx'``.
        mkldnn: run the Paddle side with oneDNN (how it is deployed on CPU).

    Returns:
        The largest absolute difference over all inputs.
    """
    from vinocr.export.inference import load_predictor, run_paddle_predictor

    d = Path(model_dir)
    batches = _as_batches(inputs)
    session = onnx_session(onnx_path if onnx_path is not None else d / ONNX_FILENAME)
    input_name = session.get_inputs()[0].name
    predictor = load_predictor(d, mkldnn=mkldnn)
    worst = 0.0
    for x in batches:
        ref = run_paddle_predictor(predictor, x)
        got = session.run(None, {input_name: x})[0]
        if got.shape != ref.shape:
            raise VinocrError(f"ONNX output shape {got.shape} differs from Paddle's {ref.shape} "
                              f"for input {x.shape}")
        diff = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
        if not np.isfinite(diff):
            raise VinocrError(f"non-finite outputs for input {x.shape} (ONNX or Paddle)")
        logger.debug("input %s: max abs diff %.3g", x.shape, diff)
        worst = max(worst, diff)
    if worst > atol:
        raise VinocrError(f"ONNX and Paddle outputs differ by {worst:.3g} (> atol {atol:g})")
    return worst
