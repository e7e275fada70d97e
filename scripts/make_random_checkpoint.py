#!/usr/bin/env python3
"""Write a random-weight ZipVoice checkpoint directory in the official format.

    python scripts/make_random_checkpoint.py --variant zipvoice_distill --size base --out /tmp/zv

Produces ``model.json``, ``tokens.txt`` and ``model.pt`` (``{"model": state_dict}``) or
``model.safetensors``. Without ``--tokens`` the fixture's token table is copied when the
reference fixtures are present, else a placeholder table of the same size is generated.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from api.zipvoice.model.random_checkpoint import SIZES, write_random_checkpoint  # noqa: E402
from api.zipvoice.model.zipvoice import VARIANTS  # noqa: E402


def default_tokens(variant: str) -> Path | None:
    """The fixture ``tokens.txt`` for this variant, if the fixtures are available."""
    env = os.environ.get("ZIPVOICE_REFERENCE_DIR")
    root = Path(env) if env else REPO_ROOT.parent / "shared" / "fixtures" / "zipvoice-reference"
    folder = "zipvoice_dialog" if variant.startswith("zipvoice_dialog") else "zipvoice"
    path = root / "models" / folder / "tokens.txt"
    return path if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="zipvoice")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--tokens", type=Path, default=None, help="tokens.txt to copy")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=["pt", "safetensors"], default="pt")
    args = parser.parse_args(argv)
    tokens = args.tokens if args.tokens is not None else default_tokens(args.variant)
    path = write_random_checkpoint(args.out, args.variant, args.size, tokens, args.seed, args.format)
    print(f"wrote {path} ({args.variant}, {args.size})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
