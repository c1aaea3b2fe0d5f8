import pytest
from launching import kill_sessions, session_members


@pytest.fixture
def sessions():
    """Launchers started in sessions of their own; whatever they left running is killed at the end."""
    started: list[int] = []
    yield started
    kill_sessions(started)
    assert not [pid for sid in started for pid in session_members(sid)], (
        "Ray processes outlived the test"
    )
