"""``python -m mixformer.train CONFIG [key=value ...]``: same as ``mixformer train`` (for torchrun).

Example: ``torchrun --nproc_per_node 2 -m mixformer.train tiny-synthetic-stage1.yaml``.
"""

from __future__ import annotations

import sys

from mixformer.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
