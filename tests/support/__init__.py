"""What test modules share: fixtures (registered in tests/conftest.py) and helpers.

No test module imports another test module; anything two of them need lives here.
"""
