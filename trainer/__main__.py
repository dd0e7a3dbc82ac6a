import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: no C++ info/warning lines

from .cli import entry  # noqa: E402

entry()
