"""Progress bars with an ETA where a person watches (stderr is a terminal); nothing otherwise,
so logs and CI output keep their plain lines."""

from __future__ import annotations

import sys

from tqdm import tqdm


def interactive() -> bool:
    return sys.stderr.isatty()


def bar(total: int, desc: str, unit: str) -> tqdm:
    """A bar on stderr, disabled (a no-op) when stderr is not a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not interactive(),
                dynamic_ncols=True, leave=False)  # fmt: skip
