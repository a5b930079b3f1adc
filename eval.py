"""Evaluate a checkpoint with multi-view testing, or classify video files (``predict=[...]``)."""
from video_sparse.apps.eval import main

if __name__ == "__main__":
    main()
