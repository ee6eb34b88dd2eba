"""``python -m chargen``: the same as the ``chargen`` command (and what torchrun runs)."""

from chargen.cli import run

run()
