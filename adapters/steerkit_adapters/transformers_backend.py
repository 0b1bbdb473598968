"""The transformers backend: local HF folders, GGUF files and hub names, batch first.

Batches are left-padded and sorted by length; constraints come from outlines logits
processors (JSON schema, regex, choice); option log-probabilities read the next-token
distribution. The default model is the embedded SmolLM2-135M-Instruct (see ``embedded``)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import steerkit
from steerkit.plugin import Backend, ChatPrompt, Completion, Constraint, Request, Sampling

from .embedded import EMBEDDED_NAME, FORMAT_VERSION, embedded_gguf, embedded_model_dir, ensure_converted, gguf_model_dir
from .grammar import EagerLLGuidanceProcessor
from .heap_reuse import keep_freed_memory
from .lora import adapter_expected_base, adapter_fingerprint, check_adapter
from .model_source import looks_like_path, resolve_hub_name, source_digest
from .option_tokens import check_option_tokens, hf_tokenize, option_token_ids


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
GQA_ATTENTION = "steerkit_sdpa_gqa"  # the attention implementation decoding runs with on CPU (sdpa_gqa_attention)
DTYPES = ("float32", "bfloat16", "float16")
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
PACKED_LINEAR_MAX_BYTES = 2 * 2**30  # packed_linear's default: at most this much weight copied (~1B params in bf16)


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bfloat16 natively (AMX or AVX-512 BF16 in /proc/cpuinfo's
    flags). There bfloat16 prefill of the embedded model ran 3.75x faster than float32 (issue
    13); elsewhere bfloat16 is emulated and slower, so float32 stays."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool(NATIVE_BF16_FLAGS & set(line.partition(":")[2].split()))
    return False


def resolve_dtype(dtype: str | None, device: str) -> str:
    """The weights' dtype: the one asked for, or ("auto"/None) bfloat16 on a CPU with native
    bf16 and float32 elsewhere. Chosen before anything loads, so the fingerprint carries it."""
    if dtype is None or dtype == "auto":
        return "bfloat16" if device == "cpu" and cpu_has_native_bf16() else "float32"
    if dtype not in DTYPES:
        raise steerkit.InvalidOptionError(
            f"transformers backend dtype {dtype!r} is not supported: use one of {', '.join(DTYPES)} or 'auto' "
            "(bfloat16 on CPUs with native bf16, float32 elsewhere), e.g. backend_options={'dtype': 'float32'}"
        )
    return dtype


def sdpa_gqa_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,  # noqa: ANN001
                       is_causal=None, **kwargs):  # noqa: ANN001, ANN003
    """transformers' SDPA attention with two changes that leave every number as it was (issue 13).

    1. Grouped-query key/value heads reach the kernel as they are (``enable_gqa``) when a mask is
       present too: transformers repeats them in that case (CUDA's fused kernels lack masked GQA),
       which on a CPU copies the whole KV cache 3x at every decoding step of a padded batch
       (~4x the attention time at 5 rows x 2,500 tokens). PyTorch's CPU flash kernel takes masked
       GQA and gives bit-identical results.
    2. Key/value positions that no row may attend (a static cache's unwritten tail) are cut off:
       the kernel's blocking follows the key length, so a longer masked tail rounds bfloat16
       differently; cut, a static cache computes exactly what the growing cache computes."""
    import torch

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if kwargs.get("cache") is not None:  # a paged cache (continuous batching) is transformers' own business
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    n = attended_length(attention_mask) if attention_mask is not None and attention_mask.dtype == torch.bool else None
    if n is not None:
        key, value, attention_mask = key[:, :, :n], value[:, :, :n], attention_mask[..., :n]
        if kwargs.get("position_bias") is not None:
            kwargs["position_bias"] = kwargs["position_bias"][..., :n]
    if kwargs.get("position_bias") is not None:  # relative-position models (Inkling): transformers folds it into the mask
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = q_len > 1 and attention_mask is None and causal
    if causal and kv_len > q_len:  # as transformers: an empty static cache's prefill
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    decoding = getattr(_DECODING, "runs", None) if q_len == 1 and not causal else None
    batch = query.shape[0]
    if decoding is not None and decoding[1] == batch and (attention_mask is None or attention_mask.shape[0] in (1, batch)):
        # rows that have ended (EOS) are left out: their tokens are padding from here on, and a
        # row's attention is the same computed in any batch (the kernel works per row and head)
        out = query.new_zeros(query.shape)
        for a, b in decoding[0]:
            mask = attention_mask if attention_mask is None or attention_mask.shape[0] == 1 else attention_mask[a:b]
            out[a:b] = torch.nn.functional.scaled_dot_product_attention(
                query[a:b], key[a:b], value[a:b], attn_mask=mask, dropout_p=dropout, scale=scaling,
                enable_gqa=groups > 1)
        return out.transpose(1, 2).contiguous(), None
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=groups > 1)
    return out.transpose(1, 2).contiguous(), None


_DECODING = threading.local()  # .runs: (row ranges still decoding, batch size) while FinishedRows tracks a batch


class FinishedRows:
    """A stopping criterion that stops nothing: after each step it records which rows of the
    batch have generated EOS (``generate`` pads them from then on), as ranges of rows still
    decoding, so ``sdpa_gqa_attention`` reads the KV cache of those rows only (scenario 0 of
    HelpSteer2: answers of 61-151 tokens decoded together, 755 row-steps of attention for ~430
    tokens). Never set for a single row or while nothing has ended."""

    def __init__(self, prompt_width: int, eos_ids: list[int]):
        self.width, self.eos = prompt_width, eos_ids

    def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001, ANN003, ANN204
        import torch

        ended = torch.isin(input_ids[:, self.width:], torch.tensor(self.eos)).any(-1).tolist()
        runs, start = [], None
        for i, e in enumerate(ended + [True]):
            if not e and start is None:
                start = i
            elif e and start is not None:
                runs.append((start, i))
                start = None
        _DECODING.runs = (runs, len(ended)) if any(ended) and runs else None
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


_LAST_CUT = threading.local()  # .value: (a decoding step's mask, its attended length), cleared after generate


def attended_length(mask) -> int | None:  # noqa: ANN001
    """How many key positions to keep: up to the last one any row attends, when the mask's last
    key is attended by no row (a static cache's unwritten tail); None when there is nothing to
    cut (or nothing is attended at all: left as it is, as transformers does). Every layer of a
    decoding step gets the same mask object, so the answer for the last one-query mask is kept
    (~5 small ops and a sync per layer, ~1-2 ms of a 5-row step)."""
    last = getattr(_LAST_CUT, "value", None)
    if last is not None and last[0] is mask:
        return last[1]
    n = None
    if not bool(mask[..., -1].any()):
        attended = mask.reshape(-1, mask.shape[-1]).any(0).nonzero()
        if len(attended):
            n = int(attended.max()) + 1
    if mask.shape[-2] == 1:  # (one query position: a small mask, safe to hold on to)
        _LAST_CUT.value = (mask, n)
    return n


def batch_rows(layer, n: int, width: int, static=None):  # noqa: ANN001, ANN201
    """Zeroed keys and values for ``n`` rows of ``width`` positions shaped like one prompt's cache
    ``layer``: views of the ``static`` cache layer's first ``width`` positions when one is given
    (allocated here, as its first update would), new tensors otherwise."""
    keys, values = layer.keys, layer.values
    if static is None:
        return (keys.new_zeros((n, keys.shape[1], width, keys.shape[-1])),
                values.new_zeros((n, values.shape[1], width, values.shape[-1])))
    static.lazy_initialization(keys.expand(n, -1, -1, -1), values.expand(n, -1, -1, -1))
    return static.keys[:, :, :width], static.values[:, :, :width]


def register_gqa_attention() -> None:
    """Register ``sdpa_gqa_attention`` (and SDPA's mask builder) with transformers, once."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_ATTENTION, sdpa_gqa_attention)
    AttentionMaskInterface.register(GQA_ATTENTION, sdpa_mask)


def check_gguf(path: Path) -> None:
    """A .gguf file starts with the magic bytes ``GGUF``; anything else fails before any load."""
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise steerkit.ModelNotFoundError(
                f"{str(path)!r} is not a GGUF file (its first bytes are not 'GGUF'): the download may be "
                "incomplete; download it again or pass a Hugging Face model folder"
            )


def check_folder(path: Path) -> None:
    """Refuse, before any weights load, a folder whose model needs code from the folder
    (``trust_remote_code``, which steerkit never enables) or whose weights are pickles only
    (unpickling runs arbitrary code) or missing."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise steerkit.ModelNotFoundError(f"{path / 'config.json'} cannot be read ({exc}): check the model folder") from None
    if isinstance(config, dict) and config.get("auto_map"):
        raise steerkit.ModelNotFoundError(
            f"the model in {str(path)!r} needs its own Python code (config.json has auto_map: "
            f"{sorted(config['auto_map'])}), i.e. trust_remote_code, which steerkit does not enable: use a model "
            "that transformers supports natively, or serve this one with vLLM and use --backend openai"
        )
    files = [p.name for p in path.iterdir() if p.is_file()]
    if any(name.endswith(".safetensors") or name.endswith(".gguf") for name in files):
        return
    pickles = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise steerkit.ModelNotFoundError(
            f"the model in {str(path)!r} has pickled weights only ({', '.join(pickles)}); steerkit loads "
            "safetensors only (unpickling can run code): convert it once with transformers "
            "(AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder, safe_serialization=True))"
        )
    raise steerkit.ModelNotFoundError(
        f"the model folder {str(path)!r} has no weights (*.safetensors): copy or download them into it, "
        "or pass another folder"
    )


class TransformersBackend(Backend):
    """Runs a causal LM with transformers; loads weights on first use."""

    name = "transformers"
    supports_adapters = True

    def __init__(
        self,
        model: str | None = None,
        *,
        micro_batch_size: int = 16,
        attention_budget: int | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        compact_json: bool = True,
        gqa_attention: bool | None = None,
        static_cache: bool | None = None,
        packed_linear: bool | None = None,
        skip_finished: bool | None = None,
        heap_reuse: bool | None = None,
        **options: Any,
    ):
        super().__init__(model, **options)
        self.micro_batch_size = int(micro_batch_size)
        self.preferred_batch_size = max(self.micro_batch_size, 8)
        self.device = device
        # A padded prefill holds at most ``attention_budget`` = prompts x (padded length)^2. On a
        # CPU a padded batch runs the masked (math) attention kernel, whose time and memory grow
        # with batch x length^2: 8 few-shot prompts of ~3,000 tokens took ~90 s per prompt
        # batched vs ~14 s alone, while 16 CoT prompts of ~400 tokens run 2.6x faster together
        # than alone. So over the budget each prompt prefills alone, and the batch then decodes
        # together (a decoding step costs about the same for 1 row as for 8). No limit on GPU.
        self.attention_budget = attention_budget if attention_budget is not None else (2**22 if device == "cpu" else 0)
        self.dtype = resolve_dtype(dtype, device)  # part of the fingerprint
        self.compact_json = compact_json
        # Decoding speed-ups that leave outputs unchanged (issue 13; tests check the outputs), so
        # neither is in the fingerprint. On by default on CPU: masked grouped-query attention
        # without copying the KV heads (``sdpa_gqa_attention``), and, for a batch whose prompts
        # prefill alone, a static KV cache instead of one that grows by a copy at every step.
        # Measured on 2 shared Xeon cores, bfloat16, 5 comparative prompts of ~2,400 tokens decoding
        # together: 9.6 -> 20.6 tokens/s at load ~5, 14.2 -> 23.5 at load ~2-3 (bench_comparative.py
        # --decode); batch 1 is unchanged.
        self.gqa_attention = (device == "cpu") if gqa_attention is None else bool(gqa_attention)
        self.static_cache = (device == "cpu") if static_cache is None else bool(static_cache)
        # Decoding steps' linear layers on prepacked oneDNN weights, q/k/v and gate/up fused
        # (``packed_linear``: each product checked once against the plain one, exact or not
        # used). Costs a second copy of the linear weights. Batch-5 step of the embedded model
        # on 2 shared Xeon cores: see benchmarks/README.md (bench_comparative.py --decode).
        # By default only for models whose linear weights take at most PACKED_LINEAR_MAX_BYTES
        # (a second copy of a 7B model's weights is no default); packed_linear=True packs any size.
        self.packed_linear = (device == "cpu") if packed_linear is None else bool(packed_linear)
        self._packed_if_small = packed_linear is None
        # With gqa_attention, rows of a batch that have ended (EOS) skip the attention while the
        # others decode on (``FinishedRows``): same outputs, fewer KV reads.
        self.skip_finished = (device == "cpu") if skip_finished is None else bool(skip_finished)
        # At load, glibc is told to keep freed memory for reuse (``heap_reuse``: process-wide, never
        # over the user's own MALLOC_* settings): a process's first long prefills ran ~2x slower,
        # page-faulting fresh memory for every layer.
        self.heap_reuse = (device == "cpu") if heap_reuse is None else bool(heap_reuse)
        self._packed = None
        self._source = self._resolve(model)  # validates before anything loads
        self._hf_model = None
        self._loaded_fingerprint: str | None = None
        self._tokenizer = None
        self._grammars = None  # outlines' llguidance backend for this model (its tokenizer view)
        self._processors: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()
        self._peft = None  # the model wrapped by peft once a request names an adapter
        self._adapter_names: dict[str, str] = {}  # adapter folder -> peft adapter name

    # -- identity -----------------------------------------------------------------------
    def _resolve(self, model: str | None) -> dict[str, Any]:
        if model is None:
            gguf = embedded_gguf()
            return {"kind": "embedded", "path": gguf, "name": EMBEDDED_NAME}
        if looks_like_path(model):
            path = Path(model).expanduser()
            if not path.exists():
                raise steerkit.ModelNotFoundError(
                    f"model path {str(path)!r} does not exist: pass an existing HF folder, a .gguf "
                    "file, a hub name that is in the local HF cache, or model=None for the embedded default"
                )
            if path.is_file() and path.suffix == ".gguf":
                check_gguf(path)
                return {"kind": "gguf", "path": path, "name": path.stem}
            if path.is_dir() and (path / "config.json").exists():
                check_folder(path)
                return {"kind": "folder", "path": path, "name": path.name}
            raise steerkit.ModelNotFoundError(
                f"{str(path)!r} is neither a .gguf file nor a folder with config.json: pass a Hugging Face "
                "model folder (config.json, *.safetensors, tokenizer files) or a .gguf file"
            )
        return resolve_hub_name(model)

    @property
    def model_name(self) -> str:
        return self._source["name"]

    def fingerprint(self) -> str:
        """Backend, model content (``model_source.source_digest``: a GGUF's bytes, every file of
        a folder that shapes output, a hub commit) and the settings that change outputs. Once
        the model is loaded, the identity taken at load time: the weights in memory are what
        answers, even if the folder is overwritten afterwards (a trainer saving over it)."""
        if self._loaded_fingerprint is not None:
            return self._loaded_fingerprint
        return self._current_fingerprint()

    def _current_fingerprint(self) -> str:
        src = self._source
        h = hashlib.sha256()
        h.update(source_digest(src).encode())
        if src["kind"] in ("embedded", "gguf"):
            h.update(f":convert-v{FORMAT_VERSION}".encode())  # the conversion shapes the tokenizer
        h.update(self.dtype.encode())
        h.update(b":compact-json" if self.compact_json else b":flexible-json")  # changes the JSON grammar
        return f"transformers:{src['name']}:{h.hexdigest()[:16]}"

    # -- loading ------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._hf_model is not None

    def model_dir(self) -> Path | str:
        """Folder the weights load from (converting a GGUF once if needed)."""
        src = self._source
        if src["kind"] == "embedded":
            return embedded_model_dir()
        if src["kind"] == "gguf":
            return ensure_converted(Path(src["path"]), gguf_model_dir(Path(src["path"])))
        return src["path"] if src["path"] is not None else src["name"]

    def _load(self) -> None:
        with self._lock:
            if self._hf_model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if self.heap_reuse:
                keep_freed_memory()
            folder = self.model_dir()
            fingerprint = self._current_fingerprint()  # of the files about to be read
            tokenizer = AutoTokenizer.from_pretrained(folder)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, self.dtype))
            model.to(self.device).eval()
            self._tokenizer, self._hf_model = tokenizer, model
            self._loaded_fingerprint = fingerprint

    @property
    def tokenizer(self):
        self._load()
        return self._tokenizer

    @property
    def hf_model(self):
        """The loaded transformers model (for trainers and advanced use)."""
        self._load()
        return self._hf_model

    # -- prompts ------------------------------------------------------------------------
    def render(self, prompt: ChatPrompt) -> str:
        """Chat template; a trailing assistant message is continued (prefill)."""
        messages = [dict(m) for m in prompt]
        prefill = bool(messages) and messages[-1].get("role") == "assistant"
        if self.tokenizer.chat_template is None:
            text = "\n\n".join(m["content"] for m in messages)
            return text if prefill else text + "\n\n"
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill
        )

    def count_tokens(self, prompt: ChatPrompt) -> int:
        return len(self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"])

    def _encode(self, texts: list[str]):
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    # -- constraints --------------------------------------------------------------------
    def _processor(self, constraint: Constraint):
        """An outlines logits processor for the constraint (built once, reset per call).

        llguidance computes token masks lazily, so building a processor takes about a
        second even for nested schemas (outlines_core's index took ~50 s here), and it
        enforces integer bounds. Compact JSON keeps small models from looping on whitespace."""
        key = constraint.describe()
        with self._lock:
            proc = self._processors.get(key)
            if proc is None:
                import outlines
                from outlines.backends.llguidance import LLGuidanceBackend

                if self._grammars is None:  # llguidance's view of the tokenizer, built once (~0.4 s)
                    self._grammars = LLGuidanceBackend(outlines.from_transformers(self.hf_model, self.tokenizer))
                if constraint.kind == "json":
                    schema = dict(constraint.value)
                    if self.compact_json:
                        schema.setdefault("x-guidance", {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "})
                    proc = self._grammars.get_json_schema_logits_processor(json.dumps(schema))
                elif constraint.kind == "regex":
                    proc = self._grammars.get_regex_logits_processor(constraint.value)
                elif constraint.kind == "choice":
                    pattern = "(" + "|".join(re.escape(c) for c in constraint.value) + ")"
                    proc = self._grammars.get_regex_logits_processor(pattern)
                else:
                    raise ValueError(f"unknown constraint kind {constraint.kind!r}")
                proc = EagerLLGuidanceProcessor.like(proc)  # no torch.compile on a process's first constraint
                self._processors[key] = proc
                while len(self._processors) > 32:
                    self._processors.popitem(last=False)
            self._processors.move_to_end(key)
            return proc

    # -- generation ---------------------------------------------------------------------
    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """One completion per request. Requests are grouped by settings (sampling, constraint,
        adapter) and each group runs in micro-batches (``micro_batches``); each prompt is
        rendered and tokenized once. A micro-batch is seeded from its own content, so a
        request gets the same answer whether the whole call or one micro-batch is sent."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        self.check_adapters(requests)
        out: list[Completion | None] = [None] * len(requests)
        texts, lengths = self._rendered(requests)
        with self._lock, torch.inference_mode():
            for idx in self._plan(requests, lengths):
                first = requests[idx[0]]
                sampling, constraint = first.sampling, first.constraint
                enc = self._encode([texts[i] for i in idx])
                kwargs: dict[str, Any] = dict(
                    max_new_tokens=sampling.max_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                )
                if sampling.greedy:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                else:
                    kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=None)
                    if sampling.seed is not None:
                        torch.manual_seed(sampling.seed + zlib.crc32(texts[idx[0]].encode()) % 100_003)
                if constraint is not None:
                    proc = self._processor(constraint)
                    proc.reset()
                    kwargs["logits_processor"] = LogitsProcessorList([proc])
                if sampling.stop:
                    kwargs["stop_strings"] = list(sampling.stop)
                    kwargs["tokenizer"] = self.tokenizer
                if self.skip_finished and self.gqa_attention and len(idx) > 1 and self.tokenizer.eos_token_id is not None:
                    kwargs["stopping_criteria"] = StoppingCriteriaList(
                        [FinishedRows(enc["input_ids"].shape[1], [self.tokenizer.eos_token_id])])
                with self._adapter(first.adapter) as model, self._decoding_attention(), self._decoding_linears():
                    if self._prefill_alone([lengths[i] for i in idx]):
                        kwargs["past_key_values"] = self._prefilled(model, enc, extra=sampling.max_tokens)
                    else:  # one prompt, or a padded batch (CoT's): prefilled and decoded in place, same tokens
                        cache = self._static_cache(model, enc["input_ids"].shape[1] + sampling.max_tokens)
                        if cache is not None:
                            kwargs.update(past_key_values=cache, disable_compile=True)
                    try:
                        generated = model.generate(**enc, **kwargs)
                    finally:
                        _DECODING.runs = _LAST_CUT.value = None
                new_tokens = generated[:, enc["input_ids"].shape[1] :]
                for i, row in zip(idx, new_tokens):
                    out[i] = self._completion(row, sampling, lengths[i])
        return out  # type: ignore[return-value]

    def _prefill_alone(self, lengths: list[int]) -> bool:
        """Whether a micro-batch's padded prefill would exceed the attention budget (prompts x
        longest prompt^2): then each prompt is prefilled alone and the batch decodes together."""
        return len(lengths) > 1 and bool(self.attention_budget) and len(lengths) * max(lengths) ** 2 > self.attention_budget

    @contextmanager
    def _decoding_attention(self):
        """The model runs ``sdpa_gqa_attention`` inside this block when ``gqa_attention`` is on
        and it would otherwise run SDPA; everything else (option log-probabilities, trainers,
        ``hf_model`` users) keeps transformers' own."""
        model = self.hf_model
        before = model.config._attn_implementation
        if not self.gqa_attention or before != "sdpa":
            yield
            return
        register_gqa_attention()
        model.set_attn_implementation(GQA_ATTENTION)
        try:
            yield
        finally:
            model.set_attn_implementation(before)

    @contextmanager
    def _decoding_linears(self):
        """Inside this block, with ``packed_linear`` on, decoding steps (at most 64 rows) run the
        linear layers on prepacked, fused weights (``packed_linear.PackedLinears``: exactly the
        plain products); prefills, option log-probabilities and trainers keep the plain layers."""
        if not self.packed_linear:
            yield
            return
        if self._packed is None:
            from .packed_linear import PackedLinears

            packed = PackedLinears(self.hf_model)
            if self._packed_if_small and packed.weight_bytes() > PACKED_LINEAR_MAX_BYTES:
                self.packed_linear = False  # decided once (a backend serves one model)
                yield
                return
            self._packed = packed
        with self._packed.active():
            yield

    def _prefilled(self, model, enc, extra: int = 0):
        """A KV cache of every prompt but its last token, each prompt run alone (no padded
        attention), left-padded into one batch cache; ``generate`` then runs the last tokens and
        all decoding steps for the batch together. Padded slots are masked, so each row's
        attention and positions are those of the prompt alone. With ``static_cache`` (and
        ``extra`` tokens to come) the cache is a ``StaticCache`` sized for the whole generation,
        written in place at each step instead of growing by a copy of itself (a DynamicCache's
        torch.cat: ~30% of a 5-row decoding step at 2,500 tokens once the attention copies are gone)."""
        from transformers import DynamicCache

        ids, mask = enc["input_ids"], enc["attention_mask"]
        width = ids.shape[1] - 1
        cache = self._static_cache(model, width + 1 + extra) if extra else None
        rows = None  # per layer, every row's keys and values over the prompt width (zeros where padded)
        for r, (row, m) in enumerate(zip(ids, mask)):
            real = row[m.bool()][:-1].unsqueeze(0)
            alone = model(input_ids=real, use_cache=True, logits_to_keep=1).past_key_values
            if rows is None:
                rows = [batch_rows(layer, len(ids), width, cache.layers[li] if cache else None)
                        for li, layer in enumerate(alone.layers)]
            for (keys, values), layer in zip(rows, alone.layers):  # in place: no padded copies to join
                held = layer.keys.shape[2]  # (the prompt, or a sliding layer's window)
                keys[r, :, width - held:] = layer.keys[0]
                values[r, :, width - held:] = layer.values[0]
            del alone  # (its memory serves the next prompt)
        if cache is None:
            return DynamicCache(rows)
        for layer in cache.layers:
            layer.cumulative_length.fill_(width)
        return cache

    def _static_cache(self, model, length: int):
        """An empty ``StaticCache`` of ``length`` positions (allocated on first update), or None
        where it would change outputs: without ``sdpa_gqa_attention``'s cut of the unwritten
        tail, or for sliding-window layers (they hold the window only: other key lengths, other
        bfloat16 roundings). Measured on 2 Xeon cores, every other option on, same tokens: a padded
        batch (16 prompts of ~340 tokens, 128 tokens each) 15.5-16.2 -> 13.5-13.7 s; one prompt of
        ~2,000 tokens and 96 tokens out 7.0 -> 6.45 s (the growing cache copies itself each step)."""
        from transformers import StaticCache
        from transformers.cache_utils import StaticLayer

        if not (self.static_cache and self.hf_model.config._attn_implementation == GQA_ATTENTION):
            return None
        cache = StaticCache(config=model.config, max_cache_len=length)
        return None if any(type(layer) is not StaticLayer for layer in cache.layers) else cache

    def _completion(self, row, sampling: Sampling, prompt_tokens: int) -> Completion:
        """Text, finish reason and token count of one generated row (padding after EOS dropped)."""
        ids = row.tolist()
        eos = self.tokenizer.eos_token_id
        ended = eos in ids
        if ended:
            ids = ids[: ids.index(eos) + 1]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        stopped = False
        for stop in sampling.stop:
            cut = text.find(stop)
            if cut >= 0:
                text, stopped = text[:cut], True
        finish = "stop" if ended or stopped or len(ids) < sampling.max_tokens else "length"
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens, output_tokens=len(ids))

    def _rendered(self, requests: Sequence[Request]) -> tuple[list[str], list[int]]:
        texts = [self.render(r.prompt) for r in requests]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
        return texts, lengths

    def micro_batches(self, requests: Sequence[Request]) -> list[list[int]]:
        """How ``complete`` splits these requests (index lists), so ``RunContext`` can send (and
        commit) one micro-batch at a time: an interrupt then loses only the micro-batch in flight."""
        return self._plan(requests, self._rendered(requests)[1])

    def _plan(self, requests: Sequence[Request], lengths: list[int]) -> list[list[int]]:
        """Micro-batches: requests grouped by settings (first appearance order), each group
        cut by ``_length_batches``."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.settings(), []).append(i)
        plan: list[list[int]] = []
        for idx in groups.values():  # no attention budget: over it, prompts prefill alone (_prefilled)
            plan.extend([idx[j] for j in part] for part in self._length_batches([lengths[i] for i in idx], 0, budget=0))
        return plan

    # -- adapters -----------------------------------------------------------------------
    def check_adapters(self, requests: Sequence[Request]) -> None:
        """Refuse a missing or foreign adapter folder before anything loads."""
        for adapter in {r.adapter for r in requests if r.adapter}:
            path = check_adapter(adapter)
            expected = adapter_expected_base(path)
            if expected is not None and expected != self._current_fingerprint():
                raise steerkit.ModelNotFoundError(
                    f"LoRA adapter {adapter!r} was trained on another base model ({expected}), not on this "
                    f"backend's model {self.model_name!r} ({self._current_fingerprint()}): run it on its base "
                    "model, or train the adapter on this one"
                )

    def adapter_fingerprint(self, adapter: str | None) -> str:
        return adapter_fingerprint(adapter)

    @contextmanager
    def _adapter(self, adapter: str | None):
        """The model with ``adapter`` active (peft; each folder loaded once), or the base model.
        Adapter layers are live only inside this block: everything else that uses ``hf_model``
        (option log-probabilities, trainers, base-model requests) sees the base model."""
        if adapter is None:
            yield self.hf_model
            return
        name = self._adapter_names.get(adapter)
        if name is None:
            name = self._load_adapter(adapter)
        self._peft.set_adapter(name)
        self._peft.base_model.enable_adapter_layers()
        try:
            yield self._peft
        finally:
            self._peft.base_model.disable_adapter_layers()

    def _load_adapter(self, adapter: str) -> str:
        try:
            from peft import PeftModel
        except ImportError:  # pragma: no cover - peft ships with the train extra
            raise steerkit.BackendError(
                "LoRA adapters need peft: pip install 'steerkit-align[train]' (or pip install peft)"
            ) from None
        name = f"a{len(self._adapter_names)}"
        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.hf_model, adapter, adapter_name=name, is_trainable=False)
                self._peft.eval()
            else:
                self._peft.load_adapter(adapter, adapter_name=name, is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise steerkit.ModelNotFoundError(
                f"LoRA adapter {adapter!r} does not fit the model {self.model_name!r} ({exc}): it was trained on "
                "another base model; run it on that model or train the adapter on this one"
            ) from None
        self._peft.base_model.disable_adapter_layers()  # live only inside _adapter
        self._adapter_names[adapter] = name
        return name

    def option_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> np.ndarray:
        """Log-probability of each option as the next token, read from its first content token
        with or without a leading space (``option_tokens``: the rule every adapter shares), from
        one forward pass per batch."""
        import torch

        tokenize = hf_tokenize(self.tokenizer)
        variants = [option_token_ids(opt, tokenize) for opt in options]
        check_option_tokens(options, variants)
        texts = [self.render(p) for p in prompts]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        result = np.zeros((len(texts), len(options)))
        with self._lock, torch.inference_mode():
            for idx in self._length_batches(lengths, 1):
                enc = self._encode([texts[i] for i in idx])
                logits = self.hf_model(**enc, logits_to_keep=1).logits[:, -1, :].float()
                logp = torch.log_softmax(logits, dim=-1)
                for j, ids in enumerate(variants):
                    result[idx, j] = torch.logsumexp(logp[:, ids], dim=-1).cpu().numpy()
        return result

    def _length_batches(self, lengths: list[int], new_tokens: int, budget: int | None = None) -> list[list[int]]:
        """Micro-batches of positions: prompts sorted by length (less padding), cut at
        ``micro_batch_size`` prompts and at the attention budget (prompts x (longest prompt +
        new tokens)^2; 0 means no budget)."""
        budget = (self.attention_budget if budget is None else budget) or float("inf")
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batches: list[list[int]] = []
        start = 0
        while start < len(order):
            idx = [order[start]]
            while (start + len(idx) < len(order) and len(idx) < self.micro_batch_size
                   and (len(idx) + 1) * (lengths[order[start + len(idx)]] + new_tokens) ** 2 <= budget):
                idx.append(order[start + len(idx)])
            batches.append(idx)
            start += len(idx)
        return batches

    def close(self) -> None:
        with self._lock:
            self._hf_model = None
            self._packed = None
            self._peft = None
            self._adapter_names.clear()
            self._loaded_fingerprint = None
            self._grammars = None
            self._processors.clear()


@steerkit.plugin.hookimpl
def register_backends(register):
    register("transformers", TransformersBackend)
