"""The ``checkpoint`` strategy: typed errors before any weights load (fast), the exact prompting
protocol (fake backend: which prompts and constraints are sent), and real checkpoints of the
embedded model answering real VK items, full and LoRA (slow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import steerkit
from steerkit import CheckpointError, InvalidOptionError, Perspective, Scenario, Steerer
from steerkit import cli as cli_module
from steerkit_plugins import checkpoint as ck
from steerkit_plugins.manifest import MANIFEST_NAME, write_manifest
from steerkit_plugins.train_prompts import PROMPT_VERSION, train_prompt
from tests.conftest import DATA
from tests.fakes import FakeBackend

VK = Scenario("Helping refugees", ("Support", "Oppose", "Either"), id="vk1", meta={"task": "vk", "gold": 0})
OQA = Scenario("How much do you trust the news?", ("A lot", "Some", "Not at all"), id="o1", meta={"task": "opinionqa"})
RIGHT = Perspective("Right to a safe environment")


def manifest(**fields) -> dict:
    base = {"complete": True, "method": "sft", "task": "vk", "prompt_style": "answer", "prompt_version": PROMPT_VERSION,
            "base_model": None, "weights": "full", "lora": None, "hyperparameters": {}}
    return {**base, **fields}


def stub_folder(folder: Path, *, weights_file: str = "model.safetensors", **fields) -> Path:
    """A checkpoint folder whose files exist but hold no real weights (enough for every check
    that must happen before weights load)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / weights_file).write_bytes(b"not loaded")
    write_manifest(folder, manifest(**fields))
    return folder


@pytest.fixture(scope="module")
def embedded_dir() -> Path:
    return Path(steerkit.plugin.lookup("backend", "transformers")().model_dir())


def real_folder(folder: Path, embedded_dir: Path, *, copy_weights: bool = False, **fields) -> Path:
    """A full checkpoint of the embedded model: its files (weights linked, or copied when the
    test will overwrite them) plus a manifest."""
    folder.mkdir(parents=True)
    for f in embedded_dir.iterdir():
        if f.suffix == ".safetensors" and not copy_weights:
            (folder / f.name).symlink_to(f)
        elif f.is_file():
            shutil.copy2(f, folder / f.name)
    write_manifest(folder, manifest(**fields))
    return folder


# -- errors before any weights load ---------------------------------------------------------
def test_folder_missing_not_a_checkpoint_or_interrupted(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Steerer(strategy="checkpoint", path=str(tmp_path / "nope"), cache=False)
    with pytest.raises(CheckpointError, match="not a steerkit checkpoint.*steerkit train"):
        Steerer(strategy="checkpoint", path=str(tmp_path), cache=False)
    stub_folder(tmp_path / "run", complete=False, command="steerkit train sft --dataset vk --out run")
    with pytest.raises(CheckpointError, match="interrupted.*steerkit train sft --dataset vk --out run"):
        Steerer(strategy="checkpoint", path=str(tmp_path / "run"), cache=False)


def test_options_are_checked(tmp_path):
    with pytest.raises(InvalidOptionError, match="path="):
        Steerer(strategy="checkpoint", cache=False)
    stub_folder(tmp_path / "run")
    with pytest.raises(InvalidOptionError, match=r"unknown option.*\['sample'\].*samples"):
        Steerer(strategy="checkpoint", path=str(tmp_path / "run"), sample=3, cache=False)
    with pytest.raises(InvalidOptionError, match="answer-only checkpoint.*samples must be 1"):
        Steerer(strategy="checkpoint", path=str(tmp_path / "run"), samples=3, cache=False)


def test_pickle_only_weights_are_refused(tmp_path):
    stub_folder(tmp_path / "full", weights_file="pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pickle-only weights \(pytorch_model.bin\).*safetensors"):
        Steerer(strategy="checkpoint", path=str(tmp_path / "full"), cache=False)
    lora = stub_folder(tmp_path / "lora", weights_file="adapter_model.bin", weights="lora")
    with pytest.raises(CheckpointError, match=r"pickle-only weights \(adapter_model.bin\)"):
        Steerer(strategy="checkpoint", path=str(lora), cache=False)
    empty = stub_folder(tmp_path / "empty", weights_file="README.md")
    with pytest.raises(CheckpointError, match="no model weights"):
        Steerer(strategy="checkpoint", path=str(empty), cache=False)


def test_lora_run_with_a_missing_base_model(tmp_path):
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"not loaded")
    write_manifest(folder, manifest(weights="lora", base_model=str(tmp_path / "gone")))
    with pytest.raises(CheckpointError, match="base model .*gone.* cannot be found"):
        Steerer(strategy="checkpoint", path=str(folder), cache=False)


def test_prompt_version_or_style_from_another_steerkit(tmp_path):
    stub_folder(tmp_path / "old", prompt_version="train-v0")
    with pytest.raises(CheckpointError, match="train-v0.*retrain"):
        Steerer(strategy="checkpoint", path=str(tmp_path / "old"), cache=False)
    stub_folder(tmp_path / "odd", prompt_style="essay")
    with pytest.raises(CheckpointError, match="'essay'"):
        Steerer(strategy="checkpoint", path=str(tmp_path / "odd"), cache=False)


def test_items_of_another_task_are_refused_before_the_model_loads(tmp_path):
    folder = stub_folder(tmp_path / "vk-run")
    backend = steerkit.plugin.lookup("backend", "transformers")(model=str(folder))
    s = Steerer(strategy="checkpoint", path=str(folder), backend=backend, cache=False, progress=False)
    with pytest.raises(CheckpointError, match="trained for 'vk' items.*'opinionqa' item"):
        s.select_many([VK, OQA], [RIGHT, Perspective("Liberal", category="Political ideology")])
    assert not backend.loaded


def test_the_checkpoint_is_the_model_served(tmp_path):
    folder = stub_folder(tmp_path / "run")
    s = Steerer(strategy="checkpoint", path=str(folder), cache=False)  # model from the strategy
    assert Path(s.backend.model) == folder.resolve() and not s.backend.loaded
    same = Steerer(strategy="checkpoint", path=str(folder), model=str(tmp_path / "." / "run"), cache=False)
    assert Path(same.backend.model) == folder.resolve()
    with pytest.raises(InvalidOptionError, match="runs on .*run, not on model='other'"):
        Steerer(strategy="checkpoint", path=str(folder), model="other", cache=False)
    with pytest.raises(InvalidOptionError, match="backend passed in serves 'fake-model'"):
        Steerer(strategy="checkpoint", path=str(folder), backend=FakeBackend(), cache=False)
    assert Steerer(strategy="cot", backend=FakeBackend(), cache=False).strategy.required_model() is None


def test_eval_cli_reports_a_bad_checkpoint_without_a_traceback(tmp_path):
    if "eval" not in cli_module.cli.commands:
        from steerkit import host

        host.add_cli_commands(cli_module.cli)
    r = CliRunner().invoke(cli_module.cli, ["eval", "--strategy", "checkpoint", "-o", f"path={tmp_path}",
                                            "--dataset", "vk", "--limit", "2", "--cache", str(tmp_path / "c.db")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "CheckpointError" in text and "not a steerkit checkpoint" in text and "Traceback" not in text


def test_validation_split_is_of_the_runs_own_dataset(tmp_path):
    folder = stub_folder(tmp_path / "run", dataset={"name": "opinionqa", "split": {"seed": 0, "val_fraction": 0.1}})
    with pytest.raises(CheckpointError, match="trained on 'opinionqa'.*use --dataset opinionqa"):
        ck.validation_split(folder, "vk")


# -- the prompting protocol (fake backend: what is sent, not what a model answers) ----------
def test_answer_style_sends_the_training_prompt_and_constrains_the_letter(tmp_path):
    folder = stub_folder(tmp_path / "sft")
    fake = FakeBackend(model=str(folder), responder=lambda p, c: "B" if c is not None else "unused")
    s = Steerer(strategy="checkpoint", path=str(folder), backend=fake, cache=tmp_path / "c.db", progress=False)
    sel = s.select_many([VK], RIGHT)[0]
    assert fake.prompts_seen == [train_prompt("answer", VK, RIGHT, "vk")]
    assert (sel.index, sel.extra["letter"], sel.extra["method"], sel.strategy) == (1, "B", "sft", "checkpoint")
    assert s.model_calls == 1
    s.select_many([VK], RIGHT)
    assert s.model_calls == 0  # cached


def test_cot_style_reasons_then_answers_with_the_trained_answer_tokens(tmp_path):
    folder = stub_folder(tmp_path / "grpo", method="grpo", prompt_style="cot",
                         hyperparameters={"max_completion_length": 77})
    seen = []

    def responder(prompt, constraint):
        seen.append((prompt, constraint))
        return "It protects people.\nAnswer: C" if constraint is None else " A"

    fake = FakeBackend(model=str(folder), responder=responder)
    s = Steerer(strategy="checkpoint", path=str(folder), backend=fake, cache=False, progress=False)
    assert s.strategy.max_tokens == 77  # the run's completion length
    sel = s.select_many([VK], RIGHT)[0]
    (free_prompt, none), (answer_prompt, choice) = seen
    assert free_prompt == train_prompt("cot", VK, RIGHT, "vk") and none is None
    assert answer_prompt[-1] == {"role": "assistant", "content": "It protects people.\nAnswer:"}
    assert choice.kind == "choice" and choice.value == (" A", " B", " C")  # "Answer: A" tokenises as " A"
    assert (sel.index, sel.reasoning, sel.extra["had_parsable_answer"]) == (0, ["It protects people."], [True])


def test_cache_identity_has_style_and_prompt_version(tmp_path):
    a = ck.CheckpointStrategy(path=str(stub_folder(tmp_path / "a")))
    b = ck.CheckpointStrategy(path=str(stub_folder(tmp_path / "b", prompt_style="cot")))
    assert a.fingerprint() != b.fingerprint()
    assert a.cache_options()["prompt_version"] == PROMPT_VERSION
    assert "max_tokens" not in a.cache_options() and b.cache_options()["max_tokens"] == 256
    validated = stub_folder(tmp_path / "c", prompt_style="cot", hyperparameters={"eval_max_tokens": 55})
    assert ck.CheckpointStrategy(path=str(validated)).max_tokens == 55  # as long as the trainer validated it


# -- real checkpoints of the embedded model (slow) ------------------------------------------
@pytest.fixture(scope="module")
def vk_items():
    ds = steerkit.plugin.lookup("dataset", "vk")(path=DATA).head(3)
    return ds.scenarios, ds.perspectives


@pytest.mark.slow
def test_real_answer_and_cot_checkpoints_answer_real_vk_items(tmp_path, embedded_dir, vk_items):
    scenarios, perspectives = vk_items
    for style, calls_per_item in (("answer", 1), ("cot", 2)):
        folder = real_folder(tmp_path / style, embedded_dir, prompt_style=style, method="sft" if style == "answer" else "cot-sft")
        with Steerer(strategy="checkpoint", path=str(folder), cache=tmp_path / "c.db", progress=False, max_tokens=24) as s:
            sels = s.select_many(scenarios, perspectives)
            assert Path(s.backend.model_dir()) == folder.resolve()  # the weights served are the checkpoint's
            assert s.model_calls == calls_per_item * len(scenarios)
            for sel, scen in zip(sels, scenarios):
                assert sel.extra["letter"] in "ABC" and sel.response == scen.responses[sel.index]
                assert sel.model == style and sel.extra["checkpoint"] == str(folder.resolve())
                assert (sel.reasoning[0] != "") == (style == "cot")
            s.select_many(scenarios, perspectives)
            assert s.model_calls == 0


@pytest.mark.slow
def test_retraining_into_the_same_folder_never_serves_old_answers(tmp_path, embedded_dir, vk_items):
    from safetensors.torch import load_file, save_file

    scenarios, perspectives = vk_items
    folder = real_folder(tmp_path / "run", embedded_dir, copy_weights=True)
    cache = tmp_path / "c.db"
    with Steerer(strategy="checkpoint", path=str(folder), cache=cache, progress=False) as s:
        s.select_many(scenarios[:1], perspectives[:1])
        before = s.backend.fingerprint()
    weights = folder / "model.safetensors"
    state = load_file(weights)
    name = next(k for k in state if k.endswith("norm.weight"))
    state[name] = state[name] * 1.01  # "retrained": same names and sizes, new values
    save_file(state, weights, metadata={"format": "pt"})
    with Steerer(strategy="checkpoint", path=str(folder), cache=cache, progress=False) as s:
        assert s.backend.fingerprint() != before
        s.select_many(scenarios[:1], perspectives[:1])
        assert s.last_run.cache_misses == 1 and s.model_calls == 1


@pytest.mark.slow
def test_real_lora_checkpoint_is_merged_once_and_served(tmp_path, embedded_dir, vk_items, monkeypatch):
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scenarios, perspectives = vk_items
    monkeypatch.setenv("STEERKIT_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "vk-lora"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(embedded_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a "trained" adapter: B != 0, so merging changes the weights
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(embedded_dir).save_pretrained(folder)
    write_manifest(folder, manifest(weights="lora", base_model=str(embedded_dir),
                                    lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}))
    with Steerer(strategy="checkpoint", path=str(folder), cache=tmp_path / "c.db", progress=False) as s:
        merged = Path(s.backend.model)
        assert merged.parent == tmp_path / "cache" / "merged" and (merged / ck.MERGE_MARKER).exists()
        sels = s.select_many(scenarios, perspectives)
        assert all(sel.extra["letter"] in "ABC" for sel in sels) and s.model_calls == len(scenarios)
    assert not [p for p in merged.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(load_file(merged / "model.safetensors")[q], load_file(embedded_dir / "model.safetensors")[q])
    stamp = (merged / "model.safetensors").stat().st_mtime_ns
    again = ck.CheckpointStrategy(path=str(folder))
    assert Path(again.required_model()) == merged and (merged / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((folder / MANIFEST_NAME).read_text())["weights"] == "lora"


@pytest.mark.slow
def test_eval_split_val_scores_exactly_the_runs_held_out_items(tmp_path, embedded_dir):
    from steerkit_plugins.train_data import validation_dataset

    if "eval" not in cli_module.cli.commands:
        from steerkit import host

        host.add_cli_commands(cli_module.cli)
    folder = real_folder(tmp_path / "run", embedded_dir, dataset={
        "name": "vk", "data": str(DATA), "file_split": None, "limit": 40,
        "split": {"seed": 0, "val_fraction": 0.25, "group_by": "situation", "n_val_used": 3}})
    r = CliRunner().invoke(cli_module.cli, [
        "eval", "--strategy", "checkpoint", "-o", f"path={folder}", "--dataset", "vk", "--split", "val",
        "--cache", str(tmp_path / "c.db"), "--out", str(tmp_path / "res"), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    expected = validation_dataset(json.loads((folder / MANIFEST_NAME).read_text()))
    assert [it["id"] for it in report["items"]] == [s.id for s in expected.scenarios] and len(expected) == 3
    first40 = {s.id for s in steerkit.plugin.lookup("dataset", "vk")(path=DATA).head(40).scenarios}
    assert {it["id"] for it in report["items"]} <= first40


@pytest.mark.slow
def test_vllm_serves_a_cot_checkpoint_with_the_trained_answer_tokens(tmp_path, embedded_dir, vk_items):
    scenarios, perspectives = vk_items
    folder = real_folder(tmp_path / "cot", embedded_dir, prompt_style="cot", method="grpo")
    with Steerer(strategy="checkpoint", path=str(folder), backend="vllm", cache=False, progress=False,
                 max_tokens=16) as s:
        assert Path(s.backend.model) == folder.resolve()
        sels = s.select_many(scenarios[:2], perspectives[:2])
        assert s.model_calls == 4  # reasoning, then the " A"/" B"/" C" choice through vLLM's structured outputs
        assert all(sel.extra["letter"] in "ABC" and sel.reasoning[0] for sel in sels)
