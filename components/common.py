"""What every mlkit component shares: the base image and a way to rebuild a component on another one.

Components run their body inside ``MLKIT_IMAGE``, an image with the full ``mlkit`` package
installed (and so ``kfp`` itself, one of mlkit's pinned dependencies): that is why components are
built with ``install_kfp_package=False`` and no ``packages_to_install`` - nothing is pip-installed
when a task starts, on a cluster or locally.

The image is chosen when a pipeline is compiled: ``build_pipeline(base_image=...)``, else the
``MLKIT_BASE_IMAGE`` environment variable (read here and nowhere else), else ``MLKIT_IMAGE``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

MLKIT_IMAGE = "ghcr.io/mlkit/mlkit-serving:0.1.0"
BASE_IMAGE_ENV = "MLKIT_BASE_IMAGE"


def default_base_image() -> str:
    """``$MLKIT_BASE_IMAGE`` when set (and not blank), else ``MLKIT_IMAGE``."""
    return os.environ.get(BASE_IMAGE_ENV, "").strip() or MLKIT_IMAGE


def mlkit_component(func: Callable) -> PythonComponent:
    """``@dsl.component`` with the mlkit image and no pip installs at task start."""
    return dsl.component(func, base_image=MLKIT_IMAGE, install_kfp_package=False)


def with_base_image(component: PythonComponent, base_image: str) -> PythonComponent:
    """The same component (same function, interface and name) built on ``base_image``."""
    if not isinstance(component, PythonComponent):
        raise TypeError(f"expected a @dsl.component, got {type(component).__name__}")
    if not base_image or not base_image.strip():
        raise ValueError("base_image is empty: pass an image reference such as "
                         f"{MLKIT_IMAGE!r}")
    if base_image == MLKIT_IMAGE:
        return component
    return dsl.component(component.python_func, base_image=base_image.strip(), install_kfp_package=False)
