"""Attribute dataset plugins (issue 3, data): HelpSteer2 in the steerable format (real files
in ../shared/data) and the original release format, and MIC from an upstream-style MIC.csv."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

import steerkit
from steerkit_plugins import attribute_datasets as da

HS2 = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


# -- HelpSteer2, steerable format (real data) --------------------------------------------
def test_helpsteer2_real_eval_split_counts_targets_and_pool(data_dir):
    ds = steerkit.plugin.lookup("dataset", "helpsteer2")(path=data_dir / "helpsteer2")
    assert ds.name == "helpsteer2" and len(ds) == 359
    assert ds.attributes == list(HS2)
    assert len(ds.targets) == 52
    assert ds.targets["target_high"].values == {a: 1.0 for a in HS2}
    assert ds.targets["target_low"].values == {a: 0.0 for a in HS2}
    assert sum(1 for k in ds.targets if k not in ("target_high", "target_low")) == 50
    assert all(len(s.responses) == 2 and s.labels is not None for s in ds.scenarios)
    assert ds.info["levels"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    pool = ds.info["pool"]
    assert len(pool) == 500 and ds.examples() == pool
    reasons = pool[0].meta["reasonings"]
    assert len(reasons) == len(pool[0].responses) and set(reasons[0]) == set(HS2)
    raw = json.loads((data_dir / "helpsteer2" / "eval.json").read_text())[0]
    assert ds.scenarios[0].question == raw["prompt"]
    assert list(ds.scenarios[0].labels) == raw["labels"]


def test_helpsteer2_train_split_and_single_file(data_dir):
    train = steerkit.plugin.lookup("dataset", "helpsteer2")(path=data_dir / "helpsteer2", split="train")
    assert len(train) == 500 and "pool" not in train.info
    assert "reasonings" in train.scenarios[0].meta
    one = da.load_helpsteer2(path=data_dir / "helpsteer2" / "eval.json")
    assert len(one) == 359 and len(one.targets) == 52  # targets.json beside the file


def test_default_location_from_env_and_cwd(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("STEERKIT_DATA", str(data_dir))
    assert len(da.load_helpsteer2()) == 359
    monkeypatch.delenv("STEERKIT_DATA")
    # ../shared/data from the working directory (the repo root), wherever the clone lives
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(data_dir, target_is_directory=True)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert len(da.load_helpsteer2()) == 359


def test_missing_data_names_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERKIT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(steerkit.DatasetError) as err:
        da.load_helpsteer2()
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "STEERKIT_DATA" in msg and "path=" in msg
    with pytest.raises(steerkit.DatasetError, match="does not exist"):
        da.load_helpsteer2(path=tmp_path / "missing.json")
    with pytest.raises(steerkit.DatasetError, match="MIC"):
        da.load_mic()


# -- HelpSteer2, original release format ------------------------------------------------
def _row(prompt, response, h, c, co, cx, v):
    return {"prompt": prompt, "response": response, "helpfulness": h, "correctness": c,
            "coherence": co, "complexity": cx, "verbosity": v}


RELEASE_ROWS = [
    _row("How do I boil an egg?", "Boil it for 8 minutes.", 4, 4, 4, 1, 0),
    _row("How do I boil an egg?", "Eggs are laid by hens, which ...", 0, 2, 3, 2, 4),
    _row("Name a prime.", "7", 3, 4, 4, 0, 0),  # only one response: dropped
    _row("Capital of France?", "Paris.", 4, 4, 4, 0, 0),
    _row("Capital of France?", "It is Lyon.", 1, 0, 4, 0, 1),
    _row("Capital of France?", "Paris, on the Seine.", 4, 4, 4, 1, 1),
]


def _write_jsonl(path: Path, rows, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_release_format_groups_by_prompt_and_normalises_0_to_4(tmp_path):
    path = _write_jsonl(tmp_path / "validation.jsonl", RELEASE_ROWS)
    ds = da.load_helpsteer2(path=path)
    assert ds.info["format"] == "release"
    assert [s.question for s in ds.scenarios] == ["How do I boil an egg?", "Capital of France?"]
    egg, france = ds.scenarios
    assert egg.labels[0] == {"helpfulness": 1.0, "correctness": 1.0, "coherence": 1.0, "complexity": 0.25, "verbosity": 0.0}
    assert egg.labels[1] == {"helpfulness": 0.0, "correctness": 0.5, "coherence": 0.75, "complexity": 0.5, "verbosity": 1.0}
    assert france.responses == ("Paris.", "It is Lyon.", "Paris, on the Seine.")
    assert france.labels[1]["helpfulness"] == 0.25
    assert set(ds.targets) >= {"target_high", "target_low"} and len(ds.targets) == 52


def test_release_format_1_to_5_autodetected_and_explicit_scale(tmp_path):
    rows = [dict(r, **{a: r[a] + 1 for a in HS2}) for r in RELEASE_ROWS]  # shift to 1-5
    path = _write_jsonl(tmp_path / "val.jsonl", rows)
    ds = da.load_helpsteer2(path=path)
    assert ds.scenarios[0].labels[0]["helpfulness"] == 1.0
    assert ds.scenarios[0].labels[0]["complexity"] == 0.25
    assert ds.scenarios[0].labels[1]["helpfulness"] == 0.0
    # explicit scale wins; values outside it are an error
    ds10 = da.load_helpsteer2(path=path, scale=(0, 10))
    assert ds10.scenarios[0].labels[0]["helpfulness"] == 0.5
    with pytest.raises(steerkit.DatasetError, match="outside the scale"):
        da.load_helpsteer2(path=path, scale=(0, 4))
    # both 0 and 5 present: ambiguous
    bad = _write_jsonl(tmp_path / "bad.jsonl", RELEASE_ROWS + [_row("Q?", "x", 5, 5, 5, 5, 5), _row("Q?", "y", 1, 1, 1, 1, 1)])
    with pytest.raises(steerkit.DatasetError, match="ambiguous"):
        da.load_helpsteer2(path=bad)
    # neither 0 nor 5: the scale cannot be told, so it must be given
    mid = _write_jsonl(tmp_path / "mid.jsonl", [_row("Q?", "x", 1, 2, 3, 4, 2), _row("Q?", "y", 2, 2, 2, 2, 2)])
    with pytest.raises(steerkit.DatasetError, match=r"neither 0 nor 5.*scale=\(0, 4\).*scale=\(1, 5\)"):
        da.load_helpsteer2(path=mid)
    ds_mid = da.load_helpsteer2(path=mid, scale=(0, 4))
    assert ds_mid.scenarios[0].labels[0]["complexity"] == 1.0


def test_release_scale_is_detected_once_over_all_split_files(tmp_path):
    """Validation alone (1-4) says nothing; train has a 5, so BOTH splits are 1-5."""
    train = [_row("T1?", "a", 5, 5, 5, 5, 5), _row("T1?", "b", 1, 2, 3, 4, 1)]
    val = [_row("V1?", "a", 1, 2, 3, 4, 1), _row("V1?", "b", 4, 4, 4, 4, 4)]
    _write_jsonl(tmp_path / "train.jsonl", train)
    _write_jsonl(tmp_path / "validation.jsonl", val)
    ds = da.load_helpsteer2(path=tmp_path)
    assert ds.info["scale"] == [1.0, 5.0]
    assert ds.scenarios[0].labels[0] == {"helpfulness": 0.0, "correctness": 0.25, "coherence": 0.5,
                                         "complexity": 0.75, "verbosity": 0.0}
    assert ds.info["pool"][0].labels[0]["helpfulness"] == 1.0
    # the train split alone is read on the same scale as well (the validation file counts too)
    assert da.load_helpsteer2(path=tmp_path, split="train").scenarios[0].labels[1]["helpfulness"] == 0.0
    # without the 5 in train, neither file can tell the scale: an error asking for scale=
    _write_jsonl(tmp_path / "train.jsonl", [_row("T1?", "a", 4, 4, 4, 4, 4), _row("T1?", "b", 1, 2, 3, 4, 1)])
    with pytest.raises(steerkit.DatasetError, match=r"train\.jsonl.*validation\.jsonl|validation\.jsonl.*train\.jsonl"):
        da.load_helpsteer2(path=tmp_path)
    assert da.load_helpsteer2(path=tmp_path, scale=(1, 5)).info["pool"][0].labels[0]["helpfulness"] == 0.75


def test_release_folder_with_gz_splits_gives_pool(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl.gz", RELEASE_ROWS[3:], gz=True)
    _write_jsonl(tmp_path / "validation.jsonl.gz", RELEASE_ROWS[:2], gz=True)
    ds = da.load_helpsteer2(path=tmp_path)  # split="eval" reads validation
    assert len(ds) == 1 and ds.scenarios[0].question == "How do I boil an egg?"
    assert [s.question for s in ds.info["pool"]] == ["Capital of France?"]
    with pytest.raises(steerkit.DatasetError, match="no 'nosuch' split"):
        da.load_helpsteer2(path=tmp_path, split="nosuch")
    missing = tmp_path / "x.jsonl"
    missing.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    with pytest.raises(steerkit.DatasetError, match="lack"):
        da.load_helpsteer2(path=missing)


# -- MIC --------------------------------------------------------------------------------
MIC_COLUMNS = ["", "WorkerId", "WorkTimeInMinutes", "chatbot", "Q", "A", "rot", "moral", "moral-vector",
               "A_agrees", "rot-agree", "violation-severity", "comments", "QA", "split"]


def _mic_row(i, worker, q, a, moral, agrees, split="test"):
    vec = [1.0 if f in moral.split("|") else 0.0 for f in da.MIC_ATTRIBUTES]
    return [str(i), worker, "1.0", "blenderbot", q, a, f"rot {i}", moral, json.dumps(vec), str(agrees),
            "4", "2", "", f"Q: {q} A: {a}", split]


def _write_mic(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(MIC_COLUMNS)
        w.writerows(rows)
    return path


def mic_rows():
    q1, q2, q3 = "Is it ok to lie to a friend?", "Should I help my neighbour?", "Do you like cats?"
    rows = [
        # q1, answer A: care agrees x3 -> care +3 -> 1.0; fairness agrees once, disagrees once -> 0 -> 0.5
        (1, "w1", q1, "No, honesty matters.", "care|fairness", 2),
        (2, "w2", q1, "No, honesty matters.", "care", 2),
        (3, "w3", q1, "No, honesty matters.", "care|fairness", 0),  # disagrees: care -1, fairness -1
        (4, "w4", q1, "No, honesty matters.", "care", 2),  # 4th annotation: ignored
        # q1, answer B: loyalty disagrees x2, one neutral -> loyalty -2 -> 1/6
        (5, "w1", q1, "Sure, lie away.", "loyalty", 0),
        (6, "w2", q1, "Sure, lie away.", "loyalty|sanctity", 0),
        (7, "w3", q1, "Sure, lie away.", "loyalty", 1),
        # q1, answer C: only two annotations -> dropped
        (8, "w1", q1, "Maybe.", "care", 2),
        (9, "w2", q1, "Maybe.", "care", 2),
        # q2: one full answer only -> no scenario
        (10, "w1", q2, "Yes.", "care", 2), (11, "w2", q2, "Yes.", "care", 2), (12, "w3", q2, "Yes.", "care", 2),
    ]
    out = [_mic_row(*r) for r in rows]
    # q3 in the train split, two answers, the same worker twice on one answer (second ignored)
    train = [
        (13, "w1", q3, "I love them.", "care", 2), (14, "w1", q3, "I love them.", "care", 0),
        (15, "w2", q3, "I love them.", "care", 2), (16, "w3", q3, "I love them.", "care", 2),
        (17, "w1", q3, "They are evil.", "sanctity", 1), (18, "w2", q3, "They are evil.", "authority", 0),
        (19, "w3", q3, "They are evil.", "authority", 2),
    ]
    out += [_mic_row(*r, split="train") for r in train]
    return out


def test_mic_label_construction_and_grouping_sixths_rule(tmp_path):
    path = _write_mic(tmp_path / "MIC.csv", mic_rows())
    ds = steerkit.plugin.lookup("dataset", "mic")(path=path, label_rule="sixths")
    assert ds.attributes == list(da.MIC_ATTRIBUTES)
    assert len(ds) == 1
    s = ds.scenarios[0]
    assert s.question == "Is it ok to lie to a friend?"
    assert s.responses == ("No, honesty matters.", "Sure, lie away.")
    a, b = s.labels
    # care: +1 +1 -1 = 1 -> (1+3)/6; fairness: +1 +0 -1 = 0 -> 0.5; others 0 -> 0.5
    assert a["care"] == pytest.approx(4 / 6) and a["fairness"] == pytest.approx(0.5)
    assert a["loyalty"] == a["liberty"] == a["authority"] == a["sanctity"] == pytest.approx(0.5)
    # loyalty: -1 -1 0 = -2 -> 1/6; sanctity: -1 -> 2/6
    assert b["loyalty"] == pytest.approx(1 / 6) and b["sanctity"] == pytest.approx(2 / 6)
    assert b["care"] == pytest.approx(0.5)
    assert len(s.meta["rots"][0]) == 3
    # levels and targets: high, low and 10 per number of attributes (1..6)
    assert ds.info["levels"] == pytest.approx([i / 6 for i in range(7)])
    assert len(ds.targets) == 2 + 60
    assert all(v in ds.info["levels"] for t in ds.targets.values() for v in t.values.values())
    # pool: the train split; the duplicate worker's second annotation is ignored
    pool = ds.info["pool"]
    assert len(pool) == 1
    love, evil = pool[0].labels
    assert love["care"] == pytest.approx(1.0)
    assert evil["authority"] == pytest.approx(0.5) and evil["sanctity"] == pytest.approx(0.5)


def test_mic_groups_by_question_across_splits_so_no_eval_question_is_in_the_pool(tmp_path):
    """Upstream MIC splits by QA pair: one question may have answers in train and test. The
    question is one scenario (all its answers, here 3) in ONE split: the split of most of its
    answers, a tie going to test."""
    qa, qb, qc = "Should I tell my boss?", "Is cheating ever fine?", "Do you recycle?"

    def three(start, q, a, moral, agrees, split):
        return [_mic_row(start + j, f"w{j}", q, a, moral, agrees, split) for j in range(3)]

    rows = (three(1, qa, "Yes, always.", "care", 2, "test") + three(4, qa, "No, never.", "care", 0, "test")
            + three(7, qa, "It depends.", "fairness", 1, "train")  # qa: 2 test answers, 1 train -> test
            + three(10, qb, "Never.", "fairness", 2, "train") + three(13, qb, "Sometimes.", "fairness", 0, "test")
            # qb: 1 train, 1 test -> a tie: test
            + three(16, qc, "Yes.", "sanctity", 2, "train") + three(19, qc, "No.", "sanctity", 0, "train")
            + three(22, qc, "Sometimes.", "sanctity", 1, "test"))  # qc: 2 train, 1 test -> train
    ds = da.load_mic(path=_write_mic(tmp_path / "MIC.csv", rows))
    assert [s.question for s in ds.scenarios] == [qa, qb]
    assert ds.scenarios[0].responses == ("Yes, always.", "No, never.", "It depends.")
    assert [l["care"] for l in ds.scenarios[0].labels] == [1.0, 0.0, 0.5]
    pool = ds.info["pool"]
    assert [s.question for s in pool] == [qc] and len(pool[0].responses) == 3
    assert not {s.question for s in pool} & {s.question for s in ds.scenarios}
    assert ds.info["mixed_split_questions"] == 3
    assert da.question_split(["train", "train", "test"]) == "train"
    assert da.question_split(["train", "dev"]) == "dev"


def test_mic_accepts_named_foundations_words_and_moral_vector(tmp_path):
    rows = []
    for r in mic_rows():
        r = list(r)
        r[7] = ""  # no `moral`: fall back to `moral-vector`
        r[9] = {"2": "agrees", "1": "neutral", "0": "disagrees"}[r[9]]
        rows.append(r)
    ds = da.load_mic(path=_write_mic(tmp_path / "MIC.csv", rows), label_rule="sixths")
    assert ds.scenarios[0].labels[0]["care"] == pytest.approx(4 / 6)
    assert da._foundations({"moral": "care-harm|sanctity-degradation"}) == {"care", "sanctity"}


def test_mic_bad_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "MIC.csv"
    bad.write_text("question,answer\nq,a\n")
    with pytest.raises(steerkit.DatasetError, match="does not look like MIC.csv"):
        da.load_mic(path=bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(steerkit.DatasetError, match="MIC.csv not found"):
        da.load_mic(path=tmp_path / "empty")
    with pytest.raises(steerkit.DatasetError, match="no scenarios in split"):
        da.load_mic(path=_write_mic(tmp_path / "m2.csv", mic_rows()), split="dev")


def reference_mic_labels(path):
    """The reference's data/load_mic.py (get_multi_answer_subset, get_label), re-implemented
    from its code with the csv module: questions with 2+ answers and no missing A_agrees; per
    answer, agreement x moral-vector over the first 3 rows, summed, (x + 3) / 6, round(x, 2)."""
    agree = {"0": -1.0, "1": 0.0, "2": 1.0}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for q in dict.fromkeys(r["Q"] for r in rows):
        group = [r for r in rows if r["Q"] == q]
        if len({r["A"] for r in group}) < 2 or any(r["A_agrees"] == "" for r in group):
            continue
        for a in dict.fromkeys(r["A"] for r in group):
            anns = [agree[r["A_agrees"]] * np.array(json.loads(r["moral-vector"])) for r in group if r["A"] == a]
            normalized = (np.array(anns[:3]).sum(axis=0) + 3) / 6
            out[(q, a)] = {m: round(normalized[i], 2) for i, m in enumerate(da.MIC_ATTRIBUTES)}
    return out


def test_mic_reference_labels_are_the_reference_codes(tmp_path):
    rows = mic_rows()
    q4 = "Is it fine to skip class?"  # a row without A_agrees: the reference drops the question
    rows += [_mic_row(30, "w1", q4, "Yes.", "care", 2), _mic_row(31, "w2", q4, "No.", "care", "")]
    path = _write_mic(tmp_path / "MIC.csv", rows)
    ds = da.load_mic(path=path)  # label_rule="reference" is the default
    assert "reference" in ds.info["label_rule"] and ds.info["dropped_missing_agreement"] == 1
    assert ds.info["levels"] == [0.0, 0.17, 0.33, 0.5, 0.67, 0.83, 1.0]
    s = ds.scenarios[0]
    # 'Maybe.' has only two annotations: the reference keeps it (care +2 -> 5/6 -> 0.83)
    assert s.responses == ("No, honesty matters.", "Sure, lie away.", "Maybe.")
    a, b, c = s.labels
    assert a["care"] == 0.67 and a["fairness"] == 0.5 and b["loyalty"] == 0.17 and b["sanctity"] == 0.33
    assert c["care"] == 0.83
    # the pool's 'I love them.': the first 3 rows, w1 twice (agree, disagree) and w2 -> care +1
    assert ds.info["pool"][0].labels[0]["care"] == 0.67
    ref = reference_mic_labels(path)
    mine = {(sc.question, r): lab for sc in [*ds.scenarios, *ds.info["pool"]] for r, lab in zip(sc.responses, sc.labels)}
    assert mine == ref  # every answer, every foundation, exactly
    assert all(v in ds.info["levels"] for t in ds.targets.values() for v in t.values.values())
    with pytest.raises(steerkit.DatasetError, match="A_agrees"):  # the sixths rule keeps its strictness
        da.load_mic(path=path, label_rule="sixths")
    with pytest.raises(steerkit.InvalidOptionError, match="reference.*sixths"):
        da.load_mic(path=path, label_rule="thirds")


def test_reference_mic_levels_count_as_the_mic_scale_for_few_shot_coverage():
    """A pool with every reference label (0, 0.17, ..., 1) covers MIC's 7 levels: no warning
    that 1/6 etc. are missing (the coverage check rounded to 4 decimals: 0.1667 != 0.17)."""
    import warnings

    from steerkit_plugins.fewshot import ExampleIndex

    levels = da.mic_levels("reference")
    pool = [steerkit.Scenario(f"q{i}", ("a", "b"), labels=({"care": v}, {"care": 0.5})) for i, v in enumerate(levels)]
    index = ExampleIndex(pool, encoder=lambda xs: np.ones((len(xs), 3)), encoder_name="ones")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index.check_levels("care")
    with pytest.warns(UserWarning, match="care at level 0.167"):
        ExampleIndex(pool[:1] + pool[2:], encoder=lambda xs: np.ones((len(xs), 3)), encoder_name="ones").check_levels("care")


def test_read_targets_forms(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"a": {"care": 1}, "b": {"values": {"care": 0.5, "fairness": 0}, "weights": {"care": 2}}}))
    t = da.read_targets(p)
    assert t["a"].values == {"care": 1.0} and t["b"].weights == {"care": 2.0}
    p.write_text(json.dumps([{"care": 0.2}]))
    assert list(da.read_targets(p)) == ["target000"]
