"""Keys are the same in every process, whatever PYTHONHASHSEED is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    from datetime import datetime, timezone
    from hita.cache.keys import KeyBuilder, cache_key_builder

    args = [
        {"role": "admin", "tags": {"vip", "staff", "gold"}},
        frozenset({"a", "b", "c"}),
        ("search", "smith*", 3),
        [datetime(2024, 12, 17, 15, 30, tzinfo=timezone.utc), None, True],
    ]
    keys = KeyBuilder()
    print(json.dumps({
        "ours": [keys.function_key("user_service", "list_users", {"q": a}).redis_key
                 for a in args] + [cache_key_builder(*args, page=2)],
        "seed": [str(hash(str(a))) for a in args],
    }))
    """
)


def keys_with_seed(seed: str) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    parsed: dict[str, list[str]] = json.loads(result.stdout)
    return parsed


@pytest.mark.slow
def test_two_processes_with_different_hash_seeds_build_identical_keys() -> None:
    first, second = keys_with_seed("1"), keys_with_seed("2")
    assert first["ours"] == second["ours"]
    # The seed's hash(str(arg)) gives different keys in each process: the bug fixed here.
    assert first["seed"] != second["seed"]
