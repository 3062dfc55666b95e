"""Fabricated cell runs in a real MLflow store (no training): the runs the leaderboard tests build their tables
from, and the MLflow UI test shows. Each has the cell tags, the protocol params, test accuracies on `N` points, pass
counts, a validation curve and a `per_example.parquet` artifact whose robust points are the given ones."""

from __future__ import annotations

import pandas as pd
from mlflow.entities import Metric

__all__ = ["N", "PARAMS", "fabricated_run"]

N = 100
PARAMS = {
    "protocol.threat.eps": 0.1,
    "protocol.eval.n_examples": N,
    "protocol.train.epochs": 3,
    "protocol.train.device": "auto",
}


def fabricated_run(
    tracker,
    experiment,
    tmp_path,
    method,
    seed,
    robust,
    seconds=10.0,
    passes=(2, 2, 1, 0),
    params=None,
    val=(0.2, 0.4, 0.5),
    tags=None,
):
    """One FINISHED cell run of `method` / `seed` in `experiment` (protocol `toy`, hash `h1`), robust on the points
    where `robust` is True (AutoAttack accuracy: that fraction; PGD-20: 5 points more); its run id."""
    run_id = tracker.create_run(
        experiment,
        f"{method}-{seed}",
        {
            "rkdbench.kind": "cell",
            "rkdbench.protocol": "toy",
            "rkdbench.protocol_hash": "h1",
            "rkdbench.method_variant": method,
            "rkdbench.method": method,
            "rkdbench.student": "cnn-small",
            "rkdbench.teacher": "t",
            "rkdbench.seed": str(seed),
            "rkdbench.flags": "",
            **(tags or {}),
        },
    )
    tracker.log_params(run_id, {**PARAMS, **(params or {})})
    clean = [True] * N
    tracker.log_metrics(
        run_id,
        {
            "test.clean_acc": 1.0,
            "test.aa_acc": sum(robust) / N,
            "test.pgd20_acc": min(1.0, sum(robust) / N + 0.05),
            "train.seconds": seconds,
            **dict(
                zip(
                    ["cost.student_forward", "cost.student_backward", "cost.teacher_forward", "cost.teacher_backward"],
                    map(float, passes),
                )
            ),
        },
        step=3,
    )
    tracker.client.log_batch(
        run_id, metrics=[Metric("val.pgd_acc", value, 0, epoch) for epoch, value in enumerate(val)]
    )
    path = tmp_path / f"{method}-{seed}" / "per_example.parquet"
    path.parent.mkdir()
    pd.DataFrame(
        {"selection": "last", "index": range(N), "clean": clean, "pgd20": robust, "aa": robust, "worst": robust}
    ).to_parquet(path, index=False)
    tracker.log_artifact(run_id, path)
    tracker.finish(run_id, "FINISHED")
    return run_id
