import os

os.environ["ANONYMIZED_TELEMETRY"] = "False"

from persona_runtime import _offline  # noqa: E402

_offline.install()
