"""Exports of tuned models to other runtimes (ONNX, run with onnxruntime)."""

from finetuner.export.onnx import OnnxEmbeddingModel, OnnxExportError, export_artifact, export_onnx, load_onnx_model

__all__ = ["OnnxEmbeddingModel", "OnnxExportError", "export_artifact", "export_onnx", "load_onnx_model"]
