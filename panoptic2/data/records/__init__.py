"""DeepLab2-compatible sharded records (TFRecord + ``tf.train.Example``), no TensorFlow needed.

Writing: :func:`convert_coco_dataset`, :func:`convert_cityscapes_dataset` (behind
``tools/build_{coco,cityscapes}_data.py``) and the building blocks :func:`encode_example`,
:func:`encode_record`, :func:`write_sharded_records`. Each split's shards get a manifest,
``{split}.manifest.json`` (:mod:`~panoptic2.data.records.manifest`): a rerun reuses shards
only when it matches, and otherwise raises :class:`RecordsMismatchError` naming the change
(``overwrite=True`` converts again); and an index, ``{split}.index.json``
(:mod:`~panoptic2.data.records.index`), so that registering them reads no record. Reading: :func:`read_record_file`,
:func:`parse_example`, :func:`decode_panoptic_record`, :class:`RecordDataset`,
:class:`RecordStream`, :func:`register_records` and :func:`load_record_dict`.
"""

from .cityscapes import convert_cityscapes_dataset
from .coco import convert_coco_dataset
from .dataset import (
    RecordDataset,
    RecordStream,
    expand_record_files,
    load_record_dict,
    load_record_dicts,
    register_records,
)
from .example import encode_example, parse_example
from .index import StaleIndexError, index_filename, write_split_index
from .manifest import RecordsMismatchError, manifest_filename, read_manifest
from .segmentation import (
    LABEL_FORMATS,
    PANOPTIC_LABEL_FORMATS,
    create_segmentation_features,
    decode_label,
    decode_panoptic_record,
    encode_panoptic_label,
)
from .tfrecord import (
    RecordError,
    encode_record,
    index_record_files,
    masked_crc32c,
    read_record_at,
    read_record_file,
    write_record,
)
from .writer import find_shard_sets, shard_filename, shard_ranges, write_sharded_records

__all__ = [
    "LABEL_FORMATS",
    "PANOPTIC_LABEL_FORMATS",
    "RecordDataset",
    "RecordError",
    "RecordsMismatchError",
    "RecordStream",
    "StaleIndexError",
    "convert_cityscapes_dataset",
    "convert_coco_dataset",
    "create_segmentation_features",
    "decode_label",
    "decode_panoptic_record",
    "encode_example",
    "encode_panoptic_label",
    "encode_record",
    "expand_record_files",
    "find_shard_sets",
    "index_filename",
    "index_record_files",
    "load_record_dict",
    "load_record_dicts",
    "manifest_filename",
    "masked_crc32c",
    "parse_example",
    "read_record_at",
    "read_manifest",
    "read_record_file",
    "register_records",
    "shard_filename",
    "shard_ranges",
    "write_record",
    "write_sharded_records",
    "write_split_index",
]
