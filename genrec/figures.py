"""Figures written next to the JSON they show (PNG for reading, SVG for papers), with matplotlib's
file-only backend so they work on machines without a display.

One function per figure (about 420 lines in all), kept together so that every figure shares one
style and one writer; each is independent of the others."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from genrec.cache import atomic_write  # noqa: E402


def save_figure(figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically; returns both paths."""
    paths = []
    for suffix in (".png", ".svg"):
        path = stem.with_suffix(suffix)
        atomic_write(path, lambda tmp, fmt=suffix[1:]: figure.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))
        paths.append(path)
    plt.close(figure)
    return paths


def whole_epochs(*axes) -> None:
    """Epoch axes tick at whole epochs (a few epochs otherwise read 0.5, 1.5...)."""
    for axis in axes:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def spread_title(runs: list[int]) -> str:
    """What a figure's error bars are: the seeds' sample std, or nothing with one seed."""
    return "Mean over seeds, error bars: sample std" if max(runs, default=1) > 1 else "One seed (no error bars)"


def learning_curves_figure(curves: dict[str, list[list[dict]]], stem: Path) -> list[Path]:
    """Validation NDCG@10 against epochs and against training seconds, one colour per model and one
    line per seed: whether a model was still improving when it stopped is visible at a glance."""
    figure, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colours = plt.get_cmap("tab10")
    for index, (model, runs) in enumerate(curves.items()):
        for seed, curve in enumerate(runs):
            label = model if seed == 0 else None
            epochs = [point["epoch"] for point in curve]
            seconds = [point["seconds"] for point in curve]
            ndcg = [point["ndcg@10"] for point in curve]
            by_epoch.plot(epochs, ndcg, color=colours(index % 10), alpha=0.8, linewidth=1.2, label=label)
            by_time.plot(seconds, ndcg, color=colours(index % 10), alpha=0.8, linewidth=1.2)
    by_epoch.set(xlabel="epoch", ylabel="validation NDCG@10")
    whole_epochs(by_epoch)
    by_time.set(xlabel="training seconds (validation included)")
    for axes in (by_epoch, by_time):
        axes.grid(alpha=0.3)
    by_epoch.legend(fontsize=8)
    figure.suptitle("Learning curves (one line per seed)")
    return save_figure(figure, stem)


def tree_correlation_figure(rows: dict[str, list[dict]], summaries: dict[str, list[dict]], stem: Path) -> list[Path]:
    """Left: the correlation of two items' probabilities over users, a box per tree distance and
    model; right: the mean rank-reversal rate per distance. ``rows``/``summaries``: per model label,
    the pair rows and per-distance summary of :func:`genrec.analysis.tree.tree_analysis`."""
    figure, (boxes, reversal) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    colours = plt.get_cmap("tab10")
    distances = sorted({row["distance"] for model_rows in rows.values() for row in model_rows})
    width = 0.8 / max(1, len(rows))
    for index, (label, model_rows) in enumerate(rows.items()):
        colour = colours(index % 10)
        data = [
            [r["correlation"] for r in model_rows if r["distance"] == d and r["correlation"] == r["correlation"]]
            for d in distances
        ]
        positions = [k + (index - (len(rows) - 1) / 2) * width for k in range(len(distances))]
        kept = [(p, values) for p, values in zip(positions, data) if values]
        parts = boxes.boxplot(
            [values for _, values in kept],
            positions=[p for p, _ in kept],
            widths=width * 0.9,
            patch_artist=True,
            showfliers=False,
            manage_ticks=False,
            medianprops={"color": "black"},
        )
        for patch in parts["boxes"]:
            patch.set(facecolor=colour, alpha=0.6)
        boxes.plot([], [], color=colour, linewidth=6, alpha=0.6, label=label)
        points = summaries[label]
        reversal.plot(
            [p["distance"] for p in points], [p["rank_reversal"] for p in points], marker="o", color=colour, label=label
        )
    boxes.set_xticks(range(len(distances)), [str(d) for d in distances])
    boxes.set(
        xlabel="tree distance", ylabel="Pearson correlation over users", title="Item probabilities vs tree distance"
    )
    reversal.set(
        xlabel="tree distance",
        ylabel="share of user pairs ordering them differently",
        title="Rank reversal",
        xticks=distances,
    )
    for axes in (boxes, reversal):
        axes.grid(alpha=0.3)
    boxes.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, stem)


def latent_usage_figure(summaries: dict[str, dict], stem: Path) -> list[Path]:
    """How evenly each latent-token run uses its latent tokens: per run, the share of each token as
    the dominant path of an item among a user's top 10 and over all items (for
    ``latent_mode=permutation`` the tokens are ID-level orders, named by them). ``summaries``: per
    run label, the summary of :func:`genrec.analysis.tree.tree_analysis` (runs without latent
    tokens are left out)."""
    runs = {label: s for label, s in summaries.items() if "latent_usage_top10" in s}
    figure, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs) + 1, 3.8), squeeze=False)
    for ax, (label, summary) in zip(axes[0], runs.items()):
        n = len(summary["latent_usage_top10"]["shares"])
        names = (
            ["".join(map(str, o)) for o in summary["latent_orders"]] if "latent_orders" in summary else list(range(n))
        )
        for offset, (key, what) in enumerate((("latent_usage_top10", "top 10"), ("latent_usage_all", "all items"))):
            usage = summary[key]
            ax.bar(
                [k + (offset - 0.5) * 0.4 for k in range(n)],
                usage["shares"],
                width=0.4,
                label=f"{what} (relative entropy {usage['relative_entropy']:.2f})",
            )
        ax.axhline(1 / n, color="black", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(n), [str(name) for name in names])
        xlabel = "latent token = ID-level order" if "latent_orders" in summary else "latent token"
        ax.set(title=label, xlabel=xlabel, ylabel="share as an item's dominant path")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return save_figure(figure, stem)


def beam_widths_figure(rows: list[dict], stem: Path) -> list[Path]:
    """Rows of :func:`genrec.analysis.beam_sweep`, one line per run (and aggregation): Recall@10 and
    seconds per 1,000 users against the beam width, and NDCG@10 against seconds (each point labelled
    with its width), where models compare at equal decoding cost."""
    from matplotlib.ticker import FuncFormatter

    figure, (recall, cost, equal) = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = plt.get_cmap("tab10")
    lines = list(dict.fromkeys((row["run"], row["aggregation"]) for row in rows))
    for index, line in enumerate(lines):
        points = [row for row in rows if (row["run"], row["aggregation"]) == line]
        first = points[0]
        latte = f", n={first['latent_tokens']}, {first['aggregation']}" if first["aggregation"] else ""
        style = {
            "marker": "o",
            "color": colours(index % 10),
            "label": f"{first['label']} (seed {first['seed']}{latte})",
        }
        widths = [p["beam"] for p in points]
        recall.plot(widths, [p["recall@10"] for p in points], **style)
        cost.plot(widths, [p["s_per_1k_users"] for p in points], **style)
        equal.plot([p["s_per_1k_users"] for p in points], [p["ndcg@10"] for p in points], **style)
        for p in points:
            equal.annotate(
                str(p["beam"]),
                (p["s_per_1k_users"], p["ndcg@10"]),
                textcoords="offset points",
                xytext=(3, -10),
                fontsize=7,
            )
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    recall.set(xscale="log", xlabel="beam width", ylabel="test Recall@10", title="Accuracy against beam width")
    cost.set(
        xscale="log", yscale="log", xlabel="beam width", ylabel="seconds per 1,000 test users", title="Decoding cost"
    )
    equal.set(
        xscale="log",
        xlabel="seconds per 1,000 test users",
        ylabel="test NDCG@10",
        title="Accuracy at equal decoding cost (labels: width)",
    )
    cost.yaxis.set_major_formatter(plain)
    cost.yaxis.set_minor_formatter(plain)
    for axes in (recall, cost, equal):
        axes.xaxis.set_major_formatter(plain)
        axes.xaxis.set_minor_formatter(plain)
        axes.tick_params(axis="x", which="minor", labelsize=7)
        axes.grid(alpha=0.3)
    recall.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, stem)


def diversity_tradeoff_figure(rows: list[dict], stem: Path) -> list[Path]:
    """Rows of :func:`genrec.analysis.diversity_sweep`: test NDCG@10 against category entropy@10 (item
    entropy@10 when the data has no categories) and against coverage@10, a colour per run, a marker
    per lever, each point labelled with its setting: how much accuracy each unit of spread costs."""
    figure, (entropy, coverage) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    colours = plt.get_cmap("tab10")
    markers = {"plain": "o", "diverse beam search": "s", "prefix cap": "^", "MMR": "D", "prefix cap + MMR": "v"}
    spread = "category_entropy@10" if all(row.get("category_entropy@10") is not None for row in rows) else "entropy@10"
    runs = list(dict.fromkeys(row["run"] for row in rows))
    for index, run in enumerate(runs):
        points = [row for row in rows if row["run"] == run]
        for lever in dict.fromkeys(point["lever"] for point in points):
            chosen = [point for point in points if point["lever"] == lever]
            style = {
                "color": colours(index % 10),
                "marker": markers.get(lever, "o"),
                "linestyle": "-" if len(chosen) > 1 else "",
                "label": f"{chosen[0]['label']} (seed {chosen[0]['seed']}): {lever}",
            }
            for axes, key in ((entropy, spread), (coverage, "coverage@10")):
                axes.plot([p[key] for p in chosen], [p["ndcg@10"] for p in chosen], alpha=0.85, **style)
                for order, p in enumerate(chosen):  # staggered: neighbouring settings' labels do not overprint
                    axes.annotate(
                        p["setting"],
                        (p[key], p["ndcg@10"]),
                        textcoords="offset points",
                        xytext=(4, 8 * (order % 3) - 8),
                        fontsize=6,
                        alpha=0.85,
                    )
    entropy.set(
        xlabel=f"test {spread.replace('@10', '@10 (bits)')}",
        ylabel="test NDCG@10",
        title="Accuracy against spread over categories"
        if spread.startswith("category")
        else "Accuracy against spread over items",
    )
    coverage.set(xlabel="test coverage@10 (share of the catalogue listed)", title="Accuracy against catalogue coverage")
    for axes in (entropy, coverage):
        axes.grid(alpha=0.3)
    entropy.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, stem)


def cold_start_figure(rows: list[dict], stem: Path) -> list[Path]:
    """Rows of :func:`genrec.analysis.cold_start_evaluation`: test NDCG@10 per run (bar groups) and
    ranker (bars), on the users whose target was held out of training and on the others."""
    groups = ("cold", "warm")
    figure, panels = plt.subplots(1, 2, figsize=(12, 4.2))
    runs = list(dict.fromkeys(row["run"] for row in rows))
    rankers = list(dict.fromkeys(row["ranker"] for row in rows))
    colours = plt.get_cmap("tab10")
    labels = {row["run"]: f"{row['label']}\n(seed {row['seed']})" for row in rows}
    width = 0.8 / len(rankers)
    for axes, group in zip(panels, groups):
        chosen = [row for row in rows if row["users"] == group]
        for index, ranker in enumerate(rankers):
            values = {row["run"]: row["ndcg@10"] for row in chosen if row["ranker"] == ranker}
            axes.bar(
                np.arange(len(runs)) + (index - (len(rankers) - 1) / 2) * width,
                [values.get(run, 0.0) for run in runs],
                width,
                color=colours(index),
                label=ranker,
            )
        users = chosen[0]["n_users"] if chosen else 0
        axes.set(
            xticks=np.arange(len(runs)),
            xticklabels=[labels[run] for run in runs],
            ylabel="test NDCG@10",
            title=f"{'Held-out' if group == 'cold' else 'Trained'} targets ({users} users)",
        )
        axes.tick_params(axis="x", labelsize=7)
        axes.grid(axis="y", alpha=0.3)
    panels[0].legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, stem)


def run_curves_figure(runs: dict[str, list[dict]], stem: Path) -> list[Path]:
    """Per run (``label: metrics.jsonl records``): validation NDCG@10 and Recall@10 against epochs,
    NDCG@10 against training seconds (validation included), and the training loss."""
    figure, (by_epoch, by_time, loss) = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = plt.get_cmap("tab10")
    # Different models' losses measure different things (SASRec's BCE, a semantic-ID model's token
    # cross-entropy): then each run's loss is shown relative to its first epoch.
    relative = len({label.split(" seed ")[0] for label in runs}) > 1
    for index, (label, records) in enumerate(runs.items()):
        colour = colours(index % 10)
        seconds = np.cumsum([record.get("seconds", 0.0) for record in records])
        valid = [
            (record["epoch"], spent, record["valid"]) for record, spent in zip(records, seconds) if "valid" in record
        ]
        epochs = [epoch for epoch, _, _ in valid]
        by_epoch.plot(epochs, [v["ndcg@10"] for _, _, v in valid], color=colour, label=f"{label} NDCG@10")
        by_epoch.plot(
            epochs, [v["recall@10"] for _, _, v in valid], color=colour, linestyle="--", label=f"{label} Recall@10"
        )
        by_time.plot([spent for _, spent, _ in valid], [v["ndcg@10"] for _, _, v in valid], color=colour, label=label)
        losses = np.array([record["loss"] for record in records], dtype=float)
        if relative and len(losses) and losses[0]:
            losses = losses / losses[0]
        loss.plot([record["epoch"] for record in records], losses, color=colour, label=label)
    by_epoch.set(xlabel="epoch", ylabel="validation metric", title="Validation against epochs")
    by_time.set(
        xlabel="training seconds (validation included)", ylabel="validation NDCG@10", title="Validation against time"
    )
    loss.set(
        xlabel="epoch",
        ylabel="training loss / its first epoch's" if relative else "training loss",
        title="Training loss, relative (the models' losses differ in kind)" if relative else "Training loss",
    )
    whole_epochs(by_epoch, loss)
    for axes in (by_epoch, by_time, loss):
        axes.grid(alpha=0.3)
    by_epoch.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, stem)


def comparison_figure(
    summary: dict[str, dict], runs_per_model: dict[str, int], differences: list[dict], stem: Path
) -> list[Path]:
    """Test NDCG@10 and Recall@10 per model of a comparison (mean over seeds, error bars the sample
    std), and each model's paired NDCG@10 difference to the best one with its 95% interval: models
    a few thousandths apart read as tied or not at a glance, which bars from zero cannot show."""
    from genrec.evaluation import oriented_difference

    models = sorted(summary, key=lambda model: summary[model]["ndcg@10"]["mean"])
    best = models[-1]
    figure, (metrics, gaps) = plt.subplots(
        1, 2, figsize=(12, max(3.0, 0.45 * len(models) + 1.5)), sharey=True, width_ratios=(3, 2)
    )
    rows = np.arange(len(models))
    for offset, (metric, colour) in zip((0.12, -0.12), (("ndcg@10", "tab:blue"), ("recall@10", "tab:orange"))):
        metrics.errorbar(
            [summary[m][metric]["mean"] for m in models],
            rows + offset,
            xerr=[summary[m][metric]["std"] for m in models],
            fmt="o",
            capsize=3,
            color=colour,
            label=f"test {metric}",
        )
    for row, model in enumerate(models[:-1]):
        d = oriented_difference(differences, model, best)
        if d is None:  # evaluated on other users
            continue
        gaps.errorbar(
            d["mean"],
            row,
            xerr=[[d["mean"] - d["low"]], [d["high"] - d["mean"]]],
            fmt="o",
            capsize=3,
            color="tab:red" if d["high"] < 0 else "tab:gray",
        )
    gaps.axvline(0.0, color="black", linewidth=0.8)
    labels = [
        f"{m.replace(':', chr(10) + '  :')} ({runs_per_model[m]} seed{'s' * (runs_per_model[m] > 1)})" for m in models
    ]
    metrics.set_yticks(rows, labels, fontsize=7)
    metrics.set(xlabel="test metric", title=spread_title(list(runs_per_model.values())))
    gaps.set(
        xlabel=f"NDCG@10 − {best}",
        title="Paired difference to the best, 95% interval\n(red: below it beyond the users' noise)",
    )
    for axes in (metrics, gaps):
        axes.grid(alpha=0.3)
    metrics.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, stem)


def sweep_figure(sweep: dict, stem: Path) -> list[Path]:
    """One model's variants along one numeric setting (``compare.sweeps``): test NDCG@10 and
    Recall@10 against the setting, the other models as horizontal lines; and each point's paired
    NDCG@10 difference to those models with its 95% interval, so "beyond the users' noise" reads off
    the zero line."""
    points, references = sweep["points"], list(sweep["references"])
    values = [point["value"] for point in points]
    figure, panels = plt.subplots(1, 2 if references else 1, figsize=(11 if references else 5.5, 4.2), squeeze=False)
    metrics, differences = panels[0][0], panels[0][-1]
    colours = plt.get_cmap("tab10")
    for metric, colour in (("ndcg@10", "tab:blue"), ("recall@10", "tab:orange")):
        metrics.errorbar(
            values,
            [point[metric]["mean"] for point in points],
            yerr=[point[metric]["std"] for point in points],
            color=colour,
            marker="o",
            capsize=3,
            label=f"{sweep['model']} test {metric}",
        )
    for index, (reference, ndcg) in enumerate(sweep["references"].items()):
        colour = colours((index + 2) % 10)
        metrics.axhline(ndcg["mean"], color=colour, linestyle="--", label=f"{reference} test ndcg@10")
        paired = [point["minus_reference"][reference] for point in points]
        differences.errorbar(
            values,
            [d["mean"] if d else np.nan for d in paired],
            yerr=[
                [d["mean"] - d["low"] if d else 0 for d in paired],
                [d["high"] - d["mean"] if d else 0 for d in paired],
            ],
            color=colour,
            marker="o",
            capsize=3,
            label=f"{sweep['model']} − {reference}",
        )
    if references:
        differences.axhline(0.0, color="black", linewidth=0.8)
        differences.set(
            xlabel=sweep["key"], ylabel="paired test NDCG@10 difference", title="Difference, 95% bootstrap interval"
        )
        differences.legend(fontsize=7)
    metrics.set(xlabel=sweep["key"], ylabel="test metric", title=spread_title([p.get("runs", 1) for p in points]))
    positive = all(value > 0 for value in values)
    for axes in dict.fromkeys((metrics, differences)):  # one panel when there is no reference
        if positive and max(values) >= 8 * min(values):
            axes.set_xscale("log", base=2)
        axes.set_xticks(values, [str(value) for value in values])
        axes.grid(alpha=0.3)
    metrics.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, stem)
