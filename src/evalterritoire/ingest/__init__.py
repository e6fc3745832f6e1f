"""Ingestion: any survey export → typed valid rows + quarantine + ingestion report.

Modules, in the order of the flow: ``raw`` (the raw text table every reader produces, format
detection, header mapping), ``csv``, ``encoding`` and ``scan`` (delimited text), ``sheets``
(XLSX, SPSS ``.sav``, Parquet), ``parse`` (cell texts → values with the codebook), ``columns``
(the header mapped to the codebook, every mapped column parsed into typed columns), ``checks``
(row checks: required values, duplicate ids per wave, the codebook's cross-column rules),
``validate`` (one raw table to its result, step by step, with the pandera checks), ``schemas``
(the pandera models generated from the codebook), ``frame`` (the typed frame of the valid rows),
``report`` (:class:`IngestResult`, the report and the quarantine table) and ``files`` (one file
end to end, several files combined).
"""

from __future__ import annotations

from evalterritoire.ingest.files import (
    PROFILES,
    SITUATIONS,
    combine_results,
    ingest_file,
    write_ingest_outputs,
)
from evalterritoire.ingest.report import IngestResult

__all__ = [
    "PROFILES",
    "SITUATIONS",
    "IngestResult",
    "combine_results",
    "ingest_file",
    "write_ingest_outputs",
]
