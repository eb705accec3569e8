"""Spreading a per-image NFE budget over the searchable steps by expected marginal reward gain."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from noisesearch.errors import NoiseSearchError

if TYPE_CHECKING:
    from noisesearch.search.step_schedule import SearchSchedule


def marginal_gain(row: Sequence[float], k: int) -> float:
    """Expected gain of iteration k (1-based) at a step whose calibrated gains are `row`.

    Beyond the K calibrated iterations the gain is extrapolated conservatively: the last calibrated
    gain times the smaller of the row's own geometric decay (over its second half, never growing) and
    K/k (the 1/k decay of the expected maximum of k draws), so budgets larger than the calibration's
    are spread over steps instead of poured into one."""
    if k <= len(row):
        return row[k - 1]
    if not row:
        return 0.0
    half = len(row) // 2
    head, tail = row[half - 1] if half else row[0], row[-1]
    rate = min(1.0, (tail / head) ** (1 / max(len(row) - half, 1))) if head > 0 and tail > 0 else 0.0
    return tail * min(rate ** (k - len(row)), len(row) / k)


def allocate_iterations(gains: Sequence[Sequence[float]], first_cost: Sequence[int], next_cost: Sequence[int],
                        extra_calls: int, min_gain: float = 0.0, cap: int = 1000) -> list[int]:
    """Iterations K_t per step that spend at most `extra_calls` denoiser calls beyond a plain trajectory.

    Searching step t at all (K_t = 1) costs first_cost[t] calls more than its plain step (N_t − 1 when
    candidates are scored on their first call); every further iteration costs next_cost[t] (N_t); both
    from `noisesearch.cost.iteration_costs`.
    Iterations are bought greedily by expected gain per call (optimal when the gains fall with k, as
    calibrated ones do), skipping any whose gain is not above `min_gain`, until nothing affordable is
    left. `cap` bounds K_t.
    """
    if extra_calls < 0:
        raise NoiseSearchError(f"the budget is {-extra_calls} calls short of one plain sampler trajectory")
    K = [0] * len(gains)

    def offer(t: int) -> tuple[float, int, int] | None:
        k = K[t] + 1
        gain = marginal_gain(gains[t], k)
        if k > cap or gain <= min_gain:
            return None
        cost = first_cost[t] if k == 1 else next_cost[t]
        return (-gain / max(cost, 1e-9), t, cost)

    heap = [o for o in (offer(t) for t in range(len(gains))) if o is not None]
    heapq.heapify(heap)
    left = extra_calls
    while heap:
        _, t, cost = heapq.heappop(heap)
        if cost > left:
            continue
        left -= cost
        K[t] += 1
        nxt = offer(t)
        if nxt is not None:
            heapq.heappush(heap, nxt)
    return K


def expected_gain(schedule: SearchSchedule) -> float:
    """The calibrated gain of the iterations K_t a search schedule buys, summed over steps (the allocator's
    objective); NaN for a schedule without gains."""
    if schedule.gains is None:
        return math.nan
    return sum(marginal_gain(row, k) for row, K_t in zip(schedule.gains, schedule.K, strict=True)
               for k in range(1, K_t + 1))
