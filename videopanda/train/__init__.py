"""Training: stages on accelerate (single process, DDP, DeepSpeed ZeRO), teacher distillation, checkpoints.

Never imported by inference code (``videopanda.model``, ``videopanda.eval``).
"""
