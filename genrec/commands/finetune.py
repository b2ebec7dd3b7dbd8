"""``genrec finetune``: fine-tuning of a generative run (GRPO, DPO / S-DPO) into a new run folder."""

from __future__ import annotations

from pathlib import Path

from genrec.commands.tables import results_table
from genrec.errors import GenrecError


def cmd_finetune(argv: list[str]) -> int:
    """``genrec finetune --run=DIR [--method=grpo|dpo] [--lr=1e-4] [--batch_size=32]
    [--steps_per_epoch=50] [--epochs=10] [--patience=3] [--seed=0] [--output=DIR]`` and the method's
    own flags: GRPO ``[--reward=relevance:1,validity:0.5] [--group=8] [--candidates=sample|beam]
    [--temperature=1] [--constrained=true] [--clip=0.2] [--kl=0.04] [--updates=1]``, DPO
    ``[--beta=1] [--negatives=3] [--negative_source=beam|random]``. A new run folder fine-tuned from
    ``--run``; other flags go to :func:`genrec.load_run` (``--data_dir``, ``--cache_dir``, ``--device``)."""
    import time

    from pydantic import ValidationError

    from genrec.config import parse_flags
    from genrec.finetune import METHODS, finetune
    from genrec.run import load_run

    _, flags = parse_flags(argv)
    if "run" not in flags:
        raise GenrecError("finetune needs --run=DIR (a finished TIGER / PSID / Latte run)")
    method = str(flags.pop("method", "grpo"))
    if method not in METHODS:
        raise GenrecError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    kind = METHODS[method][0]
    others = {key for settings, _ in METHODS.values() for key in settings.model_fields} - set(kind.model_fields)
    if mistaken := sorted(others & set(flags)):
        raise GenrecError(f"--{mistaken[0]} is not a setting of --method={method}")
    parent = Path(str(flags.pop("run")))
    chosen = {key: flags.pop(key) for key in list(flags) if key in kind.model_fields}
    try:
        settings = kind(**chosen)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise GenrecError(f"--{'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    output = Path(str(flags.pop("output", parent.parent / f"{parent.name}-{method}-{time.strftime('%Y%m%d-%H%M%S')}")))
    results = finetune(load_run(parent, **flags), settings, output)
    print(results_table(results))
    print(f"fine-tuned from {parent} (best epoch {results['best_epoch']}; 0: no epoch beat the start): {output}")
    return 0
