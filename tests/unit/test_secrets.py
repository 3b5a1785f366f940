from persona_runtime.secrets import REDACTED, redact


def test_env_secrets_and_key_shapes_are_redacted(monkeypatch) -> None:
    monkeypatch.setenv("PERSONA_MID_API_KEY", "zzz-very-secret-value-9876")
    monkeypatch.setenv("PERSONA_MODEL", "gpt-4o")  # not a secret
    text = "401: bad key zzz-very-secret-value-9876 (sk-...9876) for gpt-4o; other sk-proj-ABCDEFGH12345678"
    out = redact(text)
    assert "zzz-very-secret-value-9876" not in out and "9876" not in out
    assert "sk-proj-ABCDEFGH12345678" not in out
    assert "gpt-4o" in out and REDACTED in out


def test_plain_text_is_untouched(monkeypatch) -> None:
    monkeypatch.setenv("SOME_TOKEN", "abcdefgh")
    assert redact("the year 1234 and a task list") == "the year 1234 and a task list"


def test_persona_core_log_lines_with_exceptions_are_redacted(tmp_path, monkeypatch) -> None:
    """loguru appends a logged exception's traceback after the message; a provider error's text
    (an echoed key, say) must not reach the log file that way either."""
    from loguru import logger

    from persona_runtime import _offline

    monkeypatch.setenv("PERSONA_MID_API_KEY", "zzz-exception-secret-4242")
    log_file = tmp_path / "core.log"
    _offline.configure_core_logging(log_file)
    try:
        raise RuntimeError("401: Incorrect API key provided: zzz-exception-secret-4242")
    except RuntimeError:
        logger.exception("provider call failed for key zzz-exception-secret-4242")
    finally:
        _offline.configure_core_logging(None)  # detach the file sink
    text = log_file.read_text()
    assert "provider call failed" in text and "RuntimeError" in text and "Incorrect API key" in text
    assert "zzz-exception-secret-4242" not in text and "4242" not in text
