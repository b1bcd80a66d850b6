"""Searching realgram's hyperparameters with Optuna on a replay.

Tune on some shelves, report on others: the objective is scored on ``tune`` frames only, and the
best configuration is then replayed once more and scored on the held-out ``report`` frames, so the
figure that is reported was never seen by the search.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import optuna

from inference.pipeline import PipelineConfig
from inference.realgram import RealgramConfig
from inference.replay import PipelineScore, ReplayFrame, run_replay

OBJECTIVES = ("accuracy", "macro_accuracy", "mean")


@dataclass
class TuningResult:
    best: RealgramConfig
    tune_score: float
    trials: int
    report_v0: PipelineScore
    report_v1: PipelineScore
    report_default_v1: PipelineScore


def objective_value(score: PipelineScore, objective: str) -> float:
    if objective == "mean":
        return (score.accuracy + score.macro_accuracy) / 2
    return float(getattr(score, objective))


def suggest(trial: optuna.Trial) -> RealgramConfig:
    return RealgramConfig(
        window_days=30.0,
        decay_per_day=trial.suggest_float("decay_per_day", 1e-3, 2.0, log=True),
        overlap_margin=trial.suggest_float("overlap_margin", 0.0, 1.5),
        overlap_floor=trial.suggest_float("overlap_floor", 0.0, 1.0),
        overlap_power=trial.suggest_float("overlap_power", 0.1, 2.0),
        count_weight=trial.suggest_float("count_weight", 0.0, 1.0),
        weight=trial.suggest_float("weight", 0.0, 0.5),
    )


def search_realgram(
    frames: Sequence[ReplayFrame],
    vectors: Callable[[ReplayFrame], np.ndarray],
    *,
    dim: int,
    tune: Callable[[ReplayFrame], bool] | None = None,
    trials: int,
    annotate_every: int = 2,
    knn_neighbours: int = 10,
    objective: str = "accuracy",
    seed: int = 0,
    timeout_seconds: float | None = None,
) -> tuple[RealgramConfig, float, int]:
    """TPE search (seeded) scored on the ``tune`` frames (all by default), starting from the
    defaults; stops after ``trials`` or ``timeout_seconds``. Returns the best configuration, its
    objective value and the trials run."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")

    def evaluate(trial: optuna.Trial) -> float:
        config = PipelineConfig.named("v1", realgram=suggest(trial), knn_neighbours=knn_neighbours)
        score = run_replay(frames, vectors, [config], dim=dim, annotate_every=annotate_every, scored=tune)[0]
        return objective_value(score, objective)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({k: v for k, v in asdict(RealgramConfig()).items() if k != "window_days"})
    study.optimize(evaluate, n_trials=trials, timeout=timeout_seconds)
    return RealgramConfig(window_days=30.0, **study.best_params), study.best_value, len(study.trials)


def tune_realgram(
    frames: Sequence[ReplayFrame],
    vectors: Callable[[ReplayFrame], np.ndarray],
    *,
    dim: int,
    tune: Callable[[ReplayFrame], bool],
    report: Callable[[ReplayFrame], bool],
    trials: int,
    annotate_every: int = 2,
    knn_neighbours: int = 10,
    objective: str = "accuracy",
    seed: int = 0,
) -> TuningResult:
    """TPE search (seeded: the same inputs give the same result) over realgram's hyperparameters."""
    best, best_value, _ = search_realgram(frames, vectors, dim=dim, tune=tune, trials=trials,
                                          annotate_every=annotate_every, knn_neighbours=knn_neighbours,
                                          objective=objective, seed=seed)

    def replay(configs: list[PipelineConfig], scored) -> list[PipelineScore]:
        return run_replay(frames, vectors, configs, dim=dim, annotate_every=annotate_every, scored=scored)

    v0, v1, default_v1 = replay([
        PipelineConfig.named("v0", knn_neighbours=knn_neighbours),
        PipelineConfig.named("v1", realgram=best, knn_neighbours=knn_neighbours),
        PipelineConfig.named("v1", knn_neighbours=knn_neighbours),
    ], report)
    return TuningResult(best, best_value, trials, v0, v1, default_v1)
