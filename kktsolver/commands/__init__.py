"""Subcommands of the ``kktsolver`` command line, one module each (discovered by :mod:`kktsolver.cli`)."""
