"""What ``genrec compare`` writes about a comparison: the Markdown report, and the same table as CSV
(for spreadsheets and plotting scripts) and LaTeX (for papers). :mod:`genrec.compare` trains and
collects the runs; this module only formats what it collected.

The paired differences carry Holm-adjusted p-values: a comparison of n models reports n(n-1)/2
pairs, and at 5% each some intervals exclude 0 by chance alone.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from genrec.evaluation.metrics import shown

ACCURACY = ("recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@10")
# Reported when every run of a model has them (older runs, or models without beams, may not).
DIVERSITY = ("coverage@10", "entropy@10", "category_entropy@10", "pruned", "beam_items", "invalid@10")

# The table's columns: (summary key, header, digits).
COLUMNS = (
    ("recall@5", "Recall@5", 4),
    ("recall@10", "Recall@10", 4),
    ("ndcg@5", "NDCG@5", 4),
    ("ndcg@10", "NDCG@10", 4),
    ("mrr@10", "MRR@10", 4),
    ("coverage@10", "coverage@10", 4),
    ("entropy@10", "entropy@10 (bits)", 2),
    ("category_entropy@10", "category entropy@10", 2),
    ("pruned", "pruned by the beam", 4),
    ("beam_items", "items in the beam", 1),
    ("valid_num_beams", "validation beam", 0),
    ("best_epoch", "best epoch", 1),
    ("train_seconds", "train s", 0),
    ("test_seconds_per_1k_users", "test s / 1k users", 2),
)


def cell(stat: dict[str, float] | None, digits: int, several_seeds: bool, plus_minus: str = " ± ") -> str:
    """``mean ± std`` (``std`` only over several seeds); ``—`` where the runs lack the metric."""
    if stat is None:
        return "—"
    return f"{stat['mean']:.{digits}f}" + (f"{plus_minus}{stat['std']:.{digits}f}" if several_seeds else "")


def converged_cell(stats: dict) -> str:
    done = stats["converged"]
    return f"{done['converged']}/{done['runs']}" + ("" if done["converged"] == done["runs"] else " **not converged**")


def markdown_table(summary: dict, seeds: list[int]) -> str:
    header = ["model", *(title for _, title, _ in COLUMNS), "converged"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, stats in summary.items():
        cells = [cell(stats.get(key), digits, len(seeds) > 1) for key, _, digits in COLUMNS]
        lines.append("| " + " | ".join([model, *cells, converged_cell(stats)]) + " |")
    lines += [
        "",
        "*converged*: runs that stopped by patience, or whose best validation epoch is older than their last "
        "`patience` validations before the epoch cap; the others were still improving, so their numbers "
        "understate the model.",
    ]
    return "\n".join(lines)


def csv_table(summary: dict) -> str:
    """One row per model: each column's mean and sample std over seeds (empty where the runs lack
    it), the number of runs and how many converged."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    statistics = [f"{key}_{part}" for key, _, _ in COLUMNS for part in ("mean", "std")]
    writer.writerow(["model", *statistics, "runs", "converged"])
    for model, stats in summary.items():
        values: list[Any] = []
        for key, _, _ in COLUMNS:
            stat = stats.get(key)
            values += [stat["mean"], stat["std"]] if stat else ["", ""]
        writer.writerow([model, *values, stats["converged"]["runs"], stats["converged"]["converged"]])
    return out.getvalue()


def latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


def latex_table(summary: dict, seeds: list[int]) -> str:
    """The accuracy columns as a ``booktabs`` table, mean ± std over seeds, the best mean of each
    column in bold."""
    columns = [(key, title, digits) for key, title, digits in COLUMNS if key in ACCURACY]
    best = {
        key: max((stats[key]["mean"] for stats in summary.values() if key in stats), default=None)
        for key, _, _ in columns
    }
    lines = [
        r"\begin{tabular}{l" + "c" * len(columns) + "}",
        r"\toprule",
        "Model & " + " & ".join(latex_escape(title) for _, title, _ in columns) + r" \\",
        r"\midrule",
    ]
    for model, stats in summary.items():
        cells = []
        for key, _, digits in columns:
            text = cell(stats.get(key), digits, len(seeds) > 1, plus_minus=r" $\pm$ ").replace("—", "--")
            bold = key in stats and stats[key]["mean"] == best[key]
            cells.append(rf"\textbf{{{text}}}" if bold else text)
        lines.append(latex_escape(model) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def markdown_differences(differences: list[dict], n_users: int) -> str:
    lines = [
        f"Paired differences in test NDCG@10 (per-user NDCG@10 averaged over seeds; 95% paired bootstrap "
        f"interval over the {n_users} test users, 2,000 resamples; an interval that excludes 0 is a difference "
        "beyond the users' noise; *Holm p*: the bootstrap p-value adjusted for the "
        f"{len(differences)} pairs tested together, below 0.05 beyond noise even counting every pair):",
        "",
        "| A − B | mean | 95% interval | Holm p |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {d['a']} − {d['b']} | {d['mean']:+.4f} | [{d['low']:+.4f}, {d['high']:+.4f}] | {d['p_holm']:.3f} |"
        for d in differences
    ]
    return "\n".join(lines)


def markdown_groups(rows: list[dict]) -> str:
    groups = list(dict.fromkeys(row["group"] for row in rows))
    users = {row["group"]: row["users"] for row in rows}
    lines = [
        "Test accuracy on the users whose target is one of the dataset's items of interest (NDCG@10 / Recall@10, "
        "mean over seeds):",
        "",
        "| model | " + " | ".join(f"{g} ({users[g]} users)" for g in groups) + " |",
        "|---|" + "---|" * len(groups),
    ]
    cells = {(row["model"], row["group"]): f"{shown(row['ndcg@10'])} / {shown(row['recall@10'])}" for row in rows}
    for model in dict.fromkeys(row["model"] for row in rows):
        lines.append(f"| {model} | " + " | ".join(cells[model, g] for g in groups) + " |")
    return "\n".join(lines)


def markdown_changes(changes: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "Each model's own settings (`genrec/models/<Model>/config.yaml`) that the file, flags or variant changed, "
        "its default in brackets:",
        "",
    ]
    for model, changed in changes.items():
        listed = ", ".join(f"`{key}` {c['value']} ({c['default']})" for key, c in changed.items())
        lines.append(f"- {model}: {listed or 'none'}")
    return "\n".join(lines)
