"""Synthetic survey waves with ground truth (the demo study and the benchmarks)."""

from __future__ import annotations

from evalterritoire.simulate.waves import SimulationResult, simulate_waves

__all__ = [
    "SimulationResult",
    "simulate_waves",
]
