"""Engine tower-v2: a learned multi-interest user tower (ComiRec-SA family) with light
multi-task heads; trained, exported (item_tower / user_tower / heads ONNX graphs) and
published by this package (``settings.training.engine == "tower-v2"``)."""
