"""Checks of the generation contract (generation/base.py) that every backend's tests run the same way."""

from genstruct_train.generation import SamplingParams

# prompts of different lengths (padded together in batches) for every backend's tests
PROMPTS = [
    "Hello",
    "The capital of France is a city with a long history, and its river is called",
    "a b c",
    "Photosynthesis converts light energy into chemical energy stored in glucose. Plants",
    "Why?",
    "One two three four five six",
]


def check_seeded_samples(gen, prompts: list[str]) -> None:
    """n seeded samples per prompt: the same seed gives the same samples, the samples of a prompt differ,
    another seed gives others."""
    sp = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, top_k=50, n=3, seed=7)
    a = gen.generate(prompts, sp, progress=False)
    b = gen.generate(prompts, sp, progress=False)
    assert [len(o) for o in a] == [3] * len(prompts)
    assert a == b
    assert len({c.text for c in a[1]}) == 3  # three distinct samples
    c = gen.generate(prompts, SamplingParams(max_new_tokens=10, temperature=1.0, n=3, seed=8), progress=False)
    assert a != c
