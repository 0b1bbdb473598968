"""heap_reuse (issue 13): glibc keeps freed tensor memory for reuse, so memory that a long
prefill frees is not page-faulted in afresh by the next layer. Each case runs in its own
process: the setting is process-wide."""

import os
import subprocess
import sys

from steerkit_adapters.transformers_backend import TransformersBackend

# Prefills of growing prompts with the embedded model, as a run meets longer and longer
# prompts: the minor page faults (4 KiB each) they take, with or without heap_reuse.
FAULTS = """
import resource, sys, torch
from steerkit_adapters import heap_reuse
from steerkit_adapters.transformers_backend import TransformersBackend
model = TransformersBackend(heap_reuse=sys.argv[1] == "on").hf_model
torch.manual_seed(0)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for n in (300, 600, 900, 1200, 900, 1200):
    with torch.no_grad():
        model(input_ids=torch.randint(100, 40000, (1, n)), use_cache=True, logits_to_keep=1)
print(heap_reuse._applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def run(code: str, *args: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", code, *args], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.strip()


def test_freed_memory_is_reused_instead_of_faulted_in_again():
    applied, on = run(FAULTS, "on", HF_HUB_OFFLINE="1").split()
    not_applied, off = run(FAULTS, "off", HF_HUB_OFFLINE="1").split()
    assert (applied, not_applied) == ("True", "None")
    # measured: ~22,000 faults on, ~80,000 off (large activations mmapped afresh and returned at
    # every free; a fault costs ~8 us here, ~1 s per 2,000-token prefill on a first call)
    assert int(on) < int(off) / 2, (on, off)


def test_the_users_own_allocator_settings_are_left_alone():
    code = "from steerkit_adapters.heap_reuse import keep_freed_memory; print(keep_freed_memory())"
    assert run(code) == "True"
    assert run(code, MALLOC_ARENA_MAX="2") == "False"
    assert run(code, LD_PRELOAD="") == "False"


def test_heap_reuse_is_on_by_default_on_cpu_and_applied_at_load():
    assert TransformersBackend().heap_reuse and not TransformersBackend(heap_reuse=False).heap_reuse
    assert not TransformersBackend(device="cuda").heap_reuse
    code = ("from steerkit_adapters import heap_reuse\nfrom steerkit_adapters.transformers_backend import "
            "TransformersBackend\nbe = TransformersBackend({})\nbe.tokenizer\nprint(heap_reuse._applied)")
    assert run(code.format(""), HF_HUB_OFFLINE="1") == "True"
    assert run(code.format("heap_reuse=False"), HF_HUB_OFFLINE="1") == "None"  # never called
