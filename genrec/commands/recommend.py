"""``genrec recommend``: top-k lists from a trained run, for one history or a JSONL file of them."""

from __future__ import annotations

import json
from pathlib import Path

from genrec.cache import atomic_write_text
from genrec.commands.flags import count_flag, list_flag
from genrec.errors import DataError, GenrecError


def cmd_recommend(argv: list[str]) -> int:
    """``genrec recommend --run=DIR (--history=ID,ID,... | --input=FILE.jsonl [--output=FILE.jsonl])
    [--k=10] [--exclude_seen=true] [--num_beams=N] [--on_unknown=skip] [--batch_size=N]
    [--allow=ID,ID,...] [--deny=ID,ID,...] [--category=NAME]
    [--diversity="groups=5,penalty=1" | "prefix_cap=1" | "mmr=0.7" ...]``; other flags go to
    :func:`genrec.load_run` (``--data_dir``, ``--device`` ...). An input line is ``{"history": [ids],
    "id": anything, "k": its own list length}``; each output line ``{"id", "items", "scores"}``, in
    input order. A bad line, or an unknown item under ``--on_unknown=error``, names its line. The
    restrictions (``allow`` / ``deny`` / ``category``) are those of :meth:`genrec.Run.recommend` and
    of ``POST /recommend``, for every line."""
    from genrec.analysis.diversity import parse_settings
    from genrec.config import parse_flags
    from genrec.run import load_run
    from genrec.runtime import progress

    _, flags = parse_flags(argv, text=frozenset({"run", "history", "input", "output", "allow", "deny", "category"}))
    if "run" not in flags or ("history" in flags) == ("input" in flags):
        raise GenrecError("recommend needs --run=DIR and one of --history=ID,ID,... or --input=FILE.jsonl")
    options = {
        "k": count_flag(flags, "k", 10, 1),
        "exclude_seen": bool(flags.pop("exclude_seen", False)),
        "num_beams": flags.pop("num_beams", None),
        "on_unknown": flags.pop("on_unknown", "error"),
        "allow": list_flag(flags, "allow", "", str) if "allow" in flags else None,
        "deny": list_flag(flags, "deny", "", str) if "deny" in flags else None,
        "category": str(flags.pop("category")) if "category" in flags else None,
    }
    if "diversity" in flags:
        (diversity, num_beams), *more = parse_settings(str(flags.pop("diversity")))
        if more or num_beams is not None:
            raise GenrecError(
                "--diversity takes one setting (key=value,... of groups, penalty, prefix_cap, prefix_length, "
                "mmr); the beam is --num_beams"
            )
        options["diversity"] = diversity
    run_dir, output = Path(str(flags.pop("run"))), flags.pop("output", None)
    source = Path(str(flags.pop("input"))) if "input" in flags else None
    if source is not None and output is not None and Path(str(output)).resolve() == source.resolve():
        raise GenrecError(f"--output is --input ({source}): writing the lists would overwrite the histories")
    if source is None:
        history = [str(item) for item in list_flag(flags, "history", "", str)]
        requests = [{"id": 0, "history": history, "k": None, "line": None}]
    else:
        requests = read_requests(source)
    batch_size = count_flag(flags, "batch_size", 256, 1)
    run = load_run(run_dir, **flags)
    if source is not None and options["on_unknown"] == "error":
        unknown_items_by_line(run, requests, source)
    ranked_lists: list[list[tuple[str, float]] | None] = [None] * len(requests)
    for start in progress(
        range(0, len(requests), batch_size), desc="recommend", disable=True if len(requests) <= batch_size else None
    ):
        rows = range(start, min(start + batch_size, len(requests)))
        for k in dict.fromkeys(requests[row]["k"] or options["k"] for row in rows):  # one pass per list length
            chosen = [row for row in rows if (requests[row]["k"] or options["k"]) == k]
            answers = run.recommend(
                [requests[row]["history"] for row in chosen], batch_size=batch_size, **{**options, "k": k}
            )
            for row, ranked in zip(chosen, answers):
                ranked_lists[row] = ranked
    lines = [
        json.dumps(
            {
                "id": request["id"],
                "items": [item for item, _ in ranked],
                "scores": [round(score, 6) for _, score in ranked],
            }
        )
        for request, ranked in zip(requests, ranked_lists)
    ]
    text = "".join(line + "\n" for line in lines)
    if output:
        atomic_write_text(Path(str(output)), text)
        print(f"{len(lines)} lists: {output}")
    else:
        print(text, end="")
    return 0


def read_requests(path: Path) -> list[dict]:
    """The ``{"history": [...], "id": ..., "k": ...}`` lines of a JSONL file (``id`` defaults to the
    line number, ``k`` to ``--k``); each request remembers its line, and a malformed line (not UTF-8,
    not JSON, an unknown key, a bad ``k``) is an error naming it."""
    from genrec.datasets.io import read_jsonl

    requests = []
    try:
        for number, request in read_jsonl(path):
            history = request.get("history")
            if not isinstance(history, list) or not all(isinstance(item, str | int) for item in history):
                raise GenrecError(f'{path}:{number}: expected {{"history": [item ids], "id": ..., "k": ...}}')
            unknown = sorted(set(request) - {"history", "id", "k"})
            if unknown:
                raise GenrecError(
                    f"{path}:{number}: unknown key(s) {', '.join(unknown)}: a line holds history, id and k; "
                    "the other options are flags for the whole file"
                )
            k = request.get("k")
            if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
                raise GenrecError(f"{path}:{number}: k must be an integer >= 1, got {k!r}")
            requests.append(
                {"id": request.get("id", number), "history": [str(i) for i in history], "k": k, "line": number}
            )
    except DataError as exc:
        raise GenrecError(str(exc)) from None
    return requests


def unknown_items_by_line(run, requests: list[dict], path: Path) -> None:
    """With ``on_unknown=error``: the first request naming an item the run does not know, by its line."""
    for request in requests:
        unknown = [item for item in request["history"] if item not in run.item_index]
        if unknown:
            raise GenrecError(
                f"{path}:{request['line']}: item id(s) not in the catalogue of {run.interactions.name}: "
                f"{', '.join(map(repr, unknown[:10]))} (--on_unknown=skip leaves them out)"
            )
