"""Data generation: the tooling that makes data rather than reads it.

* :mod:`~mixformer.datagen.corpus`: the photo/video corpus fetched from Debian packages;
  :mod:`~mixformer.datagen.photo_corpus` reads it.
* :mod:`~mixformer.datagen.composite`: objects cut from real photos composited over photos and
  videos (training sequences and benchmarks); its variants in
  :mod:`~mixformer.datagen.composite_config`, its pieces in
  :mod:`~mixformer.datagen.composite_draw`.
* :mod:`~mixformer.datagen.synthetic`: procedural sequences and benchmarks.
* :mod:`~mixformer.datagen.realvideo`: labelled real-video clips.
* :mod:`~mixformer.datagen.training`: training samples drawn on the fly (datasets, sampler,
  processing).

It sits above :mod:`mixformer.tracking` and :mod:`mixformer.evaluation` in the layer contract
(``pyproject.toml``): the runtime (reading data, tracking, scoring) never imports generation.
"""
