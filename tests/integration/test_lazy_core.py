"""persona.backends' __init__ (every provider SDK) runs on first use, not on a submodule import."""

from __future__ import annotations

import pytest

from tests.integration.test_offline import run_python

pytestmark = pytest.mark.subprocess  # each case needs a fresh interpreter

SDKS = "sorted(m for m in ('openai', 'anthropic', 'persona.backends._factory') if m in sys.modules)"


def test_a_submodule_import_leaves_the_provider_sdks_unloaded(tmp_path) -> None:
    proc = run_python(
        "import sys\n"
        "from persona.backends.types import StreamChunk\n"
        "from persona.backends.errors import ProviderError\n"
        f"print({SDKS})\n"
        "import persona.backends\n"
        f"print({SDKS})\n"
        "print(StreamChunk(delta='x').delta, ProviderError.__name__)",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:3] == ["[]", "[]", "x ProviderError"]


def test_the_first_name_read_runs_the_init_once_for_every_thread(tmp_path) -> None:
    proc = run_python(
        "import sys, threading\n"
        "import persona.backends.types\n"
        "got = []\n"
        "barrier = threading.Barrier(4)\n"
        "def use():\n"
        "    barrier.wait()\n"
        "    from persona.backends import BackendConfig, load_backend\n"
        "    got.append((BackendConfig.__name__, load_backend.__name__))\n"
        "threads = [threading.Thread(target=use) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(got)\n"
        f"print({SDKS})\n"
        "import persona.backends as b\n"
        "print('__getattr__' in vars(b), hasattr(b, 'no_such_name'), sorted(b.__all__)[:1])",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split("\n")
    assert lines[0] == str([("BackendConfig", "load_backend")] * 4)
    assert lines[1] == "['anthropic', 'openai', 'persona.backends._factory']"
    assert lines[2] == "False False ['AllModelsFailedError']"
