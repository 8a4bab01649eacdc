"""The recommendation rule of ``docs/evaluation.md``, applied to an evaluation table.

1. **Sanity.** A method is eligible only if its maps change when the model does: it passes the
   cascading model-randomisation check and, when a permuted-target model was given, the
   data-randomisation check (:func:`explain.evaluation.sanity.passes`).
2. **Better than chance.** Its mean insertion - deletion AUC beats the random-order reference
   on every baseline. With ground truth, physics comes first: its mean Spearman with the truth
   must also beat every null reference scored alongside (a random map, ``|h|``, the edges of
   ``h``; :mod:`explain.references`), so a method that fails the truth cannot win on
   faithfulness ranks. The null references themselves are never recommended.
3. **Rank.** Eligible methods are ranked on each criterion - insertion - deletion per baseline,
   ROAD combined and, with ground truth, Spearman with the truth and relevance mass accuracy -
   and the lowest mean rank wins; ties go to the cheaper method (one gradient pass before
   path and perturbation methods).
4. **Say how sure.** The whole rule is re-run on ``BOOTSTRAP_ROUNDS`` resamples of the designs
   (with replacement; the sanity verdicts kept) and each method's share of wins is reported.
   Below ``MIN_DESIGNS`` scored designs no method is named: the leading candidate is reported
   with its share of wins and the words "not enough evidence".
5. **Say what is close and what flips.** Runners-up within two standard errors of the winner's
   insertion - deletion on every baseline are named as equivalent, and a change of the best
   method between baselines is reported.
6. **Between equivalents, the one that adds up.** When the winner has no completeness property
   and an equivalent runner-up has one (``Method.complete``: integrated gradients, CAM), the
   runner-up is recommended in its place: its cells sum to the output change they explain, so
   they can be read as a budget in U_e/delta (gradient x input on the transport network ranks
   the cells as integrated gradients do, but its sum misses f(x) - f(0) by 11% at the median).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from explain.catalogue import METHODS
from explain.evaluation import table as keys
from explain.evaluation.table import criteria


@dataclass
class Recommendation:
    """The chosen method, the ranking of eligible methods, and the reasons in words."""

    method: str | None
    ranking: list[tuple[str, float]]
    rejected: dict[str, str]
    notes: list[str]
    wins: dict[str, float] = field(default_factory=dict)  # share of bootstrap resamples won
    candidate: str | None = None  # the rule's choice, also when the evidence is too thin
    designs: int = 0


MIN_DESIGNS = 100  # fewer scored designs: "not enough evidence", no method named
BOOTSTRAP_ROUNDS = 200


def _null_reference_beating(table: dict, method: str, settings: dict) -> str | None:
    """Why ``method`` fails the physics-first rule, or None if it passes (or cannot be judged)."""
    if not settings.get("ground_truth"):
        return None
    refs = {
        m: row.get(keys.GT_SPEARMAN_INPUT, np.nan)
        for m, row in table.items()
        if METHODS[m].family == "reference"
    }
    refs = {m: v for m, v in refs.items() if np.isfinite(v)}
    if not refs:
        return None
    best = max(refs, key=refs.get)
    own = table[method].get(keys.GT_SPEARMAN_INPUT, np.nan)
    if not own > refs[best]:
        return (
            f"agrees with the truth no better than the null reference {best} "
            f"(Spearman {own:.2f} vs {refs[best]:.2f})"
        )
    return None


def recommend(table: dict[str, dict[str, float]], settings: dict) -> Recommendation:
    """Apply the rule of the module docstring to the table that ``evaluate()`` builds."""
    rejected: dict[str, str] = {}
    eligible = []
    for method, row in table.items():
        if row.get(keys.CASCADE_PASS, 1.0) < 1:
            rejected[method] = (
                f"fails model randomisation (Spearman |maps| "
                f"{row[keys.cascade('spearman_abs')]:.2f}, SSIM {row[keys.cascade('ssim')]:.2f}, "
                "mean over the cascade)"
            )
        elif row.get(keys.DATA_PASS, 1.0) < 1:
            rejected[method] = (
                f"fails data randomisation (Spearman |maps| {row[keys.data('spearman_abs')]:.2f}, "
                f"SSIM {row[keys.data('ssim')]:.2f} against the permuted-target model)"
            )
        else:
            worse = [
                b
                for b in settings["baselines"]
                if not row[keys.ins_del(b)] > row[keys.random_ins_del(b)]
            ]
            beaten = _null_reference_beating(table, method, settings)
            if worse:
                rejected[method] = f"no better than random order on baseline(s) {worse}"
            elif METHODS[method].family == "reference":
                rejected[method] = "a null reference (a map from the roughness alone)"
            elif beaten:
                rejected[method] = beaten
            else:
                eligible.append(method)
    cols = criteria(settings)
    ranks = {m: [] for m in eligible}
    for col in cols:
        values = np.array([table[m].get(col, np.nan) for m in eligible], dtype=float)
        # rank 1 = best; equal values share their average rank; NaN ranks last
        col_ranks = rankdata(-np.nan_to_num(values, nan=-np.inf), method="average")
        for method, rank in zip(eligible, col_ranks, strict=True):
            ranks[method].append(float(rank))
    mean_rank = {m: float(np.mean(r)) for m, r in ranks.items()}
    ranking = sorted(mean_rank.items(), key=lambda kv: (kv[1], not METHODS[kv[0]].one_pass))
    notes: list[str] = []
    best = ranking[0][0] if ranking else None
    if best is not None:
        close = [
            m
            for m, _ in ranking[1:]
            if all(
                table[best][keys.ins_del(b)] - table[m][keys.ins_del(b)]
                <= 2 * np.hypot(table[best][keys.ins_del_sem(b)], table[m][keys.ins_del_sem(b)])
                for b in settings["baselines"]
            )
        ]
        if close:
            notes.append(
                f"within two standard errors of {best} on insertion - deletion: {', '.join(close)}"
            )
        complete = [m for m in close if METHODS[m].complete]
        if complete and not METHODS[best].complete:
            notes.append(
                f"{complete[0]} in place of {best}: equivalent on insertion - deletion, and its "
                "map adds up to the output change it explains"
            )
            best = complete[0]
        tops = {
            b: max(eligible, key=lambda m, b=b: table[m][keys.ins_del(b)])
            for b in settings["baselines"]
        }
        if len(set(tops.values())) > 1:
            notes.append(
                "the best insertion - deletion method changes with the baseline: "
                + ", ".join(f"{b}: {m}" for b, m in tops.items())
            )
    return Recommendation(best, ranking, rejected, notes)


def decide(
    ev, rounds: int = BOOTSTRAP_ROUNDS, min_designs: int = MIN_DESIGNS, seed: int = 0
) -> Recommendation:
    """:func:`recommend` on an :class:`~explain.evaluation.protocol.Evaluation`, with how sure.

    The rule is re-applied to ``rounds`` bootstrap resamples of the designs (the per-design
    scores and the random-order reference resampled, the sanity verdicts kept); ``wins`` is
    each method's share. With fewer than ``min_designs`` designs, ``method`` is None and the
    rule's choice is only the ``candidate``.
    """
    rec = recommend(ev.table, ev.settings)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for _ in range(rounds):
        idx = rng.integers(0, ev.samples, ev.samples)
        random = {
            b: {k: v[rng.integers(0, len(v), len(v))] for k, v in ref.items()}
            for b, ref in ev.random.items()
        }
        resampled = dataclasses.replace(
            ev, per_sample={k: v[:, idx] for k, v in ev.per_sample.items()}, random=random
        )
        winner = recommend(keys.summarise(resampled), ev.settings).method
        counts[str(winner)] = counts.get(str(winner), 0) + 1
    rec.wins = {m: c / rounds for m, c in sorted(counts.items(), key=lambda kv: -kv[1])}
    rec.candidate, rec.designs = rec.method, ev.samples
    if ev.samples < min_designs and rec.method is not None:
        rec.notes.insert(
            0,
            f"not enough evidence: {ev.samples} designs scored, fewer than {min_designs}; "
            f"{rec.method} is only the leading candidate",
        )
        rec.method = None
    return rec
