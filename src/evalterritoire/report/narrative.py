"""The written parts of a territory report, built from its own figures by rules (no model).

Every sentence is a template of the report spec (``narrative.sentences``,
:mod:`.phrases`) filled with the territory's figures, French-formatted. Only figures a reader may
be given are used: a record whose ``status`` is ``suppressed`` (or that has no value) is never
stated, a ``fragile`` one (or, without a status, one flagged small-n) is stated with the
spec's caution words. Nothing depends on anything but the context, so the text is deterministic.

- **L'essentiel** (:func:`essentiel`): the stage and how certain it is (membership probability,
  « entre deux stades », what respondents declare, indicative when few answered); three
  strengths and three points of attention from the dimension scores and the milestones — read
  against the reading bands when the stage allows threshold verdicts, else against the mean of
  the territories of the same stage (never a band label where the grid forbids verdicts); the
  change since the last wave; the comparison with its statistically similar territories
  (:mod:`.neighbours`).
- **Answers** (:func:`answers`): under each evaluative question of the stage, up to three
  sentences from the items and sections the spec declares for it, or a plain statement that
  the survey does not measure it or that too few answered.
- **Recommendations** (:func:`recommendations`): the grid's recommendations of the stage,
  ordered by how weak the dimensions they address are and how far their milestones are from
  being met; the first :data:`N_RECOMMENDATIONS` are proposed, each with its reason.
- **Models** (``model_sentences``): what the national models estimate for the territory's
  stage against the first stage, one plain sentence per model (the coefficient tables stay in
  the synthesis).
- **Change of stage** (:func:`stage_change`): since the previous wave, the stage move and the
  dimensions that moved beyond their margin of error (1,96 standard errors of the difference).

Owns :func:`narrative_fields`, which returns the context fields of all of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evalterritoire.codebook import Codebook
from evalterritoire.report.context import SMALL_CELL, ReportContext, _num
from evalterritoire.report.french import (
    NBSP,
    fmt_count,
    fmt_interval,
    fmt_n,
    fmt_number,
    fmt_percent,
    fmt_words,
)
from evalterritoire.report.phrases import (
    GROUP_SENTENCE_KEYS,
    NarrativeSpec,
    join_fr,
    lower_first,
    ordinal_fr,
    plural_fr,
)

__all__ = ["N_RECOMMENDATIONS", "chosen_group_comparison", "narrative_fields"]

#: Recommendations proposed to each territory.
N_RECOMMENDATIONS = 3
#: Strengths and points of attention in « L'essentiel ».
N_POINTS = 3
#: Sentences at most under one evaluative question.
N_ANSWER_SENTENCES = 3
#: A stage membership probability from this value is « solide ».
CERTAIN = 0.9
#: A milestone is in place when at least this share of respondents says yes.
MILESTONE_DONE = 0.5

Records = Callable[[Sequence[str]], list[dict[str, Any]]]


def narrative_fields(
    ctx: ReportContext,
    spec: NarrativeSpec,
    codebook: Codebook,
    records: Records,
    group: Mapping[str, Any],
    section_items: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The narrative fields of a territory context.

    Parameters
    ----------
    ctx : ReportContext
        The territory's context (figures, stage, grid entry, history).
    spec : NarrativeSpec
        Sentence templates, answers and recommendation targets.
    codebook : Codebook
        Item labels and scales.
    records : callable
        Item ids → the territory's estimate records of those items.
    group : mapping
        The territory's entry of :func:`~evalterritoire.report.neighbours.nearest_neighbours`.
    section_items : mapping, optional
        ``composition`` and ``barriers`` → their multi-select item (labels of the answers).

    Returns
    -------
    dict
        ``essentiel``, ``answers``, ``recommendations``, ``recommendation_reasons``,
        ``stage_change``, ``model_sentences``, ``neighbours`` and ``profile`` (each dimension gains ``neighbours``,
        the group's mean score).
    """
    w = _Writer(ctx, spec, codebook, group.get("means", {}), section_items or {})
    chosen = w.recommendations()
    return {
        "essentiel": w.essentiel(len(group.get("neighbours", ()))),
        "answers": tuple(w.answers(records)),
        "recommendations": tuple(text for text, _ in chosen),
        "recommendation_reasons": tuple(reason for _, reason in chosen),
        "stage_change": w.stage_change(),
        "model_sentences": tuple(w.model_sentences()),
        "neighbours": tuple(group.get("neighbours", ())),
        "profile": tuple({**p, "neighbours": w.group.get(p["dimension"])} for p in ctx.profile),
        "group_sentences": {k: spec.sentences[k] for k in GROUP_SENTENCE_KEYS},
    }


def chosen_group_comparison(
    ctx: ReportContext, means: Mapping[str, float], n_territories: int
) -> list[str]:
    """The « L'essentiel » sentence comparing a territory with a group chosen at render time.

    Parameters
    ----------
    ctx : ReportContext
        The territory's context; its ``group_sentences`` (the report spec's ``chosen_group_*``
        templates, written at build time) word the sentence.
    means : mapping of str to float
        The group's mean score of each dimension.
    n_territories : int
        Size of the group.

    Returns
    -------
    list of str
        One sentence, or none when the context carries no templates or the group no score.
    """
    if not ctx.group_sentences:
        return []
    spec = NarrativeSpec(sentences=dict(ctx.group_sentences))
    writer = _Writer(ctx, spec, None, means, {})  # type: ignore[arg-type]  # no item label read
    return writer.comparison(n_territories, prefix="chosen_group")


def _usable(rec: Mapping[str, Any], key: str = "estimate") -> tuple[float, bool] | None:
    """(value, is_fragile), or None when the figure may not be stated.

    The record's publication ``status`` decides; without one (contexts built before the
    publication rules), a figure on fewer than :data:`SMALL_CELL` respondents is not stated and
    one flagged small-n is fragile.
    """
    value = _num(rec.get(key))
    status = rec.get("status")
    if value is None or status == "suppressed":
        return None
    if status is None:
        n = _num(rec.get("n"))
        if n is not None and n < SMALL_CELL:
            return None
        return value, bool(rec.get("is_small_n"))
    return value, status == "fragile"


def _signed(value: float) -> str:
    text = fmt_number(value, 1)
    return text if text.startswith("−") or text == "0,0" else "+" + text


class _Writer:
    """Sentences of one territory's report."""

    def __init__(
        self,
        ctx: ReportContext,
        spec: NarrativeSpec,
        codebook: Codebook,
        group: Mapping[str, float],
        section_items: Mapping[str, str],
    ) -> None:
        self.ctx, self.spec, self.codebook, self.group = ctx, spec, codebook, group
        self.section_items = section_items
        lo, hi = (float(v) for v in ctx.score_range)
        self.lo, self.hi, self.span = lo, hi, (hi - lo) or 1.0
        self.max = fmt_number(hi, 0)
        # an indicative report (too few respondents) gets no threshold verdict, like its profile
        self.bands = [] if ctx.is_indicative else list(ctx.stage_grid.get("bands") or ())

    # ------------------------------------------------------------------ shared
    def say(self, key: str, fragile: bool = False, **values: Any) -> str:
        text = self.spec.sentence(key, **values)
        # an indicative report says once that all its figures are indicative
        if fragile and not self.ctx.is_indicative:
            caution = self.spec.sentence("fragile")
            text = (text[:-1] if text.endswith(".") else text) + " " + caution + "."
        return text

    def scores(self) -> list[dict[str, Any]]:
        """Dimension records with a usable score, their reference and their gap to it."""
        out = []
        for p in self.ctx.profile:
            got = _usable(p, "score")
            if got is None:
                continue
            ref = _num(p.get("centroid"))
            ref = ref if ref is not None else _num(p.get("national"))
            fragile = got[1]
            gap = got[0] - ref if ref is not None else 0.0
            out.append({**p, "value": got[0], "fragile": fragile, "ref": ref, "gap": gap})
        return out

    def milestones(self) -> list[dict[str, Any]]:
        out = []
        for m in self.ctx.milestones:
            got = _usable(m)
            if got is not None:
                out.append({**m, "value": got[0], "fragile": got[1], "name": self.short(m)})
        return out

    def short(self, rec: Mapping[str, Any]) -> str:
        var = str(rec.get("variable", ""))
        if var in self.codebook:
            v = self.codebook[var]
            return v.label_short or f"« {v.label_fr.rstrip('. ')} »"
        return f"« {rec.get('label', var)} »"

    # ------------------------------------------------------------------ L'essentiel
    def essentiel(self, n_neighbours: int) -> dict[str, Any]:
        strengths, attention = self.points()
        return {
            "stage": self.stage_sentences(),
            "strengths": strengths,
            "attention": attention,
            "change": self.change_sentences(),
            "comparison": self.comparison(n_neighbours),
        }

    def stage_sentences(self) -> list[str]:
        ctx = self.ctx
        if ctx.stage is None:
            return []
        p = ctx.stage_probability
        # never a bare « 100 % »: a probability rounded to certainty is said as a bound
        shown = f"plus de 99{NBSP}%" if p is not None and float(p) >= 0.99 else fmt_percent(p)
        common = {"stade": ctx.stage_label, "probabilite": shown}
        rank = {"rang": ordinal_fr(ctx.stage + 1), "n_stades": fmt_words(ctx.n_stages)}
        if ctx.between_stages:
            out = [
                self.say(
                    "stage_between",
                    autre_stade=ctx.other_stage_label,
                    stade_rapport=ctx.report_stage_label,
                    **common,
                )
            ]
        elif p is None:
            out = [self.say("stage_unqualified", stade=ctx.stage_label, **rank)]
        else:
            key = "stage_certain" if p >= CERTAIN else "stage_probable"
            out = [self.say(key, **common, **rank)]
        if ctx.stage_declared is not None:
            out.append(
                self.say("declared_same")
                if ctx.stage_declared == ctx.stage
                else self.say("declared_other", stade_declare=ctx.stage_declared_label)
            )
        if ctx.is_indicative:
            n = ctx.n_respondents
            out.append(
                self.say(
                    "stage_indicative", repondants=f"{fmt_count(n)} {plural_fr(n, 'répondant')}"
                )
            )
        return out

    def dimension_sentence(self, d: Mapping[str, Any]) -> str:
        score = fmt_number(d["value"], 1)
        values = {"dimension": d["label"], "max": self.max}
        if self.bands:
            band = self.band(d["value"])
            if self.band(round(d["value"], 1)) is not band:  # 2,98 is not « 3,0 » here
                score = fmt_number(d["value"], 2)
            return self.say(
                "dimension_band",
                d["fragile"],
                bande=lower_first(band["label"]),
                score=score,
                **values,
            )
        return self.say(
            "dimension_relative",
            d["fragile"],
            position=self.position(d["gap"]),
            reference=fmt_number(d["ref"], 1),
            score=score,
            **values,
        )

    def band(self, value: float) -> Mapping[str, Any]:
        """The reading band of a score (the first or last beyond the scale's ends)."""
        return next(
            (b for b in self.bands if b["low"] <= value < b["high"]),
            self.bands[-1] if value >= self.bands[-1]["high"] else self.bands[0],
        )

    def reads_well(self, d: Mapping[str, Any], *, strong: bool) -> bool:
        """Whether a dimension may be called a strength (``strong``) or a point of attention.

        With reading bands: not a strength in the lowest band, not a point of attention in the
        highest; without: not a strength below its stage's mean, not a point of attention above.
        """
        if self.bands:
            edge = self.bands[0] if strong else self.bands[-1]
            inside = edge["low"] <= d["value"] < edge["high"] or (
                not strong and d["value"] >= edge["high"]
            )
            return not inside
        tol = self.span / 16
        return d["gap"] >= -tol if strong else d["gap"] <= tol

    @staticmethod
    def as_shown(d: Mapping[str, Any]) -> dict[str, Any]:
        """A dimension record whose score and gap are rounded as the report prints them."""
        value = round(d["value"], 1)
        return {**d, "value": value, "gap": d["gap"] + value - d["value"]}

    def position(self, gap: float) -> str:
        tol = self.span / 16
        return "au-dessus de" if gap > tol else "en dessous de" if gap < -tol else "proche de"

    def points(self) -> tuple[list[str], list[str]]:
        """Three strengths and three points of attention (dimensions, then a milestone)."""
        dims = self.scores()
        # verdict stages read the level itself; the others the gap to their stage's mean
        key = (
            (lambda d: (d["value"], d["dimension"]))
            if self.bands
            else (lambda d: (d["gap"], d["dimension"]))
        )
        ranked = sorted((d for d in dims if d["ref"] is not None or self.bands), key=key)
        miles = sorted(self.milestones(), key=lambda m: (m["value"], m["variable"]))
        done = [m for m in miles if m["value"] >= MILESTONE_DONE]
        todo = [m for m in miles if m["value"] < MILESTONE_DONE]
        n_dims = N_POINTS - (1 if done else 0)
        top = [d for d in ranked[::-1] if self.reads_well(d, strong=True)][:n_dims]
        rest = [d for d in ranked if d not in top and self.reads_well(d, strong=False)]
        bottom = rest[: N_POINTS - (1 if todo else 0)]
        strengths = [self.dimension_sentence(d) for d in top]
        if done:
            m = done[-1]
            strengths.append(
                self.say(
                    "milestone_done", m["fragile"], jalon=m["name"], part=fmt_percent(m["value"])
                )
            )
        attention = [self.dimension_sentence(d) for d in bottom]
        if todo:
            m = todo[0]
            attention.append(
                self.say(
                    "milestone_todo", m["fragile"], jalon=m["name"], part=fmt_percent(m["value"])
                )
            )
        strengths = strengths or [self.say("strengths_none")]
        attention = attention or [self.say("attention_none")]
        return strengths, attention

    # ------------------------------------------------------------------ change
    def previous(self) -> tuple[int | None, int | None, str]:
        """The previous wave, the territory's stage then and its label."""
        earlier = [h for h in self.ctx.history if int(h["wave"]) < self.ctx.wave]
        waves = {int(s["wave"]) for s in self.ctx.wave_scores if int(s["wave"]) < self.ctx.wave}
        waves |= {int(h["wave"]) for h in earlier}
        if not waves:
            return None, None, ""
        wave = max(waves)
        hit = [h for h in earlier if int(h["wave"]) == wave]
        if not hit:
            return wave, None, ""
        return wave, int(hit[0]["stage"]), str(hit[0]["stage_label"])

    def moves(self, wave: int) -> list[tuple[float, str, bool]]:
        """(change, label, beyond the margin of error) of each dimension since ``wave``."""
        by_dim: dict[str, dict[int, Mapping[str, Any]]] = {}
        for s in self.ctx.wave_scores:
            by_dim.setdefault(str(s["dimension"]), {})[int(s["wave"])] = s
        out = []
        for waves in by_dim.values():
            now, before = waves.get(self.ctx.wave), waves.get(wave)
            if now is None or before is None:
                continue
            if "suppressed" in (now.get("status"), before.get("status")):
                continue
            if _num(now.get("score")) is None or _num(before.get("score")) is None:
                continue  # a score the survey could not estimate (or not publish)
            delta = float(now["score"]) - float(before["score"])
            se_now, se_before = _num(now.get("se")), _num(before.get("se"))
            if se_now is not None and se_before is not None:
                beyond = abs(delta) > 1.96 * math.hypot(se_now, se_before)
            else:
                beyond = abs(delta) >= self.span / 10
            out.append((delta, lower_first(str(now["label"])), beyond))
        return sorted(out, key=lambda m: (-abs(m[0]), m[1]))

    def moved_sentences(self, wave: int, moves: list[tuple[float, str, bool]]) -> list[str]:
        out = []
        for key, sign in (("moved_up", 1), ("moved_down", -1)):
            hits = [m for m in moves if m[2] and m[0] * sign > 0][:3]
            if hits:
                word = plural_fr(len(hits), "dimension")
                out.append(
                    self.say(
                        key,
                        dimension_s=word,
                        liste=join_fr([f"{label} ({_signed(d)})" for d, label, _ in hits]),
                        vague_precedente=wave,
                    )
                )
        return out or [self.say("moved_none", vague_precedente=wave)]

    def change_sentences(self) -> list[str]:
        wave, stage, label = self.previous()
        if wave is None:
            return [self.say("first_wave")]
        out = []
        if stage is not None and self.ctx.stage is not None:
            if stage == self.ctx.stage:
                out.append(
                    self.say("stage_same", vague_precedente=wave, stade=self.ctx.stage_label)
                )
            else:
                key = "stage_up" if self.ctx.stage > stage else "stage_down"
                out.append(
                    self.say(
                        key, vague_precedente=wave, ancien_stade=label, stade=self.ctx.stage_label
                    )
                )
        return out + self.moved_sentences(wave, self.moves(wave))

    def stage_change(self) -> dict[str, Any]:
        """The stage move since the previous wave, explained by the dimensions that moved."""
        wave, stage, label = self.previous()
        if wave is None or stage is None or self.ctx.stage is None or stage == self.ctx.stage:
            return {}
        up = self.ctx.stage > stage
        key = "stage_up" if up else "stage_down"
        moved = [m for m in self.moves(wave) if m[2] and (m[0] > 0) == up][:3]
        because = (
            self.say(
                "change_explained",
                verbe="progressé" if up else "reculé",
                liste=join_fr([f"{lab} ({_signed(d)})" for d, lab, _ in moved]),
            )
            if moved
            else self.say("change_unexplained")
        )
        return {
            "from_wave": wave,
            "from_stage": stage,
            "from_label": label,
            "direction": "up" if up else "down",
            "sentences": [
                self.say(
                    key, vague_precedente=wave, ancien_stade=label, stade=self.ctx.stage_label
                ),
                because,
            ],
        }

    # ------------------------------------------------------------------ models
    def model_sentences(self) -> list[str]:
        """What the national models say of the territory's stage against the first stage.

        One sentence per model with a term for the territory's stage (``C(stage)[T.<s>]``)
        whose effect differs from zero at the 5 % level; nothing for the first stage (the
        models' reference).
        """
        stage = self.ctx.stage
        if stage is None or stage == 0 or not self.ctx.stage_names:
            return []
        out = []
        for m in self.ctx.models:
            if m.get("term") != f"C(stage)[T.{stage}]":
                continue
            p = _num(m.get("p_value"))
            if p is None or p >= 0.05:
                continue
            odds = _num(m.get("odds_ratio"))
            low, high = _num(m.get("ci_low")), _num(m.get("ci_high"))
            values = {
                "modele": str(m.get("title") or "").rstrip(". ") or "Modèle national",
                "stade": self.ctx.stage_label,
                "reference": self.ctx.stage_names[0],
            }
            if odds is not None and low is not None and high is not None:
                out.append(
                    self.say(
                        "model_odds",
                        effet=fmt_number(odds, 1),
                        ic=fmt_interval(math.exp(low), math.exp(high), 1),
                        **values,
                    )
                )
            elif low is not None and high is not None:
                out.append(
                    self.say(
                        "model_difference",
                        effet=_signed(float(m["estimate"])),
                        ic=fmt_interval(low, high, 1),
                        **values,
                    )
                )
        return out

    # ------------------------------------------------------------------ comparison
    def comparison(self, n_neighbours: int, prefix: str = "neighbours") -> list[str]:
        """How the territory compares with its group (``neighbours_*`` or ``chosen_group_*``)."""
        if not n_neighbours or not self.group:
            return []
        tol = self.span / 16
        gaps = [
            (d["value"] - self.group[d["dimension"]], lower_first(d["label"]))
            for d in self.scores()
            if d["dimension"] in self.group
        ]
        more = [lab for g, lab in sorted(gaps, key=lambda x: (-x[0], x[1])) if g > tol][:3]
        less = [lab for g, lab in sorted(gaps) if g < -tol][:3]
        values = {"n_voisins": fmt_words(n_neighbours)}
        if more and less:
            return [self.say(f"{prefix}_both", plus=join_fr(more), moins=join_fr(less), **values)]
        if more:
            return [self.say(f"{prefix}_more", plus=join_fr(more), **values)]
        if less:
            return [self.say(f"{prefix}_less", moins=join_fr(less), **values)]
        return [self.say(f"{prefix}_close", **values)]

    # ------------------------------------------------------------------ answers
    def answers(self, records: Records) -> list[dict[str, Any]]:
        grid = self.ctx.stage_grid
        declared = self.spec.answers.get(str(grid.get("key", "")), ())
        out = []
        for i, question in enumerate(grid.get("questions") or ()):
            answer = declared[i] if i < len(declared) else None
            if answer is None or not (answer.items or answer.sections):
                sentences = [self.say("answer_none")]
            else:
                sentences = self.answer_sentences(answer.items, answer.sections, records)
                sentences = sentences[:N_ANSWER_SENTENCES] or [self.say("answer_too_few")]
            out.append({"question": question, "sentences": sentences})
        return out

    def answer_sentences(
        self, items: Sequence[str], sections: Sequence[str], records: Records
    ) -> list[str]:
        out = [s for s in (self.section_sentence(name) for name in sections) if s]
        for rec in records(items):
            sentence = self.item_sentence(rec)
            if sentence:
                out.append(sentence)
        return out

    def item_sentence(self, rec: Mapping[str, Any]) -> str:
        got = _usable(rec)
        if got is None:
            return ""
        value, fragile = got
        values = {"libelle": self.short(rec), "n": fmt_n(rec.get("n"))}
        if rec.get("kind") == "share":
            return self.say("answer_share", fragile, part=fmt_percent(value), **values)
        scale_max = rec.get("scale_max")
        if scale_max is None:
            return self.say("answer_mean", fragile, valeur=fmt_number(value, 1), **values)
        scored = {"score": fmt_number(value, 1), "max": fmt_number(scale_max, 0)}
        level = self.nearest_level(str(rec.get("variable")), value)
        if level:
            return self.say("answer_level", fragile, niveau=level, **scored, **values)
        return self.say("answer_scaled", fragile, **scored, **values)

    def nearest_level(self, item: str, value: float) -> str:
        if item not in self.codebook or self.codebook[item].type != "likert":
            return ""
        labels = self.codebook.value_labels(item)
        codes = [c for c in labels if _num(c) is not None]
        if not codes:
            return ""
        best = min(codes, key=lambda c: (abs(float(c) - value), float(c)))
        return lower_first(str(labels[best]))

    def section_sentence(self, name: str) -> str:
        source = {"composition": self.ctx.composition, "barriers": self.ctx.freins}[name]
        usable = [(r, _usable(r)) for r in source]
        shown = sorted(
            ((r, got) for r, got in usable if got is not None and got[0] > 0),
            key=lambda x: (-x[1][0], str(x[0]["variable"])),
        )[:3]
        if not shown:
            return ""
        label = self.section_label(name)
        liste = join_fr([f"{lower_first(str(r['label']))} ({fmt_percent(g[0])})" for r, g in shown])
        return self.say("answer_ranked", any(g[1] for _, g in shown), libelle=label, liste=liste)

    def section_label(self, name: str) -> str:
        var = self.section_items.get(name, "")
        if var in self.codebook:
            v = self.codebook[var]
            return v.label_short or f"« {v.label_fr} »"
        return "Réponses les plus citées"

    # ------------------------------------------------------------------ recommendations
    def recommendations(self) -> list[tuple[str, str]]:
        grid = self.ctx.stage_grid
        texts = list(grid.get("recommendations") or ())
        if not texts:
            return []
        targets = {t.rank: t for t in self.spec.targets.get(str(grid.get("key", "")), ())}
        dims = {d["dimension"]: d for d in self.scores()}
        miles = {m["variable"]: m for m in self.milestones()}
        scored = []
        for rank, text in enumerate(texts, start=1):
            target = targets.get(rank)
            weight, reasons = self.need(target, dims, miles) if target else (0.0, [])
            scored.append((-weight, rank, text, reasons))
        scored.sort(key=lambda s: (s[0], s[1]))
        out = []
        for _, _, text, reasons in scored[:N_RECOMMENDATIONS]:
            if not reasons:
                reasons = [self.spec.sentence("because_stage", stade=grid.get("name", ""))]
            out.append(
                (text, self.say("because", raisons=join_fr([lower_first(r) for r in reasons])))
            )
        return out

    def need(
        self,
        target: Any,
        dims: Mapping[str, Mapping[str, Any]],
        miles: Mapping[str, Mapping[str, Any]],
    ) -> tuple[float, list[str]]:
        """How much a territory needs a recommendation, and why (weakest dimensions first).

        Every target dimension weighs in the need, but a reason cites only a dimension that may
        be read as a point of attention, judged on the score as the reader sees it (rounded to
        one decimal): a strength is never given as the reason of a recommendation.
        """
        hit = sorted((dims[d] for d in target.dimensions if d in dims), key=lambda d: d["value"])
        weak = [(self.hi - d["value"]) / self.span + max(0.0, -d["gap"]) / self.span for d in hit]
        weight = math.fsum(weak) / len(weak) if weak else 0.0
        citable = [d for d in hit if self.reads_well(self.as_shown(d), strong=False)]
        reasons = [
            self.spec.sentence(
                "because_dimension",
                dimension=d["label"],
                score=fmt_number(d["value"], 1),
                max=self.max,
            ).rstrip(".")
            for d in citable[:2]
        ]
        for item in target.milestones:
            m = miles.get(item)
            if m is not None and m["value"] < MILESTONE_DONE:
                weight += 1.0 - m["value"]
                reasons.append(self.spec.sentence("because_milestone", jalon=m["name"]).rstrip("."))
        return weight, reasons
