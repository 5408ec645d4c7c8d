"""Detection and instance segmentation: the task-level math (lecture 002's third and fourth
computer-vision problems; guide: docs/DETECTION.md).

| module        | what                                                                      |
|---------------|---------------------------------------------------------------------------|
| detections    | :class:`Detections`: boxes, scores, classes (and masks) of one image       |
| nms           | box IoU, greedy NMS (per class)                                            |
| targets       | ground truth -> CenterNet heatmaps/sizes/offsets, YOLO v1 grids            |
| losses        | penalty-reduced focal loss, L1, YOLO v1's loss, mask BCE, the detector's   |
| decode        | CenterNet peaks + top-k (no NMS), YOLO grid + NMS                          |
| instances     | box-and-semantic-mask baseline, mask-head targets and paste-back           |
| sliding       | the sliding-window detector (windows, training labels, detection)          |
| inference     | images -> detections for each detector family                              |
| coco          | COCO AP with pycocotools; detections as COCO results                       |

The networks are in :mod:`cnnlab.models.detection`; COCO folders in :mod:`cnnlab.data.coco`.
"""
