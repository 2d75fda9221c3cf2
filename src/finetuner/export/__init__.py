"""Exports of tuned models to other runtimes (ONNX, run with onnxruntime) and merged adapters."""

from finetuner.export.merge import merge_artifact
from finetuner.export.onnx import OnnxEmbeddingModel, OnnxExportError, export_artifact, export_onnx, load_onnx_model

__all__ = [
    "OnnxEmbeddingModel",
    "OnnxExportError",
    "export_artifact",
    "export_onnx",
    "load_onnx_model",
    "merge_artifact",
]
