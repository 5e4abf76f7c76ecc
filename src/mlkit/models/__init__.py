"""Detectors (little = edge, big = cloud), classifiers, training and TFLite export."""
