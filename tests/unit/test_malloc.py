"""The pinned malloc mmap threshold (see hita.malloc and docs/soak.md)."""

from __future__ import annotations

import platform

import pytest

from hita.malloc import ENV_OVERRIDE, pin_mmap_threshold


def test_the_threshold_is_pinned_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert pin_mmap_threshold() is on_glibc


def test_glibc_own_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_OVERRIDE, "65536")
    assert pin_mmap_threshold() is False
