"""bench.top_frames: py-spy's folded stacks added up by frame, own time and on the stack."""

from bench.top_frames import frame_name, read, table

FOLDED = [
    "run_app (/x/.venv/lib/python3.11/site-packages/aiohttp/web.py:527);"
    "claim (/x/orchestrator/http/views.py:40);encode (/x/services/saga_log.py:219) 3",
    "run_app (/x/.venv/lib/python3.11/site-packages/aiohttp/web.py:530) 5",
    "run_app (/x/.venv/lib/python3.11/site-packages/aiohttp/web.py:527);"
    "claim (/x/orchestrator/http/views.py:41) 2",
]


def test_a_frame_is_its_function_and_file_without_the_line():
    assert frame_name("run_app (/v/lib/python3.11/site-packages/aiohttp/web.py:527)") == (
        "run_app (aiohttp/web.py)"
    )
    assert frame_name("claim (/work/tree/orchestrator/http/views.py:40)") == (
        "claim (orchestrator/http/views.py)"
    )
    assert frame_name("<module> (<string>)") == "<module> (<string>)"


def test_samples_add_up_by_leaf_and_by_presence_on_the_stack():
    profile = read(FOLDED)
    assert profile.samples == 10
    assert profile.own["run_app (aiohttp/web.py)"] == 5  # its lines count together
    assert profile.own["encode (services/saga_log.py)"] == 3
    assert profile.own["claim (orchestrator/http/views.py)"] == 2
    assert profile.on_stack["run_app (aiohttp/web.py)"] == 10
    assert profile.on_stack["claim (orchestrator/http/views.py)"] == 5
    lines = table(profile, top=1)
    assert "| 50.0% | 5 | `run_app (aiohttp/web.py)` |" in lines  # the top own frame
    assert "| 100.0% | 10 | `run_app (aiohttp/web.py)` |" in lines  # the top on the stack
