"""Model ensembles: a DAG of models and custom nodes served inside the model server (OpenVINO Model Server's
``pipeline_config_list``), and compiled to a KServe InferenceGraph for a cluster.

Modules (import the one you need; nothing heavy happens here):

- ``config``: the config.json format (``model_config_list`` + ``pipeline_config_list``), typed, loaded as is
- ``tensors``: ``TensorSpec`` (v2 datatype + shape) and the compatibility rules between connected tensors
- ``custom``: custom nodes as registered Python callables (built in: ``argmax_sum``, ``softmax_average``)
- ``pipeline``: ``build_pipelines``: every load-time check, each error naming its node or item
- ``executor``: ``execute``: a node starts as soon as its inputs are ready; independent nodes run concurrently
- ``tensor_model``: ``TFLiteTensorModel``, a served TFLite model with named tensor inputs (the "argmax" model)
- ``serving``: ``PipelineModel`` (a pipeline behind the same v1/v2/gRPC endpoints as a model) and ``GraphRuntime``
- ``step``: the per-node service a KServe InferenceGraph calls; ``manifest``: the InferenceGraph compiler
- ``loading``: ``attach_graph`` (server integration) and ``Graph`` (in-process use)
- ``demo``: the demo ensemble (two helmet-crop classifiers + argmax) and its held-out evaluation
- ``cli``: ``mlkit graph validate | run | manifest | train-demo``
"""
