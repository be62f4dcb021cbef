"""Passage-to-QA training data: source readers (sources.py), mixtures (mixture.py) and the
`genstruct-train data build` verb with its library API (build.py: build_from_source, build_from_mixture)."""
