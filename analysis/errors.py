"""Errors shared by the command line and the modules it drives; this module imports nothing of the project.

:class:`UserError` is a mistake the user can fix (a bad argument, a missing folder, a port in use): ``abm``
prints it as one line ``abm: error: ...`` and exits with :data:`EXIT_USAGE`. :class:`RunFailure` is a run
that raised inside the model (a defect to report): one line too, exit status :data:`EXIT_FAILED`. It lives here, not in
:mod:`analysis.cli`, so that modules the command line imports (the dashboard server) can raise it without
importing the command line back.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_FAILED = 1


class UserError(Exception):
    """A mistake in the command's arguments or inputs; reported in one line, exit status 2."""


class RunFailure(Exception):
    """Runs that raised inside the model while the others finished; reported in one line, exit status 1."""
