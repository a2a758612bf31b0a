"""Adapters to the toolkits trackers are evaluated with (VOT toolkit, got10k toolkit).

Each module imports its toolkit lazily, so ``import mixformer`` never needs them.
"""
