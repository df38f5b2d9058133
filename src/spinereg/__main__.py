"""``python -m spinereg``: the ``spinereg`` command (:func:`spinereg.cli.main.console_main`)."""

from spinereg.cli.main import console_main

if __name__ == "__main__":  # pragma: no cover - ends the process
    console_main()
