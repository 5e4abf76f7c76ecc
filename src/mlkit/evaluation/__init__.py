"""Detection metrics (COCO mAP, precision/recall), throughput and evaluation reports.

Nothing here imports TensorFlow; pycocotools and tqdm are imported only when used.
"""

from mlkit.evaluation.coco_map import coco_map
from mlkit.evaluation.matching import box_iou, match_image, precision_recall
from mlkit.evaluation.report import EvaluationResult, evaluate
from mlkit.evaluation.speed import measure_throughput

__all__ = [
    "EvaluationResult",
    "box_iou",
    "coco_map",
    "evaluate",
    "match_image",
    "measure_throughput",
    "precision_recall",
]
