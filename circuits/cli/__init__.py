"""The `circuits` command line: the root app (`circuits.cli.main`) mounts one Typer sub-app per
module here; each command is a short wrapper around a library function.
"""
