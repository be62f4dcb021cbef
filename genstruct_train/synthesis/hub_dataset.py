"""A synthesized set as a Hugging Face dataset: next to the JSONL files, `synthesize` writes

    DIR/data/train-00000-of-0000N.parquet       the accepted rows (config `default`)
    DIR/rejected/train-00000-of-0000N.parquet   the rejected rows with their `reason` (config `rejected`, when
                                                there are any: `datasets` cannot read an empty parquet file)
    DIR/README.md                               dataset card: YAML `configs` (what `datasets.load_dataset(DIR)`
                                                reads), tags, counts and columns

so `datasets.load_dataset(DIR)` (or, once pushed, `load_dataset("org/name")`) gives the set. The columns are
distilabel's for its Genstruct task (`title`, `content`, `user`, `assistant`, `model_name`) plus ours (`id`,
`sample`, `finish_reason`, `pair`...). `--push-to-hub REPO` then uploads DIR's card and parquet shards to a
hub dataset repo (needs network and a token).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import GenstructError

CONFIGS = {"default": ("synthesized.jsonl", "data"), "rejected": ("rejected.jsonl", "rejected")}
ROWS_PER_SHARD = 100_000
PUSHED = ["README.md", "data/*.parquet", "rejected/*.parquet"]


def add_arguments(parser) -> None:
    parser.add_argument("--push-to-hub", metavar="REPO", help="when done, upload the set (parquet + dataset card) "
                        "to this hub dataset repo (needs network and a token: `hf auth login` or HF_TOKEN)")
    parser.add_argument("--hub-private", action="store_true", help="with --push-to-hub: create the repo private")


def _columns(rows: list[dict]) -> list[str]:
    cols: dict[str, None] = {}
    for row in rows:
        cols.update(dict.fromkeys(row))
    return list(cols)


def _uniform(rows: list[dict], cols: list[str]) -> list[dict]:
    """Every row with every column; a column whose values mix types (say str and dict) becomes JSON text,
    so that parquet can hold it."""
    import json

    mixed = set()
    for c in cols:
        kinds = {float if type(r.get(c)) is int else type(r.get(c)) for r in rows if r.get(c) is not None}
        if len(kinds) > 1:
            mixed.add(c)
    return [{c: json.dumps(r.get(c)) if c in mixed and r.get(c) is not None else r.get(c) for c in cols}
            for r in rows]


def write_parquet(rows: list[dict], folder: Path) -> list[Path]:
    """Rows as parquet shards `train-0000i-of-0000N.parquet` (every row gets every column; missing = null);
    none for no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for old in folder.glob("train-*.parquet"):
        old.unlink()
    if not rows:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    cols = _columns(rows)
    n = -(-len(rows) // ROWS_PER_SHARD)
    paths = []
    for i in range(n):
        chunk = rows[i * ROWS_PER_SHARD:(i + 1) * ROWS_PER_SHARD]
        table = pa.Table.from_pylist(_uniform(chunk, cols))
        path = folder / f"train-{i:05d}-of-{n:05d}.parquet"
        pq.write_table(table, str(path))
        paths.append(path)
    return paths


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def card(directory: Path, counts: dict[str, int], columns: list[str], report: dict, manifest: dict,
         name: str) -> str:
    """The dataset card (README.md): YAML configs for `load_dataset`, tags, then counts and columns."""
    import yaml

    method = manifest.get("method") or report.get("method") or "unknown"
    meta = {
        "configs": [{"config_name": config, "data_files": [{"split": "train", "path": f"{folder}/train-*.parquet"}]}
                    for config, (_, folder) in CONFIGS.items() if counts[config]],
        "task_categories": ["text-generation"],
        "size_categories": [_size_category(counts["default"])],
        "tags": ["synthetic", "genstruct-train", method],
    }
    model = manifest.get("model") or report.get("model")
    skip = ("rejected", "skipped", "finish_reasons", "corpus", "model", "method")
    summary = {k: v for k, v in report.items() if k not in skip and not isinstance(v, (dict, list))}
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
        f"# {name}", "",
        f"Instruction data synthesized with genstruct-train (`genstruct-train synthesize --method {method}`).", "",
        f"- **Model:** `{model}`",
        (f"- **Rows:** {counts['default']} accepted (config `default`), {counts['rejected']} rejected with a "
         "`reason` (config `rejected`)"),
        f"- **Rejection reasons:** {report.get('rejected', {})}",
        f"- **Sampling:** `{manifest.get('sampling', {})}`", "",
        "```python",
        "from datasets import load_dataset",
        "",
        f"ds = load_dataset(\"{name}\", split=\"train\")            # or load_dataset(\"path/to/{directory.name}\")",
        *([f"rejected = load_dataset(\"{name}\", \"rejected\", split=\"train\")"] if counts["rejected"] else []),
        "```", "",
        "## Columns", "",
        ", ".join(f"`{c}`" for c in columns), "",
        "## Synthesis report", "",
        "| field | value |", "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in summary.items()], "",
    ]
    return "\n".join(lines)


def export(directory: str | Path, name: str | None = None) -> dict[str, int]:
    """Write DIR's parquet shards and dataset card from its JSONL files; returns {config: rows}."""
    from ..io import read_json, read_jsonl

    directory = Path(directory)
    if not (directory / "synthesized.jsonl").is_file() or not read_jsonl(directory / "synthesized.jsonl"):
        raise GenstructError(f"{directory} has no synthesized rows: nothing to export as a dataset")
    counts, columns = {}, []
    for config, (filename, folder) in CONFIGS.items():
        path = directory / filename
        rows = read_jsonl(path) if path.is_file() else []
        write_parquet(rows, directory / folder)
        counts[config] = len(rows)
        if config == "default":
            columns = _columns(rows)
    report = read_json(directory / "report.json") if (directory / "report.json").is_file() else {}
    manifest = read_json(directory / "manifest.json") if (directory / "manifest.json").is_file() else {}
    text = card(directory, counts, columns, report, manifest, name or directory.resolve().name)
    (directory / "README.md").write_text(text, encoding="utf-8")
    return counts


def push(directory: str | Path, repo_id: str, *, token: str | None = None, private: bool | None = None) -> str:
    """Upload DIR's dataset card and parquet shards to the hub dataset repo `repo_id`; returns the commit URL.
    Hub errors (offline, no token, no access) raise GenstructError naming the repo."""
    from huggingface_hub import HfApi

    from ..train.checkpoint import hub_errors

    directory = Path(directory)
    if not (directory / "README.md").is_file() or not list((directory / "data").glob("train-*.parquet")):
        raise GenstructError(f"{directory} has no dataset card and parquet shards: run `export` first")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(directory),
                                 allow_patterns=PUSHED, commit_message="genstruct-train: synthesized set")
    except hub_errors() as e:  # offline mode, network, auth: one clear line
        detail = str(e).splitlines()[0] if str(e) else "no detail"
        raise GenstructError(f"push to hub dataset repo {repo_id!r} failed ({type(e).__name__}: {detail}); the set "
                             f"is intact in {directory}: push it later with `hf upload {repo_id} {directory} "
                             "--repo-type dataset`") from None
    return str(getattr(info, "commit_url", info))


def finish(args, out: str | Path, code: int = 0) -> int:
    """After a successful synthesize: export DIR as a dataset, and push it with --push-to-hub."""
    path = Path(out) / "synthesized.jsonl"
    if code != 0 or not path.is_file() or path.stat().st_size == 0:
        return code
    repo = getattr(args, "push_to_hub", None)
    counts = export(out, name=repo)
    print(f"dataset: {counts['default']} rows, {counts['rejected']} rejected -> {out}/data, {out}/rejected "
          f"(datasets.load_dataset({str(out)!r}))")
    if repo:
        print(f"pushed {out} -> {push(out, repo, private=getattr(args, 'hub_private', False) or None)}")
    return code
