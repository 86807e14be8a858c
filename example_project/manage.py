#!/usr/bin/env python
"""Django's command-line utility for the kinwise-auth example project."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Install the example's requirements first: "
            "pip install -e . -r example_project/requirements.txt (from the repo root)."
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
