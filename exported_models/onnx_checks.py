"""Check an untrusted ONNX policy before onnxruntime runs it for real (stdlib, numpy, onnx and onnxruntime only).

The project's serving (``core.serving.guard``) and the standalone ``exported_models/deploy_policy.py`` use this
module; ``exported_models/onnx_checks.py`` is a byte-identical copy, so it imports nothing of the project. What a
policy must fit is given by the caller: each role's feature names (its input width) and the number of menu
entries (``num_actions``).

A model is bytes until every static check passes, so nothing of it runs before then:
- at most ``MAX_MODEL_BYTES``, parsed by ``onnx.load_model_from_string`` and accepted by onnx's checker;
- operators from ``ALLOWED_OPERATORS`` only, in the standard domain: feed-forward arithmetic whose output
  size follows from its inputs' shapes. No control flow (Loop, If, Scan), so no subgraphs; no operator that
  sizes its output from data (ConstantOfShape, Expand, Tile, Range, Resize, Reshape, ...); no functions,
  custom domains, external or sparse data, strings;
- at most ``MAX_NODES`` nodes and ``MAX_PARAMETERS`` weights (initializers and constants);
- every tensor's shape, inferred by onnx from the observations' (rows, features) alone (the file's own shape
  annotations are discarded), is fixed sizes times at most one factor of rows, with at most
  ``MAX_VALUES_PER_ROW`` values and ``MAX_OPERATIONS_PER_ROW`` arithmetic operations per observation row
  summed over the graph. So a run on R rows holds at most 8 * R * ``MAX_VALUES_PER_ROW`` bytes of tensors
  besides the weights, and its work grows linearly with R; the outputs are (R,) actions and (R, num_actions)
  probabilities.
The session is single-threaded and has no memory arena, so what a run allocates is freed when it returns.
Then probes: decisions on 1 and ``TIMED_ROWS`` rows take at most ``MAX_SECONDS_PER_ROW`` per row (best of
``TIMING_REPEATS``; a run is stopped at four times its allowance), and on the caller's probe observations
(``PROBE_ROWS`` at a time) every output is checked (``check_decisions``): ``action`` int64 in
[0, num_actions), ``probabilities`` finite in [0, 1] summing to 1, and the action a most probable entry. Any
failure raises ``PolicyLoadError`` in one line, with text taken from the file escaped. Probes cannot prove that
no input triggers nonsense, so the caller checks every later decision too (``menu_indices``,
``check_decisions``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference

OUTPUTS = ("action", "probabilities")
MAX_MODEL_BYTES = 5 * 2**20
MAX_NODES = 256
MAX_PARAMETERS = 1_000_000
MAX_VALUES_PER_ROW = 20_000
MAX_OPERATIONS_PER_ROW = 2_000_000
MAX_SECONDS_PER_ROW = 0.005
TIMED_ROWS = 64
PROBE_ROWS = 256  # observations per probe run: at most 256 * 8 * MAX_VALUES_PER_ROW bytes (41 MB) of tensors
TIMING_REPEATS = 3
UNIFORM_PROBE_ROWS = 512  # rows of ``range_rows`` drawn uniformly over +-clip
PROBABILITY_SUM_TOLERANCE = 1e-4
TIE_TOLERANCE = 1e-6  # float32 softmax of two equal-enough logits
OPSETS = range(13, onnx.defs.onnx_opset_version() + 1)
ALLOWED_OPERATORS = frozenset({
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Max", "Min", "Clip",  # linear, clipping
    "Tanh", "Relu", "LeakyRelu", "Elu", "Sigmoid", "Softplus", "Exp", "Log", "Sqrt",  # activations
    "ArgMax", "Softmax", "LogSoftmax", "Identity", "Constant",  # heads; Constant's values count as parameters
})
CONSTANT_ATTRIBUTES = {"value", "value_float", "value_floats", "value_int", "value_ints"}
NUMERIC = {t for t in onnx.TensorProto.DataType.values()
           if t not in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING)}


class PolicyLoadError(ValueError):
    """An exported policy or its manifest cannot be used; the message says why."""


def printable(text: str) -> str:
    """``text`` with every character that is not printable (newlines, escapes, bidi controls) escaped as in repr."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def session_options() -> ort.SessionOptions:
    """Single-threaded (the networks are tiny: threads only add latency), and no memory arena, so the
    memory a run allocates is returned when it ends rather than kept by the process."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    return options


def checked_session(data: bytes, features: dict[str, Sequence[str]], num_actions: int,
                    probes: Callable[[str], np.ndarray], label: str, prefixed: bool = False,
                    max_seconds_per_row: float = MAX_SECONDS_PER_ROW) -> tuple[ort.InferenceSession, dict[str, str]]:
    """A session for a policy graph that passed every check, and its input name per role.

    ``features`` holds each role's feature names (the input's width), ``probes(role)`` the float32 observations
    its decisions are checked on. One role's file (``prefixed`` False) has one input of any name and the outputs
    ``OUTPUTS``; a hierarchy file has ``ROLE/observation`` inputs and ``ROLE/action``, ``ROLE/probabilities``
    outputs."""
    inputs = static_checks(data, features, num_actions, label, prefixed)
    try:
        sess = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several types for graphs it cannot run
        raise PolicyLoadError(f"{label}: not a loadable ONNX model ({_brief(exc)})") from None
    observations = {role: probes(role) for role in inputs}
    probe(sess, inputs, _outputs(features, prefixed), observations, num_actions, label, max_seconds_per_row)
    return sess, inputs


def static_checks(data: bytes, features: dict[str, Sequence[str]], num_actions: int, label: str,
                  prefixed: bool = False) -> dict[str, str]:
    """Every check of the bytes alone (nothing runs): the graph's input name per role."""
    model = _parsed(data, label)
    _check_structure(model, label)
    inputs = _check_signature(model, features, label, prefixed)
    _check_bounds(model, inputs, _outputs(features, prefixed), num_actions, label)
    return inputs


def _outputs(features: dict[str, Sequence[str]], prefixed: bool) -> dict[str, tuple[str, str]]:
    """Each role's (action, probabilities) output names."""
    return {role: tuple(f"{role}/{o}" if prefixed else o for o in OUTPUTS) for role in features}


def _brief(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return printable(f"{type(exc).__name__}: {first[:160]}")


def _parsed(data: bytes, label: str) -> onnx.ModelProto:
    if len(data) > MAX_MODEL_BYTES:
        raise PolicyLoadError(f"{label}: {len(data):,} bytes; allowed: at most {MAX_MODEL_BYTES:,}")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise PolicyLoadError(f"{label}: not a loadable ONNX model ({_brief(exc)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise PolicyLoadError(f"{label}: not a loadable ONNX model (no graph)")
    return model


def _check_structure(model: onnx.ModelProto, label: str) -> None:
    """Operators, domains, opset, functions, data location and sizes: nothing runs."""
    graph = model.graph
    if model.functions:
        raise PolicyLoadError(f"{label}: defines functions; allowed: standard operators only")
    for opset in model.opset_import:
        if opset.domain not in ("", "ai.onnx"):
            raise PolicyLoadError(f"{label}: operator domain {opset.domain[:40]!r}; allowed: the standard domain")
        if opset.version not in OPSETS:
            raise PolicyLoadError(f"{label}: opset {opset.version}; allowed: {OPSETS.start} to {OPSETS.stop - 1}")
    if len(graph.node) > MAX_NODES:
        raise PolicyLoadError(f"{label}: {len(graph.node):,} nodes; allowed: at most {MAX_NODES}")
    if graph.sparse_initializer:
        raise PolicyLoadError(f"{label}: sparse initializers; allowed: dense weights inside the file")
    tensors, listed = list(graph.initializer), 0
    for node in graph.node:
        operator = printable(node.op_type[:40])
        if node.domain not in ("", "ai.onnx"):
            raise PolicyLoadError(f"{label}: operator {node.op_type[:40]!r} of domain {node.domain[:40]!r}; "
                                  f"allowed: the standard domain")
        if node.op_type not in ALLOWED_OPERATORS:
            raise PolicyLoadError(f"{label}: operator {operator}; allowed: {', '.join(sorted(ALLOWED_OPERATORS))}")
        for attribute in node.attribute:
            if attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise PolicyLoadError(f"{label}: a subgraph in {operator}; allowed: none")
            if node.op_type == "Constant" and attribute.name not in CONSTANT_ATTRIBUTES:
                raise PolicyLoadError(f"{label}: Constant {printable(attribute.name[:40])}; allowed: "
                                      f"{', '.join(sorted(CONSTANT_ATTRIBUTES))}")
            if attribute.type == onnx.AttributeProto.TENSOR:
                tensors.append(attribute.t)
            tensors.extend(attribute.tensors)
            listed += len(attribute.floats) + len(attribute.ints)
    parameters = listed
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise PolicyLoadError(f"{label}: external data ({printable(tensor.name[:40])}); "
                                  f"allowed: weights inside the file")
        if tensor.data_type not in NUMERIC:
            raise PolicyLoadError(f"{label}: tensor {tensor.name[:40]!r} of type "
                                  f"{onnx.TensorProto.DataType.Name(tensor.data_type)}; allowed: numbers")
        if any(d < 0 for d in tensor.dims):
            raise PolicyLoadError(f"{label}: tensor {tensor.name[:40]!r} of shape {list(tensor.dims)}")
        parameters += math.prod(tensor.dims)
    if parameters > MAX_PARAMETERS:
        raise PolicyLoadError(f"{label}: {parameters:,} parameters; allowed: at most {MAX_PARAMETERS:,}")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # ValidationError, or worse for a crafted proto
        raise PolicyLoadError(f"{label}: not a loadable ONNX model ({_brief(exc)})") from None


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value.type.tensor_type.shape.dim]


def _type_name(value: onnx.ValueInfoProto) -> str:
    return onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()


def _check_signature(model: onnx.ModelProto, features: dict[str, Sequence[str]], label: str,
                     prefixed: bool) -> dict[str, str]:
    """The graph's inputs (float32, (rows, the role's width)) and output names; its input name per role."""
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if prefixed:
        expected = {f"{role}/observation": role for role in features}
        got = {i.name: i for i in inputs}
        if set(got) != set(expected) or any(_bad_input(got[n], len(features[r])) for n, r in expected.items()):
            wanted = ", ".join(f"{n} of width {len(features[r])}" for n, r in expected.items())
            raise PolicyLoadError(f"{label}: inputs {[(i.name[:40], _dims(i)) for i in inputs][:8]}; "
                                  f"allowed: {wanted}")
        by_role = {role: name for name, role in expected.items()}
    else:
        ((role, names),) = features.items()
        if len(inputs) != 1 or _bad_input(inputs[0], len(names)):
            shown = printable(", ".join(n[:40] for n in names[:3]))
            raise PolicyLoadError(f"{label}: input shape {[_dims(i) for i in inputs][:8]}; allowed: one input of "
                                  f"width {len(names)} and any number of rows ({shown}, ...)")
        by_role = {role: inputs[0].name}
    for name in by_role.values():
        value = next(i for i in inputs if i.name == name)
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise PolicyLoadError(f"{label}: input {name[:40]!r} of type {_type_name(value)}; allowed: float")
    names = tuple(o.name for o in model.graph.output)
    expected_outputs = tuple(f"{role}/{o}" if prefixed else o for role in features for o in OUTPUTS)
    if sorted(names) != sorted(expected_outputs) or (not prefixed and names != OUTPUTS):
        shown = tuple(n[:40] for n in names[:8])
        raise PolicyLoadError(f"{label}: outputs {shown}; allowed: {expected_outputs}")
    return by_role


def _bad_input(value: onnx.ValueInfoProto, width: int) -> bool:
    dims = _dims(value)
    return len(dims) != 2 or dims[1] != width or isinstance(dims[0], int)


def _check_bounds(model: onnx.ModelProto, inputs: dict[str, str], outputs: dict[str, tuple[str, str]],
                  num_actions: int, label: str) -> None:
    """Infer every tensor's shape from the observations' and bound the values and work per row."""
    rows = {role: f"rows of {role}" for role in inputs}
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    for value in bare.graph.input:
        for role, name in inputs.items():
            if value.name == name:
                value.type.tensor_type.shape.dim[0].dim_param = rows[role]
    for value in bare.graph.output:
        value.type.tensor_type.ClearField("shape")
    try:
        inferred = shape_inference.infer_shapes(bare, check_type=True, strict_mode=True).graph
    except Exception as exc:  # InferenceError, or worse for a crafted proto
        raise PolicyLoadError(f"{label}: shapes cannot be inferred ({_brief(exc)})") from None
    shapes = {}
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        if value.name in shapes or not value.type.HasField("tensor_type"):
            continue
        dims = _dims(value) if value.type.tensor_type.HasField("shape") else [None]
        symbols = [d for d in dims if isinstance(d, str)]
        if None in dims or any(s not in rows.values() for s in symbols) or len(symbols) > 1 \
                or value.type.tensor_type.elem_type not in NUMERIC:
            raise PolicyLoadError(f"{label}: the size of {value.name[:40]!r} ({_type_name(value)} {dims}) does not "
                                  f"follow from the observations; allowed: fixed sizes times the rows")
        shapes[value.name] = dims
    weights = {t.name: list(t.dims) for t in inferred.initializer}
    values = sum(math.prod(d for d in dims if isinstance(d, int)) for dims in shapes.values())
    operations = 0
    for node in inferred.node:
        for name in node.output:
            if name and name not in shapes:
                raise PolicyLoadError(f"{label}: the size of {name[:40]!r} cannot be inferred")
        inner = 1
        if node.op_type in ("Gemm", "MatMul") and len(node.input) >= 2:
            first = shapes.get(node.input[0], weights.get(node.input[0], [1]))
            transposed = node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute)
            inner = first[0] if transposed and first else (first[-1] if first else 1)
        per_row = sum(math.prod(d for d in shapes[n] if isinstance(d, int)) for n in node.output if n)
        operations += per_row * (inner if isinstance(inner, int) else 1) + per_row
    if values > MAX_VALUES_PER_ROW:
        raise PolicyLoadError(f"{label}: {values:,} tensor values per observation row; "
                              f"allowed: at most {MAX_VALUES_PER_ROW:,}")
    if operations > MAX_OPERATIONS_PER_ROW:
        raise PolicyLoadError(f"{label}: about {operations:,} operations per observation row; "
                              f"allowed: at most {MAX_OPERATIONS_PER_ROW:,}")
    declared = {o.name: o for o in inferred.output}
    for role, (action, probabilities) in outputs.items():
        if declared[action].type.tensor_type.elem_type != onnx.TensorProto.INT64 or shapes[action] != [rows[role]]:
            raise PolicyLoadError(f"{label}: {action} of type {_type_name(declared[action])} and shape "
                                  f"{shapes[action]}; allowed: int64, one per observation row")
        if shapes[probabilities][:1] != [rows[role]] or len(shapes[probabilities]) != 2 \
                or shapes[probabilities][1] != num_actions:
            raise PolicyLoadError(f"{label}: {probabilities} of shape {tuple(shapes[probabilities][1:])}; "
                                  f"allowed: ({num_actions},), one per menu entry")
        if declared[probabilities].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise PolicyLoadError(f"{label}: {probabilities} of type {_type_name(declared[probabilities])}; "
                                  f"allowed: float")


def range_rows(width: int, clip: float) -> np.ndarray:
    """Probe rows over the range features take when clipped to +-``clip``: all 0, all 1, all +clip, all -clip,
    then ``UNIFORM_PROBE_ROWS`` rows uniform over +-clip (float64, seed 0)."""
    rng = np.random.default_rng(0)
    edges = np.stack([np.zeros(width), np.ones(width), np.full(width, clip), np.full(width, -clip)])
    return np.concatenate([edges, rng.uniform(-clip, clip, (UNIFORM_PROBE_ROWS, width))])


def timed_run(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], deadline: float,
              label: str) -> tuple[list[np.ndarray] | None, float]:
    """One run stopped after ``deadline`` seconds: (outputs or None if stopped, seconds)."""
    options = ort.RunOptions()
    timer = threading.Timer(deadline, lambda: setattr(options, "terminate", True))
    timer.start()
    begin = time.perf_counter()
    try:
        outputs = sess.run(None, feeds, options)
    except Exception as exc:  # onnxruntime: a stopped run, wrong types, a broken graph
        if options.terminate:
            return None, time.perf_counter() - begin
        rows = next(iter(feeds.values())).shape[0]
        raise PolicyLoadError(f"{label}: cannot run a batch of {rows} float32 observations ({_brief(exc)})") from None
    finally:
        timer.cancel()
    return outputs, time.perf_counter() - begin


def probe(sess: ort.InferenceSession, inputs: dict[str, str], outputs: dict[str, tuple[str, str]],
          observations: dict[str, np.ndarray], num_actions: int, label: str,
          max_seconds_per_row: float = MAX_SECONDS_PER_ROW) -> None:
    """Time decisions on 1 and ``TIMED_ROWS`` rows, then check the decisions on every row of ``observations``."""
    for rows in (1, TIMED_ROWS):
        feeds = {name: observations[role][:rows] for role, name in inputs.items()}
        allowance = rows * max_seconds_per_row
        best = math.inf
        for _ in range(TIMING_REPEATS):
            _, seconds = timed_run(sess, feeds, 4 * allowance, label)
            best = min(best, seconds)
            if best <= allowance:
                break
        if best > allowance:
            raise PolicyLoadError(f"{label}: {1e3 * best / rows:.1f} ms per observation row on a batch of {rows}; "
                                  f"allowed: at most {1e3 * max_seconds_per_row:g} ms")
    names = [o.name for o in sess.get_outputs()]
    for start in range(0, max(len(o) for o in observations.values()), PROBE_ROWS):  # a bounded batch at a time
        rows = np.arange(start, start + PROBE_ROWS)
        feeds = {name: observations[role][rows % len(observations[role])] for role, name in inputs.items()}
        result, _ = timed_run(sess, feeds, 4 * PROBE_ROWS * max_seconds_per_row, label)
        if result is None:
            raise PolicyLoadError(f"{label}: a probe of {PROBE_ROWS} rows ran past "
                                  f"{4e3 * PROBE_ROWS * max_seconds_per_row:.0f} ms")
        named = dict(zip(names, result, strict=True))
        for action, probabilities in outputs.values():
            check_decisions(named[action], named[probabilities], PROBE_ROWS, label, num_actions,
                            (action, probabilities))


def check_decisions(action: np.ndarray, probabilities: np.ndarray, rows: int, label: str, num_actions: int,
                    names: tuple[str, str] = OUTPUTS, where: str = "on a probe observation") -> None:
    """``action`` int64 in the menu, ``probabilities`` finite in [0, 1] summing to 1, the action a most probable
    entry (ties within ``TIE_TOLERANCE``); ``where`` says which observations, for the message."""
    action_name, probabilities_name = names
    if action.dtype != np.int64 or action.shape != (rows,):
        raise PolicyLoadError(f"{label}: {action_name} of {action.dtype} {action.shape} for {rows} rows; "
                              f"allowed: int64 ({rows},)")
    if probabilities.dtype != np.float32 or probabilities.shape != (rows, num_actions):
        raise PolicyLoadError(f"{label}: {probabilities_name} of {probabilities.dtype} {probabilities.shape}; "
                              f"allowed: float32 ({rows}, {num_actions})")
    outside = (action < 0) | (action >= num_actions)
    if outside.any():
        raise PolicyLoadError(f"{label}: {action_name} {int(action[outside][0])} {where}; "
                              f"allowed: a menu index from 0 to {num_actions - 1}")
    if not np.isfinite(probabilities).all():
        raise PolicyLoadError(f"{label}: {probabilities_name} not finite {where}")
    if probabilities.min() < 0 or probabilities.max() > 1:
        wrong = probabilities[(probabilities < 0) | (probabilities > 1)][0]
        raise PolicyLoadError(f"{label}: {probabilities_name} {wrong:g} {where}; allowed: 0 to 1")
    sums = np.einsum("ij->i", probabilities, dtype=np.float64)  # twice as fast as sum(axis=1) on narrow rows
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > PROBABILITY_SUM_TOLERANCE:
        raise PolicyLoadError(f"{label}: {probabilities_name} summing to {sums[worst]:.6g} {where}; "
                              f"allowed: 1 +- {PROBABILITY_SUM_TOLERANCE:g}")
    everyone = np.arange(rows)
    chosen = probabilities[everyone, action]
    most = probabilities.argmax(axis=1)
    best = probabilities[everyone, most]  # argmax and a gather: faster than max(axis=1)
    below = np.flatnonzero(chosen < best - TIE_TOLERANCE)
    if below.size:
        i = below[0]
        raise PolicyLoadError(f"{label}: {action_name} {int(action[i])} (probability {chosen[i]:.4g}) is not the "
                              f"most probable entry {int(most[i])} ({best[i]:.4g}) {where}")


def menu_indices(action: np.ndarray, label: str, num_actions: int) -> np.ndarray:
    """``action`` as int64 menu indices, checked at every decision: a model may misbehave only on inputs
    that no probe tried."""
    indices = np.asarray(action, np.int64)
    if indices.size > 1024:
        outside = bool(indices.min() < 0 or indices.max() >= num_actions)
    else:  # a day's few decisions: Python's min and max are several times faster than numpy's reductions
        values = indices.ravel().tolist()
        outside = bool(values) and (min(values) < 0 or max(values) >= num_actions)
    if outside:
        wrong = indices[(indices < 0) | (indices >= num_actions)][0]
        raise PolicyLoadError(f"{label} chose menu entry {int(wrong)}; allowed: 0 to {num_actions - 1}")
    return indices
