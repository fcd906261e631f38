"""Framework names as ClearML spells them, and inference from a weights file name."""

from __future__ import annotations

from pathlib import PurePath


class Framework:
    """Framework names, as plain strings (ClearML's ``Framework`` constants).

    Example:
        >>> Framework.infer("model.pt")
        'PyTorch'
    """

    tensorflow = "TensorFlow"
    tensorflowjs = "TensorFlow_js"
    tensorflowlite = "TensorFlow_Lite"
    pytorch = "PyTorch"
    torchscript = "TorchScript"
    caffe = "Caffe"
    caffe2 = "Caffe2"
    onnx = "ONNX"
    keras = "Keras"
    mknet = "MXNet"
    cntk = "CNTK"
    torch = "Torch"
    darknet = "Darknet"
    paddlepaddle = "PaddlePaddle"
    scikitlearn = "ScikitLearn"
    xgboost = "XGBoost"
    lightgbm = "LightGBM"
    parquet = "Parquet"
    megengine = "MegEngine"
    catboost = "CatBoost"
    tensorrt = "TensorRT"
    openvino = "OpenVINO"

    #: (file name suffix, framework), first match wins; longer suffixes come first.
    _BY_SUFFIX: tuple[tuple[str, str], ...] = (
        ("predict_net.pbtxt", caffe2),
        ("predict_net.pb", caffe2),
        ("model.json", tensorflowjs),
        ("-symbol.json", mknet),
        ("__model__", paddlepaddle),
        (".tar.gz", tensorflow),
        (".pb", tensorflow),
        (".meta", tensorflow),
        (".pbtxt", tensorflow),
        (".tgz", tensorflow),
        (".tflite", tensorflowlite),
        (".pth", pytorch),
        (".pt", pytorch),
        (".caffemodel", caffe),
        (".prototxt", caffe),
        (".onnx", onnx),
        (".h5", keras),
        (".hdf5", keras),
        (".keras", keras),
        (".model", mknet),
        (".cntk", cntk),
        (".t7", torch),
        (".cfg", darknet),
        (".pkl", scikitlearn),
        (".parquet", parquet),
        (".cbm", catboost),
        (".plan", tensorrt),
    )

    @classmethod
    def infer(cls, filename: str | PurePath | None) -> str | None:
        """The framework a weights file name suggests, or None.

        Unlike ClearML 2.1.12, a ``.zip`` package is not taken for TensorFlow.
        """
        if not filename:
            return None
        name = PurePath(str(filename)).name.lower()
        for suffix, framework in cls._BY_SUFFIX:
            if name.endswith(suffix):
                return framework
        return None
