"""Where the shared data lives: an explicit argument, else $GENSTRUCT_DATA_DIR, else ../shared/data
beside the repository checkout (the layout CI uses). A given directory that does not exist is an error."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import GenstructError

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The first one given of: `explicit` (--data-dir), $GENSTRUCT_DATA_DIR, ../shared/data. A given
    directory that does not exist is an error, never a silent fall back to the next."""
    for candidate, what in ((explicit, "--data-dir"), (os.environ.get("GENSTRUCT_DATA_DIR"), "GENSTRUCT_DATA_DIR")):
        if candidate:
            if not Path(candidate).is_dir():
                raise GenstructError(f"{what} {str(candidate)!r} is not a directory")
            return Path(candidate)
    if (REPO_ROOT.parent / "shared" / "data").is_dir():
        return REPO_ROOT.parent / "shared" / "data"
    raise GenstructError(
        "shared data directory not found: pass --data-dir or set GENSTRUCT_DATA_DIR "
        "(expected the layout of shared/data/README.md)"
    )


def cache_dir() -> Path:
    path = Path(os.environ.get("GENSTRUCT_CACHE", Path.home() / ".cache" / "genstruct-train"))
    path.mkdir(parents=True, exist_ok=True)
    return path
