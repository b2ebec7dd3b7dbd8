"""The numbers of a comparison, from its runs: mean and standard deviation per model and metric,
paired bootstrap differences between models (Holm-adjusted), results on the dataset's item groups,
sweeps over one setting, and learning curves. :mod:`genrec.compare` trains and collects the runs,
this module computes, :mod:`genrec.compare_report` formats.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from genrec.compare_report import ACCURACY, DIVERSITY


def paired_differences(ranks: list[tuple[str, np.ndarray]]) -> list[dict]:
    """Test NDCG@10 of every pair of models, paired by user: each model's per-user NDCG@10
    (averaged over its seeds; ``ranks`` holds one (model, test ranks) per run), then the mean
    difference with a 95% paired-bootstrap interval, its p-value and the p-value Holm-adjusted
    over all the pairs (``p_holm``)."""
    from genrec.evaluation import ndcg_per_example, paired_bootstrap
    from genrec.evaluation.significance import holm

    per_user: dict[str, list[np.ndarray]] = {}
    for model, run_ranks in ranks:
        per_user.setdefault(model, []).append(ndcg_per_example(run_ranks, 10))
    means = {model: np.mean(values, axis=0) for model, values in per_user.items()}
    models = list(means)
    pairs = [
        {"a": a, "b": b, **paired_bootstrap(means[a], means[b])}
        for i, a in enumerate(models)
        for b in models[i + 1 :]
        if means[a].shape == means[b].shape
    ]
    for pair, adjusted in zip(pairs, holm([pair["p"] for pair in pairs])):
        pair["p_holm"] = adjusted
    return pairs


def target_groups(config, ranks: list[tuple[str, np.ndarray]]) -> list[dict]:
    """Test NDCG@10 and Recall@10 of each model (mean over seeds) on the users whose target is in one
    of the dataset's ``item_groups`` (Synthetic: the planted twin and triple items)."""
    from genrec.evaluation import ndcg_per_example
    from genrec.pipeline import load_split

    interactions, split = load_split(config)
    index = {item: i for i, item in enumerate(interactions.item_ids)}
    rows = []
    for name, items in interactions.extra.get("item_groups", {}).items():
        users = np.isin(split.test.targets, [index[item] for item in items if item in index])
        for model in dict(ranks):
            per_seed = [r[users] for label, r in ranks if label == model]
            rows.append(
                {
                    "group": name,
                    "users": int(users.sum()),
                    "model": model,
                    "ndcg@10": float(np.mean([ndcg_per_example(r, 10).mean() for r in per_seed])),
                    "recall@10": float(np.mean([((r >= 0) & (r < 10)).mean() for r in per_seed])),
                }
            )
    return rows


def sweeps(settings: dict[str, dict[str, Any]], summary: dict, differences: list[dict]) -> list[dict]:
    """Variants of one model that differ in a single numeric setting and nothing else (``Latte:
    n_latent_tokens=1``, ``=2``, ``=4``...; at least three): each point's test NDCG@10 / Recall@10,
    and its paired NDCG@10 difference to every model outside the sweep, the references a reader asks
    "does any value beat it?" of. ``settings`` is each label's resolved configuration."""
    from genrec.evaluation import oriented_difference

    found = []
    for model in dict.fromkeys(values["model"] for values in settings.values()):
        labels = [label for label, values in settings.items() if values["model"] == model]
        varying = {
            key for key in settings[labels[0]] if len({json.dumps(settings[label][key]) for label in labels}) > 1
        }
        if len(labels) < 3 or len(varying) != 1:
            continue
        (key,) = varying
        values = [settings[label][key] for label in labels]
        if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
            continue
        references = [label for label in settings if label not in labels]
        points = [
            {
                "label": label,
                "value": settings[label][key],
                **{metric: summary[label][metric] for metric in ("ndcg@10", "recall@10")},
                "runs": summary[label]["converged"]["runs"],
                "minus_reference": {
                    reference: oriented_difference(differences, label, reference) for reference in references
                },
            }
            for label in sorted(labels, key=lambda label: settings[label][key])
        ]
        found.append(
            {
                "model": model,
                "key": key,
                "points": points,
                "references": {reference: summary[reference]["ndcg@10"] for reference in references},
            }
        )
    return found


def learning_curve(epochs: list[dict]) -> list[dict]:
    """Validation NDCG@10 after each validated epoch, with the training seconds spent until then."""
    curve, seconds = [], 0.0
    for record in epochs:
        seconds += record.get("seconds", 0.0)
        if "valid" in record:
            curve.append(
                {"epoch": record["epoch"], "seconds": round(seconds, 2), "ndcg@10": record["valid"]["ndcg@10"]}
            )
    return curve


def converged(config, epochs: list[dict], best_epoch: int) -> bool:
    """Whether validation had stopped improving: the run stopped by patience, or it reached its
    epoch cap with its best epoch older than its last ``patience`` validations. A run that was
    still improving near its cap has not converged, and its numbers understate the model."""
    last = max((record["epoch"] for record in epochs), default=0)
    return last < config.epochs or best_epoch <= config.epochs - config.patience * config.eval_interval


def group_curves(runs: list[dict]) -> dict[str, list[list[dict]]]:
    by_model: dict[str, list[list[dict]]] = {}
    for run in runs:
        by_model.setdefault(run["model"], []).append(run["results"]["curve"])
    return by_model


def mean_std(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0}


def summarize(runs: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per model: mean and sample std over seeds of the test metrics, training and inference time."""
    by_model: dict[str, list[dict]] = {}
    for run in runs:
        by_model.setdefault(run["model"], []).append(run)
    summary = {}
    for model, group in by_model.items():
        test = [run["results"]["test"] for run in group]
        reported = [name for name in (*ACCURACY, *DIVERSITY) if all(name in t for t in test)]
        summary[model] = {name: mean_std([t[name] for t in test]) for name in reported}
        summary[model]["train_seconds"] = mean_std([run["results"]["train_seconds"] for run in group])
        summary[model]["test_seconds_per_1k_users"] = mean_std([1000 / t["users_per_s"] for t in test])
        summary[model]["best_epoch"] = mean_std([run["results"]["best_epoch"] for run in group])
        if all("valid_num_beams" in run["results"] for run in group):  # runs trained before it was recorded lack it
            summary[model]["valid_num_beams"] = mean_std([run["results"]["valid_num_beams"] for run in group])
        summary[model]["converged"] = {
            "runs": len(group),
            "converged": sum(run["results"]["converged"] for run in group),
        }
    return summary
