"""The example routes, one module per theme."""
