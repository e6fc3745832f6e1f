"""Rendering benchmark: the naive papermill loop vs evalterritoire's warm-kernel pool.

The same territory template (``src/evalterritoire/data/templates/territory_report``) for N territories of the
demo study (sorted codes, contexts from ``build/2025/contexts``; run ``make report`` first):

* (a) the loop a user would write: ``papermill.execute_notebook`` then nbconvert's
  ``HTMLExporter(exclude_input=True)``, one territory after the other;
* (b) ``evalterritoire.render.reports.render_reports`` (warm kernels, one per worker, default workers =
  cores).

Prints seconds per report for each, the ratio (target ≥ 25× on this 2-core machine; the naive
loop runs the same package, so it gains from every speed-up of the figures and imports too), the
projected time for 1,250 and 35,000 territories, and whether (a) and (b) give the same numbers
and figures: the text of every report and its embedded images are compared.

Usage::

    .venv/bin/python bench/bench_render.py [--n 40] [--workers N]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PY = ROOT / "src" / "evalterritoire" / "data" / "templates" / "territory_report.py"
CONTEXTS = ROOT / "build" / "2025" / "contexts"
#: Classes of an output's content in nbconvert's ``lab`` page (naive loop) and in ours.
_OUTPUT_CLASSES = ("jp-OutputArea-output", "output_subarea", "et-output")
_STDERR_MIME = "application/vnd.jupyter.stderr"
#: HTML whitespace (folded); non-breaking spaces are French typography and are kept.
_SPACES = re.compile(r"[ \t\n\r\f]+")


def _is_noise(classes: str | list[str] | None) -> bool:
    """Prompts (``Out[3]:``) and stderr streams: page furniture, not report content."""
    if not classes:
        return False
    names = classes.split() if isinstance(classes, str) else classes
    return any("prompt" in name.lower() or name == "output_stderr" for name in names)


def _image_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _content(page: str) -> tuple[list[str], list[str]]:
    """What a reader sees: the text of each cell output and the hashes of its images.

    Only the output areas count (nbconvert's ``lab`` page and our ``basic`` one wrap them in
    different markup, with different body attributes, scripts and styles). Prompts and stderr
    streams are dropped; the text of each output has its HTML whitespace folded; embedded images are
    compared through the SHA-256 of their decoded bytes (data URIs) or of their markup (inline
    SVG). A changed number, label or figure therefore shows; markup alone does not.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page, "html.parser")
    for tag in soup.find_all(["script", "style"]):
        tag.decompose()
    # our page adds a « Sommaire » built from the page's own headings (compared as text anyway)
    for tag in soup.find_all("nav", class_="et-toc"):
        tag.decompose()
    for tag in soup.find_all(class_=_is_noise):
        tag.decompose()
    for tag in soup.find_all(attrs={"data-mime-type": _STDERR_MIME}):
        tag.decompose()
    texts: list[str] = []
    images: list[str] = []
    for output in soup.find_all(class_=list(_OUTPUT_CLASSES)):
        for element in output.find_all(["img", "svg"]):
            if element.name == "svg":
                images.append(_image_hash(str(element).encode("utf-8")))
                element.decompose()
                continue
            source = element.get("src", "")
            header, _, data = source.partition(",")
            if header.startswith("data:") and header.endswith(";base64"):
                images.append(_image_hash(base64.b64decode(data)))
            elif header.startswith("data:"):
                images.append(_image_hash(urllib.parse.unquote(data).encode("utf-8")))
            else:
                images.append(f"link:{source}")
        text = _SPACES.sub(" ", output.get_text(" ")).strip()
        if text:
            texts.append(text)
    return texts, images


def _first_difference(a: list[str], b: list[str]) -> str:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"output {index + 1}: {x[:80]!r} vs {y[:80]!r}"
    return f"{len(a)} vs {len(b)} outputs"


def naive(codes: list[str], out: Path, notebook: Path) -> float:
    """(a) papermill + HTMLExporter per territory, sequentially."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    start = time.perf_counter()
    for code in codes:
        executed = out / f"{code}.ipynb"
        pm.execute_notebook(
            str(notebook),
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
    from evalterritoire.render.reports import RenderTask, render_reports

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
    if not CONTEXTS.is_dir():
        raise SystemExit("run `make report` first (build/2025/contexts)")
    from evalterritoire.render.notebook import write_template_notebook

    codes = sorted(p.stem for p in CONTEXTS.glob("*.json") if p.stem != "national")[: args.n]
    tmp = Path(tempfile.mkdtemp(prefix="bench-render-"))
    differences: list[str] = []
    try:
        (tmp / "a").mkdir()
        # (a) runs the notebook generated from the same jupytext source as (b), not a stale one
        notebook = write_template_notebook(TEMPLATE_PY, tmp / "territory_report.ipynb")
        t_a = naive(codes, tmp / "a", notebook)
        t_b = ours(codes, tmp / "b", args.workers)
        same_text = same_images = 0
        for code in codes:
            text_a, img_a = _content((tmp / "a" / f"{code}.html").read_text(encoding="utf-8"))
            text_b, img_b = _content((tmp / "b" / f"{code}.html").read_text(encoding="utf-8"))
            if not text_a or not img_a:
                raise SystemExit(f"{code}: no report content found in the naive page")
            same_text += text_a == text_b
            same_images += img_a == img_b
            if text_a != text_b:
                differences.append(f"{code} text, {_first_difference(text_a, text_b)}")
            if img_a != img_b:
                differences.append(f"{code} images, {_first_difference(img_a, img_b)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(codes)
    per_a, per_b = t_a / n, t_b / n
    ratio = per_a / per_b
    workers = args.workers or os.cpu_count()
    print(f"{n} territory reports of the demo study, {os.cpu_count()} cores, {workers} worker(s)")
    print(f"(a) papermill + HTMLExporter loop: {t_a:7.1f} s  {per_a:6.3f} s/report")
    print(f"(b) evalterritoire warm pool:      {t_b:7.1f} s  {per_b:6.3f} s/report")
    print(f"ratio (a)/(b): {ratio:.1f}×  (target ≥ 25×: {'met' if ratio >= 25 else 'NOT met'})")
    for count in (1250, 35000):
        print(
            f"projected for {count:,} territories: (a) {count * per_a / 3600:6.2f} h, "
            f"(b) {count * per_b / 3600:6.2f} h"
        )
    print(
        f"same text in {same_text}/{n} reports, same images (sha256) in {same_images}/{n} reports"
        f": {'same' if same_text == same_images == n else 'DIFFERENT'}"
    )
    for line in differences[:10]:
        print(f"  differs: {line}")


if __name__ == "__main__":
    main()
