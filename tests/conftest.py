import os

os.environ["ANONYMIZED_TELEMETRY"] = "False"

from persona_runtime import _offline  # noqa: E402

_offline.install()
# persona-core logs every record twice on stderr by default; keep test output readable.
_offline.configure_core_logging(None)
