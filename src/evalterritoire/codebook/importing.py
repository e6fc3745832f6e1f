"""Importing a questionnaire from its survey tool: :func:`import_codebook`, :class:`ImportResult`.

``evalterritoire codebook import SOURCE`` reads an XLSForm (:mod:`.xlsform`), a LimeSurvey
structure file (:mod:`.limesurvey`), an SPSS file (:mod:`.spss`) or a Qualtrics survey file
(:mod:`.qualtrics`) and writes a codebook in our format (:func:`import_codebook`). Each
importer describes the tool's questions to a :class:`~.builder.CodebookBuilder`, which owns
what is common:

* **ids**: the tool's names made snake_case ASCII (``Q3[SQ001]`` → ``q3_sq001``), the tool's
  header kept as a synonym so that its exports ingest;
* **choices** → a scale or options (:meth:`~.builder.CodebookBuilder.choices`): two yes/no choices make a
  ``binary`` item (codes 1/0, the tool's codes as aliases); integer codes whose labels read as a
  scale (« d'accord », « satisfait », « jamais »…) a ``likert`` one; others ``categorical``
  options; don't-know, refusal and not-applicable choices become **special codes**;
* **routing**: each tool's condition is translated into our ``relevant:`` language, checked by
  :func:`~evalterritoire.codebook.conditions.parse_condition`; a condition that cannot be
  translated is reported, never guessed;
* **roles** guessed from names and labels (:func:`~evalterritoire.codebook.text.role_of_header`:
  « Pondération » → weight), each guess reported for confirmation, the roles no variable plays
  reported as needed;
* the tool's **metadata columns** (submission time, status…) and unmapped questions go to
  ``columns: ignore:`` so that the tool's export ingests, each listed in the report.

The result (:class:`ImportResult`) is the codebook as data, its YAML text (with the report as a
header comment) and the report; it is validated by the codebook loader before it is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evalterritoire.codebook.model import Codebook
from evalterritoire.errors import CodebookError

__all__ = ["ImportResult", "import_codebook"]


@dataclass
class ImportResult:
    """An imported codebook: its data, its YAML text, and what could not be mapped.

    Attributes
    ----------
    tool : str
        The survey tool (``XLSForm``, ``LimeSurvey``, ``SPSS``, ``Qualtrics``).
    source : str
        File name of the questionnaire.
    data : dict
        The codebook, as the loader reads it.
    unmapped : list of str
        Questions or settings not mapped (each with the reason).
    guessed : list of str
        Roles and types guessed from names and labels: to confirm.
    needed : list of str
        Roles no variable plays (what they are needed for).
    """

    tool: str
    source: str
    data: dict[str, Any]
    unmapped: list[str] = field(default_factory=list)
    guessed: list[str] = field(default_factory=list)
    needed: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        """The codebook as YAML, the report as its header comment (no anchors, no aliases)."""

        class _Dumper(yaml.SafeDumper):
            def ignore_aliases(self, data: Any) -> bool:
                return True

        header = [
            f"# Codebook imported from {self.source} ({self.tool}) by `evalterritoire codebook "
            "import`.",
            "# Review it before use: the guesses below need a confirmation. Format: README.md,",
            "# « Codebook format »; the import: docs/codebook_import.md.",
        ]
        for title, items in (
            ("Not mapped", self.unmapped),
            ("Guessed (confirm)", self.guessed),
            ("Roles no variable plays", self.needed),
        ):
            if items:
                header.append(f"# {title}:")
                header += [f"#   - {item}" for item in items]
        body = yaml.dump(self.data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
        return "\n".join(header) + "\n" + body

    def summary(self) -> str:
        """What the import did, for the command line."""
        variables = self.data.get("variables", [])
        lines = [f"{self.source} ({self.tool}): {len(variables)} variable(s)"]
        for title, items in (
            ("not mapped", self.unmapped),
            ("guessed, to confirm", self.guessed),
            ("roles no variable plays", self.needed),
        ):
            if items:
                lines.append(f"  {title}:")
                lines += [f"    - {item}" for item in items]
        return "\n".join(lines)


#: File suffix → (module of this package, its importer function).
_IMPORTERS: dict[str, tuple[str, str]] = {
    ".xlsx": ("xlsform", "import_xlsform"),
    ".xlsm": ("xlsform", "import_xlsform"),
    ".sav": ("spss", "import_sav"),
    ".lss": ("limesurvey", "import_lss"),
    ".qsf": ("qualtrics", "import_qsf"),
}
_FORMATS = "XLSForm .xlsx, LimeSurvey .lss, SPSS .sav, Qualtrics .qsf"


def import_codebook(source: str | Path) -> ImportResult:
    """Import a questionnaire from its survey tool's file.

    Parameters
    ----------
    source : str or Path
        An XLSForm (``.xlsx``), a LimeSurvey structure file (``.lss``), an SPSS file
        (``.sav``) or a Qualtrics survey file (``.qsf``).

    Returns
    -------
    ImportResult
        The codebook (validated by the codebook loader) and the import report.

    Raises
    ------
    CodebookError
        When the file cannot be read as its format, or the imported codebook does not load
        (the message says why).
    """
    import importlib

    path = Path(source)
    found = _IMPORTERS.get(path.suffix.lower())
    if found is None:
        raise CodebookError(
            f"{path.name}: not a questionnaire file this command reads ({_FORMATS})"
        )
    if not path.is_file():
        raise CodebookError(f"{path}: file not found")
    importer = getattr(importlib.import_module(f"evalterritoire.codebook.{found[0]}"), found[1])
    result = importer(path)
    check_imported(result, path.parent)
    return result


def check_imported(result: ImportResult, base: Path) -> Codebook:
    """Load the imported codebook as the loader would (a failure is an importer bug)."""
    from evalterritoire.codebook.load import _parse

    data = yaml.safe_load(result.to_yaml())
    try:
        return _parse(data, result.source, "", base)
    except CodebookError as exc:
        raise CodebookError(
            f"{result.source}: the imported codebook does not load ({exc}); please report it"
        ) from None
