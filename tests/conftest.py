import os

os.environ["ANONYMIZED_TELEMETRY"] = "False"
# Loopback traffic must never go through a proxy a machine may have configured.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from persona_runtime import _offline  # noqa: E402

_offline.install()
# persona-core logs every record twice on stderr by default; keep test output readable.
_offline.configure_core_logging(None)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_environ():
    """Commands load .env files into os.environ; no test may leak variables into the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
