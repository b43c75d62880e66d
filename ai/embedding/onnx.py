"""all-MiniLM-L6-v2 on ONNX Runtime, for questions and bulk embedding alike, with no PyTorch.

The .onnx file is made here, not downloaded: the first start writes BertModel + mean pooling +
L2 normalisation as one graph, built with ``onnx.helper`` straight from the sha256-checked
safetensors weights (read with numpy; a few seconds, atomic rename into ``cache_dir``), named by
the weights' hash and the graph's version, so a changed model or builder makes a new file. Every
load runs the texts of ``minilm_reference.json`` through it and refuses the file unless the
vectors agree with the ones sentence-transformers made from the same weights (cosine >=
PROBE_MIN_COSINE): a corrupt or swapped file is built again, never served.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.platform.memory import heap_trim

logger = logging.getLogger(__name__)

MAX_SEQ_LENGTH = 256
OPSET = 18
# Bump when the graph below changes: the cached file's name carries it.
GRAPH_VERSION = 1
DIMENSIONS = 384
PROBE_MIN_COSINE = 0.99999
# The question model: the same graph with its MatMul weights in int8, one scale per output channel
# (onnxruntime's dynamic quantization; activations quantized as each call runs). A short question
# is embedded in 1.2-2.2 ms instead of 5 (the float weights, 42 MB, no longer stream from memory for
# every call), its vector within cosine 0.99 of the float one; on the labelled handbook set
# (tests/ai/relevance_set.py) precision, recall and top-1 are those of the float model. Documents
# keep the float model, so nothing stored is embedded again. Bump when the quantization changes.
QUANTIZATION_VERSION = 1
QUERY_PROBE_MIN_COSINE = 0.97  # measured 0.980 at worst on the reference texts (a 4,089-character one)
REFERENCE_FILE = Path(__file__).with_name("minilm_reference.json")
# Far below any real score, yet exp() of it is a clean 0 after softmax (BERT's own mask value).
_MASKED = -10000.0


class OnnxModelMismatch(RuntimeError):
    """The ONNX graph's vectors differ from the reference vectors of the checked weights."""


def reference_vectors(weights_sha256: str) -> tuple[list[str], np.ndarray]:
    """Texts and the vectors sentence-transformers made of them from the weights with this sha256."""
    reference = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
    if reference["weights_sha256"] != weights_sha256.lower():
        raise OnnxModelMismatch(f"{REFERENCE_FILE.name} holds no reference vectors for weights {weights_sha256}")
    return reference["texts"], np.asarray(reference["vectors"], dtype=np.float32)


def safetensors_read(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file (8-byte header size, JSON header, raw little-endian data)."""
    data = path.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(dtypes[meta["dtype"]])
        start, end = meta["data_offsets"]
        flat = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=8 + header_size + start)
        tensors[name] = flat.reshape(meta["shape"])
    return tensors


def graph_build(weights: dict[str, np.ndarray], config: dict[str, Any]) -> Any:
    """BERT (as transformers' BertModel computes it, eager attention) + mean pooling + L2
    normalisation over ``input_ids`` and ``attention_mask`` of any batch and sequence length."""
    from onnx import TensorProto, helper, numpy_helper

    hidden, heads, eps = config["hidden_size"], config["num_attention_heads"], config["layer_norm_eps"]
    head_size = hidden // heads
    initializers: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype=dtype)), name))
        return name

    def op(kind: str, inputs: list[str], output: str | None = None, **attributes: Any) -> str:
        name = output or f"{kind}_{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [name], **attributes))
        return name

    def linear(x: str, prefix: str, name: str) -> str:
        # torch's Linear keeps weights as (out, in); MatMul wants (in, out).
        weight = const(f"{name}.w", weights[f"{prefix}.weight"].T)
        return op("Add", [op("MatMul", [x, weight]), const(f"{name}.b", weights[f"{prefix}.bias"])])

    def layer_norm(x: str, prefix: str, name: str) -> str:
        scale, bias = weights[f"{prefix}.weight"], weights[f"{prefix}.bias"]
        return op("LayerNormalization", [x, const(f"{name}.g", scale), const(f"{name}.b", bias)], axis=-1, epsilon=eps)

    e = "embeddings."
    # Every token type is 0: its embedding is folded into the position table.
    positions = weights[e + "position_embeddings.weight"] + weights[e + "token_type_embeddings.weight"][0]
    length = op("Shape", ["input_ids"], start=1, end=2)
    position_rows = op("Slice", [const("positions", positions), const("zero", [0], np.int64), length])
    words = op("Gather", [const("words", weights[e + "word_embeddings.weight"]), "input_ids"])
    x = layer_norm(op("Add", [words, position_rows]), e + "LayerNorm", "embeddings.ln")

    mask = op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    unmasked = op("Unsqueeze", [mask, const("axes12", [1, 2], np.int64)])
    mask_bias = op("Mul", [op("Sub", [const("one", 1.0), unmasked]), const("masked", _MASKED)])
    split_heads = const("split_heads", [0, 0, heads, head_size], np.int64)
    merge_heads = const("merge_heads", [0, 0, hidden], np.int64)
    for index in range(config["num_hidden_layers"]):
        p, n = f"encoder.layer.{index}.", f"layer{index}"
        a = p + "attention.self."
        # One MatMul for query, key and value; the query pre-scaled by 1/sqrt(head size).
        scale = 1.0 / np.sqrt(head_size)
        qkv_weight = np.concatenate(
            [weights[a + "query.weight"] * scale, weights[a + "key.weight"], weights[a + "value.weight"]]
        ).T
        qkv_bias = np.concatenate(
            [weights[a + "query.bias"] * scale, weights[a + "key.bias"], weights[a + "value.bias"]]
        )
        qkv = op("Add", [op("MatMul", [x, const(f"{n}.qkv.w", qkv_weight)]), const(f"{n}.qkv.b", qkv_bias)])
        q, k, v = f"{n}.q", f"{n}.k", f"{n}.v"
        nodes.append(helper.make_node("Split", [qkv, const(f"{n}.split", [hidden] * 3, np.int64)], [q, k, v], axis=-1))
        q = op("Transpose", [op("Reshape", [q, split_heads])], perm=[0, 2, 1, 3])
        k = op("Transpose", [op("Reshape", [k, split_heads])], perm=[0, 2, 3, 1])
        v = op("Transpose", [op("Reshape", [v, split_heads])], perm=[0, 2, 1, 3])
        probabilities = op("Softmax", [op("Add", [op("MatMul", [q, k]), mask_bias])], axis=-1)
        context = op("Transpose", [op("MatMul", [probabilities, v])], perm=[0, 2, 1, 3])
        attended = linear(op("Reshape", [context, merge_heads]), p + "attention.output.dense", f"{n}.attention.out")
        x = layer_norm(op("Add", [attended, x]), p + "attention.output.LayerNorm", f"{n}.attention.ln")
        inner = linear(x, p + "intermediate.dense", f"{n}.inner")
        # BERT's "gelu" is the exact one: x * (1 + erf(x / sqrt 2)) / 2.
        erf = op("Erf", [op("Div", [inner, const(f"{n}.sqrt2", np.sqrt(2.0))])])
        gelu = op("Mul", [op("Mul", [inner, op("Add", [erf, const(f"{n}.one", 1.0)])]), const(f"{n}.half", 0.5)])
        out = linear(gelu, p + "output.dense", f"{n}.out")
        x = layer_norm(op("Add", [out, x]), p + "output.LayerNorm", f"{n}.ln")

    # sentence-transformers' mean pooling over real tokens, then normalize(p=2, eps=1e-12).
    token_weights = op("Unsqueeze", [mask, const("axis2", [2], np.int64)])
    axis1 = const("axis1", [1], np.int64)
    summed = op("ReduceSum", [op("Mul", [x, token_weights]), axis1], keepdims=0)
    counted = op("Max", [op("ReduceSum", [token_weights, axis1], keepdims=0), const("min_count", 1e-9)])
    pooled = op("Div", [summed, counted])
    norm = op("ReduceL2", [pooled, const("last_axis", [-1], np.int64)], keepdims=1)
    op("Div", [pooled, op("Max", [norm, const("min_norm", 1e-12)])], output="embedding")

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="strata")


def export(folder: Path, target: Path) -> Path:
    """Write the graph of ``folder``'s weights (model.safetensors, config.json) to ``target``."""
    import onnx

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    model = graph_build(safetensors_read(folder / "model.safetensors"), config)
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        onnx.save(model, temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


class OnnxMiniLM:
    """The graph with the model's tokenizer (``tokenizers``, no transformers); one ONNX Runtime
    session per intra-op thread count asked for (web processes use one; bulk jobs may add one)."""

    dimensions = DIMENSIONS

    def __init__(self, onnx_path: Path, tokenizer_file: Path, *, threads: int = 1, alone: bool = False) -> None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        tokenizer.no_padding()  # configured once, then only read: safe from many threads
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.token_to_id("[PAD]") or 0
        self.onnx_path = onnx_path
        self.threads = threads
        # Each text in a call of its own: an int8 graph quantizes a call's activations with one scale
        # for the whole batch, so a text's vector would depend on the texts embedded beside it (cosine
        # 0.993 measured). Alone it is the same whatever the company, at no cost (1.2 ms a short
        # question alone, 1.3 in a batch of 16).
        self.alone = alone
        self._sessions: dict[int, Any] = {}
        self._sessions_lock = threading.Lock()
        self.session = self._session(threads)

    def _session(self, threads: int) -> Any:
        session = self._sessions.get(threads)
        if session is not None:
            return session
        import onnxruntime as ort

        with self._sessions_lock:
            if threads not in self._sessions:
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # A web process serves many requests at once: idle threads must not spin against them.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._sessions[threads] = ort.InferenceSession(
                    str(self.onnx_path), options, providers=["CPUExecutionProvider"]
                )
                # Making a session frees the graph's parse buffers (~35 MB), which malloc would keep.
                heap_trim()
        return self._sessions[threads]

    def _arrays(self, encodings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        longest = max(len(encoding.ids) for encoding in encodings)
        ids = np.full((len(encodings), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), longest), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask

    def _run(self, encodings: Sequence[Any], session: Any) -> np.ndarray:
        ids, mask = self._arrays(encodings)
        return np.asarray(session.run(None, {"input_ids": ids, "attention_mask": mask})[0])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text).ids)

    def embed(self, texts: list[str], *, threads: int | None = None, slack: float = 1.25, extra: int = 4) -> np.ndarray:
        """Unit rows in input order. Texts of mixed lengths run as sub-batches of similar length,
        since padding a short text to the longest is wasted work (1.4-1.7x measured)."""
        session = self._session(threads or self.threads)
        if len(texts) == 1:
            return self._run([self.tokenizer.encode(texts[0])], session)
        if self.alone:
            return np.concatenate([self._run([encoding], session) for encoding in self.tokenizer.encode_batch(texts)])
        encodings = self.tokenizer.encode_batch(texts)
        lengths = [len(encoding.ids) for encoding in encodings]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        start = 0
        while start < len(order):
            end = start + 1
            limit = lengths[order[start]] * slack + extra
            while end < len(order) and lengths[order[end]] <= limit:
                end += 1
            part = order[start:end]
            out[part] = self._run([encodings[i] for i in part], session)
            start = end
        return out


# Reentrant: building the question model loads the float model first.
_lock = threading.RLock()


def onnx_model_load(*, folder: Path, cache_dir: Path, weights_sha256: str, threads: int = 1) -> OnnxMiniLM:
    """The ONNX model of ``folder`` (whose weights the caller checked), built on first use and
    checked against the reference vectors of those weights on every load."""
    target = cache_dir / f"{_stem(weights_sha256)}.onnx"
    return _checked(target, folder, weights_sha256, threads, PROBE_MIN_COSINE, lambda: export(folder, target))


def query_model_load(*, folder: Path, cache_dir: Path, weights_sha256: str, threads: int = 1) -> OnnxMiniLM:
    """The question model (QUANTIZATION_VERSION above): quantized from the float graph on first use
    (a second or two; the float graph is built first if missing) and checked against the same
    reference vectors on every load, within QUERY_PROBE_MIN_COSINE."""
    target = cache_dir / f"{_stem(weights_sha256)}-int8q{QUANTIZATION_VERSION}.onnx"

    def build() -> None:
        source = onnx_model_load(folder=folder, cache_dir=cache_dir, weights_sha256=weights_sha256).onnx_path
        quantized_export(source, target)

    return _checked(target, folder, weights_sha256, threads, QUERY_PROBE_MIN_COSINE, build, alone=True)


def quantized_export(source: Path, target: Path) -> Path:
    """Write ``source``'s graph with int8 MatMul weights (per output channel) to ``target``.

    In a folder of its own beside ``target``: onnxruntime writes a shape-inferred copy beside its
    input under a fixed name (``...-inferred.onnx``), which processes starting together on a fresh
    cache shared, deleting it under each other."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantizing-") as folder:
        work = Path(folder)
        private = work / source.name
        try:
            os.link(source, private)  # the same file system: no copy
        except OSError:  # one without hard links
            shutil.copyfile(source, private)
        quantized = work / target.name
        quantize_dynamic(
            private, quantized, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )
        os.replace(quantized, target)
    return target


def _stem(weights_sha256: str) -> str:
    return f"minilm-{weights_sha256[:16]}-graph{GRAPH_VERSION}-opset{OPSET}"


def _checked(
    target: Path,
    folder: Path,
    weights_sha256: str,
    threads: int,
    min_cosine: float,
    build: Callable[[], object],
    *,
    alone: bool = False,
) -> OnnxMiniLM:
    """``target`` loaded if its vectors agree with the weights' reference vectors; otherwise built
    (again) by ``build`` and checked, or OnnxModelMismatch."""
    texts, expected = reference_vectors(weights_sha256)
    tokenizer_file = folder / "tokenizer.json"
    with _lock:
        if target.is_file():
            try:
                model = OnnxMiniLM(target, tokenizer_file, threads=threads, alone=alone)
                if _agrees(model, texts, expected, min_cosine):
                    return model
            except Exception:  # onnxruntime refuses a truncated or corrupt file
                logger.warning("ONNX model %s does not load", target, exc_info=True)
            logger.warning("ONNX model %s disagrees with the checked weights; building it again", target)
        build()
        model = OnnxMiniLM(target, tokenizer_file, threads=threads, alone=alone)
        if not _agrees(model, texts, expected, min_cosine):
            raise OnnxModelMismatch(f"{target} does not reproduce the reference vectors of the weights")
        return model


def _agrees(model: OnnxMiniLM, texts: list[str], expected: np.ndarray, min_cosine: float) -> bool:
    ours = model.embed(texts)
    cosines = (ours * expected).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(expected, axis=1))
    return bool(cosines.min() >= min_cosine)
