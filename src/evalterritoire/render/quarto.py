"""The Quarto engine: ``quarto render --execute -P …`` of one report in a private directory.

Owns the command line (:func:`build_quarto_command`, with the YAML-safe spelling of parameter
values, :func:`_quarto_value`) and the run of one job (:func:`_render_quarto`: a private copy
of the template, a private output directory, the report's time limit, the HTML text back).

"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalterritoire.errors import RenderError
from evalterritoire.render.kernel import KERNEL_ENV, _ReportTimeoutError
from evalterritoire.render.notebook import _check_parameters, write_template_notebook

_YAML_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_YAML_KEYWORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _quarto_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if (
        isinstance(value, str)
        and _YAML_PLAIN.fullmatch(value)
        and value.lower() not in _YAML_KEYWORDS
    ):
        return value
    # Anything else as a JSON literal, which YAML reads back unchanged (quoted strings stay
    # strings: "01" is not read as the number 1).
    return json.dumps(value, ensure_ascii=False)


def build_quarto_command(
    template: str | Path, params: Mapping[str, Any], out_dir: str | Path
) -> list[str]:
    """The ``quarto render`` command line of one report.

    Parameters
    ----------
    template : str or Path
        The ``.qmd`` or ``.ipynb`` to render (a private copy: Quarto writes next to it).
    params : mapping
        Literal parameters, passed as ``-P key:value`` in sorted key order; strings that YAML
        would reinterpret (digits, ``true``, spaces…) are JSON-quoted.
    out_dir : str or Path
        Private output directory of the job.

    Returns
    -------
    list of str
        ``["quarto", "render", file, "--execute", "-P", "k:v", …, "--output-dir", out_dir]``.
    """
    command = ["quarto", "render", str(template), "--execute"]
    for key, value in _check_parameters(params).items():
        command += ["-P", f"{key}:{_quarto_value(value)}"]
    return [*command, "--output-dir", str(out_dir)]


def _render_quarto(payload: Mapping[str, Any]) -> str:
    quarto = shutil.which("quarto")
    if quarto is None:
        raise RenderError("engine 'quarto' needs Quarto on PATH (https://quarto.org)")
    template = Path(payload["template"])
    stem = payload["stem"]
    with tempfile.TemporaryDirectory(prefix="et-quarto-") as tmp:
        src_dir, out = Path(tmp) / "src", Path(tmp) / "out"
        src_dir.mkdir()
        if template.suffix in {".qmd", ".ipynb"}:
            source = src_dir / f"{stem}{template.suffix}"
            shutil.copyfile(template, source)
        else:
            source = write_template_notebook(template, src_dir / f"{stem}.ipynb")
        command = build_quarto_command(source, payload["parameters"], out)
        command[0] = quarto
        try:
            proc = subprocess.run(
                command,
                cwd=src_dir,
                capture_output=True,
                timeout=payload["timeout"],
                env={**os.environ, **KERNEL_ENV},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise _ReportTimeoutError(f"time limit of {payload['timeout']:g} s reached") from None
        produced = out / f"{stem}.html"
        if proc.returncode != 0 or not produced.is_file():
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RenderError(f"quarto render failed: {lines[-1] if lines else proc.returncode}")
        return produced.read_text(encoding="utf-8")
