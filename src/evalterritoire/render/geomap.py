"""The index's map: territories coloured by stage, drawn as inline SVG from the study's geometry.

A study may declare territory outlines (``[report] geometry = "territoires.geojson"``): a GeoJSON
``FeatureCollection`` of ``Polygon`` / ``MultiPolygon`` features in longitude/latitude (WGS 84),
each naming its territory by the feature's ``id`` member (else its ``code`` property).
:func:`load_geometry` reads it with bounds (file size, number of features and of vertices) and
raises :class:`~evalterritoire.errors.RenderError` with one clear message for a file it cannot
use. :func:`render_stage_map` draws the outlines as one inline ``<svg>`` (equirectangular
projection scaled by the cosine of the mean latitude, coordinates rounded, so the output is
deterministic and small): each territory of the wave is a link to its report, filled with its
stage's colour (an ordered sequential palette, darker for later stages) and titled with its name
and stage; territories of the file absent from the wave are drawn grey without a link. An HTML
legend (stage, colour swatch, count) follows the map and the SVG carries a title and a
description, so the map is readable without colour and by a screen reader. Nothing is loaded
from the network.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from evalterritoire.errors import RenderError

__all__ = ["TerritoryShape", "load_geometry", "render_stage_map", "stage_colours"]

#: Largest geometry file read (bytes), features and vertices accepted.
MAX_GEOMETRY_BYTES = 50 * 1024 * 1024
MAX_FEATURES = 50_000
MAX_VERTICES = 2_000_000
_NO_DATA = "#d9d9d9"
_WIDTH = 640.0


@dataclass(frozen=True)
class TerritoryShape:
    """One territory's outline: its code and its rings (each a tuple of (lon, lat) points)."""

    code: str
    rings: tuple[tuple[tuple[float, float], ...], ...]


def _rings(geometry: Mapping, where: str) -> list[tuple[tuple[float, float], ...]]:
    kind = geometry.get("type") if isinstance(geometry, Mapping) else None
    coords = geometry.get("coordinates") if isinstance(geometry, Mapping) else None
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = coords
    else:
        raise RenderError(f"{where}: geometry must be a Polygon or MultiPolygon, got {kind!r}")
    rings = []
    try:
        for polygon in polygons:
            for ring in polygon:
                points = tuple((float(p[0]), float(p[1])) for p in ring)
                if len(points) < 3 or not all(map(math.isfinite, sum(points, ()))):
                    raise ValueError
                rings.append(points)
    except (TypeError, ValueError, IndexError):
        raise RenderError(
            f"{where}: invalid coordinates (expected [[lon, lat], …] rings)"
        ) from None
    return rings


def load_geometry(path: str | Path) -> list[TerritoryShape]:
    """Read a GeoJSON file of territory outlines.

    Parameters
    ----------
    path : str or Path
        A GeoJSON ``FeatureCollection``; each feature names its territory by its ``id`` member
        (else a ``code`` property) and has a ``Polygon`` or ``MultiPolygon`` geometry.

    Returns
    -------
    list of TerritoryShape
        One shape per feature, sorted by code.

    Raises
    ------
    RenderError
        For a missing, oversized or malformed file, a feature without a code, a duplicated code.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RenderError(f"territory geometry {path}: {exc.strerror or exc}") from None
    if size > MAX_GEOMETRY_BYTES:
        raise RenderError(
            f"territory geometry {path}: {size} bytes, more than {MAX_GEOMETRY_BYTES}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RenderError(f"territory geometry {path}: not GeoJSON ({exc})") from None
    features = data.get("features") if isinstance(data, Mapping) else None
    if data.get("type") != "FeatureCollection" or not isinstance(features, list):
        raise RenderError(f"territory geometry {path}: expected a GeoJSON FeatureCollection")
    if len(features) > MAX_FEATURES:
        raise RenderError(f"territory geometry {path}: more than {MAX_FEATURES} features")
    shapes: dict[str, TerritoryShape] = {}
    n_points = 0
    for i, feature in enumerate(features):
        where = f"territory geometry {path}, feature {i + 1}"
        if not isinstance(feature, Mapping):
            raise RenderError(f"{where}: not a GeoJSON feature")
        props = feature.get("properties") or {}
        code = feature.get("id", props.get("code") if isinstance(props, Mapping) else None)
        if code is None or str(code).strip() == "":
            raise RenderError(f"{where}: no territory code (feature 'id' or property 'code')")
        code = str(code)
        if code in shapes:
            raise RenderError(f"{where}: territory {code} appears twice")
        rings = _rings(feature.get("geometry") or {}, where)
        n_points += sum(len(r) for r in rings)
        if n_points > MAX_VERTICES:
            raise RenderError(f"territory geometry {path}: more than {MAX_VERTICES} vertices")
        shapes[code] = TerritoryShape(code, tuple(rings))
    return [shapes[c] for c in sorted(shapes)]


def stage_colours(n_stages: int) -> list[str]:
    """An ordered sequential palette (light → dark) of ``n_stages`` colours, as ``#rrggbb``."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["YlGnBu"]
    if n_stages <= 1:
        return [to_hex(cmap(0.6))]
    return [to_hex(cmap(0.25 + 0.7 * i / (n_stages - 1))) for i in range(n_stages)]


def _projector(shapes: Sequence[TerritoryShape]):
    """Equirectangular projection into a ``_WIDTH``-wide box; returns (project, height)."""
    lons = [x for s in shapes for r in s.rings for x, _ in r]
    lats = [y for s in shapes for r in s.rings for _, y in r]
    x0, x1, y0, y1 = min(lons), max(lons), min(lats), max(lats)
    k = math.cos(math.radians((y0 + y1) / 2))
    span = max((x1 - x0) * k, y1 - y0, 1e-9)
    scale = (_WIDTH - 10) / span
    height = (y1 - y0) * scale + 10

    def project(lon: float, lat: float) -> tuple[float, float]:
        return 5 + (lon - x0) * k * scale, 5 + (y1 - lat) * scale

    return project, height


def _path(shape: TerritoryShape, project) -> str:
    parts = []
    for ring in shape.rings:
        pts = [project(x, y) for x, y in ring]
        parts.append("M" + " L".join(f"{x:.1f} {y:.1f}" for x, y in pts) + " Z")
    return " ".join(parts)


def render_stage_map(
    shapes: Sequence[TerritoryShape],
    territories: Sequence[Mapping[str, object]],
    stage_names: Sequence[str],
) -> str:
    """An inline SVG map of territories coloured by stage, each linking to its report.

    Parameters
    ----------
    shapes : sequence of TerritoryShape
        Outlines (:func:`load_geometry`).
    territories : sequence of mapping
        One row per territory of the wave: ``code``, ``name``, ``stage`` (int or None),
        ``href`` (its report, relative to the page).
    stage_names : sequence of str
        Stage labels, in maturity order.

    Returns
    -------
    str
        A ``<figure>`` holding the SVG and its legend (safe HTML).
    """
    if not shapes:
        return ""
    e = html.escape
    colours = stage_colours(len(stage_names))
    by_code = {str(t["code"]): t for t in territories}
    project, height = _projector(shapes)
    counts = [0] * len(stage_names)
    items = []
    for shape in shapes:
        row = by_code.get(shape.code)
        d = _path(shape, project)
        if row is None:
            items.append(f'<path d="{d}" fill="{_NO_DATA}" class="et-map-nodata"/>')
            continue
        stage = row.get("stage")
        known = isinstance(stage, int) and 0 <= stage < len(stage_names)
        if known:
            counts[stage] += 1
        label = stage_names[stage] if known else "stade non calculé"
        fill = colours[stage] if known else _NO_DATA
        items.append(
            f'<a href="{e(str(row["href"]))}"><path d="{d}" fill="{fill}">'
            f"<title>{e(str(row['name']))} — {e(label)}</title></path></a>"
        )
    missing = sum(1 for t in territories if str(t["code"]) not in {s.code for s in shapes})
    return _figure(items, height, stage_names, colours, counts, missing)


def _figure(
    items: list[str],
    height: float,
    stage_names: Sequence[str],
    colours: Sequence[str],
    counts: Sequence[int],
    missing: int,
) -> str:
    from evalterritoire.report.french import fmt_count

    e = html.escape
    legend = "".join(
        f'<li><span class="et-swatch" style="background:{c}" aria-hidden="true"></span>'
        f"{e(name)} ({fmt_count(n)})</li>"
        for name, c, n in zip(stage_names, colours, counts, strict=True)
    )
    desc = "Territoires coloriés selon leur stade de maturité ; chacun mène à son rapport."
    note = (
        f'<p class="et-map-note">{fmt_count(missing)} territoire(s) sans contour déclaré.</p>'
        if missing
        else ""
    )
    return (
        '<figure class="et-map">'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH:.0f} {height:.0f}" '
        'role="img" aria-labelledby="et-map-title et-map-desc" class="et-map-svg">'
        '<title id="et-map-title">Carte des territoires par stade</title>'
        f'<desc id="et-map-desc">{desc}</desc>'
        '<g stroke="#ffffff" stroke-width="0.8">' + "".join(items) + "</g></svg>"
        '<figcaption><ul class="et-legend" aria-label="Légende : stades de maturité">'
        f'{legend}<li><span class="et-swatch" style="background:{_NO_DATA}" aria-hidden="true">'
        "</span>hors vague ou sans stade</li></ul>"
        f"{note}</figcaption></figure>"
    )
