"""Video-Panda data: decoding, anypixel frames, conversations, datasets, sampler, and synthetic VideoQA.

Main entry points (see each module's docstring):

* :class:`DataConfig` / :class:`DataSource` (``config.py``): what to load and how.
* :func:`read_video` / :func:`read_image` (``video_io.py``): decoding and frame selection (reference §6.4).
* :func:`preprocess_frames` (``transforms.py``): letterbox + mask + CLIP normalisation (reference §6.5-6.6).
* :func:`tokenize_conversation` / :func:`build_inference_prompt` (``conversation.py``): templates and labels.
* :class:`VideoPandaDataset`, :class:`DataCollator`, :class:`ModalityLengthGroupedSampler`: training batches.
* :class:`VideoPandaProcessor` (``processor.py``): inference inputs for ``model.generate``.
* ``videopanda data synth|check`` (``__main__.py``, ``synth.py``).
"""

from .collate import DataCollator, model_inputs
from .config import DataConfig, DataSource
from .conversation import (
    IGNORE_INDEX,
    IMAGE_TOKEN_ID,
    SYSTEM_V1,
    VIDEO_TOKEN_ID,
    build_inference_prompt,
    tokenize_conversation,
)
from .dataset import VideoPandaDataset
from .errors import AnnotationError, DataError, ImageReadError, SampleError, VideoReadError
from .processor import VideoPandaProcessor
from .records import ValidationReport, load_records
from .sampler import ModalityLengthGroupedSampler
from .tokenizer import load_tokenizer, train_tokenizer
from .transforms import letterbox_geometry, preprocess_clip, preprocess_frames
from .video_io import DecodedVideo, read_image, read_video, sample_frame_indices

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_TOKEN_ID",
    "SYSTEM_V1",
    "VIDEO_TOKEN_ID",
    "AnnotationError",
    "DataCollator",
    "DataConfig",
    "DataError",
    "DataSource",
    "DecodedVideo",
    "ImageReadError",
    "ModalityLengthGroupedSampler",
    "SampleError",
    "ValidationReport",
    "VideoPandaDataset",
    "VideoPandaProcessor",
    "VideoReadError",
    "build_inference_prompt",
    "letterbox_geometry",
    "load_records",
    "load_tokenizer",
    "model_inputs",
    "preprocess_clip",
    "preprocess_frames",
    "read_image",
    "read_video",
    "sample_frame_indices",
    "tokenize_conversation",
    "train_tokenizer",
]
