"""The models of a large wave are fitted in a child process while its estimates run.

The results must not depend on it: the same artefacts and step records, byte for byte, as one
step after the other; the child's messages and errors are the step's.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from evalterritoire import pipeline
from evalterritoire.config import load_study
from evalterritoire.errors import ModelError, StaleArtefactError
from evalterritoire.simulate.waves import simulate_waves

#: What run_estimates and run_models write (besides their step records).
OUTPUTS = (
    "estimates.parquet",
    "smallarea.parquet",
    "national_comparisons.parquet",
    "dimension_alpha.parquet",
    "item_medians.parquet",
    "models.parquet",
    "models_diagnostics.json",
)


@pytest.fixture(scope="module")
def validated(tmp_path_factory) -> Path:
    """A one-wave synthetic study, ingested and clustered (8 territories)."""
    root = tmp_path_factory.mktemp("parallel")
    simulate_waves(root / "surveys", n_territories=8, n_respondents=320, waves=[2025], seed=11)
    study = root / "surveys" / "2025" / "study.toml"
    config = load_study(study)
    codebook = pipeline.load_study_codebook(config)
    pipeline.run_ingest(config, codebook=codebook)
    pipeline.run_maturity(config, codebook=codebook)
    return study


def _copy(validated: Path, to: Path) -> Path:
    shutil.copytree(validated.parents[2], to)
    return to / validated.relative_to(validated.parents[2])


def _run(study: Path, monkeypatch, *, parallel: bool) -> dict[str, bytes]:
    monkeypatch.setattr(pipeline, "PARALLEL_MODELS_MIN_ROWS", 0 if parallel else 10**12)
    config = load_study(study)
    pipeline._run_estimates_and_models(config, pipeline.load_study_codebook(config))
    build = config.build_dir
    files = {name: (build / name).read_bytes() for name in OUTPUTS}
    for record in sorted((build / ".provenance").glob("*.json")):
        files[f".provenance/{record.name}"] = record.read_bytes()
    return files


def test_models_in_a_child_process_write_the_same_bytes_as_one_step_after_the_other(
    validated, tmp_path, monkeypatch, capfd
):
    sequential = _run(_copy(validated, tmp_path / "seq"), monkeypatch, parallel=False)
    seq_err = capfd.readouterr().err
    parallel = _run(_copy(validated, tmp_path / "par"), monkeypatch, parallel=True)
    par_err = capfd.readouterr().err
    assert ".provenance/models.json" in parallel
    assert ".provenance/estimates.json" in parallel
    assert sorted(parallel) == sorted(sequential)
    differing = [name for name in sequential if parallel[name] != sequential[name]]
    assert differing == []
    # the child's line is printed by the parent, after the estimates', as in a sequential run
    for err in (seq_err, par_err):
        assert err.index("estimates 2025") < err.index("models 2025")


def test_a_model_failing_in_the_child_is_the_steps_error_after_the_estimates(
    validated, tmp_path, monkeypatch
):
    study = _copy(validated, tmp_path / "broken")
    text = study.read_text(encoding="utf-8")
    study.write_text(
        text
        + '\n[[models]]\nname = "casse"\nkind = "linear"\nformula = "score_global ~ inconnue"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(pipeline, "PARALLEL_MODELS_MIN_ROWS", 0)
    config = load_study(study)
    with pytest.raises(ModelError, match="unknown column 'inconnue'"):
        pipeline._run_estimates_and_models(config, pipeline.load_study_codebook(config))
    assert (config.build_dir / "estimates.parquet").is_file()  # written before the error
    assert not (config.build_dir / "models.parquet").exists()
    # the build folder is unlocked afterwards: the next step can take it
    pipeline.run_estimates(config)


def test_small_waves_fit_their_models_in_this_process(validated, tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(pipeline, "_models_apart", lambda *a: started.append(a))
    config = load_study(_copy(validated, tmp_path / "small"))
    assert pipeline._response_rows(config) == 320 < pipeline.PARALLEL_MODELS_MIN_ROWS
    pipeline._run_estimates_and_models(config, pipeline.load_study_codebook(config))
    assert started == []


def test_errors_cross_processes_with_their_attributes():
    error = StaleArtefactError("stale", step="models", build_dir="/b")
    error.exit_code = 3
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is StaleArtefactError
    assert (str(again), again.step, again.build_dir, again.exit_code) == (
        "stale",
        "models",
        "/b",
        3,
    )
    again = pickle.loads(pickle.dumps(ModelError("bad", exit_code=4)))
    assert (type(again), str(again), again.exit_code) == (ModelError, "bad", 4)


def test_the_models_process_ends_when_the_run_is_killed(validated, tmp_path):
    """``SIGKILL`` of the run while its estimates are under way: its models' process ends too."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    study = _copy(validated, tmp_path / "killed")
    assert not (tmp_path / "killed" / "build" / "2025" / "models.parquet").exists()
    script = (
        "import time\n"
        "from evalterritoire import pipeline\n"
        "from evalterritoire.config import load_study\n"
        "pipeline.PARALLEL_MODELS_MIN_ROWS = 0\n"
        "pipeline.run_estimates = lambda *a, **k: time.sleep(300)\n"
        "if __name__ == '__main__':\n"
        f"    config = load_study({str(study)!r})\n"
        "    pipeline._run_estimates_and_models(config, pipeline.load_study_codebook(config))\n"
    )
    path = tmp_path / "run.py"
    path.write_text(script, encoding="utf-8")
    run = subprocess.Popen([sys.executable, str(path)], stderr=subprocess.DEVNULL)
    parent = psutil.Process(run.pid)
    seen: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "killed" / "build" / "2025" / "models.parquet").exists():
            assert run.poll() is None, "the run ended before its models were written"
            assert time.monotonic() < deadline, "the models were never written"
            time.sleep(0.2)
        seen = parent.children(recursive=True)
        assert seen, "the models were not fitted in a child process"
        run.kill()
        run.wait(30)
        _, alive = psutil.wait_procs(seen, timeout=20)
        assert [p.pid for p in alive] == []
    finally:
        for process in [*seen, parent]:
            with contextlib.suppress(psutil.Error, OSError):
                os.kill(process.pid, signal.SIGKILL)
        run.wait(30)


def test_a_models_process_killed_is_one_clear_error(validated, tmp_path, monkeypatch):
    """The models' process dies (the kernel's OOM killer): a ModelError naming what to re-run."""
    import os
    import signal
    import time

    import psutil

    config = load_study(_copy(validated, tmp_path / "oom"))
    killed = []

    def estimates_then_kill(*args, **kwargs):
        deadline = time.monotonic() + 60
        while not killed:
            for child in psutil.Process(os.getpid()).children():
                if "spawn_main" in " ".join(child.cmdline()):
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
            assert time.monotonic() < deadline, "no models process was started"
            time.sleep(0.05)

    monkeypatch.setattr(pipeline, "PARALLEL_MODELS_MIN_ROWS", 0)
    monkeypatch.setattr(pipeline, "run_estimates", estimates_then_kill)
    with pytest.raises(ModelError, match=r"ended abruptly .*`evalterritoire model "):
        pipeline._run_estimates_and_models(config, pipeline.load_study_codebook(config))
    assert killed
