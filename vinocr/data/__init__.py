"""Datasets, preprocessing, loaders, augmentation and synthetic data."""
from vinocr.data.base import Sample, TextDataset, read_image
from vinocr.data.corrections import CorrectionsDataset
from vinocr.data.filename_labels import FilenameLabelDataset
from vinocr.data.label_file import LabelFileDataset
from vinocr.data.lmdb_dataset import LmdbDataset, write_lmdb
from vinocr.data.lrlpr import LrlprTracks
from vinocr.data.mixed import MixedDataset
from vinocr.data.registry import (DATASET_TYPES, build_dataset, detect_format, open_dataset,
                                  register_dataset)

__all__ = ["Sample", "TextDataset", "read_image", "CorrectionsDataset", "FilenameLabelDataset",
           "LabelFileDataset", "LmdbDataset", "write_lmdb", "LrlprTracks", "MixedDataset",
           "DATASET_TYPES", "build_dataset", "detect_format", "open_dataset", "register_dataset"]
