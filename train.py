"""Train a video model. ``python train.py --help`` lists every config group and key; see README."""
from video_sparse.apps.train import main

if __name__ == "__main__":
    main()
