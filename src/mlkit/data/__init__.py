"""Datasets: synthetic helmet scenes and video, dataset formats, storage URIs."""
