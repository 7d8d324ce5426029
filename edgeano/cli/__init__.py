"""The `edgeano` command line: one small file per command; each parses, validates and calls one function."""
