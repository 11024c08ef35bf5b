"""The Python interpreter a bench script runs the reference side with."""
import os
import subprocess
import sys


def python_env(venv, packages):
    """$PYTHON if set, else `venv`'s python, creating the venv with `packages` on first use."""
    py = os.environ.get("PYTHON")
    if py:
        return py
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([py, "-m", "pip", "install", "-q", *packages])
    return py
