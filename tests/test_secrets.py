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
