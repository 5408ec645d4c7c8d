"""Instance masks: mask-head targets, paste-back, the box-and-semantic baseline, one training
step of the whole detector, and detection end to end with a perfect stand-in network."""

from __future__ import annotations

import torch

from cnnlab.data.datasets import load_dataset
from cnnlab.detection.coco import evaluate_detections
from cnnlab.detection.detections import Detections
from cnnlab.detection.inference import detect_centernet
from cnnlab.detection.instances import (
    baseline_masks,
    jitter_boxes,
    learned_masks,
    mask_targets,
    training_rois,
)
from cnnlab.detection.losses import detector_loss
from cnnlab.detection.targets import encode_centernet
from cnnlab.models import create
from cnnlab.models.detection import Detector


def test_mask_targets_pasted_back_give_the_objects_again():
    scenes = load_dataset("digit-scenes", "test")
    rois, labels, index, slot = training_rois(scenes.boxes, scenes.box_labels, scenes.ignore)
    targets = mask_targets(scenes.instances, rois, index, slot)  # (R, 28, 28)
    assert targets.shape == (len(rois), 28, 28) and len(rois) == int((scenes.box_labels >= 0).sum())
    found = Detections(rois, torch.ones(len(rois)), labels)
    ious = []
    for r in range(len(rois)):
        pasted = learned_masks(found.take(torch.tensor([r])), targets[r:r + 1], (32, 32)).masks[0]
        truth = scenes.instances[index[r]] == slot[r] + 1
        ious.append(float((pasted & truth).sum() / (pasted | truth).sum()))
    assert min(ious) > 0.8 and sum(ious) / len(ious) > 0.95  # 28x28 is finer than the boxes


def test_baseline_cannot_split_two_overlapping_objects_of_one_class():
    semantic = torch.zeros(12, 12, dtype=torch.long)
    semantic[2:8, 2:8] = 4  # class 3, two overlapping squares painted as one region
    semantic[5:10, 5:10] = 4
    boxes = torch.tensor([[2.0, 2.0, 8.0, 8.0], [5.0, 5.0, 10.0, 10.0]])
    found = baseline_masks(Detections(boxes, torch.ones(2), torch.tensor([3, 3])), semantic)
    assert found.masks[0].sum() == 36 and found.masks[1].sum() == 25
    assert (found.masks[0] & found.masks[1]).sum() == 9  # the shared corner goes to both
    other = Detections(boxes[:1], torch.ones(1), torch.tensor([5]))
    assert baseline_masks(other, semantic).masks.sum() == 0  # no pixels of its class
    assert baseline_masks(other, semantic, same_class=False).masks.sum() == 36


def test_jittered_boxes_stay_valid_and_move_by_at_most_the_amount():
    boxes = torch.tensor([[10.0, 10.0, 30.0, 20.0]]).repeat(200, 1)
    moved = jitter_boxes(boxes, 0.1, torch.Generator().manual_seed(0))
    assert (moved[:, 2:] > moved[:, :2]).all()
    limit = torch.tensor([2.0, 1.0, 2.0, 1.0]) + 1e-5
    assert ((moved - boxes).abs() <= limit).all() and (moved != boxes).any()


class Perfect(torch.nn.Module):
    """A stand-in Detector whose outputs are the encoded ground truth (logits of +-20)."""

    stride = 4

    def __init__(self, targets: dict, semantic: torch.Tensor) -> None:
        super().__init__()
        self.t, self.semantic = targets, semantic

    def forward(self, x):
        n, hw = self.t["index"].shape[0], self.t["heatmap"].shape[-2:]
        size, offset = torch.zeros(n, 2, hw.numel()), torch.zeros(n, 2, hw.numel())
        for i in range(n):
            for j in self.t["mask"][i].nonzero().flatten().tolist():
                size[i, :, self.t["index"][i, j]] = self.t["size"][i, j]
                offset[i, :, self.t["index"][i, j]] = self.t["offset"][i, j]
        heat = torch.where(self.t["heatmap"] == 1, 20.0, -20.0)
        semantic = torch.nn.functional.one_hot(self.semantic, 11).permute(0, 3, 1, 2).float()
        return {"heatmap": heat, "size": size.view(n, 2, *hw), "offset": offset.view(n, 2, *hw),
                "semantic": semantic}


def test_a_perfect_network_scores_ap_1_through_detection_and_the_baseline():
    scenes = load_dataset("digit-scenes", "test").subset(torch.arange(60))
    targets = encode_centernet(scenes.boxes, scenes.box_labels, 10, (32, 32))
    found = detect_centernet(Perfect(targets, scenes.masks), scenes.images.float() / 255,
                             masks=("baseline",))
    boxes = evaluate_detections(found["boxes"], scenes)["bbox"]
    assert boxes.ap50 == 1.0 or boxes.ap50 > 0.97  # only same-cell centres can be lost
    masks = evaluate_detections(found["baseline"], scenes, ("segm",))["segm"]
    assert masks.ap50 > 0.9


def test_one_training_step_of_the_instance_detector_lowers_its_loss():
    scenes = load_dataset("digit-scenes", "test").subset(torch.arange(16))
    torch.manual_seed(0)
    model = Detector(create("unet", num_classes=1, widths=(8, 16, 32)), 10, channels=16,
                     head_channels=16, masks=True, semantic=True, fine_channels=8,
                     mask_channels=16)
    batch = {"targets": encode_centernet(scenes.boxes, scenes.box_labels, 10, (32, 32)),
             "boxes": scenes.boxes, "labels": scenes.box_labels, "ignore": scenes.ignore,
             "instances": scenes.instances, "masks": scenes.masks}
    x = scenes.images.float() / 255
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss, parts = detector_loss(model, model(x), batch, jitter=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(parts) == {"heatmap", "size", "offset", "mask", "semantic"}
    assert losses[-1] < 0.8 * losses[0]
