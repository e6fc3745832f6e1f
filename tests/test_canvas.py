"""The caching canvas of the report figures: the bytes of matplotlib's own Agg drawing."""

from __future__ import annotations

import io

import matplotlib as mpl
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from evalterritoire.report import canvas
from evalterritoire.report.figures import DPI, STYLE


def _figure(layout: str | None, title: str) -> Figure:
    fig = Figure(figsize=(5, 3), dpi=DPI, layout=layout)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    ax1.barh([0, 1, 2], [3.2, 1.5, 4.8], color="#0072B2")
    ax1.set_yticks([0, 1, 2], ["Gouvernance\npartagée", "Confiance", "Moyens"])
    ax1.set_title(title)
    ax2.plot([0, 1], [0, 2])
    ax2.annotate("4,8 (n\u00a0=\u00a012)", (4.8, 2), xytext=(5, 0), textcoords="offset points")
    ax2.text(0.5, 1, "angle", rotation=30)
    ax2.set_xlabel("part « fort »", fontsize=8)
    fig.legend(["a"], loc="outside lower center" if layout else "lower center")
    return fig


def _savefig(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


@pytest.mark.parametrize("layout", ["constrained", None])
def test_png_bytes_and_text_layouts_draw_savefigs_bytes(layout):
    canvas.clear_caches()
    original = Text._get_layout
    with mpl.rc_context(STYLE):
        expected = [_savefig(_figure(layout, t)) for t in ("Titre", "Autre titre", "Titre")]
        got = []
        for title in ("Titre", "Autre titre", "Titre"):  # the third reuses the first's layouts
            with canvas.text_layouts():
                assert Text._get_layout is not original
                with canvas.text_layouts():  # nested blocks keep the outer one
                    fig = _figure(layout, title)
                    canvas.new_canvas(fig)
                    got.append(canvas.png_bytes(fig, metadata={"Software": None}))
            assert Text._get_layout is original
    assert got == expected
    assert canvas._TEXT_LAYOUTS
    assert canvas._HEIGHTS
    assert expected[0] != expected[1]  # the comparison can tell figures apart
    canvas.clear_caches()
    assert not canvas._TEXT_LAYOUTS


def test_text_layouts_leave_generic_families_and_other_renderers_alone():
    canvas.clear_caches()
    with mpl.rc_context({"font.family": "sans-serif"}), canvas.text_layouts():
        fig = _figure("constrained", "Titre")
        canvas.new_canvas(fig)
        canvas.png_bytes(fig)
        assert not canvas._TEXT_LAYOUTS  # the font follows rcParams: nothing kept
    with mpl.rc_context(STYLE), canvas.text_layouts():
        fig = _figure("constrained", "Titre")
        FigureCanvasAgg(fig)
        canvas.png_bytes(fig)
        assert not canvas._TEXT_LAYOUTS  # matplotlib's own renderer: nothing kept
    canvas.clear_caches()


def test_paused_gc_restores_the_collector_state():
    import gc

    assert gc.isenabled()
    with canvas.paused_gc():
        assert not gc.isenabled()
        with canvas.paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block leaves the outer one paused
    assert gc.isenabled()
    gc.disable()
    try:
        with canvas.paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # disabled before the block: stays disabled
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), canvas.paused_gc():
        raise RuntimeError
    assert gc.isenabled()
