"""The ``diffui`` command: argument parsing, the commands and batch mode."""
