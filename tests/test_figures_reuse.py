"""Report figures drawn from kept skeletons: the bytes of matplotlib's own figures and savefig."""

from __future__ import annotations

import dataclasses

import matplotlib as mpl
import pytest
from _synthetic_reports import (
    differing_figures,
    draw_report_figures,
    make_artefacts,
    make_config,
    savefig_finish,
)
from matplotlib.backends.backend_agg import FigureCanvasAgg

from evalterritoire.report import canvas, figures
from evalterritoire.report.build import build_contexts


@pytest.fixture(scope="module")
def contexts(codebook, tmp_path_factory):
    """The synthetic study's contexts (one territory per stage and the national one)."""
    root = tmp_path_factory.mktemp("reuse")
    return build_contexts(make_config(root), codebook, make_artefacts(codebook))


def _variants(ctx):
    """The context, without the alliances item, and with nothing to draw (every empty branch)."""
    no_alliances = tuple({**r, "alliance_n": 0, "alliance": None} for r in ctx.fragilities)
    empty = {k: () for k in ("fragilities", "composition", "respondents", "wave_scores",
                             "profile", "agreement", "by_type")}  # fmt: skip
    return [
        ctx,
        dataclasses.replace(ctx, fragilities=no_alliances),
        dataclasses.replace(ctx, **empty),
    ]


def _draw_all(contexts) -> dict[str, bytes]:
    return draw_report_figures(contexts, _variants)


def test_reused_skeletons_draw_the_bytes_of_matplotlibs_own_figures(contexts, monkeypatch):
    canvas.clear_caches()
    cold, warm = _draw_all(contexts), _draw_all(contexts)
    assert canvas._TICK_COUNTS
    assert any(with_ticks for _, with_ticks in canvas._SKELETONS.values())  # ticks kept too
    with monkeypatch.context() as patch:
        patch.setattr(canvas, "REUSE_SKELETONS", False)
        patch.setattr(canvas, "new_canvas", FigureCanvasAgg)
        patch.setattr(figures, "new_canvas", FigureCanvasAgg)
        patch.setattr(figures, "_finish", savefig_finish)
        reference = _draw_all(contexts)
    assert len(reference) > 60
    assert len(set(reference.values())) > 30  # the comparison can tell figures apart
    assert differing_figures(cold, reference) == []
    assert differing_figures(warm, reference) == []
    canvas.clear_caches()
    assert not canvas._SKELETONS
    assert not canvas._TICK_COUNTS


def test_new_figure_copies_a_fresh_skeleton_with_the_ticks_the_first_figure_used():
    canvas.clear_caches()
    grid = canvas.Subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    with mpl.rc_context(figures.STYLE):
        fig, (left, _) = canvas.new_figure(5.0, 3.0, figures.DPI, "constrained", grid)
        assert isinstance(fig.canvas, canvas._classes()[0])
        left.set_yticks(range(7), list("abcdefg"), fontsize=8)
        left.plot([0, 1], [0, 6])
        canvas.png_bytes(fig)
        canvas.note_ticks(fig)
        again, (left2, right2) = canvas.new_figure(5.0, 3.0, figures.DPI, "constrained", grid)
        assert again is not fig
        assert again.axes == [left2, right2]
        assert not left2.lines  # a copy of the empty skeleton, not of the drawn figure
        assert len(vars(left2.yaxis)["majorTicks"]) == 7  # created once, in the skeleton
        assert left2.yaxis.majorTicks[3].label1.get_fontsize() == 10  # not the drawn labels'
        assert left2.get_shared_y_axes().joined(left2, right2)
        assert left2.get_gridspec().get_width_ratios() == [3, 2]
    with mpl.rc_context({**figures.STYLE, "font.size": 12}):  # other rcParams: other skeleton
        _, (left3, _) = canvas.new_figure(5.0, 3.0, figures.DPI, "constrained", grid)
        assert len(vars(left3.yaxis)["majorTicks"]) < 7
        assert left3.yaxis.majorTicks[0].label1.get_fontsize() == 12
    assert len(canvas._SKELETONS) == 2
    canvas.clear_caches()


def test_new_figure_without_reuse_builds_every_figure(monkeypatch):
    canvas.clear_caches()
    monkeypatch.setattr(canvas, "REUSE_SKELETONS", False)
    with mpl.rc_context(figures.STYLE):
        fig, ax = canvas.new_figure(4.0, 2.0, figures.DPI, None, figures.ONE_AXES)
    assert fig.axes == [ax]
    assert fig.get_layout_engine() is None
    assert fig.get_size_inches().tolist() == [4.0, 2.0]
    assert not canvas._SKELETONS


def _transform_nodes(fig) -> list:
    """Every matplotlib transform reachable from ``fig`` (its artists, axes, ticks, texts)."""
    import gc

    from matplotlib.transforms import TransformNode

    seen, nodes, todo = {id(fig)}, [], [fig]
    while todo:
        obj = todo.pop()
        if isinstance(obj, TransformNode):
            nodes.append(obj)
        for ref in gc.get_referents(obj):
            module = type(ref).__module__ or ""
            if id(ref) in seen or not (
                module.startswith("matplotlib") or isinstance(ref, dict | list | tuple)
            ):
                continue
            seen.add(id(ref))
            todo.append(ref)
    return nodes


def test_unpickled_transforms_know_their_parents_by_their_own_ids():
    """A transform changed in a copied skeleton invalidates every transform built on it.

    Matplotlib keys a transform's parents by ``id()``; unpickled as they are, the keys were
    the ids of the pickled figure's objects, so a later parent could take another's entry.
    """
    import gc

    canvas.clear_caches()
    grid = canvas.Subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    with mpl.rc_context(figures.STYLE):
        figs = [canvas.new_figure(8.0, 4.6, figures.DPI, "constrained", grid)[0] for _ in range(3)]
    gc.collect()  # the figure the skeleton was pickled from is gone: its addresses are free
    for fig in figs:
        nodes = _transform_nodes(fig)
        assert len(nodes) > 50
        linked = [(key, ref()) for node in nodes for key, ref in node._parents.items()]
        assert len(linked) > 50
        assert all(parent is not None and key == id(parent) for key, parent in linked)
    # changing a transform still reaches what is built on it: the axis label moves with the axes
    fig = figs[0]
    ax = fig.axes[0]
    fig.canvas.get_renderer()
    ax.set_xlabel("Score moyen")
    before = ax.xaxis.label.get_transform().transform((0.5, 0))[0]
    ax.set_position([0.5, 0.1, 0.4, 0.8])
    after = ax.xaxis.label.get_transform().transform((0.5, 0))[0]
    assert after == pytest.approx(0.7 * fig.bbox.width)
    assert after != before
    canvas.clear_caches()
