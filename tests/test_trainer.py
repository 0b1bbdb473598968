"""The trainer plugin: prompts and manifest (fast), presets and bad input (fast, no model),
and real tiny TRL runs on the embedded model (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import steerkit
from steerkit import CheckpointError, Perspective, Scenario
from steerkit_plugins import cot, manifest, train_prompts

VK = Scenario("Helping refugees", ("Support", "Oppose", "Either"), id="1", meta={"task": "vk", "gold": 2})
RIGHT = Perspective("Right to a safe environment")


# -- prompts ------------------------------------------------------------------------------
def test_cot_style_is_exactly_the_cot_strategy_prompt():
    assert train_prompts.train_prompt("cot", VK, RIGHT, "vk") == cot.build_prompt("vk", VK, RIGHT)


def test_answer_style_keeps_question_and_options_and_asks_for_the_letter_only():
    text = train_prompts.train_prompt("answer", VK, RIGHT, "vk")[0]["content"]
    cot_text = cot.build_prompt("vk", VK, RIGHT)[0]["content"]
    assert "step by step" not in text and "letter" in text
    assert text.replace(train_prompts._ANSWER_ONLY, "") == cot_text.replace(cot._REASON, "")


def test_completions_and_task_of():
    assert train_prompts.completion("answer", "B") == "B"
    assert train_prompts.completion("cot", "A", " It helps. ") == "It helps.\nAnswer: A"
    assert train_prompts.gold_letter(VK) == "C"
    assert train_prompts.task_of(VK) == "vk"
    assert train_prompts.task_of("OpinionQA") == "opinionqa"
    assert train_prompts.task_of(Scenario("q?", ("x", "y"))) == "general"
    with pytest.raises(steerkit.InvalidOptionError, match="rationale"):
        train_prompts.completion("cot", "A")
    with pytest.raises(steerkit.InvalidOptionError, match="answer, cot"):
        train_prompts.train_prompt("long", VK, RIGHT, "vk")


# -- manifest -----------------------------------------------------------------------------
def test_manifest_round_trip_and_typed_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        manifest.read_manifest(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a steerkit checkpoint.*steerkit train"):
        manifest.read_manifest(tmp_path)
    manifest.write_manifest(tmp_path, {"complete": False, "method": "sft", "command": "steerkit train sft --out x"})
    assert [p.name for p in tmp_path.iterdir()] == [manifest.MANIFEST_NAME]  # no temp file left
    with pytest.raises(CheckpointError, match="interrupted.*steerkit train sft --out x.*resume"):
        manifest.read_manifest(tmp_path)
    assert manifest.load_manifest(tmp_path)["complete"] is False
    manifest.write_manifest(tmp_path, {"complete": True, "method": "sft"})
    assert manifest.read_manifest(tmp_path)["format_version"] == manifest.FORMAT_VERSION
    (tmp_path / manifest.MANIFEST_NAME).write_text(json.dumps({"format_version": 99, "complete": True}))
    with pytest.raises(CheckpointError, match="format 99"):
        manifest.read_manifest(tmp_path)
    (tmp_path / manifest.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot be read"):
        manifest.read_manifest(tmp_path)


# -- presets: the paper's table (Zhang, McKeown, Muresan 2025; papers.md §1) -------------
from steerkit_plugins import train_data, train_presets  # noqa: E402
from steerkit_plugins.trainer import Trainer, answer_reward, has_pickles  # noqa: E402


@pytest.mark.parametrize("task,max_input", [("vk", 384), ("opinionqa", 512)])
def test_a100x8_sft_is_the_papers_table(task, max_input):
    v = train_presets.resolve("a100x8", "sft", task)
    assert v["num_processes"] * v["per_device_train_batch_size"] * v["gradient_accumulation_steps"] == 256
    assert v["learning_rate"] == 2e-5 and v["learning_rate"] * v["lr_scheduler_kwargs"]["min_lr_rate"] == pytest.approx(2e-6)
    assert v["lr_scheduler_type"] == "cosine_with_min_lr" and v["warmup_steps"] == 0.1  # < 1: a ratio
    assert (v["max_grad_norm"], v["num_train_epochs"], v["optim"], v["max_length"]) == (5.0, 1, "adamw_torch", max_input)
    assert train_presets.resolve("a100x8", "cot-sft", task) == v


def test_a100x8_grpo_is_the_papers_table():
    v = train_presets.resolve("a100x8", "grpo", "vk")
    assert v["learning_rate"] == 1.5e-6 and v["learning_rate"] * v["lr_scheduler_kwargs"]["min_lr_rate"] == pytest.approx(1.5e-7)
    assert (v["max_grad_norm"], v["num_generations"], v["num_iterations"]) == (3.0, 16, 1)
    assert (v["epsilon"], v["beta"], v["temperature"], v["top_p"]) == (0.2, 0.001, 0.7, 0.95)
    assert (v["max_prompt_length"], v["max_completion_length"]) == (192, 448)
    completions_per_step = v["num_processes"] * v["per_device_train_batch_size"] * v["gradient_accumulation_steps"]
    rollouts = v["num_processes"] * v["per_device_train_batch_size"] * v["steps_per_generation"]
    assert completions_per_step // v["num_generations"] == 64  # minibatch: 64 prompts
    assert rollouts // v["num_generations"] == 256  # batch: 256 prompts per rollout round
    assert v["use_vllm"] and v["vllm_mode"] == "colocate" and v["warmup_steps"] == 0.1 and v["num_train_epochs"] == 1


def test_set_overrides_are_typed_and_unknown_keys_refused():
    v = train_presets.resolve("cpu-small", "grpo", "vk", {"learning_rate": "1e-5", "beta": "0", "use_vllm": "false",
                                                          "max_train_items": "null", "lr_scheduler_kwargs": '{"min_lr_rate": 0.2}'})
    assert v["learning_rate"] == 1e-5 and v["beta"] == 0.0 and isinstance(v["beta"], float)
    assert v["use_vllm"] is False and v["max_train_items"] is None and v["lr_scheduler_kwargs"] == {"min_lr_rate": 0.2}
    with pytest.raises(steerkit.InvalidOptionError, match="Did you mean learning_rate.*Valid keys: .*warmup_steps"):
        train_presets.resolve("cpu-small", "sft", "vk", {"learnin_rate": "1"})
    with pytest.raises(steerkit.InvalidOptionError, match="expected float"):
        train_presets.resolve("cpu-small", "sft", "vk", {"learning_rate": "fast"})
    with pytest.raises(steerkit.InvalidOptionError, match="num_generations"):  # a GRPO field is not an SFT one
        train_presets.resolve("cpu-small", "sft", "vk", {"num_generations": "4"})
    cfg = train_presets.build_config("sft", train_presets.resolve("cpu-small", "sft", "vk"), "/tmp/unused")
    assert cfg.use_cpu and not cfg.bf16 and not cfg.gradient_checkpointing and cfg.warmup_steps == 0.1


def test_print_launch_prints_config_and_accelerate_command_without_a_model(monkeypatch):
    from click.testing import CliRunner
    from steerkit import host
    from steerkit.cli import cli

    host.ensure_cli_commands(cli)
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", _no_model_load)
    res = CliRunner().invoke(cli, ["train", "grpo", "--dataset", "opinionqa", "--preset", "a100x8", "--model",
                                   "/models/Llama-3-8B-Instruct", "--out", "runs/x", "--print-launch",
                                   "--set", "learning_rate=1e-6"])
    assert res.exit_code == 0, res.output
    config = json.loads(res.output[: res.output.rindex("}") + 1])
    assert config["learning_rate"] == 1e-6 and config["num_generations"] == 16
    launch = res.output.strip().splitlines()[-1]
    assert launch.startswith("accelerate launch --config_file ") and "accelerate_fsdp_a100x8.yaml --num_processes 8" in launch
    assert "train grpo --dataset opinionqa --preset a100x8 --out runs/x --model /models/Llama-3-8B-Instruct" in launch
    assert "--set learning_rate=1e-6" in launch


def test_shipped_fsdp_config_is_full_shard():
    import yaml

    cfg = yaml.safe_load((Path(train_presets.__file__).parent / "data" / "accelerate_fsdp_a100x8.yaml").read_text())
    assert cfg["distributed_type"] == "FSDP" and cfg["num_processes"] == 8 and cfg["mixed_precision"] == "bf16"
    assert cfg["fsdp_config"]["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert cfg["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # a plain safetensors folder on save


# -- data ---------------------------------------------------------------------------------
def test_split_is_grouped_seeded_and_recorded(data_dir):
    for name, group_by in (("vk", "situation"), ("opinionqa", "question")):
        items = train_data.examples(train_data.load_dataset(name, str(data_dir)))
        split = train_data.split_examples(items, name, 0.1, seed=3)
        assert not {e.group for e in split.train} & {e.group for e in split.val}
        assert split.info["group_by"] == group_by and split.info["n_train"] + split.info["n_val"] == len(items)
        again = train_data.split_examples(items, name, 0.1, seed=3)
        assert [e.scenario.id for e in again.val] == [e.scenario.id for e in split.val]
        other = train_data.split_examples(items, name, 0.1, seed=4)
        assert [e.scenario.id for e in other.val] != [e.scenario.id for e in split.val]


def test_vk_human_rationales_match_valueprism_explanations(data_dir, tmp_path):
    items = train_data.examples(train_data.load_dataset("vk", str(data_dir)))
    path = train_data.default_rationales("vk", str(data_dir))
    kept, dropped = train_data.attach_rationales(items, train_data.read_rationales(path))
    assert len(kept) == 612 and dropped == len(items) - 612  # the count
    rows = train_data.sft_rows(kept[:1], "cot", "vk")
    assert rows[0]["completion"][0]["content"].endswith(f"\nAnswer: {kept[0].letter}")
    # a user file: by id, or by (situation, vrd)
    user = tmp_path / "r.jsonl"
    user.write_text(json.dumps({"id": items[0].scenario.id, "rationale": "Because."}) + "\n"
                    + json.dumps({"situation": items[1].scenario.question, "vrd": items[1].perspective.text,
                                  "rationale": "So."}) + "\n")
    kept, dropped = train_data.attach_rationales(items[:3], train_data.read_rationales(user))
    assert [e.rationale for e in kept] == ["Because.", "So."] and dropped == 1
    user.write_text(json.dumps({"rationale": "orphan"}) + "\n")
    with pytest.raises(steerkit.DatasetError, match="'id' or 'situation' and 'vrd'"):
        train_data.read_rationales(user)


def test_reward_is_one_exactly_for_the_gold_final_letter():
    cot_reward, answer = answer_reward("cot"), answer_reward("answer")
    completions = [[{"role": "assistant", "content": t}] for t in
                   ("It protects people.\nAnswer: A", "Answer: A\nOn reflection...\nAnswer: B", "A", "no answer")]
    assert cot_reward(None, completions, gold=["A"] * 4, n_options=[3] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert answer(None, [[{"role": "assistant", "content": t}] for t in ("A", " a.", "D", "A because")],
                  gold=["A"] * 4, n_options=[3] * 4) == [1.0, 1.0, 0.0, 0.0]


# -- bad input: typed errors before any model loads --------------------------------------
def _no_model_load(*a, **k):
    raise AssertionError("a model was loaded before the input was checked")


@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", _no_model_load)


def test_bad_input_is_refused_before_a_model_loads(tmp_path, no_model, data_dir):
    with pytest.raises(steerkit.InvalidOptionError, match="unknown training method 'dpo'"):
        Trainer("dpo", out=tmp_path / "o")
    with pytest.raises(steerkit.InvalidOptionError, match="unknown preset 'gpu'"):
        Trainer("sft", out=tmp_path / "o", preset="gpu").plan()
    with pytest.raises(steerkit.UnknownPluginError, match="unknown dataset 'vkk'"):
        Trainer("sft", dataset="vkk", out=tmp_path / "o").plan()
    with pytest.raises(steerkit.DatasetError, match="no perspectives"):
        Trainer("sft", dataset="helpsteer2", out=tmp_path / "o").plan()
    with pytest.raises(CheckpointError, match="not a steerkit checkpoint"):
        Trainer("grpo", init=tmp_path, out=tmp_path / "o", limit=50).plan()
    other = tmp_path / "oqa-run"
    manifest.write_manifest(other, {"complete": True, "task": "opinionqa", "weights": "full"})
    with pytest.raises(CheckpointError, match="trained for task 'opinionqa', not 'vk'"):
        Trainer("grpo", init=other, out=tmp_path / "o", limit=50).plan()
    with pytest.raises(steerkit.ModelNotFoundError, match="does not exist"):
        Trainer("sft", model=str(tmp_path / "missing"), out=tmp_path / "o", limit=50).plan()
    taken = tmp_path / "taken"
    manifest.write_manifest(taken, {"complete": True, "method": "sft", "run_key": "another", "command": "steerkit train sft ..."})
    with pytest.raises(CheckpointError, match="holds a different completed run"):
        Trainer("sft", out=taken, limit=50).train()
    with pytest.raises(CheckpointError, match="holds a different completed run"):  # before the STaR teacher runs
        Trainer("synthetic-cot", out=taken, limit=50).plan()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty and holds no steerkit run"):
        Trainer("sft", out=junk, limit=50).train()
    with pytest.raises(steerkit.DatasetError, match="cot-sft needs human rationales"):
        Trainer("cot-sft", dataset="opinionqa", out=tmp_path / "o", limit=50).plan()


# -- real tiny runs on the embedded model -------------------------------------------------
TINY = {"max_train_items": "6", "max_val_items": "3", "max_length": "128", "per_device_train_batch_size": "2",
        "logging_steps": "1", "save_steps": "2", "learning_rate": "5e-5", "warmup_steps": "0"}  # 3 steps


class _Interrupt:
    """Ctrl-C right after the trainer saved step ``at`` (a callback, so it is a real interrupt mid-run)."""

    def __init__(self, at: int):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_save(self, args, state, control, **kw):  # noqa: ANN001
                if state.global_step == at:
                    raise KeyboardInterrupt

        self.callback = Callback()


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A full SFT run interrupted after step 2, then resumed by rerunning the same command."""
    from tests.conftest import DATA

    out = tmp_path_factory.mktemp("runs") / "vk-sft"
    args = dict(dataset="vk", data=str(DATA), out=out, limit=80, sets=TINY)
    with pytest.raises(KeyboardInterrupt):
        Trainer("sft", callbacks=[_Interrupt(2).callback], **args).train()
    interrupted = manifest.load_manifest(out)
    said: list[str] = []
    final = Trainer("sft", echo=said.append, **args).train()
    return out, interrupted, said, final


@pytest.mark.slow
def test_sft_resumes_after_an_interrupt_and_writes_safetensors_only(sft_run, data_dir):
    out, interrupted, said, final = sft_run
    assert interrupted["complete"] is False and interrupted["command"].startswith("steerkit train sft --dataset vk")
    assert any("resuming the interrupted run" in m and "step 2" in m for m in said), said
    log = final["train_log"]
    assert log["steps"] == 3 and len([h for h in log["history"] if "loss" in h]) == 3
    assert 0 < log["last_loss"] < log["first_loss"] < 50  # finite and falling
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", manifest.MANIFEST_NAME} <= names
    assert has_pickles(out) == [] and ".resume" not in names and "training_args.bin" not in names
    m = manifest.read_manifest(out)
    assert m["complete"] and m["method"] == "sft" and m["prompt_style"] == "answer" and m["weights"] == "full"
    assert m["dataset"]["split"]["group_by"] == "situation" and m["dataset"]["split"]["n_train_used"] == 6
    assert m["base_model"] is None and m["base_fingerprint"].startswith("transformers:SmolLM2")
    assert m["hyperparameters"]["learning_rate"] == 5e-5 and m["versions"]["trl"].startswith("1.16")
    val = m["metrics"]["val"]
    assert val["n"] == 3 and 0 <= val["accuracy"] <= 1 and "binary" in val
    held_out = train_data.validation_dataset(m)  # the same val items, rebuilt from the manifest
    assert len(held_out) == 3 and held_out.info["split"] == "val"
    plan = Trainer("sft", dataset="vk", data=str(data_dir), out=out, limit=80, sets=TINY).plan()
    assert [s.id for s in held_out.scenarios] == [e.scenario.id for e in plan.split.val]
    assert not {e.group for e in plan.split.val} & {e.group for e in plan.train_items}
    said.clear()
    Trainer("sft", echo=said.append, dataset="vk", data=str(data_dir), out=out, limit=80, sets=TINY).train()
    assert any("already holds this finished run" in s for s in said)


@pytest.mark.slow
def test_trained_checkpoint_answers_through_the_checkpoint_strategy(sft_run, data_dir):
    out = sft_run[0]
    items = train_data.load_dataset("vk", str(data_dir)).head(3)
    sels = steerkit.Steerer(strategy="checkpoint", path=str(out)).select_many(items.scenarios, items.perspectives)
    assert [s.response for s in sels] and all(s.response in ("Support", "Oppose", "Either") for s in sels)


@pytest.mark.slow
def test_lora_cot_sft_writes_an_adapter(tmp_path, data_dir):
    out = tmp_path / "vk-cot-lora"
    m = Trainer("cot-sft", dataset="vk", data=str(data_dir), out=out, limit=400, lora=True, lora_r=4, lora_alpha=8,
                sets={**TINY, "max_train_items": "4", "max_val_items": "1", "eval_max_tokens": "8",
                      "max_length": "160", "learning_rate": "1e-3"}).train()
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", manifest.MANIFEST_NAME} <= names
    assert "model.safetensors" not in names and has_pickles(out) == []
    assert m["weights"] == "lora" and m["lora"] == {"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
    assert m["prompt_style"] == "cot" and m["dataset"]["rationales"]["kind"] == "human"
    assert m["dataset"]["rationales"]["n_dropped"] > 0 and m["metrics"]["val"]["n"] == 1
    assert 0 < m["train_log"]["last_loss"] < 50


@pytest.mark.slow
def test_grpo_from_the_sft_run_learns_from_real_rollout_rewards(sft_run, tmp_path, data_dir):
    from safetensors.torch import load_file

    out = tmp_path / "vk-grpo"
    m = Trainer("grpo", dataset="vk", data=str(data_dir), out=out, limit=80, init=sft_run[0], lora=True,
                sets={"max_train_items": "6", "max_val_items": "2", "per_device_train_batch_size": "12",
                      "num_generations": "4", "max_completion_length": "4", "temperature": "1.0",
                      "logging_steps": "1", "save_steps": "10", "learning_rate": "1e-3"}).train()
    assert m["prompt_style"] == "answer" and m["init"] == str(sft_run[0].resolve()) and m["base_model"] == m["init"]
    logs = [h for h in _history(m) if "reward" in h]
    assert logs and all(0.0 <= h["reward"] <= 1.0 for h in logs)
    # some group disagreed (reward std > 0), so the policy got a gradient and the adapter moved off zero
    assert any(h["frac_reward_zero_std"] < 1 for h in logs)
    lora_b = [v for k, v in load_file(str(out / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert lora_b and any(float(v.abs().max()) > 0 for v in lora_b)


def _history(m):
    return m["train_log"]["history"]


@pytest.mark.slow
def test_synthetic_cot_trains_on_the_teachers_star_rationales(tmp_path, data_dir):
    out = tmp_path / "vk-star"
    said: list[str] = []
    m = Trainer("synthetic-cot", dataset="vk", data=str(data_dir), out=out, limit=40, lora=True, lora_r=4, echo=said.append,
                sets={**TINY, "max_train_items": "2", "max_val_items": "1", "teacher_max_tokens": "16",
                      "eval_max_tokens": "8", "max_length": "160", "save_steps": "5"}).train()
    r = m["dataset"]["rationales"]
    assert r["kind"] == "synthetic" and r["source"] == "star:transformers:SmolLM2-135M-Instruct"
    assert r["kept"] + r["rationalised"] + r["failed"] == 2 and m["dataset"]["split"]["n_train_used"] == r["kept"] + r["rationalised"]
    assert any(s.startswith("STaR rationales from") for s in said)
    assert m["prompt_style"] == "cot" and m["complete"] and (out / "adapter_model.safetensors").is_file()


def test_cli_passes_lora_options_and_reports_bad_input_as_one_line(tmp_path, no_model):
    from click.testing import CliRunner
    from steerkit import host
    from steerkit.cli import cli

    host.ensure_cli_commands(cli)
    res = CliRunner().invoke(cli, ["train", "sft", "--out", str(tmp_path / "o"), "--lora", "--lora-r", "8",
                                   "--lora-targets", "q_proj,k_proj", "--print-launch"])
    assert res.exit_code == 0, res.output
    assert "accelerate launch --num_processes 1 " in res.output
    assert "--lora --lora-r 8 --lora-alpha 32 --lora-dropout 0.05 --lora-targets q_proj,k_proj" in res.output
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.txt").write_text("x")
    res = CliRunner().invoke(cli, ["train", "sft", "--out", str(junk), "--limit", "40"])
    assert res.exit_code == 2 and "CheckpointError" in res.output and "holds no steerkit run" in res.output
    res = CliRunner().invoke(cli, ["train", "sft", "--out", str(tmp_path / "o"), "--set", "learnin_rate=1"])
    assert res.exit_code == 2 and "Did you mean learning_rate" in res.output


# -- community LoRA (Modular Pluralism's community LMs) from a text corpus -------------------------
from steerkit_plugins.trainer import CommunityTrainer, read_corpus  # noqa: E402

CORPUS = """Our town council met on Tuesday to discuss the new bicycle lanes on Main Street. Most residents
who spoke were in favour, though shop owners worried about parking.

Farmers in the valley say the late frost hurt the apple harvest, but the cherries came through well.

The library will extend its opening hours on weekends, and volunteers are needed for the children's reading club.

Local football fans celebrated after the team won the regional cup for the first time in twenty years.
"""
COMMUNITY_TINY = {"max_steps": "3", "per_device_train_batch_size": "2", "max_length": "64", "logging_steps": "1",
                  "save_steps": "2", "warmup_steps": "0"}


def test_read_corpus_formats_and_typed_errors(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_text(CORPUS)
    paragraphs = read_corpus(txt)
    assert len(paragraphs) == 4 and paragraphs[0].startswith("Our town council") and "parking." in paragraphs[0]
    (tmp_path / "c.jsonl").write_text('{"text": "one"}\n\n"two"\n')
    assert read_corpus(tmp_path / "c.jsonl") == ["one", "two"]
    (tmp_path / "c.json").write_text('["a", {"text": " b "}, "  "]')
    assert read_corpus(tmp_path / "c.json") == ["a", "b"]
    (tmp_path / "empty.txt").write_text("\n   \n\n")
    for path, match in ((tmp_path / "missing.txt", "does not exist"), (tmp_path, "is a folder"),
                        (tmp_path / "empty.txt", "is empty")):
        with pytest.raises(steerkit.DatasetError, match=match):
            read_corpus(path)
    (tmp_path / "bad.json").write_text('{"text": "not a list"}')
    with pytest.raises(steerkit.DatasetError, match="expected a list of texts"):
        read_corpus(tmp_path / "bad.json")


def test_community_bad_input_is_refused_before_a_model_loads(tmp_path, no_model):
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(steerkit.DatasetError, match="does not exist"):
        CommunityTrainer(tmp_path / "nope.txt", tmp_path / "o").train()
    with pytest.raises(steerkit.DatasetError, match="is empty"):
        CommunityTrainer(tmp_path / "empty.txt", tmp_path / "o").train()
    with pytest.raises(steerkit.InvalidOptionError, match="Did you mean learning_rate"):
        CommunityTrainer(corpus, tmp_path / "o", sets={"learnin_rate": "1"}).train()
    with pytest.raises(steerkit.InvalidOptionError, match="not a field of trl's SFTConfig"):
        CommunityTrainer(corpus, tmp_path / "o", sets={"val_fraction": "0.1"}).train()  # a dataset-run field
    with pytest.raises(steerkit.InvalidOptionError, match="--lora-r 0"):
        CommunityTrainer(corpus, tmp_path / "o", lora_r=0).train()
    with pytest.raises(steerkit.ModelNotFoundError, match="does not exist"):
        CommunityTrainer(corpus, tmp_path / "o", model=str(tmp_path / "no-model")).train()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not empty and holds no steerkit run"):
        CommunityTrainer(corpus, junk).train()
    from click.testing import CliRunner
    from steerkit import host
    from steerkit.cli import cli

    host.ensure_cli_commands(cli)
    res = CliRunner().invoke(cli, ["train", "community", "--corpus", str(tmp_path / "empty.txt"), "--lora", str(tmp_path / "o")])
    assert res.exit_code == 2 and "DatasetError" in res.output and "is empty" in " ".join(res.output.split())


@pytest.mark.slow
def test_community_lora_trains_resumes_and_changes_the_embedded_models_logits(tmp_path, embedded_backend):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    corpus = tmp_path / "town.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "town-lora"
    with pytest.raises(KeyboardInterrupt):
        CommunityTrainer(corpus, out, sets=COMMUNITY_TINY, callbacks=[_Interrupt(2).callback]).train()
    assert manifest.load_manifest(out)["complete"] is False
    said: list[str] = []
    m = CommunityTrainer(corpus, out, sets=COMMUNITY_TINY, echo=said.append).train()
    assert any("resuming the interrupted run" in s and "step 2" in s for s in said), said
    assert m["complete"] and m["method"] == "community" and m["weights"] == "lora" and m["community"] == "town-lora"
    assert m["base_fingerprint"] == embedded_backend.fingerprint() and m["corpus"]["n_texts"] == 4
    assert m["train_log"]["steps"] == 3 and 0 < m["train_log"]["last_loss"] < 50
    assert m["command"].startswith(f"steerkit train community --corpus {corpus} --lora {out}")
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert has_pickles(out) == [] and not (out / ".resume").exists()
    assert manifest.read_manifest(out) == {"format_version": 1, **m}
    done: list[str] = []
    assert CommunityTrainer(corpus, out, sets=COMMUNITY_TINY, echo=done.append).train()["run_key"] == m["run_key"]
    assert any("already holds this finished" in s for s in done)

    base = AutoModelForCausalLM.from_pretrained(embedded_backend.model_dir(), dtype=torch.float32).eval()
    ids = embedded_backend.tokenizer("The council discussed the bicycle lanes.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, str(out)).eval()
        after = tuned(ids).logits
        with tuned.disable_adapter():
            again = tuned(ids).logits
    assert after.shape == before.shape and torch.isfinite(after).all()
    assert (after - before).abs().max() > 1e-4  # the adapter changes the model
    torch.testing.assert_close(again, before)  # and only while it is active
    embedded_backend.check_adapters([steerkit.plugin.Request([{"role": "user", "content": "hi"}], adapter=str(out))])
    other = m | {"base_fingerprint": "transformers:another-model:0000"}
    manifest.write_manifest(out, other)
    with pytest.raises(steerkit.ModelNotFoundError, match="trained on another base model"):
        embedded_backend.check_adapters([steerkit.plugin.Request([{"role": "user", "content": "hi"}], adapter=str(out))])
    manifest.write_manifest(out, m)
    from steerkit_plugins.checkpoint import CheckpointStrategy

    with pytest.raises(steerkit.CheckpointError, match="community LoRA adapter.*modular pool"):
        CheckpointStrategy(path=out)  # a community adapter is not a trained strategy
