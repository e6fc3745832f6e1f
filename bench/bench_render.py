"""Rendering benchmark: the naive papermill loop vs evalterritoire's warm-kernel pool.

The same territory template (``notebooks/templates/territory_report``) for N territories of the
demo study (sorted codes, contexts from ``build/2025/contexts``; run ``make report`` first):

* (a) the loop a user would write: ``papermill.execute_notebook`` then nbconvert's
  ``HTMLExporter(exclude_input=True)``, one territory after the other;
* (b) ``evalterritoire.render.render_reports`` (warm kernels, one per worker, default workers =
  cores).

Prints seconds per report for each, the ratio (target ≥ 10× on this 2-core machine), the
projected time for 1,250 and 35,000 territories, and whether (a) and (b) give the same numbers
and figures: the text of every report and its embedded images are compared.

Usage::

    .venv/bin/python bench/bench_render.py [--n 40] [--workers N]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PY = ROOT / "notebooks" / "templates" / "territory_report.py"
TEMPLATE_NB = ROOT / "notebooks" / "templates" / "territory_report.ipynb"
CONTEXTS = ROOT / "build" / "2025" / "contexts"
_IMG = re.compile(r'src="data:image/(?:png|svg\+xml);base64,([A-Za-z0-9+/=]+)"')
_TAG = re.compile(r"<[^>]+>")


def _content(page: str) -> tuple[str, list[str]]:
    """Visible text (tags removed, whitespace folded) and the hashes of embedded images."""
    body = page.split("<body", 1)[-1]
    images = [hashlib.sha256(base64.b64decode(m)).hexdigest()[:16] for m in _IMG.findall(body)]
    text = html.unescape(_TAG.sub(" ", _IMG.sub("", body)))
    return " ".join(text.split()), images


def naive(codes: list[str], out: Path) -> float:
    """(a) papermill + HTMLExporter per territory, sequentially."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    start = time.perf_counter()
    for code in codes:
        executed = out / f"{code}.ipynb"
        pm.execute_notebook(
            str(TEMPLATE_NB),
            str(executed),
            parameters={
                "territory": code,
                "wave": 2025,
                "context_path": str(CONTEXTS / f"{code}.json"),
            },
            progress_bar=False,
            log_output=False,
        )
        body, _ = HTMLExporter(exclude_input=True).from_notebook_node(
            nbformat.read(executed, as_version=4)
        )
        (out / f"{code}.html").write_text(body, encoding="utf-8")
    return time.perf_counter() - start


def ours(codes: list[str], out: Path, workers: int | None) -> float:
    """(b) evalterritoire.render.render_reports with warm kernels."""
    from evalterritoire.render import RenderTask, render_reports

    tasks = [
        RenderTask(
            territory=code,
            template=TEMPLATE_PY,
            parameters={
                "territory": code,
                "wave": 2025,
                "context_path": str(CONTEXTS / f"{code}.json"),
            },
        )
        for code in codes
    ]
    start = time.perf_counter()
    summary = render_reports(tasks, out_dir=out, workers=workers, progress=False, force=True)
    seconds = time.perf_counter() - start
    if summary.exit_code:
        raise SystemExit(summary.describe())
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    if not TEMPLATE_NB.is_file() or not CONTEXTS.is_dir():
        raise SystemExit("run `make report` first (generated template and build/2025/contexts)")
    codes = sorted(p.stem for p in CONTEXTS.glob("*.json") if p.stem != "national")[: args.n]
    tmp = Path(tempfile.mkdtemp(prefix="bench-render-"))
    try:
        (tmp / "a").mkdir()
        t_a = naive(codes, tmp / "a")
        t_b = ours(codes, tmp / "b", args.workers)
        same_text = same_images = 0
        for code in codes:
            text_a, img_a = _content((tmp / "a" / f"{code}.html").read_text(encoding="utf-8"))
            text_b, img_b = _content((tmp / "b" / f"{code}.html").read_text(encoding="utf-8"))
            same_text += text_a == text_b
            same_images += img_a == img_b
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(codes)
    per_a, per_b = t_a / n, t_b / n
    ratio = per_a / per_b
    workers = args.workers or os.cpu_count()
    print(f"{n} territory reports of the demo study, {os.cpu_count()} cores, {workers} worker(s)")
    print(f"(a) papermill + HTMLExporter loop: {t_a:7.1f} s  {per_a:6.3f} s/report")
    print(f"(b) evalterritoire warm pool:      {t_b:7.1f} s  {per_b:6.3f} s/report")
    print(f"ratio (a)/(b): {ratio:.1f}×  (target ≥ 10×: {'met' if ratio >= 10 else 'NOT met'})")
    for count in (1250, 35000):
        print(
            f"projected for {count:,} territories: (a) {count * per_a / 3600:6.2f} h, "
            f"(b) {count * per_b / 3600:6.2f} h"
        )
    print(
        f"same text in {same_text}/{n} reports, same images (sha256) in {same_images}/{n} reports"
    )


if __name__ == "__main__":
    main()
