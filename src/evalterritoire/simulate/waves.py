"""Synthetic survey waves with known ground truth, for the demo study and for tests.

:func:`simulate_waves` writes, for each wave, a raw export that looks like a real French
LimeSurvey or Sphinx export (``;`` separator, decimal comma, French answer labels, "NSP",
blank cells, multi-select answers joined in one cell, ``dd/mm/yyyy`` dates), the wave's
``study.toml``, the calibration margins and a territory-level context file. The ground truth
(true stage of every territory in every wave, the coefficients that generated the model
outcomes, the fragility ↔ context links, seed and parameters) goes to a separate directory,
``<out>/ground_truth/``, which the pipeline never reads.

Generative model (one latent per respondent and maturity dimension, on the 1–5 Likert scale)::

    eta[i, d] = PROFILE[stage(t), d] + tau[t, d] + drift[t, d, wave]
                + TYPE_EFFECT[type(i)] + BETA_CHOMAGE * (ctx_taux_chomage[t] - 8.5)
                + halo[i] + noise[i, d]
    item j of d: clip(rint(eta[i, d] + offset[j] + noise[i, j]), 1, 5); reverse-coded: 6 - that

Stages follow a Markov chain between consecutive waves (most territories stay, some move up one
stage, a few move down one). Everything is drawn from one seeded :class:`numpy.random.Generator`
tree (``SeedSequence(seed)``), so the same arguments give byte-identical files.

Layout
------
This module holds the orchestration (:func:`simulate_waves`, :class:`SimulationResult`, and
``_generate``, which runs every random draw in order); the building blocks live in the sibling
modules ``params`` (the generating model's parameters: ``PROFILE``, ``TRANSITIONS``,
``MIX_SD_TERRITORY``, ``MIX_SD_RESIDUAL``…), ``population`` (territories, context, PSU frame,
true stages), ``answers`` (one wave: respondents, weights, latent maturity, every answer),
``export`` (the messy Sphinx / LimeSurvey raw export in the French locale), ``study`` (margins,
``study.toml``, CSV writer, README) and ``truth`` (model specifications with their true
coefficients, ``truth.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalterritoire.codebook import Codebook, load_codebook
from evalterritoire.errors import StudyConfigError
from evalterritoire.simulate.answers import _simulate_wave
from evalterritoire.simulate.export import _TOOLS, _write_export
from evalterritoire.simulate.params import N_STAGES
from evalterritoire.simulate.population import _build_population, _Population
from evalterritoire.simulate.study import (
    _README,
    _fmt_ctx,
    _geometry,
    _margins,
    _study_toml,
    _write_csv,
)
from evalterritoire.simulate.truth import _model_specs, _truth

__all__ = ["SimulationResult", "simulate_waves"]


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate_waves` wrote.

    Attributes
    ----------
    out_dir : Path
        Root output directory.
    waves : tuple of int
        Simulated waves, in order.
    n_territories, n_respondents, seed : int
        Parameters of the simulation.
    study_files : tuple of Path
        One ``study.toml`` per wave.
    exports : tuple of Path
        One raw export per wave.
    truth_path : Path
        ``ground_truth/truth.json``.
    files : tuple of Path
        Every file written, sorted.
    stage_counts : mapping of int to tuple of int
        Number of territories in each true stage (0..3), per wave.
    """

    out_dir: Path
    waves: tuple[int, ...]
    n_territories: int
    n_respondents: int
    seed: int
    study_files: tuple[Path, ...]
    exports: tuple[Path, ...]
    truth_path: Path
    files: tuple[Path, ...] = ()
    stage_counts: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    def summary(self) -> str:
        """One human-readable paragraph (used by ``evalterritoire simulate``)."""
        lines = [
            f"SYNTHETIC data: {len(self.waves)} wave(s) ({', '.join(map(str, self.waves))}), "
            f"{self.n_territories} territories, {self.n_respondents} respondents per wave, "
            f"seed {self.seed} → {self.out_dir}",
        ]
        for wave, study, export in zip(self.waves, self.study_files, self.exports, strict=True):
            counts = " / ".join(str(c) for c in self.stage_counts.get(wave, ()))
            lines.append(f"  {wave}: {export.name} · {study.name} · true stages 0–3: {counts}")
        lines.append(f"  ground truth (never read by the pipeline): {self.truth_path}")
        lines.append(f"  {len(self.files)} files written")
        return "\n".join(lines)


# --------------------------------------------------------------------------- entry point
def simulate_waves(
    out_dir: str | Path,
    *,
    n_territories: int,
    n_respondents: int,
    waves: Sequence[int],
    seed: int,
    codebook: Codebook | str | Path | None = None,
) -> SimulationResult:
    """Write synthetic raw exports, study files, margins, context and ground truth.

    Parameters
    ----------
    out_dir : str or Path
        Output root; each wave goes to ``<out_dir>/<wave>/`` and the ground truth to
        ``<out_dir>/ground_truth/``.
    n_territories : int
        Number of territories (≥ 4 so that all four stages are present).
    n_respondents : int
        Respondents per wave (≥ 4 per territory).
    waves : sequence of int
        Wave years, e.g. ``[2023, 2024, 2025]`` (distinct).
    seed : int
        Seed of the random generator; the same arguments give byte-identical files.
    codebook : Codebook, path or None
        Codebook describing the instrument (default: the codebook shipped with the package).

    Returns
    -------
    SimulationResult
        Paths written and a :meth:`SimulationResult.summary`.

    Raises
    ------
    StudyConfigError
        When the parameters cannot produce a valid study.
    """
    waves = _checked_waves(waves, n_territories, n_respondents, seed)
    cb = codebook if isinstance(codebook, Codebook) else load_codebook(codebook)
    out = Path(out_dir)
    data = _generate(cb, n_territories, n_respondents, waves, seed)
    pop: _Population = data["population"]
    specs = _model_specs(cb)
    study_files, exports, written = [], [], []
    for i in range(len(waves)):
        export, margins, context, study = _write_wave(out, i, waves, data, cb, seed, specs)
        written += [export, margins, context, study]
        exports.append(export)
        study_files.append(study)
    stages_csv, truth_path = _write_ground_truth(
        out / "ground_truth", cb, pop, waves, seed, n_territories, n_respondents, specs, data
    )
    readme = _write_readme(out, n_territories, n_respondents, waves, seed, n_strata=len(pop.fpc))
    written += [stages_csv, truth_path, readme]
    counts = {
        wave: tuple(int((pop.stages[i] == s).sum()) for s in range(N_STAGES))
        for i, wave in enumerate(waves)
    }
    return SimulationResult(
        out_dir=out,
        waves=waves,
        n_territories=n_territories,
        n_respondents=n_respondents,
        seed=seed,
        study_files=tuple(study_files),
        exports=tuple(exports),
        truth_path=truth_path,
        files=tuple(sorted(written)),
        stage_counts=counts,
    )


def _checked_waves(
    waves: Sequence[int], n_territories: int, n_respondents: int, seed: int
) -> tuple[int, ...]:
    """The waves as a tuple of years, once the parameters are known to give a valid study."""
    waves = tuple(int(w) for w in waves)
    if not waves or len(set(waves)) != len(waves) or list(waves) != sorted(waves):
        raise StudyConfigError(f"waves must be distinct increasing years, got {list(waves)}")
    if any(not 1990 <= w <= 2100 for w in waves):
        raise StudyConfigError(f"waves must be years between 1990 and 2100, got {list(waves)}")
    if n_territories < N_STAGES:
        raise StudyConfigError(f"need at least {N_STAGES} territories, got {n_territories}")
    if n_respondents < 4 * n_territories:
        raise StudyConfigError(
            f"need at least 4 respondents per territory ({4 * n_territories}), got {n_respondents}"
        )
    if seed < 0:
        raise StudyConfigError(f"seed must be ≥ 0, got {seed}")
    return waves


def _write_wave(
    out: Path,
    i: int,
    waves: Sequence[int],
    data: Mapping[str, Any],
    cb: Codebook,
    seed: int,
    specs: Sequence[Mapping[str, Any]],
) -> tuple[Path, Path, Path, Path]:
    """One wave's folder: raw export, margins, territory context and ``study.toml``.

    The first of several waves comes from one survey tool, the later ones from the other.
    """
    pop: _Population = data["population"]
    wave = waves[i]
    tool = _TOOLS[0] if i == 0 and len(waves) > 1 else _TOOLS[1]
    wdir = out / str(wave)
    wdir.mkdir(parents=True, exist_ok=True)
    export = wdir / f"export_{tool}_{wave}.csv"
    _write_export(export, data["waves"][i], pop, cb, tool)
    margins = wdir / f"marges_{wave}.csv"
    _write_csv(margins, ["variable", "level", "total"], data["margins"][i])
    context = wdir / "contexte_territoires.csv"
    ctx_vars = [v.id for v in cb.variables if v.level == "territory" and v.id in pop.context]
    order = np.argsort(pop.codes)
    _write_csv(
        context,
        [cb.require("territory", "the territory context file"), *ctx_vars],
        [[pop.codes[t], *(_fmt_ctx(pop.context[c][t]) for c in ctx_vars)] for t in order],
    )
    geometry = _geometry(pop.codes, pop.names, pop.region, seed)
    (wdir / "territoires.geojson").write_bytes(geometry.encode("utf-8"))
    study = wdir / "study.toml"
    study.write_bytes(_study_toml(wave, waves, export.name, tool, seed, specs).encode("utf-8"))
    return export, margins, context, study


def _write_ground_truth(
    gt: Path,
    cb: Codebook,
    pop: _Population,
    waves: Sequence[int],
    seed: int,
    n_territories: int,
    n_respondents: int,
    specs: Sequence[Mapping[str, Any]],
    data: Mapping[str, Any],
) -> tuple[Path, Path]:
    """``stages.csv`` (true stage of every territory in every wave), then ``truth.json``."""
    gt.mkdir(parents=True, exist_ok=True)
    stages_csv = gt / "stages.csv"
    rows = sorted(
        (pop.codes[t], wave, int(pop.stages[i, t]))
        for i, wave in enumerate(waves)
        for t in range(n_territories)
    )
    _write_csv(stages_csv, ["territory", "wave", "true_stage"], rows)
    truth_path = gt / "truth.json"
    truth = _truth(cb, pop, waves, seed, n_territories, n_respondents, specs, data)
    truth_path.write_bytes(
        (json.dumps(truth, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")
    )
    return stages_csv, truth_path


def _write_readme(
    out: Path,
    n_territories: int,
    n_respondents: int,
    waves: Sequence[int],
    seed: int,
    *,
    n_strata: int,
) -> Path:
    """``README.md``: synthetic data, and the command that writes it again."""
    readme = out / "README.md"
    command = (
        f"evalterritoire simulate --territories {n_territories} --respondents {n_respondents} "
        f"--waves {','.join(map(str, waves))} --seed {seed} --out {out.name or out}"
    )
    readme.write_bytes(
        _README.format(
            command=command,
            first=waves[0],
            n_territories=n_territories,
            n_strata=n_strata,
            n_respondents=n_respondents,
        ).encode("utf-8")
    )
    return readme


def _generate(
    cb: Codebook, n_territories: int, n_respondents: int, waves: Sequence[int], seed: int
) -> dict[str, Any]:
    """All random draws (no I/O): population, waves, margins."""
    dims = list(cb.dimensions)
    seq = np.random.SeedSequence(seed)
    pop_seq, *wave_seqs = seq.spawn(1 + len(waves))
    pop = _build_population(np.random.default_rng(pop_seq), n_territories, len(waves), dims)
    out_waves, margins = [], []
    for i, (wave, ws) in enumerate(zip(waves, wave_seqs, strict=True)):
        rng = np.random.default_rng(ws)
        wv = _simulate_wave(rng, pop, cb, i, wave, n_respondents, dims)
        out_waves.append(wv)
        margins.append(_margins(rng, wv, pop, cb))
    return {"population": pop, "waves": out_waves, "margins": margins, "dims": dims}
