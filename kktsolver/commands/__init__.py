"""Subcommands of the ``kktsolver`` command line, one module each, found by :mod:`kktsolver.cli`."""
