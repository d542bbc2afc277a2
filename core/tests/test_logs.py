"""The log as a person reads it: one line per event whatever a server sends, secrets masked,
the server's words left as they were. Each test logs through `chanmux.logs.setup` in a
process of its own, as `chanmux run` does."""

import json
import subprocess
import sys

import pytest

from chanmux.logs import SecretFilter

SCRIPT = """
import json, logging, sys
from chanmux import logs
logs.setup("DEBUG", secrets=["hunter2-s3cret", "syt_bridge_token_value"])
log = logging.getLogger("chanmux.plug.libera")
for text in json.load(sys.stdin):
    log.warning("server said: %s", text)
try:
    raise ValueError("bad line\\nwith a break, token hunter2-s3cret")
except ValueError:
    log.exception("failed: %s", "x\\r\\ny")
log.info("done")
"""


def logged(*texts):
    out = subprocess.run([sys.executable, "-c", SCRIPT], input=json.dumps(texts), check=False,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_text_from_a_server_cannot_forge_or_hide_log_lines():
    forged = "hi\r\n2026-01-01 00:00:00 ERROR   chanmux.host: database gone"
    ansi = "\x1b[2K\x1b[1A\x1b[31mred\x1b[0m"
    other = "nul\x00 del\x7f nel\x85 ls\u2028 ps\u2029 vt\x0b ff\x0c bs\x08"
    err = logged(forged, ansi, other)
    lines = err.splitlines()
    warnings = [line for line in lines if " WARNING " in line]
    assert len(warnings) == 3
    assert warnings[0].endswith("server said: hi\\r\\n2026-01-01 00:00:00 ERROR   chanmux.host: "
                                "database gone")
    assert warnings[1].endswith("server said: \\x1b[2K\\x1b[1A\\x1b[31mred\\x1b[0m")
    assert warnings[2].endswith("server said: nul\\x00 del\\x7f nel\\x85 ls\\u2028 ps\\u2029 "
                                "vt\\x0b ff\\x0c bs\\x08")
    assert "\x1b" not in err and "\x00" not in err and "\u2028" not in err
    # every line but a traceback's starts with a time stamp: nothing forged one
    starts = [line[:4] for line in lines if not line.startswith((" ", "Traceback", "ValueError",
                                                                  "with a break"))]
    assert set(starts) == {lines[0][:4]}


def test_a_traceback_follows_its_line_with_secrets_masked():
    err = logged()
    lines = err.splitlines()
    (failed,) = [i for i, line in enumerate(lines) if "failed: x\\r\\ny" in line]
    assert lines[failed + 1] == "Traceback (most recent call last):"
    assert "ValueError: bad line" in err and "with a break, token ***" in err
    assert "hunter2-s3cret" not in err
    assert lines[-1].endswith("chanmux.plug.libera: done")


@pytest.mark.parametrize("phrase", [
    "HTTP 401 M_MISSING_TOKEN: Missing access token",
    "HTTP 401 M_UNKNOWN_TOKEN: Invalid access token passed.",
    "HTTP 403 M_FORBIDDEN: Invalid username or password",
    '{"errcode":"M_MISSING_TOKEN","error":"Missing access token"}',
    "464 bridge :Password incorrect",
    "904 bridge :SASL authentication failed",
    "password: Incorrect password",
    "token: the token has expired",
])
def test_words_of_a_server_are_never_masked(phrase):
    assert SecretFilter(["hunter2-s3cret"]).clean(phrase) == phrase
    assert logged(phrase).splitlines()[0].endswith(f"server said: {phrase}")


@pytest.mark.parametrize(("text", "masked"), [
    ("login with hunter2-s3cret failed", "login with *** failed"),
    ("GET /_matrix/client/v3/sync?access_token=abcdef&since=s1",
     "GET /_matrix/client/v3/sync?access_token=***&since=s1"),
    ("password=swordfish next", "password=*** next"),
    ('sasl_password="two words" next', 'sasl_password="***" next'),
    ('{"password": "swordfish", "user": "bridge"}', '{"password": "***", "user": "bridge"}'),
    ("{'access_token': 'syt_x', 'device_id': 'D'}", "{'access_token': '***', 'device_id': 'D'}"),
    ('{"type": "m.login.password", "password": "p\\"w"}', '{"type": "m.login.password", "password": "***"}'),
    ("Authorization: Bearer syt_bridge_token_value", "Authorization: Bearer ***"),
])
def test_secret_values_are_masked(text, masked):
    assert SecretFilter(["hunter2-s3cret", "syt_bridge_token_value"]).clean(text) == masked


def test_a_failure_is_described_in_one_line_of_its_real_cause():
    """`chanmux.describe` names the real cause in one line: a database error's statement and
    parameters (which may hold what people said) stay out of the log."""
    from chanmux import describe

    db_error = RuntimeError("cannot execute INSERT in a read-only transaction\n"
                            "[SQL: INSERT INTO t (text) VALUES (%(text)s)]\n"
                            "[parameters: {'text': 'what alice said'}]")
    group = ExceptionGroup("unhandled errors in a TaskGroup", [db_error])
    assert describe(group) == "RuntimeError: cannot execute INSERT in a read-only transaction"
    assert describe(ConnectionResetError()) == "ConnectionResetError"


def test_psycopg_noise_after_a_refused_write_is_debug():
    """psycopg's warning on closing a batch the database refused, repeated at every retry,
    is DEBUG: the store says once that the database cannot be written."""
    out = subprocess.run([sys.executable, "-c", """
import logging
from chanmux import logs
logs.setup("INFO")
logging.getLogger("psycopg").warning("error ignored terminating %r: %s", "<psycopg.Pipeline>", "pipeline aborted")
logging.getLogger("psycopg").warning("something else")
"""], check=True, capture_output=True, text=True, timeout=60)
    assert "pipeline aborted" not in out.stderr
    assert "WARNING psycopg: something else" in " ".join(out.stderr.split())
