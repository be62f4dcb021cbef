"""A synthesized set is a Hugging Face dataset: `datasets.load_dataset(DIR)` reads what `synthesize` wrote
(parquet shards + dataset card), a rerun of a finished job says so, and a push offline is one clear error."""

import json

import pytest

from genstruct_train.cli import main
from genstruct_train.errors import GenstructError
from genstruct_train.io import read_jsonl
from genstruct_train.synthesis import hub_dataset
from genstruct_train.testing import scripted_genstruct


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory, data_dir):
    """6 real corpus passages through the scripted tiny model (one fixed Genstruct pair each)."""
    tmp = tmp_path_factory.mktemp("hubds")
    model = scripted_genstruct(tmp / "model")
    corpus = tmp / "corpus.jsonl"
    rows = read_jsonl(data_dir / "corpus" / "wiki-paragraphs.jsonl")[:6]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp / "set"
    args = ["synthesize", "--model", str(model), "--corpus", str(corpus), "--output", str(out),
            "--temperature", "0", "--max-new-tokens", "24"]
    assert main(args) == 0
    return out, args


def test_load_dataset_reads_the_set(synthesized, tmp_path):
    from datasets import load_dataset

    out, _ = synthesized
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    ds = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.to_list() == read_jsonl(out / "synthesized.jsonl")
    assert len(ds) == 6
    assert ds.column_names == ["id", "title", "content", "user", "assistant", "model_name", "sample", "finish_reason"]
    assert not (out / "rejected").exists()  # no rejected rows: no `rejected` config (datasets cannot read empty parquet)


def test_export_with_rejected_rows(tmp_path):
    from datasets import load_dataset

    rows = [{"id": "a", "user": "u", "assistant": "x"}, {"id": "b", "user": "v", "assistant": "y", "pair": 1}]
    bad = [{"id": "c", "reason": "no_assistant", "text": "What"}]
    for name, data in (("synthesized", rows), ("rejected", bad)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    assert hub_dataset.export(tmp_path, name="me/set") == {"default": 2, "rejected": 1}
    cache = str(tmp_path / "cache")
    assert load_dataset(str(tmp_path), split="train", cache_dir=cache).to_list() == [{**rows[0], "pair": None}, rows[1]]
    assert load_dataset(str(tmp_path), "rejected", split="train", cache_dir=cache).to_list() == bad
    assert 'load_dataset("me/set", "rejected", split="train")' in (tmp_path / "README.md").read_text()


def test_export_refuses_an_empty_set(tmp_path):
    (tmp_path / "synthesized.jsonl").write_text("")
    with pytest.raises(GenstructError, match="has no synthesized rows: nothing to export as a dataset"):
        hub_dataset.export(tmp_path)


def test_dataset_card(synthesized):
    from huggingface_hub import DatasetCard

    out, _ = synthesized
    card = DatasetCard.load(out / "README.md")
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}]
    assert card.data.tags == ["synthetic", "genstruct-train", "genstruct"]
    assert card.data.size_categories == ["n<1K"]
    assert card.text.lstrip().splitlines()[0] == "# set"
    assert "- **Rows:** 6 accepted (config `default`), 0 rejected" in card.text


def test_rerun_of_a_finished_job_says_complete(synthesized, capsys):
    out, args = synthesized
    before = (out / "synthesized.jsonl").read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"synthesize: {out} is already complete (same job, every passage done): nothing to do\n" in printed
    assert (out / "synthesized.jsonl").read_bytes() == before


def test_push_offline_is_one_clear_error(synthesized, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out, _ = synthesized
    with pytest.raises(GenstructError) as e:
        hub_dataset.push(out, "someone/genstruct-set")
    assert str(e.value).startswith("push to hub dataset repo 'someone/genstruct-set' failed (OfflineModeIsEnabled: ")
    assert "\n" not in str(e.value)


def test_shards_and_missing_columns(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(hub_dataset, "ROWS_PER_SHARD", 2)
    rows = [{"id": "a", "user": "u", "assistant": "x"}, {"id": "b", "user": "v", "assistant": "y", "pair": 1},
            {"id": "c", "user": "w", "assistant": "z"}]
    paths = hub_dataset.write_parquet(rows, tmp_path)
    assert [p.name for p in paths] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    back = [r for p in paths for r in pq.read_table(str(p)).to_pylist()]
    assert back == [{**r, "pair": r.get("pair")} for r in rows]


def test_mixed_type_columns_become_json_text(tmp_path):
    import pyarrow.parquet as pq

    rows = [{"id": "a", "meta": {"k": 1}, "score": 1}, {"id": "b", "meta": "plain", "score": 0.5}, {"id": "c"}]
    (path,) = hub_dataset.write_parquet(rows, tmp_path)
    assert pq.read_table(str(path)).to_pylist() == [
        {"id": "a", "meta": '{"k": 1}', "score": 1.0}, {"id": "b", "meta": '"plain"', "score": 0.5},
        {"id": "c", "meta": None, "score": None}]
