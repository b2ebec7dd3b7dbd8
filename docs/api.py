"""Build the API reference from the docstrings: ``python docs/api.py [OUT]`` (``make docs``) writes
HTML pages, one per module of genrec, into ``OUT`` (default ``docs/api``; not committed: it is
built from the code it describes). pdoc's warnings (a docstring reference that does not resolve, a
module that fails to import) fail the build; ``tests/test_api_docs.py`` builds it on every run of the
suite."""

from __future__ import annotations

import pkgutil
import sys
import warnings
from pathlib import Path


def modules() -> list[str]:
    """Every module and package directly under ``genrec`` (each package's page links its modules).
    ``genrec`` itself is left out: its lazy names (``genrec.load_run``) are documented in
    :mod:`genrec.run`, where they live."""
    import genrec

    return sorted(f"genrec.{info.name}" for info in pkgutil.iter_modules(genrec.__path__) if info.name != "__main__")


def build(output: Path) -> list[Path]:
    """Write the pages into ``output``; returns them. Raises if pdoc warns."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="restructuredtext", footer_text="genrec API reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*modules(), output_directory=output)
    # pdoc's own warnings fail the build; deprecation notices of the libraries it inspects do not
    # (older pdoc reads pydantic's deprecated ``__fields__``)
    problems = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    if problems:
        raise RuntimeError("the API reference has problems:\n" + "\n".join(problems))
    return sorted(output.rglob("*.html"))


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "api")
    pages = build(out)
    print(f"{len(pages)} pages in {out}; open {out / 'index.html'}")
