"""Progress of the long steps, on the console's error stream.

Every step that can take more than a few seconds on a national wave (estimates, maturity,
models, contexts, reports) reports its progress through :func:`step_progress`: one bar per
step (« Estimations », « Modèles »…) with the count done, the time spent and the time left,
drawn by ``rich`` on ``stderr`` so that the standard output stays clean. The bar is live on a
terminal only; elsewhere (CI, a log file, a notebook) nothing is drawn and the step's closing
line (``› estimate 2025: …``) says what was done.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

__all__ = ["step_progress"]


@contextlib.contextmanager
def step_progress(
    label: str, total: int, *, enabled: bool | None = None
) -> Iterator[Callable[[int], None]]:
    """A progress bar for ``total`` units of work; yields ``advance(n=1)``.

    Parameters
    ----------
    label : str
        What is counted, in French (« Estimations », « Territoires »…).
    total : int
        Units of work.
    enabled : bool, optional
        Force the bar on or off (default: on when ``stderr`` is a terminal).

    Yields
    ------
    callable
        ``advance(n=1)``: ``n`` more units are done.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    live = sys.stderr.isatty() if enabled is None else enabled
    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("reste"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not live or total <= 0,
    )
    with bar:
        task = bar.add_task(label, total=max(total, 0))

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
