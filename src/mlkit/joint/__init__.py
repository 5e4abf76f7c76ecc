"""Joint inference: the little model at the edge on every frame, hard frames to the big model in the cloud.

- ``mlkit.joint.worker``: ``JointWorker`` (edge inference, hard-example mining, ordered results)
- ``mlkit.joint.cloud``: ``CloudClient`` (asynchronous, bounded in flight, timeout, fallback reasons)
- ``mlkit.joint.outputs``: the seed's output folders, JSON lines and the clean hard-example store
- ``mlkit.joint.stats``: ``JointStats`` (counts, upload ratio, bytes, latency percentiles)
- ``mlkit.joint.settings``: ``EdgeSettings``, ``CloudSettings`` (typed; the YAML's parameters validate into them)
- ``mlkit.joint.spec``: the JointInferenceService YAML
- ``mlkit.joint.service``: ``run`` (also ``mlkit.joint.run``): a joint run from Python, ``run_service`` from a spec
- ``mlkit.joint.reuse`` and ``mlkit.joint.track``: cloud answers reused on the video frames around an upload
- ``mlkit.joint.spool``: the offline queue (hard frames kept on disk while the cloud is away, replayed later)
- ``mlkit.joint.audits`` and ``mlkit.joint.agreement``: audited easy frames, edge/cloud agreement and its alarm
- ``mlkit.joint.evaluate``: mAP of edge-only, cloud-only and joint, threshold sweeps per filter
- ``mlkit.joint.reference``: on an unlabelled real video, the cloud's answers as the reference, classes matched by name
- ``mlkit.joint.drift``: the agreement alarm replayed offline on clips that switch site

Nothing here imports TensorFlow, KFP or KServe: it runs on an edge box with ``pip install "mlkit[edge]"``.
"""


def __getattr__(name: str):
    # ``mlkit.joint.run`` without importing the worker (OpenCV, numpy) whenever a submodule is imported
    if name == "run":
        from mlkit.joint.service import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
