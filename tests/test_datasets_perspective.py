"""VK and OpinionQA dataset plugins: the shared test files, upstream formats, bad input."""

import json
import warnings

import pytest

import steerkit
from steerkit_plugins import datasets_perspective as dp


def test_vk_shared_file(data_dir):
    ds = steerkit.lookup("dataset", "vk")(path=data_dir)
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
        ds = steerkit.lookup("dataset", "opinionqa")(path=data_dir)
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
