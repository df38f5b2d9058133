"""Command line: one ``spinereg`` entry point; one thin module per subcommand.

Each module defines ``register(subparsers)`` that adds its parser and sets ``func`` to a
function taking the parsed arguments. Modules only parse and call library functions.
"""
