"""The Agg canvas of the report figures: the same pixels, drawn without repeated work.

Every report draws three or four figures with the same fonts, tick labels, titles and
legends; matplotlib's Agg backend would measure and rasterise each of those texts again in
every figure. :func:`new_canvas` attaches to a figure a canvas that keeps what does not change
between figures, without changing a pixel:

* one renderer per pixel size of figure, shared by the figures of that size
  (:data:`MAX_SHARED_RENDERERS` at most; a renderer clears its pixels before each drawing).
  Matplotlib caches the measure of a text per renderer, so the measures of one figure serve
  all the next ones;
* :class:`CachingRendererAgg` caches the glyph layout of each text (its font, size and
  string) and the bitmap of each glyph at each sub-pixel offset. FreeType renders a glyph
  moved by whole pixels into the same bitmap, moved by as many pixels, so a cached bitmap is
  placed where FreeType would have drawn it: the figure's bytes are the same (the tests
  compare them with Agg's own drawing). Rotated text, mathtext and anything but plain text is
  drawn by Agg itself. The renderer also gives matplotlib's Text each font's ascent, descent
  and line gap, computed once per font and size (Text reads them from the font's tables at
  every layout otherwise);
* :func:`text_layouts` keeps, while a figure is drawn, the layout matplotlib computes for each
  text (string, font, alignment, rotation, dpi): constrained layout measures every text
  twice, the drawing a third time, and the next figures measure the same tick labels again;
* :func:`png_bytes` gives the bytes of ``savefig(format="png")`` with one drawing instead of
  two: ``savefig`` runs a figure's layout engine inside a whole drawing whose output it
  discards, then draws again; here the engine runs alone, then the figure is drawn once;
* :func:`new_figure` gives a figure and its empty axes (:class:`Subplots`) from a kept copy
  of the same skeleton (size, dpi, layout engine, axes grid, rcParams) instead of building
  them again: creating the axes and their ticks was about a quarter of a report's drawing,
  unpickling the same objects costs less than half of that. The kept copy is a pickle of the figure built by
  matplotlib, taken right after its axes were created, so each figure starts from a
  separate copy of that state (its transforms linked to their parents by the parents' ids,
  see :func:`_unpickle`). From the second figure of a skeleton on, the copy also holds
  as many major ticks as the first figure's axes ended with (matplotlib creates ticks as
  they are needed, each a copy of the axis' first tick; a tick the figure does not use is
  neither measured nor drawn); :func:`note_ticks` records those counts;
* :func:`paused_gc` keeps Python's cyclic garbage collector off while a figure is built and
  drawn: matplotlib allocates tens of thousands of containers per figure, which trigger
  collections that traverse every object of the kernel, again and again. The
  collector only frees unreachable cycles, so no drawing changes; it runs again, on a
  heap holding at most one figure's garbage more, as soon as the block ends.

The tests compare every report figure, cold and warm, with matplotlib's own canvas and
``savefig``. Matplotlib is imported on first use only (the module is imported by every report kernel).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "MAX_CACHED_TEXT_LAYOUTS",
    "MAX_SHARED_RENDERERS",
    "MAX_SKELETONS",
    "Subplots",
    "clear_caches",
    "new_canvas",
    "new_figure",
    "note_ticks",
    "paused_gc",
    "png_bytes",
    "text_layouts",
]

#: Most Agg renderers kept for reuse (one per pixel size of figure; about 2 MB each).
MAX_SHARED_RENDERERS = 16
#: Most glyph layouts (texts) and glyph bitmaps kept; both caches are emptied when full.
MAX_CACHED_TEXTS = 4096
MAX_CACHED_GLYPHS = 16384

_RENDERERS: dict[tuple[int, int, float], Any] = {}
_LAYOUTS: dict[tuple[Any, ...], tuple[tuple[Any, int, float, float], ...]] = {}
_GLYPHS: dict[tuple[Any, ...], tuple[Any, int, int]] = {}
_HEIGHTS: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
_TEXT_LAYOUTS: dict[tuple[Any, ...], Any] = {}
#: Most text layouts kept by :func:`text_layouts` (emptied when full).
MAX_CACHED_TEXT_LAYOUTS = 8192
#: Most figure skeletons kept by :func:`new_figure` (a pickle of 10 to 150 kB each).
MAX_SKELETONS = 64
_SKELETONS: dict[tuple[Any, ...], tuple[bytes, bool]] = {}
_TICK_COUNTS: dict[tuple[Any, ...], tuple[tuple[int, int], ...]] = {}
#: Whether :func:`new_figure` reuses skeletons (off: every figure is built by matplotlib).
REUSE_SKELETONS = True
_UNPICKLING = threading.Lock()


def clear_caches() -> None:
    """Forget the shared renderers, glyph layouts and glyph bitmaps."""
    _RENDERERS.clear()
    _LAYOUTS.clear()
    _GLYPHS.clear()
    _HEIGHTS.clear()
    _TEXT_LAYOUTS.clear()
    _SKELETONS.clear()
    _TICK_COUNTS.clear()


def new_canvas(fig: Figure) -> Any:
    """Attach a new caching Agg canvas to ``fig`` (and return it)."""
    return _classes()[0](fig)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Within the block, Python's cyclic garbage collector does not run (nested blocks too).

    Reference counting still frees every object that is not in a cycle; the cycles left
    by the block are collected by the collector's next run after the block.
    """
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def text_layouts() -> Iterator[None]:
    """Within the block, a text's layout is computed once per string, font and alignment.

    Matplotlib lays a text out (its lines' sizes and offsets from its anchor, which depend on
    the string, the font, the alignment, the rotation and the dpi, not on where the text
    is) each time it is measured or drawn: several times per figure (constrained layout
    measures twice, then the drawing) and again in every figure for the same tick labels.
    Within the block, :meth:`matplotlib.text.Text._get_layout` keeps each layout it computes
    for the texts drawn on the caching renderers (no wrapped text, no generic font family,
    whose font follows rcParams); a kept layout is the very value matplotlib computed.
    """
    from matplotlib import rcParams
    from matplotlib.text import Text

    original = Text._get_layout
    if getattr(original, "_evalterritoire_cached", False):  # already inside a block
        yield
        return
    renderer_class = _classes()[1]
    font_rc = tuple(rcParams[k] for k in ("text.hinting", "text.hinting_factor",
                                          "text.kerning_factor", "text.usetex"))  # fmt: skip

    def cached(self, renderer):
        if type(renderer) is not renderer_class or self.get_wrap() or self.get_usetex():
            return original(self, renderer)
        fp = self._fontproperties
        family = tuple(fp.get_family())
        if any(f.lower() in _generic_families() for f in family):
            return original(self, renderer)
        key = (self.get_text(), family, fp.get_style(), fp.get_variant(), fp.get_weight(),
               fp.get_stretch(), fp.get_size_in_points(), fp.get_file(),
               fp.get_math_fontfamily(), self.get_parse_math(), self._linespacing,
               self._get_multialignment(), self.get_rotation(), self.get_rotation_mode(),
               self._horizontalalignment, self._verticalalignment, renderer.dpi,
               self.get_figure(root=True).dpi, font_rc)  # fmt: skip
        layout = _TEXT_LAYOUTS.get(key)
        if layout is None:
            layout = original(self, renderer)
            if len(_TEXT_LAYOUTS) >= MAX_CACHED_TEXT_LAYOUTS:
                _TEXT_LAYOUTS.clear()
            _TEXT_LAYOUTS[key] = layout
        return layout

    cached._evalterritoire_cached = True
    Text._get_layout = cached
    try:
        yield
    finally:
        Text._get_layout = original


class Subplots:
    """How a figure's axes are created: one subplot, or ``fig.subplots(nrows, ncols, **options)``.

    Parameters
    ----------
    nrows, ncols : int
        Grid of subplots; ``0`` (the default) for a single ``fig.add_subplot()``.
    **options
        Keywords of :meth:`matplotlib.figure.Figure.subplots` (``sharey``, ``gridspec_kw``...).
    """

    __slots__ = ("key", "ncols", "nrows", "options")

    def __init__(self, nrows: int = 0, ncols: int = 0, **options: Any) -> None:
        self.nrows, self.ncols, self.options = nrows, ncols, options
        self.key = (nrows, ncols, repr(sorted(options.items())))

    def create(self, fig: Figure) -> Any:
        """Create the axes on ``fig``: the Axes, or the array ``fig.subplots`` returns."""
        if not self.nrows:
            return fig.add_subplot()
        return fig.subplots(self.nrows, self.ncols, **self.options)


def new_figure(
    width: float, height: float, dpi: float, layout: str | None, axes: Subplots
) -> tuple[Figure, Any]:
    """A figure of ``width`` × ``height`` inches with its axes, on a caching canvas.

    The same as ``Figure(figsize=(width, height), dpi=dpi, layout=layout)``, :func:`new_canvas`
    and ``axes.create(fig)``, under the rcParams in force; a skeleton already built under the
    same rcParams is unpickled instead (see the module's docstring). Returns the figure and
    what ``axes.create`` returns.
    """
    import pickle

    from matplotlib import rcParams

    key = (width, height, dpi, layout, axes.key, repr(list(dict.items(rcParams))))
    kept = _SKELETONS.get(key) if REUSE_SKELETONS else None
    counts = _TICK_COUNTS.get(key)
    if kept is None or (counts is not None and not kept[1]):
        fig, made = _build_figure(width, height, dpi, layout, axes)
        if not REUSE_SKELETONS:
            return fig, made
        if counts is not None:
            for ax, (n_x, n_y) in zip(fig.axes, counts, strict=True):
                ax.xaxis.get_major_ticks(n_x)
                ax.yaxis.get_major_ticks(n_y)
        if len(_SKELETONS) >= MAX_SKELETONS:
            del _SKELETONS[next(iter(_SKELETONS))]
        kept = (pickle.dumps((fig, made), protocol=pickle.HIGHEST_PROTOCOL), counts is not None)
        _SKELETONS[key] = kept
    fig, made = _unpickle(kept[0])
    new_canvas(fig)
    fig._evalterritoire_skeleton = key
    return fig, made


def _unpickle(data: bytes) -> Any:
    """Unpickle a skeleton, its transforms linked to their parents by the parents' own ids.

    A matplotlib transform tells its parents (the transforms built on it) that it changed
    through a dict keyed by each parent's ``id()``. Unpickling keeps the keys of the pickled
    objects, whose addresses are free again and soon reused: a transform created later at
    such an address (a tick's, a label's) replaced the entry of another parent, which then
    kept a stale matrix and drew its texts in the wrong place (an axis label shifted in 1 of
    a few hundred figures, depending on the heap). Each unpickled transform's parents are
    keyed again by their ids, with the callback that removes a parent's entry when it dies.
    """
    import pickle
    import weakref

    from matplotlib.transforms import TransformNode

    nodes: list[Any] = []
    with _UNPICKLING:  # the class attribute is swapped meanwhile: one unpickling at a time
        setstate = TransformNode.__setstate__

        def collecting_setstate(self: Any, state: dict[str, Any]) -> None:
            setstate(self, state)
            nodes.append(self)

        TransformNode.__setstate__ = collecting_setstate
        try:
            loaded = pickle.loads(data)
        finally:
            TransformNode.__setstate__ = setstate
    for node in nodes:
        parents: dict[int, Any] = {}
        for ref in node._parents.values():
            parent = ref()
            if parent is not None:
                key = id(parent)
                parents[key] = weakref.ref(parent, lambda _, pop=parents.pop, k=key: pop(k, None))
        node._parents = parents
    return loaded


def note_ticks(fig: Figure) -> None:
    """Record how many major ticks the axes of ``fig`` (from :func:`new_figure`) ended with."""
    key = getattr(fig, "_evalterritoire_skeleton", None)
    if key is None or key in _TICK_COUNTS:
        return
    _TICK_COUNTS[key] = tuple(
        (_major_tick_count(ax.xaxis), _major_tick_count(ax.yaxis)) for ax in fig.axes
    )


def _major_tick_count(axis: Any) -> int:
    """Major ticks the axis has created (0 while its lazy list was never read)."""
    return len(vars(axis).get("majorTicks", ()))


def _build_figure(
    width: float, height: float, dpi: float, layout: str | None, axes: Subplots
) -> tuple[Figure, Any]:
    """The figure and its axes as matplotlib builds them."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    new_canvas(fig)  # a real canvas, so that text can be measured while drawing
    return fig, axes.create(fig)


@functools.cache
def _generic_families() -> frozenset[str]:
    from matplotlib.font_manager import font_family_aliases

    return frozenset(font_family_aliases)


def png_bytes(fig: Figure, metadata: dict[str, Any] | None = None) -> bytes:
    """The PNG of ``fig`` at its own dpi: ``fig.savefig(format="png")``'s bytes, drawn once.

    ``savefig`` runs a figure's layout engine inside a whole drawing with its output switched
    off, then draws it again; here the engine is run alone, then the figure drawn once (with
    its engine off, as ``savefig`` draws it the second time). The tests compare the bytes.
    """
    import io

    from matplotlib import cbook

    canvas = fig.canvas
    engine = fig.get_layout_engine()
    if engine is not None and fig.axes:
        engine.execute(fig)
    buffer = io.BytesIO()
    with fig._cm_set(layout_engine="none"), cbook._setattr_cm(canvas, _is_saving=True):
        canvas.print_png(buffer, metadata=metadata)
    return buffer.getvalue()


@functools.cache
def _classes() -> tuple[type, type]:
    """The canvas and renderer classes (built on first use: matplotlib is imported then)."""
    from matplotlib.backends.backend_agg import (
        FigureCanvasAgg,
        RendererAgg,
        get_hinting_flag,
    )
    from matplotlib.font_manager import font_family_aliases
    from matplotlib.ft2font import RenderMode

    class CachingRendererAgg(RendererAgg):
        """Agg renderer reusing glyph layouts and glyph bitmaps across drawings."""

        def _get_font_height_metrics(self, prop):
            """A font's ascent, descent and line gap (as :class:`~matplotlib.text.Text` computes them).

            Text asks for them each time it lays itself out; they depend on the font and its
            size only, so they are computed once. A generic family (resolved through rcParams)
            falls back to Text's own computation.
            """
            family = tuple(prop.get_family())
            if any(f.lower() in font_family_aliases for f in family):
                return None, None, None
            size = prop.get_size_in_points()
            key = (family, prop.get_style(), prop.get_variant(), prop.get_weight(),
                   prop.get_stretch(), prop.get_file(), size, self.dpi)  # fmt: skip
            metrics = _HEIGHTS.get(key)
            if metrics is None:
                metrics = _height_metrics(prop, size, self.dpi)
                _HEIGHTS[key] = metrics
            return metrics

        def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
            """Draw plain horizontal text from cached layouts and bitmaps (as Agg would)."""
            if ismath or angle != 0:
                return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            font = self._prepare_font(prop)
            flags = get_hinting_flag()
            features = mtext.get_fontfeatures() if mtext is not None else None
            language = mtext.get_language() if mtext is not None else None
            size = prop.get_size_in_points()
            key = (font, size, self.dpi, s, flags, _frozen(features), _frozen(language))
            items = _LAYOUTS.get(key)
            if items is None:
                laid = font._layout(s, flags=flags, features=features, language=language)
                items = tuple((it.ft_object, it.glyph_index, it.x, it.y) for it in laid)
                if len(_LAYOUTS) >= MAX_CACHED_TEXTS:
                    _LAYOUTS.clear()
                _LAYOUTS[key] = items
            antialiased = bool(gc.get_antialiased())
            mode = RenderMode.NORMAL if antialiased else RenderMode.MONO
            for ft_object, glyph_index, dx, dy in items:  # dy is upwards
                # FreeType's pen position in 26.6 fixed point, y upwards (as Agg computes it)
                pen_x = round(0x40 * (x + dx))
                pen_y = round(0x40 * (self.height - y + dy))
                whole_x, whole_y = pen_x >> 6, pen_y >> 6
                glyph_key = (ft_object, size, self.dpi, glyph_index, flags, antialiased,
                             pen_x & 0x3F, pen_y & 0x3F)  # fmt: skip
                cached = _GLYPHS.get(glyph_key)
                if cached is None:
                    cached = _render_glyph(ft_object, size, self.dpi, glyph_index, flags, mode,
                                           pen_x & 0x3F, pen_y & 0x3F, antialiased)  # fmt: skip
                    if len(_GLYPHS) >= MAX_CACHED_GLYPHS:
                        _GLYPHS.clear()
                    _GLYPHS[glyph_key] = cached
                buffer, left, top = cached
                self._renderer.draw_text_image(
                    buffer,
                    left + whole_x,
                    int(self.height) - (top + whole_y) + buffer.shape[0],
                    0,
                    gc,
                )
            return None

    class SharedRendererCanvas(FigureCanvasAgg):
        """Agg canvas drawing on the caching renderer shared by figures of its pixel size."""

        def get_renderer(self) -> RendererAgg:
            width, height = self.get_width_height(physical=True)
            key = (width, height, float(self.figure.dpi))
            renderer = _RENDERERS.get(key)
            if renderer is None:
                if len(_RENDERERS) >= MAX_SHARED_RENDERERS:
                    del _RENDERERS[next(iter(_RENDERERS))]
                renderer = CachingRendererAgg(width, height, self.figure.dpi)
                _RENDERERS[key] = renderer
            self.renderer, self._lastKey = renderer, key
            return renderer

    return SharedRendererCanvas, CachingRendererAgg


def _frozen(value: Any) -> Any:
    """A hashable form of a text's font features or language."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _height_metrics(prop: Any, size: float, dpi: float) -> tuple[Any, Any, Any]:
    """Ascent, descent and line gap of ``prop``'s font in pixels, computed as matplotlib's Text does.

    ``(None, None, None)`` when the font has neither an OS/2 nor an hhea table (Text then
    measures a sample string itself).
    """
    from matplotlib.font_manager import fontManager, get_font

    font = get_font(fontManager._find_fonts_by_props(prop))
    for table_name, linegap_key, ascent_key, descent_key in (
        ("OS/2", "sTypoLineGap", "sTypoAscender", "sTypoDescender"),
        ("hhea", "lineGap", "ascent", "descent"),
    ):
        table = font.get_sfnt_table(table_name)
        if table is None:
            continue
        units_per_em = font.get_sfnt_table("head")["unitsPerEm"]
        scale = 1 / units_per_em * size * dpi / 72  # the same operations, in the same order
        return (table[ascent_key] * scale, -table[descent_key] * scale, table[linegap_key] * scale)
    return None, None, None


def _render_glyph(
    font: Any,
    size: float,
    dpi: float,
    glyph_index: int,
    flags: Any,
    mode: Any,
    frac_x: int,
    frac_y: int,
    antialiased: bool,
) -> tuple[Any, int, int]:
    """A glyph's bitmap at a sub-pixel pen offset, and its left and top relative to the pen.

    The glyph is rendered as Agg renders it (identity matrix, pen at ``frac`` 64ths of a pixel
    right of and above a whole pixel); the bitmap is copied (FreeType reuses its memory).
    """
    import numpy as np

    font.set_size(size, dpi)
    font._set_transform(np.array([[0x10000, 0], [0, 0x10000]]), [frac_x, frac_y])
    bitmap = font._render_glyph(glyph_index, flags, mode)
    buffer = np.array(bitmap.buffer, copy=True)
    if not antialiased:
        buffer *= 0xFF
    return buffer, bitmap.left, bitmap.top
