"""Where every dataset's raw archives come from: data only, no per-dataset code.

``confirmed`` says whether the checksum was cross-checked before it was written here: true means the
same value appears in at least two independent public codebases that download the file (listed in
``checked_against``); none was re-hashed from a fresh download on this machine (it has no internet).
Every checksum, confirmed or not, is verified on every use; an unconfirmed one that matches is
reported at its first download (see fetch.py) so it can be marked confirmed.
"""
from __future__ import annotations

from dataclasses import dataclass

from metalr.data.download import Checksum


@dataclass(frozen=True)
class Archive:
    filename: str
    url: str | None  # None: no public archive (the file must come from a mirror)
    checksum: Checksum | None  # None: only a mirror's own checksum file can vouch for it
    size: int | None  # bytes, when known (checked against free disk space before downloading)
    confirmed: bool
    checked_against: str = ""


@dataclass(frozen=True)
class Source:
    dataset: str
    homepage: str
    archives: tuple[Archive, ...]
    manual: str  # what to do by hand when the server refuses scripted downloads
    citation: str


def _md5(value: str) -> Checksum:
    return Checksum("md5", value)


OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
DOGS_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"

SOURCES: dict[str, Source] = {
    "omniglot": Source(
        dataset="omniglot",
        homepage="https://github.com/brendenlake/omniglot",
        archives=(
            Archive("images_background.zip", OMNIGLOT_URL + "images_background.zip",
                    _md5("68d2efa1b9178cc56df9314c21c6e718"), 9_464_212, True,
                    "torchvision datasets/omniglot.py, learn2learn, paddlefsl; size from TFDS url_checksums"),
            Archive("images_evaluation.zip", OMNIGLOT_URL + "images_evaluation.zip",
                    _md5("6b91aef0f799c5bb55b94e3f2daec811"), 6_462_886, True,
                    "torchvision datasets/omniglot.py, learn2learn, paddlefsl; size from TFDS url_checksums"),
        ),
        manual=(
            "Download images_background.zip and images_evaluation.zip from "
            f"{OMNIGLOT_URL} and put them in <data.downloads>/omniglot/ or in a data.mirror folder."
        ),
        citation="Lake, Salakhutdinov & Tenenbaum, Science 2015 (MIT licence)",
    ),
    "cifar_fs": Source(
        dataset="cifar_fs",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        archives=(
            Archive("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                    _md5("eb9058c3a382ffc7106e4002c42a8d85"), 169_001_437, True,
                    "torchvision datasets/cifar.py, avalanche, many CIFAR loaders"),
        ),
        manual=(
            "Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and put it in "
            "<data.downloads>/cifar_fs/ or in a data.mirror folder."
        ),
        citation="Krizhevsky 2009; CIFAR-FS split: Bertinetto et al., ICLR 2019",
    ),
    "aircraft": Source(
        dataset="aircraft",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
        archives=(
            Archive("fgvc-aircraft-2013b.tar.gz",
                    "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                    _md5("d4acdd33327262359767eeaa97a4f732"), None, True,
                    "meta-dataset dataset_conversion, torch R package torchvision, several download scripts"),
        ),
        manual=(
            "Download fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ and put "
            "it in <data.downloads>/aircraft/ or in a data.mirror folder."
        ),
        citation="Maji et al., Fine-Grained Visual Classification of Aircraft, arXiv:1306.5151, 2013",
    ),
    "cub": Source(
        dataset="cub",
        homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
        archives=(
            Archive("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                    _md5("97eceeb196236b17998738112f37df78"), None, True,
                    "torchmeta cub.py, avalanche CUB200, several Cub2011 loaders"),
        ),
        manual=(
            "Download CUB_200_2011.tgz from https://data.caltech.edu/records/65de6-vp158 and put it in "
            "<data.downloads>/cub/ or in a data.mirror folder."
        ),
        citation="Wah et al., The Caltech-UCSD Birds-200-2011 Dataset, CNS-TR-2011-001",
    ),
    "stanford_dogs": Source(
        dataset="stanford_dogs",
        homepage=DOGS_URL + "main.html",
        archives=(
            Archive("images.tar", DOGS_URL + "images.tar", _md5("1bb1f2a596ae7057f99d7d75860002ef"), None, True,
                    "several public StanfordDogs loaders (torchvision-style classes)"),
            Archive("annotation.tar", DOGS_URL + "annotation.tar", _md5("4298cc0031f6bc6e74612ac83b5988e2"), None,
                    True, "several public StanfordDogs loaders"),
            Archive("lists.tar", DOGS_URL + "lists.tar", _md5("edbb9f16854ec66506b5f09b583e0656"), None, True,
                    "several public StanfordDogs loaders"),
        ),
        manual=(
            "vision.stanford.edu often refuses scripted downloads. Open "
            f"{DOGS_URL}main.html in a browser, download images.tar, annotation.tar and lists.tar, and put them "
            "in <data.downloads>/stanford_dogs/ (or in a data.mirror folder, under stanford_dogs/); the next run "
            "verifies their md5 and goes on."
        ),
        citation="Khosla et al., Novel Dataset for Fine-Grained Image Categorization, CVPR-W 2011",
    ),
    "mini_imagenet": Source(
        dataset="mini_imagenet",
        homepage="https://github.com/twitter-research/meta-learning-lstm",
        archives=(
            Archive("mini_imagenet.tar", None, None, None, False,
                    "no public archive: a mirror's MD5SUMS or SHA256SUMS must list it"),
        ),
        manual=(
            "miniImageNet has no reliable public archive. Either (a) put a prepared mini_imagenet.tar (folders "
            "<wnid>/<ILSVRC file name>.JPEG for the 100 classes of config/splits/mini_imagenet) with an MD5SUMS or "
            "SHA256SUMS file listing it into a data.mirror folder (under mini_imagenet/), or (b) set "
            "data.mini_imagenet.ilsvrc_train to your ILSVRC-2012 train folder (the one holding n01532829/ ...)."
        ),
        citation="Vinyals et al., NeurIPS 2016; split of Ravi & Larochelle, ICLR 2017",
    ),
}
