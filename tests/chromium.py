"""Debian's Chromium for the browser tests, started the one way this machine allows (no sandbox, no GPU, no
background networking: its outgoing connections are refused here), never a downloaded browser."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-dev-shm-usage")


def launch_chromium(playwright, *extra_flags: str):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*FLAGS, *extra_flags])
