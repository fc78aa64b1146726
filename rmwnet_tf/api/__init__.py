"""The public Python API's modules; import the names from `rmwnet_tf` itself (see its docstring)."""
