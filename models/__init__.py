"""The committed detectors, installed with mlkit as ``mlkit.pretrained`` (data only: see mlkit.models.bundled)."""
