"""Packaging that pyproject.toml cannot express: the top-level ``pipelines/``, ``components/`` and ``models/``
folders install inside mlkit, as ``mlkit.pipelines``, ``mlkit.components`` and ``mlkit.pretrained``, so a wheel
installed anywhere can compile, run and submit every pipeline and start from the committed models."""

from setuptools import find_packages, setup

MAPPED = {"mlkit.pipelines": "pipelines", "mlkit.components": "components", "mlkit.pretrained": "models"}
# Each component's tests stay in the repository.
COMPONENTS = [f"mlkit.components.{name}" for name in find_packages("components", exclude=["*.tests", "tests"])]

setup(
    package_dir={"": "src", **MAPPED},
    packages=find_packages("src") + list(MAPPED) + COMPONENTS,
    package_data={
        "mlkit.pipelines": ["golden/*.yaml"],
        "mlkit.components": ["*/README.md"],
        # The committed detectors: Keras weights (the demo fine-tunes them), the int8 TFLite models both
        # serve, the little fp32 model, and the ensemble's three members.
        "mlkit.pretrained": [
            "*/*.json", "*/model.weights.h5", "*/tflite/*.json", "*/tflite/int8/*", "little/tflite/fp32/*",
            "ensemble/*/*/*",
        ],
    },
)
