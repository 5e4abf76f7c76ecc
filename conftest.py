"""Repository-level pytest setup: make `components` and `pipelines` importable from the repo root."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# TensorFlow's C++ banner and oneDNN notes are noise in test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
