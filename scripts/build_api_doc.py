"""Write ``docs/api.md``, the list of the public API, from the subpackages' ``__all__``.

Developer tool, not used at run time: ``python scripts/build_api_doc.py``. Each name gets the
first paragraph of its docstring; ``tests/test_layout.py`` checks that every public name is
listed, so a name added to an ``__all__`` without re-running this script fails the tests.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "api.md"
INTRO = """# Public API

Everything a user may import, listed once. Each subpackage is one step of the data flow
(README, « A short tour »); its `__init__` re-exports the names below, and the most used
ones are also importable from `evalterritoire` itself (marked ★). Anything else — modules
inside a subpackage, names starting with `_` — is internal and may change without notice.

Naming: `load_*` read files, `compute_*` / `estimate_*` are pure calculations, `fit_*` fit
models, `build_*` assemble objects, `render_*` produce output, `run_*` are the pipeline steps.
"""
SECTIONS = [
    ("evalterritoire.config", "Study file (`study.toml`)"),
    ("evalterritoire.errors", "Errors"),
    ("evalterritoire.codebook", "Codebook"),
    ("evalterritoire.ingest", "Ingest"),
    ("evalterritoire.design", "Design"),
    ("evalterritoire.estimates", "Estimates"),
    ("evalterritoire.maturity", "Maturity"),
    ("evalterritoire.models", "Models"),
    ("evalterritoire.report", "Report contents"),
    ("evalterritoire.render", "Render"),
    ("evalterritoire.simulate", "Simulation"),
    ("evalterritoire.pipeline", "Pipeline"),
    ("evalterritoire.manifest", "Manifest"),
    ("evalterritoire.artefacts", "Writing artefacts"),
]


def _markdown(text: str) -> str:
    text = re.sub(r":(?:class|func|meth|mod|data|attr):`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text).replace("\n", " ").replace("|", "\\|")


def _row(name: str, obj: object, starred: bool) -> str:
    if inspect.isclass(obj):
        kind = "class"
    elif callable(obj):
        kind = "function"
    else:
        kind = "constant"
    doc = (inspect.getdoc(obj) or "").split("\n\n")[0] if kind != "constant" else ""
    star = " ★" if starred else ""
    return f"| `{name}`{star} | {kind}{': ' + _markdown(doc) if doc else ''} |"


def build() -> str:
    """The text of ``docs/api.md``."""
    import evalterritoire

    top = set(evalterritoire.__all__)
    out = [INTRO]
    for modname, title in SECTIONS:
        module = importlib.import_module(modname)
        out.append(f"## {title} — `{modname}`\n")
        out.append(_markdown((inspect.getdoc(module) or "").split("\n\n")[0]) + "\n")
        out.append("| name | what it is |\n|---|---|")
        out += [_row(n, getattr(module, n), n in top) for n in module.__all__]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    OUT.write_text(build(), encoding="utf-8")
    print(f"wrote {OUT}")
