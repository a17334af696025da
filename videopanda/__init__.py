"""videopanda: train and evaluate encoder-free video-language models of the Video-Panda family."""

__version__ = "0.1.0"
