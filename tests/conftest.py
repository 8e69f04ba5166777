collect_ignore = ["data"]  # vendored files; tests/ctxdb/test_dropin.py runs them

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.ctxdb",
    "tests.support.replicated",
    "tests.support.patroni",
    "tests.support.tls",
    "tests.support.etcd_tls",
    "tests.support.shadowed",
    "tests.support.leaks",
]
