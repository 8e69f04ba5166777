collect_ignore = ["data"]  # vendored files; tests/test_ctxdb_dropin.py runs them

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.ctxdb",
    "tests.fixtures.replicated",
    "tests.fixtures.patroni",
    "tests.fixtures.tls",
]
