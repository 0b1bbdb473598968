"""VK and OpinionQA dataset plugins: the shared test files, upstream formats, bad input."""

import json
import warnings

import pytest

import steerkit
from steerkit_plugins import perspective_datasets as dp


def test_vk_shared_file(data_dir):
    ds = steerkit.plugin.lookup("dataset", "vk")(path=data_dir)
    assert ds.name == "vk" and len(ds) == 3030
    assert len(ds.perspectives) == len(ds.scenarios)
    s, p = ds.scenarios[0], ds.perspectives[0]
    assert s.question == "Helping refugees" and s.responses == ("Support", "Oppose", "Either")
    assert p.text == "Right to a safe environment"
    assert s.meta["task"] == "vk" and s.meta["gold"] == 2 and s.id == "19029"
    golds = ds.gold
    assert golds.count(0) == 1523 and golds.count(1) == 1040 and golds.count(2) == 467


def test_opinionqa_shared_file_skips_one_option_items(data_dir):
    with pytest.warns(RuntimeWarning, match=r"skipped 13 item\(s\): 8 with fewer than 2 options"):
        ds = steerkit.plugin.lookup("dataset", "opinionqa")(path=data_dir)
    assert len(ds) == 2900 - 13
    assert ds.info["skipped"]["fewer than 2 options"] == 8
    s, p = ds.scenarios[0], ds.perspectives[0]
    assert s.question.startswith("Please indicate whether the following is a major reason")
    assert "Options:" not in s.question and "Answer:" not in s.question
    assert s.responses == ("Major reason", "Minor reason", "Not a reason")
    assert (p.category, p.text) == ("Education", "College graduate/some postgrad")
    assert s.meta["gold"] == 0 and s.meta["task"] == "opinionqa"
    assert sum(s.meta["gold_distribution"]) == pytest.approx(1.0)
    for sc in ds.scenarios[:200]:
        d = sc.meta["gold_distribution"]
        assert sc.meta["gold"] == max(range(len(d)), key=d.__getitem__)


def test_eval_split_means_the_test_file(data_dir):
    # `steerkit eval` asks for split "eval"; the VK and OpinionQA releases name it "test"
    assert len(dp.load_vk(path=data_dir, split="eval", limit=3)) == 3
    with pytest.raises(steerkit.DatasetError, match="no 'train' split"):
        dp.load_vk(path=data_dir, split="train")


def test_default_location_env_and_missing(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("STEERKIT_DATA", str(data_dir))
    assert len(dp.load_vk(limit=3)) == 3
    monkeypatch.setenv("STEERKIT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(steerkit.DatasetError, match="nowhere"):
        dp.load_vk()
    monkeypatch.delenv("STEERKIT_DATA")
    monkeypatch.chdir(tmp_path)  # ../shared/data from here does not exist
    with pytest.raises(steerkit.DatasetError, match="shared/data"):
        dp.load_opinionqa()


def test_vk_valueprism_csv(tmp_path):
    f = tmp_path / "test.csv"
    f.write_text(
        "situation,vrd,text,label\n"
        "Lying to a friend,Value,Honesty,Opposes\n"
        "Giving to charity,Duty,Duty to help others,Supports\n"
        "Eating meat,Right,Right to choose one's diet,either\n"
    )
    ds = dp.load_vk(path=f)
    assert [p.text for p in ds.perspectives] == ["Honesty", "Duty to help others", "Right to choose one's diet"]
    assert [p.category for p in ds.perspectives] == ["Value", "Duty", "Right"]
    assert ds.gold == [1, 0, 2]
    # JSONL with the valence column, in a folder, split named by file
    d = tmp_path / "vkdir"
    d.mkdir()
    (d / "train.jsonl").write_text(json.dumps({"situation": "x", "vrd": "Autonomy", "valence": "Supports"}) + "\n")
    assert dp.load_vk(path=d, split="train").gold == [0]


def test_vk_bad_input(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps([{"situation": "Lying", "vrd": "  ", "label": "Opposes"}]))
    with pytest.raises(steerkit.DatasetError, match="perspective"):
        dp.load_vk(path=f)
    f.write_text(json.dumps([{"situation": "Lying", "vrd": "Honesty", "label": "Maybe"}]))
    with pytest.raises(steerkit.DatasetError, match="unknown VK label"):
        dp.load_vk(path=f)
    f.write_text("not json")
    with pytest.raises(steerkit.DatasetError, match="cannot read"):
        dp.load_vk(path=f)


def _oqa(**kw):
    item = {"question": "Question: Do you like X?\nOptions: A. Yes B. No\nAnswer:", "options": ["Yes", "No"],
            "attribute": "POLIDEOLOGY_Liberal", "gold_distribution": [0.3, 0.7], "id": 1}
    item.update(kw)
    return item


def test_opinionqa_bad_input():
    with pytest.raises(steerkit.DatasetError, match="unknown attribute category code 'PLANET'"):
        dp.opinionqa_from_records([_oqa(attribute="PLANET_Mars")])
    with pytest.raises(steerkit.DatasetError, match="no demographic attribute"):
        dp.opinionqa_from_records([_oqa(attribute="")])
    with pytest.raises(steerkit.DatasetError, match="names no group"):
        dp.opinionqa_from_records([_oqa(attribute="SEX_ ")])
    with pytest.raises(steerkit.DatasetError, match="2 options"):
        dp.opinionqa_from_records([_oqa(gold_distribution=[0.2, 0.3, 0.5])])
    with pytest.warns(RuntimeWarning, match="skipped 2 item"):
        ds = dp.opinionqa_from_records([_oqa(), _oqa(options=["Yes"], gold_distribution=[1.0]), _oqa(options=[])])
    assert len(ds) == 1 and ds.info["skipped"] == {"fewer than 2 options": 2}
    with pytest.warns(RuntimeWarning, match="skipped 1 item"), pytest.raises(steerkit.DatasetError, match="no usable items"):
        dp.opinionqa_from_records([_oqa(options=["Yes"], gold_distribution=[1.0])])


def test_opinionqa_normalises_gold_distribution():
    with pytest.warns(RuntimeWarning, match="1 gold distribution\\(s\\) did not sum to 1 and were normalised"):
        ds = dp.opinionqa_from_records([_oqa(gold_distribution=[30, 70])])
    assert ds.scenarios[0].meta["gold_distribution"] == pytest.approx([0.3, 0.7])
    assert ds.scenarios[0].meta["gold"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dp.opinionqa_from_records([_oqa()])  # a proper distribution: no warning


def test_opinionqa_per_question_group_distributions(tmp_path):
    f = tmp_path / "test.json"
    f.write_text(json.dumps([{
        "question": "Should taxes rise?", "options": ["Yes", "No", "Not sure"],
        "distributions": {"POLPARTY_Democrat": [0.6, 0.3, 0.1], "POLPARTY_Republican": [0.2, 0.7, 0.1]},
    }]))
    ds = dp.load_opinionqa(path=f)
    assert len(ds) == 2 and ds.gold == [0, 1]
    assert [str(p) for p in ds.perspectives] == ["Political party: Democrat", "Political party: Republican"]
    # CSV with attribute + group columns and JSON-encoded lists
    c = tmp_path / "t.csv"
    c.write_text('question,options,attribute,group,distribution\n"Q?","[""a"",""b""]",SEX,Female,"[0.1, 0.9]"\n')
    ds = dp.load_opinionqa(path=c)
    assert ds.gold == [1] and ds.perspectives[0].category == "Sex"


# -- the OpinionQA release layout (Santurkar et al. 2023) -----------------------------------
def _write_csv(path, header, rows):
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def opinionqa_release(root):
    """A wave folder as the authors release it: info.csv (python-literal lists), metadata.csv,
    responses.csv (one row per respondent, a survey weight column)."""
    wave = root / "human_resp" / "American_Trends_Panel_W99"
    wave.mkdir(parents=True)
    _write_csv(wave / "info.csv", ["", "key", "option_mapping", "question", "references", "option_ordinal"], [
        [0, "GUN_W99", "{1.0: 'Yes', 2.0: 'No', 99.0: 'Refused'}", "Do you own a gun?",
         repr(["Yes", "No", "Refused"]), repr([1.0, 2.0])],
        [1, "TAX_W99", "{}", "Should taxes rise, stay or fall?", repr(["Rise", "Stay", "Fall", "Refused"]), repr([1.0, 2.0, 3.0])],
        [2, "GONE_W99", "{}", "Not asked in this file?", repr(["Yes", "No"]), repr([1.0, 2.0])],
    ])
    _write_csv(wave / "metadata.csv", ["", "key", "options"], [
        [0, "SEX", repr(["Male", "Female"])],
        [1, "POLPARTY", repr(["Republican", "Democrat", "Independent", "Other"])],
        [2, "PLANET", repr(["Mars"])],  # not an OpinionQA attribute: ignored
    ])
    _write_csv(wave / "responses.csv", ["QKEY", "GUN_W99", "TAX_W99", "SEX", "POLPARTY", "WEIGHT_W99"], [
        [1, "Yes", "Rise", "Male", "Republican", 1.0],
        [2, "No", "Fall", "Male", "Democrat", 2.0],
        [3, "Yes", "Refused", "Female", "Democrat", 0.5],
        [4, "Refused", "Stay", "Female", "Republican", 1.5],
        [5, "No", "", "Female", "Democrat", 1.0],  # TAX not asked
        [6, "Yes", "Rise", "Refused", "Republican", 3.0],  # no SEX group
    ])
    return wave


def test_opinionqa_release_layout_weighted_distributions(tmp_path):
    opinionqa_release(tmp_path)
    ds = steerkit.plugin.lookup("dataset", "opinionqa")(path=tmp_path)
    by = {(s.meta["question_key"], s.meta["attribute"]): s for s in ds.scenarios}
    assert len(ds) == 8 and ds.info["format"] == "opinionqa-release"
    # refusals are not options; Independent/Other had no respondents (2 groups x 2 questions)
    assert ds.info["skipped"] == {"question not in responses.csv": 1, "group with no substantive answer": 4}
    gun_male = by["GUN_W99", "SEX_Male"]
    assert gun_male.responses == ("Yes", "No") and gun_male.question == "Do you own a gun?"
    # by hand: weight over the group's substantive answers
    expected = {
        ("GUN_W99", "SEX_Male"): ([1 / 3, 2 / 3], 1, 0.0),  # Yes 1.0, No 2.0
        ("GUN_W99", "SEX_Female"): ([1 / 3, 2 / 3], 1, 0.5),  # Yes .5, No 1.0, refused 1.5
        ("GUN_W99", "POLPARTY_Republican"): ([1.0, 0.0], 0, 1.5 / 5.5),  # Yes 1 + 3, refused 1.5
        ("GUN_W99", "POLPARTY_Democrat"): ([1 / 7, 6 / 7], 1, 0.0),  # Yes .5, No 2 + 1
        ("TAX_W99", "SEX_Male"): ([1 / 3, 0.0, 2 / 3], 2, 0.0),
        ("TAX_W99", "SEX_Female"): ([0.0, 1.0, 0.0], 1, 0.25),  # Stay 1.5, refused .5, one not asked
        ("TAX_W99", "POLPARTY_Republican"): ([4 / 5.5, 1.5 / 5.5, 0.0], 0, 0.0),
        ("TAX_W99", "POLPARTY_Democrat"): ([0.0, 0.0, 1.0], 2, 0.2),  # Fall 2, refused .5
    }
    for key, (dist, gold, refusal) in expected.items():
        s = by[key]
        assert s.meta["gold_distribution"] == pytest.approx(dist), key
        assert s.meta["gold"] == gold and s.meta["refusal_share"] == pytest.approx(refusal), key
    p = ds.perspectives[ds.scenarios.index(by["TAX_W99", "POLPARTY_Democrat"])]
    assert (p.category, p.text) == ("Political party", "Democrat")
    # the wave folder itself works too, and limit applies
    assert len(dp.load_opinionqa(path=tmp_path / "human_resp" / "American_Trends_Panel_W99", limit=3)) == 3


def test_opinionqa_release_bad_input(tmp_path):
    wave = opinionqa_release(tmp_path)
    (wave / "metadata.csv").unlink()
    with pytest.raises(steerkit.DatasetError, match="metadata.csv is missing"):
        dp.load_opinionqa(path=tmp_path)
    wave2 = opinionqa_release(tmp_path / "b")
    rows = (wave2 / "responses.csv").read_text().replace("WEIGHT_W99", "WEIGHT_W12")
    (wave2 / "responses.csv").write_text(rows)
    with pytest.raises(steerkit.DatasetError, match="no survey weight column WEIGHT_W99"):
        dp.load_opinionqa(path=tmp_path / "b")
