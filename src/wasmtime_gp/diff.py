"""Comparing two profiles: how each function's share of the samples changed, and whether beyond sampling noise.

A function's share is its samples (innermost, or anywhere on the stack) over all samples. Two profiles of the
same program differ by chance alone: each sample falls in a function with some probability, so its count is
binomial. A change is *significant* when a two-sided two-proportion z-test on the two counts gives a p-value
below `alpha / m`, where m is the number of functions compared (Bonferroni). The test takes samples as
independent; where a function's share wanders more than that within a profile (a program that stays in one
phase for stretches), the variance is widened to what BLOCKS runs of consecutive samples show (batch means).

That bounds the false alarms that sampling itself makes, not the run-to-run differences of a program: between
two runs, I/O timing changes, and so does where samples land among small functions in a hot loop (samples are
taken at epoch checks). Measured: 6 of 15 pairs of unchanged runs of zlib's minigzip and 8 of 28 pairs of the
bundled example (pure wasm, four small functions in a loop) had a function marked. `regressions` compares a run
with several runs of the base and allows for their spread: the pytest plugin's regression gate uses it.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from wasmtime_gp.profile import Frame, Profile

# The family-wise chance of a false alarm on an unchanged program.
ALPHA = 0.01
# Runs of consecutive samples whose shares estimate how much a function's share wanders within a profile.
BLOCKS = 16


@dataclass(frozen=True)
class FunctionChange:
    """One function in both profiles (absent from one: 0 samples there)."""

    frame: Frame
    base_samples: int
    new_samples: int
    base_percent: float
    new_percent: float
    p_value: float  # two-sided, of the two-proportion z-test
    significant: bool  # p_value below alpha / the number of functions compared
    # How much its samples grew against the rest's: 0.2 when it alone became 20 % slower (0 if neither
    # profile has samples elsewhere, infinite if it had none before).
    growth: float

    @property
    def change(self) -> float:
        """The change of its share, in percentage points."""
        return self.new_percent - self.base_percent


@dataclass(frozen=True)
class ProfileDiff:
    """Every function of two profiles, the largest change of share first (`Profile.diff`)."""

    by: Literal["self", "total"]
    base_samples: int
    new_samples: int
    alpha: float
    changes: list[FunctionChange]

    def grown(self, points: float = 0.0) -> list[FunctionChange]:
        """The functions whose share grew significantly, by more than `points` percentage points."""
        return [row for row in self.changes if row.significant and row.change > points]


def two_proportion_p_value(base: int, base_total: int, new: int, new_total: int) -> float:
    """Two-sided p-value that `base / base_total` and `new / new_total` share one proportion (pooled z-test)."""
    if base_total <= 0 or new_total <= 0:
        return 1.0
    pooled = (base + new) / (base_total + new_total)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / base_total + 1 / new_total))
    if spread == 0:  # in no sample, or in every one, of both
        return 1.0
    z = (new / new_total - base / base_total) / spread
    return math.erfc(abs(z) / math.sqrt(2))


def relative_growth(base: int, base_total: int, new: int, new_total: int) -> float:
    """How much `new` grew against the rest of `new_total` from `base` against the rest of `base_total`:
    (new / new_rest) / (base / base_rest) - 1, the odds ratio less one. A function that alone became 20 %
    slower, in a profile of the same work, grows by 0.2 whatever its share."""
    base_rest, new_rest = base_total - base, new_total - new
    if new == 0:
        return -1.0 if base else 0.0
    if base == 0:
        return math.inf
    if new_rest == 0:
        return 0.0 if base_rest == 0 else math.inf
    return (new * base_rest) / (new_rest * base) - 1


def _counts(profile: Profile, by: Literal["self", "total"]) -> dict[Frame, int]:
    return {
        row.frame: count
        for row in profile.top(sys.maxsize, by=by)
        if (count := row.self_samples if by == "self" else row.total_samples)
    }


def _block_variances(profile: Profile, by: Literal["self", "total"]) -> dict[Frame, float]:
    """Per function, the variance of its share as BLOCKS runs of consecutive samples see it (batch means): a
    program that stays in a function for stretches spreads its share more than independent samples would."""
    samples = profile.samples
    if len(samples) < 2 * BLOCKS:
        return {}
    bounds = [len(samples) * k // BLOCKS for k in range(BLOCKS + 1)]
    shares: dict[Frame, list[float]] = {}
    for k in range(BLOCKS):
        block = samples[bounds[k] : bounds[k + 1]]
        for frame, count in _counts(profile.with_samples(block), by).items():
            shares.setdefault(frame, [0.0] * BLOCKS)[k] = count / len(block)
    return {frame: statistics.variance(values) / BLOCKS for frame, values in shares.items()}


@dataclass(frozen=True)
class _Tally:
    """What a comparison needs of one profile: each function's samples and block variance, and the total."""

    counts: dict[Frame, int]
    variances: dict[Frame, float]
    total: int


def _tally(profile: Profile, by: Literal["self", "total"]) -> _Tally:
    return _Tally(_counts(profile, by), _block_variances(profile, by), profile.sample_count)


def compare(
    base: Profile, new: Profile, by: Literal["self", "total"] = "self", alpha: float = ALPHA
) -> ProfileDiff:
    """How every function's share changed from `base` to `new`: see the module's docstring."""
    return _compare(_tally(base, by), _tally(new, by), by, alpha)


def _compare(base: _Tally, new: _Tally, by: Literal["self", "total"], alpha: float) -> ProfileDiff:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha!r}")
    base_counts, new_counts = base.counts, new.counts
    base_spread, new_spread = base.variances, new.variances
    frames = list(dict.fromkeys([*base_counts, *new_counts]))
    base_total, new_total = base.total, new.total
    threshold = alpha / max(len(frames), 1)
    changes = []
    for frame in frames:
        before, after = base_counts.get(frame, 0), new_counts.get(frame, 0)
        p_value = two_proportion_p_value(before, base_total, after, new_total)
        if base_total and new_total:
            # Never surer than independent samples allow; less sure where the blocks spread wider.
            variance = base_spread.get(frame, 0.0) + new_spread.get(frame, 0.0)
            shift = abs(after / new_total - before / base_total)
            if variance > 0:
                p_value = max(p_value, math.erfc(shift / math.sqrt(2 * variance)))
        changes.append(
            FunctionChange(
                frame,
                before,
                after,
                100 * before / base_total if base_total else 0.0,
                100 * after / new_total if new_total else 0.0,
                p_value,
                p_value < threshold,
                relative_growth(before, base_total, after, new_total),
            )
        )
    changes.sort(key=lambda row: (-abs(row.change), str(row.frame)))
    return ProfileDiff(by, base_total, new_total, alpha, changes)


@dataclass(frozen=True)
class BaselineGrowth:
    """How one function of a new profile grew from several base runs of the same code (`against_bases`)."""

    change: FunctionChange  # from the base it grew least from
    # How far apart the base runs are for it: the largest of its samples against the rest over the smallest,
    # less one (with half a sample added to each count, so that a run without it still counts).
    base_spread: float
    significant: bool  # from every base

    @property
    def beyond(self) -> float:
        """Its least growth beyond the spread: (1 + growth) / (1 + spread) - 1 (infinite: in no base)."""
        return (1 + self.change.growth) / (1 + self.base_spread) - 1


def against_bases(
    bases: Sequence[Profile],
    new: Profile,
    min_percent: float = 0.0,
    by: Literal["self", "total"] = "total",
    alpha: float = ALPHA,
) -> list[BaselineGrowth]:
    """Each function holding `min_percent` to `100 - min_percent` of `new`'s samples (one with nearly all
    of them has no rest to grow against), weighed against every one of `bases`, the largest `beyond` first.
    Significant means significant from every base (`compare`): an intersection-union test, whose
    false-alarm chance stays at `alpha`."""
    if not bases:
        raise ValueError("against_bases() needs at least one base profile")
    rows: dict[Frame, list[FunctionChange]] = {}
    odds: dict[Frame, list[float]] = {}
    new_tally = _tally(new, by)  # once, not once per base
    for base in bases:
        for row in _compare(_tally(base, by), new_tally, by, alpha).changes:
            rows.setdefault(row.frame, []).append(row)
            rest = base.sample_count - row.base_samples
            odds.setdefault(row.frame, []).append((row.base_samples + 0.5) / (rest + 0.5))
    found = []
    for frame, changes in rows.items():
        if not min_percent <= changes[0].new_percent <= 100 - min_percent or changes[0].new_samples == 0:
            continue
        least = min(changes, key=lambda row: row.growth)
        spread = max(odds[frame]) / min(odds[frame]) - 1
        found.append(BaselineGrowth(least, spread, all(row.significant for row in changes)))
    return sorted(found, key=lambda growth: -growth.beyond)


def regressions(
    bases: Sequence[Profile],
    new: Profile,
    max_growth: float,
    min_percent: float = 0.0,
    by: Literal["self", "total"] = "total",
    alpha: float = ALPHA,
) -> list[BaselineGrowth]:
    """The functions of `new` that grew against the rest beyond what runs of the same code show: significant
    from every one of `bases` (`against_bases`), and more than `max_growth` (0.1: 10 %) beyond their spread.
    The largest first."""
    return [
        growth
        for growth in against_bases(bases, new, min_percent, by, alpha)
        if growth.significant and growth.beyond > max_growth
    ]
