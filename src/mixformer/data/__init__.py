"""Runtime data access: frame sources, benchmark dataset readers, annotation files.

Generating data (synthetic and composited sequences, the photo/video corpus, the training-sample
pipeline) lives in :mod:`mixformer.datagen`, a layer above; nothing here imports it.
"""
