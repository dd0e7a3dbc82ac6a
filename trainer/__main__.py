import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: no C++ info/warning lines

from .cli import main  # noqa: E402

sys.exit(main())
