"""The published feature-learning numbers (Pathak et al. 2016, Table 1), shown beside cebench's probe as references only.

They were measured on PASCAL VOC with an AlexNet-style encoder pretrained on ImageNet images and fine-tuned end to end
(classification mAP, Fast R-CNN detection mAP, FCN segmentation mean IU), not with a probe on procedural landscapes:
they show what the paper claimed, and are not comparable in value with anything cebench measures. Only the context
encoder's own row is given: the other rows of that table (ImageNet-supervised, random Gaussian initialisation,
autoencoder, other self-supervised methods) are left out until each number has been checked against the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SOURCE: Final = ("Pathak, Krähenbühl, Donahue, Darrell, Efros: Context Encoders: Feature Learning by Inpainting, "
                 "CVPR 2016, arXiv:1604.07379, Table 1")


@dataclass(frozen=True)
class Published:
    method: str
    task: str
    dataset: str
    protocol: str
    metric: str
    value: float  # in %


TABLE1: Final = (
    Published("context encoder (random-region masks)", "classification", "PASCAL VOC 2007 test",
              "AlexNet-style encoder, fine-tuned", "mAP (%)", 56.5),
    Published("context encoder (random-region masks)", "detection", "PASCAL VOC 2007 test",
              "Fast R-CNN, fine-tuned", "mAP (%)", 44.5),
    Published("context encoder (random-region masks)", "semantic segmentation", "PASCAL VOC 2012",
              "FCN, fine-tuned", "mean IU (%)", 29.7),
)
