"""mlkit: a Jupyter-first toolkit for edge-cloud computer vision on Kubeflow.

Importing the package is cheap: TensorFlow, OpenCV, KFP and KServe are imported
inside the functions that need them.
"""

__version__ = "0.1.0"
