"""Deployment exports (ONNX). Needs the ``export`` extra: ``pip install mixformer[export]``."""
