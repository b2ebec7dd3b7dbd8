"""One module per ``genrec`` command, over the library (which never imports them).

Each command is a function ``cmd_<name>(argv) -> int`` whose docstring is its ``--help``; it reads
its flags, calls the library, prints, and returns the exit code. :mod:`genrec.cli` maps the
command's words to it. ``flags`` and ``tables`` hold what several commands share: reading flag
values and run folders, and printing tables.
"""
