"""Method "synthesizer": several `<QUE> q <ANS> a </END>` pairs per passage from an
instruction-synthesizer model (Instruction Pre-Training); one output row per parsed pair.

A corpus method for synthesis/run.py (FORMAT, DEFAULTS, prompt, rows). With --synthesizer-rounds M > 1
it runs its own loop, Instruction Pre-Training's multi-round inference (microsoft/LMOps
instruction_pretrain README and utils/read_compre.py get_dataset @ 4f2a9deb5f08e459fd44c2e4792344d78ca89fc3):
the corpus is cut into M contiguous slices of ceil(N / M) passages; passage i of round r is prompted
after the chain of round r-1's passage i — that passage and the pairs synthesized for it (and, when
that one was itself chained, its own demonstrations), each rendered
`<s> <CON> text </CON>\\n\\n<QUE> q <ANS> a </END>...</s>` — so the model sees its own earlier outputs as
few-shot demonstrations. A previous passage that yielded no pair breaks the chain. As in the reference,
the whole chain is kept or dropped: it is kept only when demonstrations + passage prompt fit
`--synthesizer-max-model-len` (of the model to be PRE-TRAINED on the templified texts; 4096 as the card) minus
--max-new-tokens (and the synthesizer's own context); we count tokens with the synthesizer's tokenizer
where the reference estimates 1.5 tokens per space-separated word. Each round is a resumable job in
DIR/round-R/ with chain.jsonl (its passages in order, `chained` when the prompt held the chain, the
input of `genstruct-train templify`); DIR/synthesized.jsonl and DIR/rejected.jsonl gather all rounds
(round number in `round`), DIR/report.json sums them.

A checkpoint whose card or chat template records another format (e.g. a Genstruct model) is refused
(exit 2) unless --allow-format-mismatch: its outputs would all be rejected.
"""

from __future__ import annotations

from ..errors import GenstructError
from ..formats import checkpoint_format, get_format
from ..io import read_json
from ..tokenization import prompt_text

FORMAT = "synthesizer"
DEFAULTS = {"max_new_tokens": 400, "temperature": 0.0, "top_p": 1.0}  # greedy, as the synthesizer's card
MAX_MODEL_LEN = 4096  # the card's max_model_len: the context of the model to be pre-trained


def add_arguments(parser) -> None:
    g = parser.add_argument_group("method synthesizer")
    g.add_argument("--synthesizer-rounds", type=int, default=1,
                   help="M: multi-round few-shot chaining over M slices of the corpus (1 = off)")
    g.add_argument("--synthesizer-max-model-len", type=int, default=MAX_MODEL_LEN,
                   help="context length of the model to be pre-trained on the templified texts: a chain of "
                        "demonstrations is kept only when it and the passage fit in it minus --max-new-tokens "
                        f"(default {MAX_MODEL_LEN})")
    g.add_argument("--allow-format-mismatch", action="store_true",
                   help="run even when the checkpoint records another format than 'synthesizer'")


def check_checkpoint_format(args) -> None:
    """Refuse a checkpoint (or adapter) that records another format than this method's."""
    for path in (getattr(args, "adapter", None), args.model):
        found = checkpoint_format(path) if path else None
        if found and found[0] != FORMAT and not args.allow_format_mismatch:
            raise GenstructError(
                f"--model {path} was trained in the {found[0]!r} format ({found[1]}), but --method {FORMAT} "
                f"prompts and parses the {FORMAT!r} format: use --method {found[0]}, or "
                "--allow-format-mismatch to run anyway")
        if found:
            return


def _demo_text(tokenizer, demo: dict) -> str:
    fmt = get_format(FORMAT)
    return prompt_text(tokenizer, fmt, demo) + fmt.render_completion(demo) + (tokenizer.eos_token or "")


def prompt(tokenizer, passage: dict) -> str:
    """BOS + ` <CON> {content} </CON>\\n\\n`, after the passage's demonstrations when it has any."""
    demos = "".join(_demo_text(tokenizer, d) for d in passage.get("demos", ()))
    return demos + prompt_text(tokenizer, get_format(FORMAT), passage)


def rows(passage: dict, text: str) -> tuple[list[dict], str | None]:
    parsed = get_format(FORMAT).parse(text)
    if not parsed.ok:
        return [], parsed.reason
    return [{"user": q, "assistant": a} for q, a in parsed.pairs], None


def chain_demos(previous: list[dict], results: dict[str, list[tuple[str, str]]]) -> list[list[dict]]:
    """Demonstrations for the next round: for each passage of the previous round (in order), its own
    demos plus itself with its pairs, or [] when it yielded no pair."""
    out = []
    for p in previous:
        pairs = results.get(p["id"])
        out.append([*p.get("demos", []), {"content": p["content"], "pairs": pairs}] if pairs else [])
    return out


def _fit_demos(generator, passage: dict, budget: int | None) -> dict:
    """Keep the whole chain of demonstrations when the prompt fits `budget` tokens, else none (the
    reference's followed_by_next): a templified text then holds exactly what the model saw."""
    if passage.get("demos") and budget is not None and \
            len(generator.encode_prompt(prompt(generator.tokenizer, passage))) > budget:
        return {**passage, "demos": []}
    return passage


def round_slices(count: int, rounds: int) -> list[range]:
    """The reference's slices: ceil(count / rounds) passages per round, the last ones shorter or empty."""
    size = (count + rounds - 1) // rounds
    return [range(min(r * size, count), min((r + 1) * size, count)) for r in range(rounds)]


def prepare(args) -> dict:
    """The checkpoint's format, the counts, the corpus and the output directory checked (GenstructError),
    before the model loads."""
    from ..io import file_sha256
    from ..paths import data_dir
    from . import run as runner
    from .corpus import parse_shard, read_corpus

    check_checkpoint_format(args)
    if args.synthesizer_rounds < 1 or args.chunk_size < 1 or args.synthesizer_max_model_len < 1:
        raise GenstructError("--synthesizer-rounds, --chunk-size and --synthesizer-max-model-len must be >= 1")
    shard = parse_shard(args.shard)
    corpus_path = str(args.corpus or data_dir() / "corpus" / "wiki-paragraphs.jsonl")
    corpus = read_corpus(corpus_path, limit=args.limit, shard=shard)
    sampling = runner.sampling_from_args(args, DEFAULTS)
    manifest = runner.job_manifest(args, sampling, corpus_sha256=file_sha256(corpus_path), limit=args.limit,
                                   shard=f"{shard[0]}/{shard[1]}", overlong=args.overlong)
    runner.open_job(args.output, manifest, write=False)
    return {"shard": shard, "corpus_path": corpus_path, "corpus": corpus, "sampling": sampling, "manifest": manifest}


def run(args, generator, job: dict) -> int:
    """One corpus job (synthesis/run.py's loop); with several rounds, one per corpus slice, chained."""
    import sys
    from collections import Counter
    from pathlib import Path

    from ..io import read_jsonl, write_jsonl
    from . import run as runner
    from .corpus import Corpus

    if generator.tokenizer is None:
        generator.close()
        raise GenstructError("method 'synthesizer' renders prompts with the model's tokenizer: give --tokenizer")
    module = sys.modules[__name__]
    rounds, shard, corpus_path, corpus, sampling = (args.synthesizer_rounds, job["shard"], job["corpus_path"],
                                                    job["corpus"], job["sampling"])
    out = runner.open_job(args.output, job["manifest"])
    try:
        if rounds == 1:
            write_jsonl(Path(out) / "chain.jsonl", [_chain_row(p) for p in corpus.passages])
            return runner._run_corpus(args, module, generator, corpus, sampling, out, shard, corpus_path)
        budget = args.synthesizer_max_model_len - sampling.max_new_tokens
        if generator.context_length:
            budget = min(budget, generator.context_length - sampling.max_new_tokens)
        passages, demos, reports = corpus.passages, [], []
        for r, block in enumerate(round_slices(len(passages), rounds)):
            current = [passages[k] for k in block]
            current = [_fit_demos(generator, {**p, "demos": demos[i]}, budget) if i < len(demos) and demos[i]
                       else p for i, p in enumerate(current)]
            skipped = corpus.skipped if r == 0 else Counter()
            part = Corpus(passages=current, read=len(current) + sum(skipped.values()), skipped=skipped)
            round_dir = Path(out) / f"round-{r + 1}"
            round_dir.mkdir(parents=True, exist_ok=True)
            write_jsonl(round_dir / "chain.jsonl", [_chain_row(p) for p in current])
            runner._run_corpus(args, module, generator, part, sampling, round_dir, shard, corpus_path)
            reports.append(read_json(round_dir / "report.json"))
            results: dict[str, list[tuple[str, str]]] = {}
            for row in read_jsonl(round_dir / "synthesized.jsonl"):
                if row.get("sample", 0) == 0:
                    results.setdefault(row["id"], []).append((row["user"], row["assistant"]))
            if current:
                demos = chain_demos(current, results)
        for name in ("synthesized", "rejected"):
            write_jsonl(Path(out) / f"{name}.jsonl",
                        [{**row, "round": r + 1} for r in range(rounds)
                         for row in read_jsonl(Path(out) / f"round-{r + 1}" / f"{name}.jsonl")])
        runner.write_report(Path(out), {**sum_reports(reports), "rounds": rounds})
        return 0
    finally:
        generator.close()


def _chain_row(passage: dict) -> dict:
    demos = passage.get("demos") or []
    return {"id": passage["id"], "title": passage["title"], "content": passage["content"],
            "chained": bool(demos), "demos": len(demos)}


def sum_reports(reports: list[dict]) -> dict:
    """Numbers add, dicts add per key, other fields come from the first report."""
    total: dict = {}
    for rep in reports:
        for k, v in rep.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, dict)):
                total[k] = total.get(k, v) if not isinstance(v, bool) else total.get(k, True) and v
            elif isinstance(v, dict):
                merged = dict(total.get(k, {}))
                for kk, vv in v.items():
                    merged[kk] = merged.get(kk, 0) + vv
                total[k] = merged
            else:
                total[k] = total.get(k, 0) + v
    seconds = total.get("generation_seconds", 0)
    if seconds:
        total["tokens_per_s"] = round(total.get("tokens_generated", 0) / seconds, 1)
    return total
