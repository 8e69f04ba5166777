pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.ctxdb",
    "tests.fixtures.replicated",
    "tests.fixtures.patroni",
    "tests.fixtures.tls",
]
