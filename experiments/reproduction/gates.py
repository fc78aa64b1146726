"""The reproduction's gates (protocols v3 and v4): does the reduced protocol hold the paper's
preconditions at all?

A reproduction can only test the method where the method has something to do: a classifier
whose loss separates clean from noisy samples (G1), cross-entropy that memorises the noisy
labels and pays for it (G2), room between Base and a network trained on the clean samples only
(G3) and, from v4 on, more to learn than early stopping gives (G0), a weighting net that travels to a falling W before the lr drops (G4) without collapsing
onto a few samples (G5), at a cost that lets the grid be filled (G6). The thresholds were fixed
in BUILD_NOTES.md ("Protocol v3: the gates") before any meta-method cell ran; they are never
loosened after. Every gate reads run histories only (no TensorFlow), so the report can recheck
them at any time.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

G0_MARGIN = 0.03  # oracle final - Base best, and oracle final - the oracle's first evaluation (v4)
G1_AUC_LOSS = 0.85  # Base's best small-loss AUC before the first lr drop
G2_MEMORISED = 0.70  # Base's final share of wrong labels predicted as given
G2_FALL = 0.05  # Base's best - final test accuracy
G3_HEADROOM = 0.08  # oracle final - Base final test accuracy (mean over paired seeds)
G4_SPEARMAN = -0.9  # W's rank correlation with the loss at the first drop
G4_RATIO = 0.6  # mean W of noisy samples / mean W of clean samples at the first drop
G5_WEIGHT_MEAN = 0.1  # raw W mean at every evaluation
G5_ESS_FRACTION = 0.5  # effective sample size of the weights / N at every evaluation
G6_SECONDS = 20 * 60  # a meta cell on an idle machine
G4_METHODS = ("rmnwnet", "mwnet")

History = Sequence[Mapping]


@dataclasses.dataclass
class Gate:
    name: str
    statement: str
    passed: bool | None  # None: not enough runs yet
    details: list[str]  # one line per seed or run, with its numbers


def _by_seed(runs: Mapping[int, History]) -> list[tuple[int, History]]:
    return sorted((seed, history) for seed, history in runs.items() if history)


def _evaluated(history: History, key: str) -> list[tuple[int, float]]:
    return [(row["epoch"], row[key]) for row in history if row.get(key) is not None]


def _at_epoch(history: History, epoch: int) -> Mapping:
    return next((row for row in history if row["epoch"] == epoch), {})


def _verdict(checks: Sequence[bool], enough: bool) -> bool | None:
    """A gate asked of every seed (or run) fails at its first failing one; it passes only once
    enough of them are in and all hold."""
    if not all(checks):
        return False
    return all(checks) if enough else None


def final_accuracy(history: History) -> float | None:
    values = _evaluated(history, "test/accuracy")
    return values[-1][1] if values else None


def first_accuracy(history: History) -> float | None:
    values = _evaluated(history, "test/accuracy")
    return values[0][1] if values else None


def best_accuracy(history: History) -> float | None:
    values = _evaluated(history, "test/accuracy")
    return max(v for _, v in values) if values else None


def g0_learnability(base: Mapping[int, History], oracle: Mapping[int, History], *, seeds_needed: int = 2) -> Gate:
    """Protocol v4's first gate: is there something to learn beyond early stopping? The oracle (clean
    labels only) must end ≥ 3 points above Base's *best* test accuracy, so that a noise method has more
    to win than stopping Base early, and ≥ 3 points above its own first evaluation, so that training
    keeps learning after the start (v3's oracle ended below the pretrained start). Every paired seed."""
    seeds = sorted(set(dict(_by_seed(base))) & set(dict(_by_seed(oracle))))
    details, checks = [], []
    for seed in seeds:
        end, first, base_best = final_accuracy(oracle[seed]), first_accuracy(oracle[seed]), best_accuracy(base[seed])
        ok = end - base_best >= G0_MARGIN and end - first >= G0_MARGIN
        checks.append(ok)
        details.append(f"seed {seed}: oracle final {end:.4f} − Base best {base_best:.4f} = "
                       f"{100 * (end - base_best):+.2f} points; oracle final − its first evaluation {first:.4f} = "
                       f"{100 * (end - first):+.2f} points")
    return Gate("G0 learnability", f"oracle final ≥ Base's best + {100 * G0_MARGIN:.0f} points and ≥ the oracle's "
                f"first evaluation + {100 * G0_MARGIN:.0f} points (every paired seed)",
                _verdict(checks, len(checks) >= seeds_needed), details)


def g1_separation(base: Mapping[int, History], first_drop: int, *, seeds_needed: int = 2) -> Gate:
    details, checks = [], []
    for seed, history in _by_seed(base):
        before = [value for epoch, value in _evaluated(history, "detection/auc_loss") if epoch <= first_drop]
        best = max(before) if before else None
        ok = best is not None and best >= G1_AUC_LOSS
        checks.append(ok)
        details.append(f"seed {seed}: best detection/auc_loss up to epoch {first_drop} = "
                       f"{'—' if best is None else f'{best:.3f}'}")
    return Gate("G1 separation", f"Base's best small-loss AUC before the first lr drop ≥ {G1_AUC_LOSS} "
                "(every seed)", _verdict(checks, len(checks) >= seeds_needed), details)


def g2_memorisation(base: Mapping[int, History], *, seeds_needed: int = 2) -> Gate:
    details, checks = [], []
    for seed, history in _by_seed(base):
        accuracy = _evaluated(history, "test/accuracy")
        final_row = next((row for row in reversed(history) if row.get("test/accuracy") is not None), {})
        memorised = final_row.get("fit/noisy_memorised")
        best, final = max(v for _, v in accuracy), accuracy[-1][1]
        ok = memorised is not None and memorised >= G2_MEMORISED and best - final >= G2_FALL
        checks.append(ok)
        details.append(f"seed {seed}: memorised {memorised:.3f} at the end; test accuracy best {best:.4f}, "
                       f"final {final:.4f} (fall {100 * (best - final):.2f} points)")
    return Gate("G2 memorisation", f"Base memorises ≥ {G2_MEMORISED:.0%} of its wrong labels by the end and "
                f"ends ≥ {100 * G2_FALL:.0f} points below its best test accuracy (every seed)",
                _verdict(checks, len(checks) >= seeds_needed), details)


def g3_headroom(base: Mapping[int, History], oracle: Mapping[int, History], *, seeds_needed: int = 2) -> Gate:
    seeds = sorted(set(dict(_by_seed(base))) & set(dict(_by_seed(oracle))))
    gaps = [final_accuracy(oracle[s]) - final_accuracy(base[s]) for s in seeds]
    details = [f"seed {s}: oracle {final_accuracy(oracle[s]):.4f} − Base {final_accuracy(base[s]):.4f} = "
               f"{100 * g:+.2f} points" for s, g in zip(seeds, gaps)]
    mean = sum(gaps) / len(gaps) if gaps else None
    if mean is not None:
        details.append(f"mean {100 * mean:+.2f} points")
    passed = None if len(gaps) < seeds_needed else mean >= G3_HEADROOM
    return Gate("G3 headroom", f"oracle final − Base final ≥ {100 * G3_HEADROOM:.0f} points (mean of paired seeds)",
                passed, details)


def first_evaluation_rose(history: History) -> bool | None:
    """Did W rise with the loss at the run's first evaluation (its random initialisation's way)?"""
    values = _evaluated(history, "weights/loss_spearman")
    return None if not values else values[0][1] > 0


def first_turn(history: History) -> int | None:
    """The epoch of the first evaluation at which W falls with the loss as G4 asks (Spearman ≤
    G4_SPEARMAN); None if it never does."""
    return next((epoch for epoch, rho in _evaluated(history, "weights/loss_spearman") if rho <= G4_SPEARMAN), None)


def travel_at(history: History, epoch: int) -> tuple[float, float] | None:
    """(Spearman(W, loss), W noisy mean / W clean mean) at `epoch`'s evaluation; None before it."""
    row = _at_epoch(history, epoch)
    rho, noisy, clean = (row.get(k) for k in ("weights/loss_spearman", "weights/noisy_mean", "weights/clean_mean"))
    return None if rho is None or noisy is None or not clean else (rho, noisy / clean)


def travelled(rho: float, ratio: float) -> bool:
    """G4 for one run: W falls with the loss and weights the noisy samples down."""
    return rho <= G4_SPEARMAN and ratio <= G4_RATIO


def lowest_weights(history: History) -> tuple[float | None, float | None]:
    """(lowest raw W mean, lowest ESS/N) over a run's evaluations (None: never measured)."""
    means = [v for _, v in _evaluated(history, "weights/mean")]
    ess = [v for _, v in _evaluated(history, "weights/ess_fraction")]
    return (min(means) if means else None), (min(ess) if ess else None)


def stable(low_mean: float, low_ess: float | None) -> bool:
    """G5 for one run (a history from before ESS/N was measured is judged on the W mean alone)."""
    return low_mean >= G5_WEIGHT_MEAN and (low_ess is None or low_ess >= G5_ESS_FRACTION)


def g4_travel(meta: Mapping[str, Mapping[int, History]], first_drop: int, *, seeds_needed: int = 3) -> Gate:
    """`meta`: method -> seed -> history, for RMNW-Net and MW-Net*."""
    details, checks, rose = [], [], []
    complete = True
    for method in G4_METHODS:
        runs = _by_seed(meta.get(method, {}))
        complete &= len([1 for _, h in runs if _at_epoch(h, first_drop)]) >= seeds_needed
        for seed, history in runs:
            start = first_evaluation_rose(history)
            rose.append(bool(start))
            at_drop = travel_at(history, first_drop)
            if at_drop is None:
                details.append(f"{method} seed {seed}: not evaluated at epoch {first_drop} yet")
                continue
            rho, ratio = at_drop
            checks.append(travelled(rho, ratio))
            details.append(f"{method} seed {seed}: W {'rose' if start else 'fell'} with the loss at the first "
                           f"evaluation; at epoch {first_drop} Spearman(W, loss) {rho:+.3f}, "
                           f"W noisy/clean {ratio:.3f}")
    if complete and not any(rose):
        details.append("no seed's W rose with the loss at its first evaluation: more seeds are needed")
    enough = complete and any(rose)
    return Gate("G4 weighting-net travel", f"by the first drop Spearman(W, loss) ≤ {G4_SPEARMAN} and W noisy/clean "
                f"≤ {G4_RATIO}, every seed of RMNW-Net and MW-Net* (≥ {seeds_needed} each, one whose W rose first)",
                _verdict(checks, enough), details)


def g5_stability(meta: Mapping[str, Mapping[int, History]], *, seeds_needed: int = 3) -> Gate:
    details, checks = [], []
    for method in sorted(meta):
        for seed, history in _by_seed(meta[method]):
            low_mean, low_ess = lowest_weights(history)
            if low_mean is None:
                continue
            checks.append(stable(low_mean, low_ess))
            epochs = [epoch for epoch, _ in _evaluated(history, "weights/mean")]
            details.append(f"{method} seed {seed} (epochs {epochs[0]}–{epochs[-1]}): lowest W mean "
                           f"{low_mean:.3f}, lowest ESS/N {'—' if low_ess is None else f'{low_ess:.3f}'}")
    return Gate("G5 stability", f"at every evaluation W mean ≥ {G5_WEIGHT_MEAN} and ESS/N ≥ {G5_ESS_FRACTION}",
                _verdict(checks, len(checks) >= seeds_needed), details)


def g6_cost(meta_cell_seconds: Sequence[tuple[str, float]]) -> Gate:
    """`meta_cell_seconds`: (label, wall seconds) of full meta cells timed on an idle machine."""
    details = [f"{label}: {seconds / 60:.1f} min" for label, seconds in meta_cell_seconds]
    checks = [seconds <= G6_SECONDS for _, seconds in meta_cell_seconds]
    return Gate("G6 cost", f"a meta cell ≤ {G6_SECONDS // 60} min on an idle machine", _verdict(checks, bool(checks)),
                details)
