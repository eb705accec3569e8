"""CalibrationConfig: how a search schedule is calibrated, shared by `calibrate()`, the CLI and bench presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from noisesearch.errors import NoiseSearchError
from noisesearch.search.base import check_beams, check_eps, check_lambda, check_positive_int
from noisesearch.seeds import check_seed

METHODS = ("final", "gain", "binomial", "reliability")
Move = tuple[int, float, float]  # a local-search move: (N candidates per iteration, eps, lambda_)

# The recipe of the shipped schedules (method "final"): a global-draw probe (eps 1), the (1+1) hill climb at
# lambda 0.45 as a further move, 1, 2 or 4 incumbents, validated on 64 conditions. The other methods fit one
# move with B = 1 (validation_conditions None: on the calibration conditions, were there anything to validate).
SHIPPED_RECIPE: dict[str, Any] = {"eps": 1.0, "moves": ((1, 0.15, 0.45),), "beams": (1, 2, 4),
                                  "validation_conditions": 64}
OTHER_METHODS: dict[str, Any] = {"eps": 0.4, "moves": (), "beams": (1,), "validation_conditions": None}
RECIPES = {"final": SHIPPED_RECIPE, "gain": OTHER_METHODS, "binomial": OTHER_METHODS, "reliability": OTHER_METHODS}


@dataclass(frozen=True)
class CalibrationConfig:
    """method "final" (the default): gains in the final reward of searching one step at a time for 1 to K
    iterations; "gain": GP-smoothed gains per iteration from the x0-prediction scores of ε-greedy (N, K,
    eps) runs that search every step; "binomial": K_t = ceil(K·p(t)); "reliability": gains and ε_t from
    R(σ) (adaptive.reliability.reliability_gains). The move (N, eps, lambda_) is the
    one probed; further `moves` are probed with K·N/N' iterations each and, with several `beams` (numbers
    B of incumbents), every (move, B) is validated at the budget on `validation_conditions` conditions
    (default: `conditions`); with validation_conditions = 0 (and B = 1) the move of the largest expected gain
    (the allocator's objective, from the probes alone) is kept without validation runs. `target_nfe`: calls
    per image the schedule's K_t spend (default: a third of ε-greedy (N, K)'s).

    `eps`, `moves`, `beams` and `validation_conditions` left out (None) take the method's recipe (RECIPES):
    for "final", the recipe of the shipped schedules, which `noisesearch calibrate` uses too."""

    conditions: int = 16
    seed: int = 0
    method: str = "final"
    N: int = 4
    K: int = 20
    eps: float | None = None
    lambda_: float = 0.15
    moves: tuple[Move, ...] | None = None
    beams: tuple[int, ...] | None = None
    validation_conditions: int | None = None
    target_nfe: int | None = None

    def __post_init__(self) -> None:
        recipe = RECIPES.get(self.method, OTHER_METHODS)
        for name, value in recipe.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        try:
            moves = tuple((int(n), float(e), float(lam)) for n, e, lam in self.moves)
        except (TypeError, ValueError):
            raise NoiseSearchError(f"calibration moves must be [N, eps, lambda_] triples, got {self.moves}") from None
        object.__setattr__(self, "moves", moves)
        object.__setattr__(self, "beams", check_beams(self.beams))
        check_seed(self.seed, "the calibration seed")
        if self.method not in METHODS:
            raise NoiseSearchError(f"unknown calibration method '{self.method}': choose one of {', '.join(METHODS)}")
        if not isinstance(self.conditions, int) or self.conditions < 2:
            raise NoiseSearchError(f"calibration needs at least 2 conditions, got {self.conditions}")
        check_positive_int(N=self.N, K=self.K)
        for n, e, lam in ((self.N, self.eps, self.lambda_), *moves):
            check_positive_int(N=n)
            check_eps(e)
            check_lambda(lam)
        v = self.validation_conditions
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise NoiseSearchError(f"validation_conditions must be an integer of at least 0 (0: no validation "
                                   f"runs), got {v}")
        if self.validation_conditions == 0 and self.beams != (1,):
            raise NoiseSearchError(f"choosing among beams {list(self.beams)} needs validation runs: give "
                                   "validation_conditions of at least 1, or beams (1,)")
        if self.target_nfe is not None:
            check_positive_int(target_nfe=self.target_nfe)
        if (moves or self.beams != (1,)) and self.method in ("binomial", "reliability"):
            raise NoiseSearchError(f"choosing among moves or beams needs the final or gain method ({self.method} "
                                   "fits no gains per move)")

    @property
    def validates(self) -> bool:
        """Whether several (move, B) candidates are validated against each other."""
        return bool(self.moves) or self.beams != (1,)

    def identity(self) -> dict[str, Any]:
        """The fields that tell calibrations apart in bench cell keys, less those holding KEY_OMITS' values."""
        fields = asdict(self)
        for name, default in KEY_OMITS.items():
            if fields[name] == default:
                del fields[name]
        return fields


# A calibration's part of a bench cell key leaves out these fields where they hold these values: the key format of
# run directories (experiments.store), fixed so that stored keys keep matching.
KEY_OMITS: dict[str, Any] = {"lambda_": 0.15, "moves": (), "beams": (1,), "validation_conditions": None,
                             "target_nfe": None}
