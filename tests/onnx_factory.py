"""Moved to models/onnx_examples.py (the demonstrations use it too); kept while other work
that imports it lands."""
from models.onnx_examples import *  # noqa: F401,F403
from models.onnx_examples import default_weights  # noqa: F401
