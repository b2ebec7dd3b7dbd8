"""What the commands print: plain aligned tables of rows, results and semantic-ID reports."""

from __future__ import annotations

from genrec.evaluation.metrics import shown


def format_table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def results_table(results: dict) -> str:
    columns = ["split", *results["valid"]]  # every metric the evaluator reported, users_per_s last
    rows = [
        {"split": split, **{k: shown(v) if k != "users_per_s" else f"{v:.0f}" for k, v in results[split].items()}}
        for split in ("valid", "test")
    ]
    return format_table(rows, columns)


def sids_summary(report: dict) -> str:
    table = format_table(report["levels"], ["level", "utilisation", "collision_rate", "recon_error"])
    return (
        f"semantic IDs: {report['method']} on {report['embedding_source']} embeddings, {report['n_items']} items, "
        f"collision={report['collision']}\n{table}\n"
        f"colliding before resolution: {report['colliding_items']:.2%}  moved: {report['moved_items']}  "
        f"ID length: {report['id_length']}  unique: {report['unique']:.2%}"
    )
