"""Serving: KServe predictors for mlkit TFLite models, dynamic batching, a hot-reloading model repository.

Heavy imports (kserve, ai_edge_litert) happen when the submodules are imported, not here:

- ``mlkit.serving.server``: ``build_server``, ``run_server``, ``start_background_server``
- ``mlkit.serving.predictor``: ``TFLiteDetectorModel``; ``mlkit.serving.classifier``: ``TFLiteClassifierModel``
- ``mlkit.serving.batcher``: ``DynamicBatcher``; ``mlkit.serving.repository``: ``TFLiteModelRepository``
"""
