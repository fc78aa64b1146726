"""Studies run with rmwnet_tf, kept outside the installed package (not shipped in the wheel).

Importable from the repository root: scripts put the root on sys.path, pytest does it through
`pythonpath = ["."]` in pyproject.toml.
"""
