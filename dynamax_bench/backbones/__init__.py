"""Backbones: prepared folders (`prepare_backbone`), the pipeline-trained Mamba-2 (`train_backbone`), their metadata."""
