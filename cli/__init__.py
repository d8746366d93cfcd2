"""The ``credit-decision`` command line."""
