"""The quality report of a finished video: lip sync, identity, colour drift, frame steps, durations.

`assess` (in `assess.py`) needs the `quality` extra (`itk-common[quality]`): dlib's 68-point
landmark and face-embedding models as shipped in `face-recognition-models`, scikit-image for
CIEDE2000. Everything runs on CPU and nothing is downloaded at run time. `report.py` (the report as
JSON) needs only protobuf, so the gateway reads reports without those packages.
"""
